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
from typing import Iterable

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
