"""What the policy remembers between frames: :class:`PolicyState` and its pure transitions.

The state changes only through :func:`on_autofocus` and :func:`advance` (a frame was
decided); :func:`focuser_jumped` says when the header's focuser position shows a refocus the
policy was not told about. :class:`~focuswatch.policy.decide.Monitor` drives them; the journal
restore path replays them, so a restarted watcher continues where it stopped.
"""
from __future__ import annotations

import math
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
    focuser's temperature coefficient (:func:`tempco_fit`).
    They belong to one night on one optical train: a light frame more than
    ``tempco_reset_gap_h`` after the previous one (a new night) or with another ``rig_id``
    (another telescope, focuser, focal length or pixel) keeps only the runs made since the
    previous light frame (``af_points_at_frame`` of them were there at it), and a focuser jump
    without an autofocus sets them aside (``af_points_set_aside``: a report merged into that
    jump brings them back, it was an autofocus after all). ``af_points_reset`` says why they
    were last forgotten (the temperature rule's reason quotes it).
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
    af_points_set_aside: tuple[tuple[str, float, float], ...] = ()
    af_points_at_frame: int = 0
    af_points_reset: str = ""
    last_light_s: float | None = None
    rig_id: str | None = None


#: ``af_source`` of the autofocus the policy infers from a focuser jump in the headers.
FOCUSER_JUMP = "focuser-jump"


def on_autofocus(state: PolicyState, mark: AutofocusMark) -> PolicyState:
    """The state after an autofocus: focus facts restart, any waiting refocus is answered.

    A focuser jump (no autofocus run reported it) sets the night's autofocus points aside: the
    focuser was moved by hand, re-homed or re-synced, so a later run's position may be on
    another scale. A run reported within a frame of the jump brings them back
    (:func:`with_af_point`).
    """
    jump = mark.source == FOCUSER_JUMP
    points = with_af_point(state, mark)
    return replace(state, af_source=mark.source, af_time_s=None, af_temp_c=mark.temp_c,
                   af_filter=mark.filter_name, n_frames_since_af=0, waiting_since_s=None,
                   n_frames_waiting=0, af_in_progress=False,
                   last_focuser_pos=mark.position if mark.position is not None else state.last_focuser_pos,
                   n_autofocus=state.n_autofocus + 1, af_points=() if jump else points,
                   af_points_set_aside=points if jump else (),
                   af_points_at_frame=0 if jump else state.af_points_at_frame,
                   af_points_reset="the focuser moved without an autofocus run" if jump and points
                   else state.af_points_reset)


def merges_into_jump(state: PolicyState, mark: AutofocusMark) -> bool:
    """``mark`` is a real autofocus run reported within a frame of a focuser jump: the jump was
    that run's move, one event seen twice (the monitor merges them; the jump's set-aside points
    come back)."""
    return state.af_source == FOCUSER_JUMP and state.n_frames_since_af <= 1 and mark.source != FOCUSER_JUMP


def with_af_point(state: PolicyState, mark: AutofocusMark) -> tuple[tuple[str, float, float], ...]:
    """``state.af_points`` with ``mark``'s (filter, temperature, position) added when it reports both.

    A focuser jump carries no temperature, so only a real autofocus run's best position counts.
    A run reported within a frame of a focuser jump is that jump's autofocus: the points the jump
    set aside come back first.
    """
    points = state.af_points
    if merges_into_jump(state, mark):
        points = state.af_points_set_aside + points
    if mark.temp_c is None or mark.position is None:
        return points
    return points + ((mark.filter_name or "", float(mark.temp_c), float(mark.position)),)


@dataclass(frozen=True)
class TempcoFit:
    """The focuser's temperature coefficient fitted to the night's autofocus runs.

    ``k_steps_per_c`` the least-squares slope (each filter's runs about their own mean);
    ``n_runs`` the runs it rests on (filters with two or more); ``span_c`` the widest
    temperature span of one filter; ``scatter_steps`` the residual standard deviation about the
    fitted lines and ``se_steps_per_c`` the slope's standard error from it (``None`` with no
    degree of freedom left: two runs of one filter fit exactly). ``refused`` says why the
    coefficient must not be used (empty: usable).
    """

    k_steps_per_c: float
    n_runs: int
    span_c: float
    scatter_steps: float | None
    se_steps_per_c: float | None
    refused: str = ""


def tempco_fit(state: PolicyState, config: PolicyConfig) -> TempcoFit | None:
    """The coefficient from ``state.af_points`` with its quality gate, or ``None`` (no filter
    has two runs, or learning is off: ``tempco_learn_span_c`` 0).

    Refused (``TempcoFit.refused``) when the runs of one filter span less than
    ``tempco_learn_span_c`` (an autofocus's own scatter of a few steps over a small span gives a
    coefficient of any size), when fewer than ``tempco_min_runs`` runs carry it, or when the
    runs scatter about the fitted lines so much that the slope's standard error is more than
    ``tempco_max_rel_se`` of the slope (runs from another optical train or a focuser that was
    re-synced mixed in; needs three runs, two fit any line exactly).
    """
    if config.tempco_learn_span_c <= 0:
        return None
    groups: dict[str, list[tuple[float, float]]] = {}
    for name, temp_c, pos in state.af_points:
        groups.setdefault(name, []).append((temp_c, pos))
    used = [pts for pts in groups.values() if len(pts) >= 2]
    if not used:
        return None
    span_c = 0.0
    centred: list[tuple[float, float]] = []
    for pts in used:
        t_mean = sum(t for t, _ in pts) / len(pts)
        p_mean = sum(p for _, p in pts) / len(pts)
        centred += [(t - t_mean, p - p_mean) for t, p in pts]
        span_c = max(span_c, max(t for t, _ in pts) - min(t for t, _ in pts))
    sxy = sum(t * p for t, p in centred)
    sxx = sum(t * t for t, _ in centred)
    n_runs = len(centred)
    k = sxy / sxx if sxx > 0 else 0.0
    dof = n_runs - len(used) - 1
    scatter = se = None
    if dof > 0 and sxx > 0:
        scatter = math.sqrt(sum((p - k * t) ** 2 for t, p in centred) / dof)
        se = scatter / math.sqrt(sxx)
    refused = ""
    if sxx <= 0 or span_c < config.tempco_learn_span_c:
        refused = (f"its autofocus runs of one filter are only {span_c:.1f} °C apart "
                   f"(tempco_learn_span_c = {config.tempco_learn_span_c:g} °C)")
    elif n_runs < config.tempco_min_runs:
        refused = f"only {n_runs} autofocus runs (tempco_min_runs = {config.tempco_min_runs})"
    elif se is not None and config.tempco_max_rel_se > 0 and se > config.tempco_max_rel_se * abs(k):
        refused = (f"its {n_runs} autofocus runs scatter {scatter:.0f} steps about the fit: {k:+.1f} ± {se:.1f} "
                   f"steps/°C, more than tempco_max_rel_se = {100 * config.tempco_max_rel_se:.0f} % of it")
    return TempcoFit(k, n_runs, span_c, scatter, se, refused)


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


def night_or_rig_changed(state: PolicyState, frame: FrameRecord, config: PolicyConfig) -> str:
    """Why the night's autofocus points no longer describe ``frame``'s focuser ("" when they do):
    a new night (more than ``tempco_reset_gap_h`` since the previous light frame, on the frames'
    own clock) or another optical train (``rig_id``, from the header)."""
    if not frame.is_light:
        return ""
    gap_h = config.tempco_reset_gap_h
    if gap_h > 0 and state.last_light_s is not None and frame.time_s - state.last_light_s > gap_h * 3600.0:
        return f"a new night ({(frame.time_s - state.last_light_s) / 3600.0:.1f} h without a frame)"
    if frame.rig_id is not None and state.rig_id is not None and frame.rig_id != state.rig_id:
        return f"the optical train changed ({state.rig_id} -> {frame.rig_id})"
    return ""


def forget_af_points(state: PolicyState, frame: FrameRecord, config: PolicyConfig) -> PolicyState:
    """Before ``frame`` is decided: a new night or another optical train keeps only the autofocus
    runs made since the previous light frame (they were made on the new one)."""
    why = night_or_rig_changed(state, frame, config)
    if not why:
        return state
    return replace(state, af_points=state.af_points[state.af_points_at_frame:], af_points_set_aside=(),
                   af_points_at_frame=0, af_points_reset=why)


def advance(state: PolicyState, frame: FrameRecord, decision: "Decision") -> PolicyState:
    """The state after ``frame`` was decided (pure; also used to restore from the journal)."""
    if not frame.is_light:
        return state
    changes: dict[str, Any] = {"n_frames_since_af": state.n_frames_since_af + 1,
                               "af_points_at_frame": len(state.af_points), "last_light_s": frame.time_s}
    if frame.rig_id is not None:
        changes["rig_id"] = frame.rig_id
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
