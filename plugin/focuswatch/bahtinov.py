"""Bahtinov mask analysis: find the three diffraction spikes, measure the focus error.

Pure computation: an image array (and the rig) in, a :class:`BahtinovResult` out.

Method
------
1. The brightest star (maximum of a Gaussian-smoothed image) is the origin. Its core is
   masked out (radius from the azimuthal median profile): the spikes are measured where
   they stand apart.
2. A Radon-style scan: every pixel of the background-subtracted, square-root-stretched
   star votes, for each normal angle 0-180 deg in 0.5 deg steps, into a 1 px bin of its
   distance from the star along that normal. A spike through the star piles into one bin;
   the peaks of the best bin against angle are the spikes (3 for a Bahtinov mask; 5 or more
   mean a Tri-Bahtinov, which is detected and reported but not measured).
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
side of the outer spikes' crossing. With the mask as :mod:`focuswatch.simmask` renders it
(single-grating half on the -x side of the pupil as mapped onto the image) a positive
offset means the sensor is *beyond* focus (too far out); so ``focus_error_um`` > 0 means
"move the focuser inward". A mask turned by 180 deg, or a camera/diagonal that mirrors
the image, flips the sign: nothing in the spike pattern tells those apart, so check once
(rack the focuser out a little: the advice must say "inward") and set ``reverse``.

Conversion
----------
Bahtinov Grabber's empirical constant (design.md section 5)::

    k [px/um] = (9/32) * D / (f * pixel_um) * (1 + cos 45 deg * (1 + tan b))

with ``b`` half the angle between the outer spikes (measured). Against the Fourier-optics
simulation of :mod:`focuswatch.simmask` (200 mm f/5, eps 0.33, 3.76 um pixels, b = 20 deg,
broadband 420-680 nm) see docs/bahtinov.md for the measured slope; a user-calibrated
``px_per_um`` overrides the formula. "In focus" means ``|error| <= CFZ / 2``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np

from focuswatch.optics import Rig

#: Normal angles scanned by the coarse Radon step (deg).
SCAN_STEP_DEG = 0.5


class BahtinovError(ValueError):
    """No usable Bahtinov pattern in the image (the message says why)."""


@dataclass(frozen=True)
class SpikeLine:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SpikeLine":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class BahtinovResult:
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

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["lines"] = [ln.to_dict() for ln in self.lines]
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BahtinovResult":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["lines"] = tuple(SpikeLine.from_dict(x) for x in d.get("lines", ()))
        kw["notes"] = tuple(d.get("notes", ()))
        return cls(**kw)


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


def _core_radius(w: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> float:
    """Radius where the azimuthal median of the stretched star falls to 10 % of its peak."""
    r = np.hypot(xs, ys).ravel()
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
            half_width: float, noise: float) -> tuple[float, float, int, float | None, float | None]:
    """Refine a line by centroiding perpendicular profiles along it; returns
    (theta_deg, rho, n_samples, rms_px, rho_err_px)."""
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


def _offset(lines: list[tuple[float, float]], mid: int, o1: int, o2: int) -> tuple[float, float, float, float]:
    """(offset_px, crossing_x, crossing_y, half_angle_deg) for one triplet, relative to the star."""
    cx, cy = _intersect(lines[o1], lines[o2])
    t, r = _canonical_normal(*lines[mid])
    th = math.radians(t)
    off = r - (cx * math.cos(th) + cy * math.sin(th))
    half = _ang_diff(_direction_deg(lines[o1][0]), _direction_deg(lines[o2][0])) / 2.0
    return off, cx, cy, half


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
    noise = 1.4826 * float(np.median(np.abs(img - bg))) or 1.0
    sx, sy = _find_star(img)
    h = int(min(max_radius_px, sx, sy, img.shape[1] - 1 - sx, img.shape[0] - 1 - sy))
    if h < 16:
        raise BahtinovError(f"the brightest star at ({sx}, {sy}) is too close to the edge to follow its spikes")
    box = img[sy - h:sy + h + 1, sx - h:sx + h + 1] - bg
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1].astype(float)
    w = np.sqrt(np.clip(box, 0.0, None))
    r_in = _core_radius(w, xx, yy)
    sel = (np.hypot(xx, yy) > r_in) & (np.hypot(xx, yy) < h) & (box > 2.0 * noise)
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
    # a spike is followed over most of its length; noise around a star without a mask is not
    n_possible = 2 * len(np.arange(t_min, t_max, 1.0))
    found: list[tuple[float, float, tuple[float, int, float | None, float | None]]] = []
    for a, rho0, hgt in coarse:
        th, rho, n_s, rms, err = _refine(box, float(h), float(h), a, rho0, t_min, t_max, half_width, noise)
        if not (n_s >= 0.4 * n_possible and rms is not None and rms < 1.5):
            continue
        th, rho = _canonical_normal(th, rho)
        if any(_ang_diff(_direction_deg(th), _direction_deg(t2)) < 2.0 and abs(rho - r2) < 3.0
               for t2, r2, _ in found):
            continue  # the same spike found twice
        found.append((th, rho, (hgt, n_s, rms, err)))
    if len(found) < 3:
        raise BahtinovError(f"no Bahtinov spikes around the brightest star ({len(found)} line(s) could be traced); "
                            "is the mask on, and the star bright enough?")
    pattern = "tri-bahtinov" if len(found) >= 6 else "bahtinov"
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

    def mk_lines(roles: Sequence[str]) -> tuple[SpikeLine, ...]:
        return tuple(SpikeLine(angle_deg=_direction_deg(t), normal_deg=t, rho_px=r, strength=info[0],
                               n_samples=info[1], rms_px=info[2], role=role)
                     for (t, r), info, role in zip(refined, line_info, roles))

    if pattern == "tri-bahtinov":
        # Detected, not measured: grouping nine spikes into three triplets was not reliable
        # enough on simulated Tri-Bahtinov patterns to hand out a focus error.
        notes.append(f"Tri-Bahtinov pattern ({len(refined)} spikes): its focus error is not measured; use a standard "
                     "Bahtinov mask for focus (the Tri-Bahtinov is a collimation aid)")
        return BahtinovResult(pattern=pattern, star_x_px=float(sx), star_y_px=float(sy),
                              lines=mk_lines(["spike"] * len(refined)), cfz_um=cfz, reversed=reverse,
                              verdict="Tri-Bahtinov pattern detected; focus error not measured",
                              notes=tuple(notes), file=file)
    mid, o1, o2 = _triplet(refined)
    off, cxp, cyp, half = _offset(refined, mid, o1, o2)
    roles = ["outer"] * 3
    roles[mid] = "middle"
    lines = mk_lines(roles)
    if half < 5 or half > 40:
        notes.append(f"outer spikes {2 * half:.1f}° apart: unusual for a Bahtinov mask")
    errs = [line_info[i][3] for i in (mid, o1, o2)]
    off_err = math.sqrt(sum(e * e for e in errs)) if all(e is not None for e in errs) else None
    if k is None:
        k = grabber_px_per_um(rig, half)
        src = "bahtinov-grabber" if k else None
    return _finish(pattern, sx, sy, lines, refined[mid][0], half, sx + cxp, sy + cyp, off, off_err, k, src, rig,
                   cfz, sign, reverse, notes, file)


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
    spikes = ", ".join(f"{ln.angle_deg:.1f}° ({ln.role})" for ln in r.lines)
    lines.append(f"  spikes: {spikes}")
    if r.offset_px is not None:
        err = f" ± {r.offset_err_px:.2f}" if r.offset_err_px is not None else ""
        lines.append(f"  middle spike offset {r.offset_px:+.2f}{err} px")
    if r.px_per_um:
        lines.append(f"  conversion {r.px_per_um:.4f} px/µm ({r.px_per_um_source})")
    if r.focus_error_um is not None:
        err = f" ± {r.focus_error_err_um:.0f}" if r.focus_error_err_um is not None else ""
        zone = f" = {r.focus_error_cfz:+.2f} CFZ (zone {r.cfz_um:.0f} µm)" if r.focus_error_cfz is not None else ""
        lines.append(f"  focus error {r.focus_error_um:+.0f}{err} µm{zone}")
    lines.append(f"  {r.verdict}")
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)
