"""``report`` (a night's focus report) and ``grade`` (subs and their Siril master)."""
from __future__ import annotations


import argparse
from pathlib import Path

from focuswatch.errors import ConfigError
from focuswatch.render.text import emit_json, error_line
from focuswatch.cli.common import EXIT_FAIL, EXIT_OK, add_json_flag, add_rig_args, require_input, rig_from_args, runner_from_args


# --------------------------------------------------------------------------- grade / report

def _add_siril_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--siril", metavar="PATH", help="siril-cli to use (default: $FOCUSWATCH_SIRIL, then PATH)")
    p.add_argument("--siril-timeout", dest="siril_timeout", type=float, default=1800.0, metavar="S",
                   help="seconds Siril may take per stack (default 1800)")
    p.add_argument("--keep", metavar="DIR", help="keep Siril's work and the masters here (outside the session)")


def _add_grade(sub) -> None:
    p = sub.add_parser("grade", help="stack a session with Siril per filter and grade the master against the rig")
    p.add_argument("source", metavar="SESSION_FOLDER|MASTER", help="a session folder, or a master FITS to grade")
    add_rig_args(p)
    _add_siril_args(p)
    add_json_flag(p)


def cmd_grade(args: argparse.Namespace) -> int:
    from focuswatch.render import report
    from focuswatch.config import load_config

    rig = rig_from_args(args)
    src = require_input(args.source)
    if src.is_file():
        result = report.grade_master_file(src, rig=rig, siril_path=args.siril, timeout_s=args.siril_timeout,
                                          config=load_config(args.config).grade_config())
    elif src.is_dir():
        scan = scan_with_workers(args, src, rig)
        result = report.grade_session(src, rig=rig, siril_path=args.siril, keep_dir=args.keep,
                                      config=load_config(args.config).grade_config(),
                                      timeout_s=args.siril_timeout, progress=not args.json, scan=scan)
    else:
        raise ConfigError(f"{src}: no such file or folder")
    if args.json:
        emit_json(result.to_dict(), kind="grade")
    else:
        print(report.format_grade(result))
    if not any(f.grade is not None for f in result.filters):
        error_line(f"{src}: nothing could be graded"
                   + (f" ({result.filters[0].problem})" if result.filters and result.filters[0].problem else ""))
        return EXIT_FAIL
    unreadable = scan.unreadable if src.is_dir() else []
    for bad in unreadable:  # graded without them; each named once, and the exit status says so
        error_line(f"{bad.file}: {bad.problem}")
    return EXIT_FAIL if unreadable else EXIT_OK


def scan_with_workers(args: argparse.Namespace, folder: Path, rig):
    """Measure a session's frames on ``--workers`` / ``--scheduler``.

    The result is :func:`focuswatch.render.report.scan_session`'s, measured on workers."""
    from focuswatch.config import load_config
    from focuswatch.scale.batch import scan_session

    cfg = load_config(getattr(args, "config", None))  # [diagnose] thresholds, [stars] profiling
    scan, batch = scan_session(folder, rig=rig, progress=not args.json, runner=runner_from_args(args),
                               diagnose_config=cfg.diagnose_config(), profile_config=cfg.stars_config().profile())
    if batch.undone_text():
        error_line(batch.undone_text())
    return scan


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML night report (plots, diagnosis, grade)")
    p.add_argument("session", metavar="SESSION", nargs="?", help="the session folder")
    p.add_argument("-o", "--out", metavar="HTML", help="where to write it (default ./<session>-focuswatch-report.html)")
    p.add_argument("--journal", metavar="DB", help="the watcher's journal (default: found by itself in the "
                                                   "watcher's state folder)")
    p.add_argument("--no-journal", action="store_true", help="do not look for the watcher's journal")
    p.add_argument("--from-json", dest="from_json", metavar="JSON",
                   help="re-render a saved `report --json` without measuring again")
    p.add_argument("--grade", action="store_true", help="also stack with Siril and grade the masters")
    add_rig_args(p)
    _add_siril_args(p)
    add_json_flag(p)


def cmd_report(args: argparse.Namespace) -> int:
    from focuswatch.render import report
    from focuswatch.config import load_config
    from focuswatch.watch import policy_from_config

    if args.from_json:
        if args.session or args.grade:
            raise ConfigError("--from-json re-renders a saved report: give no SESSION and no --grade")
        rep = report.load_report(require_input(args.from_json))
        path = report.write_report(rep, Path(args.out) if args.out else report.default_report_path(rep.session),
                                   protected=rep.session if rep.session and Path(rep.session).is_dir() else None)
        if args.json:
            emit_json({**rep.to_dict(), "html": str(path)}, kind="report")
        else:
            print(f"{path}: re-rendered from {args.from_json}")
        return EXIT_OK
    if not args.session:
        raise ConfigError("report: give the SESSION folder (or --from-json FILE)")
    rig = rig_from_args(args)
    policy = policy_from_config(load_config(args.config))
    session = require_input(args.session)
    if not session.is_dir():
        raise ConfigError(f"{session}: not a folder")
    out = Path(args.out) if args.out else report.default_report_path(session)
    report.check_output_path(out, session)
    scan = scan_with_workers(args, session, rig)
    graded = None
    if args.grade:
        graded = report.grade_session(session, rig=rig, siril_path=args.siril, keep_dir=args.keep,
                                      config=load_config(args.config).grade_config(),
                                      timeout_s=args.siril_timeout, progress=not args.json, scan=scan)
    journal = None if args.no_journal else (args.journal or report.AUTO)
    rep = report.build_report(session, rig=rig, scan=scan, journal_path=journal, grade=graded, policy=policy)
    path = report.write_report(rep, out, protected=session)
    if args.json:
        emit_json({**rep.to_dict(), "html": str(path)}, kind="report")
    else:
        print(f"{path}: {len(rep.points)} frames, {len(rep.left_out)} left out"
              + "".join(f"; {f.filter_name} grade {f.grade_letter}" for f in rep.filters if f.grade_letter))
        print(report.render_text(rep))
    for bad in scan.unreadable:  # one line each; the report is still written, the exit status says so
        error_line(f"{bad.file}: {bad.problem}")
    return EXIT_FAIL if scan.unreadable else EXIT_OK
