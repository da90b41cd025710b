"""What every command shares: exit codes, ``--json``, the rig and worker arguments, input paths, problem lines."""
from __future__ import annotations


import argparse
import logging
from pathlib import Path
from typing import Any, Callable, Iterable

from focuswatch.errors import ConfigError, FrameError
from focuswatch.render.text import emit_json, error_line



log = logging.getLogger("focuswatch")


EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


# --------------------------------------------------------------------------- shared helpers

# emit_json, error_line, fmt: in focuswatch.render.text (shared with focuswatch.watch.remote), imported above


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")


def add_rig_args(p: argparse.ArgumentParser) -> None:
    """The calculator's rig inputs; each overrides the TOML file given with --rig/--config."""
    g = p.add_argument_group("rig (override the TOML file and FITS headers)")
    g.add_argument("--rig", "--config", dest="config", metavar="TOML", help="TOML file with a [rig] table")
    g.add_argument("--aperture-mm", type=float, dest="aperture_mm")
    g.add_argument("--focal-length-mm", type=float, dest="focal_length_mm")
    g.add_argument("--f-ratio", type=float, dest="f_ratio")
    g.add_argument("--pixel-um", type=float, dest="pixel_um")
    g.add_argument("--binning", type=int)
    g.add_argument("--obstruction", type=float, help="central obstruction, fraction of the aperture diameter")
    g.add_argument("--wavelength-nm", type=float, dest="wavelength_nm")
    g.add_argument("--seeing-arcsec", type=float, dest="seeing_arcsec")
    g.add_argument("--focuser-step-um", type=float, dest="focuser_step_um")


def rig_from_args(args: argparse.Namespace):
    """Rig from --rig/--config TOML plus command-line overrides (validated)."""
    from focuswatch.config import load_config, rig_from_mapping

    cfg = load_config(getattr(args, "config", None))
    values = dict(cfg.rig_table)
    for key in ("aperture_mm", "focal_length_mm", "f_ratio", "pixel_um", "binning", "obstruction",
                "wavelength_nm", "seeing_arcsec", "focuser_step_um", "seeing_tolerance_pct"):
        v = getattr(args, key, None)
        if v is not None:
            values[key] = v
    return rig_from_mapping(values, "rig" if not cfg.path else f"rig in {cfg.path}")


# --------------------------------------------------------------------------- scale (--workers, --scheduler)

#: Commands that measure many frames and so take ``--workers`` / ``--scheduler``.
SCALE_COMMANDS = ("measure", "diagnose", "report", "af", "grade", "archive")


def add_scale_args(p: argparse.ArgumentParser) -> None:
    """``--workers N`` and ``--scheduler tcp://HOST:PORT`` (see :mod:`focuswatch.scale.parallel`)."""
    g = p.add_argument_group("scale (all cores, or a Dask cluster)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="local worker processes (default: [scale] workers, else every core)")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run on this Dask scheduler; its workers must see the frames at the same paths "
                        "(default: $FOCUSWATCH_SCHEDULER, else [scale] scheduler)")


def runner_from_args(args: argparse.Namespace):
    """The :class:`~focuswatch.scale.parallel.Runner` from the flags, the environment and ``[scale]``."""
    from focuswatch.config import load_config
    from focuswatch.scale.parallel import Runner

    cfg = load_config(getattr(args, "config", None))
    return Runner.resolve(workers=getattr(args, "workers", None), scheduler=getattr(args, "scheduler", None),
                          config=cfg.scale)


def problem_printer(as_json: bool, kind: str = "frame") -> Callable[[Any], None]:
    """Say at once that a frame was bad (skipped) or left undone: a line on stderr (+ a JSON row
    of ``kind`` with ``file`` and ``error``)."""
    def say(o) -> None:
        lost = o.status == "lost"
        error_line(f"{o.path}: {'not measured: ' if lost else ''}{o.problem}")
        if as_json:
            emit_json({"file": str(o.path), "error": o.problem, **({"status": "lost"} if lost else {})}, kind=kind)
    return say


def expand_frames(items: Iterable[str]) -> list[Path]:
    """Files as given, folders expanded (recursively) to the image files inside, sorted."""
    from focuswatch.io.frames import is_image_file

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            # a symlink that is not a file (broken, a loop) is listed too, so it is named, not skipped
            out.extend(sorted(q for q in p.rglob("*") if (q.is_file() or q.is_symlink()) and is_image_file(q)))
        else:
            out.append(p)
    return out


def require_frames(items: Iterable[str]) -> list[Path]:
    """:func:`expand_frames`, refusing an empty result: a folder command given nothing to measure
    is a usage problem (exit 2), not a clean night."""
    items = list(items)
    paths = expand_frames(items)
    if not paths:
        raise ConfigError("no frames found in " + ", ".join(items))
    return paths


def require_input(path: str | Path) -> Path:
    """An input path named on the command line must exist: a missing one is a file problem
    (exit 1, as for an unreadable frame) in every command."""
    p = Path(path)
    if not p.exists():
        raise FrameError(p, "no such file or folder")
    return p
