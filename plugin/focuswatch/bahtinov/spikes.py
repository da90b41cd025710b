"""Finding the spikes on the pixels: the star, its core, the angle scan and the line fits.

Steps 1-3 of the method in the package doc: the brightest star is the origin
(:func:`_find_star`), its core is masked (:func:`_core_radius`), a Radon-style scan of the
stretched light finds the spike directions (:func:`_radon`, :func:`_peaks`), and each line
is refined by centroiding perpendicular profiles along it (:func:`_refine`).
"""
from __future__ import annotations

import math

import numpy as np

from focuswatch.model.numerics import MAD_TO_SIGMA


#: Normal angles scanned by the coarse Radon step (deg).
SCAN_STEP_DEG = 0.5


def _find_star(img: np.ndarray) -> tuple[int, int]:
    from scipy import ndimage
    sm = ndimage.gaussian_filter(img, 2.0)
    iy, ix = np.unravel_index(int(np.argmax(sm)), sm.shape)
    return int(ix), int(iy)


#: How far out (px) the star's radial profile is taken: the core and a far-defocused disc both
#: end well inside it, and the spikes beyond are not wanted in a median.
RADIAL_MAX_PX = 200


def radial_median(w: np.ndarray, radius: np.ndarray, max_px: int = RADIAL_MAX_PX) -> np.ndarray:
    """The azimuthal median of ``w`` in 1 px rings (``radius``: each pixel's distance from the
    star, px) out to ``max_px`` or the picture's edge; 0 for a ring without pixels. The median
    and not the mean: the spikes are a few pixels of each ring and must not lift it.

    One sort of (ring, value) instead of a masked median per ring: the same figures.

    >>> w = np.array([[1.0, 2.0, 9.0], [3.0, 5.0, 4.0]]); r = np.array([[1.2, 1.9, 1.5], [0.0, 0.0, 2.2]])
    >>> radial_median(w, r).tolist()
    [4.0, 2.0, 4.0]
    """
    rb = radius.ravel().astype(int)
    v = w.ravel()
    n = min(int(rb.max()) + 1, max_px) if rb.size else 0
    keep = rb < n
    rb, v = rb[keep], v[keep]
    order = np.lexsort((v, rb))
    rb, v = rb[order], v[order]
    starts = np.searchsorted(rb, np.arange(n + 1))
    med = np.zeros(n)
    for i in range(n):
        a, b = starts[i], starts[i + 1]
        if b > a:
            k = b - a
            med[i] = float(v[a + (k - 1) // 2]) if k % 2 else float((v[a + k // 2 - 1] + v[a + k // 2]) / 2)
    return med


def _core_radius(w: np.ndarray, radius: np.ndarray, floor_w: float = 0.0) -> float:
    """Radius where the azimuthal median of the stretched star falls to 10 % of its peak, or
    to ``floor_w`` if that is higher (``radius``: each pixel's distance from the star, px).

    ``floor_w``: the stretched level below which light is not spike light at all (the
    spike threshold). On a low dynamic range picture (8-bit, saturated star) 10 % of the
    stretched peak is ~1 % of the clipped peak, a glow a few ADU above the sky that
    reaches far out; masking it left only the faint far ends of the spikes (real JPEG grab:
    the core radius came out 72-83 px on a star whose spikes stand clear from ~20 px)."""
    med = radial_median(w, radius)
    peak = med[:3].max()
    below = np.nonzero(med < max(0.1 * peak, floor_w))[0]
    r10 = float(below[0]) if below.size else 10.0
    return max(4.0, 1.5 * r10)


def flat_disc_radius_px(w: np.ndarray, radius: np.ndarray, floor_w: float = 0.0,
                        min_px: float = 8.0) -> float | None:
    """Radius (px) of the brightest star when it is a flat-topped disc (far out of focus),
    else ``None`` (``w``: the square-root stretched star). The radius is where the light
    falls to 1 % of the peak: the disc's edge for a large disc, a little beyond it (the
    seeing halo) for a small one.

    A defocused star spreads its light evenly over a disc (Δ/N across; a ring on an
    obstructed telescope): the azimuthal median of the stretched light stays above half its
    peak out to half the radius where it falls to 10 % (or to ``floor_w``). A focused star's light is peaked: half way out its
    median is a small fraction of the peak. No spikes stand out of such a disc until the
    focus is within a few zones."""
    med = radial_median(w, radius)
    top = int(np.argmax(med))  # the centre, or the ring of a donut (obstructed pupil)
    peak = float(med[top])
    if peak <= 0:
        return None
    below = np.nonzero(med[top:] < max(0.1 * peak, floor_w))[0]
    if not below.size or top + below[0] < min_px:
        return None
    r10 = top + int(below[0])
    return float(r10) if med[r10 // 2] >= 0.5 * peak else None


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
            sig = MAD_TO_SIGMA * float(np.median(np.abs(res[keep]))) + 1e-6
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
