"""What a Bahtinov measurement returns, and its text for ``focuswatch bahtinov``.

:class:`BahtinovResult` (with its :class:`SpikeLine` and :class:`Triplet` parts) is the one
result: ``--json`` writes its fields, :func:`result_text` reads it for people and
:mod:`focuswatch.render.afplots` draws it. The sign convention of the offsets is in the
package doc (:mod:`focuswatch.bahtinov`).
"""
from __future__ import annotations

from dataclasses import dataclass

from focuswatch.model.records import Record


@dataclass(frozen=True)
class SpikeLine(Record):
    """One fitted spike: direction ``angle_deg`` (0-180), normal angle, and distance ``rho_px``
    of the line from the star along the normal. ``role`` is middle/outer (or group-k ...).
    ``n_samples`` profiles were used; ``rms_px`` their scatter about the line."""

    angle_deg: float
    normal_deg: float
    rho_px: float
    strength: float
    n_samples: int = 0
    rms_px: float | None = None
    role: str = ""
    triplet: int | None = None


@dataclass(frozen=True)
class Triplet(Record):
    """One Bahtinov sub-mask of a Tri-Bahtinov mask, measured on its own.

    ``index`` 0-2 in order of ``normal_deg`` (the first within [-30, 30) deg, then +120,
    +240): the normal along which ``offset_px`` is counted, turning with the sub-mask (the
    three normals are 120 deg apart, so the three signs agree). ``middle_angle_deg`` is the
    middle spike's direction (0-180 deg), i.e. the sub-mask's bisector as imaged: cover one
    sector of the mask and the triplet that fades tells which screw it belongs to.
    ``focus_error_um`` > 0: this part of the pupil focuses in front of the sensor (sensor
    beyond its focus), after ``reverse`` is applied.
    """

    index: int
    middle_angle_deg: float
    normal_deg: float
    outer_half_angle_deg: float
    crossing_x_px: float
    crossing_y_px: float
    offset_px: float
    offset_err_px: float | None = None
    focus_error_um: float | None = None
    focus_error_err_um: float | None = None
    focus_error_cfz: float | None = None


@dataclass(frozen=True)
class BahtinovResult(Record):
    """Spikes, offset and focus error (field names are the ``bahtinov --json`` keys).

    ``offset_px`` follows the sign convention of the package doc; ``focus_error_um`` > 0:
    sensor beyond focus, move inward (after ``reversed`` is applied). ``focus_error_cfz``
    is the error in critical-focus-zone widths; ``in_focus`` when ``|error| <= CFZ/2``.
    ``direction`` is ``"inward"``/``"outward"`` (toward smaller/larger focuser positions,
    for a focuser whose numbers grow outward) or ``None`` in focus.
    """

    pattern: str
    star_x_px: float
    star_y_px: float
    lines: tuple[SpikeLine, ...]
    middle_angle_deg: float | None = None
    outer_half_angle_deg: float | None = None
    crossing_x_px: float | None = None
    crossing_y_px: float | None = None
    offset_px: float | None = None
    offset_err_px: float | None = None
    px_per_um: float | None = None
    px_per_um_source: str | None = None
    focus_error_um: float | None = None
    focus_error_err_um: float | None = None
    cfz_um: float | None = None
    focus_error_cfz: float | None = None
    in_focus: bool | None = None
    direction: str | None = None
    move_um: float | None = None
    move_steps: float | None = None
    reversed: bool = False
    verdict: str = ""
    notes: tuple[str, ...] = ()
    file: str | None = None
    triplets: tuple[Triplet, ...] = ()
    focus_spread_um: float | None = None
    focus_spread_err_um: float | None = None
    focus_spread_cfz: float | None = None
    collimation_ok: bool | None = None
    collimation_hint: str | None = None


def result_text(r: BahtinovResult) -> str:
    """Human-readable lines for ``focuswatch bahtinov``."""
    lines = [f"{r.file or 'image'}: {r.pattern} pattern, star at ({r.star_x_px:.0f}, {r.star_y_px:.0f})"]
    tri = r.pattern == "tri-bahtinov"
    spikes = ", ".join(f"{ln.angle_deg:.1f}° ({ln.role}{'' if ln.triplet is None else f' {ln.triplet}'})"
                       for ln in r.lines)
    lines.append(f"  spikes: {spikes}")
    for t in r.triplets:
        err = f" ± {t.offset_err_px:.2f}" if t.offset_err_px is not None else ""
        row = f"  sub-mask {t.index}: middle spike {t.middle_angle_deg:.1f}°, offset {t.offset_px:+.2f}{err} px"
        if t.focus_error_um is not None:
            ferr = f" ± {t.focus_error_err_um:.0f}" if t.focus_error_err_um is not None else ""
            zone = f" ({t.focus_error_cfz:+.2f} CFZ)" if t.focus_error_cfz is not None else ""
            row += f", focus error {t.focus_error_um:+.0f}{ferr} µm{zone}"
        lines.append(row)
    if r.offset_px is not None:
        err = f" ± {r.offset_err_px:.2f}" if r.offset_err_px is not None else ""
        what = f"mean offset of {len(r.triplets)} sub-masks" if tri else "middle spike offset"
        lines.append(f"  {what} {r.offset_px:+.2f}{err} px")
    if r.px_per_um:
        lines.append(f"  conversion {r.px_per_um:.4f} px/µm ({r.px_per_um_source})")
    if r.focus_error_um is not None:
        err = f" ± {r.focus_error_err_um:.0f}" if r.focus_error_err_um is not None else ""
        zone = f" = {r.focus_error_cfz:+.2f} CFZ (zone {r.cfz_um:.0f} µm)" if r.focus_error_cfz is not None else ""
        lines.append(f"  focus error{' (mean)' if tri else ''} {r.focus_error_um:+.0f}{err} µm{zone}")
    if r.collimation_hint:
        lines.append(f"  collimation: {r.collimation_hint}")
    lines.append(f"  {r.verdict}")
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)
