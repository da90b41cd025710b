"""Finding the stars: sky background and source extraction with sep on a block-averaged
copy of the frame, and putting donuts back together when sep splits them.

Two repairs follow sep's extraction. A donut whose ring is brighter on one side is
deblended into pieces of one footprint with a hole (:func:`_merge_holed`); a donut cut by
spider-vane shadows is detected as separate arcs around one centre (:func:`_merge_rings`,
tuned by :class:`RingMergeConfig`). When the coarse second pass joins whole stars of a
crowded field into one object, :func:`_split_merged_groups` puts back the first pass's
stars (:class:`GroupSplitConfig`). :func:`_constant_border` finds the zero border of
cropped frames, which must not be detected as a star.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from focuswatch.model.numerics import median_in_place
from focuswatch.stars.neighbours import _candidate_pairs, _components


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
        if img.dtype == np.float32:
            # the first two rows (and columns, below) added straight into a new array: no copy
            # to add onto (a fifth of the time on a 61 Mpx frame)
            acc = np.add(rows[:, 0, :], rows[:, 1, :])
        else:  # other types: each row added in the precision numpy picks for float32 += row
            acc = rows[:, 0, :].astype(np.float32, copy=True)
            acc += rows[:, 1, :]
        for i in range(2, b):
            acc += rows[:, i, :]
        cols = acc[:, :w * b].reshape(r1 - r0, w, b)
        strip = out[r0:r1]
        np.add(cols[:, :, 0], cols[:, :, 1], out=strip)
        for j in range(2, b):
            strip += cols[:, :, j]
    out *= np.float32(1.0 / (b * b))
    return out


#: the coarse pass's sky mesh must fit this many times across the binned image, or the sky
#: is one flat level: two or three meshes, each a disk or two wide, are each raised by the
#: disk they hold and sep's spline between them swings by tens of ADU (766-940 ADU over a
#: 480 px frame of 100 px disks, where the sky was 800)
_MIN_MESHES_ACROSS = 4


def _background(small: np.ndarray, box_binned_px: float, *, flat_if_few: bool = False):
    """sep's sky model with a mesh of ``box_binned_px`` (16-512, at most half the image);
    with ``flat_if_few`` (large stars), one flat level when the mesh does not fit
    ``_MIN_MESHES_ACROSS`` times across the image."""
    import sep

    if not small.flags.writeable:
        # sep's Cython buffers ask for writable memory even to read (sep 1.4: "buffer source
        # array is read-only"): a read-only frame measured unbinned (a memory map, a user's
        # array) is read through a copy, at most the 4 Mpx detection limit
        small = np.array(small)
    box = int(max(16, min(512, round(box_binned_px))))
    if flat_if_few and box * _MIN_MESHES_ACROSS > min(small.shape):
        return sep.Background(small, bw=max(small.shape), bh=max(small.shape), fw=1, fh=1)
    box = min(box, max(8, min(small.shape) // 2))
    return sep.Background(small, bw=box, bh=box, fw=3, fh=3)


class _Sky:
    """sep's sky model of a binned image with its float32 map evaluated once.

    Detection subtracts the map and measuring reads it under each star: sep evaluates its
    spline over the whole image on every ``back()`` call (0.017 CPU-s on a 4 Mpx binned
    image), so the map is kept from the subtraction. Reads as the ``sep.Background`` it wraps.
    """

    def __init__(self, bkg: Any, back: np.ndarray):
        self._bkg = bkg
        self._back = back

    def back(self, dtype: Any = np.float64) -> np.ndarray:
        """The sky map (the kept float32 map when ``dtype`` is float32; not to be modified)."""
        if np.dtype(dtype) == np.float32:
            return self._back
        return self._bkg.back(dtype=dtype)

    def __getattr__(self, name: str) -> Any:  # globalback, globalrms, rms(), ...
        return getattr(self._bkg, name)


def _detect(img: np.ndarray, b: int, thresh: float, *, box_px: float = 128.0, kernel_sigma: float | None = None,
            deblend_cont: float = 0.005, binned: np.ndarray | None = None):
    """Background + source extraction on the ``b``-binned image (sep).

    ``box_px`` is the background mesh in full-resolution pixels (it must be several times
    the stars' size or their light leaks into the sky level); ``kernel_sigma`` (binned px)
    replaces sep's default 3x3 matched filter by a Gaussian fitted to large stars.
    Donuts that sep split into arcs are put together again (:func:`_merge_rings`).
    ``binned``: ``_block_mean(img, b)`` when the caller made it already (a copy this call may
    consume: the sky comes off it in place).
    Returns (objects, background, noise of a binned pixel, rings merged); the background is
    a :class:`_Sky`, whose float32 map is the one subtracted here.
    """
    import sep

    small = _block_mean(img, b) if binned is None else binned
    bkg = _background(small, box_px / b, flat_if_few=kernel_sigma is not None)
    back = bkg.back(dtype=np.float32)
    if b > 1 and small.dtype == np.float32:
        sub = small  # a fresh binned copy: the sky comes off in place (the same float32 subtraction as sep's subfrom)
        np.subtract(sub, back, out=sub)
    else:
        sub = small - back
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
        objs = _extract_with_stack(sep, sub, thresh, kw, max(_PIXSTACK_FULL, sub.size // 2))
    except Exception as exc:  # sep raises bare Exception on pixel-stack overflow
        if "pixel buffer" in str(exc) or "object buffer" in str(exc) or "limit" in str(exc):
            objs = sep.extract(sub, thresh * 3, **kw)
        else:
            raise
    objs, n_holed = _merge_holed(objs, sub, thresh, kw)
    objs, n_rings, _ = _merge_rings(objs, sub.shape[1], sub.shape[0])
    return objs, _Sky(bkg, back), rms, n_rings + n_holed


#: sep's pixel stack for a first extraction. sep allocates and writes the whole stack on every
#: call: half the binned image (2M entries, ~80 MB on a 61 Mpx frame) is asked for only when
#: this one overflows, which a star field never does (none of the ~830 extractions of
#: test_stars, test_crowded, test_donut, test_stars_galsim and test_physoptics, donuts and
#: large disks included, needed more). A third of sep's own default (300 000): inside
#: ``measure`` the larger stack came back as fresh pages on every frame (IMX455: ~3000 page
#: faults, 0.007 CPU-s of the 0.30); the objects found do not depend on the stack's size
_PIXSTACK_FIRST = 100_000
#: the least full stack (sep's default, as before the smaller first try): a small frame
#: whose first try overflows gets the stack it always had
_PIXSTACK_FULL = 300_000


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
    # every arc is elongated: a group with a round member is no ring (on a focused field that
    # is nearly every group: the loop below then runs over a handful, not over hundreds)
    round_member = np.bincount(label, weights=objs["a"] / np.maximum(objs["b"], 1e-3) < config.arc_elongation_min,
                               minlength=n_comp) > 0
    for comp in np.nonzero((sizes >= 2) & ~round_member)[0]:
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


@dataclass(frozen=True)
class GroupSplitConfig:
    """When the coarse second detection pass has joined whole stars into one object.

    The second pass (a coarser grid, a Gaussian matched filter as wide as a fifth of a
    star) is far more sensitive to faint light than the first: in a crowded field of donuts
    the seeing wings and the diffraction of the spider vanes between neighbours reach its
    threshold, and several donuts a few tens of pixels apart come out as one footprint that
    sep does not deblend (a donut's arcs hold too little of the group's light). The first
    pass, at full resolution, had them apart and whole. Such a group is put back as the
    first pass's stars; arcs and faint companions of the first pass are left out, as they
    were inside the group, and so are whole stars that touch one another.
    """

    #: a second-pass object wider than this many typical star extents (plus two binned
    #: pixels) is a group: the bound at which :func:`~focuswatch.stars.measuring.measure`
    #: calls an object a merged group and rejects it as blended
    group_extent: float = 1.8
    #: a first-pass object at least this share of the typical extent is a whole star (a
    #: donut's arc or a faint star is smaller)
    whole_share: float = 0.7
    #: fewest whole first-pass stars in a group for it to be split into them
    min_whole: int = 2
    #: the whole stars hold at least this share of the first pass's light in the group (a
    #: donut the first pass left in arcs would be lost)
    whole_flux_share: float = 0.9
    #: whole stars closer to another whole star than this share of the sum of their two
    #: half-extents touch it: they are left out (they would be rejected as blended, and
    #: pieces of overlapping donuts look whole), and a group needs ``min_whole`` apart
    min_gap_share: float = 1.0


GROUP_SPLIT = GroupSplitConfig()


def _rebin_objects(objs: np.ndarray, b_from: int, b_to: int, width: int, height: int) -> np.ndarray:
    """sep objects found on the ``b_from``-binned image in the coordinates of the
    ``b_to``-binned one (``width`` x ``height``): centre, box, moments and flux (the fields
    measuring reads); a box rounds outward to whole binned pixels."""
    s = b_from / b_to
    out = objs.copy()
    for c in ("x", "y"):
        out[c] = (objs[c] + 0.5) * s - 0.5
    for lo, hi, n in (("xmin", "xmax", width), ("ymin", "ymax", height)):
        out[lo] = np.clip(np.floor(objs[lo] * s), 0, n - 1)
        out[hi] = np.clip(np.ceil((objs[hi] + 1) * s) - 1, 0, n - 1)
    for c in ("a", "b"):
        out[c] = objs[c] * s
    for c in ("x2", "y2", "xy", "flux", "cflux"):
        out[c] = objs[c] * s * s  # flux: the binned image holds block means
    out["npix"] = np.maximum(np.rint(objs["npix"] * s * s), 1)
    return out


def _split_merged_groups(coarse: np.ndarray, b_coarse: int, fine: np.ndarray, b_fine: int, extent_px: float,
                         width: int, height: int, config: GroupSplitConfig = GROUP_SPLIT) -> tuple[np.ndarray, int]:
    """Replace each group of the coarse pass (``b_coarse``, a ``width`` x ``height`` binned
    image) that holds at least ``config.min_whole`` whole stars of the fine pass
    (``b_fine``) apart from one another by those stars (see :class:`GroupSplitConfig`); ``extent_px`` is the
    typical star's extent (full-resolution px). Returns (objects, number of groups split).
    """
    if not len(coarse) or not len(fine):
        return coarse, 0
    ext_c = (np.maximum(coarse["xmax"] - coarse["xmin"], coarse["ymax"] - coarse["ymin"]) + 1) * b_coarse
    groups = np.nonzero(ext_c > config.group_extent * extent_px + 2 * b_coarse)[0]
    ext_f = (np.maximum(fine["xmax"] - fine["xmin"], fine["ymax"] - fine["ymin"]) + 1) * b_fine
    is_whole = ext_f >= config.whole_share * extent_px
    if not len(groups) or not np.any(is_whole):
        return coarse, 0
    # the fine objects' centres in coarse pixels; each belongs to the coarse object nearest to
    # it among those whose box holds it (boxes of a crowded field overlap: a star beside a
    # group is its own coarse object's)
    wx = (fine["x"] + 0.5) * b_fine / b_coarse - 0.5
    wy = (fine["y"] + 0.5) * b_fine / b_coarse - 0.5
    inside = ((wx[:, None] >= coarse["xmin"][None, :] - 0.5) & (wx[:, None] <= coarse["xmax"][None, :] + 0.5)
              & (wy[:, None] >= coarse["ymin"][None, :] - 0.5) & (wy[:, None] <= coarse["ymax"][None, :] + 0.5))
    d2 = np.where(inside, (wx[:, None] - coarse["x"][None, :]) ** 2 + (wy[:, None] - coarse["y"][None, :]) ** 2,
                  np.inf)
    owner = np.where(inside.any(axis=1), np.argmin(d2, axis=1), -1)
    flux = np.maximum(fine["flux"].astype(np.float64), 0.0)
    fx, fy = (fine["x"] + 0.5) * b_fine, (fine["y"] + 0.5) * b_fine
    keep = np.ones(len(coarse), bool)
    taken = []
    for k in groups:
        mine = owner == k
        members = np.nonzero(mine & is_whole)[0]
        if len(members) < config.min_whole:
            continue
        if flux[members].sum() < config.whole_flux_share * flux[mine].sum():
            continue
        d = np.hypot(fx[members, None] - fx[None, members], fy[members, None] - fy[None, members])
        reach = 0.5 * (ext_f[members, None] + ext_f[None, members])
        np.fill_diagonal(d, np.inf)
        apart = members[~np.any(d < config.min_gap_share * reach, axis=1)]
        if len(apart) < config.min_whole:
            continue
        keep[k] = False
        taken.append(apart)
    if not taken:
        return coarse, 0
    stars = _rebin_objects(fine[np.concatenate(taken)], b_fine, b_coarse, width, height)
    return np.concatenate([coarse[keep], stars.astype(coarse.dtype)]), len(taken)


@dataclass(frozen=True)
class LargeStarProbeConfig:
    """Looking for large, faint stars that the full-resolution detection missed or cut up.

    A star defocused into a disk tens of pixels across spreads its light so thin that no
    single pixel reaches the first pass's threshold: an 80 mm f/6 refractor 10 CFZ out of
    focus makes 67 px disks of 10-60 e-/px on a 300 e- sky. The first pass then finds nothing,
    or only noise-lifted bits of the disks' rims (a few px each), or two deblended halves of
    the brightest one, and the typical extent it reports is far too small for the coarse
    second pass, which alone sees such disks whole. A probe on a coarser grid with a broad
    matched filter sees them whole; a large object of the probe is a missed star when the
    first pass has no whole star in it and its pieces there hold little of its light (a
    group of small focused stars that the probe joins is held by its stars: they stay).
    """

    #: the probe's grid: this many binned pixels across a star of the "large" size, at
    #: least twice the first pass's binning, and at most ``max_pixels`` binned pixels (it runs
    #: on every frame: ~0.02 CPU-s on a 61 Mpx frame, binned from the first pass's 4x4 blocks;
    #: there the first pass already sees disks 16x fainter per pixel than on a small frame)
    px_per_large_star: float = 8.0
    max_pixels: int = 500_000
    #: its matched filter: a Gaussian of this many binned pixels (sigma)
    kernel_sigma_binned: float = 1.5
    #: its sky mesh (full-resolution px): several times the largest disks looked for, so
    #: their light does not raise the sky level
    box_px: float = 512.0
    #: a first-pass object at least this share of a large object's extent holds it whole
    whole_share: float = 0.7
    #: the first pass's objects inside a large one hold less than this share of its light
    #: when they are only bits of it
    pieces_flux_share: float = 0.5
    #: a large star is round and filled: its footprint covers at least this share of the
    #: ellipse inscribed in its box, and it is at most this elongated (a/b); nebulae and
    #: galaxies' irregular glow do not count
    min_fill: float = 0.5
    max_elongation: float = 1.5


LARGE_PROBE = LargeStarProbeConfig()

#: a normal distribution's sigma over its median absolute deviation
_MAD_TO_SIGMA = 1.4826
#: rows of the binned image the noise figure of :func:`_robust_rms` reads (at most ~2x this)
_RMS_ROWS = 200


def _robust_rms(sub: np.ndarray) -> float:
    """Pixel noise of a sky-subtracted image from differences of pixels two apart (robust:
    median absolute deviation). Flat disks cancel out of the differences, while they
    inflate sep's sky rms (disks covering a quarter of a small frame doubled it)."""
    step = max(1, sub.shape[0] // _RMS_ROWS)  # a few hundred rows are plenty for a noise figure
    diff = (sub[::step, 2:] - sub[::step, :-2]).ravel()
    # diff and dev are ours to reorder: np.median's figures, one partition each (median_in_place)
    dev = np.abs(diff - median_in_place(diff))
    return float(_MAD_TO_SIGMA * median_in_place(dev) / math.sqrt(2.0))


def _points_in_boxes(x: np.ndarray, y: np.ndarray, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray,
                     y1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (point, box) pair with ``x0 <= x <= x1`` and ``y0 <= y <= y1`` (bounds
    included), as (point index, box index), sorted by box then point.

    A sweep over the points sorted by x: each box looks only at the points in its x range
    (a few per box on a star field), so thousands of points and boxes need no dense
    points x boxes matrix.
    """
    if not len(x) or not len(x0):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ox = np.argsort(x, kind="stable")
    xs = x[ox]
    lo = np.searchsorted(xs, x0, side="left")
    hi = np.searchsorted(xs, x1, side="right")
    n_per = np.maximum(hi - lo, 0)
    box = np.repeat(np.arange(len(x0)), n_per)
    start = np.repeat(lo - np.concatenate([[0], np.cumsum(n_per)[:-1]]), n_per)
    pt = ox[start + np.arange(len(box))]
    ok = (y[pt] >= y0[box]) & (y[pt] <= y1[box])
    box, pt = box[ok], pt[ok]
    o = np.lexsort((pt, box))
    return pt[o], box[o]


def _probe_grid(shape: tuple[int, int], b: int, large_px: float, config: LargeStarProbeConfig = LARGE_PROBE) -> int:
    """The large-star probe's binning (full-resolution px per probe px) for a frame of
    ``shape`` whose first pass ran on ``b``-binned pixels."""
    H, W = shape
    return max(2 * b, int(math.ceil(large_px / config.px_per_large_star)),
               int(math.ceil(math.sqrt(H * W / config.max_pixels))))


def _probe_image(img: np.ndarray, b: int, large_px: float, config: LargeStarProbeConfig = LARGE_PROBE, *,
                 binned: np.ndarray | None = None) -> np.ndarray | None:
    """The frame binned onto the probe's grid (:func:`_probe_grid`), or None when that grid
    is too coarse for the frame (fewer than 16 probe px across).

    ``binned`` is the first pass's ``_block_mean(img, b)`` (before its sky came off): when
    the probe's grid is a whole number of those blocks it is binned from that, not from the
    whole frame again (on a 61 Mpx frame 16x fewer pixels to read). Measuring makes this
    before the first pass takes its sky off the binned image in place, so the first pass
    needs no copy of it (15 MB on a 61 Mpx frame).
    """
    H, W = img.shape
    bp = _probe_grid(img.shape, b, large_px, config)
    if min(H, W) // bp < 16:
        return None
    if binned is not None and b > 1 and bp % b == 0:
        return _block_mean(binned, bp // b)  # the same block means (cropping agrees: floor(floor(H/b)/k) = H//bp)
    return _block_mean(img, bp)


def _large_star_probe(img: np.ndarray, b: int, fine: np.ndarray, thresh: float, large_px: float,
                      config: LargeStarProbeConfig = LARGE_PROBE, *,
                      binned: np.ndarray | None = None, probe_binned: np.ndarray | None = None) -> float | None:
    """The typical extent (full-resolution px) of the frame's stars when large stars were
    missed or cut up by the first pass (``fine``, found on the ``b``-binned image), else None.

    ``binned`` is the first pass's ``_block_mean(img, b)`` (before its sky came off; not
    modified), or ``probe_binned`` the frame already on the probe's grid
    (:func:`_probe_image`; not modified): see :func:`_probe_image`.

    The catalogue of "stars" is the probe's large objects that the first pass does not hold
    whole (see :class:`LargeStarProbeConfig`) plus the first pass's objects outside them;
    its typical extent is the median over the brighter half, as for the first pass.
    """
    import sep

    bp = _probe_grid(img.shape, b, large_px, config)
    small = probe_binned if probe_binned is not None else _probe_image(img, b, large_px, config, binned=binned)
    if small is None:
        return None
    bkg = _background(small, config.box_px / bp, flat_if_few=True)
    sub = np.ascontiguousarray(small - bkg.back(dtype=np.float32), dtype=np.float32)
    del small
    # the noise of a binned pixel from differences of pixels two apart: a flat disk cancels
    # out of them, while it inflates sep's sky rms (disks covering a quarter of a small frame
    # doubled it, and hid every disk below the threshold)
    rms = _robust_rms(sub)
    if not math.isfinite(rms) or rms <= 0:
        return None
    ks = config.kernel_sigma_binned
    k = int(math.ceil(3 * ks))
    ax = np.arange(-k, k + 1)
    kernel = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * ks * ks)).astype(np.float32)
    # sep compares the filtered image (the kernel normalised to sum 1) with ``thresh * err``:
    # err is the filtered image's noise, so the threshold is in units of what the filter sees
    err = rms * float(np.sqrt(np.sum(kernel.astype(np.float64) ** 2)) / np.sum(kernel))
    sep.set_sub_object_limit(4096)
    try:
        # no deblending (one threshold level: a third of the time on a field of 1000 stars)
        probe = _extract_with_stack(sep, sub, thresh, dict(err=err, minarea=4, deblend_nthresh=1, clean=True,
                                                            filter_kernel=kernel), max(_PIXSTACK_FULL, sub.size // 2))
    except Exception:  # noqa: BLE001 - sep raises bare Exception on buffer limits: no probe then
        return None
    if not len(probe):
        return None
    ext_p = (np.maximum(probe["xmax"] - probe["xmin"], probe["ymax"] - probe["ymin"]) + 1).astype(np.float64) * bp
    flux_p = probe["flux"].astype(np.float64) * bp * bp
    box_area = (probe["xmax"] - probe["xmin"] + 1.0) * (probe["ymax"] - probe["ymin"] + 1.0)
    round_ = ((probe["npix"] >= config.min_fill * 0.25 * math.pi * box_area)
              & (probe["a"] <= config.max_elongation * np.maximum(probe["b"], 1e-3)))
    big = np.nonzero((ext_p > large_px) & round_)[0]
    if not len(big):
        return None
    # the first pass's objects in full-resolution px, and which large probe box holds each
    if len(fine):
        fx = (fine["x"] + 0.5) * b
        fy = (fine["y"] + 0.5) * b
        ext_f = (np.maximum(fine["xmax"] - fine["xmin"], fine["ymax"] - fine["ymin"]) + 1).astype(np.float64) * b
        flux_f = np.maximum(fine["flux"].astype(np.float64), 0.0) * b * b
    else:
        fx = fy = ext_f = flux_f = np.zeros(0)
    x0, x1 = probe["xmin"][big] * bp, (probe["xmax"][big] + 1) * bp
    y0, y1 = probe["ymin"][big] * bp, (probe["ymax"][big] + 1) * bp
    f_of, c_of = _points_in_boxes(fx, fy, x0, x1, y0, y1)
    # per large object: does a whole first-pass star sit in its box, and the light of the
    # first pass's objects there (on a focused field of 3000 stars most probe objects count
    # as large: one numpy pass over the pairs, not a Python loop over 1400 boxes)
    whole = np.zeros(len(big), bool)
    whole[c_of[ext_f[f_of] >= config.whole_share * ext_p[big[c_of]]]] = True
    pieces = np.bincount(c_of, weights=flux_f[f_of], minlength=len(big))
    missed_arr = np.nonzero(~whole & (pieces < config.pieces_flux_share * flux_p[big]))[0]
    if not len(missed_arr):
        return None
    in_missed = np.zeros(len(big), bool)
    in_missed[missed_arr] = True
    outside = np.ones(len(fx), bool)
    outside[f_of[in_missed[c_of]]] = False
    ext = np.concatenate([ext_p[big[missed_arr]], ext_f[outside]])
    flux = np.concatenate([flux_p[big[missed_arr]], flux_f[outside]])
    typical = float(np.median(ext[flux >= np.median(flux)]))
    return typical if typical > large_px else None


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
