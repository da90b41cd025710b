"""Physical-optics stars rendered with GalSim: independent truth for the measurement tests.

Nothing here calls focuswatch: the PSF is GalSim's ``OpticalPSF`` (an obstructed pupil
with spider vanes and a Zernike defocus, Fourier optics) convolved with GalSim's
``Kolmogorov`` seeing and the pixel, and the true half-light radius comes from GalSim's own
enclosed-flux calculation on a high-resolution noiseless render.

Defocus conversion. A focal-plane defocus ``delta_um`` at focal ratio ``N`` is a wavefront
error of ``W_pv = delta_um / (8 N^2)`` peak to valley; GalSim's ``defocus`` is the Noll Z4
coefficient in waves RMS, ``Z4 = sqrt(3) (2 rho^2 - 1)``, whose peak to valley is
``2 sqrt(3)`` times the coefficient. The geometric blur diameter is ``delta_um / N``
(checked against the render by :func:`ring_outer_radius_px`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ARCSEC_PER_RAD = 206264.806


@dataclass(frozen=True)
class Scope:
    """Telescope and camera: the issue's 200 mm f/5 Newtonian with 3.76 um pixels by default."""

    diam_mm: float = 200.0
    f_ratio: float = 5.0
    pixel_um: float = 3.76
    lam_nm: float = 550.0

    @property
    def focal_mm(self) -> float:
        return self.diam_mm * self.f_ratio

    @property
    def scale_arcsec_px(self) -> float:
        return 206.265 * self.pixel_um / self.focal_mm


def defocus_waves_rms(delta_um: float, scope: Scope) -> float:
    """GalSim's Z4 coefficient (waves RMS) for a focal-plane defocus of ``delta_um``."""
    w_pv_um = delta_um / (8.0 * scope.f_ratio ** 2)
    return w_pv_um / (scope.lam_nm / 1000.0) / (2.0 * math.sqrt(3.0))


def psf(scope: Scope, *, obscuration: float = 0.0, defocus_um: float = 0.0, nstruts: int = 0,
        strut_thick: float = 0.02, seeing_fwhm_arcsec: float = 2.0, strut_angle_deg: float = 0.0):
    """The GalSim profile: optics (Fourier) * Kolmogorov seeing, in arcsec."""
    import galsim

    lam_over_diam = scope.lam_nm * 1e-9 / (scope.diam_mm * 1e-3) * ARCSEC_PER_RAD
    blur_arcsec = defocus_um / scope.f_ratio / 1000.0 / scope.focal_mm * ARCSEC_PER_RAD
    # Pupil sampling sets the image plane: its field of view is lam / pupil_plane_scale and
    # its sampling lam / pupil_plane_size. A defocused star needs a field several times its
    # geometric blur (else it wraps round), while the fine pupil GalSim would pick for a
    # diffraction-limited star makes huge FFTs; a pupil twice the aperture samples the
    # image at Nyquist. The defocus phase then changes by < 0.5 wave per pupil sample.
    kw = {}
    n_waves = abs(defocus_waves_rms(defocus_um, scope)) * 2 * math.sqrt(3)
    fov_arcsec = max(6.0 * blur_arcsec, 8.0 * seeing_fwhm_arcsec, 64.0 * lam_over_diam)
    lam_m = scope.lam_nm * 1e-9
    if n_waves > 2:  # near focus GalSim's own sampling is small and right
        kw["pupil_plane_scale"] = lam_m / (fov_arcsec / ARCSEC_PER_RAD)
        kw["pupil_plane_size"] = 2.8 * scope.diam_mm * 1e-3
    with warnings.catch_warnings():
        # GalSim sizes its own pupil from the diffraction limit and warns that ours (sized
        # from the geometric blur) is coarse; the half-light radii match the geometric
        # values (see ring_outer_radius_px and the tests), so the warning does not apply
        warnings.simplefilter("ignore")
        optics = galsim.OpticalPSF(lam_over_diam=lam_over_diam, obscuration=obscuration,
                                   nstruts=nstruts, strut_thick=strut_thick,
                                   strut_angle=strut_angle_deg * galsim.degrees,
                                   defocus=defocus_waves_rms(defocus_um, scope), **kw)
    if seeing_fwhm_arcsec and seeing_fwhm_arcsec > 0:
        return galsim.Convolve([optics, galsim.Kolmogorov(fwhm=seeing_fwhm_arcsec)])
    return optics


def draw(profile, scope: Scope, size_px: int, *, dx_px: float = 0.0, dy_px: float = 0.0,
         flux: float = 1.0) -> np.ndarray:
    """Render ``profile`` on the camera's pixels (method 'auto' integrates over the pixel)."""
    import galsim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # see psf(): GalSim's sampling advice for its own pupil
        img = profile.withFlux(flux).drawImage(nx=size_px, ny=size_px, scale=scope.scale_arcsec_px,
                                               offset=(dx_px, dy_px), method="auto")
    return img.array.astype(np.float64)


def exact_hlr_arcsec(profile) -> float:
    """Half-light radius (arcsec) of a GalSim profile from its Fourier transform, no image drawn.

    Encircled energy EE(R) = (2 pi)^-2 * sum over k of F(k) * 2 pi R J1(|k| R) / |k| dk^2: the
    profile's transform F against the transform of the disc of radius R, on GalSim's own k grid
    (``stepk``: the real-space period it needs without folding; ``maxk``: where F is negligible).
    Why not the encircled energy of a pixel grid: it counts whole pixels by their centres, the
    number of centres inside a radius jumps as it grows (the Gauss circle problem), and the size
    so measured moves by up to ~1 % between neighbouring defocus steps at 4x oversampling -
    as much as a 0.3 CFZ defocus grows a star. This reads GalSim's closed-form Kolmogorov and
    Moffat radii to a few 1e-5 and a 16x-oversampled pixel grid's to 1e-4. Works for profiles that
    are not round (vanes, the pixel): the disc's transform is round whatever the profile.
    """
    from scipy.special import j1

    dk = profile.stepk
    n = 2 * int(math.ceil(profile.maxk / dk)) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kimg = profile.drawKImage(nx=n, ny=n, scale=dk)
    ky, kx = (np.indices((n, n)) - (n - 1) / 2.0) * dk
    k = np.hypot(kx, ky).ravel()
    centre = k == 0.0
    k[centre] = 1.0
    weight = kimg.array.real.ravel() * (dk * dk / (2.0 * math.pi) ** 2 / profile.flux)

    def encircled(radius: float) -> float:
        disc = 2.0 * math.pi * radius * j1(k * radius) / k
        disc[centre] = math.pi * radius * radius
        return float(np.dot(weight, disc))

    lo, hi = 0.0, math.pi / dk                        # half the folding period bounds any star
    while hi - lo > 1e-6 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if encircled(mid) < 0.5 else (lo, mid)
    return 0.5 * (lo + hi)


def true_hlr_px(profile, scope: Scope) -> float:
    """True half-light radius in camera pixels, of the profile as it reaches the sensor.

    The camera's pixel is convolved in: its width is part of what a measurement of the image
    can see, so it is part of the truth compared with. Exact (:func:`exact_hlr_arcsec`).
    """
    import galsim

    scale = scope.scale_arcsec_px
    return exact_hlr_arcsec(galsim.Convolve([profile, galsim.Pixel(scale)])) / scale


def true_hlr_px_intrinsic(profile, scope: Scope) -> float:
    """Half-light radius of the profile before the pixel (camera px), exact (:func:`exact_hlr_arcsec`)."""
    return exact_hlr_arcsec(profile) / scope.scale_arcsec_px


def ring_outer_radius_px(image: np.ndarray, frac: float = 0.98) -> float:
    """Radius holding ``frac`` of the light of a centred render: ~ the geometric blur radius."""
    c = (image.shape[0] - 1) / 2.0
    yy, xx = np.indices(image.shape)
    r = np.hypot(xx - c, yy - c).ravel()
    order = np.argsort(r)
    cum = np.cumsum(image.ravel()[order])
    return float(r[order][int(np.searchsorted(cum, frac * cum[-1]))])


def add_noise(img: np.ndarray, *, sky_adu: float = 500.0, read_noise_adu: float = 5.0, seed: int = 0) -> np.ndarray:
    """Sky level plus Poisson and read noise (gain 1), as float32."""
    rng = np.random.default_rng(seed)
    lam = np.clip(img + sky_adu, 0, None)
    return (rng.poisson(lam) + rng.normal(0.0, read_noise_adu, img.shape)).astype(np.float32)


def place(canvas: np.ndarray, stamp: np.ndarray, x: float, y: float) -> None:
    """Add ``stamp`` (odd or even size) to ``canvas`` with its centre at integer (x, y), clipped."""
    h, w = stamp.shape
    x0, y0 = int(round(x)) - w // 2, int(round(y)) - h // 2
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(canvas.shape[1], x0 + w), min(canvas.shape[0], y0 + h)
    if xe > xs and ye > ys:
        canvas[ys:ye, xs:xe] += stamp[ys - y0:ye - y0, xs - x0:xe - x0]


def spread(rng: np.random.Generator, n: int, lo_px: float, hi_px: float, min_sep_px: float,
           max_tries: int = 20000):
    """Yield up to ``n`` random centres in ``[lo_px, hi_px]`` (both axes), each at least
    ``min_sep_px`` from the ones before. Lazy, so a caller drawing its fluxes from the same
    ``rng`` between centres keeps the random stream (and so the fields) reproducible."""
    pos: list[tuple[float, float]] = []
    for _ in range(max_tries):
        if len(pos) >= n:
            return
        x, y = rng.uniform(lo_px, hi_px, 2)
        if all(math.hypot(x - a, y - b) >= min_sep_px for a, b in pos):
            pos.append((x, y))
            yield float(x), float(y)


def scatter(stamp: np.ndarray, n: int, size_px: int, *, seed: int, min_sep: float, margin: float,
            flux: tuple[float, float] = (3e5, 1.5e6)) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """``n`` copies of a normalised stamp at random places at least ``min_sep`` apart, with noise.

    Returns the noisy frame and the centres placed (fewer than ``n`` when the field is too
    crowded to hold them). Shared by the tests and the benchmark so both see the same fields.
    """
    rng = np.random.default_rng(seed)
    canvas = np.zeros((size_px, size_px))
    pos: list[tuple[float, float]] = []
    for x, y in spread(rng, n, margin, size_px - 1 - margin, min_sep):
        pos.append((x, y))
        place(canvas, stamp * rng.uniform(*flux), x, y)
    return add_noise(canvas, seed=seed), pos


def small_star_field(profile, scope: Scope, *, seed: int, n: int = 30, size_px: int = 300) -> np.ndarray:
    """``n`` well separated in-focus stars of ``profile``, each drawn at its sub-pixel offset, with noise."""
    rng = np.random.default_rng(seed)
    canvas = np.zeros((size_px, size_px))
    for x, y in spread(rng, n, 20, size_px - 20, 40):
        stamp = draw(profile, scope, 41, dx_px=x - round(x), dy_px=y - round(y))
        place(canvas, stamp * rng.uniform(5e4, 3e5), x, y)
    return add_noise(canvas, seed=2)


def bayer_field(profile, scope: Scope, pattern: str, *, n: int = 50, size_px: int = 256,
                seed: int = 1) -> np.ndarray:
    """Stars of one PSF, coloured (R 0.8, G 1, B 0.6), mosaicked into a Bayer ``pattern``, with noise."""
    rng = np.random.default_rng(seed)
    chans = {c: np.zeros((size_px, size_px)) for c in "RGB"}
    for x, y in spread(rng, n, 12, size_px - 12, 18):
        stamp = draw(profile, scope, 21, dx_px=x - round(x), dy_px=y - round(y))
        flux = rng.uniform(2e4, 2e5)
        for c, w in zip("RGB", (0.8, 1.0, 0.6)):
            place(chans[c], stamp * flux * w, x, y)
    yy, xx = np.indices((size_px, size_px))
    mosaic = np.zeros((size_px, size_px))
    for dy in (0, 1):
        for dx in (0, 1):
            site = (yy % 2 == dy) & (xx % 2 == dx)
            mosaic[site] = chans[pattern[2 * dy + dx]][site]
    return add_noise(mosaic, seed=seed)


def green_field(profile, scope: Scope, *, n: int = 50, size_px: int = 256, seed: int = 1) -> np.ndarray:
    """The stars of :func:`bayer_field` (same seed, same places and fluxes) on a mono sensor:
    the green channel at every pixel, with noise: the frame a Bayer measurement should match."""
    rng = np.random.default_rng(seed)
    canvas = np.zeros((size_px, size_px))
    for x, y in spread(rng, n, 12, size_px - 12, 18):
        stamp = draw(profile, scope, 21, dx_px=x - round(x), dy_px=y - round(y))
        place(canvas, stamp * rng.uniform(2e4, 2e5), x, y)
    return add_noise(canvas, seed=seed)


def power_law_sky(stamp: np.ndarray, size_px: int, n: int, *, faintest_adu: float, sky_seed: int, noise_seed: int,
                  margin_px: int, transmission: float = 1.0) -> np.ndarray:
    """A square frame of ``n`` copies of ``stamp`` (odd size) on one sky: positions and fluxes fixed by
    ``sky_seed`` (fluxes from ``faintest_adu`` up with N(>F) ~ F^-0.75, as real star fields count),
    dimmed by ``transmission`` (a cloud), 800 ADU of sky, Poisson and 5 ADU read noise from
    ``noise_seed``: nights of one field differ only in the PSF, the cloud and the noise."""
    sky = np.random.default_rng(sky_seed)
    xy = sky.uniform(margin_px, size_px - margin_px, (n, 2)).astype(int)
    flux = faintest_adu * (1 - sky.uniform(size=n)) ** (-1 / 0.75)
    h = stamp.shape[0] // 2
    img = np.zeros((size_px, size_px))
    for (x, y), f in zip(xy, flux):
        img[y - h:y + h + 1, x - h:x + h + 1] += stamp * f * transmission
    rng = np.random.default_rng(noise_seed)
    return np.clip(rng.poisson(img + 800.0) + rng.normal(0, 5, img.shape), 0, 65535).astype(np.float32)


def bayer_night(folder, defocus_um, *, scope: Scope | None = None, seeing_arcsec: float = 2.5, size_px: int = 256,
                n: int = 60, seed: int = 3, pattern: str = "GRBG", dither_px: float = 6.0):
    """A one-shot-colour night on one sky: one FITS sub per entry of ``defocus_um`` (um of
    focal-plane defocus), written to ``folder`` as ``light_000.fits``... with the headers a
    smart telescope writes (BAYERPAT, FOCALLEN, XPIXSZ, APTDIA). Physical optics (GalSim:
    the scope's Airy pattern, Zernike defocus, Kolmogorov seeing, the pixel), coloured R 0.8 /
    G 1 / B 0.6, mosaicked through ``pattern``; each sub but the first dithered by up to
    ``dither_px`` (random, sub-pixel). The default scope is the issue's 50 mm f/5 with 2.9 um
    pixels (2.4"/px). Returns the scope."""
    return _night(folder, defocus_um, scope=scope or Scope(diam_mm=50.0, f_ratio=5.0, pixel_um=2.9, lam_nm=550.0),
                  seeing_arcsec=seeing_arcsec, size_px=size_px, n=n, seed=seed, pattern=pattern, dither_px=dither_px)


def mono_night(folder, defocus_um, *, scope: Scope | None = None, seeing_arcsec=2.5, size_px: int = 256,
               n: int = 60, seed: int = 3, dither_px: float = 6.0):
    """The night of :func:`bayer_night` on a mono sensor (no ``BAYERPAT``): the green light at
    every pixel, same sky, dithers and noise model. ``seeing_arcsec`` is one FWHM (") for the
    night or one per sub (the seeing changing between subs). The default scope is the issue's 50 mm f/5
    with 2.9 um pixels (undersampled stars, ~1.4 px at 2.5"); pass ``Scope()`` (200 mm f/5,
    3.76 um) for well-sampled ones (~3.3 px). Returns the scope."""
    return _night(folder, defocus_um, scope=scope or Scope(diam_mm=50.0, f_ratio=5.0, pixel_um=2.9, lam_nm=550.0),
                  seeing_arcsec=seeing_arcsec, size_px=size_px, n=n, seed=seed, pattern=None, dither_px=dither_px)


def _night(folder, defocus_um, *, scope: Scope, seeing_arcsec, size_px: int, n: int, seed: int,
           pattern: str | None, dither_px: float):
    """Render the subs of :func:`bayer_night` (``pattern``) or :func:`mono_night` (``None``)."""
    from pathlib import Path

    from astropy.io import fits

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    xy = rng.uniform(14, size_px - 14, (n, 2))
    flux = 10 ** rng.uniform(3.7, 4.9, n)
    yy, xx = np.indices((size_px, size_px))
    for k, delta in enumerate(defocus_um):
        see = float(seeing_arcsec) if np.ndim(seeing_arcsec) == 0 else float(seeing_arcsec[k])
        prof = psf(scope, defocus_um=float(delta), seeing_fwhm_arcsec=see)
        blur_px = float(delta) / scope.f_ratio / scope.pixel_um
        stamp_px = 21 if blur_px < 3 else 2 * int(blur_px + 10) + 1
        dx, dy = rng.uniform(-dither_px, dither_px, 2) if k else (0.0, 0.0)
        green = np.zeros((size_px, size_px))
        for (x, y), f in zip(xy, flux):
            px, py = x + dx, y + dy
            place(green, draw(prof, scope, stamp_px, dx_px=px - round(px), dy_px=py - round(py)) * f, px, py)
        mosaic = green if pattern is None else np.zeros((size_px, size_px))
        for sy in (0, 1) if pattern else ():
            for sx in (0, 1):
                site = (yy % 2 == sy) & (xx % 2 == sx)
                mosaic[site] = green[site] * {"R": 0.8, "G": 1.0, "B": 0.6}[pattern[2 * sy + sx]]
        img = np.clip(add_noise(mosaic, sky_adu=300.0, seed=100 + k), 0, 65535).astype(np.uint16)
        h = fits.Header()
        if pattern:
            h["BAYERPAT"] = pattern
        h["FOCALLEN"], h["XPIXSZ"], h["YPIXSZ"] = scope.focal_mm, scope.pixel_um, scope.pixel_um
        h["APTDIA"], h["IMAGETYP"], h["EXPTIME"] = scope.diam_mm, "Light Frame", 10.0
        h["DATE-OBS"] = f"2026-11-21T22:{k:02d}:00"
        fits.PrimaryHDU(img, h).writeto(folder / f"light_{k:03d}.fits", overwrite=True)
    return scope
