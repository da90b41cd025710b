"""The tuned thresholds of the Bahtinov analysis (:func:`focuswatch.bahtinov.analyze`).

Chosen on :mod:`focuswatch.sim.mask` renders (plain and Tri-Bahtinov, 0.5-4" seeing, several
focal lengths and noise levels) and kept where the real NINA/Grabber fixtures still pass;
each field says what it guards against. Pure: no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BahtinovConfig:
    """How spikes are told from noise and followed (units in the names)."""

    #: a pixel is spike light above this many noise sigmas (of the whole image)
    spike_min_sigma: float = 2.0
    #: fewer spike pixels than this around the star: no mask, or the star is too faint
    min_spike_pixels: int = 50
    #: the angle scan bins distances up to this far from the star (and half the box at most)
    scan_rho_max_px: float = 40.0
    #: half width of the perpendicular profiles a spike is refined on
    profile_half_width_px: float = 4.0
    #: spikes are followed from where neighbours are this many profile half widths apart ...
    start_clear_half_widths: float = 2.5
    #: ... with their angle floored at this (nearly parallel spikes)
    min_spike_angle_deg: float = 3.0
    #: ... but never from further out than this share of the followed length
    max_start_frac: float = 0.6
    #: a pattern whose followed stretch is shorter than this cannot be measured
    min_followed_px: float = 10.0
    #: a spike must be found along this share of its possible samples ...
    min_found_frac: float = 0.4
    #: ... with its centroids this close (rms, px) to the fitted line: noise is not
    max_line_rms_px: float = 1.5
    #: two traced lines this close in angle and distance are the same spike
    same_spike_deg: float = 2.0
    same_spike_px: float = 3.0
    #: Tri-Bahtinov: a spike's distance from the star is looked for within this many px
    tri_rho_window_px: float = 8.0
    #: outer spikes' half-angle outside this range (deg) is noted as unusual for a mask
    usual_half_angle_deg: tuple[float, float] = (5.0, 40.0)


BAHTINOV = BahtinovConfig()
