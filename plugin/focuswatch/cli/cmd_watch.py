"""``watch``, ``replay``, ``rules``, and the capture programs' hooks ``check`` and ``autofocus-done``."""
from __future__ import annotations


import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from focuswatch.errors import ConfigError, FocuswatchError
from focuswatch.render.text import emit_json, emit_summary, error_line, fmt, summary_text
from focuswatch.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, add_json_flag, require_input

if TYPE_CHECKING:
    from focuswatch.policy import Decision, FrameRecord


# --------------------------------------------------------------------------- check / autofocus-done

def _add_state_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", metavar="DIR",
                   help="folder of state.json and autofocus-events.jsonl (default: $FOCUSWATCH_STATE_DIR or the "
                        "per-user state folder)")
    p.add_argument("--state-file", metavar="FILE", help="the state file itself (its folder holds the event log)")


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="exit 1 if the watcher says a refocus is due (for NINA hooks)",
                       description="Reads the watcher's state file. Exit status: 0 fine (also: no state yet, "
                                   "stale state), 1 refocus due, 2 error (unreadable state; with --strict also "
                                   "missing or stale state).")
    _add_state_args(p)
    p.add_argument("--max-age-min", type=float, default=60.0, metavar="MIN",
                   help="a state older than this is stale: the watcher stopped (default 60, 0 = never stale)")
    p.add_argument("--strict", action="store_true", help="exit 2 instead of 0 when there is no state or it is stale")
    p.add_argument("--clear", action="store_true",
                   help="when a refocus is due, record an autofocus now (for hooks that run the autofocus "
                        "themselves); still exits 1")
    add_json_flag(p)


def cmd_check(args: argparse.Namespace) -> int:
    from focuswatch.io import statefile as sf

    try:
        state_file, events_file = sf.resolve_paths(args.state_dir, args.state_file)
        result = sf.run_check(state_file, events_file, max_age_min=args.max_age_min, strict=args.strict,
                              clear=args.clear)
    except FocuswatchError as exc:  # check's contract: 2 = error
        if args.json:
            emit_json({"status": "error", "exit_code": sf.EXIT_ERROR, "message": str(exc), "refocus_due": None},
                      kind="check")
        error_line(str(exc))
        return sf.EXIT_ERROR
    if args.json:
        emit_json(result.to_dict(), kind="check")
    else:
        print(sf.describe_check(result))
    return result.exit_code


def _add_autofocus_done(sub) -> None:
    p = sub.add_parser("autofocus-done", help="record that an autofocus just ran (clears the refocus request)")
    _add_state_args(p)
    p.add_argument("--source", default="autofocus-done", help="who ran it (default: autofocus-done)")
    p.add_argument("--filter", dest="filter_name", help="filter used for the autofocus")
    p.add_argument("--position", type=int, help="focuser position after the autofocus, steps")
    p.add_argument("--temp-c", type=float, dest="temp_c", help="focuser temperature, °C")
    p.add_argument("--time", dest="when", metavar="ISO", help="when it finished, ISO 8601 (default: now, UTC)")
    p.add_argument("--note", default="", help="free text stored with the event")
    add_json_flag(p)


def cmd_autofocus_done(args: argparse.Namespace) -> int:
    from focuswatch.io import statefile as sf

    state_file, events_file = sf.resolve_paths(args.state_dir, args.state_file)
    event = sf.make_event(args.when, source=args.source, filter_name=args.filter_name, position=args.position,
                          temp_c=args.temp_c, note=args.note)
    state = sf.record_autofocus(state_file, events_file, event)
    if args.json:
        emit_json({"event": event.to_dict(), "state_file": state_file, "events_file": events_file,
                   "state": state.to_dict()}, kind="autofocus-done")
    else:
        print(f"autofocus recorded at {event.time} ({event.source}); refocus request cleared in {state_file}")
    return EXIT_OK


# --------------------------------------------------------------------------- watch / replay / rules / demo

def _decision_row(p) -> dict[str, Any]:
    """One ``watch``/``replay`` --json row: the decision's fields plus ``file`` and ``status``."""
    if p.decision is not None:
        return {**p.decision.to_dict(), "file": str(p.path), "status": p.status}
    why = p.error or ("calibration frame (not a light)" if p.status == "ignored" else p.status)
    return {"file": str(p.path), "status": p.status, "decision": "skip", "reasons": [why], "hfr_px": None,
            "defocus_um": None, "defocus_cfz": None}


def _decision_text(p) -> str:
    d = p.decision
    if d is None:
        return f"{p.path.name}  skip     {p.error or 'calibration frame (ignored)'}"
    cfz = f" ({fmt(d.defocus_cfz, '.2f')} CFZ)" if d.defocus_cfz is not None else ""
    # a single frame's estimate jitters with the seeing; the drift model's is the steady one
    model = f", trend {fmt(d.model_defocus_um, '.0f')} µm" if d.model_defocus_um is not None else ""
    return (f"{p.path.name}  {d.decision:<7}  {d.filter_name or '-':<4} HFR {fmt(d.hfr_px, '.2f')} px  "
            f"defocus {fmt(d.defocus_um, '.0f')} µm{cfz}{model}  {'; '.join(d.reasons)}")


_summary_text = summary_text  # old name, kept for anyone importing it


def _add_watch(sub) -> None:
    p = sub.add_parser("watch", help="watch the folder your capture program saves into; ask for a refocus when due",
                       description="Measures every new light frame once it is completely written, runs the refocus "
                                   "policy, records everything in the journal, writes the state file for "
                                   "`focuswatch check` and fires the [trigger]s. Ctrl-C stops.")
    p.add_argument("folder", metavar="FOLDER", nargs="?",
                   help="the folder frames are saved into (sub-folders included); not with --nina-api")
    p.add_argument("--nina-api", dest="nina_api", metavar="HOST[:PORT]",
                   help="without FOLDER: remote mode, NINA's Advanced API events only (docs/remote.md); with "
                        "FOLDER: NINA's IMAGE-SAVE marks a file complete and AUTOFOCUS-FINISHED confirms an autofocus")
    p.add_argument("--config", "--rig", dest="config", metavar="TOML", help="[rig], [policy], [trigger] settings")
    p.add_argument("--journal", metavar="FILE", help="SQLite journal (default: journal.sqlite in the state folder)")
    _add_state_args(p)
    p.add_argument("--af-folder", metavar="DIR",
                   help=r"NINA's autofocus report folder (default on Windows: %%LOCALAPPDATA%%\NINA\AutoFocus)")
    p.add_argument("--no-recursive", action="store_true", help="do not watch sub-folders")
    p.add_argument("--poll", action="store_true", help="poll the folder instead of OS events (network shares)")
    p.add_argument("--interval-s", type=float, default=None, metavar="S",
                   help="worker poll interval (default: [watch] poll_interval_s, 0.5)")
    p.add_argument("--max-minutes", type=float, metavar="MIN", help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--no-diagnose", action="store_true", help="do not ask the single-frame diagnosis")
    add_json_flag(p)


def cmd_watch(args: argparse.Namespace) -> int:
    import threading

    from focuswatch.io import statefile
    from focuswatch.config import load_config
    from focuswatch.io.journal import Journal, default_journal_path
    from focuswatch.triggers import TriggerRunner
    from focuswatch.watch import Watcher, default_nina_autofocus_dir, policy_from_config

    if getattr(args, "nina_api", None) and not args.folder:
        return cmd_watch_remote(args)
    nina_api = None
    if getattr(args, "nina_api", None):  # FOLDER and --nina-api: IMAGE-SAVE says when a file is complete
        from focuswatch.watch.nina_events import parse_host_port
        try:
            nina_api = parse_host_port(args.nina_api)
        except ValueError as exc:
            raise ConfigError(f"--nina-api {args.nina_api!r}: {exc}; expected HOST or HOST:PORT (default port 1888)") \
                from None
    if not args.folder:
        raise ConfigError("watch: give the FOLDER frames are saved into, or --nina-api HOST[:PORT]")
    cfg = load_config(args.config)
    policy = policy_from_config(cfg)
    state_file, events_file = statefile.resolve_paths(args.state_dir, args.state_file)
    journal_path = Path(args.journal) if args.journal else (
        state_file.parent / "journal.sqlite" if (args.state_dir or args.state_file) else default_journal_path())
    af_folder = args.af_folder or default_nina_autofocus_dir()

    bad: list[str] = []  # frames that could not be measured: the exit status says so at the end

    def on_processed(p) -> None:
        if p.status == "error":
            bad.append(str(p.path))
        emit_json(_decision_row(p), kind="decision") if args.json else print(_decision_text(p), flush=True)

    def on_trigger(r) -> None:
        if args.json:
            emit_json({"event": "trigger", **r.to_dict()}, kind="trigger")
        else:
            print(f"trigger {r.trigger}: {'ok' if r.ok else 'FAILED'} — {r.message}", flush=True)

    def on_autofocus(m) -> None:
        emit_json({"event": "autofocus", **m.to_dict()}, kind="autofocus") if args.json else print(
            f"autofocus ({m.source}): new baseline from the next frames", flush=True)

    def on_autofocus_verdict(m, status, why) -> None:
        if status == "confirmed":
            return  # on_autofocus says it
        if args.json:
            emit_json({"event": "autofocus-rejected", "status": status, "reason": why, **m.to_dict()},
                      kind="autofocus")
        else:
            print(f"autofocus ({m.source}) {'FAILED (moved back)' if status == 'failed' else 'not confirmed'}: "
                  f"{why}; the baseline and the refocus request stay", flush=True)

    with Journal(journal_path) as journal:
        runner = TriggerRunner.from_config(cfg.trigger)
        w = Watcher(args.folder, journal, config=cfg, policy=policy, state_file=state_file, events_file=events_file,
                    runner=runner, af_folder=af_folder, recursive=False if args.no_recursive else None,
                    poll=True if args.poll else None, poll_interval_s=args.interval_s, on_processed=on_processed,
                    on_trigger=on_trigger, on_autofocus=on_autofocus, diagnose=False if args.no_diagnose else None,
                    nina_api=nina_api, on_autofocus_verdict=on_autofocus_verdict)
        if not args.json:
            print(f"watching {w.folder} (journal {journal_path}, state {state_file}); Ctrl-C stops", flush=True)
        stop = threading.Event()
        try:
            w.run(stop, max_s=args.max_minutes * 60 if args.max_minutes else None)
        except KeyboardInterrupt:
            stop.set()
            w.stop()
        from focuswatch.policy import summarize
        emit_summary(summarize(w.decisions, w.monitor.state.n_autofocus), args.json)
    if w.journal_problems:  # each was one line at the start; the watch carried on without them
        error_line(f"{len(w.journal_problems)} row(s) of {journal_path} could not be read back at the start "
                   "(left in the journal as they are)")
    if w.journal_unwritten:  # each was one line when it happened; decisions and triggers went on
        error_line(f"{w.journal_unwritten} row(s) could not be written to {journal_path}")
    if bad:  # each was one line when it arrived; the watch carried on
        error_line(f"{len(bad)} frame(s) could not be measured while watching {args.folder}")
    return EXIT_FAIL if bad or w.journal_problems or w.journal_unwritten else EXIT_OK


# --------------------------------------------------------------------------- remote mode (focuswatch.watch.remote)

def _remote_row(rec: FrameRecord, d: Decision) -> dict[str, Any]:
    """One ``--json`` decision row of remote mode (NINA's figures: no path, no diagnosis)."""
    return {**d.to_dict(), "file": rec.file, "status": "measured", "n_stars": rec.n_stars, "source": "nina-api"}


def _remote_text(rec: FrameRecord, d: Decision) -> str:
    """One text line of remote mode: as ``watch``'s, without the defocus NINA's HFR cannot give."""
    return (f"{rec.file}  {d.decision:<7}  {rec.filter_name or '-':<4} HFR {fmt(d.hfr_px, '.2f')} px  "
            f"stars {rec.n_stars}  {'; '.join(d.reasons)}")


def cmd_watch_remote(args: argparse.Namespace) -> int:
    """``focuswatch watch --nina-api HOST[:PORT]``: the policy on NINA's events, triggers as configured."""
    import threading

    from focuswatch.config import load_config
    from focuswatch.policy import summarize
    from focuswatch.watch.nina_events import parse_host_port
    from focuswatch.triggers import TriggerRunner
    from focuswatch.watch.config import policy_from_config
    from focuswatch.watch.remote import RemoteSession, run_remote

    try:
        host, port = parse_host_port(args.nina_api)
    except ValueError as exc:
        raise ConfigError(f"--nina-api {args.nina_api!r}: {exc}; expected HOST or HOST:PORT (default port 1888)") \
            from None
    cfg = load_config(args.config)
    session = RemoteSession(policy=policy_from_config(cfg), rig=cfg.rig,
                            runner=TriggerRunner.from_config(cfg.trigger))
    session.on_decision = (lambda r, d: emit_json(_remote_row(r, d), kind="decision")) if args.json else (
        lambda r, d: print(_remote_text(r, d), flush=True))
    session.on_trigger = (lambda r: emit_json({"event": "trigger", **r.to_dict()}, kind="trigger")) if args.json \
        else (lambda r: print(f"trigger {r.trigger}: {'ok' if r.ok else 'FAILED'} — {r.message}", flush=True))
    session.on_autofocus = (lambda m: emit_json({"event": "autofocus", **m.to_dict()}, kind="autofocus")) \
        if args.json else (lambda m: print("autofocus finished (NINA): new baseline from the next frames", flush=True))
    session.on_status = (lambda s: emit_json({"event": "connection", **s.to_dict()}, kind="connection")) \
        if args.json else (lambda s: print(s.message, flush=True))
    if not args.json:
        print(f"listening to NINA at {host}:{port} (Advanced API WebSocket); Ctrl-C stops", flush=True)
    stop = threading.Event()
    try:
        run_remote(host, port, session, stop, max_s=args.max_minutes * 60 if args.max_minutes else None)
    except KeyboardInterrupt:
        stop.set()
    emit_summary(summarize(session.decisions, session.monitor.state.n_autofocus), args.json)
    return EXIT_OK


def cmd_replay_history(args: argparse.Namespace) -> int:
    """``focuswatch replay IMAGE_HISTORY.json``: a saved NINA image history through the policy."""
    from focuswatch.config import load_config
    from focuswatch.policy import summarize
    from focuswatch.watch.config import policy_from_config
    from focuswatch.watch.remote import RemoteSession, replay_history

    cfg = load_config(args.config)
    session = RemoteSession(policy=policy_from_config(cfg), rig=cfg.rig)
    session.on_decision = (lambda r, d: emit_json(_remote_row(r, d), kind="decision")) if args.json else (
        lambda r, d: print(_remote_text(r, d), flush=True))
    rows = replay_history(args.folder, session)
    emit_summary(summarize(session.decisions, session.monitor.state.n_autofocus), args.json)
    if not any(d is not None for _, d in rows):
        error_line(f"{args.folder}: no light frames in this image history")
        return EXIT_FAIL
    return EXIT_OK


def _add_replay(sub) -> None:
    p = sub.add_parser("replay", help="run a finished night through the refocus policy: what would have happened",
                       description="Measures the frames of FOLDER in DATE-OBS order and runs the same policy as "
                                   "`watch` (an autofocus counts from the first frame written after it, as in "
                                   "`watch`) without firing anything or writing anywhere; one line per frame and "
                                   "a summary. Use it to tune [policy] on your own nights.")
    p.add_argument("folder", metavar="FOLDER", help="the night's frames (sub-folders included), or a saved NINA "
                                                    "image history (/v2/api/image-history?all=true) .json")
    p.add_argument("--config", "--rig", dest="config", metavar="TOML", help="[rig] and [policy] settings")
    p.add_argument("--af-folder", metavar="DIR", help="NINA autofocus reports of that night (baseline resets)")
    p.add_argument("--events", metavar="FILE", help="an autofocus-events.jsonl log of that night")
    p.add_argument("--no-diagnose", action="store_true", help="do not ask the single-frame diagnosis")
    add_json_flag(p)


def cmd_replay(args: argparse.Namespace) -> int:
    from focuswatch.config import load_config
    from focuswatch.policy import summarize
    from focuswatch.watch import autofocus_signals, replay

    if Path(args.folder).is_file() and Path(args.folder).suffix.lower() == ".json":
        return cmd_replay_history(args)
    if not require_input(args.folder).is_dir():
        raise ConfigError(f"{args.folder}: not a folder (replay reads a night's folder or a saved NINA image-history .json)")
    cfg = load_config(args.config)
    marks = autofocus_signals(args.af_folder, args.events)  # every signal, read as `watch` reads them

    def on_row(p) -> None:
        if p.status == "error":
            error_line(p.error or str(p.path))
        emit_json(_decision_row(p), kind="decision") if args.json else print(_decision_text(p), flush=True)

    rows, mon = replay(args.folder, config=cfg, af_marks=marks, on_row=on_row, diagnose=not args.no_diagnose)
    emit_summary(summarize([r.decision for r in rows if r.decision is not None], mon.state.n_autofocus), args.json)
    if not rows:  # as measure and diagnose: an empty folder is a usage problem
        error_line(f"{args.folder}: no FITS/XISF frames found")
        return EXIT_USAGE
    ok = any(r.status == "measured" for r in rows) and not any(r.status == "error" for r in rows)
    return EXIT_OK if ok else EXIT_FAIL


def _add_rules(sub) -> None:
    p = sub.add_parser("rules", help="print the refocus rules and vetoes with their current settings")
    p.add_argument("--config", dest="config", metavar="TOML", help="[policy] settings to show")
    add_json_flag(p)


def cmd_rules(args: argparse.Namespace) -> int:
    from focuswatch import policy as monitor
    from focuswatch.config import load_config
    from focuswatch.watch import policy_from_config

    rows = monitor.rules_table(policy_from_config(load_config(args.config)))
    if args.json:
        emit_json({"rules": rows}, kind="rules")
        return EXIT_OK
    for r in rows:
        settings = ", ".join(f"{k} = {v}" for k, v in r["settings"].items())
        if r["kind"] == "rule":
            state = "on " if r["active"] else "off"
            print(f"rule  {r['name']:<14} {state} {r['fires_when']}" + (f"  [{settings}]" if settings else "")
                  + (f"  (off: {r['off_when']})" if r["off_when"] else ""))
        else:
            print(f"veto  {r['name']:<22} {r['effect']:<4} ({r['scope']} rules) {r['fires_when']}")
    return EXIT_OK
