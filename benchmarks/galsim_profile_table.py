"""Measure HFD/FWHM on GalSim frames of the benchmark rig and write the table the synthetic nights draw from.

The policy benchmark's grid (``benchmarks/policy_eval.py``) and ``tests/test_monitor.jittery_night``
need the HFD/FWHM that :func:`focuswatch.stars.measure` reports on a frame of the 130 mm f/5,
3.76 um rig at a given defocus and seeing. Physical optics gives it: each cell here is a GalSim
frame (``tests/galsim_truth``: Fourier optics through the defocused pupil * Kolmogorov seeing *
pixel, 150 stars of a power-law sky with noise) measured by ``stars.measure``; the table keeps the
mean over noise seeds and the frame-to-frame scatter. Nothing of ``focuswatch.sim`` is used.

    PYTHONPATH=plugin python benchmarks/galsim_profile_table.py [--seeds 24]

writes ``tests/data/galsim_profile_130mm_f5.json`` (about 1.5 minutes of CPU).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

OUT = ROOT / "tests" / "data" / "galsim_profile_130mm_f5.json"
SEEING_ARCSEC = (2.2, 2.8, 3.4, 4.0, 4.6)
DEFOCUS_CFZ = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0)


def measure_cell(seeing_arcsec: float, defocus_cfz: float, noise_seed: int) -> tuple[float, float]:
    """(HFD/FWHM, HFR px) that stars.measure reads on one GalSim frame."""
    import galsim_truth as gt
    from focuswatch import optics, stars
    from focuswatch.model.frame import Frame, FrameMeta

    scope = gt.Scope(130.0, 5.0, 3.76)
    cfz_um = optics.cfz_um(5.0, 550.0)
    p = gt.psf(scope, defocus_um=defocus_cfz * cfz_um, seeing_fwhm_arcsec=seeing_arcsec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stamp = p.drawImage(nx=41, ny=41, scale=scope.scale_arcsec_px).array
    px = gt.power_law_sky(stamp, 400, 150, faintest_adu=5e3, sky_seed=1,
                          noise_seed=100 + noise_seed, margin_px=22)
    st = stars.measure(Frame(path=None, pixels=px, meta=FrameMeta(), saturation_adu=65535),
                       plate_scale_arcsec_px=scope.scale_arcsec_px)
    return float(st.profile_ratio), float(st.hfr_px)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=24, help="noise seeds per cell (one star field: the frames of one night)")
    args = ap.parse_args(argv)
    t0 = time.process_time()
    mean = np.zeros((len(SEEING_ARCSEC), len(DEFOCUS_CFZ)))
    sd = np.zeros_like(mean)
    hfr = np.zeros_like(mean)
    for i, s in enumerate(SEEING_ARCSEC):
        for j, d in enumerate(DEFOCUS_CFZ):
            got = np.array([measure_cell(s, d, k) for k in range(args.seeds)])
            mean[i, j], sd[i, j] = got[:, 0].mean(), got[:, 0].std(ddof=1)
            hfr[i, j] = got[:, 1].mean()
            print(f"seeing {s}\" defocus {d} CFZ: HFD/FWHM {mean[i, j]:.4f} +- {sd[i, j]:.4f}, HFR {hfr[i, j]:.3f} px",
                  flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "what": "HFD/FWHM read by stars.measure on GalSim frames of the 130 mm f/5, 3.76 um rig (550 nm): "
                "mean and frame-to-frame standard deviation over noise seeds; written by "
                "benchmarks/galsim_profile_table.py",
        "seeds": args.seeds, "seeing_arcsec": list(SEEING_ARCSEC), "defocus_cfz": list(DEFOCUS_CFZ),
        "profile_ratio_mean": np.round(mean, 5).tolist(), "profile_ratio_sd": np.round(sd, 5).tolist(),
        "hfr_px_mean": np.round(hfr, 4).tolist(),
        # one scatter for every cell (root mean square of the cells'): a cell's own estimate from
        # a few frames is itself noisy by ~20 %
        "profile_ratio_sd_pooled": round(float(np.sqrt(np.mean(sd ** 2))), 5)}, indent=1) + "\n")
    print(f"wrote {OUT} ({time.process_time() - t0:.0f} s CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
