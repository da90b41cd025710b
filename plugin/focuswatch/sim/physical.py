"""Physical-optics star renderer: obstructed pupil, spiders, aberrations, seeing, pixel.

Pure numpy (scipy only for the von Karman Bessel function); no files, no clock; a seeded
generator for the noise. Independent of :mod:`focuswatch.sim` (which the diagnosis was
first tuned on): this is the truth the calibration tables (``scripts/make_calibration.py``)
and the tests of the diagnosis are built on, and it is itself checked against GalSim
(``tests/test_physoptics.py``).

Model
-----
*Pupil.* A circle of diameter D with a central obstruction ``obstruction * D`` and 0, 3 or
4 spider vanes of width ``vane_width`` (in units of D), area-weighted at the edges.

*Aberrations* (Seidel forms, peak coefficients in waves, ``rho`` the normalised pupil
radius, ``theta`` the pupil angle): defocus ``W020 rho^2`` with ``W020 = Delta / (8 N^2)``
(Delta the focal-plane shift, same unit as the wavelength), coma ``-W131 rho^3
cos(theta - phi)`` (signed so the comet's tail points along ``phi``) and astigmatism
``W222 rho^2 cos^2(theta - phi)``. As in
:mod:`focuswatch.sim.mask`, the pupil phase is ``-2 pi W``.

*Image.* The diffraction PSF is ``|FFT(pupil)|^2`` on a focal-plane grid of spacing
``sample_um``: the pupil is sampled with ``P = n sample / (lambda N)`` points across, so
the grid is fixed in microns at every wavelength. The optical transfer function is then
multiplied by the long-exposure atmospheric MTF, ``exp(-3.44 (lambda nu F / r0)^(5/3))``
(Kolmogorov; von Karman with an outer scale ``L0`` through its exact structure function),
with ``r0`` from the seeing FWHM, ``FWHM = 0.975865 lambda / r0``, and by the pixel's
``sinc`` MTF. Sampling the result at pixel centres gives pixel-integrated values.

In focal-plane units everything is scale-free: a seeing FWHM of ``theta`` arcsec is
``theta / 206265 * F`` um at focal length F, and the atmospheric MTF only needs that width:
``lambda F / r0 = FWHM_um / 0.975865`` (:func:`focuswatch.optics.seeing_mtf`).

>>> psf = optical_psf(f_ratio=5.0, wavelength_nm=550.0, sample_um=0.5, n=256)
>>> round(float(psf.sum()), 6)
1.0
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from focuswatch.calibration import KOLMOGOROV_HLR_PER_FWHM  # a constant only: no table is read here
from focuswatch.optics import ARCSEC_PER_RAD
from focuswatch.optics import seeing_mtf  # the one atmospheric MTF (the diagnosis fits with it too)


# --------------------------------------------------------------------------- pupil and PSF

def pupil(n_pupil: float, n: int, obstruction: float = 0.0, n_vanes: int = 0, vane_width: float = 0.01,
          vane_angle_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Amplitude of the pupil on an ``n x n`` grid, ``n_pupil`` samples across the diameter.

    Returns ``(amplitude, rho, theta)``: the area-weighted transmission (0..1), the radius in
    units of the pupil radius and the azimuth (rad). Vanes are straight bars from the
    centre outward (``n_vanes`` equally spaced; 4 vanes make a cross), ``vane_width`` in
    units of the diameter.
    """
    c = (np.arange(n) - n // 2) / (n_pupil / 2.0)
    u, v = np.meshgrid(c, c)
    rho = np.hypot(u, v)
    dx = 2.0 / n_pupil  # one sample in pupil-radius units
    amp = np.clip(0.5 + (1.0 - rho) / dx, 0.0, 1.0)
    if obstruction > 0:
        amp *= np.clip(0.5 + (rho - obstruction) / dx, 0.0, 1.0)
    if n_vanes > 0:
        half_w = vane_width  # width in units of D = 2 radii -> half width in radii = vane_width
        for k in range(n_vanes):
            a = math.radians(vane_angle_deg) + 2.0 * math.pi * k / n_vanes
            along = u * math.cos(a) + v * math.sin(a)
            across = -u * math.sin(a) + v * math.cos(a)
            bar = np.clip(0.5 + (half_w - np.abs(across)) / dx, 0.0, 1.0) * (along > 0)
            amp *= 1.0 - bar
    return amp, rho, np.arctan2(v, u)


def wavefront_waves(rho: np.ndarray, theta: np.ndarray, *, defocus_waves: float = 0.0, coma_waves: float = 0.0,
                    coma_angle_deg: float = 0.0, astig_waves: float = 0.0,
                    astig_angle_deg: float = 0.0) -> np.ndarray:
    """Seidel wavefront (waves): ``W020 rho^2 + W131 rho^3 cos(t) + W222 rho^2 cos^2(t')``.

    ``coma_angle_deg`` is the direction the comet's tail points to in the image (the field
    direction for a star off axis); astigmatism's ``astig_angle_deg`` the direction of the
    line that focuses farther out.
    """
    w = defocus_waves * rho ** 2
    if coma_waves:
        # with the -2 pi W phase, a positive rho^3 cos term throws the flare to -angle: turned by 180 deg
        w = w - coma_waves * rho ** 3 * np.cos(theta - math.radians(coma_angle_deg))
    if astig_waves:
        w = w + astig_waves * (rho * np.cos(theta - math.radians(astig_angle_deg))) ** 2
    return w


def defocus_waves(defocus_um: float, f_ratio: float, wavelength_nm: float) -> float:
    """Peak defocus wavefront ``W020 = Delta / (8 N^2)`` in waves.

    >>> round(defocus_waves(8 * 25 * 0.55, 5.0, 550.0), 6)
    1.0
    """
    return defocus_um / (8.0 * f_ratio ** 2) / (wavelength_nm / 1000.0)


def optical_psf(*, f_ratio: float, wavelength_nm: float, sample_um: float, n: int, obstruction: float = 0.0,
                n_vanes: int = 0, vane_width: float = 0.01, vane_angle_deg: float = 0.0, defocus_um: float = 0.0,
                coma_waves: float = 0.0, coma_angle_deg: float = 0.0, astig_waves: float = 0.0,
                astig_angle_deg: float = 0.0) -> np.ndarray:
    """Diffraction PSF (one wavelength) on an ``n x n`` focal-plane grid of spacing ``sample_um``.

    Centred on index ``n // 2``, normalised to a sum of 1. Raises ``ValueError`` when the
    grid cannot hold the pupil (``sample_um`` over half ``lambda N``: aliased) or the phase
    is undersampled (the defocus too large for ``n``).
    """
    lam_um = wavelength_nm / 1000.0
    n_pupil = n * sample_um / (lam_um * f_ratio)
    if n_pupil > n / 2.0 + 1e-9:
        raise ValueError(f"optical_psf: sample {sample_um:.3g} um is coarser than lambda N / 2 "
                         f"= {lam_um * f_ratio / 2:.3g} um: the diffraction pattern would alias")
    w020 = defocus_waves(defocus_um, f_ratio, wavelength_nm)
    slope = 2.0 * math.pi * (2.0 * abs(w020) + 3.0 * abs(coma_waves) + 2.0 * abs(astig_waves)) / (n_pupil / 2.0)
    if slope > math.pi:
        raise ValueError(f"optical_psf: {n_pupil:.0f} pupil samples cannot carry {abs(w020):.1f} waves of "
                         "defocus: use a larger n")
    if n_pupil < 8:
        raise ValueError("optical_psf: fewer than 8 pupil samples: use a larger n or sample_um")
    amp, rho, theta = pupil(n_pupil, n, obstruction, n_vanes, vane_width, vane_angle_deg)
    w = wavefront_waves(rho, theta, defocus_waves=w020, coma_waves=coma_waves, coma_angle_deg=coma_angle_deg,
                        astig_waves=astig_waves, astig_angle_deg=astig_angle_deg)
    field_ = amp * np.exp(-2j * math.pi * w)
    img = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(field_)))) ** 2
    return img / img.sum()


# --------------------------------------------------------------------------- transfer functions

def _freq(n: int, sample_um: float) -> tuple[np.ndarray, np.ndarray]:
    f = np.fft.fftfreq(n, d=sample_um)
    fx, fy = np.meshgrid(f, f)
    return fx, fy


def moffat_otf(n: int, sample_um: float, fwhm_um: float, beta: float) -> np.ndarray:
    """OTF of a Moffat profile (a cross-check seeing profile), from its sampled image."""
    alpha = fwhm_um / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    c = (np.arange(n) - n // 2) * sample_um
    xx, yy = np.meshgrid(c, c)
    img = (1.0 + (xx * xx + yy * yy) / alpha ** 2) ** (-beta)
    return np.fft.fft2(np.fft.ifftshift(img / img.sum()))


@dataclass(frozen=True)
class Seeing:
    """A seeing profile: ``kind`` is ``kolmogorov``, ``vonkarman`` or ``moffat``; FWHM in arcsec.

    For von Karman, ``outer_scale_over_r0`` is L0/r0 (r0 from the Kolmogorov relation to
    ``fwhm_arcsec``); for Moffat, ``beta``.
    """

    fwhm_arcsec: float
    kind: str = "kolmogorov"
    beta: float = 4.0
    outer_scale_over_r0: float = 200.0

    def otf(self, n: int, sample_um: float, focal_length_mm: float) -> np.ndarray:
        """The seeing's transfer function on the FFT grid (unshifted)."""
        fwhm_um = self.fwhm_arcsec / ARCSEC_PER_RAD * focal_length_mm * 1000.0
        if self.fwhm_arcsec <= 0:
            return np.ones((n, n))
        if self.kind == "moffat":
            return moffat_otf(n, sample_um, fwhm_um, self.beta)
        fx, fy = _freq(n, sample_um)
        l0 = self.outer_scale_over_r0 if self.kind == "vonkarman" else None
        return seeing_mtf(np.hypot(fx, fy), fwhm_um, l0)


# --------------------------------------------------------------------------- one star

@dataclass(frozen=True)
class Optics:
    """Telescope, camera and aberrations of one star (units in the names)."""

    aperture_mm: float = 200.0
    focal_length_mm: float = 1000.0
    pixel_um: float = 3.76
    obstruction: float = 0.0
    n_vanes: int = 0
    vane_width: float = 0.01
    vane_angle_deg: float = 0.0
    wavelengths_nm: tuple[float, ...] = (550.0,)

    @property
    def f_ratio(self) -> float:
        return self.focal_length_mm / self.aperture_mm

    @property
    def plate_scale_arcsec_px(self) -> float:
        return self.pixel_um / (self.focal_length_mm * 1000.0) * ARCSEC_PER_RAD

    def with_(self, **kw: Any) -> "Optics":
        return replace(self, **kw)


@dataclass(frozen=True)
class Aberrations:
    """Per-star aberrations: defocus (um of focal shift), coma and astigmatism (peak waves)."""

    defocus_um: float = 0.0
    coma_waves: float = 0.0
    coma_angle_deg: float = 0.0
    astig_waves: float = 0.0
    astig_angle_deg: float = 0.0


def grid_for(optics_: Optics, ab: Aberrations, seeing: Seeing, oversample: int | None = None,
             min_stamp_px: int = 16) -> tuple[int, int]:
    """``(n, oversample)``: an FFT size and samples per pixel able to hold this star.

    The sample resolves the diffraction (at most ``lambda_min N / 2``); the grid holds the
    geometric blur plus 5 seeing FWHMs on each side, and enough pupil samples for the phase.
    """
    lam_min = min(optics_.wavelengths_nm) / 1000.0
    n_ = optics_.f_ratio
    if oversample is None:
        oversample = max(1, math.ceil(optics_.pixel_um / (0.45 * lam_min * n_)))
    sample = optics_.pixel_um / oversample
    blur_um = abs(ab.defocus_um) / n_ + 4.0 * abs(ab.coma_waves) * lam_min * n_ * 3.0 + \
        4.0 * abs(ab.astig_waves) * lam_min * n_ * 2.0
    see_um = seeing.fwhm_arcsec / ARCSEC_PER_RAD * optics_.focal_length_mm * 1000.0
    span_um = blur_um + 10.0 * max(see_um, 2.0 * lam_min * n_) + 8.0 * lam_min * n_
    n = max(min_stamp_px * oversample, int(math.ceil(span_um / sample)))
    lam_max = max(optics_.wavelengths_nm) / 1000.0
    w = max(abs(defocus_waves(ab.defocus_um, n_, lam * 1000.0)) for lam in (lam_min, lam_max))
    phase = 2.0 * w + 3.0 * abs(ab.coma_waves) + 2.0 * abs(ab.astig_waves)
    # pupil samples P = n sample / (lambda N) must give a phase slope under pi per sample
    n_phase = int(math.ceil((4.0 * phase + 16.0) * lam_max * n_ / sample))
    n = max(n, n_phase)
    n = int(2 ** math.ceil(math.log2(n)))
    return n, oversample


def _star_otf(optics_: Optics, ab: Aberrations, seeing: Seeing, n: int | None,
              oversample: int | None) -> tuple[np.ndarray, int, int, float]:
    """``(otf, n, oversample, sample_um)``: the star's optics (equal photon weights over the
    wavelengths) times the seeing, before the pixel; the one place both the detector image
    and the continuous PSF are made, so they cannot drift apart."""
    if n is None or oversample is None:
        n0, os0 = grid_for(optics_, ab, seeing, oversample)
        n = n or n0
        oversample = oversample or os0
    sample = optics_.pixel_um / oversample
    otf = np.zeros((n, n), complex)
    for lam in optics_.wavelengths_nm:
        psf = optical_psf(f_ratio=optics_.f_ratio, wavelength_nm=lam, sample_um=sample, n=n,
                          obstruction=optics_.obstruction, n_vanes=optics_.n_vanes, vane_width=optics_.vane_width,
                          vane_angle_deg=optics_.vane_angle_deg, defocus_um=ab.defocus_um,
                          coma_waves=ab.coma_waves * 550.0 / lam, coma_angle_deg=ab.coma_angle_deg,
                          astig_waves=ab.astig_waves * 550.0 / lam, astig_angle_deg=ab.astig_angle_deg)
        otf += np.fft.fft2(np.fft.ifftshift(psf))
    otf /= len(optics_.wavelengths_nm)
    otf *= seeing.otf(n, sample, optics_.focal_length_mm)
    return otf, n, oversample, sample


def star_image(optics_: Optics, ab: Aberrations, seeing: Seeing, *, oversample: int | None = None,
               n: int | None = None, dx_px: float = 0.0, dy_px: float = 0.0,
               pixel_integrate: bool = True) -> tuple[np.ndarray, int]:
    """A star's image on the detector pixels, sum 1; ``(stamp, oversample)``.

    The stamp is ``n / oversample`` pixels wide with the star at pixel ``stamp // 2``
    shifted by ``(dx_px, dy_px)``. Polychromatic when ``optics_.wavelengths_nm`` holds
    several wavelengths (equal photon weights). ``pixel_integrate=False`` samples the
    continuous PSF at pixel centres instead of integrating over the pixel.
    """
    otf, n, oversample, sample = _star_otf(optics_, ab, seeing, n, oversample)
    fx, fy = _freq(n, sample)
    if pixel_integrate:
        otf *= np.sinc(fx * optics_.pixel_um) * np.sinc(fy * optics_.pixel_um)
    if dx_px or dy_px:
        otf *= np.exp(-2j * math.pi * (fx * dx_px + fy * dy_px) * optics_.pixel_um)
    img = np.fft.fftshift(np.real(np.fft.ifft2(otf)))
    c = n // 2
    start = c % oversample
    det = img[start::oversample, start::oversample]
    det = np.clip(det, 0.0, None)
    return det / det.sum(), oversample


def continuous_psf(optics_: Optics, ab: Aberrations, seeing: Seeing, *, n: int | None = None,
                   oversample: int | None = None) -> tuple[np.ndarray, float]:
    """The PSF before the pixel (finely sampled): ``(image, sample_um)``, sum 1, centre ``n // 2``."""
    otf, n, oversample, sample = _star_otf(optics_, ab, seeing, n, oversample)
    img = np.clip(np.fft.fftshift(np.real(np.fft.ifft2(otf))), 0.0, None)
    return img / img.sum(), sample


# --------------------------------------------------------------------------- measuring the truth

def encircled_radius(img: np.ndarray, sample: float, fraction: float = 0.5,
                     centre: tuple[float, float] | None = None) -> float:
    """Radius holding ``fraction`` of the light about ``centre`` (default: the centroid), in
    units of ``sample``: the true half-light radius for 0.5. Sub-sampled (4x4 per sample)."""
    n_y, n_x = img.shape
    yy, xx = np.mgrid[0:n_y, 0:n_x].astype(float)
    tot = img.sum()
    if centre is None:
        cx, cy = float((img * xx).sum() / tot), float((img * yy).sum() / tot)
    else:
        cx, cy = centre
    sub = (np.arange(4) + 0.5) / 4.0 - 0.5
    rs, ws = [], []
    for sy in sub:
        for sx in sub:
            rs.append(np.hypot(xx + sx - cx, yy + sy - cy).ravel())
            ws.append(img.ravel() / 16.0)
    r = np.concatenate(rs)
    w = np.concatenate(ws)
    o = np.argsort(r)
    cs = np.cumsum(w[o]) / tot
    return float(np.interp(fraction, cs, r[o])) * sample


def fwhm(img: np.ndarray, sample: float) -> float:
    """Full width at half maximum of the azimuthally averaged profile (outermost crossing), in
    units of ``sample``; about the brightest point's ring for donuts (half the ring's peak)."""
    n_y, n_x = img.shape
    yy, xx = np.mgrid[0:n_y, 0:n_x].astype(float)
    tot = img.sum()
    cx, cy = float((img * xx).sum() / tot), float((img * yy).sum() / tot)
    r = np.hypot(xx - cx, yy - cy).ravel()
    v = img.ravel()
    bins = np.arange(0.0, min(n_x, n_y) / 2.0, 0.25)
    idx = np.digitize(r, bins)
    m = len(bins)
    prof = np.bincount(idx, v, minlength=m + 1)[1:m] / np.maximum(np.bincount(idx, minlength=m + 1)[1:m], 1)
    cnt = np.bincount(idx, minlength=m + 1)[1:m]
    centres = (bins[:-1] + 0.125)
    good = cnt > 0
    prof, centres = prof[good], centres[good]
    pk = prof.max()
    above = np.nonzero(prof >= pk / 2.0)[0]
    j = int(above[-1])
    if j + 1 >= len(prof):
        return 2.0 * float(centres[j]) * sample
    rh = float(np.interp(pk / 2.0, [prof[j + 1], prof[j]], [centres[j + 1], centres[j]]))
    return 2.0 * rh * sample


# --------------------------------------------------------------------------- a frame

@dataclass(frozen=True)
class FieldAberrations:
    """Field-dependent aberrations; ``h`` is the field radius in units of the half diagonal.

    ``defocus_um``: the focus error everywhere; ``curvature_um``: extra focal shift at
    ``h = 1`` growing as ``h^2`` (field curvature / wrong backfocus); ``tilt_um``: focal
    shift from edge to centre along ``tilt_angle_deg`` (a tilted sensor, linear in x);
    ``coma_waves``: peak coma at ``h = 1``, growing as ``h`` and pointing away from the
    centre; ``astig_waves``: astigmatism at ``h = 1`` growing as ``h^2``, along the radius.
    """

    defocus_um: float = 0.0
    curvature_um: float = 0.0
    tilt_um: float = 0.0
    tilt_angle_deg: float = 0.0
    coma_waves: float = 0.0
    astig_waves: float = 0.0

    def at(self, u: float, v: float) -> Aberrations:
        """The aberrations of a star at normalised field position ``(u, v)`` (``h = hypot``)."""
        h2 = u * u + v * v
        ang = math.degrees(math.atan2(v, u))
        t = math.radians(self.tilt_angle_deg)
        tilt = self.tilt_um * (u * math.cos(t) + v * math.sin(t))
        return Aberrations(defocus_um=self.defocus_um + self.curvature_um * h2 + tilt,
                           coma_waves=self.coma_waves * math.sqrt(h2), coma_angle_deg=ang,
                           astig_waves=self.astig_waves * h2, astig_angle_deg=ang)


@dataclass(frozen=True)
class FrameSpec:
    """Everything that makes one rendered frame (units in the names)."""

    optics: Optics = field(default_factory=Optics)
    seeing: Seeing = field(default_factory=lambda: Seeing(2.5))
    aberrations: FieldAberrations = field(default_factory=FieldAberrations)
    width_px: int = 512
    height_px: int = 512
    n_stars: int = 60
    flux_range_e: tuple[float, float] = (2.0e4, 4.0e5)
    sky_e: float = 300.0
    read_noise_e: float = 4.0
    bias_adu: float = 500.0
    gain_e_per_adu: float = 1.0
    saturation_adu: float = 65535.0
    margin_px: int = 24
    min_separation_px: float = 0.0
    field_zones: int = 1
    seed: int = 1


@dataclass
class RenderedFrame:
    """uint16 ``pixels`` and the ``truth`` (star positions, fluxes, per-star aberrations)."""

    pixels: np.ndarray
    truth: dict[str, Any]


def render_frame(spec: FrameSpec) -> RenderedFrame:
    """Render a field of stars with noise (seeded).

    With uniform aberrations every star shares one PSF (shifted by Fourier phase); with
    field-dependent ones each star is rendered at its own aberrations, or, with
    ``field_zones > 1``, at those of the centre of its cell in a ``field_zones`` square grid
    (faster, for big frames).
    """
    rng = np.random.default_rng(spec.seed)
    w, h = spec.width_px, spec.height_px
    ab = spec.aberrations
    uniform = not (ab.curvature_um or ab.tilt_um or ab.coma_waves or ab.astig_waves)
    worst = Aberrations(defocus_um=abs(ab.defocus_um) + abs(ab.curvature_um) + abs(ab.tilt_um),
                        coma_waves=ab.coma_waves, astig_waves=ab.astig_waves)
    n, os_ = grid_for(spec.optics, worst, spec.seeing)
    stamp_px = len(range((n // 2) % os_, n, os_))  # pixels of a decimated stamp
    m = max(spec.margin_px, 4)
    xs: list[float] = []
    ys: list[float] = []
    tries = 0
    while len(xs) < spec.n_stars and tries < 50 * spec.n_stars:
        tries += 1
        x, y = rng.uniform(m, w - 1 - m), rng.uniform(m, h - 1 - m)
        if spec.min_separation_px and any(math.hypot(x - a, y - b) < spec.min_separation_px for a, b in zip(xs, ys)):
            continue
        xs.append(x)
        ys.append(y)
    lo, hi = spec.flux_range_e
    flux = np.exp(rng.uniform(math.log(lo), math.log(hi), len(xs)))
    img = np.zeros((h + 2 * stamp_px, w + 2 * stamp_px))
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    hd = math.hypot(cx, cy)
    cache: dict[Any, np.ndarray] = {}
    per_star = []
    for x, y, f in zip(xs, ys, flux):
        u, v = (x - cx) / hd, (y - cy) / hd
        if spec.field_zones > 1 and not uniform:
            k = spec.field_zones
            iu = min(int((x / w) * k), k - 1)
            iv = min(int((y / h) * k), k - 1)
            u = ((iu + 0.5) / k * w - cx) / hd
            v = ((iv + 0.5) / k * h - cy) / hd
        a = ab.at(0.0, 0.0) if uniform else ab.at(u, v)
        ix, iy = int(round(x)), int(round(y))
        fx, fy = x - ix, y - iy
        key = (round(u, 6), round(v, 6)) if not uniform else "u"
        if uniform or spec.field_zones > 1:
            if key not in cache:
                cache[key] = _otf_of(spec, a, n, os_)
            stamp = _shifted(cache[key], spec.optics.pixel_um / os_, spec.optics.pixel_um, os_, fx, fy)
        else:
            stamp, _ = star_image(spec.optics, a, spec.seeing, n=n, oversample=os_, dx_px=fx, dy_px=fy)
        sy0 = iy + stamp_px - stamp_px // 2
        sx0 = ix + stamp_px - stamp_px // 2
        img[sy0:sy0 + stamp_px, sx0:sx0 + stamp_px] += f * stamp
        per_star.append({"x": float(x), "y": float(y), "flux_e": float(f), "defocus_um": a.defocus_um,
                         "coma_waves": a.coma_waves, "astig_waves": a.astig_waves})
    img = img[stamp_px:stamp_px + h, stamp_px:stamp_px + w]
    electrons = rng.poisson(np.clip(img + spec.sky_e, 0, None)).astype(float)
    electrons += rng.normal(0.0, spec.read_noise_e, electrons.shape)
    adu = np.clip(np.round(electrons / spec.gain_e_per_adu + spec.bias_adu), 0, spec.saturation_adu)
    truth = {"stars": per_star, "plate_scale_arcsec_px": spec.optics.plate_scale_arcsec_px,
             "f_ratio": spec.optics.f_ratio, "seeing_fwhm_arcsec": spec.seeing.fwhm_arcsec,
             "seeing_kind": spec.seeing.kind, "defocus_um": ab.defocus_um, "obstruction": spec.optics.obstruction}
    return RenderedFrame(adu.astype(np.uint16), truth)


def _otf_of(spec: FrameSpec, a: Aberrations, n: int, os_: int) -> np.ndarray:
    o = spec.optics
    sample = o.pixel_um / os_
    otf = np.zeros((n, n), complex)
    for lam in o.wavelengths_nm:
        psf = optical_psf(f_ratio=o.f_ratio, wavelength_nm=lam, sample_um=sample, n=n, obstruction=o.obstruction,
                          n_vanes=o.n_vanes, vane_width=o.vane_width, vane_angle_deg=o.vane_angle_deg,
                          defocus_um=a.defocus_um, coma_waves=a.coma_waves * 550.0 / lam,
                          coma_angle_deg=a.coma_angle_deg, astig_waves=a.astig_waves * 550.0 / lam,
                          astig_angle_deg=a.astig_angle_deg)
        otf += np.fft.fft2(np.fft.ifftshift(psf))
    otf /= len(o.wavelengths_nm)
    otf *= spec.seeing.otf(n, sample, o.focal_length_mm)
    fx, fy = _freq(n, sample)
    return otf * np.sinc(fx * o.pixel_um) * np.sinc(fy * o.pixel_um)


def _shifted(otf: np.ndarray, sample: float, pixel_um: float, os_: int, dx_px: float, dy_px: float) -> np.ndarray:
    n = otf.shape[0]
    fx, fy = _freq(n, sample)
    img = np.fft.fftshift(np.real(np.fft.ifft2(otf * np.exp(-2j * math.pi * (fx * dx_px + fy * dy_px) * pixel_um))))
    c = n // 2
    det = np.clip(img[c % os_::os_, c % os_::os_], 0.0, None)
    return det / det.sum()


def frame_header(spec: FrameSpec, *, exposure_s: float = 60.0, filter_name: str = "L") -> dict[str, Any]:
    """A minimal FITS header for a rendered frame (what :mod:`focuswatch.io.frames` reads)."""
    o = spec.optics
    return {"IMAGETYP": "Light Frame", "EXPTIME": exposure_s, "XPIXSZ": o.pixel_um, "YPIXSZ": o.pixel_um,
            "FOCALLEN": o.focal_length_mm, "APTDIA": o.aperture_mm, "XBINNING": 1, "YBINNING": 1,
            "FILTER": filter_name, "GAIN": 100}


__all__: Sequence[str] = (
    "pupil", "wavefront_waves", "defocus_waves", "optical_psf", "seeing_mtf", "Seeing", "Optics", "Aberrations",
    "grid_for", "star_image", "continuous_psf", "encircled_radius", "fwhm", "FieldAberrations", "FrameSpec",
    "RenderedFrame", "render_frame", "frame_header",
)


# --------------------------------------------------------------------------- the labelled set

#: Rigs of the labelled set: (name, aperture mm, focal length mm, pixel um, obstruction, vanes).
LABELLED_RIGS: tuple[tuple[str, float, float, float, float, int], ...] = (
    ("200 mm f/5 Newtonian", 200.0, 1000.0, 3.76, 0.33, 4),
    ("80 mm f/6 refractor", 80.0, 480.0, 2.4, 0.0, 0),
    ("130 mm f/7 refractor", 130.0, 910.0, 3.76, 0.0, 0),
    ("203 mm f/10 SCT, bin 2", 203.0, 2032.0, 7.52, 0.35, 0),
    ("250 mm f/4.8 Newtonian", 250.0, 1200.0, 4.63, 0.45, 3),
    ("150 mm f/8 RC", 150.0, 1200.0, 5.4, 0.4, 4),
)
#: Defocus of the labelled set in units of the CFZ width (4.88 lambda N^2).
LABELLED_DEFOCUS_CFZ: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)


@dataclass(frozen=True)
class LabelledFrame:
    """One frame of the focus-versus-seeing labelled set and its truth.

    ``blur_to_seeing`` is the *effective* defocus blur over the seeing FWHM: the diameter of
    the geometric annulus that grows the true half-light radius of the seeing-limited star
    as much as the rendered defocus does (both measured on this renderer's continuous PSFs;
    near focus, wave optics grows a star far less than the geometric cone ``Delta / N``
    suggests). ``truth`` is ``focus_miss`` when the defocus is at least 1 CFZ *and* that
    blur at least 1.2x the seeing FWHM, ``not_focus`` when it is at most 0.35 CFZ or the
    blur at most 0.6x the seeing (the seeing hides it: it is inside the seeing-aware focus
    zone of Goldman & Megdal, whose 5 % tolerance sits at a blur of ~0.52x the seeing),
    else ``ambiguous`` (reported, not scored).
    """

    spec: FrameSpec
    rig_name: str
    defocus_cfz: float
    blur_to_seeing: float
    fwhm_px: float
    truth: str


def _kolmogorov_growth_blur(h_px: float, h0_px: float, eps: float) -> float:
    """Diameter (px) of the geometric annulus that grows a Kolmogorov star of half-light radius
    ``h0_px`` to ``h_px`` (seeing x annulus computed here, by FFT, independently of the
    calibration tables)."""
    if h_px <= h0_px:
        return 0.0
    fwhm = h0_px / KOLMOGOROV_HLR_PER_FWHM
    n, d = 256, None
    lo, hi = 0.0, 4.0 * h_px
    for _ in range(16):
        b = 0.5 * (lo + hi)
        d = (max(4.0 * fwhm, b) * 1.6 + 6.0 * fwhm) * 2 / n
        f = np.fft.fftfreq(n, d=d)
        nu = np.hypot(*np.meshgrid(f, f))
        otf = seeing_mtf(nu, fwhm)
        if b > 0:
            from scipy.special import j1

            def disk(rad: float) -> np.ndarray:
                x = 2.0 * math.pi * nu * rad
                return np.where(x > 1e-9, rad * j1(x) / np.where(nu > 0, nu, 1.0), math.pi * rad * rad)

            area = math.pi * ((b / 2) ** 2 - (eps * b / 2) ** 2)
            otf = otf * (disk(b / 2) - (disk(eps * b / 2) if eps > 0 else 0.0)) / area
        img = np.clip(np.fft.fftshift(np.real(np.fft.ifft2(otf))), 0, None)
        h = encircled_radius_fast(img, d)
        h0 = KOLMOGOROV_HLR_PER_FWHM * fwhm
        if h / h0 < h_px / h0_px:
            lo = b
        else:
            hi = b
    return 0.5 * (lo + hi)


def encircled_radius_fast(img: np.ndarray, sample: float, fraction: float = 0.5) -> float:
    """Half-light radius about the grid centre without sub-sampling (for smooth, wide images)."""
    n = img.shape[0]
    c = np.arange(n) - n // 2
    r = np.hypot(*np.meshgrid(c, c)).ravel()
    o = np.argsort(r, kind="stable")
    cs = np.cumsum(img.ravel()[o])
    cs /= cs[-1]
    return float(np.interp(fraction, cs, r[o])) * sample


def effective_blur_px(o: Optics, seeing: Seeing, defocus_um: float) -> float:
    """The geometric annulus diameter (px) equivalent to a defocus's growth of the true HLR."""
    img0, s0 = continuous_psf(o, Aberrations(), seeing)
    img1, s1 = continuous_psf(o, Aberrations(defocus_um=defocus_um), seeing)
    h0 = encircled_radius(img0, s0) / o.pixel_um
    h1 = encircled_radius(img1, s1) / o.pixel_um
    return _kolmogorov_growth_blur(h1, h0, o.obstruction)


def labelled_set(seed: int = 0, n_frames: int = 40, *, width_px: int = 320, n_stars: int = 36,
                 seeing_range_arcsec: tuple[float, float] = (1.5, 5.0), fwhm_range_px: tuple[float, float] = (1.5, 6.0),
                 defocus_cfz: Sequence[float] = LABELLED_DEFOCUS_CFZ,
                 kinds: Sequence[str] = ("kolmogorov", "kolmogorov", "kolmogorov", "vonkarman", "moffat"),
                 ) -> list[LabelledFrame]:
    """Draw ``n_frames`` labelled frames (seeded): rig, seeing (kind, FWHM), defocus.

    Seeing and rig are drawn until the seeing FWHM falls in ``fwhm_range_px`` on the sensor.
    Frames are monochromatic at 550 nm, with noise; a different ``seed`` is a held-out set.
    """
    rng = np.random.default_rng(seed)
    out: list[LabelledFrame] = []
    while len(out) < n_frames:
        name, ap, fl, pix, eps, vanes = LABELLED_RIGS[int(rng.integers(len(LABELLED_RIGS)))]
        see = float(rng.uniform(*seeing_range_arcsec))
        o = Optics(aperture_mm=ap, focal_length_mm=fl, pixel_um=pix, obstruction=eps, n_vanes=vanes, vane_width=0.01)
        fwhm_px = see / o.plate_scale_arcsec_px
        if not fwhm_range_px[0] <= fwhm_px <= fwhm_range_px[1]:
            continue
        kind = str(kinds[int(rng.integers(len(kinds)))])
        seeing = Seeing(see, kind=kind, beta=float(rng.uniform(2.5, 5.0)),
                        outer_scale_over_r0=float(rng.uniform(50, 300)))
        cfz = float(defocus_cfz[int(rng.integers(len(defocus_cfz)))])
        n = o.f_ratio
        defocus = cfz * 4.88 * 0.55 * n * n
        blur_px = defocus / n / pix
        # the effective blur only matters where the CFZ alone does not settle the truth
        x = effective_blur_px(o, seeing, defocus) / fwhm_px if cfz > 0.35 else blur_px / fwhm_px
        if cfz >= 1.0 and x >= 1.2:
            truth = "focus_miss"
        elif cfz <= 0.35 or x <= 0.6:
            truth = "not_focus"
        else:
            truth = "ambiguous"
        spec = FrameSpec(optics=o, seeing=seeing, aberrations=FieldAberrations(defocus_um=defocus),
                         width_px=width_px, height_px=width_px, n_stars=n_stars, seed=int(rng.integers(1 << 30)),
                         margin_px=int(min(max(12, blur_px / 2 + 3 * fwhm_px), width_px // 4)))
        out.append(LabelledFrame(spec, name, cfz, x, fwhm_px, truth))
    return out
