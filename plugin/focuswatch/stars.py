"""Star measurement: the only module that imports ``sep``.

Pure computation: arrays in, a :class:`FrameStats` out; no files, no clock.

Coordinates follow sep: ``x`` is the fast (column) axis, ``y`` the slow (row) axis, and
``(0, 0)`` is the *centre* of the first pixel. Sizes are in sensor pixels (a Bayer frame
measured on 2x2 superpixels is scaled back by :attr:`Frame.scale_px`).

Two half-flux definitions are kept apart:

* ``hfr_px`` — the true half-flux radius: the radius of the circle holding half of the
  star's flux (SExtractor FLUX_RADIUS), corrected for the pixel's own width;
* ``hfr_nina_px`` — NINA/ASTAP's "HFR": the flux-weighted mean radius ``sum(I*r)/sum(I)``
  over background-subtracted pixels. For a uniform disk of radius R these are R/sqrt(2)
  and 2R/3.

``fwhm_px`` comes from Moffat fits to the radial profiles of bright, unsaturated, isolated
stars (moment-based FWHM is 15-40 % off on real profiles). ``profile_ratio`` is the
half-flux *diameter* over the FWHM: ~1.0 for a Gaussian, 1.17 for Moffat beta=4, 1.36 for
beta=2.5, ~0.71 for a flat defocus disk — it tells a focus miss (flat-topped) from seeing
(peaked, with wings) on a single frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from focuswatch import ringfit
from focuswatch.model import Frame, FrameMeta
from focuswatch.records import Record

#: dtype of the per-star table (:attr:`FrameStats.stars`).
STAR_DTYPE = np.dtype([
    ("x", "f8"), ("y", "f8"),            # sensor pixels, sep convention
    ("flux", "f8"), ("peak", "f8"),      # ADU above background
    ("snr", "f8"),
    ("hfr", "f8"),                       # true half-flux radius, px
    ("hfr_nina", "f8"),                  # flux-weighted mean radius, px
    ("fwhm", "f8"),                      # Moffat FWHM, px (NaN where not fitted)
    ("beta", "f8"),                      # Moffat beta (NaN where not fitted)
    ("a", "f8"), ("b", "f8"),            # second-moment semi-axes, px
    ("theta", "f8"),                     # orientation of the major axis, rad, from +x toward +y
    ("ecc", "f8"),                       # eccentricity sqrt(1 - b^2/a^2)
    ("ring", "f8"),                      # inner/outer radius ratio of a donut, 0 when filled
    ("ring_ok", "?"),                    # ring is a reliable model fit (focuswatch.ringfit)
    ("outer_r", "f8"),                   # outer radius of the star's light (90 % flux), px
])


@dataclass(frozen=True)
class Zone(Record):
    """Medians over the stars of one cell of the 3x3 grid (row 0 = top = low y)."""

    row: int
    col: int
    n_stars: int
    hfr_px: float | None
    fwhm_px: float | None
    eccentricity: float | None


@dataclass(frozen=True)
class FrameStats:
    """Everything measured on one frame (field names are the ``measure --json`` keys).

    Zero stars is a value, not an exception: ``n_stars = 0`` and ``reason`` says why.
    ``stars`` (the per-star table) is not part of :meth:`to_dict`.
    """

    file: str | None
    n_stars: int
    hfr_px: float | None = None
    hfr_nina_px: float | None = None
    fwhm_px: float | None = None
    eccentricity: float | None = None
    profile_ratio: float | None = None
    ring_ratio: float | None = None
    star_flux_adu: float | None = None
    background_adu: float | None = None
    noise_adu: float | None = None
    width_px: int | None = None
    height_px: int | None = None
    plate_scale_arcsec_px: float | None = None
    hfr_arcsec: float | None = None
    fwhm_arcsec: float | None = None
    zones: tuple[Zone, ...] = ()
    #: 1-sigma uncertainty of ``hfr_px`` (px): photon noise for one or two stars, the
    #: star-to-star scatter over sqrt(n) for more (:func:`hfr_uncertainty_px`)
    hfr_err_px: float | None = None
    #: False when the stars are too small (FWHM under ~2.5 px, pixel-integrated) or too
    #: faint/few for their eccentricity to mean anything: no trailing, wind or collimation
    #: call should be made from this frame's shape figures (:func:`elongation_reliable`)
    elongation_reliable: bool | None = None
    n_detected: int = 0
    n_rejected: Mapping[str, int] = field(default_factory=dict)
    reason: str | None = None
    notes: tuple[str, ...] = ()
    meta: FrameMeta = field(default_factory=FrameMeta)
    stars: np.ndarray = field(default_factory=lambda: np.zeros(0, STAR_DTYPE), repr=False, compare=False)

    def zone_grid(self, key: str = "hfr_px") -> np.ndarray:
        """The 3x3 zone medians of ``key`` as an array (NaN for empty zones)."""
        grid = np.full((3, 3), np.nan)
        for z in self.zones:
            v = getattr(z, key)
            if v is not None:
                grid[z.row, z.col] = v
        return grid

    def to_dict(self) -> dict[str, Any]:
        # field by field: asdict() would deep-copy the whole per-star table only to drop it
        d = {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in ("stars", "zones", "meta")}
        d["stars"] = self.n_stars
        d["zones"] = [z.to_dict() for z in self.zones]
        d["n_rejected"] = dict(self.n_rejected)
        d["notes"] = list(self.notes)
        d["meta"] = self.meta.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FrameStats":
        names = set(cls.__dataclass_fields__) - {"stars", "zones", "meta", "notes", "n_rejected"}
        kw = {k: v for k, v in d.items() if k in names}
        kw["zones"] = tuple(Zone(**z) for z in d.get("zones", ()))
        kw["meta"] = FrameMeta.from_dict(d.get("meta", {}))
        kw["notes"] = tuple(d.get("notes", ()))
        kw["n_rejected"] = dict(d.get("n_rejected", {}))
        return cls(**kw)


# =========================================================================== measurement

#: Pixel-width corrections. A pixel of width 1 adds 1/12 px^2 to each axis' variance: for a
#: Gaussian that adds 8*ln2/12 to FWHM^2 (used for the Moffat FWHM). For the half-flux
#: radius, sep's apertures (3x3 sub-pixel sampling) also treat each pixel's flux as
#: uniform, which together add 0.28 +- 0.05 px^2 to HFR^2 for Gaussian and Moffat (beta
#: 2.5-4.5) profiles of FWHM 1.5-8 px (measured on 9x9-supersampled renders at random
#: sub-pixel centres). The correction only matters for stars a few pixels across.
_PIX_HFR2 = 0.28
_SUBPIX = 3
_PIX_FWHM2 = 8.0 * math.log(2.0) / 12.0
_PIX_MOM2 = 1.0 / 12.0

#: Detection works on a block-averaged copy of at most this many pixels (speed), then on a
#: coarser one if stars are large (so a 60 px donut is one blob, not a dozen arcs).
_DETECT_MAX_PIXELS = 4_000_000
_DETECT_TARGET_SIZE = 10.0    # typical extent (binned px) of large stars in the second pass
_DETECT_LARGE_PX = 32.0       # stars wider than this (full-resolution px) get the second pass
_STAMP_PIXEL_BUDGET = 24_000_000
#: Fewest stars for frame figures from :func:`measure` (one star is a valid measurement:
#: single-star autofocus, sub-frames). Consumers keep their own minimum: the refocus
#: policy (``MonitorConfig.min_stars``), the diagnosis (``DiagnoseConfig.min_stars``).
MIN_STARS_FOR_STATS = 1
_MIN_STARS_FOR_STATS = 3  # the size-outlier cut and the SNR >= 10 subset need this many
#: margin (px) between a star's light and the frame's edge
_EDGE_MARGIN_PX = 1.0


#: rows of the block-averaged image made per step of :func:`_block_mean` (bounds its
#: temporaries to a strip: the whole-frame row sums of a 61 Mpx frame were 2 x 61 MB)
_BLOCK_STRIP_BYTES = 4 << 20


def _block_mean(img: np.ndarray, b: int) -> np.ndarray:
    """Average ``b x b`` blocks (cropping the ragged edge); float32, C-contiguous."""
    if b <= 1:
        return img
    h, w = img.shape[0] // b, img.shape[1] // b
    out = np.empty((h, w), np.float32)
    step = max(1, _BLOCK_STRIP_BYTES // (4 * b * img.shape[1]))
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        # Add whole rows first (long contiguous vectors), then columns of the row sums: about
        # 3x faster than numpy's mean over axes (1, 3) of the 4-D view, and exact.
        rows = img[r0 * b:r1 * b].reshape(r1 - r0, b, img.shape[1])  # a view
        acc = rows[:, 0, :].astype(np.float32, copy=True)
        for i in range(1, b):
            acc += rows[:, i, :]
        cols = np.ascontiguousarray(acc[:, :w * b]).reshape(r1 - r0, w, b)
        strip = out[r0:r1]
        strip[:] = cols[:, :, 0]
        for j in range(1, b):
            strip += cols[:, :, j]
    out *= np.float32(1.0 / (b * b))
    return out


def _background(small: np.ndarray, box_binned_px: float):
    """sep's sky model with a mesh of ``box_binned_px`` (16-512, at most half the image)."""
    import sep

    box = int(max(16, min(512, round(box_binned_px))))
    box = min(box, max(8, min(small.shape) // 2))
    return sep.Background(small, bw=box, bh=box, fw=3, fh=3)


def _detect(img: np.ndarray, b: int, thresh: float, *, box_px: float = 128.0, kernel_sigma: float | None = None,
            deblend_cont: float = 0.005):
    """Background + source extraction on the ``b``-binned image (sep).

    ``box_px`` is the background mesh in full-resolution pixels (it must be several times
    the stars' size or their light leaks into the sky level); ``kernel_sigma`` (binned px)
    replaces sep's default 3x3 matched filter by a Gaussian fitted to large stars.
    Donuts that sep split into arcs are put together again (:func:`_merge_rings`).
    Returns (objects, background, noise of a binned pixel, rings merged).
    """
    import sep

    small = _block_mean(img, b)
    bkg = _background(small, box_px / b)
    if b > 1 and small.dtype == np.float32:
        sub = small  # a fresh binned copy: the sky comes off in place (the same float32 subtraction)
        bkg.subfrom(sub)
    else:
        sub = small - bkg.back(dtype=np.float32)
    del small
    rms = float(bkg.globalrms)
    if not math.isfinite(rms) or rms <= 0:
        rms = float(np.std(sub)) or 1.0
    kernel = None
    if kernel_sigma:
        k = int(math.ceil(3 * kernel_sigma))
        ax = np.arange(-k, k + 1)
        kernel = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * kernel_sigma ** 2)).astype(np.float32)
    sep.set_sub_object_limit(4096)
    kw = dict(err=rms, minarea=4 if b > 1 else 5, deblend_cont=deblend_cont, clean=True)
    if kernel is not None:
        kw["filter_kernel"] = kernel
    try:
        objs = _extract_with_stack(sep, sub, thresh, kw, max(_PIXSTACK_FIRST, sub.size // 2))
    except Exception as exc:  # sep raises bare Exception on pixel-stack overflow
        if "pixel buffer" in str(exc) or "object buffer" in str(exc) or "limit" in str(exc):
            objs = sep.extract(sub, thresh * 3, **kw)
        else:
            raise
    objs, n_holed = _merge_holed(objs, sub, thresh, kw)
    objs, n_rings, _ = _merge_rings(objs, sub.shape[1], sub.shape[0])
    return objs, bkg, rms, n_rings + n_holed


#: sep's pixel stack for a first extraction (its own default). sep allocates and writes the
#: whole stack on every call: half the binned image (2M entries, ~80 MB on a 61 Mpx frame)
#: is asked for only when this one overflows, which a star field never does
_PIXSTACK_FIRST = 300_000


def _extract_with_stack(sep: Any, sub: np.ndarray, thresh: float, kw: dict, full_stack: int) -> np.ndarray:
    """``sep.extract`` with a small pixel stack first, the full one if that overflows.

    sep's result does not depend on the stack's size unless it overflows, so this is the
    extraction with ``full_stack`` (whose own overflow is raised to the caller as before).
    """
    if full_stack > _PIXSTACK_FIRST:
        sep.set_extract_pixstack(_PIXSTACK_FIRST)
        try:
            return sep.extract(sub, thresh, **kw)
        except Exception:  # noqa: BLE001 - sep raises bare Exception; the full stack decides as before
            pass
    sep.set_extract_pixstack(full_stack)
    return sep.extract(sub, thresh, **kw)


#: a footprint whose holes hold at least this share of its filled area (and
#: ``_HOLE_MIN_PX`` binned pixels) is a ring
_HOLE_MIN_SHARE = 0.03
_HOLE_MIN_PX = 4
#: pieces smaller than this (binned px) cannot belong to a ring with a hole
_HOLE_MIN_EXTENT_PX = 6
#: shares of the footprint's brightest pixel at which a hole is looked for
_HOLE_LEVELS = (0.2, 0.35, 0.5)
#: the hole's centre within this share of the footprint's extent from the footprint's centroid
_HOLE_CENTRE_SHARE = 0.2


def _merge_holed(objs: np.ndarray, sub: np.ndarray, thresh: float, kw: dict) -> tuple[np.ndarray, int]:
    """Undo sep's deblending of a ring: a donut whose ring is brighter on one side is split
    into pieces that share one footprint, and that footprint has a hole (the obstruction's
    shadow). Two stars blended together make a footprint without a hole: they stay apart.
    Returns (objects, number of rings put back together).
    """
    if len(objs) < 2:
        return objs, 0
    ov_i, ov_j = _overlapping_boxes(objs)
    # a hole needs a ring a few pixels across: pieces of small stars are real blends
    ext = np.maximum(objs["xmax"] - objs["xmin"], objs["ymax"] - objs["ymin"]) + 1
    big = (ext[ov_i] >= _HOLE_MIN_EXTENT_PX) & (ext[ov_j] >= _HOLE_MIN_EXTENT_PX)
    ov_i, ov_j = ov_i[big], ov_j[big]
    if not len(ov_i):
        return objs, 0
    import sep

    kw1 = dict(kw)
    kw1["deblend_cont"] = 1.0  # the footprints before deblending
    n = len(objs)
    label = _components(n, ov_i, ov_j)
    involved = np.unique(np.concatenate([ov_i, ov_j]))
    keep = np.ones(n, bool)
    new_rows = []
    H, W = sub.shape
    for grp in np.unique(label[involved]):
        members = np.nonzero(label == grp)[0]
        # re-extract only around this group (cheap on a full frame with many close pairs)
        x0 = max(int(objs["xmin"][members].min()) - 3, 0)
        y0 = max(int(objs["ymin"][members].min()) - 3, 0)
        x1 = min(int(objs["xmax"][members].max()) + 4, W)
        y1 = min(int(objs["ymax"][members].max()) + 4, H)
        cut = np.ascontiguousarray(sub[y0:y1, x0:x1])
        # a cut cannot hold more pixels than its own: a stack that size never overflows (sep
        # allocates and writes the whole stack on every call)
        sep.set_extract_pixstack(max(_PIXSTACK_FIRST, cut.size + 16))
        try:
            parents, seg = sep.extract(cut, thresh, segmentation_map=True, **kw1)
        except Exception:  # sep raises bare Exception (buffer limits): leave the group as it is
            continue
        hx = np.clip(np.rint(objs["x"][members]).astype(np.int64) - x0, 0, cut.shape[1] - 1)
        hy = np.clip(np.rint(objs["y"][members]).astype(np.int64) - y0, 0, cut.shape[0] - 1)
        owner = seg[hy, hx] - 1  # the footprint each deblended piece sits in (-1: none)
        for pid in np.unique(owner):
            kids = members[owner == pid]
            if pid < 0 or len(kids) < 2 or not _is_one_ring(parents[pid], seg == pid + 1, cut):
                continue
            row = parents[pid].copy()
            for f, off in (("x", x0), ("xmin", x0), ("xmax", x0), ("y", y0), ("ymin", y0), ("ymax", y0)):
                row[f] = row[f] + off
            keep[kids] = False
            new_rows.append(row)
    if not new_rows:
        return objs, 0
    return np.concatenate([objs[keep], np.array(new_rows, dtype=objs.dtype)]), len(new_rows)


def _is_one_ring(po: np.void, own_full: np.ndarray, img: np.ndarray) -> bool:
    """Whether one footprint (``own_full``, a mask of ``img``) is a ring: it has a hole, at
    the detection threshold or at a share of its brightest pixel (seeing half fills a hole),
    and its largest hole sits at the footprint's centroid (two overlapping donuts make holes
    off to each side)."""
    from scipy import ndimage

    ys = slice(po["ymin"], po["ymax"] + 1)
    xs = slice(po["xmin"], po["xmax"] + 1)
    own = own_full[ys, xs]
    vals = np.where(own, img[ys, xs], -np.inf)
    top = float(vals.max())
    for level in (-np.inf,) + _HOLE_LEVELS:
        box = own if level == -np.inf else vals > level * top
        filled = ndimage.binary_fill_holes(box)
        hole = int(filled.sum() - box.sum())
        if hole >= _HOLE_MIN_PX and hole >= _HOLE_MIN_SHARE * filled.sum():
            lab, n_lab = ndimage.label(filled & ~box)
            areas = np.bincount(lab.ravel(), minlength=n_lab + 1)[1:]
            hy_, hx_ = ndimage.center_of_mass(lab == int(np.argmax(areas)) + 1)
            off = math.hypot(hx_ + po["xmin"] - po["x"], hy_ + po["ymin"] - po["y"])
            return off <= _HOLE_CENTRE_SHARE * max(box.shape)
    return False


def _neighbours_within(x: np.ndarray, y: np.ndarray, sel: np.ndarray,
                       r: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every other point within ``r`` of the points ``sel``: (row in ``sel``, index of the
    neighbour, distance), sorted by row then distance."""
    i, j = _pairs_within(x, y, r)
    row_of = np.full(len(x), -1, np.int64)
    row_of[sel] = np.arange(len(sel))
    rows = np.concatenate([row_of[i], row_of[j]])
    other = np.concatenate([j, i])
    take = rows >= 0
    rows, other = rows[take], other[take]
    me = np.asarray(sel)[rows]
    d = np.sqrt((x[me] - x[other]) ** 2 + (y[me] - y[other]) ** 2)
    o = np.lexsort((other, d, rows))
    return rows[o], other[o], d[o]


def _nearest_offsets(x: np.ndarray, y: np.ndarray, n: int, rows: np.ndarray, other: np.ndarray, d: np.ndarray,
                     k: int, r: float, ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) offsets from each star's stamp centre ``(ix, iy)`` to its ``k`` nearest
    neighbours closer than ``r`` (from :func:`_neighbours_within`); 1e6 where there are fewer."""
    nbx = np.full((n, k), 1e6)
    nby = np.full((n, k), 1e6)
    close = d < r
    rows, other = rows[close], other[close]
    if len(rows):
        first = np.searchsorted(rows, rows, side="left")
        rank = np.arange(len(rows)) - first
        use = rank < k
        rows, other, rank = rows[use], other[use], rank[use]
        nbx[rows, rank] = x[other] - ix[rows]
        nby[rows, rank] = y[other] - iy[rows]
    return nbx, nby


def _mad_std(x: np.ndarray) -> float:
    """Robust standard deviation, 1.4826 x the median absolute deviation (astropy's
    ``mad_std``, same constant and arithmetic; written out so measuring needs no astropy.stats)."""
    return float(np.median(np.abs(x - np.median(x)))) * 1.482602218505602


#: candidate pairs examined per numpy step in :func:`_pairs_within` (bounds memory in a
#: crowded field: 2M pairs ~ 50 MB of temporaries)
_PAIR_CHUNK = 2_000_000


def _pairs_within(x: np.ndarray, y: np.ndarray, reach: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j), in lexicographic order, with distance <= max(reach_i, reach_j).

    A sweep over the points sorted by x: each point looks only at the points within its own
    reach in x, then the exact distance decides. Pure numpy (importing scipy.spatial for a
    k-d tree costs more than the whole search on a few thousand stars).
    """
    n = len(x)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    reach = np.broadcast_to(np.asarray(reach, dtype=np.float64), x.shape)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    pad = reach + 1e-9 * (1.0 + np.abs(x))  # rounding of x +- reach must not lose a pair
    lo = np.searchsorted(xs, x - pad, side="left")
    cnt = np.searchsorted(xs, x + pad, side="right") - lo
    cum = np.cumsum(cnt)
    keys = []
    start = 0
    while start < n:
        done = int(cum[start - 1]) if start else 0
        end = max(start + 1, int(np.searchsorted(cum, done + _PAIR_CHUNK, side="right")))
        c = cnt[start:end]
        ii = np.repeat(np.arange(start, end), c)
        within = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        jj = order[np.repeat(lo[start:end], c) + within]
        d2 = (x[ii] - x[jj]) ** 2 + (y[ii] - y[jj]) ** 2
        ok = (d2 <= reach[ii] * reach[ii]) & (ii != jj)
        a, b = np.minimum(ii[ok], jj[ok]), np.maximum(ii[ok], jj[ok])
        keys.append(a * n + b)
        start = end
    key = np.unique(np.concatenate(keys))
    return key // n, key % n


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected components of the undirected graph with edges (i, j) on ``n`` nodes.

    Labels are numbered in the order of each component's lowest node, as
    ``scipy.sparse.csgraph.connected_components`` numbers them (min-label propagation with
    pointer jumping; a few numpy passes for the small groups of a star field).
    """
    label = np.arange(n)
    if len(i):
        while True:
            m = np.minimum(label[i], label[j])
            new = label.copy()
            np.minimum.at(new, i, m)
            np.minimum.at(new, j, m)
            new = new[new]
            while True:
                nxt = new[new]
                if np.array_equal(nxt, new):
                    break
                new = nxt
            if np.array_equal(new, label):
                break
            label = new
    return np.unique(label, return_inverse=True)[1].astype(np.int32)


def _candidate_pairs(cx: np.ndarray, cy: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) closer than the larger of their two ``reach`` values.

    One search radius per object: a single big object (a bright star's wide footprint)
    must not make every small one search that far, which on a 3000-star frame costs more
    than the whole measurement.
    """
    return _pairs_within(cx, cy, reach)


def _overlapping_boxes(objs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of detections whose bounding boxes overlap (deblended pieces of one footprint)."""
    ext = np.maximum(objs["xmax"] - objs["xmin"], objs["ymax"] - objs["ymin"]).astype(np.float64) + 1.0
    cx, cy = 0.5 * (objs["xmin"] + objs["xmax"]), 0.5 * (objs["ymin"] + objs["ymax"])
    i, j = _candidate_pairs(cx, cy, math.sqrt(2.0) * ext)
    if not len(i):
        return i, j
    ov = ((objs["xmin"][i] <= objs["xmax"][j]) & (objs["xmin"][j] <= objs["xmax"][i])
          & (objs["ymin"][i] <= objs["ymax"][j]) & (objs["ymin"][j] <= objs["ymax"][i]))
    return i[ov], j[ov]


@dataclass(frozen=True)
class RingMergeConfig:
    """How arcs of one donut are told from separate stars (binned detection pixels).

    A defocused star on a telescope with spider vanes is a ring cut by the vanes' shadows;
    sep detects each arc as its own object. Arcs of one ring sit around a common centre at
    about the same distance, are elongated and lie tangentially, which a few close round
    stars do not.
    """

    #: two detections are neighbours when their boxes, widened by this share of their
    #: extent plus ``gap_px``, overlap (a vane's shadow is a few % of the ring's width)
    gap_share: float = 0.25
    gap_px: float = 1.5
    #: spread of the arcs' distances from the common centre (std/mean) at most
    radius_cv_max: float = 0.3
    #: each arc elongated at least this much (a/b) and lying tangentially: the angle
    #: between its major axis and the radius through it at least this (degrees)
    arc_elongation_min: float = 1.3
    arc_tangential_min_deg: float = 50.0
    #: no gap between neighbouring arcs (seen from the centre) wider than this (degrees)
    max_gap_deg: float = 200.0
    #: brightest / faintest arc at most this
    flux_ratio_max: float = 6.0


RING_MERGE = RingMergeConfig()


def _merge_rings(objs: np.ndarray, width: int, height: int,
                 config: RingMergeConfig = RING_MERGE) -> tuple[np.ndarray, int, int]:
    """Reassemble donuts that sep split into arcs; return (objects, n_rings, n_edge_groups).

    Groups of touching detections are replaced by one object at the ring's centre when
    they look like arcs of one ring (see :class:`RingMergeConfig`). A partial ring cut by
    the frame's border fails the "arcs all round" test; its arcs stay apart and are
    rejected as blended with each other, so they never count as stars.
    """
    n = len(objs)
    if n < 2:
        return objs, 0, 0
    ext = np.maximum(objs["xmax"] - objs["xmin"], objs["ymax"] - objs["ymin"]).astype(np.float64) + 1.0
    grow = config.gap_share * ext + config.gap_px
    x0, x1 = objs["xmin"] - grow, objs["xmax"] + grow
    y0, y1 = objs["ymin"] - grow, objs["ymax"] + grow
    cx, cy = 0.5 * (objs["xmin"] + objs["xmax"]), 0.5 * (objs["ymin"] + objs["ymax"])
    i, j = _candidate_pairs(cx, cy, math.sqrt(2.0) * (ext + 2 * grow))
    if not len(i):
        return objs, 0, 0
    touch = (x0[i] <= x1[j]) & (x0[j] <= x1[i]) & (y0[i] <= y1[j]) & (y0[j] <= y1[i])
    i, j = i[touch], j[touch]
    if not len(i):
        return objs, 0, 0
    label = _components(n, i, j)
    n_comp = int(label.max()) + 1
    sizes = np.bincount(label, minlength=n_comp)
    keep = np.ones(n, bool)
    new_rows = []
    n_rings = n_edge = 0
    flux = np.maximum(objs["flux"].astype(np.float64), 1e-12)
    for comp in np.nonzero(sizes >= 2)[0]:
        m = np.nonzero(label == comp)[0]
        f = flux[m]
        gx = float(np.sum(f * objs["x"][m]) / np.sum(f))
        gy = float(np.sum(f * objs["y"][m]) / np.sum(f))
        at_edge = (objs["xmin"][m].min() <= 1 or objs["ymin"][m].min() <= 1
                   or objs["xmax"][m].max() >= width - 2 or objs["ymax"][m].max() >= height - 2)
        dx, dy = objs["x"][m] - gx, objs["y"][m] - gy
        d = np.hypot(dx, dy)
        if np.mean(d) <= 0 or np.std(d) / np.mean(d) > config.radius_cv_max:
            continue
        if f.max() / f.min() > config.flux_ratio_max:
            continue
        elong = objs["a"][m] / np.maximum(objs["b"][m], 1e-3)
        phi = np.arctan2(dy, dx)
        rel = np.abs(np.degrees(np.angle(np.exp(1j * (objs["theta"][m] - phi)))))
        rel = np.minimum(rel, 180.0 - rel)  # angle between the major axis and the radius, 0-90
        if np.any(elong < config.arc_elongation_min) or np.any(rel < config.arc_tangential_min_deg):
            continue
        ang = np.sort(np.degrees(phi) % 360.0)
        gaps = np.diff(np.concatenate([ang, ang[:1] + 360.0]))
        if gaps.max() > config.max_gap_deg:
            continue
        n_rings += 1
        n_edge += int(at_edge)
        row = objs[m[np.argmax(f)]].copy()
        row["x"], row["y"] = gx, gy
        row["xmin"], row["xmax"] = objs["xmin"][m].min(), objs["xmax"][m].max()
        row["ymin"], row["ymax"] = objs["ymin"][m].min(), objs["ymax"][m].max()
        row["flux"] = float(np.sum(objs["flux"][m]))
        row["npix"] = int(np.sum(objs["npix"][m]))
        # a uniform disk of radius r has sigma r/2: the union box is the ring's diameter
        half = 0.25 * max(row["xmax"] - row["xmin"] + 1, row["ymax"] - row["ymin"] + 1)
        row["a"], row["b"], row["theta"] = half, half, 0.0
        new_rows.append(row)
        keep[m] = False
    if not new_rows:
        return objs, 0, 0
    return np.concatenate([objs[keep], np.array(new_rows, dtype=objs.dtype)]), n_rings, n_edge


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
        A, al, be = np.exp(pp[:, 0:1]), np.exp(pp[:, 1:2]), np.exp(pp[:, 2:3])
        base = 1.0 + r2 / (al * al)
        m = A * base ** (-be) + pp[:, 3:4]
        return m, A, al, be, base

    def cost(pp):
        m = model(pp)[0]
        return np.sum(w * (m - y) ** 2, axis=1)

    with np.errstate(all="ignore"):
        return _lm_loop(p, lam, n_iter, model, cost, r2, y, w)


def _lm_loop(p, lam, n_iter, model, cost, r2, y, w):
    """The iterations of :func:`_batched_moffat` (split out to run under one errstate)."""
    n = p.shape[0]
    c = cost(p)
    for _ in range(n_iter):
        m, A, al, be, base = model(p)
        lb = np.log(base)
        f = A * base ** (-be)
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
        ct = cost(trial)
        better = np.isfinite(ct) & (ct < c)
        p[better] = trial[better]
        c[better] = ct[better]
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


def _ring_ratio(prof: np.ndarray, r90: np.ndarray) -> np.ndarray:
    """Inner/outer half-maximum radius of ring-shaped (donut) profiles; 0 for filled stars."""
    n, nb = prof.shape
    out = np.zeros(n)
    peak_bin = np.argmax(prof, axis=1)
    peak = prof[np.arange(n), peak_bin]
    centre = prof[:, 0]
    cand = (peak_bin >= 2) & (centre < 0.6 * peak) & (peak > 0)
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
    The profile is lightly smoothed (3 bins) against pixel noise.
    """
    n, nb = prof.shape
    valid = counts > 0
    p = np.where(valid, prof, np.nan)
    k = np.ones(3) / 3.0
    out = np.full(n, np.nan)
    for i in range(n):
        row = p[i]
        good = np.isfinite(row)
        if good.sum() < 4:
            continue
        r = (np.arange(nb) + 0.5) * bin_px
        rg, vg = r[good], row[good]
        if len(vg) >= 3:
            vg = np.convolve(np.pad(vg, 1, mode="edge"), k, mode="valid")
        j = int(np.argmax(vg))
        half = 0.5 * vg[j]
        below = np.nonzero(vg[j:] < half)[0]
        if not len(below) or vg[j] <= 0:
            continue
        o = j + below[0]
        if o == 0:
            continue
        r_half = rg[o - 1] + (vg[o - 1] - half) / max(vg[o - 1] - vg[o], 1e-12) * (rg[o] - rg[o - 1])
        out[i] = 2.0 * r_half
    return out


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
    for k in np.nonzero(whole)[0].tolist():
        y, x = int(iy[k]), int(ix[k])
        raw[k] = img[y - R:y + R + 1, x - R:x + R + 1]
    edge = np.nonzero(~whole)[0]
    if len(edge):
        raw[edge] = img[np.clip(rows[edge], 0, H - 1)[:, :, None], np.clip(cols[edge], 0, W - 1)[:, None, :]]
    peak = raw.reshape(len(ix), -1).max(axis=1)
    stamps = raw - local_bkg[:, None, None]
    del raw
    # a stamp may reach past the frame's edge (a star near it, or one as big as the frame):
    # the pixels outside hold nothing (the star itself lies inside, see measure())
    outside = ((rows < 0) | (rows >= H))[:, :, None] | ((cols < 0) | (cols >= W))[:, None, :]
    if outside.any():
        stamps = np.where(outside, np.float32(0), stamps)
    if nbx is not None:
        stamps = _mask_neighbours(stamps, cx, cy, nbx, nby, off.astype(np.float32))
    return stamps, peak


_N_NEIGHBOURS = 6


def _mask_neighbours(stamps: np.ndarray, cx: np.ndarray, cy: np.ndarray, nbx: np.ndarray, nby: np.ndarray,
                     axis: np.ndarray) -> np.ndarray:
    """Zero the pixels of each stamp that lie nearer a neighbouring detection than the star.

    ``(cx, cy)`` and ``(nbx, nby)`` (n, k) are in stamp coordinates (0 = the stamp's centre
    pixel); far-away neighbours carry 1e6. A Voronoi cut: cheap, and exact for stars whose
    light does not overlap (those that overlap were already rejected as blended).
    """
    dx0 = axis[None, None, :] - cx[:, None, None].astype(np.float32)
    dy0 = axis[None, :, None] - cy[:, None, None].astype(np.float32)
    own = dx0 * dx0 + dy0 * dy0
    mask = np.zeros(stamps.shape, bool)
    for k in range(nbx.shape[1]):
        near = nbx[:, k] < 1e5
        if not np.any(near):
            continue
        dx = axis[None, None, :] - nbx[:, k, None, None].astype(np.float32)
        dy = axis[None, :, None] - nby[:, k, None, None].astype(np.float32)
        mask |= (dx * dx + dy * dy < own) & near[:, None, None]
    if mask.any():
        stamps = np.where(mask, np.float32(0), stamps)
    return stamps


def _measure_stamps(img: np.ndarray, ix: np.ndarray, iy: np.ndarray, local_bkg: np.ndarray, cx: np.ndarray,
                    cy: np.ndarray, sw: np.ndarray, R: int, sat: float | None,
                    nbx: np.ndarray | None = None, nby: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Centroid, half-flux radii, flux, NINA HFR, shape and ring figures of a batch of stars.

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
    # iteration costs two small (n, S) exponentials and one contraction)
    axis = off.astype(np.float32)
    pos = np.clip(stamps, 0, None)
    for _ in range(3):
        gx = np.exp(-(axis[None, :] - cx[:, None]) ** 2 / (2 * sw[:, None] ** 2)).astype(np.float32)
        gy = np.exp(-(axis[None, :] - cy[:, None]) ** 2 / (2 * sw[:, None] ** 2)).astype(np.float32)
        row_w = np.einsum("nij,nj->ni", pos, gx)
        tot = np.einsum("ni,ni->n", row_w, gy).astype(np.float64)
        sx = np.einsum("nij,nj,ni->n", pos, gx * axis[None, :], gy).astype(np.float64)
        sy = np.einsum("ni,ni->n", row_w, gy * axis[None, :]).astype(np.float64)
        good = tot > 0
        cx = np.clip(np.where(good, sx / np.where(good, tot, 1), cx), -R / 2, R / 2)
        cy = np.clip(np.where(good, sy / np.where(good, tot, 1), cy), -R / 2, R / 2)

    # true half-flux radius: sep's exact apertures on a mosaic of the stamps
    ncol = int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    tiles = np.zeros((nrow * ncol, S, S), np.float32)
    tiles[:n] = stamps
    mosaic = np.ascontiguousarray(tiles.reshape(nrow, ncol, S, S).transpose(0, 2, 1, 3).reshape(nrow * S, ncol * S))
    del tiles
    col, row = np.arange(n) % ncol, np.arange(n) // ncol
    mx = col * S + R + cx
    my = row * S + R + cy
    rmax = np.full(n, R - 1.0)
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
    rad2 = (np.maximum(2.5 * r50, 2.5)[:, None, None] ** 2).astype(np.float32)
    dxx, dyy, dxy = (dx * dx).reshape(n, -1), (dy * dy).reshape(n, -1), (dx * dy).reshape(n, -1)
    pflat = pos.reshape(n, -1)
    qxx = np.ones((n, 1), np.float32)
    qyy = np.ones((n, 1), np.float32)
    qxy = np.zeros((n, 1), np.float32)
    for it in range(3):
        # the first pass is circular (q = 1, 1, 0): the same numbers as the general form, 3 passes fewer
        q = dxx + dyy if it == 0 else qyy * dxx - 2 * qxy * dxy + qxx * dyy
        wm = np.where(q <= rad2.reshape(n, 1), pflat, np.float32(0))
        sw_tot = np.maximum(wm.sum(axis=1, dtype=np.float64), 1e-12)
        mxx = (wm * dxx).sum(axis=1, dtype=np.float64) / sw_tot
        myy = (wm * dyy).sum(axis=1, dtype=np.float64) / sw_tot
        mxy = (wm * dxy).sum(axis=1, dtype=np.float64) / sw_tot
        norm = np.sqrt(np.maximum(mxx * myy - mxy ** 2, 1e-12))
        qxx = (mxx / norm).astype(np.float32)[:, None]
        qyy = (myy / norm).astype(np.float32)[:, None]
        qxy = (mxy / norm).astype(np.float32)[:, None]
    ixx, iyy, ixy = mxx - _PIX_MOM2, myy - _PIX_MOM2, mxy
    tr = ixx + iyy
    det_term = np.sqrt(np.maximum(((ixx - iyy) / 2) ** 2 + ixy ** 2, 0))
    a2 = np.maximum(tr / 2 + det_term, 1e-6)
    b2 = np.maximum(tr / 2 - det_term, 1e-6)

    # donuts: a dip in the middle of the radial profile (a hole needs a blur several pixels
    # wide, so small stamps cannot hold one and skip the profile)
    dip = _ring_ratio(_radial_profiles(stamps, rr, R + 1), r90) if R >= 10 else np.zeros(n)
    ring = np.where(dip > 0, _annulus_ratio(r20, r80), 0.0)
    ring_prof, ring_r = ringfit.radial_profile(stamps, rr, R + 1) if R >= 10 else (np.zeros((n, 1)),) * 2
    return {
        "cx": cx, "cy": cy, "r50": r50, "r90": r90, "flux": flux, "flags": flags, "hfr_nina": hfr_nina,
        "a2": a2, "b2": b2, "ecc": np.sqrt(np.clip(1 - b2 / a2, 0, 1)), "theta": 0.5 * np.arctan2(2 * ixy, ixx - iyy),
        "ring": ring, "ring_prof": ring_prof, "ring_r": ring_r, "saturated": is_sat, "centre": stamps[:, R, R].astype(np.float64),
        "r_wing": r_wing, "r_wing90": r_wing90, **_wing_annuli(stamps, rr, R),
    }


def _constant_border(img: np.ndarray) -> tuple[int, int, int, int]:
    """Rows/columns of one constant value at the frame's edges: (top, bottom, left, right).

    Cut-outs, registered and cropped frames often carry a border of zeros. Its step down
    from the sky would be detected as a long "star" and the stars beside it called edge
    stars; measurement runs on the frame inside it instead.
    """
    H, W = img.shape

    def run(get, n):
        k = 0
        while k < n - 16:
            line = get(k)
            if line.min() != line.max():
                break
            k += 1
        return k

    top = run(lambda k: img[k], H)
    bottom = run(lambda k: img[H - 1 - k], H - top)
    left = run(lambda k: img[top:H - bottom, k], W)
    right = run(lambda k: img[top:H - bottom, W - 1 - k], W - left)
    return top, bottom, left, right


#: Flux fractions (of the light inside the aperture) at which the curve of growth is also
#: read, so the half-flux radius can be re-read against the light beyond the aperture.
_WING_FRACS = (0.525, 0.55, 0.575, 0.6)
#: the same for the 90 % radius (``outer_r``), so r90/r50 keeps its meaning (a halo)
_WING_FRACS_90 = (0.925, 0.95, 0.975)


@dataclass(frozen=True)
class WingConfig:
    """The light of a star's wings beyond its measuring aperture.

    Seeing (Kolmogorov, intensity ~ r^-11/3) and diffraction by the obstruction and the
    spider vanes (~ r^-3) carry 3-10 % of a small star's light beyond a few FWHM; a
    half-flux radius normalised to the light inside the aperture then reads 3-5 % low.
    The frame's bright stars give the wing's brightness at the aperture's edge and its
    log slope there; a power law extrapolates the missing share, ``2 pi R^2 I(R) / (alpha -
    2)``. The slope at the edge is steeper than far out, so the share is a lower bound.
    """

    #: fewest bright stars (SNR >= ``min_snr``) to estimate the wings from
    min_stars: int = 3
    min_snr: float = 50.0
    #: log slope clipped to this range (Kolmogorov 11/3, Airy 3; steeper = no wings)
    alpha_min: float = 3.0
    alpha_max: float = 8.0
    #: the share beyond the aperture at most this (the highest of ``_WING_FRACS`` x 2 - 1)
    max_share: float = 0.15


WING = WingConfig()


def _wing_annuli(stamps: np.ndarray, rr: np.ndarray, R: int) -> dict[str, np.ndarray]:
    """Mean intensity of two annuli at the stamp's edge: (0.6-0.8) and (0.8-1.0) of R-1."""
    rmax = R - 1.0
    a1 = (rr >= 0.6 * rmax) & (rr < 0.8 * rmax)
    a2 = (rr >= 0.8 * rmax) & (rr <= rmax)
    n1 = np.maximum(a1.sum(axis=(1, 2)), 1)
    n2 = np.maximum(a2.sum(axis=(1, 2)), 1)
    i1 = np.where(a1, stamps, 0).sum(axis=(1, 2), dtype=np.float64) / n1
    i2 = np.where(a2, stamps, 0).sum(axis=(1, 2), dtype=np.float64) / n2
    return {"wing_i1": i1, "wing_i2": i2}


def wing_share(flux: np.ndarray, snr: np.ndarray, i1: np.ndarray, i2: np.ndarray, R: int,
               config: WingConfig = WING) -> float:
    """The frame's share of star light beyond the aperture of radius ``R - 1`` (0 if unclear)."""
    rmax = R - 1.0
    if rmax < 4:
        return 0.0
    good = (snr >= config.min_snr) & (flux > 0) & (i1 > 0) & (i2 > 0) & (i1 > i2)
    if np.count_nonzero(good) < config.min_stars:
        return 0.0
    r1, r2 = 0.7 * rmax, 0.9 * rmax
    alpha = float(np.median(np.log(i1[good] / i2[good]) / math.log(r2 / r1)))
    alpha = min(max(alpha, config.alpha_min), config.alpha_max)
    edge = float(np.median(i2[good] / flux[good]))  # per unit of aperture flux, at r2
    share = 2.0 * math.pi * r2 ** 2 * edge / (alpha - 2.0) * (r2 / rmax) ** (alpha - 2.0)
    return float(min(max(share, 0.0), config.max_share))


def _reread_half_radius(r50: np.ndarray, r_wing: np.ndarray, share: float, *, frac: float = 0.5,
                        fracs: tuple[float, ...] = _WING_FRACS) -> np.ndarray:
    """Half-flux radius when ``share`` (of the aperture flux) lies beyond the aperture: the
    radius holding ``0.5 (1 + share)`` of the aperture's light, interpolated on the curve
    of growth read at ``fracs`` (``frac`` = 0.9 with ``_WING_FRACS_90`` for ``outer_r``;
    capped at the last fraction read)."""
    if share <= 0:
        return r50
    target = min(frac * (1.0 + share), fracs[-1])
    fr = np.array((frac,) + tuple(fracs))
    rad = np.column_stack([r50, r_wing])
    j = int(min(np.searchsorted(fr, target, side="right") - 1, len(fr) - 2))
    t = (target - fr[j]) / (fr[j + 1] - fr[j])
    out = rad[:, j] + t * (rad[:, j + 1] - rad[:, j])
    return np.where(np.isfinite(out), out, r50)


def measure_array(pixels: np.ndarray, header: Mapping[str, Any] | None = None, **kw: Any) -> "FrameStats":
    """Measure an in-memory image (tests, the simulator): :func:`measure` on a wrapped frame."""
    from focuswatch.model import frame_from_array

    return measure(frame_from_array(pixels, header, kw.pop("saturation_adu", None)), **kw)


def measure(frame: Frame, *, plate_scale_arcsec_px: float | None = None, max_stars: int = 3000,
            n_fit: int = 300, detect_thresh: float = 4.0, min_stars: int = MIN_STARS_FOR_STATS) -> FrameStats:
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
    """
    img = frame.pixels
    top, bottom, left, right = _constant_border(img)
    border_note: tuple[str, ...] = ()
    if top or bottom or left or right:
        img = img[top:img.shape[0] - bottom, left:img.shape[1] - right]
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
    objs, bkg, rms_small, n_rings = _detect(img, b, detect_thresh)
    noise = float(rms_small) * b  # white noise of one full-resolution pixel
    if len(objs) >= 3:
        bright = objs[objs["flux"] >= np.median(objs["flux"])]
        extent = float(np.median(np.maximum(bright["xmax"] - bright["xmin"], bright["ymax"] - bright["ymin"]) + 1)) * b
        if extent > _DETECT_LARGE_PX:
            b2 = max(b, int(round(extent / _DETECT_TARGET_SIZE)))
            if min(H, W) // b2 >= 16:
                objs, bkg, rms_small, n_rings = _detect(img, b2, detect_thresh,
                                                               box_px=max(128.0, 6.0 * extent),
                                                               kernel_sigma=max(1.0, extent / b2 / 5.0),
                                                               deblend_cont=0.05)
                b = b2
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
    blended |= extent_full > 1.8 * typ_extent + 2 * objs_b
    rejected["blended"] = int(np.count_nonzero(blended & inside))
    sel = order[(inside & ~blended)[order]][:n_keep]
    if len(sel) == 0:
        return empty("no isolated stars away from the edges", bkg_level, noise, n_det)
    ix, iy = ix[sel], iy[sel]
    n = len(sel)

    # ---- per-star measurements on full-resolution stamps, in batches (bounded memory)
    # only the background at the stars is needed: sep's map read as float32 (sep computes it
    # in float32; a float64 copy holds the same values, twice the size)
    back_map = bkg.back(dtype=np.float32)
    by = np.clip(((iy + 0.5) / b - 0.5).astype(np.int64), 0, back_map.shape[0] - 1)
    bx = np.clip(((ix + 0.5) / b - 0.5).astype(np.int64), 0, back_map.shape[1] - 1)
    local_bkg = back_map[by, bx].astype(np.float32)
    del back_map
    sat = frame.saturation_adu
    cx0 = (fx[sel] - ix).astype(np.float64)
    cy0 = (fy[sel] - iy).astype(np.float64)
    sw0 = np.clip(size_sigma[sel], 1.0, R / 2.0)
    # the nearest other detections: their light inside a stamp is masked (each pixel goes to
    # the nearer star), so a neighbour at the stamp's edge cannot inflate the radii
    k_nb = int(min(_N_NEIGHBOURS, len(fx) - 1))
    near_i, near_j, near_d = _neighbours_within(fx, fy, sel, 2.0 * R)
    if k_nb > 0:
        nbx, nby = _nearest_offsets(fx, fy, n, near_i, near_j, near_d, k_nb, 2.0 * R, ix, iy)
    else:
        nbx = nby = np.full((n, 1), 1e6)
    batch = max(64, _STAMP_BATCH_PIXELS // (S * S))
    parts = [_measure_stamps(img, ix[i:i + batch], iy[i:i + batch], local_bkg[i:i + batch], cx0[i:i + batch],
                             cy0[i:i + batch], sw0[i:i + batch], R, sat, nbx[i:i + batch], nby[i:i + batch])
             for i in range(0, n, batch)]
    m = {k: np.concatenate([pt[k] for pt in parts]) for k in parts[0]}
    cx, cy, r50, r90, tot_flux, flags = m["cx"], m["cy"], m["r50"], m["r90"], m["flux"], m["flags"]
    hfr_nina, a2, b2, ecc, theta, ring = m["hfr_nina"], m["a2"], m["b2"], m["ecc"], m["theta"], m["ring"]
    is_sat, centre = m["saturated"], m["centre"]

    # ---- signal to noise, hot pixels / cosmic rays, faint stars
    gain = frame.meta.gain if (frame.meta.gain and 0.05 < frame.meta.gain < 20) else 1.0
    area = math.pi * np.maximum(r90, 1.0) ** 2
    snr = tot_flux / np.sqrt(area * noise ** 2 + np.maximum(tot_flux, 0) / gain)
    # hot pixels and cosmic rays: far sharper than the optics allow (relative to the frame's
    # own typical star, since a defocused frame has no sharp stars at all)
    ok_r = r50[np.isfinite(r50) & (r50 > 0.6)]
    typical_r50 = float(np.median(ok_r)) if len(ok_r) else 1.0
    hot = (r50 < max(0.6, 0.5 * typical_r50)) | (centre > 0.6 * np.maximum(tot_flux, 1e-12))
    # cosmic-ray tracks are lines: long, but far thinner than any star's minor axis
    minor = np.sqrt(b2)
    typical_minor = float(np.median(minor[~hot])) if np.any(~hot) else 1.0
    hot |= (minor < 0.45 * typical_minor) & (ecc > 0.95)
    faint = (snr < 5) | ~np.isfinite(r50) | (tot_flux <= 0) | (flags != 0) & (r50 <= 0)
    rejected["saturated"] = int(np.count_nonzero(is_sat))
    rejected["hot_pixel"] = int(np.count_nonzero(hot & ~is_sat))
    rejected["faint"] = int(np.count_nonzero(faint & ~hot & ~is_sat))
    keep = ~is_sat & ~hot & ~faint
    if np.count_nonzero(keep) < 1:
        return empty("no measurable stars (all saturated, hot pixels or too faint)", bkg_level, noise, n_det)

    # light in the wings beyond the aperture (seeing, diffraction): the frame's bright
    # stars say how much, and every star's half-flux radius is re-read against it
    # (only stars with no other detection within two stamp radii: a neighbour's light at
    # the stamp's edge would pass for wings)
    # nearest other detection farther than 2 R <=> none within 2 R
    crowded = np.zeros(n, bool)
    crowded[near_i] = True
    alone = keep & ~crowded
    share = wing_share(tot_flux[alone], snr[alone], m["wing_i1"][alone], m["wing_i2"][alone], R)
    r_half = _reread_half_radius(r50, m["r_wing"], share)
    r90 = _reread_half_radius(r90, m["r_wing90"], share, frac=0.9, fracs=_WING_FRACS_90)
    hfr = np.sqrt(np.maximum(r_half ** 2 - _PIX_HFR2, 0.01))

    # ---- Moffat FWHM on bright, unsaturated, isolated stars spread over the 3x3 grid
    fwhm = np.full(n, np.nan)
    beta = np.full(n, np.nan)
    zone_of = (np.minimum((fy[sel] * 3 / H).astype(int), 2) * 3 + np.minimum((fx[sel] * 3 / W).astype(int), 2))
    cand = np.nonzero(keep & (snr > 20))[0]
    if len(cand) == 0:
        cand = np.nonzero(keep)[0]
    per_zone = max(5, n_fit // 9)
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
        rr_p = _offsets(cx[pick], cy[pick], R)[2]
        rp = rr_p[:, win, win].reshape(kp, -1)
        vp = st_p[:, win, win].reshape(kp, -1).astype(np.float64)
        amp0 = np.maximum(st_p[:, R, R], 1e-3).astype(np.float64)
        nb = int(math.ceil(rfit.max() / 0.25)) + 1
        binr = np.minimum((rp / 0.25).astype(np.int64), nb - 1)
        use = rp <= rfit[:, None]
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
        ok &= (fw > 0.5) & (fw < 4 * R)
        fwhm[pick[ok]] = fw[ok]
        beta[pick[ok]] = bet[ok]

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
                                                                tot_flux[k], ringfit.diffraction_px(frame.meta, scale))
    stars["outer_r"] = r90[k] * scale
    extra = border_note + ((f"{n_rings} donut(s) reassembled from arcs split by spider-vane shadows",)
                           if n_rings else ())
    H0, W0 = frame.pixels.shape
    return summarize(stars, frame=frame, width_px=int(W0 * scale), height_px=int(H0 * scale),
                     background_adu=bkg_level, noise_adu=noise, n_detected=n_det, n_rejected=rejected,
                     plate_scale_arcsec_px=plate_scale_arcsec_px, min_stars=min_stars, extra_notes=extra)


def _drop_size_outliers(stars: np.ndarray) -> np.ndarray:
    """Leave out stars whose size is far from the rest: merged pairs the detection could not
    split, or a neighbour's light in the aperture. The window is wide (4 robust sigmas of
    log HFR, at least a factor 1.6 either way) so a tilted or curved field keeps its corners.
    """
    if len(stars) < 5:
        return stars
    lg = np.log(np.maximum(stars["hfr"], 1e-3))
    med = float(np.median(lg))
    mad = _mad_std(lg)
    keep = np.abs(lg - med) <= max(math.log(1.6), 4.0 * mad)
    return stars[keep] if np.count_nonzero(keep) >= _MIN_STARS_FOR_STATS else stars


def _shape_sample(stars: np.ndarray) -> np.ndarray:
    """The stars whose shape is worth a median: noise makes faint stars look elongated.

    The eccentricity that noise alone gives a round star falls roughly as 1/SNR (0.54 at
    SNR 5-20, 0.28 at 50-100, 0.12 above 300 on simulated round stars), so shape figures
    use stars with SNR >= 50, or the brightest third when there are fewer than five.
    """
    bright = stars[stars["snr"] >= 50]
    if len(bright) >= 5:
        return bright
    k = max(1, len(stars) // 3)
    return stars[np.argsort(-stars["snr"])[:k]]


from focuswatch.numerics import finite_median as _med  # noqa: E402 - the one median helper


def _fmt_px(v: float | None) -> str:
    return "?" if v is None else f"{v:.1f} px"


@dataclass(frozen=True)
class ShapeConfig:
    """When a frame's eccentricity can be believed.

    Second moments of a star a pixel or two wide are dominated by where the star falls on
    the pixel grid: a round star of FWHM 1.5 px reads eccentricity 0.3-0.6 depending on its
    sub-pixel phase, and a trail shorter than a pixel does not show at all. The median of
    many stars cancels part of that, so the FWHM floor is lower with many bright stars.
    """

    #: below this median FWHM (px) one star's shape is pixel noise
    min_fwhm_px: float = 2.5
    #: with at least ``many_stars`` bright stars the floor drops to this
    min_fwhm_many_px: float = 2.0
    many_stars: int = 20
    #: fewest bright stars for any shape claim
    min_stars: int = 3


SHAPE = ShapeConfig()


def elongation_reliable(shape_stars: np.ndarray, config: ShapeConfig = SHAPE) -> bool:
    """Whether the eccentricity of these (bright) stars can support an elongation claim.

    ``shape_stars`` is the sample the frame's eccentricity comes from. The FWHM used is the
    fitted one where available, else ``2 * hfr`` (a Gaussian's HFD equals its FWHM).
    """
    if len(shape_stars) < config.min_stars:
        return False
    fw = shape_stars["fwhm"]
    fw = np.where(np.isfinite(fw) & (fw > 0), fw, 2.0 * shape_stars["hfr"])
    floor = config.min_fwhm_many_px if len(shape_stars) >= config.many_stars else config.min_fwhm_px
    return bool(np.median(fw) >= floor)


def hfr_uncertainty_px(stars: np.ndarray) -> float | None:
    """1-sigma uncertainty of the frame's median HFR (px).

    Per star the photon/sky noise gives ``sigma_i ~ hfr_i / SNR_i`` (the half-flux radius
    moves by about its own size over the SNR; checked against repeated noise draws in the
    tests). One star: that. A few: the per-star errors combined as for a mean, times 1.25
    for the median. Five or more: the larger of that and the observed scatter (1.4826 MAD)
    over sqrt(n), also times 1.25, so real star-to-star differences (field curvature,
    blends) count too.
    """
    if len(stars) == 0:
        return None
    hfr = stars["hfr"]
    snr = np.maximum(stars["snr"], 1.0)
    per = hfr / snr
    n = len(stars)
    if n == 1:
        return float(per[0])
    noise = 1.2533 * math.sqrt(float(np.sum(per ** 2))) / n
    if n < 5:
        return noise
    mad = _mad_std(hfr)
    return max(noise, 1.2533 * mad / math.sqrt(n))


def summarize(stars: np.ndarray, *, frame: Frame | None = None, width_px: int, height_px: int,
              background_adu: float | None = None, noise_adu: float | None = None, n_detected: int = 0,
              n_rejected: Mapping[str, int] | None = None, plate_scale_arcsec_px: float | None = None,
              min_stars: int = MIN_STARS_FOR_STATS, extra_notes: tuple[str, ...] = ()) -> FrameStats:
    """Frame medians and the 3x3 zones from a per-star table (also used on filtered tables).

    Medians use stars with SNR >= 10 when there are enough of them, so faint noisy stars do
    not drag the frame figure around. With fewer than ``min_stars`` stars the frame gets
    no figures (``reason`` says so). ``hfr_err_px`` says how far the frame's HFR can be
    trusted (see :func:`hfr_uncertainty_px`): with one or two stars it is their photon
    noise, with many the star-to-star scatter over sqrt(n).
    """
    meta = frame.meta if frame is not None else FrameMeta()
    file = str(frame.path) if frame is not None and frame.path is not None else None
    notes = (tuple(frame.notes) if frame is not None else ()) + tuple(extra_notes)
    min_stars = max(1, int(min_stars))
    if len(stars) < min_stars:
        return FrameStats(file=file, n_stars=int(len(stars)), background_adu=background_adu, noise_adu=noise_adu,
                          width_px=width_px, height_px=height_px, plate_scale_arcsec_px=plate_scale_arcsec_px,
                          n_detected=n_detected, n_rejected=dict(n_rejected or {}),
                          reason=f"only {len(stars)} measurable stars (need {min_stars})",
                          notes=notes, meta=meta, stars=stars)
    good = stars[stars["snr"] >= 10] if np.count_nonzero(stars["snr"] >= 10) >= _MIN_STARS_FOR_STATS else stars
    good = _drop_size_outliers(good)
    hfr = _med(good["hfr"])
    fwhm = _med(good["fwhm"])
    fitted = good[np.isfinite(good["fwhm"]) & (good["fwhm"] > 0)]
    ratio = _med(2.0 * fitted["hfr"] / fitted["fwhm"]) if len(fitted) else None
    rings = good["ring"]
    ring_ratio = ringfit.frame_ring_ratio(rings, good["ring_ok"], len(good))
    zones = []
    zr = np.minimum((good["y"] * 3 / height_px).astype(int), 2)
    zc = np.minimum((good["x"] * 3 / width_px).astype(int), 2)
    for r_ in range(3):
        for c_ in range(3):
            z = good[(zr == r_) & (zc == c_)]
            zones.append(Zone(r_, c_, int(len(z)), _med(z["hfr"]) if len(z) else None,
                              _med(z["fwhm"]) if len(z) else None, _med(_shape_sample(z)["ecc"]) if len(z) else None))
    ps = plate_scale_arcsec_px
    shape = _shape_sample(good)
    reliable = elongation_reliable(shape)
    ecc = _med(shape["ecc"])
    if not reliable and len(shape):
        why = (f"only {len(shape)} bright star(s) for the shape figures" if len(shape) < SHAPE.min_stars else
               f"stars too small to show their shape (median FWHM {_fmt_px(_med(shape['fwhm']))})")
        notes = notes + (f"{why}: eccentricity is not evidence of trailing, wind or collimation",)
    return FrameStats(
        file=file, n_stars=int(len(stars)), hfr_px=hfr, hfr_nina_px=_med(good["hfr_nina"]), fwhm_px=fwhm,
        eccentricity=ecc, profile_ratio=ratio, ring_ratio=ring_ratio,
        hfr_err_px=hfr_uncertainty_px(good), elongation_reliable=reliable,
        star_flux_adu=_med(good["flux"]), background_adu=background_adu, noise_adu=noise_adu,
        width_px=width_px, height_px=height_px, plate_scale_arcsec_px=ps,
        hfr_arcsec=hfr * ps if (hfr is not None and ps) else None,
        fwhm_arcsec=fwhm * ps if (fwhm is not None and ps) else None,
        zones=tuple(zones), n_detected=n_detected, n_rejected=dict(n_rejected or {}), reason=None,
        notes=notes, meta=meta, stars=stars)
