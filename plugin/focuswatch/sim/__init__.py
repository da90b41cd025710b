"""Simulated frames with a known truth, for tests, benchmarks and the live demo.

Pure computation (numpy/scipy, a seeded :class:`numpy.random.Generator`): nothing here reads
the clock or the disk, except the small I/O edge at the bottom of the module
(:func:`fits_bytes`, :func:`write_fits`, :func:`write_truth`, :func:`write_night`), which only
ever writes into a folder the caller names (never next to a user's frames).

The model
---------
A star's light at the focal plane is the *continuous* point-spread function (PSF)

    PSF = seeing (Moffat, FWHM, beta)                       -- atmosphere
          (*) defocus annulus (outer diameter B = |defocus| / N,
              inner diameter obstruction * B)                -- geometric defocus
          (*) comatic tail (radial, length grows with r)     -- coma
          (*) one-sided tail in a fixed direction            -- collimation
          (*) line segment                                   -- wind / guiding trail
          (*) (1 - a) delta + a broad Gaussian halo          -- dew

where ``(*)`` is convolution. Defocus varies over the field as
``defocus_um + tilt_x_um * xn + tilt_y_um * yn + curvature_um * (r / r_corner)**2`` with
``xn``, ``yn`` in [-1, 1] from the left/top to the right/bottom edge.

The PSF is computed on a fine grid (``os`` x ``os`` samples per pixel, ``os`` = 7, 5 or 3
depending on the stamp size) by FFT convolution, once per distinct field condition (one
PSF when nothing varies across the field, else one per cell of a coarse grid fine enough
that the blur changes by <= 0.3 px and the coma by <= 0.5 px between cells). Each star is
the fine PSF **block-summed over the pixel** (so the image is pixel-integrated) at the
nearest of ``os`` x ``os`` sub-pixel phases; the star's position in the truth is the
quantised position actually rendered, so no interpolation broadens the PSF and the truth
stays exact.

Coordinates follow sep: ``x`` is the column, ``y`` the row, ``(0, 0)`` is the centre of the
first pixel; angles are in degrees from +x toward +y (downwards on screen).

Truth
-----
:func:`truth_for` (and ``SimFrame.truth``) describes the continuous PSF at the field centre:
``hfr_px`` is the radius of the circle, centred on the PSF's centroid, that holds half of
the light; it is computed numerically on a fine grid (spacing <= 0.1 px and <= HFR/15)
with an anti-aliased circular aperture (see :func:`half_flux_radius`). Against closed forms
(uniform disk R/sqrt(2), annulus R*sqrt((1+e^2)/2), Gaussian sigma*sqrt(2 ln 2), Moffat
alpha*sqrt(2**(1/(beta-1)) - 1)) it agrees to better than 0.05 %; per-cell HFRs computed on the
rendering grid (field-varying PSFs) to 0.2 % (tests/test_sim.py checks 0.2 %).

>>> p = SimParams(width_px=64, height_px=64, n_stars=3, seed=1)
>>> t = truth_for(p)
>>> round(t["seeing_fwhm_px"], 3), round(t["hfr_px"], 3)
(3.223, 1.947)
"""
from __future__ import annotations

import io
import json
import math
import re
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from focuswatch import optics
from focuswatch.optics import Rig
from focuswatch.model.records import Record, json_safe

__all__ = [
    "DEFAULT_RIG", "SimParams", "SimFrame", "PsfCondition", "render", "truth_for", "psf_condition",
    "psf_fine", "half_flux_radius", "flux_weighted_radius", "profile_fwhm", "moffat_alpha",
    "field_defocus_um", "nina_file_name", "fits_header", "fits_bytes", "write_fits", "write_truth",
    "SimFocuser", "NightPlan", "night_frames", "write_night", "iter_write_night", "truth_summary",
    "SUMMARY_KEYS", "star_image", "series_from_options", "sim_rig",
]

#: Default simulated rig: 200 mm f/5, 3.76 um pixels (0.776"/px), 2 um focuser steps.
DEFAULT_RIG = Rig(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, binning=1, obstruction=0.0,
                  focuser_step_um=2.0)

SOFTWARE = "N.I.N.A. 3.1.2.9001 (focuswatch sim)"
_BAYER_RESPONSE = {"R": 0.80, "G": 1.00, "B": 0.70}
#: Largest stamp (px, odd): a 60 px donut with seeing, trail and a dew halo fits easily.
MAX_STAMP_PX = 401


# --------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class SimParams:
    """Everything that makes one simulated frame; every effect is a parameter.

    Sizes are sensor pixels (binned), fluxes electrons, levels ADU, angles degrees from +x
    toward +y. Effects default to off, so ``SimParams()`` is a clean, in-focus frame.

    Attributes (beyond the obvious)
    -------------------------------
    seed : star field (positions, fluxes) and sensor (hot pixel map); the same seed gives
        the same stars in every frame of a night.
    noise_seed : photon/read noise and cosmic rays; ``None`` derives it from ``seed`` and
        ``frame_nr`` so frames of a night differ but stay reproducible.
    defocus_um : signed defocus at the field centre (focal plane, um).
    tilt_x_um, tilt_y_um : extra defocus at the right / bottom edge relative to the centre
        (linear, so the left / top edge gets the opposite).
    curvature_um : extra defocus at the corners, growing as r^2 from the centre.
    coma_px : length of the radial comatic tail at the corners (grows linearly with r).
    collimation : 0..1, a one-sided flare (and an off-centre donut hole) in the direction
        ``collimation_angle_deg``, the same everywhere including the centre.
    trail_px, trail_angle_deg : linear smear (wind, guiding), same everywhere.
    dew : 0..1, fraction 0.45*dew of the light goes into a broad halo (FWHM (3+6*dew) x
        seeing), transmission falls by 25*dew %, scattered light raises the sky 25*dew %.
    cloud : 0..1, star flux x (1 - cloud), sky x (1 + cloud_sky_gain * cloud).
    sky_adu : sky level above bias (ADU) at the frame centre; ``sky_gradient`` is the
        fractional change across the frame along ``sky_gradient_angle_deg``.
    star_flux_min_e, star_flux_max_e, flux_power_index : fluxes follow a power law,
        N(>F) ~ F**-flux_power_index, between the two limits (electrons per frame).
    bayer : ``None`` (mono) or a CFA pattern like ``"RGGB"`` (written as BAYERPAT; pixel
        sensitivities R 0.8, G 1.0, B 0.7).
    """

    width_px: int = 1024
    height_px: int = 1024
    n_stars: int = 200
    seed: int = 1
    noise_seed: int | None = None
    rig: Rig = field(default_factory=lambda: DEFAULT_RIG)
    seeing_fwhm_arcsec: float = 2.5
    moffat_beta: float = 3.5
    defocus_um: float = 0.0
    tilt_x_um: float = 0.0
    tilt_y_um: float = 0.0
    curvature_um: float = 0.0
    coma_px: float = 0.0
    collimation: float = 0.0
    collimation_angle_deg: float = 30.0
    trail_px: float = 0.0
    trail_angle_deg: float = 0.0
    dew: float = 0.0
    cloud: float = 0.0
    cloud_sky_gain: float = 1.0
    sky_adu: float = 800.0
    sky_gradient: float = 0.0
    sky_gradient_angle_deg: float = 90.0
    read_noise_e: float = 3.0
    gain_e_per_adu: float = 1.0
    bias_adu: float = 500.0
    exposure_s: float = 120.0
    star_flux_min_e: float = 3000.0
    star_flux_max_e: float = 3.0e6
    flux_power_index: float = 0.75
    saturation_adu: float = 65535.0
    n_hot_pixels: int = 0
    n_cosmic_rays: int = 0
    dither_x_px: float = 0.0
    dither_y_px: float = 0.0
    filter_name: str = "L"
    temp_c: float = 10.0
    sensor_temp_c: float = -10.0
    focuser_pos: int = 10000
    date_obs: str = "2026-11-21T22:14:03.000"
    image_type: str = "LIGHT"
    object_name: str = "SIM FIELD"
    altitude_deg: float = 60.0
    bayer: str | None = None
    frame_nr: int = 1
    camera_gain: int = 100
    camera_offset: int = 50

    def __post_init__(self) -> None:
        problems = []
        if self.width_px < 16 or self.height_px < 16:
            problems.append(f"width_px/height_px = {self.width_px}x{self.height_px}: need at least 16x16")
        if self.n_stars < 0:
            problems.append(f"n_stars = {self.n_stars}: must be >= 0")
        for name in ("dew", "cloud", "collimation"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                problems.append(f"{name} = {v}: must be between 0 and 1")
        if self.seeing_fwhm_arcsec < 0:
            problems.append(f"seeing_fwhm_arcsec = {self.seeing_fwhm_arcsec}: must be >= 0")
        if not self.moffat_beta > 1.0:
            problems.append(f"moffat_beta = {self.moffat_beta}: must be > 1 (inf means Gaussian)")
        if self.trail_px < 0 or self.coma_px < 0:
            problems.append("trail_px and coma_px must be >= 0")
        if self.gain_e_per_adu <= 0 or self.read_noise_e < 0 or self.sky_adu < 0:
            problems.append("gain_e_per_adu must be > 0, read_noise_e and sky_adu >= 0")
        if not 0 < self.star_flux_min_e <= self.star_flux_max_e:
            problems.append("need 0 < star_flux_min_e <= star_flux_max_e")
        if self.flux_power_index <= 0:
            problems.append("flux_power_index must be > 0")
        if self.bayer is not None and self.bayer.upper() not in ("RGGB", "BGGR", "GRBG", "GBRG"):
            problems.append(f"bayer = {self.bayer!r}: use None or one of RGGB, BGGR, GRBG, GBRG")
        rig = self.rig
        if not (rig.f_ratio and rig.effective_pixel_um and rig.focal_length_mm):
            problems.append("rig needs focal_length_mm, aperture_mm (or f_ratio) and pixel_um")
        if not 0.0 <= rig.obstruction < 0.95:
            problems.append(f"rig.obstruction = {rig.obstruction}: must be in [0, 0.95)")
        if problems:
            raise ValueError("SimParams: " + "; ".join(problems))

    # convenient derived quantities -------------------------------------------------
    @property
    def f_ratio(self) -> float:
        return float(self.rig.f_ratio)  # type: ignore[arg-type]

    @property
    def pixel_um(self) -> float:
        return float(self.rig.effective_pixel_um)  # type: ignore[arg-type]

    @property
    def plate_scale_arcsec_px(self) -> float:
        return float(self.rig.plate_scale_arcsec_px)  # type: ignore[arg-type]

    @property
    def seeing_fwhm_px(self) -> float:
        return self.seeing_fwhm_arcsec / self.plate_scale_arcsec_px

    def blur_px(self, defocus_um: float | None = None) -> float:
        """Outer diameter (px) of the defocus disk for ``defocus_um`` (default: the centre's)."""
        d = self.defocus_um if defocus_um is None else defocus_um
        return optics.blur_diameter_um(d, self.f_ratio) / self.pixel_um

    @property
    def field_varies(self) -> bool:
        """True when tilt, curvature or coma make the PSF depend on the position."""
        return bool(self.tilt_x_um or self.tilt_y_um or self.curvature_um or self.coma_px)

    def with_(self, **changes: Any) -> "SimParams":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the rig with all its fields (f_ratio_given too), as from_dict reads it

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SimParams":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "moffat_beta" in kw and kw["moffat_beta"] is None:  # JSON has no infinity: null = Gaussian
            kw["moffat_beta"] = float("inf")
        if isinstance(kw.get("rig"), Mapping):
            rnames = {f.name for f in fields(Rig)}
            kw["rig"] = Rig(**{k: v for k, v in kw["rig"].items() if k in rnames})
        return cls(**kw)


def sim_rig(rig: Rig | None = None) -> Rig:
    """``rig`` completed with :data:`DEFAULT_RIG`'s values where it has none.

    A focal ratio given without an aperture sets the aperture (``focal / N``) so the
    header's APTDIA and FOCRATIO agree.
    """
    if rig is None:
        return DEFAULT_RIG
    given = {f.name: getattr(rig, f.name) for f in fields(Rig)}
    out = DEFAULT_RIG.with_(**given)
    if rig.f_ratio_given and out.focal_length_mm:
        out = replace(out, aperture_mm=out.focal_length_mm / float(rig.f_ratio_given))
    return out


def field_defocus_um(params: SimParams, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """Signed defocus (um) at image position(s) ``(x, y)``: centre + tilt + curvature.

    >>> p = SimParams(width_px=101, height_px=101, tilt_x_um=20.0)
    >>> float(field_defocus_um(p, 100.0, 50.0))
    20.0
    """
    cx, cy = (params.width_px - 1) / 2.0, (params.height_px - 1) / 2.0
    xn = (np.asarray(x, float) - cx) / max(cx, 1e-9)
    yn = (np.asarray(y, float) - cy) / max(cy, 1e-9)
    r2 = (xn * xn * cx * cx + yn * yn * cy * cy) / max(cx * cx + cy * cy, 1e-9)
    return params.defocus_um + params.tilt_x_um * xn + params.tilt_y_um * yn + params.curvature_um * r2


# --------------------------------------------------------------------------- PSF

@dataclass(frozen=True)
class PsfCondition(Record):
    """The PSF at one place in the field, all in pixels (hashable: PSFs are cached by it)."""

    seeing_fwhm_px: float
    moffat_beta: float
    blur_px: float
    obstruction: float = 0.0
    coma_px: float = 0.0
    coma_angle_deg: float = 0.0
    collim_px: float = 0.0
    collim_angle_deg: float = 0.0
    hole_shift_px: float = 0.0
    trail_px: float = 0.0
    trail_angle_deg: float = 0.0
    halo_fraction: float = 0.0
    halo_fwhm_px: float = 0.0

    def extent_px(self, wings: float = 5e-4, cap_fwhm: float = 8.0) -> float:
        """Radius (px) holding all but ``wings`` of the light (seeing wings capped)."""
        f = self.seeing_fwhm_px
        if f <= 0:
            r_see = 0.0
        elif not math.isfinite(self.moffat_beta) or self.moffat_beta > 60:
            r_see = f / 2.3548 * math.sqrt(-2.0 * math.log(wings))
        else:
            b = self.moffat_beta
            r_see = moffat_alpha(f, b) * math.sqrt(wings ** (1.0 / (1.0 - b)) - 1.0)
            r_see = min(r_see, cap_fwhm * f)
        core = r_see + self.blur_px / 2 + max(self.coma_px, self.collim_px) + self.trail_px / 2 + self.hole_shift_px
        if self.halo_fraction > 0:
            halo = 3.6 * self.halo_fwhm_px / 2.3548 + self.blur_px / 2 + self.trail_px / 2
            core = max(core, halo)
        return core + 1.5


def moffat_alpha(fwhm_px: float, beta: float) -> float:
    """Moffat core width alpha from the FWHM: ``fwhm / (2 sqrt(2**(1/beta) - 1))``."""
    return fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def psf_condition(params: SimParams, x: float | None = None, y: float | None = None) -> PsfCondition:
    """The :class:`PsfCondition` at image position ``(x, y)`` (default: the field centre)."""
    cx, cy = (params.width_px - 1) / 2.0, (params.height_px - 1) / 2.0
    x = cx if x is None else float(x)
    y = cy if y is None else float(y)
    seeing = params.seeing_fwhm_px
    blur = params.blur_px(float(field_defocus_um(params, x, y)))
    eps = float(params.rig.obstruction)
    r_corner = math.hypot(cx, cy)
    r = math.hypot(x - cx, y - cy)
    coma = params.coma_px * r / r_corner if r_corner > 0 else 0.0
    coma_angle = math.degrees(math.atan2(y - cy, x - cx)) if r > 1e-9 else 0.0
    c = params.collimation
    collim = c * (1.5 * seeing + 0.5 * blur + 1.0)
    hole = c * 0.5 * (1.0 - eps) * blur / 2.0 if eps > 0 else 0.0
    halo_f = 0.45 * params.dew
    halo_fwhm = (3.0 + 6.0 * params.dew) * max(seeing, 1.0) if halo_f > 0 else 0.0
    return PsfCondition(
        seeing_fwhm_px=round(seeing, 6), moffat_beta=float(params.moffat_beta), blur_px=round(blur, 6),
        obstruction=eps, coma_px=round(coma, 6), coma_angle_deg=round(coma_angle, 4),
        collim_px=round(collim, 6), collim_angle_deg=float(params.collimation_angle_deg),
        hole_shift_px=round(hole, 6), trail_px=float(params.trail_px),
        trail_angle_deg=float(params.trail_angle_deg), halo_fraction=halo_f, halo_fwhm_px=round(halo_fwhm, 6))


def _grid(n: int, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (px) of an n x n grid of spacing h centred on index n // 2."""
    c = (np.arange(n) - n // 2) * h
    return c[None, :], c[:, None]


def _delta(n: int) -> np.ndarray:
    k = np.zeros((n, n))
    k[n // 2, n // 2] = 1.0
    return k


def _seeing_kernel(n: int, h: float, fwhm_px: float, beta: float) -> np.ndarray | None:
    if fwhm_px <= 0.5 * h:
        return None
    xx, yy = _grid(n, h)
    r2 = xx * xx + yy * yy
    if not math.isfinite(beta) or beta > 60:
        s = fwhm_px / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        k = np.exp(-r2 / (2.0 * s * s))
    else:
        a = moffat_alpha(fwhm_px, beta)
        k = (1.0 + r2 / (a * a)) ** (-beta)
    return k


@lru_cache(maxsize=8)
def _seeing_spectrum(n: int, h: float, fwhm_px: float, beta: float) -> np.ndarray | None:
    """FFT of the normalised seeing kernel; the same in every PSF cell of a frame, so cached."""
    k = _seeing_kernel(n, h, fwhm_px, beta)
    if k is None:
        return None
    f = np.fft.rfft2(np.fft.ifftshift(k / k.sum()))
    f.setflags(write=False)
    return f


def _annulus_kernel(n: int, h: float, blur_px: float, eps: float, hole_shift_px: float,
                    hole_angle_deg: float) -> np.ndarray | None:
    """Uniform annulus, anti-aliased by the signed distance to its edges (area exact to O(h^2))."""
    big_r = blur_px / 2.0
    if big_r <= 0.5 * h:
        return None
    xx, yy = _grid(n, h)
    outer = np.clip((big_r - np.hypot(xx, yy)) / h + 0.5, 0.0, 1.0)
    if eps > 0:
        t = math.radians(hole_angle_deg)
        sx, sy = hole_shift_px * math.cos(t), hole_shift_px * math.sin(t)
        inner = np.clip((eps * big_r - np.hypot(xx - sx, yy - sy)) / h + 0.5, 0.0, 1.0)
        outer = np.clip(outer - inner, 0.0, 1.0)
    return outer


def _tail_kernel(n: int, h: float, length_px: float, angle_deg: float, fraction: float = 0.5) -> np.ndarray | None:
    """A one-sided comet tail: density falling linearly to zero at ``length_px``, fanning out.

    ``(1 - fraction)`` of the light stays in the core (a delta), ``fraction`` goes into the tail.
    """
    if length_px <= h:
        return None
    xx, yy = _grid(n, h)
    t = math.radians(angle_deg)
    u = xx * math.cos(t) + yy * math.sin(t)
    v = -xx * math.sin(t) + yy * math.cos(t)
    sig = 0.7 * h + 0.3 * np.clip(u, 0.0, None)
    inside = (u >= 0) & (u <= length_px)
    tail = np.where(inside, (1.0 - u / length_px) / sig * np.exp(-0.5 * (v / sig) ** 2), 0.0)
    tail /= tail.sum()
    k = fraction * tail
    k[n // 2, n // 2] += 1.0 - fraction
    return k


def _trail_kernel(n: int, h: float, length_px: float, angle_deg: float) -> np.ndarray | None:
    """A uniform line segment centred on the star, deposited bilinearly on the grid."""
    if length_px <= 0.5 * h:
        return None
    t = math.radians(angle_deg)
    m = int(math.ceil(length_px / h * 4)) + 1
    s = np.linspace(-length_px / 2, length_px / 2, m)
    fx = s * math.cos(t) / h + n // 2
    fy = s * math.sin(t) / h + n // 2
    ix, iy = np.floor(fx).astype(int), np.floor(fy).astype(int)
    tx, ty = fx - ix, fy - iy
    k = np.zeros((n, n))
    for dx, dy, w in ((0, 0, (1 - tx) * (1 - ty)), (1, 0, tx * (1 - ty)), (0, 1, (1 - tx) * ty), (1, 1, tx * ty)):
        np.add.at(k, (np.clip(iy + dy, 0, n - 1), np.clip(ix + dx, 0, n - 1)), w)
    return k


def _halo_kernel(n: int, h: float, fraction: float, fwhm_px: float) -> np.ndarray | None:
    if fraction <= 0 or fwhm_px <= 0:
        return None
    xx, yy = _grid(n, h)
    s = fwhm_px / 2.3548
    g = np.exp(-(xx * xx + yy * yy) / (2 * s * s))
    k = fraction * g / g.sum()
    k[n // 2, n // 2] += 1.0 - fraction
    return k


def psf_fine(cond: PsfCondition, h: float, n: int) -> np.ndarray:
    """The continuous PSF sampled on an ``n`` x ``n`` grid of spacing ``h`` px, summing to 1.

    The nominal star position (before tails shift the centroid) is at index ``n // 2``.
    Components are convolved through FFTs (the grid must be large enough for the PSF; its
    wings beyond the grid wrap around, which :meth:`PsfCondition.extent_px` keeps < 0.05 %).
    """
    seeing = _seeing_spectrum(n, h, cond.seeing_fwhm_px, cond.moffat_beta)
    kernels = [
        _annulus_kernel(n, h, cond.blur_px, cond.obstruction, cond.hole_shift_px, cond.collim_angle_deg),
        _tail_kernel(n, h, cond.coma_px, cond.coma_angle_deg),
        _tail_kernel(n, h, cond.collim_px, cond.collim_angle_deg),
        _trail_kernel(n, h, cond.trail_px, cond.trail_angle_deg),
        _halo_kernel(n, h, cond.halo_fraction, cond.halo_fwhm_px),
    ]
    kernels = [k for k in kernels if k is not None]
    if seeing is None and not kernels:
        return _delta(n)
    if seeing is None and len(kernels) == 1:
        out = kernels[0]
    else:
        spec = seeing
        for k in kernels:
            f = np.fft.rfft2(np.fft.ifftshift(k / k.sum()))
            spec = f if spec is None else spec * f
        out = np.fft.fftshift(np.fft.irfft2(spec, s=(n, n)))
        out[out < 0] = 0.0
    return out / out.sum()


def _centroid(img: np.ndarray, h: float) -> tuple[float, float]:
    n = img.shape[0]
    c = (np.arange(n) - n // 2) * h
    tot = img.sum()
    return float((img.sum(axis=0) * c).sum() / tot), float((img.sum(axis=1) * c).sum() / tot)


def _radii(img: np.ndarray, h: float) -> np.ndarray:
    x0, y0 = _centroid(img, h)
    xx, yy = _grid(img.shape[0], h)
    return np.hypot(xx - x0, yy - y0)


def half_flux_radius(img: np.ndarray, h: float, fraction: float = 0.5) -> float:
    """Radius (px) about the centroid enclosing ``fraction`` of the light of a fine-grid PSF.

    Each sample is a cell of side ``h``; a circle of radius R takes the fraction
    ``clip((R - r) / h + 1/2, 0, 1)`` of a cell whose centre is at distance r (an
    anti-aliased aperture), which removes the lattice-counting noise of a hard edge. A
    histogram of radii brackets the answer, then the root is bracketed twice on 33 radii and
    interpolated. Against closed forms (Moffat, Gaussian, disk, annulus) the error is < 0.1 % on grids of <= HFR/15.
    """
    r = _radii(img, h).ravel()
    w = img.ravel() / img.sum()
    db = h / 4.0
    idx = np.minimum((r / db).astype(np.int64), 10 ** 7)
    cum = np.cumsum(np.bincount(idx, weights=w))
    k = int(np.searchsorted(cum, fraction))
    guess = (k + 0.5) * db
    lo_r, hi_r = max(guess - 3.0 * h, 0.0), guess + 3.0 * h
    inner = r < lo_r - 0.5 * h
    band = ~inner & (r < hi_r + 0.5 * h)
    base = float(w[inner].sum())
    rb, wb = r[band], w[band]

    # enclosed(R) is monotone and piecewise linear: bracket it on 33 radii, twice, then interpolate
    for _ in range(2):
        radii = np.linspace(lo_r, hi_r, 33)
        enc = base + (wb[:, None] * np.clip((radii[None, :] - rb[:, None]) / h + 0.5, 0.0, 1.0)).sum(axis=0)
        j = int(np.searchsorted(enc, fraction))
        if j == 0 or j >= len(radii):  # pathological (tiny PSF): fall back to the histogram
            return float(guess)
        lo_r, hi_r = float(radii[j - 1]), float(radii[j])
        e_lo, e_hi = float(enc[j - 1]), float(enc[j])
    t = (fraction - e_lo) / (e_hi - e_lo) if e_hi > e_lo else 0.5
    return float(lo_r + t * (hi_r - lo_r))


def flux_weighted_radius(img: np.ndarray, h: float) -> float:
    """NINA/ASTAP's "HFR": the flux-weighted mean radius sum(I r)/sum(I) about the centroid (px)."""
    r = _radii(img, h)
    return float((img * r).sum() / img.sum())


def profile_fwhm(img: np.ndarray, h: float) -> float:
    """FWHM (px) of the azimuthally averaged profile: twice the outermost half-maximum radius.

    The maximum is the largest sample (the peak of a centred profile, the crest of a
    donut's ring); the profile is averaged in rings of ``h / 2`` and the half-maximum
    crossing is interpolated between the rings' mean radii.
    """
    r = _radii(img, h).ravel()
    v = img.ravel()
    db = h / 2.0
    idx = (r / db).astype(np.int64)
    cnt = np.bincount(idx)
    ok = cnt > 0
    prof = np.bincount(idx, weights=v)[ok] / cnt[ok]
    rad = np.bincount(idx, weights=r)[ok] / cnt[ok]
    half = max(float(v.max()), float(prof.max())) / 2.0
    above = np.nonzero(prof >= half)[0]
    if len(above) == 0:
        return 0.0
    k = int(above[-1])
    if k + 1 >= len(prof):
        return float(2.0 * rad[k])
    p0, p1 = prof[k], prof[k + 1]
    t = (p0 - half) / (p0 - p1) if p0 != p1 else 0.0
    return float(2.0 * (rad[k] + t * (rad[k + 1] - rad[k])))


def _psf_stats(cond: PsfCondition) -> dict[str, float]:
    """Truth figures of the continuous PSF for one condition (fine grid, generous extent)."""
    ext = cond.extent_px(wings=5e-5, cap_fwhm=20.0)
    approx_hfr = max(0.3, 0.5 * cond.seeing_fwhm_px, 0.35 * cond.blur_px)
    h = max(min(0.1, approx_hfr / 20.0), ext / 500.0)  # <= HFR/15 in every case, n <= ~1000
    n = int(2 * math.ceil(ext / h) + 1)
    img = psf_fine(cond, h, n)
    x0, y0 = _centroid(img, h)
    return {"hfr_px": half_flux_radius(img, h), "hfr_nina_px": flux_weighted_radius(img, h),
            "fwhm_px": profile_fwhm(img, h), "centroid_dx_px": x0, "centroid_dy_px": y0}


@dataclass
class _Stamp:
    """Pixel-integrated stamps of one PSF at os x os sub-pixel phases (internal)."""

    size: int
    os: int
    x0: float            # stamp coordinate of the nominal centre at phase 0 (times os is an integer)
    phases: np.ndarray   # (os, os, size, size) float32, [phase_y, phase_x]
    dx: float            # centroid offset from the nominal position, px
    dy: float
    hfr_px: float
    peak: float          # largest pixel fraction over phases


def _make_stamp(cond: PsfCondition, with_phases: bool = True) -> _Stamp:
    """Fine PSF of ``cond`` block-summed into pixel stamps at every sub-pixel phase."""
    ext = cond.extent_px()
    size = min(2 * int(math.ceil(ext)) + 1, MAX_STAMP_PX)
    os_ = 7 if size <= 41 else (5 if size <= 121 else 3)
    h = 1.0 / os_
    nf = (size + 1) * os_
    fine = psf_fine(cond, h, nf)
    cf = nf // 2
    phases = np.empty((os_, os_, size, size) if with_phases else (0, 0, size, size), np.float32)
    span = size * os_
    for my in range(phases.shape[0]):
        for mx in range(phases.shape[1]):
            blk = fine[my:my + span, mx:mx + span].reshape(size, os_, size, os_).sum(axis=(1, 3))
            phases[my, mx] = blk
    dx, dy = _centroid(fine, h)
    return _Stamp(size, os_, (cf - (os_ - 1) / 2) / os_, phases, dx, dy, half_flux_radius(fine, h),
                  float(phases.max()) if with_phases else float("nan"))


# --------------------------------------------------------------------------- planning

@dataclass
class _Plan:
    params: SimParams
    x: np.ndarray          # nominal (rendered, quantised) positions
    y: np.ndarray
    flux_e: np.ndarray
    cell: np.ndarray       # index into stamps
    conds: list[PsfCondition]
    cell_xy: list[tuple[float, float]]


def _rng(params: SimParams, stream: int) -> np.random.Generator:
    if stream == 3:  # noise
        extra = params.noise_seed if params.noise_seed is not None else 1_000_003 + params.frame_nr
        return np.random.default_rng(np.random.SeedSequence([int(params.seed), 3, int(extra)]))
    return np.random.default_rng(np.random.SeedSequence([int(params.seed), stream]))


def _transmission(params: SimParams) -> float:
    return (1.0 - params.cloud) * (1.0 - 0.25 * params.dew)


def _sky_e(params: SimParams) -> float:
    return params.sky_adu * params.gain_e_per_adu * (1.0 + params.cloud_sky_gain * params.cloud) \
        * (1.0 + 0.25 * params.dew)


def _cells(params: SimParams, tol: float = 0.02) -> tuple[int, int]:
    """How many PSF cells across x and y so the HFR changes by <= ``tol`` between cells.

    Uses the quadrature model ``hfr^2 ~ hfr0^2 + (0.354 B)^2 + (0.25 coma)^2`` on a grid of
    positions to find the steepest change per frame width/height; capped at 12 x 9 cells.
    """
    if not params.field_varies:
        return 1, 1
    w, h = params.width_px, params.height_px
    gx = np.linspace(-0.5, w - 0.5, 41)[None, :]
    gy = np.linspace(-0.5, h - 0.5, 41)[:, None]
    blur = optics.blur_diameter_um(field_defocus_um(params, gx, gy), params.f_ratio) / params.pixel_um
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    coma = params.coma_px * np.hypot(gx - cx, gy - cy) / max(math.hypot(cx, cy), 1e-9)
    hfr0 = max(0.6 * params.seeing_fwhm_px, 0.3)
    hfr = np.sqrt(hfr0 ** 2 + (0.354 * blur) ** 2 + (0.25 * coma) ** 2)
    step_x = float(np.abs(np.diff(hfr, axis=1)).max()) * 40  # change over the whole width
    step_y = float(np.abs(np.diff(hfr, axis=0)).max()) * 40
    ref = float(hfr.min()) * tol
    # cells of at least ~40 px: small test frames stay cheap
    nx = int(min(12, max(1, w // 40), max(1, math.ceil(step_x / ref))))
    ny = int(min(9, max(1, h // 40), max(1, math.ceil(step_y / ref))))
    return nx, ny


def _plan(params: SimParams) -> _Plan:
    rng = _rng(params, 1)
    n = params.n_stars
    w, h = params.width_px, params.height_px
    x = rng.uniform(-0.5, w - 0.5, n) + params.dither_x_px
    y = rng.uniform(-0.5, h - 0.5, n) + params.dither_y_px
    g = params.flux_power_index
    ratio = (params.star_flux_min_e / params.star_flux_max_e) ** g
    u = rng.uniform(0.0, 1.0, n)
    flux = params.star_flux_min_e * (1.0 - u * (1.0 - ratio)) ** (-1.0 / g)
    flux = flux * _transmission(params)
    nx, ny = _cells(params)
    if nx == 1 and ny == 1:
        conds = [psf_condition(params)]
        cell = np.zeros(n, np.int64)
        cell_xy = [((w - 1) / 2.0, (h - 1) / 2.0)]
    else:
        ex = (np.arange(nx) + 0.5) * w / nx - 0.5
        ey = (np.arange(ny) + 0.5) * h / ny - 0.5
        ix = np.clip(((x + 0.5) * nx / w).astype(np.int64), 0, nx - 1)
        iy = np.clip(((y + 0.5) * ny / h).astype(np.int64), 0, ny - 1)
        cell = iy * nx + ix
        cell_xy = [(float(ex[i % nx]), float(ey[i // nx])) for i in range(nx * ny)]
        conds = [psf_condition(params, cx, cy) for cx, cy in cell_xy]
    return _Plan(params, x, y, flux, cell, conds, cell_xy)


# --------------------------------------------------------------------------- rendering

@dataclass(frozen=True)
class SimFrame:
    """A rendered frame: uint16 pixels (bias, sky, stars, noise), its FITS header and the truth.

    ``header`` maps FITS keywords to values (NINA's names); ``truth`` is JSON-able (see
    :func:`truth_for`); ``params`` made it.
    """

    pixels: np.ndarray
    header: dict[str, Any]
    truth: dict[str, Any]
    params: SimParams

    @property
    def file_name(self) -> str:
        return nina_file_name(self.params)

    def to_frame(self):
        """The pixels as a :class:`focuswatch.io.frames.Frame`, as ``frames.load`` would return them."""
        from focuswatch.io.frames import frame_from_array
        return frame_from_array(self.pixels, self.header, saturation_adu=self.params.saturation_adu)


def _quantise(v: np.ndarray, os_: int, x0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stamp origin pixel, phase index and rendered (quantised) position for positions ``v``."""
    k = np.rint(v * os_).astype(np.int64) - int(round(x0 * os_))
    origin = -((-k) // os_)
    phase = origin * os_ - k
    return origin, phase, (k + int(round(x0 * os_))) / os_


def _cfa_map(params: SimParams) -> np.ndarray | None:
    if not params.bayer:
        return None
    pat = params.bayer.upper()
    resp = np.array([[_BAYER_RESPONSE[pat[0]], _BAYER_RESPONSE[pat[1]]],
                     [_BAYER_RESPONSE[pat[2]], _BAYER_RESPONSE[pat[3]]]], np.float32)
    return resp


def _render_electrons(plan: _Plan, stamps: list[_Stamp]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    p = plan.params
    w, h = p.width_px, p.height_px
    img = np.zeros((h, w), np.float32)
    n = len(plan.x)
    rx = np.empty(n)
    ry = np.empty(n)
    peak = np.empty(n)
    for ci, st in enumerate(stamps):
        sel = np.nonzero(plan.cell == ci)[0]
        if len(sel) == 0:
            continue
        ox, px, qx = _quantise(plan.x[sel], st.os, st.x0)
        oy, py, qy = _quantise(plan.y[sel], st.os, st.x0)
        rx[sel] = qx + st.dx
        ry[sel] = qy + st.dy
        s = st.size
        for j, i in enumerate(sel):
            x0, y0 = int(ox[j]), int(oy[j])
            xa, ya = max(x0, 0), max(y0, 0)
            xb, yb = min(x0 + s, w), min(y0 + s, h)
            stamp = st.phases[py[j], px[j]]
            peak[i] = float(stamp.max()) * plan.flux_e[i]
            if xa >= xb or ya >= yb:
                continue
            img[ya:yb, xa:xb] += np.float32(plan.flux_e[i]) * stamp[ya - y0:yb - y0, xa - x0:xb - x0]
    return img, {"x": rx, "y": ry, "peak_e": peak}


def _sky_map(p: SimParams, rows: slice) -> np.ndarray:
    sky = _sky_e(p)
    t = math.radians(p.sky_gradient_angle_deg)
    xs = (np.arange(p.width_px, dtype=np.float32) - (p.width_px - 1) / 2) / p.width_px
    ys = (np.arange(p.height_px, dtype=np.float32)[rows] - (p.height_px - 1) / 2) / p.height_px
    return np.float32(sky) * (1.0 + np.float32(p.sky_gradient) * (
        xs[None, :] * np.float32(math.cos(t)) + ys[:, None] * np.float32(math.sin(t))))


def _to_adu(p: SimParams, electrons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add sky, CFA response, shot and read noise; convert to ADU; clip; uint16 (row chunks)."""
    h, w = electrons.shape
    out = np.empty((h, w), np.uint16)
    cfa = _cfa_map(p)
    rn2 = np.float32(p.read_noise_e ** 2)
    poisson = _sky_e(p) * (1.0 - abs(p.sky_gradient) / 2) < 30.0
    top = min(p.saturation_adu, 65535.0)
    chunk = max(1, 4_000_000 // w) // 2 * 2 or 2
    for r0 in range(0, h, chunk):
        rows = slice(r0, min(r0 + chunk, h))
        e = electrons[rows] + _sky_map(p, rows)
        if cfa is not None:
            e *= np.tile(cfa, ((e.shape[0] + 1) // 2, (w + 1) // 2))[:e.shape[0], :w]
        if poisson:
            e = rng.poisson(np.maximum(e, 0.0)).astype(np.float32)
            e += rng.standard_normal(e.shape, dtype=np.float32) * np.float32(p.read_noise_e)
        else:  # Gaussian approximation of Poisson (fine above ~30 e-), one draw for both noises
            sd = np.sqrt(np.maximum(e, 0.0) + rn2)
            e += rng.standard_normal(e.shape, dtype=np.float32) * sd
        adu = e / np.float32(p.gain_e_per_adu) + np.float32(p.bias_adu)
        np.rint(adu, out=adu)
        np.clip(adu, 0, top, out=adu)
        out[rows] = adu.astype(np.uint16)
    return out


def _defects(p: SimParams, img: np.ndarray, rng_noise: np.random.Generator) -> dict[str, list]:
    """Hot pixels (fixed per sensor: seeded by ``seed``) and cosmic-ray hits (per frame)."""
    h, w = img.shape
    top = int(min(p.saturation_adu, 65535))
    hot: list[list[int]] = []
    if p.n_hot_pixels > 0:
        rs = _rng(p, 2)
        hx = rs.integers(0, w, p.n_hot_pixels)
        hy = rs.integers(0, h, p.n_hot_pixels)
        level = rs.uniform(2000, 60000, p.n_hot_pixels)
        for x, y, v in zip(hx, hy, level):
            img[y, x] = min(top, int(img[y, x]) + int(v))
            hot.append([int(x), int(y)])
    rays: list[list[float]] = []
    for _ in range(max(0, p.n_cosmic_rays)):
        x, y = rng_noise.uniform(0, w - 1), rng_noise.uniform(0, h - 1)
        length = rng_noise.uniform(1, 12)
        ang = rng_noise.uniform(0, math.pi)
        level = rng_noise.uniform(3000, 40000)
        for s in np.linspace(0, length, int(length * 2) + 1):
            xi, yi = int(round(x + s * math.cos(ang))), int(round(y + s * math.sin(ang)))
            if 0 <= xi < w and 0 <= yi < h:
                img[yi, xi] = min(top, int(img[yi, xi]) + int(level))
        rays.append([round(x, 2), round(y, 2), round(length, 2), round(math.degrees(ang), 1)])
    return {"hot_pixels": hot, "cosmic_rays": rays}


def star_image(params: SimParams) -> tuple[np.ndarray, dict[str, Any]]:
    """The noiseless stars alone (float32, electrons; no bias, sky, noise or defects) and the truth.

    For tests of the rendering itself: flux conservation, pixel integration, positions.
    """
    plan = _plan(params)
    stamps = [_make_stamp(c) for c in plan.conds]
    electrons, rendered = _render_electrons(plan, stamps)
    return electrons, _truth(plan, stamps, rendered, None)


def render(params: SimParams) -> SimFrame:
    """Render one frame with its truth (pure: same params, same pixels).

    A 1024 x 1024 frame with 200 stars takes ~0.1-0.3 s; 6248 x 4176 with 3000 stars a few
    seconds (mostly the noise on 26 Mpx).
    """
    plan = _plan(params)
    stamps = [_make_stamp(c) for c in plan.conds]
    electrons, rendered = _render_electrons(plan, stamps)
    rng = _rng(params, 3)
    pixels = _to_adu(params, electrons, rng)
    del electrons
    defects = _defects(params, pixels, rng)
    truth = _truth(plan, stamps, rendered, defects)
    return SimFrame(pixels, fits_header(params), truth, params)


# --------------------------------------------------------------------------- truth

_EFFECT_KEYS = ("defocus_um", "tilt_x_um", "tilt_y_um", "curvature_um", "coma_px", "collimation",
                "collimation_angle_deg", "trail_px", "trail_angle_deg", "dew", "cloud", "sky_gradient",
                "moffat_beta", "seeing_fwhm_arcsec")


def _zone_truth(params: SimParams) -> list[list[float]]:
    """True HFR (px) at the centres of the 3 x 3 zones (row 0 = top)."""
    w, h = params.width_px, params.height_px
    out = []
    for r in range(3):
        row = []
        for c in range(3):
            x = (c + 0.5) * w / 3 - 0.5
            y = (r + 0.5) * h / 3 - 0.5
            row.append(round(_psf_stats(psf_condition(params, x, y))["hfr_px"], 5))
        out.append(row)
    return out


def _truth(plan: _Plan, stamps: list[_Stamp] | None, rendered: dict[str, np.ndarray] | None,
           defects: dict[str, list] | None) -> dict[str, Any]:
    p = plan.params
    centre = psf_condition(p)
    stats = _psf_stats(centre)
    focus = _psf_stats(PsfCondition(p.seeing_fwhm_px, p.moffat_beta, p.blur_px(), p.rig.obstruction))
    seeing_only = _psf_stats(PsfCondition(p.seeing_fwhm_px, p.moffat_beta, 0.0))
    wavelength = optics.wavelength_for_filter(p.filter_name, p.rig.wavelength_nm)
    cfz = optics.cfz_um(p.f_ratio, wavelength)
    sky_e = _sky_e(p)
    if not p.field_varies:  # one PSF: every star has the centre's (accurate) truth
        cell_hfr = [stats["hfr_px"]]
    else:  # per cell: HFR of the rendered stamp's fine grid (within ~0.2 % of the continuous one)
        cell_hfr = [s.hfr_px for s in (stamps or [_make_stamp(c, False) for c in plan.conds])]
    if rendered is None:  # truth without rendering: positions as generated (no quantisation)
        xs, ys, peaks = plan.x, plan.y, None
    else:
        xs, ys, peaks = rendered["x"], rendered["y"], rendered["peak_e"]
    rn2 = p.read_noise_e ** 2
    stars = []
    local_defocus = field_defocus_um(p, xs, ys)
    for i in range(len(plan.x)):
        hfr = cell_hfr[int(plan.cell[i])]
        f = float(plan.flux_e[i])
        area = math.pi * (2.0 * max(hfr, 0.5)) ** 2
        snr = f / math.sqrt(f + area * (sky_e + rn2))
        s = {"x": round(float(xs[i]), 4), "y": round(float(ys[i]), 4), "flux_e": round(f, 2),
             "flux_adu": round(f / p.gain_e_per_adu, 2), "snr": round(snr, 2), "hfr_px": round(hfr, 5),
             "defocus_um": round(float(local_defocus[i]), 4)}
        if peaks is not None:
            pk = float(peaks[i])
            s["peak_e"] = round(pk, 1)
            s["saturated"] = bool(p.bias_adu + (pk + sky_e) / p.gain_e_per_adu >= p.saturation_adu)
        stars.append(s)
    inside = [s for s in stars if -0.5 <= s["x"] < p.width_px - 0.5 and -0.5 <= s["y"] < p.height_px - 0.5]
    t: dict[str, Any] = {
        "file": nina_file_name(p),
        "hfr_px": stats["hfr_px"],
        "hfr_nina_px": stats["hfr_nina_px"],
        "fwhm_px": stats["fwhm_px"],
        "hfr_focus_px": focus["hfr_px"],
        "hfr0_px": seeing_only["hfr_px"],
        "hfr0_nina_px": seeing_only["hfr_nina_px"],
        "seeing_fwhm_px": p.seeing_fwhm_px,
        "seeing_fwhm_arcsec": p.seeing_fwhm_arcsec,
        "profile_ratio": 2.0 * stats["hfr_px"] / stats["fwhm_px"] if stats["fwhm_px"] > 0 else None,
        "defocus_um": p.defocus_um,
        "blur_px": p.blur_px(),
        "f_ratio": p.f_ratio,
        "pixel_um": p.pixel_um,
        "plate_scale_arcsec_px": p.plate_scale_arcsec_px,
        "plate_scale": p.plate_scale_arcsec_px,
        "wavelength_nm": wavelength,
        "cfz_um": cfz,
        "defocus_in_cfz": abs(p.defocus_um) <= cfz / 2.0,
        "focuser_pos": p.focuser_pos,
        "focuser_step_um": p.rig.focuser_step_um,
        "temp_c": p.temp_c,
        "filter_name": p.filter_name,
        "date_obs": _date_obs(p.date_obs),
        "exposure_s": p.exposure_s,
        "sky_e": sky_e,
        "sky_adu": sky_e / p.gain_e_per_adu,
        "bias_adu": p.bias_adu,
        "read_noise_e": p.read_noise_e,
        "gain_e_per_adu": p.gain_e_per_adu,
        "transmission": _transmission(p),
        "field_varies": p.field_varies,
        "n_psf_cells": len(plan.conds),
        "zones_hfr_px": _zone_truth(p) if p.field_varies else [[round(stats["hfr_px"], 5)] * 3] * 3,
        "effects": {k: getattr(p, k) for k in _EFFECT_KEYS},
        "n_stars": len(stars),
        "n_stars_inside": len(inside),
        "n_saturated": sum(1 for s in stars if s.get("saturated")),
        "stars": stars,
        "params": p.to_dict(),
    }
    if defects is not None:
        t.update(defects)
    return t


def truth_for(params: SimParams) -> dict[str, Any]:
    """The truth of a frame without rendering it (same dict as ``render(params).truth``,
    except that star positions are not quantised to the rendering phases and there is no
    ``peak_e``/``saturated`` per star nor hot pixel/cosmic ray list)."""
    return _truth(_plan(params), None, None, None)


# --------------------------------------------------------------------------- headers and names

def _parse_date(text: str) -> datetime:
    """A ``date_obs`` parameter (ISO 8601, UTC, optional ``Z``) as a naive datetime."""
    return datetime.fromisoformat(str(text).replace("Z", ""))


def _date_obs(text: str) -> str:
    """Normalise a DATE-OBS to NINA's ``YYYY-MM-DDTHH:MM:SS.fff`` (UTC)."""
    dt = _parse_date(text)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def nina_file_name(params: SimParams) -> str:
    """NINA's default pattern ``$$DATETIME$$_$$FILTER$$_$$SENSORTEMP$$_$$EXPOSURETIME$$s_$$FRAMENR$$``.

    >>> nina_file_name(SimParams(frame_nr=42))
    '2026-11-21_22-14-03_L_-10.00_120.00s_0042.fits'
    """
    dt = _parse_date(params.date_obs)
    filt = re.sub(r"[^A-Za-z0-9+-]", "", params.filter_name) or "NOFILTER"
    return (f"{dt.strftime('%Y-%m-%d_%H-%M-%S')}_{filt}_{params.sensor_temp_c:.2f}_"
            f"{params.exposure_s:.2f}s_{params.frame_nr:04d}.fits")


def fits_header(params: SimParams) -> dict[str, Any]:
    """NINA-style FITS keywords for a simulated frame (values only; comments in :func:`fits_bytes`)."""
    rig = params.rig
    alt = params.altitude_deg
    h: dict[str, Any] = {
        "IMAGETYP": params.image_type,
        "EXPOSURE": float(params.exposure_s),
        "EXPTIME": float(params.exposure_s),
        "DATE-OBS": _date_obs(params.date_obs),
        "XBINNING": int(rig.binning),
        "YBINNING": int(rig.binning),
        "GAIN": int(params.camera_gain),
        "OFFSET": int(params.camera_offset),
        "EGAIN": float(params.gain_e_per_adu),
        "XPIXSZ": float(params.pixel_um),
        "YPIXSZ": float(params.pixel_um),
        "INSTRUME": "Simulated camera",
        "SET-TEMP": float(params.sensor_temp_c),
        "CCD-TEMP": float(params.sensor_temp_c),
        "TELESCOP": f"focuswatch sim {rig.aperture_mm:g}/{rig.focal_length_mm:g}"
        if rig.aperture_mm else "focuswatch sim",
        "FOCALLEN": float(rig.focal_length_mm),
        "FOCRATIO": round(float(params.f_ratio), 4),
        "APTDIA": float(rig.effective_aperture_mm or 0.0),
        "FILTER": params.filter_name,
        "OBJECT": params.object_name,
        "CENTALT": float(alt),
        "AIRMASS": round(1.0 / math.sin(math.radians(alt)), 4) if alt > 1 else 57.3,
        "FOCNAME": "Simulated focuser",
        "FOCPOS": int(params.focuser_pos),
        "FOCUSPOS": int(params.focuser_pos),
        "FOCTEMP": round(float(params.temp_c), 3),
        "FOCUSTEM": round(float(params.temp_c), 3),
        "AMBTEMP": round(float(params.temp_c), 3),
        "SWCREATE": SOFTWARE,
    }
    if rig.focuser_step_um:  # NINA leaves it out when the focuser does not report it
        h["FOCUSSZ"] = float(rig.focuser_step_um)
    if params.bayer:
        h["BAYERPAT"] = params.bayer.upper()
        h["XBAYROFF"] = 0
        h["YBAYROFF"] = 0
    return h


# --------------------------------------------------------------------------- I/O edge

def fits_bytes(frame: Any) -> bytes:
    """The complete FITS file of a frame (big-endian uint16, BZERO=32768) as bytes.

    ``frame`` is anything with uint16 ``pixels`` and a ``header`` dict: a :class:`SimFrame`
    or a :class:`focuswatch.sim.mask.MaskFrame`. Watcher tests write it piecewise to imitate
    NINA writing a frame in place.
    """
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.ascontiguousarray(frame.pixels, dtype=np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's "card too long" style notes are harmless here
        for k, v in frame.header.items():
            hdu.header[k] = v
    buf = io.BytesIO()
    hdu.writeto(buf, output_verify="silentfix")
    return buf.getvalue()


def write_fits(path: str | Path, frame: SimFrame) -> Path:
    """Write a frame as FITS at ``path`` (or ``path / frame.file_name`` when ``path`` is a folder).

    A plain write (no temp file): exactly what a watcher sees from NINA. Returns the path.
    """
    p = Path(path)
    if p.is_dir():
        p = p / frame.file_name
    p.write_bytes(fits_bytes(frame))
    return p


def write_truth(path: str | Path, truths: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Path:
    """Write the truth of one frame (a dict) or of a series (a list) as JSON."""
    p = Path(path)
    p.write_text(json.dumps(_finite(truths), indent=1, default=_json_default, allow_nan=False), encoding="utf-8")
    return p


#: Strict JSON: infinities and NaN (a Gaussian's beta) become null (the one encoder, in records).
_finite = json_safe


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-able: {type(o).__name__}")


# --------------------------------------------------------------------------- night model

@dataclass
class SimFocuser:
    """A focuser whose best-focus position drifts with temperature and filter.

    ``best_focus(T, filter) = pos0 + coef_um_per_c / step_um * (T - temp0_c) + offset(filter)``
    (steps); the frame's defocus is ``(position - best_focus) * step_um`` (um, signed). This
    is the one mutable object here: it has real state (its position), like a real focuser.
    """

    position: int = 10000
    step_um: float = 2.0
    pos0: float = 10000.0
    temp0_c: float = 10.0
    coef_um_per_c: float = -20.0
    filter_offsets_steps: dict[str, float] = field(default_factory=dict)
    autofocus_error_um: float = 3.0

    def best_focus(self, temp_c: float, filter_name: str | None = None) -> float:
        """Best-focus position (steps, fractional) at ``temp_c`` through ``filter_name``."""
        off = self.filter_offsets_steps.get(filter_name or "", 0.0)
        return self.pos0 + self.coef_um_per_c / self.step_um * (temp_c - self.temp0_c) + off

    def defocus_um(self, temp_c: float, filter_name: str | None = None) -> float:
        """Signed defocus (um) at the current position."""
        return (self.position - self.best_focus(temp_c, filter_name)) * self.step_um

    def move_to(self, position: int) -> int:
        self.position = int(position)
        return self.position

    def autofocus(self, temp_c: float, filter_name: str | None, rng: np.random.Generator) -> int:
        """Move to best focus with a small random error (``autofocus_error_um`` standard deviation)."""
        err = rng.normal(0.0, self.autofocus_error_um) / self.step_um
        return self.move_to(int(round(self.best_focus(temp_c, filter_name) + err)))


@dataclass(frozen=True)
class NightPlan(Record):
    """How a simulated night goes; every field has a unit in its name.

    ``cloud_frames`` is ``(first, last, depth)``: frames first..last (inclusive) get
    ``cloud = depth`` (ramping in and out over a frame). ``filter_change`` is
    ``(frame, filter_name)``: from that frame on the filter changes (the focuser's
    ``filter_offsets_steps`` carry the parfocal offset). From ``dew_start_frame`` on, dew
    grows by ``dew_per_frame`` per frame (up to 1). ``wind_frames`` is ``(first, last,
    trail_px)``: gusts smear the stars of those frames by a random 30-100 % of ``trail_px``
    along ``wind_angle_deg``. ``autofocus_frames`` lists frame
    indices before which the focuser autofocuses (the caller may also call
    :meth:`SimFocuser.autofocus` itself between frames).
    """

    n_frames: int = 30
    start: str = "2026-11-21T21:00:00"
    exposure_s: float = 120.0
    interval_s: float = 130.0
    temp_start_c: float = 10.0
    cooling_c_per_hour: float = -0.8
    temp_noise_c: float = 0.05
    seeing_fwhm_arcsec: float = 2.5
    seeing_jitter_pct: float = 8.0
    cloud_frames: tuple[int, int, float] | None = None
    filter_change: tuple[int, str] | None = None
    autofocus_frames: tuple[int, ...] = ()
    dither_px: float = 3.0
    altitude_start_deg: float = 60.0
    altitude_end_deg: float = 60.0
    dew_start_frame: int | None = None
    dew_per_frame: float = 0.03
    wind_frames: tuple[int, int, float] | None = None
    wind_angle_deg: float = 20.0


def night_frames(base: SimParams, plan: NightPlan, focuser: SimFocuser, seed: int = 0) -> Iterator[SimParams]:
    """Yield the :class:`SimParams` of each frame of a night, in order.

    The defocus of each frame is read from ``focuser`` when the frame is produced, so a
    caller that autofocuses the focuser between ``next()`` calls refocuses the next frame.
    Seeing jitters randomly around ``plan.seeing_fwhm_arcsec`` (no trend; it grows with
    airmass^0.6 when the altitude changes), temperature falls at ``cooling_c_per_hour``
    with a little noise. Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 77]))
    t0 = _parse_date(plan.start)
    filt = base.filter_name
    for i in range(plan.n_frames):
        elapsed_s = i * plan.interval_s
        temp = plan.temp_start_c + plan.cooling_c_per_hour * elapsed_s / 3600.0 + rng.normal(0, plan.temp_noise_c)
        frac = i / max(plan.n_frames - 1, 1)
        alt = plan.altitude_start_deg + (plan.altitude_end_deg - plan.altitude_start_deg) * frac
        airmass_ratio = math.sin(math.radians(plan.altitude_start_deg)) / math.sin(math.radians(max(alt, 5.0)))
        seeing = plan.seeing_fwhm_arcsec * airmass_ratio ** 0.6 * \
            max(0.3, 1.0 + rng.normal(0, plan.seeing_jitter_pct / 100.0))
        cloud = 0.0
        if plan.cloud_frames is not None:
            a, b, depth = plan.cloud_frames
            if a <= i <= b:
                cloud = depth * (0.5 if i in (a, b) and b - a >= 2 else 1.0)
        if plan.filter_change is not None and i >= plan.filter_change[0]:
            filt = plan.filter_change[1]
        if i in plan.autofocus_frames:
            focuser.autofocus(temp, filt, rng)
        dither = rng.uniform(-plan.dither_px, plan.dither_px, 2) if plan.dither_px > 0 else (0.0, 0.0)
        dew = base.dew
        if plan.dew_start_frame is not None and i >= plan.dew_start_frame:
            dew = min(1.0, dew + plan.dew_per_frame * (i - plan.dew_start_frame + 1))
        trail_px, trail_angle = base.trail_px, base.trail_angle_deg
        gust = rng.uniform(0.3, 1.0)
        if plan.wind_frames is not None and plan.wind_frames[0] <= i <= plan.wind_frames[1]:
            trail_px, trail_angle = plan.wind_frames[2] * gust, plan.wind_angle_deg
        yield replace(
            base,
            defocus_um=round(focuser.defocus_um(temp, filt), 4),
            focuser_pos=int(focuser.position),
            temp_c=round(float(temp), 3),
            seeing_fwhm_arcsec=round(float(seeing), 4),
            cloud=float(min(cloud, 1.0)),
            dew=float(dew),
            trail_px=float(trail_px),
            trail_angle_deg=float(trail_angle),
            filter_name=filt,
            date_obs=(t0 + timedelta(seconds=elapsed_s)).isoformat(timespec="milliseconds"),
            exposure_s=plan.exposure_s,
            altitude_deg=round(alt, 3),
            frame_nr=base.frame_nr + i,
            noise_seed=None,
            dither_x_px=float(dither[0]),
            dither_y_px=float(dither[1]),
        )


def _parse_cloud(text: str | None) -> tuple[int, int, float] | None:
    if not text:
        return None
    parts = str(text).split(":")
    try:
        first, last = int(parts[0]), int(parts[1])
        depth = float(parts[2]) if len(parts) > 2 else 0.7
    except (ValueError, IndexError):
        raise ValueError(f"--cloud-frames {text!r}: expected FIRST:LAST[:DEPTH], e.g. 10:14:0.7") from None
    if not (0 <= first <= last and 0.0 <= depth <= 1.0):
        raise ValueError(f"--cloud-frames {text!r}: need 0 <= FIRST <= LAST and DEPTH in 0..1")
    return first, last, depth


def _parse_wind(text: str | None) -> tuple[int, int, float] | None:
    if not text:
        return None
    parts = str(text).split(":")
    try:
        first, last, px = int(parts[0]), int(parts[1]), float(parts[2]) if len(parts) > 2 else 6.0
    except (ValueError, IndexError):
        raise ValueError(f"--wind-frames {text!r}: expected FIRST:LAST[:TRAIL_PX], e.g. 10:14:6") from None
    if not (0 <= first <= last and px >= 0):
        raise ValueError(f"--wind-frames {text!r}: need 0 <= FIRST <= LAST and TRAIL_PX >= 0")
    return first, last, px


def _parse_filter_change(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    frame, _, name = str(text).partition(":")
    try:
        return int(frame), name.strip() or "L"
    except ValueError:
        raise ValueError(f"--filter-change {text!r}: expected FRAME:FILTER, e.g. 20:Ha") from None


def _parse_offsets(items: Sequence[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or ():
        name, _, steps = str(item).partition("=")
        try:
            out[name.strip()] = float(steps)
        except ValueError:
            raise ValueError(f"--filter-offset {item!r}: expected FILTER=STEPS, e.g. Ha=35") from None
    return out


def series_from_options(opts: Mapping[str, Any], rig: Rig | None = None) -> Iterator[SimParams]:
    """The frames ``focuswatch sim`` renders, from its options (argparse names; missing = default).

    One frame with the given defocus when ``frames`` is 1; otherwise a night
    (:func:`night_frames`) whose focuser starts ``defocus_um`` from best focus and drifts
    with ``drift_um_per_c`` as the temperature falls. Raises ``ValueError`` for bad options.
    """
    def get(key: str, default: Any) -> Any:
        v = opts.get(key)
        return default if v is None else v

    base = SimParams(
        width_px=int(get("width", 1024)), height_px=int(get("height", 1024)), n_stars=int(get("stars", 200)),
        seed=int(get("seed", 1)), rig=sim_rig(rig),
        seeing_fwhm_arcsec=float(get("seeing_arcsec", 2.5)), moffat_beta=float(get("beta", 3.5)),
        defocus_um=float(get("defocus_um", 0.0)), tilt_x_um=float(get("tilt_x_um", 0.0)),
        tilt_y_um=float(get("tilt_y_um", 0.0)), curvature_um=float(get("curvature_um", 0.0)),
        coma_px=float(get("coma_px", 0.0)), collimation=float(get("collimation", 0.0)),
        collimation_angle_deg=float(get("collimation_angle_deg", 30.0)), trail_px=float(get("trail_px", 0.0)),
        trail_angle_deg=float(get("trail_angle_deg", 0.0)), dew=float(get("dew", 0.0)),
        cloud=float(get("cloud", 0.0)), sky_adu=float(get("sky_adu", 800.0)),
        sky_gradient=float(get("sky_gradient", 0.0)), read_noise_e=float(get("read_noise_e", 3.0)),
        gain_e_per_adu=float(get("gain_e_per_adu", 1.0)), exposure_s=float(get("exposure_s", 120.0)),
        filter_name=str(get("filter", "L")), temp_c=float(get("temp_c", 10.0)),
        n_hot_pixels=int(get("hot_pixels", 0)), n_cosmic_rays=int(get("cosmic_rays", 0)),
        bayer=opts.get("bayer") or None, date_obs=str(get("start", "2026-11-21T22:14:03")),
        frame_nr=int(get("first_frame_nr", 1)),
    )
    n = int(get("frames", 1))
    if n < 1:
        raise ValueError(f"--frames {n}: must be at least 1")
    if n == 1:
        yield base
        return
    step = float(base.rig.focuser_step_um or 2.0)
    focuser = SimFocuser(position=0, step_um=step, pos0=10000.0, temp0_c=base.temp_c,
                         coef_um_per_c=float(get("drift_um_per_c", -20.0)),
                         filter_offsets_steps=_parse_offsets(opts.get("filter_offset")))
    focuser.move_to(int(round(focuser.best_focus(base.temp_c, base.filter_name) + base.defocus_um / step)))
    every = int(get("autofocus_every", 0))
    plan = NightPlan(
        n_frames=n, start=base.date_obs, exposure_s=base.exposure_s,
        interval_s=float(get("interval_s", base.exposure_s + 10.0)), temp_start_c=base.temp_c,
        cooling_c_per_hour=float(get("cooling_c_per_hour", -0.8)), seeing_fwhm_arcsec=base.seeing_fwhm_arcsec,
        seeing_jitter_pct=float(get("seeing_jitter_pct", 8.0)),
        cloud_frames=_parse_cloud(opts.get("cloud_frames")),
        filter_change=_parse_filter_change(opts.get("filter_change")),
        autofocus_frames=tuple(range(every, n, every)) if every > 0 else (),
        dew_start_frame=opts.get("dew_from_frame"), wind_frames=_parse_wind(opts.get("wind_frames")))
    yield from night_frames(base, plan, focuser, seed=base.seed)


#: Fields of :func:`truth_summary` (the ``focuswatch sim --json`` line, besides ``file``).
SUMMARY_KEYS = ("frame_nr", "date_obs", "filter_name", "temp_c", "focuser_pos", "defocus_um", "blur_px",
                "cfz_um", "hfr_px", "hfr_nina_px", "fwhm_px", "hfr0_px", "seeing_fwhm_arcsec",
                "seeing_fwhm_px", "cloud", "dew", "n_stars", "n_stars_inside", "n_saturated")


def truth_summary(truth: Mapping[str, Any]) -> dict[str, Any]:
    """The per-frame headline numbers of a truth dict (no star list, no parameters)."""
    eff = truth.get("effects", {})
    params = truth.get("params", {})
    out: dict[str, Any] = {"file": truth.get("file")}
    for k in SUMMARY_KEYS:
        out[k] = truth.get(k, eff.get(k, params.get(k)))
    return out


def iter_write_night(folder: str | Path, params: Sequence[SimParams] | Iterator[SimParams],
                     truth_name: str = "truth.json") -> Iterator[dict[str, Any]]:
    """Render and write frames one by one into ``folder`` (created), yielding each truth.

    ``truth_name`` (a JSON list of every truth so far) is rewritten after each frame, so a
    live demo's reader always finds a complete document. Each truth's ``"file"`` is the
    frame's file name inside ``folder``. A file of that name that this simulator did not
    write stops it with :class:`~focuswatch.errors.FrameError` (a user's frame is never overwritten).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    truths: list[dict[str, Any]] = []
    for sp in params:
        frame = render(sp)
        _refuse_foreign_frame(out / frame.file_name)
        path = write_fits(out / frame.file_name, frame)
        truth = {**frame.truth, "file": path.name}
        truths.append(truth)
        write_truth(out / truth_name, truths)
        yield truth


def _refuse_foreign_frame(path: Path) -> None:
    """Raise :class:`~focuswatch.errors.FrameError` when ``path`` holds a frame this simulator did not write.

    ``focuswatch sim`` pointed at a real session folder must never overwrite a user's frame
    that happens to have the same NINA-style name; its own earlier output may be replaced.
    """
    if not path.exists():
        return
    from focuswatch.errors import FrameError
    from focuswatch.io.frames import read_header

    try:
        ours = read_header(path).software == SOFTWARE
    except FrameError:
        ours = False
    if not ours:
        raise FrameError(path, "exists and was not written by focuswatch sim; not overwriting it "
                               "(choose an empty output folder)")


def write_night(folder: str | Path, params: Sequence[SimParams] | Iterator[SimParams],
                truth_name: str = "truth.json") -> list[dict[str, Any]]:
    """Render every frame, write it into ``folder`` (created) and all truths to ``truth_name``.

    Returns the truths (each with ``"file"``, the frame's name inside ``folder``).
    """
    return list(iter_write_night(folder, params, truth_name))
