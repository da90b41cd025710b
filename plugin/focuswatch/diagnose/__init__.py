"""Diagnosis: tell a focus miss from seeing, tilt, backfocus, coma, collimation, trailing and dew.

Pure computation: a :class:`~focuswatch.stars.FrameStats` (with its per-star table) and an
:class:`~focuswatch.optics.Rig` in, a :class:`Diagnosis` out. No files, no clock; time and
temperature come from the frames' metadata passed in.

API for the watcher (stable)
----------------------------
``frame(stats, rig, *, image=None, baseline_hfr_px=None, config=DiagnoseConfig(), measured_seeing_arcsec=None) -> Diagnosis``
    One frame. ``stats`` is what :func:`focuswatch.stars.measure` returned; ``rig`` the
    rig with the header filled in (:func:`focuswatch.config.rig_with_header`); ``image``
    the :class:`~focuswatch.io.frames.Frame` (or its pixel array) the stars were measured on
    -- pass it: without it a miscollimated scope's one-sided flare cannot be told from a
    trail; ``baseline_hfr_px`` the true half-flux radius right after the last autofocus,
    if known (then the defocus is the HFR growth over it); ``measured_seeing_arcsec`` a seeing
    measured at the frame's time (a monitor), when the star's size also judges the focus. Never raises for a bad frame:
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
               wider than any in-focus seeing star of the same size on the rig (von Karman,
               Kolmogorov, Moffat beta 2.5-5; ``halo.py``) allows, by >= 0.25 px; with the
               night known (``SeeingWitness.halo_*``), a lasting rise of that figure, read on
               the light inside the stars' apertures (``halo_inner``), over the night's first
               frames (``halo_rise``); never
               stars smaller than the baseline or a core several times the in-focus size
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
through :mod:`focuswatch.calibration`; docs/diagnose.md): the 90 %/50 % flux radius ratio
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

How the parts fit
-----------------
One frame flows down this list; a night reuses the frame's verdict.

=================  ==========================================================================
module             job
=================  ==========================================================================
``labels``         :class:`Label` and the label sets the policy's vetoes derive from; the
                   causes and advice a verdict carries for each label
``config``         :class:`DiagnoseConfig`: every threshold, the ``[diagnose]`` TOML table,
                   range-checked when built
``profile``        the star-profile model (seeing x defocus) and its inversion over the
                   seeing families: :func:`blur_from_profile`, :class:`ProfileFit`
``shape``          figures over star arrays: orientation, third-moment flares
                   (:func:`star_asymmetry`), the field's size map, growth with the radius
``evidence``       a frame's stars -> :class:`Evidence` and the defocus estimate
``scores``         :class:`Evidence` -> a 0..1 score per label, and the sentence behind it
``verdict``        :func:`frame` -> :class:`Diagnosis` (the strongest score, findings, advice)
``nightstory``     :func:`night` -> :class:`NightStory` (drift, seeing, clouds, dew, rejects)
``text``           :func:`format_diagnosis`, :func:`format_night`: what the CLI prints
``figures``        rounding and formatting of single figures, shared by the above
=================  ==========================================================================

The verdict and the night live in ``verdict`` and ``nightstory``, not in modules called
``frame`` and ``night``, so that ``diagnose.frame`` and ``diagnose.night`` are the
functions. Everything public is re-exported here: import from ``focuswatch.diagnose``.
"""
from __future__ import annotations

from focuswatch import calibration
from focuswatch.diagnose.config import DiagnoseConfig, check_limits
from focuswatch.diagnose.evidence import Evidence, expected_fwhm_px, expected_hfr_px
from focuswatch.diagnose.figures import fmt_pct
from focuswatch.diagnose.labels import (
    ADVICE, CAUSES, FRAME_LABELS, LABELS, OPTICAL_LABELS, REFOCUS_LABELS, TRANSIENT_LABELS, UNKNOWN, Label,
)
from focuswatch.diagnose.nightstory import NightFrame, NightStory, night
from focuswatch.diagnose.profile import (
    FIT_FWHM_ADD2, FIT_FWHM_SCALE, KOLMOGOROV_HLR_PER_FWHM, PIX_R90_2, PROFILE_RATIO_BIAS, WING_RATIO_BIAS,
    ProfileFit, blur_from_profile, moffat_r50_px, profile_model, stars_fwhm_px, wing_ratio_px,
)
from focuswatch.diagnose.shape import field_growth_exponent, star_asymmetry
from focuswatch.diagnose.text import ARCSEC, format_diagnosis, format_night
from focuswatch.diagnose.verdict import Diagnosis, Finding, frame
from focuswatch.diagnose.witness import (SeeingWitness, WitnessTracker, monitor_witness, night_witnesses, rejudge,
                                        with_monitor)

__all__ = [
    # labels
    "Label", "LABELS", "FRAME_LABELS", "UNKNOWN", "REFOCUS_LABELS", "OPTICAL_LABELS", "TRANSIENT_LABELS",
    "CAUSES", "ADVICE",
    # thresholds
    "DiagnoseConfig", "check_limits",
    # the profile model
    "KOLMOGOROV_HLR_PER_FWHM", "FIT_FWHM_SCALE", "FIT_FWHM_ADD2", "WING_RATIO_BIAS", "PROFILE_RATIO_BIAS",
    "PIX_R90_2", "moffat_r50_px", "stars_fwhm_px", "profile_model", "wing_ratio_px", "ProfileFit",
    "blur_from_profile",
    # shapes, evidence
    "star_asymmetry", "field_growth_exponent", "Evidence", "expected_fwhm_px", "expected_hfr_px",
    # one frame, a night
    "Finding", "Diagnosis", "frame", "NightFrame", "NightStory", "night",
    # the seeing witness
    "SeeingWitness", "WitnessTracker", "monitor_witness", "night_witnesses", "rejudge", "with_monitor",
    # text
    "fmt_pct", "ARCSEC", "format_diagnosis", "format_night",
    # generated tables
    "calibration",
]
