"""One frame pipeline: frame → stars → diagnosis → the policy's record.

Every command that judges frames goes through :func:`assess`: ``measure``, ``diagnose``,
``report``, ``af`` (frames at several focuser positions), and the watcher and ``replay``
through :func:`measure_record`. Before, each had its own copy of these steps, and they
drifted apart (the diagnosis was asked with or without the pixels, with different
baselines, and time came from different clocks).

This module is pure: it reads no file and no clock. :func:`assess` takes a loaded
:class:`~focuswatch.model.frame.Frame`, the rig and an :class:`AssessContext` (the baseline the
frame is judged against, its capture time) and returns a :class:`FrameAssessment`. The file
side lives in :mod:`focuswatch.io.assess`: ``assess_path`` loads a frame read-only, dates it
(DATE-OBS, else the file's modification time) and calls :func:`assess`.

>>> from focuswatch.model.frame import frame_from_array
>>> import numpy as np
>>> noise = np.random.default_rng(1).normal(100.0, 5.0, (64, 64)).astype(np.float32)
>>> a = assess(frame_from_array(noise), None, AssessContext(time_s=0.0))
>>> a.record.n_stars, a.diagnosis is None
(0, True)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from focuswatch.errors import FrameError
from focuswatch.optics import Rig

log = logging.getLogger("focuswatch.pipeline")

#: A diagnosis less sure than this is kept in the assessment but not handed to the policy
#: (it would set a frame aside or hold a refocus on a guess). The watcher's constant.
DIAGNOSIS_MIN_CONFIDENCE = 0.6


@dataclass(frozen=True)
class AssessContext:
    """What one frame is judged against (all optional; picklable).

    Parameters
    ----------
    time_s
        Capture time, seconds since the epoch (UTC). ``None``: the header's DATE-OBS, else
        0 (:func:`focuswatch.io.assess.assess_path` fills it from the file time when the
        header has none).
    baseline_hfr_px
        True HFR right after the last autofocus (px) for the same filter: the diagnosis
        turns HFR growth over it into defocus. The watcher passes the policy's baseline.
    diagnose
        Ask :func:`focuswatch.diagnose.frame` (``False``: stars only, e.g. V-curve frames).
    use_pixels
        Give the diagnosis the pixels too (``diagnose FILE`` does: halos, trailing); the
        watcher and ``replay`` judge from the star table alone, so they agree.
    min_confidence
        A diagnosis below this is not passed on to the policy's record.
    max_stars
        Cap on the stars measured (``stars.measure``'s ``max_stars``).
    plate_scale_arcsec_px
        Overrides the rig's plate scale (a caller that fixed it for a whole run of frames).
    diagnose_config
        The ``[diagnose]`` thresholds (:class:`focuswatch.diagnose.DiagnoseConfig`); ``None``:
        the defaults.
    profile_config
        How many stars get the full profile (:class:`focuswatch.stars.ProfileConfig`, from the
        ``[stars]`` table); ``None``: the defaults.
    seeing_witness
        The night's in-focus seeing witness for this frame
        (:class:`focuswatch.diagnose.SeeingWitness`, from :class:`~focuswatch.diagnose.WitnessTracker`):
        the diagnosis judges the star's size against it. A seeing monitor's header value
        (``SEEING``...) takes its place when the frame has one.
    """

    time_s: float | None = None
    baseline_hfr_px: float | None = None
    diagnose: bool = True
    use_pixels: bool = False
    min_confidence: float = DIAGNOSIS_MIN_CONFIDENCE
    max_stars: int = 3000
    plate_scale_arcsec_px: float | None = None
    diagnose_config: Any = None
    profile_config: Any = None
    seeing_witness: Any = None


@dataclass(frozen=True)
class FrameAssessment:
    """One frame, judged: its stars, its diagnosis and the policy's record.

    ``rig`` is the rig with the header filling what the configuration left out;
    ``stats`` a :class:`~focuswatch.stars.FrameStats`; ``diagnosis`` a
    :class:`~focuswatch.diagnose.Diagnosis` or ``None`` (not asked, no stars, or failed:
    ``diagnosis_error`` says why); ``record`` the :class:`~focuswatch.policy.FrameRecord`
    the policy decides on (diagnosis label and advice only when confident enough).
    """

    file: str
    rig: Rig
    stats: Any
    diagnosis: Any
    record_source: Any
    diagnosis_error: str | None = None

    @property
    def record(self) -> Any:
        """The policy's :class:`~focuswatch.policy.FrameRecord`, built on first use: ``measure``
        wants the stars only, and importing the policy and the diagnosis would cost it more
        than a tenth of a second per process."""
        src = self.record_source
        if isinstance(src, _PendingRecord):
            src = src.build()
            object.__setattr__(self, "record_source", src)
        return src

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrameAssessment):
            return NotImplemented
        return ((self.file, self.rig, self.stats, self.diagnosis, self.record, self.diagnosis_error)
                == (other.file, other.rig, other.stats, other.diagnosis, other.record, other.diagnosis_error))

    @property
    def n_stars(self) -> int:
        return int(self.stats.n_stars or 0)

    def to_dict(self) -> dict[str, Any]:
        """``stats``, ``diagnosis`` and ``record`` as JSON-able dicts (the rig too)."""
        return {"file": self.file, "rig": self.rig.to_dict(), "stats": self.stats.to_dict(),
                "diagnosis": self.diagnosis.to_dict() if self.diagnosis is not None else None,
                "record": self.record.to_dict(), "diagnosis_error": self.diagnosis_error}

    @classmethod
    def from_dict(cls, d: Any) -> "FrameAssessment":
        """Read :meth:`to_dict` back (each part through its own record's ``from_dict``)."""
        from focuswatch.diagnose import Diagnosis
        from focuswatch.policy import FrameRecord
        from focuswatch.stars import FrameStats

        return cls(str(d["file"]), rig_from_dict(d["rig"]), FrameStats.from_dict(d["stats"]),
                   Diagnosis.from_dict(d["diagnosis"]) if d.get("diagnosis") else None,
                   FrameRecord.from_dict(d["record"]), d.get("diagnosis_error"))


def rig_from_dict(d: Any) -> Rig:
    """A :class:`Rig` from ``Rig.to_dict()`` (whose ``f_ratio`` is derived unless it was given)."""
    from dataclasses import fields

    names = {f.name for f in fields(Rig)}
    kw = {k: v for k, v in d.items() if k in names and v is not None}
    f_ratio = d.get("f_ratio")
    if f_ratio is not None and not (kw.get("aperture_mm") and kw.get("focal_length_mm")):
        kw["f_ratio_given"] = f_ratio
    return Rig(**kw)


def _advice_text(advice: Any) -> str | None:
    if isinstance(advice, (list, tuple)):
        advice = "; ".join(str(a) for a in advice)
    return advice or None


def assess(frame: Any, rig: Rig | None, context: AssessContext = AssessContext()) -> FrameAssessment:
    """Measure, diagnose and record one loaded frame (pure: no file, no clock).

    Raises :class:`FrameError` when the stars cannot be measured at all (a frame with no
    stars is a value: ``n_stars = 0`` and ``stats.reason``). A failing diagnosis never
    loses the frame: it is logged with its traceback and ``diagnosis_error`` says so.
    """
    from focuswatch import stars
    from focuswatch.optics import rig_with_header

    meta = frame.meta
    full_rig = rig_with_header(rig or Rig(), meta)
    try:
        scale = context.plate_scale_arcsec_px or full_rig.plate_scale_arcsec_px
        prof = {"profile": context.profile_config} if context.profile_config is not None else {}
        stats = stars.measure(frame, plate_scale_arcsec_px=scale, max_stars=context.max_stars, **prof)
    except (ValueError, FloatingPointError, MemoryError) as exc:
        raise FrameError(frame.path, f"cannot measure stars: {exc}") from None
    file = str(frame.path) if frame.path is not None else str(stats.file or "")
    return judge(stats, full_rig, context, image=frame, file=file)


def judge(stats: Any, rig: Rig, context: AssessContext = AssessContext(), *, image: Any = None,
          file: str | None = None) -> FrameAssessment:
    """The steps after the stars: diagnosis and the policy's record, from a ``FrameStats``.

    ``rig`` must already hold the header's values (:func:`assess` passes its own); ``image``
    (the frame) is given to the diagnosis only with ``context.use_pixels``. Used by
    :func:`assess`, and by the report to judge measured frames again against the policy's
    baseline without measuring them twice.
    """
    diagnosis, error = None, None
    if context.diagnose and stats.n_stars:
        from focuswatch import diagnose

        try:
            extra = {"config": context.diagnose_config} if context.diagnose_config is not None else {}
            # a seeing monitor's value from the header, else the night's in-focus witness: the star's
            # size can then call the miss the profile shape hides
            # (with the night's dew reference, which the night's witness carries)
            witness = diagnose.with_monitor(diagnose.monitor_witness(stats.meta), context.seeing_witness)
            if witness is not None:
                extra["seeing_witness"] = witness
            diagnosis = diagnose.frame(stats, rig, image=image if context.use_pixels else None,
                                       baseline_hfr_px=context.baseline_hfr_px, **extra)
        except Exception as exc:  # noqa: BLE001 - a diagnosis bug must not lose the frame, but must be seen
            log.warning("diagnosis failed on %s (the frame is still judged without it)", file or stats.file or "?",
                        exc_info=True)
            error = f"diagnosis failed: {exc}"
    label = advice = None
    if diagnosis is not None and float(getattr(diagnosis, "confidence", 1.0) or 0.0) >= context.min_confidence:
        label, advice = diagnosis.label, _advice_text(getattr(diagnosis, "advice", None))
    file = file if file is not None else str(stats.file or "")
    meta = stats.meta
    time_s = context.time_s if context.time_s is not None else (meta.timestamp or 0.0)
    record = _PendingRecord(stats, file, time_s, label, advice)
    return FrameAssessment(file, rig, stats, diagnosis, record, error)


@dataclass(frozen=True)
class _PendingRecord:
    """What :func:`judge` hands ``record_from_stats``, kept until the record is asked for."""

    stats: Any
    file: str
    time_s: float
    label: Any
    advice: Any

    def build(self) -> Any:
        from focuswatch.policy import record_from_stats

        return record_from_stats(self.stats, file=self.file, time_s=self.time_s, diagnosis=self.label,
                                 diagnosis_advice=self.advice)


def measure_stats(frame: Any, *, plate_scale_arcsec_px: float | None = None) -> Any:
    """The pipeline without the diagnosis: the frame's ``FrameStats`` (V-curve frames)."""
    return assess(frame, None, AssessContext(diagnose=False, plate_scale_arcsec_px=plate_scale_arcsec_px)).stats


def baseline_hfr_px(history: Any, filter_name: str | None) -> float | None:
    """The policy's baseline for the diagnosis: the first accepted frame of the same filter
    since the autofocus (``Monitor.history``), as the watcher has always used."""
    return next((f.hfr_px for f in history if f.filter_name == filter_name), None)


def measure_record(frame: Any, config: Any, monitor: Any, use_diagnose: bool = True, *,
                   time_s: float, seeing_witness: Any = None) -> tuple[Any, Any, Rig]:
    """(FrameRecord, FrameStats, rig) through :func:`assess`, judged as the watcher judges.

    The watcher and ``replay`` judge each frame exactly as ``measure``, ``diagnose`` and
    ``report`` do; the baseline handed to the diagnosis is the policy's (``monitor.history``).
    ``time_s`` is the capture time: :func:`focuswatch.io.assess.measure_record`, the file
    side, passes DATE-OBS or else the file's modification time, so this module reads no file.
    ``seeing_witness`` is the night loop's in-focus seeing witness for this frame, if any.
    """
    a = assess_for_policy(frame, config, monitor, use_diagnose, time_s=time_s, seeing_witness=seeing_witness)
    return a.record, a.stats, a.rig


def assess_for_policy(frame: Any, config: Any, monitor: Any, use_diagnose: bool = True, *,
                      time_s: float, seeing_witness: Any = None) -> FrameAssessment:
    """:func:`measure_record`'s whole :class:`FrameAssessment` (the diagnosis too): the night loop
    feeds the night's dew reference from the same diagnosis as the frame's record, so no frame is
    diagnosed twice (:func:`focuswatch.diagnose.witness.dew_figures`)."""
    dcfg = config.diagnose_config() if hasattr(config, "diagnose_config") else None  # [diagnose]
    pcfg = config.stars_config().profile() if hasattr(config, "stars_config") else None  # [stars]
    ctx = AssessContext(time_s=time_s,
                        baseline_hfr_px=baseline_hfr_px(monitor.history, frame.meta.filter_name),
                        diagnose=use_diagnose, diagnose_config=dcfg, profile_config=pcfg,
                        seeing_witness=seeing_witness)
    return assess(frame, config.rig, ctx)
