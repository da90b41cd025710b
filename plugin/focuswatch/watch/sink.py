"""The watcher's sink: where a watched night's results go (journal, state file, triggers, callbacks).

:class:`~focuswatch.watch.loop.NightSession` decides; everything that leaves it goes through a
:class:`~focuswatch.watch.loop.NightSink`. ``replay`` passes one that writes nothing; the live
:class:`~focuswatch.watch.watcher.Watcher` passes :class:`_WatcherSink`, which writes the
journal rows, rewrites ``state.json`` after every decision, hands a refocus request to the
trigger runner and journals its answers, and calls the CLI's callbacks. The watcher keeps the
state it restores at start-up (``Watcher._state``); the sink is the only writer after that.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from focuswatch.errors import JournalError, StateFileError
from focuswatch.policy import AutofocusMark, Decision, FrameRecord
from focuswatch.watch.loop import NightSink, Processed

log = logging.getLogger("focuswatch.watch")


class _WatcherSink(NightSink):
    """The watcher's side of the night session: journal rows, the state file, the triggers and
    the CLI's callbacks."""

    def __init__(self, w: Any):
        self.w = w   # the Watcher that owns this sink (not imported: it builds the sink)

    def record_frame(self, key: Any, **kw: Any) -> None:
        if key is None:
            return
        try:
            _, did = self.w.journal.record_frame(key, **kw)
        except JournalError as exc:  # locked past its timeout, disk full: one line, the night goes on
            self._journal_failed(f"frame {key[0]}", exc)
            return
        if kw.get("decision") is not None:
            self.w._last_decision_id = did

    def record_autofocus(self, key: str, mark: AutofocusMark) -> None:
        try:
            self.w.journal.record_autofocus(key, mark)
        except JournalError as exc:
            self._journal_failed(f"autofocus {key}", exc)

    def _journal_failed(self, what: str, exc: JournalError) -> None:
        """A journal row that could not be written: said in one line and counted (``watch`` exits 1
        at the end); the decision, the state file and the triggers still go ahead. The row is
        lost from the journal only, and the line says which."""
        log.error("%s: not recorded in the journal (%s); watching goes on", what, exc)
        self.w.n_errors += 1
        self.w.journal_unwritten += 1

    def counted_autofocus(self, mark: AutofocusMark, event: Any) -> None:
        from focuswatch.io import statefile

        w = self.w
        if w.runner is not None:
            w.runner.resolve()
        if w._state is not None:
            event = event or statefile.AutofocusEvent(
                time=statefile.iso_utc(datetime.fromtimestamp(mark.time_s).astimezone()), source=mark.source,
                filter_name=mark.filter_name, position=mark.position, temp_c=mark.temp_c)
            w._state = w._state.cleared(event)
            self.write_state()
        if w.on_autofocus:
            w.on_autofocus(mark)

    def decided(self, record: FrameRecord, decision: Decision, request: Any) -> None:
        self.after_decision(record, decision, request)

    def verdict(self, mark: AutofocusMark, status: str, reason: str) -> None:
        if self.w.on_autofocus_verdict:
            self.w.on_autofocus_verdict(mark, status, reason)

    def processed(self, out: Processed) -> None:
        if out.status == "error":
            self.w.n_errors += 1
        if self.w.on_processed:
            self.w.on_processed(out)

    # ------------------------------------------------------------------ state file, triggers
    def write_state(self) -> None:
        w = self.w
        if w.state_file is None or w._state is None:
            return
        from focuswatch.io import statefile

        try:
            statefile.write_state(w.state_file, w._state)
        except StateFileError as exc:
            log.error("%s", exc)

    def after_decision(self, record: FrameRecord, d: Decision, request: Any) -> None:
        """The state file follows every decision; a refocus request goes to the trigger worker."""
        from focuswatch.io import statefile

        w = self.w
        when = datetime.fromtimestamp(record.time_s).astimezone() if record.time_s else None
        lf = statefile.LastFrame(file=record.file, hfr_px=d.hfr_px, defocus_um=d.defocus_um,
                                 defocus_cfz=d.defocus_cfz, decision=d.decision,
                                 time=statefile.iso_utc(when) if when else None, n_stars=record.n_stars)
        st = replace(w._state, last_frame=lf, filter_name=record.filter_name, temp_c=record.temp_c)
        if d.decision == "refocus":
            st = st.refocus("; ".join(d.reasons))
        elif not st.refocus_due:
            st = replace(st, reason=d.reasons[0] if d.reasons else "")
        w._state = st
        self.write_state()
        if request is not None and w.runner is not None:
            for res in w.runner.request(replace(request, time=statefile.iso_utc()), w.clock()):
                self.trigger_result(res)

    def trigger_result(self, res: Any) -> None:
        """A trigger's answer: one journal row (tied to the decision that asked), the state file's note."""
        w = self.w
        w.journal.record_trigger(res.to_dict(), w._last_decision_id)
        if w._state is not None:
            w._state = replace(w._state, last_trigger=res.to_note())
            self.write_state()
        if w.on_trigger:
            w.on_trigger(res)
