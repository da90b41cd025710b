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
dew            stars with halos: the 90 %/50 % flux radius ratio wider than any seeing
               profile (Moffat beta >= 2.5) of the same HFD/FWHM allows
focus_miss     round stars, uniform field, a flat-topped profile or donuts: the inferred
               defocus blur is about the seeing FWHM or more, and >= 0.7 CFZ
poor_seeing    round stars, uniform field, a peaked seeing profile (no defocus blur), FWHM
               >= 1.25x the in-focus size of the rig on a fair (2.5") night
in_focus       none of the above
=============  ==================================================================================

Defocus without a baseline comes from the profile itself: a seeing Moffat profile
convolved with the geometric defocus disk (annulus on an obstructed scope) has known
shape figures for each ratio blur/seeing and seeing beta (:func:`profile_model`, tabulated
in ``_PROFILE_TABLES``): the 90 %/50 % flux radius ratio and HFD over the *fitted* Moffat
FWHM (the star measurement's fit cannot follow a flat top, so its FWHM is modelled, not
the ideal half-maximum width). The two measured figures give beta and blur/seeing, the
half-flux radius the scale. Donuts give the blur from their size and ring ratio.
``defocus_um = N * blur_px * pixel_um``. On the simulator: 1, 2.5, 3, 6 and 10 CFZ come
out within 2-8 % (tests/test_diagnose.py).

Coordinates follow sep (x = column, y = row, (0, 0) the centre of the first pixel);
zone row 0 is the top of the frame as displayed (low y), as in :class:`stars.Zone`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from focuswatch import optics
from focuswatch.optics import Rig

LABELS: tuple[str, ...] = ("in_focus", "focus_miss", "poor_seeing", "backfocus", "tilt", "coma",
                           "collimation", "trailing", "dew")
UNKNOWN = "unknown"
#: Labels an autofocus run can fix; everything else is a warning with advice.
REFOCUS_LABELS = frozenset({"focus_miss"})
#: Problems of the optical train itself (stable over the night, not fixed by refocusing).
OPTICAL_LABELS = frozenset({"backfocus", "tilt", "coma", "collimation"})


# --------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class DiagnoseConfig:
    """Thresholds of the diagnosis (all dimensionless unless the name carries a unit).

    The defaults were tuned on the simulator's labelled set (tests/test_diagnose.py).
    """

    min_stars: int = 12
    #: HFD/FWHM (fitted Moffat FWHM) below this: a flat-topped, defocused profile. The fit
    #: cannot follow a flat top, so the measured ratio stays near 0.95 even for big disks.
    flat_profile_ratio: float = 1.0
    #: Seeing assumed for the in-focus size when the rig gives none (a fair night), arcsec.
    reference_seeing_arcsec: float = 2.5
    #: FWHM over the expected in-focus FWHM above which the seeing is called poor.
    poor_seeing_excess: float = 1.25
    #: Inferred blur diameter over the seeing FWHM above which focus is called missed.
    focus_miss_blur_ratio: float = 0.9
    #: ... and the inferred defocus in units of the CFZ width (when the rig is known).
    focus_miss_cfz: float = 0.7
    #: 90 %/50 % flux radius ratio above the best seeing/defocus model: a halo (dew).
    dew_wing_excess: float = 0.12
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DiagnoseConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class Finding:
    """One observation: a label, how sure we are (0..1) and the figures behind it."""

    label: str
    confidence: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Finding":
        return cls(str(d["label"]), float(d["confidence"]), str(d.get("detail", "")))


@dataclass(frozen=True)
class Evidence:
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = [list(r) if isinstance(r, tuple) else r for r in v]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Evidence":
        names = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k not in names:
                continue
            if isinstance(v, list):
                v = tuple(tuple(r) if isinstance(r, list) else r for r in v)
            kw[k] = v
        return cls(**kw)


@dataclass(frozen=True)
class Diagnosis:
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
        return {
            "file": self.file, "label": self.label, "confidence": self.confidence,
            "findings": [f.to_dict() for f in self.findings],
            "defocus_um": self.defocus_um, "defocus_cfz": self.defocus_cfz,
            "defocus_method": self.defocus_method,
            "evidence": self.evidence.to_dict(), "causes": list(self.causes),
            "advice": list(self.advice), "reason": self.reason,
            "refocus_advised": self.refocus_advised,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Diagnosis":
        return cls(
            file=d.get("file"), label=str(d["label"]), confidence=float(d["confidence"]),
            findings=tuple(Finding.from_dict(f) for f in d.get("findings", ())),
            defocus_um=d.get("defocus_um"), defocus_cfz=d.get("defocus_cfz"),
            defocus_method=d.get("defocus_method"),
            evidence=Evidence.from_dict(d.get("evidence", {"n_stars": 0})),
            causes=tuple(d.get("causes", ())), advice=tuple(d.get("advice", ())),
            reason=d.get("reason"),
        )


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


def _fit_moffat_fwhm(rc: np.ndarray, prof: np.ndarray, r50: float) -> tuple[float, float]:
    """FWHM and beta of a Moffat fitted to a radial profile the way :mod:`stars` fits stars
    (out to 3 half-flux radii, points weighted by their pixel count, beta capped at 25).

    On a flat-topped (defocused) star that fit gives an FWHM well below the true half-maximum
    width, so the model has to reproduce the fit, not the ideal width.
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
    return 2 * alpha * math.sqrt(2 ** (1 / beta) - 1), beta


def profile_model(seeing_fwhm_px: float, beta: float, blur_px: float, obstruction: float = 0.0,
                  n: int = 256) -> dict[str, float]:
    """Shape figures of a Moffat seeing profile convolved with a defocus annulus.

    ``seeing_fwhm_px`` and ``beta`` describe the seeing (Moffat), ``blur_px`` the outer
    diameter of the geometric defocus annulus and ``obstruction`` its inner/outer ratio.
    Returns ``r50_px`` and ``r90_px`` (radii holding 50 and 90 % of the light),
    ``fwhm_px`` (true half-maximum width; for a donut at half the ring's maximum) and
    ``fit_fwhm_px``/``fit_beta`` (what the star measurement's Moffat fit reports).
    Computed on a grid by FFT convolution: the forward model the defocus estimate inverts.

    >>> m = profile_model(3.0, 3.5, 0.0, n=512)
    >>> round(m["fwhm_px"], 1), round(2 * m["r50_px"] / m["fwhm_px"], 1)
    (3.0, 1.2)
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
    return {"r50_px": r50, "r90_px": r90, "fwhm_px": 2.0 * rh, "fit_fwhm_px": fit_fwhm, "fit_beta": fit_beta}


#: Grid of the inversion: seeing Moffat beta and blur diameter / seeing FWHM.
_BETAS = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 7.0)
_XS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0)


def _compute_profile_table(obstruction: float, n: int = 512) -> dict[str, np.ndarray]:
    """Model shape figures on the (beta, x) grid, in units of the seeing FWHM (slow: ~5 s)."""
    shape = (len(_BETAS), len(_XS))
    out = {k: np.zeros(shape) for k in ("r50", "w", "p")}
    for i, be in enumerate(_BETAS):
        for j, x in enumerate(_XS):
            m = profile_model(4.0, be, 4.0 * x, obstruction, n=n)
            out["r50"][i, j] = m["r50_px"] / 4.0
            out["w"][i, j] = m["r90_px"] / m["r50_px"]
            out["p"][i, j] = 2 * m["r50_px"] / m["fit_fwhm_px"]
    return out


@lru_cache(maxsize=16)
def _profile_table(obstruction: float) -> dict[str, np.ndarray]:
    """The precomputed table for the nearest tabulated obstruction."""
    eps = min(_PROFILE_TABLES, key=lambda e: abs(e - obstruction))
    return {k: np.asarray(v, float) for k, v in _PROFILE_TABLES[eps].items()}


#: Measured minus model shape figures for pure seeing and defocus stars (simulated frames,
#: SNR >= 20 stars; see tests/test_diagnose.py): the 90 % radius comes out slightly large
#: (noise in the wings), the fitted FWHM slightly large on the pixel grid.
WING_RATIO_BIAS = 0.06
#: Moffat beta of atmospheric seeing: searched in this range, with a prior (centre, width).
#: Turbulence theory gives ~4.8, stars measure 2.5-4.5; a broader wing than beta 2.5 allows
#: is a halo (dew, scattered light), not seeing.
SEEING_BETA_RANGE = (2.5, 7.0)
SEEING_BETA_PRIOR = (3.5, 1.0)
PROFILE_RATIO_BIAS = -0.03


def blur_from_profile(hfr_px: float, wing_ratio: float | None, profile_ratio: float | None, *,
                      obstruction: float = 0.0) -> tuple[float, float, float, float]:
    """Invert the profile model: (seeing FWHM px, defocus blur diameter px, seeing beta,
    wing excess).

    ``hfr_px`` is the true half-flux radius, ``wing_ratio`` the measured 90 %/50 % flux
    radius ratio (1.34 for a flat disk, 2.1-2.5 for seeing) and ``profile_ratio`` HFD
    over the fitted Moffat FWHM. The pair of shape figures fixes both the seeing's beta
    and the ratio blur/seeing; the half-flux radius then sets the scale. The blur is well
    constrained even where the ratio is not: for a large blur the half-flux radius is
    ~0.354 of it whatever the seeing. ``wing excess`` is how much wider the 90 % radius
    is than the best model allows (a halo: dew, scattered light).

    >>> see, blur, beta, _ = blur_from_profile(2.0, 2.23, 1.18)
    >>> blur < 0.5 * see
    True
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
        w = np.interp(fine, xs, tab["w"][i])
        p = np.interp(fine, xs, tab["p"][i])
        chi = np.zeros_like(fine)
        if wm is not None:
            chi += ((w - wm) / 0.06) ** 2
        if pm is not None:
            chi += ((p - pm) / 0.035) ** 2
        chi += ((be - SEEING_BETA_PRIOR[0]) / SEEING_BETA_PRIOR[1]) ** 2
        k = int(np.argmin(chi))
        if chi[k] < best[0]:
            excess = 0.0 if wm is None else float(wm - w[k])
            best = (float(chi[k]), float(fine[k]), float(np.interp(fine[k], xs, tab["r50"][i])), be, excess)
    _, x, r50_per_f, be, excess = best
    seeing = hfr_px / r50_per_f
    return seeing, x * seeing, be, excess


# --------------------------------------------------------------------------- helpers

def _finite(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, float)
    return a[np.isfinite(a)]


def _median(a: Iterable[float] | np.ndarray) -> float | None:
    v = _finite(np.asarray(list(a) if not isinstance(a, np.ndarray) else a, float))
    return float(np.median(v)) if v.size else None


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
        mad = 1.4826 * np.median(np.abs(res[keep] - np.median(res[keep]))) + 1e-12
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
            s2 = (v * r2).sum() / tot
            if tot > 0 and s2 > 0:
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
        is the quadrature growth over it rather than inferred from the profile shape.
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
    scores = _scores(ev, defocus, config)
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

    hfr_med = float(np.median(hfr))
    fitted = bt[np.isfinite(bt["fwhm"]) & (bt["fwhm"] > 0)]
    fwhm_med = float(np.median(fitted["fwhm"])) if len(fitted) else stats.fwhm_px
    pr = float(np.median(2.0 * fitted["hfr"] / fitted["fwhm"])) if len(fitted) >= 5 else stats.profile_ratio
    outer = bt["outer_r"]
    good_outer = np.isfinite(outer) & (outer > 0)
    wing = float(np.median(outer[good_outer] / hfr[good_outer])) if good_outer.sum() >= 5 else None
    beta = _median(fitted["beta"]) if len(fitted) else None
    scale = stats.plate_scale_arcsec_px or rig.plate_scale_arcsec_px
    exp_fwhm = expected_fwhm_px(rig, config, scale)

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
            err = 1.4826 * np.median(np.abs(v - med), axis=0) / math.sqrt(len(v))
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
        # half the light of an annulus of outer radius R lies inside R*sqrt((1+eps^2)/2); the
        # seeing's own half-flux radius is removed in quadrature. (The 90 % radius would be
        # more direct but picks up neighbours inside the big stamps of defocused stars.)
        scale_s = stats.plate_scale_arcsec_px or rig.plate_scale_arcsec_px
        seeing_px = ((rig.seeing_arcsec or config.reference_seeing_arcsec) / scale_s) if scale_s else 0.0
        h_don = float(np.median(hfr[donut]))
        r_out = math.sqrt(max(h_don ** 2 - (0.675 * seeing_px) ** 2, 0.0)) / optics.true_hfr_factor(eps_est)
        donut_d = 2.0 * r_out

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


def _scores(ev: Evidence, defocus: Mapping[str, Any], c: DiagnoseConfig) -> dict[str, float]:
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
    dew = _smooth_step(ev.wing_excess or 0.0, c.dew_wing_excess - 0.04, c.dew_wing_excess + 0.04)
    s["dew"] = dew * (1.0 - elong) * (1.0 - flat)
    x = defocus.get("x") or 0.0
    miss = _smooth_step(x, c.focus_miss_blur_ratio - 0.25, c.focus_miss_blur_ratio + 0.25)
    dcfz = defocus.get("cfz")
    if dcfz is not None:
        miss *= _smooth_step(dcfz, c.focus_miss_cfz * 0.7, c.focus_miss_cfz * 1.1)
    if (ev.donut_fraction or 0.0) >= 0.3:
        miss = max(miss, 0.9)
    # elongation only counts with a structure (one orientation, or radial/tangential):
    # random orientations are noise or blends of big disks
    structured = max(_smooth_step(al, 0.3, 0.5), _smooth_step(abs(rho), 0.3, 0.5))
    round_ = 1.0 - elong * structured
    s["focus_miss"] = miss * round_ * (1.0 - fieldy * 0.6) * (1.0 - s["dew"])
    if excess is not None:
        big = _smooth_step(excess, c.poor_seeing_excess - 0.1, c.poor_seeing_excess + 0.1)
        s["poor_seeing"] = big * (1.0 - miss) * round_ * (1.0 - s["dew"]) * (1.0 - fieldy * 0.6)
    return s


def _detail(label: str, ev: Evidence, defocus: Mapping[str, Any]) -> str:
    def f(v: Any, spec: str = ".2f") -> str:
        return "n/a" if v is None else format(v, spec)
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
class NightFrame:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NightFrame":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


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
    # it, the HFR growth over the segment's best frames (quadrature model)
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
        mad = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
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
    return "n/a" if v is None else f"{v:.0f} %"


# --------------------------------------------------------------------------- text renderers

ARCSEC = '"'


def _f(v: Any, spec: str = ".2f", unit: str = "") -> str:
    return "—" if v is None else f"{format(v, spec)}{unit}"


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
#: [beta index][x index] of r50/FWHM_seeing, r90/r50 and HFD/fitted-FWHM. Regenerate with
#: ``_compute_profile_table(eps)``; tests/test_diagnose.py checks a sample against it.
_PROFILE_TABLES: dict[float, dict[str, tuple[tuple[float, ...], ...]]] = {
    0.0: {
        "r50": (
            (0.770, 0.782, 0.797, 0.817, 0.856, 0.896, 0.942, 0.993, 1.048, 1.177, 1.311, 1.458, 1.614, 1.931, 2.256, 2.929, 3.616, 4.661, 5.714, 7.110),
            (0.675, 0.686, 0.703, 0.723, 0.757, 0.800, 0.851, 0.904, 0.965, 1.094, 1.235, 1.381, 1.535, 1.857, 2.194, 2.875, 3.567, 4.612, 5.673, 7.076),
            (0.629, 0.640, 0.654, 0.682, 0.713, 0.754, 0.802, 0.859, 0.922, 1.055, 1.196, 1.343, 1.506, 1.832, 2.165, 2.856, 3.556, 4.603, 5.660, 7.070),
            (0.606, 0.610, 0.625, 0.654, 0.689, 0.726, 0.782, 0.840, 0.899, 1.030, 1.177, 1.332, 1.487, 1.816, 2.155, 2.843, 3.540, 4.602, 5.660, 7.070),
            (0.582, 0.598, 0.610, 0.630, 0.665, 0.713, 0.760, 0.817, 0.881, 1.014, 1.163, 1.313, 1.478, 1.803, 2.144, 2.841, 3.538, 4.602, 5.660, 7.070),
            (0.562, 0.570, 0.586, 0.618, 0.654, 0.693, 0.751, 0.800, 0.859, 0.996, 1.145, 1.302, 1.463, 1.798, 2.139, 2.833, 3.537, 4.595, 5.660, 7.070),
            (0.549, 0.553, 0.562, 0.596, 0.625, 0.665, 0.723, 0.782, 0.848, 0.986, 1.139, 1.289, 1.449, 1.784, 2.129, 2.833, 3.535, 4.595, 5.660, 7.070),
        ),
        "w": (
            (2.983, 2.941, 2.896, 2.840, 2.738, 2.644, 2.548, 2.457, 2.367, 2.195, 2.058, 1.942, 1.846, 1.711, 1.623, 1.518, 1.462, 1.414, 1.390, 1.374),
            (2.495, 2.459, 2.425, 2.389, 2.322, 2.244, 2.162, 2.096, 2.027, 1.906, 1.810, 1.737, 1.676, 1.587, 1.524, 1.457, 1.418, 1.390, 1.372, 1.361),
            (2.291, 2.259, 2.236, 2.179, 2.145, 2.089, 2.028, 1.964, 1.901, 1.803, 1.730, 1.672, 1.617, 1.542, 1.496, 1.436, 1.403, 1.380, 1.365, 1.356),
            (2.166, 2.167, 2.140, 2.098, 2.045, 2.016, 1.946, 1.882, 1.840, 1.762, 1.688, 1.627, 1.588, 1.525, 1.480, 1.428, 1.399, 1.374, 1.362, 1.355),
            (2.125, 2.075, 2.072, 2.055, 2.011, 1.952, 1.911, 1.868, 1.812, 1.737, 1.667, 1.619, 1.572, 1.515, 1.472, 1.419, 1.395, 1.370, 1.359, 1.352),
            (2.030, 2.018, 2.010, 1.954, 1.920, 1.895, 1.838, 1.812, 1.782, 1.708, 1.647, 1.595, 1.556, 1.500, 1.459, 1.413, 1.388, 1.369, 1.357, 1.351),
            (1.926, 1.935, 1.952, 1.909, 1.893, 1.872, 1.817, 1.779, 1.739, 1.670, 1.613, 1.578, 1.546, 1.491, 1.453, 1.405, 1.382, 1.363, 1.354, 1.348),
        ),
        "p": (
            (1.540, 1.531, 1.486, 1.413, 1.352, 1.281, 1.213, 1.155, 1.103, 1.055, 1.027, 1.011, 1.001, 0.985, 0.975, 0.966, 0.963, 0.962, 0.962, 0.960),
            (1.352, 1.345, 1.317, 1.259, 1.208, 1.156, 1.109, 1.063, 1.041, 1.017, 0.999, 0.984, 0.976, 0.967, 0.964, 0.960, 0.959, 0.958, 0.959, 0.959),
            (1.259, 1.256, 1.230, 1.196, 1.145, 1.099, 1.055, 1.030, 1.020, 1.001, 0.985, 0.972, 0.970, 0.963, 0.959, 0.958, 0.959, 0.958, 0.959, 0.959),
            (1.213, 1.198, 1.178, 1.152, 1.114, 1.065, 1.035, 1.025, 1.011, 0.991, 0.980, 0.974, 0.966, 0.960, 0.958, 0.956, 0.956, 0.959, 0.959, 0.959),
            (1.166, 1.176, 1.151, 1.112, 1.080, 1.051, 1.021, 1.010, 1.002, 0.985, 0.976, 0.965, 0.964, 0.956, 0.956, 0.957, 0.957, 0.959, 0.959, 0.959),
            (1.125, 1.122, 1.109, 1.096, 1.069, 1.029, 1.026, 1.005, 0.992, 0.978, 0.970, 0.964, 0.960, 0.957, 0.956, 0.956, 0.957, 0.958, 0.960, 0.960),
            (1.100, 1.091, 1.067, 1.064, 1.029, 1.008, 1.007, 1.000, 0.995, 0.981, 0.973, 0.962, 0.956, 0.953, 0.953, 0.957, 0.957, 0.959, 0.960, 0.960),
        ),
    },
    0.25: {
        "r50": (
            (0.770, 0.782, 0.800, 0.823, 0.856, 0.899, 0.947, 1.000, 1.064, 1.195, 1.337, 1.487, 1.647, 1.975, 2.314, 3.012, 3.725, 4.800, 5.879, 7.336),
            (0.675, 0.686, 0.706, 0.726, 0.760, 0.808, 0.859, 0.922, 0.981, 1.116, 1.264, 1.419, 1.579, 1.911, 2.256, 2.966, 3.673, 4.764, 5.851, 7.291),
            (0.629, 0.640, 0.654, 0.683, 0.723, 0.760, 0.814, 0.875, 0.942, 1.075, 1.230, 1.382, 1.547, 1.889, 2.234, 2.942, 3.659, 4.752, 5.840, 7.287),
            (0.606, 0.611, 0.625, 0.655, 0.693, 0.735, 0.796, 0.856, 0.912, 1.055, 1.207, 1.369, 1.531, 1.873, 2.224, 2.931, 3.655, 4.743, 5.835, 7.285),
            (0.582, 0.598, 0.610, 0.640, 0.675, 0.723, 0.773, 0.834, 0.899, 1.042, 1.195, 1.355, 1.526, 1.860, 2.216, 2.927, 3.653, 4.743, 5.835, 7.285),
            (0.562, 0.570, 0.586, 0.618, 0.654, 0.706, 0.754, 0.814, 0.881, 1.028, 1.181, 1.337, 1.510, 1.853, 2.204, 2.920, 3.651, 4.743, 5.835, 7.285),
            (0.549, 0.553, 0.562, 0.598, 0.629, 0.682, 0.735, 0.800, 0.859, 1.007, 1.165, 1.334, 1.501, 1.847, 2.199, 2.912, 3.647, 4.743, 5.835, 7.285),
        ),
        "w": (
            (2.983, 2.941, 2.885, 2.823, 2.744, 2.639, 2.540, 2.446, 2.345, 2.172, 2.033, 1.917, 1.823, 1.688, 1.597, 1.488, 1.429, 1.382, 1.357, 1.338),
            (2.495, 2.459, 2.414, 2.381, 2.321, 2.233, 2.156, 2.064, 2.000, 1.883, 1.784, 1.705, 1.647, 1.560, 1.497, 1.424, 1.389, 1.353, 1.338, 1.327),
            (2.291, 2.259, 2.248, 2.187, 2.123, 2.076, 2.011, 1.943, 1.876, 1.787, 1.700, 1.640, 1.587, 1.511, 1.462, 1.405, 1.374, 1.344, 1.331, 1.322),
            (2.166, 2.162, 2.140, 2.099, 2.045, 2.001, 1.922, 1.861, 1.834, 1.734, 1.666, 1.603, 1.561, 1.490, 1.444, 1.395, 1.364, 1.340, 1.327, 1.319),
            (2.125, 2.078, 2.078, 2.026, 1.988, 1.936, 1.893, 1.839, 1.795, 1.709, 1.641, 1.591, 1.540, 1.482, 1.437, 1.388, 1.357, 1.337, 1.324, 1.317),
            (2.030, 2.019, 2.013, 1.960, 1.936, 1.874, 1.844, 1.797, 1.757, 1.674, 1.612, 1.570, 1.524, 1.466, 1.428, 1.381, 1.354, 1.333, 1.322, 1.315),
            (1.926, 1.935, 1.952, 1.903, 1.891, 1.827, 1.812, 1.756, 1.731, 1.659, 1.594, 1.542, 1.507, 1.451, 1.418, 1.375, 1.350, 1.328, 1.320, 1.315),
        ),
        "p": (
            (1.540, 1.528, 1.485, 1.409, 1.331, 1.256, 1.184, 1.122, 1.075, 1.036, 1.009, 0.989, 0.977, 0.959, 0.949, 0.939, 0.935, 0.932, 0.930, 0.930),
            (1.352, 1.343, 1.317, 1.253, 1.194, 1.142, 1.086, 1.052, 1.031, 1.001, 0.982, 0.968, 0.957, 0.944, 0.938, 0.933, 0.929, 0.929, 0.929, 0.927),
            (1.259, 1.255, 1.225, 1.186, 1.143, 1.083, 1.037, 1.024, 1.013, 0.984, 0.971, 0.956, 0.949, 0.941, 0.934, 0.929, 0.927, 0.928, 0.928, 0.927),
            (1.213, 1.200, 1.173, 1.143, 1.102, 1.054, 1.032, 1.019, 0.996, 0.978, 0.962, 0.954, 0.945, 0.937, 0.933, 0.927, 0.927, 0.927, 0.927, 0.927),
            (1.166, 1.175, 1.147, 1.120, 1.080, 1.041, 1.016, 1.005, 0.992, 0.974, 0.959, 0.949, 0.946, 0.933, 0.931, 0.927, 0.927, 0.927, 0.927, 0.803),
            (1.125, 1.121, 1.105, 1.086, 1.053, 1.031, 1.009, 0.996, 0.986, 0.971, 0.956, 0.943, 0.940, 0.932, 0.928, 0.926, 0.927, 0.928, 0.923, 0.579),
            (1.100, 1.089, 1.063, 1.059, 1.020, 1.018, 1.003, 0.995, 0.976, 0.962, 0.950, 0.945, 0.938, 0.931, 0.927, 0.924, 0.927, 0.928, 0.653, 0.266),
        ),
    },
    0.35: {
        "r50": (
            (0.770, 0.782, 0.800, 0.823, 0.859, 0.904, 0.960, 1.012, 1.075, 1.210, 1.364, 1.526, 1.684, 2.025, 2.373, 3.092, 3.826, 4.931, 6.043, 7.526),
            (0.675, 0.686, 0.706, 0.726, 0.770, 0.814, 0.867, 0.927, 0.996, 1.139, 1.289, 1.449, 1.620, 1.965, 2.315, 3.048, 3.778, 4.891, 6.012, 7.499),
            (0.629, 0.640, 0.657, 0.686, 0.723, 0.770, 0.828, 0.891, 0.952, 1.097, 1.256, 1.421, 1.589, 1.942, 2.293, 3.023, 3.758, 4.882, 5.997, 7.498),
            (0.606, 0.615, 0.625, 0.658, 0.703, 0.751, 0.800, 0.859, 0.935, 1.079, 1.237, 1.404, 1.576, 1.924, 2.285, 3.015, 3.756, 4.875, 5.995, 7.497),
            (0.582, 0.598, 0.613, 0.643, 0.682, 0.726, 0.791, 0.851, 0.922, 1.064, 1.228, 1.391, 1.565, 1.920, 2.280, 3.011, 3.750, 4.870, 5.995, 7.497),
            (0.562, 0.570, 0.586, 0.618, 0.658, 0.706, 0.760, 0.828, 0.899, 1.051, 1.207, 1.381, 1.552, 1.904, 2.274, 3.005, 3.750, 4.870, 5.995, 7.497),
            (0.549, 0.553, 0.562, 0.598, 0.640, 0.689, 0.751, 0.814, 0.888, 1.042, 1.199, 1.374, 1.543, 1.896, 2.261, 3.005, 3.748, 4.870, 5.995, 7.497),
        ),
        "w": (
            (2.983, 2.941, 2.885, 2.831, 2.736, 2.629, 2.516, 2.427, 2.328, 2.156, 2.007, 1.884, 1.796, 1.662, 1.572, 1.463, 1.402, 1.353, 1.329, 1.312),
            (2.495, 2.459, 2.422, 2.383, 2.297, 2.225, 2.142, 2.067, 1.985, 1.859, 1.763, 1.686, 1.619, 1.528, 1.472, 1.395, 1.359, 1.327, 1.309, 1.297),
            (2.291, 2.259, 2.240, 2.184, 2.126, 2.059, 1.985, 1.922, 1.870, 1.768, 1.679, 1.613, 1.561, 1.482, 1.437, 1.377, 1.345, 1.317, 1.302, 1.290),
            (2.166, 2.152, 2.140, 2.097, 2.022, 1.967, 1.923, 1.873, 1.797, 1.716, 1.637, 1.576, 1.528, 1.466, 1.418, 1.365, 1.336, 1.311, 1.297, 1.288),
            (2.125, 2.081, 2.066, 2.023, 1.976, 1.937, 1.865, 1.819, 1.761, 1.687, 1.613, 1.558, 1.512, 1.450, 1.406, 1.359, 1.331, 1.307, 1.296, 1.286),
            (2.030, 2.019, 2.014, 1.970, 1.930, 1.889, 1.840, 1.786, 1.733, 1.650, 1.592, 1.534, 1.496, 1.439, 1.396, 1.352, 1.325, 1.304, 1.292, 1.284),
            (1.926, 1.937, 1.952, 1.903, 1.867, 1.833, 1.779, 1.743, 1.690, 1.617, 1.564, 1.509, 1.479, 1.427, 1.390, 1.341, 1.319, 1.301, 1.289, 1.282),
        ),
        "p": (
            (1.540, 1.527, 1.479, 1.397, 1.316, 1.237, 1.168, 1.099, 1.061, 1.020, 0.996, 0.979, 0.962, 0.944, 0.932, 0.921, 0.917, 0.913, 0.911, 0.909),
            (1.352, 1.342, 1.312, 1.242, 1.192, 1.126, 1.067, 1.036, 1.020, 0.991, 0.968, 0.952, 0.944, 0.930, 0.920, 0.916, 0.911, 0.909, 0.909, 0.907),
            (1.259, 1.254, 1.225, 1.181, 1.127, 1.074, 1.036, 1.020, 0.998, 0.972, 0.957, 0.945, 0.935, 0.925, 0.917, 0.911, 0.908, 0.908, 0.907, 0.822),
            (1.213, 1.206, 1.169, 1.138, 1.103, 1.055, 1.018, 0.999, 0.994, 0.968, 0.952, 0.941, 0.933, 0.920, 0.916, 0.909, 0.908, 0.907, 0.850, 0.605),
            (1.166, 1.174, 1.149, 1.117, 1.076, 1.026, 1.020, 1.001, 0.991, 0.962, 0.950, 0.936, 0.930, 0.920, 0.915, 0.909, 0.907, 0.907, 0.682, 0.439),
            (1.125, 1.120, 1.102, 1.078, 1.044, 1.016, 0.998, 0.990, 0.979, 0.959, 0.940, 0.934, 0.925, 0.915, 0.914, 0.908, 0.907, 0.728, 0.451, 0.011),
            (1.100, 1.089, 1.059, 1.050, 1.026, 1.012, 1.004, 0.988, 0.980, 0.960, 0.941, 0.933, 0.923, 0.913, 0.909, 0.908, 0.907, 0.462, 0.011, 0.011),
        ),
    },
    0.45: {
        "r50": (
            (0.770, 0.782, 0.800, 0.828, 0.864, 0.912, 0.967, 1.030, 1.097, 1.241, 1.398, 1.562, 1.729, 2.089, 2.450, 3.198, 3.950, 5.099, 6.248, 7.799),
            (0.675, 0.686, 0.706, 0.732, 0.772, 0.823, 0.881, 0.947, 1.012, 1.165, 1.332, 1.492, 1.673, 2.026, 2.395, 3.147, 3.912, 5.067, 6.219, 7.765),
            (0.629, 0.640, 0.658, 0.689, 0.726, 0.782, 0.843, 0.904, 0.974, 1.132, 1.291, 1.463, 1.641, 2.006, 2.375, 3.132, 3.901, 5.047, 6.212, 7.765),
            (0.606, 0.618, 0.628, 0.661, 0.706, 0.754, 0.814, 0.881, 0.952, 1.108, 1.275, 1.445, 1.627, 1.996, 2.362, 3.127, 3.893, 5.045, 6.212, 7.759),
            (0.582, 0.598, 0.618, 0.651, 0.689, 0.748, 0.800, 0.864, 0.943, 1.097, 1.267, 1.441, 1.620, 1.986, 2.359, 3.121, 3.890, 5.041, 6.212, 7.759),
            (0.562, 0.570, 0.586, 0.618, 0.665, 0.723, 0.782, 0.851, 0.922, 1.088, 1.247, 1.431, 1.611, 1.975, 2.351, 3.116, 3.888, 5.040, 6.209, 7.759),
            (0.549, 0.553, 0.570, 0.606, 0.651, 0.703, 0.760, 0.828, 0.904, 1.071, 1.241, 1.419, 1.597, 1.972, 2.347, 3.113, 3.878, 5.039, 6.207, 7.759),
        ),
        "w": (
            (2.983, 2.941, 2.888, 2.812, 2.721, 2.615, 2.503, 2.394, 2.292, 2.119, 1.973, 1.855, 1.768, 1.630, 1.541, 1.431, 1.371, 1.321, 1.295, 1.274),
            (2.495, 2.465, 2.426, 2.367, 2.292, 2.208, 2.122, 2.033, 1.969, 1.834, 1.727, 1.656, 1.586, 1.503, 1.440, 1.367, 1.324, 1.291, 1.274, 1.260),
            (2.291, 2.259, 2.236, 2.178, 2.126, 2.040, 1.967, 1.906, 1.843, 1.731, 1.652, 1.584, 1.528, 1.454, 1.405, 1.343, 1.309, 1.281, 1.266, 1.254),
            (2.166, 2.143, 2.139, 2.087, 2.024, 1.967, 1.903, 1.843, 1.786, 1.687, 1.613, 1.553, 1.500, 1.429, 1.387, 1.330, 1.299, 1.276, 1.262, 1.253),
            (2.125, 2.081, 2.055, 2.006, 1.966, 1.897, 1.860, 1.808, 1.744, 1.658, 1.583, 1.528, 1.481, 1.420, 1.375, 1.323, 1.294, 1.274, 1.258, 1.250),
            (2.030, 2.019, 2.014, 1.984, 1.917, 1.851, 1.811, 1.750, 1.712, 1.617, 1.567, 1.507, 1.460, 1.405, 1.364, 1.314, 1.289, 1.268, 1.256, 1.247),
            (1.926, 1.939, 1.924, 1.889, 1.848, 1.811, 1.775, 1.731, 1.688, 1.597, 1.533, 1.485, 1.447, 1.388, 1.353, 1.308, 1.285, 1.264, 1.252, 1.246),
        ),
        "p": (
            (1.540, 1.525, 1.471, 1.391, 1.300, 1.215, 1.139, 1.077, 1.051, 1.011, 0.982, 0.962, 0.945, 0.929, 0.917, 0.906, 0.899, 0.895, 0.893, 0.892),
            (1.352, 1.340, 1.306, 1.239, 1.174, 1.109, 1.049, 1.030, 1.006, 0.978, 0.960, 0.939, 0.931, 0.913, 0.905, 0.897, 0.895, 0.893, 0.891, 0.890),
            (1.259, 1.252, 1.221, 1.174, 1.112, 1.062, 1.030, 1.007, 0.989, 0.967, 0.943, 0.930, 0.922, 0.910, 0.902, 0.895, 0.893, 0.890, 0.823, 0.620),
            (1.213, 1.209, 1.168, 1.132, 1.088, 1.032, 1.012, 0.996, 0.980, 0.957, 0.939, 0.925, 0.918, 0.908, 0.899, 0.895, 0.892, 0.830, 0.605, 0.395),
            (1.166, 1.173, 1.152, 1.118, 1.067, 1.038, 1.007, 0.988, 0.980, 0.953, 0.938, 0.925, 0.917, 0.905, 0.898, 0.893, 0.891, 0.660, 0.436, 0.072),
            (1.125, 1.119, 1.097, 1.066, 1.037, 1.020, 1.001, 0.987, 0.970, 0.954, 0.928, 0.923, 0.915, 0.902, 0.896, 0.892, 0.781, 0.419, 0.011, 0.011),
            (1.100, 1.087, 1.070, 1.053, 1.030, 1.012, 0.991, 0.975, 0.963, 0.946, 0.929, 0.919, 0.909, 0.901, 0.896, 0.892, 0.506, 0.011, 0.011, 0.011),
        ),
    },
}
