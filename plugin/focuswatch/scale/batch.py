"""The per-frame work of the batch commands, as top-level functions a worker process can run.

Each function takes a frame's *path* (workers read the file themselves, so only paths travel
to them and small results come back) and returns the same objects the one-process code paths
build, so ``--workers 1`` and ``--workers 8`` give the same numbers. They are run through
:mod:`focuswatch.scale.parallel`.

``scan_session`` is the one session scanner: :func:`focuswatch.render.report.scan_session` is it
run in this process, so ``--workers 1`` and ``--workers 8`` build the same
:class:`~focuswatch.render.report.SessionScan` (same order, same left-out reasons).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from focuswatch.optics import Rig
from focuswatch.scale.parallel import Batch, Runner, map_frames


def measure_one(path: Path, rig: Rig | None = None, profile_config: Any = None):
    """``focuswatch measure`` on one frame: the one frame pipeline without the diagnosis
    (``profile_config``: the ``[stars]`` table's :class:`~focuswatch.stars.ProfileConfig`)."""
    from focuswatch.io.assess import assess_path
    from focuswatch.pipeline import AssessContext

    return assess_path(path, rig, AssessContext(diagnose=False, profile_config=profile_config)).stats


def diagnose_one(path: Path, rig0: Rig | None = None, baseline_hfr_px: float | None = None,
                 diagnose_config: Any = None, profile_config: Any = None):
    """``focuswatch diagnose`` on one frame: ``(stats, diagnosis, rig with the header merged)``.

    The diagnosis runs in the worker because it looks at the pixels (one-sided flares),
    which never leave the worker.
    """
    from focuswatch import diagnose
    from focuswatch.io import frames
    from focuswatch.pipeline import AssessContext, assess

    frame = frames.load(path)
    a = assess(frame, rig0, AssessContext(baseline_hfr_px=baseline_hfr_px, use_pixels=True, min_confidence=0.0,
                                          diagnose_config=diagnose_config, profile_config=profile_config))
    extra = {"config": diagnose_config} if diagnose_config is not None else {}
    d = a.diagnosis if a.diagnosis is not None else diagnose.frame(a.stats, a.rig, baseline_hfr_px=baseline_hfr_px,
                                                                   **extra)
    return a.stats, d, a.rig


def scan_one(path: Path, rig: Rig | None = None, with_diagnosis: bool = True, diagnose_config: Any = None,
             profile_config: Any = None):
    """One frame of a session scan: ``None`` for a calibration frame, else its
    :class:`~focuswatch.pipeline.FrameAssessment` (stats, diagnosis with the ``[diagnose]``
    thresholds ``diagnose_config``, the policy's record)."""
    from focuswatch.io import frames
    from focuswatch.io.assess import capture_time_s
    from focuswatch.pipeline import AssessContext, assess

    frame = frames.load(path)
    if not frame.meta.is_light:
        return None
    return assess(frame, rig, AssessContext(time_s=capture_time_s(path, frame.meta), diagnose=with_diagnosis,
                                            diagnose_config=diagnose_config, profile_config=profile_config))


def af_one(path: Path, plate_scale_arcsec_px: float | None = None):
    """One frame of an autofocus sweep: ``(path, header, stats)`` as ``runs_from_frames`` keeps it."""
    from focuswatch.io import frames
    from focuswatch.pipeline import measure_stats

    frame = frames.load(path)
    return path, frame.meta, measure_stats(frame, plate_scale_arcsec_px=plate_scale_arcsec_px)


def scan_session(folder: str | os.PathLike[str], *, rig: Rig | None = None, progress: bool = True,
                 runner: Runner | None = None, min_stars: int | None = None, diagnose: bool = True,
                 diagnose_config: Any = None, profile_config: Any = None):
    """Find, validate and measure a session's light frames on ``runner``; returns ``(scan, batch)``.

    ``diagnose_config`` (the ``[diagnose]`` thresholds) judges every frame and stays on the scan
    for any diagnosis made later from it.

    Frames a worker could not finish (a worker died on them, the scheduler went away) are
    left out with that reason, like unreadable ones, and listed in ``batch.lost``.
    """
    from focuswatch.scale import session
    from focuswatch.errors import ConfigError

    min_stars = session.MIN_STARS_FOR_STACK if min_stars is None else min_stars
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder")
    files = session.find_frames(root)
    scan = session.SessionScan(str(root), diagnose_config=diagnose_config)
    t0 = time.monotonic()
    batch = map_frames(scan_one, files, args=(rig, diagnose, diagnose_config, profile_config), runner=runner, progress=progress, desc="measuring")
    bad = {id(o) for o in batch.bad}
    for o in sorted(batch.bad + batch.lost, key=lambda o: o.index):
        scan.left_out.append(session.LeftOut(str(o.path), o.problem or "unreadable"))
        if id(o) in bad:  # unreadable frames make the command exit 1 (lost ones are said by undone_text)
            scan.unreadable.append(scan.left_out[-1])
    n_failed = n_measured = 0
    for o in batch.done:
        a = o.value
        if a is None:
            scan.n_not_light += 1
            continue
        st = a.stats
        n_measured += 1
        if diagnose:
            scan.diagnoses[str(st.file)] = a.diagnosis
            n_failed += a.diagnosis_error is not None
        scan.records[str(st.file)] = a.record
        scan.stats.append(st)
        if st.n_stars < min_stars:
            why = st.reason or "too few stars"
            scan.left_out.append(session.LeftOut(str(o.path), f"only {st.n_stars} stars ({why}); left out of the stack"))
        else:
            scan.usable.append(str(o.path))
    if n_failed:
        scan.diagnose_notes.append(f"diagnosis: failed on {n_failed} of {n_measured} frames")
    scan.measure_s = time.monotonic() - t0
    return scan, batch


def measure_af_frames(paths, plate_scale_arcsec_px: float | None, runner: Runner | None,
                      progress: bool) -> tuple[list[Any], Batch]:
    """Measure autofocus-sweep frames on workers: ``[(path, meta, stats)]`` in input order."""
    batch = map_frames(af_one, paths, args=(plate_scale_arcsec_px,), runner=runner, progress=progress,
                       order=None)
    return [o.value for o in batch.done], batch
