"""Focus miss versus seeing on physical-optics frames: focuswatch against plain pipelines.

Renders the labelled set of :func:`focuswatch.sim.physical.labelled_set` (seeing 1.5-5",
Kolmogorov / von Karman / Moffat, defocus 0-3 CFZ, obstruction 0-0.45, FWHM 1.5-6 px, six
rigs), and prints, side by side:

* ``focuswatch``: ``stars.measure`` + ``diagnose.frame`` (focus_miss or not);
* ``sep HFR rule``: sep's half-flux radius against the rig's expected in-focus HFR on a fair
  night (Kolmogorov 2.5"), a miss when 1.25x larger (what a plain pipeline can do);
* ``ASTAP``: ``astap_cli -f FILE -analyse 10`` (HFD median), same ratio rule, when
  ``astap_cli`` is on the PATH.

Then the defocus estimate (:func:`focuswatch.optics.defocus_um_from_hfr`, the call the
policy, the diagnosis and the grade share) from 0.5 to 10 CFZ, given the in-focus HFR:
on the true half-light radius of each render (the model) and on ``stars.measure``'s HFR
(model and measurement), against the geometric Moffat model it replaced.

Scores are given strict (every frame the truth labels) and with a documented tolerance band
(frames at exactly 1 CFZ, the truth's boundary, not scored; see docs/diagnose.md for why they
are ambiguous by physics). The physics behind that band is printed too: the true HFR growth
at 1 CFZ on each frame's rig and seeing (calibrated tables) against the spread of the in-focus
HFR over the seeing kinds, read as measured HFR over the calibrated in-focus HFR for the
frame's true seeing (:func:`focuswatch.calibration.infocus_hfr_px`, what a perfect seeing
monitor would give).

With ``--seeing-witness`` the diagnosis is also scored with a seeing measured for each frame
(``diagnose.frame(measured_seeing_arcsec=...)``): the frame's nominal seeing (a seeing monitor,
exact, then 10 % off) and the night's own witness (``diagnose.SeeingWitness``, source
``infocus``): the seeing the same rig's in-focus frame gives (the night's frames after an
autofocus, as ``watch``, ``replay``, ``diagnose FOLDER`` and the grade now take it), with the
seeing unchanged since, then 15 %, 20 % and 30 % worse at the frame than at the witness (what
the witness' guards must survive; a steady night's frame-to-frame scatter is not known here, so
its allowance is the bare ``witness_size_uncertainty``: a seeing that much worse, through the
rig's calibrated in-focus size). The profile shape alone cannot tell a
1 CFZ blur from seeing; the size can.

The labelled set puts its defocus on the grid ``LABELLED_DEFOCUS_CFZ`` (0, 0.25, 0.5, 1, 1.5,
2, 3 CFZ): one frame in seven sits exactly on the truth's 1 CFZ boundary. A second table
(``--continuous-frames N``, default 100; 0 skips it) draws the defocus uniformly over 0-3 CFZ
(300 values 0.005, 0.015, ... 2.995: none on the boundary), same rigs, seeing and truth rule,
so the figure is not dominated by the grid's spike at 1 CFZ. Both are printed.

Run: ``PYTHONPATH=plugin python benchmarks/diagnose_eval.py [--frames 120] [--seed 11] [--seeing-witness]
[--continuous-frames 100]``. Frames are written to a temporary folder only for ASTAP.
"""
from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))

from focuswatch import diagnose, optics, stars  # noqa: E402
from focuswatch import calibration  # noqa: E402
from focuswatch.sim import physical as po  # noqa: E402
from focuswatch.io.frames import frame_from_array  # noqa: E402
from focuswatch.optics import Rig  # noqa: E402

KOLM_HLR_PER_FWHM = diagnose.KOLMOGOROV_HLR_PER_FWHM
RATIO_RULE = 1.25
REFERENCE_SEEING_ARCSEC = 2.5


def rig_of(spec: po.FrameSpec) -> Rig:
    o = spec.optics
    return Rig(aperture_mm=o.aperture_mm, focal_length_mm=o.focal_length_mm, pixel_um=o.pixel_um,
               obstruction=o.obstruction)


def expected_hfr_px(spec: po.FrameSpec) -> float:
    return KOLM_HLR_PER_FWHM * REFERENCE_SEEING_ARCSEC / spec.optics.plate_scale_arcsec_px


def sep_hfr(pixels: np.ndarray) -> float | None:
    """A plain sep pipeline: background, extraction, median flux_radius(0.5) of isolated stars."""
    import sep

    data = pixels.astype(np.float64)
    bkg = sep.Background(data)
    sub = data - bkg
    objs = sep.extract(sub, 5.0, err=bkg.globalrms, minarea=5)
    if len(objs) < 3:
        return None
    r, flag = sep.flux_radius(sub, objs["x"], objs["y"], 6.0 * objs["a"], 0.5, subpix=5)
    ok = (flag == 0) & np.isfinite(r) & (r > 0)
    return float(np.median(r[ok])) if ok.sum() >= 3 else None


def astap_hfd(pixels: np.ndarray, header: dict, folder: Path) -> float | None:
    exe = shutil.which("astap_cli")
    if not exe:
        return None
    from astropy.io import fits

    path = folder / "frame.fits"
    h = fits.Header()
    for k, v in header.items():
        h[k] = v
    fits.PrimaryHDU(pixels.astype(np.uint16), h).writeto(path, overwrite=True)
    try:
        out = subprocess.run([exe, "-f", str(path), "-analyse", "10"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.stdout.splitlines():
        if line.startswith("HFD_MEDIAN="):
            try:
                v = float(line.split("=", 1)[1])
            except ValueError:
                return None
            return v if v > 0 else None
    return None


def table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> str:
    w = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join("{:<%d}" % x for x in w)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * x for x in w))] + [fmt.format(*r) for r in rows])


#: The labelled set's defocus drawn "continuously": 300 values evenly over 0-3 CFZ, none on a boundary.
CONTINUOUS_DEFOCUS_CFZ = tuple(round(0.005 + 0.01 * k, 3) for k in range(300))
#: Seeing at the frame over seeing at the witness, for the rows that test the witness' guards.
WITNESS_WORSE = (1.15, 1.2, 1.3)


def night_seeing_arcsec(spec: po.FrameSpec) -> float | None:
    """The seeing the night's in-focus frames give: the same rig and seeing rendered in focus
    (other stars), measured by ``stars.measure``, its HFR turned into a seeing FWHM through the
    calibrated in-focus call (what a policy can learn from the frames right after an autofocus)."""
    o = spec.optics
    focused = replace(spec, aberrations=po.FieldAberrations(), seed=spec.seed + 1)
    h = stars.measure(frame_from_array(po.render_frame(focused).pixels, po.frame_header(focused))).hfr_px
    if not h:
        return None
    return calibration.seeing_for_infocus_hfr_arcsec(h, o.aperture_mm, 550.0, o.plate_scale_arcsec_px, o.obstruction)


def focus_vs_seeing(n_frames: int, seed: int, use_astap: bool, witness: bool = False,
                    continuous: bool = False) -> None:
    frames = po.labelled_set(seed=seed, n_frames=n_frames,
                             **({"defocus_cfz": CONTINUOUS_DEFOCUS_CFZ} if continuous else {}))
    print(f"=== defocus {'drawn uniformly over 0-3 CFZ (continuous)' if continuous else 'on the grid ' + str(po.LABELLED_DEFOCUS_CFZ) + ' CFZ'} ===")
    methods = ["focuswatch"]
    worse_rows = [f"+ night's in-focus, seeing {100 * (r - 1):.0f} % worse since" for r in WITNESS_WORSE]
    if witness:
        methods += ["+ seeing monitor", "+ monitor 10 % off", "+ night's in-focus", *worse_rows]
    methods += ["sep HFR rule"] + (["ASTAP HFD rule"] if use_astap and shutil.which("astap_cli") else [])
    monitor_rng = np.random.default_rng(seed + 1000)
    conf = {m: Counter() for m in methods}
    band = {m: Counter() for m in methods}
    seeing_witness: list[tuple[str, str, float, float, float]] = []
    labels = Counter()
    wrong: list[str] = []
    t_render = t_measure = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for lf in frames:
            t = time.perf_counter()
            fr = po.render_frame(lf.spec)
            t_render += time.perf_counter() - t
            header = po.frame_header(lf.spec)
            t = time.perf_counter()
            frame = frame_from_array(fr.pixels, header)
            st = stars.measure(frame)
            dg = diagnose.frame(st, rig_of(lf.spec), image=frame)
            t_measure += time.perf_counter() - t
            labels[(lf.truth, dg.label)] += 1
            calls = {"focuswatch": dg.label == "focus_miss"}
            if witness:
                true_see = lf.spec.seeing.fwhm_arcsec
                night_see = night_seeing_arcsec(lf.spec)
                given = [("+ seeing monitor", true_see, None),
                         ("+ monitor 10 % off", true_see * float(np.exp(monitor_rng.normal(0.0, 0.1))), None),
                         ("+ night's in-focus", night_see, 1.0)]
                given += [(m, night_see / r if night_see else None, r) for m, r in zip(worse_rows, WITNESS_WORSE)]
                for m, see, _ in given:
                    if m.startswith("+ night's"):  # the night's own witness, as the night loop passes it
                        wit = diagnose.SeeingWitness(see, "infocus", n_frames=1, jitter_pct=0.0) if see else None
                        dw = diagnose.frame(st, rig_of(lf.spec), image=frame, seeing_witness=wit)
                    else:
                        dw = diagnose.frame(st, rig_of(lf.spec), image=frame, measured_seeing_arcsec=see)
                    calls[m] = dw.label == "focus_miss"
                    if lf.truth != "ambiguous" and calls[m] != (lf.truth == "focus_miss"):
                        wrong.append(f"  [{m}] {lf.rig_name}, {lf.spec.seeing.kind} {true_see:.2f}\" "
                                     f"(given {see or float('nan'):.2f}\"), {lf.defocus_cfz} CFZ: {dw.label}, "
                                     f"size defocus >= {dw.evidence.size_defocus_cfz_low} CFZ, "
                                     f"size blur/seeing >= {dw.evidence.size_blur_to_seeing_low}")
            h = sep_hfr(fr.pixels)
            calls["sep HFR rule"] = (h is not None and h > RATIO_RULE * expected_hfr_px(lf.spec))
            if "ASTAP HFD rule" in methods:
                hfd = astap_hfd(fr.pixels, header, Path(tmp))
                calls["ASTAP HFD rule"] = (hfd is not None and hfd / 2.0 > RATIO_RULE * expected_hfr_px(lf.spec))
            for m in methods:
                conf[m][(lf.truth, "focus_miss" if calls[m] else "not_focus")] += 1
                band_truth = "ambiguous" if lf.defocus_cfz == 1.0 else lf.truth  # none on the continuous draw
                band[m][(band_truth, "focus_miss" if calls[m] else "not_focus")] += 1
            o = lf.spec.optics
            if st.hfr_px:
                exp_h = calibration.infocus_hfr_px(lf.spec.seeing.fwhm_arcsec, o.aperture_mm, 550.0,
                                                   o.plate_scale_arcsec_px, o.obstruction)
                s_ln = lf.spec.seeing.fwhm_arcsec / (0.55e-6 / (o.aperture_mm * 1e-3) * calibration.ARCSEC_PER_RAD)
                g1 = calibration.hlr_lambda_n(s_ln, 4.88 / 8.0, o.obstruction) / calibration.hlr_lambda_n(
                    s_ln, 0.0, o.obstruction)
                seeing_witness.append((lf.truth, lf.spec.seeing.kind, lf.defocus_cfz, st.hfr_px / exp_h, g1))
            if lf.truth != "ambiguous" and (dg.label == "focus_miss") != (lf.truth == "focus_miss"):
                wrong.append(f"  {lf.rig_name}, {lf.spec.seeing.kind} {lf.spec.seeing.fwhm_arcsec:.2f}\", "
                             f"{lf.defocus_cfz} CFZ (blur/seeing {lf.blur_to_seeing:.2f}, FWHM {lf.fwhm_px:.1f} px): "
                             f"{dg.label}, min blur/seeing {dg.evidence.min_blur_to_seeing}, "
                             f"HFD/FWHM {dg.evidence.profile_ratio}, r90/r50 {dg.evidence.wing_ratio}, "
                             f"stack CFZ >= {dg.evidence.stack_defocus_cfz_low} "
                             f"(blur/seeing >= {dg.evidence.stack_blur_to_seeing_low})")
    print(f"labelled set: {len(frames)} frames (seed {seed}); truth: "
          + ", ".join(f"{k} {v}" for k, v in Counter(f.truth for f in frames).items()))
    print(f"render {t_render / len(frames):.2f} s/frame, measure+diagnose {t_measure / len(frames):.2f} s/frame\n")
    tables = [("strict: every labelled frame", conf)]
    if not continuous:  # no frame of the continuous draw sits on the boundary
        tables.append(("tolerance band: frames at exactly 1 CFZ not scored", band))
    for title, cm in tables:
        rows = []
        for m in methods:
            c = cm[m]
            tp, fn = c[("focus_miss", "focus_miss")], c[("focus_miss", "not_focus")]
            fp, tn = c[("not_focus", "focus_miss")], c[("not_focus", "not_focus")]
            n = tp + fn + fp + tn
            acc = (tp + tn) / n if n else float("nan")
            amb = c[("ambiguous", "focus_miss")], c[("ambiguous", "not_focus")]
            rows.append((m, f"{tp}", f"{fn}", f"{fp}", f"{tn}", f"{100 * acc:.1f} %", f"{amb[0]}/{amb[1]}"))
        print(f"focus miss versus seeing, {title} (ambiguous/unscored: called miss / not)")
        print(table(rows, ("method", "miss->miss", "miss->not", "not->miss", "not->not", "accuracy", "unscored")))
        print()
    if not continuous:
        _print_ambiguity(seeing_witness)
    print("\nfocuswatch labels by truth:")
    truths = sorted({k[0] for k in labels})
    labs = sorted({k[1] for k in labels})
    print(table([(t, *[str(labels[(t, lb)]) for lb in labs]) for t in truths], ("truth", *labs)))
    if wrong:
        print("\nfocuswatch errors:")
        print("\n".join(wrong))


def _print_ambiguity(rows: list[tuple[str, str, float, float, float]]) -> None:
    """Why 1 CFZ is ambiguous: HFR growth at 1 CFZ against the in-focus spread of seeing kinds."""
    def rng(v: list[float]) -> str:
        return f"{min(v):.3f}-{max(v):.3f} (median {float(np.median(v)):.3f}, n={len(v)})" if v else "-"
    out = []
    for kind in ("kolmogorov", "vonkarman", "moffat"):
        focused = [r[3] for r in rows if r[1] == kind and r[2] <= 0.25]
        miss1 = [r[3] for r in rows if r[1] == kind and r[2] == 1.0 and r[0] == "focus_miss"]
        out.append((kind, rng(focused), rng(miss1)))
    print("measured HFR / calibrated in-focus HFR for the frame's TRUE seeing (a perfect seeing monitor)")
    print(table(out, ("seeing kind", "in focus (<= 0.25 CFZ)", "1 CFZ, truth focus_miss")))
    g = [r[4] for r in rows if r[2] == 1.0 and r[0] == "focus_miss"]
    ga = [r[4] for r in rows if r[2] == 1.0 and r[0] != "focus_miss"]
    print(f"true HFR growth at 1 CFZ (tables, Kolmogorov): truth focus_miss {rng(g)}; other 1 CFZ frames {rng(ga)}\n")


def defocus_accuracy(seed: int) -> None:
    """Defocus estimate from the HFR growth, 0.5-10 CFZ, on three rigs and two seeings."""
    rows = []
    rng = np.random.default_rng(seed)
    cfzs = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
    worst = {"model": 0.0, "measured": 0.0, "moffat (old)": 0.0}
    for name, ap, fl, pix, eps, vanes in po.LABELLED_RIGS[:4]:
        for see in (2.0, 3.5):
            o = po.Optics(aperture_mm=ap, focal_length_mm=fl, pixel_um=pix, obstruction=eps, n_vanes=vanes)
            n = o.f_ratio
            s = po.Seeing(see)
            img0, samp = po.continuous_psf(o, po.Aberrations(), s)
            h0 = po.encircled_radius(img0, samp) / pix
            spec0 = po.FrameSpec(optics=o, seeing=s, width_px=320, height_px=320, n_stars=36,
                                 seed=int(rng.integers(1 << 30)))
            m0 = stars.measure(frame_from_array(po.render_frame(spec0).pixels, po.frame_header(spec0))).hfr_px
            for c in cfzs:
                d = c * optics.cfz_um(n)
                img, samp = po.continuous_psf(o, po.Aberrations(defocus_um=d), s)
                h = po.encircled_radius(img, samp) / pix
                est = optics.defocus_um_from_hfr(h, h0, n, pix, eps)
                old = optics.defocus_um_from_hfr(h, h0, n, pix, eps, beta=optics.SEEING_BETA)
                # fewer stars as the disks grow: blended disks measure their neighbours, not the defocus
                blur_px = d / n / pix + 3.0 * see / o.plate_scale_arcsec_px
                n_st = int(min(36, max(4, 0.5 * (320.0 / blur_px) ** 2)))
                spec = po.FrameSpec(optics=o, seeing=s, aberrations=po.FieldAberrations(defocus_um=d), width_px=320,
                                    height_px=320, n_stars=n_st, seed=int(rng.integers(1 << 30)),
                                    min_separation_px=blur_px * 1.2,
                                    margin_px=int(min(d / n / pix / 2 + 12, 80)))
                mh = stars.measure(frame_from_array(po.render_frame(spec).pixels, po.frame_header(spec))).hfr_px
                est_m = optics.defocus_um_from_hfr(mh, m0, n, pix, eps) if (mh and m0) else float("nan")
                errs = (100 * (est / d - 1), 100 * (est_m / d - 1), 100 * (old / d - 1))
                for k, e in zip(worst, errs):
                    if math.isfinite(e):
                        worst[k] = max(worst[k], abs(e))
                rows.append((name, f'{see}"', f"{c}", f"{d:.0f}", f"{est:.0f} ({errs[0]:+.0f} %)",
                             f"{est_m:.0f} ({errs[1]:+.0f} %)", f"{old:.0f} ({errs[2]:+.0f} %)"))
    print("\ndefocus estimate from the HFR growth (given the in-focus HFR), um")
    print(table(rows, ("rig", "seeing", "CFZ", "truth", "calibrated, true HLR", "calibrated, measured HFR",
                       "Moffat geometric (old)")))
    print("worst |error|: " + ", ".join(f"{k} {v:.0f} %" for k, v in worst.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--no-astap", action="store_true")
    ap.add_argument("--skip-defocus", action="store_true")
    ap.add_argument("--continuous-frames", type=int, default=100,
                    help="frames of the second labelled set, defocus drawn uniformly over 0-3 CFZ (0: skip)")
    ap.add_argument("--continuous-seed", type=int, default=None, help="its seed (default: --seed)")
    ap.add_argument("--seeing-witness", action="store_true",
                    help="also score diagnose.frame(measured_seeing_arcsec=...): the frame's true (nominal) seeing as "
                         "from a seeing monitor, the same 10 %% off (lognormal), and the seeing the same rig's in-focus "
                         "frame gives (one more render per frame)")
    args = ap.parse_args(argv)
    focus_vs_seeing(args.frames, args.seed, not args.no_astap, args.seeing_witness)
    if args.continuous_frames > 0:
        print()
        focus_vs_seeing(args.continuous_frames, args.seed if args.continuous_seed is None else args.continuous_seed,
                        not args.no_astap, args.seeing_witness, continuous=True)
    if not args.skip_defocus:
        defocus_accuracy(args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
