"""Many runs together: best focus against temperature, filter offsets, the night's summary.

Only runs judged good or marginal count (:func:`_usable`); :func:`analyze_runs` judges
every run and summarises them into the :class:`AFSummary` that ``focuswatch af`` reports.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from focuswatch.autofocus.judge import AFJudgeConfig, AFRunResult, judge_run
from focuswatch.autofocus.run import AFRun
from focuswatch.model.records import Record
from focuswatch.optics import Rig


@dataclass(frozen=True)
class TempCoefficient(Record):
    """Best focus against temperature for one filter (least squares over good runs).

    ``slope_steps_per_c`` +/- ``slope_err_steps_per_c`` (1-sigma standard error);
    ``position_at_0c_steps`` the line's intercept. ``reason`` is set (and the slope ``None``)
    when there were too few runs or too little temperature range.
    """

    filter_name: str
    n_runs: int
    n_dropped: int
    slope_steps_per_c: float | None = None
    slope_err_steps_per_c: float | None = None
    slope_um_per_c: float | None = None
    slope_err_um_per_c: float | None = None
    position_at_0c_steps: float | None = None
    r_squared: float | None = None
    temp_min_c: float | None = None
    temp_max_c: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class FilterOffset(Record):
    """A filter's best focus relative to the reference filter at a common temperature (steps).

    ``offset_steps`` is what goes into NINA's filter wheel "Focus Offset" column (rounded),
    with the reference filter at 0.
    """

    filter_name: str
    n_runs: int
    position_steps: float
    offset_steps: float
    offset_err_steps: float | None = None


@dataclass(frozen=True)
class AFSummary(Record):
    """Everything ``focuswatch af`` reports (field names are the ``--json`` keys).

    ``common_slope_steps_per_c`` is the temperature slope shared by all filters in the
    offsets model (position = filter position + slope * (T - reference temperature)).
    """

    runs: tuple[AFRunResult, ...]
    coefficients: tuple[TempCoefficient, ...] = ()
    offsets: tuple[FilterOffset, ...] = ()
    reference_filter: str | None = None
    reference_temp_c: float | None = None
    common_slope_steps_per_c: float | None = None
    n_good: int = 0
    n_marginal: int = 0
    n_bad: int = 0
    offsets_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "runs": [r.to_dict() for r in self.runs]}


def _filter_key(name: str | None) -> str:
    return (name or "").strip() or "(none)"


def _usable(results: Iterable[AFRunResult]) -> tuple[list[AFRunResult], int]:
    ok, dropped = [], 0
    for r in results:
        if r.fit is None or r.verdict == "bad" or r.run.temp_c is None or not math.isfinite(r.run.temp_c):
            dropped += 1
        else:
            ok.append(r)
    return ok, dropped


def temperature_coefficient(results: Sequence[AFRunResult], filter_name: str,
                            step_um: float | None = None, *, min_runs: int = 3,
                            min_range_c: float = 1.0) -> TempCoefficient:
    """Least-squares line of best focus (steps) against temperature (C) for one filter.

    Runs judged ``"bad"`` or without a temperature are left out (counted in ``n_dropped``).
    The slope's error is the standard error of the regression; ``step_um`` converts to
    um/C. Needs ``min_runs`` runs spanning at least ``min_range_c``.
    """
    from scipy import stats

    mine = [r for r in results if _filter_key(r.run.filter_name) == filter_name]
    ok, dropped = _usable(mine)
    t = np.array([r.run.temp_c for r in ok], dtype=float)
    p = np.array([r.best_position_steps for r in ok], dtype=float)
    base = dict(filter_name=filter_name, n_runs=len(ok), n_dropped=dropped,
                temp_min_c=float(t.min()) if len(t) else None, temp_max_c=float(t.max()) if len(t) else None)
    if len(ok) < min_runs:
        return TempCoefficient(reason=f"{len(ok)} usable run(s) with a temperature; need {min_runs}", **base)
    if np.ptp(t) < min_range_c:
        return TempCoefficient(reason=f"temperatures span only {np.ptp(t):.1f} °C; need {min_range_c:g}", **base)
    lr = stats.linregress(t, p)
    slope, err = float(lr.slope), float(lr.stderr)
    return TempCoefficient(
        slope_steps_per_c=slope, slope_err_steps_per_c=err,
        slope_um_per_c=slope * step_um if step_um else None,
        slope_err_um_per_c=err * step_um if step_um else None,
        position_at_0c_steps=float(lr.intercept), r_squared=float(lr.rvalue ** 2), **base)


def filter_offsets(results: Sequence[AFRunResult], *, reference_filter: str | None = None,
                   reference_temp_c: float | None = None
                   ) -> tuple[tuple[FilterOffset, ...], str | None, float | None, float | None, str | None]:
    """Per-filter best focus at a common temperature, relative to a reference filter.

    One least-squares model over all good runs: ``position = P_filter + s * (T - T_ref)``,
    a position per filter and one temperature slope shared by all (the optics expand the
    same whatever the filter). With every run at the same temperature the slope is left
    out. ``T_ref`` defaults to the median temperature; the reference filter to ``L`` (or
    Luminance) if present, else the filter with the most runs. When a filter has no run
    with a temperature, all good runs are used without the temperature term (and the
    returned reason says so).

    Returns ``(offsets, reference_filter, reference_temp_c, common_slope_steps_per_c, reason)``.
    """
    ok, _ = _usable(results)
    good = [r for r in results if r.fit is not None and r.verdict != "bad"]
    note = None
    if {_filter_key(r.run.filter_name) for r in good} - {_filter_key(r.run.filter_name) for r in ok}:
        # some filter has no run with a temperature: offsets without temperature correction
        ok = good
        note = "some runs have no temperature: offsets are not temperature-corrected"
    names = sorted({_filter_key(r.run.filter_name) for r in ok})
    if not ok:
        return (), None, None, None, "no good run"
    if reference_filter is not None and reference_filter not in names:
        return (), None, None, None, f"reference filter {reference_filter!r} has no good run (have: {', '.join(names)})"
    t = np.array([r.run.temp_c if r.run.temp_c is not None else np.nan for r in ok], dtype=float)
    p = np.array([r.best_position_steps for r in ok], dtype=float)
    use_slope = note is None and np.ptp(t) >= 1.0 and len(ok) > len(names)
    t_ref = None
    if note is None:
        t_ref = float(np.median(t)) if reference_temp_c is None else float(reference_temp_c)
    cols = [np.array([_filter_key(r.run.filter_name) == n for r in ok], dtype=float) for n in names]
    if use_slope:
        cols.append(t - t_ref)
    a = np.column_stack(cols)
    coef, *_ = np.linalg.lstsq(a, p, rcond=None)
    dof = len(p) - a.shape[1]
    cov = None
    if dof > 0:
        s2 = float(np.sum((a @ coef - p) ** 2)) / dof
        cov = np.linalg.pinv(a.T @ a) * s2
    counts = {n: int(sum(1 for r in ok if _filter_key(r.run.filter_name) == n)) for n in names}
    if reference_filter is None:
        for cand in ("L", "Lum", "LUM", "Luminance", "Clear"):
            if cand in names:
                reference_filter = cand
                break
        else:
            reference_filter = max(names, key=lambda n: (counts[n], n == names[0]))
    iref = names.index(reference_filter)
    out = []
    for i, n in enumerate(names):
        err = None
        if cov is not None and i != iref:
            v = cov[i, i] + cov[iref, iref] - 2 * cov[i, iref]
            err = math.sqrt(v) if v >= 0 else None
        elif i == iref:
            err = 0.0
        out.append(FilterOffset(filter_name=n, n_runs=counts[n], position_steps=float(coef[i]),
                                offset_steps=float(coef[i] - coef[iref]), offset_err_steps=err))
    slope = float(coef[-1]) if use_slope else None
    return tuple(out), reference_filter, t_ref, slope, note


def summarize(results: Sequence[AFRunResult], rig: Rig | None = None, *,
              reference_filter: str | None = None, reference_temp_c: float | None = None) -> AFSummary:
    """Temperature coefficients per filter and filter offsets over judged runs."""
    rig = rig or Rig()
    step_um = rig.focuser_step_um
    if step_um is None:
        steps = [r.run.focuser_step_um for r in results if r.run.focuser_step_um]
        step_um = float(np.median(steps)) if steps else None
    names = sorted({_filter_key(r.run.filter_name) for r in results})
    coefs = tuple(temperature_coefficient(results, n, step_um) for n in names)
    offs, ref, tref, slope, reason = filter_offsets(results, reference_filter=reference_filter,
                                                    reference_temp_c=reference_temp_c)
    return AFSummary(
        runs=tuple(results), coefficients=coefs, offsets=offs, reference_filter=ref, reference_temp_c=tref,
        common_slope_steps_per_c=slope,
        n_good=sum(r.verdict == "good" for r in results), n_marginal=sum(r.verdict == "marginal" for r in results),
        n_bad=sum(r.verdict == "bad" for r in results), offsets_reason=reason)


def analyze_runs(runs: Sequence[AFRun], rig: Rig | None = None, *, with_offset: bool = False,
                 reference_filter: str | None = None, reference_temp_c: float | None = None,
                 config: AFJudgeConfig | None = None) -> AFSummary:
    """Judge every run, then summarise temperature behaviour and filter offsets."""
    results = [judge_run(r, rig, with_offset=with_offset, config=config) for r in runs]
    return summarize(results, rig, reference_filter=reference_filter, reference_temp_c=reference_temp_c)
