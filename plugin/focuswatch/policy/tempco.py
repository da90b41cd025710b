"""The focuser's temperature coefficient as the rules use it: where it comes from, whether a learnt
one may be trusted, and the thermal drift rate it allows the drift model.

A coefficient k (µm of focus per °C) is either configured (``[policy] tempco_um_per_c``, what
``focuswatch archive`` learnt over many nights) or learnt from the night's autofocus runs
(:func:`focuswatch.policy.state.tempco_fit`, with its quality gate). The temperature rule
predicts |k x ΔT|; the drift rule's rate cap (``max_drift_cfz_per_h``, a rate no thermal drift
reaches on a typical rig) is raised to ``tempco_drift_cap_factor`` x |k| x the cooling rate the
frames' temperatures show, in zones per hour at the frame's wavelength, so a fast system (f/2: a
zone of 11 µm) cooling fast is still a thermal drift to the model. Pure: no I/O, no clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from focuswatch.model.numerics import pooled_line_fit
from focuswatch.policy.config import TEMPCO_MAX_UM_PER_C, PolicyConfig
from focuswatch.policy.estimators import critical_z
from focuswatch.policy.records import FrameRecord
from focuswatch.policy.state import tempco_fit

if TYPE_CHECKING:  # the context imports the estimators; the rules import this module
    from focuswatch.policy.context import Context


#: The cooling rate the drift cap takes is the measured slope less this many standard errors
#: (Student's t): with focuser temperatures in 0.1 °C steps, a held temperature raised the cap on
#: 105 of 200 early-frame fits (20 s cadence, 3-12 frames) at 0, 26 at 1, 10 at 1.5; the f/2 lens
#: cooling 2 °C/h (tests/test_tempco.py, seeds 0-15) is still asked by the drift rule inside the
#: zone at 1.5 (0.37-0.46 zone on held-out seeds 6-15, 0.25-0.46 before), not at confidence_z's 2.
COOLING_RATE_Z = 1.5


@dataclass(frozen=True)
class Coefficient:
    """The coefficient in force: ``um_per_c`` (``None``: unknown, or a learnt one refused),
    ``source`` how it was obtained (for the reason), ``note`` why a learnt one is not used."""

    um_per_c: float | None
    source: str = ""
    note: str = ""


def coefficient(ctx: "Context", config: PolicyConfig) -> Coefficient:
    """``[policy] tempco_um_per_c`` first; else the night's autofocus runs, when the rig's
    ``focuser_step_um`` turns their positions into µm and the fit passes its quality gate."""
    if config.tempco_um_per_c:
        return Coefficient(config.tempco_um_per_c, "configured")
    step_um = ctx.rig.focuser_step_um
    fit = tempco_fit(ctx.state, config)
    if fit is None:
        why = ctx.state.af_points_reset if config.tempco_learn_span_c > 0 else ""
        return Coefficient(None, note=f"no coefficient learnt: the earlier autofocus runs were forgotten ({why})"
                           if why else "")
    if not step_um:
        return Coefficient(None, note="the night's autofocus runs give a coefficient in steps only: set "
                                      "[rig] focuser_step_um to use it")
    if fit.refused:
        return Coefficient(None, note=f"learnt coefficient {fit.k_steps_per_c * step_um:+.1f} µm/°C not used: "
                                      f"{fit.refused}")
    if abs(fit.k_steps_per_c * step_um) > TEMPCO_MAX_UM_PER_C:   # two runs fit any line: no scatter check
        return Coefficient(None, note=f"learnt coefficient {fit.k_steps_per_c * step_um:+.0f} µm/°C not used: "
                                      f"beyond {TEMPCO_MAX_UM_PER_C:g} µm/°C, no focuser's (a re-synced focuser "
                                      "between its autofocus runs?)")
    spread = f", ± {100 * fit.se_steps_per_c / abs(fit.k_steps_per_c):.0f} %" \
        if fit.se_steps_per_c is not None and fit.k_steps_per_c else ""
    return Coefficient(fit.k_steps_per_c * step_um,
                       f"learnt from {fit.n_runs} autofocus runs at {step_um:g} µm/step{spread}")


def cooling_rate_c_per_h(frames: Sequence[FrameRecord], z: float = 0.0) -> tuple[float, int] | None:
    """(least-squares slope of the frames' temperature against their capture time in °C per hour,
    frames it rests on); ``None`` with fewer than 3 temperatures or no time between them.

    ``z`` > 0: the slope's magnitude less ``z`` (as Student's t for the n - 2 degrees of freedom)
    standard errors from the scatter about the line, never below 0 - the cooling the frames show
    at least. Focuser temperatures come in 0.1 °C steps: over the first 3-5 frames of a 20 s
    cadence the plain slope of a 2 °C/h night read 3.6-9 °C/h (median), and any slope at all on a
    night whose temperature held.
    """
    pts = [(f.time_s, f.temp_c) for f in frames if f.temp_c is not None and f.is_light]
    if len(pts) < 3:
        return None
    b, se = pooled_line_fit([([t for t, _ in pts], [c for _, c in pts])])
    if b is None:
        return None
    if z > 0 and se is not None:
        b = math.copysign(max(abs(b) - critical_z(z, len(pts) - 2) * se, 0.0), b)
    return 3600.0 * b, len(pts)


def drift_cap_cfz_per_h(ctx: "Context", config: PolicyConfig) -> tuple[float, str]:
    """(the drift model's largest thermal rate in zones per hour, a phrase for the reason when it
    is above the fixed ``max_drift_cfz_per_h``). Never below the fixed cap; 0 stays "no limit".

    With a coefficient (:func:`coefficient`) and temperatures on the frames since the autofocus:
    ``tempco_drift_cap_factor`` x |k| x |the measured cooling rate| / the zone at the frame's
    wavelength. The factor allows for a k and a rate known to tens of per cent and for the
    model's fitted rate scattering about the true one over few frames.
    """
    fixed = config.max_drift_cfz_per_h
    if fixed <= 0 or config.tempco_drift_cap_factor <= 0 or not ctx.cfz_um:
        return fixed, ""
    k = coefficient(ctx, config)
    if k.um_per_c is None:
        return fixed, ""
    rate = cooling_rate_c_per_h(list(ctx.history) + [ctx.frame], COOLING_RATE_Z)
    if rate is None:
        return fixed, ""
    thermal = config.tempco_drift_cap_factor * abs(k.um_per_c) * abs(rate[0]) / ctx.cfz_um
    if thermal <= fixed:
        return fixed, ""
    return thermal, (f"; a thermal rate: up to {thermal:.1f} CFZ/h = {config.tempco_drift_cap_factor:g} x "
                     f"{abs(k.um_per_c):.1f} µm/°C ({k.source}) x {abs(rate[0]):.2f} °C/h over {rate[1]} frames "
                     f"/ {ctx.cfz_um:.0f} µm")
