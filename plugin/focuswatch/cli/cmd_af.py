"""``af`` (autofocus runs: V-curves, NINA reports) and ``bahtinov`` (mask frames)."""
from __future__ import annotations


import argparse

from focuswatch.render.text import emit_json, error_line
from focuswatch.cli.common import EXIT_FAIL, EXIT_OK, add_json_flag, add_rig_args, problem_printer, rig_from_args, runner_from_args


# --------------------------------------------------------------------------- af

def _add_af(sub) -> None:
    p = sub.add_parser("af", help="refit and judge autofocus runs (NINA reports or frames); temperature "
                                  "coefficient and filter offsets",
                       description="Reads NINA autofocus reports (files or NINA's AutoFocus folder) or a folder of "
                                   "frames taken at several focuser positions (FOCPOS), refits each V-curve, judges "
                                   "it and, over many runs, fits best focus against temperature per filter and the "
                                   "filter offsets. Exit 1 when no run is usable.")
    p.add_argument("paths", nargs="+", metavar="REPORT.json|FOLDER|FRAME", help="reports, frames or folders")
    add_rig_args(p)
    p.add_argument("--offset", action="store_true", help="fit the hyperbola with a constant offset (as Ekos)")
    p.add_argument("--reference-filter", dest="reference_filter", metavar="NAME",
                   help="filter whose offset is 0 (default L/Luminance, else the most used)")
    p.add_argument("--reference-temp-c", dest="reference_temp_c", type=float, metavar="C",
                   help="temperature for the filter offsets (default: the median of the runs)")
    p.add_argument("--plot", metavar="PNG", help="draw the V-curves and best focus vs temperature")
    p.add_argument("--positions", metavar="LIST|FILE",
                   help="focuser positions of the frames, one per frame in capture order: a comma list "
                        "(100,150,200) or a file of numbers (default: FOCPOS, else the frame order 1, 2, 3 ...)")
    p.add_argument("--position-key", dest="position_key", metavar="KEYWORD",
                   help="header keyword holding the focuser position (when it is not FOCPOS/FOCUSPOS)")
    add_json_flag(p)


def cmd_af(args: argparse.Namespace) -> int:
    from focuswatch import autofocus
    from focuswatch.io import afreports

    from focuswatch.render.progress import progress
    from focuswatch.scale.batch import measure_af_frames

    rig = rig_from_args(args)
    runner = runner_from_args(args)
    on_problem = problem_printer(args.json)
    # frames whose header read but whose pixels did not (bad or lost on a worker): named at once
    # by on_problem, listed with the skipped ones, and counted in the exit status below
    worker_bad: list[tuple[str, str]] = []

    def measure_frames(paths, scale):
        measured, batch = measure_af_frames(paths, scale, runner, progress=not args.json)
        for o in batch.bad + batch.lost:
            on_problem(o)
            worker_bad.append((str(o.path), o.problem))
        return measured

    def bar(items):
        return progress(items, desc="measuring", enabled=not args.json)

    runs, skipped, rig = afreports.load_runs(args.paths, rig, progress=bar,
                                             positions=args.positions, position_key=args.position_key,
                                             measure_frames=measure_frames)
    skipped = skipped + worker_bad
    summary = autofocus.analyze_runs(runs, rig, with_offset=args.offset, reference_filter=args.reference_filter,
                                     reference_temp_c=args.reference_temp_c)
    if args.plot:
        from focuswatch.render.afplots import plot_af
        plot_af(summary, args.plot)
    if args.json:
        emit_json({**summary.to_dict(), "skipped": [{"file": f, "problem": m} for f, m in skipped],
                   "rig": rig.to_dict(), "plot": args.plot}, kind="af")
    else:
        print(autofocus.summary_text(summary))
        for f, m in skipped:
            print(f"skipped {f}: {m}")
    from focuswatch.io.frames import is_image_file
    bad_frames = [(f, m) for f, m in skipped if is_image_file(f)]
    for f, m in bad_frames:
        if (f, m) not in worker_bad:  # those were named as they failed
            error_line(f"{f}: {m}")
    if summary.n_bad == len(summary.runs):
        first = summary.runs[0]
        error_line(f"{first.run.source or 'run'}: no usable autofocus run"
                   + (f" ({first.problems[-1]})" if len(summary.runs) == 1 and first.problems else ""))
        return EXIT_FAIL
    return EXIT_FAIL if bad_frames else EXIT_OK


# --------------------------------------------------------------------------- bahtinov

def _add_bahtinov(sub) -> None:
    p = sub.add_parser("bahtinov", help="focus error from a Bahtinov or Tri-Bahtinov mask image",
                       description="Finds the three spikes of a Bahtinov mask (or the nine of a Tri-Bahtinov) around "
                                   "the brightest star, measures the middle spike's offset and converts it to a focus "
                                   "error in µm against the critical focus zone; a Tri-Bahtinov's three sub-masks are "
                                   "measured one by one (their mean is the focus error, their spread a collimation "
                                   "hint). Exit 1 when no pattern is found.")
    p.add_argument("file", metavar="FILE", help="FITS/XISF frame (colour read as luminance) or a PNG/JPEG/TIFF "
                                                "picture taken through the mask")
    add_rig_args(p)
    p.add_argument("--px-per-um", type=float, dest="px_per_um", metavar="K",
                   help="calibrated offset per µm of defocus (default: the Bahtinov Grabber formula; the "
                        "geometric sub-mask formula for a Tri-Bahtinov)")
    p.add_argument("--reverse", action="store_true",
                   help="flip the sign (mask turned 180° (Tri-Bahtinov: 60°) or a mirrored image: the advice "
                        "points the wrong way)")
    p.add_argument("--plot", metavar="PNG", help="draw the star with the fitted spike lines")
    add_json_flag(p)


def cmd_bahtinov(args: argparse.Namespace) -> int:
    from focuswatch import bahtinov
    from focuswatch.io import frames
    from focuswatch.optics import rig_with_header

    frame = frames.load(args.file)
    rig = rig_with_header(rig_from_args(args), frame.meta)
    if frame.scale_px > 1 and rig.pixel_um:  # a Bayer frame measured on 2x2 superpixels
        rig = rig.with_(pixel_um=rig.pixel_um * frame.scale_px)
    try:
        result = bahtinov.analyze(frame.pixels, rig, px_per_um=args.px_per_um, reverse=args.reverse,
                                  file=str(args.file))
    except bahtinov.BahtinovError as exc:
        error_line(f"{args.file}: {exc}")
        return EXIT_FAIL
    if args.plot:
        from focuswatch.render.afplots import plot_bahtinov
        plot_bahtinov(frame.pixels, result, args.plot)
    if args.json:
        emit_json({**result.to_dict(), "plot": args.plot}, kind="bahtinov")
    else:
        print(bahtinov.result_text(result))
    return EXIT_OK
