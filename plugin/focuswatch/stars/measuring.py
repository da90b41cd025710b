"""The measuring pipeline: frame in, :class:`~focuswatch.stars.table.FrameStats` out.

:func:`measure` runs the steps of the other modules in order: detection
(:mod:`~focuswatch.stars.detect`), edge and blend rejection
(:mod:`~focuswatch.stars.neighbours`), a sample of the candidates when there are many
(:class:`ProfileConfig`), stamps and per-star figures (:mod:`~focuswatch.stars.profile`),
the wings (:mod:`~focuswatch.stars.wings`), Moffat fits, and the frame figures
(:func:`~focuswatch.stars.summary.summarize`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from focuswatch.model.frame import Frame
from focuswatch.stars import crowded, ringfit
from focuswatch.stars.detect import (GROUP_SPLIT, _background, _block_mean, _constant_border, _detect,
                                     _large_star_probe, _probe_grid, _probe_image, _split_merged_groups)
from focuswatch.stars.neighbours import _nearest_offsets, _neighbours_within, _pairs_within
from focuswatch.stars.profile import (_N_NEIGHBOURS, _STAMP_BATCH_PIXELS, _annulus_sky, _batched_moffat,
                                      _half_max_width, _measure_stamps, _offsets, _sky_ring_start, _stamps,
                                      moffat_fwhm)
from focuswatch.stars.summary import MIN_STARS_FOR_STATS, summarize
from focuswatch.stars.table import (GREEN_INTERP, bayer_fwhm2_excess_px2, STAR_DTYPE, FrameStats, GreenInterpolationConfig, _PIX_FWHM2,
                                    _PIX_HFR2, moffat_half_light_slope)
from focuswatch.stars.wings import (WING, _WING_FRACS_90, _reread_half_radius, _wing_share_hfr_err, wing_share,
                                    wing_sky_excess, wing_usable)


#: Detection works on a block-averaged copy of at most this many pixels (speed), then on a
#: coarser one if stars are large (so a 60 px donut is one blob, not a dozen arcs).
_DETECT_MAX_PIXELS = 4_000_000
_DETECT_TARGET_SIZE = 10.0    # typical extent (binned px) of large stars in the second pass
_DETECT_LARGE_PX = 32.0       # stars wider than this (full-resolution px) get the second pass
_STAMP_PIXEL_BUDGET = 24_000_000


#: a ``WingConfig.min_sky_stars`` no frame reaches: the wing share from the per-star medians
_NO_LINE = 2 ** 62
#: the wing settings of a frame that reads the per-star medians (built once, not per frame)
_WING_MEDIANS = dataclasses.replace(WING, min_sky_stars=_NO_LINE)

#: margin (px) between a star's light and the frame's edge
_EDGE_MARGIN_PX = 1.0


@dataclass(frozen=True)
class ProfileConfig:
    """How many stars get the full per-star profile (the expensive part of :func:`measure`).

    A full frame of a large sensor holds thousands of isolated stars. The frame figures are
    medians, whose uncertainty falls as 1/sqrt(n) (``hfr_err_px``), and the 3x3 zones need a
    few dozen stars each; profiling a star (a stamp several times its size, sep's curve of
    growth at 11 fractions with 3x3 sub-pixels, centroids, second moments, radial profiles,
    wings) costs more per star than detecting it. Above ``max_stars`` isolated candidates a
    sample is profiled, chosen without looking at any star's size or shape so the medians
    stay unbiased: in each 3x3 zone (the grid of :attr:`FrameStats.zones`, which the
    diagnosis' tilt, curvature and field map read) the quota is the zone's share of the
    candidates (at least ``min_per_zone`` while the zone has them, so a sparse corner keeps
    its figure), taken at evenly spaced brightness ranks so every magnitude keeps its share.
    ``n_stars`` then scales the sample's measurable share back to all candidates (star
    counts still compare between frames: clouds) and a note says how many were profiled.
    """

    #: most stars profiled per frame (0: all). 800 leaves each zone of an even field ~90
    #: stars, and the frame median's uncertainty sqrt(2200/800) = 1.7x that of 2200 stars
    max_stars: int = 800
    #: fewest stars profiled in a zone (or all it has, when fewer)
    min_per_zone: int = 30
    #: the wing share (light beyond the aperture) is read from bright lone stars; when the
    #: sample holds fewer of them than this, every candidate is profiled after all (a share
    #: from a handful, or none, could move every HFR by several %)
    min_wing_stars: int = 20
    #: lone candidates the wing share is read from (:func:`~focuswatch.stars.wings.wing_share`):
    #: a sample holding fewer is topped up with candidates left out of it, at evenly spaced
    #: brightness ranks, profiled for the wing alone (not in the star table). The share is a
    #: line through the stars' annulus light against their flux with the sky offset as its
    #: intercept; 27 lone stars of a 110-star sample moved a 400-star frame's HFR by 3.5 %
    #: (tests/test_stars.py, curved field) where 80 hold it within 0.5 %
    wing_stars: int = 80


PROFILE = ProfileConfig()


@dataclass(frozen=True)
class StarsConfig:
    """The ``[stars]`` table of the settings file: how many stars get the full profile.

    Counts of stars (the unit is in each name). ``profile_max_stars`` is
    :attr:`ProfileConfig.max_stars` (0: profile every isolated star; a lower value makes a
    huge frame faster, a higher one its medians steadier), ``profile_min_per_zone`` and
    ``profile_min_wing_stars`` the other two fields of :class:`ProfileConfig`.
    """

    profile_max_stars: int = field(default=PROFILE.max_stars, metadata={"range": (0, 1_000_000)})
    profile_min_per_zone: int = field(default=PROFILE.min_per_zone, metadata={"range": (1, 100_000)})
    profile_min_wing_stars: int = field(default=PROFILE.min_wing_stars, metadata={"range": (0, 100_000)})

    def profile(self) -> ProfileConfig:
        """The :class:`ProfileConfig` that :func:`measure` takes."""
        return ProfileConfig(max_stars=self.profile_max_stars, min_per_zone=self.profile_min_per_zone,
                             min_wing_stars=self.profile_min_wing_stars)


def _profile_sample(sel: np.ndarray, fx: np.ndarray, fy: np.ndarray, width: int, height: int,
                    config: ProfileConfig = PROFILE) -> np.ndarray:
    """The candidates ``sel`` (brightest first) to profile: all of them up to
    ``config.max_stars``, else a sample stratified over the 3x3 zones and, within each
    zone, at evenly spaced brightness ranks (deterministic; see :class:`ProfileConfig`).
    Returned in the order of ``sel``."""
    n = len(sel)
    cap = int(config.max_stars)
    if cap <= 0 or n <= cap:
        return sel
    zone = (np.minimum((fy[sel] * 3 / height).astype(np.int64), 2) * 3
            + np.minimum((fx[sel] * 3 / width).astype(np.int64), 2))
    counts = np.bincount(zone, minlength=9)
    share = cap * counts / n
    quota = np.floor(share).astype(np.int64)
    rest = cap - int(quota.sum())  # the largest remainders fill the quota up to the cap
    if rest > 0:
        quota[np.argsort(-(share - quota), kind="stable")[:rest]] += 1
    quota = np.minimum(np.maximum(quota, np.minimum(counts, config.min_per_zone)), counts)
    take = []
    for z in range(9):
        members = np.nonzero(zone == z)[0]  # positions in sel, brightest first
        q = int(quota[z])
        if q > 0:
            take.append(members[((np.arange(q) + 0.5) * len(members) / q).astype(np.int64)])
    return sel[np.sort(np.concatenate(take))]


def _green_site_mask(pattern: str, row0: np.ndarray, col0: np.ndarray, half: int) -> np.ndarray:
    """Which pixels of each star's ``(2 half + 1)^2`` window, centred on frame pixel
    ``(row0, col0)`` (of the whole mosaic), are green sites of the Bayer ``pattern``:
    the true samples; the others hold the interpolation's 4-neighbour means."""
    green_first = pattern.upper() in ("GRBG", "GBRG")  # green at (0, 0) and (1, 1)
    off = np.arange(-half, half + 1)
    parity = (row0[:, None, None] + off[None, :, None] + col0[:, None, None] + off[None, None, :]) % 2
    return parity == (0 if green_first else 1)


def _green_centroids(stamps: np.ndarray, green: np.ndarray, cx: np.ndarray, cy: np.ndarray, r50: np.ndarray,
                     cfg: "GreenInterpolationConfig" = GREEN_INTERP) -> tuple[np.ndarray, np.ndarray]:
    """Each Bayer star's centre from its green sites alone: their plain (unweighted) first
    moment within a wide aperture, re-centred a few times (stamp coordinates). See
    :class:`GreenInterpolationConfig` (a weighted centroid of the interpolated plane is 0.1 px off)."""
    n, S, _ = stamps.shape
    R = S // 2
    axis = np.arange(-R, R + 1, dtype=np.float64)
    val = np.where(green, stamps, 0.0).astype(np.float64)
    rad = np.maximum(cfg.centre_radius_r50 * r50, cfg.centre_radius_min_px).astype(np.float64)[:, None, None]
    x, y = cx.astype(np.float64), cy.astype(np.float64)
    for _ in range(cfg.centre_iterations):
        inside = (axis[None, None, :] - x[:, None, None]) ** 2 + (axis[None, :, None] - y[:, None, None]) ** 2 <= rad ** 2
        v = np.where(inside, val, 0.0)
        tot = v.sum(axis=(1, 2))
        good = tot > 0
        x = np.where(good, (v * axis[None, None, :]).sum(axis=(1, 2)) / np.where(good, tot, 1), x)
        y = np.where(good, (v * axis[None, :, None]).sum(axis=(1, 2)) / np.where(good, tot, 1), y)
        x, y = np.clip(x, -R / 2, R / 2), np.clip(y, -R / 2, R / 2)
    return x, y


def _without_green_blur(r_half: np.ndarray, beta: np.ndarray, a2: np.ndarray, b2: np.ndarray, keep: np.ndarray,
                        cfg: GreenInterpolationConfig = GREEN_INTERP
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """HFR, second moments and eccentricity of a Bayer frame's stars with the green
    interpolation's blur taken out (:class:`GreenInterpolationConfig`), and the note saying so.

    ``beta``: the stars' Moffat fits (NaN where none). One log slope for the frame, from the
    median fitted beta: a single undersampled star's fit is loose (its alpha and beta trade
    off at FWHM 1-1.5 px; per-star slopes read the 1.2 px stars' HFR 13 % low).
    """
    v = cfg.var_px2
    fitted = keep & np.isfinite(beta)
    b = max(float(np.median(beta[fitted])), cfg.beta_min) if np.any(fitted) else math.inf
    slope = moffat_half_light_slope(b)
    hfr = np.sqrt(np.maximum(r_half ** 2 - _PIX_HFR2 - v * slope, 0.01))
    a2c = np.maximum(a2 - v, 1e-6)
    b2c = np.maximum(b2 - v, 1e-6)
    ecc = np.sqrt(np.clip(1 - b2c / a2c, 0, 1))
    note = (f"green interpolation's blur taken out (its kernel adds {v:.2f} px^2 per axis): of the second moments "
            f"exactly, of HFR^2 by that times the profile's log slope at the half-flux radius ({v * slope:.2f} px^2, "
            f"Moffat beta {b:.1f})",)
    return hfr, a2c, b2c, ecc, note


def _hot_and_faint(m: Mapping[str, np.ndarray], typical_r50: float,
                   typical_minor: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The one rule for hot pixels / cosmic rays and faint stars among profiled stars ``m``
    (:func:`measure`'s ``profile_stars``): (hot, faint, the typical minor axis in px).

    Hot: far sharper than the optics allow, relative to the frame's own typical star
    (``typical_r50``: a defocused frame has no sharp stars at all), or most of the light in the
    centre pixel; cosmic-ray tracks are lines, long but far thinner than any star's minor axis
    (``typical_minor``: the profiled sample's; ``None``: taken from ``m``'s own non-hot stars).
    Faint: SNR under 5, no half-flux radius, no flux. The wing's top-up stars are judged by the
    same rule against the sample's typical star, so both sets keep the same kind of star."""
    r50, tot_flux = m["r50"], m["flux"]
    hot = (r50 < max(0.6, 0.5 * typical_r50)) | (m["centre"] > 0.6 * np.maximum(tot_flux, 1e-12))
    minor = np.sqrt(m["b2"])
    if typical_minor is None:
        typical_minor = float(np.median(minor[~hot])) if np.any(~hot) else 1.0
    hot |= (minor < 0.45 * typical_minor) & (m["ecc"] > 0.95)
    faint = (m["snr"] < 5) | ~np.isfinite(r50) | (tot_flux <= 0) | (m["flags"] != 0) & (r50 <= 0)
    return hot, faint, typical_minor


def measure_array(pixels: np.ndarray, header: Mapping[str, Any] | None = None, **kw: Any) -> "FrameStats":
    """Measure an in-memory image (tests, the simulator): :func:`measure` on a wrapped frame."""
    from focuswatch.model.frame import frame_from_array

    return measure(frame_from_array(pixels, header, kw.pop("saturation_adu", None)), **kw)


#: A pixel noise below this (ADU) means the data are not counts: integer frames carry at least
#: the quantisation noise (0.29 ADU); float frames scaled to 0-1 have ~1e-4-1e-2.
_NOT_COUNTS_NOISE = 0.05


def measure(frame: Frame, *, plate_scale_arcsec_px: float | None = None, max_stars: int = 3000,
            n_fit: int = 300, detect_thresh: float = 4.0, min_stars: int = MIN_STARS_FOR_STATS,
            profile: ProfileConfig = PROFILE) -> FrameStats:
    """Find and measure the stars of a frame.

    Steps: background and detection with sep on a block-averaged copy (at most ~4 Mpx, and
    coarser when stars are large so donuts stay whole); full-resolution stamps around each
    detection, background taken from sep's smooth map; windowed centroids; true half-flux
    radius with sep's exact circular apertures on a mosaic of the stamps; NINA's
    flux-weighted radius; second moments for shape; batched Moffat fits of radial profiles
    for FWHM on up to ``n_fit`` bright, unsaturated, isolated stars spread over the 3x3 grid.

    Rejected (counted in ``n_rejected``): saturated, edge-clipped, blended (a neighbour with
    >10 % of the flux inside the aperture), hot pixels and cosmic rays (smaller than any
    optics can make a star), and too faint to measure (SNR < 5).

    ``min_stars`` (default 1) is the fewest measured stars for frame figures: one bright
    star is enough for ``hfr_px`` (single-star autofocus, sub-frames); ``hfr_err_px``
    then says how far to trust it. Callers that need a crowd (the refocus policy, the
    diagnosis) keep their own minimum.

    With more isolated candidates than ``profile.max_stars``, a sample spread over the zones
    and over brightness is profiled (:class:`ProfileConfig`); ``n_stars`` is then scaled
    to all candidates, the per-star table holds the sample, and a note says so.
    """
    img = frame.pixels
    top, bottom, left, right = _constant_border(img)
    border_note: tuple[str, ...] = ()
    if top or bottom or left or right:
        img = img[top:img.shape[0] - bottom, left:img.shape[1] - right]
        if not img.flags.c_contiguous:  # a left/right border: sep reads C-contiguous buffers only
            img = np.ascontiguousarray(img)
        border_note = (f"a constant border (top {top}, bottom {bottom}, left {left}, right {right} px) "
                       "is left out as outside the image",)
    H, W = img.shape
    scale = float(frame.scale_px)
    file = str(frame.path) if frame.path is not None else None
    rejected = {"saturated": 0, "edge": 0, "blended": 0, "hot_pixel": 0, "faint": 0}

    def empty(reason: str, bkg_level=None, noise=None, n_det=0) -> FrameStats:
        return FrameStats(file=file, n_stars=0, background_adu=bkg_level, noise_adu=noise, width_px=W, height_px=H,
                          plate_scale_arcsec_px=plate_scale_arcsec_px, n_detected=n_det, n_rejected=rejected,
                          reason=reason, notes=tuple(frame.notes), meta=frame.meta)

    # ---- detection; again with a coarser grid, a wider sky mesh and a matched filter when
    # the stars are large (defocused disks and donuts stay one object each, and their light
    # does not leak into the sky level)
    b = max(1, int(math.ceil(math.sqrt(H * W / _DETECT_MAX_PIXELS))))
    # the first pass's binned image; the large-star probe's coarser grid is binned from it
    # before the first pass takes the sky off it in place (no copy, no second read of the frame)
    first_binned = _block_mean(img, b)
    probe_binned = None
    if first_binned is not img and _probe_grid(img.shape, b, _DETECT_LARGE_PX) % b == 0:
        probe_binned = _probe_image(img, b, _DETECT_LARGE_PX, binned=first_binned)
    objs, bkg, rms_small, n_rings = _detect(img, b, detect_thresh,
                                            binned=first_binned if first_binned is not img else None)
    del first_binned
    noise = float(rms_small) * b  # white noise of one full-resolution pixel
    extent = 0.0
    large = False  # the stars are large: found by the coarse second pass
    n_ring_found = 0  # rings found by crowded.find_rings (touching donuts)
    if len(objs) >= 3:
        bright = objs[objs["flux"] >= np.median(objs["flux"])]
        extent = float(np.median(np.maximum(bright["xmax"] - bright["xmin"], bright["ymax"] - bright["ymin"]) + 1)) * b
    if extent <= _DETECT_LARGE_PX:
        # large faint disks: no pixel of theirs reaches the first pass's threshold, which then
        # finds nothing or bits of their rims (LargeStarProbeConfig)
        extent = _large_star_probe(img, b, objs, detect_thresh, _DETECT_LARGE_PX,
                                   probe_binned=probe_binned) or extent
    del probe_binned
    if extent > 0.0:
        if extent > _DETECT_LARGE_PX:
            b2 = max(b, int(round(extent / _DETECT_TARGET_SIZE)))
            if min(H, W) // b2 >= 16:
                fine = objs
                objs, bkg, rms_small, n_rings = _detect(img, b2, detect_thresh,
                                                               box_px=max(128.0, 6.0 * extent),
                                                               kernel_sigma=max(1.0, extent / b2 / 5.0),
                                                               deblend_cont=0.05)
                # in a crowded field the coarse pass may join stars the first pass had apart;
                # donuts that touch (judged before the split, which leaves touching stars out):
                # one ring each from a matched filter (crowded.find_rings)
                touch = crowded.rings_touch(objs, b2, extent, GROUP_SPLIT.group_extent)
                objs, _ = _split_merged_groups(objs, b2, fine, b, extent, W // b2, H // b2)
                if touch:
                    rx, ry, rf, ring_r = crowded.find_rings(img, 0.5 * extent, float(bkg.globalback))
                    objs = crowded.with_rings(objs, b2, rx, ry, rf, ring_r, W // b2, H // b2)
                    n_ring_found = len(rx)
                b = b2
                large = True
            else:
                # one probe object as large as the frame: rings of unknown size covering it
                rx, ry, rf, ring_r = crowded.find_rings_any_size(img, float(bkg.globalback))
                if len(rx) >= 3:
                    objs = crowded.with_rings(objs, b, rx, ry, rf, ring_r, W // b, H // b)
                    n_ring_found = len(rx)
                    large = True
        elif extent > 16.0:
            # big seeing-limited stars: only the sky mesh must grow, or their wings raise it
            bkg = _background(_block_mean(img, b), 6.0 * extent / b)  # binned again: detection kept no copy
    bkg_level = float(bkg.globalback)
    n_det = int(len(objs))
    objs_b = b
    if n_det == 0:
        return empty("no stars detected (is the frame black, clouded out or not a sky frame?)", bkg_level,
                     noise, 0)

    # full-resolution positions (sep convention) and sizes from the detection pass
    fx = (objs["x"] + 0.5) * objs_b - 0.5
    fy = (objs["y"] + 0.5) * objs_b - 0.5
    size_sigma = np.sqrt(np.maximum(objs["a"] * objs["b"], 0.09)) * objs_b
    extent_full = (np.maximum(objs["xmax"] - objs["xmin"], objs["ymax"] - objs["ymin"]) + 1) * objs_b
    flux_det = objs["flux"] * objs_b * objs_b

    # ---- stamp size: covers typical stars out to their faint wings, donuts included
    # (medians of the brighter half: merged blends must not set the size)
    brighter = flux_det >= np.median(flux_det)
    typ_sigma = float(np.median(size_sigma[brighter]))
    typ_extent = float(np.median(extent_full[brighter]))
    R = int(np.clip(math.ceil(max(5.0 * typ_sigma, 0.75 * typ_extent) + 3), 7, 96))
    S = 2 * R + 1
    order = np.argsort(-flux_det)
    n_keep = int(min(len(order), max_stars, max(20, _STAMP_PIXEL_BUDGET // (S * S))))
    # edge clipping: the star's own light (its detection box, or 2.5 sigma, plus a margin)
    # must lie inside the frame; its stamp may reach past the edge (zeros there), so a
    # single big star in a small sub-frame is still measured
    ix = np.rint(fx).astype(np.int64)
    iy = np.rint(fy).astype(np.int64)
    own_r = np.maximum(0.5 * extent_full, 2.5 * size_sigma) + _EDGE_MARGIN_PX
    inside = (fx - own_r >= -0.5) & (fy - own_r >= -0.5) & (fx + own_r <= W - 0.5) & (fy + own_r <= H - 0.5)
    rejected["edge"] = int(np.count_nonzero(~inside))
    # two stars blend when their light overlaps: closer than the sum of their radii (the
    # detection footprint) plus a margin, and the neighbour holds >10 % of the flux
    blended = np.zeros(len(fx), bool)
    radius = 2.2 * size_sigma  # a uniform disk of radius r has sigma = r/2; a Gaussian holds ~91 % in 2.2 sigma
    # r_i + r_j + 2 <= max(2 r_i + 2, 2 r_j + 2): each point's own reach finds every such pair
    i, j = _pairs_within(fx, fy, 2.0 * radius + 2.0)
    if len(i):
        close = np.hypot(fx[i] - fx[j], fy[i] - fy[j]) < radius[i] + radius[j] + 2.0
        i, j = i[close], j[close]
        fi, fj = flux_det[i], flux_det[j]
        blended[i[fj > 0.1 * fi]] = True
        blended[j[fi > 0.1 * fj]] = True
    # objects far larger than the typical star are merged groups
    group = extent_full > 1.8 * typ_extent + 2 * objs_b
    blended |= group
    # touching donuts (found one ring each by crowded.find_rings) are measured from the part of
    # their ring no neighbour reaches (crowded.measure_touching) instead of being rejected
    touching = (crowded.touching(blended & inside, group, i, j) if n_ring_found
                else np.zeros(len(fx), bool))
    rejected["blended"] = int(np.count_nonzero(blended & inside & ~touching))
    sel = order[(inside & (~blended | touching))[order]][:n_keep]
    if len(sel) == 0:
        return empty("no isolated stars away from the edges", bkg_level, noise, n_det)
    pool = sel
    sel = _profile_sample(pool, fx, fy, W, H, profile)
    n_cand = len(pool)

    # ---- per-star measurements on full-resolution stamps, in batches (bounded memory)
    # only the background at the stars is needed: sep's map read as float32 (sep computes it
    # in float32; a float64 copy holds the same values, twice the size); detection's own sky
    # keeps the map it subtracted (detect._Sky), so the spline is not evaluated again
    back_map = bkg.back(dtype=np.float32)
    sat = frame.saturation_adu
    k_nb = int(min(_N_NEIGHBOURS, len(fx) - 1))
    batch = max(64, _STAMP_BATCH_PIXELS // (S * S))
    gain = frame.meta.gain if (frame.meta.gain and 0.05 < frame.meta.gain < 20) else 1.0
    if noise < _NOT_COUNTS_NOISE:
        # not counts: float data scaled to 0-1 (Siril, PixInsight) or calibrated. A star's own
        # photon noise cannot be told in these units (read as e-, a 0-1 frame's stars were all
        # "too faint"); the sky's noise alone sets the SNR
        gain = math.inf

    def profile_stars(sel_: np.ndarray) -> dict[str, np.ndarray]:
        """Stamps and per-star figures of the candidates ``sel_`` (see :func:`_measure_stamps`),
        with their stamp positions, neighbours and SNR."""
        ix_, iy_ = np.rint(fx[sel_]).astype(np.int64), np.rint(fy[sel_]).astype(np.int64)
        n_ = len(sel_)
        by = np.clip(((iy_ + 0.5) / b - 0.5).astype(np.int64), 0, back_map.shape[0] - 1)
        bx = np.clip(((ix_ + 0.5) / b - 0.5).astype(np.int64), 0, back_map.shape[1] - 1)
        bkg_ = back_map[by, bx].astype(np.float32)
        cx0 = (fx[sel_] - ix_).astype(np.float64)
        cy0 = (fy[sel_] - iy_).astype(np.float64)
        sw0 = np.clip(size_sigma[sel_], 1.0, R / 2.0)
        # the nearest other detections: their light inside a stamp is masked (each pixel goes to
        # the nearer star), so a neighbour at the stamp's edge cannot inflate the radii
        near_i, near_j, near_d = _neighbours_within(fx, fy, sel_, 2.0 * R)
        if k_nb > 0:
            nbx_, nby_ = _nearest_offsets(fx, fy, n_, near_i, near_j, near_d, k_nb, 2.0 * R, ix_, iy_)
        else:
            nbx_ = nby_ = np.full((n_, 1), 1e6)
        if large:
            # large stars: the sky from each stamp's ring beyond the star (LocalSkyConfig); the
            # ring starts beyond the typical star too (a faint disk's detection box is smaller
            # than the disk, whose blurred edge lies below the threshold)
            sky_r = np.maximum(own_r[sel_], 0.5 * typ_extent)
            bkg_ = np.concatenate([
                _annulus_sky(img, ix_[i:i + batch], iy_[i:i + batch], bkg_[i:i + batch], cx0[i:i + batch],
                             cy0[i:i + batch], sky_r[i:i + batch], R, nbx_[i:i + batch], nby_[i:i + batch])
                for i in range(0, n_, batch)]).astype(np.float32)
        ap_ = _sky_ring_start(sky_r) if large else None
        parts = [_measure_stamps(img, ix_[i:i + batch], iy_[i:i + batch], bkg_[i:i + batch], cx0[i:i + batch],
                                 cy0[i:i + batch], sw0[i:i + batch], R, sat, nbx_[i:i + batch], nby_[i:i + batch],
                                 None if ap_ is None else ap_[i:i + batch])
                 for i in range(0, n_, batch)]
        out = {k: np.concatenate([pt[k] for pt in parts]) for k in parts[0]}
        # nearest other detection farther than 2 R <=> none within 2 R
        crowded_ = np.zeros(n_, bool)
        crowded_[near_i] = True
        area = math.pi * np.maximum(out["r90"], 1.0) ** 2
        out["snr"] = out["flux"] / np.sqrt(area * noise ** 2 + np.maximum(out["flux"], 0) / gain)
        out.update(ix=ix_, iy=iy_, local_bkg=bkg_, nbx=nbx_, nby=nby_, crowded=crowded_)
        return out

    m = profile_stars(sel)
    if len(sel) < n_cand:
        wing_ok = wing_usable(m["flux"], m["snr"]) & ~m["crowded"]
        if np.count_nonzero(wing_ok) < profile.min_wing_stars:
            # the rest joins the sample (per-star work: no star is profiled twice), in the
            # candidates' order, so the result is the one of profiling every star
            in_sample = np.isin(pool, sel)
            rest = profile_stars(pool[~in_sample])
            back = np.argsort(np.concatenate([np.nonzero(in_sample)[0], np.nonzero(~in_sample)[0]]))
            m = {k: np.concatenate([m[k], rest[k]])[back] for k in m}
            sel = pool
    n = len(sel)
    masked = touching[sel]
    if np.any(masked):
        rows = np.nonzero(masked)[0]
        ok_t = crowded.measure_touching(m, rows, img, fx[sel[rows]], fy[sel[rows]], sel[rows], fx, fy,
                                        2.0 * size_sigma, 0.5 * typ_extent)
        m["flags"][rows[~ok_t]] = -1  # too little of the ring clean: rejected as blended below
        area_t = math.pi * np.maximum(m["r90"][rows], 1.0) ** 2
        m["snr"][rows] = m["flux"][rows] / np.sqrt(area_t * noise ** 2 + np.maximum(m["flux"][rows], 0) / gain)
    ix, iy, local_bkg, nbx, nby, snr = m["ix"], m["iy"], m["local_bkg"], m["nbx"], m["nby"], m["snr"]
    cx, cy, r50, r90, tot_flux, flags = m["cx"], m["cy"], m["r50"], m["r90"], m["flux"], m["flags"]
    hfr_nina, a2, b2, ecc, theta, ring = m["hfr_nina"], m["a2"], m["b2"], m["ecc"], m["theta"], m["ring"]
    is_sat, centre = m["saturated"], m["centre"]

    # ---- signal to noise (above), hot pixels / cosmic rays, faint stars
    # hot pixels and cosmic rays: far sharper than the optics allow (relative to the frame's
    # own typical star, since a defocused frame has no sharp stars at all)
    ok_r = r50[np.isfinite(r50) & (r50 > 0.6)]
    typical_r50 = float(np.median(ok_r)) if len(ok_r) else 1.0
    hot, faint, typical_minor = _hot_and_faint(m, typical_r50)
    lost = masked & (flags == -1)  # touching donuts whose ring is too covered: blended after all
    hot &= ~lost
    faint &= ~lost
    # counted on the profiled sample, scaled to all candidates when it is one
    to_all = n_cand / n
    rejected["saturated"] = int(round(np.count_nonzero(is_sat) * to_all))
    rejected["hot_pixel"] = int(round(np.count_nonzero(hot & ~is_sat) * to_all))
    rejected["faint"] = int(round(np.count_nonzero(faint & ~hot & ~is_sat) * to_all))
    rejected["blended"] += int(round(np.count_nonzero(lost & ~is_sat) * to_all))
    keep = ~is_sat & ~hot & ~faint & ~lost
    if np.count_nonzero(keep) < 1:
        return empty("no measurable stars (all saturated, hot pixels or too faint)", bkg_level, noise, n_det)

    # small stars: the per-star medians, no sky offset (WingConfig.line_min_r50_px); the sample's
    # top-up feeds the line alone, so small stars' frames skip it (and read as the medians did)
    line = not large and typical_r50 >= WING.line_min_r50_px
    wing_extra = None
    if n < n_cand and line:
        n_lone = int(np.count_nonzero(~m["crowded"] & wing_usable(m["flux"], m["snr"])))
        rest_pool = pool[~np.isin(pool, sel)]  # brightest first
        has_near = np.zeros(len(rest_pool), bool)
        has_near[_neighbours_within(fx, fy, rest_pool, 2.0 * R)[0]] = True
        rest_pool = rest_pool[~has_near]  # lone ones only: the others' wings are not read
        k_more = min(len(rest_pool), profile.wing_stars - n_lone)
        if k_more > 0:
            pick_more = rest_pool[((np.arange(k_more) + 0.5) * len(rest_pool) / k_more).astype(np.int64)]
            wing_extra = profile_stars(pick_more)
    del back_map

    # light in the wings beyond the aperture (seeing, diffraction): the frame's bright
    # stars say how much, and every star's half-flux radius is re-read against it
    # (only stars with no other detection within two stamp radii: a neighbour's light at
    # the stamp's edge would pass for wings)
    alone = keep & ~m["crowded"]
    # (not for large stars: their aperture ends where their sky ring starts, whose level is
    # taken as the sky, so no wing is left to read beyond it)
    wing_in = (tot_flux[alone], snr[alone], m["wing_i1"][alone], m["wing_i2"][alone], R)
    if wing_extra is not None:
        # the top-up for the wing (ProfileConfig.wing_stars): lone, unsaturated, measured
        # (the sample's rule for hot pixels and faint stars, against the sample's typical star; and
        # no sep flag at all: the wing reads the flux out to the stamp's edge)
        w = wing_extra
        hot_w, faint_w, _ = _hot_and_faint(w, typical_r50, typical_minor)
        lone = ~w["crowded"] & ~w["saturated"] & (w["flags"] == 0) & ~hot_w & ~faint_w
        wing_in = tuple(np.concatenate([a, w[k][lone]]) for a, k in
                        zip(wing_in[:4], ("flux", "snr", "wing_i1", "wing_i2"))) + (R,)
    wing_cfg = WING if line else _WING_MEDIANS
    share = 0.0 if large else wing_share(*wing_in, wing_cfg)
    # the sky the frame's model set too high under the stars (their own far wings, taken for
    # sky), as a share of each star's aperture flux per px^2: put back on its curve of growth
    sky_excess = wing_sky_excess(*wing_in) if line else 0.0
    sky_px2 = math.pi * sky_excess / np.maximum(tot_flux, 1e-12) if sky_excess else 0.0
    r_half = _reread_half_radius(r50, m["r_wing"], share, sky_px2=sky_px2, rmax=R - 1.0)
    wing_err_px = 0.0
    if n < n_cand:
        # a frame figure from the sample's few bright lone stars: its own sampling error moves
        # every star's HFR together, which the star-to-star scatter does not show
        wing_err_px = _wing_share_hfr_err(*wing_in, share, r50[keep], m["r_wing"][keep],
                                          sky_px2[keep] if np.ndim(sky_px2) else sky_px2, wing_cfg)
    r90_ap = r90  # the aperture's own light (outer_r_ap): the share above is read per frame from a few stars
    r90 = _reread_half_radius(r90, m["r_wing90"], share, frac=0.9, fracs=_WING_FRACS_90, sky_px2=sky_px2, rmax=R - 1.0)
    hfr = np.sqrt(np.maximum(r_half ** 2 - _PIX_HFR2, 0.01))

    # ---- Moffat FWHM on bright, unsaturated, isolated stars spread over the 3x3 grid
    green_sites = frame.green_interpolated  # a Bayer frame's green was interpolated: see GREEN_INTERP
    fwhm = np.full(n, np.nan)
    beta = np.full(n, np.nan)
    zone_of = (np.minimum((fy[sel] * 3 / H).astype(int), 2) * 3 + np.minimum((fx[sel] * 3 / W).astype(int), 2))
    cand = np.nonzero(keep & (snr > 20))[0]
    if len(cand) == 0:
        cand = np.nonzero(keep)[0]
    # a profiled sample fits its share of the stars (the fits are per-star work like the rest)
    per_zone = max(5, int(round(n_fit * n / n_cand)) // 9)
    pick = []
    for z in range(9):
        cz = cand[zone_of[cand] == z]
        pick.extend(cz[np.argsort(-snr[cz])][:per_zone])
    pick = np.array(sorted(pick), dtype=np.int64)
    if len(pick):
        rfit = np.minimum(np.maximum(3.0 * r50[pick], 4.0), R - 1)
        rf = int(min(R, math.ceil(rfit.max()) + 1))
        win = slice(R - rf, R + rf + 1)
        # radial profile in 0.25 px bins (mean radius and mean value per bin, weighted by
        # the pixel count): the fit sees every pixel's radius but runs on ~50 points a star
        kp = len(pick)
        st_p, _ = _stamps(img, ix[pick], iy[pick], local_bkg[pick], cx[pick], cy[pick], R, nbx[pick], nby[pick])
        green_p = None
        fcx, fcy = cx[pick], cy[pick]
        if green_sites is not None:  # only the true green samples: see GreenInterpolationConfig
            green_p = _green_site_mask(green_sites, iy[pick] + top, ix[pick] + left, R)
            fcx, fcy = _green_centroids(st_p, green_p, cx[pick], cy[pick], r50[pick])
        rr_p = _offsets(fcx, fcy, R)[2]
        rp = rr_p[:, win, win].reshape(kp, -1)
        vp = st_p[:, win, win].reshape(kp, -1).astype(np.float64)
        amp0 = np.maximum(st_p[:, R, R], 1e-3).astype(np.float64)
        nb = int(math.ceil(rfit.max() / 0.25)) + 1
        binr = np.minimum((rp / 0.25).astype(np.int64), nb - 1)
        use = rp <= rfit[:, None]
        if green_p is not None:
            use &= green_p[:, win, win].reshape(kp, -1)
        idx = (np.arange(kp)[:, None] * nb + binr)[use]
        cnt = np.bincount(idx, minlength=kp * nb).reshape(kp, nb).astype(np.float64)
        sr = np.bincount(idx, weights=rp[use], minlength=kp * nb).reshape(kp, nb)
        sv = np.bincount(idx, weights=(vp / amp0[:, None])[use], minlength=kp * nb).reshape(kp, nb)
        safe = np.maximum(cnt, 1)
        alpha, bet, ok = _batched_moffat(sr / safe, sv / safe, cnt, np.ones(kp), np.maximum(r50[pick], 0.5))
        direct = _half_max_width(sv / safe, cnt, 0.25)
        fw = moffat_fwhm(alpha, bet)
        # A Moffat has no flat top: on defocused stars it returns a width well below the
        # disk's. Large stars are sampled finely enough to read the half-maximum directly
        # off the radial profile, so blend from the fit (< 4 px) to the direct width (> 6 px).
        wdir = np.clip((np.where(np.isfinite(direct), direct, fw) - 4.0) / 2.0, 0.0, 1.0)
        fw = (1 - wdir) * fw + wdir * np.where(np.isfinite(direct), direct, fw)
        fw = np.sqrt(np.maximum(fw ** 2 - _PIX_FWHM2, 0.01))
        if green_p is not None and GREEN_INTERP.fwhm_excess_table:  # the green-site fit's measured excess
            fw = np.sqrt(np.maximum(fw ** 2 - bayer_fwhm2_excess_px2(fw), 0.01))
        ok &= (fw > 0.5) & (fw < 4 * R)
        fwhm[pick[ok]] = fw[ok]
        beta[pick[ok]] = bet[ok]
    green_note: tuple[str, ...] = ()
    if green_sites is not None:
        hfr, a2, b2, ecc, green_note = _without_green_blur(r_half, beta, a2, b2, keep)
        # the Moffat fit above read the green sites only (true samples, no interpolation in them)
        green_note = (green_note[0] + "; FWHM from a Moffat fit to the green sites only (the true samples) about "
                      "their own centroid, less the excess such a fit reads below 2.5 px (data/bayer_fwhm_bias.json)",)

    # ---- per-star table in sensor pixels
    k = np.nonzero(keep)[0]
    stars = np.zeros(len(k), STAR_DTYPE)
    stars["x"] = ((ix + cx)[k] + left + 0.5) * scale - 0.5
    stars["y"] = ((iy + cy)[k] + top + 0.5) * scale - 0.5
    stars["flux"] = tot_flux[k]
    stars["peak"] = centre[k]
    stars["snr"] = snr[k]
    stars["hfr"] = hfr[k] * scale
    stars["hfr_nina"] = hfr_nina[k] * scale
    stars["fwhm"] = fwhm[k] * scale
    stars["beta"] = beta[k]
    stars["a"] = np.sqrt(a2[k]) * scale
    stars["b"] = np.sqrt(b2[k]) * scale
    stars["theta"] = theta[k]
    stars["ecc"] = ecc[k]
    stars["ring"], stars["ring_ok"] = ringfit.refine_ring_ratio(m["ring_prof"][k], m["ring_r"][k], ring[k], r90[k],
                                                                tot_flux[k], ringfit.diffraction_px(frame.meta, scale),
                                                                usable=~masked[k])
    stars["outer_r"] = r90[k] * scale
    stars["outer_r_ap"] = r90_ap[k] * scale
    # measured from the clean part of the ring (a touching neighbour masked): its moments
    # saw the masked side, so it has no shape figure
    stars["masked"] = masked[k]
    stars["ecc"][masked[k]] = np.nan
    extra = border_note + green_note + ((f"{n_rings} donut(s) reassembled from arcs split by spider-vane shadows",)
                           if n_rings else ())
    n_total = None
    if n < n_cand:
        n_total = int(round(len(k) * to_all))
        extra = extra + (f"profiled {n} of {n_cand} isolated stars ({n_det} detected), a sample spread over "
                         f"the 3x3 zones and over brightness (ProfileConfig.max_stars = {profile.max_stars}); "
                         f"{len(k)} measurable in the sample: n_stars ({n_total}) and the rejection counts are "
                         f"scaled to all candidates, hfr_err_px includes the sample's wing-share error",)
    H0, W0 = frame.pixels.shape
    return summarize(stars, frame=frame, width_px=int(W0 * scale), height_px=int(H0 * scale),
                     background_adu=bkg_level, noise_adu=noise, n_detected=n_det, n_rejected=rejected,
                     plate_scale_arcsec_px=plate_scale_arcsec_px, min_stars=min_stars, extra_notes=extra,
                     n_stars=n_total, hfr_err_extra_px=wing_err_px * scale)
