"""Everything the rules and vetoes look at for one frame, computed once: :class:`Context`.

:func:`build_context` runs the estimators of :mod:`focuswatch.policy.estimators` over the frames
since the autofocus (baseline, expected HFR, defocus and its limit, jitter, trend, drift
model, profile change, the independent reference of :mod:`focuswatch.policy.baseline`) so
that each rule and veto is a short comparison of those figures with the settings. The small
helpers the rules share (the limit as a sentence, a ratio as a defocus) live here too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from focuswatch import optics
from focuswatch.optics import Rig
from focuswatch.policy.baseline import (AIRMASS_EXPONENT, MEDIAN_SE_FACTOR, NightMemory, Reference, combined_jitter,
                                        reference_for)
from focuswatch.policy.config import PolicyConfig
from focuswatch.policy.estimators import (Baseline, DriftFit, Trend, baseline_for, profile_change,
                                          expected_hfr_px, fit_drift, fit_trend, frame_jitter, physical_profile,
                                          reference_z_of)
from focuswatch.policy.records import FrameRecord
from focuswatch.policy.state import PolicyState


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
    #: the frame's filter wavelength: the defocus and the zone are read at the same one
    wavelength_nm: float = 550.0
    #: sentences the decision carries whatever the rules say (a stuck capture clock)
    notes: tuple[str, ...] = ()
    #: the profile's expected change with defocus on this rig (blur / in-focus HFR, ln HFD/FWHM
    #: relative to in focus: :func:`~focuswatch.policy.estimators.physical_profile`); ``None``
    #: without optics, baseline or profiles
    profile_curve: tuple[np.ndarray, np.ndarray] | None = None
    #: what the rules said on this frame (rule name -> its ``Fired`` or ``None``), filled by
    #: :func:`~focuswatch.policy.decide.decide` once they have run: a veto that asks whether a rule
    #: fires (the seeing veto asks the drift rule) reads it instead of running the rule again
    rule_outcomes: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def baseline_sigma(self) -> float:
        """Uncertainty of the baseline (fraction): the median of ``n`` jittery frames."""
        n = self.baseline.n_frames if self.baseline else 1
        return MEDIAN_SE_FACTOR * self.jitter / math.sqrt(max(n, 1))


def focus_optics(rig: Rig) -> tuple[float, float] | None:
    """(focal ratio, effective pixel um), or ``None`` when either is unknown: defocus needs both."""
    n, pix = rig.f_ratio, rig.effective_pixel_um
    return (n, pix) if n and pix else None


def ratio_of(f: FrameRecord, history: Sequence[FrameRecord], config: PolicyConfig,
              cache: dict[str | None, Baseline | None]) -> float | None:
    """``f``'s HFR over its filter's expected in-focus HFR; ``cache`` keeps one baseline per filter."""
    if f.filter_name not in cache:
        cache[f.filter_name] = baseline_for(history, f.filter_name, config)
    b = cache[f.filter_name]
    if b is None or not f.has_size:
        return None
    return f.hfr_px / expected_hfr_px(b, f, config)


def frame_wavelength_nm(frame: FrameRecord, rig: Rig) -> float:
    """The wavelength ``frame`` was taken at (its filter's, else the rig's): the zone and the
    defocus read from the HFR growth must use the same one (a red or Ha frame has a wider zone
    *and* a larger diffraction share of its in-focus star)."""
    return optics.wavelength_for_filter(frame.filter_name, rig.wavelength_nm)


def defocus_limits(frame: FrameRecord, exp_hfr: float | None, config: PolicyConfig,
            rig: Rig) -> tuple[float | None, float | None, float | None]:
    """(CFZ um, limit um, limit as an HFR ratio) for ``frame``'s filter and in-focus HFR."""
    opt = focus_optics(rig)
    wl = frame_wavelength_nm(frame, rig)
    cfz = optics.cfz_um(opt[0], wl) if opt else None
    limit_um = config.defocus_limit_cfz * cfz if cfz else None
    limit_ratio = None
    if exp_hfr:
        if opt and limit_um is not None:
            limit_ratio = optics.hfr_px_for_defocus(limit_um, exp_hfr, opt[0], opt[1], rig.obstruction,
                                                     wavelength_nm=wl) / exp_hfr
        else:
            limit_ratio = 1.0 + config.fallback_hfr_increase_pct / 100.0
    return cfz, limit_um, limit_ratio


def build_context(history: Sequence[FrameRecord], state: PolicyState, config: PolicyConfig, now: float,
             frame: FrameRecord, rig: Rig, night: NightMemory | None = None) -> Context:
    """Run the estimators once for ``frame`` so every rule and veto reads the same figures."""
    hist = tuple(history)
    with_frame = hist + (frame,)
    prior = baseline_for(hist, frame.filter_name, config)
    base = prior if (prior is not None and prior.complete) else baseline_for(with_frame, frame.filter_name, config)
    exp_hfr = expected_hfr_px(base, frame, config) if base else None
    ratio = frame.hfr_px / exp_hfr if (exp_hfr and frame.has_size) else None
    opt = focus_optics(rig)
    cfz, limit_um, limit_ratio = defocus_limits(frame, exp_hfr, config, rig)
    defocus = None
    if opt and exp_hfr and frame.has_size:
        defocus = optics.defocus_um_from_hfr(frame.hfr_px, exp_hfr, opt[0], opt[1], rig.obstruction,
                                             wavelength_nm=frame_wavelength_nm(frame, rig))
    floor = config.jitter_floor_pct / 100.0
    jitter, jitter_dof = floor, config.prior_dof
    trend = drift = None
    notes: tuple[str, ...] = ()
    prof_drop = prof_sigma = None
    prof_curve: tuple[np.ndarray, np.ndarray] | None = None
    same = [f for f in with_frame if f.filter_name == frame.filter_name]
    night_j, night_dof = night.jitter() if night is not None else (None, 0)
    night_known = night_j is not None and night_dof >= config.night_jitter_min_dof
    if base is not None and base.complete:
        # a complete baseline is the same whether or not this frame is counted: no second pass
        cache: dict[str | None, Baseline | None] = {frame.filter_name: base}
        rated = [(f, ratio_of(f, with_frame, config, cache)) for f in same]
        rated = [(f, r) for f, r in rated if r is not None and r > 0]
        pts = [(f.time_s, r) for f, r in rated]
        jitter, jitter_dof = frame_jitter([r for _, r in pts], 0.0, config.prior_dof)
    jitter, jitter_dof = combined_jitter(jitter if base is not None and base.complete else 0.0, jitter_dof, night,
                                         floor=floor, night_floor=config.night_jitter_floor_pct / 100.0,
                                         night_min_dof=config.night_jitter_min_dof, prior_dof=config.prior_dof)
    reference = _reference(frame, night, config, rig, jitter) if frame.has_size else None
    if base is not None and base.complete:
        prof_frames = [f for f, _ in rated]
        steps = np.diff(np.sort([t for t, _ in pts]))
        cadence_min = float(np.median(steps)) / 60.0 if len(steps) else 0.0
        lookahead = config.lookahead_frames * cadence_min
        window = [(t, r) for t, r in pts
                  if config.trend_window_min <= 0 or t >= now - config.trend_window_min * 60.0]
        if len(window) >= config.min_trend_frames and len({t for t, _ in window}) == 1:
            notes = (same_time_note(len(window), window[0][0]),)
        elif len(window) >= config.min_trend_frames:
            trend = fit_trend([(t - now) / 60.0 for t, _ in window], [r for _, r in window],
                              lookahead_min=lookahead, z=config.confidence_z, sigma_floor=floor)
        if opt and exp_hfr and base.profile_ratio is not None:
            prof_curve = physical_profile(exp_hfr, opt[0], opt[1], rig.obstruction, frame_wavelength_nm(frame, rig))
        if len(pts) >= 3 and opt and exp_hfr:
            t0 = pts[0][0]
            prof_prior = _profile_prior(night, config)
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
                              prior_dof=config.prior_dof,
                              # the profile is a witness only once the night knows its scatter: a few
                              # frames' residuals alone can make a chance fall read as a 6-7 sigma drift
                              profiles=[f.profile_ratio for f in prof_frames] if prof_prior is not None else None,
                              profile_floor=config.profile_floor, level_prior=level_prior,
                              profile_curve=prof_curve, profile_sigma_prior=prof_prior,
                              onsets=onset_fractions(config), min_onset_frames=config.min_trend_frames,
                              # a later onset is one more fitted number: it must beat the model from
                              # the autofocus by drift_onset_gain_z (as the root of the chi-square gain)
                              onset_min_gain=config.drift_onset_gain_z ** 2)
        prof_drop, prof_sigma = profile_change(same, base, config)
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
                   cadence_min if base is not None and base.complete else 0.0,
                   frame_wavelength_nm(frame, rig), notes, prof_curve)


def onset_fractions(config: PolicyConfig) -> tuple[float, ...]:
    """The later drift onsets the model tries, as fractions of the time since the autofocus
    (``drift_onsets`` evenly spaced: 1 -> 1/2; 3 -> 1/4, 1/2, 3/4)."""
    k = config.drift_onsets
    return tuple(j / (k + 1.0) for j in range(1, k + 1))


def _profile_prior(night: NightMemory | None, config: PolicyConfig) -> tuple[float, float] | None:
    """The night's HFD/FWHM scatter for the drift fit, once it rests on ``night_jitter_min_dof`` differences."""
    if night is None:
        return None
    sd, dof = night.profile_jitter()
    return (sd, float(dof)) if sd is not None and dof >= config.night_jitter_min_dof else None


def _airmass_log(f: FrameRecord, now_frame: FrameRecord, config: PolicyConfig) -> float:
    """ln of the seeing growth from ``now_frame``'s airmass to ``f``'s (0 when unknown or off)."""
    if not config.airmass_correction or not f.airmass or not now_frame.airmass:
        return 0.0
    return AIRMASS_EXPONENT * math.log(f.airmass / now_frame.airmass)


def _reference(frame: FrameRecord, night: NightMemory | None, config: PolicyConfig, rig: Rig,
               jitter: float) -> Reference | None:
    """The independent in-focus HFR for ``frame`` (:func:`focuswatch.policy.baseline.reference_for`)."""
    if night is None:
        night = NightMemory()
    return reference_for(frame.filter_name, frame.time_s, frame.airmass if config.airmass_correction else None,
                         night, jitter=jitter, wander_pct_per_h=config.seeing_wander_pct_per_h,
                         cross_filter_pct=config.cross_filter_pct, baseline_frames=config.baseline_frames,
                         rig=rig, seeing_arcsec=frame.seeing_arcsec, rig_seeing_pct=config.rig_seeing_pct,
                         hfr_kind=frame.hfr_kind)


def same_time_note(n_frames: int, time_s: float) -> str:
    """One line for a trend window whose frames all carry one capture time: no line can be
    fitted through them (a stuck camera or capture-PC clock writes the same DATE-OBS)."""
    import datetime as _dt

    # epoch + offset, not fromtimestamp: Windows refuses negative times (a .NET program with an
    # unset clock writes year-1 dates, which are before 1970)
    # (the dates a datetime can hold bound it: year 1 to 9999, not tuned numbers)
    epoch = _dt.datetime(1970, 1, 1)
    first_s = (_dt.datetime.min - epoch).total_seconds()
    last_s = (_dt.datetime.max - epoch).total_seconds()
    when = (epoch + _dt.timedelta(seconds=time_s)).isoformat(timespec="seconds") \
        if math.isfinite(time_s) and first_s <= time_s < last_s else repr(time_s)
    return (f"no trend: the last {n_frames} frames all carry the same capture time ({when} UTC, DATE-OBS): "
            "is the capture clock stuck? Rules that need time (drift, trend) cannot judge them")


def ratio_to_defocus(ctx: Context, ratio: float) -> float | None:
    """Defocus (um) that grows the expected HFR by ``ratio``; ``None`` without optics or baseline."""
    opt = focus_optics(ctx.rig)
    if not opt or not ctx.expected_hfr_px:
        return None
    return optics.defocus_um_from_hfr(ratio * ctx.expected_hfr_px, ctx.expected_hfr_px, opt[0], opt[1],
                                      ctx.rig.obstruction, wavelength_nm=ctx.wavelength_nm)


def limit_text(ctx: Context, config: PolicyConfig) -> str:
    """The limit in force, as the decision's reason states it (CFZ when optics are known)."""
    if ctx.limit_um is not None:
        return f"limit {config.defocus_limit_cfz:.2f} CFZ = {ctx.limit_um:.0f} µm"
    return f"limit +{config.fallback_hfr_increase_pct:g} % HFR (no focal ratio/pixel size: defocus unknown)"
