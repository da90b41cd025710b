"""Grading a stacked master against what the rig and the night allowed (pure).

Numbers in, a frozen :class:`MasterGrade` out; no files, no Siril, no clock. The I/O side
(:mod:`focuswatch.render.report`, :mod:`focuswatch.siril`) measures the subs and the master and
hands the numbers here.

The limit
---------
A master cannot be sharper than its sharpest moments. The *rig limit* is the quadrature
sum of the blurs below, all as FWHM in pixels (arcsec follow from the plate scale); a master
graded alone (no stack of ours) has no ``resampling`` term:

* ``seeing`` — the atmosphere at its best this night. Unless the caller gives a seeing
  value (a seeing monitor, ``[rig] seeing_arcsec``), it is taken from the best subs: the
  sharpest quarter (``best_fraction``) of the accepted subs by FWHM, and of those the
  median of their star without the defocus blur it cannot do without (:func:`sub_core_px`):
  the diagnosis' *seeing core* (``SubQuality.seeing_fwhm_px``, the profile inversion's seeing
  once a defocus blur is taken out) for a sub that was out of focus, else the sub's FWHM —
  with the Airy and sampling terms below removed in quadrature (those subs already contain
  them). So a night that was in focus is limited by its best subs ("your master could be as
  sharp as your best quarter of subs"), and a night that was out of focus throughout is still
  judged against its seeing.
* ``airy`` — the diffraction core, FWHM ``1.029 * lambda * N`` at the focal plane
  (:func:`focuswatch.optics.airy_fwhm_um`) divided by the pixel size.
* ``sampling`` — the pixel's own width. A square pixel of width ``p`` convolves the image
  with a box whose variance is ``p**2 / 12`` per axis; for a near-Gaussian star that adds
  ``8 ln 2 * p**2 / 12`` to FWHM squared, i.e. a term of ``sqrt(8 ln 2 / 12) = 0.680``
  pixel (:data:`SAMPLING_FWHM_PX`).
* ``resampling`` (every Siril stack) — what making the master does to a star that was at the
  limit in the subs: Siril's registration resamples every sub but the reference with **bilinear**
  interpolation (measured on Siril 1.0.6's own output), a two-tap kernel ``(1 - t, t)`` of
  per-axis variance ``t (1 - t)`` for a sub-pixel shift ``t``, averaged over the stacked subs
  (from the matrices in Siril's log, or 1/6 for random shifts); its star matching is not exact
  either, and one-shot-colour subs are also debayered (RCD) first. How much FWHM that adds
  depends on the star's size: it is read from ``data/siril_resampling.json``, made by
  ``scripts/make_siril_resampling.py`` with the real ``siril-cli`` registering and stacking noisy
  GalSim subs as ``grade`` does (FWHM before and after, as focuswatch measures it), and scaled by
  the actual registration variance over the table's (:func:`resampling_fwhm_px`). At a typical
  variance of 0.13 px^2 it is ~0.9 px on 1.5 px mono stars (+18 %), ~1.1 px on colour ones
  (+24 %), and +3 % from 4 px.

``limit = sqrt(seeing**2 + airy**2 + sampling**2 + resampling**2)``.

The letter
----------
``ratio = master FWHM / limit``; the letter is the first row whose upper bound the ratio
does not exceed (:attr:`GradeConfig.letter_limits`):

=======  ==========  ===============================================================
letter   ratio       meaning
=======  ==========  ===============================================================
A        <= 1.15     as sharp as the night allowed (the seeing changing between subs
                     costs up to ~10 %)
B        <= 1.30     close to the limit: a few soft subs or a little drift
C        <= 1.50     noticeably soft: reject the subs listed and restack
D        <= 1.75     soft: focus, trailing or seeing cost a lot of detail
E        <= 2.00     very soft: the master is twice the night's best
F        > 2.00      something was wrong most of the night
=======  ==========  ===============================================================

The A band was derived on physical-optics nights (GalSim, real ``siril-cli``; docs/siril.md,
*The letters on physical nights*): in focus, under steady seeing and under seeing that changes
between subs, at 1.4-4.3 px stars, the ratio stays under it. A master's FWHM barely shows a
minority of defocused subs (their light spreads into a pedestal under the sharp subs' core:
4 of 8 subs 0.9-2.2 CFZ out cost the master only 5-13 % of FWHM), so the letter also takes the
grade's own blame: a sub lost to focus or trailing (:data:`FAULT_CAUSES`) makes the master B at
best, and ``fault_share_for_c`` (a quarter) of the subs or more C at best: a stack without them
is sharper, so the master was not as sharp as the night allowed.

Subs that dragged the master down
---------------------------------
Each accepted sub is compared with the best subs' FWHM. A sub whose FWHM exceeds it by
more than ``soft_factor`` (1.25) is *soft*; its cause is told from its own shape:
eccentricity above ``trail_eccentricity`` (0.55, b/a < 0.83) is **trailing**; a
flat-topped profile (half-flux diameter / FWHM below ``flat_profile_ratio``, 0.85, see
``focuswatch.stars``) or an FWHM growth above ``focus_factor`` with a steady profile is
**focus**; otherwise **seeing**. A sub with fewer than ``cloud_star_fraction`` (50 %) of
the median star count is **clouds**. Every sub with a cause is on the reject list.

>>> g = master(3.3, plate_scale_arcsec_px=1.0, best_subs_fwhm_px=3.0)
>>> g.letter, round(g.ratio, 2)
('A', 1.1)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from functools import cache

import numpy as np

from focuswatch.diagnose.config import check_limits
from focuswatch.errors import CalibrationDataError
from focuswatch.optics import Rig, airy_fwhm_um
from focuswatch.model.records import Record

#: FWHM-equivalent of the pixel box: sqrt(8 ln 2 / 12) pixels.
SAMPLING_FWHM_PX = math.sqrt(8.0 * math.log(2.0) / 12.0)

LETTERS = ("A", "B", "C", "D", "E", "F")

EXPLANATIONS = {
    "A": "as sharp as the night allowed: the master is within {pct:.0f} % of the limit set by the seeing, "
         "the Airy disk and the pixels",
    "B": "close to the limit ({pct:.0f} % above it): a few soft subs or a little drift cost some detail",
    "C": "noticeably soft ({pct:.0f} % above the limit): reject the subs listed and stack again",
    "D": "soft ({pct:.0f} % above the limit): focus, trailing or seeing cost a lot of detail",
    "E": "very soft ({pct:.0f} % above the limit): the master is nearly twice as blurred as the night's best",
    "F": "far from the limit ({pct:.0f} % above it): something was wrong for most of the night",
}

#: Causes that are the rig's faults, fixed at the telescope (not the sky's: seeing, clouds): a sub
#: lost to them means a restack without it is sharper, so the master was not as sharp as the night allowed.
FAULT_CAUSES = ("focus", "trailing")

CAUSE_ADVICE = {
    "focus": "refocus more often (temperature or time trigger) or check the autofocus fits",
    "seeing": "the atmosphere: reject those subs or weight the stack by FWHM",
    "trailing": "guiding, wind or a loose cable: check the guide graph and balance",
    "clouds": "clouds or haze: those subs add noise, not signal",
}


@dataclass(frozen=True)
class GradeConfig(Record):
    """Thresholds of the grade (unitless ratios unless the name says otherwise).

    Settable from the ``[grade]`` table of the TOML file; checked against :attr:`LIMITS`.
    Whether a soft sub lost its sharpness to focus or to the seeing is not a threshold on
    its size: it is the diagnosis' calibrated profile call (:func:`focuswatch.diagnose.
    blur_from_profile`, generated physical-optics tables), the same one the per-frame
    diagnosis makes, with ``focus_blur_to_seeing`` its limit.
    """

    letter_limits: tuple[float, float, float, float, float] = (1.15, 1.30, 1.50, 1.75, 2.00)
    best_fraction: float = 0.25
    soft_factor: float = 1.25
    #: Without a profile (no HFR or HFD/FWHM for the sub): FWHM over the best subs above which
    #: a soft sub is put down to focus (the former size-only rule).
    focus_factor: float = 1.6
    trail_eccentricity: float = 0.55
    flat_profile_ratio: float = 0.85
    cloud_star_fraction: float = 0.5
    min_roundness: float = 0.85
    #: Smallest defocus blur / seeing FWHM that the profile allows, above which a soft sub is
    #: out of focus (the diagnosis' ``focus_miss_blur_ratio``).
    focus_blur_to_seeing: float = 0.55

    #: Share of the stacked subs blamed on focus or trailing (:data:`FAULT_CAUSES`) from which the
    #: master is graded C at best ("reject the subs listed and stack again"); any such sub makes it B
    #: at best. A master's FWHM barely shows a minority of defocused subs (their light spreads into
    #: a pedestal under the sharp subs' core): on GalSim nights with 4 of 8 subs 0.9-2.2 CFZ out, the
    #: master's FWHM was only 5-13 % above the in-focus night's, within the in-focus nights' own
    #: spread of the ratio (see docs/siril.md, *The letters on physical nights*).
    fault_share_for_c: float = 0.25

    #: (low, high) allowed for each setting, inclusive.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "letter_limits": (1.0, 20.0), "best_fraction": (0.01, 1.0), "soft_factor": (1.0, 10.0),
        "focus_factor": (1.0, 20.0), "trail_eccentricity": (0.0, 1.0), "flat_profile_ratio": (0.3, 1.5),
        "cloud_star_fraction": (0.0, 1.0), "min_roundness": (0.0, 1.0), "focus_blur_to_seeing": (0.05, 10.0),
        "fault_share_for_c": (0.0, 1.0),
    }

    def __post_init__(self) -> None:
        check_limits(self, self.LIMITS)
        if list(self.letter_limits) != sorted(self.letter_limits):
            raise ValueError(f"letter_limits = {self.letter_limits!r}: expected increasing limits")


@dataclass(frozen=True)
class SubQuality(Record):
    """The numbers the grade needs from one sub's measurement (see ``stars.FrameStats``)."""

    file: str
    fwhm_px: float | None
    hfr_px: float | None = None
    eccentricity: float | None = None
    profile_ratio: float | None = None
    n_stars: int = 0
    background_adu: float | None = None
    filter_name: str | None = None
    timestamp: float | None = None
    seeing_fwhm_px: float | None = None
    blur_to_seeing: float | None = None
    #: The diagnosis' own focus call on this sub (``label == "focus_miss"``), made with the night's
    #: seeing witness (``diagnose.night_witnesses``): the profile shape with its defocus-in-CFZ gate
    #: and the star's size against the night's in-focus subs. ``None``: no diagnosis, the grade
    #: makes the profile call itself.
    diagnosis_focus_miss: bool | None = None

    @classmethod
    def from_stats(cls, stats: Any, seeing_fwhm_px: float | None = None,
                   blur_to_seeing: float | None = None, *,
                   diagnosis_focus_miss: bool | None = None) -> "SubQuality":
        """Build from a ``stars.FrameStats`` (or anything with the same attributes).

        ``seeing_fwhm_px`` is the seeing core of the sub without its defocus blur (from
        ``diagnose.frame(...).evidence.seeing_fwhm_px``), when known; ``blur_to_seeing`` the
        diagnosis' smallest plausible defocus blur over the seeing
        (``evidence.min_blur_to_seeing``); without it the grade runs the same profile call
        on the sub's HFR and HFD/FWHM. ``diagnosis_focus_miss``: the diagnosis' own focus
        call (its label is ``focus_miss``), which then decides focus versus seeing for a soft sub.
        """
        meta = getattr(stats, "meta", None)
        return cls(file=str(getattr(stats, "file", "") or ""), fwhm_px=getattr(stats, "fwhm_px", None),
                   hfr_px=getattr(stats, "hfr_px", None), eccentricity=getattr(stats, "eccentricity", None),
                   profile_ratio=getattr(stats, "profile_ratio", None),
                   n_stars=int(getattr(stats, "n_stars", 0) or 0),
                   background_adu=getattr(stats, "background_adu", None),
                   filter_name=getattr(meta, "filter_name", None) if meta else None,
                   timestamp=getattr(meta, "timestamp", None) if meta else None,
                   seeing_fwhm_px=seeing_fwhm_px, blur_to_seeing=blur_to_seeing,
                   diagnosis_focus_miss=diagnosis_focus_miss)


@dataclass(frozen=True)
class SubVerdict(Record):
    """How one sub compares with the best subs, and why it is soft (``cause``)."""

    file: str
    fwhm_px: float | None
    fwhm_vs_best: float | None
    cause: str | None
    reject: bool
    detail: str


@dataclass(frozen=True)
class MasterGrade:
    """The grade of a master (field names are the ``grade --json`` keys).

    FWHMs are in pixels (``_px``) and arcsec (``_arcsec``, ``None`` without a plate scale).
    ``letter`` and ``ratio`` are ``None`` when neither a seeing value nor measured subs
    say what the limit is.
    """

    letter: str | None
    ratio: float | None
    explanation: str
    master_fwhm_px: float | None
    master_fwhm_arcsec: float | None
    limit_fwhm_px: float | None
    limit_fwhm_arcsec: float | None
    seeing_fwhm_px: float | None
    seeing_fwhm_arcsec: float | None
    seeing_source: str | None
    airy_fwhm_px: float | None
    sampling_fwhm_px: float
    best_subs_fwhm_px: float | None
    n_best_subs: int
    plate_scale_arcsec_px: float | None
    roundness: float | None
    roundness_ok: bool | None
    n_stars: int
    noise_adu: float | None
    siril_fwhm_px: float | None = None
    siril_vs_own_pct: float | None = None
    #: the stacking term (registration, and the debayer of one-shot-colour subs; 0 without a stack)
    resampling_fwhm_px: float = 0.0
    #: the registration's per-axis variance it was worked out from (None: not a stack)
    registration_var_px2: float | None = None
    causes: Mapping[str, int] = field(default_factory=dict)
    subs: tuple[SubVerdict, ...] = ()
    reject: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: the letter the ratio alone gives; ``letter`` is worse when subs blamed on focus or trailing
    #: (:data:`FAULT_CAUSES`) capped it, so a reader of the JSON sees the cap without parsing text
    ratio_letter: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["subs"] = [s.to_dict() for s in self.subs]
        d["causes"] = dict(self.causes)
        d["reject"] = list(self.reject)
        d["advice"] = list(self.advice)
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MasterGrade":
        names = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in names}
        kw["subs"] = tuple(SubVerdict(**s) for s in d.get("subs", ()))
        kw["reject"] = tuple(d.get("reject", ()))
        kw["advice"] = tuple(d.get("advice", ()))
        kw["notes"] = tuple(d.get("notes", ()))
        kw["causes"] = dict(d.get("causes", {}))
        return cls(**kw)


from focuswatch.model.numerics import finite_median  # noqa: E402 - the one median helper, re-exported here


def letter_for(ratio: float, config: GradeConfig = GradeConfig()) -> str:
    """The letter for a ratio master/limit.

    >>> letter_for(1.0), letter_for(1.2), letter_for(1.6), letter_for(2.5)
    ('A', 'B', 'D', 'F')
    """
    for letter, upper in zip(LETTERS, config.letter_limits):
        if ratio <= upper:
            return letter
    return LETTERS[-1]


#: Siril's registration resamples with bilinear interpolation: over random sub-pixel shifts the
#: two-tap kernel's per-axis variance t (1 - t) averages to 1/6 px^2.
RANDOM_SHIFT_VAR_PX2 = 1.0 / 6.0
RESAMPLING_DATA = "siril_resampling.json"


@cache
def resampling_table() -> dict[str, Any]:
    """``data/siril_resampling.json`` (see the module docstring), read on first use."""
    from focuswatch import calibration

    remedy = "regenerate it with scripts/make_siril_resampling.py"
    path = calibration.data_file(RESAMPLING_DATA)
    data = calibration.read_data_json(path, "Siril resampling table", remedy)
    try:
        st = data["stack"]
        rows = [st["fwhm_true_px"], st["fwhm_registered_true_px"], st["sunlike"]["fwhm_registered_px"],
                st["grey"]["fwhm_registered_px"]]
        if len({len(r) for r in rows}) != 1 or not float(st["registration_var_px2"]) > 0:
            raise ValueError("rows of different lengths or no registration variance")
    except (ValueError, KeyError, TypeError) as exc:
        raise CalibrationDataError(f"{path}: unreadable Siril resampling table ({exc}); {remedy}") from None
    return data


def registration_var_px2(transforms: Sequence[Sequence[float]], n_subs: int,
                         frame_size_px: tuple[int, int] | None = None) -> float | None:
    """Per-axis variance (px^2) of the bilinear resampling, averaged over the ``n_subs`` stacked subs.

    ``transforms``: the matrices ``(a, b, c, d, e, f)`` of the subs Siril moved (the reference
    is not resampled: its variance is 0). Each sub's sub-pixel phase ``t`` is read at a 5 x 5
    grid over the frame (a rotation changes it across the field) and gives ``t (1 - t)`` per
    axis. ``None`` when there is nothing to go on.

    >>> round(registration_var_px2([(1, 0, 0.5, 0, 1, 0.5)], 2), 4)  # half a pixel: 1/4, over 2 subs
    0.125
    """
    if n_subs <= 0 or not transforms:
        return None
    w, h = frame_size_px or (1, 1)
    gx, gy = np.meshgrid(np.round(np.linspace(0, w - 1, 5)), np.round(np.linspace(0, h - 1, 5)))  # pixel centres
    total = 0.0
    for t in transforms:
        a, b, c, d, e, f = (float(v) for v in t[:6])
        px = (a * gx + b * gy + c) % 1.0
        py = (d * gx + e * gy + f) % 1.0
        total += float(np.mean(px * (1 - px) + py * (1 - py)) / 2.0)
    return total / max(n_subs, len(transforms) + 1)


def resampling_fwhm_px(star_fwhm_px: float, var_px2: float | None = None, debayered: bool = False) -> float:
    """FWHM (px, in quadrature) that stacking adds to a star of ``star_fwhm_px`` in the subs.

    From the measured table (:func:`resampling_table`): the master's FWHM squared minus the
    subs', scaled by ``var_px2`` (the registration's variance; ``None``: random shifts, 1/6)
    over the table's own. ``debayered`` takes the one-shot-colour rows (debayer, then
    register; the mean of a sun-like and a grey star), else the mono rows. Outside the
    table's sizes the growth per unit variance of its nearest end is used.
    """
    tab = resampling_table()["stack"]
    f0 = np.asarray(tab["fwhm_true_px"], float)
    if debayered:
        f1 = (np.asarray(tab["sunlike"]["fwhm_registered_px"], float)
              + np.asarray(tab["grey"]["fwhm_registered_px"], float)) / 2.0
    else:
        f1 = np.asarray(tab["fwhm_registered_true_px"], float)
    per_var = np.maximum(f1 ** 2 - f0 ** 2, 0.0) / float(tab["registration_var_px2"])
    v = RANDOM_SHIFT_VAR_PX2 if var_px2 is None else max(float(var_px2), 0.0)
    return math.sqrt(float(np.interp(star_fwhm_px, f0, per_var)) * v)


def airy_fwhm_px_for(rig: Rig | None, wavelength_nm: float | None = None) -> float | None:
    """Airy core FWHM in (binned) pixels for ``rig``; ``None`` when N or the pixel is unknown."""
    if rig is None or rig.f_ratio is None or not rig.effective_pixel_um:
        return None
    return airy_fwhm_um(rig.f_ratio, wavelength_nm or rig.wavelength_nm) / rig.effective_pixel_um


def _ok(v: float | None) -> bool:
    return v is not None and math.isfinite(v) and v > 0


def best_subs(subs: Sequence[SubQuality], best_fraction: float = 0.25) -> list[SubQuality]:
    """The sharpest ``best_fraction`` of the subs by FWHM (at least one)."""
    good = sorted((s for s in subs if _ok(s.fwhm_px)), key=lambda s: s.fwhm_px)  # type: ignore[arg-type,return-value]
    if not good:
        return []
    return good[:max(1, int(math.ceil(len(good) * best_fraction)))]


def best_subs_fwhm(subs: Sequence[SubQuality], best_fraction: float = 0.25) -> tuple[float | None, int]:
    """Median FWHM (px) of the sharpest ``best_fraction`` of subs, and how many that is."""
    best = best_subs(subs, best_fraction)
    return finite_median([s.fwhm_px for s in best]), len(best)  # type: ignore[misc]


def sub_core_px(s: SubQuality) -> float | None:
    """The sub's star without the defocus blur its profile cannot do without (px), or ``None``
    when that is the star itself.

    The diagnosis' seeing core (``seeing_fwhm_px``, never above the FWHM) counts only where the
    sub was out of focus: the diagnosis' own call says so (``diagnosis_focus_miss``), or, where
    it made no call between focus and seeing, a defocus is needed to explain the profile (the
    smallest plausible blur over the seeing, ``blur_to_seeing``, is above 0, or was not given).
    On a sub the diagnosis calls in focus (or blurred by the seeing), the blur of its
    best-fitting family is no measurement: near focus the shape barely tells a small blur from
    a slightly different seeing, and the core read 10-35 % under the FWHM of in-focus
    physical-optics stars (GalSim Kolmogorov x Airy, 8 subs: 2.1-3.1 px for 3.36 px stars,
    1.24-1.34 px for 1.43 px stars) that were already as sharp as the night allowed. Nothing is
    taken out of such a sub.
    """
    if not _ok(s.seeing_fwhm_px) or not _ok(s.fwhm_px):
        return None
    if s.diagnosis_focus_miss is False:
        return None
    if (s.diagnosis_focus_miss is None and s.blur_to_seeing is not None and math.isfinite(s.blur_to_seeing)
            and s.blur_to_seeing <= 0.0):
        return None
    return min(float(s.seeing_fwhm_px), float(s.fwhm_px))  # type: ignore[arg-type]


def best_subs_core(subs: Sequence[SubQuality], best_fraction: float = 0.25) -> tuple[float | None, str]:
    """Median seeing core (px) of the best subs: each sub's defocus-free star (:func:`sub_core_px`)
    where the diagnosis found a defocus, else its FWHM; and which of the two it is (the seeing
    core when at least half of the best subs have one)."""
    best = best_subs(subs, best_fraction)
    cores = [sub_core_px(s) for s in best]
    n_cores = sum(1 for c in cores if c is not None)
    if n_cores and n_cores * 2 >= len(best):
        return finite_median([c if c is not None else s.fwhm_px for c, s in zip(cores, best)]), \
            "best subs (seeing core)"  # type: ignore[misc]
    return finite_median([s.fwhm_px for s in best]), "best subs"  # type: ignore[misc]


def sub_blur_to_seeing(s: SubQuality) -> float | None:
    """The smallest defocus blur / seeing FWHM the sub's profile allows: the diagnosis' own
    figure when given, else the same calibrated call on its HFR and HFD/FWHM
    (:func:`focuswatch.diagnose.blur_from_profile`); ``None`` without a profile."""
    if s.blur_to_seeing is not None and math.isfinite(s.blur_to_seeing):
        return float(s.blur_to_seeing)
    if not (_ok(s.hfr_px) and _ok(s.profile_ratio)):
        return None
    from focuswatch.diagnose import blur_from_profile

    return blur_from_profile(float(s.hfr_px), None, float(s.profile_ratio)).min_blur_to_seeing  # type: ignore[arg-type]


def judge_subs(subs: Sequence[SubQuality], best_fwhm_px: float | None,
               config: GradeConfig = GradeConfig()) -> tuple[SubVerdict, ...]:
    """Tell which subs dragged the master down and why (focus, seeing, trailing, clouds)."""
    med_stars = finite_median([float(s.n_stars) for s in subs if s.n_stars > 0]) or 0.0
    out = []
    for s in subs:
        ratio = (s.fwhm_px / best_fwhm_px) if (s.fwhm_px and best_fwhm_px) else None
        cause: str | None = None
        detail = "fine"
        if med_stars and s.n_stars < config.cloud_star_fraction * med_stars:
            cause = "clouds"
            detail = f"{s.n_stars} stars against a median of {med_stars:.0f}"
        elif s.eccentricity is not None and s.eccentricity > config.trail_eccentricity:
            cause = "trailing"
            detail = f"elongated stars (eccentricity {s.eccentricity:.2f})"
        elif ratio is not None and ratio > config.soft_factor:
            flat = s.profile_ratio is not None and s.profile_ratio < config.flat_profile_ratio
            x_low = sub_blur_to_seeing(s)
            if s.diagnosis_focus_miss is not None:  # the diagnosis' own call (shape, CFZ gate, witness)
                focus = s.diagnosis_focus_miss
                shape = ("the diagnosis' focus miss (profile shape, and star size against the night's in-focus "
                         "subs)" if focus else "a seeing profile (the diagnosis)")
            elif x_low is not None:
                focus = flat or x_low >= config.focus_blur_to_seeing
                shape = (f"flat-topped profile ({s.profile_ratio:.2f})" if flat else
                         f"a defocus blur of at least {x_low:.2f}x the seeing" if focus else
                         f"a seeing profile (HFD/FWHM {s.profile_ratio:.2f})")
            else:  # no profile to read: the size alone
                focus = flat or ratio > config.focus_factor
                shape = f"flat-topped profile ({s.profile_ratio:.2f})" if flat else "a large, steady growth"
            if focus:
                cause = "focus"
                detail = f"FWHM {ratio:.2f}x the best subs with {shape}"
            else:
                cause = "seeing"
                known = x_low is not None or s.diagnosis_focus_miss is not None
                detail = f"FWHM {ratio:.2f}x the best subs with {shape if known else 'a peaked profile'}"
        elif ratio is not None:
            detail = f"FWHM {ratio:.2f}x the best subs"
        out.append(SubVerdict(s.file, s.fwhm_px, ratio, cause, cause is not None, detail))
    return tuple(out)


def master(master_fwhm_px: float | None, *, plate_scale_arcsec_px: float | None = None, rig: Rig | None = None,
           wavelength_nm: float | None = None, subs: Sequence[SubQuality] = (),
           best_subs_fwhm_px: float | None = None, seeing_fwhm_arcsec: float | None = None,
           roundness: float | None = None, n_stars: int = 0, noise_adu: float | None = None,
           siril_fwhm_px: float | None = None, stacked: bool = False, registration_var_px2: float | None = None,
           debayered: bool = False, config: GradeConfig = GradeConfig()) -> MasterGrade:
    """Grade a master's FWHM (px) against the rig limit (see the module docstring).

    Parameters
    ----------
    master_fwhm_px
        The master's median star FWHM in pixels (focuswatch's Moffat measurement, or
        Siril's when ours is missing).
    plate_scale_arcsec_px
        arcsec per pixel; needed for arcsec values and to use ``seeing_fwhm_arcsec``.
    rig
        For the Airy term (focal ratio, pixel size, wavelength); without it the term is 0.
    subs, best_subs_fwhm_px
        The accepted subs' measurements (to find the best subs and the culprits), or just
        the best subs' FWHM in pixels.
    seeing_fwhm_arcsec
        A seeing value from elsewhere; when given it is used instead of the best subs.
    roundness
        Minor/major FWHM of the master's stars (1 = round).
    stacked, registration_var_px2, debayered
        The master was stacked from these subs by Siril: the limit gains the resampling term
        (:func:`resampling_fwhm_px`; ``registration_var_px2`` from Siril's matrices,
        :func:`registration_var_px2`, ``None`` for random shifts), with the one-shot-colour
        rows when the subs were ``debayered``.
    """
    notes: list[str] = []
    scale = plate_scale_arcsec_px if plate_scale_arcsec_px and plate_scale_arcsec_px > 0 else None
    airy = airy_fwhm_px_for(rig, wavelength_nm)
    if airy is None:
        notes.append("Airy term left out: the focal ratio or pixel size is unknown")
    samp = SAMPLING_FWHM_PX
    instrument2 = (airy or 0.0) ** 2 + samp ** 2
    n_best = 0
    core: float | None = best_subs_fwhm_px
    core_source = "best subs"
    if subs and best_subs_fwhm_px is None:
        best_subs_fwhm_px, n_best = best_subs_fwhm(subs, config.best_fraction)
        core, core_source = best_subs_core(subs, config.best_fraction)
    elif best_subs_fwhm_px is not None:
        n_best = 1
    seeing_px: float | None = None
    source: str | None = None
    if seeing_fwhm_arcsec and scale:
        seeing_px, source = seeing_fwhm_arcsec / scale, "given"
    elif core:
        seeing_px = math.sqrt(max(core ** 2 - instrument2, 0.0))
        source = core_source
    elif seeing_fwhm_arcsec and not scale:
        notes.append("the seeing given cannot be used without a plate scale")
    resamp = 0.0
    if stacked and seeing_px is not None:
        resamp = resampling_fwhm_px(math.sqrt(seeing_px ** 2 + instrument2), registration_var_px2, debayered)
        if registration_var_px2 is None:
            notes.append("registration shifts unknown: random sub-pixel shifts assumed for the resampling term")
    limit = math.sqrt(seeing_px ** 2 + instrument2 + resamp ** 2) if seeing_px is not None else None
    ratio = master_fwhm_px / limit if (master_fwhm_px and limit) else None
    letter = ratio_letter = letter_for(ratio, config) if ratio is not None else None
    verdicts = judge_subs(subs, best_subs_fwhm_px, config) if subs else ()
    causes: dict[str, int] = {}
    for v in verdicts:
        if v.cause:
            causes[v.cause] = causes.get(v.cause, 0) + 1
    faults = sum(causes.get(c, 0) for c in FAULT_CAUSES)
    capped = letter
    if letter is not None and faults:
        capped = max(letter, "C" if faults >= config.fault_share_for_c * len(verdicts) else "B")
    if letter is None:
        if not master_fwhm_px:
            explanation = "no grade: no stars could be measured on the master"
        else:
            explanation = ("no grade: the limit is unknown; give the seeing (--seeing-arcsec) and the rig, "
                           "or grade a session folder so the subs say what the night allowed")
    else:
        explanation = EXPLANATIONS[capped].format(pct=max(ratio - 1.0, 0.0) * 100.0)  # type: ignore[index]
        if capped != letter:
            explanation += (f"; graded {capped}, not {letter}: {faults} of {len(verdicts)} subs were out of focus or "
                            "trailing, and a stack without them is sharper")
        letter = capped
    rnd_ok = None if roundness is None else roundness >= config.min_roundness
    if rnd_ok is False:
        explanation += f"; stars are elongated (roundness {roundness:.2f}): trailing, tilt or a registration problem"
    if causes and letter not in (None, "A"):
        main = max(causes.items(), key=lambda kv: kv[1])
        explanation += f"; most of the loss: {main[0]} ({main[1]} of {len(verdicts)} subs)"
    advice = tuple(f"{c}: {CAUSE_ADVICE[c]}" for c in sorted(causes, key=lambda c: -causes[c]))
    rej = tuple(v.file for v in verdicts if v.reject)
    vs_pct = 100.0 * (siril_fwhm_px / master_fwhm_px - 1.0) if (siril_fwhm_px and master_fwhm_px) else None
    arc = (lambda v: v * scale if (v is not None and scale) else None)
    return MasterGrade(
        letter=letter, ratio=ratio, explanation=explanation,
        master_fwhm_px=master_fwhm_px, master_fwhm_arcsec=arc(master_fwhm_px),
        limit_fwhm_px=limit, limit_fwhm_arcsec=arc(limit),
        seeing_fwhm_px=seeing_px, seeing_fwhm_arcsec=arc(seeing_px), seeing_source=source,
        airy_fwhm_px=airy, sampling_fwhm_px=samp, best_subs_fwhm_px=best_subs_fwhm_px, n_best_subs=n_best,
        plate_scale_arcsec_px=scale, roundness=roundness, roundness_ok=rnd_ok, n_stars=int(n_stars),
        noise_adu=noise_adu, siril_fwhm_px=siril_fwhm_px, siril_vs_own_pct=vs_pct,
        resampling_fwhm_px=resamp, registration_var_px2=registration_var_px2 if stacked else None, causes=causes,
        subs=verdicts, reject=rej, advice=advice, notes=tuple(notes), ratio_letter=ratio_letter,
    )


def roundness_from_eccentricity(eccentricity: float | None) -> float | None:
    """Minor/major axis ratio ``b/a = sqrt(1 - e**2)`` (1 = round).

    >>> round(roundness_from_eccentricity(0.6), 2)
    0.8
    """
    if eccentricity is None or not math.isfinite(eccentricity):
        return None
    return math.sqrt(max(0.0, 1.0 - min(eccentricity, 1.0) ** 2))
