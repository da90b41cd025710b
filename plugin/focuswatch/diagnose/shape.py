"""Shape and field figures of the measured stars: orientation, one-sided flares, the size map.

Plain functions over arrays, in sep's coordinates (x = column, y = row, (0, 0) the centre
of the first pixel): how well the elongations share one orientation (``_orientation``),
each star's third-moment flare, which tells miscollimation and coma from a symmetric trail
(:func:`star_asymmetry`), the robust quadratic map of HFR^2 across the frame, which tells
tilt from curvature (``_field_fit``), the power law of the size's growth with the field
radius (:func:`field_growth_exponent`: coma ~1, curvature ~2) and the 3x3 zones.
:mod:`focuswatch.diagnose.evidence` gathers them into an ``Evidence``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std

from focuswatch.diagnose.config import DiagnoseConfig


def _orientation(ecc: np.ndarray, theta: np.ndarray) -> tuple[float, float]:
    """Alignment 0..1 (circular mean length of 2*theta weighted by e) and its angle (rad)."""
    w = ecc.sum()
    if w <= 0:
        return 0.0, 0.0
    z = np.sum(ecc * np.exp(2j * theta)) / w
    return float(abs(z)), float(np.angle(z) / 2.0)


@dataclass(frozen=True)
class _FieldFit:
    variation_pct: float
    significance: float
    tilt_pct: float
    curvature_pct: float
    anisotropy: float
    gradient_angle_deg: float | None
    best_xy: tuple[float, float]


def _field_fit(x: np.ndarray, y: np.ndarray, hfr: np.ndarray, w: int, h: int) -> _FieldFit | None:
    """Robust quadratic surface of HFR^2 over the frame; tilt/curvature from its shape.

    HFR^2 grows with the square of the local defocus, so a curved field gives an isotropic
    bowl (both eigenvalues of the quadratic part alike), a tilted sensor a trough or a
    plane (one eigenvalue, or a linear term). ``significance`` is the map's range over
    three times the standard errors of its extreme points: below 1 the variation is noise.
    """
    if hfr.size < 12:
        return None
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    s = math.hypot(cx, cy) or 1.0
    u, v = (x - cx) / s, (y - cy) / s
    a = np.column_stack([np.ones_like(u), u, v, u * u, u * v, v * v])
    t = hfr ** 2
    keep = np.ones(t.size, bool)
    coef = np.zeros(6)
    for _ in range(5):  # iteratively clipped least squares (blends, cosmic hits)
        coef, *_ = np.linalg.lstsq(a[keep], t[keep], rcond=None)
        res = t - a @ coef
        mad = mad_std(res[keep]) + 1e-12
        new = np.abs(res) < 3.5 * mad
        if new.sum() < 10 or np.array_equal(new, keep):
            break
        keep = new
    res = (t - a @ coef)[keep]
    dof = max(int(keep.sum()) - 6, 1)
    sigma2 = float(res @ res) / dof
    try:
        cov = sigma2 * np.linalg.inv(a[keep].T @ a[keep])
    except np.linalg.LinAlgError:
        return None
    uc, vc = cx / s, cy / s
    gx = np.linspace(-uc, uc, 41)
    gy = np.linspace(-vc, vc, 41)
    gu, gv = np.meshgrid(gx, gy)
    g = np.column_stack([np.ones(gu.size), gu.ravel(), gv.ravel(), gu.ravel() ** 2,
                         (gu * gv).ravel(), gv.ravel() ** 2])
    m2 = g @ coef
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", g, cov, g), 0.0))
    i_hi, i_lo = int(np.argmax(m2)), int(np.argmin(m2))
    signif = float((m2[i_hi] - m2[i_lo]) / (3.0 * (se[i_hi] + se[i_lo]) + 1e-12))
    mp = np.sqrt(np.clip(m2, 1e-6, None)).reshape(gu.shape)
    med = float(np.median(mp))
    corners = np.array([mp[0, 0], mp[0, -1], mp[-1, 0], mp[-1, -1]])
    centre = float(mp[20, 20])
    q = np.array([[coef[3], coef[4] / 2], [coef[4] / 2, coef[5]]])
    ev, evec = np.linalg.eigh(q)
    rc2 = uc * uc + vc * vc
    iso = float((ev[0] + ev[1]) / 2.0 * rc2)
    aniso = float((ev[1] - ev[0]) / 2.0 * rc2)
    lin = float(math.hypot(coef[1], coef[2]) * math.sqrt(rc2))
    main = evec[:, 1] if abs(ev[1]) >= abs(ev[0]) else evec[:, 0]
    if lin > aniso:
        ang = math.degrees(math.atan2(coef[2], coef[1])) % 360.0
    else:
        ang = math.degrees(math.atan2(main[1], main[0])) % 180.0
    iy, ix = np.unravel_index(int(np.argmin(mp)), mp.shape)
    return _FieldFit(
        variation_pct=100.0 * float(mp.max() - mp.min()) / med,
        significance=signif,
        tilt_pct=100.0 * float(corners.max() - corners.min()) / med,
        curvature_pct=100.0 * (float(corners.mean()) - centre) / centre,
        anisotropy=float((aniso + lin) / (abs(iso) + aniso + lin + 1e-12)),
        gradient_angle_deg=ang,
        best_xy=(float(cx + gx[ix] * s), float(cy + gy[iy] * s)),
    )


def star_asymmetry(pixels: np.ndarray, x: np.ndarray, y: np.ndarray, hfr_px: np.ndarray,
                   scale_px: float = 1.0, *, config: "DiagnoseConfig | None" = None) -> np.ndarray:
    """Comatic (third-moment) vector of each star, shape (n, 2), dimensionless.

    ``sum(I * r^2 * (dx, dy)) / (sum(I) * sigma^3)`` about the star's centroid, with
    ``sigma^2 = sum(I r^2) / sum(I)``: zero for any symmetric star (round, elongated by a
    trail, defocused), pointing along a one-sided flare (collimation, coma). Second moments
    cannot tell a flare from a trail; this can. ``x``, ``y``, ``hfr_px`` are in sensor
    pixels (sep convention); ``pixels`` may be a 2x2-superpixel image (``scale_px`` = 2).
    The stamp, sky border and aperture sizes are ``config``'s ``asymmetry_*`` fields.
    NaN for stars too close to the edge.
    """
    c = config or DiagnoseConfig()
    # stamps are cut from the frame as it is and made float64 one by one: converting the whole
    # frame first cost a 200-500 MB copy (and its page faults) per frame for a few hundred stamps
    img = np.asarray(pixels)
    h, w = img.shape
    b = int(c.asymmetry_border_px)
    out = np.full((len(x), 2), np.nan)
    for i in range(len(x)):
        px = (x[i] + 0.5) / scale_px - 0.5
        py = (y[i] + 0.5) / scale_px - 0.5
        hr = max(hfr_px[i] / scale_px, c.asymmetry_min_hfr_px)
        rad = int(min(max(math.ceil(c.asymmetry_stamp_hfr * hr + c.asymmetry_stamp_pad_px),
                          c.asymmetry_stamp_min_px), c.asymmetry_stamp_max_px))
        ix, iy = int(round(px)), int(round(py))
        if ix - rad - b < 0 or iy - rad - b < 0 or ix + rad + b + 1 > w or iy + rad + b + 1 > h:
            continue
        st = img[iy - rad - b:iy + rad + b + 1, ix - rad - b:ix + rad + b + 1].astype(np.float64)
        border = np.concatenate([st[:b].ravel(), st[-b:].ravel(), st[b:-b, :b].ravel(), st[b:-b, -b:].ravel()])
        st = st - np.median(border)
        yy, xx = np.mgrid[-rad - b:rad + b + 1, -rad - b:rad + b + 1].astype(float)
        cx, cy = px - ix, py - iy
        ap = c.asymmetry_aperture_hfr * hr + c.asymmetry_aperture_pad_px
        for _ in range(int(c.asymmetry_recentre_passes)):
            m = ((xx - cx) ** 2 + (yy - cy) ** 2) <= ap * ap
            v = np.where(m, st, 0.0)
            tot = v.sum()
            if tot <= 0:
                break
            cx, cy = (v * xx).sum() / tot, (v * yy).sum() / tot
        else:
            dx, dy = xx - cx, yy - cy
            r2 = dx * dx + dy * dy
            m = r2 <= ap * ap
            v = np.where(m, st, 0.0)
            tot = v.sum()
            if tot <= 0:  # the recentred aperture lost the star (noise): leave NaN, no 0/0
                continue
            s2 = (v * r2).sum() / tot
            if s2 > 0:
                out[i] = [(v * r2 * dx).sum() / tot / s2 ** 1.5, (v * r2 * dy).sum() / tot / s2 ** 1.5]
    return out


def field_growth_exponent(rn: np.ndarray, hfr_px: np.ndarray, n_rings: int = 5) -> float | None:
    """Power law of the star size's growth with the field radius: ~1 for coma, ~2 for field
    curvature or a wrong backfocus.

    Stars are binned in ``n_rings`` rings of equal count by ``rn`` (field radius over the
    half diagonal); the excess size of ring ``k`` over the central ring,
    ``sqrt(HFR_k^2 - HFR_0^2)``, is fitted as ``c * r^p`` (log-log least squares over the rings
    with a clear excess). Coma's blur grows as the field angle h, defocus from a curved
    field as h^2. ``None`` when fewer than three rings stand out.

    >>> r = np.linspace(0.05, 1.0, 200)
    >>> round(field_growth_exponent(r, np.hypot(1.5, 2.0 * r ** 2)), 1)
    2.0
    """
    if len(rn) < 5 * n_rings:
        return None
    order = np.argsort(rn)
    rings = np.array_split(order, n_rings)
    rr = np.array([np.median(rn[k]) for k in rings])
    hh = np.array([np.median(hfr_px[k]) for k in rings])
    h0 = hh[0]
    ex2 = hh ** 2 - h0 ** 2
    use = (ex2 > (0.1 * h0) ** 2) & (rr > 0)
    use[0] = False
    if use.sum() < 3:
        return None
    p = np.polyfit(np.log(rr[use]), 0.5 * np.log(ex2[use]), 1)[0]
    return float(p)


def _zones(x: np.ndarray, y: np.ndarray, w: int, h: int) -> np.ndarray:
    col = np.clip((x / w * 3).astype(int), 0, 2)
    row = np.clip((y / h * 3).astype(int), 0, 2)
    return row * 3 + col
