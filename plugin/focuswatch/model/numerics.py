"""Small numeric helpers shared by the pure modules (no I/O, no clock).

The robust scatter is astropy's :func:`astropy.stats.mad_std`; the median of the finite
values of a possibly incomplete series is :func:`finite_median` (was four copies).

>>> finite_median([3.0, None, float("nan"), 1.0])
2.0
>>> finite_median([]) is None
True
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

#: Standard error of a median over that of a mean for Gaussian scatter, sqrt(pi / 2) = 1.2533:
#: the frame HFR (a median over stars) and the policy's baselines (medians of frames) use it.
MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2.0)

#: Arcseconds in a radian (180 * 3600 / pi): the one copy; optics re-exports it, and the
#: calibration reads it from here so that it need not import optics (which imports it).
ARCSEC_PER_RAD = 206264.806

#: Gaussian sigma over the median absolute deviation, 1 / Phi^-1(3/4) = 1.4826 (astropy's
#: ``mad_std`` constant): for the robust scatters written out without astropy.stats.
MAD_TO_SIGMA = 1.482602218505602


def finite_median(values: Iterable[float | None] | np.ndarray) -> float | None:
    """Median of the finite values (``None``, NaN and infinities skipped); ``None`` when there are none."""
    if isinstance(values, np.ndarray):
        a = np.asarray(values, dtype=float).ravel()
    else:
        a = np.array([np.nan if v is None else v for v in values], dtype=float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else None


def pooled_line_fit(groups: Iterable[tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]], *,
                    min_points: int = 3) -> tuple[float | None, float | None]:
    """Least-squares slope shared by several groups of (x, y), each with its own intercept, and
    the slope's standard error from the scatter about the fit (``None`` with fewer than 1 residual
    degree of freedom). Groups with fewer than ``min_points`` points are left out; ``(None, None)``
    when the x values do not spread. One group is the plain straight-line fit.

    The one copy of the hand-written sums (the night's drift per focus segment, the cooling rate of
    the frames since an autofocus): ``numpy.polyfit`` gives no pooled intercepts.

    >>> pooled_line_fit([([0, 1, 2], [1, 3, 5]), ([0, 1, 2], [10, 12, 14])])
    (2.0, 0.0)
    >>> pooled_line_fit([([0, 1], [0, 1])])
    (None, None)
    """
    sxx = sxy = 0.0
    used = []
    for xv, yv in groups:
        x, y = np.asarray(xv, dtype=float), np.asarray(yv, dtype=float)
        if len(x) < min_points:
            continue
        xc, yc = x - x.mean(), y - y.mean()
        sxx += float(xc @ xc)
        sxy += float(xc @ yc)
        used.append((xc, yc))
    if not sxx > 0:
        return None, None
    b = sxy / sxx
    dof = sum(len(xc) for xc, _ in used) - len(used) - 1
    if dof < 1:
        return b, None
    rss = sum(float(((yc - b * xc) ** 2).sum()) for xc, yc in used)
    return b, float(np.sqrt(rss / dof / sxx))
