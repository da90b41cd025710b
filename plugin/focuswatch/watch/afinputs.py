"""The live watcher's autofocus inputs: the event log, NINA's report folder, NINA's Advanced API.

:class:`AutofocusInputs` is polled by the watcher's worker once a pass and returns the new
:class:`~focuswatch.watch.loop.AFSignal` items with the clock at which they were seen; the
night session decides what they mean. It remembers what it has read (the event log's last
line, the reports seen) so nothing is offered twice, and it carries NINA's IMAGE-SAVE names:
a file NINA says it finished writing needs no size watching (:meth:`finished_writing`).
Reading one report or event-log line is :mod:`focuswatch.watch.afsignals`' job.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Container

from focuswatch.errors import StateFileError
from focuswatch.policy import AutofocusMark
from focuswatch.watch.afsignals import _epoch, _mtime, event_signal, report_signal
from focuswatch.watch.loop import REPORT_AFTER_HOOK_S as _REPORT_AFTER_HOOK_S
from focuswatch.watch.loop import AFSignal

log = logging.getLogger("focuswatch.watch")

_UNREAD = object()          # the event log's signature before it was read (see AutofocusInputs._events_changed)


class AutofocusInputs:
    """Where a watched night's autofocus signals come from, polled without blocking.

    Parameters
    ----------
    journal
        The watcher's journal: a signal it already knows is not offered again.
    clock
        The watcher's monotonic clock (the time a signal was seen).
    wake
        Set when NINA's Advanced API sends something (the worker wakes at once).
    events_file, af_folder
        The autofocus event log and NINA's report folder (``None``: not read).
    af_same_run_s
        See :class:`~focuswatch.watch.config.WatchConfig`.
    nina_api, nina_source, nina_history
        See :class:`~focuswatch.watch.watcher.Watcher`.
    """

    def __init__(self, journal: Any, *, clock: Callable[[], float], wake: threading.Event,
                 events_file: Path | None, af_folder: Path | None, af_same_run_s: float,
                 nina_api: tuple[str, int] | None = None, nina_source: Any = None,
                 nina_history: Callable[[str, int], list[Any]] | None = None):
        self.journal, self.clock, self._wake = journal, clock, wake
        self.events_file, self.af_folder = events_file, af_folder
        self.af_same_run_s = af_same_run_s
        self._last_event_time: str | None = None
        self._events_sig: Any = _UNREAD
        self._nina_seen: set[str] = set()
        self._nina_reports: dict[str, AFSignal] = {}   # NINA reports parsed so far, by name
        # NINA's Advanced API as the "file complete" signal
        self.nina_api = nina_api
        self._nina_source = nina_source
        if nina_api is not None and nina_source is None:
            from focuswatch.watch.nina_events import NinaEventSource

            self._nina_source = NinaEventSource(nina_api[0], nina_api[1])
        if self._nina_source is not None and getattr(self._nina_source, "on_event", None) is None:
            self._nina_source.on_event = lambda _ev: self._wake.set()
        self._nina_history = nina_history
        self._nina_inbox: "queue.Queue[Any]" = queue.Queue()   # image-history answers (another thread)
        self._nina_saved: set[str] = set()                      # names NINA said it finished writing

    def skip_known(self, stale_before: float) -> None:
        """Autofocus events recorded before, or from an earlier night (wall clock before
        ``stale_before``; NINA keeps every report, a new journal knows none of them): skipped."""
        from focuswatch.io import statefile

        if self.events_file is not None:
            old = [e for e in statefile.read_autofocus_events(self.events_file)
                   if self.journal.has_autofocus(self._event_key(e)) or e.datetime_utc.timestamp() < stale_before]
            if old:
                self._last_event_time = old[-1].time
        if self.af_folder is not None and self.af_folder.is_dir():
            for p in self.af_folder.glob("*.json"):
                if self.journal.has_autofocus(f"nina-report:{p.name}") or _mtime(p) < stale_before:
                    self._nina_seen.add(p.name)

    def start(self) -> None:
        if self._nina_source is not None:
            self._nina_source.start()

    def stop(self) -> None:
        if self._nina_source is not None:
            self._nina_source.stop()

    def poll(self, claimed: Container[str]) -> list[tuple[AFSignal, float]]:
        """New signals of the event log and report folder, then of the Advanced API.
        ``claimed``: report names the night session already holds (not offered again)."""
        return self._poll_files(claimed) + self._poll_api()

    def finished_writing(self, name: str) -> bool:
        """True once for a file NINA's IMAGE-SAVE (or image history) named: it is whole."""
        if name in self._nina_saved:
            self._nina_saved.discard(name)
            return True
        return False

    def _events_changed(self) -> bool:
        """True when the event log's size or time changed since it was last read.

        The log is only ever appended to and the worker polls it several times a second:
        parsing a log of every night's autofocus runs each time is wasted work.
        """
        try:
            st = os.stat(self.events_file)  # type: ignore[arg-type]
            sig: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
        except OSError:
            sig = None
        changed = sig != self._events_sig
        self._events_sig = sig
        return changed

    @staticmethod
    def _event_key(ev: Any) -> str:
        return f"{ev.source}:{ev.time}"

    def _poll_files(self, claimed: Container[str]) -> list[tuple[AFSignal, float]]:
        """New autofocus signals of the event log and the NINA report folder, with the clock
        at which they were seen."""
        from focuswatch.io import statefile

        found: list[tuple[AFSignal, float]] = []
        if self.events_file is not None and self._events_changed():
            try:
                events = statefile.read_autofocus_events(self.events_file, since=self._last_event_time)
            except StateFileError as exc:
                log.warning("%s", exc)
                self._events_sig = _UNREAD           # locked by a hook appending to it: retry
                events = []
            for ev in events:
                self._last_event_time = ev.time
                sig = event_signal(ev)
                if not self.journal.has_autofocus(sig.key):
                    found.append((sig, self.clock()))
        if self.af_folder is not None and self.af_folder.is_dir():
            for p in sorted(self.af_folder.glob("*.json")):
                if p.name in self._nina_seen or p.name in claimed:
                    continue
                sig = report_signal(p)
                if sig is None:
                    continue  # still being written: next poll
                self._nina_reports[p.name] = sig
                self._nina_seen.add(p.name)
                if not self.journal.has_autofocus(sig.key):
                    found.append((sig, self.clock()))
        found.sort(key=lambda x: x[0].mark.time_s)
        return found

    def _poll_api(self) -> list[tuple[AFSignal, float]]:
        """Drain the Advanced API's events: IMAGE-SAVE marks a file ready, AUTOFOCUS-FINISHED is an
        autofocus signal (sent only for successful runs), a (re)connect asks for the image history."""
        if self._nina_source is None:
            return []
        from focuswatch.watch.nina_events import AutofocusFinished, ImageSaved, SourceStatus

        found: list[tuple[AFSignal, float]] = []
        events: list[Any] = []
        while True:
            ev = self._nina_source.get(timeout_s=0)
            if ev is None:
                break
            events.append(ev)
        while True:
            try:
                events.append(self._nina_inbox.get_nowait())
            except queue.Empty:
                break
        n_saved = len(self._nina_saved)
        for ev in events:
            if isinstance(ev, ImageSaved):
                if ev.filename:   # NINA sends a Windows path or a base name: the name is the key
                    self._nina_saved.add(Path(ev.filename.replace("\\", "/")).name)
            elif isinstance(ev, AutofocusFinished):
                key = f"nina-api:{ev.time}"
                if not self.journal.has_autofocus(key):
                    when = _epoch(ev.time) or time.time()
                    found.append((AFSignal(key, AutofocusMark(time_s=when, source="nina-api")), self.clock()))
            elif isinstance(ev, SourceStatus):
                (log.info if ev.connected else log.warning)("%s", ev.message)
                if ev.connected:
                    self._fetch_history()
        if len(self._nina_saved) > n_saved:
            # files NINA finished may already be pending: mark them ready on the next pass
            self._wake.set()
        return found

    def _fetch_history(self) -> None:
        """Ask NINA's image history (in a thread: a slow NINA must not hold the worker): after a
        restart, every file NINA already finished counts as complete."""
        if self.nina_api is None and self._nina_history is None:
            return
        from focuswatch.watch.nina_events import image_history

        fetch = self._nina_history or image_history
        host, port = self.nina_api or ("127.0.0.1", 1888)

        def work() -> None:
            try:
                images = fetch(host, port)
            except Exception as exc:  # noqa: BLE001 - the live events and size checks still work
                log.warning("could not read NINA's image history: %s", exc)
                return
            for im in images:
                self._nina_inbox.put(im)
            log.info("NINA's image history: %d image(s) already saved", len(images))
            self._wake.set()

        threading.Thread(target=work, name="nina-history", daemon=True).start()

    def report_near(self, time_s: float) -> AFSignal | None:
        """The newest NINA report written within ``af_same_run_s`` before a hook/API signal at
        ``time_s`` (the night session asks; the folder may hold one not polled yet)."""
        if self.af_folder is None or not self.af_folder.is_dir():
            return None
        lo, hi = time_s - self.af_same_run_s, time_s + _REPORT_AFTER_HOOK_S
        best: tuple[float, str] | None = None
        for p in self.af_folder.glob("*.json"):
            t = _mtime(p)
            if lo <= t <= hi and (best is None or t > best[0]):
                best = (t, p.name)
        if best is None:
            return None
        if best[1] not in self._nina_reports:
            got = report_signal(self.af_folder / best[1])
            if got is None:
                return None
            self._nina_reports[best[1]] = got
        self._nina_seen.add(best[1])
        return self._nina_reports[best[1]]
