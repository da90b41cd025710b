"""Rounding and formatting of single figures, shared by the evidence, the verdicts and the text.

``_r`` rounds a float for the JSON (``None`` for a missing or non-finite value), ``_f``
formats one for the text with its unit, :func:`fmt_pct` a percentage. Kept apart so the
night's summary and the text renderers can share them without importing each other.
"""
from __future__ import annotations

import math
from typing import Any


def _f(v: Any, spec: str = ".2f", unit: str = "", none: str = "—") -> str:
    """A figure for the text output: formatted with its unit, ``none`` when it is missing."""
    return none if v is None else f"{format(v, spec)}{unit}"


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), nd)


def fmt_pct(v: float | None) -> str:
    return _f(v, ".0f", " %", none="n/a")
