"""The folder watcher: watchdog events and a readiness state machine feeding the night session.

The :class:`Watcher` decides only *when* a file is whole and *what* arrived; the night itself
is :class:`~focuswatch.watch.loop.NightSession`'s and everything that leaves it goes through
:class:`~focuswatch.watch.sink._WatcherSink`. How a frame travels:

1. A thin watchdog handler (:class:`_Handler`) puts the path of every created/modified/moved
   image file in a queue (recursive by default: NINA writes into dated sub-folders; ``poll``
   uses watchdog's PollingObserver for network shares). On start, a scan of the folder
   catches up with every file the journal has not seen (the watcher was stopped), and a
   rescan every ``rescan_interval_s`` picks up files whose OS event was lost.
2. :meth:`Watcher.process_pending` (the worker; call it in a loop, or use :meth:`Watcher.run`)
   feeds each pending file's ``stat()`` and the clock to a
   :class:`~focuswatch.watch.readiness.Readiness` state machine (both passed in, so tests
   drive it without sleeping). A file proven whole (``frames.check_complete``) is measured at
   once; an unproven one waits for stable content; an incomplete one that stops changing is
   reported once. Files are only ever opened read-only.
3. Ready files go to the night session in capture order (``frames.frame_order_key``); a
   burst of new files settles first, and a ready frame waits (at most ``order_hold_s``) for
   an earlier one still being written.
4. Autofocus signals are polled once a pass (:class:`~focuswatch.watch.afinputs.AutofocusInputs`)
   from the event log and NINA's report folder; with ``nina_api`` NINA's IMAGE-SAVE event
   marks a pending file complete at once and AUTOFOCUS-FINISHED is a signal
   (:mod:`focuswatch.watch.nina_events`). Signals already there at start count only when the
   journal does not know them and they are under ``STALE_EVENT_H`` old.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from focuswatch.boundary import describe as describe_frame_problem
from focuswatch.boundary import frame_boundary
from focuswatch.config import Config
from focuswatch.errors import FrameError, FrameIncomplete, JournalError, StateFileError
from focuswatch.io import frames as frames_mod
from focuswatch.io.journal import Journal
from focuswatch.policy import AutofocusMark, Decision, Monitor, PolicyConfig
from focuswatch.watch.afinputs import AutofocusInputs
from focuswatch.watch.config import WatchConfig, policy_from_config, watch_from_config
from focuswatch.watch.loop import NightSession, NinaRun, Processed
from focuswatch.watch.readiness import BAD, GONE, READY, STUCK, Readiness
from focuswatch.watch.replay import list_frames
from focuswatch.watch.sink import _WatcherSink

log = logging.getLogger("focuswatch.watch")

#: Shortest time between two worker passes woken by file events (a burst must not spin the CPU).
MIN_PASS_GAP_S = 0.02
#: Autofocus events already there when the watcher starts and older than this (wall clock)
#: belong to an earlier night: they are not applied.
STALE_EVENT_H = 12.0


def _probe(p: Path, size_bytes: int | None = None) -> Any:
    """:func:`frames.check_complete` with every other failure worded by the frame boundary
    (a file that vanished stays a ``FileNotFoundError``: the readiness says "gone").
    ``size_bytes``: the size the readiness poll has just seen (not asked again)."""
    try:
        return frames_mod.check_complete(p, size_bytes)
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

#: the start-up rehearsal's frame: small, a few stars, seeded (it is never shown or kept)
WARM_UP_SIZE_PX, WARM_UP_STARS, WARM_UP_SIGMA_PX = 96, 9, 1.6


def warm_up(rig: Any = None) -> None:
    """Measure and diagnose a small made-up frame once, at start-up.

    Why: the first frames of a night would otherwise wait for the lazy parts of the pipeline
    (sep's first call, the physical-optics calibration tables, the diagnosis' fits; the
    policy's first drift fit imports scipy.stats and builds its growth curve): measured on an
    IMX571 frame, 0.3 s after the last byte when warm, 1.4-1.9 s for the frame that paid.
    Done before the observer starts, so no frame waits behind it. Touches no file of the
    user's; a failure here only costs that first frame its speed, never the watcher.
    """
    try:  # the imports too: a module that cannot load here is the first frame's error, not start-up's
        import numpy as np

        from focuswatch import diagnose, stars
        from focuswatch.io.frames import frame_from_array
        from focuswatch.policy.estimators import prepare as prepare_policy

        rng = np.random.default_rng(0)
        n = WARM_UP_SIZE_PX
        yy, xx = np.mgrid[0:n, 0:n]
        img = rng.normal(100.0, 3.0, (n, n))
        for x, y in rng.uniform(12, n - 12, (WARM_UP_STARS, 2)):
            img += 4000.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * WARM_UP_SIGMA_PX ** 2))
        frame = frame_from_array(img.astype(np.float32), {})
        diagnose.frame(stars.measure(frame), rig, image=frame)
        prepare_policy(getattr(rig, "obstruction", None) or 0.0)
    except Exception as exc:  # noqa: BLE001 - a rehearsal: the real frames report their own problems
        log.debug("start-up warm-up failed: %s", exc)


class Watcher:
    """Watch ``folder`` and keep the focus under the policy's eye.

    Runs in-process: ``start()``, then ``process_pending()`` in a loop (or ``run(stop_event)``),
    then ``stop()``. Tests write real files into a real folder while it runs.

    Parameters
    ----------
    folder
        The folder the capture program saves into.
    journal
        An open :class:`~focuswatch.io.journal.Journal`.
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
        (:mod:`focuswatch.triggers.runner`), off the measuring path. ``False``: in line
        (only for tests that step a fake runner).
    clock, stat
        The monotonic clock and ``os.stat``: passed in so the readiness of files can be
        driven without sleeping (as watchdog's ``PollingObserverVFS`` takes its ``stat``).
    nina_api
        ``(host, port)`` of NINA's Advanced API: its ``IMAGE-SAVE`` event marks a pending file
        ready at once (NINA has finished writing it), ``AUTOFOCUS-FINISHED`` confirms an
        autofocus, and ``image-history`` catches up after every (re)connect.
    nina_source, nina_history
        Stand-ins for :class:`~focuswatch.watch.nina_events.NinaEventSource` and
        :func:`~focuswatch.watch.nina_events.image_history` (``None``: the real ones).
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
            from focuswatch.triggers.runner import BackgroundTriggers

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
        self._held: dict[Path, tuple[Any, _Seen]] = {}  # proven whole, waiting for a burst to settle
        self._burst, self._last_new_s = 0, float("-inf")
        self._observer: Any = None
        self._checksum_folders: set[Path] = set()
        self._journal_read_failing = False  # a spell of failed journal reads is one warning line
        self.on_autofocus_verdict = on_autofocus_verdict
        self.nina_api = nina_api
        # the event log, NINA's report folder and its Advanced API, polled once a pass
        self.af_inputs = AutofocusInputs(journal, clock=clock, wake=self._wake, events_file=self.events_file,
                                         af_folder=self.af_folder, af_same_run_s=wc.af_same_run_s, nina_api=nina_api,
                                         nina_source=nina_source, nina_history=nina_history)
        from focuswatch.io import statefile

        self._state: Any = statefile.State(watch_dir=str(self.folder))  # start() reads the old one
        self._last_decision_id: int | None = None
        self.n_errors = 0
        self.journal_problems: list[str] = []  # journal rows the start could not read back (one line each)
        self.journal_unwritten = 0  # journal rows that could not be written (one line each, the night went on)
        # the night itself: the one loop ``replay`` runs too; this watcher feeds it and is its sink
        self._sink = _WatcherSink(self)   # journal, state file, triggers
        self.session = NightSession(Monitor(self.policy, self.config.rig), self.config, watch=wc,
                                    diagnose=wc.diagnose, sink=self._sink, report_for=self.af_inputs.report_near)
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
        from focuswatch.io import statefile

        # a failed NINA run stays not applied; each frame with the header facts it was judged with
        # a journal row that cannot be read back is one line and one frame less, never the start
        problems: list[str] = []
        n = self.session.restore(self.journal.restore_items(with_header=True, with_dew=True, problems=problems))
        for line in problems:
            log.warning("%s", line)
        self.journal_problems += problems
        self.n_errors += len(problems)
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
                self._sink.trigger_result(res)
        # autofocus events recorded before, or from an earlier night (NINA keeps every report;
        # a new journal knows none of them): skip them on the first poll
        self.af_inputs.skip_known(time.time() - STALE_EVENT_H * 3600.0)
        warm_up(self.config.rig if self.config is not None else None)
        self._start_observer()
        self.af_inputs.start()
        self._rescan()
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
        if self.started:
            self.af_inputs.stop()
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

    def _rescan(self) -> None:
        """:meth:`_catch_up`, at the start and every ``rescan_interval_s``: a folder that cannot be
        listed (a network share that hiccups) is one line, never the start or the night; the next
        rescan looks again. So is a journal that cannot be read for its known files (locked past
        its timeout, a disk error): as a journal row that cannot be written (the sink), it costs
        this rescan, not the night."""
        try:
            self._catch_up()
        except OSError as exc:
            log.warning("%s: could not list the folder (%s); will look again", self.folder,
                        exc.strerror or exc)
        except JournalError as exc:
            log.warning("%s: the rescan could not read the journal (%s); will look again", self.folder, exc)

    def _catch_up(self) -> None:
        """Queue every frame in the folder the journal has not recorded (start-up and rescans).

        Entry by entry: one that cannot be resolved or keyed (a symlink loop or a broken one, a
        permission error, a name too long) is one line naming it, once per run
        (:meth:`_unkeyed_error`), and the others are queued; a later rescan that can key it
        queues it. A file deleted between the listing and its ``stat`` is one info line."""
        seen = self.journal.seen_keys(self.folder)
        n = 0
        for p in list_frames(self.folder, self.recursive):
            try:
                rp = p.resolve()
                if rp in self._pending or rp in self._held:
                    continue
                if Journal.key_of(rp, resolved=True) in seen:
                    continue
            except FileNotFoundError as exc:
                if os.path.islink(p):  # a broken symlink: named
                    self._unkeyed_error(p, describe_frame_problem(p, exc))
                else:
                    log.info("%s: deleted before it could be read; skipped", p)
                continue
            except (OSError, RuntimeError) as exc:  # a symlink loop: Python 3.11 raises RuntimeError
                self._unkeyed_error(p, describe_frame_problem(p, exc))
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
            self._rescan()
        for sig, seen in self.af_inputs.poll(self.session.claimed_reports):
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
            metas: list[tuple[tuple[float, str], Path, Any, Any, _Seen]] = []
            for p, (layout, seen) in ready:
                try:
                    meta = frames_mod.read_header(p, layout=layout, size_bytes=seen.size)
                except FrameError:
                    meta = None
                metas.append((frames_mod.frame_order_key(p, meta, seen.mtime_s), p, meta, layout, seen))
            metas.sort(key=lambda x: x[0])
            first_waiting = self._earliest_pending(now)
            for key, p, meta, layout, seen in metas:
                # the readiness stat, not a new one: the autofocus ordering, the session and the
                # journal key share it (it is the size the file was proven whole at)
                written_s = seen.mtime_s
                self.session.apply_before(written_s)
                if first_waiting is not None and key > first_waiting:
                    # an earlier frame is still being written: keep capture order (this one is
                    # proven whole already, so it goes as soon as the earlier one is done)
                    r = self._readiness(p, now)
                    r.order_key = key
                    self._pending[p] = r
                    continue
                out = self._process(p, meta, layout, written_s=written_s, key=seen.key(p, layout))
                if out is not None:
                    done.append(out)
        self.session.release(now, held=lambda mark, seen: self._holds_back(now, mark, seen))
        if self.runner is not None:
            for res in self.runner.poll(self.clock()):
                self._sink.trigger_result(res)
        return done

    def _readiness(self, p: Path, now: float) -> Readiness:
        r = Readiness(p, now, self.readiness, signature=frames_mod.content_signature)
        # the proof reads the size this poll's stat() just fed the readiness, not a new one
        r.probe = lambda path: _probe(path, r.size if r.size >= 0 else None)
        return r

    def _ready(self, now: float, done: list[Processed]) -> list[tuple[Path, tuple[Any, _Seen]]]:
        """Feed every pending file's ``stat()`` to its :class:`Readiness`; return the ready ones,
        each with its layout (the proof it is whole) and that ``stat()``."""
        ready: list[tuple[Path, tuple[Any, _Seen]]] = []
        for p, r in list(self._pending.items()):
            try:
                st = self.stat(p)
                size, mtime_ns = int(st.st_size), int(st.st_mtime_ns)
                seen = _Seen(size, mtime_ns, float(st.st_mtime))
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
            try:
                known = size is not None and self.journal.seen((str(p), size, mtime_ns))
            except JournalError as exc:
                # locked past its timeout, a disk error: the file stays pending and the next
                # pass asks again; one line per spell of failures, not one per poll
                if not self._journal_read_failing:
                    log.warning("%s: could not read the journal to check this file (%s); will try again", p, exc)
                self._journal_read_failing = True
                continue
            self._journal_read_failing = False
            if known:
                del self._pending[p]
                continue
            if size is not None and self.af_inputs.finished_writing(p.name):
                # NINA's IMAGE-SAVE: it finished writing this file, no need to watch its size
                ready.append((p, (None, seen)))
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
                ready.append((p, (step.layout, seen)))
                del self._pending[p]
        return ready

    def _holds_back(self, now: float, mark: AutofocusMark, seen: float) -> bool:
        """True while an autofocus signal must wait for files written before it.

        An autofocus report can appear while the last frame taken before it still waits for
        its size to settle; that frame belongs to the old focus. So a signal waits (at most
        ``order_hold_s`` after it was seen) while a pending file was written before it.
        """
        # the last observed mtime of each pending file (its readiness keeps it): no stat here
        return now - seen < self.order_hold_s and any(
            r.size >= 0 and r.mtime_ns / 1e9 <= mark.time_s for r in self._pending.values())

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

    def _process(self, p: Path, meta: Any, layout: Any = None, *,
                 written_s: float | None = None, key: tuple[str, int, int] | None = None) -> Processed | None:
        """Hand one ready file to the night session; a file still being written goes back to
        waiting. ``layout``: the readiness probe's proof that the file is whole, reused by the load;
        ``written_s`` and ``key`` (the journal's): from the ``stat()`` the caller has just made
        (else one ``stat`` each)."""
        key = key or self._key(p)
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
            if written_s is None:
                written_s = _written_s(p)
            return self.session.frame(p, meta, written_s=written_s, load=load, key=key)
        except FrameIncomplete as exc:
            log.debug("%s: not ready yet (%s)", p, exc.problem)
            self._pending[p] = self._readiness(p, self.clock())
            return None



@dataclass(frozen=True, slots=True)
class _Seen:
    """One ``stat()`` of a pending file (size, mtime) as the readiness saw it: reused for the
    journal key, the capture order and the autofocus clock instead of asking again."""

    size: int
    mtime_ns: int
    mtime_s: float

    def key(self, p: Path, layout: Any) -> tuple[str, int, int] | None:
        """The journal key (:meth:`Journal.key_of`) of ``p`` (a resolved path), when this stat
        is the one the file was proven whole at; ``None`` (ask again) when its size has moved."""
        if layout is not None and getattr(layout, "actual_bytes", self.size) != self.size:
            return None
        return str(p), self.size, self.mtime_ns


def _written_s(p: Path) -> float | None:
    """A file's modification time (the autofocus signals' clock); ``None`` when it is gone."""
    try:
        return os.stat(p).st_mtime
    except OSError:
        return None
