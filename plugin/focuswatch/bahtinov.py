"""Bahtinov and Tri-Bahtinov mask analysis: find the diffraction spikes, measure the focus error.

Pure computation: an image array (and the rig) in, a :class:`BahtinovResult` out.

Method
------
1. The brightest star (maximum of a Gaussian-smoothed image) is the origin. Its core is
   masked out (radius from the azimuthal median profile): the spikes are measured where
   they stand apart.
2. A Radon-style scan: every pixel of the background-subtracted, square-root-stretched
   star votes, for each normal angle 0-180 deg in 0.5 deg steps, into a 1 px bin of its
   distance from the star along that normal. A spike through the star piles into one bin;
   the peaks of the best bin against angle are the spikes (3 for a Bahtinov mask; 5 or
   more, or three strongest 60 deg apart, mean a Tri-Bahtinov: see below).
3. Each line is refined on the linear image: perpendicular profiles sampled every pixel
   along the line (both sides of the star) give centroids, and a weighted straight-line
   fit through them (with 3-sigma clipping) corrects angle and offset; twice.
4. The middle spike is the one between the two others. The two outer lines are
   intersected and the signed distance of the middle line from that crossing is the
   offset (px).

Sign convention
---------------
Angles are degrees from +x (the column axis) toward +y (the row axis), sep's coordinates.
The middle spike's normal ``n`` is taken with its angle in (-45, 135] deg: for a roughly
vertical middle spike ``n`` points to +x, for a roughly horizontal one to +y.
``offset_px = rho_middle - n . crossing``: positive when the middle spike lies on the +n
side of the outer spikes' crossing. With the mask as :mod:`focuswatch.sim.mask` renders it
(single-grating half on the -x side of the pupil as mapped onto the image) a positive
offset means the sensor is *beyond* focus (too far out); so ``focus_error_um`` > 0 means
"move the focuser inward". A mask turned by 180 deg, or a camera/diagonal that mirrors
the image, flips the sign: nothing in the spike pattern tells those apart, so check once
(rack the focuser out a little: the advice must say "inward") and set ``reverse``.

Tri-Bahtinov
------------
Three Bahtinov sub-masks in 120 deg sectors: nine spikes, directions ``phi + 60 k`` (the
middles) and ``phi + 60 k +- b``. Why grouping them by the gaps between neighbouring
spikes gave wrong numbers: (a) at ``b = 20`` deg all nine are evenly spaced, and any ``b``
makes the same nine directions as ``60 - b`` with the outer spikes handed to the
neighbouring sub-mask; (b) the canonical normal above, chosen line by line, flips the sign
of one of the three sub-masks (their normals are 120 deg apart, not 180); (c) spikes only
``b`` apart were followed from where the 60-deg-apart middles separate, so their profiles
overlapped and the faint rim-grating spikes were pulled toward the bright middles (or lost
in the angle scan). Now: the middles' direction comes from the three strongest spikes, the
half-angle from the angle scan summed over all six outer positions, all nine predicted
spikes are traced from where neighbours separate, on a sloped local background
(:func:`_retrace_tri`); :func:`_group_triplets` assigns them (brightness decides the
middles when the geometry cannot: the middle grating has twice the area of each outer
one); each sub-mask's offset is counted along its own normal, the three normals
``phi0 + 120 k`` with ``phi0`` in [-30, 30) deg. With :mod:`focuswatch.sim.mask`'s layout
at ``rotation_deg`` within +-30 deg a positive offset means beyond focus; a pattern turned
by 60 deg is the same nine lines with the opposite sign (``reverse``). The focus error is
the mean of the three sub-masks', their spread (max - min) the collimation/tilt hint:
miscollimation or astigmatism makes the parts of the pupil focus at different depths.

Conversion
----------
Bahtinov Grabber's empirical constant (design.md section 5)::

    k [px/um] = (9/32) * D / (f * pixel_um) * (1 + cos 45 deg * (1 + tan b))

with ``b`` half the angle between the outer spikes (measured). Against the Fourier-optics
simulation of :mod:`focuswatch.sim.mask` (200 mm f/5, eps 0.33, 3.76 um pixels, b = 20 deg,
broadband 420-680 nm) see docs/bahtinov.md for the measured slope; a user-calibrated
``px_per_um`` overrides the formula. A Tri-Bahtinov's sub-masks use the geometric
:func:`tri_px_per_um` (their sub-apertures are wedges, not half and quarter disks).
"In focus" means ``|error| <= CFZ / 2``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
from astropy.stats import mad_std

from focuswatch.errors import BahtinovError  # noqa: F401 - raised here, importable from here
from focuswatch.optics import Rig
from focuswatch.model.records import Record

#: Normal angles scanned by the coarse Radon step (deg).
SCAN_STEP_DEG = 0.5


@dataclass(frozen=True)
class SpikeLine(Record):
    """One fitted spike: direction ``angle_deg`` (0-180), normal angle, and distance ``rho_px``
    of the line from the star along the normal. ``role`` is middle/outer (or group-k ...).
    ``n_samples`` profiles were used; ``rms_px`` their scatter about the line."""

    angle_deg: float
    normal_deg: float
    rho_px: float
    strength: float
    n_samples: int = 0
    rms_px: float | None = None
    role: str = ""
    triplet: int | None = None


@dataclass(frozen=True)
class Triplet(Record):
    """One Bahtinov sub-mask of a Tri-Bahtinov mask, measured on its own.

    ``index`` 0-2 in order of ``normal_deg`` (the first within [-30, 30) deg, then +120,
    +240): the normal along which ``offset_px`` is counted, turning with the sub-mask (the
    three normals are 120 deg apart, so the three signs agree). ``middle_angle_deg`` is the
    middle spike's direction (0-180 deg), i.e. the sub-mask's bisector as imaged: cover one
    sector of the mask and the triplet that fades tells which screw it belongs to.
    ``focus_error_um`` > 0: this part of the pupil focuses in front of the sensor (sensor
    beyond its focus), after ``reverse`` is applied.
    """

    index: int
    middle_angle_deg: float
    normal_deg: float
    outer_half_angle_deg: float
    crossing_x_px: float
    crossing_y_px: float
    offset_px: float
    offset_err_px: float | None = None
    focus_error_um: float | None = None
    focus_error_err_um: float | None = None
    focus_error_cfz: float | None = None


@dataclass(frozen=True)
class BahtinovResult(Record):
    """Spikes, offset and focus error (field names are the ``bahtinov --json`` keys).

    ``offset_px`` follows the sign convention of the module doc; ``focus_error_um`` > 0:
    sensor beyond focus, move inward (after ``reversed`` is applied). ``focus_error_cfz``
    is the error in critical-focus-zone widths; ``in_focus`` when ``|error| <= CFZ/2``.
    ``direction`` is ``"inward"``/``"outward"`` (toward smaller/larger focuser positions,
    for a focuser whose numbers grow outward) or ``None`` in focus.
    """

    pattern: str
    star_x_px: float
    star_y_px: float
    lines: tuple[SpikeLine, ...]
    middle_angle_deg: float | None = None
    outer_half_angle_deg: float | None = None
    crossing_x_px: float | None = None
    crossing_y_px: float | None = None
    offset_px: float | None = None
    offset_err_px: float | None = None
    px_per_um: float | None = None
    px_per_um_source: str | None = None
    focus_error_um: float | None = None
    focus_error_err_um: float | None = None
    cfz_um: float | None = None
    focus_error_cfz: float | None = None
    in_focus: bool | None = None
    direction: str | None = None
    move_um: float | None = None
    move_steps: float | None = None
    reversed: bool = False
    verdict: str = ""
    notes: tuple[str, ...] = ()
    file: str | None = None
    triplets: tuple[Triplet, ...] = ()
    focus_spread_um: float | None = None
    focus_spread_err_um: float | None = None
    focus_spread_cfz: float | None = None
    collimation_ok: bool | None = None
    collimation_hint: str | None = None


# --------------------------------------------------------------------------- conversion

def grabber_px_per_um(rig: Rig, outer_half_angle_deg: float) -> float | None:
    """Bahtinov Grabber's conversion ``(9/32) D/(f pix) (1 + cos45 (1 + tan b))`` in px per um.

    >>> round(grabber_px_per_um(Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=3.76), 20.0), 4)
    0.0294
    """
    d, f, pix = rig.effective_aperture_mm, rig.focal_length_mm, rig.effective_pixel_um
    if not (d and f and pix):
        return None
    b = math.radians(outer_half_angle_deg)
    return (9.0 / 32.0) * d / (f * pix) * (1.0 + math.cos(math.radians(45.0)) * (1.0 + math.tan(b)))


def _wedge_centroid_mm(r1: float, r2: float) -> float:
    """Distance (mm) from the centre of the centroid of a 60 deg wedge of the annulus r1-r2."""
    return (2.0 / math.pi) * (r2 ** 3 - r1 ** 3) / (r2 ** 2 - r1 ** 2)


def tri_px_per_um(rig: Rig, outer_half_angle_deg: float) -> float | None:
    """Middle-spike offset (px) per um of defocus for one sub-mask of a Tri-Bahtinov mask.

    Geometric (ray) model of the usual Tri-Bahtinov layout (C.Y. Tan's design, also the
    Tri-Bahtinov generators built on it; :mod:`focuswatch.sim.mask` renders it): three 120 deg
    sectors; in each, the middle grating fills the 60 deg wedge on one side of the bisector,
    and the other wedge is split at the equal-area radius ``sqrt((R^2 + r_obs^2)/2)`` into an
    inner part and a rim part whose gratings are turned by -+b (the rim one toward the middle
    wedge). Every spike runs through the image of its sub-aperture's centroid, displaced by
    ``-c * defocus / f``; intersecting the outer spikes and measuring the middle one gives::

        k = (r_m/2 + (r_i + r_o)/4 + (sqrt(3)/4) tan(b) (r_o - r_i)) / (f * pixel_um)

    with ``r = (2/pi)(r2^3 - r1^3)/(r2^2 - r1^2)`` the wedges' centroid distances (mm) between
    the obstruction (``rig.obstruction``) and the rim. Against the Fourier-optics simulation
    the measured slope is close to it (docs/bahtinov.md); a calibrated ``px_per_um`` overrides.

    >>> round(tri_px_per_um(Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=3.76, obstruction=0.33), 15.0), 4)
    0.0192
    """
    d, f, pix = rig.effective_aperture_mm, rig.focal_length_mm, rig.effective_pixel_um
    if not (d and f and pix):
        return None
    radius = d / 2.0
    r1 = float(rig.obstruction or 0.0) * radius
    rs = radius * math.sqrt((1.0 + (r1 / radius) ** 2) / 2.0)
    rm, ri, ro = _wedge_centroid_mm(r1, radius), _wedge_centroid_mm(r1, rs), _wedge_centroid_mm(rs, radius)
    c = rm / 2.0 + (ri + ro) / 4.0 + math.sqrt(3.0) / 4.0 * math.tan(math.radians(outer_half_angle_deg)) * (ro - ri)
    return c / (f * pix)


# --------------------------------------------------------------------------- geometry helpers

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


# --------------------------------------------------------------------------- measurement steps

def _find_star(img: np.ndarray) -> tuple[int, int]:
    from scipy import ndimage
    sm = ndimage.gaussian_filter(img, 2.0)
    iy, ix = np.unravel_index(int(np.argmax(sm)), sm.shape)
    return int(ix), int(iy)


def _core_radius(w: np.ndarray, radius: np.ndarray) -> float:
    """Radius where the azimuthal median of the stretched star falls to 10 % of its peak
    (``radius``: each pixel's distance from the star, px)."""
    r = radius.ravel()
    v = w.ravel()
    rb = r.astype(int)
    n = int(rb.max()) + 1
    med = np.zeros(n)
    for i in range(min(n, 200)):
        sel = v[rb == i]
        med[i] = float(np.median(sel)) if sel.size else 0.0
    peak = med[:3].max()
    below = np.nonzero(med[: min(n, 200)] < 0.1 * peak)[0]
    r10 = float(below[0]) if below.size else 10.0
    return max(4.0, 1.5 * r10)


def _radon(xs: np.ndarray, ys: np.ndarray, w: np.ndarray, rho_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best-bin strength against normal angle; returns (angles_deg, strength, best_rho)."""
    ang = np.arange(0.0, 180.0, SCAN_STEP_DEG)
    th = np.radians(ang)
    nb = int(2 * rho_max) + 1
    strength = np.zeros(len(ang))
    best = np.zeros(len(ang))
    chunk = max(1, int(4e6 // max(len(xs), 1)))
    for s in range(0, len(ang), chunk):
        c, si = np.cos(th[s:s + chunk]), np.sin(th[s:s + chunk])
        rho = xs[:, None] * c[None, :] + ys[:, None] * si[None, :]
        idx = np.round(rho + rho_max).astype(int)
        ok = (idx >= 0) & (idx < nb)
        k = np.arange(rho.shape[1])[None, :] * nb + idx
        h = np.bincount(k[ok], weights=np.broadcast_to(w[:, None], rho.shape)[ok],
                        minlength=rho.shape[1] * nb).reshape(rho.shape[1], nb)
        strength[s:s + chunk] = h.max(axis=1)
        best[s:s + chunk] = h.argmax(axis=1) - rho_max
    return ang, strength, best


def _peaks(ang: np.ndarray, strength: np.ndarray, max_lines: int = 9) -> list[tuple[float, float]]:
    """Strong, separated peaks of the (180-periodic) strength curve: [(angle_deg, height)]."""
    from scipy.signal import find_peaks

    n = len(strength)
    base = float(np.median(strength))
    ext = np.concatenate([strength[-10:], strength, strength[:10]])
    idx, props = find_peaks(ext, prominence=0.0, distance=max(1, int(3.0 / SCAN_STEP_DEG)))
    out = []
    for i, prom in zip(idx, props["prominences"]):
        j = i - 10
        if 0 <= j < n:
            out.append((float(ang[j]), float(strength[j] - base), float(prom)))
    if not out:
        return []
    top = max(p[1] for p in out)
    out = [p for p in out if p[1] > 0.25 * top and p[2] > 0.15 * top]
    out.sort(key=lambda p: -p[1])
    return [(a, h) for a, h, _ in out[:max_lines]]


def _refine(img: np.ndarray, cx: float, cy: float, theta_deg: float, rho: float, t_min: float, t_max: float,
            half_width: float, noise: float, ramp: bool = False) -> tuple[float, float, int, float | None, float | None]:
    """Refine a line by centroiding perpendicular profiles along it; returns
    (theta_deg, rho, n_samples, rms_px, rho_err_px).

    ``ramp``: subtract a straight line through the two ends of each profile (not their
    lower level): a bright neighbouring spike's tail then does not pull the centroid
    (Tri-Bahtinov spikes a few degrees apart)."""
    from scipy import ndimage

    offs = np.arange(-half_width, half_width + 0.01, 0.5)
    n_used, rms, rho_err = 0, None, None
    for _ in range(3):
        th = math.radians(theta_deg)
        nx, ny = math.cos(th), math.sin(th)
        dx, dy = -ny, nx
        ts = np.concatenate([-np.arange(t_min, t_max, 1.0)[::-1], np.arange(t_min, t_max, 1.0)])
        px = cx + rho * nx + ts[:, None] * dx + offs[None, :] * nx
        py = cy + rho * ny + ts[:, None] * dy + offs[None, :] * ny
        prof = ndimage.map_coordinates(img, [py.ravel(), px.ravel()], order=1, mode="nearest").reshape(px.shape)
        if ramp:
            lo_e, hi_e = prof[:, :2].mean(axis=1), prof[:, -2:].mean(axis=1)
            frac = (offs - offs[0]) / (offs[-1] - offs[0])
            prof = np.clip(prof - (lo_e[:, None] + (hi_e - lo_e)[:, None] * frac[None, :]), 0.0, None)
        else:
            edge = np.minimum(prof[:, :2].mean(axis=1), prof[:, -2:].mean(axis=1))
            prof = np.clip(prof - edge[:, None], 0.0, None)
        flux = prof.sum(axis=1)
        good = flux > 3.0 * noise * math.sqrt(len(offs))
        if good.sum() < 6:
            break
        u = (prof[good] * offs[None, :]).sum(axis=1) / flux[good]
        t = ts[good]
        wt = flux[good]
        keep = np.ones(len(u), bool)
        for _ in range(3):
            a_mat = np.column_stack([np.ones(keep.sum()), t[keep]])
            sw = np.sqrt(wt[keep])
            coef, *_ = np.linalg.lstsq(a_mat * sw[:, None], u[keep] * sw, rcond=None)
            res = u - (coef[0] + coef[1] * t)
            sig = 1.4826 * float(np.median(np.abs(res[keep]))) + 1e-6
            new = np.abs(res) < 3.0 * sig
            if new.sum() < 6 or np.array_equal(new, keep):
                break
            keep = new
        a0, b1 = float(coef[0]), float(coef[1])
        # new line: point P0 + a0 n, direction d + b1 n  ->  normal n - b1 d
        p0x, p0y = rho * nx + a0 * nx, rho * ny + a0 * ny
        mx, my = nx - b1 * dx, ny - b1 * dy
        norm = math.hypot(mx, my)
        mx, my = mx / norm, my / norm
        theta_deg = math.degrees(math.atan2(my, mx))
        rho = p0x * mx + p0y * my
        n_used = int(keep.sum())
        r = res[keep]
        rms = float(np.sqrt(np.average(r ** 2, weights=wt[keep])))
        # standard error of the offset of the line near the star (weighted LS)
        wk = wt[keep] / wt[keep].sum()
        tk = t[keep]
        var_t = float(np.sum(wk * (tk - np.sum(wk * tk)) ** 2)) + 1e-9
        n_eff = 1.0 / float(np.sum(wk ** 2))
        rho_err = rms * math.sqrt(1.0 / n_eff + float(np.sum(wk * tk)) ** 2 / (var_t * n_eff))
        if abs(a0) < 0.01 and abs(b1) < 1e-4:
            break
    return theta_deg, rho, n_used, rms, rho_err


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

    The offset is counted along the middle line's normal: the canonical one (module doc), or
    the one of its two directions nearer to ``normal_deg`` (Tri-Bahtinov sub-masks)."""
    cx, cy = _intersect(lines[o1], lines[o2])
    t, r = _canonical_normal(*lines[mid])
    if normal_deg is not None and math.cos(math.radians(t - normal_deg)) < 0.0:
        t, r = t + 180.0, -r
    th = math.radians(t)
    off = r - (cx * math.cos(th) + cy * math.sin(th))
    half = _ang_diff(_direction_deg(lines[o1][0]), _direction_deg(lines[o2][0])) / 2.0
    return off, cx, cy, half


#: Tri-Bahtinov grouping: how far (deg) a spike may sit from the symmetric model, and how much
#: worse (rms, deg) an alternative grouping may fit and still count as a tie (then brightness decides).
TRI_TOL_DEG = 2.0
TRI_TIE_DEG = 0.3
#: Sub-masks of a Tri-Bahtinov agreeing within this many critical focus zones (max - min)
#: count as collimated.
TRI_SPREAD_CFZ = 0.5
TRI_T_FACTOR = 2.5
TRI_T_CAP = 0.6
TRI_HALF_WIDTH = 4.0
TRI_RAMP = True
TRI_SCAN_FRAC = 0.45


def _group_triplets(dirs: Sequence[float], strengths: Sequence[float]
                    ) -> tuple[list[tuple[int | None, int | None, int | None]], float, float, bool] | None:
    """Group Tri-Bahtinov spikes by the mask's symmetry.

    A Tri-Bahtinov's nine spike directions are ``phi + 60 k`` (the middles, k = 0, 1, 2: the
    sub-masks are 120 deg apart and a line is the same line turned by 180 deg) and
    ``phi + 60 k +- b`` (the outer ones). Gaps between neighbouring directions do not tell
    the triplets apart: at ``b = 20`` deg all nine are 20 deg apart, and any ``b`` gives the
    same nine directions as ``60 - b`` with the outer spikes handed to the neighbouring
    sub-mask. So every detected line is tried as a middle and every angle to another line as
    ``b`` (3-30 deg: ``b`` and ``60 - b`` make the same directions, mask designs use the
    smaller); the model matching most lines with the smallest rms wins, and among models
    that fit equally well (within ``TRI_TIE_DEG``, e.g. ``b`` near 20 deg) the one whose
    middles are brightest (the middle grating has twice the area of each outer one).

    Returns ``(groups, phi_deg, b_deg, ambiguous)``: three ``(middle, outer-, outer+)`` line
    indices (``None`` where no line matched), the fitted middle direction and half-angle,
    and whether brightness had to decide; ``None`` when fewer than 6 lines fit any model.
    """
    n = len(dirs)
    s = np.asarray(strengths, float)

    def nearest(a: float) -> int | None:
        dd = [_ang_diff(d, a) for d in dirs]
        i = int(np.argmin(dd))
        return i if dd[i] <= TRI_TOL_DEG else None

    cands = []
    for i in range(n):
        for j in range(n):
            beta = _ang_diff(dirs[j], dirs[i])
            if j == i or not 3.0 <= beta < 30.0:
                continue
            # fit phi and beta to the lines matched by the model, twice
            phi, b = dirs[i], beta
            groups: list[tuple[int | None, int | None, int | None]] = []
            for _ in range(2):
                groups, phis, bs = [], [], []
                for k in range(3):
                    m = phi + 60.0 * k
                    im, ia, ib = nearest(m), nearest(m - b), nearest(m + b)
                    groups.append((im, ia, ib))
                    if im is not None:
                        phis.append(((dirs[im] - m + 90.0) % 180.0 - 90.0))
                    if ia is not None and ib is not None:
                        bs.append(_ang_diff(dirs[ia], dirs[ib]) / 2.0)
                phi = phi + (float(np.mean(phis)) if phis else 0.0)
                b = float(np.mean(bs)) if bs else b
            if not 3.0 <= b < 30.0:
                continue
            res, used = [], set()
            for k, g in enumerate(groups):
                m = phi + 60.0 * k
                for idx, a in zip(g, (m, m - b, m + b)):
                    if idx is not None:
                        res.append(_ang_diff(dirs[idx], a))
                        used.add(idx)
            n_match = len(used)  # distinct lines: one line cannot be two spikes
            if n_match < 6:
                continue
            rms = float(np.sqrt(np.mean(np.square(res))))
            mids = [g[0] for g in groups if g[0] is not None]
            bright = float(np.mean(s[mids])) if mids else 0.0
            cands.append((n_match, rms, bright, groups, phi % 180.0, b))
    if not cands:
        return None
    top = max(c[0] for c in cands)
    cands = [c for c in cands if c[0] == top]
    best_rms = min(c[1] for c in cands)
    tied = [c for c in cands if c[1] <= best_rms + TRI_TIE_DEG]
    pick = max(tied, key=lambda c: c[2])
    # a different choice of middles (phi shifted by other than a multiple of 60 deg) fit as well
    ambiguous = any(abs(((c[4] - pick[4] + 30.0) % 60.0) - 30.0) > 2.0 for c in tied)
    return pick[3], pick[4], pick[5], ambiguous


# --------------------------------------------------------------------------- entry point

def analyze(image: np.ndarray, rig: Rig | None = None, *, px_per_um: float | None = None, reverse: bool = False,
            max_radius_px: int = 300, wavelength_nm: float | None = None, file: str | None = None) -> BahtinovResult:
    """Measure the Bahtinov (or Tri-Bahtinov) pattern around the brightest star.

    Parameters
    ----------
    image : 2-D array of the frame (ADU; any dtype).
    rig : aperture, focal length and pixel size for the conversion to um (else only px are
        reported), focuser step size for the advice in steps.
    px_per_um : a calibrated conversion (px of offset per um of defocus) to use instead of
        the Bahtinov Grabber formula.
    reverse : flip the sign (mask turned by 180 deg or a mirrored image, see module doc).
    max_radius_px : how far from the star the spikes are followed.

    Raises :class:`BahtinovError` (a ``ValueError``) when no spike pattern is found.
    """
    rig = rig or Rig()
    img = np.asarray(image, dtype=float)
    if img.ndim != 2 or min(img.shape) < 32:
        raise BahtinovError(f"need a 2-D image of at least 32x32 px, got shape {img.shape}")
    bg = float(np.median(img))
    noise = float(mad_std(img)) or 1.0
    sx, sy = _find_star(img)
    h = int(min(max_radius_px, sx, sy, img.shape[1] - 1 - sx, img.shape[0] - 1 - sy))
    if h < 16:
        raise BahtinovError(f"the brightest star at ({sx}, {sy}) is too close to the edge to follow its spikes")
    box = img[sy - h:sy + h + 1, sx - h:sx + h + 1] - bg
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1].astype(float)
    rr_all = np.hypot(xx, yy)
    w = np.sqrt(np.clip(box, 0.0, None))
    r_in = _core_radius(w, rr_all)
    sel = (rr_all > r_in) & (rr_all < h) & (box > 2.0 * noise)
    if sel.sum() < 50:
        raise BahtinovError("no diffraction spikes around the brightest star (too faint or no mask?)")
    ang, strength, best = _radon(xx[sel], yy[sel], w[sel], rho_max=min(40.0, h / 2))
    peaks = _peaks(ang, strength)
    notes: list[str] = []
    if len(peaks) < 3:
        raise BahtinovError(f"found {len(peaks)} spike(s) around the brightest star; a Bahtinov mask makes 3")
    # coarse line parameters
    coarse = []
    for a, hgt in peaks:
        j = int(round(a / SCAN_STEP_DEG)) % len(ang)
        coarse.append((a, float(best[j]), hgt))
    dirs = [_direction_deg(a) for a, _, _ in coarse[:3]]
    sep_deg = min(_ang_diff(dirs[i], dirs[j]) for i in range(len(dirs)) for j in range(i + 1, len(dirs)))
    half_width = 4.0
    t_max = h - half_width - 1
    t_min = min(max(r_in, 2.5 * half_width / math.sin(math.radians(max(sep_deg, 3.0)))), max(r_in, 0.6 * t_max))
    if t_max - t_min < 10:
        raise BahtinovError("the spikes are too short or too close together to measure (crop less, or "
                            "use a longer focal length / smaller pixels)")
    Found = list[tuple[float, float, LineInfo]]

    def trace(cands: Sequence[tuple[float, float, float]], t_lo: float, hw: float = half_width,
              ramp: bool = False) -> Found:
        """Refine coarse lines (normal_deg, rho_px, strength) followed from ``t_lo`` px out.

        A spike is followed over most of its length; noise around a star without a mask is not."""
        n_possible = 2 * len(np.arange(t_lo, t_max, 1.0))
        out: Found = []
        for a, rho0, hgt in cands:
            th, rho, n_s, rms, err = _refine(box, float(h), float(h), a, rho0, t_lo, t_max, hw, noise, ramp)
            if not (n_s >= 0.4 * n_possible and rms is not None and rms < 1.5):
                continue
            th, rho = _canonical_normal(th, rho)
            if any(_ang_diff(_direction_deg(th), _direction_deg(t2)) < 2.0 and abs(rho - r2) < 3.0
                   for t2, r2, _ in out):
                continue  # the same spike found twice
            out.append((th, rho, (hgt, n_s, rms, err)))
        return out

    found = trace(coarse, t_min)
    middles_60 = _sixty_apart([_direction_deg(t) for t, _, _ in found[:3]])
    if len(found) >= 5 or middles_60:
        def rho_at(normal_deg: float, r_lo: float, rb: float = 8.0) -> float:
            """Best 1-px bin (within ``rb`` px of the star) of the stretched light projected on
            one normal, from the stretch of the line more than ``r_lo`` px from the star."""
            th = math.radians(normal_deg)
            rr = xx * math.cos(th) + yy * math.sin(th)
            near = sel & (np.abs(rr) <= rb) & (np.abs(yy * math.cos(th) - xx * math.sin(th)) > r_lo)
            hist = np.bincount(np.round(rr[near] + rb).astype(int), weights=w[near], minlength=int(2 * rb) + 1)
            return float(np.argmax(hist) - rb)

        # the angle scan again on the outer part only (beyond TRI_SCAN_FRAC of the radius), where
        # spikes a few degrees apart no longer blend: for the outer spikes' half-angle
        far_sel = (rr_all > max(r_in, TRI_SCAN_FRAC * h)) & (rr_all < h)  # no 2-sigma cut: faint spikes count
        _, strength_far, _ = _radon(xx[far_sel], yy[far_sel], w[far_sel], rho_max=min(40.0, h / 2))
        found = _retrace_tri(found, trace, rho_at, strength_far, r_in, t_max) or found
    if len(found) < 3:
        raise BahtinovError(f"no Bahtinov spikes around the brightest star ({len(found)} line(s) could be traced); "
                            "is the mask on, and the star bright enough?")
    pattern = "tri-bahtinov" if (len(found) >= 6 or middles_60) else "bahtinov"
    if pattern == "bahtinov":
        if len(found) > 3:
            notes.append(f"{len(found)} spikes found; the 3 strongest used")
        found = found[:3]
    refined = [(t, r) for t, r, _ in found]
    line_info = [info for _, _, info in found]
    k = px_per_um
    src = "given" if px_per_um else None
    lam = wavelength_nm or rig.wavelength_nm
    cfz = rig.cfz_um(lam)
    sign = -1.0 if reverse else 1.0
    if pattern == "tri-bahtinov":
        return _measure_tri(refined, line_info, sx, sy, rig, px_per_um, cfz, sign, reverse, notes, file)
    mid, o1, o2 = _triplet(refined)
    off, cxp, cyp, half = _offset(refined, mid, o1, o2)
    roles = ["outer"] * 3
    roles[mid] = "middle"
    lines = _spike_lines(refined, line_info, roles)
    if half < 5 or half > 40:
        notes.append(f"outer spikes {2 * half:.1f}° apart: unusual for a Bahtinov mask")
    off_err = _quadrature([line_info[i][3] for i in (mid, o1, o2)])
    if k is None:
        k = grabber_px_per_um(rig, half)
        src = "bahtinov-grabber" if k else None
    return _finish(pattern, sx, sy, lines, refined[mid][0], half, sx + cxp, sy + cyp, off, off_err, k, src, rig,
                   cfz, sign, reverse, notes, file)


def _sixty_apart(dirs: Sequence[float], tol_deg: float = 3.0) -> bool:
    """Three line directions pairwise 60 deg apart: the middle spikes of a Tri-Bahtinov."""
    return len(dirs) == 3 and all(abs(_ang_diff(dirs[i], dirs[j]) - 60.0) <= tol_deg
                                  for i in range(3) for j in range(i + 1, 3))


def _retrace_tri(found: list, trace: Any, rho_at: Any, strength: np.ndarray, r_in: float,
                 t_max: float) -> list | None:
    """Trace all nine spikes of a Tri-Bahtinov where the mask's symmetry puts them.

    The first pass finds spikes as separate peaks of the angle scan and follows each from
    where the three *strongest* (the middles, 60 deg apart) stand apart. Both fail for a
    Tri-Bahtinov: outer spikes only ``b`` deg from a bright middle merge into its skirt in
    the scan (or come out a few degrees off), some hide in the pixel grid, and spikes ``b``
    deg apart still overlap where the middles are already clear. So the symmetry is used:
    the middles' direction ``phi`` (mod 60 deg) comes from the three strongest lines (or
    from :func:`_group_triplets`), the half-angle ``b`` from the scan (``strength``, made
    on the outer part of the star only) summed over all six outer positions
    ``phi + 60 k +- b`` (after removing each angle's local floor, so a middle's skirt does
    not count; ``b`` 6-30 deg), and every one of the nine predicted
    directions is traced (from the detected line where there is one, else from the best
    1-px bin of the light beyond the start radius projected onto the predicted normal)
    starting where neighbours are ``TRI_T_FACTOR * TRI_HALF_WIDTH`` px apart, with a sloped
    background under each profile (:func:`_refine` ``ramp``).
    Returns ``None`` when the lines fit no Tri-Bahtinov model.
    """
    from scipy import ndimage

    dirs = [_direction_deg(t) for t, _, _ in found]
    if _sixty_apart(dirs[:3]):
        z = np.exp(1j * np.radians(6.0 * np.array(dirs[:3])))
        phi = math.degrees(np.angle(z.sum())) / 6.0 % 60.0
    else:
        grouping = _group_triplets(dirs, [info[0] for _, _, info in found])
        if grouping is None:
            return None
        phi = grouping[1]
    floor = ndimage.minimum_filter1d(strength, int(round(8.0 / SCAN_STEP_DEG)) + 1, mode="wrap")
    top = strength - floor

    def at(direction: float) -> float:
        return float(top[int(round(((direction - 90.0) % 180.0) / SCAN_STEP_DEG)) % len(top)])

    betas = np.arange(6.0, 30.0, SCAN_STEP_DEG)
    score = [sum(at(phi + 60.0 * k + sg * b) for k in range(3) for sg in (-1.0, 1.0)) for b in betas]
    beta = float(betas[int(np.argmax(score))])
    sep = min(beta, 60.0 - 2.0 * beta)
    t_lo = min(max(r_in, TRI_T_FACTOR * TRI_HALF_WIDTH / math.sin(math.radians(sep))), max(r_in, TRI_T_CAP * t_max))
    cands = []
    for k in range(3):
        for dv in (0.0, -beta, beta):
            d = (phi + 60.0 * k + dv) % 180.0
            near = [i for i, dd in enumerate(dirs) if _ang_diff(dd, d) <= 1.0]
            if near:
                t, r, info = found[near[0]]
                cands.append((t, r, info[0]))
                continue
            a = (d - 90.0) % 180.0
            cands.append((a, rho_at(a, t_lo), at(d)))
    out = trace(cands, t_lo, TRI_HALF_WIDTH, TRI_RAMP)
    return out if len(out) >= 6 else None


def _measure_tri(refined: list[tuple[float, float]], line_info: list[LineInfo],
                 sx: int, sy: int, rig: Rig, px_per_um: float | None, cfz: float | None, sign: float,
                 reverse: bool, notes: list[str], file: str | None) -> BahtinovResult:
    """Tri-Bahtinov: group the spikes by the mask's symmetry, measure each sub-mask, combine.

    Each sub-mask's offset is counted along its own normal; the three normals are 120 deg
    apart (``phi0``, ``phi0 + 120``, ``phi0 + 240`` with ``phi0`` in [-30, 30) deg), so they
    turn with the mask and the three signs agree (the canonical normal of a plain Bahtinov,
    chosen per line, would flip one of them). The combined focus error is the mean of the
    three; their spread (max - min) is the collimation/tilt hint.
    """
    dirs = [_direction_deg(t) for t, _ in refined]
    grouping = _group_triplets(dirs, [info[0] for info in line_info])
    if grouping is None:
        notes.append(f"{len(refined)} spikes do not fit the 3-fold symmetry of a Tri-Bahtinov mask (grating angle "
                     "3-30°); focus error not measured")
        return BahtinovResult(pattern="tri-bahtinov", star_x_px=float(sx), star_y_px=float(sy),
                              lines=_spike_lines(refined, line_info, ["spike"] * len(refined)), cfz_um=cfz,
                              reversed=reverse, verdict="Tri-Bahtinov pattern detected; focus error not measured",
                              notes=tuple(notes), file=file)
    groups, phi, beta, ambiguous = grouping
    # the sign set: middle normals phi0 + 120 k, phi0 in [-30, 30)
    phi0 = (phi - 90.0 + 30.0) % 60.0 - 30.0
    roles: list[str] = ["spike"] * len(refined)
    trip: list[int | None] = [None] * len(refined)
    measured = []
    for g in groups:
        im, ia, ib = g
        if im is None:
            continue
        t_mid = refined[im][0]
        k = max(range(3), key=lambda kk: abs(math.cos(math.radians(t_mid - (phi0 + 120.0 * kk)))))
        normal = phi0 + 120.0 * k
        for idx, role in ((im, "middle"), (ia, "outer"), (ib, "outer")):
            if idx is not None and trip[idx] is None:
                roles[idx], trip[idx] = role, k
        if ia is None or ib is None or ia == ib:
            continue
        off, cxp, cyp, half = _offset(refined, im, ia, ib, normal_deg=normal)
        off_err = _quadrature([line_info[i][3] for i in (im, ia, ib)])
        measured.append((k, normal % 360.0, dirs[im], half, sx + cxp, sy + cyp, off, off_err))
    measured.sort(key=lambda m: m[0])
    if len({m[0] for m in measured}) < len(measured):
        measured = []  # two middles claimed the same sub-mask: the grouping is wrong
    if ambiguous:
        why = ("the nine spikes are evenly spaced" if abs(beta - 20.0) < 3.0
               else "some spikes are missing and the rest fit two groupings")
        notes.append(f"grating angle ~{beta:.0f}°: {why}, so the middle spikes were told apart by brightness")
    if any(t is None for t in trip):
        notes.append(f"{sum(t is None for t in trip)} spike(s) outside the Tri-Bahtinov pattern ignored")
    lines = tuple(sorted(_spike_lines(refined, line_info, roles, trip),
                         key=lambda ln: (3 if ln.triplet is None else ln.triplet, ln.role != "middle", ln.angle_deg)))
    if not measured:
        notes.append("no complete triplet of spikes (middle + two outer) could be measured")
        return BahtinovResult(pattern="tri-bahtinov", star_x_px=float(sx), star_y_px=float(sy), lines=lines,
                              cfz_um=cfz, reversed=reverse,
                              verdict="Tri-Bahtinov pattern detected; focus error not measured",
                              notes=tuple(notes), file=file)
    half_mean = float(np.mean([m[3] for m in measured]))
    k_conv, src = px_per_um, ("given" if px_per_um else None)
    if k_conv is None:
        k_conv = tri_px_per_um(rig, half_mean)
        src = "tri-bahtinov-geometric" if k_conv else None
        if k_conv and not rig.obstruction:
            notes.append("the conversion assumes an unobstructed aperture; give the central obstruction "
                         "(--obstruction, e.g. 0.33) for a reflector or SCT (it changes the result by a few %)")
    triplets = []
    for k, normal, mdir, half, cx, cy, off, off_err in measured:
        e = sign * off / k_conv if k_conv else None
        ee = off_err / k_conv if (k_conv and off_err is not None) else None
        triplets.append(Triplet(index=k, middle_angle_deg=mdir, normal_deg=normal, outer_half_angle_deg=half,
                                crossing_x_px=cx, crossing_y_px=cy, offset_px=off, offset_err_px=off_err,
                                focus_error_um=e, focus_error_err_um=ee,
                                focus_error_cfz=e / cfz if (e is not None and cfz) else None))
    n_t = len(measured)
    off_mean = float(np.mean([m[6] for m in measured]))
    off_sum_err = _quadrature([m[7] for m in measured])
    off_mean_err = off_sum_err / n_t if off_sum_err is not None else None
    if n_t < 3:
        notes.append(f"only {n_t} of the 3 sub-masks measured: the focus error is their mean, no collimation check")
    spread = spread_err = spread_cfz = None
    ok, hint = None, None
    if n_t == 3 and k_conv:
        errs_um = [t.focus_error_um for t in triplets]
        hi, lo = int(np.argmax(errs_um)), int(np.argmin(errs_um))
        spread = float(errs_um[hi] - errs_um[lo])
        eh, el = triplets[hi].focus_error_err_um, triplets[lo].focus_error_err_um
        spread_err = math.hypot(eh, el) if (eh is not None and el is not None) else None
        spread_cfz = spread / cfz if cfz else None
        mean_um = float(np.mean(errs_um))
        far = max(range(3), key=lambda i: abs(errs_um[i] - mean_um))
        dev = errs_um[far] - mean_um
        where = "beyond" if dev > 0 else "in front of"
        limit = cfz * TRI_SPREAD_CFZ if cfz else None
        if limit is not None:
            ok = spread <= limit or (spread_err is not None and spread <= 3.0 * spread_err)
        if ok:
            hint = f"the three sub-masks agree within {spread:.0f} µm"
            hint += f" ({spread_cfz:.2f} CFZ): collimation looks fine" if spread_cfz is not None else ""
        else:
            hint = (f"the three sub-masks disagree by {spread:.0f} µm"
                    + (f" ({spread_cfz:.1f} CFZ)" if spread_cfz is not None else "")
                    + f"; the one with its middle spike at {triplets[far].middle_angle_deg:.0f}° focuses "
                      f"{abs(dev):.0f} µm {where} the mean: collimation or tilt (cover one sector of the mask "
                      "to see which screw it belongs to)")
    first = triplets[0]
    res = _finish("tri-bahtinov", sx, sy, lines, None, half_mean, None, None, off_mean, off_mean_err, k_conv, src,
                  rig, cfz, sign, reverse, notes, file)
    return replace(res, middle_angle_deg=first.middle_angle_deg, triplets=tuple(triplets), focus_spread_um=spread,
                   focus_spread_err_um=spread_err, focus_spread_cfz=spread_cfz, collimation_ok=ok,
                   collimation_hint=hint)


def _finish(pattern: str, sx: int, sy: int, lines: tuple[SpikeLine, ...], mid_normal: float | None,
            half: float | None, cx: float | None, cy: float | None, off: float, off_err: float | None,
            k: float | None, src: str | None, rig: Rig, cfz: float | None, sign: float, reverse: bool,
            notes: list[str], file: str | None) -> BahtinovResult:
    err_um = sign * off / k if k else None
    err_err = off_err / k if (k and off_err is not None) else None
    in_focus = direction = move_um = move_steps = None
    err_cfz = err_um / cfz if (err_um is not None and cfz) else None
    if err_um is None:
        verdict = (f"middle spike offset {off:+.2f} px; give aperture, focal length and pixel size to convert "
                   "it to µm")
    elif cfz is None:
        verdict = f"focus error {err_um:+.0f} µm (give the f-ratio to compare with the critical focus zone)"
    else:
        in_focus = abs(err_um) <= cfz / 2.0
        if in_focus:
            verdict = f"in focus: {err_um:+.0f} µm, {abs(err_cfz):.2f} of the critical focus zone ({cfz:.0f} µm)"
        else:
            direction = "inward" if err_um > 0 else "outward"
            move_um = abs(err_um)
            toward = "smaller" if direction == "inward" else "larger"
            verdict = f"out of focus by {abs(err_cfz):.1f} zones: move the focuser {direction} " \
                      f"(toward {toward} position numbers) by ~{move_um:.0f} µm"
            if rig.focuser_step_um:
                move_steps = move_um / rig.focuser_step_um
                verdict += f" = ~{move_steps:.0f} steps"
    return BahtinovResult(
        pattern=pattern, star_x_px=float(sx), star_y_px=float(sy), lines=lines,
        middle_angle_deg=None if mid_normal is None else _direction_deg(mid_normal),
        outer_half_angle_deg=half, crossing_x_px=cx, crossing_y_px=cy, offset_px=off, offset_err_px=off_err,
        px_per_um=k, px_per_um_source=src, focus_error_um=err_um, focus_error_err_um=err_err, cfz_um=cfz,
        focus_error_cfz=err_cfz, in_focus=in_focus, direction=direction, move_um=move_um, move_steps=move_steps,
        reversed=reverse, verdict=verdict, notes=tuple(notes), file=file)


def result_text(r: BahtinovResult) -> str:
    """Human-readable lines for ``focuswatch bahtinov``."""
    lines = [f"{r.file or 'image'}: {r.pattern} pattern, star at ({r.star_x_px:.0f}, {r.star_y_px:.0f})"]
    tri = r.pattern == "tri-bahtinov"
    spikes = ", ".join(f"{ln.angle_deg:.1f}° ({ln.role}{'' if ln.triplet is None else f' {ln.triplet}'})"
                       for ln in r.lines)
    lines.append(f"  spikes: {spikes}")
    for t in r.triplets:
        err = f" ± {t.offset_err_px:.2f}" if t.offset_err_px is not None else ""
        row = f"  sub-mask {t.index}: middle spike {t.middle_angle_deg:.1f}°, offset {t.offset_px:+.2f}{err} px"
        if t.focus_error_um is not None:
            ferr = f" ± {t.focus_error_err_um:.0f}" if t.focus_error_err_um is not None else ""
            zone = f" ({t.focus_error_cfz:+.2f} CFZ)" if t.focus_error_cfz is not None else ""
            row += f", focus error {t.focus_error_um:+.0f}{ferr} µm{zone}"
        lines.append(row)
    if r.offset_px is not None:
        err = f" ± {r.offset_err_px:.2f}" if r.offset_err_px is not None else ""
        what = f"mean offset of {len(r.triplets)} sub-masks" if tri else "middle spike offset"
        lines.append(f"  {what} {r.offset_px:+.2f}{err} px")
    if r.px_per_um:
        lines.append(f"  conversion {r.px_per_um:.4f} px/µm ({r.px_per_um_source})")
    if r.focus_error_um is not None:
        err = f" ± {r.focus_error_err_um:.0f}" if r.focus_error_err_um is not None else ""
        zone = f" = {r.focus_error_cfz:+.2f} CFZ (zone {r.cfz_um:.0f} µm)" if r.focus_error_cfz is not None else ""
        lines.append(f"  focus error{' (mean)' if tri else ''} {r.focus_error_um:+.0f}{err} µm{zone}")
    if r.collimation_hint:
        lines.append(f"  collimation: {r.collimation_hint}")
    lines.append(f"  {r.verdict}")
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)
