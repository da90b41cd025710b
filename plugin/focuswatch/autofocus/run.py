"""One autofocus run as data: focuser positions and the HFR measured at each.

:class:`AFRun` is what every source turns into (NINA's reports, a folder of frames: see
:mod:`focuswatch.io.afreports`), so fitting and judging never care where a run came from.
"""
from __future__ import annotations

from dataclasses import dataclass

from focuswatch.model.records import Record


#: HFR definitions a run's values can follow.
HFR_KINDS = ("nina", "true")


@dataclass(frozen=True)
class AFPoint(Record):
    """One point of a focus run: focuser position (steps) and the HFR measured there (px)."""

    position_steps: float
    hfr_px: float
    error_px: float | None = None
    n_stars: int | None = None


@dataclass(frozen=True)
class AFRun(Record):
    """One autofocus run (or manual focus series), whatever its source.

    ``hfr_kind`` says which half-flux definition the values follow: ``"nina"`` (NINA/ASTAP
    flux-weighted mean radius) or ``"true"`` (half-flux radius, focuswatch's own). The
    ``reported_*`` fields are what the capture program concluded, kept for comparison with
    our refit. ``timestamp`` is text as the source wrote it (NINA: local time).
    """

    points: tuple[AFPoint, ...]
    source: str | None = None
    timestamp: str | None = None
    filter_name: str | None = None
    temp_c: float | None = None
    hfr_kind: str = "nina"
    method: str | None = None
    fitting: str | None = None
    reported_position_steps: float | None = None
    reported_hfr_px: float | None = None
    reported_r_squared: float | None = None
    previous_position_steps: float | None = None
    initial_position_steps: float | None = None
    final_hfr_px: float | None = None
    region: str | None = None
    focuser_name: str | None = None
    star_detector: str | None = None
    duration_s: float | None = None
    focuser_step_um: float | None = None
    notes: tuple[str, ...] = ()
    #: where frame runs took their positions: "header" (FOCPOS), "keyword" (a header
    #: keyword the user named), "list" (--positions) or "frame_order" (1, 2, 3 ... in
    #: capture order); None for NINA reports
    position_source: str | None = None
