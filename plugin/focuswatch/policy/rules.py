"""The refocus rules: one pure function each, and :data:`RULES`, the one table of them.

Each rule reads the frame's :class:`~focuswatch.policy.context.Context` and returns a
:class:`Fired` (its name and a sentence with the figures) or ``None``. A :class:`Rule` row
carries the function, when it fires, the settings it reads and its own off-switch; the
tables below, the package's docstring and ``focuswatch rules`` (:func:`rules_table`) are all
generated from :data:`RULES` and :data:`~focuswatch.policy.vetoes.VETOES`.

Rules

{RULE_TABLE}

Vetoes

{VETO_TABLE}

Adding a rule is one function, one row in :data:`RULES` and one table-driven test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from focuswatch import optics
from focuswatch.policy.config import PolicyConfig
from focuswatch.policy.context import Context, defocus_limits, focus_optics, limit_text, ratio_of, ratio_to_defocus
from focuswatch.policy.estimators import Baseline, critical_z, drift_bar, expected_hfr_px
from focuswatch.policy.tempco import coefficient, drift_cap_cfz_per_h
from focuswatch.policy.vetoes import VETOES


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
    no drift at all (Student's t for a jitter measured on few frames), or, for a drift the model
    finds starting later (``drift_onsets``: the air began cooling after an in-focus stretch), at
    ``drift_onset_z``. Without a focal ratio
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
    # on a drift that began before them); its bar keeps the false alarms per hour of drift_z.
    # Not halved for being a second test: on the same frames the model's z and the line's are
    # nearly equal, so either-of-two asks about as often as the line alone
    # A rise slower than line_min_rise_pct_per_h is one the seeing makes alone over an hour or two
    # (cloud seed 0 of 40: in focus, its clear frames climb 4.3 %/h at 3.9 sigma; the real drifts
    # it was built for rise 10-18 %/h): the model's growth z still judges such a slow one
    untrusted = ctx.state.af_filter is not None and ctx.frame.filter_name != ctx.state.af_filter
    # compared in ln HFR per hour: expm1 of a line fitted to frames seconds apart (duplicated
    # DATE-OBS) overflows, and one bad header must not stop the watcher
    fast = d.slope_per_h >= math.log1p(config.line_min_rise_pct_per_h / 100.0)
    zs = critical_z(drift_bar(config, ctx.cadence_min), d.dof + config.prior_dof) if untrusted and fast else math.inf
    # a growth whose model starts after the autofocus (drift_onsets) is a look elsewhere: its own,
    # higher bar; the model from the autofocus keeps drift_z
    z_af = d.z if d.z_af is None else d.z_af
    zo = critical_z(config.drift_onset_z, d.dof + config.prior_dof) if d.z_af is not None else math.inf
    if z_af < zc and d.z < zo and d.slope_z < zs:
        return None
    # a growth faster than any thermal drift is not one: bad seeing rising over the first frames
    # (issue 13's seeing-jitter night, seed 12: 4.3 CFZ/h fitted over 21 minutes). A real step
    # (a slipping focuser) is the consecutive rule's to catch, the reference rule's after a filter change
    rate = drift_rate_cfz_per_h(ctx)
    cap, thermal = drift_cap_cfz_per_h(ctx, config)      # raised by a known coefficient x the cooling
    if cap > 0 and rate is not None and rate > cap:
        return None
    if z_af >= zc:
        growth = f"growth since the autofocus {z_af:.1f} σ"
    elif d.z >= zo:
        growth = (f"growth from the autofocus {z_af:.1f} σ, from a later onset ({d.onset_min:.0f} min after its "
                  f"first frame) {d.z:.1f} σ (needs {zo:.1f} σ)")
    else:
        growth = f"a steady rise {d.slope_z:.1f} σ (needs {zs:.1f} σ), the model's growth {z_af:.1f} σ"
    return Fired("drift", f"focus drift: defocus {d.defocus_um:.0f} µm now, {d.predicted_um:.0f} µm in "
                          f"{d.lookahead_min:.0f} min ({growth} over {d.n_frames} "
                          f"frames, needs {zc:.1f} σ; jitter {100 * d.sigma:.1f} %{thermal}) is past the "
                          f"{limit_text(ctx, config)}")


def drift_rate_cfz_per_h(ctx: Context) -> float | None:
    """The drift model's rate in zones per hour: its defocus now over the time since its origin."""
    d = ctx.drift
    if d is None or not ctx.cfz_um or d.span_min <= 0:
        return None
    return d.defocus_um / ctx.cfz_um / (d.span_min / 60.0)


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
                          f"is past the {limit_text(ctx, config)}")


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
    # the N frames all come after the baseline's: a frame that set the baseline cannot witness a
    # step away from it (three rising frames of bad seeing, the first of them in the baseline,
    # read as a step: issue 13's seeing-jitter night seed 32)
    if len(frames) < n or n_base < config.baseline_frames + n:
        return None
    cache: dict[str | None, Baseline | None] = {}
    # each frame's own jitter at confidence_z, the baseline's error (shared by all N frames, so
    # N frames in a row do not dilute it) at drift_z
    zc = critical_z(config.confidence_z, ctx.jitter_dof)
    zb = critical_z(config.drift_z, ctx.jitter_dof)
    margin = 1.0 + math.hypot(zc * ctx.jitter, zb * ctx.baseline_sigma)
    sigma = (margin - 1.0) / zc
    for f in frames[-n:]:
        r = ratio_of(f, frames, config, cache)
        b = cache.get(f.filter_name)
        if r is None or b is None or not b.complete:
            return None
        limit_ratio = defocus_limits(f, expected_hfr_px(b, f, config), config, ctx.rig)[2]
        if limit_ratio is None or r / margin < limit_ratio:
            return None
    low = ctx.ratio / margin if ctx.ratio else None
    low_um = ratio_to_defocus(ctx, low) if low else None
    what = f"defocus ≥ {low_um:.0f} µm" if low_um is not None else f"HFR ≥ +{100 * ((low or 1) - 1):.0f} %"
    return Fired("consecutive", f"{n} frames in a row past the {limit_text(ctx, config)} even at their "
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
    opt = focus_optics(ctx.rig)
    if opt and ctx.limit_um is not None:
        defocus = optics.defocus_um_from_hfr(hfr, ref.hfr_px, opt[0], opt[1], ctx.rig.obstruction,
                                             wavelength_nm=ctx.wavelength_nm)
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
                              f"{limit_text(ctx, config)}")


def temperature_coefficient(ctx: Context, config: PolicyConfig) -> tuple[float, str] | None:
    """The focuser's temperature coefficient (µm of focus per °C) and where it came from, or ``None``.

    ``[policy] tempco_um_per_c`` first (what ``focuswatch archive`` learnt over many nights);
    else the night's own autofocus runs, when the rig's ``focuser_step_um`` turns their best
    positions (steps) into µm and their fit passes its quality gate
    (:func:`focuswatch.policy.tempco.coefficient`, :func:`focuswatch.policy.state.tempco_fit`).
    """
    k = coefficient(ctx, config)                # a learnt one only past its quality gate
    return None if k.um_per_c is None else (k.um_per_c, k.source)


def rule_temperature(ctx: Context, config: PolicyConfig) -> Fired | None:
    """The temperature change since the autofocus has defocused the image past the limit.

    With the focuser's temperature coefficient k known (:func:`temperature_coefficient`) and
    optics to size the focus zone: the predicted defocus |k × ΔT| reaches
    ``defocus_limit_cfz`` of the CFZ at the frame's filter wavelength, so a fast f/4 asks after
    a fraction of a degree and a slow f/10 after several. Otherwise (no coefficient, no optics,
    or ``defocus_limit_cfz`` 0), as NINA and SGP do: the focuser temperature moved
    ``temperature_delta_c`` since the autofocus.
    """
    if ctx.temp_delta_c is None:
        return None
    k = temperature_coefficient(ctx, config)
    if k is not None and config.defocus_limit_cfz > 0 and ctx.limit_um and ctx.cfz_um:
        defocus_um = abs(k[0] * ctx.temp_delta_c)
        if defocus_um + 1e-9 < ctx.limit_um:
            return None
        return Fired("temperature", f"temperature changed {ctx.temp_delta_c:+.2f} °C since the autofocus: predicted "
                                    f"defocus {defocus_um:.0f} µm ({k[0]:+.1f} µm/°C, {k[1]}) = "
                                    f"{defocus_um / ctx.cfz_um:.2f} CFZ of {ctx.cfz_um:.0f} µm is past the "
                                    f"{limit_text(ctx, config)}")
    if abs(ctx.temp_delta_c) + 1e-9 < config.temperature_delta_c:
        return None
    note = coefficient(ctx, config).note
    return Fired("temperature", f"temperature changed {ctx.temp_delta_c:+.1f} °C since the autofocus "
                                f"(limit {config.temperature_delta_c:g} °C{'; ' + note if note else ''})")


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
         "(Student's t for the night's scatter) at a rate a thermal drift can have (max_drift_cfz_per_h, or "
         "tempco_drift_cap_factor x the known coefficient x the frames' measured cooling, if higher); the "
         "model also tries drift_onsets later onsets (a drift that starts after an in-focus stretch), taken "
         "when they fit better by drift_onset_gain_z sigmas, their growth at drift_onset_z",
         ("defocus_limit_cfz", "drift_z", "lookahead_frames", "min_trend_frames", "jitter_floor_pct", "prior_dof",
          "max_drift_cfz_per_h", "line_min_rise_pct_per_h", "tempco_drift_cap_factor", "drift_onsets",
          "drift_onset_gain_z", "drift_onset_z"),
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
         "with the focuser's temperature coefficient known (tempco_um_per_c, else learnt from the night's "
         "autofocus runs and the rig's focuser_step_um, when their fit passes its quality gate): the predicted "
         "defocus |k x temperature change since the autofocus| reaches defocus_limit_cfz of the CFZ at the "
         "filter's wavelength; without it, the focuser temperature moved temperature_delta_c",
         ("temperature_delta_c", "tempco_um_per_c", "tempco_learn_span_c", "tempco_min_runs", "tempco_max_rel_se",
          "tempco_reset_gap_h", "defocus_limit_cfz"),
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
