"""Small numeric helpers shared by the pure modules (no I/O, no clock).

The robust scatter is astropy's :func:`astropy.stats.mad_std`; the median of the finite
values of a possibly incomplete series is :func:`finite_median` (was four copies).

>>> finite_median([3.0, None, float("nan"), 1.0])
2.0
>>> finite_median([]) is None
True
"""
from __future__ import annotations

from typing import Iterable

import numpy as np


def finite_median(values: Iterable[float | None] | np.ndarray) -> float | None:
    """Median of the finite values (``None``, NaN and infinities skipped); ``None`` when there are none."""
    if isinstance(values, np.ndarray):
        a = np.asarray(values, dtype=float).ravel()
    else:
        a = np.array([np.nan if v is None else v for v in values], dtype=float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else None
