"""Judging one run: refit it, check it against the optics, say what to change.

The checks and their reasons are the table in the package doc (:mod:`focuswatch.autofocus`);
their thresholds live in :class:`AFJudgeConfig`. :func:`judge_run` never raises for a bad
run: the verdict says ``"bad"`` and ``problems`` say why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from focuswatch import optics
from focuswatch.autofocus.run import AFRun
from focuswatch.autofocus.vcurve import HyperbolaFit, fit_hyperbola
from focuswatch.errors import FitError
from focuswatch.model.records import Record
from focuswatch.optics import Rig


@dataclass(frozen=True)
class AFJudgeConfig:
    """Thresholds for judging a run (unit-suffixed; defaults follow NINA and the seed)."""

    min_r_squared: float = 0.7
    good_r_squared: float = 0.9
    min_points_per_side: int = 3
    outer_ratio_low: float = 2.0
    outer_ratio_target: float = 3.0
    outer_ratio_high: float = 5.0
    slope_ratio_low: float = 0.7
    slope_ratio_high: float = 1.4
    min_step_cfz: float = 0.15
    max_step_cfz: float = 2.5
    steps_per_side: int = 4
    clip_sigma: float = 3.0
    #: runs whose positions are frame numbers: the hyperbola is fitted on this many
    #: frames around the lowest HFR (frame numbers are not linear in focuser steps)
    frame_order_window: int = 5


@dataclass(frozen=True)
class AFRunResult(Record):
    """A run with its refit and the verdict (field names are the ``af --json`` keys).

    ``verdict`` is ``"good"``, ``"marginal"`` or ``"bad"`` (bad runs are left out of the
    temperature coefficient). ``problems`` say what is wrong, ``advice`` what to change.
    Positions and steps are focuser steps; ``*_um`` need the focuser step size;
    ``step_cfz`` is the step in units of the (total) critical focus zone.
    """

    run: AFRun
    fit: HyperbolaFit | None
    verdict: str
    problems: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()
    n_points: int = 0
    step_steps: float | None = None
    step_um: float | None = None
    cfz_um: float | None = None
    step_cfz: float | None = None
    minimum_inside: bool | None = None
    n_left: int | None = None
    n_right: int | None = None
    outer_ratio_left: float | None = None
    outer_ratio_right: float | None = None
    expected_slope_px_per_step: float | None = None
    slope_ratio: float | None = None
    implied_step_um: float | None = None
    recommended_step_steps: float | None = None
    recommended_step_um: float | None = None
    recommended_n_points: int | None = None
    shift_from_reported_steps: float | None = None

    @property
    def best_position_steps(self) -> float | None:
        return None if self.fit is None else self.fit.best_position_steps

    def to_dict(self) -> dict[str, Any]:
        """The fields (``fit`` with its derived values) plus ``best_position_steps``."""
        return {**super().to_dict(), "fit": None if self.fit is None else self.fit.to_dict(),
                "best_position_steps": self.best_position_steps}


def hfr_factor(hfr_kind: str, obstruction: float) -> float:
    """Half-flux factor k of a defocus disk for the HFR definition the run uses."""
    if hfr_kind == "nina":
        return optics.nina_hfr_factor(obstruction)
    return optics.true_hfr_factor(obstruction)


def expected_slope_px_per_step(rig: Rig, step_um: float, hfr_kind: str = "nina") -> float | None:
    """Asymptotic V-curve slope (px per focuser step) the optics predict.

    A defocus of one step (``step_um``) makes a blur disk of diameter ``step_um / N`` whose
    half-flux radius is ``k * step_um / (2 N)`` um, i.e. ``k * step_um / (2 N pixel_um)`` px.

    >>> round(expected_slope_px_per_step(Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=3.76), 10.0), 4)
    0.1773
    """
    n, pix = rig.f_ratio, rig.effective_pixel_um
    if not n or not pix or not step_um:
        return None
    return hfr_factor(hfr_kind, rig.obstruction) * step_um / (2.0 * n * pix)


def _step_steps(positions: np.ndarray) -> float | None:
    u = np.unique(positions)
    if len(u) < 2:
        return None
    return float(np.median(np.diff(u)))


def _around_minimum(x: np.ndarray, y: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``window`` points nearest in order to the lowest HFR (fewer at the ends of the run)."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    k = int(np.argmin(y))
    half = window // 2
    lo = max(0, min(k - half, len(x) - window))
    return x[lo:lo + window], y[lo:lo + window]


def judge_run(run: AFRun, rig: Rig | None = None, *, with_offset: bool = False,
              config: AFJudgeConfig | None = None) -> AFRunResult:
    """Refit a run and judge it; never raises for a bad run (the verdict says ``"bad"``).

    ``rig`` supplies f-ratio, pixel size, obstruction and the focuser step size in um
    (the run's own ``focuser_step_um``, from FITS headers, fills a missing one) for the
    zone and asymptote checks; without them those checks are skipped and say so.
    """
    cfg = config or AFJudgeConfig()
    rig = rig or Rig()
    if rig.focuser_step_um is None and run.focuser_step_um:
        rig = rig.with_(focuser_step_um=run.focuser_step_um)
    pts = [p for p in run.points if math.isfinite(p.position_steps) and math.isfinite(p.hfr_px) and p.hfr_px > 0]
    n_dropped = len(run.points) - len(pts)
    problems: list[str] = []
    advice: list[str] = []
    if n_dropped:
        problems.append(f"{n_dropped} point{'s' if n_dropped > 1 else ''} without a valid HFR (NaN: no stars?)")
    x = np.array([p.position_steps for p in pts], dtype=float)
    y = np.array([p.hfr_px for p in pts], dtype=float)
    frame_order = run.position_source == "frame_order"
    if frame_order and len(x) >= cfg.frame_order_window:
        # frame numbers are not focuser steps (runs often step finer near focus), so the
        # hyperbola only holds near the minimum: fit the frames around the lowest HFR
        x, y = _around_minimum(x, y, cfg.frame_order_window)
        problems.append(f"positions are frame numbers (no focuser position in the headers): best focus is a "
                        f"frame number, fitted on the {len(x)} frames around the lowest HFR; step, slope and "
                        "sweep are not judged (give --positions or --position-key for those)")
    step = _step_steps(x) if len(x) else None
    step_um = step * rig.focuser_step_um if (step and rig.focuser_step_um) else None
    lam = optics.wavelength_for_filter(run.filter_name, rig.wavelength_nm)
    cfz = rig.cfz_um(lam)
    common = dict(run=run, n_points=len(pts), step_steps=step, step_um=step_um, cfz_um=cfz,
                  step_cfz=step_um / cfz if (step_um and cfz) else None)
    try:
        # frame-number runs keep every point of their window: uneven steps make the far
        # points look like outliers of a curve drawn against frame numbers
        fit = fit_hyperbola(x, y, with_offset=with_offset, clip_sigma=cfg.clip_sigma,
                            max_rejected=0 if frame_order else None)
    except FitError as exc:
        problems.append(str(exc))
        advice.append(f"run autofocus with {2 * cfg.steps_per_side + 1} points "
                      f"({cfg.steps_per_side} on each side of focus)")
        return AFRunResult(fit=None, verdict="bad", problems=tuple(problems), advice=tuple(advice), **common)

    bad = False
    marginal = False
    x0 = fit.best_position_steps
    if fit.rejected_positions_steps:
        problems.append("outlier point(s) left out of the fit at " +
                        ", ".join(f"{v:g}" for v in fit.rejected_positions_steps))
        marginal = True
    if fit.r_squared < cfg.min_r_squared:
        problems.append(f"poor fit: R² = {fit.r_squared:.2f} (< {cfg.min_r_squared:g}); clouds, seeing or "
                        "too few stars")
        bad = True
    elif fit.r_squared_all < cfg.min_r_squared:
        problems.append(f"poor fit: R² = {fit.r_squared_all:.2f} over all points (< {cfg.min_r_squared:g}); it "
                        f"only fits after dropping {fit.n_points - fit.n_used}; clouds or seeing")
        bad = True
    elif fit.r_squared < cfg.good_r_squared:
        problems.append(f"loose fit: R² = {fit.r_squared:.2f}")
        marginal = True
    inside = bool(x.min() <= x0 <= x.max())
    if not inside:
        problems.append(f"best focus {x0:.0f} lies outside the sampled positions {x.min():g}-{x.max():g}")
        advice.append("start the run closer to focus (or widen the sweep): the minimum was extrapolated")
        bad = True
    used = np.array([not any(abs(v - r) < 1e-9 for r in fit.rejected_positions_steps) for v in x])
    xu, yu = x[used], y[used]
    n_left = int(np.sum(xu < x0))
    n_right = int(np.sum(xu > x0))
    if inside and min(n_left, n_right) < cfg.min_points_per_side and not frame_order:
        problems.append(f"unbalanced curve: {n_left} point(s) left and {n_right} right of best focus")
        marginal = True
    hmin = fit.min_hfr_px
    ratio_l = float(yu[np.argmin(xu)] / hmin) if n_left else None
    ratio_r = float(yu[np.argmax(xu)] / hmin) if n_right else None
    ratios = [r for r in (ratio_l, ratio_r) if r is not None]
    narrow = bool(ratios) and max(ratios) < cfg.outer_ratio_low and not frame_order
    if frame_order:
        pass
    elif narrow:
        problems.append(f"sweep too narrow: outer points only {max(ratios):.1f}x the minimum HFR "
                        f"(aim for ~{cfg.outer_ratio_target:g}x)")
        marginal = True
    elif ratios and min(ratios) > cfg.outer_ratio_high:
        problems.append(f"sweep too wide: outer points {min(ratios):.1f}x the minimum HFR; far-out stars are "
                        "faint, bloated or lost")
        marginal = True

    exp_slope = (expected_slope_px_per_step(rig, rig.focuser_step_um, run.hfr_kind)
                 if rig.focuser_step_um and not frame_order else None)
    slope_ratio = fit.slope_px_per_step / exp_slope if exp_slope else None
    if bad:  # a curve that does not fit says nothing about the step size
        slope_ratio = None
    implied = None
    k = hfr_factor(run.hfr_kind, rig.obstruction)
    if rig.f_ratio and rig.effective_pixel_um:
        implied = fit.slope_px_per_step * 2.0 * rig.f_ratio * rig.effective_pixel_um / k
    if slope_ratio is not None and not (cfg.slope_ratio_low <= slope_ratio <= cfg.slope_ratio_high):
        why = ("the sweep is too narrow to reach the asymptote" if narrow else
               f"check the focuser step size setting: the curve implies {implied:.2f} µm/step, "
               f"the setting says {rig.focuser_step_um:g}")
        problems.append(f"V-curve slope {fit.slope_px_per_step:.4f} px/step is {slope_ratio:.2f}x what the "
                        f"optics predict ({exp_slope:.4f}); {why}")
        marginal = True
    elif exp_slope is None and not bad and not frame_order:
        # name only what is missing (frames' headers often give the f-ratio and pixel size)
        missing = [w for w, have in (("the f-ratio", rig.f_ratio), ("the pixel size", rig.effective_pixel_um),
                                      ("the focuser step size (µm)", rig.focuser_step_um)) if not have]
        hint = f"; the curve implies {implied:.2f} µm/step" if implied and not rig.focuser_step_um else ""
        problems.append(f"asymptote not checked: give {', '.join(missing)}{hint}")

    if step_um and cfz:
        sc = step_um / cfz
        if sc < cfg.min_step_cfz:
            problems.append(f"step {step_um:.1f} µm is only {sc:.2f} of the critical focus zone ({cfz:.0f} µm)")
        elif sc > cfg.max_step_cfz:
            problems.append(f"step {step_um:.1f} µm spans {sc:.1f} critical focus zones ({cfz:.0f} µm): "
                            "best focus falls between points")
            marginal = True

    # recommended step: outer points at ~3x the minimum, 4 steps per side
    far = cfg.outer_ratio_target
    rec_steps = None
    if not bad and fit.b_steps > 0:
        # a*sqrt(1+(d/b)^2) + c = far*(a+c)  ->  d
        q = (far * hmin - fit.offset_px) / fit.a_px
        if q > 1:
            rec_steps = fit.b_steps * math.sqrt(q * q - 1.0) / cfg.steps_per_side
    if rec_steps is None and rig.f_ratio and rig.effective_pixel_um and rig.focuser_step_um and hmin > 0:
        d3_um = 2.0 * math.sqrt(far * far - 1.0) * hmin * rig.f_ratio * rig.effective_pixel_um / k
        rec_steps = d3_um / cfg.steps_per_side / rig.focuser_step_um
    rec_um = rec_steps * rig.focuser_step_um if (rec_steps and rig.focuser_step_um) else None
    rec_n = 2 * cfg.steps_per_side + 1
    if frame_order:
        rec_steps = rec_um = None
    if rec_steps and step and (abs(rec_steps / step - 1.0) > 0.3 or narrow):
        txt = f"set the autofocus step size to ~{rec_steps:.0f} steps"
        if rec_um:
            txt += f" ({rec_um:.0f} µm)"
        txt += f" with {cfg.steps_per_side} steps on each side ({rec_n} points)"
        advice.append(txt)
    if inside and min(n_left, n_right) < cfg.min_points_per_side and not bad and not frame_order:
        advice.append("start the run nearer to focus so both branches get points")
    if bad and fit.r_squared_all < cfg.min_r_squared:
        advice.append("repeat the run under a clear sky; consider more exposure time per point")
    shift = x0 - run.reported_position_steps if run.reported_position_steps is not None else None
    verdict = "bad" if bad else ("marginal" if marginal else "good")
    return AFRunResult(
        fit=fit, verdict=verdict, problems=tuple(problems), advice=tuple(advice), minimum_inside=inside,
        n_left=n_left, n_right=n_right, outer_ratio_left=ratio_l, outer_ratio_right=ratio_r,
        expected_slope_px_per_step=exp_slope, slope_ratio=slope_ratio, implied_step_um=implied,
        recommended_step_steps=rec_steps, recommended_step_um=rec_um, recommended_n_points=rec_n,
        shift_from_reported_steps=shift, **common)
