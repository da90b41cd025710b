"""``archive``: many nights into one long-term table."""
from __future__ import annotations


import argparse
import sys
from pathlib import Path

from focuswatch.errors import ConfigError
from focuswatch.render.text import emit_json, error_line
from focuswatch.cli.common import EXIT_FAIL, EXIT_OK, add_json_flag, add_rig_args, problem_printer, rig_from_args, runner_from_args


# --------------------------------------------------------------------------- archive

def _add_archive(sub) -> None:
    p = sub.add_parser("archive", help="measure every light frame under a folder once into an index; "
                                       "report where focus cost you, per night, filter and rig",
                       description="Walks ROOT, measures new or changed light frames (on all cores, or a Dask "
                                   "cluster) into an SQLite index, then writes the archive report (HTML): per "
                                   "night median HFR against the optics limit, frames outside the focus zone, "
                                   "refocus effectiveness, the temperature coefficient and filter offsets, and "
                                   "the nights that lost the most to focus. Safe to interrupt and rerun.")
    p.add_argument("root", metavar="ROOT", help="the folder of your frames (sub-folders included); never written")
    p.add_argument("--index", metavar="DB", help="the SQLite index (default: archive.sqlite in the state folder)")
    p.add_argument("-o", "--report", metavar="HTML", dest="report_out",
                   help="where to write the HTML report (default ./<root>-focuswatch-archive.html)")
    p.add_argument("--no-report", action="store_true", help="only update the index")
    p.add_argument("--no-scan", action="store_true", help="do not look for new frames: report from the index")
    p.add_argument("--export", metavar="FILE", help="also write the index rows under ROOT as .csv or .parquet")
    p.add_argument("--retry-bad", action="store_true", help="measure again frames that were unreadable last time")
    p.add_argument("--utc-offset-h", type=float, dest="utc_offset_h", metavar="H",
                   help="the site's offset from UTC, for frames without DATE-LOC or NINA file names "
                        "(default: this computer's time zone)")
    add_rig_args(p)
    add_json_flag(p)


def cmd_archive(args: argparse.Namespace) -> int:
    from focuswatch.scale import archive
    from focuswatch.scale import archive_report

    rig = rig_from_args(args)
    root = Path(args.root)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder")
    index_path = Path(args.index) if args.index else archive.default_index_path()
    # the index is written too (with its -wal/-shm companions): never next to the frames, never over one
    archive.refuse_output(index_path, root, "--index")
    out = None
    if not args.no_report:
        out = Path(args.report_out) if args.report_out else Path(f"{root.resolve().name}-focuswatch-archive.html")
        archive.refuse_output(out, root, "--report")
    if args.export:
        archive.refuse_output(Path(args.export), root, "--export")
    run = None
    with archive.ArchiveIndex(index_path) as index:
        if not args.no_scan:
            runner = runner_from_args(args)
            run = archive.update_index(root, index, rig=rig, runner=runner, utc_offset_h=args.utc_offset_h,
                                       retry_bad=args.retry_bad, progress=not args.json,
                                       on_problem=problem_printer(False))
        rows = index.rows(root)
    lights = [r for r in rows if r.get("status") == "measured"]
    rep = archive_report.build(lights, root=str(root.resolve()), rig=rig,
                               n_bad=sum(1 for r in rows if r.get("status") == "bad"),
                               n_not_light=sum(1 for r in rows if r.get("status") == "not_light"))
    if out is not None:
        # written beside and renamed, as `report` does: an interrupted run never leaves half a page
        part = out.with_name(out.name + ".part")
        try:
            part.write_text(archive_report.render_html(rep), encoding="utf-8")
            part.replace(out)
        except OSError as exc:  # name the file the user asked for, not the temporary one beside it
            part.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror or str(exc), str(out)) from None
    exported = archive.export(rows, args.export) if args.export else None
    if args.json:
        if run is not None:
            emit_json(run.to_dict())
        for rec in rep.records():
            emit_json(rec)
        if out is not None or exported is not None:
            emit_json({"kind": "archive-files", "schema": archive_report.SCHEMA, "html": out, "export": exported,
                       "index": index_path})
    else:
        if run is not None:
            fps = f", {run.frames_per_s:.1f} frames/s" if run.frames_per_s else ""
            print(f"indexed {run.root}: {run.n_files} files, {run.n_unchanged} unchanged, {run.n_measured} "
                  f"measured, {run.n_not_light} calibration, {run.n_bad} unreadable, {run.n_lost} left undone "
                  f"({run.elapsed_s:.1f} s{fps}, {run.engine}); index {index_path}")
        print(archive_report.render_text(rep))
        if out is not None:
            print(f"report written to {out}")
        if exported is not None:
            print(f"index rows exported to {exported}")
    if run is not None and run.n_lost:
        error_line(f"{run.n_lost} frame(s) left undone"
                   + (f" (first: {run.lost[0][0]}: {run.lost[0][1]})" if run.lost and run.lost[0][0] else "")
                   + "; run the same command again to finish them")
    if run is not None and run.interrupted:
        sys.stderr.write("focuswatch: interrupted; everything measured so far is in the index\n")
        return 130
    return EXIT_FAIL if run is not None and (run.n_bad or run.n_lost) else EXIT_OK
