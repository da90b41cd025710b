"""Measuring stars on full-resolution stamps: centroids, half-flux radii (sep's exact
apertures), NINA's flux-weighted radius, second moments, radial profiles, ring ratios of
donuts and batched Moffat fits for the FWHM.

Everything works on (n, S, S) stacks of background-subtracted stamps, all stars of a
batch at once in numpy; :func:`focuswatch.stars.measuring.measure` calls it in batches so
memory stays bounded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from focuswatch.stars import ringfit
from focuswatch.stars.table import _PIX_MOM2, _SUBPIX
from focuswatch.stars.wings import _WING_FRACS, _WING_FRACS_90, _wing_annuli


def _batched_moffat(r: np.ndarray, y: np.ndarray, w: np.ndarray, amp0: np.ndarray,
                    alpha0: np.ndarray, n_iter: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``I(r) = A (1 + r^2/alpha^2)^-beta + c`` to many stars at once (Levenberg-Marquardt).

    ``r``, ``y``, ``w`` are (n_stars, n_points) arrays (w = 0 masks a point). Returns
    (alpha, beta, ok). Parameters are fitted as logs so they stay positive; one small
    solve per star per iteration, all stars together in numpy (scipy has no batched fit).
    """
    n = r.shape[0]
    p = np.stack([np.log(np.maximum(amp0, 1e-6)), np.log(np.maximum(alpha0, 0.3)),
                  np.full(n, math.log(3.0)), np.zeros(n)], axis=1)
    lam = np.full(n, 1e-2)
    r2 = r * r

    def model(pp):
        """(model, A, alpha, beta, base, Moffat part without the constant)"""
        A, al, be = np.exp(pp[:, 0:1]), np.exp(pp[:, 1:2]), np.exp(pp[:, 2:3])
        base = 1.0 + r2 / (al * al)
        f = A * base ** (-be)
        return f + pp[:, 3:4], A, al, be, base, f

    def cost_of(m):
        return np.sum(w * (m - y) ** 2, axis=1)

    with np.errstate(all="ignore"):
        return _lm_loop(p, lam, n_iter, model, cost_of, r2, y, w)


def _lm_loop(p, lam, n_iter, model, cost_of, r2, y, w):
    """The iterations of :func:`_batched_moffat` (split out to run under one errstate).

    The model at the parameters is kept from the step that set them (each star's row of the
    trial's model where the trial was better), not evaluated again: the same numbers, a
    third fewer powers."""
    n = p.shape[0]
    cur = model(p)
    c = cost_of(cur[0])
    for _ in range(n_iter):
        m, A, al, be, base, f = cur
        lb = np.log(base)
        J = np.empty(r2.shape + (4,))
        J[..., 0] = f                                     # d/d logA
        J[..., 1] = f * be * 2.0 * r2 / (al * al) / base  # d/d logalpha
        J[..., 2] = -f * be * lb                          # d/d logbeta
        J[..., 3] = 0.0
        res = (m - y) * w
        Jw = J * w[..., None]
        JTJ = np.matmul(Jw.transpose(0, 2, 1), J)
        g = np.matmul(J.transpose(0, 2, 1), res[..., None])[..., 0]
        damp = JTJ + lam[:, None, None] * (np.eye(4)[None] * np.maximum(np.diagonal(JTJ, axis1=1, axis2=2), 1e-12)[:, :, None])
        damp[:, 3, 3] = 1.0
        try:
            step = -np.linalg.solve(damp, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.zeros_like(p)
            for i in range(n):
                try:
                    step[i] = -np.linalg.solve(damp[i], g[i])
                except np.linalg.LinAlgError:
                    pass
        step[:, 2] = np.clip(step[:, 2], -0.7, 0.7)
        trial = p + step
        trial[:, 0] = np.clip(trial[:, 0], -30.0, 30.0)
        trial[:, 1] = np.clip(trial[:, 1], math.log(0.05), math.log(1000.0))
        trial[:, 2] = np.clip(trial[:, 2], math.log(1.2), math.log(25.0))
        tried = model(trial)
        ct = cost_of(tried[0])
        better = np.isfinite(ct) & (ct < c)
        p[better] = trial[better]
        c[better] = ct[better]
        if np.any(better):
            cur = tuple(np.where(better[:, None], t, k) for t, k in zip(tried, cur))
        lam = np.where(better, lam * 0.3, lam * 10.0)
        lam = np.clip(lam, 1e-7, 1e7)
    alpha, beta = np.exp(p[:, 1]), np.exp(p[:, 2])
    ok = np.isfinite(alpha) & np.isfinite(beta) & (alpha > 0.05)
    return alpha, beta, ok


def moffat_fwhm(alpha: np.ndarray | float, beta: np.ndarray | float):
    """FWHM of a Moffat profile: ``2 alpha sqrt(2^(1/beta) - 1)``."""
    return 2.0 * np.asarray(alpha) * np.sqrt(2.0 ** (1.0 / np.asarray(beta)) - 1.0)


def _radial_profiles(stamps: np.ndarray, rr: np.ndarray, n_bins: int) -> np.ndarray:
    """Mean intensity in 1-px-wide annuli for every stamp at once (bincount trick)."""
    n = stamps.shape[0]
    bins = np.minimum(rr.astype(np.int64), n_bins - 1)
    idx = (np.arange(n)[:, None, None] * n_bins + bins).ravel()
    sums = np.bincount(idx, weights=stamps.ravel(), minlength=n * n_bins).reshape(n, n_bins)
    cnts = np.bincount(idx, minlength=n * n_bins).reshape(n, n_bins)
    return sums / np.maximum(cnts, 1)


#: a donut's profile: its centre below this share of its peak (on a ring, 2 bins out or more);
#: :func:`_may_have_dip` skips the profiles of stamps that cannot meet it, so both read this one value
_DIP_CENTRE_SHARE = 0.6


def _ring_ratio(prof: np.ndarray, r90: np.ndarray) -> np.ndarray:
    """Inner/outer half-maximum radius of ring-shaped (donut) profiles; 0 for filled stars."""
    n, nb = prof.shape
    out = np.zeros(n)
    peak_bin = np.argmax(prof, axis=1)
    peak = prof[np.arange(n), peak_bin]
    centre = prof[:, 0]
    cand = (peak_bin >= 2) & (centre < _DIP_CENTRE_SHARE * peak) & (peak > 0)
    for i in np.nonzero(cand)[0]:
        p, k, half = prof[i], peak_bin[i], 0.5 * peak[i]
        inner = np.nonzero(p[:k] < half)[0]
        outer = np.nonzero(p[k:] < half)[0]
        if not len(inner) or not len(outer):
            continue
        j = inner[-1]
        r_in = j + 0.5 + (half - p[j]) / max(p[j + 1] - p[j], 1e-12)
        o = k + outer[0]
        r_out = o - 0.5 + (p[o - 1] - half) / max(p[o - 1] - p[o], 1e-12)
        if r_out > r_in > 0:
            out[i] = r_in / r_out
    return out


def _may_have_dip(stamps: np.ndarray, rr: np.ndarray, cx: np.ndarray, cy: np.ndarray, R: int) -> np.ndarray:
    """Which stamps :func:`_ring_ratio` could call a donut (a superset, never fewer).

    It needs the mean of the centre's pixels (``rr < 1``) below ``_DIP_CENTRE_SHARE`` of an
    annulus mean at ``rr >= 2``. The centre's pixels lie in the 2 x 2 block around ``(cx, cy)`` and hold at
    least their lowest value; an annulus mean is at most the stamp's highest pixel. Where
    the lowest exceeds that share of the highest (with a margin for rounding) there is no dip.
    """
    n = len(stamps)
    ii = np.arange(n)[:, None, None]
    jy = np.clip(np.floor(cy).astype(np.int64) + R, 0, 2 * R - 1)[:, None, None] + np.arange(2)[None, :, None]
    jx = np.clip(np.floor(cx).astype(np.int64) + R, 0, 2 * R - 1)[:, None, None] + np.arange(2)[None, None, :]
    low = np.where(rr[ii, jy, jx] < 1.0, stamps[ii, jy, jx], np.inf).reshape(n, -1).min(axis=1).astype(np.float64)
    high = stamps.reshape(n, -1).max(axis=1).astype(np.float64)
    return (high > 0) & ~(low > _DIP_CENTRE_SHARE * high + 1e-6 * np.abs(high))


def _annulus_ratio(r20: np.ndarray, r80: np.ndarray) -> np.ndarray:
    """Inner/outer radius of a uniform annulus with these 20 % and 80 % flux radii.

    An annulus from ``e R`` to ``R`` holds the share ``(r^2 - e^2 R^2) / (R^2 (1 - e^2))``
    inside radius ``r``, so ``R^2 (1 - e^2) = (r80^2 - r20^2) / 0.6`` and
    ``e^2 R^2 = r20^2 - 0.2 R^2 (1 - e^2)``. Unlike half-maximum radii (which seeing pulls
    toward the ring's crest, reading 0.43 for a 0.33 obstruction) this uses the light
    itself; spider-vane shadows remove whole sectors and do not change it. For a
    defocused star on an obstructed telescope it is the obstruction ratio.
    """
    width2 = (r80 ** 2 - r20 ** 2) / 0.6
    inner2 = r20 ** 2 - 0.2 * width2
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.sqrt(np.clip(inner2, 0.0, None) / np.maximum(inner2 + width2, 1e-12))
    return np.where(np.isfinite(e) & (width2 > 0), e, 0.0)


def _half_max_width(prof: np.ndarray, counts: np.ndarray, bin_px: float) -> np.ndarray:
    """Full width at half maximum read directly off binned radial profiles (NaN if unclear).

    The maximum may sit on a ring (donut); the width is twice the radius where the profile,
    going outward from its maximum, first falls below half of it (linear interpolation).
    The profile is lightly smoothed (3 bins, its ends repeated) against pixel noise. Empty
    bins (and non-finite values) are left out; a profile needs 4 bins left. All stars at
    once: each row's bins that are left are moved to its front, in order.
    """
    n, nb = prof.shape
    with np.errstate(invalid="ignore"):
        good = (counts > 0) & np.isfinite(prof)
    n_good = good.sum(axis=1)
    order = np.argsort(~good, axis=1, kind="stable")  # the bins left, first and in order
    v = np.where(good, prof, 0.0)
    v = np.take_along_axis(v, order, axis=1)
    r = ((np.arange(nb) + 0.5) * bin_px)[order]
    pos = np.arange(nb)[None, :]
    inrow = pos < n_good[:, None]
    k = 1.0 / 3.0
    left = np.concatenate([v[:, :1], v[:, :-1]], axis=1)
    right = np.where(pos + 1 < n_good[:, None], np.concatenate([v[:, 1:], v[:, -1:]], axis=1), v)
    sm = (left * k + v * k) + right * k  # the 3-bin mean, summed in np.convolve's order
    rows = np.arange(n)
    j = np.argmax(np.where(inrow, sm, -np.inf), axis=1)
    top = sm[rows, j]
    half = 0.5 * top
    below = inrow & (pos >= j[:, None]) & (sm < half[:, None])
    o = np.argmax(below, axis=1)
    ok = (n_good >= 4) & below.any(axis=1) & (top > 0) & (o > 0)
    o1 = np.maximum(o - 1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r_half = r[rows, o1] + (sm[rows, o1] - half) / np.maximum(sm[rows, o1] - sm[rows, o], 1e-12) * (
            r[rows, o] - r[rows, o1])
    return np.where(ok, 2.0 * r_half, np.nan)


_STAMP_BATCH_PIXELS = 500_000


def _offsets(cx: np.ndarray, cy: np.ndarray, R: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dy, r) of every stamp pixel from each star's sub-pixel centre (stamp coordinates,
    0 = the stamp's centre pixel), float32 arrays of shape (n, S, S)."""
    axis = np.arange(-R, R + 1, dtype=np.float32)
    dx = axis[None, None, :] - cx[:, None, None].astype(np.float32)
    dy = axis[None, :, None] - cy[:, None, None].astype(np.float32)
    dx, dy = np.broadcast_arrays(dx, dy)
    return dx, dy, np.sqrt(dx * dx + dy * dy)


def _stamps(img: np.ndarray, ix: np.ndarray, iy: np.ndarray, local_bkg: np.ndarray, cx: np.ndarray,
            cy: np.ndarray, R: int, nbx: np.ndarray | None = None,
            nby: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Background-subtracted (n, S, S) stamps centred on the integer pixels ``(ix, iy)``, with
    the pixels nearer a neighbour than the star zeroed, and each stamp's raw maximum (ADU,
    for the saturation test). ``(cx, cy)`` is the star's sub-pixel centre in the stamp."""
    off = np.arange(-R, R + 1)
    H, W = img.shape
    rows = iy[:, None] + off[None, :]
    cols = ix[:, None] + off[None, :]
    S = len(off)
    R = S // 2
    whole = (iy >= R) & (iy < H - R) & (ix >= R) & (ix < W - R)
    raw = np.empty((len(ix), S, S), img.dtype)
    # stamps wholly inside the frame: plain slices (a third of the time of fancy indexing)
    inner = np.nonzero(whole)[0]
    for k, y, x in zip(inner.tolist(), iy[inner].tolist(), ix[inner].tolist()):  # Python ints: no numpy scalars
        raw[k] = img[y - R:y + R + 1, x - R:x + R + 1]
    edge = np.nonzero(~whole)[0]
    if len(edge):
        raw[edge] = img[np.clip(rows[edge], 0, H - 1)[:, :, None], np.clip(cols[edge], 0, W - 1)[:, None, :]]
    peak = raw.reshape(len(ix), -1).max(axis=1)
    stamps = raw - local_bkg[:, None, None]
    del raw
    # a stamp may reach past the frame's edge (a star near it, or one as big as the frame):
    # the pixels outside hold nothing (the star itself lies inside, see measure())
    # (only stamps not wholly inside can reach past it: the others are left as they are)
    if len(edge):
        outside = ((rows[edge] < 0) | (rows[edge] >= H))[:, :, None] | ((cols[edge] < 0) | (cols[edge] >= W))[:, None, :]
        if outside.any():
            stamps[edge] = np.where(outside, np.float32(0), stamps[edge])
    if nbx is not None:
        stamps = _mask_neighbours(stamps, cx, cy, nbx, nby, off.astype(np.float32))
    return stamps, peak


_N_NEIGHBOURS = 6


@dataclass(frozen=True)
class LocalSkyConfig:
    """The sky under a large star, read from the ring of its stamp beyond the star's light.

    Only for large stars (disks tens of pixels across, found by the coarse detection pass):
    there sep's sky map, whose meshes can only be a few disks wide, is raised by the disks
    themselves, and the measuring aperture is so much larger than a small star's that 1 e-
    per pixel of sky error moves a faint disk's flux by 30 % and its half-flux radius by
    15 %. The ring's sky (neighbours' pixels left out, clipped, the median of its sectors'
    means) replaces the map's value.
    Small stars keep the map: their aperture is small and the map fine.
    """

    #: the ring starts this share beyond the star's own radius (its detection box), plus
    #: ``gap_px`` (the seeing blurs the disk's edge)
    gap_share: float = 0.1
    gap_px: float = 2.0
    #: fewest pixels in the ring for a reading (else the map's value stays)
    min_pixels: int = 200
    #: sigma clipping of the ring's pixels (stars and cosmic rays in it): bound, passes
    clip_sigma: float = 3.0
    clip_passes: int = 3
    #: the ring is cut into this many sectors; the sky is the median of their means, and a
    #: sector counts when it holds at least this share of an even split of the ring's pixels
    sectors: int = 16
    min_sector_share: float = 0.5


LOCAL_SKY = LocalSkyConfig()


def _sky_ring_start(own_r: np.ndarray, config: LocalSkyConfig = LOCAL_SKY) -> np.ndarray:
    """Inner radius (px) of the sky ring of stars whose own light reaches ``own_r``."""
    return (1.0 + config.gap_share) * np.asarray(own_r, np.float64) + config.gap_px


def _annulus_sky(img: np.ndarray, ix: np.ndarray, iy: np.ndarray, local_bkg: np.ndarray, cx: np.ndarray,
                 cy: np.ndarray, own_r: np.ndarray, R: int, nbx: np.ndarray, nby: np.ndarray,
                 config: LocalSkyConfig = LOCAL_SKY) -> np.ndarray:
    """The sky level under each star (ADU) from its stamp's ring beyond ``own_r`` (px, the
    star's own radius) out to ``R``, pixels nearer a neighbouring detection and outside the
    frame left out, sigma-clipped, the median of the ring's sectors' means; ``local_bkg``
    where the ring is too small (see :class:`LocalSkyConfig`). Arguments as for
    :func:`_stamps`."""
    off = np.arange(-R, R + 1)
    stamps, _ = _stamps(img, ix, iy, np.zeros(len(ix), np.float32), cx, cy, R)
    H, W = img.shape
    rows = iy[:, None] + off[None, :]
    cols = ix[:, None] + off[None, :]
    inside = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    r_in = _sky_ring_start(own_r, config)
    dx, dy, rr = _offsets(cx, cy, R)
    sec = np.minimum(((np.arctan2(dy, dx) + math.pi) * (config.sectors / (2 * math.pi))).astype(np.int64),
                     config.sectors - 1)
    del dx, dy
    ring = inside & (rr >= r_in[:, None, None].astype(np.float32)) & (rr <= R)
    # pixels nearer a neighbour than the star are its light, not sky: _mask_neighbours zeroes
    # them in a stamp of ones
    mine = _mask_neighbours(np.ones(stamps.shape, np.float32), cx, cy, nbx, nby, off.astype(np.float32)) > 0
    ring &= mine
    out = np.asarray(local_bkg, np.float64).copy()
    for k in range(len(ix)):
        v = stamps[k][ring[k]].astype(np.float64)
        if len(v) < config.min_pixels:
            continue
        lo, hi = -np.inf, np.inf
        for _ in range(config.clip_passes):
            use = v[(v >= lo) & (v <= hi)]
            if len(use) < config.min_pixels:
                break
            mid, sd = float(np.median(use)), float(np.std(use))
            lo, hi = mid - config.clip_sigma * sd, mid + config.clip_sigma * sd
        keep = (v >= lo) & (v <= hi)
        if np.count_nonzero(keep) < config.min_pixels:
            continue
        # the median of the sectors' means: an undetected neighbour's faint disk (no pixel of
        # it stands out to the clipping) lies in a few sectors only
        sector = sec[k][ring[k]][keep]
        cnt = np.bincount(sector, minlength=config.sectors)
        sums = np.bincount(sector, weights=v[keep], minlength=config.sectors)
        full = cnt >= config.min_sector_share * np.count_nonzero(keep) / config.sectors
        out[k] = float(np.median(sums[full] / cnt[full])) if np.any(full) else float(np.mean(v[keep]))
    return out


def _mask_neighbours(stamps: np.ndarray, cx: np.ndarray, cy: np.ndarray, nbx: np.ndarray, nby: np.ndarray,
                     axis: np.ndarray) -> np.ndarray:
    """Zero the pixels of each stamp that lie nearer a neighbouring detection than the star.

    ``(cx, cy)`` and ``(nbx, nby)`` (n, k) are in stamp coordinates (0 = the stamp's centre
    pixel); far-away neighbours carry 1e6. A Voronoi cut: cheap, and exact for stars whose
    light does not overlap (those that overlap were already rejected as blended).
    """
    # only the stamps with a neighbour in each slot are looked at (few on most star fields)
    rows = np.nonzero((nbx < 1e5).any(axis=1))[0]
    if not len(rows):
        return stamps
    dx0 = axis[None, None, :] - cx[rows, None, None].astype(np.float32)
    dy0 = axis[None, :, None] - cy[rows, None, None].astype(np.float32)
    own = dx0 * dx0 + dy0 * dy0
    mask = np.zeros((len(rows),) + stamps.shape[1:], bool)
    for k in range(nbx.shape[1]):
        near = np.nonzero(nbx[rows, k] < 1e5)[0]
        if not len(near):
            continue
        r = rows[near]
        dx = axis[None, None, :] - nbx[r, k, None, None].astype(np.float32)
        dy = axis[None, :, None] - nby[r, k, None, None].astype(np.float32)
        mask[near] |= dx * dx + dy * dy < own[near]
    if mask.any():
        stamps = stamps.copy()
        stamps[rows] = np.where(mask, np.float32(0), stamps[rows])
    return stamps


#: half-width (px) of the window around each star's centre in which
#: :func:`_adaptive_moments` sums a star's second moments when its aperture fits inside
_MOMENT_WINDOW_PX = 6


def _adaptive_moments(pos: np.ndarray, dx: np.ndarray, dy: np.ndarray, cx: np.ndarray, cy: np.ndarray,
                      rad_px: np.ndarray, R: int, n_iter: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second moments (px^2) of the light ``pos`` (n, S, S; no negative values) inside an
    ellipse of the star's own shape and the area of a circle of radius ``rad_px``,
    iterated ``n_iter`` times from that circle; ``(dx, dy)`` are the pixels' offsets from
    the centres ``(cx, cy)`` (stamp coordinates, :func:`_offsets`). Returns (mxx, myy, mxy).

    The aperture holds a few pixels of a stamp that must be wide enough for the wings: each
    pass sums over a (2 w + 1)^2 window around the centre (``w`` = ``_MOMENT_WINDOW_PX``)
    for the stars whose ellipse lies inside it (an ellipse ``v^T Q^-1 v <= r^2`` reaches
    ``r sqrt(Q_xx)`` in x), and over the whole stamp for the others: the same pixels, so
    the same moments, at a tenth of the pixels read on a focused frame.
    """
    n = len(pos)
    S = 2 * R + 1
    rad2 = (np.asarray(rad_px, np.float64) ** 2).astype(np.float32)
    w = _MOMENT_WINDOW_PX
    # the window: stamp indices c-w .. c+w around the pixel c nearest the centre; it holds every
    # pixel within w - 0.5 of the centre in x and in y
    c0x = np.rint(cx).astype(np.int64) + R
    c0y = np.rint(cy).astype(np.int64) + R
    in_stamp = (np.minimum(c0x, c0y) - w >= 0) & (np.maximum(c0x, c0y) + w <= S - 1)
    k = np.arange(-w, w + 1)
    rows_w = np.clip(c0y[:, None] + k[None, :], 0, S - 1)
    cols_w = np.clip(c0x[:, None] + k[None, :], 0, S - 1)
    nn = np.arange(n)[:, None, None]
    pw = pos[nn, rows_w[:, :, None], cols_w[:, None, :]].reshape(n, -1)
    # an offset in x is the same down a stamp's column, in y along its row (_offsets): the
    # window's offsets and their products from one row and one column of each (the same
    # float32 values as gathering the whole window, without three (n, S, S) fancy gathers)
    dxw1 = np.take_along_axis(dx[:, 0, :], cols_w, axis=1)[:, None, :]  # (n, 1, 2w+1)
    dyw1 = np.take_along_axis(dy[:, :, 0], rows_w, axis=1)[:, :, None]  # (n, 2w+1, 1)
    shape_w = (n, 2 * w + 1, 2 * w + 1)
    prods_w = tuple(np.broadcast_to(p, shape_w).reshape(n, -1)  # the same every pass
                    for p in (dxw1 * dxw1, dyw1 * dyw1, dyw1 * dxw1))
    reach_max = w - 0.5 - 1e-3  # a margin for float32 rounding of q
    qxx = np.ones(n, np.float32)
    qyy = np.ones(n, np.float32)
    qxy = np.zeros(n, np.float32)
    mxx = myy = mxy = np.zeros(n)
    for it in range(n_iter):
        # how far the ellipse q <= rad2 reaches in x and in y
        q64 = (qxx.astype(np.float64), qyy.astype(np.float64), qxy.astype(np.float64))
        det = q64[0] * q64[1] - q64[2] ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            reach = np.sqrt(rad2 * np.maximum(q64[0], q64[1]) / det)
        fits = in_stamp & (det > 0) & (reach <= reach_max)
        sums = np.empty((n, 4))
        for rows, whole in ((np.nonzero(fits)[0], False), (np.nonzero(~fits)[0], True)):
            if not len(rows):
                continue
            if whole:  # (dx, dy are broadcast views: only these rows are made)
                p_, dx_, dy_ = (a[rows].reshape(len(rows), -1) for a in (pos, dx, dy))
                dxx, dyy, dxy = dx_ * dx_, dy_ * dy_, dx_ * dy_
            elif len(rows) == n:
                p_, (dxx, dyy, dxy) = pw, prods_w
            else:
                p_, (dxx, dyy, dxy) = pw[rows], (a[rows] for a in prods_w)
            # the first pass is circular (q = 1, 1, 0): the same numbers as the general form, 3 passes fewer
            q = dxx + dyy if it == 0 else (qyy[rows, None] * dxx - 2 * qxy[rows, None] * dxy + qxx[rows, None] * dyy)
            wm = np.where(q <= rad2[rows, None], p_, np.float32(0))
            sums[rows, 0] = wm.sum(axis=1, dtype=np.float64)
            sums[rows, 1] = (wm * dxx).sum(axis=1, dtype=np.float64)
            sums[rows, 2] = (wm * dyy).sum(axis=1, dtype=np.float64)
            sums[rows, 3] = (wm * dxy).sum(axis=1, dtype=np.float64)
        sw_tot = np.maximum(sums[:, 0], 1e-12)
        mxx, myy, mxy = sums[:, 1] / sw_tot, sums[:, 2] / sw_tot, sums[:, 3] / sw_tot
        norm = np.sqrt(np.maximum(mxx * myy - mxy ** 2, 1e-12))
        qxx = (mxx / norm).astype(np.float32)
        qyy = (myy / norm).astype(np.float32)
        qxy = (mxy / norm).astype(np.float32)
    return mxx, myy, mxy


def _measure_stamps(img: np.ndarray, ix: np.ndarray, iy: np.ndarray, local_bkg: np.ndarray, cx: np.ndarray,
                    cy: np.ndarray, sw: np.ndarray, R: int, sat: float | None,
                    nbx: np.ndarray | None = None, nby: np.ndarray | None = None,
                    aperture_px: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Centroid, half-flux radii, flux, NINA HFR, shape and ring figures of a batch of stars.

    The curve of growth runs out to ``R - 1``, or to ``aperture_px`` (per star) when that is
    smaller: large stars stop where their sky ring starts (:class:`LocalSkyConfig`), so an
    undetected neighbour's light further out is not counted as theirs.

    Pure numpy on (n, S, S) stamps; called in batches so memory stays bounded whatever the
    number of stars (a 61 Mpx frame with 3000 stars would otherwise hold ~300 MB of stamps).
    """
    import sep

    n = len(ix)
    S = 2 * R + 1
    off = np.arange(-R, R + 1)
    stamps, peak = _stamps(img, ix, iy, local_bkg, cx, cy, R, nbx, nby)
    is_sat = peak >= 0.95 * sat if sat else np.zeros(n, bool)

    # windowed centroids (Gaussian window, a few iterations; the window is separable, so each
    # iteration costs two small (n, S) exponentials and one pass over the stamps: a batched
    # matrix product with the x window and the x-weighted window side by side)
    axis = off.astype(np.float32)
    pos = np.clip(stamps, 0, None)
    for _ in range(3):
        gx = np.exp(-(axis[None, :] - cx[:, None]) ** 2 / (2 * sw[:, None] ** 2)).astype(np.float32)
        gy = np.exp(-(axis[None, :] - cy[:, None]) ** 2 / (2 * sw[:, None] ** 2)).astype(np.float32)
        rows_w = np.matmul(pos, np.stack([gx, gx * axis[None, :]], axis=2))  # (n, S, 2)
        tot = np.einsum("ni,ni->n", rows_w[:, :, 0], gy).astype(np.float64)
        sx = np.einsum("ni,ni->n", rows_w[:, :, 1], gy).astype(np.float64)
        sy = np.einsum("ni,ni->n", rows_w[:, :, 0], gy * axis[None, :]).astype(np.float64)
        good = tot > 0
        cx = np.clip(np.where(good, sx / np.where(good, tot, 1), cx), -R / 2, R / 2)
        cy = np.clip(np.where(good, sy / np.where(good, tot, 1), cy), -R / 2, R / 2)

    # true half-flux radius: sep's exact apertures on a mosaic of the stamps
    ncol = int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    mosaic = np.zeros((nrow * S, ncol * S), np.float32)
    tiles = mosaic.reshape(nrow, S, ncol, S).transpose(0, 2, 1, 3)  # a view: tile (row, col) of the mosaic
    for r in range(nrow):  # a row of tiles at a time (the last one may be short: zeros stay)
        k0, k1 = r * ncol, min(n, (r + 1) * ncol)
        tiles[r, :k1 - k0] = stamps[k0:k1]
    del tiles
    col, row = np.arange(n) % ncol, np.arange(n) // ncol
    mx = col * S + R + cx
    my = row * S + R + cy
    rmax = np.full(n, R - 1.0) if aperture_px is None else np.minimum(np.asarray(aperture_px, np.float64), R - 1.0)
    radii, flags = sep.flux_radius(mosaic, mx, my, rmax,
                                   [0.5, 0.9, 0.2, 0.8] + list(_WING_FRACS) + list(_WING_FRACS_90), subpix=_SUBPIX)
    r50, r90, r20, r80 = radii[:, 0], radii[:, 1], radii[:, 2], radii[:, 3]
    r_wing = radii[:, 4:4 + len(_WING_FRACS)]
    r_wing90 = radii[:, 4 + len(_WING_FRACS):]
    flux, _, _ = sep.sum_circle(mosaic, mx, my, rmax, subpix=_SUBPIX)
    del mosaic

    dx, dy, rr = _offsets(cx, cy, R)

    # NINA-style HFR: flux-weighted mean radius within 1.2x the star's (90 %) radius
    pos_in = np.where(rr <= np.maximum(1.2 * r90, 2.0)[:, None, None].astype(np.float32), pos, np.float32(0))
    hfr_nina = (pos_in * rr).sum(axis=(1, 2)) / np.maximum(pos_in.sum(axis=(1, 2), dtype=np.float64), 1e-12)
    del pos_in

    # second moments in an aperture that adapts to the star's own ellipse (a circular
    # aperture would cut the long axis of an elongated star and make it look rounder)
    mxx, myy, mxy = _adaptive_moments(pos, dx, dy, cx, cy, np.maximum(2.5 * r50, 2.5), R)
    ixx, iyy, ixy = mxx - _PIX_MOM2, myy - _PIX_MOM2, mxy
    tr = ixx + iyy
    det_term = np.sqrt(np.maximum(((ixx - iyy) / 2) ** 2 + ixy ** 2, 0))
    a2 = np.maximum(tr / 2 + det_term, 1e-6)
    b2 = np.maximum(tr / 2 - det_term, 1e-6)

    # donuts: a dip in the middle of the radial profile (a hole needs a blur several pixels
    # wide, so small stamps cannot hold one and skip the profile)
    dip = np.zeros(n)
    if R >= 10:
        # only stamps that can hold a dip: a profile peaking on a ring (bin >= 2) with a centre
        # below _DIP_CENTRE_SHARE of it needs the centre's lowest pixel below that share of the stamp's highest
        # (most focused stars cannot: their profiles are not built)
        maybe = np.nonzero(_may_have_dip(stamps, rr, cx, cy, R))[0]
        if len(maybe):
            dip[maybe] = _ring_ratio(_radial_profiles(stamps[maybe], rr[maybe], R + 1), r90[maybe])
    ring = np.where(dip > 0, _annulus_ratio(r20, r80), 0.0)
    # the donuts' radial profiles for the ring fit (ringfit.refine_ring_ratio reads only those
    # with ring > 0); NaN rows, mean radii at the annuli's middles, for the other stars
    if R >= 10:
        ring_prof = np.full((n, R + 1), np.nan)
        ring_r = np.broadcast_to(np.arange(R + 1) + 0.5, (n, R + 1)).copy()
        donut = np.nonzero(ring > 0)[0]
        if len(donut):
            ring_prof[donut], ring_r[donut] = ringfit.radial_profile(stamps[donut], rr[donut], R + 1)
    else:
        ring_prof, ring_r = (np.zeros((n, 1)),) * 2
    return {
        "cx": cx, "cy": cy, "r50": r50, "r90": r90, "flux": flux, "flags": flags, "hfr_nina": hfr_nina,
        "a2": a2, "b2": b2, "ecc": np.sqrt(np.clip(1 - b2 / a2, 0, 1)), "theta": 0.5 * np.arctan2(2 * ixy, ixx - iyy),
        "ring": ring, "ring_prof": ring_prof, "ring_r": ring_r, "saturated": is_sat, "centre": stamps[:, R, R].astype(np.float64),
        "r_wing": r_wing, "r_wing90": r_wing90, **_wing_annuli(stamps, rr, R),
    }
