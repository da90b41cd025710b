"""Frame figures from a per-star table: medians, 3x3 zones, the HFR's uncertainty and
whether the stars' shape can be believed (:class:`ShapeConfig`).

Works on any table of :data:`~focuswatch.stars.table.STAR_DTYPE` rows, so callers can
summarise a filtered table again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from focuswatch.model.frame import Frame, FrameMeta
from focuswatch.model.numerics import MAD_TO_SIGMA, MEDIAN_SE_FACTOR, finite_median as _med  # the one median helper
from focuswatch.stars import ringfit
from focuswatch.stars.table import FrameStats, Zone


#: Fewest stars for frame figures from :func:`measure` (one star is a valid measurement:
#: single-star autofocus, sub-frames). Consumers keep their own minimum: the refocus
#: policy (``MonitorConfig.min_stars``), the diagnosis (``DiagnoseConfig.min_stars``).
MIN_STARS_FOR_STATS = 1
_MIN_STARS_FOR_STATS = 3  # the size-outlier cut and the SNR >= 10 subset need this many


def _mad_std(x: np.ndarray) -> float:
    """Robust standard deviation, 1.4826 x the median absolute deviation (astropy's
    ``mad_std``, same constant and arithmetic; written out so measuring needs no astropy.stats)."""
    return float(np.median(np.abs(x - np.median(x)))) * MAD_TO_SIGMA


@dataclass(frozen=True)
class SummaryConfig:
    """Which stars a frame's figures are medians of (why each value: the functions using it)."""

    #: the frame medians use stars at or above this SNR when at least 3 have it
    median_min_snr: float = 10.0
    #: size outliers: kept within this many robust sigmas of log HFR ...
    size_outlier_sigmas: float = 4.0
    #: ... and never cut nearer than this factor either way
    size_outlier_min_factor: float = 1.6
    #: the size-outlier cut needs this many stars
    size_outlier_min_stars: int = 5
    #: shape figures use stars at or above this SNR ...
    shape_min_snr: float = 50.0
    #: ... when at least this many have it (else the brightest third)
    shape_min_bright: int = 5


SUMMARY = SummaryConfig()


def _drop_size_outliers(stars: np.ndarray, config: SummaryConfig = SUMMARY) -> np.ndarray:
    """Leave out stars whose size is far from the rest: merged pairs the detection could not
    split, or a neighbour's light in the aperture. The window is wide (4 robust sigmas of
    log HFR, at least a factor 1.6 either way) so a tilted or curved field keeps its corners.
    """
    if len(stars) < config.size_outlier_min_stars:
        return stars
    lg = np.log(np.maximum(stars["hfr"], 1e-3))
    med = float(np.median(lg))
    mad = _mad_std(lg)
    keep = np.abs(lg - med) <= max(math.log(config.size_outlier_min_factor), config.size_outlier_sigmas * mad)
    return stars[keep] if np.count_nonzero(keep) >= _MIN_STARS_FOR_STATS else stars


def _shape_sample(stars: np.ndarray, config: SummaryConfig = SUMMARY) -> np.ndarray:
    """The stars whose shape is worth a median: noise makes faint stars look elongated.

    The eccentricity that noise alone gives a round star falls roughly as 1/SNR (0.54 at
    SNR 5-20, 0.28 at 50-100, 0.12 above 300 on simulated round stars), so shape figures
    use stars with SNR >= 50, or the brightest third when there are fewer than five.
    """
    bright = stars[stars["snr"] >= config.shape_min_snr]
    if len(bright) >= config.shape_min_bright:
        return bright
    k = max(1, len(stars) // 3)
    return stars[np.argsort(-stars["snr"])[:k]]


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
    noise = MEDIAN_SE_FACTOR * math.sqrt(float(np.sum(per ** 2))) / n
    if n < 5:
        return noise
    mad = _mad_std(hfr)
    return max(noise, MEDIAN_SE_FACTOR * mad / math.sqrt(n))


def _quadrature(err: float | None, extra: float) -> float | None:
    """``err`` and ``extra`` added in quadrature (``err`` unchanged when ``extra`` is 0)."""
    if err is None or not extra:
        return err
    return math.hypot(err, extra)


def summarize(stars: np.ndarray, *, frame: Frame | None = None, width_px: int, height_px: int,
              background_adu: float | None = None, noise_adu: float | None = None, n_detected: int = 0,
              n_rejected: Mapping[str, int] | None = None, plate_scale_arcsec_px: float | None = None,
              min_stars: int = MIN_STARS_FOR_STATS, extra_notes: tuple[str, ...] = (),
              n_stars: int | None = None, hfr_err_extra_px: float = 0.0) -> FrameStats:
    """Frame medians and the 3x3 zones from a per-star table (also used on filtered tables).

    Medians use stars with SNR >= 10 when there are enough of them, so faint noisy stars do
    not drag the frame figure around. With fewer than ``min_stars`` stars the frame gets
    no figures (``reason`` says so). ``hfr_err_px`` says how far the frame's HFR can be
    trusted (see :func:`hfr_uncertainty_px`): with one or two stars it is their photon
    noise, with many the star-to-star scatter over sqrt(n). ``n_stars`` overrides the
    reported star count when ``stars`` is a profiled sample of more (:class:`ProfileConfig`);
    ``hfr_err_extra_px`` is added to ``hfr_err_px`` in quadrature (an error common to every
    star, such as the sample's wing share).
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
    bright = stars["snr"] >= SUMMARY.median_min_snr
    good = stars[bright] if np.count_nonzero(bright) >= _MIN_STARS_FOR_STATS else stars
    good = _drop_size_outliers(good)
    hfr = _med(good["hfr"])
    fwhm = _med(good["fwhm"])
    fitted = good[np.isfinite(good["fwhm"]) & (good["fwhm"] > 0)]
    ratio = _med(2.0 * fitted["hfr"] / fitted["fwhm"]) if len(fitted) else None
    rings = good["ring"]
    has_masked = "masked" in (stars.dtype.names or ())  # tables from the crowded path (stars.crowded)
    masked = good["masked"] if has_masked else np.zeros(len(good), bool)
    ring_ratio = ringfit.frame_ring_ratio(rings, good["ring_ok"], len(good), usable=~masked)
    # stars measured from part of their ring (crowded donuts) have no shape figure (ecc NaN):
    # the frame's and each zone's shape sample are drawn from the others
    shaped = np.isfinite(good["ecc"])
    zones = []
    zr = np.minimum((good["y"] * 3 / height_px).astype(int), 2)
    zc = np.minimum((good["x"] * 3 / width_px).astype(int), 2)
    for r_ in range(3):
        for c_ in range(3):
            in_z = (zr == r_) & (zc == c_)
            z = good[in_z]
            zs = good[in_z & shaped]
            zones.append(Zone(r_, c_, int(len(z)), _med(z["hfr"]) if len(z) else None,
                              _med(z["fwhm"]) if len(z) else None, _med(_shape_sample(zs)["ecc"]) if len(zs) else None))
    ps = plate_scale_arcsec_px
    n_masked = int(np.count_nonzero(stars["masked"])) if has_masked else 0
    shape = _shape_sample(good[shaped])
    reliable = elongation_reliable(shape)
    ecc = _med(shape["ecc"])
    if not reliable and len(shape):
        why = (f"only {len(shape)} bright star(s) for the shape figures" if len(shape) < SHAPE.min_stars else
               f"stars too small to show their shape (median FWHM {_fmt_px(_med(shape['fwhm']))})")
        notes = notes + (f"{why}: eccentricity is not evidence of trailing, wind or collimation",)
    return FrameStats(
        file=file, n_stars=int(len(stars) if n_stars is None else n_stars), hfr_px=hfr, hfr_nina_px=_med(good["hfr_nina"]), fwhm_px=fwhm,
        eccentricity=ecc, profile_ratio=ratio, ring_ratio=ring_ratio,
        hfr_err_px=_quadrature(hfr_uncertainty_px(good), hfr_err_extra_px), elongation_reliable=reliable,
        star_flux_adu=_med(good["flux"]), background_adu=background_adu, noise_adu=noise_adu,
        width_px=width_px, height_px=height_px, plate_scale_arcsec_px=ps,
        hfr_arcsec=hfr * ps if (hfr is not None and ps) else None,
        fwhm_arcsec=fwhm * ps if (fwhm is not None and ps) else None,
        zones=tuple(zones), n_detected=n_detected, n_masked=n_masked, n_rejected=dict(n_rejected or {}), reason=None,
        notes=notes, meta=meta, stars=stars)
