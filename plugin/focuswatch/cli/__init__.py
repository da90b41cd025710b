"""The ``focuswatch`` command line: a thin layer over functions tests call directly.

Conventions for every subcommand: human-readable text on stdout by default, ``--json`` for
machines (one document, or JSON Lines for streams of frames); logs and error lines on
stderr; exit 0 fine, 1 runtime problem (a bad frame, an unreachable NINA), 2 bad usage or
configuration. ``check`` documents its own codes (0 fine, 1 refocus due, 2 error).

Each subcommand is one ``_add_<name>`` (its arguments) and one ``cmd_<name>`` (its body), in
the module of its group: :mod:`.cmd_measure` (measure, diagnose), :mod:`.cmd_watch` (watch,
replay, rules, check, autofocus-done), :mod:`.cmd_report` (report, grade), :mod:`.cmd_af` (af,
bahtinov), :mod:`.cmd_archive`, :mod:`.cmd_tools` (calc, sim, demo); :mod:`.common` holds what
they share and :mod:`.demo` runs the simulated night. This module registers them
(:data:`COMMANDS`) and holds :func:`main`.
"""
from __future__ import annotations


import argparse
import logging
import sys
from typing import Callable, Sequence

from focuswatch import __version__
from focuswatch.errors import ConfigError, FocuswatchError
from focuswatch.render.text import error_line
from focuswatch.cli.cmd_af import _add_af, _add_bahtinov, cmd_af, cmd_bahtinov
from focuswatch.cli.cmd_archive import _add_archive, cmd_archive
from focuswatch.cli.cmd_measure import _add_diagnose, _add_measure, cmd_diagnose, cmd_measure
from focuswatch.cli.cmd_report import _add_grade, _add_report, cmd_grade, cmd_report
from focuswatch.cli.cmd_tools import _add_calc, _add_demo, _add_sim, cmd_calc, cmd_demo, cmd_sim
from focuswatch.cli.cmd_watch import _add_autofocus_done, _add_check, _add_replay, _add_rules, _add_watch, cmd_autofocus_done, cmd_check, cmd_replay, cmd_rules, cmd_watch
from focuswatch.cli.common import (  # noqa: F401 - the old module's names stay importable from here
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    add_json_flag,
    add_rig_args,
    rig_from_args,
    SCALE_COMMANDS,
    add_scale_args,
    runner_from_args,
    problem_printer,
    expand_frames,
    require_input,
)
from focuswatch.cli.cmd_watch import _summary_text  # noqa: F401 - old name
from focuswatch.cli.cmd_tools import render_focus_zone  # noqa: F401
from focuswatch.cli.cmd_measure import measure_path  # noqa: F401
from focuswatch.cli.cmd_report import scan_with_workers  # noqa: F401

log = logging.getLogger("focuswatch")


# --------------------------------------------------------------------------- registry

#: name -> (add-parser function, command function); order is the order in --help.
COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "calc": (_add_calc, cmd_calc),
    "measure": (_add_measure, cmd_measure),
    "sim": (_add_sim, cmd_sim),
    "check": (_add_check, cmd_check),
    "autofocus-done": (_add_autofocus_done, cmd_autofocus_done),
    "af": (_add_af, cmd_af),
    "bahtinov": (_add_bahtinov, cmd_bahtinov),
    "grade": (_add_grade, cmd_grade),
    "report": (_add_report, cmd_report),
    "diagnose": (_add_diagnose, cmd_diagnose),
    "watch": (_add_watch, cmd_watch),
    "replay": (_add_replay, cmd_replay),
    "rules": (_add_rules, cmd_rules),
    "demo": (_add_demo, cmd_demo),
    "archive": (_add_archive, cmd_archive),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="focuswatch",
        description="Keeps you in focus all night and tells a focus miss from seeing, clouds, wind, dew "
                    "and optical defects.")
    parser.add_argument("--version", action="version", version=f"focuswatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    parser.add_argument("--debug", action="store_true",
                        help="debug log output, with the traceback of any unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    for name in SCALE_COMMANDS:
        if name in sub.choices:
            add_scale_args(sub.choices[name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``focuswatch`` console script; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the command's own usage, not the top level's (`replay FOLDER --aperture-mm 200`)
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        owner = sub.choices.get(args.command) if (sub is not None and args.command) else None
        (owner or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    _, func = COMMANDS[args.command]
    try:
        return int(func(args) or 0)
    except ConfigError as exc:
        error_line(str(exc))
        return EXIT_USAGE
    except FocuswatchError as exc:
        error_line(str(exc))
        return EXIT_FAIL
    except BrokenPipeError:  # before OSError, its parent: a closed pipe is not an error
        return _stdout_closed()
    except OSError as exc:  # an unwritable output folder, a full disk...: one line, not a traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        error_line(f"{where}{exc.strerror or exc}")
        return EXIT_FAIL
    except KeyboardInterrupt:
        sys.stderr.write("focuswatch: interrupted\n")
        return 130
    except Exception as exc:  # a bug of ours: one line; the traceback with --debug (and in a log file)
        log.debug("unexpected error", exc_info=True)
        if args.debug:
            raise
        error_line(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return EXIT_FAIL


def _stdout_closed() -> int:
    """The reader of our output went away (``focuswatch measure ... | head -1``): stop quietly.

    Python would print a traceback while flushing at exit; point stdout at devnull first
    (the recipe in Python's own documentation on SIGPIPE).
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test's capture)
        pass
    return EXIT_OK
