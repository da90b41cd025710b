"""The folder watcher: new frames in, decisions, journal rows, state file and triggers out.

I/O only — every decision is :mod:`focuswatch.monitor`'s, and the night itself (autofocus order,
NINA confirmation, the frame step) is :class:`focuswatch.nightloop.NightSession`'s, the loop
:func:`replay` runs too: the watcher *feeds* it (when is a file whole, what arrived) and is its
sink (journal, state file, triggers). How a frame travels:

1. A thin watchdog handler (:class:`_Handler`) puts the path of every created/modified/moved
   image file in a queue (recursive by default: NINA writes into dated sub-folders; ``poll``
   uses watchdog's PollingObserver for network shares). On start, a scan of the folder
   catches up with every file the journal has not seen (the watcher was stopped).
2. :meth:`Watcher.process_pending` (the worker; call it in a loop, or use :meth:`run`) feeds
   each pending file's ``stat()`` and the clock to a :class:`~focuswatch.readiness.Readiness`
   state machine (both passed in, so tests drive it without sleeping). A file proven whole
   (``frames.check_complete``: every END card and the size the headers promise, no zero-filled
   tail, or a matching DATASUM / XISF checksum) is measured at once; an unproven one waits for
   stable content; an incomplete one that stops changing is reported once. Files are only ever
   opened read-only.
3. Ready files are processed in capture order (``frames.frame_order_key``: DATE-OBS, else
   the file time): calibration frames (FLAT, DARK, BIAS) are recorded as ignored; lights are
   measured (``stars.measure``), diagnosed (``diagnose.frame``, when available), decided
   (``Monitor.observe``), journaled, the state file is rewritten and a refocus goes to the
   :class:`~focuswatch.triggers.TriggerRunner` (retries with back-off) in its worker.
4. Autofocus events come from the event log ``focuswatch autofocus-done`` appends to, from
   new reports in NINA's autofocus folder, and from a jump of the focuser position in the
   headers (decided by the policy): the baseline is taken again from the frames after it.
   Reports and events already there at start count only when the journal does not know them
   and they are under ``STALE_EVENT_H`` old (NINA keeps every report of every night).
   A NINA autofocus (report, ``nina-hook`` event, the Advanced API's AUTOFOCUS-FINISHED) is
   held until confirmed (:mod:`focuswatch.afconfirm`): NINA writes the report before it
   validates the run and moves the focuser back after a failed one, so the first light frame
   after it decides — its FOCPOS at the calculated point confirms (applied before that frame
   is judged), back at the initial point fails (baseline and refocus request stay).
5. With ``nina_api`` NINA's IMAGE-SAVE event marks a pending file complete at once and its
   image history does the same after a (re)connect (:mod:`focuswatch.nina_events`).

A bad frame is logged as one line and skipped (:mod:`focuswatch.boundary` words whatever went
wrong); it never stops the watcher. Triggers run in their own worker with an overall deadline
(:mod:`focuswatch.trigger_runner`), so a slow NINA never delays measuring and ``stop()`` returns
within seconds. A restart continues from the journal: seen files are not measured again and
the policy's memory is rebuilt from the recorded decisions, so nothing is triggered twice —
except a refocus no trigger ever answered (the watcher was killed first), which is asked again.
"""
from __future__ import annotations

import logging
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

from focuswatch import afconfirm, nightloop
from focuswatch import frames as frames_mod
from focuswatch.boundary import describe as describe_frame_problem
from focuswatch.boundary import frame_boundary
from focuswatch.config import Config
from focuswatch.errors import FrameError, FrameIncomplete, StateFileError
from focuswatch.journal import Journal
from focuswatch.monitor import AutofocusMark, Decision, FrameRecord, Monitor, PolicyConfig
from focuswatch.optics import Rig
from focuswatch.nightloop import NightSession, NightSink
from focuswatch.readiness import BAD, GONE, READY, STUCK, Readiness, ReadinessConfig

log = logging.getLogger("focuswatch.watcher")

#: Shortest time between two worker passes woken by file events (a burst must not spin the CPU).
MIN_PASS_GAP_S = 0.02
#: Autofocus events already there when the watcher starts and older than this (wall clock)
#: belong to an earlier night: they are not applied.
STALE_EVENT_H = 12.0
_UNREAD = object()          # the event log's signature before it was read (see Watcher._events_changed)
# the loop's constants and NINA helpers live in focuswatch.nightloop; re-exported for callers
AF_FAILED, AF_UNCONFIRMED, AF_SAME_RUN = nightloop.AF_FAILED, nightloop.AF_UNCONFIRMED, nightloop.AF_SAME_RUN
_NOT_APPLIED = nightloop._NOT_APPLIED
UNCONFIRMED = nightloop.UNCONFIRMED
_REPORT_AFTER_HOOK_S = nightloop.REPORT_AFTER_HOOK_S
is_nina_source = nightloop.is_nina_source
confirm_from_start = nightloop.confirm_from_start
judge_nina_run = nightloop.judge_nina_run
NinaRun = nightloop.NinaRun
Processed = nightloop.Processed
AFSignal = nightloop.AFSignal


def default_nina_autofocus_dir(environ: dict[str, str] | None = None, platform: str | None = None) -> Path | None:
    """NINA's autofocus report folder (``%LOCALAPPDATA%\\NINA\\AutoFocus``); ``None`` off Windows."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if not plat.startswith("win") or not env.get("LOCALAPPDATA"):
        return None
    return Path(env["LOCALAPPDATA"]) / "NINA" / "AutoFocus"


def policy_from_config(cfg: Config) -> PolicyConfig:
    """The ``[policy]`` table as a validated :class:`PolicyConfig` (errors name the file)."""
    from focuswatch.config import validate_section

    return validate_section("policy", cfg.policy, cfg.path)


@dataclass(frozen=True)
class WatchConfig:
    """The ``[watch]`` table: how the watcher looks at the folder (command-line flags win).

    Attributes
    ----------
    recursive, poll
        Watch sub-folders; poll instead of OS file events (network shares).
    poll_interval_s
        Seconds between two passes of the worker (and of the polling observer).
    rescan_interval_s
        Seconds between two rescans for frames whose OS event was lost (0: never).
    settle_polls
        Polls of unchanged size a *proven* complete frame must also wait (0: measure at once).
    stable_s
        How long a frame that cannot prove it is whole (pre-allocated, zero tail, no
        checksum) must keep its size, time and content before it is read.
    checksum_grace_s, stuck_after_s, give_up_s
        See :class:`~focuswatch.readiness.ReadinessConfig`.
    order_hold_s
        A ready frame waits at most this long for an earlier frame still being written.
    burst_quiet_s
        When several new files arrive together (a copy, a catch-up after a restart), the
        proven ones wait until no new file arrived for this long, then go in capture order.
        A lone frame (live capture) is measured the moment it is proven whole.
    diagnose
        Ask the single-frame diagnosis before the policy.
    af_folder
        NINA's autofocus report folder ("" = the default on Windows, none elsewhere).
    af_confirm_frames
        A NINA autofocus (a new report, an ``autofocus-done`` hook) counts only once the next
        light frame confirms it (:mod:`focuswatch.afconfirm`); after this many light frames
        that cannot tell (another filter, FOCPOS near neither focus point) it is given up:
        not counted, the baseline and the refocus request stay.
    af_same_run_s
        NINA signals (report, hook event, the Advanced API's AUTOFOCUS-FINISHED) this close
        in time belong to the same autofocus run.
    af_tolerance_steps
        FOCPOS within this many steps of a focus point is "at" it (grows to half the run's
        step between measure points when that is larger).
    """

    recursive: bool = True
    poll: bool = False
    poll_interval_s: float = field(default=0.5, metadata={"range": (0.01, 60.0)})
    rescan_interval_s: float = field(default=10.0, metadata={"range": (0.0, 86400.0)})
    settle_polls: int = field(default=0, metadata={"range": (0, 100)})
    stable_s: float = field(default=2.0, metadata={"range": (0.0, 3600.0)})
    checksum_grace_s: float = field(default=3.0, metadata={"range": (0.0, 3600.0)})
    stuck_after_s: float = field(default=120.0, metadata={"range": (1.0, 86400.0)})
    give_up_s: float = field(default=300.0, metadata={"range": (1.0, 86400.0)})
    order_hold_s: float = field(default=10.0, metadata={"range": (0.0, 3600.0)})
    burst_quiet_s: float = field(default=0.5, metadata={"range": (0.0, 60.0)})
    diagnose: bool = True
    af_folder: str = ""
    af_confirm_frames: int = field(default=3, metadata={"range": (1, 1000)})
    af_same_run_s: float = field(default=120.0, metadata={"range": (0.0, 3600.0)})
    af_tolerance_steps: float = field(default=3.0, metadata={"range": (0.0, 1.0e6)})

    def readiness(self) -> ReadinessConfig:
        return ReadinessConfig(settle_polls=self.settle_polls, stable_s=self.stable_s,
                               checksum_grace_s=self.checksum_grace_s, stuck_after_s=self.stuck_after_s,
                               give_up_s=self.give_up_s)


def watch_from_config(cfg: Config) -> WatchConfig:
    """The ``[watch]`` table as a validated :class:`WatchConfig` (errors name the file)."""
    from focuswatch.config import validate_section

    return validate_section("watch", cfg.watch, cfg.path)


# --------------------------------------------------------------------------- autofocus sources

def _mtime(p: Path) -> float:
    try:
        return os.stat(p).st_mtime
    except OSError:
        return float("inf")


def _epoch(text: str | None) -> float | None:
    """Seconds since the epoch for an ISO time; a naive time is the local time (NINA reports)."""
    if not text:
        return None
    t = str(text).strip().replace("Z", "+00:00")
    m = re.match(r"^(.*T[\d:]+)\.(\d+)(.*)$", t)
    if m:  # .NET writes 7 fractional digits, Python reads at most 6
        t = f"{m.group(1)}.{m.group(2)[:6]}{m.group(3)}"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    return dt.timestamp() if dt.tzinfo else dt.astimezone().timestamp()


def nina_report_candidate(path: str | Path) -> tuple[AutofocusMark, afconfirm.AFCandidate] | None:
    """The mark a NINA autofocus report would apply and the :class:`~focuswatch.afconfirm.AFCandidate`
    that must be confirmed first; ``None`` while the report is unreadable.

    NINA writes the report at the end of a run, *before* it validates it (N.I.N.A. 3.x
    ``AutoFocusVM.cs``: ``GenerateReport`` then the validation; a failed run moves the focuser
    back to ``InitialFocusPoint``), so a report alone does not prove a new focus.
    """
    from focuswatch.afreports import read_nina_report

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
    is :func:`focuswatch.afreports.read_nina_report`'s job; the watcher applies it only once
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
    from focuswatch import statefile

    out: list[AFSignal] = []
    if af_folder is not None:
        out += [s for s in (report_signal(p) for p in sorted(Path(af_folder).glob("*.json"))) if s is not None]
    if events_file is not None:
        out += [event_signal(e) for e in statefile.read_autofocus_events(events_file)]
    return sorted(out, key=lambda s: s.mark.time_s)


# --------------------------------------------------------------------------- measuring one frame

def measure_record(frame: Any, config: Config, monitor: Monitor,
                   use_diagnose: bool = True) -> tuple[FrameRecord, Any, Rig]:
    """Measure a loaded frame and turn it into the policy's :class:`FrameRecord`.

    The one frame pipeline (:func:`focuswatch.pipeline.measure_record`: stars, diagnosis
    against the policy's baseline, record) inside the frame boundary, so whatever goes wrong
    with this frame becomes one :class:`FrameError` naming it.
    """
    from focuswatch import pipeline

    with frame_boundary(frame.path):
        return pipeline.measure_record(frame, config, monitor, use_diagnose)


def _probe(p: Path) -> Any:
    """:func:`frames.check_complete` with every other failure worded by the frame boundary
    (a file that vanished stays a ``FileNotFoundError``: the readiness says "gone")."""
    try:
        return frames_mod.check_complete(p)
    except (FileNotFoundError, FrameError):
        raise
    except Exception as exc:  # noqa: BLE001 - one line per frame, whatever happened
        raise describe_frame_problem(p, exc) from None


# --------------------------------------------------------------------------- watchdog handler

class _Handler:
    """Thin watchdog handler: only enqueues paths (the worker does everything else)."""

    def __init__(self, enqueue: Callable[[Path], None]):
        from watchdog.events import FileSystemEventHandler

        enq = enqueue

        class H(FileSystemEventHandler):
            def on_any_event(self, event):  # noqa: D401 - watchdog API
                if event.is_directory or event.event_type not in ("created", "modified", "moved", "closed"):
                    return
                target = getattr(event, "dest_path", None) or event.src_path
                if isinstance(target, bytes):
                    target = os.fsdecode(target)
                if target and frames_mod.is_image_file(target):
                    enq(Path(target))

        self.handler = H()


# --------------------------------------------------------------------------- the watcher

class Watcher:
    """Watch ``folder`` and keep the focus under the policy's eye.

    Runs in-process: ``start()``, then ``process_pending()`` in a loop (or ``run(stop_event)``),
    then ``stop()``. Tests write real files into a real folder while it runs.

    Parameters
    ----------
    folder
        The folder the capture program saves into.
    journal
        An open :class:`~focuswatch.journal.Journal`.
    config
        The loaded configuration (``[rig]``, ``[policy]``, ``[trigger]``).
    state_file, events_file
        ``state.json`` to write and the autofocus event log to read (``statefile.resolve_paths``).
    runner
        A :class:`~focuswatch.triggers.TriggerRunner` (``None``: state file only).
    af_folder
        NINA's autofocus report folder to watch (``None``: not watched).
    recursive, poll, poll_interval_s, settle_polls, rescan_interval_s, diagnose
        Override the ``[watch]`` table (``None``: take it from ``config``, see :class:`WatchConfig`).
    on_processed, on_autofocus, on_trigger
        Callbacks for the CLI (print lines) and the demo.
    background_triggers
        Run the triggers in a worker thread with an overall deadline per attempt
        (:mod:`focuswatch.trigger_runner`), off the measuring path. ``False``: in line
        (only for tests that step a fake runner).
    clock, stat
        The monotonic clock and ``os.stat``: passed in so the readiness of files can be
        driven without sleeping (as watchdog's ``PollingObserverVFS`` takes its ``stat``).
    nina_api
        ``(host, port)`` of NINA's Advanced API: its ``IMAGE-SAVE`` event marks a pending file
        ready at once (NINA has finished writing it), ``AUTOFOCUS-FINISHED`` confirms an
        autofocus, and ``image-history`` catches up after every (re)connect.
    nina_source, nina_history
        Stand-ins for :class:`~focuswatch.nina_events.NinaEventSource` and
        :func:`~focuswatch.nina_events.image_history` (``None``: the real ones).
    on_autofocus_verdict
        Called ``(mark, status, reason)`` when a NINA autofocus is judged: ``confirmed``,
        ``failed`` (NINA moved the focuser back) or ``unconfirmed`` (given up).
    """

    def __init__(self, folder: str | Path, journal: Journal, *, config: Config | None = None,
                 policy: PolicyConfig | None = None, state_file: str | Path | None = None,
                 events_file: str | Path | None = None, runner: Any = None, af_folder: str | Path | None = None,
                 recursive: bool | None = None, poll: bool | None = None, poll_interval_s: float | None = None,
                 settle_polls: int | None = None, on_processed: Callable[[Processed], None] | None = None,
                 on_autofocus: Callable[[AutofocusMark], None] | None = None,
                 on_trigger: Callable[[Any], None] | None = None, diagnose: bool | None = None,
                 rescan_interval_s: float | None = None, watch: WatchConfig | None = None,
                 background_triggers: bool = True, clock: Callable[[], float] = time.monotonic,
                 stat: Callable[[Any], os.stat_result] = os.stat, nina_api: tuple[str, int] | None = None,
                 nina_source: Any = None, nina_history: Callable[[str, int], list[Any]] | None = None,
                 on_autofocus_verdict: Callable[[AutofocusMark, str, str], None] | None = None):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise FrameError(self.folder, "the folder to watch does not exist (or is not a folder)")
        self.journal = journal
        self.config = config or Config()
        self.policy = policy or policy_from_config(self.config)
        wc = watch or watch_from_config(self.config)
        given = {k: v for k, v in dict(recursive=recursive, poll=poll, poll_interval_s=poll_interval_s,
                                       settle_polls=settle_polls, diagnose=diagnose,
                                       rescan_interval_s=rescan_interval_s).items() if v is not None}
        self.watch = wc = replace(wc, **given)
        self.state_file = Path(state_file) if state_file else None
        self.events_file = Path(events_file) if events_file else None
        if runner is not None and background_triggers and not hasattr(runner, "close"):
            from focuswatch.trigger_runner import BackgroundTriggers

            runner = BackgroundTriggers(runner, clock=clock)
        self.runner = runner
        self.af_folder = Path(af_folder) if af_folder else (Path(wc.af_folder) if wc.af_folder else None)
        self.recursive, self.poll = wc.recursive, wc.poll
        self.poll_interval_s = wc.poll_interval_s
        self.settle_polls = wc.settle_polls
        self.readiness = wc.readiness()
        self.on_processed, self.on_autofocus, self.on_trigger = on_processed, on_autofocus, on_trigger
        self.rescan_interval_s = wc.rescan_interval_s
        self.order_hold_s = wc.order_hold_s
        self.clock, self.stat = clock, stat
        self._next_rescan = 0.0
        self._queue: set[Path] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: dict[Path, Readiness] = {}
        self._held: dict[Path, Any] = {}          # proven whole, waiting for a burst to settle
        self._burst, self._last_new_s = 0, float("-inf")
        self._observer: Any = None
        self._checksum_folders: set[Path] = set()
        self._last_event_time: str | None = None
        self._events_sig: Any = _UNREAD
        self._nina_seen: set[str] = set()
        self._nina_reports: dict[str, AFSignal] = {}   # NINA reports parsed so far, by name
        self.on_autofocus_verdict = on_autofocus_verdict
        # NINA's Advanced API as the "file complete" signal
        self.nina_api = nina_api
        self._nina_source = nina_source
        if nina_api is not None and nina_source is None:
            from focuswatch.nina_events import NinaEventSource

            self._nina_source = NinaEventSource(nina_api[0], nina_api[1])
        if self._nina_source is not None and getattr(self._nina_source, "on_event", None) is None:
            self._nina_source.on_event = lambda _ev: self._wake.set()
        self._nina_history = nina_history
        self._nina_inbox: "queue.Queue[Any]" = queue.Queue()   # image-history answers (another thread)
        self._nina_saved: set[str] = set()                      # names NINA said it finished writing
        from focuswatch import statefile

        self._state: Any = statefile.State(watch_dir=str(self.folder))  # start() reads the old one
        self._last_decision_id: int | None = None
        self.n_errors = 0
        # the night itself: the one loop ``replay`` runs too; this watcher feeds it and is its sink
        self.session = NightSession(Monitor(self.policy, self.config.rig), self.config, watch=wc,
                                    diagnose=wc.diagnose, sink=_WatcherSink(self), report_for=self._report_signal)
        self._named_bad: set[str] = set()
        self.started = False

    @property
    def monitor(self) -> Monitor:
        """The policy (the night session's)."""
        return self.session.monitor

    @property
    def decisions(self) -> list[Decision]:
        return self.session.decisions

    @property
    def use_diagnose(self) -> bool:
        return self.session.use_diagnose

    @property
    def _runs(self) -> list[NinaRun]:
        return self.session.runs

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Restore from the journal, start the observer and queue the catch-up scan."""
        from focuswatch import statefile

        n = self.session.restore(self.journal.restore_items())   # a failed NINA run stays not applied
        if n:
            log.info("restored %d frames of this night from %s", n, self.journal.path)
        self._last_decision_id = self.journal.last_decision_id()
        self._state = statefile.State(watch_dir=str(self.folder))
        if self.state_file is not None:
            try:
                old = statefile.read_state(self.state_file)
                if old is not None:
                    self._state = replace(old, watch_dir=str(self.folder))
            except StateFileError as exc:
                log.warning("%s", exc)
        if self.monitor.state.waiting_since_s is None and self._state.refocus_due:
            self._state = self._state.cleared()
        elif self._state.refocus_due and self.runner is not None and not self.journal.refocus_answered():
            # decided before a crash, never delivered: ask once more (an answered one is not repeated)
            from focuswatch.triggers import TriggerRequest

            lf = self._state.last_frame
            req = TriggerRequest(reason=self._state.reason or "a refocus was due before the restart",
                                 time=statefile.iso_utc(), filter_name=self._state.filter_name,
                                 hfr_px=lf.hfr_px if lf else None, defocus_um=lf.defocus_um if lf else None,
                                 defocus_cfz=lf.defocus_cfz if lf else None, frame_file=lf.file if lf else None)
            log.info("a refocus decided before the restart was never answered by a trigger: asking again")
            for res in self.runner.request(req, self.clock()):
                self._trigger_result(res)
        # autofocus events recorded before, or from an earlier night (NINA keeps every report;
        # a new journal knows none of them): skip them on the first poll
        stale_before = time.time() - STALE_EVENT_H * 3600.0
        if self.events_file is not None:
            old = [e for e in statefile.read_autofocus_events(self.events_file)
                   if self.journal.has_autofocus(self._event_key(e)) or e.datetime_utc.timestamp() < stale_before]
            if old:
                self._last_event_time = old[-1].time
        if self.af_folder is not None and self.af_folder.is_dir():
            for p in self.af_folder.glob("*.json"):
                if self.journal.has_autofocus(f"nina-report:{p.name}") or _mtime(p) < stale_before:
                    self._nina_seen.add(p.name)
        self._start_observer()
        if self._nina_source is not None:
            self._nina_source.start()
        self._catch_up()
        self._next_rescan = self.clock() + self.rescan_interval_s
        self.started = True

    def _start_observer(self) -> None:
        if self.poll:
            from watchdog.observers.polling import PollingObserver as Obs
        else:
            from watchdog.observers import Observer as Obs
        obs = Obs(timeout=self.poll_interval_s) if self.poll else Obs()
        obs.schedule(_Handler(self._enqueue).handler, str(self.folder), recursive=self.recursive)
        obs.daemon = True
        obs.start()
        self._observer = obs

    def stop(self) -> None:
        """Stop the observer and the trigger worker, within a few seconds whatever a trigger
        is doing (files still pending are picked up by the next start's catch-up)."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        if self._nina_source is not None and self.started:
            self._nina_source.stop()
        close = getattr(self.runner, "close", None)
        if close is not None:
            close()
        self.started = False

    def run(self, stop_event: threading.Event, *, max_s: float | None = None) -> None:
        """``start()``, process until ``stop_event`` is set (or ``max_s`` passed), ``stop()``.

        Triggers run in their own worker, so a pass never waits on the network: ``max_s``
        and ``stop_event`` (Ctrl-C) are honoured within one pass plus ``poll_interval_s``.
        """
        self.start()
        t0 = self.clock()
        try:
            while not stop_event.is_set():
                self.process_pending()
                if max_s is not None and self.clock() - t0 >= max_s:
                    break
                # a file event (a write, the writer closing the file) wakes the worker at once, so
                # a frame is measured as soon as its last byte lands, not at the next poll
                if self._wake.wait(self.poll_interval_s):
                    self._wake.clear()
                    stop_event.wait(MIN_PASS_GAP_S)  # many events (a burst copy): not a busy loop
        finally:
            self.stop()

    def __enter__(self) -> "Watcher":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ queueing
    def _enqueue(self, path: Path) -> None:
        with self._lock:
            self._queue.add(path)
        self._wake.set()

    def _catch_up(self) -> None:
        """Queue every frame in the folder the journal has not recorded (start-up and rescans)."""
        seen = self.journal.seen_keys(self.folder)
        n = 0
        for p in list_frames(self.folder, self.recursive):
            try:
                rp = p.resolve()
            except (OSError, RuntimeError):
                continue
            if rp in self._pending or rp in self._held:
                continue
            try:
                if Journal.key_of(p) in seen:
                    continue
            except OSError:
                continue
            self._enqueue(p)
            n += 1
        if n:
            log.info("queued %d frames not yet in the journal", n)

    @property
    def n_pending(self) -> int:
        with self._lock:
            return len(self._queue) + len(self._pending)

    # ------------------------------------------------------------------ the worker
    def process_pending(self) -> list[Processed]:
        """One worker pass: autofocus events, files that became complete, trigger results.

        Never raises for a frame: whatever one file does becomes one line (a ``Processed``
        with status ``error``) through :mod:`focuswatch.boundary`.
        """
        now = self.clock()
        if self.rescan_interval_s > 0 and now >= self._next_rescan:
            # OS file events can be lost (a dated sub-folder created just before its first
            # frame, a busy network share): a cheap rescan every few seconds picks up any
            # frame the journal has not seen; ones already pending are not queued twice
            self._next_rescan = now + self.rescan_interval_s
            try:
                self._catch_up()
            except OSError as exc:  # a network share that hiccups must not end the night: next rescan
                log.warning("%s: could not list the folder (%s); will look again", self.folder,
                            exc.strerror or exc)
        for sig, seen in self._poll_autofocus() + self._poll_nina_api():
            self.session.offer(sig, seen)
        with self._lock:
            fresh, self._queue = self._queue, set()
        done: list[Processed] = []
        for p in fresh:
            # the journal keys files by resolved path (Journal.key_of): the same key everywhere,
            # or a frame under a symlinked sub-folder would be measured again on its next event
            try:
                rp = p.resolve()
            except (OSError, RuntimeError) as exc:  # a symlink loop: Python 3.11 raises RuntimeError
                out = self._unkeyed_error(p, describe_frame_problem(p, exc))
                if out is not None:
                    done.append(out)
                continue
            if rp not in self._pending and rp not in self._held:
                if now - self._last_new_s >= self.watch.burst_quiet_s:
                    self._burst = 0
                self._burst += 1
                self._last_new_s = now
                self._pending[rp] = self._readiness(rp, now)
        self._held.update(self._ready(now, done))
        if self._held and self._burst > 1 and now - self._last_new_s < self.watch.burst_quiet_s:
            # many files arriving at once (a copy, a catch-up): let the burst settle, then go in
            # capture order. A lone live frame is measured the moment it is proven whole.
            ready: list[tuple[Path, Any]] = []
        else:
            ready, self._held = list(self._held.items()), {}
        if ready:
            metas: list[tuple[tuple[float, str], Path, Any, Any]] = []
            for p, layout in ready:
                try:
                    meta = frames_mod.read_header(p, layout=layout)
                except FrameError:
                    meta = None
                metas.append((frames_mod.frame_order_key(p, meta), p, meta, layout))
            metas.sort(key=lambda x: x[0])
            first_waiting = self._earliest_pending(now)
            for key, p, meta, layout in metas:
                self.session.apply_before(_written_s(p))
                if first_waiting is not None and key > first_waiting:
                    # an earlier frame is still being written: keep capture order (this one is
                    # proven whole already, so it goes as soon as the earlier one is done)
                    r = self._readiness(p, now)
                    r.order_key = key
                    self._pending[p] = r
                    continue
                out = self._process(p, meta, layout)
                if out is not None:
                    done.append(out)
        self.session.release(now, held=lambda mark, seen: self._holds_back(now, mark, seen))
        if self.runner is not None:
            for res in self.runner.poll(self.clock()):
                self._trigger_result(res)
        return done

    def _readiness(self, p: Path, now: float) -> Readiness:
        return Readiness(p, now, self.readiness, probe=_probe, signature=frames_mod.content_signature)

    def _ready(self, now: float, done: list[Processed]) -> list[tuple[Path, Any]]:
        """Feed every pending file's ``stat()`` to its :class:`Readiness`; return the ready ones."""
        ready: list[tuple[Path, Any]] = []
        for p, r in list(self._pending.items()):
            try:
                st = self.stat(p)
                size, mtime_ns = int(st.st_size), int(st.st_mtime_ns)
            except FileNotFoundError:
                size, mtime_ns = None, 0
            except OSError as exc:
                err = describe_frame_problem(p, exc)
                if isinstance(err, FrameIncomplete):
                    self._maybe_stuck(p, r, now, err.problem)
                else:
                    done.append(self._record_error(p, err))
                    del self._pending[p]
                continue
            if size is not None and self.journal.seen((str(p), size, mtime_ns)):
                del self._pending[p]
                continue
            if size is not None and p.name in self._nina_saved:
                # NINA's IMAGE-SAVE: it finished writing this file, no need to watch its size
                self._nina_saved.discard(p.name)
                ready.append((p, None))
                del self._pending[p]
                continue
            step = r.step(size, mtime_ns, now, expect_checksum=p.parent in self._checksum_folders)
            if step.verdict == GONE:
                log.info("%s: deleted before it could be read; skipped", p)
                del self._pending[p]
            elif step.verdict == BAD:
                done.append(self._record_error(p, FrameError(p, step.problem or "not a readable frame")))
                del self._pending[p]
            elif step.verdict == STUCK:
                log.warning("%s: still not readable after %.0f s (%s); will keep trying", p, now - r.first_seen,
                            step.problem)
            elif step.verdict == READY:
                if getattr(step.layout, "has_checksum", False):
                    self._checksum_folders.add(p.parent)
                ready.append((p, step.layout))
                del self._pending[p]
        return ready

    def _holds_back(self, now: float, mark: AutofocusMark, seen: float) -> bool:
        """True while an autofocus signal must wait for files written before it.

        An autofocus report can appear while the last frame taken before it still waits for
        its size to settle; that frame belongs to the old focus. So a signal waits (at most
        ``order_hold_s`` after it was seen) while a pending file was written before it.
        """
        return now - seen < self.order_hold_s and any(
            st.size >= 0 and _mtime(q) <= mark.time_s for q, st in self._pending.items())

    def _earliest_pending(self, now: float) -> tuple[float, str] | None:
        """Capture-order key of the earliest file still being written (recent ones only).

        Its header is usually whole long before its pixels, so DATE-OBS is known; a file
        stuck for ``order_hold_s`` no longer holds the others back.
        """
        best = None
        for p, r in self._pending.items():
            if now - r.first_seen > self.order_hold_s:
                continue
            if r.order_key is None:
                try:
                    meta = frames_mod.read_header(p)
                except FrameError:
                    continue
                r.order_key = frames_mod.frame_order_key(p, meta)
            if best is None or r.order_key < best:
                best = r.order_key
        return best

    def _maybe_stuck(self, p: Path, r: Readiness, now: float, why: str) -> None:
        if not r.stuck_reported and now - r.first_seen > self.readiness.stuck_after_s:
            log.warning("%s: still not readable after %.0f s (%s); will keep trying", p, now - r.first_seen, why)
            r.stuck_reported = True

    def _key(self, p: Path) -> tuple[str, int, int] | None:
        try:
            return Journal.key_of(p)
        except (OSError, RuntimeError):
            return None

    def _unkeyed_error(self, p: Path, exc: FrameError) -> Processed | None:
        """A file that cannot even be keyed (a symlink loop): named once per run, not journaled."""
        name = str(p)
        if name in self._named_bad:
            return None
        self._named_bad.add(name)
        self.n_errors += 1
        log.warning("%s", exc)
        out = Processed(p, "error", error=str(exc))
        if self.on_processed:
            self.on_processed(out)
        return out

    def _record_error(self, p: Path, exc: FrameError) -> Processed:
        return self.session.error(p, exc, key=self._key(p))

    def _process(self, p: Path, meta: Any, layout: Any = None) -> Processed | None:
        """Hand one ready file to the night session; a file still being written goes back to
        waiting. ``layout``: the readiness probe's proof that the file is whole, reused by the load."""
        key = self._key(p)
        if key is None:
            log.info("%s: deleted before it could be read; skipped", p)
            return None

        def load() -> Any:
            try:
                with frame_boundary(p):
                    return frames_mod.load(p, layout=layout)
            except FrameIncomplete:
                raise
            except FrameError:
                if not p.exists():
                    raise FileNotFoundError(str(p)) from None
                raise

        try:
            return self.session.frame(p, meta, written_s=_written_s(p), load=load, key=key)
        except FrameIncomplete as exc:
            log.debug("%s: not ready yet (%s)", p, exc.problem)
            self._pending[p] = self._readiness(p, self.clock())
            return None

    # ------------------------------------------------------------------ state, triggers, autofocus
    def _write_state(self) -> None:
        if self.state_file is None or self._state is None:
            return
        from focuswatch import statefile

        try:
            statefile.write_state(self.state_file, self._state)
        except StateFileError as exc:
            log.error("%s", exc)

    def _after_decision(self, record: FrameRecord, d: Decision, request: Any) -> None:
        """The state file follows every decision; a refocus request goes to the trigger worker."""
        from focuswatch import statefile

        when = datetime.fromtimestamp(record.time_s).astimezone() if record.time_s else None
        lf = statefile.LastFrame(file=record.file, hfr_px=d.hfr_px, defocus_um=d.defocus_um,
                                 defocus_cfz=d.defocus_cfz, decision=d.decision,
                                 time=statefile.iso_utc(when) if when else None, n_stars=record.n_stars)
        st = replace(self._state, last_frame=lf, filter_name=record.filter_name, temp_c=record.temp_c)
        if d.decision == "refocus":
            st = st.refocus("; ".join(d.reasons))
        elif not st.refocus_due:
            st = replace(st, reason=d.reasons[0] if d.reasons else "")
        self._state = st
        self._write_state()
        if request is not None and self.runner is not None:
            for res in self.runner.request(replace(request, time=statefile.iso_utc()), self.clock()):
                self._trigger_result(res)

    def _trigger_result(self, res: Any) -> None:
        self.journal.record_trigger(res.to_dict(), self._last_decision_id)
        if self._state is not None:
            self._state = replace(self._state, last_trigger=res.to_note())
            self._write_state()
        if self.on_trigger:
            self.on_trigger(res)

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

    def _poll_autofocus(self) -> list[tuple[AFSignal, float]]:
        """New autofocus signals of the event log and the NINA report folder, with the clock
        at which they were seen."""
        from focuswatch import statefile

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
                if p.name in self._nina_seen or p.name in self.session.claimed_reports:
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

    # ------------------------------------------------------------------ NINA autofocus: held until confirmed
    def _poll_nina_api(self) -> list[tuple[AFSignal, float]]:
        """Drain the Advanced API's events: IMAGE-SAVE marks a file ready, AUTOFOCUS-FINISHED is an
        autofocus signal (sent only for successful runs), a (re)connect asks for the image history."""
        if self._nina_source is None:
            return []
        from focuswatch.nina_events import AutofocusFinished, ImageSaved, SourceStatus

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
        from focuswatch.nina_events import image_history

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

    def _report_signal(self, time_s: float) -> AFSignal | None:
        """The newest NINA report written within ``af_same_run_s`` before a hook/API signal at
        ``time_s`` (the night session asks; the folder may hold one not polled yet)."""
        if self.af_folder is None or not self.af_folder.is_dir():
            return None
        lo, hi = time_s - self.watch.af_same_run_s, time_s + _REPORT_AFTER_HOOK_S
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


class _WatcherSink(NightSink):
    """The watcher's side of the night session: journal rows, the state file, the triggers and
    the CLI's callbacks."""

    def __init__(self, w: Watcher):
        self.w = w

    def record_frame(self, key: Any, **kw: Any) -> None:
        if key is None:
            return
        _, did = self.w.journal.record_frame(key, **kw)
        if kw.get("decision") is not None:
            self.w._last_decision_id = did

    def record_autofocus(self, key: str, mark: AutofocusMark) -> None:
        self.w.journal.record_autofocus(key, mark)

    def counted_autofocus(self, mark: AutofocusMark, event: Any) -> None:
        from focuswatch import statefile

        w = self.w
        if w.runner is not None:
            w.runner.resolve()
        if w._state is not None:
            event = event or statefile.AutofocusEvent(
                time=statefile.iso_utc(datetime.fromtimestamp(mark.time_s).astimezone()), source=mark.source,
                filter_name=mark.filter_name, position=mark.position, temp_c=mark.temp_c)
            w._state = w._state.cleared(event)
            w._write_state()
        if w.on_autofocus:
            w.on_autofocus(mark)

    def decided(self, record: FrameRecord, decision: Decision, request: Any) -> None:
        self.w._after_decision(record, decision, request)

    def verdict(self, mark: AutofocusMark, status: str, reason: str) -> None:
        if self.w.on_autofocus_verdict:
            self.w.on_autofocus_verdict(mark, status, reason)

    def processed(self, out: Processed) -> None:
        if out.status == "error":
            self.w.n_errors += 1
        if self.w.on_processed:
            self.w.on_processed(out)


def _written_s(p: Path) -> float | None:
    """A file's modification time (the autofocus signals' clock); ``None`` when it is gone."""
    try:
        return os.stat(p).st_mtime
    except OSError:
        return None


# --------------------------------------------------------------------------- replay

def list_frames(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (sorted by name; callers order them by capture time)."""
    root = Path(folder)
    it: Iterable[Path] = root.rglob("*") if recursive else root.glob("*")
    # a symlink that is not a file (broken, a loop) is listed too: it is named once, not skipped
    return sorted(p for p in it if (p.is_file() or p.is_symlink()) and frames_mod.is_image_file(p))


def replay(folder: str | Path, *, config: Any = None, policy: Any = None, af_marks: Any = (),
           recursive: bool = True, on_row: Any = None, progress: bool = False,
           diagnose: bool = True, sink: NightSink | None = None) -> tuple[list[Processed], Any]:
    """Run a finished night through the policy as the watcher would have, firing nothing.

    The same loop as ``watch`` (:class:`~focuswatch.nightloop.NightSession`), fed from the
    finished files in capture order and every autofocus signal up front: an autofocus goes
    before the first frame *written* after it, a NINA run counts once a light frame confirms
    it. ``af_marks``: :class:`~focuswatch.nightloop.AFSignal` items
    (:func:`autofocus_signals`, what ``watch`` reads) or bare :class:`AutofocusMark` ones.
    ``sink`` receives the journal rows ``watch`` would write (default: nowhere). Returns the
    :class:`Processed` rows and the monitor. Nothing is written anywhere.
    """
    from focuswatch.progress import progress as bar

    config = config or Config()
    policy = policy or policy_from_config(config)
    out: list[Processed] = []

    def emit(row: Processed | None) -> None:
        if row is not None:
            out.append(row)
            if on_row:
                on_row(row)

    session = NightSession(Monitor(policy, config.rig), config, watch=watch_from_config(config), diagnose=diagnose,
                           sink=sink, log_errors=False)
    night: list[tuple[tuple[float, str], Path, Any, float]] = []
    for p in list_frames(folder, recursive):
        try:
            meta = frames_mod.read_header(p)
            written = p.stat().st_mtime
        except (FrameError, OSError) as exc:   # not a frame: one row (the journal's, as in ``watch``)
            err = exc if isinstance(exc, FrameError) else FrameError(p, str(exc.strerror or exc))
            emit(session.error(p, err))
            continue
        night.append((frames_mod.frame_order_key(p, meta), p, meta, written))
    night.sort(key=lambda x: x[0])
    for item in af_marks:
        session.offer(item if isinstance(item, AFSignal) else AFSignal.of(item), 0.0)
    for _, p, meta, written in bar(night, desc="replay", enabled=progress, unit="frame"):
        emit(session.frame(p, meta, written_s=written, load=lambda p=p: _load_finished(p)))
    session.release(0.0)
    return out, session.monitor


def _load_finished(p: Path) -> Any:
    """A finished night's file: one still incomplete is a bad file, not one to wait for."""
    with frame_boundary(p):
        try:
            return frames_mod.load(p)
        except FrameIncomplete as exc:
            raise FrameError(p, exc.problem) from None
