"""Simulated Bahtinov mask patterns: Fourier optics of the mask aperture with a defocus phase.

The simulator's mask part (the star-field simulator is :mod:`focuswatch.sim`). Pure
computation with a seeded generator: a :class:`MaskParams` in, a :class:`MaskFrame` out
(pixels, NINA-style header, truth). Tests use it as the physical truth for
:mod:`focuswatch.bahtinov`.

Model
-----
*Pupil.* A circular aperture of diameter D with a central obstruction eps*D, covered by
the mask. Pupil coordinates ``(u, v)`` (mm) map onto image coordinates ``(x, y)`` (x the
column, y the row, sep's convention) without flips. The standard Bahtinov layout, before
the mask's rotation ``rotation_deg``:

* the half ``u < 0`` carries slits parallel to u: its grating vector (the direction the
  light is spread into, i.e. the spike) is +v, the *middle* spike;
* the quarter ``u >= 0, v >= 0`` has its grating vector at ``(-sin b, cos b)`` and the
  quarter ``u >= 0, v < 0`` at ``(sin b, cos b)``, ``b = outer_angle_deg``: the two
  *outer* spikes, each ``b`` from the middle one.

The Tri-Bahtinov layout (``mask="tri-bahtinov"``, C. Y. Tan's design): three 120 deg sectors,
sector ``k`` being sector 0 turned by ``120 k`` deg. Sector 0 spans azimuths 30-150 deg (its
bisector along +v); its middle grating (vector +v) fills the wedge 90-150 deg (the ``u < 0``
side, as above), and the wedge 30-90 deg is split at the equal-area radius
``sqrt((R^2 + r_obs^2) / 2)`` (:func:`tri_split_radius_mm`) into an inner part with the grating
vector ``(sin b, cos b)`` and a rim part with ``(-sin b, cos b)`` (turned toward the middle wedge).
One coherent pupil, so the sectors interfere as on the sky. :func:`tri_geometry` gives each
sub-mask's ray-model truth.

Slits are half the grating period (open:bar = 1:1); the period defaults to twice the slit
width of the usual "Bahtinov factor" 150 (slit = focal length / 150). Edges are
anti-aliased (area-weighted) so the coarse sampling of the slits does not fake orders.

*Defocus phase.* A focal plane ``defocus_um`` behind best focus (positive: sensor too far
out, beyond focus) sees the converging wave with a spherical error relative to a wave
focused on it. At pupil height h the optical path differs by
``h^2/2 * (1/f - 1/(f + Delta)) ~ h^2 Delta / (2 f^2)``, i.e. at the rim (h = D/2)
``W020 = Delta / (8 N^2)`` (the peak-to-valley defocus wavefront, Delta and W in the same
unit). In the FFT's sign convention (``numpy.fft``: ``exp(-2 pi i k n / N)``) a pupil
phase ``2 pi W(u) / lambda`` sends the rays of pupil point u to the image point
``f * grad W(u)``; beyond focus the rays have crossed the axis and land at ``-u Delta / f``,
so the phase used is ``-2 pi / lambda * Delta / (8 N^2) * (r / R)^2``. Astigmatism ``A`` at
angle ``t`` adds ``-(A / 2) / (8 N^2) * (u'^2 - v'^2) / R^2`` (``u'`` along ``t``): pupil points
along ``t`` focus at ``Delta + A/2``, across it at ``Delta - A/2``.

*Image.* For each wavelength (broadband 420-680 nm by default, equal photon weight) the
pupil is sampled so that the FFT's image-plane sample is ``pixel / oversample``:
``L = lambda f / (pixel / oversample)`` is the pupil grid's width, so the pupil covers
``n_fft * pixel / (oversample lambda N)`` samples (kept under half the grid: Nyquist).
The intensity ``|FFT|^2`` is summed over wavelengths, blurred by Gaussian seeing,
block-summed to sensor pixels, scaled to electrons, and given sky, photon and read noise.

A geometric reading of the same model gives the conversion :mod:`focuswatch.bahtinov`
needs: each grating's spike passes through the image of its sub-aperture's centroid,
displaced by ``c * Delta / f``; the half-disk's centroid is ``2D/(3 pi)`` from the centre,
the quarters' ``(2D/(3 pi))*(1, +-1)``, so the outer spikes cross ``(2D/(3 pi))(1 + tan b)``
times ``Delta/f`` on one side and the middle spike runs ``(2D/(3 pi))`` on the other:
``offset = (2 D / (3 pi)) (2 + tan b) Delta / f`` (:func:`geometric_px_per_um`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from focuswatch.optics import Rig

#: 200 mm f/5 Newtonian, 3.76 um pixels: the reference rig of design.md section 5.
DEFAULT_MASK_RIG = Rig(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, obstruction=0.33,
                       focuser_step_um=2.0)
BROADBAND_NM = (420.0, 463.3, 506.7, 550.0, 593.3, 636.7, 680.0)
BAHTINOV_FACTOR = 150.0


@dataclass(frozen=True)
class MaskParams:
    """Everything that makes one simulated mask image.

    ``defocus_um`` positive means the sensor is beyond focus (too far out). ``mask`` is
    ``"bahtinov"`` or ``"tri-bahtinov"`` (three Bahtinov sub-masks in 120 deg sectors of the
    pupil, see the module doc). ``astigmatism_um`` splits the focus: light spread along
    image direction ``astigmatism_angle_deg`` focuses ``astigmatism_um / 2`` farther out,
    along the perpendicular direction as much nearer (a miscollimated or pinched optic: the
    three sub-masks of a Tri-Bahtinov then read different focus). ``star_dx_px`` /
    ``star_dy_px`` shift the star from the centre of the frame (sub-pixel allowed).
    """

    rig: Rig = field(default_factory=lambda: DEFAULT_MASK_RIG)
    defocus_um: float = 0.0
    mask: str = "bahtinov"
    outer_angle_deg: float = 20.0
    rotation_deg: float = 0.0
    slit_mm: float | None = None
    wavelengths_nm: tuple[float, ...] = BROADBAND_NM
    seeing_fwhm_arcsec: float = 1.5
    size_px: int = 192
    oversample: int | None = None
    star_flux_e: float = 3.0e7
    star_dx_px: float = 0.0
    star_dy_px: float = 0.0
    astigmatism_um: float = 0.0
    astigmatism_angle_deg: float = 0.0
    sky_e: float = 200.0
    read_noise_e: float = 3.0
    gain_e_per_adu: float = 1.0
    bias_adu: float = 500.0
    saturation_adu: float = 65535.0
    seed: int = 1
    focuser_pos: int = 10000
    filter_name: str = "L"
    exposure_s: float = 2.0

    def __post_init__(self) -> None:
        r = self.rig
        if not (r.f_ratio and r.effective_pixel_um and r.focal_length_mm and r.effective_aperture_mm):
            raise ValueError("MaskParams: rig needs aperture_mm, focal_length_mm and pixel_um")
        if self.mask not in ("bahtinov", "tri-bahtinov"):
            raise ValueError(f"MaskParams: mask = {self.mask!r}: use 'bahtinov' or 'tri-bahtinov'")
        if not 3.0 <= self.outer_angle_deg <= 45.0:
            raise ValueError(f"MaskParams: outer_angle_deg = {self.outer_angle_deg}: must be 3-45")
        if self.size_px < 32:
            raise ValueError(f"MaskParams: size_px = {self.size_px}: need at least 32")

    @property
    def slit_width_mm(self) -> float:
        return self.slit_mm or float(self.rig.focal_length_mm) / BAHTINOV_FACTOR

    def with_(self, **changes: Any) -> "MaskParams":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wavelengths_nm"] = list(self.wavelengths_nm)
        return d


@dataclass
class MaskFrame:
    """A rendered mask image: uint16 ``pixels``, a NINA-style ``header`` and the ``truth``."""

    pixels: np.ndarray
    header: dict[str, Any]
    truth: dict[str, Any]


def geometric_px_per_um(rig: Rig, outer_angle_deg: float = 20.0) -> float:
    """Middle-spike offset (px) per um of defocus from the sub-aperture centroids (see module doc).

    >>> round(geometric_px_per_um(DEFAULT_MASK_RIG), 4)
    0.0267
    """
    d, f, pix = float(rig.effective_aperture_mm), float(rig.focal_length_mm), float(rig.effective_pixel_um)
    c = 2.0 * d / (3.0 * math.pi)
    return c * (2.0 + math.tan(math.radians(outer_angle_deg))) / f / pix


def _square(s: np.ndarray, px_per_period: float) -> np.ndarray:
    """Open (1) / bar (0) grating of period 1 in ``s``, edges area-weighted over one sample."""
    tri = np.abs(np.mod(s, 1.0) - 0.5)  # 0..0.5, slits where > 0.25
    return np.clip(0.5 + (tri - 0.25) * px_per_period, 0.0, 1.0)


def _aperture(p: MaskParams, n: int, dx_mm: float, rotation_deg: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pupil grid ``n x n`` of spacing ``dx_mm`` centred on index ``n // 2``.

    Returns ``(u, v, ap, up, vp)``: pupil coordinates (mm), the area-weighted open aperture
    (disk minus central obstruction) and the mask coordinates (the pupil turned back by the
    mask's rotation ``rotation_deg``).
    """
    c = (np.arange(n) - n // 2) * dx_mm
    u, v = np.meshgrid(c, c)
    radius = float(p.rig.effective_aperture_mm) / 2.0
    r = np.hypot(u, v)
    ap = np.clip(0.5 + (radius - r) / dx_mm, 0.0, 1.0)
    if p.rig.obstruction > 0:
        ap *= np.clip(0.5 + (r - p.rig.obstruction * radius) / dx_mm, 0.0, 1.0)
    rot = math.radians(rotation_deg)
    cr, sr = math.cos(rot), math.sin(rot)
    return u, v, ap, cr * u + sr * v, -sr * u + cr * v


def mask_pupil(p: MaskParams, n: int, dx_mm: float, rotation_deg: float | None = None) -> np.ndarray:
    """Amplitude transmission of aperture + mask on an ``n x n`` grid of spacing ``dx_mm``."""
    _, _, ap, up, vp = _aperture(p, n, dx_mm, p.rotation_deg if rotation_deg is None else rotation_deg)
    period = 2.0 * p.slit_width_mm
    spp = period / dx_mm
    b = math.radians(p.outer_angle_deg)
    sb, cb = math.sin(b), math.cos(b)
    if p.mask == "tri-bahtinov":
        t = np.zeros_like(ap)
        for a, bb, mid_part, inner_part, outer_part in _tri_parts(p, up, vp, dx_mm):
            t += mid_part * _square(bb / period, spp)
            t += outer_part * _square((-sb * a + cb * bb) / period, spp)
            t += inner_part * _square((sb * a + cb * bb) / period, spp)
        return ap * t
    middle = _square(vp / period, spp)
    upper = _square((-sb * up + cb * vp) / period, spp)
    lower = _square((sb * up + cb * vp) / period, spp)
    # area-weighted split along the dividing lines u'=0 and v'=0
    right = np.clip(0.5 + up / dx_mm, 0.0, 1.0)
    top = np.clip(0.5 + vp / dx_mm, 0.0, 1.0)
    t = (1 - right) * middle + right * (top * upper + (1 - top) * lower)
    return ap * t


def tri_split_radius_mm(p: MaskParams) -> float:
    """Radius (mm) splitting a Tri-Bahtinov sector's outer-grating half into two equal areas
    between the central obstruction and the rim."""
    radius = float(p.rig.effective_aperture_mm) / 2.0
    return radius * math.sqrt((1.0 + p.rig.obstruction ** 2) / 2.0)


def _tri_parts(p: MaskParams, up: np.ndarray, vp: np.ndarray, dx_mm: float) -> list[tuple[np.ndarray, ...]]:
    """The three sectors of a Tri-Bahtinov mask in mask coordinates ``(up, vp)``.

    Returns per sector ``k`` its own coordinates ``(a, b)`` (the mask frame turned by
    ``120 k`` deg, the sector's bisector along +b) and the area-weighted sub-apertures
    (middle-grating wedge on the a < 0 side, inner and outer part of the a >= 0 wedge).
    """
    rs = tri_split_radius_mm(p)
    inner = np.clip(0.5 + (rs - np.hypot(up, vp)) / dx_mm, 0.0, 1.0)
    out = []
    for k in range(3):
        g = math.radians(120.0 * k)
        a = math.cos(g) * up + math.sin(g) * vp
        b = -math.sin(g) * up + math.cos(g) * vp
        # sector = azimuth 30..150 deg in (a, b): above the lines at 30 and 150 deg
        h1 = np.clip(0.5 + (-0.5 * a + 0.8660254037844386 * b) / dx_mm, 0.0, 1.0)
        h2 = np.clip(0.5 + (0.5 * a + 0.8660254037844386 * b) / dx_mm, 0.0, 1.0)
        sector = h1 * h2
        right = np.clip(0.5 + a / dx_mm, 0.0, 1.0)
        out.append((a, b, sector * (1 - right), sector * right * inner, sector * right * (1 - inner)))
    return out


def tri_geometry(p: MaskParams, n: int = 400) -> list[dict[str, float]]:
    """Geometric (ray) reading of each Tri-Bahtinov sub-mask: the truth for its triplet.

    Each grating's spike runs along its grating vector through the landing point of its
    sub-aperture's centroid ray, ``-(defocus I + astigmatism/2 Q) c / f`` (Q the
    astigmatism's direction matrix). The outer spikes of sector ``k`` cross; the middle
    spike's signed distance from the crossing along the sector's normal (angle
    ``rotation_deg + 120 k``, the sector's +a axis) is its offset. Returns per sector
    ``normal_deg`` (0-360), ``middle_angle_deg`` (0-180), ``geometric_offset_px``,
    ``geometric_px_per_um`` (offset per um of pure defocus) and ``defocus_um``, the focus
    that sub-mask sees (offset divided by that slope: ``p.defocus_um`` without astigmatism).
    """
    dx = 2.1 * float(p.rig.effective_aperture_mm) / 2.0 / n
    u, v, ap, up, vp = _aperture(p, n, dx, p.rotation_deg)
    rot = math.radians(p.rotation_deg)
    f_mm, pix = float(p.rig.focal_length_mm), float(p.rig.effective_pixel_um)
    th = math.radians(p.astigmatism_angle_deg)
    e = np.array([math.cos(th), math.sin(th)])
    q = 2.0 * np.outer(e, e) - np.eye(2)  # +1 along the astigmatism direction, -1 across

    def land(cen: np.ndarray, defocus: float, astig: float) -> np.ndarray:
        return -(defocus * np.eye(2) + 0.5 * astig * q) @ cen / f_mm / pix  # px

    b_rad = math.radians(p.outer_angle_deg)
    out = []
    for k, (_, _, mid_part, inner_part, outer_part) in enumerate(_tri_parts(p, up, vp, dx)):
        g = rot + math.radians(120.0 * k)
        turn = np.array([[math.cos(g), -math.sin(g)], [math.sin(g), math.cos(g)]])  # sector frame -> image
        cens = [np.array([(w * ap * u).sum(), (w * ap * v).sum()]) / (w * ap).sum()
                for w in (mid_part, outer_part, inner_part)]
        dirs = [turn @ np.array(d) for d in ((0.0, 1.0), (-math.sin(b_rad), math.cos(b_rad)),
                                             (math.sin(b_rad), math.cos(b_rad)))]
        normal = turn @ np.array([1.0, 0.0])

        def offset(defocus: float, astig: float) -> float:
            pm, pa, pb = (land(cv, defocus, astig) for cv in cens)
            # pa + s da = pb + t db
            s_t = np.linalg.solve(np.column_stack([dirs[1], -dirs[2]]), pb - pa)
            cross = pa + s_t[0] * dirs[1]
            return float(normal @ (pm - cross))

        k_geo = offset(1.0, 0.0)
        off = offset(p.defocus_um, p.astigmatism_um)
        out.append({"normal_deg": math.degrees(g) % 360.0, "middle_angle_deg": (math.degrees(g) + 90.0) % 180.0,
                    "geometric_offset_px": off, "geometric_px_per_um": k_geo, "defocus_um": off / k_geo})
    return out


def oversample_for(p: MaskParams) -> int:
    """Fine samples per pixel so the shortest wavelength's PSF is Nyquist sampled."""
    if p.oversample:
        return int(p.oversample)
    lam_um = min(p.wavelengths_nm) / 1000.0
    return max(2, math.ceil(2.0 * float(p.rig.effective_pixel_um) / (lam_um * float(p.rig.f_ratio))))


def psf_fine(p: MaskParams, rotation_deg: float | None = None) -> tuple[np.ndarray, int, int]:
    """Broadband mask PSF on the fine grid (sum 1). Returns ``(psf, oversample, n_fft)``."""
    from scipy import fft as sfft

    m = oversample_for(p)
    n = sfft.next_fast_len(int(math.ceil(p.size_px * m * 4 / 3)))
    n += n % 2
    pix = float(p.rig.effective_pixel_um)
    f_um = float(p.rig.focal_length_mm) * 1000.0
    nratio = float(p.rig.f_ratio)
    w020_um = -p.defocus_um / (8.0 * nratio * nratio)
    radius_mm = float(p.rig.effective_aperture_mm) / 2.0
    th_ast = math.radians(p.astigmatism_angle_deg)
    total = np.zeros((n, n))
    for lam_nm in p.wavelengths_nm:
        lam_um = lam_nm / 1000.0
        dx_mm = lam_um * f_um / (pix / m) / n / 1000.0  # pupil grid spacing (mm)
        if radius_mm * 2 / dx_mm > n * 0.75:
            raise ValueError(f"pupil undersampled at {lam_nm} nm: raise oversample")
        # the pupil is built on the smallest centred square holding it (same sample positions)
        # and embedded in the n x n grid: the FFT is cheap, the mask geometry is not
        ns = min(n, 2 * int(math.ceil(radius_mm / dx_mm)) + 8)
        lo = n // 2 - ns // 2
        t = mask_pupil(p, ns, dx_mm, rotation_deg)
        c = (np.arange(ns) - ns // 2) * dx_mm
        u, v = np.meshgrid(c, c)
        rho2 = (u * u + v * v) / (radius_mm * radius_mm)
        # sub-pixel star position: a tilt moving the image by (dx, dy) px = f * grad W
        tilt_um = (p.star_dx_px * pix * u + p.star_dy_px * pix * v) * 1000.0 / f_um
        wave_um = w020_um * rho2 + tilt_um
        if p.astigmatism_um:
            # focus split by +-astigmatism/2 along / across the astigmatism direction
            ua = (u * math.cos(th_ast) + v * math.sin(th_ast)) / radius_mm
            va = (-u * math.sin(th_ast) + v * math.cos(th_ast)) / radius_mm
            wave_um = wave_um - 0.5 * p.astigmatism_um / (8.0 * nratio * nratio) * (ua * ua - va * va)
        phase = 2.0 * math.pi / lam_um * wave_um
        full = np.zeros((n, n), complex)
        full[lo:lo + ns, lo:lo + ns] = t * np.exp(1j * phase)
        field_ = np.fft.ifftshift(full)
        inten = np.abs(sfft.fft2(field_)) ** 2
        total += np.fft.fftshift(inten) / inten.sum()
    return total / len(p.wavelengths_nm), m, n


def render(p: MaskParams) -> MaskFrame:
    """Render the star through the mask: pixels (uint16 ADU), header and truth.

    ``truth`` holds ``defocus_um``, the star position ``x``/``y`` (px, sep convention),
    ``outer_angle_deg``, ``rotation_deg``, the mask type and the geometric conversion
    ``geometric_px_per_um`` with the implied ``geometric_offset_px``; for a Tri-Bahtinov
    also ``triplets`` (:func:`tri_geometry`, per sub-mask) and the mean offset.
    """
    from scipy import ndimage

    fine, m, n = psf_fine(p)
    scale = float(p.rig.plate_scale_arcsec_px)
    if p.seeing_fwhm_arcsec > 0:
        sigma_fine = p.seeing_fwhm_arcsec / scale * m / 2.3548
        fine = ndimage.gaussian_filter(fine, sigma_fine, mode="wrap")
    s = p.size_px
    lo = n // 2 - (s * m) // 2
    crop = fine[lo:lo + s * m, lo:lo + s * m]
    img = crop.reshape(s, m, s, m).sum(axis=(1, 3))
    rng = np.random.default_rng(p.seed)
    electrons = rng.poisson(np.clip(img * p.star_flux_e + p.sky_e, 0, None)).astype(float)
    electrons += rng.normal(0.0, p.read_noise_e, electrons.shape)
    adu = np.clip(np.round(electrons / p.gain_e_per_adu + p.bias_adu), 0, p.saturation_adu).astype(np.uint16)
    # the zero point sits on fine sample n//2, i.e. fine index (s*m)//2 of the crop
    j = (s * m) // 2
    x0 = (j + 0.5) / m - 0.5 + p.star_dx_px
    y0 = (j + 0.5) / m - 0.5 + p.star_dy_px
    rig = p.rig
    k_geo = geometric_px_per_um(rig, p.outer_angle_deg)
    header = {
        "IMAGETYP": "LIGHT", "EXPTIME": float(p.exposure_s), "EXPOSURE": float(p.exposure_s),
        "XPIXSZ": float(rig.effective_pixel_um), "YPIXSZ": float(rig.effective_pixel_um), "XBINNING": 1,
        "FOCALLEN": float(rig.focal_length_mm), "FOCRATIO": round(float(rig.f_ratio), 4),
        "APTDIA": float(rig.effective_aperture_mm), "FILTER": p.filter_name, "FOCPOS": int(p.focuser_pos),
        "FOCUSSZ": float(rig.focuser_step_um or 0.0), "OBJECT": "SIM BAHTINOV",
        "SWCREATE": "focuswatch simmask",
    }
    truth = {
        "defocus_um": float(p.defocus_um), "x": x0, "y": y0, "mask": p.mask,
        "outer_angle_deg": float(p.outer_angle_deg), "rotation_deg": float(p.rotation_deg),
        "slit_mm": p.slit_width_mm, "oversample": m, "n_fft": n,
        "geometric_px_per_um": k_geo, "geometric_offset_px": k_geo * p.defocus_um,
        "cfz_um": rig.cfz_um(), "seeing_fwhm_arcsec": float(p.seeing_fwhm_arcsec),
        "astigmatism_um": float(p.astigmatism_um), "astigmatism_angle_deg": float(p.astigmatism_angle_deg),
    }
    if p.mask == "tri-bahtinov":
        tri = tri_geometry(p)
        truth["triplets"] = tri
        truth["geometric_px_per_um"] = tri[0]["geometric_px_per_um"]
        truth["geometric_offset_px"] = float(np.mean([t["geometric_offset_px"] for t in tri]))
    return MaskFrame(adu, header, truth)
