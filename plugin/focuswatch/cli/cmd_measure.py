"""``measure`` and ``diagnose``: one frame or a folder through the pipeline."""
from __future__ import annotations


import argparse
from pathlib import Path

from focuswatch.errors import ConfigError, FocuswatchError
from focuswatch.render.text import emit_json, error_line, fmt
from focuswatch.cli.common import EXIT_FAIL, EXIT_OK, add_json_flag, add_rig_args, problem_printer, require_frames, rig_from_args, runner_from_args


# --------------------------------------------------------------------------- measure

def _add_measure(sub) -> None:
    p = sub.add_parser("measure", help="measure stars (HFR, FWHM, eccentricity, 3x3 zones) in frames")
    p.add_argument("files", nargs="+", metavar="FILE", help="FITS/XISF frames or folders")
    add_rig_args(p)
    add_json_flag(p)


def measure_path(path: Path, rig_table=None):
    """Load and measure one frame with the plate scale from the rig file or its header."""
    from focuswatch.io.assess import assess_path
    from focuswatch.pipeline import AssessContext

    return assess_path(path, rig_table, AssessContext(diagnose=False)).stats


def _shown_name(path: Path, parents: set[Path]) -> str:
    """The name in the table: the file name, or with frames from several folders (two nights
    both holding L_001.fits) the path below their common folder."""
    if len(parents) <= 1:
        return path.name
    import os

    try:
        return os.path.relpath(path, os.path.commonpath([str(p) for p in parents]))
    except ValueError:  # different drives (Windows)
        return str(path)


def cmd_measure(args: argparse.Namespace) -> int:
    from focuswatch.scale.batch import measure_one
    from focuswatch.scale.parallel import map_frames

    rig = rig_from_args(args)
    runner = runner_from_args(args)
    paths = require_frames(args.files)
    pcfg = None
    if getattr(args, "config", None):  # [stars] profiling; without a file the defaults (and a lighter start)
        from focuswatch.config import load_config

        pcfg = load_config(args.config).stars_config().profile()
    batch = map_frames(measure_one, paths, args=(rig, pcfg), runner=runner, progress=not args.json,
                       on_problem=problem_printer(args.json))
    n_bad = len(batch.bad) + len(batch.lost)
    parents = {p.parent for p in paths}
    if not args.json:
        print(f"{'file':<40} {'stars':>5} {'HFR px':>7} {'NINA':>6} {'FWHM px':>7} {'ecc':>5} {'HFD/FWHM':>8} "
              f"{'bkg ADU':>8} {'noise':>6}")
    for o in batch.done:
        path, st = o.path, o.value
        if st.n_stars == 0:
            n_bad += 1
            error_line(f"{path}: {st.reason}")
        if args.json:
            row = st.to_dict()  # n_stars, and `stars` kept as its published alias (docs/schema.md)
            emit_json({**row, **({"error": st.reason} if st.n_stars == 0 else {})}, kind="frame")
            continue
        name = _shown_name(path, parents)
        name = name if len(name) <= 40 else "…" + name[-39:]
        print(f"{name:<40} {st.n_stars:>5} {fmt(st.hfr_px, '7.2f')} {fmt(st.hfr_nina_px, '6.2f')} "
              f"{fmt(st.fwhm_px, '7.2f')} {fmt(st.eccentricity, '5.2f')} {fmt(st.profile_ratio, '8.2f')} "
              f"{fmt(st.background_adu, '8.0f' if abs(st.background_adu or 0) >= 10 else '8.3g')} "
              f"{fmt(st.noise_adu, '6.1f' if abs(st.noise_adu or 0) >= 1 else '6.2g')}"
              + (f"   ({st.reason})" if st.reason else ""))
    if batch.undone_text():
        error_line(batch.undone_text())
    if n_bad:
        error_line(f"{n_bad} of {len(paths)} frames could not be measured")
    return EXIT_FAIL if n_bad else EXIT_OK


# --------------------------------------------------------------------------- diagnose

def _add_diagnose(sub) -> None:
    p = sub.add_parser("diagnose", help="tell a focus miss from seeing, tilt, backfocus, coma, collimation, "
                                        "trailing and dew; several frames tell the night's story",
                       description="Diagnose one frame (label, confidence, evidence, defocus in um and CFZ, "
                                   "advice) or several frames / a folder (drift rate, seeing scatter, clouds, "
                                   "dew onset, frames to reject, the most likely problem).")
    p.add_argument("files", nargs="+", metavar="FILE", help="FITS/XISF frames or folders")
    p.add_argument("--plot", metavar="PNG", help="field map (zone HFR heat map with eccentricity whiskers) of "
                                                  "the frame, or of the last frame when several are given")
    p.add_argument("--baseline-hfr-px", type=float, dest="baseline_hfr_px",
                   help="true HFR right after the last autofocus (px): defocus from its growth")
    add_rig_args(p)
    add_json_flag(p)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from focuswatch import diagnose
    from focuswatch.scale.batch import diagnose_one
    from focuswatch.scale.parallel import map_frames

    rig0 = rig_from_args(args)
    runner = runner_from_args(args)
    paths = require_frames(args.files)
    if args.baseline_hfr_px is not None and not args.baseline_hfr_px > 0:
        raise ConfigError(f"--baseline-hfr-px {args.baseline_hfr_px}: must be a positive number of pixels")
    from focuswatch.config import load_config

    cfg = load_config(getattr(args, "config", None))
    dcfg, pcfg = cfg.diagnose_config(), cfg.stars_config().profile()  # [diagnose] thresholds, [stars]
    batch = map_frames(diagnose_one, paths, args=(rig0, args.baseline_hfr_px, dcfg, pcfg), runner=runner,
                       progress=not args.json, desc="diagnosing",
                       on_problem=problem_printer(args.json, "diagnosis"))
    results, n_bad, rig = [], len(batch.bad) + len(batch.lost), rig0
    # the night's own seeing witness (first frames at each focus, docs/diagnose.md): judged again with it
    night_context = None  # built once: the frame lines and the night's story are judged with it
    try:
        witnesses = night_context = diagnose.night_witnesses([o.value[0] for o in batch.done], rig0, dcfg,
                                                             dew_reference=True)
    except Exception as exc:  # noqa: BLE001 - optional, as in SessionScan: the frames' diagnoses stand
        error_line(f"diagnosis: the night's seeing witness failed ({exc}); frames judged without it")
        witnesses = [None] * len(batch.done)
    for o, witness in zip(batch.done, witnesses):
        st, d, rig = o.value
        d = diagnose.rejudge(d, st, rig, witness, baseline_hfr_px=args.baseline_hfr_px, config=dcfg)
        if st.n_stars == 0:  # a star-less frame is bad input, as for measure: say so, exit non-zero
            n_bad += 1
            error_line(f"{o.path}: {st.reason}")
        results.append((st, d))
        if args.json:
            emit_json(d.to_dict(), kind="diagnosis")
        else:
            print(diagnose.format_diagnosis(d, verbose=len(paths) == 1))
    if batch.undone_text():
        error_line(batch.undone_text())
    if len(results) > 1:
        if len({getattr(r[0].meta, "filter_name", None) for r in results}) > 1:
            # across filters the story's one zone is at the rig's own wavelength, not the last frame's
            # filter's (each frame is still judged at its own: rig_with_header per frame)
            rig = rig.with_(wavelength_nm=rig0.wavelength_nm)
        story = diagnose.night([r[0] for r in results], rig, diagnoses=[r[1] for r in results], config=dcfg,
                               witnesses=night_context)
        if args.json:
            emit_json({"night": story.to_dict()}, kind="night")
        else:
            print(diagnose.format_night(story))
    if args.plot and results:
        from focuswatch.render.fieldmap import plot_field_map

        try:
            plot_field_map(results[-1][0], results[-1][1], args.plot)
        except OSError as exc:  # an unwritable place is a runtime problem (exit 1), as for every other output
            raise FocuswatchError(f"--plot {args.plot}: cannot write the PNG ({exc.strerror or exc})") from None
    if n_bad:
        error_line(f"{n_bad} of {len(paths)} frames could not be read or had no stars")
    return EXIT_FAIL if n_bad else EXIT_OK
