"""Autofocus runs: V-curve refits, judgement of a run, temperature coefficients, filter offsets.

Pure computation: runs come in as :class:`AFRun` values (built from NINA reports or from a
folder of frames by :mod:`focuswatch.io.afreports`), results go out as frozen dataclasses. No
files, no clock.

The V-curve model is the hyperbola NINA, ASTAP and Ekos fit::

    HFR(x) = a * sqrt(1 + ((x - x0) / b)**2)  (+ c, optional, as Ekos does)

``x`` is the focuser position in steps, ``x0`` the best focus, ``a`` (+ ``c``) the HFR at best
focus in px and ``a / b`` the asymptotic slope in px per step. The slope is what ties a run to
the optics: a defocus ``D`` um spreads a star into a disk of diameter ``D / N`` um, whose
half-flux radius is ``k * D / (2 N)`` um, so far from focus the HFR grows by::

    k * step_um / (2 * N * pixel_um)   px per focuser step

with ``k = optics.true_hfr_factor(obstruction)`` for a true half-flux radius (what
focuswatch measures on frames) or ``optics.nina_hfr_factor(obstruction)`` for NINA's
flux-weighted "HFR" (what NINA reports contain). A fitted slope far from that value means
the focuser step size setting is wrong or the sweep is too narrow for the fit to reach the
asymptote.

Judgement of one run (thresholds in :class:`AFJudgeConfig`):

=========================  ========================================================
check                      why
=========================  ========================================================
R^2 of the refit >= 0.7    NINA's own rule; below it the curve is noise (clouds, seeing)
x0 inside the positions    an extrapolated minimum is a guess
>= 3 points on each side   an unbalanced curve pins x0 on one branch only
outer HFR ~3x the minimum  under 2x the sweep is too narrow (slope and x0 poorly fixed),
                           over 5x the outer stars are bloated, faint or lost
step vs the CFZ            reported in zones; the fit, not the zone, sets the advice
fitted slope vs optics     0.7-1.4x expected; otherwise step size setting or sweep
=========================  ========================================================

>>> xs = [100 * i for i in range(-4, 5)]
>>> hs = [hyperbola(x, 2.0, 150.0, 30.0) for x in xs]
>>> fit = fit_hyperbola(xs, hs)
>>> round(fit.best_position_steps, 1), round(fit.min_hfr_px, 3)
(30.0, 2.0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from astropy.stats import mad_std

from focuswatch import optics
from focuswatch.errors import FitError  # noqa: F401 - raised here, importable from here
from focuswatch.optics import Rig
from focuswatch.model.records import Record

#: HFR definitions a run's values can follow.
HFR_KINDS = ("nina", "true")


# --------------------------------------------------------------------------- data

@dataclass(frozen=True)
class AFPoint(Record):
    """One point of a focus run: focuser position (steps) and the HFR measured there (px)."""

    position_steps: float
    hfr_px: float
    error_px: float | None = None
    n_stars: int | None = None


@dataclass(frozen=True)
class AFRun(Record):
    """One autofocus run (or manual focus series), whatever its source.

    ``hfr_kind`` says which half-flux definition the values follow: ``"nina"`` (NINA/ASTAP
    flux-weighted mean radius) or ``"true"`` (half-flux radius, focuswatch's own). The
    ``reported_*`` fields are what the capture program concluded, kept for comparison with
    our refit. ``timestamp`` is text as the source wrote it (NINA: local time).
    """

    points: tuple[AFPoint, ...]
    source: str | None = None
    timestamp: str | None = None
    filter_name: str | None = None
    temp_c: float | None = None
    hfr_kind: str = "nina"
    method: str | None = None
    fitting: str | None = None
    reported_position_steps: float | None = None
    reported_hfr_px: float | None = None
    reported_r_squared: float | None = None
    previous_position_steps: float | None = None
    initial_position_steps: float | None = None
    final_hfr_px: float | None = None
    region: str | None = None
    focuser_name: str | None = None
    star_detector: str | None = None
    duration_s: float | None = None
    focuser_step_um: float | None = None
    notes: tuple[str, ...] = ()
    #: where frame runs took their positions: "header" (FOCPOS), "keyword" (a header
    #: keyword the user named), "list" (--positions) or "frame_order" (1, 2, 3 ... in
    #: capture order); None for NINA reports
    position_source: str | None = None


@dataclass(frozen=True)
class HyperbolaFit(Record):
    """A robust hyperbola fit of HFR (px) against focuser position (steps).

    ``min_hfr_px`` is the HFR at best focus (``a + offset``); ``slope_px_per_step`` the
    asymptotic slope ``a / b``; ``best_position_err_steps`` the 1-sigma error of ``x0`` from
    the fit covariance. ``rejected_positions_steps`` lists points dropped as outliers.
    """

    a_px: float
    b_steps: float
    best_position_steps: float
    offset_px: float
    best_position_err_steps: float | None
    r_squared: float
    r_squared_all: float
    rms_px: float
    n_points: int
    n_used: int
    rejected_positions_steps: tuple[float, ...] = ()
    with_offset: bool = False

    @property
    def min_hfr_px(self) -> float:
        return self.a_px + self.offset_px

    @property
    def slope_px_per_step(self) -> float:
        return self.a_px / self.b_steps

    def hfr_at(self, position_steps: float | np.ndarray) -> float | np.ndarray:
        """The fitted HFR (px) at a focuser position (steps)."""
        return hyperbola(position_steps, self.a_px, self.b_steps, self.best_position_steps, self.offset_px)

    def to_dict(self) -> dict[str, Any]:
        """The fields plus the derived ``min_hfr_px`` and ``slope_px_per_step`` (ignored by ``from_dict``)."""
        return {**super().to_dict(), "min_hfr_px": self.min_hfr_px, "slope_px_per_step": self.slope_px_per_step}


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


# --------------------------------------------------------------------------- fitting

def hyperbola(x: float | np.ndarray, a: float, b: float, x0: float, c: float = 0.0) -> float | np.ndarray:
    """The V-curve model ``a * sqrt(1 + ((x - x0) / b)**2) + c`` (HFR px at position x steps)."""
    v = a * np.sqrt(1.0 + ((np.asarray(x, dtype=float) - x0) / b) ** 2) + c
    return float(v) if np.ndim(v) == 0 else v


def _initial_guess(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    i = int(np.argmin(y))
    # a parabola through the lowest three neighbours places x0 between samples
    x0 = float(x[i])
    if 0 < i < len(x) - 1:
        c2, c1, _ = np.polyfit(x[i - 1:i + 2], y[i - 1:i + 2], 2)
        if c2 > 0:
            x0 = float(np.clip(-c1 / (2 * c2), x[i - 1], x[i + 1]))
    a = max(float(y[i]) * 0.9, 1e-3)
    span = float(x.max() - x.min()) or 1.0
    slopes = [(y[j] - a) / abs(x[j] - x0) for j in (0, len(x) - 1) if abs(x[j] - x0) > 1e-9 and y[j] > a]
    slope = max(slopes) if slopes else a / span
    b = a / slope if slope > 0 else span / 4
    return a, float(np.clip(b, span * 1e-3, span * 10)), x0


def fit_hyperbola(positions: Sequence[float], hfr_px: Sequence[float], *, with_offset: bool = False,
                  clip_sigma: float = 3.0, max_rejected: int | None = None,
                  min_sigma: float = 0.03) -> HyperbolaFit:
    """Fit the V-curve hyperbola to HFR (px) against focuser position (steps), robustly.

    Residuals are relative (model/HFR - 1): the scatter of a star's HFR grows with its size.
    A first fit with a soft-L1 loss resists outliers (a cloud, a gust); then, one at a time,
    the worst point is dropped while its residual exceeds ``clip_sigma`` times the robust
    scatter (1.4826 MAD, floored at ``min_sigma`` = 3 %, the usual HFR scatter, so a clean
    curve keeps all its points), at most ``max_rejected`` (default: a quarter of the
    points), and the final least-squares fit on the rest gives
    the covariance of ``x0``. ``r_squared`` is on the points used, ``r_squared_all`` on
    every point (a run that only fits after dropping points is suspect).

    Raises :class:`FitError` (a ``ValueError``) for fewer than 3 usable points (4 with
    ``with_offset``) or when all points sit at one position.
    """
    from scipy.optimize import least_squares

    x = np.asarray(positions, dtype=float)
    y = np.asarray(hfr_px, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
    x, y = x[ok], y[ok]
    order = np.argsort(x)
    x, y = x[order], y[order]
    n_par = 4 if with_offset else 3
    if len(x) < n_par:
        raise FitError(f"{len(x)} usable point{'s' if len(x) != 1 else ''}: a V-curve needs at least "
                       f"{n_par} (7-11 are usual)")
    if np.ptp(x) <= 0:
        raise FitError("every point is at the same focuser position: no V-curve")
    a0, b0, x00 = _initial_guess(x, y)
    span = float(np.ptp(x))
    lo = [1e-6, span * 1e-4, float(x.min()) - 2 * span]
    hi = [float(y.max()) * 2 + 1, span * 100, float(x.max()) + 2 * span]
    p0 = [a0, b0, float(np.clip(x00, lo[2], hi[2]))]
    if with_offset:
        lo.append(-float(y.min()))
        hi.append(float(y.min()))
        p0.append(0.0)
        p0[0] = max(a0, 2e-6)

    def resid(p: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        # relative residuals: the scatter of HFR grows with the star's size
        return (hyperbola(xs, p[0], p[1], p[2], p[3] if with_offset else 0.0) - ys) / ys

    scale = 0.02
    res = least_squares(resid, p0, args=(x, y), loss="soft_l1", f_scale=scale, bounds=(lo, hi))
    keep = np.ones(len(x), bool)
    max_rej = min(len(x) // 4, len(x) - n_par - 1) if max_rejected is None else max_rejected
    for _ in range(max(max_rej, 0)):
        # drop the single worst point while it stands out from the others' scatter
        r = resid(res.x, x, y)
        others = r[keep]
        sigma = max(float(mad_std(others)), min_sigma)
        worst = int(np.argmax(np.where(keep, np.abs(r), -1.0)))
        if abs(r[worst]) <= clip_sigma * sigma:
            break
        keep[worst] = False
        res = least_squares(resid, res.x, args=(x[keep], y[keep]), loss="soft_l1", f_scale=scale,
                            bounds=(lo, hi))
    res = least_squares(resid, res.x, args=(x[keep], y[keep]), bounds=(lo, hi))
    xk, yk = x[keep], y[keep]
    r = resid(res.x, xk, yk) * yk
    ss_res = float(np.sum(r ** 2))
    ss_tot = float(np.sum((yk - yk.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    r_all = resid(res.x, x, y) * y
    ss_tot_all = float(np.sum((y - y.mean()) ** 2))
    r2_all = 1.0 - float(np.sum(r_all ** 2)) / ss_tot_all if ss_tot_all > 0 else 0.0
    x0_err = None
    dof = len(xk) - n_par
    if dof > 0:
        jac = res.jac
        try:
            cov = np.linalg.pinv(jac.T @ jac) * (float(np.sum(res.fun ** 2)) / dof)
            v = float(cov[2, 2])
            x0_err = math.sqrt(v) if v >= 0 and math.isfinite(v) else None
        except np.linalg.LinAlgError:  # pragma: no cover - pinv rarely fails
            x0_err = None
    return HyperbolaFit(
        a_px=float(res.x[0]), b_steps=float(res.x[1]), best_position_steps=float(res.x[2]),
        offset_px=float(res.x[3]) if with_offset else 0.0, best_position_err_steps=x0_err,
        r_squared=r2, r_squared_all=r2_all, rms_px=math.sqrt(ss_res / len(xk)), n_points=len(x), n_used=int(keep.sum()),
        rejected_positions_steps=tuple(float(v) for v in x[~keep]), with_offset=with_offset)


# --------------------------------------------------------------------------- judging

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
        problems.append("asymptote not checked: give the f-ratio, pixel size and focuser step size (µm)")

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


# --------------------------------------------------------------------------- many runs

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


# --------------------------------------------------------------------------- text

def _f(v: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:{spec}}{unit}"


def run_text(r: AFRunResult) -> list[str]:
    """Human-readable lines for one judged run."""
    run = r.run
    head = f"{run.source or 'run'}: {r.verdict.upper()}"
    bits = [f"filter {run.filter_name or '—'}", f"temperature {_f(run.temp_c, '.1f', ' °C')}",
            f"{r.n_points} points", f"HFR {'NINA' if run.hfr_kind == 'nina' else 'true'}"]
    if run.final_hfr_px is not None:
        bits.append(f"final HFR {run.final_hfr_px:.2f} px")
    lines = [head, "  " + ", ".join(bits)]
    if r.fit is not None and run.position_source == "frame_order":
        f = r.fit
        err = f" ± {f.best_position_err_steps:.1f}" if f.best_position_err_steps is not None else ""
        lines.append(f"  best focus at frame {f.best_position_steps:.1f}{err} (frame numbers in capture order); "
                     f"min HFR {f.min_hfr_px:.2f} px; R² {f.r_squared:.3f}")
    elif r.fit is not None:
        f = r.fit
        err = f" ± {f.best_position_err_steps:.0f}" if f.best_position_err_steps is not None else ""
        rep = ""
        if run.reported_position_steps is not None:
            rep = f" (reported {run.reported_position_steps:.0f}, shift {r.shift_from_reported_steps:+.0f})"
        lines.append(f"  best focus {f.best_position_steps:.0f}{err} steps{rep}; min HFR {f.min_hfr_px:.2f} px; "
                     f"R² {f.r_squared:.3f}")
        lines.append(f"  points left/right {r.n_left}/{r.n_right}; outer HFR {_f(r.outer_ratio_left, '.1f', 'x')} / "
                     f"{_f(r.outer_ratio_right, '.1f', 'x')} the minimum")
        slope = f"  slope {f.slope_px_per_step:.4f} px/step"
        if r.expected_slope_px_per_step and r.slope_ratio is not None:
            slope += f" vs {r.expected_slope_px_per_step:.4f} expected ({r.slope_ratio:.2f}x)"
        lines.append(slope)
    if r.step_steps and run.position_source != "frame_order":
        st = f"  step {r.step_steps:.0f} steps"
        if r.step_um:
            st += f" = {r.step_um:.1f} µm"
        if r.step_cfz:
            st += f" = {r.step_cfz:.2f} CFZ (zone {r.cfz_um:.0f} µm)"
        lines.append(st)
    lines += [f"  ! {p}" for p in r.problems]
    lines += [f"  → {a}" for a in r.advice]
    return lines


def summary_text(s: AFSummary) -> str:
    """The ``focuswatch af`` report as text: runs, temperature coefficients, filter offsets."""
    lines: list[str] = []
    for r in s.runs:
        lines += run_text(r)
    lines.append(f"{len(s.runs)} run(s): {s.n_good} good, {s.n_marginal} marginal, {s.n_bad} bad")
    shown = [c for c in s.coefficients if c.slope_steps_per_c is not None]
    if shown or len(s.runs) > 1:
        lines.append("temperature coefficient (best focus vs temperature, bad runs left out):")
        for c in s.coefficients:
            if c.slope_steps_per_c is None:
                lines.append(f"  {c.filter_name}: — ({c.reason})")
                continue
            um = (f", {c.slope_um_per_c:+.1f} ± {c.slope_err_um_per_c:.1f} µm/°C"
                  if c.slope_um_per_c is not None else "")
            lines.append(f"  {c.filter_name}: {c.slope_steps_per_c:+.1f} ± {c.slope_err_steps_per_c:.1f} steps/°C{um}, "
                         f"R² {c.r_squared:.2f}, {c.n_runs} runs ({c.n_dropped} left out), "
                         f"{c.temp_min_c:.1f}…{c.temp_max_c:.1f} °C")
    if len(s.offsets) > 1:
        at = f" at {s.reference_temp_c:.1f} °C" if s.reference_temp_c is not None else ""
        lines.append(f"filter offsets{at} (NINA: Options > Equipment > Filter Wheel > Focus Offset):")
        for o in s.offsets:
            err = f" ± {o.offset_err_steps:.0f}" if o.offset_err_steps else ""
            lines.append(f"  {o.filter_name:<10} {round(o.offset_steps):+d}{err}  ({o.n_runs} run(s))")
        if s.common_slope_steps_per_c is not None:
            lines.append(f"  common temperature slope {s.common_slope_steps_per_c:+.1f} steps/°C")
    if s.offsets_reason and len(s.runs) > 1:
        lines.append(f"  note: {s.offsets_reason}")
    return "\n".join(lines)
