"""What the policy remembers between frames: :class:`PolicyState` and its pure transitions.

The state changes only through :func:`on_autofocus` and :func:`advance` (a frame was
decided); :func:`focuser_jumped` says when the header's focuser position shows a refocus the
policy was not told about. :class:`~focuswatch.policy.decide.Monitor` drives them; the journal
restore path replays them, so a restarted watcher continues where it stopped.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from focuswatch.model.records import Record
from focuswatch.policy.config import PolicyConfig
from focuswatch.policy.records import AutofocusMark, Decision, FrameRecord


@dataclass(frozen=True)
class PolicyState(Record):
    """What the policy remembers between frames (besides the frames themselves).

    ``af_time_s``/``af_temp_c``/``af_filter`` describe the current focus: they come from the
    autofocus event when it says so, else from the first light frame after it (the frames'
    own clock, DATE-OBS, so a capture PC with a wrong clock does not matter).
    ``waiting_since_s`` is set by a refocus decision and cleared by an autofocus.
    ``af_points`` are the night's autofocus runs that reported both their best position and
    temperature, ``(filter, temp_c, position_steps)``: successive runs of one filter give the
    focuser's temperature coefficient (:func:`learnt_tempco_steps_per_c`).
    """

    af_source: str | None = None
    af_time_s: float | None = None
    af_temp_c: float | None = None
    af_filter: str | None = None
    n_frames_since_af: int = 0
    waiting_since_s: float | None = None
    n_frames_waiting: int = 0
    af_in_progress: bool = False
    last_focuser_pos: int | None = None
    n_refocus: int = 0
    n_autofocus: int = 0
    af_points: tuple[tuple[str, float, float], ...] = ()


def on_autofocus(state: PolicyState, mark: AutofocusMark) -> PolicyState:
    """The state after an autofocus: focus facts restart, any waiting refocus is answered."""
    return replace(state, af_source=mark.source, af_time_s=None, af_temp_c=mark.temp_c,
                   af_filter=mark.filter_name, n_frames_since_af=0, waiting_since_s=None,
                   n_frames_waiting=0, af_in_progress=False,
                   last_focuser_pos=mark.position if mark.position is not None else state.last_focuser_pos,
                   n_autofocus=state.n_autofocus + 1, af_points=with_af_point(state, mark))


def with_af_point(state: PolicyState, mark: AutofocusMark) -> tuple[tuple[str, float, float], ...]:
    """``state.af_points`` with ``mark``'s (filter, temperature, position) added when it reports both.

    A focuser jump carries no temperature, so only a real autofocus run's best position counts.
    """
    if mark.temp_c is None or mark.position is None:
        return state.af_points
    return state.af_points + ((mark.filter_name or "", float(mark.temp_c), float(mark.position)),)


def learnt_tempco_steps_per_c(state: PolicyState, min_span_c: float) -> float | None:
    """The focuser's temperature coefficient (steps/°C) from the night's autofocus runs, or ``None``.

    The least-squares slope of best position against temperature, each filter's runs centred on
    their own means (filter offsets are not temperature); at least two runs of one filter
    ``min_span_c`` apart, because an autofocus's own scatter (a few steps) over a smaller span
    would give a coefficient of any size. ``min_span_c`` 0: never learnt.
    """
    if min_span_c <= 0:
        return None
    groups: dict[str, list[tuple[float, float]]] = {}
    for name, temp_c, pos in state.af_points:
        groups.setdefault(name, []).append((temp_c, pos))
    sxy = sxx = 0.0
    span_c = 0.0
    for pts in groups.values():
        if len(pts) < 2:
            continue
        t_mean = sum(t for t, _ in pts) / len(pts)
        p_mean = sum(p for _, p in pts) / len(pts)
        sxy += sum((t - t_mean) * (p - p_mean) for t, p in pts)
        sxx += sum((t - t_mean) ** 2 for t, _ in pts)
        span_c = max(span_c, max(t for t, _ in pts) - min(t for t, _ in pts))
    if span_c < min_span_c or sxx <= 0:
        return None
    return sxy / sxx


def focuser_jumped(state: PolicyState, frame: FrameRecord, config: PolicyConfig) -> bool:
    """True when the header's focuser position moved by ``focuser_jump_steps`` or more.

    That only happens when something refocused (an autofocus the watcher was not told about);
    small moves from temperature compensation stay under the threshold.
    """
    if not config.focuser_jump_steps or not frame.is_light:
        return False
    if frame.focuser_pos is None or state.last_focuser_pos is None:
        return False
    return abs(frame.focuser_pos - state.last_focuser_pos) >= config.focuser_jump_steps


def advance(state: PolicyState, frame: FrameRecord, decision: "Decision") -> PolicyState:
    """The state after ``frame`` was decided (pure; also used to restore from the journal)."""
    if not frame.is_light:
        return state
    changes: dict[str, Any] = {"n_frames_since_af": state.n_frames_since_af + 1}
    if frame.focuser_pos is not None:
        changes["last_focuser_pos"] = frame.focuser_pos
    if decision.decision != "skip" or state.af_time_s is None:
        if state.af_time_s is None:
            changes["af_time_s"] = frame.time_s
            if state.af_source is None:
                changes["af_source"] = "start"
        if state.af_temp_c is None and frame.temp_c is not None:
            changes["af_temp_c"] = frame.temp_c
        if state.af_filter is None and frame.filter_name:
            changes["af_filter"] = frame.filter_name
    if state.waiting_since_s is not None:
        changes["n_frames_waiting"] = state.n_frames_waiting + 1
    if decision.decision == "refocus":
        changes["waiting_since_s"] = frame.time_s
        changes["n_frames_waiting"] = 0
        changes["n_refocus"] = state.n_refocus + 1
    return replace(state, **changes)
