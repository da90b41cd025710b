"""The V-curve: the hyperbola model and its robust fit (:func:`fit_hyperbola`).

The model and what its parameters mean are in the package doc (:mod:`focuswatch.autofocus`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from astropy.stats import mad_std

from focuswatch.errors import FitError
from focuswatch.model.records import Record


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
