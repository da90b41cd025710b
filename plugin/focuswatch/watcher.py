"""The folder watcher: new frames in, decisions, journal rows, state file and triggers out.

I/O only — every decision is :mod:`focuswatch.monitor`'s. How a frame travels:

1. A thin watchdog handler (:class:`_Handler`) puts the path of every created/modified/moved
   image file in a queue (recursive by default: NINA writes into dated sub-folders; ``poll``
   uses watchdog's PollingObserver for network shares). On start, a scan of the folder
   catches up with every file the journal has not seen (the watcher was stopped).
2. :meth:`Watcher.process_pending` (the worker; call it in a loop, or use :meth:`run`) waits
   until each file is complete: its size reached what the FITS headers promise
   (``frames.check_complete``), it did not change between two polls, it carries CHECKSUM
   when earlier frames of the folder did (CFITSIO writes it last), and it can be opened
   (Windows locks: retried). Files are only ever opened read-only.
3. Ready files are processed in capture order (``frames.frame_order_key``: DATE-OBS, else
   the file time): calibration frames (FLAT, DARK, BIAS) are recorded as ignored; lights are
   measured (``stars.measure``), diagnosed (``diagnose.frame``, when available), decided
   (``Monitor.observe``), journaled, the state file is rewritten and a refocus goes to the
   :class:`~focuswatch.triggers.TriggerRunner` (retries with back-off).
4. Autofocus events come from the event log ``focuswatch autofocus-done`` appends to, from
   new reports in NINA's autofocus folder, and from a jump of the focuser position in the
   headers (decided by the policy): the baseline is taken again from the frames after it.
   Reports and events already there at start count only when the journal does not know them
   and they are under ``STALE_EVENT_H`` old (NINA keeps every report of every night).

A bad frame is logged as one line and skipped; it never stops the watcher. A restart
continues from the journal: seen files are not measured again and the policy's memory is
rebuilt from the recorded decisions, so nothing is triggered twice.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

from focuswatch import frames as frames_mod
from focuswatch.config import Config, rig_with_header, section_to_dataclass
from focuswatch.errors import FrameError, FrameIncomplete, StateFileError
from focuswatch.journal import Journal
from focuswatch.monitor import AutofocusMark, Decision, FrameRecord, Monitor, PolicyConfig, record_from_stats
from focuswatch.optics import Rig

log = logging.getLogger("focuswatch.watcher")

#: A file that stays incomplete (or locked) this long is reported once as stuck.
STUCK_AFTER_S = 120.0
#: Without CHECKSUM (while earlier frames had one) a stable, complete file is taken after this.
CHECKSUM_GRACE_S = 3.0
#: A diagnosis less sure than this does not set a frame aside or hold a refocus.
DIAGNOSIS_MIN_CONFIDENCE = 0.6
#: A ready frame waits at most this long for an earlier frame still being written.
ORDER_HOLD_S = 10.0
#: Autofocus events already there when the watcher starts and older than this (wall clock)
#: belong to an earlier night: they are not applied.
STALE_EVENT_H = 12.0
_UNREAD = object()          # the event log's signature before it was read (see Watcher._events_changed)


def default_nina_autofocus_dir(environ: dict[str, str] | None = None, platform: str | None = None) -> Path | None:
    """NINA's autofocus report folder (``%LOCALAPPDATA%\\NINA\\AutoFocus``); ``None`` off Windows."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if not plat.startswith("win") or not env.get("LOCALAPPDATA"):
        return None
    return Path(env["LOCALAPPDATA"]) / "NINA" / "AutoFocus"


def policy_from_config(cfg: Config) -> PolicyConfig:
    """The ``[policy]`` table as a validated :class:`PolicyConfig`."""
    return section_to_dataclass(PolicyConfig, cfg.policy, "policy")


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


def mark_from_nina_report(path: str | Path) -> AutofocusMark | None:
    """An :class:`AutofocusMark` from a NINA autofocus report, ``None`` while it is unreadable.

    NINA writes the report at the end of a run (even one that later fails validation); a
    report still being written or garbled is skipped and retried at the next poll. Reading
    is :func:`focuswatch.afreports.read_nina_report`'s job.
    """
    from focuswatch.afreports import read_nina_report

    p = Path(path)
    try:
        run = read_nina_report(p)
        when = _epoch(run.timestamp) or p.stat().st_mtime
    except (FrameError, OSError):
        return None
    pos = run.reported_position_steps
    return AutofocusMark(time_s=float(when), source="nina-report", filter_name=run.filter_name,
                         temp_c=run.temp_c, position=int(round(pos)) if pos is not None else None)


def mark_from_event(event: Any) -> AutofocusMark:
    """A ``statefile.AutofocusEvent`` as the policy's :class:`AutofocusMark`."""
    return AutofocusMark(time_s=event.datetime_utc.timestamp(), source=event.source,
                         filter_name=event.filter_name, temp_c=event.temp_c, position=event.position)


# --------------------------------------------------------------------------- measuring one frame

def diagnose_label(stats: Any, rig: Rig, baseline_hfr_px: float | None = None) -> tuple[str | None, str | None]:
    """(label, advice) from :func:`focuswatch.diagnose.frame`, or ``(None, None)``.

    The hook that lets the policy set aside trailing/dew frames and warn (instead of
    refocusing) on optical defects; a diagnosis failure never stops the watcher.
    """
    if not getattr(stats, "n_stars", 0):
        return None, None
    from focuswatch import diagnose

    try:
        dg = diagnose.frame(stats, rig, baseline_hfr_px=baseline_hfr_px)
    except Exception:  # noqa: BLE001 - a diagnosis bug must not stop the watcher, but must be seen
        log.warning("diagnosis failed on %s (the frame is still judged without it)", getattr(stats, "file", "?"),
                    exc_info=True)
        return None, None
    if float(getattr(dg, "confidence", 1.0) or 0.0) < DIAGNOSIS_MIN_CONFIDENCE:
        return None, None
    advice = getattr(dg, "advice", None)
    if isinstance(advice, (list, tuple)):
        advice = "; ".join(str(a) for a in advice)
    return getattr(dg, "label", None), (advice or None)


def measure_record(frame: Any, config: Config, monitor: Monitor,
                   use_diagnose: bool = True) -> tuple[FrameRecord, Any, Rig]:
    """Measure a loaded frame and turn it into the policy's :class:`FrameRecord`.

    The rig is the configuration's, with the header filling what it leaves out; raises
    :class:`FrameError` when the stars cannot be measured.
    """
    from focuswatch import stars

    meta = frame.meta
    rig = rig_with_header(config.rig, meta)
    try:
        stats = stars.measure(frame, plate_scale_arcsec_px=rig.plate_scale_arcsec_px)
    except (ValueError, FloatingPointError, MemoryError) as exc:
        raise FrameError(frame.path, f"cannot measure stars: {exc}") from None
    label = advice = None
    if use_diagnose:
        base = next((f.hfr_px for f in monitor.history if f.filter_name == meta.filter_name), None)
        label, advice = diagnose_label(stats, rig, base)
    path = frame.path if frame.path is not None else Path(str(stats.file))
    record = record_from_stats(stats, file=str(path), time_s=frames_mod.frame_order_key(path, meta)[0],
                               diagnosis=label, diagnosis_advice=advice)
    return record, stats, rig


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


@dataclass
class _Pending:
    first_seen: float
    size: int = -1
    mtime_ns: int = -1
    stable_polls: int = 0
    complete_since: float | None = None
    stuck_reported: bool = False
    order_key: tuple[float, str] | None = None


@dataclass(frozen=True)
class Processed:
    """What the worker did with one file (for the CLI's lines and the tests)."""

    path: Path
    status: str                      # measured / error / ignored
    decision: Decision | None = None
    error: str | None = None
    stats: dict[str, Any] | None = None


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
    recursive, poll
        Watch sub-folders; use the polling observer (network shares).
    settle_polls
        How many consecutive polls the size must stay unchanged before a complete file is read.
    on_processed, on_autofocus, on_trigger
        Callbacks for the CLI (print lines) and the demo.
    diagnose
        Ask :mod:`focuswatch.diagnose` about each frame before the policy (when importable).
    """

    def __init__(self, folder: str | Path, journal: Journal, *, config: Config | None = None,
                 policy: PolicyConfig | None = None, state_file: str | Path | None = None,
                 events_file: str | Path | None = None, runner: Any = None, af_folder: str | Path | None = None,
                 recursive: bool = True, poll: bool = False, poll_interval_s: float = 0.25,
                 settle_polls: int = 1, on_processed: Callable[[Processed], None] | None = None,
                 on_autofocus: Callable[[AutofocusMark], None] | None = None,
                 on_trigger: Callable[[Any], None] | None = None, diagnose: bool = True,
                 rescan_interval_s: float = 10.0):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise FrameError(self.folder, "the folder to watch does not exist (or is not a folder)")
        self.journal = journal
        self.config = config or Config()
        self.policy = policy or policy_from_config(self.config)
        self.monitor = Monitor(self.policy, self.config.rig)
        self.state_file = Path(state_file) if state_file else None
        self.events_file = Path(events_file) if events_file else None
        self.runner = runner
        self.af_folder = Path(af_folder) if af_folder else None
        self.recursive, self.poll = recursive, poll
        self.poll_interval_s = poll_interval_s
        self.settle_polls = max(0, int(settle_polls))
        self.on_processed, self.on_autofocus, self.on_trigger = on_processed, on_autofocus, on_trigger
        self.use_diagnose = diagnose
        self.rescan_interval_s = rescan_interval_s
        self._next_rescan = 0.0
        self._queue: set[Path] = set()
        self._lock = threading.Lock()
        self._pending: dict[Path, _Pending] = {}
        self._af_queue: list[tuple[str, AutofocusMark, Any, float]] = []
        self._observer: Any = None
        self._checksum_folders: set[Path] = set()
        self._last_event_time: str | None = None
        self._events_sig: Any = _UNREAD
        self._nina_seen: set[str] = set()
        self._state = None
        self._last_decision_id: int | None = None
        self.decisions: list[Decision] = []
        self.n_errors = 0
        self.started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Restore from the journal, start the observer and queue the catch-up scan."""
        from focuswatch import statefile

        n = 0
        for kind, a, b in self.journal.restore_items():
            if kind == "frame":
                self.monitor.restore(a, b)
                n += 1
            else:
                self.monitor.autofocus(a)
        if n:
            log.info("restored %d frames of this night from %s", n, self.journal.path)
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
        self._catch_up()
        self._next_rescan = time.monotonic() + self.rescan_interval_s
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
        """Stop the observer (files still pending are picked up by the next start's catch-up)."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self.started = False

    def run(self, stop_event: threading.Event, *, max_s: float | None = None) -> None:
        """``start()``, process until ``stop_event`` is set (or ``max_s`` passed), ``stop()``."""
        self.start()
        t0 = time.monotonic()
        try:
            while not stop_event.is_set():
                self.process_pending()
                if max_s is not None and time.monotonic() - t0 >= max_s:
                    break
                stop_event.wait(self.poll_interval_s)
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

    def _catch_up(self) -> None:
        """Queue every frame in the folder the journal has not recorded (start-up and rescans)."""
        seen = self.journal.seen_keys(self.folder)
        n = 0
        for p in list_frames(self.folder, self.recursive):
            if p.resolve() in self._pending:
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
        """One worker pass: autofocus events, files that became complete, trigger retries."""
        now = time.monotonic()
        if self.rescan_interval_s > 0 and now >= self._next_rescan:
            # OS file events can be lost (a dated sub-folder created just before its first
            # frame, a busy network share): a cheap rescan every few seconds picks up any
            # frame the journal has not seen; ones already pending are not queued twice
            self._next_rescan = now + self.rescan_interval_s
            self._catch_up()
        self._af_queue.extend(self._poll_autofocus())
        with self._lock:
            fresh, self._queue = self._queue, set()
        for p in fresh:
            # the journal keys files by resolved path (Journal.key_of): the same key everywhere,
            # or a frame under a symlinked sub-folder would be measured again on its next event
            self._pending.setdefault(p.resolve(), _Pending(first_seen=now))
        done: list[Processed] = []
        ready = self._ready(now, done)
        if ready:
            metas: list[tuple[tuple[float, str], Path, Any]] = []
            for p in ready:
                try:
                    meta = frames_mod.read_header(p)
                except (FrameError, OSError):
                    meta = None
                metas.append((frames_mod.frame_order_key(p, meta), p, meta))
            metas.sort(key=lambda x: x[0])
            first_waiting = self._earliest_pending(now)
            for key, p, meta in metas:
                self._apply_autofocus_before(now, p)
                if first_waiting is not None and key > first_waiting:
                    # an earlier frame is still being written: keep capture order
                    try:
                        fs = p.stat()
                    except OSError:
                        continue
                    self._pending[p] = _Pending(first_seen=now, size=fs.st_size, mtime_ns=fs.st_mtime_ns,
                                                stable_polls=self.settle_polls, order_key=key)
                    continue
                out = self._process(p, meta)
                if out is not None:
                    done.append(out)
        self._apply_autofocus_before(now, None)
        if self.runner is not None:
            for res in self.runner.poll(time.monotonic()):
                self._trigger_result(res)
        return done

    def _ready(self, now: float, done: list[Processed]) -> list[Path]:
        ready: list[Path] = []
        for p, st in list(self._pending.items()):
            try:
                s = p.stat()
            except FileNotFoundError:
                log.info("%s: deleted before it could be read; skipped", p)
                del self._pending[p]
                continue
            except OSError as exc:
                self._maybe_stuck(p, st, now, f"cannot stat ({exc})")
                continue
            if s.st_size != st.size or s.st_mtime_ns != st.mtime_ns:
                st.size, st.mtime_ns, st.stable_polls, st.complete_since = s.st_size, s.st_mtime_ns, 0, None
                if self.settle_polls > 0:
                    continue
            else:
                st.stable_polls += 1
            if st.stable_polls < self.settle_polls:
                continue
            if self.journal.seen((str(p), int(s.st_size), int(s.st_mtime_ns))):
                del self._pending[p]
                continue
            try:
                layout = frames_mod.check_complete(p)
            except FrameIncomplete as exc:
                self._maybe_stuck(p, st, now, exc.problem)
                continue
            except FrameError as exc:
                done.append(self._record_error(p, exc))
                del self._pending[p]
                continue
            except FileNotFoundError:
                del self._pending[p]
                continue
            except PermissionError:
                self._maybe_stuck(p, st, now, "locked by another program")
                continue
            if layout is not None:
                if layout.has_checksum:
                    self._checksum_folders.add(p.parent)
                elif p.parent in self._checksum_folders:
                    st.complete_since = st.complete_since or now
                    if now - st.complete_since < CHECKSUM_GRACE_S:
                        continue
            ready.append(p)
            del self._pending[p]
        return ready

    def _apply_autofocus_before(self, now: float, path: Path | None) -> None:
        """Apply the queued autofocus events that happened before ``path`` was written.

        An autofocus report can appear while the last frame taken before it still waits for
        its size to settle; that frame belongs to the old focus. So an event waits (at most
        ``ORDER_HOLD_S``) for files written before it, and is applied before ``path`` only if
        the event is older than the file (``path=None``: apply all that may go).
        """
        while self._af_queue:
            key, mark, ev, seen = self._af_queue[0]
            if path is not None:
                try:
                    if os.stat(path).st_mtime <= mark.time_s:
                        return
                except OSError:
                    return
            elif now - seen < ORDER_HOLD_S and any(
                    st.size >= 0 and _mtime(q) <= mark.time_s for q, st in self._pending.items()):
                return
            self._af_queue.pop(0)
            self._apply_autofocus((key, mark, ev))

    def _earliest_pending(self, now: float) -> tuple[float, str] | None:
        """Capture-order key of the earliest file still being written (recent ones only).

        Its header is usually whole long before its pixels, so DATE-OBS is known; a file
        stuck for ``ORDER_HOLD_S`` no longer holds the others back.
        """
        best = None
        for p, st in self._pending.items():
            if now - st.first_seen > ORDER_HOLD_S:
                continue
            if st.order_key is None:
                try:
                    meta = frames_mod.read_header(p)
                    st.order_key = frames_mod.frame_order_key(p, meta)
                except (FrameError, OSError, ValueError):
                    continue
            if best is None or st.order_key < best:
                best = st.order_key
        return best

    def _maybe_stuck(self, p: Path, st: _Pending, now: float, why: str) -> None:
        if not st.stuck_reported and now - st.first_seen > STUCK_AFTER_S:
            log.warning("%s: still not readable after %.0f s (%s); will keep trying", p, now - st.first_seen, why)
            st.stuck_reported = True

    def _key(self, p: Path) -> tuple[str, int, int] | None:
        try:
            return Journal.key_of(p)
        except OSError:
            return None

    def _record_error(self, p: Path, exc: FrameError) -> Processed:
        key = self._key(p)
        self.n_errors += 1
        log.warning("%s", exc)
        if key is not None:
            self.journal.record_frame(key, time_s=None, status="error", error=str(exc))
        out = Processed(p, "error", error=str(exc))
        if self.on_processed:
            self.on_processed(out)
        return out

    def _ignored(self, key: Any, p: Path, meta: Any) -> Processed:
        """Record a calibration frame (flat, dark, bias) as seen and ignored."""
        self.journal.record_frame(key, time_s=meta.timestamp, status="ignored")
        out = Processed(p, "ignored")
        if self.on_processed:
            self.on_processed(out)
        return out

    def _process(self, p: Path, meta: Any) -> Processed | None:
        key = self._key(p)
        if key is None:
            log.info("%s: deleted before it could be read; skipped", p)
            return None
        if meta is not None and not meta.is_light:
            return self._ignored(key, p, meta)
        try:
            frame = frames_mod.load(p)
        except FrameIncomplete as exc:
            log.debug("%s: not ready yet (%s)", p, exc.problem)
            self._pending[p] = _Pending(first_seen=time.monotonic())
            return None
        except FrameError as exc:
            if not p.exists():
                log.info("%s: deleted before it could be read; skipped", p)
                return None
            return self._record_error(p, exc)
        meta = frame.meta
        if not meta.is_light:
            return self._ignored(key, p, meta)
        try:
            record, stats, rig = measure_record(frame, self.config, self.monitor, self.use_diagnose)
        except FrameError as exc:
            return self._record_error(p, exc)
        decision = self.monitor.observe(record, rig=rig)
        stats_d = stats.to_dict()
        _, did = self.journal.record_frame(key, time_s=record.time_s, status="measured", record=record, stats=stats_d,
                                           decision=decision)
        self._last_decision_id = did
        self.decisions.append(decision)
        self._after_decision(record, decision)
        out = Processed(p, "measured", decision=decision, stats=stats_d)
        if self.on_processed:
            self.on_processed(out)
        return out

    # ------------------------------------------------------------------ state, triggers, autofocus
    def _write_state(self) -> None:
        if self.state_file is None or self._state is None:
            return
        from focuswatch import statefile

        try:
            statefile.write_state(self.state_file, self._state)
        except StateFileError as exc:
            log.error("%s", exc)

    def _after_decision(self, record: FrameRecord, d: Decision) -> None:
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
        if d.decision == "refocus" and self.runner is not None:
            from focuswatch.triggers import TriggerRequest

            req = TriggerRequest(reason="; ".join(d.reasons), time=statefile.iso_utc(), filter_name=record.filter_name,
                                 hfr_px=d.hfr_px, defocus_um=d.defocus_um, defocus_cfz=d.defocus_cfz,
                                 frame_file=record.file)
            for res in self.runner.request(req, time.monotonic()):
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

    def _poll_autofocus(self) -> list[tuple[str, AutofocusMark, Any, float]]:
        from focuswatch import statefile

        found: list[tuple[str, AutofocusMark, Any, float]] = []
        if self.events_file is not None and self._events_changed():
            try:
                events = statefile.read_autofocus_events(self.events_file, since=self._last_event_time)
            except StateFileError as exc:
                log.warning("%s", exc)
                self._events_sig = _UNREAD           # locked by a hook appending to it: retry
                events = []
            for ev in events:
                self._last_event_time = ev.time
                key = self._event_key(ev)
                if not self.journal.has_autofocus(key):
                    found.append((key, mark_from_event(ev), ev, time.monotonic()))
        if self.af_folder is not None and self.af_folder.is_dir():
            for p in sorted(self.af_folder.glob("*.json")):
                if p.name in self._nina_seen:
                    continue
                mark = mark_from_nina_report(p)
                if mark is None:
                    continue  # still being written: next poll
                self._nina_seen.add(p.name)
                key = f"nina-report:{p.name}"
                if not self.journal.has_autofocus(key):
                    found.append((key, mark, None, time.monotonic()))
        found.sort(key=lambda x: x[1].time_s)
        return found

    def _apply_autofocus(self, item: tuple[str, AutofocusMark, Any]) -> None:
        from focuswatch import statefile

        key, mark, ev = item
        self.journal.record_autofocus(key, mark)
        self.monitor.autofocus(mark)
        if self.runner is not None:
            self.runner.resolve()
        if self._state is not None:
            event = ev or statefile.AutofocusEvent(time=statefile.iso_utc(datetime.fromtimestamp(mark.time_s).astimezone()),
                                                   source=mark.source, filter_name=mark.filter_name,
                                                   position=mark.position, temp_c=mark.temp_c)
            self._state = self._state.cleared(event)
            self._write_state()
        log.info("autofocus (%s): the baseline is taken again from the next frames", mark.source)
        if self.on_autofocus:
            self.on_autofocus(mark)


# --------------------------------------------------------------------------- replay

def list_frames(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (sorted by name; callers order them by capture time)."""
    root = Path(folder)
    it: Iterable[Path] = root.rglob("*") if recursive else root.glob("*")
    return sorted(p for p in it if p.is_file() and frames_mod.is_image_file(p))


def replay(folder: str | Path, *, config: Config | None = None, policy: PolicyConfig | None = None,
           af_marks: Iterable[AutofocusMark] = (), recursive: bool = True,
           on_row: Callable[[Processed], None] | None = None, progress: bool = False,
           diagnose: bool = True) -> tuple[list[Processed], Monitor]:
    """Run a finished night through the policy in DATE-OBS order, firing nothing.

    ``af_marks`` (autofocus runs from NINA reports or the event log) are interleaved by
    time. Returns every processed file and the monitor (its state tells how many autofocus
    runs were seen). Nothing is written anywhere.
    """
    config = config or Config()
    policy = policy or policy_from_config(config)
    files = list_frames(folder, recursive)
    keyed = []
    out: list[Processed] = []
    for p in files:
        try:
            meta = frames_mod.read_header(p)
        except FrameError as exc:
            row = Processed(p, "error", error=str(exc))
            out.append(row)
            if on_row:
                on_row(row)
            continue
        keyed.append((frames_mod.frame_order_key(p, meta), p, meta))
    keyed.sort(key=lambda x: x[0])
    marks = sorted(af_marks, key=lambda m: m.time_s)
    monitor = Monitor(policy, config.rig)
    iterator: Iterable[Any] = keyed
    if progress:
        from tqdm import tqdm
        iterator = tqdm(keyed, desc="replay", unit="frame", file=sys.stderr)
    for (t, _), p, meta in iterator:
        while marks and marks[0].time_s <= t:
            monitor.autofocus(marks.pop(0))
        row = _replay_one(p, meta, config, monitor, diagnose)
        out.append(row)
        if on_row:
            on_row(row)
    return out, monitor


def _replay_one(p: Path, meta: Any, config: Config, monitor: Monitor, diagnose: bool) -> Processed:
    if not meta.is_light:
        return Processed(p, "ignored")
    try:
        record, stats, rig = measure_record(frames_mod.load(p), config, monitor, diagnose)
    except FrameError as exc:
        return Processed(p, "error", error=str(exc))
    return Processed(p, "measured", decision=monitor.observe(record, rig=rig), stats=stats.to_dict())
