"""One night, one loop: what ``watch`` and ``replay`` both do with frames and autofocus signals.

:class:`NightSession` takes, in order, the frames of a night (each with the time its file
was written) and the autofocus signals (an event-log line, a NINA report, the Advanced
API's AUTOFOCUS-FINISHED), and produces the policy's decisions, the journal rows and the
refocus requests. It reads no clock (times are passed in) and no folder: loading a frame
is a callable the feeder hands over, and everything that leaves the session (journal rows,
the state file, triggers, printed lines) goes through a :class:`NightSink`.

Two feeders drive it:

* :class:`~focuswatch.watch.Watcher` — watchdog events, the readiness state machine and an
  injected clock decide *when* a file is whole; the watcher's sink writes the journal and
  the state file and hands requests to the trigger runner;
* :func:`~focuswatch.watch.replay` — a finished night: the files sorted in capture order,
  every autofocus signal known up front; its sink writes nothing.

Because both call the same methods, a replayed night gives the watched night's decisions by
construction (``tests/test_watcher.py::test_a_replayed_night_decides_as_the_watched_one``).

The rules that live here (and nowhere else):

* **Autofocus order.** A signal waits in a queue sorted by its time; it is applied before
  the first frame *written* after it (file time: event logs and NINA reports carry the PC's
  clock, as file times do; DATE-OBS may carry a camera's). Frames go in capture order.
* **NINA autofocus is held until confirmed** (:mod:`focuswatch.policy.afconfirm`): NINA writes the
  report before it validates the run and moves the focuser back after a failed one, so the
  first light frame after the run decides — FOCPOS at the calculated point confirms (applied
  before that frame is judged), back at the initial point fails (baseline and request stay),
  and after ``af_confirm_frames`` frames that cannot tell it is given up. The report, the
  hook event and AUTOFOCUS-FINISHED of one run (within ``af_same_run_s``) are one run.
* **The frame step**: calibration frames ignored, lights through
  :func:`focuswatch.pipeline.assess_for_policy` (diagnosed against the policy's baseline) and
  :meth:`Monitor.observe <focuswatch.policy.Monitor.observe>`; a bad frame is one row.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from focuswatch.policy import afconfirm
from focuswatch.boundary import frame_boundary
from focuswatch.errors import FrameError, FrameIncomplete
from focuswatch.optics import Rig
from focuswatch.policy import AutofocusMark, Decision, FrameRecord, Monitor

log = logging.getLogger("focuswatch.watch")

#: Journal ``source`` suffixes of NINA autofocus signals that were *not* applied to the policy
#: (a failed run, one never confirmed, a second signal of a run already counted): a restart
#: must not apply them either.
AF_FAILED, AF_UNCONFIRMED, AF_SAME_RUN = ":failed", ":unconfirmed", ":same-run"
_NOT_APPLIED = (AF_FAILED, AF_UNCONFIRMED, AF_SAME_RUN)
UNCONFIRMED = "unconfirmed"
#: A hook's matching report may be written up to this long after the hook ran (clock rounding).
REPORT_AFTER_HOOK_S = 5.0
#: A frame written this little before a NINA run ended still belongs to the old focus
#: (file times are rounded; NINA stamps the report when it writes it).
WRITTEN_BEFORE_RUN_S = 1.0
_MAX_RUNS_KEPT = 50


@dataclass(frozen=True)
class Processed:
    """What the loop did with one file (for the CLI's lines and the tests)."""

    path: Path
    status: str                      # measured / error / ignored
    decision: Decision | None = None
    error: str | None = None
    stats: dict[str, Any] | None = None


@dataclass(frozen=True)
class AFSignal:
    """One autofocus signal as the loop receives it.

    ``key`` is its journal key (``source:time`` for the event log, ``nina-report:NAME`` for a
    report, ``nina-api:TIME``); ``event`` the :class:`~focuswatch.io.statefile.AutofocusEvent` it
    came from (the state file shows it); ``report`` the NINA report's file name,
    ``candidate`` the run parsed from it (:func:`focuswatch.policy.afconfirm.candidate_from_run`) and
    ``written_s`` the report file's modification time (which hook belongs to which report).
    """

    key: str
    mark: AutofocusMark
    event: Any = None
    report: str | None = None
    candidate: afconfirm.AFCandidate | None = None
    written_s: float | None = None

    @classmethod
    def of(cls, mark: AutofocusMark) -> "AFSignal":
        """A bare mark (``replay --events/--af-folder`` of older callers) under a key of its own."""
        return cls(f"{mark.source}:{mark.time_s!r}", mark)


def measure_record(frame: Any, config: Any, monitor: Monitor,
                   use_diagnose: bool = True, *, seeing_witness: Any = None,
                   time_s: float | None = None) -> tuple[FrameRecord, Any, Any]:
    """Measure a loaded frame and turn it into the policy's :class:`FrameRecord`.

    The one frame pipeline (:func:`focuswatch.io.assess.measure_record`: stars, diagnosis
    against the policy's baseline, record, dated by DATE-OBS else the file's modification time)
    inside the frame boundary, so whatever goes wrong with this frame becomes one
    :class:`FrameError` naming it and the night goes on. The same step as the watcher's and
    ``replay``'s (:meth:`NightSession._measure`, which calls
    :func:`focuswatch.pipeline.assess_for_policy` itself to keep the frame's diagnosis for the
    night's dew reference), for callers that want the record only. ``seeing_witness``: the night's
    in-focus seeing witness for the frame (:class:`focuswatch.diagnose.WitnessTracker`);
    ``time_s`` its capture time when already known (else DATE-OBS or the file's time).
    """
    from focuswatch.io import assess

    with frame_boundary(frame.path):  # whatever this frame does is one line
        return assess.measure_record(frame, config, monitor, use_diagnose, seeing_witness=seeing_witness,
                                     time_s=time_s)


def dew_row(dew: tuple[Any, ...] | None) -> dict[str, Any] | None:
    """A frame's dew figures as its journal keeps them (``{"halo_excess": .., "hfr_px": ..,
    "halo_inner": ..}``, :func:`focuswatch.diagnose.witness.dew_figures`; all ``None`` for a frame
    that gives the dew reference nothing); ``None`` when the frame was not diagnosed.
    :meth:`NightSession.restore` reads them back (:func:`dew_from_row`)."""
    if dew is None:
        return None
    return {"halo_excess": dew[0], "hfr_px": dew[1], "halo_inner": dew[2]}


def dew_from_row(row: Any) -> tuple[float | None, float | None, float | None] | None:
    """:func:`dew_row` read back: ``(halo_excess, hfr_px, halo_inner)``, ``None`` when the row has no
    such figures (a journal written before they were kept, a frame not diagnosed, or a row without
    the night's dew figure ``halo_inner``: a reference built without it would leave the night's dew
    call off all night, so such a frame adds nothing and the next frames rebuild the reference). A
    value that is not a number reads as ``None`` (that frame then adds nothing to the reference)."""
    if not isinstance(row, dict) or "halo_inner" not in row:
        return None

    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return num(row.get("halo_excess")), num(row.get("hfr_px")), num(row.get("halo_inner"))


def is_nina_source(source: str | None) -> bool:
    """A NINA autofocus signal: a report (``nina-report``), the sequence hook (``nina-hook``, the
    hooks' default ``--source``), the Advanced API (``nina-api``) or plain ``nina``.

    These need confirming (:mod:`focuswatch.policy.afconfirm`); other sources (Ekos, ``check
    --clear``, a plain ``autofocus-done``, a simulator) count at once.
    """
    src = str(source or "").lower()
    return src in ("nina", "nina-report", "nina-api") or src.startswith("nina-hook")


def confirm_from_start(candidate: afconfirm.AFCandidate, *, focuser_pos: float | None, frame_filter: str | None,
                       config: afconfirm.AFConfirmConfig) -> afconfirm.AFVerdict:
    """A hook's run without its report: judged against where the focuser was *before* the run
    (the last light frame's FOCPOS, ``candidate.initial_pos`` — NINA's InitialFocusPoint is the
    position the run started from, and a failed run moves back there).

    Back at the start → ``failed`` (a run that really ended within the tolerance of its start
    changed nothing worth a new baseline); moved → ``confirmed``; no FOCPOS, no start, another
    filter → ``pending``.
    """
    pos, init = focuser_pos, candidate.initial_pos
    if pos is None or init is None:
        return afconfirm.AFVerdict(afconfirm.PENDING, "no NINA report for this run and no focuser position (FOCPOS) "
                                                      "before and after it to compare")
    if candidate.filter_name and frame_filter and frame_filter.strip().lower() != candidate.filter_name.strip().lower():
        return afconfirm.AFVerdict(afconfirm.PENDING, f"the next frame uses filter {frame_filter}, the frames before "
                                                      f"the autofocus {candidate.filter_name} (a filter offset may "
                                                      "move the focuser)")
    tol = afconfirm.tolerance_steps(candidate, config)
    if abs(float(pos) - float(init)) <= tol:
        return afconfirm.AFVerdict(afconfirm.FAILED, f"the next frame's FOCPOS {pos:.0f} is where the focuser was "
                                                     f"before the run ({init:.0f}, ±{tol:.0f} steps): a failed NINA "
                                                     "run moves back there")
    return afconfirm.AFVerdict(afconfirm.CONFIRMED, f"the focuser moved from {init:.0f} to {pos:.0f} "
                                                    "(no NINA report for this run to compare with)")


def judge_nina_run(candidate: afconfirm.AFCandidate, *, focuser_pos: float | None, frame_filter: str | None,
                   config: afconfirm.AFConfirmConfig) -> afconfirm.AFVerdict:
    """The verdict of the first light frame after a NINA run: :func:`focuswatch.policy.afconfirm.confirm`
    when the run's calculated focus point is known (or the API confirmed it), else
    :func:`confirm_from_start`."""
    judge = afconfirm.confirm if (candidate.calculated_pos is not None or candidate.api_finished) \
        else confirm_from_start
    return judge(candidate, focuser_pos=focuser_pos, frame_filter=frame_filter, config=config)


@dataclass
class NinaRun:
    """One NINA autofocus run: every signal of it (report, hook event, AUTOFOCUS-FINISHED) and
    its verdict (``pending`` until a light frame or the Advanced API decides)."""

    time_s: float
    candidate: afconfirm.AFCandidate
    mark: AutofocusMark                       # applied when confirmed (the report's, when there is one)
    report: str | None = None
    signals: list[tuple[str, AutofocusMark, Any]] = field(default_factory=list)
    status: str = afconfirm.PENDING
    reason: str = ""
    n_frames: int = 0
    journaled: set[str] = field(default_factory=set)


class NightSink:
    """Where the loop's outputs go. This one drops them all (``replay`` writes nothing);
    the watcher's writes the journal and the state file and fires the triggers."""

    def record_frame(self, key: Any, *, time_s: float | None, status: str, record: FrameRecord | None = None,
                     stats: dict[str, Any] | None = None, decision: Decision | None = None,
                     error: str | None = None, dew: dict[str, Any] | None = None) -> None:
        """A journal row for one file (``key`` is ``None`` when there is no journal key); ``dew``: the
        frame's dew figures for the night's dew reference (:func:`dew_row`), ``None`` undiagnosed."""

    def record_autofocus(self, key: str, mark: AutofocusMark) -> None:
        """A journal row for one autofocus signal (``mark.source`` carries a ``:failed``… suffix
        when it was not applied)."""

    def counted_autofocus(self, mark: AutofocusMark, event: Any) -> None:
        """An autofocus was applied to the policy (the refocus request is answered)."""

    def decided(self, record: FrameRecord, decision: Decision, request: Any) -> None:
        """The policy decided on a frame; ``request`` is the refocus
        :class:`~focuswatch.triggers.TriggerRequest` (its ``time`` left for the sink) or ``None``."""

    def verdict(self, mark: AutofocusMark, status: str, reason: str) -> None:
        """A NINA run was judged: ``confirmed``, ``failed`` or ``unconfirmed``."""

    def processed(self, out: Processed) -> None:
        """One file is done (a printed line, a row)."""


@dataclass
class JournalRow:
    """One output of the loop as :class:`RecordingSink` keeps it (tests compare two nights)."""

    what: str
    key: Any
    data: dict[str, Any]


class RecordingSink(NightSink):
    """Keeps every output in ``rows`` (and forwards :meth:`processed` to ``on_processed``)."""

    def __init__(self, on_processed: Callable[[Processed], None] | None = None):
        self.rows: list[JournalRow] = []
        self.on_processed = on_processed

    def record_frame(self, key: Any, **kw: Any) -> None:
        self.rows.append(JournalRow("frame", key, kw))

    def record_autofocus(self, key: str, mark: AutofocusMark) -> None:
        self.rows.append(JournalRow("autofocus", key, {"mark": mark}))

    def decided(self, record: FrameRecord, decision: Decision, request: Any) -> None:
        if request is not None:
            self.rows.append(JournalRow("request", record.file, {"request": request}))

    def verdict(self, mark: AutofocusMark, status: str, reason: str) -> None:
        self.rows.append(JournalRow("verdict", mark.source, {"status": status, "reason": reason}))

    def processed(self, out: Processed) -> None:
        if self.on_processed:
            self.on_processed(out)


class NightSession:
    """The policy's night: frames and autofocus signals in, decisions and journal rows out.

    Parameters
    ----------
    monitor
        The policy (:class:`~focuswatch.policy.Monitor`), restored or new.
    config
        The loaded :class:`~focuswatch.config.Config` (the rig for the frame step).
    watch
        The ``[watch]`` settings (:class:`~focuswatch.watch.WatchConfig`): ``af_confirm_frames``,
        ``af_same_run_s``, ``af_tolerance_steps`` are read here.
    diagnose
        Ask the single-frame diagnosis before the policy.
    sink
        Where the outputs go (:class:`NightSink`: nowhere).
    report_for
        ``time_s -> AFSignal | None``: the NINA report a hook or API signal at ``time_s``
        belongs to, when the feeder can look for one the loop has not been given yet (the
        watcher globs the report folder). Reports already offered are always searched.
    log_errors
        Log a bad file as a warning (the watcher); ``replay``'s caller prints its rows itself.
    """

    def __init__(self, monitor: Monitor, config: Any, *, watch: Any, diagnose: bool = True,
                 sink: NightSink | None = None, report_for: Callable[[float], AFSignal | None] | None = None,
                 log_errors: bool = True):
        self.monitor = monitor
        self.config = config
        self.watch = watch
        self.use_diagnose = diagnose
        self.sink = sink or NightSink()
        self.report_for = report_for
        self.log_errors = log_errors
        self.af_confirm = afconfirm.AFConfirmConfig(tolerance_steps=watch.af_tolerance_steps)
        self.queue: list[tuple[AFSignal, float]] = []        # (signal, when the feeder saw it), by time
        self.runs: list[NinaRun] = []
        self.reports: dict[str, AFSignal] = {}               # NINA reports offered so far, by name
        self.claimed_reports: set[str] = set()               # reports a hook's run took as its own
        self.last_light: tuple[Any, Any] = (None, None)      # FOCPOS, filter of the last light frame
        self.decisions: list[Decision] = []
        self._witness: Any = None                            # the in-focus seeing witness (diagnose)

    # ------------------------------------------------------------------ restart
    def restore(self, items: Iterable[tuple[str, Any, Any]]) -> int:
        """Rebuild the policy and the night's seeing witness from a journal's ``restore_items()``;
        returns the frames restored. A NINA signal recorded as not applied (failed, unconfirmed,
        same run) stays not applied.

        The witness is fed the recorded frames in their order, with the autofocus marks between
        them, as :meth:`_measure` and :meth:`_count` fed it live, so a restarted watcher judges
        the next frames against the same in-focus frames as an unbroken one. Its key besides the
        filter is the plate scale of the frame's rig, the ``[rig]`` merged with the frame's header
        (:func:`focuswatch.optics.rig_with_header`): a ``("header", FrameMeta, None)`` item before
        a frame (``Journal.restore_items(with_header=True)``, the header facts recorded with its
        measurement) gives it; without one, the ``[rig]`` alone (a rig known only from the
        headers then starts a new witness).

        The night's dew reference (``WitnessTracker.halo_reference``) is rebuilt the same way from
        a ``("dew", {"halo_excess", "hfr_px", "halo_inner"}, None)`` item before a frame
        (``Journal.restore_items(with_dew=True)``: the figures of the frame's one diagnosis, recorded
        with it, :func:`dew_row`). A frame without one (a journal written before they were kept, or
        a frame measured undiagnosed) adds nothing to it: an old journal restores as it did before
        (the reference is then taken from the next ``dew_night_frames`` frames)."""
        from focuswatch.optics import rig_with_header

        n = 0
        tracker = self.witnesses()
        rig = getattr(self.config, "rig", None) or Rig()
        meta: Any = None
        dew: Any = None
        for kind, a, b in items:
            if kind == "header":
                meta = a
            elif kind == "dew":
                dew = dew_from_row(a)
            elif kind == "frame":
                self.monitor.restore(a, b)
                if getattr(a, "hfr_kind", None) is None:  # the true half-flux radius, as measured here
                    try:
                        tracker.add(a.filter_name, a.time_s, a.hfr_px, a.focuser_pos,
                                    rig=rig_with_header(rig, meta) if meta is not None else rig, n_stars=a.n_stars,
                                    dew=dew if self.use_diagnose else None)
                    except Exception as exc:  # noqa: BLE001 - a row the witness cannot use costs the witness only
                        log.warning("%s: not used for the night's seeing witness after the restart (%s)",
                                    getattr(a, "file", "a journal row"), exc)
                meta = dew = None
                n += 1
            elif not str(a.source).endswith(_NOT_APPLIED):
                self.monitor.autofocus(a)
                tracker.autofocus()
        return n

    # ------------------------------------------------------------------ autofocus signals
    def offer(self, signal: AFSignal, now_s: float) -> bool:
        """A new autofocus signal (seen at ``now_s`` on the feeder's clock); it is applied in its
        turn (:meth:`apply_before`, :meth:`release`). False when it is a report a hook's run
        already took."""
        if signal.report is not None:
            if signal.report in self.claimed_reports:
                return False
            self.reports[signal.report] = signal
        self.queue.append((signal, now_s))
        self.queue.sort(key=lambda x: x[0].mark.time_s)
        return True

    def apply_before(self, written_s: float | None) -> None:
        """Apply the queued signals that happened before a file written at ``written_s``
        (``None``: its time is unknown, apply none)."""
        if written_s is None:
            return
        while self.queue and self.queue[0][0].mark.time_s < written_s:
            self._apply(self.queue.pop(0)[0])

    def release(self, now_s: float, held: Callable[[AutofocusMark, float], bool] | None = None) -> None:
        """Apply the queued signals, oldest first, until ``held(mark, seen_s)`` says the next one
        must wait (a file written before it may still be on its way)."""
        while self.queue:
            sig, seen = self.queue[0]
            if held is not None and held(sig.mark, seen):
                return
            self.queue.pop(0)
            self._apply(sig)

    def _apply(self, sig: AFSignal) -> None:
        """An autofocus signal in its turn: NINA's are held until confirmed, others count now."""
        if is_nina_source(sig.mark.source):
            self._nina_signal(sig)
        else:
            self._count(sig.key, sig.mark, sig.event)

    def _count(self, key: str, mark: AutofocusMark, event: Any) -> None:
        self.sink.record_autofocus(key, mark)
        self.monitor.autofocus(mark)
        self.witnesses().autofocus()  # the next frames of each filter give the seeing again
        self.sink.counted_autofocus(mark, event)
        log.info("autofocus (%s): the baseline is taken again from the next frames", mark.source)

    def _run_near(self, time_s: float) -> NinaRun | None:
        """The NINA run another signal at ``time_s`` belongs to (within ``af_same_run_s``)."""
        near = [r for r in self.runs if abs(r.time_s - time_s) <= self.watch.af_same_run_s]
        return min(near, key=lambda r: abs(r.time_s - time_s)) if near else None

    def _report_for(self, time_s: float) -> AFSignal | None:
        """The newest NINA report written within ``af_same_run_s`` before a hook/API signal."""
        if self.report_for is not None:
            got = self.report_for(time_s)
            if got is not None:
                return got
        lo, hi = time_s - self.watch.af_same_run_s, time_s + REPORT_AFTER_HOOK_S
        near = [s for s in self.reports.values() if s.written_s is not None and lo <= s.written_s <= hi
                and s.report not in self.claimed_reports]
        return max(near, key=lambda s: s.written_s) if near else None

    def _fallback_candidate(self, sig: AFSignal) -> afconfirm.AFCandidate:
        """A run nothing was parsed for. A bare report mark (``replay`` given marks only) knows
        its calculated point; a hook or API signal is judged from where the focuser was."""
        mark = sig.mark
        if mark.source == "nina-report":
            return afconfirm.AFCandidate(time_s=mark.time_s, source=mark.source,
                                         calculated_pos=float(mark.position) if mark.position is not None else None,
                                         initial_pos=self.last_light[0],
                                         filter_name=mark.filter_name or self.last_light[1])
        return afconfirm.AFCandidate(time_s=mark.time_s, source=mark.source, initial_pos=self.last_light[0],
                                     filter_name=self.last_light[1])

    def _nina_signal(self, sig: AFSignal) -> None:
        """A NINA report, hook event or AUTOFOCUS-FINISHED: joins (or opens) its run, held until
        confirmed. NINA writes the report before validating the run and Run Autofocus continues
        on error, so neither the report nor a hook after it proves the focus moved."""
        key, mark, ev = sig.key, sig.mark, sig.event
        is_report = key.startswith("nina-report:")
        run = self._run_near(mark.time_s)
        if run is None:
            rep = (sig if sig.candidate is not None else None) if is_report else self._report_for(mark.time_s)
            cand = rep.candidate if rep is not None and rep.candidate is not None else self._fallback_candidate(sig)
            run = NinaRun(mark.time_s, cand, rep.mark if rep is not None else mark,
                          rep.report if rep is not None else sig.report)
            self.runs = self.runs[-_MAX_RUNS_KEPT:] + [run]
            if rep is not None and not is_report:
                # the report is this run's: it must not become a second one when it comes in
                self.claimed_reports.add(str(rep.report))
                self.queue = [(s, t) for s, t in self.queue if s.report != rep.report]
                run.signals.append((rep.key, rep.mark, None))
        elif is_report and run.report is None and sig.candidate is not None:
            run.candidate = replace(sig.candidate, api_finished=run.candidate.api_finished)
            run.mark, run.report = mark, sig.report
        if all(k != key for k, _, _ in run.signals):
            run.signals.append((key, mark, ev))
        if mark.source == "nina-api":
            run.candidate = replace(run.candidate, api_finished=True)
        if run.status != afconfirm.PENDING:
            self._journal_run(run)                          # a late signal of a run already judged
            return
        log.info("NINA autofocus (%s): held until the next light frame confirms it", mark.source)
        verdict = afconfirm.confirm(run.candidate, config=self.af_confirm)
        if verdict.status == afconfirm.CONFIRMED:           # AUTOFOCUS-FINISHED: at once
            self._settle(run, verdict.status, verdict.reason)

    def _judge_runs(self, written_s: float | None, meta: Any) -> None:
        """The first light frame written after a held NINA run confirms it, fails it or not."""
        for run in [r for r in self.runs if r.status == afconfirm.PENDING]:
            if written_s is not None and written_s < run.time_s - WRITTEN_BEFORE_RUN_S:
                continue                                    # written before the run ended
            v = judge_nina_run(run.candidate, focuser_pos=meta.focuser_pos, frame_filter=meta.filter_name,
                               config=self.af_confirm)
            if v.status != afconfirm.PENDING:
                self._settle(run, v.status, v.reason)
                continue
            run.n_frames += 1
            if run.n_frames >= self.watch.af_confirm_frames:
                self._settle(run, UNCONFIRMED, f"{v.reason} ({run.n_frames} light frame(s) since)")

    def _settle(self, run: NinaRun, status: str, reason: str) -> None:
        run.status, run.reason = status, reason
        if status == afconfirm.CONFIRMED:
            key = next((k for k, _, _ in run.signals if k.startswith("nina-report:")), run.signals[0][0])
            ev = next((e for _, _, e in run.signals if e is not None), None)
            run.journaled.add(key)
            log.info("NINA autofocus confirmed: %s", reason)
            self._count(key, run.mark, ev)
        elif status == afconfirm.FAILED:
            log.warning("NINA autofocus failed (moved back): %s; the baseline and the refocus request stay", reason)
        else:
            log.warning("NINA autofocus not confirmed, not counted: %s; the baseline and the refocus request stay",
                        reason)
        self._journal_run(run)
        self.sink.verdict(run.mark, status, reason)

    def _journal_run(self, run: NinaRun) -> None:
        """Every signal of a judged run in the journal, so none is read again (nor applied by a
        restart): the applied one as is, the others under a ``:same-run``/``:failed``/
        ``:unconfirmed`` source."""
        suffix = {afconfirm.CONFIRMED: AF_SAME_RUN, afconfirm.FAILED: AF_FAILED}.get(run.status, AF_UNCONFIRMED)
        for key, mark, _ in run.signals:
            if key not in run.journaled:
                run.journaled.add(key)
                self.sink.record_autofocus(key, replace(mark, source=f"{mark.source}{suffix}"))

    # ------------------------------------------------------------------ frames
    def frame(self, path: Path, meta: Any, *, written_s: float | None, load: Callable[[], Any],
              key: Any = None) -> Processed | None:
        """One whole file in its turn (capture order); ``None`` when it vanished meanwhile.

        ``meta`` is its header when already read (``None``: read by ``load``), ``written_s``
        its modification time (the autofocus signals' clock), ``load`` returns the loaded
        frame (raises :class:`FrameError`, :class:`FrameIncomplete` — passed on to the feeder,
        which waits for the file — or ``FileNotFoundError``: deleted, skipped).
        """
        self.apply_before(written_s)
        if meta is not None and not meta.is_light:
            return self._ignored(key, path, meta)
        try:
            frame = load()
            if not frame.meta.is_light:
                return self._ignored(key, path, frame.meta)
            # a NINA autofocus waiting for its verdict: this light frame's FOCPOS decides, and a
            # confirmed one applies *before* the frame is judged (it is the first at the new focus)
            self._judge_runs(written_s, frame.meta)
            self.last_light = (frame.meta.focuser_pos, frame.meta.filter_name)
            record, stats, rig, dew = self._measure(frame)
            stats_d = stats.to_dict()
        except FrameIncomplete:
            raise
        except FileNotFoundError:
            log.info("%s: deleted before it could be read; skipped", path)
            return None
        except FrameError as exc:
            return self.error(path, exc, key=key)
        try:
            decision = self.monitor.observe(record, rig=rig)
        except Exception as exc:  # noqa: BLE001 - a policy bug on one odd record is this frame's, not the night's
            log.debug("%s: the refocus policy failed on this frame", path, exc_info=True)  # --debug only
            return self.error(path, FrameError(path, f"the refocus policy could not judge it "
                                                     f"({type(exc).__name__}: {exc})"), key=key)
        self.sink.record_frame(key, time_s=record.time_s, status="measured", record=record, stats=stats_d,
                               decision=decision, dew=dew_row(dew))
        self.decisions.append(decision)
        self.sink.decided(record, decision, self._request(record, decision))
        return self._out(Processed(path, "measured", decision=decision, stats=stats_d))

    def witnesses(self) -> Any:
        """The night's in-focus seeing witness (:class:`focuswatch.diagnose.WitnessTracker`): the
        first frames of each filter after an autofocus (or a focuser move) give the seeing the
        diagnosis judges the later frames' star size against (docs/diagnose.md)."""
        if self._witness is None:
            from focuswatch.diagnose import WitnessTracker

            dcfg = self.config.diagnose_config() if hasattr(self.config, "diagnose_config") else None
            self._witness = WitnessTracker(getattr(self.config, "rig", None), *((dcfg,) if dcfg is not None else ()))
        return self._witness

    def _measure(self, frame: Any) -> tuple[FrameRecord, Any, Any, tuple[Any, ...] | None]:
        """The frame measured with the night's seeing witness, and then added to it; also its dew
        figures (``(halo_excess, hfr_px, halo_inner)`` of its one diagnosis; ``None`` undiagnosed), which the
        journal keeps so a restart rebuilds the night's dew reference. The witness
        steps sit inside the frame's boundary: whatever goes wrong there is this frame's
        :class:`FrameError`, never the end of the night. The capture time is read once (a frame
        without DATE-OBS is not stat'ed again for its record)."""
        from focuswatch.diagnose.witness import dew_figures, frame_night_dew_figures, monitor_witness, with_monitor
        from focuswatch.io.assess import capture_time_s
        from focuswatch.optics import rig_with_header
        from focuswatch.pipeline import assess_for_policy, baseline_hfr_px

        meta, tracker = frame.meta, self.witnesses()
        with frame_boundary(frame.path):
            when = capture_time_s(frame.path if frame.path is not None else Path("."), meta)
            rig = rig_with_header(getattr(self.config, "rig", None) or Rig(), meta)
            witness = tracker.context_for(meta.filter_name, when, meta.focuser_pos, rig=rig) \
                if self.use_diagnose else None
            a = assess_for_policy(frame, self.config, self.monitor, self.use_diagnose,
                                  seeing_witness=witness, time_s=when)
            record, stats, full_rig = a.record, a.stats, a.rig
            # the dew reference from the frame's one diagnosis (the record's), only when frames are judged;
            # but its first frames (the reference) are judged on their star table alone: a baseline taken
            # on a defocused frame (a night begun out of focus) reads the next defocused frames as no focus
            # miss, and defocus narrows r90/r50 (the reference would read low, later frames as dew).
            # Asked only while the reference is collected (assess does not touch the policy's history)
            dew = None
            if self.use_diagnose:
                dew = dew_figures(a.diagnosis)
                if tracker.halo_reference(rig) is None and (
                        baseline_hfr_px(self.monitor.history, meta.filter_name) is not None
                        or with_monitor(monitor_witness(meta), witness) is not None):
                    dew = frame_night_dew_figures(stats, rig, tracker.config)  # judged with a baseline or a witness
            tracker.add(meta.filter_name, record.time_s, stats.hfr_px, meta.focuser_pos, rig=rig,
                        n_stars=stats.n_stars, dew=dew)
        return record, stats, full_rig, dew

    @staticmethod
    def _request(record: FrameRecord, d: Decision) -> Any:
        if d.decision != "refocus":
            return None
        from focuswatch.triggers import TriggerRequest

        return TriggerRequest(reason="; ".join(d.reasons), filter_name=record.filter_name, hfr_px=d.hfr_px,
                              defocus_um=d.defocus_um, defocus_cfz=d.defocus_cfz, frame_file=record.file)

    def error(self, path: Path, exc: FrameError, *, key: Any = None) -> Processed:
        """A file that is not a usable frame: one line, one journal row, the night goes on."""
        if self.log_errors:
            log.warning("%s", exc)
        self.sink.record_frame(key, time_s=None, status="error", error=str(exc))
        return self._out(Processed(path, "error", error=str(exc)))

    def _ignored(self, key: Any, path: Path, meta: Any) -> Processed:
        """A calibration frame (flat, dark, bias): seen and ignored."""
        self.sink.record_frame(key, time_s=meta.timestamp, status="ignored")
        return self._out(Processed(path, "ignored"))

    def _out(self, out: Processed) -> Processed:
        self.sink.processed(out)
        return out
