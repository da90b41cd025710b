"""Was that NINA autofocus a success? Pure: values in, a verdict out (no files, no clock).

Why this exists (read from N.I.N.A. 3.x, ``NINA.WPF.Base/ViewModel/AutoFocus/AutoFocusVM.cs``):

- NINA writes the autofocus report JSON (``GenerateReport``) *before* it validates the run;
  a run that fails validation moves the focuser back to ``InitialFocusPoint`` and returns
  null, so a report exists for failed runs too.
- "Run Autofocus" then throws "Autofocus failed to run", but its default error behaviour is
  ContinueOnError: an ``autofocus-done`` hook placed after it still runs.
- ``PreviousFocusPoint`` in a report is that same run's result (NINA fills it from the run it
  just made), not the autofocus before it: it is never read here.
- The Advanced API's ``AUTOFOCUS-FINISHED`` WebSocket event is sent from
  ``IFocuserConsumer.UpdateEndAutoFocusRun``, which NINA calls only for successful runs
  (ninaAPI ``WebService/V2/Equipment/Focuser.cs``).

So an autofocus *candidate* (a new report, or an ``autofocus-done`` event with the report it
belongs to) counts only once it is confirmed:

==========================================  ===========  ===============================================
evidence                                    verdict      why
==========================================  ===========  ===============================================
``AUTOFOCUS-FINISHED`` for this run         confirmed    sent only for successful runs
next light frame (same filter): FOCPOS      confirmed    the focuser stayed where the run put it
near ``CalculatedFocusPoint`` and not at
``InitialFocusPoint``
next light frame: FOCPOS at                 failed       NINA moved back after a failed validation
``InitialFocusPoint`` (and not at the
calculated one)
calculated and initial point too close to   pending      cannot tell a success from a move back
tell apart, or FOCPOS near neither, or no
FOCPOS, or another filter (offsets)
==========================================  ===========  ===============================================

Until a candidate is confirmed the caller keeps the policy's baseline and the pending refocus
request. "Near" is within :attr:`AFConfirmConfig.tolerance_steps`, or a fraction of the run's
own step between measure points when that is larger (focusers differ by 1000x in step size).

>>> c = AFCandidate(time_s=0.0, calculated_pos=15100, initial_pos=15400, filter_name="L", step_steps=50)
>>> confirm(c, focuser_pos=15100, frame_filter="L").status
'confirmed'
>>> confirm(c, focuser_pos=15400, frame_filter="L").status
'failed'
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from focuswatch.model.records import Record

CONFIRMED, FAILED, PENDING = "confirmed", "failed", "pending"


@dataclass(frozen=True)
class AFConfirmConfig(Record):
    """How close a frame's FOCPOS must be to a report's focus points, in focuser steps.

    ``tolerance_steps`` is the floor (backlash and rounding leave a few steps); the tolerance
    grows to ``step_fraction`` x the run's median step between measure points when that is
    larger.
    """

    tolerance_steps: float = 3.0
    step_fraction: float = 0.5


@dataclass(frozen=True)
class AFCandidate(Record):
    """An autofocus run that may or may not have succeeded.

    ``time_s`` is when it ended (seconds since the epoch); ``calculated_pos`` and
    ``initial_pos`` are the report's ``CalculatedFocusPoint.Position`` and
    ``InitialFocusPoint.Position`` (steps); ``step_steps`` the median spacing of its measure
    points; ``api_finished`` is True once the Advanced API sent ``AUTOFOCUS-FINISHED`` for it.
    """

    time_s: float
    source: str = "nina-report"
    calculated_pos: float | None = None
    initial_pos: float | None = None
    filter_name: str | None = None
    step_steps: float | None = None
    api_finished: bool = False


@dataclass(frozen=True)
class AFVerdict(Record):
    """``status`` is ``confirmed``, ``failed`` or ``pending``; ``reason`` says which evidence decided."""

    status: str
    reason: str

    @property
    def confirmed(self) -> bool:
        return self.status == CONFIRMED


def _finite(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def median_step(positions: Sequence[float]) -> float | None:
    """Median spacing (steps) between distinct measure-point positions; ``None`` under 2 points.

    >>> median_step([100, 150, 200, 250])
    50.0
    """
    xs = sorted({float(p) for p in positions if _finite(p) is not None})
    gaps = [b - a for a, b in zip(xs, xs[1:])]
    return float(statistics.median(gaps)) if gaps else None


def candidate_from_run(run: Any, time_s: float, *, source: str = "nina-report") -> AFCandidate:
    """An :class:`AFCandidate` from a parsed report (``focuswatch.autofocus.AFRun``).

    Reads ``reported_position_steps`` (CalculatedFocusPoint) and ``initial_position_steps``
    (InitialFocusPoint); ``previous_position_steps`` is deliberately ignored (it is the same
    run's result, see the module docstring).
    """
    positions = [p.position_steps for p in getattr(run, "points", ())]
    return AFCandidate(time_s=float(time_s), source=source,
                       calculated_pos=_finite(getattr(run, "reported_position_steps", None)),
                       initial_pos=_finite(getattr(run, "initial_position_steps", None)),
                       filter_name=getattr(run, "filter_name", None), step_steps=median_step(positions))


def tolerance_steps(candidate: AFCandidate, config: AFConfirmConfig) -> float:
    """Steps within which FOCPOS counts as "at" a focus point for this run."""
    tol = float(config.tolerance_steps)
    if candidate.step_steps is not None and candidate.step_steps > 0:
        tol = max(tol, config.step_fraction * candidate.step_steps)
    return tol


def confirm(candidate: AFCandidate, *, focuser_pos: float | None = None, frame_filter: str | None = None,
            config: AFConfirmConfig | None = None) -> AFVerdict:
    """Judge ``candidate`` from the Advanced API's event and/or the next light frame.

    Parameters
    ----------
    candidate
        The run (its report's points, whether ``AUTOFOCUS-FINISHED`` arrived).
    focuser_pos
        FOCPOS (steps) of the first light frame taken after the run, ``None`` if no frame yet
        or no focuser position in its header.
    frame_filter
        That frame's filter: a frame with another filter may sit at a filter offset, so it
        proves nothing (``pending``).
    """
    config = config or AFConfirmConfig()
    if candidate.api_finished:
        return AFVerdict(CONFIRMED, "the Advanced API sent AUTOFOCUS-FINISHED (sent only for successful runs)")
    pos = _finite(focuser_pos)
    if pos is None:
        return AFVerdict(PENDING, "no light frame with a focuser position (FOCPOS) since the autofocus yet")
    calc, init = candidate.calculated_pos, candidate.initial_pos
    if calc is None:
        return AFVerdict(PENDING, "the report has no calculated focus point")
    if candidate.filter_name and frame_filter and frame_filter.strip().lower() != candidate.filter_name.strip().lower():
        return AFVerdict(PENDING, f"the next frame uses filter {frame_filter}, the autofocus ran with "
                                  f"{candidate.filter_name} (a filter offset may move the focuser)")
    tol = tolerance_steps(candidate, config)
    near_calc = abs(pos - calc) <= tol
    near_init = init is not None and abs(pos - init) <= tol
    if init is not None and abs(calc - init) <= tol:
        return AFVerdict(PENDING, f"the calculated ({calc:.0f}) and initial ({init:.0f}) focus points are within "
                                  f"{tol:.0f} steps: FOCPOS cannot tell a success from a move back")
    if near_calc and not near_init:
        return AFVerdict(CONFIRMED, f"the next frame's FOCPOS {pos:.0f} is at the calculated focus point "
                                    f"{calc:.0f} (±{tol:.0f} steps)")
    if near_init:
        return AFVerdict(FAILED, f"the next frame's FOCPOS {pos:.0f} is back at the initial position {init:.0f}: "
                                 "NINA rejected the run and moved the focuser back")
    return AFVerdict(PENDING, f"the next frame's FOCPOS {pos:.0f} is neither at the calculated ({calc:.0f}) nor "
                              f"at the initial focus point (±{tol:.0f} steps)")


__all__ = ["AFConfirmConfig", "AFCandidate", "AFVerdict", "CONFIRMED", "FAILED", "PENDING", "candidate_from_run",
           "confirm", "median_step", "tolerance_steps"]
