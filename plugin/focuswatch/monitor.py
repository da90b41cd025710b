"""The refocus policy: when to ask for an autofocus, and why. Pure: no files, no clock.

Every light frame becomes a :class:`FrameRecord`; :func:`decide` turns the frames since the
last autofocus (``history``), the :class:`PolicyState` and the frame's time (``now``) into a
:class:`Decision` — ``ok``, ``refocus`` or ``skip`` — with its reasons and figures.
:class:`Monitor` is the small stateful wrapper the watcher, ``replay`` and the demo share.

Rules (each one pure function below; a refocus lists every rule that fired). This table and
the vetoes' below are generated from :data:`RULES` and :data:`VETOES` (``focuswatch rules``
prints the same rows with your settings).

{RULE_TABLE}

The defocus limit is ``defocus_limit_cfz`` x the critical focus zone (total width,
``optics.cfz_um`` at the filter's wavelength); 0.5 is the edge of the zone, the default 0.4
asks for a refocus before the stars leave it. HFR growth becomes defocus with the exact
seeing-plus-annulus model (``optics.defocus_um_from_hfr``) against the per-filter baseline
(median of the first ``baseline_frames`` accepted frames after each autofocus), scaled by
``airmass**0.6`` when ``airmass_correction`` is on (seeing grows with airmass; focus does
not). Without a focal ratio or pixel size the limit falls back to
``fallback_hfr_increase_pct`` % HFR growth (and ``drift`` to the Theil-Sen trend's lower bound).

Why a model and not a single frame: near focus a star grows with the *square* of the
defocus, so half the zone adds only ~7 % to a 1.4 px HFR, about one frame of seeing jitter.
A single frame's defocus estimate swings by a whole zone; the drift model pools every frame
since the autofocus (and fits the in-focus level, so a baseline taken in lucky seeing is not
mistaken for drift). The seeing jitter is never trusted below ``jitter_floor_pct`` and a
jitter measured on few frames raises the bar (Student's t with the frames' degrees of
freedom plus ``prior_dof``). HFD/FWHM (``profile_ratio``) flattens with defocus but not with
seeing, so when measured it is a second witness in the fit and the ``seeing`` veto's evidence.

Baselines that frames already out of focus cannot fool (:mod:`focuswatch.policy_baseline`):
the first frames after an autofocus are in focus only in the filter it was made with. For
the others (a filter change without a refocus) and for every frame, an *independent*
reference is kept: the night's best of the filter over earlier autofocus runs, the other
filters' in-focus size scaled by wavelength, and the rig's in-focus size for a measured seeing.
The ``reference`` rule compares the last ``reference_frames`` frames with it, and the drift
model takes it as a prior on its in-focus level. The frame-to-frame scatter behind every
significance test is measured over the whole night (never below the current segment's), so
3-6 long exposures after an autofocus are judged against a scatter known to tens of degrees
of freedom. HFR-only records (NINA's image statistics, :class:`HfrRecord`)
work the same way without the profile witness.

Vetoes (written once, applied to every rule)

{VETO_TABLE}

"skip" sets the frame aside (not counted in the baseline or trend); "hold" keeps the frame
(decision ``ok``) but holds the refocus back, saying which rule was held. Adding a rule is one
function, one row in :data:`RULES` (the tables above follow) and one table-driven test.

>>> m = Monitor(PolicyConfig(), Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=3.76))
>>> d = m.observe(FrameRecord(file="a.fits", time_s=0.0, n_stars=80, hfr_px=2.0, temp_c=10.0))
>>> d.decision, d.reasons[0]
('ok', 'building the in-focus baseline for filter - (1/3 frames)')
"""
from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from astropy.stats import mad_std

from focuswatch import diagnose as _diagnose
from focuswatch import optics
from focuswatch.errors import ConfigError
from focuswatch.policy_baseline import AIRMASS_EXPONENT, NightMemory, Reference, combined_jitter, reference_for

__all__ = ["AutofocusMark", "Decision", "FrameRecord", "HfrRecord", "Monitor", "PolicyConfig", "PolicyState", "RULES",
           "VETOES", "decide", "record_from_stats", "rules_table", "summarize"]
from focuswatch.optics import Rig
from focuswatch.records import Record

DECISIONS = ("ok", "refocus", "skip")



def _label_names(group: Any) -> frozenset[str]:
    """Label values as plain strings (the diagnosis may give them as an Enum)."""
    return frozenset(str(getattr(x, "value", x)) for x in group)


#: Diagnosis labels of stable optical defects: a refocus would not help, warn instead. The
#: diagnosis owns the labels: the sets are its groups, never a copy.
OPTICAL_LABELS: frozenset[str] = _label_names(_diagnose.OPTICAL_LABELS)
#: Diagnosis labels that set a frame aside: the stars are not telling us about focus
#: (the diagnosis's transient group; before it exports one: its labels that are neither
#: optical, focus nor seeing, i.e. trailing and dew).
TRANSIENT_LABELS: frozenset[str] = _label_names(
    getattr(_diagnose, "TRANSIENT_LABELS", None)
    or (set(_label_names(getattr(_diagnose, "LABELS", None) or getattr(_diagnose, "Label", ())))
        - OPTICAL_LABELS - _label_names(getattr(_diagnose, "REFOCUS_LABELS", ("focus_miss",)))
        - {"in_focus", "poor_seeing", "unknown"}))


# =========================================================================== configuration

@dataclass(frozen=True)
class PolicyConfig(Record):
    """Every threshold of the policy (the ``[policy]`` table); 0 / false switches a rule off.

    Units are in the names. Parse a TOML table with
    ``config.section_to_dataclass(PolicyConfig, cfg.policy, "policy")``.
    """

    temperature_delta_c: float = 1.0
    max_interval_min: float = 90.0
    refocus_on_filter_change: bool = True
    parfocal_filters: bool = False
    defocus_limit_cfz: float = 0.4
    confidence_z: float = 2.0
    drift_z: float = 3.5
    drift_z_cadence_s: float = 60.0
    trend_window_min: float = 60.0
    min_trend_frames: int = 5
    lookahead_frames: float = 2.0
    consecutive_frames: int = 3
    baseline_frames: int = 3
    jitter_floor_pct: float = 3.0
    prior_dof: float = 6.0
    profile_drop_min: float = 0.015
    profile_floor: float = 0.005
    fallback_hfr_increase_pct: float = 10.0
    hfr_increase_pct: float = 0.0
    min_stars: int = 8
    cloud_star_fraction: float = 0.5
    cloud_flux_fraction: float = 0.5
    max_eccentricity: float = 0.6
    eccentricity_rise: float = 0.15
    seeing_veto: bool = True
    cooldown_frames: int = 5
    focuser_jump_steps: int = 10
    airmass_correction: bool = True
    thin_cloud_star_fraction: float = 0.85
    night_jitter_floor_pct: float = 1.0
    night_jitter_min_dof: int = 8
    reference_frames: int = 2
    seeing_wander_pct_per_h: float = 3.0
    cross_filter_pct: float = 4.0
    rig_seeing_pct: float = 20.0
    filter_offsets: str = ""

    def __post_init__(self) -> None:
        parse_filter_offsets(self.filter_offsets)                # raises ConfigError naming the key
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi, what = _CONFIG_RANGES.get(f.name, (None, None, ""))
            if isinstance(value, bool) or lo is None:
                continue
            why = f" ({what})" if what else ""
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"[policy] {f.name} = {value!r}: must be a finite number{why}")
            if f.type in ("int", int) and float(value) != int(value):
                raise ConfigError(f"[policy] {f.name} = {value!r}: must be a whole number{why}")
            lo_open = isinstance(lo, tuple)
            low = lo[0] if lo_open else lo
            if (value <= low if lo_open else value < low) or value > hi:
                span = f"above {low:g}" if lo_open else f"from {low:g}"
                raise ConfigError(f"[policy] {f.name} = {value!r}: must be {span} up to {hi:g}{why}")
        for name in ("cloud_star_fraction", "cloud_flux_fraction"):
            if getattr(self, name) >= 1:
                raise ConfigError(f"[policy] {name} = {getattr(self, name)!r}: must be from 0 up to (not) 1")


_Z = "in standard deviations: 2 = 97.7 %, 3 = 99.87 %"
#: Allowed range of every numeric ``[policy]`` setting: (lowest, highest, what it is); a lowest
#: given as a 1-tuple is exclusive. Finite always: NaN or infinity is refused with the key's name.
_CONFIG_RANGES: dict[str, tuple[Any, float, str]] = {
    "temperature_delta_c": (0.0, 100.0, "°C; 0 = off"),
    "max_interval_min": (0.0, 1440.0, "minutes; 0 = off"),
    "defocus_limit_cfz": (0.0, 5.0, "a fraction of the critical focus zone, 0.5 is its edge; 0 = off"),
    "confidence_z": ((0.0,), 10.0, _Z),
    "drift_z": ((0.0,), 10.0, _Z),
    "drift_z_cadence_s": (0.0, 86400.0, "seconds between frames drift_z is meant for; 0 = the same bar at any cadence"),
    "trend_window_min": (0.0, 1440.0, "minutes; 0 = every frame since the autofocus"),
    "min_trend_frames": (3, 10000, "frames: a trend needs 3 or more"),
    "lookahead_frames": (0.0, 100.0, "frames"),
    "consecutive_frames": (0, 1000, "frames; 0 = off"),
    "baseline_frames": (1, 1000, "frames"),
    "jitter_floor_pct": (0.0, 100.0, "%"),
    "prior_dof": (0.0, 10000.0, "degrees of freedom"),
    "profile_drop_min": (0.0, 1.0, "HFD/FWHM"),
    "profile_floor": (0.0, 1.0, "HFD/FWHM"),
    "fallback_hfr_increase_pct": (0.0, 1000.0, "%"),
    "hfr_increase_pct": (0.0, 1000.0, "%; 0 = off"),
    "min_stars": (0, 1_000_000, "stars"),
    "cloud_star_fraction": (0.0, 1.0, "a fraction of the baseline, below 1; 0 = off"),
    "cloud_flux_fraction": (0.0, 1.0, "a fraction of the baseline, below 1; 0 = off"),
    "max_eccentricity": ((0.0,), 1.0, "eccentricity"),
    "eccentricity_rise": (0.0, 1.0, "eccentricity"),
    "cooldown_frames": (0, 100000, "frames; 0 = never ask again before an autofocus"),
    "focuser_jump_steps": (0, 10_000_000, "steps; 0 = off"),
    "reference_frames": (0, 100, "frames; 0 = off"),
    "night_jitter_floor_pct": (0.0, 100.0, "%, the floor once the night's scatter is well measured"),
    "night_jitter_min_dof": (1, 100000, "frame-to-frame differences"),
    "thin_cloud_star_fraction": (0.0, 1.0, "a fraction of the star count the stars' growth explains; 0 = off"),
    "seeing_wander_pct_per_h": (0.0, 100.0, "% per hour"),
    "cross_filter_pct": ((0.0,), 100.0, "%"),
    "rig_seeing_pct": ((0.0,), 200.0, "%"),
}


def parse_filter_offsets(text: str) -> dict[str, float]:
    """``[policy] filter_offsets``: the capture program's focus offsets per filter, in steps.

    Written ``"L=0 R=12 B=-30"`` (spaces or commas between entries), as NINA's filter wheel
    settings give them. A focuser move between two filters that matches the difference of
    their offsets (within ``focuser_jump_steps``) is the filter offset, not an autofocus.
    """
    out: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        name, eq, value = item.partition("=")
        try:
            steps = float(value)
        except ValueError:
            steps = math.nan
        if not eq or not name or not math.isfinite(steps):
            raise ConfigError(f"[policy] filter_offsets = {text!r}: {item!r} is not FILTER=STEPS "
                              f"(e.g. \"L=0 R=12 B=-30\")")
        out[name] = steps
    return out


# =========================================================================== inputs

@dataclass(frozen=True)
class FrameRecord(Record):
    """One measured frame as the policy sees it (from ``FrameStats`` plus the header).

    ``time_s`` is the capture time (DATE-OBS, seconds since the epoch, UTC); ``temp_c`` the
    focuser temperature (else ambient); ``star_flux_adu`` the median star flux and
    ``background_adu`` the sky level, both over the whole exposure. ``diagnosis`` is the
    label of the single-frame diagnosis when one was made, ``diagnosis_advice`` its advice.
    ``seeing_arcsec`` is a measured seeing FWHM when one is known (a seeing monitor);
    ``hfr_kind`` ``"nina"`` when ``hfr_px`` is NINA's flux-weighted HFR (HFR-only records,
    :class:`HfrRecord`), else ``None`` (the true half-flux radius).
    """

    file: str
    time_s: float
    n_stars: int = 0
    hfr_px: float | None = None
    fwhm_px: float | None = None
    eccentricity: float | None = None
    profile_ratio: float | None = None
    star_flux_adu: float | None = None
    background_adu: float | None = None
    exposure_s: float | None = None
    filter_name: str | None = None
    temp_c: float | None = None
    focuser_pos: int | None = None
    airmass: float | None = None
    is_light: bool = True
    diagnosis: str | None = None
    diagnosis_advice: str | None = None
    seeing_arcsec: float | None = None
    hfr_kind: str | None = None

    @property
    def flux_per_s(self) -> float | None:
        if self.star_flux_adu is None:
            return None
        return self.star_flux_adu / self.exposure_s if self.exposure_s else self.star_flux_adu


def record_from_stats(stats: Any, *, file: str, time_s: float, diagnosis: str | None = None,
                      diagnosis_advice: str | None = None) -> FrameRecord:
    """Build a :class:`FrameRecord` from a ``stars.FrameStats`` (its ``meta`` gives the header)."""
    meta = stats.meta
    return FrameRecord(
        file=file, time_s=float(time_s), n_stars=int(stats.n_stars or 0), hfr_px=stats.hfr_px,
        fwhm_px=stats.fwhm_px, eccentricity=stats.eccentricity, profile_ratio=stats.profile_ratio,
        star_flux_adu=stats.star_flux_adu, background_adu=stats.background_adu,
        exposure_s=meta.exposure_s, filter_name=meta.filter_name, temp_c=meta.temperature_c,
        focuser_pos=meta.focuser_pos, airmass=meta.airmass, is_light=meta.is_light,
        diagnosis=diagnosis, diagnosis_advice=diagnosis_advice)



# =========================================================================== HFR-only records

@dataclass(frozen=True)
class HfrRecord(Record):
    """One light frame as a capture program reports it, without pixels: what the policy needs.

    The fields map one to one onto N.I.N.A.'s image statistics (image history
    ``GET /v2/api/image-history`` and the Advanced API WebSocket event ``IMAGE-SAVE`` →
    ``ImageStatistics``):

    ==================  ==================  =======================================================
    field               NINA                meaning
    ==================  ==================  =======================================================
    ``file``            ``Filename``        the frame's (base) name: a key, never opened
    ``time_s``          ``Date``            capture time, seconds since 1970 UTC (convert the ISO
                                            string at the edge, e.g. ``statefile.parse_iso``)
    ``hfr_px``          ``HFR``             NINA's HFR (flux-weighted mean radius, px); 0 or NaN
                                            when NINA found no stars
    ``hfr_stdev_px``    ``HFRStDev``        scatter of the HFR over the stars (px), informative
    ``n_stars``         ``Stars``           stars detected
    ``filter_name``     ``Filter``          the filter (None / "" when there is no wheel)
    ``exposure_s``      ``ExposureTime``    seconds
    ``image_type``      ``ImageType``       LIGHT, FLAT, DARK... (only LIGHT is judged)
    ``temp_c``          --                  focuser temperature when known (°C)
    ``airmass``         --                  when known (the policy scales seeing by it)
    ``seeing_arcsec``   --                  a measured seeing FWHM (seeing monitor) if any
    ==================  ==================  =======================================================

    ``hfr_kind`` says which half-flux definition ``hfr_px`` uses: ``"nina"`` (NINA / ASTAP,
    flux-weighted mean radius) or ``"true"`` (radius enclosing half the flux, as
    ``focuswatch measure``). Growth ratios are nearly the same for both; only the comparison
    with the rig's expected size (:func:`infocus_hfr_px`, a true half-flux radius) needs it.
    """

    file: str
    time_s: float
    hfr_px: float | None
    n_stars: int = 0
    hfr_stdev_px: float | None = None
    filter_name: str | None = None
    exposure_s: float | None = None
    image_type: str = "LIGHT"
    temp_c: float | None = None
    airmass: float | None = None
    seeing_arcsec: float | None = None
    hfr_kind: str = "nina"

    def __post_init__(self) -> None:
        if self.hfr_kind not in ("nina", "true"):
            raise ValueError(f"hfr_kind must be 'nina' or 'true', not {self.hfr_kind!r}")

    @classmethod
    def from_nina(cls, stats: Mapping[str, Any], *, time_s: float, **extra: Any) -> "HfrRecord":
        """From NINA's ``ImageStatistics`` / image-history entry (keys as NINA spells them).

        ``time_s`` is NINA's ``Date`` already converted (this module reads no clock and parses
        no dates). Missing or NaN HFR gives ``hfr_px = None`` (the policy skips the frame).
        """
        def num(key: str) -> float | None:
            v = stats.get(key)
            try:
                x = float(v)
            except (TypeError, ValueError):
                return None
            return x if math.isfinite(x) else None

        hfr = num("HFR")
        stars = num("Stars")
        return cls(file=str(stats.get("Filename") or stats.get("FileName") or ""), time_s=float(time_s),
                   hfr_px=hfr if hfr and hfr > 0 else None, n_stars=int(stars or 0),
                   hfr_stdev_px=num("HFRStDev"), filter_name=(stats.get("Filter") or None),
                   exposure_s=num("ExposureTime"), image_type=str(stats.get("ImageType") or "LIGHT"),
                   **extra)

    def to_frame_record(self) -> "FrameRecord":
        """The :class:`FrameRecord` the policy consumes (no profile, no flux)."""
        return FrameRecord(file=self.file, time_s=float(self.time_s), n_stars=int(self.n_stars),
                           hfr_px=self.hfr_px, exposure_s=self.exposure_s, filter_name=self.filter_name,
                           temp_c=self.temp_c, airmass=self.airmass,
                           is_light=self.image_type.strip().upper() in ("LIGHT", ""),
                           seeing_arcsec=self.seeing_arcsec, hfr_kind=self.hfr_kind)


@dataclass(frozen=True)
class AutofocusMark(Record):
    """An autofocus the policy was told about (NINA report, ``autofocus-done``, focuser jump).

    ``time_s`` in seconds since the epoch; ``temp_c``/``filter_name``/``position`` when known.
    """

    time_s: float
    source: str = "autofocus-done"
    filter_name: str | None = None
    temp_c: float | None = None
    position: int | None = None


# =========================================================================== state

@dataclass(frozen=True)
class PolicyState(Record):
    """What the policy remembers between frames (besides the frames themselves).

    ``af_time_s``/``af_temp_c``/``af_filter`` describe the current focus: they come from the
    autofocus event when it says so, else from the first light frame after it (the frames'
    own clock, DATE-OBS, so a capture PC with a wrong clock does not matter).
    ``waiting_since_s`` is set by a refocus decision and cleared by an autofocus.
    """

    af_source: str | None = None
    af_time_s: float | None = None
    af_temp_c: float | None = None
    af_filter: str | None = None
    n_frames_since_af: int = 0
    waiting_since_s: float | None = None
    n_frames_waiting: int = 0
    af_in_progress: bool = False
    last_focuser_pos: int | None = None
    n_refocus: int = 0
    n_autofocus: int = 0


def on_autofocus(state: PolicyState, mark: AutofocusMark) -> PolicyState:
    """The state after an autofocus: focus facts restart, any waiting refocus is answered."""
    return replace(state, af_source=mark.source, af_time_s=None, af_temp_c=mark.temp_c,
                   af_filter=mark.filter_name, n_frames_since_af=0, waiting_since_s=None,
                   n_frames_waiting=0, af_in_progress=False,
                   last_focuser_pos=mark.position if mark.position is not None else state.last_focuser_pos,
                   n_autofocus=state.n_autofocus + 1)


def focuser_jumped(state: PolicyState, frame: FrameRecord, config: PolicyConfig) -> bool:
    """True when the header's focuser position moved by ``focuser_jump_steps`` or more.

    That only happens when something refocused (an autofocus the watcher was not told about);
    small moves from temperature compensation stay under the threshold.
    """
    if not config.focuser_jump_steps or not frame.is_light:
        return False
    if frame.focuser_pos is None or state.last_focuser_pos is None:
        return False
    return abs(frame.focuser_pos - state.last_focuser_pos) >= config.focuser_jump_steps


def advance(state: PolicyState, frame: FrameRecord, decision: "Decision") -> PolicyState:
    """The state after ``frame`` was decided (pure; also used to restore from the journal)."""
    if not frame.is_light:
        return state
    changes: dict[str, Any] = {"n_frames_since_af": state.n_frames_since_af + 1}
    if frame.focuser_pos is not None:
        changes["last_focuser_pos"] = frame.focuser_pos
    if decision.decision != "skip" or state.af_time_s is None:
        if state.af_time_s is None:
            changes["af_time_s"] = frame.time_s
            if state.af_source is None:
                changes["af_source"] = "start"
        if state.af_temp_c is None and frame.temp_c is not None:
            changes["af_temp_c"] = frame.temp_c
        if state.af_filter is None and frame.filter_name:
            changes["af_filter"] = frame.filter_name
    if state.waiting_since_s is not None:
        changes["n_frames_waiting"] = state.n_frames_waiting + 1
    if decision.decision == "refocus":
        changes["waiting_since_s"] = frame.time_s
        changes["n_frames_waiting"] = 0
        changes["n_refocus"] = state.n_refocus + 1
    return replace(state, **changes)


# =========================================================================== outputs

@dataclass(frozen=True)
class Decision(Record):
    """The policy's verdict on one frame; the fields are the ``--json`` keys of ``replay``/``watch``.

    ``decision`` is ``ok``, ``refocus`` or ``skip``; ``reasons`` are sentences for people;
    ``rules`` names the rules that fired (refocus) or the veto (skip); ``held`` the rules that
    would have fired but were held back by a veto. Figures: sizes in px, defocus in um and as
    a fraction of the critical focus zone (``defocus_cfz``), ``trend_pct_per_h`` the HFR trend
    in % of the baseline per hour, ``jitter_pct`` the frame-to-frame scatter (% of baseline),
    ``temp_delta_c`` the focuser temperature change since the autofocus.
    ``predicted_defocus_um``/``predicted_defocus_low_um`` come from the drift model one frame
    ahead (point estimate and lower bound), ``model_defocus_um`` its defocus at this frame
    (steadier than ``defocus_um``, one frame's estimate), ``drift_z`` its significance in sigmas and
    ``profile_drop`` how far HFD/FWHM fell below the baseline's (positive: flatter, defocus).
    ``reference_hfr_px`` is the independent in-focus HFR (night's best, other filters scaled
    by wavelength, rig + seeing), ``reference_pct`` its log scatter in %, ``reference_z`` how
    many sigmas the last ``reference_frames`` frames sit above it.
    """

    file: str
    decision: str
    reasons: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    time_s: float | None = None
    filter_name: str | None = None
    n_stars: int | None = None
    hfr_px: float | None = None
    baseline_hfr_px: float | None = None
    expected_hfr_px: float | None = None
    defocus_um: float | None = None
    defocus_cfz: float | None = None
    cfz_um: float | None = None
    limit_um: float | None = None
    predicted_defocus_um: float | None = None
    predicted_defocus_low_um: float | None = None
    trend_pct_per_h: float | None = None
    trend_z: float | None = None
    drift_z: float | None = None
    model_defocus_um: float | None = None
    profile_drop: float | None = None
    jitter_pct: float | None = None
    profile_ratio: float | None = None
    baseline_profile_ratio: float | None = None
    temp_c: float | None = None
    temp_delta_c: float | None = None
    minutes_since_af: float | None = None
    n_frames_since_af: int | None = None
    reference_hfr_px: float | None = None
    reference_pct: float | None = None
    reference_z: float | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {self.decision!r}")

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Record.to_dict`, with the sentence and name tuples as JSON's lists."""
        d = asdict(self)
        for k in ("reasons", "rules", "held", "warnings"):
            d[k] = list(d[k])
        return d


@dataclass(frozen=True)
class Baseline:
    """The in-focus reference of one filter: medians over the first frames after an autofocus.

    ``jitter_pct`` is the scatter of their HFR in % (``None`` with fewer than 3 frames).
    """

    filter_name: str | None
    n_frames: int
    complete: bool
    hfr_px: float
    fwhm_px: float | None
    profile_ratio: float | None
    n_stars: float
    flux_per_s: float | None
    eccentricity: float | None
    airmass: float | None
    jitter_pct: float | None


@dataclass(frozen=True)
class Trend:
    """A robust straight line through the HFR ratios (HFR / expected in-focus HFR) vs time.

    ``slope_per_min`` in ratio per minute; ``predicted``/``predicted_low`` at ``lookahead_min``
    after the newest frame; ``sigma`` the robust scatter of the ratios around the line.
    """

    n_frames: int
    slope_per_min: float
    slope_z: float
    predicted: float
    predicted_low: float
    sigma: float
    lookahead_min: float


@dataclass(frozen=True)
class DriftFit:
    """The thermal-drift model fitted to the HFR ratios since the autofocus.

    Model: the defocus grows linearly in time from the first frame after the autofocus
    (a steady cooling rate times the focus coefficient), and every frame's HFR is the exact
    seeing-plus-defocus model of it, ``ratio_i = level * g(defocus_i)``, with multiplicative
    seeing jitter ``sigma``. ``level`` (the true in-focus ratio against the baseline) is
    fitted too, so a baseline that happened to be taken in good seeing does not look like
    drift. ``defocus_um`` is at the newest frame, ``predicted_um`` ``lookahead_min`` later,
    ``predicted_low_um`` its lower bound at ``confidence_z``. ``z`` is the significance of
    the growth against "no drift" (root of the likelihood ratio, in sigmas); ``dof`` the
    degrees of freedom of ``sigma`` (frames - 2, plus the night's when its scatter was pooled in).
    ``slope_z`` is the significance of a straight-line rise of ln HFR over the same frames, with
    the same ``sigma``: the witness of a drift that began before the first frame (a filter's
    frames already out of focus, where the growth is no longer the flat start of the curve the
    model assumes from zero, issue 13's second real drift).
    """

    n_frames: int
    defocus_um: float
    predicted_um: float
    predicted_low_um: float
    level: float
    sigma: float
    z: float
    dof: int
    lookahead_min: float
    slope_z: float = 0.0


@lru_cache(maxsize=8)
def _growth_curve(obstruction: float) -> tuple[np.ndarray, np.ndarray]:
    """(blur diameter / in-focus HFR, ln HFR growth) of the optics model, for vectorised fits."""
    u = np.linspace(0.0, 1.0, 241)
    x = 24.0 * u * u                                     # fine near focus, where it matters
    g = np.array([optics.hfr_px_for_blur(float(b), 1.0, obstruction) for b in x])
    return x, np.log(np.maximum.accumulate(g))


#: The share of the theoretical flattening of HFD/FWHM that ``stars.measure`` reports (its
#: Moffat-fit FWHM on pixel-sampled stars sees ~3/4 of it: measured on rendered frames of a
#: 130 mm f/5, 1.19"/px rig, 0.25-1 CFZ). Erring low only makes the profile count for less.
PROFILE_RESPONSE = 0.75


@lru_cache(maxsize=8)
def _profile_curve(obstruction: float) -> tuple[np.ndarray, np.ndarray]:
    """(blur diameter / in-focus HFR, ln of HFD/FWHM relative to in focus) of the optics model.

    :func:`optics.defocused_star` at each node (seeing Moffat convolved with the defocus
    annulus; FWHM twice the outermost half-maximum radius). Computed once per obstruction.
    """
    nodes = np.concatenate([np.linspace(0.0, 4.0, 17), np.linspace(5.0, 24.0, 12)])
    ratio = np.empty_like(nodes)
    for i, b in enumerate(nodes):
        star = optics.defocused_star(float(b), obstruction, n=256, margin=10.0)
        ratio[i] = star["r50"] / (star["fwhm"] / 2.0)
    rel = np.minimum.accumulate(ratio / ratio[0])                   # monotonic: flatter with defocus
    return nodes, np.log(1.0 - PROFILE_RESPONSE * (1.0 - rel))


@lru_cache(maxsize=1024)
def critical_z(z: float, dof: float) -> float:
    """``z`` (a one-sided normal quantile) turned into Student's t for a scatter with ``dof`` degrees
    of freedom: a jitter measured on few frames is not trusted as if it were known."""
    from scipy.stats import norm, t as student_t

    if dof <= 0 or not math.isfinite(dof):
        return z
    return float(student_t.ppf(norm.cdf(z), dof))


def _rss(y: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Residual sum of squares for each row of ``model`` with the level (mean) fitted."""
    resid = y[None, :] - model
    resid -= resid.mean(axis=1, keepdims=True)
    return np.sum(resid ** 2, axis=1)


def fit_drift(times_min: Sequence[float], ratios: Sequence[float], *, um_per_blur: float, obstruction: float,
              lookahead_min: float, z: float, sigma_floor: float, prior_dof: float = 0.0,
              profiles: Sequence[float | None] | None = None, profile_floor: float = 0.005,
              level_prior: tuple[float, float] | None = None,
              sigma_prior: tuple[float, float] | None = None) -> DriftFit | None:
    """Fit :class:`DriftFit` to HFR ratios (and HFD/FWHM) at ``times_min`` (minutes since the first frame).

    ``um_per_blur`` converts a blur diameter in units of the in-focus HFR to defocus in µm
    (``N * pixel_um * hfr0_px``). The defocus at the newest frame is found on a grid; for
    each, the in-focus levels are fitted by least squares. The HFR scatter is the fit's
    residual standard deviation, never below ``sigma_floor`` (fraction), with ``prior_dof``
    extra degrees of freedom for that prior. ``profiles`` (HFD/FWHM per frame, ``None``
    where not measured) add the flattening of the profile as a second, seeing-insensitive
    witness of the same defocus (scatter never below ``profile_floor``): the two are fitted
    jointly, each weighted by its own scatter. ``level_prior`` = (ln level, its sigma) is an
    independent estimate of the in-focus level (:class:`~focuswatch.policy_baseline.Reference`):
    frames that were already out of focus when the baseline was taken then count as defocus,
    and the fit does not trade the growth for a lower level (the lag of the first release:
    -51 % at the request on a physical-optics night). Returns ``None`` with fewer than 3
    frames or no time span. ``sigma_prior`` = (scatter, its degrees of freedom) measured over
    the whole night is pooled with the fit's residual scatter (both weighted by their degrees
    of freedom; ``dof`` then counts both), so a few long exposures since the autofocus are
    judged against a scatter known to the night's precision.

    >>> t = [0, 10, 20, 30, 40, 50, 60, 70]
    >>> r = [float(np.exp(np.interp(0.2 * i / 7 * 5, *_growth_curve(0.0)))) for i in range(8)]
    >>> f = fit_drift(t, r, um_per_blur=25.0, obstruction=0.0, lookahead_min=0, z=2, sigma_floor=0.01)
    >>> round(f.defocus_um, 0), f.z > 3
    (25.0, True)
    """
    t = np.asarray(times_min, dtype=float)
    y = np.log(np.asarray(ratios, dtype=float))
    n = len(t)
    t_now = float(t.max()) if n else 0.0
    if n < 3 or t_now <= 0 or um_per_blur <= 0:
        return None
    obstruction = round(float(obstruction), 2)
    xs, lg = _growth_curve(obstruction)
    grid = xs[xs <= 20.0]
    x = grid[:, None] * np.clip(t / t_now, 0.0, None)[None, :]        # (grid, frames)
    rss_h = _rss(y, np.interp(x, xs, lg))
    dof = n - 2
    k_h = int(np.argmin(rss_h))
    if sigma_prior is not None and sigma_prior[1] > 0:
        pooled = (float(rss_h[k_h]) + sigma_prior[1] * sigma_prior[0] ** 2) / (max(dof, 0) + sigma_prior[1])
        sigma = max(sigma_floor, math.sqrt(pooled))
        dof = max(dof, 0) + int(sigma_prior[1])
    else:
        sigma = max(sigma_floor, math.sqrt(float(rss_h[k_h]) / dof) if dof > 0 else 0.0)
    chi2 = rss_h / sigma ** 2
    level_log: np.ndarray | None = None
    if level_prior is not None and level_prior[1] > 0 and math.isfinite(level_prior[0]):
        c0, w_p = float(level_prior[0]), 1.0 / float(level_prior[1]) ** 2
        resid = y[None, :] - np.interp(x, xs, lg)
        w = 1.0 / sigma ** 2
        level_log = (resid.sum(axis=1) * w + c0 * w_p) / (n * w + w_p)
        chi2 = np.sum((resid - level_log[:, None]) ** 2, axis=1) * w + (level_log - c0) ** 2 * w_p
    if profiles is not None:
        p = np.array([np.nan if v is None else float(v) for v in profiles])
        ok = np.isfinite(p) & (p > 0)
        if ok.sum() >= 3:
            px, pl = _profile_curve(obstruction)
            rss_p = _rss(np.log(p[ok]), np.interp(x[:, ok], px, pl))
            k_p = int(np.argmin(rss_p))
            s_p = max(profile_floor, math.sqrt(float(rss_p[k_p]) / max(int(ok.sum()) - 2, 1)))
            chi2 = chi2 + rss_p / s_p ** 2
    k = int(np.argmin(chi2))
    zz = math.sqrt(max(0.0, float(chi2[0] - chi2[k])))
    level = float(np.exp(level_log[k] if level_log is not None else np.mean(y - np.interp(x[k], xs, lg))))
    scale = (t_now + max(lookahead_min, 0.0)) / t_now
    zc = critical_z(z, dof + prior_dof)
    inside = np.nonzero(chi2 - chi2[k] <= zc * zc)[0]
    x_low = float(grid[inside[0]]) if len(inside) else float(grid[k])
    x_hat = float(grid[k])
    # the straight line's own residuals (pooled with the night's scatter as above): a drift that
    # does not start at zero is a misfit of the curve, not seeing jitter, and must not blunt it
    sxx = float(np.sum((t - t.mean()) ** 2))
    slope_z = 0.0
    if sxx > 0:
        slope = float(np.sum((t - t.mean()) * (y - y.mean()))) / sxx
        rss_l = float(np.sum((y - y.mean() - slope * (t - t.mean())) ** 2))
        if sigma_prior is not None and sigma_prior[1] > 0:
            s_l = math.sqrt((rss_l + sigma_prior[1] * sigma_prior[0] ** 2) / (n - 2 + sigma_prior[1]))
        else:
            s_l = math.sqrt(rss_l / (n - 2)) if n > 2 else 0.0
        slope_z = slope / (max(sigma_floor, s_l) / math.sqrt(sxx))
    return DriftFit(n, x_hat * um_per_blur, x_hat * scale * um_per_blur, x_low * scale * um_per_blur, level, sigma,
                    zz, dof, lookahead_min, slope_z)


from focuswatch.numerics import finite_median as _median  # noqa: E402 - the one median helper


def baseline_for(history: Sequence[FrameRecord], filter_name: str | None,
                 config: PolicyConfig) -> Baseline | None:
    """The baseline of ``filter_name`` from the accepted frames since the autofocus (``None`` if none)."""
    frames = [f for f in history if f.filter_name == filter_name and f.hfr_px]
    frames = frames[:config.baseline_frames]
    if not frames:
        return None
    hfr = _median([f.hfr_px for f in frames])
    assert hfr is not None
    jitter = None
    if len(frames) >= 3:
        jitter = 100.0 * float(np.std([f.hfr_px for f in frames], ddof=1)) / hfr
    return Baseline(filter_name, len(frames), len(frames) >= config.baseline_frames, hfr,
                    _median([f.fwhm_px for f in frames]), _median([f.profile_ratio for f in frames]),
                    float(np.median([f.n_stars for f in frames])), _median([f.flux_per_s for f in frames]),
                    _median([f.eccentricity for f in frames]), _median([f.airmass for f in frames]), jitter)


def expected_hfr_px(base: Baseline, frame: FrameRecord, config: PolicyConfig) -> float:
    """In-focus HFR expected for ``frame``: the baseline, scaled by airmass**0.6 when known."""
    if config.airmass_correction and base.airmass and frame.airmass and base.airmass > 0:
        return base.hfr_px * (frame.airmass / base.airmass) ** AIRMASS_EXPONENT
    return base.hfr_px


# =========================================================================== context

@dataclass(frozen=True)
class Context:
    """Everything the rules and vetoes look at for one frame, computed once by :func:`decide`."""

    frame: FrameRecord
    history: tuple[FrameRecord, ...]
    state: PolicyState
    now_s: float
    prior_baseline: Baseline | None
    baseline: Baseline | None
    expected_hfr_px: float | None
    ratio: float | None
    defocus_um: float | None
    cfz_um: float | None
    limit_um: float | None
    limit_ratio: float | None
    jitter: float
    jitter_dof: float
    trend: Trend | None
    drift: DriftFit | None
    profile_drop: float | None
    profile_sigma: float | None
    minutes_since_af: float | None
    temp_delta_c: float | None
    rig: Rig
    reference: Reference | None = None
    reference_excess: float | None = None
    reference_z: float | None = None
    reference_frames: tuple[FrameRecord, ...] = ()
    night_dof: float = 0.0
    cadence_min: float = 0.0

    @property
    def baseline_sigma(self) -> float:
        """Uncertainty of the baseline (fraction): the median of ``n`` jittery frames."""
        n = self.baseline.n_frames if self.baseline else 1
        return 1.2533 * self.jitter / math.sqrt(max(n, 1))


def _optics(rig: Rig) -> tuple[float, float] | None:
    n, pix = rig.f_ratio, rig.effective_pixel_um
    return (n, pix) if n and pix else None


def _ratio_of(f: FrameRecord, history: Sequence[FrameRecord], config: PolicyConfig,
              cache: dict[str | None, Baseline | None]) -> float | None:
    if f.filter_name not in cache:
        cache[f.filter_name] = baseline_for(history, f.filter_name, config)
    b = cache[f.filter_name]
    if b is None or not f.hfr_px:
        return None
    return f.hfr_px / expected_hfr_px(b, f, config)


def fit_trend(times_min: Sequence[float], ratios: Sequence[float], *, lookahead_min: float,
              z: float, sigma_floor: float) -> Trend:
    """Theil-Sen line through ``ratios`` against ``times_min`` (0 = the newest frame).

    Theil-Sen (the median of pairwise slopes) shrugs off a bad frame or two; the scatter
    around the line (1.4826 x MAD, inflated for small samples, never below
    ``sigma_floor``) gives the standard error of the line at ``lookahead_min`` with the
    ordinary least-squares formula ``sigma * sqrt(1/n + (t - mean t)^2 / Sxx)``.

    >>> t = fit_trend([-40, -30, -20, -10, 0], [1.0, 1.02, 1.04, 1.06, 1.08], lookahead_min=10, z=2, sigma_floor=0.01)
    >>> round(t.slope_per_min, 4), round(t.predicted, 3)
    (0.002, 1.1)
    """
    from scipy.stats import theilslopes

    t = np.asarray(times_min, dtype=float)
    r = np.asarray(ratios, dtype=float)
    n = len(t)
    res = theilslopes(r, t)
    slope, intercept = float(res[0]), float(res[1])
    resid = r - (intercept + slope * t)
    mad = float(mad_std(resid))
    if n > 2:
        mad *= math.sqrt(n / (n - 2.0))
    sigma = max(mad, sigma_floor)
    sxx = float(np.sum((t - t.mean()) ** 2))
    pred = intercept + slope * lookahead_min
    se = sigma * math.sqrt(1.0 / n + ((lookahead_min - t.mean()) ** 2 / sxx if sxx > 0 else 0.0))
    slope_z = slope / (sigma / math.sqrt(sxx)) if sxx > 0 else 0.0
    return Trend(n, slope, slope_z, pred, pred - z * se, sigma, lookahead_min)


def _limits(frame: FrameRecord, exp_hfr: float | None, config: PolicyConfig,
            rig: Rig) -> tuple[float | None, float | None, float | None]:
    """(CFZ um, limit um, limit as an HFR ratio) for ``frame``'s filter and in-focus HFR."""
    opt = _optics(rig)
    wl = optics.wavelength_for_filter(frame.filter_name, rig.wavelength_nm)
    cfz = optics.cfz_um(opt[0], wl) if opt else None
    limit_um = config.defocus_limit_cfz * cfz if cfz else None
    limit_ratio = None
    if exp_hfr:
        if opt and limit_um is not None:
            limit_ratio = optics.hfr_px_for_defocus(limit_um, exp_hfr, opt[0], opt[1], rig.obstruction) / exp_hfr
        else:
            limit_ratio = 1.0 + config.fallback_hfr_increase_pct / 100.0
    return cfz, limit_um, limit_ratio


def _context(history: Sequence[FrameRecord], state: PolicyState, config: PolicyConfig, now: float,
             frame: FrameRecord, rig: Rig, night: NightMemory | None = None) -> Context:
    hist = tuple(history)
    with_frame = hist + (frame,)
    prior = baseline_for(hist, frame.filter_name, config)
    base = prior if (prior is not None and prior.complete) else baseline_for(with_frame, frame.filter_name, config)
    exp_hfr = expected_hfr_px(base, frame, config) if base else None
    ratio = frame.hfr_px / exp_hfr if (exp_hfr and frame.hfr_px) else None
    opt = _optics(rig)
    cfz, limit_um, limit_ratio = _limits(frame, exp_hfr, config, rig)
    defocus = None
    if opt and exp_hfr and frame.hfr_px:
        defocus = optics.defocus_um_from_hfr(frame.hfr_px, exp_hfr, opt[0], opt[1], rig.obstruction)
    floor = config.jitter_floor_pct / 100.0
    jitter, jitter_dof = floor, config.prior_dof
    trend = drift = None
    prof_drop = prof_sigma = None
    same = [f for f in with_frame if f.filter_name == frame.filter_name]
    night_j, night_dof = night.jitter() if night is not None else (None, 0)
    night_known = night_j is not None and night_dof >= config.night_jitter_min_dof
    if base is not None and base.complete:
        # a complete baseline is the same whether or not this frame is counted: no second pass
        cache: dict[str | None, Baseline | None] = {frame.filter_name: base}
        rated = [(f, _ratio_of(f, with_frame, config, cache)) for f in same]
        rated = [(f, r) for f, r in rated if r is not None and r > 0]
        pts = [(f.time_s, r) for f, r in rated]
        jitter, jitter_dof = frame_jitter([r for _, r in pts], 0.0, config.prior_dof)
    jitter, jitter_dof = combined_jitter(jitter if base is not None and base.complete else 0.0, jitter_dof, night,
                                         floor=floor, night_floor=config.night_jitter_floor_pct / 100.0,
                                         night_min_dof=config.night_jitter_min_dof, prior_dof=config.prior_dof)
    reference = _reference(frame, night, config, rig, jitter) if frame.hfr_px else None
    if base is not None and base.complete:
        prof_frames = [f for f, _ in rated]
        steps = np.diff(np.sort([t for t, _ in pts]))
        cadence_min = float(np.median(steps)) / 60.0 if len(steps) else 0.0
        lookahead = config.lookahead_frames * cadence_min
        window = [(t, r) for t, r in pts
                  if config.trend_window_min <= 0 or t >= now - config.trend_window_min * 60.0]
        if len(window) >= config.min_trend_frames:
            trend = fit_trend([(t - now) / 60.0 for t, _ in window], [r for _, r in window],
                              lookahead_min=lookahead, z=config.confidence_z, sigma_floor=floor)
        if len(pts) >= 3 and opt and exp_hfr:
            t0 = pts[0][0]
            # the reference anchors the in-focus level only when it says the baseline was already
            # out of focus (significantly larger); a consistent one would only add its own noise
            level_prior = None
            if reference and math.log(reference.hfr_px / exp_hfr) < -config.confidence_z * reference.sigma:
                level_prior = (math.log(reference.hfr_px / exp_hfr), reference.sigma)
            drift = fit_drift([(t - t0) / 60.0 for t, _ in pts], [r for _, r in pts],
                              um_per_blur=opt[0] * opt[1] * exp_hfr, obstruction=rig.obstruction,
                              lookahead_min=lookahead, z=config.confidence_z,
                              sigma_floor=(config.night_jitter_floor_pct if night_known else config.jitter_floor_pct)
                              / 100.0,
                              sigma_prior=(night_j, float(night_dof)) if night_known else None,
                              prior_dof=config.prior_dof, profiles=[f.profile_ratio for f in prof_frames],
                              profile_floor=config.profile_floor, level_prior=level_prior)
        prof_drop, prof_sigma = _profile_change(same, base, config)
    excess = ref_z = None
    recent: tuple[FrameRecord, ...] = ()
    k = config.reference_frames
    if reference is not None and k > 0:
        recent = tuple(f for f in same if f.hfr_px and f.hfr_px > 0)[-k:]
        if len(recent) == k:
            logs = [math.log(f.hfr_px / reference.hfr_px) - _airmass_log(f, frame, config) for f in recent]
            excess, ref_z = reference_z_of(logs, reference.sigma, jitter)
    minutes = (now - state.af_time_s) / 60.0 if state.af_time_s is not None else 0.0
    tdelta = None
    if frame.temp_c is not None:
        ref = state.af_temp_c if state.af_temp_c is not None else frame.temp_c
        tdelta = frame.temp_c - ref
    return Context(frame, hist, state, now, prior, base, exp_hfr, ratio, defocus, cfz, limit_um, limit_ratio,
                   jitter, jitter_dof, trend, drift, prof_drop, prof_sigma, minutes, tdelta, rig,
                   reference, excess, ref_z, recent, float(night_dof),
                   cadence_min if base is not None and base.complete else 0.0)


def _airmass_log(f: FrameRecord, now_frame: FrameRecord, config: PolicyConfig) -> float:
    """ln of the seeing growth from ``now_frame``'s airmass to ``f``'s (0 when unknown or off)."""
    if not config.airmass_correction or not f.airmass or not now_frame.airmass:
        return 0.0
    return AIRMASS_EXPONENT * math.log(f.airmass / now_frame.airmass)


def reference_z_of(log_excess: Sequence[float], ref_sigma: float, jitter: float) -> tuple[float, float]:
    """(mean ln(HFR / reference) of the frames, its significance in sigmas).

    The frames' jitter averages down over their number; the reference's own scatter does not.
    """
    m = float(np.mean(log_excess))
    se = math.sqrt(jitter ** 2 / len(log_excess) + ref_sigma ** 2)
    return m, m / se


def _reference(frame: FrameRecord, night: NightMemory | None, config: PolicyConfig, rig: Rig,
               jitter: float) -> Reference | None:
    """The independent in-focus HFR for ``frame`` (:func:`focuswatch.policy_baseline.reference_for`)."""
    if night is None:
        night = NightMemory()
    return reference_for(frame.filter_name, frame.time_s, frame.airmass if config.airmass_correction else None,
                         night, jitter=jitter, wander_pct_per_h=config.seeing_wander_pct_per_h,
                         cross_filter_pct=config.cross_filter_pct, baseline_frames=config.baseline_frames,
                         rig=rig, seeing_arcsec=frame.seeing_arcsec, rig_seeing_pct=config.rig_seeing_pct,
                         hfr_kind=frame.hfr_kind)


def frame_jitter(ratios: Sequence[float], floor: float, prior_dof: float) -> tuple[float, float]:
    """(frame-to-frame seeing jitter as a fraction, its degrees of freedom).

    From the differences of successive frames (about their median, so a steady drift does
    not count), with the largest one dropped (so a single step in focus does not count
    either): their RMS over sqrt 2. Never below ``floor``; ``prior_dof`` degrees of freedom
    are added for that prior. With fewer than 4 frames: the floor alone.
    """
    r = np.log(np.asarray([x for x in ratios if x and x > 0], dtype=float))
    if len(r) < 4:
        return floor, prior_dof
    d = np.diff(r)
    d = np.sort(np.abs(d - np.median(d)))[:-1]
    sd = math.sqrt(float(np.mean(d ** 2)) / 2.0)
    return max(floor, sd), len(d) - 1 + prior_dof


#: Detected stars fall as HFR**-1.2 when stars grow (peak = flux / HFR**2, and a typical field's
#: counts go as flux**-0.6): the star loss that focus or seeing alone explain.
STAR_COUNT_HFR_EXPONENT = 1.2


#: Frames whose HFD/FWHM is compared with the baseline's for the profile corroboration.
PROFILE_RECENT_FRAMES = 3


def _profile_change(same: Sequence[FrameRecord], base: Baseline,
                    config: PolicyConfig) -> tuple[float | None, float | None]:
    """(drop of HFD/FWHM, its standard error): baseline minus the median of the recent frames.

    Defocus flattens the profile (HFD/FWHM falls from ~1.2 toward 0.7), seeing only scales
    it (and worse seeing even peaks it a little), so a drop corroborates HFR growth as
    focus. ``None`` when the baseline or most recent frames lack the profile.
    """
    if base.profile_ratio is None:
        return None, None
    recent = [f.profile_ratio for f in same[-PROFILE_RECENT_FRAMES:]]
    have = [p for p in recent if p is not None and math.isfinite(p)]
    if len(have) < min(2, len(recent)) or not have:
        return None, None
    drop = base.profile_ratio - float(np.median(have))
    allp = np.array([p for p in [f.profile_ratio for f in same] if p is not None and math.isfinite(p)])
    sd = float(np.std(np.diff(allp), ddof=1)) / math.sqrt(2.0) if len(allp) >= 4 else 0.0
    sd = max(config.profile_floor, sd)
    se = 1.2533 * sd * math.sqrt(1.0 / len(have) + 1.0 / max(base.n_frames, 1))
    return drop, se


def _ratio_to_defocus(ctx: Context, ratio: float) -> float | None:
    opt = _optics(ctx.rig)
    if not opt or not ctx.expected_hfr_px:
        return None
    return optics.defocus_um_from_hfr(ratio * ctx.expected_hfr_px, ctx.expected_hfr_px, opt[0], opt[1],
                                      ctx.rig.obstruction)


def _limit_text(ctx: Context, config: PolicyConfig) -> str:
    if ctx.limit_um is not None:
        return f"limit {config.defocus_limit_cfz:.2f} CFZ = {ctx.limit_um:.0f} µm"
    return f"limit +{config.fallback_hfr_increase_pct:g} % HFR (no focal ratio/pixel size: defocus unknown)"


# =========================================================================== rules

@dataclass(frozen=True)
class Fired:
    """A rule that fired: its name and a sentence with the figures."""

    rule: str
    reason: str


def rule_drift(ctx: Context, config: PolicyConfig) -> Fired | None:
    """Sustained growth: the drift model, one frame ahead, is past the limit, and significant.

    Two conditions, both needed: the fitted defocus one frame ahead reaches the limit (the
    point estimate: a lower bound would only fire past the zone's edge through seeing
    jitter), and the growth since the autofocus is significant at ``drift_z`` sigmas against
    no drift at all (Student's t for a jitter measured on few frames). Without a focal ratio
    or pixel size: the Theil-Sen trend's lower bound against the HFR-percent fallback.
    """
    if ctx.baseline is None or not ctx.baseline.complete:
        return None
    if ctx.drift is None or ctx.limit_um is None:
        return _rule_drift_fallback(ctx, config)
    d = ctx.drift
    if d.n_frames < config.min_trend_frames or d.predicted_um < ctx.limit_um:
        return None
    zc = critical_z(config.drift_z, d.dof + config.prior_dof)
    # the straight-line witness only where the model's start is not known to be in focus: a
    # filter other than the one the autofocus was made with (its first frames may already sit
    # on a drift that began before them); its bar keeps the false alarms per hour of drift_z
    untrusted = ctx.state.af_filter is not None and ctx.frame.filter_name != ctx.state.af_filter
    zs = slope_critical_z(critical_z(drift_bar(config, ctx.cadence_min), d.dof + config.prior_dof)) \
        if untrusted else math.inf
    if d.z < zc and d.slope_z < zs:
        return None
    growth = f"growth since the autofocus {d.z:.1f} σ" if d.z >= zc else \
        f"a steady rise {d.slope_z:.1f} σ (needs {zs:.1f} σ), the model's growth {d.z:.1f} σ"
    return Fired("drift", f"focus drift: defocus {d.defocus_um:.0f} µm now, {d.predicted_um:.0f} µm in "
                          f"{d.lookahead_min:.0f} min ({growth} over {d.n_frames} "
                          f"frames, needs {zc:.1f} σ; jitter {100 * d.sigma:.1f} %) is past the "
                          f"{_limit_text(ctx, config)}")


def drift_bar(config: PolicyConfig, cadence_min: float) -> float:
    """``drift_z`` for frames every ``cadence_min`` minutes: the same false alarms per hour.

    ``drift_z`` is the bar for a frame every ``drift_z_cadence_s``; the policy looks once per
    frame, so with 5-10 minute subs it looks 5-10 times less often in an hour and each look may
    take a 5-10 times larger false-alarm chance (one-sided normal tail) for the same rate per
    night. Never raised for faster frames (the bar of the first release stays the strictest).
    """
    ref_s = config.drift_z_cadence_s
    if ref_s <= 0 or cadence_min * 60.0 <= ref_s:
        return config.drift_z
    from scipy.stats import norm

    return float(min(config.drift_z, norm.isf(min(0.5, norm.sf(config.drift_z) * cadence_min * 60.0 / ref_s))))


def slope_critical_z(zc: float) -> float:
    """The bar for the straight-line witness when the model's own test is ``zc``.

    Two tests on the same frames, either may fire: each at half the false-alarm rate of one
    (Bonferroni), so the pair never asks more often on pure jitter than 1.5 x the model alone.
    """
    from scipy.stats import norm

    return float(norm.isf(norm.sf(zc) / 2.0))


def _rule_drift_fallback(ctx: Context, config: PolicyConfig) -> Fired | None:
    tr = ctx.trend
    if tr is None or ctx.limit_ratio is None:
        return None
    if tr.predicted_low < ctx.limit_ratio:
        return None
    if tr.slope_z < critical_z(config.drift_z, tr.n_frames - 2 + config.prior_dof):
        return None
    return Fired("drift", f"focus drift: predicted HFR +{100 * (tr.predicted - 1):.0f} % in {tr.lookahead_min:.0f} min "
                          f"(trend {100 * 60 * tr.slope_per_min:+.1f} %/h over {tr.n_frames} frames, "
                          f"{config.confidence_z:g} σ lower bound +{100 * (tr.predicted_low - 1):.1f} % HFR) "
                          f"is past the {_limit_text(ctx, config)}")


def rule_consecutive(ctx: Context, config: PolicyConfig) -> Fired | None:
    """Few-frame mode: the last N accepted frames are each past the limit at their lower bound.

    A frame counts when even its HFR divided by ``1 + z * sigma`` (the seeing jitter at
    ``confidence_z`` and the baseline's own uncertainty, shared by the N frames, at ``drift_z``;
    Student's t for few frames) is past the limit: a step in
    focus (a slipping focuser, a bumped tube) that the drift model, which expects a steady
    growth, would be slow to accept.
    """
    n = config.consecutive_frames
    if ctx.baseline is None or not ctx.baseline.complete:
        return None
    frames = list(ctx.history) + [ctx.frame]
    n_base = sum(1 for f in frames if f.filter_name == ctx.frame.filter_name)
    if len(frames) < n or n_base <= config.baseline_frames:
        return None
    cache: dict[str | None, Baseline | None] = {}
    # each frame's own jitter at confidence_z, the baseline's error (shared by all N frames, so
    # N frames in a row do not dilute it) at drift_z
    zc = critical_z(config.confidence_z, ctx.jitter_dof)
    zb = critical_z(config.drift_z, ctx.jitter_dof)
    margin = 1.0 + math.hypot(zc * ctx.jitter, zb * ctx.baseline_sigma)
    sigma = (margin - 1.0) / zc
    for f in frames[-n:]:
        r = _ratio_of(f, frames, config, cache)
        b = cache.get(f.filter_name)
        if r is None or b is None or not b.complete:
            return None
        limit_ratio = _limits(f, expected_hfr_px(b, f, config), config, ctx.rig)[2]
        if limit_ratio is None or r / margin < limit_ratio:
            return None
    low = ctx.ratio / margin if ctx.ratio else None
    low_um = _ratio_to_defocus(ctx, low) if low else None
    what = f"defocus ≥ {low_um:.0f} µm" if low_um is not None else f"HFR ≥ +{100 * ((low or 1) - 1):.0f} %"
    return Fired("consecutive", f"{n} frames in a row past the {_limit_text(ctx, config)} even at their "
                                f"lower bound (HFR / (1 + {zc:.1f} × {100 * sigma:.1f} % jitter); now {what})")


def rule_reference(ctx: Context, config: PolicyConfig) -> Fired | None:
    """The last frames sit above an in-focus size they did not set: already out of focus.

    The mean of the last ``reference_frames`` frames of the filter against the independent
    reference (night's best, other filters scaled by wavelength, rig + seeing), significant at
    ``drift_z`` (Student's t for the night's scatter) and, as a defocus, past the limit. It
    needs no baseline of its own, so it catches frames that were out of focus from the first
    one (a filter change without a refocus) and works with 2-3 long exposures.
    """
    ref, m, z = ctx.reference, ctx.reference_excess, ctx.reference_z
    if ref is None or m is None or z is None or m <= 0:
        return None
    # Welch-Satterthwaite: only the frames' jitter is an estimate (its dof); the reference's
    # scatter is mostly the stated allowances, so a small dof does not inflate the whole bar
    # (until the night's scatter is itself well measured: the reference's error rests on it too)
    k = max(len(ctx.reference_frames), 1)
    var_j = ctx.jitter ** 2 / k
    dof = ctx.jitter_dof * ((var_j + ref.sigma ** 2) / var_j) ** 2 if var_j > 0 else math.inf
    if ctx.night_dof < config.night_jitter_min_dof:
        dof = ctx.jitter_dof
    zc = critical_z(config.drift_z, min(dof, 1e6))
    if z < zc:
        return None
    hfr = ref.hfr_px * math.exp(m)
    opt = _optics(ctx.rig)
    if opt and ctx.limit_um is not None:
        defocus = optics.defocus_um_from_hfr(hfr, ref.hfr_px, opt[0], opt[1], ctx.rig.obstruction)
        if defocus < ctx.limit_um:
            return None
        what = f"defocus {defocus:.0f} µm"
    else:
        if math.exp(m) < 1.0 + config.fallback_hfr_increase_pct / 100.0:
            return None
        what = f"HFR {100 * math.expm1(m):+.0f} %"
    n = len(ctx.reference_frames)
    return Fired("reference", f"the last {n} frames' HFR {hfr:.2f} px is {100 * math.expm1(m):+.0f} % above the "
                              f"in-focus {ref.describe()} ({z:.1f} σ, needs {zc:.1f} σ; {what}) is past the "
                              f"{_limit_text(ctx, config)}")


def rule_temperature(ctx: Context, config: PolicyConfig) -> Fired | None:
    """The focuser temperature moved by ``temperature_delta_c`` since the autofocus."""
    if ctx.temp_delta_c is None:
        return None
    if abs(ctx.temp_delta_c) + 1e-9 < config.temperature_delta_c:
        return None
    return Fired("temperature", f"temperature changed {ctx.temp_delta_c:+.1f} °C since the autofocus "
                                f"(limit {config.temperature_delta_c:g} °C)")


def rule_time(ctx: Context, config: PolicyConfig) -> Fired | None:
    """``max_interval_min`` minutes passed since the autofocus."""
    if ctx.minutes_since_af is None:
        return None
    if ctx.minutes_since_af < config.max_interval_min:
        return None
    return Fired("time", f"{ctx.minutes_since_af:.0f} min since the autofocus (limit {config.max_interval_min:g} min)")


def rule_filter_change(ctx: Context, config: PolicyConfig) -> Fired | None:
    """The filter is not the one the autofocus was made with (filters not parfocal)."""
    af, cur = ctx.state.af_filter, ctx.frame.filter_name
    if af is None or cur is None or af == cur:
        return None
    return Fired("filter_change", f"filter changed from {af} to {cur} since the autofocus "
                                  "(set parfocal_filters = true if your filters share a focus)")


def rule_hfr_increase(ctx: Context, config: PolicyConfig) -> Fired | None:
    """NINA's HFR-increase trigger, for comparison: LSQ over 10 frames vs the lowest HFR."""
    same = [f.hfr_px for f in list(ctx.history) + [ctx.frame] if f.filter_name == ctx.frame.filter_name and f.hfr_px]
    if len(same) < 3:
        return None
    last = np.asarray(same[-10:], dtype=float)
    x = np.arange(len(last), dtype=float)
    a, b = np.polyfit(x, last, 1)
    now_hfr = a * x[-1] + b
    lowest = min(same)
    pct = 100.0 * (now_hfr / lowest - 1.0)
    if pct < config.hfr_increase_pct:
        return None
    return Fired("hfr_increase", f"HFR trend {now_hfr:.2f} px is {pct:.0f} % above the lowest {lowest:.2f} px "
                                 f"since the autofocus (limit {config.hfr_increase_pct:g} %)")


@dataclass(frozen=True)
class Rule:
    """One row of the rule table: ``kind`` is ``image`` (reads the stars) or ``schedule``.

    ``enabled`` says from the settings whether the rule is on (its own off-switch, stated
    once: ``off_when`` is its sentence for people); ``needs_baseline`` whether the
    ``baseline`` veto holds it while the filter's baseline is being built.
    """

    name: str
    kind: str
    func: Callable[[Context, PolicyConfig], Fired | None]
    fires_when: str
    settings: tuple[str, ...]
    off_when: str
    enabled: Callable[[PolicyConfig], bool]
    needs_baseline: bool = True


RULES: tuple[Rule, ...] = (
    Rule("drift", "image", rule_drift,
         "the drift model (defocus growing steadily since the autofocus, fitted to the HFR ratios and the "
         "profile flattening together, its in-focus level anchored on the independent reference when that "
         "says the baseline was already out of focus) puts the defocus lookahead_frames ahead past the limit, "
         "and that growth is significant at drift_z sigmas "
         "(Student's t for the night's scatter)",
         ("defocus_limit_cfz", "drift_z", "lookahead_frames", "min_trend_frames", "jitter_floor_pct", "prior_dof"),
         "defocus_limit_cfz = 0", lambda c: c.defocus_limit_cfz > 0),
    Rule("reference", "image", rule_reference,
         "the last reference_frames frames are above the independent in-focus size (night's best of the "
         "filter, other filters scaled by wavelength, rig + seeing) by more than the limit, significant at "
         "drift_z sigmas (filter changes without a refocus, few long exposures)",
         ("reference_frames", "defocus_limit_cfz", "drift_z", "seeing_wander_pct_per_h", "cross_filter_pct",
          "rig_seeing_pct"),
         "reference_frames = 0", lambda c: c.reference_frames > 0 and c.defocus_limit_cfz > 0,
         needs_baseline=False),
    Rule("consecutive", "image", rule_consecutive,
         "consecutive_frames accepted frames in a row each past the limit at their lower bound: "
         "HFR / (1 + confidence_z x jitter (+) drift_z x baseline error) (focus steps)",
         ("consecutive_frames", "defocus_limit_cfz", "confidence_z", "drift_z"), "consecutive_frames = 0",
         lambda c: c.consecutive_frames > 0 and c.defocus_limit_cfz > 0),
    Rule("temperature", "schedule", rule_temperature,
         "the focuser temperature moved temperature_delta_c since the autofocus", ("temperature_delta_c",),
         "temperature_delta_c = 0", lambda c: c.temperature_delta_c > 0),
    Rule("time", "schedule", rule_time, "max_interval_min minutes since the autofocus", ("max_interval_min",),
         "max_interval_min = 0", lambda c: c.max_interval_min > 0),
    Rule("filter_change", "schedule", rule_filter_change,
         "the filter differs from the one the autofocus was made with",
         ("refocus_on_filter_change", "parfocal_filters"),
         "refocus_on_filter_change = false, or parfocal_filters = true",
         lambda c: c.refocus_on_filter_change and not c.parfocal_filters),
    Rule("hfr_increase", "image", rule_hfr_increase,
         "NINA's rule, for comparison: a least-squares line over the last 10 frames of the filter ends "
         "hfr_increase_pct % above the lowest HFR since the autofocus", ("hfr_increase_pct",),
         "hfr_increase_pct = 0 (default)", lambda c: c.hfr_increase_pct > 0),
)


# =========================================================================== vetoes

@dataclass(frozen=True)
class Veto:
    """One shared veto: ``effect`` is ``skip`` (frame set aside) or ``hold`` (refocus held back);
    ``scope`` is ``all`` rules or only ``image`` rules."""

    name: str
    effect: str
    scope: str
    func: Callable[[Context, PolicyConfig], str | None]
    when: str


def veto_not_light(ctx: Context, config: PolicyConfig) -> str | None:
    if ctx.frame.is_light:
        return None
    return "not a light frame (calibration frames are ignored)"


def veto_too_few_stars(ctx: Context, config: PolicyConfig) -> str | None:
    if ctx.frame.hfr_px is None or not math.isfinite(ctx.frame.hfr_px):
        return f"no star size measured ({ctx.frame.n_stars} stars)"
    if ctx.frame.n_stars < config.min_stars:
        return f"too few stars ({ctx.frame.n_stars} < {config.min_stars})"
    return None


def veto_clouds(ctx: Context, config: PolicyConfig) -> str | None:
    b = ctx.prior_baseline
    if b is None:
        return None
    f = ctx.frame
    if config.cloud_star_fraction > 0 and f.n_stars < config.cloud_star_fraction * b.n_stars:
        return (f"clouds? {f.n_stars} stars against {b.n_stars:.0f} in the baseline "
                f"(< {100 * config.cloud_star_fraction:.0f} %)")
    if config.cloud_flux_fraction > 0 and b.flux_per_s and f.flux_per_s is not None \
            and f.flux_per_s < config.cloud_flux_fraction * b.flux_per_s:
        return (f"clouds? star flux {100 * f.flux_per_s / b.flux_per_s:.0f} % of the baseline "
                f"(< {100 * config.cloud_flux_fraction:.0f} %)")
    if config.thin_cloud_star_fraction > 0 and f.hfr_px and b.hfr_px and b.n_stars:
        # larger stars are fainter per pixel: fewer pass the detection threshold, focus or seeing alike
        grown = max(1.0, f.hfr_px / b.hfr_px) ** -STAR_COUNT_HFR_EXPONENT
        if f.n_stars < config.thin_cloud_star_fraction * grown * b.n_stars:
            return (f"thin clouds? {f.n_stars} stars against {b.n_stars:.0f} in the baseline, fewer than the "
                    f"star growth explains (< {100 * config.thin_cloud_star_fraction * grown:.0f} %)")
    return None


def veto_trailing(ctx: Context, config: PolicyConfig) -> str | None:
    e = ctx.frame.eccentricity
    if e is None or e < config.max_eccentricity:
        return None
    base_e = ctx.prior_baseline.eccentricity if ctx.prior_baseline else None
    if base_e is not None and e < base_e + config.eccentricity_rise:
        return None
    return f"elongated stars (eccentricity {e:.2f}): trailing, wind or guiding, not focus"


def _diagnosis_veto(ctx: Context, labels: frozenset[str], why: str) -> str | None:
    """``diagnosis: <label><why> — <advice>`` when the frame's diagnosis is one of ``labels``."""
    label = (ctx.frame.diagnosis or "").lower()
    if label not in labels:
        return None
    advice = f" — {ctx.frame.diagnosis_advice}" if ctx.frame.diagnosis_advice else ""
    return f"diagnosis: {label}{why}{advice}"


def veto_diagnosis(ctx: Context, config: PolicyConfig) -> str | None:
    return _diagnosis_veto(ctx, TRANSIENT_LABELS, ", not focus")


def veto_baseline(ctx: Context, config: PolicyConfig) -> str | None:
    b = ctx.baseline
    if b is not None and b.complete:
        return None
    have = b.n_frames if b else 0
    return (f"building the in-focus baseline for filter {ctx.frame.filter_name or '-'} "
            f"({have}/{config.baseline_frames} frames)")


def veto_optical_defect(ctx: Context, config: PolicyConfig) -> str | None:
    return _diagnosis_veto(ctx, OPTICAL_LABELS, " (an optical defect a refocus does not fix)")


def veto_seeing(ctx: Context, config: PolicyConfig) -> str | None:
    """Stars grew but kept their peaked profile: seeing got worse, not focus.

    Defocus flattens the profile (HFD/FWHM falls ~0.03 by 0.4 CFZ and ~0.15 by a whole zone
    on the demo rig), seeing only scales it. When the profile is measured, image rules need
    it corroborated: the recent frames' HFD/FWHM must have fallen below the baseline's by
    ``profile_drop_min`` and by ``confidence_z`` standard errors. Without profiles the
    HFR statistics decide alone.
    """
    if not config.seeing_veto or ctx.profile_drop is None or ctx.profile_sigma is None:
        return None
    need = max(config.profile_drop_min, config.confidence_z * ctx.profile_sigma)
    if ctx.profile_drop >= need:
        return None
    growth = (ctx.ratio or 1.0) - 1.0
    assert ctx.baseline is not None and ctx.baseline.profile_ratio is not None
    return (f"stars {100 * growth:+.0f} % but the profile did not flatten (HFD/FWHM "
            f"{ctx.baseline.profile_ratio - ctx.profile_drop:.3f} vs {ctx.baseline.profile_ratio:.3f} in focus, "
            f"drop {ctx.profile_drop:+.3f} < {need:.3f}): seeing, not focus")


def veto_cooldown(ctx: Context, config: PolicyConfig) -> str | None:
    st = ctx.state
    if st.waiting_since_s is None:
        return None
    if config.cooldown_frames and st.n_frames_waiting + 1 > config.cooldown_frames:
        return None
    return (f"a refocus was asked for {(ctx.now_s - st.waiting_since_s) / 60.0:.0f} min ago; waiting for the "
            f"autofocus ({st.n_frames_waiting + 1}/{config.cooldown_frames} frames)")


def veto_af_in_progress(ctx: Context, config: PolicyConfig) -> str | None:
    return "an autofocus is running" if ctx.state.af_in_progress else None


VETOES: tuple[Veto, ...] = (
    Veto("not_light", "skip", "all", veto_not_light,
         "IMAGETYP is FLAT, DARK, BIAS... (frame ignored entirely)"),
    Veto("too_few_stars", "skip", "all", veto_too_few_stars, "fewer than min_stars stars (or no HFR)"),
    Veto("diagnosis", "skip", "all", veto_diagnosis,
         f"the single-frame diagnosis says {' / '.join(sorted(TRANSIENT_LABELS))} (its transient labels)"),
    Veto("clouds", "skip", "all", veto_clouds,
         "star count < cloud_star_fraction x baseline, or star flux per second < cloud_flux_fraction x baseline, "
         "or star count < thin_cloud_star_fraction x what the stars' growth explains (HFR ratio**-1.2)"),
    Veto("trailing", "skip", "all", veto_trailing,
         "eccentricity >= max_eccentricity and eccentricity_rise above the baseline"),
    Veto("autofocus_in_progress", "hold", "all", veto_af_in_progress, "an autofocus is running"),
    Veto("cooldown", "hold", "all", veto_cooldown,
         "a refocus was asked for; wait for the autofocus or cooldown_frames frames"),
    Veto("baseline", "hold", "image", veto_baseline,
         "rules that need the filter's own baseline wait until it is complete (baseline_frames)"),
    Veto("optical_defect", "hold", "image", veto_optical_defect,
         f"the diagnosis says {' / '.join(sorted(OPTICAL_LABELS))} (its optical labels): a refocus does not "
         "fix it, warn instead"),
    Veto("seeing", "hold", "image", veto_seeing,
         "the profile was measured and did not flatten: HFD/FWHM of the last 3 frames not profile_drop_min "
         "and confidence_z standard errors below the baseline's (seeing, not focus); seeing_veto"),
)


# =========================================================================== decide

def decide(history: Sequence[FrameRecord], state: PolicyState, config: PolicyConfig, now: float, *,
           frame: FrameRecord, rig: Rig | None = None, night: NightMemory | None = None) -> Decision:
    """The verdict on ``frame`` given the accepted frames since the autofocus.

    Parameters
    ----------
    history
        Accepted (not skipped) light frames since the last autofocus, oldest first, without
        ``frame``.
    state
        The policy state before this frame.
    config
        Thresholds.
    now
        The frame's time in seconds since the epoch (its DATE-OBS): every duration is measured
        on the frames' clock.
    frame
        The frame to decide on.
    rig
        Optics for the defocus conversion (``None``: HFR-percent fallback).
    night
        What the night taught so far (in-focus sizes per filter and autofocus run, the
        frame-to-frame scatter); ``None``: only ``history`` (no independent reference).
    """
    rig = rig or Rig()
    ctx = _context(history, state, config, now, frame, rig, night)
    figures = _figures(ctx, config)
    for v in VETOES:
        if v.effect != "skip":
            continue
        why = v.func(ctx, config)
        if why:
            return Decision(decision="skip", reasons=(why,), rules=(v.name,), **figures)
    fired = [(r, r.func(ctx, config)) for r in RULES if r.enabled(config)]
    fired = [(r, f) for r, f in fired if f is not None]
    holds: list[tuple[Veto, str]] = []
    for v in VETOES:
        if v.effect != "hold":
            continue
        why = v.func(ctx, config)
        if why:
            holds.append((v, why))
    # an optical defect is also worth a warning on its own (refocusing would not fix it)
    warnings = [why for v, why in holds if v.name == "optical_defect"]
    active: list[Fired] = []
    held: list[str] = []
    hold_reasons: list[str] = []
    for rule, f in fired:
        blocking = [(v, why) for v, why in holds if (v.scope == "all" or v.scope == rule.kind)
                    and (rule.needs_baseline or v.name != "baseline")]
        if blocking:
            held.append(rule.name)
            for v, why in blocking:
                if why not in hold_reasons:
                    hold_reasons.append(why)
        else:
            active.append(f)
    if active:
        return Decision(decision="refocus", reasons=tuple(f.reason for f in active),
                        rules=tuple(f.rule for f in active), held=tuple(held), warnings=tuple(warnings), **figures)
    reasons: list[str] = []
    if held:
        fired_reasons = [f.reason for r, f in fired if r.name in held]
        reasons += [f"held back: {why}" for why in hold_reasons] + [f"(would refocus: {r})" for r in fired_reasons]
    else:
        reasons.append(_ok_summary(ctx, config, holds))
    return Decision(decision="ok", reasons=tuple(reasons), held=tuple(held), warnings=tuple(warnings), **figures)


def _ok_summary(ctx: Context, config: PolicyConfig, holds: list[tuple[Veto, str]]) -> str:
    for v, why in holds:
        if v.name == "baseline":
            return why
    parts = []
    if ctx.drift is not None and ctx.cfz_um and ctx.defocus_um is not None:
        model_cfz = ctx.drift.defocus_um / ctx.cfz_um
        parts.append(f"in focus: drift model {ctx.drift.defocus_um:.0f} µm = {model_cfz:.2f} CFZ "
                     f"(growth {ctx.drift.z:.1f} σ; this frame alone {ctx.defocus_um:.0f} µm, seeing jitter "
                     f"{100 * ctx.jitter:.0f} %; {_limit_text(ctx, config)})")
    elif ctx.defocus_um is not None and ctx.cfz_um:
        parts.append(f"in focus: defocus {ctx.defocus_um:.0f} µm = {ctx.defocus_um / ctx.cfz_um:.2f} CFZ "
                     f"({_limit_text(ctx, config)})")
    elif ctx.ratio is not None:
        parts.append(f"in focus: HFR {100 * (ctx.ratio - 1):+.0f} % vs baseline ({_limit_text(ctx, config)})")
    else:
        parts.append("in focus")
    if ctx.trend is not None:
        parts.append(f"trend {100 * 60 * ctx.trend.slope_per_min:+.1f} %/h")
    return "; ".join(parts)


def _figures(ctx: Context, config: PolicyConfig) -> dict[str, Any]:
    f, b, tr, dr = ctx.frame, ctx.baseline, ctx.trend, ctx.drift
    return dict(
        file=f.file, time_s=f.time_s, filter_name=f.filter_name, n_stars=f.n_stars, hfr_px=f.hfr_px,
        baseline_hfr_px=b.hfr_px if b else None, expected_hfr_px=ctx.expected_hfr_px,
        defocus_um=ctx.defocus_um,
        defocus_cfz=(ctx.defocus_um / ctx.cfz_um) if (ctx.defocus_um is not None and ctx.cfz_um) else None,
        cfz_um=ctx.cfz_um, limit_um=ctx.limit_um,
        predicted_defocus_um=dr.predicted_um if dr else (_ratio_to_defocus(ctx, tr.predicted) if tr else None),
        predicted_defocus_low_um=dr.predicted_low_um if dr else
        (_ratio_to_defocus(ctx, tr.predicted_low) if tr else None),
        drift_z=dr.z if dr else None,
        model_defocus_um=dr.defocus_um if dr else None,
        profile_drop=ctx.profile_drop,
        trend_pct_per_h=100.0 * 60.0 * tr.slope_per_min if tr else None,
        trend_z=tr.slope_z if tr else None,
        jitter_pct=100.0 * ctx.jitter if b else None,
        profile_ratio=f.profile_ratio, baseline_profile_ratio=b.profile_ratio if b else None,
        temp_c=f.temp_c, temp_delta_c=ctx.temp_delta_c, minutes_since_af=ctx.minutes_since_af,
        n_frames_since_af=ctx.state.n_frames_since_af + (1 if f.is_light else 0),
        reference_hfr_px=ctx.reference.hfr_px if ctx.reference else None,
        reference_pct=100.0 * ctx.reference.sigma if ctx.reference else None,
        reference_z=ctx.reference_z,
    )


# =========================================================================== the stateful wrapper

class Monitor:
    """The policy with its memory: feed it autofocus marks and frames in capture order.

    Still pure (no files, no clock): the watcher, ``replay`` and the demo drive it and record
    what it says. ``restore`` replays recorded decisions so a restarted watcher continues
    exactly where it stopped without deciding (or triggering) again.
    """

    def __init__(self, config: PolicyConfig | None = None, rig: Rig | None = None):
        self.config = config or PolicyConfig()
        self.rig = rig or Rig()
        self.state = PolicyState()
        self.history: list[FrameRecord] = []
        self.night = NightMemory()
        self.offsets_steps = parse_filter_offsets(self.config.filter_offsets)
        #: focuser moves seen at filter changes, (from, to) -> steps (both directions)
        self.learnt_offsets_steps: dict[tuple[str, str], float] = {}
        self._last_filter: str | None = None

    def autofocus(self, mark: AutofocusMark) -> None:
        """An autofocus happened: the baseline is taken again from the frames after it.

        A report that arrives just after the focuser jump it caused (at most one frame later)
        is the same autofocus: its temperature and filter are kept, the baseline is not reset
        a second time.
        """
        st = self.state
        if st.af_source == "focuser-jump" and st.n_frames_since_af <= 1 and mark.source != "focuser-jump":
            self.state = replace(st, af_source=mark.source,
                                 af_temp_c=mark.temp_c if mark.temp_c is not None else st.af_temp_c,
                                 af_filter=mark.filter_name or st.af_filter)
            return
        self.state = on_autofocus(st, mark)
        self.history = []
        self.night.autofocus(mark.filter_name)

    def expected_offset_steps(self, old: str, new: str) -> float | None:
        """The focuser move a change from filter ``old`` to ``new`` makes by itself (steps).

        From ``[policy] filter_offsets`` when both filters are there, else the move seen at
        the last change between the two filters (either way round); ``None`` when unknown.
        """
        if old in self.offsets_steps and new in self.offsets_steps:
            return self.offsets_steps[new] - self.offsets_steps[old]
        return self.learnt_offsets_steps.get((old, new))

    def _new_hfr_minimum(self, frame: FrameRecord) -> bool:
        """The frame is clearly below its filter's last level: something refocused.

        Against the last ``baseline_frames`` accepted frames of the filter (airmass-corrected
        as the night remembers them): below their lowest by ``confidence_z`` x the night's
        frame-to-frame scatter (``jitter_floor_pct`` until that is known).
        """
        if not frame.hfr_px or frame.hfr_px <= 0 or not math.isfinite(frame.hfr_px):
            return False
        seen = [s.log_hfr for s in self.night.samples if s.filter_name == frame.filter_name]
        if not seen:
            return False
        am = frame.airmass if self.config.airmass_correction and frame.airmass and frame.airmass > 0 else None
        log_h = math.log(frame.hfr_px) - (AIRMASS_EXPONENT * math.log(am) if am else 0.0)
        jitter, _ = self.night.jitter()
        jitter = max(self.config.jitter_floor_pct / 100.0 if jitter is None else jitter, 1e-4)
        return log_h < min(seen[-self.config.baseline_frames:]) - self.config.confidence_z * jitter

    def _is_filter_offset(self, frame: FrameRecord) -> bool:
        """A focuser jump that is the new filter's offset, not an autofocus (and learn the move).

        It must coincide with a filter change, match that pair's configured or learnt offset
        within ``focuser_jump_steps``, and bring no new HFR minimum for the filter (an
        autofocus run at the filter change would). A jump without a filter change is always an
        autofocus.
        """
        old, new = self._last_filter, frame.filter_name
        if old is None or new is None or old == new or frame.focuser_pos is None \
                or self.state.last_focuser_pos is None:
            return False
        move = float(frame.focuser_pos - self.state.last_focuser_pos)
        want = self.expected_offset_steps(old, new)
        self.learnt_offsets_steps[(old, new)], self.learnt_offsets_steps[(new, old)] = move, -move
        if want is None or abs(move - want) >= self.config.focuser_jump_steps:
            return False
        return not self._new_hfr_minimum(frame)

    def _pre(self, frame: FrameRecord) -> None:
        st = self.state
        if not focuser_jumped(st, frame, self.config):
            return
        if self._is_filter_offset(frame):
            self.state = replace(st, last_focuser_pos=frame.focuser_pos)
            return
        if st.n_frames_since_af == 0 and st.af_source not in (None, "start", "focuser-jump"):
            # the autofocus we were told about moved the focuser: the same event, seen twice
            self.state = replace(st, last_focuser_pos=frame.focuser_pos)
        else:
            self.autofocus(AutofocusMark(time_s=frame.time_s, source="focuser-jump",
                                         filter_name=frame.filter_name, temp_c=None, position=frame.focuser_pos))

    def observe(self, frame: FrameRecord, *, now: float | None = None, rig: Rig | None = None) -> Decision:
        """Decide on ``frame`` and remember it; ``now`` defaults to the frame's time."""
        self._pre(frame)
        d = decide(self.history, self.state, self.config, frame.time_s if now is None else now,
                   frame=frame, rig=rig or self.rig, night=self.night)
        self._post(frame, d)
        return d

    def restore(self, frame: FrameRecord, decision: Decision) -> None:
        """Take a recorded decision as given (journal replay after a restart)."""
        self._pre(frame)
        self._post(frame, decision)

    def _post(self, frame: FrameRecord, d: Decision) -> None:
        self.state = advance(self.state, frame, d)
        if frame.is_light and frame.filter_name:
            self._last_filter = frame.filter_name
        if d.decision != "skip" and frame.is_light:
            self.history.append(frame)
            if frame.hfr_px:
                self.night.add(frame.filter_name, frame.time_s, frame.hfr_px,
                               frame.airmass if self.config.airmass_correction else None,
                               self.config.baseline_frames)

    def autofocus_started(self) -> None:
        """An autofocus is running (a capture program said so): hold refocus requests."""
        self.state = replace(self.state, af_in_progress=True)


# =========================================================================== the rule table

def rules_table(config: PolicyConfig | None = None) -> list[dict[str, Any]]:
    """Rows for ``focuswatch rules``: every rule and veto with its settings' current values."""
    config = config or PolicyConfig()
    rows: list[dict[str, Any]] = []
    for r in RULES:
        rows.append({"kind": "rule", "name": r.name, "scope": r.kind, "fires_when": r.fires_when,
                     "settings": {s: getattr(config, s) for s in r.settings}, "off_when": r.off_when,
                     "active": bool(r.enabled(config))})
    for v in VETOES:
        rows.append({"kind": "veto", "name": v.name, "scope": v.scope, "effect": v.effect, "fires_when": v.when,
                     "settings": {}, "off_when": "", "active": True})
    return rows


def _rst_table(headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int]) -> str:
    """A reStructuredText simple table, each cell wrapped to its column's width."""
    import textwrap

    rule = "  ".join("=" * w for w in widths)
    out = [rule, "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(), rule]
    for row in rows:
        cells = [textwrap.wrap(c, w) or [""] for c, w in zip(row, widths)]
        for i in range(max(len(c) for c in cells)):
            out.append("  ".join((c[i] if i < len(c) else "").ljust(w) for c, w in zip(cells, widths)).rstrip())
    out.append(rule)
    return "\n".join(out)


def rule_table_text(config: PolicyConfig | None = None) -> str:
    """The rule table of this module's docstring, generated from :data:`RULES` (defaults or ``config``)."""
    config = config or PolicyConfig()
    rows = [(r.name, r.fires_when, ", ".join(f"{k} ({getattr(config, k)!r})" for k in r.settings), r.off_when)
            for r in RULES]
    return _rst_table(("rule", "fires when", "settings (value)", "switched off by"), rows, (14, 56, 34, 24))


def veto_table_text() -> str:
    """The veto table of this module's docstring, generated from :data:`VETOES`."""
    rows = [(v.name, v.effect, v.scope, v.when) for v in VETOES]
    return _rst_table(("veto", "effect", "scope", "when"), rows, (21, 6, 5, 78))


if __doc__:
    __doc__ = __doc__.replace("{RULE_TABLE}", rule_table_text()).replace("{VETO_TABLE}", veto_table_text())


# =========================================================================== summaries

@dataclass(frozen=True)
class Summary(Record):
    """What happened over a night (or would have, for ``replay``)."""

    n_frames: int
    n_ok: int
    n_refocus: int
    n_skip: int
    n_autofocus: int
    refocus_rules: Mapping[str, int]
    skip_reasons: Mapping[str, int]
    max_defocus_um: float | None
    max_defocus_cfz: float | None
    median_hfr_px: float | None


def summarize(decisions: Sequence[Decision], n_autofocus: int = 0) -> Summary:
    """Count decisions, rules and skip reasons; worst defocus seen on accepted frames."""
    rules: dict[str, int] = {}
    skips: dict[str, int] = {}
    for d in decisions:
        if d.decision == "refocus":
            for r in d.rules:
                rules[r] = rules.get(r, 0) + 1
        elif d.decision == "skip":
            for r in d.rules or ("other",):
                skips[r] = skips.get(r, 0) + 1
    kept = [d for d in decisions if d.decision != "skip"]
    dfs = [d.defocus_um for d in kept if d.defocus_um is not None]
    cfzs = [d.defocus_cfz for d in kept if d.defocus_cfz is not None]
    return Summary(len(decisions), sum(d.decision == "ok" for d in decisions),
                   sum(d.decision == "refocus" for d in decisions), sum(d.decision == "skip" for d in decisions),
                   n_autofocus, rules, skips, max(dfs) if dfs else None, max(cfzs) if cfzs else None,
                   _median([d.hfr_px for d in kept]))
