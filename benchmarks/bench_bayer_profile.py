"""Bayer (one-shot-colour) star shape against a mono sensor and GalSim truth, FWHM 1.2-6 px.

For each size: GalSim stars (Kolmogorov seeing times the Airy disk of the issue's 50 mm f/5
smart telescope, 2.9 um pixels; and Moffat beta 3, held out) mosaicked through GRBG
(``tests/galsim_truth.bayer_field``) and the same stars on a mono sensor (``green_field``, same
places, fluxes and noise). Printed: ``profile_ratio`` (2 HFR / FWHM, the focus-vs-seeing
witness) of the Bayer frame minus the mono frame's and minus GalSim's truth (2 x half-light
radius / FWHM of the profile), FWHM and HFR against truth. Target: the Bayer ratio within 0.05
of the mono frame's. Seeds 1-3 made the FWHM table (scripts/make_bayer_fwhm_table.py); the
default seeds 5, 7 and 8 are held out. Run from the repository root::

    PYTHONPATH=plugin python benchmarks/bench_bayer_profile.py [--seeds 5,7,8]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugin"))
sys.path.insert(0, str(ROOT / "tests"))

SIZES = (1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)


def main() -> None:
    import galsim

    import galsim_truth as gt
    from focuswatch import stars

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="5,7,8")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    scope = gt.Scope(pixel_um=2.9, diam_mm=50.0, f_ratio=5.0)
    s = scope.scale_arcsec_px
    airy = scope.lam_nm * 1e-9 / (scope.diam_mm * 1e-3) * gt.ARCSEC_PER_RAD

    def profile(kind: str, fwhm: float):
        if kind == "moffat":
            return galsim.Moffat(beta=3.0, fwhm=fwhm * s)
        seeing = math.sqrt(max((fwhm * s) ** 2 - (1.03 * airy) ** 2, (0.3 * fwhm * s) ** 2))
        return galsim.Convolve([galsim.Kolmogorov(fwhm=seeing), galsim.Airy(lam_over_diam=airy)])

    print(f"seeds {seeds}; target: |Bayer - mono| <= 0.05")
    for kind in ("kolmogorov x airy", "moffat beta 3"):
        rows: dict[str, list[str]] = {k: [] for k in ("pr-mono", "pr-mono worst", "pr-true", "mono pr-true",
                                                      "fwhm/true", "hfr/true")}
        for f in SIZES:
            prof = profile("moffat" if kind.startswith("moffat") else "ka", f)
            tf = prof.calculateFWHM(scale=s / 8) / s
            hlr = gt.true_hlr_px_intrinsic(prof, scope)
            d, dt, mt, fw, hf = [], [], [], [], []
            for seed in seeds:
                b = stars.measure_array(gt.bayer_field(prof, scope, "GRBG", seed=seed), {"BAYERPAT": "GRBG"})
                m = stars.measure_array(gt.green_field(prof, scope, seed=seed))
                d.append(b.profile_ratio - m.profile_ratio)
                dt.append(b.profile_ratio - 2 * hlr / tf)
                mt.append(m.profile_ratio - 2 * hlr / tf)
                fw.append(b.fwhm_px / tf - 1)
                hf.append(b.hfr_px / hlr - 1)
            rows["pr-mono"].append(f"{np.mean(d):+6.3f}")
            rows["pr-mono worst"].append(f"{max(d, key=abs):+6.3f}")
            rows["pr-true"].append(f"{np.mean(dt):+6.3f}")
            rows["mono pr-true"].append(f"{np.mean(mt):+6.3f}")
            rows["fwhm/true"].append(f"{np.mean(fw):+6.1%}")
            rows["hfr/true"].append(f"{np.mean(hf):+6.1%}")
        print(f"\n{kind:18s} FWHM px " + " ".join(f"{f:6.1f}" for f in SIZES))
        for k, v in rows.items():
            print(f"  {k:22s} " + " ".join(v))


if __name__ == "__main__":
    main()
