"""The verdict on one frame (:func:`decide`) and the policy with its memory (:class:`Monitor`).

:func:`decide` builds the frame's :class:`~focuswatch.policy.context.Context`, applies the
``skip`` vetoes, runs every enabled rule of :data:`~focuswatch.policy.rules.RULES`, then
holds back what a ``hold`` veto blocks, and returns a :class:`~focuswatch.policy.records.Decision`
with its reasons and figures. :class:`Monitor` keeps the state, the frames since the
autofocus and the night's memory between frames, and tells a filter offset from an
autofocus; the watcher, ``replay`` and the demo drive it. Pure: time comes in as an argument.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

from focuswatch.optics import Rig
from focuswatch.policy.baseline import AIRMASS_EXPONENT, NightMemory
from focuswatch.policy.config import PolicyConfig, parse_filter_offsets
from focuswatch.policy.context import Context, build_context, limit_text, ratio_to_defocus
from focuswatch.policy.records import AutofocusMark, Decision, FrameRecord
from focuswatch.policy.rules import RULES, Fired
from focuswatch.policy.state import (FOCUSER_JUMP, PolicyState, advance, focuser_jumped, forget_af_points,
                                    merges_into_jump, on_autofocus, with_af_point)
from focuswatch.policy.vetoes import VETOES, Veto


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
    ctx = build_context(history, state, config, now, frame, rig, night)
    figures = _figures(ctx, config)
    for v in VETOES:
        if v.effect != "skip":
            continue
        why = v.func(ctx, config)
        if why:
            return Decision(decision="skip", reasons=(why,), rules=(v.name,), **figures)
    fired = [(r, r.func(ctx, config)) for r in RULES if r.enabled(config)]
    ctx.rule_outcomes.update((r.name, f) for r, f in fired)   # the hold vetoes read them, not re-run them
    fired = [(r, f) for r, f in fired if f is not None]
    holds: list[tuple[Veto, str]] = []
    for v in VETOES:
        if v.effect != "hold":
            continue
        why = v.func(ctx, config)
        if why:
            holds.append((v, why))
    # an optical defect is also worth a warning on its own (refocusing would not fix it)
    warnings = [why for v, why in holds if v.name == "optical_defect"] + list(ctx.notes)
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
                     f"{100 * ctx.jitter:.0f} %; {limit_text(ctx, config)})")
    elif ctx.defocus_um is not None and ctx.cfz_um:
        parts.append(f"in focus: defocus {ctx.defocus_um:.0f} µm = {ctx.defocus_um / ctx.cfz_um:.2f} CFZ "
                     f"({limit_text(ctx, config)})")
    elif ctx.ratio is not None:
        parts.append(f"in focus: HFR {100 * (ctx.ratio - 1):+.0f} % vs baseline ({limit_text(ctx, config)})")
    else:
        parts.append("in focus")
    if ctx.trend is not None:
        parts.append(f"trend {100 * 60 * ctx.trend.slope_per_min:+.1f} %/h")
    return "; ".join(parts + list(ctx.notes))


def _figures(ctx: Context, config: PolicyConfig) -> dict[str, Any]:
    f, b, tr, dr = ctx.frame, ctx.baseline, ctx.trend, ctx.drift
    return dict(
        file=f.file, time_s=f.time_s, filter_name=f.filter_name, n_stars=f.n_stars, hfr_px=f.hfr_px,
        baseline_hfr_px=b.hfr_px if b else None, expected_hfr_px=ctx.expected_hfr_px,
        defocus_um=ctx.defocus_um,
        defocus_cfz=(ctx.defocus_um / ctx.cfz_um) if (ctx.defocus_um is not None and ctx.cfz_um) else None,
        cfz_um=ctx.cfz_um, limit_um=ctx.limit_um,
        predicted_defocus_um=dr.predicted_um if dr else (ratio_to_defocus(ctx, tr.predicted) if tr else None),
        predicted_defocus_low_um=dr.predicted_low_um if dr else
        (ratio_to_defocus(ctx, tr.predicted_low) if tr else None),
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
        if merges_into_jump(st, mark):
            # the runs the jump set aside come back (with_af_point): nothing was forgotten after all
            self.state = replace(st, af_source=mark.source,
                                 af_temp_c=mark.temp_c if mark.temp_c is not None else st.af_temp_c,
                                 af_filter=mark.filter_name or st.af_filter, af_points=with_af_point(st, mark),
                                 af_points_set_aside=(),
                                 af_points_reset="" if st.af_points_set_aside else st.af_points_reset)
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
        if not frame.has_size:
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
        self.state = forget_af_points(self.state, frame, self.config)   # a new night, another optical train
        st = self.state
        if not focuser_jumped(st, frame, self.config):
            return
        if self._is_filter_offset(frame):
            self.state = replace(st, last_focuser_pos=frame.focuser_pos)
            return
        if st.n_frames_since_af == 0 and st.af_source not in (None, "start", FOCUSER_JUMP):
            # the autofocus we were told about moved the focuser: the same event, seen twice
            self.state = replace(st, last_focuser_pos=frame.focuser_pos)
        else:
            self.autofocus(AutofocusMark(time_s=frame.time_s, source=FOCUSER_JUMP,
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
            if frame.has_size:
                self.night.add(frame.filter_name, frame.time_s, frame.hfr_px,
                               frame.airmass if self.config.airmass_correction else None,
                               self.config.baseline_frames, profile_ratio=frame.profile_ratio)

    def autofocus_started(self) -> None:
        """An autofocus is running (a capture program said so): hold refocus requests."""
        self.state = replace(self.state, af_in_progress=True)
