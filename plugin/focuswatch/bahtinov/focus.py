"""From the middle spike's offset to the focus error, the critical focus zone and the advice.

Shared by the plain and the Tri-Bahtinov paths: given the offset (px), the conversion
(px/um) and the rig, :func:`_finish` builds the :class:`~focuswatch.bahtinov.result.BahtinovResult`
with the error in um and in CFZ widths, the direction to move and the verdict line.
"""
from __future__ import annotations

from focuswatch.bahtinov.geometry import _direction_deg
from focuswatch.bahtinov.result import BahtinovResult, SpikeLine
from focuswatch.optics import Rig


def _finish(pattern: str, sx: int, sy: int, lines: tuple[SpikeLine, ...], mid_normal: float | None,
            half: float | None, cx: float | None, cy: float | None, off: float, off_err: float | None,
            k: float | None, src: str | None, rig: Rig, cfz: float | None, sign: float, reverse: bool,
            notes: list[str], file: str | None) -> BahtinovResult:
    err_um = sign * off / k if k else None
    err_err = off_err / k if (k and off_err is not None) else None
    in_focus = direction = move_um = move_steps = None
    err_cfz = err_um / cfz if (err_um is not None and cfz) else None
    if err_um is None:
        verdict = (f"middle spike offset {off:+.2f} px; give aperture, focal length and pixel size to convert "
                   "it to µm")
    elif cfz is None:
        verdict = f"focus error {err_um:+.0f} µm (give the f-ratio to compare with the critical focus zone)"
    else:
        in_focus = abs(err_um) <= cfz / 2.0
        if in_focus:
            verdict = f"in focus: {err_um:+.0f} µm, {abs(err_cfz):.2f} of the critical focus zone ({cfz:.0f} µm)"
        else:
            direction = "inward" if err_um > 0 else "outward"
            move_um = abs(err_um)
            toward = "smaller" if direction == "inward" else "larger"
            verdict = f"out of focus by {abs(err_cfz):.1f} zones: move the focuser {direction} " \
                      f"(toward {toward} position numbers) by ~{move_um:.0f} µm"
            if rig.focuser_step_um:
                move_steps = move_um / rig.focuser_step_um
                verdict += f" = ~{move_steps:.0f} steps"
    return BahtinovResult(
        pattern=pattern, star_x_px=float(sx), star_y_px=float(sy), lines=lines,
        middle_angle_deg=None if mid_normal is None else _direction_deg(mid_normal),
        outer_half_angle_deg=half, crossing_x_px=cx, crossing_y_px=cy, offset_px=off, offset_err_px=off_err,
        px_per_um=k, px_per_um_source=src, focus_error_um=err_um, focus_error_err_um=err_err, cfz_um=cfz,
        focus_error_cfz=err_cfz, in_focus=in_focus, direction=direction, move_um=move_um, move_steps=move_steps,
        reversed=reverse, verdict=verdict, notes=tuple(notes), file=file)
