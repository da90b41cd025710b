"""Diagnosis: tell a focus miss from seeing, tilt, backfocus, coma, collimation, trailing and dew.

Pure computation: a :class:`~focuswatch.stars.FrameStats` (with its per-star table) and an
:class:`~focuswatch.optics.Rig` in, a :class:`Diagnosis` out. No files, no clock; time and
temperature come from the frames' metadata passed in.

API for the watcher (stable)
----------------------------
``frame(stats, rig, *, image=None, baseline_hfr_px=None, config=DiagnoseConfig()) -> Diagnosis``
    One frame. ``stats`` is what :func:`focuswatch.stars.measure` returned; ``rig`` the
    rig with the header filled in (:func:`focuswatch.config.rig_with_header`); ``image``
    the :class:`~focuswatch.io.frames.Frame` (or its pixel array) the stars were measured on
    -- pass it: without it a miscollimated scope's one-sided flare cannot be told from a
    trail; ``baseline_hfr_px`` the true half-flux radius right after the last autofocus,
    if known (then the defocus is the HFR growth over it). Never raises for a bad frame:
    too few stars, a calibration frame or no star table give ``label="unknown"`` with
    ``reason``. Cost: ~2 ms, ~15 ms with ``image`` (third moments of the 120 brightest stars).

    The watcher reads ``Diagnosis.refocus_advised`` (True only for ``focus_miss``: an
    autofocus run fixes it) and, for every other problem label, records
    ``Diagnosis.advice`` as a warning instead of wasting an autofocus run.

``night(stats_list, rig, *, config=DiagnoseConfig()) -> NightStory``
    Several frames of one night (any order; sorted by DATE-OBS): drift rate, seeing
    scatter, cloud periods, dew onset, frames to reject, the single most likely problem.

Labels
------
``in_focus``, ``focus_miss``, ``poor_seeing``, ``backfocus`` (field curvature, sensor
spacing), ``tilt``, ``coma``, ``collimation``, ``trailing`` (wind, vibration, guiding),
``dew``, and ``unknown`` (no verdict possible, with the reason).

How each label is recognised (design.md section 3)
--------------------------------------------------
=============  ==================================================================================
label          evidence
=============  ==================================================================================
trailing       stars elongated with one common orientation everywhere (alignment high), radial
               score near 0, elongation the same at the centre and the edges
collimation    stars elongated everywhere, centre included, with one common one-sided flare
               (third moment of the light, needs the pixels): a trail is symmetric
coma           clean round centre, elongation growing with the distance to the centre and
               pointing at it (radial score near +1), with a one-sided radial flare (comet
               tails; with the pixels) or a size growing ~linearly with the radius (without)
backfocus      sharp centre, all four corners worse by a similar amount (curvature %), the size
               grows ~ r^2 in every direction; radial/tangential elongation allowed, symmetric
tilt           size gradient across the frame, the sharpest region off-centre or a trough
               along one axis (anisotropic growth; ASTAP tilt %)
dew            stars with halos: the 90 %/50 % flux radius ratio (pixel width taken out)
               wider than any seeing profile (Moffat beta >= 2.5) of the same HFD/FWHM
               allows, by >= 0.25 px; never stars smaller than the baseline or a core
               several times the in-focus size
focus_miss     round stars, uniform field, a flat-topped profile or donuts: the smallest defocus
               blur any plausible seeing profile allows is about the seeing FWHM or more, and
               >= 0.7 CFZ
poor_seeing    round stars, uniform field, a peaked seeing profile (no defocus blur), FWHM
               >= 1.25x the in-focus size of the rig on a fair (2.5") night
in_focus       none of the above
=============  ==================================================================================

Defocus without a baseline comes from the profile itself: each seeing family (Kolmogorov
over the pupil's diffraction, physical optics; Moffat rows as a cross-check) convolved with
the defocus has known shape figures for each ratio blur/seeing, generated as data by
``scripts/make_calibration.py`` (``focuswatch/data/focus_seeing_calibration.json``, read
through :mod:`focuswatch.diagnose.calibration`; docs/diagnose.md): the 90 %/50 % flux radius ratio
and HFD over the FWHM *as stars.measure reports it* (:func:`stars_fwhm_px`: its Moffat fit
for small stars, the width read directly off the radial profile at half maximum for large
ones, blended in between). The two measured figures give the family and blur/seeing, the
half-flux radius the scale; a focus miss needs a blur under *every* plausible family
(:class:`ProfileFit`), so seeing with thin wings (Kolmogorov HFD/FWHM ~1.13) is not a
defocus. On frames of big disks the wide apertures catch neighbours' light: the profile
figures then come from the stars with the lowest HFD/FWHM and the 90 % radius is not used.
Donuts give the blur from their half-flux radius and ring ratio; a post-autofocus baseline
gives it from the HFR growth through :func:`focuswatch.optics.defocus_um_from_hfr` (the
calibrated physical-optics model the policy and the grade use too).
``defocus_um = N * blur_px * pixel_um``.

Coordinates follow sep (x = column, y = row, (0, 0) the centre of the first pixel);
zone row 0 is the top of the frame as displayed (low y), as in :class:`stars.Zone`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from astropy.stats import mad_std

from focuswatch import optics
from focuswatch.diagnose import calibration
from focuswatch.optics import Rig
from focuswatch.model.records import Record
from focuswatch.stars import moffat_fwhm

class Label(str, Enum):
    """The diagnosis labels. A ``str`` enum: JSON and comparisons see the plain string
    (member names equal their values, so hashing matches the strings too).

    ``frame`` emits every member but ``clouds``; ``clouds`` is a night label only
    (:func:`night`, from star counts and fluxes across frames).
    """

    in_focus = "in_focus"
    focus_miss = "focus_miss"
    poor_seeing = "poor_seeing"
    backfocus = "backfocus"
    tilt = "tilt"
    coma = "coma"
    collimation = "collimation"
    trailing = "trailing"
    dew = "dew"
    unknown = "unknown"
    clouds = "clouds"

    __hash__ = str.__hash__

    def __str__(self) -> str:
        return self.value


#: The verdicts :func:`frame` can give besides ``unknown``.
LABELS: tuple[str, ...] = tuple(lb.value for lb in Label if lb not in (Label.unknown, Label.clouds))
#: Every label :func:`frame` can emit (``unknown`` included).
FRAME_LABELS: frozenset[str] = frozenset(LABELS) | {Label.unknown.value}
UNKNOWN = Label.unknown.value
#: Labels an autofocus run can fix; everything else is a warning with advice.
REFOCUS_LABELS: frozenset[str] = frozenset({Label.focus_miss.value})
#: Problems of the optical train itself (stable over the night, not fixed by refocusing).
OPTICAL_LABELS: frozenset[str] = frozenset(lb.value for lb in (Label.backfocus, Label.tilt, Label.coma,
                                                                 Label.collimation))
#: Passing problems that make a frame's star sizes say nothing about focus (frame labels;
#: ``clouds`` is a night label, also listed so a night's verdict can be vetoed the same way).
TRANSIENT_LABELS: frozenset[str] = frozenset(lb.value for lb in (Label.trailing, Label.dew, Label.clouds))


# --------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class DiagnoseConfig(Record):
    """Thresholds of the diagnosis (all dimensionless unless the name carries a unit).

    Settable from the ``[diagnose]`` table of the TOML file (:mod:`focuswatch.config`);
    every value is checked against :attr:`LIMITS` when the object is built. The profile
    model itself (how seeing and defocus shape a star) is generated data, not a setting
    (``focuswatch/data/focus_seeing_calibration.json``, docs/diagnose.md). The focus-versus-
    seeing thresholds were checked on physical-optics renders (benchmarks/diagnose_eval.py);
    the shape thresholds (trailing, coma, tilt, dew) on the simulator's labelled set.
    """

    min_stars: int = 12
    #: HFD/FWHM below this: a flat-topped, defocused profile (design.md section 2). The FWHM of
    #: stars.measure follows flat tops (direct half-maximum width for stars over ~5 px), so
    #: simulated seeing reads 1.15-1.20, a blur of 1x the seeing ~1.0, 2x 0.89, 3x 0.80 and
    #: a large disk 0.71-0.74; stars under ~3 px across keep the Moffat fit's width and stay
    #: above ~0.9 even when defocused (the blur is then read from the 90/50 % radii).
    flat_profile_ratio: float = 0.85
    #: Seeing assumed for the in-focus size when the rig gives none (a fair night), arcsec.
    reference_seeing_arcsec: float = 2.5
    #: FWHM over the expected in-focus FWHM above which the seeing is called poor.
    poor_seeing_excess: float = 1.25
    #: Smallest blur diameter over the seeing FWHM that the profile allows (every plausible
    #: seeing family), above which focus is called missed: about the edge of the seeing-aware
    #: focus zone (Goldman & Megdal, 5 % growth: a blur of ~0.52x the seeing). Chosen on the
    #: physical-optics labelled set (benchmarks/diagnose_eval.py, seed 11).
    focus_miss_blur_ratio: float = 0.55
    #: ... and the inferred defocus in units of the CFZ width (when the rig is known).
    focus_miss_cfz: float = 0.7
    #: 90 %/50 % flux radius ratio above the best seeing/defocus model: a halo (dew). On the
    #: simulated labelled set, frames without dew stay within -0.14..+0.03, clear dew (27 % of
    #: the light in the halo) reads +0.02..+0.45, severe +0.19..+0.71.
    dew_wing_excess: float = 0.10
    #: ... and the same excess of the 90 % flux radius in pixels: a halo must be resolved.
    dew_min_halo_px: float = 0.25
    #: Median eccentricity (bright stars) above which stars count as elongated.
    elongated_ecc: float = 0.40
    #: Alignment (0..1) above which the elongation has one common orientation.
    aligned: float = 0.6
    #: |radial score| above which elongation is radial (or tangential).
    radial: float = 0.45
    #: Significance (sigma) of the common one-sided flare that marks miscollimation.
    flare_snr: float = 2.15
    #: Field size variation (% of the median HFR, from the fitted map) that counts...
    field_variation_pct: float = 22.0
    #: ... when it stands out of the noise by this many (3-sigma) units.
    field_significance: float = 2.0
    #: Share of anisotropic/linear growth above which a field pattern is tilt, not curvature.
    anisotropic: float = 0.45
    #: Frame-level cloud flags in a night: star count or flux below this fraction of the night's level.
    cloud_fraction: float = 0.6
    #: Seeing families of the profile inversion (generated data): Moffat cross-check rows
    #: are used within this beta range and pay this chi^2 against the physical (Kolmogorov)
    #: rows; a broader wing than beta 2.5 allows is a halo, not seeing.
    seeing_beta_min: float = 2.5
    seeing_beta_max: float = 7.0
    moffat_prior_chi2: float = 1.0
    #: chi^2 above the best fit within which a seeing family still counts as plausible: a
    #: focus miss needs a blur under every plausible family.
    plausible_delta_chi2: float = 2.0
    #: The physical families' seeing in units of lambda N must match the star's within about
    #: this factor (a chi^2 of 1 at it); the geometric (diffraction-free) family stands for this s.
    #: How much diffraction shapes an in-focus star is known from the rig: on small, slow rigs
    #: the diffraction-free rows must not explain a defocused star as focused seeing.
    family_s_width: float = 2.0
    geometric_family_s: float = 16.0
    #: ... applied to stars with an HFD (px) up to this only: larger stars get stars.measure's
    #: directly read half-maximum width, where seeing stars read HFD/FWHM ~0.05 below the
    #: s = 4-8 rows and the prior called focused 130 mm f/7 frames defocused. Chosen on the
    #: physical-optics labelled set, seeds 11-12, checked on 13-14 (0 false calls in 375 frames).
    family_s_max_hfd_px: float = 6.0
    #: Scatter of the measured shape figures (chi^2 units of the inversion).
    wing_ratio_sigma: float = 0.06
    profile_ratio_sigma: float = 0.035
    #: Measured minus model shape figures (stars.measure on rendered stars, SNR >= 20).
    wing_ratio_bias: float = 0.01
    profile_ratio_bias: float = 0.01
    #: stars.measure's pixel term of the 90 % flux radius: ``r90_measured^2 = r90^2 +
    #: pix_r90_px2`` (0.69-0.78 px^2 measured on seeing stars of 1.0-2.6 px FWHM).
    pix_r90_px2: float = 0.75
    #: stars.measure's Moffat-fit FWHM reads ``sqrt((fit_fwhm_scale * fit)^2 + fit_fwhm_add_px2)``
    #: of the continuous profile's fit, and is blended into the directly read half-maximum
    #: width between ``blend_lo_px`` and ``blend_hi_px`` (see :func:`stars_fwhm_px`).
    fit_fwhm_scale: float = 1.02
    fit_fwhm_add_px2: float = 0.25
    blend_lo_px: float = 4.0
    blend_hi_px: float = 6.0
    #: Median FWHM (px) from which star apertures hold neighbours' light (when it is also
    #: ``crowded_vs_expected`` times the expected in-focus FWHM: big defocused disks).
    crowded_fwhm_px: float = 8.0
    crowded_vs_expected: float = 2.5
    #: Ring ratio above which a star is a donut, and the share of donuts that makes a frame
    #: of donuts (then the focus miss is certain: ``donut_miss_score``).
    donut_ring_ratio: float = 0.15
    donut_fraction: float = 0.3
    donut_miss_score: float = 0.9
    #: Half-widths of the soft steps turning figures into scores (same units as the figure).
    poor_seeing_step: float = 0.1
    focus_miss_blur_step: float = 0.1
    flat_profile_step: float = 0.02
    field_curvature_min_pct: float = 10.0
    field_curvature_full_pct: float = 20.0
    #: Coma against field curvature: coma grows ~linearly with the field radius and smears
    #: stars radially with a one-sided (comatic) flare; curvature grows ~quadratically. The
    #: size excess's power law in the field radius below which the growth counts as coma's
    #: (used without the pixels; in seeing it reads 1.3-2.1 for coma, 2.3-2.7 for curvature
    #: on physical-optics frames of a 200 mm f/5), and the radial third-moment flare from
    #: which a star has a comet tail (coma 0.045-0.19, curvature with astigmatism 0.002).
    coma_max_exponent: float = 2.2
    coma_flare: float = 0.02
    coma_flare_full: float = 0.04
    #: Soft-step corners of the shape rules (same units as the figure they grade; bands are
    #: (score 0, score 1); ``*_frac`` and ``field_variation_band`` are fractions of the threshold).
    dew_wing_step: float = 0.04
    dew_halo_onset_frac: float = 0.6
    dew_vs_baseline_band: tuple[float, float] = (0.97, 1.03)
    dew_core_excess_band: tuple[float, float] = (2.5, 3.5)
    elongated_step: float = 0.04
    aligned_below: float = 0.15
    aligned_above: float = 0.1
    flare_snr_step: float = 0.35
    flare_asymmetry_band: tuple[float, float] = (0.01, 0.025)
    uniform_ecc_band: tuple[float, float] = (0.12, 0.25)
    radial_step: float = 0.3
    structured_band: tuple[float, float] = (0.3, 0.5)
    coma_ecc_growth_band: tuple[float, float] = (0.08, 0.18)
    coma_flare_radial_band: tuple[float, float] = (0.2, 0.35)
    coma_exponent_step: float = 0.15
    field_variation_band: tuple[float, float] = (0.75, 1.25)
    field_significance_step: float = 0.5
    anisotropic_step: float = 0.1
    focus_miss_cfz_band: tuple[float, float] = (0.7, 1.1)
    #: How much a field pattern (and coma) lowers the focus-miss and poor-seeing scores.
    field_damping: float = 0.6
    #: Apertures of the third-moment flare (:func:`star_asymmetry`), in image pixels: each star's
    #: stamp reaches ``asymmetry_stamp_hfr`` HFRs + ``asymmetry_stamp_pad_px`` (clamped to
    #: ``asymmetry_stamp_min_px``..``asymmetry_stamp_max_px``), its sky is the median of a
    #: ``asymmetry_border_px`` wide frame round it, and the moments are taken inside
    #: ``asymmetry_aperture_hfr`` HFRs + ``asymmetry_aperture_pad_px`` (recentred
    #: ``asymmetry_recentre_passes`` times): wide enough for a comet tail, not for neighbours.
    #: HFRs under ``asymmetry_min_hfr_px`` count as that (undersampled stars).
    asymmetry_stamp_hfr: float = 3.0
    asymmetry_stamp_pad_px: float = 3.0
    asymmetry_stamp_min_px: int = 5
    asymmetry_stamp_max_px: int = 60
    asymmetry_border_px: int = 2
    asymmetry_aperture_hfr: float = 2.5
    asymmetry_aperture_pad_px: float = 1.5
    asymmetry_recentre_passes: int = 3
    asymmetry_min_hfr_px: float = 0.7

    #: (low, high) allowed for each setting, inclusive.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "min_stars": (1, 10000), "flat_profile_ratio": (0.3, 1.5), "reference_seeing_arcsec": (0.2, 20.0),
        "poor_seeing_excess": (1.0, 5.0), "focus_miss_blur_ratio": (0.05, 10.0), "focus_miss_cfz": (0.05, 20.0),
        "dew_wing_excess": (0.0, 5.0), "dew_min_halo_px": (0.0, 50.0), "elongated_ecc": (0.0, 1.0),
        "aligned": (0.0, 1.0), "radial": (0.0, 1.0), "flare_snr": (0.0, 100.0), "field_variation_pct": (0.0, 500.0),
        "field_significance": (0.0, 100.0), "anisotropic": (0.0, 1.0), "cloud_fraction": (0.0, 1.0),
        "seeing_beta_min": (1.1, 20.0), "seeing_beta_max": (1.1, 50.0), "moffat_prior_chi2": (0.0, 100.0),
        "plausible_delta_chi2": (0.0, 100.0),
        "family_s_width": (1.01, 100.0), "geometric_family_s": (1.0, 1000.0),
        "family_s_max_hfd_px": (0.0, 1e6), "wing_ratio_sigma": (1e-3, 10.0),
        "profile_ratio_sigma": (1e-3, 10.0),
        "wing_ratio_bias": (-1.0, 1.0), "profile_ratio_bias": (-1.0, 1.0), "pix_r90_px2": (0.0, 10.0),
        "fit_fwhm_scale": (0.5, 2.0), "fit_fwhm_add_px2": (0.0, 10.0), "blend_lo_px": (0.0, 100.0),
        "blend_hi_px": (0.0, 100.0), "crowded_fwhm_px": (1.0, 1000.0), "crowded_vs_expected": (1.0, 100.0),
        "donut_ring_ratio": (0.0, 1.0), "donut_fraction": (0.0, 1.0), "donut_miss_score": (0.0, 1.0),
        "poor_seeing_step": (1e-3, 5.0), "focus_miss_blur_step": (1e-3, 5.0), "flat_profile_step": (1e-3, 1.0),
        "field_curvature_min_pct": (0.0, 1000.0), "field_curvature_full_pct": (0.0, 1000.0),
        "coma_max_exponent": (0.0, 4.0), "coma_flare": (0.0, 1.0), "coma_flare_full": (0.0, 1.0),
        "dew_wing_step": (1e-3, 5.0), "dew_halo_onset_frac": (0.0, 1.0), "dew_vs_baseline_band": (0.5, 2.0),
        "dew_core_excess_band": (1.0, 20.0), "elongated_step": (1e-3, 1.0), "aligned_below": (0.0, 1.0),
        "aligned_above": (0.0, 1.0), "flare_snr_step": (1e-3, 50.0), "flare_asymmetry_band": (0.0, 1.0),
        "uniform_ecc_band": (0.0, 1.0), "radial_step": (1e-3, 1.0), "structured_band": (0.0, 1.0),
        "coma_ecc_growth_band": (0.0, 1.0), "coma_flare_radial_band": (0.0, 1.0), "coma_exponent_step": (1e-3, 2.0),
        "field_variation_band": (0.0, 10.0), "field_significance_step": (1e-3, 50.0),
        "anisotropic_step": (1e-3, 1.0), "focus_miss_cfz_band": (0.0, 10.0), "field_damping": (0.0, 1.0),
        "asymmetry_stamp_hfr": (0.5, 20.0), "asymmetry_stamp_pad_px": (0.0, 50.0),
        "asymmetry_stamp_min_px": (2, 500), "asymmetry_stamp_max_px": (2, 500), "asymmetry_border_px": (1, 20),
        "asymmetry_aperture_hfr": (0.5, 20.0), "asymmetry_aperture_pad_px": (0.0, 50.0),
        "asymmetry_recentre_passes": (1, 20), "asymmetry_min_hfr_px": (0.1, 10.0),
    }

    def __post_init__(self) -> None:
        check_limits(self, self.LIMITS)
        for name in ("dew_vs_baseline_band", "dew_core_excess_band", "flare_asymmetry_band", "uniform_ecc_band",
                     "structured_band", "coma_ecc_growth_band", "coma_flare_radial_band", "field_variation_band",
                     "focus_miss_cfz_band"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name} = {(lo, hi)!r}: expected (low, high) with low < high")
        if self.asymmetry_stamp_max_px < self.asymmetry_stamp_min_px:
            raise ValueError(f"asymmetry_stamp_max_px = {self.asymmetry_stamp_max_px!r}: expected at least "
                             f"asymmetry_stamp_min_px ({self.asymmetry_stamp_min_px!r})")
        if self.blend_hi_px <= self.blend_lo_px:
            raise ValueError(f"blend_hi_px = {self.blend_hi_px!r}: expected more than blend_lo_px "
                             f"({self.blend_lo_px!r})")


def check_limits(obj: Any, limits: Mapping[str, tuple[float, float]]) -> None:
    """Raise ``ValueError("key = value: expected ...")`` for a non-finite or out-of-range setting."""
    for name, (lo, hi) in limits.items():
        v = getattr(obj, name)
        vals = v if isinstance(v, (tuple, list)) else (v,)
        for x in vals:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not lo <= x <= hi:
                raise ValueError(f"{name} = {v!r}: expected a finite number from {lo:g} to {hi:g}")



# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class Finding(Record):
    """One observation: a label, how sure we are (0..1) and the figures behind it."""

    label: str
    confidence: float
    detail: str = ""


@dataclass(frozen=True)
class Evidence(Record):
    """The figures a verdict rests on (``--json`` key ``evidence``; units in the names).

    Zone grids are 3x3 lists, row 0 at the top of the frame (low y), ``None`` for an empty zone.
    """

    n_stars: int
    n_bright: int = 0
    hfr_px: float | None = None
    fwhm_px: float | None = None
    fwhm_arcsec: float | None = None
    expected_fwhm_px: float | None = None
    #: In-focus true HFR (px) of the rig in the rig's seeing (a measured value) or the reference
    #: night's: :func:`focuswatch.diagnose.calibration.infocus_hfr_px`, the call the policy shares.
    expected_hfr_px: float | None = None
    #: Measured HFR over ``expected_hfr_px`` when the seeing was measured (``rig.seeing_arcsec``).
    hfr_over_seeing_expected: float | None = None
    size_excess: float | None = None
    profile_ratio: float | None = None
    wing_ratio: float | None = None
    wing_excess: float | None = None
    beta: float | None = None
    seeing_beta: float | None = None
    eccentricity: float | None = None
    centre_ecc: float | None = None
    edge_ecc: float | None = None
    radial_score: float | None = None
    alignment: float | None = None
    alignment_angle_deg: float | None = None
    asymmetry: float | None = None
    asymmetry_snr: float | None = None
    asymmetry_angle_deg: float | None = None
    asymmetry_radial: float | None = None
    field_variation_pct: float | None = None
    field_significance: float | None = None
    tilt_pct: float | None = None
    curvature_pct: float | None = None
    fit_tilt_pct: float | None = None
    fit_curvature_pct: float | None = None
    anisotropy: float | None = None
    #: Power law of the size's growth with the field radius (coma ~1, curvature ~2).
    field_growth_exponent: float | None = None
    gradient_angle_deg: float | None = None
    best_spot_xy_px: tuple[float, float] | None = None
    ring_ratio: float | None = None
    donut_fraction: float | None = None
    donut_outer_diameter_px: float | None = None
    obstruction_estimate: float | None = None
    seeing_fwhm_px: float | None = None
    blur_px: float | None = None
    blur_to_seeing: float | None = None
    #: The smallest blur / seeing FWHM any plausible seeing profile allows (the focus call).
    min_blur_to_seeing: float | None = None
    seeing_family: str | None = None
    zone_hfr_px: tuple[tuple[float | None, ...], ...] = ()
    zone_fwhm_px: tuple[tuple[float | None, ...], ...] = ()
    zone_ecc: tuple[tuple[float | None, ...], ...] = ()
    zone_angle_deg: tuple[tuple[float | None, ...], ...] = ()
    zone_n_stars: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class Diagnosis(Record):
    """Verdict on one frame (``diagnose --json``).

    ``defocus_um`` is unsigned (star size cannot tell inside from outside focus);
    ``defocus_cfz`` is it in units of the full critical focus zone width (0.5 = at the
    edge of the zone). Both are ``None`` when the rig's focal ratio or pixel is unknown.
    """

    file: str | None
    label: str
    confidence: float
    findings: tuple[Finding, ...] = ()
    defocus_um: float | None = None
    defocus_cfz: float | None = None
    defocus_method: str | None = None
    evidence: Evidence = field(default_factory=lambda: Evidence(0))
    causes: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def refocus_advised(self) -> bool:
        """True when an autofocus run would fix what we see (a focus miss)."""
        return self.label in REFOCUS_LABELS

    def to_dict(self) -> dict[str, Any]:
        """The fields plus ``refocus_advised`` (read back by :meth:`from_dict`, which ignores it)."""
        return {**super().to_dict(), "refocus_advised": self.refocus_advised}


# --------------------------------------------------------------------------- causes and advice
# Written in our own words from the seed's lists (shared/seeds/000_*).

CAUSES: dict[str, tuple[str, ...]] = {
    "in_focus": (),
    "focus_miss": (
        "the tube contracted as the night cooled (thermal drift) and nobody refocused",
        "focus was set before the tube had cooled down, or by eye without a mask or autofocus",
        "a filter change: filters are rarely exactly parfocal",
        "the drawtube slipped under the weight of the imaging train, or the focuser has play",
        "an autofocus step too coarse to find the true minimum",
    ),
    "poor_seeing": (
        "turbulent air: the star size changes from frame to frame, focus cannot fix it",
        "a low target seen through more air (high airmass)",
        "tube currents: the optics are warmer than the air",
    ),
    "backfocus": (
        "the distance from the field flattener or reducer to the sensor is not the specified one",
        "field curvature of the optics with no (or a wrong) flattener",
    ),
    "tilt": (
        "the sensor is not square to the optical axis (camera tilt, a loose adapter)",
        "the focuser or the drawtube sags under the weight of the imaging train",
    ),
    "coma": (
        "a Newtonian or fast reflector without a coma corrector, or a corrector at the wrong spacing",
    ),
    "collimation": (
        "the mirrors (or lens cells) are out of alignment: after transport, cooling or a knock",
    ),
    "trailing": (
        "wind shaking the mount or the tube",
        "guiding errors or no guiding, periodic error, a bad polar alignment",
        "vibration: a loose cable, a soft pier, someone walking nearby",
        "differential flexure between guide scope and imaging scope",
    ),
    "dew": (
        "dew or frost on the objective, the corrector or the filter/sensor window",
        "a dew heater off or too weak for the night's humidity",
    ),
}

ADVICE: dict[str, tuple[str, ...]] = {
    "in_focus": ("nothing to do: focus is within the critical focus zone",),
    "focus_miss": (
        "run an autofocus now (V-curve, 7-11 points, steps of about 30-50 um)",
        "add a temperature trigger (refocus every 0.5-1 C) and a time trigger (every 1-2 h)",
        "refocus at every filter change, or measure per-filter offsets once and apply them",
        "let the tube cool 30-60 min before the first focus; check the focuser for play and slip",
        "for the first focus use a Bahtinov mask",
    ),
    "poor_seeing": (
        "do not refocus: an autofocus run in bad seeing finds a worse position",
        "prefer targets high in the sky; shorten subs and reject the worst frames",
        "let the optics reach the air temperature",
    ),
    "backfocus": (
        "set the flattener/reducer-to-sensor distance to the manufacturer's value; adjust in small "
        "spacers and compare the corners",
        "an autofocus run will not help: it only moves the whole field",
    ),
    "tilt": (
        "check that the camera and adapters sit square and tight; use a tilt plate if it persists",
        "an autofocus run will not help: one side of the frame always stays soft",
    ),
    "coma": ("fit a coma corrector and set its spacing as specified",
             "an autofocus run will not help"),
    "collimation": ("collimate the telescope (star test or laser), then check again at the centre",
                    "an autofocus run will not help"),
    "trailing": (
        "check the guiding graph; recalibrate guiding and polar alignment",
        "shield the scope from the wind, shorten subs on windy nights, tighten cables and clamps",
        "do not refocus: the stars are smeared, not out of focus",
    ),
    "dew": ("switch on (or turn up) the dew heaters and fit a dew shield; check the optics",
            "frames taken since the onset are soft: reject them",
            "do not refocus: dew is not a focus problem"),
}


# --------------------------------------------------------------------------- the profile model

#: Half-light radius over FWHM of the Kolmogorov long-exposure profile (0.5548 / 0.9759).
KOLMOGOROV_HLR_PER_FWHM = 0.568525


def _moffat_alpha(fwhm: float, beta: float) -> float:
    """Moffat ``alpha`` for a FWHM: the inverse of :func:`focuswatch.stars.moffat_fwhm` (same arithmetic)."""
    return fwhm / float(moffat_fwhm(1.0, beta))


def moffat_r50_px(fwhm_px: float, beta: float) -> float:
    """Half-flux radius (px) of a Moffat profile of FWHM ``fwhm_px``: ``alpha sqrt(2^(1/(beta-1)) - 1)``.

    >>> round(moffat_r50_px(1.0, 3.5), 3)
    0.604
    """
    return _moffat_alpha(fwhm_px, beta) * math.sqrt(2.0 ** (1.0 / (beta - 1.0)) - 1.0)


def _fit_moffat_fwhm(rc: np.ndarray, prof: np.ndarray, r50: float) -> tuple[float, float]:
    """FWHM and beta of a Moffat fitted to a radial profile the way :mod:`stars` fits stars
    (out to 3 half-flux radii, points weighted by their pixel count, beta in 1.2-25).

    A Moffat has no flat top: on a defocused star the fit gives an FWHM well below the true
    half-maximum width. ``stars.measure`` keeps the fit only for stars narrower than ~4 px
    (see :func:`stars_fwhm_px`), so this is what the model needs for small stars.
    """
    from scipy.optimize import least_squares

    use = rc <= max(3.0 * r50, 4.0 * (rc[1] - rc[0]))
    r, y = rc[use], prof[use] / prof[0]
    wt = np.sqrt(r)

    def res(p: np.ndarray) -> np.ndarray:
        return wt * (math.exp(p[0]) * (1 + r * r / math.exp(2 * p[1])) ** (-math.exp(p[2])) - y)

    sol = least_squares(res, [0.0, math.log(max(r50, 1e-3)), math.log(3.0)],
                        bounds=([-5.0, math.log(r50 * 0.01), math.log(1.2)], [5.0, math.log(r50 * 100), math.log(25.0)]))
    alpha, beta = math.exp(sol.x[1]), math.exp(sol.x[2])
    return float(moffat_fwhm(alpha, beta)), beta


#: ``stars.measure``'s pixel-width correction of the FWHM (a pixel adds 1/12 px^2 to each
#: axis' variance, 8 ln2/12 px^2 to the FWHM^2 of a Gaussian).
_PIX_FWHM2 = 8.0 * math.log(2.0) / 12.0
#: Defaults of the measurement model (settable in :class:`DiagnoseConfig`), kept as names.
_BLEND_PX = (DiagnoseConfig.blend_lo_px, DiagnoseConfig.blend_hi_px)
FIT_FWHM_SCALE = DiagnoseConfig.fit_fwhm_scale
FIT_FWHM_ADD2 = DiagnoseConfig.fit_fwhm_add_px2


def stars_fwhm_px(fit_fwhm_px: Any, half_max_width_px: Any, *, config: "DiagnoseConfig | None" = None) -> Any:
    """The FWHM (px) that :func:`focuswatch.stars.measure` reports for a star.

    ``fit_fwhm_px`` is what its Moffat fit gives on the continuous profile and
    ``half_max_width_px`` the true full width at half maximum (for a donut, at half the
    ring's maximum). Mirrors ``measure()``: both widths are read on pixels (the pixel's
    width adds ``8 ln2/12`` px^2), blended with weight ``w = clip((direct - 4)/2, 0, 1)``
    (``fw = (1-w) fit + w direct``) and the pixel width is taken out again
    (``sqrt(fw^2 - 8 ln2/12)``). The fit itself reads a little wide on noisy pixel data
    (:data:`FIT_FWHM_SCALE`, :data:`FIT_FWHM_ADD2`). Because the blend works in pixels, the measured
    HFD/FWHM of a given profile shape depends on how many pixels the star spans: a 2-px
    seeing disk blurred by 1 px keeps the fit's width, the same shape 4x larger reads its
    true half-maximum width. Works on scalars and numpy arrays.
    """
    c = config or DiagnoseConfig()
    fit = np.sqrt(np.square(c.fit_fwhm_scale * np.asarray(fit_fwhm_px, float)) + c.fit_fwhm_add_px2)
    fit_p = np.sqrt(np.square(fit) + _PIX_FWHM2)
    dir_p = np.sqrt(np.square(half_max_width_px) + _PIX_FWHM2)
    w = np.clip((dir_p - c.blend_lo_px) / (c.blend_hi_px - c.blend_lo_px), 0.0, 1.0)
    fw = (1.0 - w) * fit_p + w * dir_p
    return np.sqrt(np.maximum(fw * fw - _PIX_FWHM2, 0.01))


def profile_model(seeing_fwhm_px: float, beta: float, blur_px: float, obstruction: float = 0.0,
                  n: int = 256) -> dict[str, float]:
    """Shape figures of a Moffat seeing profile convolved with a defocus annulus.

    ``seeing_fwhm_px`` and ``beta`` describe the seeing (Moffat), ``blur_px`` the outer
    diameter of the geometric defocus annulus and ``obstruction`` its inner/outer ratio.
    Returns ``r50_px`` and ``r90_px`` (radii holding 50 and 90 % of the light),
    ``fwhm_px`` (true half-maximum width; for a donut at half the ring's maximum),
    ``fit_fwhm_px``/``fit_beta`` (the Moffat fit of the star measurement),
    ``meas_fwhm_px`` (what ``stars.measure`` reports: :func:`stars_fwhm_px`) and
    ``profile_ratio`` (HFD over ``meas_fwhm_px``, what it reports as ``profile_ratio``).
    Computed on a grid by FFT convolution: the forward model the defocus estimate inverts.

    >>> m = profile_model(3.0, 3.5, 0.0, n=512)
    >>> round(m["fwhm_px"], 1), round(2 * m["r50_px"] / m["fwhm_px"], 1)
    (3.0, 1.2)
    >>> round(profile_model(4.0, 3.5, 20.0, n=512)["profile_ratio"], 2)  # flat-topped
    0.74
    """
    f = float(seeing_fwhm_px)
    half = max(4.0 * f, blur_px) * 1.6 + 6.0 * f
    d = 2.0 * half / n
    ax = (np.arange(n) - n / 2 + 0.5) * d
    xx, yy = np.meshgrid(ax, ax)
    rr = np.hypot(xx, yy)
    alpha = _moffat_alpha(f, beta)
    img = (1.0 + (rr / alpha) ** 2) ** (-beta)
    if blur_px > 0:
        disk = np.clip((blur_px / 2 - rr) / d + 0.5, 0, 1)
        if obstruction > 0:
            disk = disk - np.clip((obstruction * blur_px / 2 - rr) / d + 0.5, 0, 1)
        img = np.fft.fftshift(np.real(np.fft.ifft2(np.fft.fft2(np.fft.ifftshift(img))
                                                     * np.fft.fft2(np.fft.ifftshift(disk)))))
    img = np.clip(img, 0, None)
    img /= img.sum()
    r = rr.ravel()
    v = img.ravel()
    order = np.argsort(r)
    cs = np.cumsum(v[order])
    r50 = float(np.interp(0.5, cs, r[order]))
    r90 = float(np.interp(0.9, cs, r[order]))
    bins = np.arange(0.0, half, d)
    idx = np.digitize(r, bins)
    m = len(bins)
    prof = np.bincount(idx, v, minlength=m + 1)[1:m] / np.maximum(np.bincount(idx, minlength=m + 1)[1:m], 1)
    centres = bins[:-1] + d / 2
    ipk = int(np.argmax(prof))
    pk = prof[ipk]
    j = ipk + int(np.argmax(prof[ipk:] < pk / 2))
    rh = float(np.interp(pk / 2, [prof[j], prof[j - 1]], [centres[j], centres[j - 1]]))
    fit_fwhm, fit_beta = _fit_moffat_fwhm(centres, prof, r50)
    meas = float(stars_fwhm_px(fit_fwhm, 2.0 * rh))
    return {"r50_px": r50, "r90_px": r90, "fwhm_px": 2.0 * rh, "fit_fwhm_px": fit_fwhm, "fit_beta": fit_beta,
            "meas_fwhm_px": meas, "profile_ratio": 2.0 * r50 / meas}


def _profile_table(obstruction: float) -> dict[str, Any]:
    """The generated shape table for the nearest tabulated obstruction
    (:func:`focuswatch.diagnose.calibration.profile_table`; ``scripts/make_calibration.py``)."""
    return calibration.profile_table(round(float(obstruction), 2))


#: Defaults of the measurement model (settable in :class:`DiagnoseConfig`), kept as names.
WING_RATIO_BIAS = DiagnoseConfig.wing_ratio_bias
PROFILE_RATIO_BIAS = DiagnoseConfig.profile_ratio_bias
PIX_R90_2 = DiagnoseConfig.pix_r90_px2


def wing_ratio_px(r90_px: np.ndarray, hfr_px: np.ndarray, pix_r90_px2: float = PIX_R90_2) -> np.ndarray:
    """r90/r50 of measured stars with the pixel's width taken out of the 90 % radius.

    ``hfr_px`` (``stars`` column ``hfr``) is already corrected for the pixel; the 90 %
    radius (``outer_r``) is not, see :data:`PIX_R90_2`.
    """
    r90 = np.sqrt(np.maximum(np.square(r90_px) - pix_r90_px2, np.square(hfr_px)))
    return r90 / hfr_px


@dataclass(frozen=True)
class ProfileFit:
    """What the profile shape says (:func:`blur_from_profile`); sizes in px.

    ``blur_px`` and ``seeing_fwhm_px`` come from the best seeing family; ``seeing_beta`` is
    its Moffat-equivalent beta (Kolmogorov ~4.77); ``min_blur_to_seeing`` (and ``min_blur_px``)
    the smallest blur / seeing ratio (blur) that any seeing family still fits (within
    ``plausible_delta_chi2``): a
    focus miss is only called when even that is large, so a seeing profile with thinner
    wings than the one assumed (Kolmogorov reads HFD/FWHM ~1.13, Moffat beta=4 ~1.17) is
    never taken for a defocus.
    """

    seeing_fwhm_px: float
    blur_px: float
    seeing_beta: float
    wing_excess: float
    family: str
    min_blur_to_seeing: float
    #: The smallest blur diameter (px) any plausible family allows (each with its own seeing).
    min_blur_px: float = 0.0

    def __iter__(self):  # the former 4-tuple (seeing, blur, beta, excess)
        return iter((self.seeing_fwhm_px, self.blur_px, self.seeing_beta, self.wing_excess))


def blur_from_profile(hfr_px: float, wing_ratio: float | None, profile_ratio: float | None, *,
                      obstruction: float = 0.0, config: "DiagnoseConfig | None" = None,
                      lambda_n_px: float | None = None) -> ProfileFit:
    """Invert the profile model: seeing FWHM (px), defocus blur diameter (px), seeing family.

    ``hfr_px`` is the true half-flux radius, ``wing_ratio`` the measured 90 %/50 % flux
    radius ratio (pixel-corrected, :func:`wing_ratio_px`; 1.34 for a flat disk, 2.1-2.5
    for seeing) and ``profile_ratio`` HFD over the FWHM ``stars.measure`` reports
    (~1.13-1.2 for seeing, ~0.72 for a large flat disk). The shape of each seeing family
    (Kolmogorov over the pupil's diffraction, and Moffat cross-check rows) convolved with
    the defocus is tabulated against ``x`` = blur / seeing FWHM in the generated calibration
    data. For each family and ``x`` the half-flux radius fixes the seeing FWHM in pixels,
    hence the FWHM the measurement reports (:func:`stars_fwhm_px`: Moffat fit for small
    stars, direct half-maximum width for large ones); the pair of shape figures then fixes
    the family and ``x``. ``wing_excess`` is how much wider the 90 % radius is than the best
    model allows (r90/r50 units; a halo: dew, scattered light). With ``lambda_n_px`` (the
    rig's lambda N in pixels) the physical families whose seeing in lambda N units (``s``)
    is far from the one the star implies pay a chi^2 (``family_s_width``): how much the
    diffraction shapes the star is known from the rig, not free.

    >>> fit = blur_from_profile(2.0, 2.2, 1.13)  # Kolmogorov seeing, in focus
    >>> fit.min_blur_to_seeing < 0.3
    True
    >>> round(blur_from_profile(4.1, 1.45, 0.76).blur_px / 4.1, 1)  # a big flat disk: blur ~ 2.9 HFR
    2.9
    """
    c = config or DiagnoseConfig()
    tab = _profile_table(obstruction)
    xs = tab["xs"]
    fine = np.linspace(0.0, xs[-1], 801)
    wm = None if wing_ratio is None or not math.isfinite(wing_ratio) else wing_ratio - c.wing_ratio_bias
    pm = None if profile_ratio is None or not math.isfinite(profile_ratio) else profile_ratio - c.profile_ratio_bias
    chis, fits, r50s = [], [], []
    for i, fam in enumerate(tab["families"]):
        moffat = fam["kind"] == "moffat"
        if moffat and not c.seeing_beta_min <= fam["beta_equiv"] <= c.seeing_beta_max:
            continue
        r50 = np.interp(fine, xs, tab["r50"][i])
        w = np.interp(fine, xs, tab["w"][i])
        chi = np.zeros_like(fine)
        if wm is not None:
            chi += ((w - wm) / c.wing_ratio_sigma) ** 2
        if pm is not None:
            seeing = hfr_px / r50  # px, for each candidate x
            meas = stars_fwhm_px(np.interp(fine, xs, tab["fit"][i]) * seeing,
                                 np.interp(fine, xs, tab["hm"][i]) * seeing, config=c)
            chi += ((2.0 * hfr_px / meas - pm) / c.profile_ratio_sigma) ** 2
        if moffat:
            chi += c.moffat_prior_chi2
        elif lambda_n_px and lambda_n_px > 0:
            s_data = hfr_px / r50 / lambda_n_px  # the seeing FWHM in lambda N, for each x
            s_fam = fam.get("s") or c.geometric_family_s
            lr = np.log(s_data / s_fam)
            if not fam.get("s"):
                lr = np.minimum(lr, 0.0)  # the geometric limit holds for any larger seeing
            chi += (lr / math.log(c.family_s_width)) ** 2
        chis.append(chi)
        r50s.append(r50)
        k = int(np.argmin(chi))
        excess = 0.0 if wm is None else float(wm - w[k])
        fits.append((float(chi[k]), float(fine[k]), float(r50[k]), float(fam["beta_equiv"]), excess, fam["name"]))
    best = min(range(len(fits)), key=lambda j: fits[j][0])
    chi_b, x, r50_per_f, be, excess, name = fits[best]
    lim = chi_b + c.plausible_delta_chi2
    lows = [(float(fine[k]), float(fine[k] * hfr_px / r50[k]))
            for ch, r50 in zip(chis, r50s) if np.any(ch <= lim) for k in (int(np.argmax(ch <= lim)),)]
    x_low = min(v[0] for v in lows)
    blur_low = min(v[1] for v in lows)
    seeing = hfr_px / r50_per_f
    return ProfileFit(seeing, x * seeing, be, excess, name, x_low, min(blur_low, x * seeing))


# --------------------------------------------------------------------------- helpers

def _finite(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, float)
    return a[np.isfinite(a)]


from focuswatch.model.numerics import finite_median as _median  # noqa: E402 - the one median helper


def _f(v: Any, spec: str = ".2f", unit: str = "", none: str = "—") -> str:
    """A figure for the text output: formatted with its unit, ``none`` when it is missing."""
    return none if v is None else f"{format(v, spec)}{unit}"


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), nd)


def _grid(values: np.ndarray, nd: int = 3) -> tuple[tuple[float | None, ...], ...]:
    return tuple(tuple(_r(float(v), nd) if np.isfinite(v) else None for v in row) for row in values)


def _orientation(ecc: np.ndarray, theta: np.ndarray) -> tuple[float, float]:
    """Alignment 0..1 (circular mean length of 2*theta weighted by e) and its angle (rad)."""
    w = ecc.sum()
    if w <= 0:
        return 0.0, 0.0
    z = np.sum(ecc * np.exp(2j * theta)) / w
    return float(abs(z)), float(np.angle(z) / 2.0)


def _smooth_step(x: float, lo: float, hi: float) -> float:
    """0 below ``lo``, 1 above ``hi``, linear in between: turns a figure into a score."""
    if hi == lo:
        return float(x >= hi)
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


@dataclass(frozen=True)
class _FieldFit:
    variation_pct: float
    significance: float
    tilt_pct: float
    curvature_pct: float
    anisotropy: float
    gradient_angle_deg: float | None
    best_xy: tuple[float, float]


def _field_fit(x: np.ndarray, y: np.ndarray, hfr: np.ndarray, w: int, h: int) -> _FieldFit | None:
    """Robust quadratic surface of HFR^2 over the frame; tilt/curvature from its shape.

    HFR^2 grows with the square of the local defocus, so a curved field gives an isotropic
    bowl (both eigenvalues of the quadratic part alike), a tilted sensor a trough or a
    plane (one eigenvalue, or a linear term). ``significance`` is the map's range over
    three times the standard errors of its extreme points: below 1 the variation is noise.
    """
    if hfr.size < 12:
        return None
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    s = math.hypot(cx, cy) or 1.0
    u, v = (x - cx) / s, (y - cy) / s
    a = np.column_stack([np.ones_like(u), u, v, u * u, u * v, v * v])
    t = hfr ** 2
    keep = np.ones(t.size, bool)
    coef = np.zeros(6)
    for _ in range(5):  # iteratively clipped least squares (blends, cosmic hits)
        coef, *_ = np.linalg.lstsq(a[keep], t[keep], rcond=None)
        res = t - a @ coef
        mad = mad_std(res[keep]) + 1e-12
        new = np.abs(res) < 3.5 * mad
        if new.sum() < 10 or np.array_equal(new, keep):
            break
        keep = new
    res = (t - a @ coef)[keep]
    dof = max(int(keep.sum()) - 6, 1)
    sigma2 = float(res @ res) / dof
    try:
        cov = sigma2 * np.linalg.inv(a[keep].T @ a[keep])
    except np.linalg.LinAlgError:
        return None
    uc, vc = cx / s, cy / s
    gx = np.linspace(-uc, uc, 41)
    gy = np.linspace(-vc, vc, 41)
    gu, gv = np.meshgrid(gx, gy)
    g = np.column_stack([np.ones(gu.size), gu.ravel(), gv.ravel(), gu.ravel() ** 2,
                         (gu * gv).ravel(), gv.ravel() ** 2])
    m2 = g @ coef
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", g, cov, g), 0.0))
    i_hi, i_lo = int(np.argmax(m2)), int(np.argmin(m2))
    signif = float((m2[i_hi] - m2[i_lo]) / (3.0 * (se[i_hi] + se[i_lo]) + 1e-12))
    mp = np.sqrt(np.clip(m2, 1e-6, None)).reshape(gu.shape)
    med = float(np.median(mp))
    corners = np.array([mp[0, 0], mp[0, -1], mp[-1, 0], mp[-1, -1]])
    centre = float(mp[20, 20])
    q = np.array([[coef[3], coef[4] / 2], [coef[4] / 2, coef[5]]])
    ev, evec = np.linalg.eigh(q)
    rc2 = uc * uc + vc * vc
    iso = float((ev[0] + ev[1]) / 2.0 * rc2)
    aniso = float((ev[1] - ev[0]) / 2.0 * rc2)
    lin = float(math.hypot(coef[1], coef[2]) * math.sqrt(rc2))
    main = evec[:, 1] if abs(ev[1]) >= abs(ev[0]) else evec[:, 0]
    if lin > aniso:
        ang = math.degrees(math.atan2(coef[2], coef[1])) % 360.0
    else:
        ang = math.degrees(math.atan2(main[1], main[0])) % 180.0
    iy, ix = np.unravel_index(int(np.argmin(mp)), mp.shape)
    return _FieldFit(
        variation_pct=100.0 * float(mp.max() - mp.min()) / med,
        significance=signif,
        tilt_pct=100.0 * float(corners.max() - corners.min()) / med,
        curvature_pct=100.0 * (float(corners.mean()) - centre) / centre,
        anisotropy=float((aniso + lin) / (abs(iso) + aniso + lin + 1e-12)),
        gradient_angle_deg=ang,
        best_xy=(float(cx + gx[ix] * s), float(cy + gy[iy] * s)),
    )


def star_asymmetry(pixels: np.ndarray, x: np.ndarray, y: np.ndarray, hfr_px: np.ndarray,
                   scale_px: float = 1.0, *, config: "DiagnoseConfig | None" = None) -> np.ndarray:
    """Comatic (third-moment) vector of each star, shape (n, 2), dimensionless.

    ``sum(I * r^2 * (dx, dy)) / (sum(I) * sigma^3)`` about the star's centroid, with
    ``sigma^2 = sum(I r^2) / sum(I)``: zero for any symmetric star (round, elongated by a
    trail, defocused), pointing along a one-sided flare (collimation, coma). Second moments
    cannot tell a flare from a trail; this can. ``x``, ``y``, ``hfr_px`` are in sensor
    pixels (sep convention); ``pixels`` may be a 2x2-superpixel image (``scale_px`` = 2).
    The stamp, sky border and aperture sizes are ``config``'s ``asymmetry_*`` fields.
    NaN for stars too close to the edge.
    """
    c = config or DiagnoseConfig()
    img = np.asarray(pixels, dtype=np.float64)
    h, w = img.shape
    b = int(c.asymmetry_border_px)
    out = np.full((len(x), 2), np.nan)
    for i in range(len(x)):
        px = (x[i] + 0.5) / scale_px - 0.5
        py = (y[i] + 0.5) / scale_px - 0.5
        hr = max(hfr_px[i] / scale_px, c.asymmetry_min_hfr_px)
        rad = int(min(max(math.ceil(c.asymmetry_stamp_hfr * hr + c.asymmetry_stamp_pad_px),
                          c.asymmetry_stamp_min_px), c.asymmetry_stamp_max_px))
        ix, iy = int(round(px)), int(round(py))
        if ix - rad - b < 0 or iy - rad - b < 0 or ix + rad + b + 1 > w or iy + rad + b + 1 > h:
            continue
        st = img[iy - rad - b:iy + rad + b + 1, ix - rad - b:ix + rad + b + 1]
        border = np.concatenate([st[:b].ravel(), st[-b:].ravel(), st[b:-b, :b].ravel(), st[b:-b, -b:].ravel()])
        st = st - np.median(border)
        yy, xx = np.mgrid[-rad - b:rad + b + 1, -rad - b:rad + b + 1].astype(float)
        cx, cy = px - ix, py - iy
        ap = c.asymmetry_aperture_hfr * hr + c.asymmetry_aperture_pad_px
        for _ in range(int(c.asymmetry_recentre_passes)):
            m = ((xx - cx) ** 2 + (yy - cy) ** 2) <= ap * ap
            v = np.where(m, st, 0.0)
            tot = v.sum()
            if tot <= 0:
                break
            cx, cy = (v * xx).sum() / tot, (v * yy).sum() / tot
        else:
            dx, dy = xx - cx, yy - cy
            r2 = dx * dx + dy * dy
            m = r2 <= ap * ap
            v = np.where(m, st, 0.0)
            tot = v.sum()
            if tot <= 0:  # the recentred aperture lost the star (noise): leave NaN, no 0/0
                continue
            s2 = (v * r2).sum() / tot
            if s2 > 0:
                out[i] = [(v * r2 * dx).sum() / tot / s2 ** 1.5, (v * r2 * dy).sum() / tot / s2 ** 1.5]
    return out


def field_growth_exponent(rn: np.ndarray, hfr_px: np.ndarray, n_rings: int = 5) -> float | None:
    """Power law of the star size's growth with the field radius: ~1 for coma, ~2 for field
    curvature or a wrong backfocus.

    Stars are binned in ``n_rings`` rings of equal count by ``rn`` (field radius over the
    half diagonal); the excess size of ring ``k`` over the central ring,
    ``sqrt(HFR_k^2 - HFR_0^2)``, is fitted as ``c * r^p`` (log-log least squares over the rings
    with a clear excess). Coma's blur grows as the field angle h, defocus from a curved
    field as h^2. ``None`` when fewer than three rings stand out.

    >>> r = np.linspace(0.05, 1.0, 200)
    >>> round(field_growth_exponent(r, np.hypot(1.5, 2.0 * r ** 2)), 1)
    2.0
    """
    if len(rn) < 5 * n_rings:
        return None
    order = np.argsort(rn)
    rings = np.array_split(order, n_rings)
    rr = np.array([np.median(rn[k]) for k in rings])
    hh = np.array([np.median(hfr_px[k]) for k in rings])
    h0 = hh[0]
    ex2 = hh ** 2 - h0 ** 2
    use = (ex2 > (0.1 * h0) ** 2) & (rr > 0)
    use[0] = False
    if use.sum() < 3:
        return None
    p = np.polyfit(np.log(rr[use]), 0.5 * np.log(ex2[use]), 1)[0]
    return float(p)


def _zones(x: np.ndarray, y: np.ndarray, w: int, h: int) -> np.ndarray:
    col = np.clip((x / w * 3).astype(int), 0, 2)
    row = np.clip((y / h * 3).astype(int), 0, 2)
    return row * 3 + col


def expected_fwhm_px(rig: Rig, config: DiagnoseConfig = DiagnoseConfig(),
                     plate_scale_arcsec_px: float | None = None) -> float | None:
    """In-focus FWHM (px) the rig should give: seeing (the rig's, else the reference night)
    added in quadrature to the Airy core. ``None`` without a plate scale."""
    scale = plate_scale_arcsec_px or rig.plate_scale_arcsec_px
    if not scale:
        return None
    seeing = rig.seeing_arcsec or config.reference_seeing_arcsec
    airy = 0.0
    if rig.effective_aperture_mm:
        airy = 1.029 * rig.wavelength_nm * 1e-9 / (rig.effective_aperture_mm * 1e-3) * optics.ARCSEC_PER_RAD
    return math.hypot(seeing, airy) / scale


def expected_hfr_px(rig: Rig, config: DiagnoseConfig = DiagnoseConfig(),
                    plate_scale_arcsec_px: float | None = None) -> float | None:
    """In-focus true half-flux radius (px) the rig should give in the rig's seeing (a measured
    value, ``rig.seeing_arcsec``) or else the reference night's: Kolmogorov seeing through the
    obstructed pupil, :func:`focuswatch.diagnose.calibration.infocus_hfr_px` (the one calibrated
    in-focus size; the policy's rig reference is the same call). Without an aperture the
    seeing alone (Kolmogorov half-light radius). ``None`` without a plate scale."""
    scale = plate_scale_arcsec_px or rig.plate_scale_arcsec_px
    if not scale:
        return None
    seeing = rig.seeing_arcsec or config.reference_seeing_arcsec
    if not rig.effective_aperture_mm:
        return KOLMOGOROV_HLR_PER_FWHM * seeing / scale
    return calibration.infocus_hfr_px(seeing, rig.effective_aperture_mm, rig.wavelength_nm, scale,
                                      rig.obstruction or 0.0)


# --------------------------------------------------------------------------- one frame

def _unknown(stats: Any, reason: str, n: int = 0) -> Diagnosis:
    return Diagnosis(file=getattr(stats, "file", None), label=UNKNOWN, confidence=0.0,
                     evidence=Evidence(n_stars=n), reason=reason,
                     advice=("no verdict on this frame: " + reason,))


def frame(stats: Any, rig: Rig | None = None, *, image: Any = None, baseline_hfr_px: float | None = None,
          config: DiagnoseConfig = DiagnoseConfig()) -> Diagnosis:
    """Diagnose one measured frame.

    Parameters
    ----------
    stats : focuswatch.stars.FrameStats
        The measurement, with its per-star table ``stats.stars``.
    rig : Rig, optional
        Telescope and camera (header already merged in); without a focal ratio and pixel
        size the defocus in um is ``None`` but the label is still given.
    image : focuswatch.io.frames.Frame or numpy.ndarray, optional
        The pixels the stars were measured on. With them the one-sided flare of a
        miscollimated scope is told from a symmetric trail (third moments); without them
        an elongated, aligned field is called ``trailing``.
    baseline_hfr_px : float, optional
        True half-flux radius right after the last autofocus (px). When given, the defocus
        is the blur that grows it to the measured HFR (optics' exact seeing x annulus
        model) rather than inferred from the profile shape; a frame whose stars are
        smaller than it is never called dew.
    config : DiagnoseConfig
        Thresholds.

    Returns
    -------
    Diagnosis
        Never raises for a bad frame: ``label="unknown"`` and ``reason`` instead.
    """
    rig = rig or Rig()
    meta = getattr(stats, "meta", None)
    if meta is not None and not meta.is_light:
        return _unknown(stats, f"not a light frame (IMAGETYP={meta.image_type!r}): nothing to diagnose")
    n_total = int(getattr(stats, "n_stars", 0) or 0)
    if n_total == 0:
        why = getattr(stats, "reason", None) or "no stars detected"
        return _unknown(stats, f"no stars measured ({why})")
    tab = getattr(stats, "stars", None)
    if tab is None or len(tab) == 0:
        return _unknown(stats, "the per-star table is missing (a measurement read back from JSON): "
                               "measure the frame again", n_total)
    ok = np.isfinite(tab["hfr"]) & (tab["hfr"] > 0) & np.isfinite(tab["x"]) & np.isfinite(tab["y"])
    t = tab[ok]
    if len(t) < config.min_stars:
        return _unknown(stats, f"only {len(t)} usable stars (at least {config.min_stars} are needed "
                               "for a verdict): clouds, a very short exposure or a wrong target?", len(t))
    w = int(stats.width_px or (meta.width if meta else 0) or math.ceil(t["x"].max() + 1))
    h = int(stats.height_px or (meta.height if meta else 0) or math.ceil(t["y"].max() + 1))
    pixels, scale_px = None, 1
    if image is not None:
        pixels = getattr(image, "pixels", image)
        scale_px = int(getattr(image, "scale_px", 1) or 1)

    ev, defocus = _evidence(stats, t, w, h, rig, baseline_hfr_px, pixels, scale_px, config)
    scores = _scores(ev, defocus, config, baseline_hfr_px)
    problem_label, problem = max(((k, v) for k, v in scores.items() if k != "in_focus"),
                                 key=lambda kv: kv[1])
    if problem < 0.5:
        label, conf = "in_focus", float(np.clip(1.0 - problem, 0.5, 1.0))
    else:
        label, conf = problem_label, problem
        runner = max((v for k, v in scores.items() if k not in ("in_focus", label)), default=0.0)
        conf = float(np.clip(0.5 + (problem - runner), 0.5, 1.0)) if runner >= 0.5 else float(problem)
    findings = tuple(
        Finding(k, round(v, 2), _detail(k, ev, defocus))
        for k, v in sorted(scores.items(), key=lambda kv: -kv[1])
        if k not in ("in_focus", label) and v >= 0.5
    )
    return Diagnosis(
        file=getattr(stats, "file", None), label=label, confidence=round(float(conf), 2),
        findings=findings,
        defocus_um=_r(defocus.get("um"), 1), defocus_cfz=_r(defocus.get("cfz"), 2),
        defocus_method=defocus.get("method"),
        evidence=ev, causes=CAUSES.get(label, ()), advice=ADVICE.get(label, ()),
        reason=None,
    )


def _bright(t: np.ndarray, n_min: int = 12) -> np.ndarray:
    """Stars bright enough for shape work: SNR >= 20, else the brighter half."""
    b = t[t["snr"] >= 20]
    if len(b) >= n_min:
        return b
    return t[np.argsort(-t["snr"])][:max(n_min, len(t) // 2)]




def _own_light(bt: np.ndarray) -> np.ndarray:
    """The stars whose half-flux radius holds only their own light, on frames of big disks.

    ``stars.measure`` sizes every aperture for the frame's largest stars; on strongly
    defocused frames (disks tens of px wide) most apertures also catch part of a
    neighbour, which only ever *widens* r50 and r90 (simulated 10 CFZ frames with 60
    stars on 640x640 px: 12-16 of 17-22 stars, median HFR +30 % and more, r90/r50 3-4
    instead of 1.4) while the FWHM read off the profile stays right. The bias is
    one-sided and these bright, large stars have little noise, so the third of the stars
    with the lowest HFD/FWHM (at least 5) are kept. Their 90 % radius may still reach a
    neighbour: the caller does not use r90 on such frames.
    """
    fitted = bt[np.isfinite(bt["fwhm"]) & (bt["fwhm"] > 0)]
    if len(fitted) < 8:
        return bt
    order = np.argsort(fitted["hfr"] / fitted["fwhm"])
    return fitted[order[:max(5, len(fitted) // 3)]]


def _evidence(stats: Any, t: np.ndarray, w: int, h: int, rig: Rig, baseline_hfr_px: float | None,
              pixels: np.ndarray | None, scale_px: int, config: DiagnoseConfig) -> tuple[Evidence, dict[str, Any]]:
    bt = _bright(t)
    x, y = bt["x"], bt["y"]
    hfr = bt["hfr"]
    ecc = np.nan_to_num(bt["ecc"], nan=0.0)
    theta = np.nan_to_num(bt["theta"], nan=0.0)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    hd = math.hypot(cx, cy) or 1.0
    rn = np.hypot(x - cx, y - cy) / hd
    phi = np.arctan2(y - cy, x - cx)

    fitted = bt[np.isfinite(bt["fwhm"]) & (bt["fwhm"] > 0)]
    fwhm_med = float(np.median(fitted["fwhm"])) if len(fitted) else stats.fwhm_px
    scale = stats.plate_scale_arcsec_px or rig.plate_scale_arcsec_px
    exp_fwhm = expected_fwhm_px(rig, config, scale)
    exp_hfr = expected_hfr_px(rig, config, scale)
    # big disks (several times the in-focus size): the wide apertures catch neighbours
    crowded = bool(fwhm_med and fwhm_med >= config.crowded_fwhm_px
                   and (exp_fwhm is None or fwhm_med >= config.crowded_vs_expected * exp_fwhm))
    own = _own_light(bt) if crowded else bt  # the profile figures: stars free of neighbours' light
    hfr_med = float(np.median(own["hfr"]))
    own_fit = own[np.isfinite(own["fwhm"]) & (own["fwhm"] > 0)]
    pr = float(np.median(2.0 * own_fit["hfr"] / own_fit["fwhm"])) if len(own_fit) >= 5 else stats.profile_ratio
    outer = own["outer_r"]
    good_outer = np.isfinite(outer) & (outer > 0)
    wing = None
    if good_outer.sum() >= 5 and not crowded:  # r90 reaches neighbours even where r50 does not
        wing = float(np.median(wing_ratio_px(outer[good_outer], own["hfr"][good_outer], config.pix_r90_px2)))
    beta = _median(fitted["beta"]) if len(fitted) else None

    # orientation: alignment over the whole frame, radial score away from the centre
    align, ang = _orientation(ecc, theta)
    far = rn > 0.35
    rho = None
    if far.sum() >= 5 and ecc[far].sum() > 0:
        rho = float(np.sum(ecc[far] * np.cos(2 * (theta[far] - phi[far]))) / ecc[far].sum())
    centre = rn < 0.3
    edge = rn > 0.6
    centre_ecc = _median(ecc[centre]) if centre.sum() >= 3 else None
    edge_ecc = _median(ecc[edge]) if edge.sum() >= 3 else None

    # asymmetry (third moments) on the brightest stars, when the pixels are at hand
    asym = asym_snr = asym_ang = asym_rad = None
    if pixels is not None:
        top = bt[np.argsort(-bt["snr"])][:120]
        vec = star_asymmetry(pixels, top["x"], top["y"], top["hfr"], scale_px, config=config)
        okv = np.isfinite(vec[:, 0])
        if okv.sum() >= 8:
            v = vec[okv]
            med = np.median(v, axis=0)
            err = mad_std(v, axis=0) / math.sqrt(len(v))
            asym = float(math.hypot(*med))
            asym_snr = float(asym / (math.hypot(*err) + 1e-9))
            asym_ang = math.degrees(math.atan2(med[1], med[0])) % 360.0
            tp = top[okv]
            pphi = np.arctan2(tp["y"] - cy, tp["x"] - cx)
            pfar = np.hypot(tp["x"] - cx, tp["y"] - cy) / hd > 0.35
            if pfar.sum() >= 5:
                asym_rad = float(np.median(v[pfar, 0] * np.cos(pphi[pfar]) + v[pfar, 1] * np.sin(pphi[pfar])))

    # 3x3 zones (all usable stars, as in stars.Zone)
    zid = _zones(t["x"], t["y"], w, h)
    zh, zf, ze, za = (np.full(9, np.nan) for _ in range(4))
    zn = np.zeros(9, int)
    tecc = np.nan_to_num(t["ecc"], nan=0.0)
    ttheta = np.nan_to_num(t["theta"], nan=0.0)
    for k in range(9):
        m = zid == k
        zn[k] = int(m.sum())
        if zn[k]:
            zh[k] = np.median(t["hfr"][m])
            f = _finite(t["fwhm"][m])
            zf[k] = np.median(f) if f.size else np.nan
            ze[k] = np.median(tecc[m])
            if zn[k] >= 2 and tecc[m].sum() > 0:
                za[k] = math.degrees(_orientation(tecc[m], ttheta[m])[1]) % 180.0
    zh3 = zh.reshape(3, 3)
    corners = zh3[[0, 0, 2, 2], [0, 2, 0, 2]]
    tilt_pct = curv_pct = None
    if np.all(np.isfinite(corners)) and np.isfinite(zh3[1, 1]):
        allmed = float(np.nanmedian(zh))
        tilt_pct = 100.0 * (corners.max() - corners.min()) / allmed
        curv_pct = 100.0 * (corners.mean() - zh3[1, 1]) / zh3[1, 1]

    fit = _field_fit(x, y, hfr, w, h)
    growth_p = field_growth_exponent(rn, hfr)

    # donuts
    ring = np.nan_to_num(bt["ring"], nan=0.0)
    donut = ring > config.donut_ring_ratio
    donut_frac = float(donut.mean())
    ring_ratio = float(np.median(ring[donut])) if donut.sum() >= 3 else stats.ring_ratio
    donut_d = eps_est = None
    if donut_frac >= config.donut_fraction and donut.sum() >= 3:
        eps_est = float(np.median(ring[donut]))
        # the annulus whose convolution with the seeing gives the donuts' half-flux radius:
        # optics' exact forward model (seeing Moffat x annulus), inverted. (The 90 % radius
        # would be more direct but picks up neighbours inside the big stamps of defocused stars.)
        h_don = float(np.median(hfr[donut]))
        eps_tab = round(min(max(eps_est, 0.0), 0.9) * 20.0) / 20.0  # 0.05 steps: few growth tables
        if exp_hfr:
            donut_d = optics.defocus_blur_px_from_hfr(h_don, exp_hfr, eps_tab, None)
        else:  # no plate scale: the disk alone
            donut_d = 2.0 * h_don / optics.true_hfr_factor(eps_tab)

    defocus = _defocus(hfr_med, wing, pr, rig, baseline_hfr_px, donut_d, eps_est, config)
    ev = Evidence(
        n_stars=int(len(t)), n_bright=int(len(bt)),
        hfr_px=_r(hfr_med), fwhm_px=_r(fwhm_med),
        fwhm_arcsec=_r(fwhm_med * scale) if (fwhm_med and scale) else None,
        expected_fwhm_px=_r(exp_fwhm), expected_hfr_px=_r(exp_hfr),
        hfr_over_seeing_expected=_r(hfr_med / exp_hfr) if (rig.seeing_arcsec and exp_hfr) else None,
        size_excess=_r(fwhm_med / exp_fwhm) if (fwhm_med and exp_fwhm) else None,
        profile_ratio=_r(pr), wing_ratio=_r(wing), wing_excess=_r(defocus.get("wing_excess")),
        beta=_r(beta), seeing_beta=_r(defocus.get("seeing_beta")),
        eccentricity=_r(float(np.median(ecc))), centre_ecc=_r(centre_ecc), edge_ecc=_r(edge_ecc),
        radial_score=_r(rho), alignment=_r(align), alignment_angle_deg=_r(math.degrees(ang) % 180.0, 1),
        asymmetry=_r(asym), asymmetry_snr=_r(asym_snr, 2), asymmetry_angle_deg=_r(asym_ang, 1),
        asymmetry_radial=_r(asym_rad),
        field_variation_pct=_r(fit.variation_pct, 1) if fit else None,
        field_significance=_r(fit.significance, 2) if fit else None,
        tilt_pct=_r(tilt_pct, 1), curvature_pct=_r(curv_pct, 1),
        fit_tilt_pct=_r(fit.tilt_pct, 1) if fit else None,
        fit_curvature_pct=_r(fit.curvature_pct, 1) if fit else None,
        anisotropy=_r(fit.anisotropy) if fit else None, field_growth_exponent=_r(growth_p, 2),
        gradient_angle_deg=_r(fit.gradient_angle_deg, 1) if fit and fit.gradient_angle_deg is not None else None,
        best_spot_xy_px=(round(fit.best_xy[0], 1), round(fit.best_xy[1], 1)) if fit else None,
        ring_ratio=_r(ring_ratio), donut_fraction=_r(donut_frac),
        donut_outer_diameter_px=_r(donut_d), obstruction_estimate=_r(eps_est),
        seeing_fwhm_px=_r(defocus.get("seeing_px")), blur_px=_r(defocus.get("blur_px")),
        blur_to_seeing=_r(defocus.get("x")), min_blur_to_seeing=_r(defocus.get("x_low")),
        seeing_family=defocus.get("family"),
        zone_hfr_px=_grid(zh3), zone_fwhm_px=_grid(zf.reshape(3, 3)), zone_ecc=_grid(ze.reshape(3, 3)),
        zone_angle_deg=_grid(za.reshape(3, 3), 1),
        zone_n_stars=tuple(tuple(int(v) for v in row) for row in zn.reshape(3, 3)),
    )
    return ev, defocus


def _defocus(hfr_px: float, wing_ratio: float | None, profile_ratio: float | None, rig: Rig,
             baseline_hfr_px: float | None, donut_d_px: float | None, eps: float | None,
             config: DiagnoseConfig) -> dict[str, Any]:
    """Blur diameter (px) and defocus (um, CFZ units) by the best method available."""
    obstruction = rig.obstruction or 0.0
    out: dict[str, Any] = {}
    if wing_ratio is not None or profile_ratio is not None:
        ln_px = (rig.wavelength_nm / 1000.0 * rig.f_ratio / rig.effective_pixel_um
                 if (rig.f_ratio and rig.effective_pixel_um) else None)
        if 2.0 * hfr_px > config.family_s_max_hfd_px:
            ln_px = None  # the rig-aware family prior only where the measurement model holds
        fit = blur_from_profile(hfr_px, wing_ratio, profile_ratio,
                                obstruction=eps if eps is not None else obstruction, config=config,
                                lambda_n_px=ln_px)
        seeing = fit.seeing_fwhm_px
        out.update(method=f"profile shape ({fit.family} seeing x defocus)", blur_px=fit.blur_px, seeing_px=seeing,
                   seeing_beta=fit.seeing_beta, wing_excess=fit.wing_excess,
                   x=fit.blur_px / seeing if seeing > 0 else None, x_low=fit.min_blur_to_seeing,
                   blur_low_px=fit.min_blur_px, family=fit.family)
    n = rig.f_ratio
    pix = rig.effective_pixel_um
    if donut_d_px is not None:
        out.update(method="donut outer diameter", blur_px=donut_d_px)
    elif baseline_hfr_px and n and pix:
        um = optics.defocus_um_from_hfr(hfr_px, baseline_hfr_px, n, pix, obstruction,
                                        wavelength_nm=rig.wavelength_nm)
        out.update(method="HFR growth over the post-autofocus baseline (physical optics)", blur_px=um / n / pix)
    elif baseline_hfr_px:
        out.update(method="HFR growth over the post-autofocus baseline",
                   blur_px=optics.defocus_blur_px_from_hfr(hfr_px, baseline_hfr_px, obstruction, None))
    if "blur_px" not in out:
        return out
    if n and pix:
        um = optics.defocus_um_from_blur(out["blur_px"] * pix, n)
        out["um"] = um
        out["cfz"] = um / optics.cfz_um(n, rig.wavelength_nm)
        if out.get("blur_low_px") is not None and donut_d_px is None:
            # the smallest defocus the profile allows, for the zone gate of the focus call
            low_um = optics.defocus_um_from_blur(out["blur_low_px"] * pix, n)
            out["cfz_low"] = min(low_um / optics.cfz_um(n, rig.wavelength_nm), out["cfz"])
    return out


def _dew_score(ev: Evidence, baseline_hfr_px: float | None, c: DiagnoseConfig) -> float:
    """0..1: evidence of a dew halo, and nothing that rules it out.

    Dew scatters a share of every star's light into a broad halo: the 90 % flux radius
    grows far beyond what any seeing profile of the same core allows. That excess must be
    there in r90/r50 units (``dew_wing_excess``) *and* in pixels (``dew_min_halo_px``): on
    stars a pixel or two across the 90 % radius is mostly pixel and noise, and a ratio
    alone would call the sharpest frames of a night dew. A halo only ever makes stars
    larger, so a frame whose stars are smaller than the post-autofocus baseline is not dew,
    and it leaves the core (FWHM) seeing-sized, so a core over ~3x the expected in-focus
    FWHM is a focus or seeing problem (whose wide apertures pick up neighbours' light).
    """
    wx = ev.wing_excess or 0.0
    score = _smooth_step(wx, c.dew_wing_excess - c.dew_wing_step, c.dew_wing_excess + c.dew_wing_step)
    halo_px = wx * (ev.hfr_px or 0.0)  # r90 excess (px): wing excess is in units of r50 = HFR
    score *= _smooth_step(halo_px, c.dew_halo_onset_frac * c.dew_min_halo_px, c.dew_min_halo_px)
    if baseline_hfr_px and ev.hfr_px:
        score *= _smooth_step(ev.hfr_px / baseline_hfr_px, *c.dew_vs_baseline_band)
    if ev.size_excess is not None:  # the core stays seeing-sized under dew: a core several
        score *= 1.0 - _smooth_step(ev.size_excess, *c.dew_core_excess_band)  # times that is focus or seeing
    return score


def _scores(ev: Evidence, defocus: Mapping[str, Any], c: DiagnoseConfig,
            baseline_hfr_px: float | None = None) -> dict[str, float]:
    """A 0..1 score per label; >= 0.5 means the evidence supports it."""
    s = {k: 0.0 for k in LABELS}
    e = ev.eccentricity or 0.0
    ce = ev.centre_ecc if ev.centre_ecc is not None else e
    ee = ev.edge_ecc if ev.edge_ecc is not None else e
    rho = ev.radial_score or 0.0
    al = ev.alignment or 0.0
    pr = ev.profile_ratio
    el = c.elongated_ecc
    elong = _smooth_step(e, el - c.elongated_step, el + c.elongated_step)
    aligned = _smooth_step(al, c.aligned - c.aligned_below, c.aligned + c.aligned_above)
    flare = 0.0  # one-sided, one direction: collimation (needs the pixels)
    if ev.asymmetry_snr is not None and ev.asymmetry is not None:
        flare = _smooth_step(ev.asymmetry_snr, c.flare_snr - c.flare_snr_step, c.flare_snr + c.flare_snr_step) * \
            _smooth_step(ev.asymmetry, *c.flare_asymmetry_band)

    # elongation with one orientation everywhere: a trail, or a flare if it is one-sided
    uniform_e = 1.0 - _smooth_step(abs(ee - ce), *c.uniform_ecc_band)
    common = elong * aligned * uniform_e * (1.0 - _smooth_step(abs(rho), c.radial, c.radial + c.radial_step))
    s["trailing"] = common * (1.0 - flare)
    s["collimation"] = max(common, elong * _smooth_step(al, *c.structured_band)) * flare
    # coma: round centre, radial elongation growing outward
    grow_e = _smooth_step(ee - ce, *c.coma_ecc_growth_band)
    radial_e = _smooth_step(rho, c.radial - c.aligned_below, c.radial + c.aligned_above)
    if ev.asymmetry_radial is not None:
        radial_e = max(radial_e, _smooth_step(ev.asymmetry_radial, c.coma_flare, c.coma_flare_full)
                       * _smooth_step(rho, *c.coma_flare_radial_band))
    # coma, not a curved field with radial astigmatism: comet tails (a one-sided radial flare,
    # needs the pixels) or, without pixels, a size growing ~linearly with the field radius
    if ev.asymmetry_radial is not None:
        comatic = _smooth_step(ev.asymmetry_radial, c.coma_flare, c.coma_flare_full)
    elif ev.field_growth_exponent is not None:
        comatic = 1.0 - _smooth_step(ev.field_growth_exponent, c.coma_max_exponent - c.coma_exponent_step,
                                     c.coma_max_exponent + c.coma_exponent_step)
    else:
        comatic = 1.0
    s["coma"] = grow_e * radial_e * comatic

    # field: curvature (isotropic bowl) vs tilt (plane or trough)
    var = ev.field_variation_pct or 0.0
    sig = ev.field_significance or 0.0
    fieldy = _smooth_step(var, c.field_variation_pct * c.field_variation_band[0],
                          c.field_variation_pct * c.field_variation_band[1]) * \
        _smooth_step(sig, c.field_significance - c.field_significance_step,
                     c.field_significance + c.field_significance_step)
    an = ev.anisotropy if ev.anisotropy is not None else 0.0
    curv = ev.fit_curvature_pct if ev.fit_curvature_pct is not None else 0.0
    aniso = _smooth_step(an, c.anisotropic - c.anisotropic_step, c.anisotropic + c.anisotropic_step)
    bowl = _smooth_step(abs(curv), c.field_curvature_min_pct, c.field_curvature_full_pct) * (1.0 - aniso)
    s["backfocus"] = fieldy * bowl * (1.0 - s["coma"])
    s["tilt"] = fieldy * aniso * (1.0 - s["coma"])

    # size and shape of the profile
    flat = _smooth_step(c.flat_profile_ratio - (pr if pr is not None else 9.0), -c.flat_profile_step,
                        c.flat_profile_step)
    excess = ev.size_excess
    # the smallest blur any plausible seeing profile allows: seeing with thin wings is not defocus
    x = defocus.get("x_low", defocus.get("x")) or 0.0
    miss = _smooth_step(x, c.focus_miss_blur_ratio - c.focus_miss_blur_step,
                        c.focus_miss_blur_ratio + c.focus_miss_blur_step)
    miss = max(miss, flat)  # a flat-topped profile is defocus by itself (design.md section 2)
    dcfz = defocus.get("cfz_low", defocus.get("cfz"))
    if dcfz is not None:
        lo_cfz, hi_cfz = c.focus_miss_cfz_band
        miss *= _smooth_step(dcfz, c.focus_miss_cfz * lo_cfz, c.focus_miss_cfz * hi_cfz)
    if (ev.donut_fraction or 0.0) >= c.donut_fraction:
        miss = max(miss, c.donut_miss_score)
    # elongation only counts with a structure (one orientation, or radial/tangential):
    # random orientations are noise or blends of big disks
    structured = max(_smooth_step(al, *c.structured_band), _smooth_step(abs(rho), *c.structured_band))
    round_ = 1.0 - elong * structured
    # a faint, broad halo makes moment shapes noisy but not aligned: only structured
    # elongation (a trail) rules dew out
    s["dew"] = _dew_score(ev, baseline_hfr_px, c) * round_ * (1.0 - flat)
    s["focus_miss"] = miss * round_ * (1.0 - fieldy * c.field_damping) * (1.0 - s["dew"])
    if excess is not None:
        big = _smooth_step(excess, c.poor_seeing_excess - c.poor_seeing_step, c.poor_seeing_excess + c.poor_seeing_step)
        s["poor_seeing"] = big * (1.0 - miss) * round_ * (1.0 - s["dew"]) * (1.0 - fieldy * c.field_damping) * \
            (1.0 - c.field_damping * s["coma"])  # coma's growing tails make stars larger, too
    return s


def _detail(label: str, ev: Evidence, defocus: Mapping[str, Any]) -> str:
    """The sentence behind a secondary finding (``Finding.detail``): its figures, ``n/a`` if missing."""
    def f(v: Any, spec: str = ".2f") -> str:
        return _f(v, spec, none="n/a")
    if label == "focus_miss":
        return (f"flat-topped profile (HFD/FWHM {f(ev.profile_ratio)}, r90/r50 {f(ev.wing_ratio)}): "
                f"blur {f(ev.blur_px, '.1f')} px on {f(ev.seeing_fwhm_px, '.1f')} px seeing, "
                f"defocus {f(defocus.get('um'), '.0f')} um = {f(defocus.get('cfz'))} CFZ")
    if label == "poor_seeing":
        return (f"FWHM {f(ev.fwhm_px)} px = {f(ev.size_excess)} x the in-focus size, "
                f"peaked profile (HFD/FWHM {f(ev.profile_ratio)}, r90/r50 {f(ev.wing_ratio)})")
    if label == "backfocus":
        return (f"corners {f(ev.fit_curvature_pct, '.0f')} % larger than the centre all around "
                f"(anisotropy {f(ev.anisotropy)}, significance {f(ev.field_significance, '.1f')})")
    if label == "tilt":
        return (f"size varies {f(ev.field_variation_pct, '.0f')} % across the field along "
                f"{f(ev.gradient_angle_deg, '.0f')} deg (anisotropy {f(ev.anisotropy)}), corner tilt "
                f"{f(ev.fit_tilt_pct, '.0f')} %")
    if label == "coma":
        return (f"eccentricity {f(ev.centre_ecc)} at the centre, {f(ev.edge_ecc)} at the edge, "
                f"radial score {f(ev.radial_score)}")
    if label == "collimation":
        return (f"one-sided flare towards {f(ev.asymmetry_angle_deg, '.0f')} deg on every star "
                f"(asymmetry {f(ev.asymmetry, '.3f')}, {f(ev.asymmetry_snr, '.1f')} sigma), "
                f"eccentricity {f(ev.centre_ecc)} at the centre")
    if label == "trailing":
        return (f"eccentricity {f(ev.eccentricity)}, one orientation ({f(ev.alignment_angle_deg, '.0f')} deg, "
                f"alignment {f(ev.alignment)}), radial score {f(ev.radial_score)}, symmetric")
    if label == "dew":
        return (f"halo: the 90 % radius is {f(ev.wing_excess)} wider (r90/r50) than any seeing profile "
                f"allows; HFD/FWHM {f(ev.profile_ratio)}")
    return ""


# --------------------------------------------------------------------------- a night

@dataclass(frozen=True)
class NightFrame(Record):
    """One frame's line in the night's story (units in the names)."""

    file: str | None
    elapsed_h: float | None
    temp_c: float | None
    focuser_pos: int | None
    label: str
    n_stars: int
    hfr_px: float | None
    seeing_fwhm_px: float | None
    defocus_um: float | None
    star_flux_adu: float | None
    cloud: bool = False
    reject: str | None = None


@dataclass(frozen=True)
class NightStory:
    """What several frames of one night say (``diagnose FOLDER --json``).

    ``drift_um_per_h`` and ``drift_um_per_c`` are the growth of the (unsigned) defocus
    between refocus events, per hour and per degree of focuser temperature change;
    ``seeing_scatter_pct`` the frame-to-frame scatter of the seeing FWHM (the seeing part
    the profile separates from defocus), robust, in % of its median. ``cloud_periods``
    are ``[first_file, last_file, n_frames, start_h, end_h]``; ``dew_onset_file`` the first frame of a
    lasting halo. ``label`` is the single most likely problem (a frame label, or
    ``clouds``).
    """

    n_frames: int
    n_diagnosed: int
    label: str
    confidence: float
    summary: str
    duration_h: float | None = None
    drift_um_per_h: float | None = None
    drift_um_per_c: float | None = None
    drift_cfz_per_h: float | None = None
    seeing_fwhm_arcsec: float | None = None
    seeing_scatter_pct: float | None = None
    hfr_trend_pct_per_h: float | None = None
    n_refocus: int = 0
    cloud_periods: tuple[tuple[Any, ...], ...] = ()
    dew_onset_file: str | None = None
    dew_onset_h: float | None = None
    label_counts: Mapping[str, int] = field(default_factory=dict)
    reject: tuple[tuple[str | None, str], ...] = ()
    advice: tuple[str, ...] = ()
    frames: tuple[NightFrame, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cloud_periods"] = [list(c) for c in self.cloud_periods]
        d["reject"] = [{"file": f, "reason": r} for f, r in self.reject]
        d["label_counts"] = dict(self.label_counts)
        d["advice"] = list(self.advice)
        d["frames"] = [f.to_dict() for f in self.frames]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NightStory":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["cloud_periods"] = tuple(tuple(c) for c in d.get("cloud_periods", ()))
        kw["reject"] = tuple((r["file"], r["reason"]) for r in d.get("reject", ()))
        kw["advice"] = tuple(d.get("advice", ()))
        kw["frames"] = tuple(NightFrame.from_dict(f) for f in d.get("frames", ()))
        kw["label_counts"] = dict(d.get("label_counts", {}))
        return cls(**kw)


def _pooled_slope(groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """Least-squares slope shared by several groups, each with its own intercept."""
    sxx = sxy = 0.0
    for xv, yv in groups:
        if len(xv) < 3:
            continue
        xc = xv - xv.mean()
        sxx += float(xc @ xc)
        sxy += float(xc @ (yv - yv.mean()))
    return sxy / sxx if sxx > 0 else None


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - 1))
            start = None
    return out


def night(stats_list: Sequence[Any], rig: Rig | None = None, *, diagnoses: Sequence[Diagnosis] | None = None,
          config: DiagnoseConfig = DiagnoseConfig()) -> NightStory:
    """The story of a night from its frames' measurements.

    Parameters
    ----------
    stats_list : sequence of focuswatch.stars.FrameStats
        The frames, any order (sorted here by DATE-OBS when every frame has one).
    rig : Rig, optional
        For defocus in um and CFZ units.
    diagnoses : sequence of Diagnosis, optional
        Per-frame diagnoses in the same order as ``stats_list`` (computed here when
        omitted; pass them when you diagnosed with the pixels at hand).
    config : DiagnoseConfig

    Notes
    -----
    Focus drift and seeing are told apart by behaviour: drift is a slow monotonic growth
    of the defocus between refocus events (a focuser position change starts a new
    segment), seeing is jitter without a trend. Clouds are frames whose star count or
    star flux falls below ``config.cloud_fraction`` of the night's typical level; their
    star sizes are not used for the drift.
    """
    rig = rig or Rig()
    items = list(stats_list)
    diags = list(diagnoses) if diagnoses is not None else [frame(s, rig, config=config) for s in items]
    if len(diags) != len(items):
        raise ValueError("diagnoses must match stats_list one to one")
    ts = [getattr(getattr(s, "meta", None), "timestamp", None) for s in items]
    if items and all(t is not None for t in ts):
        order = sorted(range(len(items)), key=lambda i: ts[i])
        items = [items[i] for i in order]
        diags = [diags[i] for i in order]
        ts = [ts[i] for i in order]
    n = len(items)
    if n == 0:
        return NightStory(0, 0, UNKNOWN, 0.0, "no frames")
    t0 = ts[0] if ts and ts[0] is not None else None
    el = np.array([((t - t0) / 3600.0) if (t is not None and t0 is not None) else np.nan for t in ts])
    temp = np.array([getattr(s.meta, "temperature_c", None) if getattr(s, "meta", None) else None for s in items],
                    dtype=float)
    pos = [getattr(s.meta, "focuser_pos", None) if getattr(s, "meta", None) else None for s in items]
    nst = np.array([float(s.n_stars or 0) for s in items])
    flux = np.array([float(s.star_flux_adu) if s.star_flux_adu else np.nan for s in items])
    hfr = np.array([float(d.evidence.hfr_px) if d.evidence.hfr_px else np.nan for d in diags])
    seeing = np.array([float(d.evidence.seeing_fwhm_px) if d.evidence.seeing_fwhm_px else np.nan for d in diags])

    # clouds: star count or flux well below the night's typical (upper) level
    ref_n = float(np.percentile(nst, 80)) if n else 0.0
    ref_f = float(np.nanpercentile(flux, 80)) if np.isfinite(flux).any() else np.nan
    cloud = (nst < config.cloud_fraction * ref_n) | (np.isfinite(flux) & (flux < config.cloud_fraction * ref_f))
    cloud_runs = _runs(cloud.tolist())
    files = [s.file for s in items]
    cloud_periods = tuple((files[a], files[b], b - a + 1,
                           _r(float(el[a]), 3) if np.isfinite(el[a]) else None,
                           _r(float(el[b]), 3) if np.isfinite(el[b]) else None) for a, b in cloud_runs)

    # dew: a halo that appears and stays
    dew_flag = [d.label == "dew" or any(f.label == "dew" for f in d.findings) for d in diags]
    dew_onset = None
    for i in range(n):
        rest = dew_flag[i:]
        if dew_flag[i] and sum(rest) >= 3 and sum(rest) >= 0.7 * len(rest):
            dew_onset = i
            break

    # refocus segments: the focuser moved
    seg = np.zeros(n, int)
    for i in range(1, n):
        seg[i] = seg[i - 1] + (1 if (pos[i] is not None and pos[i - 1] is not None and pos[i] != pos[i - 1]) else 0)
    n_refocus = int(seg[-1])

    # defocus per frame: from the profile (independent of the seeing's jitter); without
    # it, the HFR growth over the segment's best frames (optics' seeing x annulus model)
    usable = ~cloud & np.isfinite(hfr) & np.array([d.label not in (UNKNOWN, "trailing") for d in diags])
    if dew_onset is not None:
        usable[dew_onset:] = False
    defocus = np.full(n, np.nan)
    nratio, pix = rig.f_ratio, rig.effective_pixel_um
    for k in np.unique(seg):
        m = (seg == k) & usable
        if m.sum() < 1:
            continue
        h0 = float(np.min(hfr[m])) if m.sum() < 4 else float(np.percentile(hfr[m], 10))
        for i in np.nonzero(m)[0]:
            if diags[i].defocus_um is not None:
                defocus[i] = diags[i].defocus_um
                continue
            blur = optics.defocus_blur_px_from_hfr(hfr[i], h0, rig.obstruction or 0.0)
            defocus[i] = optics.defocus_um_from_blur(blur * pix, nratio) if (nratio and pix) else blur
    groups_t = [(el[(seg == k) & usable], defocus[(seg == k) & usable]) for k in np.unique(seg)]
    groups_t = [(a[np.isfinite(a) & np.isfinite(b)], b[np.isfinite(a) & np.isfinite(b)]) for a, b in groups_t]
    drift_h = _pooled_slope(groups_t)
    drift_c = None
    if np.isfinite(temp).sum() >= 3:
        groups_c = []
        for k in np.unique(seg):
            m = (seg == k) & usable & np.isfinite(temp)
            if m.sum() >= 3:
                dt = np.abs(temp[m] - temp[m][0])
                groups_c.append((dt, defocus[m]))
        drift_c = _pooled_slope(groups_c)
    have_um = bool(nratio and pix)
    cfz = optics.cfz_um(nratio, rig.wavelength_nm) if nratio else None
    hfr_trend = _pooled_slope([(el[(seg == k) & usable], hfr[(seg == k) & usable]) for k in np.unique(seg)])
    med_hfr = float(np.nanmedian(hfr[usable])) if usable.any() else None

    # seeing scatter: the seeing part of the profile, detrended by a running median
    sv = seeing[usable & np.isfinite(seeing)]
    scatter = None
    if sv.size >= 4:
        k = 2
        smooth = np.array([np.median(sv[max(0, i - k):i + k + 1]) for i in range(sv.size)])
        resid = sv - smooth
        mad = float(mad_std(resid))
        scatter = 100.0 * mad * 1.25 / float(np.median(sv))  # running-median residuals understate by ~1/1.25
    scale = next((s.plate_scale_arcsec_px for s in items if s.plate_scale_arcsec_px), None) or rig.plate_scale_arcsec_px
    seeing_arcsec = float(np.nanmedian(sv)) * scale if (sv.size and scale) else None

    # frames to reject
    reject: list[tuple[str | None, str]] = []
    lines: list[NightFrame] = []
    for i, (s, d) in enumerate(zip(items, diags)):
        why = None
        if d.label == UNKNOWN:
            why = d.reason or "no verdict"
        elif cloud[i]:
            why = "clouds: star count or star flux well below the night's level"
        elif d.label == "trailing":
            why = "trailed stars"
        elif dew_onset is not None and i >= dew_onset:
            why = "dew halo"
        elif med_hfr and np.isfinite(hfr[i]) and hfr[i] > 1.5 * med_hfr:
            why = f"stars {hfr[i] / med_hfr:.1f}x the night's median size"
        if why:
            reject.append((s.file, why))
        lines.append(NightFrame(
            file=s.file, elapsed_h=_r(float(el[i]), 3) if np.isfinite(el[i]) else None,
            temp_c=_r(float(temp[i]), 2) if np.isfinite(temp[i]) else None, focuser_pos=pos[i],
            label=d.label, n_stars=int(s.n_stars or 0), hfr_px=_r(float(hfr[i])) if np.isfinite(hfr[i]) else None,
            seeing_fwhm_px=_r(float(seeing[i])) if np.isfinite(seeing[i]) else None,
            defocus_um=_r(float(defocus[i]), 1) if (have_um and np.isfinite(defocus[i])) else d.defocus_um,
            star_flux_adu=_r(float(flux[i]), 1) if np.isfinite(flux[i]) else None,
            cloud=bool(cloud[i]), reject=why))

    counts: dict[str, int] = {}
    for d in diags:
        counts[d.label] = counts.get(d.label, 0) + 1
    n_diag = n - counts.get(UNKNOWN, 0)
    duration = float(np.nanmax(el)) if np.isfinite(el).any() else None

    # the single most likely problem
    label, conf, why = "in_focus", 0.6, "stars stay within the focus zone and the seeing is steady"
    optical = {k: v for k, v in counts.items() if k in OPTICAL_LABELS}
    drift_total_cfz = None
    if drift_h is not None and duration and cfz and have_um:
        drift_total_cfz = max(drift_h, 0.0) * duration / cfz
    frac = {k: v / max(n_diag, 1) for k, v in counts.items()}
    if optical and max(optical.values()) >= 0.5 * n_diag:
        label = max(optical, key=optical.get)
        conf, why = frac[label], f"{optical[label]} of {n_diag} frames show it; it does not change with focus"
    elif drift_total_cfz is not None and drift_total_cfz >= 0.7 and drift_h and drift_h > 0:
        label, conf = "focus_miss", float(np.clip(0.5 + drift_total_cfz / 4, 0.5, 0.95))
        why = f"focus drifted {drift_h:.0f} um/h ({drift_total_cfz:.1f} CFZ over the run)"
    elif frac.get("focus_miss", 0) >= 0.3:
        label, conf, why = "focus_miss", frac["focus_miss"], f"{counts['focus_miss']} frames out of focus"
    elif dew_onset is not None:
        label, conf, why = "dew", 0.8, f"a halo from {files[dew_onset]} on"
    elif cloud.mean() >= 0.25:
        label, conf, why = "clouds", float(cloud.mean()), f"{int(cloud.sum())} of {n} frames under clouds"
    elif frac.get("trailing", 0) >= 0.3:
        label, conf, why = "trailing", frac["trailing"], f"{counts['trailing']} frames trailed"
    elif frac.get("poor_seeing", 0) >= 0.4 or (scatter is not None and scatter >= 15.0):
        label = "poor_seeing"
        conf = max(frac.get("poor_seeing", 0), 0.6)
        why = f"the seeing jitters {fmt_pct(scatter)} frame to frame without a trend"
    summary = f"{label}: {why}"
    adv = ADVICE.get(label, ("wait for the clouds to pass; the frames under them are soft and faint",
                             "pause autofocus triggers during clouds") if label == "clouds" else ())
    return NightStory(
        n_frames=n, n_diagnosed=n_diag, label=label, confidence=round(float(conf), 2), summary=summary,
        duration_h=_r(duration, 3),
        drift_um_per_h=_r(drift_h, 1) if (drift_h is not None and have_um) else None,
        drift_um_per_c=_r(drift_c, 1) if (drift_c is not None and have_um) else None,
        drift_cfz_per_h=_r(drift_h / cfz, 3) if (drift_h is not None and have_um and cfz) else None,
        seeing_fwhm_arcsec=_r(seeing_arcsec, 2), seeing_scatter_pct=_r(scatter, 1),
        hfr_trend_pct_per_h=_r(100.0 * hfr_trend / med_hfr, 1) if (hfr_trend is not None and med_hfr) else None,
        n_refocus=n_refocus, cloud_periods=cloud_periods,
        dew_onset_file=files[dew_onset] if dew_onset is not None else None,
        dew_onset_h=_r(float(el[dew_onset]), 3) if (dew_onset is not None and np.isfinite(el[dew_onset])) else None,
        label_counts=counts, reject=tuple(reject), advice=tuple(adv), frames=tuple(lines),
    )


def fmt_pct(v: float | None) -> str:
    return _f(v, ".0f", " %", none="n/a")


# --------------------------------------------------------------------------- text renderers

ARCSEC = '"'


def format_diagnosis(d: Diagnosis, *, verbose: bool = True) -> str:
    """Human-readable text of a :class:`Diagnosis` (what ``focuswatch diagnose FILE`` prints)."""
    name = d.file or "frame"
    if d.label == UNKNOWN:
        return f"{name}: unknown — {d.reason}"
    head = (f"{name}: {d.label} (confidence {d.confidence:.2f}); defocus {_f(d.defocus_um, '.0f', ' um')}"
            f" = {_f(d.defocus_cfz, '.2f')} CFZ")
    if not verbose:
        extra = f"  [+ {', '.join(f.label for f in d.findings)}]" if d.findings else ""
        return head + extra
    ev = d.evidence
    lines = [head]
    lines.append(f"  stars {ev.n_stars} ({ev.n_bright} bright); HFR {_f(ev.hfr_px)} px, FWHM {_f(ev.fwhm_px)} px "
                 f"({_f(ev.fwhm_arcsec, '.2f', ARCSEC)}), expected in focus {_f(ev.expected_fwhm_px)} px")
    lines.append(f"  profile: HFD/FWHM {_f(ev.profile_ratio)}, r90/r50 {_f(ev.wing_ratio)} (halo excess "
                 f"{_f(ev.wing_excess)}); seeing {_f(ev.seeing_fwhm_px)} px + defocus blur {_f(ev.blur_px)} px"
                 f" [{d.defocus_method or 'no estimate'}]")
    lines.append(f"  shape: eccentricity {_f(ev.eccentricity)} (centre {_f(ev.centre_ecc)}, edge {_f(ev.edge_ecc)}),"
                 f" alignment {_f(ev.alignment)} at {_f(ev.alignment_angle_deg, '.0f')} deg, radial score "
                 f"{_f(ev.radial_score)}, flare {_f(ev.asymmetry, '.3f')} ({_f(ev.asymmetry_snr, '.1f')} sigma)")
    lines.append(f"  field: tilt {_f(ev.tilt_pct, '.0f', ' %')}, curvature {_f(ev.curvature_pct, '.0f', ' %')} "
                 f"(fit: variation {_f(ev.field_variation_pct, '.0f', ' %')}, significance "
                 f"{_f(ev.field_significance, '.1f')}, anisotropy {_f(ev.anisotropy)})")
    if ev.donut_fraction:
        lines.append(f"  donuts: {ev.donut_fraction:.0%} of the stars, outer diameter "
                     f"{_f(ev.donut_outer_diameter_px, '.1f')} px, obstruction {_f(ev.obstruction_estimate)}")
    if ev.zone_hfr_px:
        lines.append("  zone HFR (px):")
        for row in ev.zone_hfr_px:
            lines.append("    " + "  ".join(_f(v, '6.2f') for v in row))
    for f in d.findings:
        lines.append(f"  also: {f.label} ({f.confidence:.2f}): {f.detail}")
    if d.causes:
        lines.append("  probable causes:")
        lines.extend(f"    - {c}" for c in d.causes)
    if d.advice:
        lines.append("  what to do:")
        lines.extend(f"    - {a}" for a in d.advice)
    return "\n".join(lines)


def format_night(s: NightStory) -> str:
    """Human-readable text of a :class:`NightStory`."""
    lines = [f"night: {s.n_frames} frames ({s.n_diagnosed} diagnosed) over {_f(s.duration_h, '.2f', ' h')}",
             f"  most likely: {s.summary} (confidence {s.confidence:.2f})",
             f"  focus drift: {_f(s.drift_um_per_h, '.0f', ' um/h')} ({_f(s.drift_cfz_per_h, '.2f')} CFZ/h), "
             f"{_f(s.drift_um_per_c, '.0f', ' um/C')}; {s.n_refocus} refocus events",
             f"  seeing: {_f(s.seeing_fwhm_arcsec, '.2f', ARCSEC)} FWHM, scatter {_f(s.seeing_scatter_pct, '.0f', ' %')}"
             f" frame to frame",
             "  labels: " + ", ".join(f"{k} {v}" for k, v in sorted(s.label_counts.items(), key=lambda kv: -kv[1]))]
    for c in s.cloud_periods:
        lines.append(f"  clouds: {c[2]} frames from {c[0] or _f(c[3], '.2f', ' h')} to {c[1] or _f(c[4], '.2f', ' h')}")
    if s.dew_onset_file or s.dew_onset_h is not None:
        lines.append(f"  dew from {s.dew_onset_file or _f(s.dew_onset_h, '.2f', ' h')} on")
    if s.reject:
        lines.append(f"  reject {len(s.reject)} frames:")
        lines.extend(f"    - {f}: {r}" for f, r in s.reject)
    if s.advice:
        lines.append("  what to do:")
        lines.extend(f"    - {a}" for a in s.advice)
    return "\n".join(lines)


#: Precomputed :func:`_compute_profile_table` (n=512 grid): for each obstruction, arrays
#: [beta index][x index] of r50/FWHM_seeing, r90/r50, Moffat-fit FWHM/FWHM_seeing and true
#: half-maximum width/FWHM_seeing. Regenerate with :func:`_format_profile_tables`;
#: tests/test_diagnose.py checks samples against :func:`profile_model`.
