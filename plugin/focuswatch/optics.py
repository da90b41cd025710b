"""Pure optics: focus zones, diffraction, sampling and defocus <-> blur.

Every function here is plain arithmetic on floats; nothing reads files or the clock.
Units are in the names: ``_um`` micrometres, ``_nm`` nanometres, ``_mm`` millimetres,
``_px`` pixels (of the binned sensor), ``_arcsec`` arc seconds.

The critical focus zone (CFZ) is the *total* width ``4.88 * lambda * N**2`` (the seed
calculator's convention: f/6 at 550 nm gives 96.62 um), so "within the zone" means
``|defocus| <= cfz / 2`` from best focus.

>>> round(cfz_um(6.0, 550.0), 2)
96.62
>>> round(plate_scale_arcsec_px(3.76, 1000.0), 3)
0.776
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
from focuswatch.model.numerics import ARCSEC_PER_RAD  # noqa: F401 - one copy; importable from here too
from focuswatch.model.records import Record

#: Kolmogorov long-exposure seeing: FWHM = KOLMOGOROV_FWHM_FACTOR * lambda / r0 (GalSim's value;
#: the one copy: the Fourier-optics renderer and the donut fit read it from here).
KOLMOGOROV_FWHM_FACTOR = 0.975865

#: The Kolmogorov phase structure function ``D(r) = 6.88 (r / r0)^(5/3)``, halved: the
#: long-exposure MTF is ``exp(-D / 2)``. Kept at 6.88 / 2 (the exact 2 (24/5 Gamma(6/5))^(5/6) / 2
#: is 3.44194), as the calibration tables were made with it: with 3.44 the PSF's FWHM is
#: 0.97553 lambda / r0 instead of 0.97586, 0.03 % narrower than KOLMOGOROV_FWHM_FACTOR says.
KOLMOGOROV_HALF_STRUCTURE = 3.44

#: von Karman: ``D(r) = VON_KARMAN_STRUCTURE (L0/r0)^(5/3) [1 - x^(5/6) K_5/6(x) / (2^(-1/6)
#: Gamma(5/6))]``, ``x = 2 pi r / L0``; it tends to 6.88 (r / r0)^(5/3) as L0 grows.
VON_KARMAN_STRUCTURE = 0.17253

#: Common imaging wavelengths (nm) with the filter they stand for.
COMMON_WAVELENGTHS_NM: dict[str, float] = {
    "blue 450": 450.0,
    "OIII 500.7": 500.7,
    "green 550": 550.0,
    "Ha 656.3": 656.3,
    "SII 672.4": 672.4,
}

#: Effective wavelength for a filter name as capture programs write it (FILTER keyword).
FILTER_WAVELENGTH_NM: dict[str, float] = {
    "L": 550.0, "LUM": 550.0, "LUMINANCE": 550.0, "CLEAR": 550.0, "NONE": 550.0, "UVIR": 550.0,
    "R": 640.0, "RED": 640.0, "G": 530.0, "GREEN": 530.0, "B": 450.0, "BLUE": 450.0,
    "HA": 656.3, "H-ALPHA": 656.3, "HALPHA": 656.3, "H": 656.3,
    "OIII": 500.7, "O3": 500.7, "O": 500.7, "SII": 672.4, "S2": 672.4, "S": 672.4,
}


#: a filter name's trailing bandwidth ("7NM", "_6.5NM", "-3NM"), left out to find the filter
_FILTER_BANDWIDTH = re.compile(r"[-_]?\d+(?:\.\d+)?NM$")


def wavelength_for_filter(filter_name: str | None, default_nm: float = 550.0) -> float:
    """Return the effective wavelength of a filter from its name, ``default_nm`` if unknown.

    >>> wavelength_for_filter("Ha")
    656.3
    >>> wavelength_for_filter("weird", 550.0)
    550.0

    Names as capture programs and filter wheels spell them, with the bandwidth or a separator,
    are the same filter: ``Ha 7nm``, ``H-alpha_3nm``, ``OIII 6.5 nm``, ``SII-3nm``.

    >>> wavelength_for_filter("OIII 6.5 nm"), wavelength_for_filter("Ha_7nm")
    (500.7, 656.3)
    """
    if not filter_name:
        return default_nm
    key = filter_name.strip().upper().replace(" ", "")
    if key in FILTER_WAVELENGTH_NM:
        return FILTER_WAVELENGTH_NM[key]
    key = _FILTER_BANDWIDTH.sub("", key).replace("_", "")
    return FILTER_WAVELENGTH_NM.get(key, FILTER_WAVELENGTH_NM.get(key.replace("-", ""), default_nm))


def cfz_um(f_ratio: float, wavelength_nm: float = 550.0) -> float:
    """Total width of the classic critical focus zone, ``4.88 * lambda * N**2`` in um."""
    return 4.88 * (wavelength_nm / 1000.0) * f_ratio ** 2


def cfz_seeing_um(seeing_arcsec: float, tolerance_pct: float, aperture_mm: float, f_ratio: float) -> float:
    """Seeing-aware focus zone (Goldman & Megdal 2010, used by Ekos), total width in um.

    ``0.00225 * theta * sqrt(tau) * A * N**2`` with ``theta`` the seeing FWHM in arcsec,
    ``tau`` the tolerated growth of the star in percent of theta (1-15) and ``A`` the
    aperture in mm. Poor seeing widens the zone: focus errors hide under it.
    """
    return 0.00225 * seeing_arcsec * math.sqrt(tolerance_pct) * aperture_mm * f_ratio ** 2


#: The Airy pattern of a clear circular pupil in units of lambda/D (angle) or lambda N (focal
#: plane): the first dark ring's diameter (2 x 1.2197) and the core's FWHM (1.0290).
AIRY_DIAMETER_PER_LAMBDA = 2.44
AIRY_FWHM_PER_LAMBDA = 1.029


def airy_diameter_um(f_ratio: float, wavelength_nm: float = 550.0) -> float:
    """Diameter of the Airy disk (first dark ring) at the focal plane, ``2.44 * lambda * N``."""
    return AIRY_DIAMETER_PER_LAMBDA * (wavelength_nm / 1000.0) * f_ratio


def airy_diameter_arcsec(aperture_mm: float, wavelength_nm: float = 550.0) -> float:
    """Angular Airy disk diameter, ``2.44 * lambda / D`` in arcsec."""
    return AIRY_DIAMETER_PER_LAMBDA * (wavelength_nm * 1e-9) / (aperture_mm * 1e-3) * ARCSEC_PER_RAD


def airy_fwhm_um(f_ratio: float, wavelength_nm: float = 550.0) -> float:
    """FWHM of the Airy pattern's core, ``1.029 * lambda * N`` (used when grading a master)."""
    return AIRY_FWHM_PER_LAMBDA * (wavelength_nm / 1000.0) * f_ratio


def airy_fwhm_arcsec(aperture_mm: float, wavelength_nm: float = 550.0) -> float:
    """Angular FWHM of the Airy pattern's core, ``1.029 * lambda / D`` in arcsec (the
    diffraction part of the in-focus FWHM the diagnosis expects).

    >>> round(airy_fwhm_arcsec(200.0, 550.0), 3)
    0.584
    """
    return AIRY_FWHM_PER_LAMBDA * (wavelength_nm * 1e-9) / (aperture_mm * 1e-3) * ARCSEC_PER_RAD


def plate_scale_arcsec_px(pixel_um: float, focal_length_mm: float) -> float:
    """Sky covered by one (binned) pixel, ``206.265 * pixel_um / focal_mm`` arcsec."""
    return 206.265 * pixel_um / focal_length_mm


def blur_diameter_um(defocus_um: float, f_ratio: float) -> float:
    """Geometric blur diameter of a defocus: the cone of light cut ``defocus`` from its apex."""
    return abs(defocus_um) / f_ratio


def defocus_um_from_blur(blur_diameter_um: float, f_ratio: float) -> float:
    """Inverse of :func:`blur_diameter_um`: defocus that makes a blur of this diameter."""
    return abs(blur_diameter_um) * f_ratio


def true_hfr_factor(obstruction: float = 0.0) -> float:
    """True half-flux radius of a uniform annulus, in units of its outer radius.

    Half the light of an annulus from ``eps*R`` to ``R`` lies inside ``R*sqrt((1+eps^2)/2)``.

    >>> round(true_hfr_factor(0.0), 4)
    0.7071
    """
    eps = float(obstruction)
    return math.sqrt((1.0 + eps * eps) / 2.0)


def nina_hfr_factor(obstruction: float = 0.0) -> float:
    """NINA/ASTAP flux-weighted mean radius of a uniform annulus, in units of its outer radius.

    ``(2/3) * (1 - eps^3) / (1 - eps^2)``; 2/3 for a full disk.
    """
    eps = float(obstruction)
    if eps <= 0.0:
        return 2.0 / 3.0
    return (2.0 / 3.0) * (1.0 - eps ** 3) / (1.0 - eps ** 2)


#: Moffat beta of the seeing profile assumed by the defocus model (Kolmogorov-like wings;
#: real nights give 2.5-4.5 and the answer moves by a few percent across that range).
SEEING_BETA = 3.5


def defocused_star(blur: float, obstruction: float = 0.0, beta: float = SEEING_BETA,
                   n: int = 256, margin: float = 12.0) -> dict[str, float]:
    """Shape of a seeing profile blurred by a defocus annulus, in units of the in-focus HFR.

    The seeing is a Moffat (``beta``) scaled so its true half-flux radius is 1; the defocus
    blur is a uniform annulus of outer diameter ``blur`` and hole ``obstruction * blur``.
    Returns ``r50`` and ``r90`` (radii holding 50 and 90 % of the light) and ``fwhm`` (twice
    the outermost half-maximum radius, so a donut's width is its outer one). Computed by FFT
    convolution on a grid scaled to the blur, with the true encircled energy: the forward
    model behind the defocus estimates of the policy and the diagnosis. The grid spans the
    blur plus ``margin`` in-focus half-flux radii on each side, in ``n`` x ``n`` samples.
    """
    alpha = 1.0 / math.sqrt(2.0 ** (1.0 / (beta - 1.0)) - 1.0)  # Moffat with r50 = 1
    half = max(blur / 2.0, 1.0) + margin
    h = 2.0 * half / n
    ax = (np.arange(n) - n // 2) * h
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    r = np.hypot(xx, yy)
    img = (1.0 + (r / alpha) ** 2) ** (-beta)
    if blur > 2 * h:
        disk = ((r <= blur / 2.0) & (r >= obstruction * blur / 2.0)).astype(float)
        img = np.fft.fftshift(np.fft.irfft2(np.fft.rfft2(np.fft.ifftshift(img)) * np.fft.rfft2(np.fft.ifftshift(disk)),
                                            s=(n, n)))
    order = np.argsort(r, axis=None)
    rs = r.ravel()[order]
    cum = np.cumsum(np.clip(img, 0, None).ravel()[order])
    cum /= cum[-1]
    prof = img[n // 2, n // 2:]
    k = int(np.nonzero(prof >= prof.max() / 2.0)[0][-1])
    r_half = ax[n // 2 + k] + (prof[k] - prof.max() / 2.0) / max(prof[k] - prof[min(k + 1, len(prof) - 1)], 1e-12) * h
    return {"r50": float(np.interp(0.5, cum, rs)), "r90": float(np.interp(0.9, cum, rs)), "fwhm": 2.0 * float(r_half)}


@lru_cache(maxsize=64)
def _hfr_growth_table(obstruction: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """HFR of (seeing Moffat convolved with a defocus annulus) over the in-focus HFR.

    Returns ``(b, g)``: blur diameters in units of the in-focus half-flux radius and the
    half-flux radius they give, also in those units (:func:`defocused_star` at each node;
    by scaling, one table serves every seeing). Why not the quadrature sum of the two
    half-flux radii: it overstates the growth by ~5-10 % around one focus zone, which made
    refocus triggers fire late.
    """
    b_nodes = np.concatenate([np.linspace(0.0, 4.0, 21), np.linspace(4.5, 20.0, 32), np.linspace(21.0, 80.0, 24)])
    # finer grids where the growth is small and must be exact
    g = np.array([defocused_star(b, obstruction, beta, n=384 if b <= 4.0 else 256)["r50"] for b in b_nodes])
    g = g / g[0] if g[0] > 0 else g
    g = np.maximum.accumulate(g)  # monotonic for inversion (grid noise at the 0.1 % level)
    return b_nodes, g


def _growth(obstruction: float, beta: float | None) -> tuple[np.ndarray, np.ndarray]:
    """``(b, g)`` growth table: the calibrated Kolmogorov one (``beta=None``, generated data,
    :func:`focuswatch.calibration.geometric_growth`) or a Moffat of that ``beta``."""
    if beta is None:
        from focuswatch import calibration

        return calibration.geometric_growth(round(float(obstruction), 3))
    return _hfr_growth_table(round(float(obstruction), 2), round(float(beta), 1))


def defocus_blur_px_from_hfr(hfr_px: float, hfr0_px: float, obstruction: float = 0.0,
                             beta: float | None = SEEING_BETA) -> float:
    """Blur diameter (px) of the defocus disk that grows the in-focus HFR ``hfr0_px`` to ``hfr_px``.

    Geometric optics (no diffraction): the seeing-dominated limit, scale-free. The seeing is
    Kolmogorov with ``beta=None`` (the calibration tables) or a Moffat of ``beta`` (the
    default keeps the former model, which the policy's vectorised growth curves and the
    simulator use). Beyond the table (blur over 80x the in-focus
    HFR) the disk alone dominates and ``B = 2*HFR/k``. Returns 0 when the star is not larger
    than the baseline. When the focal ratio and pixel are known, prefer
    :func:`defocus_um_from_hfr`, which also accounts for diffraction near focus.

    >>> round(defocus_blur_px_from_hfr(hfr_px_for_blur(12.0, 2.0, 0.3, None), 2.0, 0.3, None), 3)
    12.0
    """
    if hfr0_px <= 0 or hfr_px <= hfr0_px:
        return 0.0
    b, g = _growth(obstruction, beta)
    ratio = hfr_px / hfr0_px
    if ratio >= g[-1]:
        return 2.0 * hfr_px / true_hfr_factor(obstruction)
    return float(np.interp(ratio, g, b)) * hfr0_px


def hfr_px_for_blur(blur_px: float, hfr0_px: float, obstruction: float = 0.0,
                    beta: float | None = SEEING_BETA) -> float:
    """Half-flux radius (px) of a seeing profile of HFR ``hfr0_px`` blurred by a defocus disk
    (geometric optics; Kolmogorov seeing with ``beta=None``, else a Moffat of ``beta``)."""
    if blur_px <= 0:
        return hfr0_px
    b, g = _growth(obstruction, beta)
    x = blur_px / hfr0_px
    if x >= b[-1]:
        return math.hypot(hfr0_px, true_hfr_factor(obstruction) * blur_px / 2.0)
    return float(np.interp(x, b, g)) * hfr0_px


def _lambda_n_px(f_ratio: float, pixel_um: float, wavelength_nm: float) -> float:
    return wavelength_nm / 1000.0 * f_ratio / pixel_um


def defocus_um_from_hfr(hfr_px: float, hfr0_px: float, f_ratio: float, pixel_um: float,
                        obstruction: float = 0.0, beta: float | None = None, *,
                        wavelength_nm: float = 550.0) -> float:
    """Estimated defocus (um, unsigned) from the growth of the true half-flux radius.

    With ``beta=None`` (the default) the calibrated physical-optics model: Kolmogorov
    seeing convolved with the diffraction PSF of the obstructed pupil defocused by
    ``W020 = Delta / (8 N^2)`` (``focuswatch/data/focus_seeing_calibration.json``, made by
    ``scripts/make_calibration.py``). The in-focus HFR in units of ``lambda N`` fixes the
    seeing, the measured HFR then the defocus. Near focus this matters where diffraction is
    a fair part of the star: on physical-optics renders of an 80 mm f/6 in 2" seeing the
    geometric Moffat model read 10-20 % low from 0.5 to 2 CFZ, this model within 3 %
    (benchmarks/diagnose_eval.py). With a numeric ``beta``, the former geometric Moffat model. Whether the
    focuser is inside or outside focus cannot be told from star size alone.

    >>> d = defocus_um_from_hfr(hfr_px_for_defocus(100.0, 1.8, 5.0, 3.76, 0.3), 1.8, 5.0, 3.76, 0.3)
    >>> round(d)
    100
    """
    if beta is not None:
        return defocus_um_from_blur(defocus_blur_px_from_hfr(hfr_px, hfr0_px, obstruction, beta) * pixel_um,
                                    f_ratio)
    if hfr0_px <= 0 or hfr_px <= hfr0_px or f_ratio <= 0 or pixel_um <= 0:
        return 0.0
    from focuswatch import calibration

    ln_px = _lambda_n_px(f_ratio, pixel_um, wavelength_nm)
    h0, h = hfr0_px / ln_px, hfr_px / ln_px
    s = calibration.seeing_for_hlr(h0, obstruction)
    if s >= calibration.max_seeing_s():  # seeing-dominated beyond the table: geometric limit
        return defocus_um_from_blur(defocus_blur_px_from_hfr(hfr_px, hfr0_px, obstruction, None) * pixel_um,
                                    f_ratio)
    w, g = calibration.growth_row(s, obstruction)
    scale = h0 / g[0]  # the clamp at the diffraction limit keeps the ratio, not the size
    if h / scale >= g[-1]:  # past the table: geometric, from the last node
        w_last = w[-1]
        blur_last = 8.0 * w_last * ln_px
        extra = defocus_blur_px_from_hfr(hfr_px, hfr_px_for_blur(blur_last, hfr0_px, obstruction, None), obstruction,
                                         None)
        return defocus_um_from_blur((blur_last + extra) * pixel_um, f_ratio)
    w_waves = float(np.interp(h / scale, g, w))
    return 8.0 * f_ratio ** 2 * w_waves * wavelength_nm / 1000.0


def hfr_px_for_defocus(defocus_um: float, hfr0_px: float, f_ratio: float, pixel_um: float,
                       obstruction: float = 0.0, beta: float | None = None, *,
                       wavelength_nm: float = 550.0) -> float:
    """Forward model: the half-flux radius expected at a defocus, given the in-focus HFR
    (the calibrated physical-optics model with ``beta=None``; see :func:`defocus_um_from_hfr`)."""
    if beta is not None:
        return hfr_px_for_blur(blur_diameter_um(defocus_um, f_ratio) / pixel_um, hfr0_px, obstruction, beta)
    if hfr0_px <= 0:
        return hfr0_px
    from focuswatch import calibration

    ln_px = _lambda_n_px(f_ratio, pixel_um, wavelength_nm)
    s = calibration.seeing_for_hlr(hfr0_px / ln_px, obstruction)
    if s >= calibration.max_seeing_s():
        return hfr_px_for_blur(blur_diameter_um(defocus_um, f_ratio) / pixel_um, hfr0_px, obstruction, None)
    w, g = calibration.growth_row(s, obstruction)
    wv = abs(defocus_um) / (8.0 * f_ratio ** 2 * wavelength_nm / 1000.0)
    if wv > w[-1]:
        blur_last = 8.0 * w[-1] * ln_px
        h_last = g[-1] / g[0] * hfr0_px
        return hfr_px_for_blur(blur_diameter_um(defocus_um, f_ratio) / pixel_um - blur_last, h_last, obstruction,
                               None)
    return float(np.interp(wv, w, g)) / g[0] * hfr0_px


def seeing_mtf(nu: Any, fwhm: Any, outer_scale_over_r0: float | None = None) -> np.ndarray:
    """Long-exposure atmospheric MTF at spatial frequency ``nu`` for a seeing FWHM ``fwhm``
    (any one length unit: cycles per px with a FWHM in px, cycles per um with um, ...).

    Kolmogorov (``outer_scale_over_r0`` None or 0): ``exp(-3.44 (nu lambda / r0)^(5/3))`` with
    ``lambda / r0 = fwhm / KOLMOGOROV_FWHM_FACTOR``. With ``outer_scale_over_r0`` (L0 / r0) the
    von Karman structure function with the same r0, so its FWHM is narrower than ``fwhm``.
    ``nu`` and ``fwhm`` broadcast (one copy for the Fourier-optics renderer, which draws with it,
    and the stacked-profile fit of the diagnosis, which fits with it: rows of FWHMs x frequencies).

    >>> [round(float(v), 4) for v in seeing_mtf(np.array([0.0, 0.5, 1.0]), 1.0)]
    [1.0, 0.3235, 0.0278]
    """
    r_over_r0 = np.abs(nu) * fwhm / KOLMOGOROV_FWHM_FACTOR
    if not outer_scale_over_r0:
        return np.exp(-KOLMOGOROV_HALF_STRUCTURE * r_over_r0 ** (5.0 / 3.0))
    from scipy.special import gamma, kv

    l0 = float(outer_scale_over_r0)
    x = 2.0 * math.pi * r_over_r0 / l0
    xs = np.where(x > 1e-12, x, 1e-12)
    k = 1.0 / (2.0 ** (-1.0 / 6.0) * gamma(5.0 / 6.0))  # 0.99440: D -> 6.88 (r/r0)^(5/3) as L0 -> inf
    d = VON_KARMAN_STRUCTURE * l0 ** (5.0 / 3.0) * (1.0 - k * xs ** (5.0 / 6.0) * kv(5.0 / 6.0, xs))
    return np.exp(-0.5 * np.where(x > 1e-12, d, 0.0))


def sampling_verdict(seeing_px: float) -> str:
    """Classify sampling by the number of pixels across the seeing FWHM.

    Under 2 px per FWHM stars are blocky (undersampled); 2-3.5 px is well sampled; above 3.5
    the pixels add read noise without adding detail (oversampled; bin 2x2).
    """
    if seeing_px < 2.0:
        return "undersampled"
    if seeing_px <= 3.5:
        return "well sampled"
    return "oversampled"


@dataclass(frozen=True)
class Rig:
    """The telescope and camera: everything the optics need.

    ``pixel_um`` is the physical pixel size; the effective (binned) pixel is
    ``pixel_um * binning``. Capture programs that already write the binned size (NINA's
    XPIXSZ) are read with ``binning = 1`` by :mod:`focuswatch.config`.
    """

    aperture_mm: float | None = None
    focal_length_mm: float | None = None
    pixel_um: float | None = None
    binning: int = 1
    obstruction: float = 0.0
    wavelength_nm: float = 550.0
    seeing_arcsec: float | None = None
    seeing_tolerance_pct: float = 5.0
    focuser_step_um: float | None = None
    f_ratio_given: float | None = field(default=None)

    @property
    def f_ratio(self) -> float | None:
        if self.f_ratio_given:
            return float(self.f_ratio_given)
        if self.aperture_mm and self.focal_length_mm:
            return self.focal_length_mm / self.aperture_mm
        return None

    @property
    def effective_pixel_um(self) -> float | None:
        return None if self.pixel_um is None else self.pixel_um * max(int(self.binning), 1)

    @property
    def effective_aperture_mm(self) -> float | None:
        if self.aperture_mm:
            return self.aperture_mm
        if self.f_ratio_given and self.focal_length_mm:
            return self.focal_length_mm / self.f_ratio_given
        return None

    @property
    def plate_scale_arcsec_px(self) -> float | None:
        if self.effective_pixel_um and self.focal_length_mm:
            return plate_scale_arcsec_px(self.effective_pixel_um, self.focal_length_mm)
        return None

    def cfz_um(self, wavelength_nm: float | None = None) -> float | None:
        n = self.f_ratio
        return None if n is None else cfz_um(n, wavelength_nm or self.wavelength_nm)

    def with_(self, **changes: Any) -> "Rig":
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["f_ratio"] = self.f_ratio
        d.pop("f_ratio_given", None)
        return d


@dataclass(frozen=True)
class WavelengthRow(Record):
    """One row of the calculator's wavelength table."""

    label: str
    wavelength_nm: float
    cfz_um: float
    cfz_px: float | None
    airy_um: float
    airy_px: float | None


@dataclass(frozen=True)
class FocusZone(Record):
    """What ``focuswatch calc`` reports for a rig (field names are the ``--json`` keys)."""

    f_ratio: float
    wavelength_nm: float
    cfz_um: float
    cfz_px: float | None
    cfz_half_um: float
    cfz_seeing_um: float | None
    cfz_seeing_tolerance_pct: float | None
    airy_um: float
    airy_px: float | None
    airy_arcsec: float | None
    plate_scale_arcsec_px: float | None
    seeing_arcsec: float | None
    seeing_px: float | None
    sampling: str | None
    focuser_step_um: float | None
    steps_across_cfz: float | None
    blur_px_per_10um: float | None
    wavelengths: tuple[WavelengthRow, ...]


def focus_zone(rig: Rig) -> FocusZone:
    """Compute every calculator figure for ``rig``; raises ``ValueError`` if N is unknown.

    >>> z = focus_zone(Rig(aperture_mm=100, focal_length_mm=600, pixel_um=3.76, focuser_step_um=2))
    >>> round(z.cfz_um, 2), round(z.cfz_px, 1), round(z.steps_across_cfz)
    (96.62, 25.7, 48)
    """
    n = rig.f_ratio
    if n is None or n <= 0:
        raise ValueError("the focal ratio is unknown: give focal_length_mm and aperture_mm, or f_ratio")
    lam = rig.wavelength_nm
    pix = rig.effective_pixel_um
    zone = cfz_um(n, lam)
    airy = airy_diameter_um(n, lam)
    scale = rig.plate_scale_arcsec_px
    aperture = rig.effective_aperture_mm
    seeing_px = rig.seeing_arcsec / scale if (rig.seeing_arcsec and scale) else None
    cfz_seeing = None
    if rig.seeing_arcsec and aperture:
        cfz_seeing = cfz_seeing_um(rig.seeing_arcsec, rig.seeing_tolerance_pct, aperture, n)
    rows = tuple(
        WavelengthRow(label, wl, cfz_um(n, wl), cfz_um(n, wl) / pix if pix else None,
                      airy_diameter_um(n, wl), airy_diameter_um(n, wl) / pix if pix else None)
        for label, wl in COMMON_WAVELENGTHS_NM.items()
    )
    return FocusZone(
        f_ratio=n,
        wavelength_nm=lam,
        cfz_um=zone,
        cfz_px=zone / pix if pix else None,
        cfz_half_um=zone / 2.0,
        cfz_seeing_um=cfz_seeing,
        cfz_seeing_tolerance_pct=rig.seeing_tolerance_pct if cfz_seeing is not None else None,
        airy_um=airy,
        airy_px=airy / pix if pix else None,
        airy_arcsec=airy_diameter_arcsec(aperture, lam) if aperture else None,
        plate_scale_arcsec_px=scale,
        seeing_arcsec=rig.seeing_arcsec,
        seeing_px=seeing_px,
        sampling=sampling_verdict(seeing_px) if seeing_px else None,
        focuser_step_um=rig.focuser_step_um,
        steps_across_cfz=zone / rig.focuser_step_um if rig.focuser_step_um else None,
        blur_px_per_10um=blur_diameter_um(10.0, n) / pix if pix else None,
        wavelengths=rows,
    )


def rig_with_header(rig: Rig, meta: Any) -> Rig:
    """Fill what the rig file leaves out from a frame's header (a :class:`~focuswatch.model.frame.FrameMeta`);
    the file always wins. Pure, so the pipeline can call it without the TOML reader.

    The one exception is the wavelength: a frame taken through a known filter (``FILTER``:
    R, Ha, OIII, ...) is read at that filter's wavelength (:func:`wavelength_for_filter`),
    ``[rig] wavelength_nm`` being the rig's typical light. The zone (4.88 lambda N^2) and the
    defocus read from the HFR growth then use the wavelength the frame was taken at, as the
    refocus policy and the archive report do.

    XPIXSZ already includes binning (NINA and the FITS convention), so a pixel size taken
    from the header comes with ``binning = 1``.
    """
    if meta is None:
        return rig
    changes: dict[str, Any] = {}
    if rig.focal_length_mm is None and meta.focal_length_mm:
        changes["focal_length_mm"] = meta.focal_length_mm
    if rig.pixel_um is None and meta.pixel_um:
        changes["pixel_um"] = meta.pixel_um
        changes["binning"] = 1
    if rig.focuser_step_um is None and meta.focuser_step_um:
        changes["focuser_step_um"] = meta.focuser_step_um
    wl = wavelength_for_filter(getattr(meta, "filter_name", None), rig.wavelength_nm)
    if wl != rig.wavelength_nm:
        changes["wavelength_nm"] = wl
    if rig.aperture_mm is None and rig.f_ratio_given is None:
        if meta.aperture_mm:
            changes["aperture_mm"] = meta.aperture_mm
        elif meta.f_ratio:
            changes["f_ratio_given"] = meta.f_ratio
    return replace(rig, **changes) if changes else rig
