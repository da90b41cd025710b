"""Crowded donuts: finding every ring of a field where defocused stars touch, and measuring
a donut from the part of its ring that no neighbour reaches.

Why. A defocused autofocus frame of a dense field is all donuts, and at the far ends of a
V-curve many of them touch or overlap. sep joins touching rings into one footprint (or
cuts them into arcs), and a star whose light overlaps a neighbour's was rejected as
blended: 300 donuts 52 px apart in a 1200 px frame gave 41 detections and 6 measured stars.

Finding (:func:`find_rings`). Every donut of a frame has about the same size, which the
coarse detection pass gives. A matched filter for that ring, on a binned copy of the frame
(about ten binned pixels per ring radius), answers "is a ring centred here?": positive over
the outer half of the disk, negative over the central hole and over a band just outside the
rim, zero sum (a flat sky gives nothing). Its peaks sit on the ring centres even where rings
overlap. A ring also gives weaker peaks beside itself (where three rings meet, their arcs
look like one more ring), so the peaks are taken strongest first and each one's answer is
reduced by what the rings already taken predict there (the filter's answer to a model ring,
scaled), as in CLEAN; what is left must be most of its answer and well above the noise, and
its ring must be lit all the way round (every sector of the annulus holds light). The ring
radius is chosen from a few around the coarse pass's size as the one whose peaks answer
most strongly.

Measuring (:func:`masked_profiles`). A donut is round: the light at radius r is the same in
every direction, up to the thin shadows of spider vanes. So the curve of growth of a donut
whose neighbour overlaps one side is the mean of each thin annulus over the pixels no
neighbour's light reaches (each neighbour's disk out to its rim plus a margin), times the
annulus' whole area. The centre comes from point-symmetric pixel pairs (a pixel counts only
when its mirror image through the centre is clean too), so the masked side does not pull it.
The sky comes from the clean pixels beyond the aperture (sector means, their median), as
for every large star. A star is measured this way only when every annulus of its aperture
keeps ``min_coverage`` of its pixels clean; the others stay rejected as blended.

Only frames whose stars are large (the coarse pass ran) and touch take these paths.
Pure computation: no I/O, no clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CrowdedRingConfig", "CROWDED_RING", "find_rings", "masked_profiles"]


@dataclass(frozen=True)
class CrowdedRingConfig:
    """Settings of the crowded-donut finder and of the masked measurement (why each value).

    Finder: ``px_per_radius`` binned pixels per ring radius (10: the filter's annuli are a
    few binned pixels wide, and a 61 Mpx frame of 26 px rings stays under ``max_pixels``);
    the filter is +1 over ``inner_share``-1 of the radius, -``hole_weight`` over the hole
    (``hole_share`` of the radius; seeing half fills small holes, so the hole counts half)
    and -(1 - ``hole_weight``) over a band from the rim plus one binned pixel to
    ``outer_share`` of the radius beyond it (each part normalised to its area). The radius is
    scanned over ``radius_scan`` times the coarse pass's ring radius (whose extent reads up
    to 1.6x large when the first pass merged touching rings), then ``radius_refine`` times
    the best; the score is the median answer of the ``score_peaks`` strongest peaks. The scan
    runs on the middle ``scan_max_pixels`` binned pixels of a larger frame (one convolution of
    a 4 Mpx binned frame per scan step would cost ~10x the rest). A peak counts when its
    answer is ``min_snr`` times the filtered noise, at least ``own_share`` of it is left once
    the stronger rings' predicted answers are taken off (the model ring: a uniform annulus of
    hole ``template_eps`` blurred by ``template_blur_share`` of the radius), it lies at least
    ``min_sep_share`` radii from a stronger ring, and every one of ``sectors`` sectors of the
    annulus from ``sector_inner`` to ``sector_outer`` radii holds at least
    ``min_sector_share`` of the median sector's light (a ring is lit all round; arcs of three
    rings meeting are not) and at least ``min_sector_snr`` times its own noise; a peak is
    judged only when ``min_sectors_inside`` of the sectors hold pixels of the frame (else
    most of the ring lies outside it: an edge star, not measured anyway).
    ``min_whole_share``: see :func:`rings_touch`;
    ``any_size_hints_px``: see :func:`find_rings_any_size` (each hint's scan covers 0.45-1.15
    times it: rims of 5-64 px). ``rim_per_answer_radius``: the radius whose filter answers
    most lies inside the ring's rim (the seeing-blurred edge reaches the negative band);
    the rim is that radius times this (1.08-1.12 on the tuning renders: 24.7/23.7/17.1 px
    found for rims of 26.6/26.6/18.6 px).

    Measurement: a neighbour's light reaches its rim radius times (1 + ``reach_share``) plus
    ``reach_px`` (seeing blurs the rim: a donut holds ~95 % of its light within its rim +
    2 px on the renders, and the true half-light radius is read within 1.5 % from an aperture
    that size); the star's own aperture is the same. Annuli are ``bin_px`` wide; each must
    keep ``min_coverage`` of its pixels clean (a 54 degree arc at 0.15: wide enough to
    average over a vane's shadow). ``min_sky_pixels``: fewest clean pixels beyond the
    aperture for a sky reading (else the map's), taken from a stamp reaching
    ``sky_stamp_share`` apertures plus ``sky_stamp_px`` from the centre, clipped at
    ``clip_sigma`` (``clip_rounds`` times), median of the means of those of ``sky_sectors``
    sectors that hold ``sky_sector_min_share`` of an even share of its pixels (a sector
    mostly masked or cut by the frame's edge is left out). ``centre_margin_px``: the centre
    and the curve of growth are worked out in a box this much wider than the aperture (a
    centre moves a pixel or two).
    """

    px_per_radius: float = 10.0
    max_pixels: int = 4_000_000
    inner_share: float = 0.5
    hole_share: float = 0.2
    hole_weight: float = 0.5
    outer_share: float = 0.35
    radius_scan: tuple[float, ...] = (0.45, 0.55, 0.65, 0.75, 0.85, 0.95, 1.05, 1.15)
    radius_refine: tuple[float, ...] = (0.96, 1.04)
    score_peaks: int = 10
    scan_max_pixels: int = 1_000_000
    min_snr: float = 5.0
    own_share: float = 0.5
    min_sep_share: float = 0.5
    template_eps: float = 0.4
    template_blur_share: float = 0.12
    sectors: int = 12
    sector_inner: float = 0.55
    sector_outer: float = 0.95
    min_sector_share: float = 0.3
    min_sector_snr: float = 3.0
    min_sectors_inside: float = 0.75
    min_whole_share: float = 0.7
    any_size_hints_px: tuple[float, ...] = (12.0, 26.0, 56.0)
    rim_per_answer_radius: float = 1.09
    reach_share: float = 0.05
    reach_px: float = 2.0
    bin_px: float = 0.5
    min_coverage: float = 0.15
    min_sky_pixels: int = 100
    centre_margin_px: int = 8
    clip_sigma: float = 3.0
    clip_rounds: int = 3
    sky_sectors: int = 16
    sky_sector_min_share: float = 0.5
    sky_stamp_share: float = 1.6
    sky_stamp_px: float = 4.0


CROWDED_RING = CrowdedRingConfig()


def _disk_masks(R: float, k: int, config: CrowdedRingConfig) -> tuple[np.ndarray, np.ndarray]:
    """The filter (2k+1)^2 for rings of radius ``R`` (binned px) and the model ring's answer
    to it on a (4k+1)^2 grid, 1 at the centre."""
    from scipy import ndimage, signal

    ax = np.arange(-k, k + 1)
    rr = np.hypot(ax[None, :], ax[:, None])
    pos = ((rr >= config.inner_share * R) & (rr <= R)).astype(np.float64)
    hole = (rr <= config.hole_share * R + 0.5).astype(np.float64)
    outer = ((rr > R + 1.0) & (rr <= (1.0 + config.outer_share) * R + 1.5)).astype(np.float64)
    kern = (pos / pos.sum() - config.hole_weight * hole / hole.sum()
            - (1.0 - config.hole_weight) * outer / outer.sum())
    kk = 2 * k
    axb = np.arange(-kk, kk + 1)
    rb = np.hypot(axb[None, :], axb[:, None])
    model = ((rb >= config.template_eps * R) & (rb <= R)).astype(np.float64)
    model = ndimage.gaussian_filter(model, config.template_blur_share * R)
    answer = signal.fftconvolve(model, kern[::-1, ::-1], mode="same")
    return kern, answer / answer[kk, kk]


def _sector_means(sub: np.ndarray, cx: float, cy: float, r_in: float, r_out: float,
                  n_sec: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``sub`` in each of ``n_sec`` sectors of the annulus r_in..r_out about (cx, cy),
    and each sector's pixel count."""
    h, w = sub.shape
    x0, x1 = int(max(cx - r_out - 1, 0)), int(min(cx + r_out + 2, w))
    y0, y1 = int(max(cy - r_out - 1, 0)), int(min(cy + r_out + 2, h))
    yy, xx = np.mgrid[y0:y1, x0:x1]
    r = np.hypot(xx - cx, yy - cy)
    m = (r >= r_in) & (r <= r_out)
    sec = (((np.arctan2(yy - cy, xx - cx) + math.pi) / (2 * math.pi) * n_sec).astype(np.int64)) % n_sec
    cnt = np.bincount(sec[m], minlength=n_sec)
    tot = np.bincount(sec[m], weights=sub[y0:y1, x0:x1][m].astype(np.float64), minlength=n_sec)
    return tot / np.maximum(cnt, 1), cnt


def find_rings(img: np.ndarray, radius_px: float, sky_adu: float,
               config: CrowdedRingConfig = CROWDED_RING) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Centres of the rings of radius about ``radius_px`` (full-resolution px) in ``img``.

    Returns (x, y, flux, radius): centres in full-resolution px (sep convention), a flux
    estimate (ADU: the ring's mean excess times its disk's area) and the rim radius (px: the
    radius chosen by the scan times ``rim_per_answer_radius``). ``sky_adu`` is used only by
    the "lit all round" test. See the module docstring and :class:`CrowdedRingConfig`.
    """
    return _find_rings(img, radius_px, sky_adu, config)[:4]


def find_rings_any_size(img: np.ndarray, sky_adu: float,
                        config: CrowdedRingConfig = CROWDED_RING) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """:func:`find_rings` when the rings' size is not known: the large-star probe saw one
    object as large as the frame (rings covering all of it), so no coarse pass can run.
    The scan starts from each of ``any_size_hints_px`` (up to an eighth of the frame) and
    the size whose peaks answer most wins."""
    best = None
    for hint in config.any_size_hints_px:
        if hint > min(img.shape) / 8:
            break
        got = _find_rings(img, hint, sky_adu, config)
        if best is None or got[4] > best[4]:
            best = got
    if best is None:
        return np.zeros(0), np.zeros(0), np.zeros(0), 0.0
    return best[:4]


def _find_rings(img: np.ndarray, radius_px: float, sky_adu: float,
                config: CrowdedRingConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """:func:`find_rings`, and the score of the radius found (-inf when nothing was)."""
    from scipy import ndimage, signal

    from focuswatch.stars.detect import _block_mean, _robust_rms

    H, W = img.shape
    bf = max(1, int(round(config.radius_scan[len(config.radius_scan) // 2] * radius_px / config.px_per_radius)),
             int(math.ceil(math.sqrt(H * W / config.max_pixels))))
    small = _block_mean(img, bf)
    sub = (small - np.float32(sky_adu)).astype(np.float32)
    rms = _robust_rms(sub)
    empty = (np.zeros(0), np.zeros(0), np.zeros(0), float(radius_px), -np.inf)
    if not math.isfinite(rms) or rms <= 0 or min(sub.shape) < 8:
        return empty
    # the size is scanned on the middle of the frame when it is large (a scan step costs one
    # convolution of the whole binned frame); the chosen size then runs on all of it
    side = int(math.sqrt(config.scan_max_pixels))
    cy0, cx0 = max(0, (sub.shape[0] - side) // 2), max(0, (sub.shape[1] - side) // 2)
    middle = sub[cy0:cy0 + side, cx0:cx0 + side]

    def answer_at(R: float, image: np.ndarray = middle):
        k = int(math.ceil((1.0 + config.outer_share) * R + 2))
        kern, answer = _disk_masks(R, k, config)
        resp = signal.fftconvolve(image, kern[::-1, ::-1], mode="same")
        noise = rms * float(np.sqrt(np.sum(kern ** 2)))
        size = int(max(3, round(config.min_sep_share * R))) | 1
        peak = (resp == ndimage.maximum_filter(resp, size=size)) & (resp > config.min_snr * noise)
        py, px = np.nonzero(peak)
        val = resp[py, px]
        # the scan's score: the answer of the strongest peaks (a ring's own size answers
        # most; a wrong size puts the rim on the negative band or outside the disk)
        top = np.sort(val)[::-1][:config.score_peaks]
        score = float(np.median(top)) if len(top) else -np.inf
        return score, R, k, answer, resp, noise, px, py, val

    best = max((answer_at(f * radius_px / bf) for f in config.radius_scan), key=lambda t: t[0])
    best = max([best] + [answer_at(f * best[1]) for f in config.radius_refine], key=lambda t: t[0])
    if middle.shape != sub.shape:
        best = answer_at(best[1], sub)
    score, R, k, answer, resp, noise, px, py, val = best
    kk = 2 * k
    order = np.argsort(-val, kind="stable")
    taken: list[tuple[float, float, float]] = []
    tx = np.zeros(0)
    ty = np.zeros(0)
    tv = np.zeros(0)
    for o in order:
        cx, cy, v = float(px[o]), float(py[o]), float(val[o])
        if len(taken):
            d = np.hypot(tx - cx, ty - cy)
            if np.any(d < config.min_sep_share * R):
                continue
            ox = np.rint(cx - tx).astype(np.int64)
            oy = np.rint(cy - ty).astype(np.int64)
            near = (np.abs(ox) <= kk) & (np.abs(oy) <= kk)
            pred = float(np.sum(tv[near] * answer[kk + oy[near], kk + ox[near]]))
        else:
            pred = 0.0
        own = v - pred
        if own < config.own_share * v or own < config.min_snr * noise:
            continue
        means, cnt = _sector_means(sub, cx, cy, config.sector_inner * R, config.sector_outer * R, config.sectors)
        ok = cnt > 0
        if np.count_nonzero(ok) < config.min_sectors_inside * config.sectors:
            continue  # most of the ring outside the frame: an edge star, not measured anyway
        low = float(np.min(means[ok]))
        sec_noise = rms / math.sqrt(max(int(cnt[ok].min()), 1))
        if low < config.min_sector_share * float(np.median(means[ok])) or low < config.min_sector_snr * sec_noise:
            continue
        taken.append((cx, cy, own))
        tx, ty, tv = (np.array([t[i] for t in taken]) for i in range(3))
    if not taken:
        return empty
    x = (tx + 0.5) * bf - 0.5
    y = (ty + 0.5) * bf - 0.5
    area = math.pi * (R * bf) ** 2 * (1.0 - config.template_eps ** 2)
    return x, y, tv * area, float(R * bf * config.rim_per_answer_radius), score


def masked_profiles(img: np.ndarray, x: np.ndarray, y: np.ndarray, sky_adu: np.ndarray, own_px: float,
                    nb_x: list[np.ndarray], nb_y: list[np.ndarray], nb_reach: list[np.ndarray],
                    config: CrowdedRingConfig = CROWDED_RING) -> dict[str, np.ndarray]:
    """Curves of growth of touching donuts from the pixels their neighbours do not reach.

    ``x``, ``y``: first guesses of the centres (full-resolution px, sep convention);
    ``sky_adu``: each star's sky from the map (used where too few clean pixels lie beyond the
    aperture); ``own_px``: the aperture radius (the typical rim plus the reach margin);
    ``nb_x[i]``, ``nb_y[i]``, ``nb_reach[i]``: star i's neighbours' centres and how far their
    light reaches (px). Returns per star: ``x``, ``y`` (refined), ``flux`` (ADU within the
    aperture), ``r20``, ``r50``, ``r80``, ``r90`` (px), ``coverage`` (the least clean share
    of any annulus of the aperture), ``sky`` (ADU) and ``ok`` (coverage reached and a
    positive flux). See :class:`CrowdedRingConfig`.
    """
    n = len(x)
    H, W = img.shape
    out = {k: np.full(n, np.nan) for k in ("x", "y", "flux", "r20", "r50", "r80", "r90", "coverage", "sky")}
    out["ok"] = np.zeros(n, bool)
    ap = float(own_px)
    Rs = int(math.ceil(ap * config.sky_stamp_share + config.sky_stamp_px))
    n_bins = int(math.ceil(ap / config.bin_px))
    for i in range(n):
        ix, iy = int(round(x[i])), int(round(y[i]))
        x0, x1 = max(ix - Rs, 0), min(ix + Rs + 1, W)
        y0, y1 = max(iy - Rs, 0), min(iy + Rs + 1, H)
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        pix = img[y0:y1, x0:x1].astype(np.float64)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        nx, ny, nr = np.asarray(nb_x[i], float), np.asarray(nb_y[i], float), np.asarray(nb_reach[i], float)

        def clean(px_: np.ndarray, py_: np.ndarray) -> np.ndarray:
            c = (px_ >= -0.5) & (px_ <= W - 0.5) & (py_ >= -0.5) & (py_ <= H - 0.5)
            for j in range(len(nx)):
                c &= (px_ - nx[j]) ** 2 + (py_ - ny[j]) ** 2 > nr[j] ** 2
            return c

        mine = clean(xx, yy)
        cx, cy = float(x[i]), float(y[i])
        # the sky: clean pixels beyond the aperture, clipped, the median of sector means
        r = np.hypot(xx - cx, yy - cy)
        ring = mine & (r > ap)
        sky = float(sky_adu[i])
        v = pix[ring]
        if len(v) >= config.min_sky_pixels:
            mid, sd = float(np.median(v)), float(np.std(v))
            for _ in range(config.clip_rounds):
                use = np.abs(v - mid) <= config.clip_sigma * max(sd, 1e-9)
                if np.count_nonzero(use) < config.min_sky_pixels:
                    break
                mid, sd = float(np.median(v[use])), float(np.std(v[use]))
            use = np.abs(v - mid) <= config.clip_sigma * max(sd, 1e-9)
            if np.count_nonzero(use) >= config.min_sky_pixels:
                sec = (((np.arctan2(yy[ring] - cy, xx[ring] - cx) + math.pi) / (2 * math.pi)
                        * config.sky_sectors).astype(np.int64)) % config.sky_sectors
                cnt = np.bincount(sec[use], minlength=config.sky_sectors)
                tot = np.bincount(sec[use], weights=v[use], minlength=config.sky_sectors)
                full = cnt >= config.sky_sector_min_share * np.count_nonzero(use) / config.sky_sectors
                if np.any(full):
                    sky = float(np.median(tot[full] / cnt[full]))
        # the centre and the curve of growth need only the aperture (the sky needed the ring
        # beyond it): a box a few pixels wider than the aperture, a third of the stamp's pixels
        c0 = int(math.ceil(ap)) + config.centre_margin_px
        ry0, ry1 = max(iy - c0 - y0, 0), min(iy + c0 + 1 - y0, y1 - y0)
        rx0, rx1 = max(ix - c0 - x0, 0), min(ix + c0 + 1 - x0, x1 - x0)
        pix, xx, yy, mine = (a[ry0:ry1, rx0:rx1] for a in (pix, xx, yy, mine))
        val = pix - sky
        # the centre from point-symmetric pairs: a pixel counts when its mirror through the
        # centre is clean too (a neighbour masking one side does not pull the centre away)
        for _ in range(4):
            r = np.hypot(xx - cx, yy - cy)
            w = mine & clean(2 * cx - xx, 2 * cy - yy) & (r <= ap)
            wv = np.where(w, np.clip(val, 0.0, None), 0.0)
            s = float(wv.sum())
            if s <= 0:
                break
            cx, cy = float((wv * xx).sum() / s), float((wv * yy).sum() / s)
        r = np.hypot(xx - cx, yy - cy)
        inside = r < n_bins * config.bin_px
        b = (r[inside] / config.bin_px).astype(np.int64)
        all_cnt = np.bincount(b, minlength=n_bins)[:n_bins].astype(np.float64)
        m_in = mine[inside]
        cnt = np.bincount(b[m_in], minlength=n_bins)[:n_bins].astype(np.float64)
        tot = np.bincount(b[m_in], weights=val[inside][m_in], minlength=n_bins)[:n_bins]
        # the annuli's full areas: pixels of the frame (a stamp cut by the frame's edge has
        # fewer, and those are not the star's either)
        has = all_cnt > 0
        cov = np.where(has, cnt / np.maximum(all_cnt, 1), 1.0)
        out["x"][i], out["y"][i], out["sky"][i] = cx, cy, sky
        out["coverage"][i] = float(cov.min())
        if cov.min() < config.min_coverage:
            continue
        ee = np.concatenate([[0.0], np.cumsum(np.where(has, tot / np.maximum(cnt, 1) * all_cnt, 0.0))])
        edges = np.arange(n_bins + 1) * config.bin_px
        total = float(ee[-1])
        if not total > 0:
            continue
        out["flux"][i] = total
        # monotone for the interpolation (noise can make the curve dip)
        ee_m = np.maximum.accumulate(ee)
        for key, frac in (("r20", 0.2), ("r50", 0.5), ("r80", 0.8), ("r90", 0.9)):
            out[key][i] = float(np.interp(frac * total, ee_m, edges))
        out["ok"][i] = True
    return out


def rings_touch(objs: np.ndarray, b: int, extent_px: float, group_extent: float,
                config: CrowdedRingConfig = CROWDED_RING) -> bool:
    """Whether the coarse pass (objects on the ``b``-binned grid) joined touching stars, or
    lost them: an object wider than ``group_extent`` typical extents (``extent_px``) plus two
    binned pixels (the bound at which measuring calls an object a merged group), or objects
    whose median extent is under ``min_whole_share`` of the typical star's (rings covering
    most of the frame raise its sky to their own level: a frame of 300 rings of 46 px in
    800 px left the coarse pass 4 bits of 20 px, and nothing in 400 px). The finder runs only then. (Overlapping
    boxes say nothing: the coarse pass's boxes are 1.6-2x the star.) No object at all, where
    the first pass saw large stars, is the same loss."""
    if not len(objs):
        return True
    ext = (np.maximum(objs["xmax"] - objs["xmin"], objs["ymax"] - objs["ymin"]) + 1).astype(np.float64) * b
    return bool(np.any(ext > group_extent * extent_px + 2 * b) or np.median(ext) < config.min_whole_share * extent_px)


def with_rings(objs: np.ndarray, b: int, x: np.ndarray, y: np.ndarray, flux: np.ndarray, radius_px: float,
               width: int, height: int) -> np.ndarray:
    """The coarse pass's objects (``b``-binned grid, ``width`` x ``height``) with the rings
    found by :func:`find_rings` (full-resolution px) in place of every object whose box holds
    a ring centre (a merged group, a pair the coarse pass did not deblend, or a donut of its
    own: in a frame of touching rings the finder's centres and sizes are the ones to trust),
    and where the group split left touching stars out. Objects holding no ring stay.
    Ring rows carry the fields measuring reads: centre, box (the rim), moments of a uniform
    disk of that radius (sigma = radius / 2) and the flux."""
    if not len(x):
        return objs
    rx, ry = (x + 0.5) / b - 0.5, (y + 0.5) / b - 0.5
    in_box = ((rx[None, :] >= objs["xmin"][:, None]) & (rx[None, :] <= objs["xmax"][:, None])
              & (ry[None, :] >= objs["ymin"][:, None]) & (ry[None, :] <= objs["ymax"][:, None]))
    covered = in_box.any(axis=1)
    rows = np.zeros(len(x), objs.dtype)
    rb = radius_px / b
    rows["x"], rows["y"] = rx, ry
    rows["xmin"] = np.clip(np.floor(rx - rb), 0, width - 1)
    rows["xmax"] = np.clip(np.ceil(rx + rb), 0, width - 1)
    rows["ymin"] = np.clip(np.floor(ry - rb), 0, height - 1)
    rows["ymax"] = np.clip(np.ceil(ry + rb), 0, height - 1)
    rows["a"] = rows["b"] = 0.5 * rb
    rows["x2"] = rows["y2"] = (0.5 * rb) ** 2
    rows["flux"] = flux / (b * b)  # the binned image holds block means
    if "cflux" in (objs.dtype.names or ()):
        rows["cflux"] = rows["flux"]
    rows["npix"] = max(1, int(round(math.pi * rb * rb)))
    return np.concatenate([objs[~covered], rows])


def touching(blended_inside: np.ndarray, group: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The blended stars to measure from their clean sectors: blended with whole stars only
    (``i``, ``j``: the close pairs; a star touching a merged ``group``, whose light has no
    known centre or size, stays rejected), and not a group themselves."""
    out = blended_inside & ~group
    if len(i):
        out[i[group[j]]] = False
        out[j[group[i]]] = False
    return out


def measure_touching(m: dict[str, np.ndarray], rows: np.ndarray, img: np.ndarray, fx: np.ndarray, fy: np.ndarray,
                     idx: np.ndarray, fx_all: np.ndarray, fy_all: np.ndarray, rim_all: np.ndarray, rim_px: float,
                     config: CrowdedRingConfig = CROWDED_RING) -> np.ndarray:
    """Measure the stars ``rows`` of the per-star figures ``m`` (from
    :func:`~focuswatch.stars.profile._measure_stamps`, modified in place) from the pixels
    their neighbours do not reach (:func:`masked_profiles`): centre, flux, r50, r90, the
    quick ring ratio. ``fx``, ``fy``, ``idx``: those stars' positions and detection indices;
    ``fx_all``, ``fy_all``, ``rim_all``: every detection's centre and rim radius (px);
    ``rim_px``: the typical rim radius (the aperture is that rim plus the reach margin).
    Returns a bool per row: measured (False: too little of its ring is clean, left out as
    blended)."""
    from focuswatch.stars.profile import _annulus_ratio

    ap = (1.0 + config.reach_share) * rim_px + config.reach_px
    reach_all = (1.0 + config.reach_share) * rim_all + config.reach_px
    nb_x, nb_y, nb_r = [], [], []
    for t in range(len(rows)):
        d = np.hypot(fx_all - fx[t], fy_all - fy[t])
        near = (d < ap + reach_all) & (np.arange(len(fx_all)) != idx[t])
        nb_x.append(fx_all[near])
        nb_y.append(fy_all[near])
        nb_r.append(reach_all[near])
    res = masked_profiles(img, fx, fy, m["local_bkg"][rows].astype(np.float64), ap, nb_x, nb_y, nb_r, config)
    ok = res["ok"]
    r_ = rows[ok]
    m["cx"][r_] = res["x"][ok] - m["ix"][r_]
    m["cy"][r_] = res["y"][ok] - m["iy"][r_]
    m["flux"][r_] = res["flux"][ok]
    m["r50"][r_] = res["r50"][ok]
    m["r90"][r_] = res["r90"][ok]
    m["flags"][r_] = 0
    m["local_bkg"][r_] = res["sky"][ok]
    m["ring"][r_] = np.where(m["ring"][r_] > 0, _annulus_ratio(res["r20"][ok], res["r80"][ok]), 0.0)
    return ok
