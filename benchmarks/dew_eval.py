"""Dew on physical-optics frames: false `dew` calls without a halo, halos found, beside their targets.

Renders frames with :mod:`focuswatch.sim.physical` (Fourier optics, checked against GalSim in
tests/test_physoptics.py; never the simulator the shape thresholds were first tuned on): the
two rigs of tests/physframes.py (NEWTONIAN, a 200 mm f/5 with a 33 % obstruction and four spider
vanes; REFRACTOR_80, an 80 mm f/6), seeing 2.0/2.5/3.0/3.5" by seed, defocus 0/0.25/0.5 CFZ by
seed, and the seeing kinds Kolmogorov, Moffat (beta 4) and von Karman (L0/r0 200; with
``--stress`` also L0/r0 50, a short outer scale). Each frame is measured (``stars.measure``) and
diagnosed (``diagnose.frame``) as it is, then with a dew halo (tests/physframes.dew_halo: a share
of each star's light spread by ``(1 + r^2/w^2)^-3/2``, ``w`` = k x the seeing FWHM) of 15 % at
4 FWHM, 10 % at 3 FWHM and 5 % at 4 FWHM.

The rig passed to the diagnosis is the configured one (aperture, focal length, pixel,
obstruction), as a user's ``[rig]`` gives it; ``--header-rig`` passes what the FITS header alone
gives (no obstruction: the wing ceiling of an unobstructed pupil, the worst case for a
Newtonian whose owner left ``obstruction`` unset).

Seeds: the dew thresholds (``DiagnoseConfig.dew_halo_excess``, ``dew_min_outer_scale_over_r0``)
were chosen on seeds 0-23 (``--seeds 0-23``; von Karman L0/r0 50 on 24-35); the default 300-333
is held out. The simulator's own dew set (focuswatch.sim, dew 0.3/0.6/1.0) is checked too.

Run: ``PYTHONPATH=plugin python benchmarks/dew_eval.py [--seeds 300-333] [--stress] [--header-rig]``
(about 1 s of CPU per frame and halo; the default set is 204 frames x 4).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugin"))
sys.path.insert(0, str(ROOT / "tests"))

from focuswatch import diagnose, sim, stars  # noqa: E402
from focuswatch.io.frames import frame_from_array  # noqa: E402
from focuswatch.optics import Rig, rig_with_header  # noqa: E402
from focuswatch.sim import SimParams  # noqa: E402
from focuswatch.sim import physical as po  # noqa: E402
import physframes as pf  # noqa: E402

#: (share of the light, width in seeing FWHMs) of the halos added
HALOS = ((0.15, 4.0), (0.10, 3.0), (0.05, 4.0))
#: targets: no false dew; the share of halos found (the 5 % halo is reported, not targeted: its
#: r90/r50 shift is smaller than the spread between seeing kinds)
TARGETS = {(0.15, 4.0): 0.85, (0.10, 3.0): 0.70, (0.05, 4.0): None}
KINDS = {"kolmogorov": lambda see: po.Seeing(see),
         "moffat": lambda see: po.Seeing(see, kind="moffat"),
         "vonkarman L0/r0=200": lambda see: po.Seeing(see, kind="vonkarman"),
         "vonkarman L0/r0=50": lambda see: po.Seeing(see, kind="vonkarman", outer_scale_over_r0=50.0)}


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def frame_spec(o: po.Optics, kind: str, seed: int) -> tuple[po.FrameSpec, dict, float]:
    """The spec, FITS header and seeing FWHM (arcsec) of one frame (seeing and defocus by seed)."""
    see = (2.0, 2.5, 3.0, 3.5)[seed % 4]
    cfz = (0.0, 0.25, 0.5)[(seed // 4) % 3]
    spec, header = pf.night_spec(o, see, cfz, 0, seed=seed)
    return replace(spec, seeing=KINDS[kind](see)), header, see


def run(seeds: list[int], kinds: list[str], header_rig: bool) -> dict:
    """``{(kind, halo): [dew calls, frames]}`` with halo ``(0, 0)`` for the frames as rendered."""
    out: dict = defaultdict(lambda: [0, 0])
    worst: dict = defaultdict(lambda: -np.inf)
    for kind in kinds:
        for name in ("NEWTONIAN", "REFRACTOR_80"):
            o = getattr(pf, name)
            for seed in seeds:
                spec, header, see = frame_spec(o, kind, seed)
                pix = po.render_frame(spec).pixels
                fwhm_px = see / o.plate_scale_arcsec_px
                for frac, k in ((0.0, 0.0),) + HALOS:
                    img = pix if frac == 0 else pf.dew_halo(pix, frac, k * fwhm_px).astype(np.float32)
                    frame = frame_from_array(img, header)
                    rig = rig_with_header(Rig() if header_rig else pf.rig_of(o), frame.meta)
                    d = diagnose.frame(stars.measure(frame), rig)
                    cell = out[(kind, (frac, k))]
                    cell[0] += d.label == "dew"
                    cell[1] += 1
                    if frac == 0 and d.evidence.halo_excess is not None:
                        worst[kind] = max(worst[kind], d.evidence.halo_excess)
    return {"counts": dict(out), "worst": dict(worst)}


def simulator_dew() -> Counter:
    """Labels of the simulator's dew frames: the dew rows of tests/test_diagnose.py's labelled set
    (dew 0.3, 0.6, 1.0 at 50 and 150 stars, 512 px, its default 200 mm f/5 rig)."""
    labels: Counter = Counter()
    rig = sim.DEFAULT_RIG
    for sev, dew in enumerate((0.3, 0.6, 1.0)):
        for n in (50, 150):
            frame = sim.render(SimParams(width_px=512, height_px=512, n_stars=n, seed=11 + n + 7 * sev,
                                         dew=dew)).to_frame()
            st = stars.measure(frame, plate_scale_arcsec_px=rig.plate_scale_arcsec_px)
            labels[diagnose.frame(st, rig, image=frame).label] += 1
    return labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="300-333", help="seed range lo-hi (default: the held-out 300-333)")
    ap.add_argument("--stress", action="store_true", help="also von Karman L0/r0 50 (a short outer scale)")
    ap.add_argument("--header-rig", action="store_true", help="the rig from the FITS header only (no obstruction)")
    ap.add_argument("--no-sim", action="store_true", help="skip the simulator's dew frames")
    args = ap.parse_args(argv)
    seeds = _seeds(args.seeds)
    kinds = list(KINDS)[:3] + (["vonkarman L0/r0=50"] if args.stress else [])
    t0 = time.process_time()
    res = run(seeds, kinds, args.header_rig)
    cpu = time.process_time() - t0
    counts, worst = res["counts"], res["worst"]
    c = diagnose.DiagnoseConfig()
    print(f"dew on physical-optics frames: seeds {args.seeds}, rigs NEWTONIAN (200 mm f/5, obstruction 0.33, "
          f"4 vanes) + REFRACTOR_80; rig given: {'FITS header only' if args.header_rig else 'configured'}; "
          f"dew_halo_excess {c.dew_halo_excess}, L0/r0 >= {c.dew_min_outer_scale_over_r0:g}")
    print(f"{'seeing kind':22s}{'false dew':>14s}{'max excess':>12s}" +
          "".join(f"{f'halo {int(f * 100)} %/{k:g} FWHM':>20s}" for f, k in HALOS))
    tot: dict = defaultdict(lambda: [0, 0])
    main_kinds = list(KINDS)[:3]
    for kind in kinds:
        row = f"{kind:22s}"
        for h in ((0.0, 0.0),) + HALOS:
            n_dew, n = counts[(kind, h)]
            row += f"{f'{n_dew}/{n}':>14s}" if h == (0.0, 0.0) else f"{f'{n_dew}/{n} ({100 * n_dew / n:.0f} %)':>20s}"
            if h == (0.0, 0.0):
                row += f"{worst.get(kind, float('nan')):>+12.3f}"
            if kind in main_kinds:
                tot[h][0] += n_dew
                tot[h][1] += n
        print(row)
    n0 = tot[(0.0, 0.0)]
    print(f"{'all (Kolm+Moffat+vK200)':22s}{f'{n0[0]}/{n0[1]}':>14s}{'':12s}" +
          "".join(f"{f'{tot[h][0]}/{tot[h][1]} ({100 * tot[h][0] / tot[h][1]:.0f} %)':>20s}" for h in HALOS))
    print(f"{'target':22s}{'0':>14s}{'':12s}" +
          "".join(f"{(f'>= {100 * TARGETS[h]:.0f} %' if TARGETS[h] else 'reported'):>20s}" for h in HALOS))
    ok = n0[0] == 0 and all(TARGETS[h] is None or tot[h][0] >= TARGETS[h] * tot[h][1] for h in HALOS)
    print(f"physical-optics targets: {'met' if ok else 'NOT met'} ({cpu:.0f} s CPU)")
    if not args.no_sim:
        lab = simulator_dew()
        n = sum(lab.values())
        print(f"simulator dew frames (labelled set, dew 0.3/0.6/1.0 x 50/150 stars): dew {lab['dew']}/{n} "
              f"(target {n}/{n}); labels {dict(lab)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
