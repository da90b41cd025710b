"""The file side of the one frame pipeline: read a frame, date it, hand it to :mod:`focuswatch.pipeline`.

:func:`focuswatch.pipeline.assess` is pure: pixels, rig and an
:class:`~focuswatch.pipeline.AssessContext` in, a :class:`~focuswatch.pipeline.FrameAssessment`
out. What needs the file lives here: loading it read-only (:func:`focuswatch.io.frames.load`)
and its capture time, which falls back on the file's modification time when the header has
no DATE-OBS (the order the watcher processes frames in). Keeping these two steps out of the
pipeline is what lets the pipeline stay free of files and clocks.

:func:`assess_path` is a top-level function with picklable arguments, so a process pool can
map it over a night's frames (:mod:`focuswatch.scale.batch` does).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from focuswatch.io import frames
from focuswatch.optics import Rig
from focuswatch.pipeline import AssessContext, FrameAssessment, assess
from focuswatch.pipeline import measure_record as _judge_for_policy

__all__ = ["assess_path", "capture_time_s", "measure_record"]


def capture_time_s(path: Path, meta: Any) -> float:
    """Capture time for ordering and the record: DATE-OBS, else the file's modification time."""
    return frames.frame_order_key(path, meta)[0]


def assess_path(path: str | Path, rig: Rig | None = None, options: AssessContext = AssessContext()) -> FrameAssessment:
    """Load ``path`` read-only and :func:`~focuswatch.pipeline.assess` it (picklable for process pools).

    ``options.time_s`` left at ``None`` is filled with the capture time (DATE-OBS, else the
    file's modification time, as the watcher orders frames). Raises
    :class:`~focuswatch.errors.FrameError` for a frame that cannot be read or measured.
    """
    p = Path(path)
    frame = frames.load(p)
    if options.time_s is None:
        options = replace(options, time_s=capture_time_s(p, frame.meta))
    return assess(frame, rig, options)


def measure_record(frame: Any, config: Any, monitor: Any, use_diagnose: bool = True, *,
                   seeing_witness: Any = None, time_s: float | None = None) -> tuple[Any, Any, Rig]:
    """:func:`focuswatch.pipeline.measure_record` with the capture time read from the frame's file.

    Dated as the watcher and ``replay`` date a frame: one without DATE-OBS by its file's
    modification time, as the watcher orders frames (their night loop calls
    :func:`focuswatch.pipeline.assess_for_policy` with that time itself). ``seeing_witness``:
    the night loop's in-focus seeing witness for the frame (:class:`focuswatch.diagnose.WitnessTracker`).
    ``time_s``: the capture time when the caller already has it (the night loop dates the
    frame for its witness first), so a frame without DATE-OBS is not stat'ed again.
    """
    if time_s is None:
        time_s = capture_time_s(frame.path if frame.path is not None else Path("."), frame.meta)
    return _judge_for_policy(frame, config, monitor, use_diagnose, time_s=time_s, seeing_witness=seeing_witness)
