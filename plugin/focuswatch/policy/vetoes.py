"""The shared vetoes, written once and applied to every rule: :data:`VETOES`.

A veto either sets the frame aside (``skip``: not a light frame, too few stars, clouds,
trailing, a transient diagnosis) or holds a refocus back (``hold``: an autofocus running, a
refocus already asked for, the baseline still being built, an optical defect, seeing rather
than focus). Each is one pure function of the frame's
:class:`~focuswatch.policy.context.Context`; the label sets come from the diagnosis, which owns
them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from focuswatch import diagnose as _diagnose
from focuswatch.policy.config import PolicyConfig
from focuswatch.policy.context import Context


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


#: Detected stars fall as HFR**-1.2 when stars grow (peak = flux / HFR**2, and a typical field's
#: counts go as flux**-0.6): the star loss that focus or seeing alone explain.
STAR_COUNT_HFR_EXPONENT = 1.2


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
    if not ctx.frame.has_size:
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
    # Clouds only dim, they never add stars: a frame with at least the baseline's star count is
    # not under a cloud whatever the median flux of its stars (in better seeing fainter stars pass
    # the detection threshold and pull that median down while the sky is as clear as ever).
    if config.cloud_flux_fraction > 0 and b.flux_per_s and f.flux_per_s is not None \
            and f.n_stars < b.n_stars and f.flux_per_s < config.cloud_flux_fraction * b.flux_per_s:
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

    Defocus flattens the profile once the blur is a fair part of the star; seeing only scales
    it. On physical optics that takes a while where diffraction is a fair part of the star
    (GalSim, 130 mm f/5 in 2.8": HFD/FWHM as ``stars.measure`` reads it does not fall before
    ~1.2 CFZ, then -0.07 at 1.5 CFZ; the simulator's -0.03 at 0.4 CFZ is not physical). When
    the profile is measured, image rules need it corroborated: the recent frames' HFD/FWHM must
    have fallen below the baseline's by ``profile_drop_min`` and by ``confidence_z`` standard
    errors. Without profiles the HFR statistics decide alone.

    It does not override the drift model when the model asks (:func:`steady_drift`): a growth
    steady over the frames since the autofocus, at a thermal rate, significant at ``drift_z``
    with the profile already weighed in the fit (along its physical curve). In good seeing
    against the pixels a defocus of 0.7 zone moves HFD/FWHM by only ~0.01 (GalSim, 200 mm f/5
    at 0.78"/px in 2.5": 1.183 -> 1.170), below ``profile_drop_min``: the veto held a true 5-8
    sigma drift back as seeing. Unless the frame's own growth refutes it
    (:func:`profile_refutes_growth`): a seeing step the model reads as a drift to ~0.8 CFZ,
    where the profile says nothing, although the frame's HFR says ~1.4 CFZ, where it would have
    fallen.
    """
    if not config.seeing_veto or ctx.profile_drop is None or ctx.profile_sigma is None:
        return None
    need = max(config.profile_drop_min, config.confidence_z * ctx.profile_sigma)
    if ctx.profile_drop >= need or (steady_drift(ctx, config) and not profile_refutes_growth(ctx, config)):
        return None
    growth = (ctx.ratio or 1.0) - 1.0
    assert ctx.baseline is not None and ctx.baseline.profile_ratio is not None
    return (f"stars {100 * growth:+.0f} % but the profile did not flatten (HFD/FWHM "
            f"{ctx.baseline.profile_ratio - ctx.profile_drop:.3f} vs {ctx.baseline.profile_ratio:.3f} in focus, "
            f"drop {ctx.profile_drop:+.3f} < {need:.3f}): seeing, not focus")


def profile_refutes_growth(ctx: Context, config: PolicyConfig) -> bool:
    """The frame has grown more than a defocus could without flattening the profile as measured.

    The drift model can read a seeing step as a drift (a straight-line defocus through a
    jump, its scatter inflated by the jump) and put the defocus where physical optics leaves
    the profile unmoved (below ~1 CFZ on the demo rig), although the frame's own HFR says far
    more. Here the frame's growth, at its lower bound (HFR / (1 + confidence_z x jitter)), is
    turned into a defocus and the profile's physical curve (``ctx.profile_curve``) says how far
    HFD/FWHM should have fallen there: if the measured drop falls short of that by
    ``confidence_z`` standard errors, no defocus explains both (GalSim, 130 mm f/5: a +45 %
    seeing step keeps HFD/FWHM or raises it; a 1.5 CFZ defocus lowers it ~0.07).
    """
    from focuswatch.policy.context import focus_optics, ratio_to_defocus

    opt = focus_optics(ctx.rig)
    if (ctx.profile_curve is None or ctx.ratio is None or not opt or not ctx.expected_hfr_px
            or ctx.baseline is None or ctx.baseline.profile_ratio is None
            or ctx.profile_drop is None or ctx.profile_sigma is None):
        return False
    low = ctx.ratio / (1.0 + config.confidence_z * ctx.jitter)
    if low <= 1.0:
        return False
    defocus_um = ratio_to_defocus(ctx, low)
    if defocus_um is None:
        return False
    x = defocus_um / (opt[0] * opt[1] * ctx.expected_hfr_px)
    expected = ctx.baseline.profile_ratio * (1.0 - math.exp(float(np.interp(x, *ctx.profile_curve))))
    return expected - ctx.profile_drop > config.confidence_z * ctx.profile_sigma


def steady_drift(ctx: Context, config: PolicyConfig) -> bool:
    """The drift model asks: its rule fires on this frame (past the limit one frame ahead,
    significant at ``drift_z``, at a rate a thermal drift can have). The profile is a witness
    inside that fit, so a growth the profile contradicts does not get there. The rule's outcome
    :func:`~focuswatch.policy.decide.decide` already has (``ctx.rule_outcomes``) is read, not
    computed again; only without it (the rule disabled) is the rule run here (imported here:
    :mod:`~focuswatch.policy.rules` imports this module)."""
    if ctx.drift is None:
        return False
    if "drift" in ctx.rule_outcomes:
        return ctx.rule_outcomes["drift"] is not None
    from focuswatch.policy.rules import rule_drift

    return rule_drift(ctx, config) is not None


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
         "star count < cloud_star_fraction x baseline, or star flux per second < cloud_flux_fraction x baseline "
         "with fewer stars than the baseline (clouds never add stars), "
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
         "and confidence_z standard errors below the baseline's (seeing, not focus), unless the drift model "
         "asks (a steady growth, significant with the profile weighed in) and the frame's own growth does not "
         "call for a flattening the profile did not show; seeing_veto"),
)
