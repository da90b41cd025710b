"""Diagnosis: tell a focus miss from seeing, tilt, backfocus, coma, collimation, trailing and dew.

Pure computation: a :class:`~focuswatch.stars.FrameStats` (with its per-star table) and an
:class:`~focuswatch.optics.Rig` in, a :class:`Diagnosis` out. No files, no clock; time and
temperature come from the frames' metadata passed in.

API for the watcher (stable)
----------------------------
``frame(stats, rig, *, image=None, baseline_hfr_px=None, config=DiagnoseConfig()) -> Diagnosis``
    One frame. ``stats`` is what :func:`focuswatch.stars.measure` returned; ``rig`` the
    rig with the header filled in (:func:`focuswatch.config.rig_with_header`); ``image``
    the :class:`~focuswatch.frames.Frame` (or its pixel array) the stars were measured on
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
               pointing at it (radial score near +1)
backfocus      sharp centre, all four corners worse by a similar amount (curvature %), the size
               grows ~ r^2 in every direction
tilt           size gradient across the frame, the sharpest region off-centre or a trough
               along one axis (anisotropic growth; ASTAP tilt %)
dew            stars with halos: the 90 %/50 % flux radius ratio (pixel width taken out)
               wider than any seeing profile (Moffat beta >= 2.5) of the same HFD/FWHM
               allows, by >= 0.25 px; never stars smaller than the baseline or a core
               several times the in-focus size
focus_miss     round stars, uniform field, a flat-topped profile or donuts: the inferred
               defocus blur is about the seeing FWHM or more, and >= 0.7 CFZ
poor_seeing    round stars, uniform field, a peaked seeing profile (no defocus blur), FWHM
               >= 1.25x the in-focus size of the rig on a fair (2.5") night
in_focus       none of the above
=============  ==================================================================================

Defocus without a baseline comes from the profile itself: a seeing Moffat profile
convolved with the geometric defocus disk (annulus on an obstructed scope) has known
shape figures for each ratio blur/seeing and seeing beta (:func:`profile_model`, tabulated
in ``_PROFILE_TABLES``): the 90 %/50 % flux radius ratio and HFD over the FWHM *as
stars.measure reports it* (:func:`stars_fwhm_px`: its Moffat fit for stars under ~4 px,
the width read directly off the radial profile at half maximum above ~6 px, blended in
between; so simulated seeing reads HFD/FWHM ~1.2 and a large flat disk ~0.72). The two
measured figures give beta and blur/seeing, the half-flux radius the scale. On frames of
big disks the wide apertures catch neighbours' light: the profile figures then come
from the stars with the lowest HFD/FWHM and the 90 % radius is not used. Donuts give
the blur from their half-flux radius and ring ratio (optics' seeing x annulus model,
:func:`focuswatch.optics.defocus_blur_px_from_hfr`, also used with a baseline).
``defocus_um = N * blur_px * pixel_um``. On the simulator (200 mm f/5, 3.76 um, 2.5"
seeing): 1 to 10 CFZ come out within 5 % (tests/test_diagnose.py; docs/diagnose.md).

Coordinates follow sep (x = column, y = row, (0, 0) the centre of the first pixel);
zone row 0 is the top of the frame as displayed (low y), as in :class:`stars.Zone`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from astropy.stats import mad_std

from focuswatch import optics
from focuswatch.optics import Rig
from focuswatch.records import Record
from focuswatch.stars import moffat_fwhm

LABELS: tuple[str, ...] = ("in_focus", "focus_miss", "poor_seeing", "backfocus", "tilt", "coma",
                           "collimation", "trailing", "dew")
UNKNOWN = "unknown"
#: Labels an autofocus run can fix; everything else is a warning with advice.
REFOCUS_LABELS = frozenset({"focus_miss"})
#: Problems of the optical train itself (stable over the night, not fixed by refocusing).
OPTICAL_LABELS = frozenset({"backfocus", "tilt", "coma", "collimation"})


# --------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class DiagnoseConfig(Record):
    """Thresholds of the diagnosis (all dimensionless unless the name carries a unit).

    The defaults were tuned on the simulator's labelled set (tests/test_diagnose.py).
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
    #: Inferred blur diameter over the seeing FWHM above which focus is called missed.
    focus_miss_blur_ratio: float = 0.9
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
    gradient_angle_deg: float | None = None
    best_spot_xy_px: tuple[float, float] | None = None
    ring_ratio: float | None = None
    donut_fraction: float | None = None
    donut_outer_diameter_px: float | None = None
    obstruction_estimate: float | None = None
    seeing_fwhm_px: float | None = None
    blur_px: float | None = None
    blur_to_seeing: float | None = None
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

def _moffat_alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


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
#: ``stars.measure`` blends its Moffat-fit FWHM into the width read directly off the radial
#: profile at half maximum between these directly read widths (px, on the pixel grid).
_BLEND_PX = (4.0, 6.0)
#: The Moffat-fit FWHM of ``stars.measure`` on simulated seeing stars (beta 3.5, FWHM
#: 1.3-6.5 px, SNR >= 20) reads ``sqrt((FIT_FWHM_SCALE * fit)^2 + FIT_FWHM_ADD2)`` of the
#: continuous profile's fit: ~2 % wide plus ~0.25 px^2 that the Gaussian pixel correction
#: leaves in small Moffat stars. Within 1.5 % of the measured width over that range.
FIT_FWHM_SCALE = 1.02
FIT_FWHM_ADD2 = 0.25


def stars_fwhm_px(fit_fwhm_px: Any, half_max_width_px: Any) -> Any:
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
    fit = np.sqrt(np.square(FIT_FWHM_SCALE * np.asarray(fit_fwhm_px, float)) + FIT_FWHM_ADD2)
    fit_p = np.sqrt(np.square(fit) + _PIX_FWHM2)
    dir_p = np.sqrt(np.square(half_max_width_px) + _PIX_FWHM2)
    w = np.clip((dir_p - _BLEND_PX[0]) / (_BLEND_PX[1] - _BLEND_PX[0]), 0.0, 1.0)
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


#: Grid of the inversion: seeing Moffat beta and blur diameter / seeing FWHM.
_BETAS = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 7.0)
_XS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0)
#: Seeing FWHM (px) the table is computed at; every entry is scale-free (the continuous
#: profile has no pixels), the pixel-dependent blend is applied at inversion time.
_TABLE_FWHM_PX = 4.0


def _compute_profile_table(obstruction: float, n: int = 512) -> dict[str, np.ndarray]:
    """Model shape figures on the (beta, x) grid, in units of the seeing FWHM (slow: ~10 s).

    ``r50``: half-flux radius; ``w``: r90/r50; ``fit``: the Moffat-fit FWHM; ``hm``: the
    true half-maximum width (all but ``w`` over the seeing FWHM).
    """
    shape = (len(_BETAS), len(_XS))
    out = {k: np.zeros(shape) for k in ("r50", "w", "fit", "hm")}
    f = _TABLE_FWHM_PX
    for i, be in enumerate(_BETAS):
        for j, x in enumerate(_XS):
            m = profile_model(f, be, f * x, obstruction, n=n)
            out["r50"][i, j] = m["r50_px"] / f
            out["w"][i, j] = m["r90_px"] / m["r50_px"]
            out["fit"][i, j] = m["fit_fwhm_px"] / f
            out["hm"][i, j] = m["fwhm_px"] / f
    return out


def _format_profile_tables(obstructions: Sequence[float] = (0.0, 0.25, 0.35, 0.45), n: int = 512) -> str:
    """Python source of ``_PROFILE_TABLES`` (paste it over the one at the end of this file).

    ``python -c "from focuswatch import diagnose; print(diagnose._format_profile_tables())"``
    """
    lines = ["_PROFILE_TABLES: dict[float, dict[str, tuple[tuple[float, ...], ...]]] = {"]
    for eps in obstructions:
        tab = _compute_profile_table(eps, n)
        lines.append(f"    {eps}: {{")
        for key, arr in tab.items():
            lines.append(f'        "{key}": (')
            for row in arr:
                lines.append("            (" + ", ".join(f"{v:.4f}" for v in row) + "),")
            lines.append("        ),")
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines)


@lru_cache(maxsize=16)
def _profile_table(obstruction: float) -> dict[str, np.ndarray]:
    """The precomputed table for the nearest tabulated obstruction."""
    eps = min(_PROFILE_TABLES, key=lambda e: abs(e - obstruction))
    return {k: np.asarray(v, float) for k, v in _PROFILE_TABLES[eps].items()}


#: Measured minus model shape figures, median over 19 simulated frames (pure seeing 1.0-6.5
#: px FWHM at 0.78 and 1.55"/px, and seeing x defocus blur 1.8-21 px; SNR >= 20 stars as
#: diagnose uses them) once the pixel terms (:data:`PIX_R90_2`, :data:`FIT_FWHM_SCALE`,
#: :data:`FIT_FWHM_ADD2`) are in: +0.009 for HFD/FWHM and +0.009 for r90/r50, scatter about
#: 0.02 (seeing stars over 4 px read HFD/FWHM 0.02-0.04 low, stars of ~1 px FWHM 0.08 low).
WING_RATIO_BIAS = 0.01
PROFILE_RATIO_BIAS = 0.01
#: The 90 % flux radius of ``stars.measure`` (``outer_r``) carries the pixel's width, unlike
#: its half-flux radius: ``r90_measured^2 = r90^2 + PIX_R90_2`` (px^2; 0.69-0.78 measured on
#: seeing stars of 1.0-2.6 px FWHM, where it matters; about the Gaussian value 2 ln10/12 =
#: 0.38 doubled by sep's sub-pixel apertures, as for the HFR). Without it a star of HFR
#: 0.8 px reads r90/r50 2.5 instead of 2.2 and looks like a halo (the demo's dew false
#: positives on its former 1.55"/px rig).
PIX_R90_2 = 0.75
#: Moffat beta of atmospheric seeing: searched in this range, with a prior (centre, width).
#: Turbulence theory gives ~4.8, stars measure 2.5-4.5; a broader wing than beta 2.5 allows
#: is a halo (dew, scattered light), not seeing.
SEEING_BETA_RANGE = (2.5, 7.0)
SEEING_BETA_PRIOR = (3.5, 1.0)


def wing_ratio_px(r90_px: np.ndarray, hfr_px: np.ndarray) -> np.ndarray:
    """r90/r50 of measured stars with the pixel's width taken out of the 90 % radius.

    ``hfr_px`` (``stars`` column ``hfr``) is already corrected for the pixel; the 90 %
    radius (``outer_r``) is not, see :data:`PIX_R90_2`.
    """
    r90 = np.sqrt(np.maximum(np.square(r90_px) - PIX_R90_2, np.square(hfr_px)))
    return r90 / hfr_px


def blur_from_profile(hfr_px: float, wing_ratio: float | None, profile_ratio: float | None, *,
                      obstruction: float = 0.0) -> tuple[float, float, float, float]:
    """Invert the profile model: (seeing FWHM px, defocus blur diameter px, seeing beta,
    wing excess).

    ``hfr_px`` is the true half-flux radius, ``wing_ratio`` the measured 90 %/50 % flux
    radius ratio (pixel-corrected, :func:`wing_ratio_px`; 1.34 for a flat disk, 2.1-2.5
    for seeing) and ``profile_ratio`` HFD over the FWHM ``stars.measure`` reports
    (~1.2 for seeing, ~0.72 for a large flat disk). For each candidate seeing beta and
    ratio blur/seeing the half-flux radius fixes the seeing FWHM in pixels, hence the
    FWHM the measurement reports (:func:`stars_fwhm_px`: Moffat fit for small stars,
    direct half-maximum width for large ones). The pair of shape figures then fixes beta
    and blur/seeing. The blur is well constrained even where the ratio is not: for a
    large blur the half-flux radius is ~0.354 of it whatever the seeing. ``wing excess``
    is how much wider the 90 % radius is than the best model allows (r90/r50 units; a
    halo: dew, scattered light).

    >>> see, blur, beta, _ = blur_from_profile(2.0, 2.17, 1.18)  # seeing, beta 3.5
    >>> round(see, 1), blur < 0.3 * see
    (3.3, True)
    >>> see, blur, beta, _ = blur_from_profile(4.1, 1.66, 0.79)  # 3 CFZ on the test rig
    >>> round(blur, 1)
    10.7
    """
    tab = _profile_table(round(float(obstruction), 2))
    xs = np.asarray(_XS)
    fine = np.linspace(0.0, xs[-1], 801)
    wm = None if wing_ratio is None or not math.isfinite(wing_ratio) else wing_ratio - WING_RATIO_BIAS
    pm = None if profile_ratio is None or not math.isfinite(profile_ratio) else profile_ratio - PROFILE_RATIO_BIAS
    best = (math.inf, 0.0, 0.0, 3.5, 0.0)
    for i, be in enumerate(_BETAS):
        if not SEEING_BETA_RANGE[0] <= be <= SEEING_BETA_RANGE[1]:
            continue
        r50 = np.interp(fine, xs, tab["r50"][i])
        w = np.interp(fine, xs, tab["w"][i])
        chi = np.zeros_like(fine)
        if wm is not None:
            chi += ((w - wm) / 0.06) ** 2
        if pm is not None:
            seeing = hfr_px / r50  # px, for each candidate x
            meas = stars_fwhm_px(np.interp(fine, xs, tab["fit"][i]) * seeing,
                                 np.interp(fine, xs, tab["hm"][i]) * seeing)
            p = 2.0 * hfr_px / meas
            chi += ((p - pm) / 0.035) ** 2
        chi += ((be - SEEING_BETA_PRIOR[0]) / SEEING_BETA_PRIOR[1]) ** 2
        k = int(np.argmin(chi))
        if chi[k] < best[0]:
            excess = 0.0 if wm is None else float(wm - w[k])
            best = (float(chi[k]), float(fine[k]), float(r50[k]), be, excess)
    _, x, r50_per_f, be, excess = best
    seeing = hfr_px / r50_per_f
    return seeing, x * seeing, be, excess


# --------------------------------------------------------------------------- helpers

def _finite(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, float)
    return a[np.isfinite(a)]


from focuswatch.numerics import finite_median as _median  # noqa: E402 - the one median helper


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
                   scale_px: float = 1.0) -> np.ndarray:
    """Comatic (third-moment) vector of each star, shape (n, 2), dimensionless.

    ``sum(I * r^2 * (dx, dy)) / (sum(I) * sigma^3)`` about the star's centroid, with
    ``sigma^2 = sum(I r^2) / sum(I)``: zero for any symmetric star (round, elongated by a
    trail, defocused), pointing along a one-sided flare (collimation, coma). Second moments
    cannot tell a flare from a trail; this can. ``x``, ``y``, ``hfr_px`` are in sensor
    pixels (sep convention); ``pixels`` may be a 2x2-superpixel image (``scale_px`` = 2).
    NaN for stars too close to the edge.
    """
    img = np.asarray(pixels, dtype=np.float64)
    h, w = img.shape
    out = np.full((len(x), 2), np.nan)
    for i in range(len(x)):
        px = (x[i] + 0.5) / scale_px - 0.5
        py = (y[i] + 0.5) / scale_px - 0.5
        hr = max(hfr_px[i] / scale_px, 0.7)
        rad = int(min(max(math.ceil(3.0 * hr + 3), 5), 60))
        ix, iy = int(round(px)), int(round(py))
        if ix - rad - 2 < 0 or iy - rad - 2 < 0 or ix + rad + 3 > w or iy + rad + 3 > h:
            continue
        st = img[iy - rad - 2:iy + rad + 3, ix - rad - 2:ix + rad + 3]
        border = np.concatenate([st[:2].ravel(), st[-2:].ravel(), st[2:-2, :2].ravel(), st[2:-2, -2:].ravel()])
        st = st - np.median(border)
        yy, xx = np.mgrid[-rad - 2:rad + 3, -rad - 2:rad + 3].astype(float)
        cx, cy = px - ix, py - iy
        ap = 2.5 * hr + 1.5
        for _ in range(3):
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
    image : focuswatch.frames.Frame or numpy.ndarray, optional
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


#: Median FWHM (px) from which star apertures are wide enough to hold neighbours' light
#: (when it is also >= 2.5x the expected in-focus FWHM: big defocused disks).
_CROWDED_FWHM_PX = 8.0


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
    # big disks (several times the in-focus size): the wide apertures catch neighbours
    crowded = bool(fwhm_med and fwhm_med >= _CROWDED_FWHM_PX and (exp_fwhm is None or fwhm_med >= 2.5 * exp_fwhm))
    own = _own_light(bt) if crowded else bt  # the profile figures: stars free of neighbours' light
    hfr_med = float(np.median(own["hfr"]))
    own_fit = own[np.isfinite(own["fwhm"]) & (own["fwhm"] > 0)]
    pr = float(np.median(2.0 * own_fit["hfr"] / own_fit["fwhm"])) if len(own_fit) >= 5 else stats.profile_ratio
    outer = own["outer_r"]
    good_outer = np.isfinite(outer) & (outer > 0)
    wing = None
    if good_outer.sum() >= 5 and not crowded:  # r90 reaches neighbours even where r50 does not
        wing = float(np.median(wing_ratio_px(outer[good_outer], own["hfr"][good_outer])))
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
        vec = star_asymmetry(pixels, top["x"], top["y"], top["hfr"], scale_px)
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

    # donuts
    ring = np.nan_to_num(bt["ring"], nan=0.0)
    donut = ring > 0.15
    donut_frac = float(donut.mean())
    ring_ratio = float(np.median(ring[donut])) if donut.sum() >= 3 else stats.ring_ratio
    donut_d = eps_est = None
    if donut_frac >= 0.3 and donut.sum() >= 3:
        eps_est = float(np.median(ring[donut]))
        # the annulus whose convolution with the seeing gives the donuts' half-flux radius:
        # optics' exact forward model (seeing Moffat x annulus), inverted. (The 90 % radius
        # would be more direct but picks up neighbours inside the big stamps of defocused stars.)
        seeing_px = ((rig.seeing_arcsec or config.reference_seeing_arcsec) / scale) if scale else 0.0
        h_don = float(np.median(hfr[donut]))
        eps_tab = round(min(max(eps_est, 0.0), 0.9) * 20.0) / 20.0  # 0.05 steps: few growth tables
        if seeing_px > 0:
            donut_d = optics.defocus_blur_px_from_hfr(h_don, moffat_r50_px(seeing_px, optics.SEEING_BETA), eps_tab)
        else:  # no plate scale: the disk alone
            donut_d = 2.0 * h_don / optics.true_hfr_factor(eps_tab)

    defocus = _defocus(hfr_med, wing, pr, rig, baseline_hfr_px, donut_d, eps_est, config)
    ev = Evidence(
        n_stars=int(len(t)), n_bright=int(len(bt)),
        hfr_px=_r(hfr_med), fwhm_px=_r(fwhm_med),
        fwhm_arcsec=_r(fwhm_med * scale) if (fwhm_med and scale) else None,
        expected_fwhm_px=_r(exp_fwhm),
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
        anisotropy=_r(fit.anisotropy) if fit else None,
        gradient_angle_deg=_r(fit.gradient_angle_deg, 1) if fit and fit.gradient_angle_deg is not None else None,
        best_spot_xy_px=(round(fit.best_xy[0], 1), round(fit.best_xy[1], 1)) if fit else None,
        ring_ratio=_r(ring_ratio), donut_fraction=_r(donut_frac),
        donut_outer_diameter_px=_r(donut_d), obstruction_estimate=_r(eps_est),
        seeing_fwhm_px=_r(defocus.get("seeing_px")), blur_px=_r(defocus.get("blur_px")),
        blur_to_seeing=_r(defocus.get("x")),
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
        seeing, blur, beta, excess = blur_from_profile(hfr_px, wing_ratio, profile_ratio,
                                                       obstruction=eps if eps is not None else obstruction)
        out.update(method="profile shape (Moffat seeing x defocus disk)", blur_px=blur, seeing_px=seeing,
                   seeing_beta=beta, wing_excess=excess, x=blur / seeing if seeing > 0 else None)
    if donut_d_px is not None:
        out.update(method="donut outer diameter", blur_px=donut_d_px)
    elif baseline_hfr_px:
        out.update(method="HFR growth over the post-autofocus baseline",
                   blur_px=optics.defocus_blur_px_from_hfr(hfr_px, baseline_hfr_px, obstruction))
    if "blur_px" not in out:
        return out
    n = rig.f_ratio
    pix = rig.effective_pixel_um
    if n and pix:
        um = optics.defocus_um_from_blur(out["blur_px"] * pix, n)
        out["um"] = um
        out["cfz"] = um / optics.cfz_um(n, rig.wavelength_nm)
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
    score = _smooth_step(wx, c.dew_wing_excess - 0.04, c.dew_wing_excess + 0.04)
    halo_px = wx * (ev.hfr_px or 0.0)  # r90 excess (px): wing excess is in units of r50 = HFR
    score *= _smooth_step(halo_px, 0.6 * c.dew_min_halo_px, c.dew_min_halo_px)
    if baseline_hfr_px and ev.hfr_px:
        score *= _smooth_step(ev.hfr_px / baseline_hfr_px, 0.97, 1.03)
    if ev.size_excess is not None:  # the core stays seeing-sized under dew: a core several
        score *= 1.0 - _smooth_step(ev.size_excess, 2.5, 3.5)  # times that is focus or seeing
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
    elong = _smooth_step(e, el - 0.04, el + 0.04)
    aligned = _smooth_step(al, c.aligned - 0.15, c.aligned + 0.1)
    flare = 0.0  # one-sided, one direction: collimation (needs the pixels)
    if ev.asymmetry_snr is not None and ev.asymmetry is not None:
        flare = _smooth_step(ev.asymmetry_snr, c.flare_snr - 0.35, c.flare_snr + 0.35) * \
            _smooth_step(ev.asymmetry, 0.01, 0.025)

    # elongation with one orientation everywhere: a trail, or a flare if it is one-sided
    uniform_e = 1.0 - _smooth_step(abs(ee - ce), 0.12, 0.25)
    common = elong * aligned * uniform_e * (1.0 - _smooth_step(abs(rho), c.radial, c.radial + 0.3))
    s["trailing"] = common * (1.0 - flare)
    s["collimation"] = max(common, elong * _smooth_step(al, 0.3, 0.5)) * flare
    # coma: round centre, radial elongation growing outward
    grow_e = _smooth_step(ee - ce, 0.08, 0.18)
    radial_e = _smooth_step(rho, c.radial - 0.15, c.radial + 0.1)
    if ev.asymmetry_radial is not None:
        radial_e = max(radial_e, _smooth_step(ev.asymmetry_radial, 0.02, 0.04) * _smooth_step(rho, 0.2, 0.35))
    s["coma"] = grow_e * radial_e

    # field: curvature (isotropic bowl) vs tilt (plane or trough)
    var = ev.field_variation_pct or 0.0
    sig = ev.field_significance or 0.0
    fieldy = _smooth_step(var, c.field_variation_pct * 0.75, c.field_variation_pct * 1.25) * \
        _smooth_step(sig, c.field_significance - 0.5, c.field_significance + 0.5)
    an = ev.anisotropy if ev.anisotropy is not None else 0.0
    curv = ev.fit_curvature_pct if ev.fit_curvature_pct is not None else 0.0
    bowl = _smooth_step(abs(curv), 10.0, 20.0) * (1.0 - _smooth_step(an, c.anisotropic - 0.1, c.anisotropic + 0.1))
    s["backfocus"] = fieldy * bowl * (1.0 - s["coma"])
    s["tilt"] = fieldy * _smooth_step(an, c.anisotropic - 0.1, c.anisotropic + 0.1) * (1.0 - s["coma"])

    # size and shape of the profile
    flat = _smooth_step(c.flat_profile_ratio - (pr if pr is not None else 9.0), -0.02, 0.02)
    excess = ev.size_excess
    x = defocus.get("x") or 0.0
    miss = _smooth_step(x, c.focus_miss_blur_ratio - 0.25, c.focus_miss_blur_ratio + 0.25)
    miss = max(miss, flat)  # a flat-topped profile is defocus by itself (design.md section 2)
    dcfz = defocus.get("cfz")
    if dcfz is not None:
        miss *= _smooth_step(dcfz, c.focus_miss_cfz * 0.7, c.focus_miss_cfz * 1.1)
    if (ev.donut_fraction or 0.0) >= 0.3:
        miss = max(miss, 0.9)
    # elongation only counts with a structure (one orientation, or radial/tangential):
    # random orientations are noise or blends of big disks
    structured = max(_smooth_step(al, 0.3, 0.5), _smooth_step(abs(rho), 0.3, 0.5))
    round_ = 1.0 - elong * structured
    # a faint, broad halo makes moment shapes noisy but not aligned: only structured
    # elongation (a trail) rules dew out
    s["dew"] = _dew_score(ev, baseline_hfr_px, c) * round_ * (1.0 - flat)
    s["focus_miss"] = miss * round_ * (1.0 - fieldy * 0.6) * (1.0 - s["dew"])
    if excess is not None:
        big = _smooth_step(excess, c.poor_seeing_excess - 0.1, c.poor_seeing_excess + 0.1)
        s["poor_seeing"] = big * (1.0 - miss) * round_ * (1.0 - s["dew"]) * (1.0 - fieldy * 0.6)
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
_PROFILE_TABLES: dict[float, dict[str, tuple[tuple[float, ...], ...]]] = {
    0.0: {
        "r50": (
            (0.7697, 0.7818, 0.7966, 0.8170, 0.8563, 0.8964, 0.9424, 0.9933, 1.0484, 1.1770, 1.3109, 1.4584, 1.6141, 1.9308, 2.2559, 2.9288, 3.6163, 4.6612, 5.7136, 7.1103),
            (0.6755, 0.6859, 0.7028, 0.7225, 0.7574, 0.7996, 0.8508, 0.9042, 0.9645, 1.0944, 1.2354, 1.3807, 1.5352, 1.8566, 2.1942, 2.8749, 3.5667, 4.6116, 5.6734, 7.0761),
            (0.6288, 0.6399, 0.6544, 0.6824, 0.7127, 0.7543, 0.8025, 0.8590, 0.9222, 1.0551, 1.1962, 1.3428, 1.5059, 1.8322, 2.1652, 2.8560, 3.5563, 4.6031, 5.6600, 7.0699),
            (0.6060, 0.6098, 0.6250, 0.6544, 0.6893, 0.7258, 0.7818, 0.8397, 0.8990, 1.0304, 1.1770, 1.3323, 1.4870, 1.8158, 2.1549, 2.8428, 3.5396, 4.6021, 5.6600, 7.0699),
            (0.5823, 0.5982, 0.6098, 0.6300, 0.6650, 0.7127, 0.7605, 0.8170, 0.8806, 1.0143, 1.1630, 1.3127, 1.4775, 1.8026, 2.1445, 2.8409, 3.5381, 4.6021, 5.6600, 7.0699),
            (0.5617, 0.5700, 0.5857, 0.6175, 0.6544, 0.6927, 0.7512, 0.7996, 0.8590, 0.9956, 1.1447, 1.3020, 1.4632, 1.7976, 2.1393, 2.8333, 3.5365, 4.5949, 5.6600, 7.0699),
            (0.5491, 0.5533, 0.5617, 0.5964, 0.6250, 0.6650, 0.7225, 0.7818, 0.8480, 0.9862, 1.1385, 1.2893, 1.4487, 1.7843, 2.1289, 2.8333, 3.5355, 4.5949, 5.6600, 7.0699),
        ),
        "w": (
            (2.9828, 2.9405, 2.8959, 2.8399, 2.7379, 2.6441, 2.5476, 2.4570, 2.3668, 2.1950, 2.0580, 1.9425, 1.8456, 1.7113, 1.6235, 1.5175, 1.4615, 1.4138, 1.3902, 1.3741),
            (2.4947, 2.4591, 2.4251, 2.3892, 2.3222, 2.2443, 2.1624, 2.0956, 2.0266, 1.9060, 1.8097, 1.7374, 1.6763, 1.5875, 1.5243, 1.4568, 1.4182, 1.3902, 1.3716, 1.3615),
            (2.2911, 2.2590, 2.2361, 2.1790, 2.1454, 2.0892, 2.0276, 1.9635, 1.9014, 1.8030, 1.7297, 1.6720, 1.6174, 1.5424, 1.4961, 1.4364, 1.4025, 1.3798, 1.3654, 1.3562),
            (2.1664, 2.1673, 2.1400, 2.0983, 2.0446, 2.0161, 1.9460, 1.8821, 1.8401, 1.7621, 1.6880, 1.6270, 1.5879, 1.5246, 1.4796, 1.4279, 1.3990, 1.3740, 1.3620, 1.3546),
            (2.1250, 2.0748, 2.0720, 2.0552, 2.0112, 1.9515, 1.9113, 1.8678, 1.8115, 1.7367, 1.6672, 1.6195, 1.5717, 1.5146, 1.4717, 1.4188, 1.3952, 1.3699, 1.3593, 1.3523),
            (2.0304, 2.0176, 2.0095, 1.9541, 1.9196, 1.8952, 1.8380, 1.8118, 1.7818, 1.7080, 1.6467, 1.5952, 1.5564, 1.4998, 1.4593, 1.4131, 1.3880, 1.3694, 1.3571, 1.3510),
            (1.9257, 1.9348, 1.9520, 1.9091, 1.8928, 1.8719, 1.8169, 1.7791, 1.7386, 1.6704, 1.6125, 1.5781, 1.5455, 1.4910, 1.4529, 1.4055, 1.3824, 1.3629, 1.3540, 1.3484),
        ),
        "fit": (
            (0.9995, 1.0215, 1.0721, 1.1563, 1.2667, 1.3999, 1.5533, 1.7194, 1.9002, 2.2322, 2.5534, 2.8855, 3.2248, 3.9199, 4.6271, 6.0609, 7.5072, 9.6910, 11.8822, 14.8104),
            (0.9991, 1.0198, 1.0673, 1.1475, 1.2539, 1.3838, 1.5346, 1.7009, 1.8527, 2.1532, 2.4733, 2.8053, 3.1451, 3.8420, 4.5515, 5.9903, 7.4409, 9.6309, 11.8271, 14.7608),
            (0.9990, 1.0185, 1.0640, 1.1411, 1.2445, 1.3721, 1.5216, 1.6679, 1.8078, 2.1081, 2.4291, 2.7625, 3.1039, 3.8042, 4.5169, 5.9610, 7.4159, 9.6104, 11.8095, 14.7463),
            (0.9988, 1.0176, 1.0615, 1.1362, 1.2373, 1.3634, 1.5105, 1.6390, 1.7786, 2.0796, 2.4018, 2.7368, 3.0799, 3.7833, 4.4987, 5.9468, 7.4042, 9.6013, 11.8023, 14.7406),
            (0.9987, 1.0169, 1.0595, 1.1326, 1.2320, 1.3565, 1.4903, 1.6185, 1.7583, 2.0601, 2.3837, 2.7203, 3.0646, 3.7706, 4.4879, 5.9388, 7.3979, 9.5966, 11.7985, 14.7377),
            (0.9986, 1.0160, 1.0568, 1.1272, 1.2238, 1.3465, 1.4636, 1.5918, 1.7320, 2.0356, 2.3615, 2.7003, 3.0469, 3.7563, 4.4763, 5.9304, 7.3918, 9.5919, 11.7948, 14.7348),
            (0.9984, 1.0148, 1.0534, 1.1207, 1.2144, 1.3197, 1.4354, 1.5640, 1.7050, 2.0113, 2.3402, 2.6820, 3.0310, 3.7442, 4.4666, 5.9238, 7.3868, 9.5881, 11.7919, 14.7326),
        ),
        "hm": (
            (0.9995, 1.0242, 1.0837, 1.1790, 1.2998, 1.4515, 1.6275, 1.8253, 2.0221, 2.4629, 2.9322, 3.4138, 3.9007, 4.8894, 5.8937, 7.9028, 9.9085, 12.9232, 15.9331, 19.9407),
            (0.9993, 1.0214, 1.0759, 1.1645, 1.2787, 1.4233, 1.5921, 1.7890, 1.9847, 2.4289, 2.9030, 3.3900, 3.8839, 4.8834, 5.8949, 7.9120, 9.9209, 12.9367, 15.9474, 19.9537),
            (0.9991, 1.0196, 1.0708, 1.1549, 1.2646, 1.4043, 1.5695, 1.7638, 1.9625, 2.4090, 2.8881, 3.3800, 3.8790, 4.8854, 5.9007, 7.9207, 9.9299, 12.9449, 15.9552, 19.9602),
            (0.9989, 1.0183, 1.0671, 1.1481, 1.2544, 1.3906, 1.5534, 1.7462, 1.9473, 2.3965, 2.8799, 3.3760, 3.8785, 4.8891, 5.9063, 7.9271, 9.9358, 12.9497, 15.9596, 19.9637),
            (0.9988, 1.0174, 1.0644, 1.1429, 1.2467, 1.3803, 1.5414, 1.7331, 1.9364, 2.3882, 2.8753, 3.3746, 3.8797, 4.8928, 5.9109, 7.9317, 9.9398, 12.9528, 15.9623, 19.9658),
            (0.9987, 1.0162, 1.0605, 1.1357, 1.2359, 1.3658, 1.5246, 1.7153, 1.9218, 2.3781, 2.8710, 3.3749, 3.8831, 4.8987, 5.9174, 7.9374, 9.9445, 12.9565, 15.9655, 19.9683),
            (0.9986, 1.0148, 1.0562, 1.1274, 1.2236, 1.3492, 1.5056, 1.6956, 1.9064, 2.3692, 2.8692, 3.3781, 3.8890, 4.9059, 5.9242, 7.9429, 9.9489, 12.9598, 15.9683, 19.9705),
        ),
    },
    0.25: {
        "r50": (
            (0.7697, 0.7818, 0.7996, 0.8227, 0.8563, 0.8990, 0.9473, 1.0003, 1.0640, 1.1948, 1.3375, 1.4870, 1.6469, 1.9752, 2.3144, 3.0123, 3.7247, 4.8002, 5.8792, 7.3360),
            (0.6755, 0.6859, 0.7061, 0.7258, 0.7605, 0.8083, 0.8590, 0.9222, 0.9814, 1.1156, 1.2636, 1.4192, 1.5789, 1.9105, 2.2559, 2.9661, 3.6728, 4.7636, 5.8506, 7.2908),
            (0.6288, 0.6399, 0.6544, 0.6827, 0.7225, 0.7605, 0.8141, 0.8752, 0.9424, 1.0749, 1.2297, 1.3824, 1.5473, 1.8885, 2.2344, 2.9416, 3.6587, 4.7521, 5.8402, 7.2870),
            (0.6060, 0.6114, 0.6250, 0.6553, 0.6927, 0.7354, 0.7956, 0.8563, 0.9120, 1.0551, 1.2066, 1.3687, 1.5306, 1.8733, 2.2244, 2.9306, 3.6546, 4.7428, 5.8350, 7.2848),
            (0.5823, 0.5982, 0.6098, 0.6399, 0.6755, 0.7225, 0.7727, 0.8341, 0.8990, 1.0417, 1.1948, 1.3550, 1.5260, 1.8602, 2.2161, 2.9269, 3.6526, 4.7428, 5.8350, 7.2848),
            (0.5617, 0.5700, 0.5863, 0.6175, 0.6544, 0.7061, 0.7543, 0.8141, 0.8806, 1.0281, 1.1810, 1.3375, 1.5105, 1.8533, 2.2043, 2.9195, 3.6506, 4.7428, 5.8350, 7.2848),
            (0.5491, 0.5533, 0.5617, 0.5982, 0.6288, 0.6824, 0.7354, 0.7996, 0.8590, 1.0073, 1.1650, 1.3340, 1.5012, 1.8469, 2.1992, 2.9121, 3.6465, 4.7428, 5.8350, 7.2848),
        ),
        "w": (
            (2.9828, 2.9405, 2.8853, 2.8226, 2.7437, 2.6391, 2.5404, 2.4464, 2.3447, 2.1719, 2.0327, 1.9173, 1.8226, 1.6879, 1.5973, 1.4882, 1.4291, 1.3822, 1.3575, 1.3383),
            (2.4947, 2.4591, 2.4142, 2.3808, 2.3215, 2.2329, 2.1564, 2.0641, 2.0003, 1.8828, 1.7835, 1.7052, 1.6471, 1.5601, 1.4973, 1.4241, 1.3887, 1.3534, 1.3381, 1.3270),
            (2.2911, 2.2590, 2.2483, 2.1873, 2.1226, 2.0761, 2.0110, 1.9429, 1.8763, 1.7869, 1.7000, 1.6399, 1.5871, 1.5110, 1.4622, 1.4051, 1.3737, 1.3441, 1.3305, 1.3221),
            (2.1664, 2.1616, 2.1400, 2.0991, 2.0445, 2.0005, 1.9219, 1.8612, 1.8341, 1.7339, 1.6661, 1.6033, 1.5612, 1.4904, 1.4440, 1.3953, 1.3636, 1.3400, 1.3266, 1.3190),
            (2.1250, 2.0782, 2.0781, 2.0263, 1.9878, 1.9358, 1.8935, 1.8388, 1.7954, 1.7088, 1.6409, 1.5909, 1.5396, 1.4824, 1.4374, 1.3883, 1.3570, 1.3365, 1.3242, 1.3172),
            (2.0304, 2.0189, 2.0131, 1.9604, 1.9356, 1.8743, 1.8439, 1.7972, 1.7572, 1.6740, 1.6118, 1.5696, 1.5237, 1.4655, 1.4281, 1.3806, 1.3536, 1.3325, 1.3222, 1.3153),
            (1.9257, 1.9348, 1.9520, 1.9034, 1.8909, 1.8269, 1.8116, 1.7562, 1.7311, 1.6591, 1.5943, 1.5424, 1.5067, 1.4514, 1.4179, 1.3753, 1.3497, 1.3281, 1.3198, 1.3146),
        ),
        "fit": (
            (0.9995, 1.0230, 1.0769, 1.1674, 1.2871, 1.4320, 1.5996, 1.7835, 1.9800, 2.3058, 2.6512, 3.0083, 3.3729, 4.1192, 4.8777, 6.4144, 7.9637, 10.3008, 12.6443, 15.7745),
            (0.9991, 1.0212, 1.0720, 1.1582, 1.2738, 1.4159, 1.5822, 1.7529, 1.9043, 2.2289, 2.5745, 2.9328, 3.2989, 4.0488, 4.8111, 6.3544, 7.9092, 10.2527, 12.6016, 15.7373),
            (0.9990, 1.0199, 1.0685, 1.1515, 1.2638, 1.4041, 1.5696, 1.7092, 1.8603, 2.1856, 2.5330, 2.8934, 3.2618, 4.0159, 4.7819, 6.3312, 7.8893, 10.2379, 12.5891, 15.7275),
            (0.9988, 1.0189, 1.0659, 1.1464, 1.2566, 1.3950, 1.5414, 1.6806, 1.8319, 2.1585, 2.5078, 2.8703, 3.2408, 3.9984, 4.7671, 6.3200, 7.8808, 10.2312, 12.5837, 15.7239),
            (0.9987, 1.0182, 1.0638, 1.1425, 1.2509, 1.3881, 1.5213, 1.6605, 1.8121, 2.1401, 2.4913, 2.8556, 3.2275, 3.9881, 4.7588, 6.3141, 7.8768, 10.2281, 12.5821, 18.1321),
            (0.9986, 1.0172, 1.0609, 1.1369, 1.2427, 1.3692, 1.4949, 1.6344, 1.7868, 2.1173, 2.4713, 2.8384, 3.2126, 3.9767, 4.7500, 6.3086, 7.8726, 10.2257, 12.6405, 25.1558),
            (0.9984, 1.0159, 1.0573, 1.1300, 1.2329, 1.3413, 1.4670, 1.6072, 1.7611, 2.0952, 2.4527, 2.8228, 3.1998, 3.9675, 4.7430, 6.3041, 7.8698, 10.2229, 17.8650, 54.7630),
        ),
        "hm": (
            (0.9995, 1.0260, 1.0898, 1.1924, 1.3269, 1.4952, 1.7001, 1.9214, 2.1585, 2.6552, 3.1347, 3.6151, 4.0926, 5.0493, 6.0234, 7.9912, 9.9700, 12.9615, 15.9612, 19.9587),
            (0.9993, 1.0231, 1.0814, 1.1771, 1.3029, 1.4657, 1.6637, 1.8867, 2.1211, 2.6232, 3.1031, 3.5836, 4.0592, 5.0158, 5.9932, 7.9678, 9.9537, 12.9532, 15.9574, 19.9590),
            (0.9991, 1.0212, 1.0760, 1.1669, 1.2878, 1.4459, 1.6396, 1.8637, 2.0978, 2.6050, 3.0856, 3.5662, 4.0404, 4.9975, 5.9780, 7.9579, 9.9488, 12.9525, 15.9591, 19.9618),
            (0.9989, 1.0198, 1.0721, 1.1596, 1.2770, 1.4317, 1.6225, 1.8478, 2.0822, 2.5933, 3.0744, 3.5549, 4.0289, 4.9864, 5.9690, 7.9534, 9.9473, 12.9536, 15.9613, 19.9643),
            (0.9988, 1.0188, 1.0691, 1.1541, 1.2689, 1.4210, 1.6098, 1.8361, 2.0719, 2.5855, 3.0669, 3.5474, 4.0206, 4.9792, 5.9633, 7.9510, 9.9472, 12.9549, 15.9631, 19.9660),
            (0.9987, 1.0174, 1.0651, 1.1463, 1.2574, 1.4059, 1.5923, 1.8202, 2.0585, 2.5761, 3.0578, 3.5382, 4.0105, 4.9702, 5.9569, 7.9491, 9.9482, 12.9572, 15.9657, 19.9683),
            (0.9986, 1.0160, 1.0604, 1.1375, 1.2442, 1.3885, 1.5731, 1.8029, 2.0449, 2.5676, 3.0489, 3.5280, 4.0004, 4.9614, 5.9512, 7.9488, 9.9502, 12.9599, 15.9684, 19.9705),
        ),
    },
    0.35: {
        "r50": (
            (0.7697, 0.7818, 0.7996, 0.8227, 0.8590, 0.9042, 0.9596, 1.0120, 1.0749, 1.2105, 1.3636, 1.5260, 1.6839, 2.0245, 2.3730, 3.0918, 3.8264, 4.9309, 6.0428, 7.5258),
            (0.6755, 0.6859, 0.7061, 0.7258, 0.7697, 0.8141, 0.8672, 0.9273, 0.9956, 1.1385, 1.2893, 1.4487, 1.6199, 1.9646, 2.3147, 3.0479, 3.7778, 4.8907, 6.0124, 7.4994),
            (0.6288, 0.6399, 0.6567, 0.6859, 0.7225, 0.7697, 0.8284, 0.8912, 0.9523, 1.0966, 1.2561, 1.4209, 1.5892, 1.9416, 2.2935, 3.0230, 3.7582, 4.8817, 5.9972, 7.4977),
            (0.6060, 0.6151, 0.6250, 0.6579, 0.7028, 0.7512, 0.7996, 0.8590, 0.9349, 1.0786, 1.2373, 1.4043, 1.5759, 1.9236, 2.2854, 3.0147, 3.7563, 4.8750, 5.9947, 7.4965),
            (0.5823, 0.5982, 0.6133, 0.6435, 0.6824, 0.7258, 0.7907, 0.8508, 0.9222, 1.0640, 1.2278, 1.3908, 1.5654, 1.9199, 2.2805, 3.0106, 3.7504, 4.8705, 5.9947, 7.4965),
            (0.5617, 0.5700, 0.5863, 0.6175, 0.6579, 0.7061, 0.7605, 0.8284, 0.8990, 1.0507, 1.2066, 1.3807, 1.5519, 1.9043, 2.2740, 3.0051, 3.7504, 4.8705, 5.9947, 7.4965),
            (0.5491, 0.5533, 0.5617, 0.5982, 0.6399, 0.6893, 0.7512, 0.8141, 0.8885, 1.0417, 1.1994, 1.3739, 1.5428, 1.8964, 2.2609, 3.0051, 3.7484, 4.8705, 5.9947, 7.4965),
        ),
        "w": (
            (2.9828, 2.9405, 2.8853, 2.8312, 2.7361, 2.6289, 2.5159, 2.4267, 2.3277, 2.1557, 2.0071, 1.8839, 1.7965, 1.6617, 1.5716, 1.4627, 1.4016, 1.3532, 1.3293, 1.3117),
            (2.4947, 2.4591, 2.4220, 2.3827, 2.2972, 2.2250, 2.1420, 2.0674, 1.9849, 1.8595, 1.7629, 1.6859, 1.6186, 1.5284, 1.4720, 1.3955, 1.3589, 1.3269, 1.3086, 1.2971),
            (2.2911, 2.2590, 2.2402, 2.1842, 2.1260, 2.0590, 1.9850, 1.9220, 1.8704, 1.7681, 1.6793, 1.6129, 1.5608, 1.4820, 1.4369, 1.3765, 1.3451, 1.3168, 1.3025, 1.2904),
            (2.1664, 2.1516, 2.1400, 2.0968, 2.0219, 1.9670, 1.9226, 1.8733, 1.7967, 1.7163, 1.6370, 1.5763, 1.5277, 1.4662, 1.4181, 1.3647, 1.3357, 1.3109, 1.2972, 1.2885),
            (2.1250, 2.0811, 2.0662, 2.0232, 1.9757, 1.9372, 1.8646, 1.8188, 1.7613, 1.6866, 1.6125, 1.5584, 1.5122, 1.4503, 1.4060, 1.3587, 1.3311, 1.3072, 1.2959, 1.2855),
            (2.0304, 2.0189, 2.0145, 1.9698, 1.9298, 1.8893, 1.8399, 1.7855, 1.7329, 1.6497, 1.5919, 1.5342, 1.4958, 1.4389, 1.3962, 1.3519, 1.3252, 1.3040, 1.2923, 1.2836),
            (1.9257, 1.9371, 1.9520, 1.9034, 1.8674, 1.8332, 1.7794, 1.7433, 1.6895, 1.6165, 1.5644, 1.5092, 1.4791, 1.4275, 1.3903, 1.3413, 1.3195, 1.3008, 1.2890, 1.2818),
        ),
        "fit": (
            (0.9995, 1.0240, 1.0812, 1.1778, 1.3058, 1.4620, 1.6434, 1.8418, 2.0270, 2.3727, 2.7378, 3.1163, 3.5016, 4.2904, 5.0904, 6.7116, 8.3430, 10.8030, 13.2694, 16.5601),
            (0.9991, 1.0221, 1.0760, 1.1683, 1.2918, 1.4458, 1.6260, 1.7910, 1.9521, 2.2975, 2.6638, 3.0442, 3.4317, 4.2251, 5.0297, 6.6575, 8.2954, 10.7624, 13.2319, 16.5298),
            (0.9990, 1.0208, 1.0723, 1.1613, 1.2819, 1.4335, 1.5988, 1.7477, 1.9088, 2.2557, 2.6243, 3.0073, 3.3975, 4.1956, 5.0041, 6.6381, 8.2792, 10.7495, 13.2236, 18.2493),
            (0.9988, 1.0198, 1.0696, 1.1559, 1.2742, 1.4244, 1.5706, 1.7194, 1.8810, 2.2297, 2.6006, 2.9860, 3.3783, 4.1803, 4.9912, 6.6296, 8.2731, 10.7448, 14.1097, 24.7737),
            (0.9987, 1.0191, 1.0674, 1.1518, 1.2687, 1.4154, 1.5506, 1.6997, 1.8618, 2.2123, 2.5853, 2.9727, 3.3667, 4.1715, 4.9844, 6.6250, 8.2699, 10.7428, 17.5906, 34.1193),
            (0.9986, 1.0180, 1.0644, 1.1460, 1.2601, 1.3893, 1.5244, 1.6741, 1.8373, 2.1908, 2.5670, 2.9572, 3.3537, 4.1623, 4.9772, 6.6202, 8.2670, 13.3825, 26.5981, 1325.6638),
            (0.9984, 1.0167, 1.0606, 1.1389, 1.2476, 1.3616, 1.4969, 1.6478, 1.8126, 2.1701, 2.5503, 2.9437, 3.3427, 4.1546, 4.9721, 6.6171, 8.2641, 21.0715, 1060.0886, 1325.6638),
        ),
        "hm": (
            (0.9995, 1.0273, 1.0949, 1.2050, 1.3521, 1.5377, 1.7680, 2.0053, 2.2692, 2.7561, 3.2284, 3.7009, 4.1743, 5.1218, 6.0827, 8.0344, 10.0009, 12.9812, 15.9759, 19.9684),
            (0.9993, 1.0242, 1.0861, 1.1888, 1.3265, 1.5049, 1.7304, 1.9705, 2.2348, 2.7244, 3.1948, 3.6657, 4.1363, 5.0795, 6.0431, 7.9993, 9.9736, 12.9637, 15.9641, 19.9625),
            (0.9991, 1.0222, 1.0804, 1.1780, 1.3093, 1.4843, 1.7054, 1.9493, 2.2138, 2.7058, 3.1756, 3.6453, 4.1146, 5.0561, 6.0210, 7.9825, 9.9624, 12.9586, 15.9624, 19.9633),
            (0.9989, 1.0208, 1.0763, 1.1703, 1.2979, 1.4696, 1.6880, 1.9346, 2.1999, 2.6941, 3.1628, 3.6316, 4.1001, 5.0412, 6.0075, 7.9731, 9.9574, 12.9574, 15.9630, 19.9649),
            (0.9988, 1.0198, 1.0732, 1.1645, 1.2893, 1.4586, 1.6753, 1.9240, 2.1903, 2.6862, 3.1539, 3.6225, 4.0897, 5.0310, 5.9986, 7.9675, 9.9548, 12.9574, 15.9641, 19.9663),
            (0.9987, 1.0183, 1.0689, 1.1564, 1.2772, 1.4431, 1.6578, 1.9098, 2.1781, 2.6766, 3.1429, 3.6107, 4.0763, 5.0175, 5.9875, 7.9616, 9.9529, 12.9584, 15.9660, 19.9684),
            (0.9986, 1.0167, 1.0641, 1.1470, 1.2633, 1.4253, 1.6381, 1.8947, 2.1663, 2.6669, 3.1320, 3.5984, 4.0621, 5.0034, 5.9769, 7.9573, 9.9526, 12.9603, 15.9684, 19.9705),
        ),
    },
    0.45: {
        "r50": (
            (0.7697, 0.7818, 0.7996, 0.8284, 0.8644, 0.9120, 0.9669, 1.0304, 1.0966, 1.2411, 1.3976, 1.5624, 1.7292, 2.0894, 2.4500, 3.1981, 3.9499, 5.0992, 6.2485, 7.7990),
            (0.6755, 0.6859, 0.7061, 0.7322, 0.7721, 0.8227, 0.8806, 0.9473, 1.0120, 1.1650, 1.3323, 1.4925, 1.6727, 2.0260, 2.3949, 3.1471, 3.9123, 5.0668, 6.2192, 7.7650),
            (0.6288, 0.6399, 0.6579, 0.6893, 0.7258, 0.7818, 0.8425, 0.9042, 0.9742, 1.1324, 1.2911, 1.4632, 1.6415, 2.0060, 2.3746, 3.1317, 3.9009, 5.0473, 6.2119, 7.7650),
            (0.6060, 0.6175, 0.6277, 0.6615, 0.7061, 0.7543, 0.8141, 0.8806, 0.9523, 1.1084, 1.2747, 1.4454, 1.6272, 1.9963, 2.3621, 3.1265, 3.8934, 5.0451, 6.2119, 7.7593),
            (0.5823, 0.5982, 0.6175, 0.6508, 0.6893, 0.7480, 0.7996, 0.8644, 0.9432, 1.0966, 1.2673, 1.4406, 1.6199, 1.9858, 2.3589, 3.1213, 3.8896, 5.0408, 6.2119, 7.7593),
            (0.5617, 0.5700, 0.5863, 0.6175, 0.6650, 0.7225, 0.7818, 0.8508, 0.9222, 1.0880, 1.2467, 1.4308, 1.6112, 1.9752, 2.3512, 3.1161, 3.8877, 5.0401, 6.2090, 7.7593),
            (0.5491, 0.5533, 0.5700, 0.6060, 0.6508, 0.7028, 0.7605, 0.8284, 0.9042, 1.0706, 1.2411, 1.4192, 1.5966, 1.9722, 2.3470, 3.1127, 3.8782, 5.0386, 6.2070, 7.7593),
        ),
        "w": (
            (2.9828, 2.9405, 2.8878, 2.8118, 2.7212, 2.6152, 2.5029, 2.3936, 2.2923, 2.1193, 1.9729, 1.8555, 1.7681, 1.6301, 1.5414, 1.4308, 1.3706, 1.3214, 1.2952, 1.2737),
            (2.4947, 2.4652, 2.4258, 2.3673, 2.2919, 2.2080, 2.1222, 2.0327, 1.9691, 1.8343, 1.7271, 1.6563, 1.5862, 1.5030, 1.4404, 1.3671, 1.3239, 1.2914, 1.2744, 1.2600),
            (2.2911, 2.2590, 2.2361, 2.1779, 2.1258, 2.0404, 1.9671, 1.9063, 1.8434, 1.7314, 1.6520, 1.5843, 1.5283, 1.4545, 1.4048, 1.3435, 1.3086, 1.2807, 1.2659, 1.2539),
            (2.1664, 2.1433, 2.1392, 2.0872, 2.0240, 1.9673, 1.9025, 1.8429, 1.7857, 1.6865, 1.6125, 1.5526, 1.5004, 1.4294, 1.3875, 1.3297, 1.2988, 1.2765, 1.2619, 1.2530),
            (2.1250, 2.0811, 2.0554, 2.0062, 1.9658, 1.8973, 1.8598, 1.8075, 1.7435, 1.6578, 1.5832, 1.5278, 1.4814, 1.4200, 1.3753, 1.3235, 1.2945, 1.2742, 1.2584, 1.2501),
            (2.0304, 2.0189, 2.0145, 1.9843, 1.9167, 1.8512, 1.8111, 1.7497, 1.7120, 1.6167, 1.5669, 1.5066, 1.4600, 1.4054, 1.3636, 1.3144, 1.2887, 1.2683, 1.2562, 1.2469),
            (1.9257, 1.9387, 1.9236, 1.8891, 1.8481, 1.8112, 1.7749, 1.7311, 1.6876, 1.5974, 1.5328, 1.4847, 1.4469, 1.3883, 1.3528, 1.3078, 1.2850, 1.2642, 1.2525, 1.2460),
        ),
        "fit": (
            (0.9995, 1.0255, 1.0868, 1.1916, 1.3297, 1.5012, 1.6986, 1.9126, 2.0867, 2.4558, 2.8464, 3.2488, 3.6587, 4.4963, 5.3450, 7.0613, 8.7878, 11.3895, 13.9956, 17.4766),
            (0.9991, 1.0236, 1.0814, 1.1815, 1.3157, 1.4844, 1.6789, 1.8392, 2.0127, 2.3824, 2.7751, 3.1803, 3.5930, 4.4363, 5.2897, 7.0136, 8.7458, 11.3535, 13.9656, 17.4510),
            (0.9990, 1.0222, 1.0775, 1.1740, 1.3055, 1.4728, 1.6362, 1.7963, 1.9703, 2.3422, 2.7378, 3.1459, 3.5615, 4.4099, 5.2670, 6.9977, 8.7335, 11.3441, 15.0876, 25.0452),
            (0.9988, 1.0211, 1.0746, 1.1685, 1.2976, 1.4617, 1.6081, 1.7685, 1.9433, 2.3174, 2.7158, 3.1265, 3.5446, 4.3964, 5.2566, 6.9899, 8.7285, 12.1592, 20.5335, 39.3074),
            (0.9987, 1.0203, 1.0723, 1.1642, 1.2916, 1.4420, 1.5884, 1.7492, 1.9248, 2.3011, 2.7018, 3.1145, 3.5345, 4.3889, 5.2508, 6.9869, 8.7262, 15.2662, 28.5019, 216.6391),
            (0.9986, 1.0192, 1.0690, 1.1581, 1.2831, 1.4160, 1.5626, 1.7243, 1.9013, 2.2811, 2.6853, 3.1008, 3.5232, 4.3813, 5.2457, 6.9841, 9.9553, 24.0640, 1097.9948, 1372.1476),
            (0.9984, 1.0178, 1.0651, 1.1505, 1.2641, 1.3884, 1.5356, 1.6989, 1.8779, 2.2623, 2.6704, 3.0894, 3.5142, 4.3754, 5.2412, 6.9820, 15.3307, 891.0213, 1097.6294, 1372.1476),
        ),
        "hm": (
            (0.9995, 1.0291, 1.1017, 1.2216, 1.3842, 1.5927, 1.8485, 2.1065, 2.3692, 2.8579, 3.3299, 3.7966, 4.2632, 5.2066, 6.1543, 8.0904, 10.0420, 13.0088, 15.9970, 19.9824),
            (0.9993, 1.0259, 1.0924, 1.2042, 1.3575, 1.5592, 1.8133, 2.0721, 2.3388, 2.8251, 3.2932, 3.7567, 4.2222, 5.1600, 6.1085, 8.0454, 10.0042, 12.9809, 15.9753, 19.9687),
            (0.9991, 1.0238, 1.0863, 1.1927, 1.3395, 1.5367, 1.7901, 2.0517, 2.3206, 2.8060, 3.2717, 3.7331, 4.1985, 5.1321, 6.0814, 8.0211, 9.9858, 12.9700, 15.9687, 19.9662),
            (0.9989, 1.0223, 1.0819, 1.1845, 1.3265, 1.5206, 1.7730, 2.0378, 2.3087, 2.7940, 3.2578, 3.7189, 4.1830, 5.1138, 6.0640, 8.0065, 9.9759, 12.9652, 15.9668, 19.9664),
            (0.9988, 1.0212, 1.0786, 1.1783, 1.3167, 1.5084, 1.7603, 2.0280, 2.3005, 2.7858, 3.2482, 3.7090, 4.1721, 5.1010, 6.0520, 7.9973, 9.9700, 12.9630, 15.9665, 19.9671),
            (0.9987, 1.0197, 1.0741, 1.1696, 1.3033, 1.4920, 1.7428, 2.0150, 2.2903, 2.7748, 3.2365, 3.6961, 4.1575, 5.0841, 6.0365, 7.9863, 9.9640, 12.9616, 15.9671, 19.9687),
            (0.9986, 1.0180, 1.0689, 1.1596, 1.2885, 1.4738, 1.7234, 2.0017, 2.2804, 2.7637, 3.2244, 3.6814, 4.1412, 5.0669, 6.0209, 7.9765, 9.9597, 12.9617, 15.9688, 19.9706),
        ),
    },
}
