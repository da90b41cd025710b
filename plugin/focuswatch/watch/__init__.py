"""Watching a capture folder: new frames in; decisions, journal rows, state file and triggers out.

I/O only: every decision is the policy's (:mod:`focuswatch.policy`), and the night itself
(autofocus order, NINA confirmation, the frame step) is one loop, :class:`~focuswatch.watch.loop.NightSession`,
that both the live watcher and ``replay`` feed. The parts, by job:

==========================  ===============================================================
module                      job
==========================  ===============================================================
:mod:`.config`              ``[watch]`` / ``[policy]`` tables (:class:`WatchConfig`), NINA's report folder
:mod:`.loop`                the night session: frames and autofocus signals in, decisions out
:mod:`.readiness`           is a file whole yet? a state machine fed ``(size, mtime, now)``
:mod:`.watcher`             :class:`Watcher`: watchdog events, catch-up scans, readiness, capture order
:mod:`.sink`                where a watched night's results go: journal, ``state.json``, triggers
:mod:`.afsignals`           NINA reports and event-log lines as autofocus signals
:mod:`.afinputs`            the live watcher's autofocus inputs: event log, report folder, NINA API
:mod:`.replay`              a finished night through the same loop (:func:`replay`, :func:`list_frames`)
:mod:`.nina_events`         NINA's Advanced API: IMAGE-SAVE, AUTOFOCUS-FINISHED, image history
:mod:`.remote`              ``watch --nina-api`` without a folder: the policy on NINA's events
==========================  ===============================================================

A bad frame is logged as one line and skipped (:mod:`focuswatch.boundary` words whatever went
wrong); it never stops the watcher. Triggers run in their own worker with an overall deadline
(:mod:`focuswatch.triggers.runner`), so a slow NINA never delays measuring and ``stop()`` returns
within seconds. A restart continues from the journal: seen files are not measured again and
the policy's memory is rebuilt from the recorded decisions, so nothing is triggered twice —
except a refocus no trigger ever answered (the watcher was killed first), which is asked again.

The names below are importable from ``focuswatch.watch`` itself, as before the split.
"""
from __future__ import annotations

from focuswatch.watch.afsignals import (autofocus_signals, event_signal, mark_from_event,
                                        mark_from_nina_report, nina_report_candidate, report_signal)
from focuswatch.watch.config import WatchConfig, default_nina_autofocus_dir, policy_from_config, watch_from_config
from focuswatch.watch.loop import _NOT_APPLIED  # noqa: F401 - the report reads it from here
from focuswatch.watch.loop import AF_FAILED, AF_SAME_RUN, AF_UNCONFIRMED, UNCONFIRMED
from focuswatch.watch.loop import (AFSignal, NinaRun, Processed, confirm_from_start, is_nina_source, judge_nina_run,
                                   measure_record)
from focuswatch.watch.replay import list_frames, replay
from focuswatch.watch.watcher import MIN_PASS_GAP_S, STALE_EVENT_H, Watcher

__all__ = [
    "AF_FAILED", "AF_SAME_RUN", "AF_UNCONFIRMED", "AFSignal", "MIN_PASS_GAP_S", "NinaRun", "Processed",
    "STALE_EVENT_H", "UNCONFIRMED", "WatchConfig", "Watcher", "autofocus_signals", "confirm_from_start",
    "default_nina_autofocus_dir", "event_signal", "is_nina_source", "judge_nina_run", "list_frames",
    "mark_from_event", "mark_from_nina_report", "measure_record", "nina_report_candidate", "policy_from_config",
    "replay", "report_signal", "watch_from_config",
]
