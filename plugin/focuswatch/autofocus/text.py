"""The text of ``focuswatch af``: one block per run, then the coefficients and offsets."""
from __future__ import annotations

import math

from focuswatch.autofocus.judge import AFRunResult
from focuswatch.autofocus.trends import AFSummary


def _f(v: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:{spec}}{unit}"


def run_text(r: AFRunResult) -> list[str]:
    """Human-readable lines for one judged run."""
    run = r.run
    head = f"{run.source or 'run'}: {r.verdict.upper()}"
    bits = [f"filter {run.filter_name or '—'}", f"temperature {_f(run.temp_c, '.1f', ' °C')}",
            f"{r.n_points} points", f"HFR {'NINA' if run.hfr_kind == 'nina' else 'true'}"]
    if run.final_hfr_px is not None:
        bits.append(f"final HFR {run.final_hfr_px:.2f} px")
    lines = [head, "  " + ", ".join(bits)]
    if r.fit is not None and run.position_source == "frame_order":
        f = r.fit
        err = f" ± {f.best_position_err_steps:.1f}" if f.best_position_err_steps is not None else ""
        lines.append(f"  best focus at frame {f.best_position_steps:.1f}{err} (frame numbers in capture order); "
                     f"min HFR {f.min_hfr_px:.2f} px; R² {f.r_squared:.3f}")
    elif r.fit is not None:
        f = r.fit
        err = f" ± {f.best_position_err_steps:.0f}" if f.best_position_err_steps is not None else ""
        rep = ""
        if run.reported_position_steps is not None:
            rep = f" (reported {run.reported_position_steps:.0f}, shift {r.shift_from_reported_steps:+.0f})"
        lines.append(f"  best focus {f.best_position_steps:.0f}{err} steps{rep}; min HFR {f.min_hfr_px:.2f} px; "
                     f"R² {f.r_squared:.3f}")
        lines.append(f"  points left/right {r.n_left}/{r.n_right}; outer HFR {_f(r.outer_ratio_left, '.1f', 'x')} / "
                     f"{_f(r.outer_ratio_right, '.1f', 'x')} the minimum")
        slope = f"  slope {f.slope_px_per_step:.4f} px/step"
        if r.expected_slope_px_per_step and r.slope_ratio is not None:
            slope += f" vs {r.expected_slope_px_per_step:.4f} expected ({r.slope_ratio:.2f}x)"
        lines.append(slope)
    if r.step_steps and run.position_source != "frame_order":
        st = f"  step {r.step_steps:.0f} steps"
        if r.step_um:
            st += f" = {r.step_um:.1f} µm"
        if r.step_cfz:
            st += f" = {r.step_cfz:.2f} CFZ (zone {r.cfz_um:.0f} µm)"
        lines.append(st)
    lines += [f"  ! {p}" for p in r.problems]
    lines += [f"  → {a}" for a in r.advice]
    return lines


def summary_text(s: AFSummary) -> str:
    """The ``focuswatch af`` report as text: runs, temperature coefficients, filter offsets."""
    lines: list[str] = []
    for r in s.runs:
        lines += run_text(r)
    lines.append(f"{len(s.runs)} run(s): {s.n_good} good, {s.n_marginal} marginal, {s.n_bad} bad")
    shown = [c for c in s.coefficients if c.slope_steps_per_c is not None]
    if shown or len(s.runs) > 1:
        lines.append("temperature coefficient (best focus vs temperature, bad runs left out):")
        for c in s.coefficients:
            if c.slope_steps_per_c is None:
                lines.append(f"  {c.filter_name}: — ({c.reason})")
                continue
            um = (f", {c.slope_um_per_c:+.1f} ± {c.slope_err_um_per_c:.1f} µm/°C"
                  if c.slope_um_per_c is not None else "")
            lines.append(f"  {c.filter_name}: {c.slope_steps_per_c:+.1f} ± {c.slope_err_steps_per_c:.1f} steps/°C{um}, "
                         f"R² {c.r_squared:.2f}, {c.n_runs} runs ({c.n_dropped} left out), "
                         f"{c.temp_min_c:.1f}…{c.temp_max_c:.1f} °C")
    if len(s.offsets) > 1:
        at = f" at {s.reference_temp_c:.1f} °C" if s.reference_temp_c is not None else ""
        lines.append(f"filter offsets{at} (NINA: Options > Equipment > Filter Wheel > Focus Offset):")
        for o in s.offsets:
            err = f" ± {o.offset_err_steps:.0f}" if o.offset_err_steps else ""
            lines.append(f"  {o.filter_name:<10} {round(o.offset_steps):+d}{err}  ({o.n_runs} run(s))")
        if s.common_slope_steps_per_c is not None:
            lines.append(f"  common temperature slope {s.common_slope_steps_per_c:+.1f} steps/°C")
    if s.offsets_reason and len(s.runs) > 1:
        lines.append(f"  note: {s.offsets_reason}")
    return "\n".join(lines)
