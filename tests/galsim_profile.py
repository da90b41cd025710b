"""HFD/FWHM of the 130 mm f/5 rig as ``stars.measure`` reads it on GalSim frames (physical optics).

The synthetic nights (``benchmarks/policy_eval.py``'s grid, ``test_monitor.jittery_night``) draw
their HFD/FWHM here instead of from a formula of our own simulator: the table
``tests/data/galsim_profile_130mm_f5.json`` is measured on GalSim frames (Fourier optics through
the defocused pupil, Kolmogorov seeing, pixel, noise) by ``benchmarks/galsim_profile_table.py``.
A frame's value is the table's mean, interpolated linearly in seeing and |defocus|, plus the
measured frame-to-frame scatter (pooled over the table) times a standard normal.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

TABLE = Path(__file__).resolve().parent / "data" / "galsim_profile_130mm_f5.json"


@lru_cache(maxsize=1)
def _table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = json.loads(TABLE.read_text())
    return (np.array(t["seeing_arcsec"]), np.array(t["defocus_cfz"]), np.array(t["profile_ratio_mean"]),
            np.array(t["profile_ratio_sd"]))


def _interp2(grid: np.ndarray, seeing_arcsec: float, defocus_cfz: float) -> float:
    s_nodes, d_nodes, _, _ = _table()
    # clamp seeing to the measured range; past the last defocus node continue its last slope
    s = float(np.clip(seeing_arcsec, s_nodes[0], s_nodes[-1]))
    d = abs(float(defocus_cfz))
    i = int(np.clip(np.searchsorted(s_nodes, s) - 1, 0, len(s_nodes) - 2))
    j = int(np.clip(np.searchsorted(d_nodes, d) - 1, 0, len(d_nodes) - 2))
    u = (s - s_nodes[i]) / (s_nodes[i + 1] - s_nodes[i])
    v = (d - d_nodes[j]) / (d_nodes[j + 1] - d_nodes[j])
    row = (1 - u) * grid[i] + u * grid[i + 1]
    return float(row[j] + v * (row[j + 1] - row[j]))


def profile_mean(seeing_arcsec: float, defocus_cfz: float) -> float:
    """Mean HFD/FWHM that stars.measure reads at this seeing and defocus (GalSim frames)."""
    return _interp2(_table()[2], seeing_arcsec, defocus_cfz)


@lru_cache(maxsize=1)
def profile_sd() -> float:
    """Frame-to-frame standard deviation of that reading (noise only, one star field), pooled over the table."""
    return float(json.loads(TABLE.read_text())["profile_ratio_sd_pooled"])


def profile_ratio(seeing_arcsec: float, defocus_cfz: float, z: float) -> float:
    """One frame's HFD/FWHM: the mean plus ``z`` (a standard normal draw) times the measured scatter."""
    return profile_mean(seeing_arcsec, defocus_cfz) + z * profile_sd()
