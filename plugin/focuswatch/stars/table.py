"""What :func:`focuswatch.stars.measure` returns: the per-star table's dtype, the 3x3 zone
figures and :class:`FrameStats`, plus the pixel-width corrections every measuring step
shares.

Coordinates follow sep: ``x`` is the fast (column) axis, ``y`` the slow (row) axis, and
``(0, 0)`` is the *centre* of the first pixel.
"""
from __future__ import annotations

from functools import lru_cache

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from focuswatch.model.frame import FrameMeta, bayer_green_full
from focuswatch.model.records import Record


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
    ("masked", "?"),                     # measured from the part of its ring no touching neighbour
                                         # reaches (stars.crowded); ecc NaN then
    ("outer_r_ap", "f8"),                # 90 % radius of the light inside the measuring aperture
                                         # alone (before the wing share re-read of outer_r), px;
                                         # 0 where not measured (the night's dew figure)
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
    #: measured stars (of ``stars``) whose figures come from the part of their ring that no
    #: touching neighbour reaches (crowded donuts, :mod:`focuswatch.stars.crowded`)
    n_masked: int = 0
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


def green_interpolation_var_px2(pattern: str = "GRBG") -> float:
    """Per-axis variance (px^2) the green interpolation of a Bayer frame adds to a star.

    Derived from the kernel itself, by running :func:`bayer_green_full` on a point of light
    at a green site (kept, and a quarter of it given to each red/blue neighbour) and at a
    red/blue site (not sampled in green at all): a star falls on either kind of site alike,
    so the image a measurement sees is the true green plane convolved with the mean of the
    two responses, ``E = delta/2 + (4-neighbour mean)/2``. Its per-axis variance is
    ``1/2 * 2 * 1/4 * 1 px^2 = 0.25 px^2`` (the same for every pattern); the checkerboard
    term left over cancels over stars at random sub-pixel positions. A convolution adds its
    variance to a star's second moments whatever the star's profile.
    """
    n = 9
    resp = np.zeros((n, n))
    for dx in (0, 1):  # one site of each kind (green and red/blue alternate along a row)
        pt = np.zeros((n, n), np.float32)
        pt[n // 2, n // 2 + dx] = 1.0
        resp += np.roll(bayer_green_full(pt, pattern), -dx, axis=1)
    resp /= resp.sum()
    off = np.arange(n) - n // 2
    return float((resp.sum(axis=0) * off ** 2).sum())


@dataclass(frozen=True)
class GreenInterpolationConfig:
    """Measuring a Bayer frame's stars on its interpolated green plane without the interpolation's blur.

    The interpolation convolves each star with a kernel of per-axis variance
    :func:`green_interpolation_var_px2` (0.25 px^2). Second moments lose that variance
    exactly. The half-flux radius, to first order in the variance ``v`` (a small kernel acts
    like diffusion, ``I + v/2 * Laplacian(I)``), moves by
    ``d(r^2) = -v * dln I / dln r`` at the half-flux radius: ``2 ln 2 * v`` for a Gaussian,
    ``2 beta u / (1 + u) * v`` with ``u = (r / alpha)^2`` for a Moffat
    (:func:`moffat_half_light_slope`, with the frame's median fitted beta).

    The FWHM (Moffat fit of the radial profile) reads the **green sites only**, the true
    samples, so it holds no interpolation blur at all; the centre of that profile is the plain
    first moment of the green sites within ``centre_radius_r50`` half-flux radii
    (``centre_iterations`` times re-centred). Below ~2 px the green sites' quincunx lattice
    still aliases that centre, and the profile reads the star wider (FWHM +8 % at 1.5 px, +16 %
    at 1.2 px against a mono sensor): that excess is measured on GalSim physical-optics stars
    by ``scripts/make_bayer_fwhm_table.py`` (``data/bayer_fwhm_bias.json``) and taken off in
    quadrature (:func:`bayer_fwhm2_excess_px2`). What was tried and dropped (osc6, bayer5):
    scaling FWHM with HFR (read 1.2 px stars 0.86 px); a first-order kernel term for FWHM^2
    (over-corrected, 0.3 off); the weighted centroid of the interpolated plane (0.1 px off,
    FWHM +28 % at 1.2 px); centres from a free-centre Gaussian or Moffat fit of the green sites
    (they lock onto the lattice: Kolmogorov stars then read -17 % at 1.2 px); red and blue
    sites scaled by the star's colour to fill the lattice in (the colour of a 1.2 px star read
    from its own sites is itself aliased: worse).
    """

    #: per-axis variance of the interpolation kernel (px^2), derived from the kernel
    var_px2: float = field(default_factory=green_interpolation_var_px2)
    #: lowest Moffat beta taken for the log slope: seeing-limited stars have beta 2.5-4.5 (Kolmogorov
    #: seeing is close to beta 4.8, Trujillo et al. 2001); undersampled stars (FWHM < 2 px) fit lower,
    #: which would overstate the blur. A flat-topped (defocused) star's fitted
    #: beta runs high, which only moves the slope towards the Gaussian's
    beta_min: float = 2.5
    #: the green-site centroid reads the sites within this many half-flux radii of the centre...
    centre_radius_r50: float = 3.0
    #: ...and at least this far (px)
    centre_radius_min_px: float = 3.0
    #: re-centrings of that aperture (from the detection's centroid)
    centre_iterations: int = 4
    #: take the green-site fit's measured FWHM excess off (``data/bayer_fwhm_bias.json``,
    #: :func:`bayer_fwhm2_excess_px2`); off only to regenerate that table
    fwhm_excess_table: bool = True


BAYER_FWHM_DATA = "bayer_fwhm_bias.json"


@lru_cache(maxsize=1)
def _bayer_fwhm_rows() -> tuple[np.ndarray, np.ndarray]:
    from focuswatch import calibration
    from focuswatch.errors import CalibrationDataError

    remedy = "regenerate it with scripts/make_bayer_fwhm_table.py"
    path = calibration.data_file(BAYER_FWHM_DATA)
    d = calibration.read_data_json(path, "Bayer FWHM table", remedy)
    try:
        x = np.asarray(d["fwhm_bayer_px"], float)
        y = np.asarray(d["fwhm2_excess_px2"], float)
        if x.shape != y.shape or x.size < 2 or np.any(np.diff(x) <= 0):
            raise ValueError("rows of different lengths, too few, or sizes not increasing")
    except (ValueError, KeyError, TypeError) as exc:
        raise CalibrationDataError(f"{path}: unreadable Bayer FWHM table ({exc}); {remedy}") from None
    return x, y


def bayer_fwhm2_excess_px2(fwhm_px: np.ndarray) -> np.ndarray:
    """FWHM^2 (px^2) the green-site Moffat fit of a Bayer frame reads above a mono sensor's,
    at the FWHM it reads (``data/bayer_fwhm_bias.json``, made by scripts/make_bayer_fwhm_table.py
    from GalSim physical-optics stars). 0 beyond the table's largest star (the excess has gone
    by 2.5 px), the smallest star's figure below it."""
    x, y = _bayer_fwhm_rows()
    f = np.asarray(fwhm_px, float)
    return np.where(f > x[-1], 0.0, np.interp(f, x, y))


def moffat_half_light_slope(beta: float) -> float:
    """``-dln I / dln r`` of a Moffat profile at its half-light radius.

    ``I = (1 + u)^-beta`` with ``u = r^2/alpha^2``; the half light lies within
    ``u_h = 2^(1/(beta-1)) - 1``, where the slope is ``2 beta u_h / (1 + u_h) =
    2 beta (1 - 2^(-1/(beta-1)))``: 1.76 for beta 3, 2 ln 2 (a Gaussian's) as beta -> inf.
    """
    if not math.isfinite(beta):
        return 2.0 * math.log(2.0)
    return 2.0 * beta * (1.0 - 2.0 ** (-1.0 / (beta - 1.0)))


GREEN_INTERP = GreenInterpolationConfig()
