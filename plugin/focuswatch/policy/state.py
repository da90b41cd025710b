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


def on_autofocus(state: PolicyState, mark: AutofocusMark) -> PolicyState:
    """The state after an autofocus: focus facts restart, any waiting refocus is answered."""
    return replace(state, af_source=mark.source, af_time_s=None, af_temp_c=mark.temp_c,
                   af_filter=mark.filter_name, n_frames_since_af=0, waiting_since_s=None,
                   n_frames_waiting=0, af_in_progress=False,
                   last_focuser_pos=mark.position if mark.position is not None else state.last_focuser_pos,
                   n_autofocus=state.n_autofocus + 1)


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
