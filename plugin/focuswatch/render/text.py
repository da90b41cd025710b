"""The few output helpers every command shares: one JSON line, one error line, a number, a summary.

They live here, not in :mod:`focuswatch.cli`, so that modules with their own command bodies
(:mod:`focuswatch.watch.remote`) print exactly as the CLI does without importing the CLI (the CLI
imports nearly everything; importing it back made cycles). ``cli`` re-exports them under their
old names.
"""
from __future__ import annotations

import math
import sys
from typing import Any

from focuswatch.model.records import dumps, json_safe, tagged


def emit_json(obj: Any, stream=None, *, kind: str | None = None) -> None:
    """Print one JSON document on one line (JSON Lines when called repeatedly).

    ``kind`` tags the line with ``"kind"`` and ``"schema"`` (docs/schema.md); every line a
    command prints names its kind.
    """
    stream = stream or sys.stdout
    stream.write(dumps(tagged(kind, json_safe(obj)) if kind else obj) + "\n")
    stream.flush()


def error_line(message: str) -> None:
    """One clear line on stderr: ``focuswatch: error: <file or setting>: <what is wrong>``."""
    sys.stderr.write(f"focuswatch: error: {message}\n")
    sys.stderr.flush()


def fmt(value: Any, spec: str = ".2f", unit: str = "") -> str:
    """Format a possibly-missing number for human output."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "—".rjust(int(width)) if width else "—"
    return f"{value:{spec}}{unit}"


def summary_text(s: Any) -> str:
    """One line for a night's :class:`~focuswatch.policy.Summary` (``watch``, ``replay``)."""
    rules = ", ".join(f"{k} {v}" for k, v in s.refocus_rules.items()) or "none"
    skips = ", ".join(f"{k} {v}" for k, v in s.skip_reasons.items()) or "none"
    return (f"{s.n_frames} frames: {s.n_ok} ok, {s.n_refocus} refocus ({rules}), {s.n_skip} set aside ({skips}); "
            f"autofocus runs seen {s.n_autofocus}; worst defocus {fmt(s.max_defocus_um, '.0f')} µm "
            f"({fmt(s.max_defocus_cfz, '.2f')} CFZ); median HFR {fmt(s.median_hfr_px, '.2f')} px")


def emit_summary(s: Any, as_json: bool) -> None:
    """A night's summary as every night command ends (``watch``, ``replay``, NINA remote):
    one ``summary`` JSON line, or :func:`summary_text`."""
    if as_json:
        emit_json({"summary": s.to_dict()}, kind="summary")
    else:
        print(summary_text(s))


__all__ = ["emit_json", "emit_summary", "error_line", "fmt", "summary_text"]
