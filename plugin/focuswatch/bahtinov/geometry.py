"""Lines through the star: directions, normals, crossings and the middle spike's offset.

A line is ``(normal_deg, rho_px)`` relative to the star (sep's coordinates). The canonical
normal and the sign of the offset follow the package doc (:mod:`focuswatch.bahtinov`,
"Sign convention"); :func:`_offset` turns three lines (middle and two outer) into the
offset the focus error is computed from.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from focuswatch.bahtinov.result import SpikeLine


def _canonical_normal(theta_deg: float, rho: float) -> tuple[float, float]:
    """The same line with its normal angle in (-45, 135] deg."""
    t = (theta_deg + 45.0) % 360.0 - 45.0  # (-45, 315]
    if t > 135.0:
        t -= 180.0
        rho = -rho
    if t <= -45.0:
        t += 180.0
        rho = -rho
    return t, rho


def _direction_deg(theta_deg: float) -> float:
    return (theta_deg + 90.0) % 180.0


def _ang_diff(a: float, b: float) -> float:
    """Smallest difference between two line directions (deg, 0-90)."""
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def _quadrature(errs: Sequence[float | None]) -> float | None:
    """Root sum of squares of independent errors; ``None`` when one of them is unknown."""
    if any(e is None for e in errs):
        return None
    return math.sqrt(sum(e * e for e in errs if e is not None))


#: What tracing a line yields besides (normal_deg, rho_px): (strength, n_samples, rms_px, rho_err_px).
LineInfo = tuple[float, int, float | None, float | None]


def _spike_lines(refined: Sequence[tuple[float, float]], line_info: Sequence[LineInfo], roles: Sequence[str],
                 trip: Sequence[int | None] | None = None) -> tuple[SpikeLine, ...]:
    """:class:`SpikeLine` records for refined lines (normal_deg, rho_px) with their roles (and sub-masks)."""
    trip = trip if trip is not None else [None] * len(refined)
    return tuple(SpikeLine(angle_deg=_direction_deg(t), normal_deg=t, rho_px=r, strength=info[0],
                           n_samples=info[1], rms_px=info[2], role=role, triplet=k)
                 for (t, r), info, role, k in zip(refined, line_info, roles, trip))


def _intersect(l1: tuple[float, float], l2: tuple[float, float]) -> tuple[float, float]:
    """Crossing of two lines given as (normal_deg, rho) relative to the star."""
    t1, r1 = math.radians(l1[0]), l1[1]
    t2, r2 = math.radians(l2[0]), l2[1]
    a = np.array([[math.cos(t1), math.sin(t1)], [math.cos(t2), math.sin(t2)]])
    x, y = np.linalg.solve(a, np.array([r1, r2]))
    return float(x), float(y)


def _triplet(lines: list[tuple[float, float]]) -> tuple[int, int, int]:
    """Indices (middle, outer1, outer2) of three lines given as (normal_deg, rho)."""
    dirs = [_direction_deg(t) for t, _ in lines]
    order = sorted(range(3), key=lambda i: dirs[i])
    a = [dirs[i] for i in order]
    gaps = [a[1] - a[0], a[2] - a[1], 180.0 - (a[2] - a[0])]
    big = int(np.argmax(gaps))  # the middle line is the one not touching the largest gap
    mid = order[(big + 2) % 3]
    others = [i for i in range(3) if i != mid]
    return mid, others[0], others[1]


def _offset(lines: list[tuple[float, float]], mid: int, o1: int, o2: int,
            normal_deg: float | None = None) -> tuple[float, float, float, float]:
    """(offset_px, crossing_x, crossing_y, half_angle_deg) for one triplet, relative to the star.

    The offset is counted along the middle line's normal: the canonical one (package doc), or
    the one of its two directions nearer to ``normal_deg`` (Tri-Bahtinov sub-masks)."""
    cx, cy = _intersect(lines[o1], lines[o2])
    t, r = _canonical_normal(*lines[mid])
    if normal_deg is not None and math.cos(math.radians(t - normal_deg)) < 0.0:
        t, r = t + 180.0, -r
    th = math.radians(t)
    off = r - (cx * math.cos(th) + cy * math.sin(th))
    half = _ang_diff(_direction_deg(lines[o1][0]), _direction_deg(lines[o2][0])) / 2.0
    return off, cx, cy, half
