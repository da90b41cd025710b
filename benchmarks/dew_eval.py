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

``--nights``: whole physical-optics nights (:func:`run_nights`; 4 rigs, obstruction 0-0.45 with
vanes, seeing wandering 1.5-5" Kolmogorov / von Karman, a halo growing from frame 6 to a full
5/10/15 % at frame 14) judged with the night's own dew reference (``diagnose.night_witnesses`` +
``rejudge``, as ``diagnose FOLDER`` and ``grade``); tuning seeds 0-5, held out 300-305.

Run: ``PYTHONPATH=plugin python benchmarks/dew_eval.py [--seeds 300-333] [--stress] [--header-rig]``
``[--nights [--night-seeds 300-305]]``
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


# --------------------------------------------------------------------------- nights

#: The night benchmark's rigs: obstruction 0-0.45, with spider vanes on the obstructed ones.
NIGHT_RIGS = {
    "refractor 80 f/6": po.Optics(aperture_mm=80.0, focal_length_mm=480.0, pixel_um=2.4),
    "newtonian 150 f/4 eps .2 3 vanes": po.Optics(aperture_mm=150.0, focal_length_mm=600.0, pixel_um=2.9,
                                                  obstruction=0.2, n_vanes=3, vane_width=0.01),
    "newtonian 200 f/5 eps .33 4 vanes": po.Optics(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76,
                                                   obstruction=0.33, n_vanes=4, vane_width=0.01),
    "astrograph 250 f/4.8 eps .45 4 vanes": po.Optics(aperture_mm=250.0, focal_length_mm=1200.0, pixel_um=3.76,
                                                      obstruction=0.45, n_vanes=4, vane_width=0.01),
}
#: Frames per night (10 min apart), the frame the dew halo appears at, and the frame it reaches its
#: full share at (growing linearly in between, then holding).
NIGHT_FRAMES, DEW_ONSET, DEW_FULL = 24, 6, 14
#: Halos of the night benchmark: (full share, width in FWHMs of a 2.5" seeing).
NIGHT_HALOS = ((0.05, 4.0), (0.10, 3.0), (0.15, 4.0))


def seeing_walk(seed: int, n: int = NIGHT_FRAMES) -> list[float]:
    """A night's seeing FWHM (arcsec) per frame: a random walk in log seeing (0.09 a frame) from
    1.8-3.8", reflected at 1.5" and 5"."""
    rng = np.random.default_rng(seed)
    lo, hi = np.log(1.5), np.log(5.0)
    x = float(np.log(rng.uniform(1.8, 3.8)))
    out = []
    for _ in range(n):
        out.append(float(np.exp(x)))
        x += float(rng.normal(0.0, 0.09))
        x = 2 * lo - x if x < lo else (2 * hi - x if x > hi else x)
    return out


def halo_share(index: int, full: float) -> float:
    """The dew halo's share of the light at frame ``index`` of a night whose halo grows to ``full``."""
    if index < DEW_ONSET:
        return 0.0
    return full * min(1.0, (index - DEW_ONSET + 1) / (DEW_FULL - DEW_ONSET + 1))


def night_specs(o: po.Optics, kind: str, seed: int) -> list[tuple[po.FrameSpec, dict]]:
    """The frames of one night: seeing wandering (:func:`seeing_walk`), Kolmogorov or von Karman
    with a fixed outer scale (L0/r0 100, 200 or 400 at 2.5", growing with the seeing as r0 shrinks),
    an autofocus every 8 frames (FOCPOS steps) with a drift to 0.25-0.5 CFZ in between."""
    from focuswatch import optics as fo
    import datetime as dt

    rng = np.random.default_rng(seed + 777)
    l0_ref = float(rng.choice((100.0, 200.0, 400.0)))
    cfz_um = fo.cfz_um(o.f_ratio)
    out = []
    for i, see in enumerate(seeing_walk(seed)):
        dcfz = 0.5 * (i % 8) / 7.0 * float(rng.uniform(0.5, 1.0))
        s = po.Seeing(see) if kind == "kolmogorov" else po.Seeing(see, kind="vonkarman",
                                                                  outer_scale_over_r0=l0_ref * see / 2.5)
        spec = po.FrameSpec(optics=o, seeing=s, aberrations=po.FieldAberrations(defocus_um=dcfz * cfz_um),
                            width_px=256, height_px=256, n_stars=30, seed=seed * 1000 + i)
        when = dt.datetime(2026, 11, 21, 22, 0, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=i * 600)
        out.append((spec, {**po.frame_header(spec), "DATE-OBS": when.strftime("%Y-%m-%dT%H:%M:%S"),
                           "FOCPOS": 1000 + 10 * (i // 8)}))
    return out


def run_nights(seeds: list[int], header_rig: bool = False) -> dict:
    """Each night (4 rigs per seed; Kolmogorov or von Karman by seed and rig) as it is and with each
    halo of :data:`NIGHT_HALOS`, judged as ``diagnose FOLDER`` and ``grade`` judge a night: every
    frame by ``diagnose.frame`` (with its pixels), then again with the night's context
    (``diagnose.night_witnesses`` + ``diagnose.rejudge``). Per halo: dew calls per frame index
    over the nights (``night``) and the single-frame calls (``single``), and nights with any dew."""
    out: dict = {h: {"night": np.zeros(NIGHT_FRAMES), "single": np.zeros(NIGHT_FRAMES), "n": 0,
                     "nights_any": 0, "first": []} for h in ((0.0, 0.0),) + NIGHT_HALOS}
    for seed in seeds:
        for ri, (name, o) in enumerate(NIGHT_RIGS.items()):
            kind = ("kolmogorov", "vonkarman")[(seed + ri) % 2]
            renders = [(po.render_frame(spec).pixels, header) for spec, header in night_specs(o, kind, seed)]
            fwhm_px = 2.5 / o.plate_scale_arcsec_px
            for frac, k in ((0.0, 0.0),) + NIGHT_HALOS:
                st_list, d_list, rigs = [], [], []
                for i, (pix, header) in enumerate(renders):
                    share = halo_share(i, frac)
                    img = pix if share == 0 else pf.dew_halo(pix, share, k * fwhm_px).astype(np.float32)
                    frame = frame_from_array(img, header)
                    rig = rig_with_header(Rig() if header_rig else pf.rig_of(o), frame.meta)
                    st = stars.measure(frame)
                    st_list.append(st)
                    rigs.append(rig)
                    d_list.append(diagnose.frame(st, rig, image=frame))
                base = Rig() if header_rig else pf.rig_of(o)
                wits = diagnose.night_witnesses(st_list, base, dew_reference=True)
                night = [diagnose.rejudge(d, s, r, w) for d, s, r, w in zip(d_list, st_list, rigs, wits)]
                cell = out[(frac, k)]
                calls = np.array([d.label == "dew" for d in night])
                cell["night"] += calls
                cell["single"] += np.array([d.label == "dew" for d in d_list])
                cell["n"] += 1
                cell["nights_any"] += bool(calls.any())
                after = np.nonzero(calls[DEW_ONSET:])[0]
                cell["first"].append(int(after[0]) if len(after) else None)
    return out


def print_nights(res: dict, seeds: str, header_rig: bool) -> bool:
    """The night benchmark's table beside its targets; True when they are met."""
    c = diagnose.DiagnoseConfig()
    print(f"\ndew on physical-optics NIGHTS: seeds {seeds}, {len(NIGHT_RIGS)} rigs (obstruction 0-0.45, vanes), "
          f"{NIGHT_FRAMES} frames, seeing wandering 1.5-5\" (Kolmogorov / von Karman), halo from frame "
          f"{DEW_ONSET}, full from {DEW_FULL}; rig: {'FITS header only' if header_rig else 'configured'}; "
          f"night reference {c.dew_night_frames} frames, window {c.dew_night_window}, rise {c.dew_night_rise}")
    z = res[(0.0, 0.0)]
    n_frames = z["n"] * NIGHT_FRAMES
    print(f"  no dew: false dew frames, night context {int(z['night'].sum())}/{n_frames} "
          f"(nights {z['nights_any']}/{z['n']}); single-frame {int(z['single'].sum())}/{n_frames}   target 0")
    ok = z["night"].sum() == 0
    for h in NIGHT_HALOS:
        cell = res[h]
        nn = cell["n"]
        full_n, full_s = cell["night"][DEW_FULL:].sum(), cell["single"][DEW_FULL:].sum()
        tot = nn * (NIGHT_FRAMES - DEW_FULL)
        on_n, on_s = cell["night"][DEW_ONSET:].sum(), cell["single"][DEW_ONSET:].sum()
        tot_on = nn * (NIGHT_FRAMES - DEW_ONSET)
        firsts = [f for f in cell["first"] if f is not None]
        delay = f"median {np.median(firsts):.0f}, max {max(firsts)}" if firsts else "n/a"
        print(f"  halo {int(h[0] * 100)} %/{h[1]:g} FWHM: full-strength frames night {int(full_n)}/{tot} "
              f"({100 * full_n / tot:.0f} %) vs single-frame {int(full_s)}/{tot} ({100 * full_s / tot:.0f} %); "
              f"all frames after onset night {100 * on_n / tot_on:.0f} % vs single {100 * on_s / tot_on:.0f} %; "
              f"first call (frames after onset) {delay}; nights never called {cell['first'].count(None)}/{nn}")
        if h == (0.10, 3.0):
            ok = ok and full_n >= 0.70 * tot
    print(f"  night targets (0 false dew; 10 %/3 FWHM >= 70 % at full strength): {'met' if ok else 'NOT met'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="300-333", help="seed range lo-hi (default: the held-out 300-333)")
    ap.add_argument("--stress", action="store_true", help="also von Karman L0/r0 50 (a short outer scale)")
    ap.add_argument("--header-rig", action="store_true", help="the rig from the FITS header only (no obstruction)")
    ap.add_argument("--no-sim", action="store_true", help="skip the simulator's dew frames")
    ap.add_argument("--nights", action="store_true", help="the night benchmark (night-level dew reference) only")
    ap.add_argument("--night-seeds", default="300-305", help="night seeds lo-hi (tuning: 0-5; held out: 300-305)")
    args = ap.parse_args(argv)
    if args.nights:
        t0 = time.process_time()
        res = run_nights(_seeds(args.night_seeds), args.header_rig)
        print_nights(res, args.night_seeds, args.header_rig)
        print(f"  ({time.process_time() - t0:.0f} s CPU)")
        return 0
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
