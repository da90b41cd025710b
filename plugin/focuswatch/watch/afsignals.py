"""Autofocus signals as ``watch`` and ``replay`` read them: NINA reports and event-log lines.

A NINA autofocus report (:func:`report_signal`) becomes a mark *and* a candidate that the
night session must confirm from the next light frame (NINA writes the report before it
validates the run); an ``autofocus-done`` event-log line (:func:`event_signal`) becomes a
mark. Both travel as :class:`~focuswatch.watch.loop.AFSignal`. The live watcher polls them one
by one; :func:`autofocus_signals` reads a finished night's all at once for ``replay``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from focuswatch.errors import FrameError
from focuswatch.model.records import parse_iso
from focuswatch.policy import AutofocusMark, afconfirm
from focuswatch.watch.loop import AFSignal


def _mtime(p: Path) -> float:
    try:
        return os.stat(p).st_mtime
    except OSError:
        return float("inf")


def _epoch(text: str | None) -> float | None:
    """Seconds since the epoch for an ISO time; a naive time is the local time (NINA reports)."""
    dt = parse_iso(str(text), naive_is_local=True) if text else None
    return dt.timestamp() if dt else None


def nina_report_candidate(path: str | Path) -> tuple[AutofocusMark, afconfirm.AFCandidate] | None:
    """The mark a NINA autofocus report would apply and the :class:`~focuswatch.policy.afconfirm.AFCandidate`
    that must be confirmed first; ``None`` while the report is unreadable.

    NINA writes the report at the end of a run, *before* it validates it (N.I.N.A. 3.x
    ``AutoFocusVM.cs``: ``GenerateReport`` then the validation; a failed run moves the focuser
    back to ``InitialFocusPoint``), so a report alone does not prove a new focus.
    """
    from focuswatch.io.afreports import read_nina_report

    p = Path(path)
    try:
        run = read_nina_report(p)
        when = _epoch(run.timestamp) or p.stat().st_mtime
    except (FrameError, OSError):
        return None
    pos = run.reported_position_steps
    mark = AutofocusMark(time_s=float(when), source="nina-report", filter_name=run.filter_name,
                         temp_c=run.temp_c, position=int(round(pos)) if pos is not None else None)
    return mark, afconfirm.candidate_from_run(run, float(when), source="nina-report")


def mark_from_nina_report(path: str | Path) -> AutofocusMark | None:
    """An :class:`AutofocusMark` from a NINA autofocus report, ``None`` while it is unreadable.

    A report still being written or garbled is skipped and retried at the next poll. Reading
    is :func:`focuswatch.io.afreports.read_nina_report`'s job; the watcher applies it only once
    confirmed (:func:`nina_report_candidate`); ``replay`` applies it as is.
    """
    got = nina_report_candidate(path)
    return got[0] if got else None


def mark_from_event(event: Any) -> AutofocusMark:
    """A ``statefile.AutofocusEvent`` as the policy's :class:`AutofocusMark`."""
    return AutofocusMark(time_s=event.datetime_utc.timestamp(), source=event.source,
                         filter_name=event.filter_name, temp_c=event.temp_c, position=event.position)


def event_signal(event: Any) -> AFSignal:
    """An event-log line (``statefile.AutofocusEvent``) as the night session's signal."""
    return AFSignal(f"{event.source}:{event.time}", mark_from_event(event), event=event)


def report_signal(path: str | Path) -> AFSignal | None:
    """A NINA autofocus report as the night session's signal (its run parsed, to be confirmed);
    ``None`` while it is unreadable."""
    p = Path(path)
    got = nina_report_candidate(p)
    if got is None:
        return None
    return AFSignal(f"nina-report:{p.name}", got[0], report=p.name, candidate=got[1], written_s=_mtime(p))


def autofocus_signals(af_folder: str | Path | None = None, events_file: str | Path | None = None) -> list[AFSignal]:
    """Every autofocus signal of a finished night, as ``watch`` reads them: the NINA reports of
    ``af_folder`` and the lines of an ``autofocus-events.jsonl`` (for ``replay``)."""
    from focuswatch.io import statefile

    out: list[AFSignal] = []
    if af_folder is not None:
        out += [s for s in (report_signal(p) for p in sorted(Path(af_folder).glob("*.json"))) if s is not None]
    if events_file is not None:
        out += [event_signal(e) for e in statefile.read_autofocus_events(events_file)]
    return sorted(out, key=lambda s: s.mark.time_s)
