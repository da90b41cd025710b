"""Text renderers of the diagnosis: what ``focuswatch diagnose`` prints for a frame and a night.

:func:`format_diagnosis` renders a :class:`~focuswatch.diagnose.verdict.Diagnosis`,
:func:`format_night` a :class:`~focuswatch.diagnose.nightstory.NightStory`; ``--json``
prints their ``to_dict()`` instead. Rendering only: nothing here computes a figure.
"""
from __future__ import annotations

from focuswatch.diagnose.figures import _f
from focuswatch.diagnose.labels import UNKNOWN
from focuswatch.diagnose.nightstory import NightStory
from focuswatch.diagnose.verdict import Diagnosis


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
    if ev.witness_source:
        src = ("a seeing monitor" if ev.witness_source == "monitor" else
               f"the night's in-focus frames ({ev.witness_n_frames or '?'}, HFR {_f(ev.witness_hfr_px)} px, "
               f"{_f(ev.witness_age_s / 60.0 if ev.witness_age_s is not None else None, '.0f', ' min')} before)")
        worse = "; the seeing got worse since: no size call" if ev.seeing_worse_than_witness else ""
        lines.append(f"  seeing witness: {_f(ev.witness_seeing_arcsec, '.2f', ARCSEC)} from {src}; size says "
                     f"at least {_f(ev.size_defocus_cfz_low, '.2f')} CFZ{worse}")
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
