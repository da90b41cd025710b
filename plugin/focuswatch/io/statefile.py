"""The watcher's state file and the autofocus event log: how focuswatch talks to NINA's hooks.

The watcher (one long-running process) writes its latest verdict to a small JSON file; the
hooks a capture program runs between exposures (``focuswatch check``, the Python Scripting
plugin snippet in ``nina_hooks/``) read it. Programs that have just run an autofocus say so
with ``focuswatch autofocus-done``, which appends one line to ``autofocus-events.jsonl`` in
the same folder and clears ``refocus_due`` in the state file; the watcher reads the event log
(:func:`read_autofocus_events`) to take its HFR baseline again from the frames after it.

Why two files: the state file is *replaced* whole by its one writer (the watcher) so a reader
never sees half of it; the event log is *appended* by any number of short-lived hook
processes, so an autofocus reported while the watcher rewrites the state is never lost. A
reader reconciles both (:func:`apply_autofocus_events`): an autofocus newer than the moment a
refocus became due cancels it, whichever file was written last.

Files (in :func:`default_state_dir`, or the folder of ``--state-file``):

========================  ============================================================
``state.json``            :class:`State`, replaced atomically (temp file + ``os.replace``)
``autofocus-events.jsonl`` one :class:`AutofocusEvent` per line, appended
========================  ============================================================

Times are ISO 8601 strings in UTC with an offset (``2024-05-01T22:13:05+00:00``). Nothing is
ever written next to a user's frames.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from focuswatch import __version__
from focuswatch.errors import StateFileError
from focuswatch.model.records import Record, json_safe, parse_iso  # parse_iso: the one ISO parser

STATE_FILE_NAME = "state.json"
EVENTS_FILE_NAME = "autofocus-events.jsonl"
#: Bumped when a field changes meaning; readers accept older files field by field.
SCHEMA_VERSION = 1
#: Environment variable that overrides the per-user state folder.
STATE_DIR_ENV = "FOCUSWATCH_STATE_DIR"

_log = logging.getLogger("focuswatch.io.statefile")

#: ``check`` exit codes (documented contract with NINA's External Script / Powerups).
EXIT_FINE, EXIT_REFOCUS, EXIT_ERROR = 0, 1, 2


# --------------------------------------------------------------------------- time helpers


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the one place this module reads the clock)."""
    return datetime.now(timezone.utc)


def iso_utc(when: datetime | None = None) -> str:
    """Format ``when`` (default: now) as ISO 8601 UTC with milliseconds, e.g. ``2024-05-01T22:13:05.250+00:00``.

    Naive datetimes are taken to be UTC already (FITS DATE-OBS is UTC).
    """
    when = when or utc_now()
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


#: JSON has no NaN: missing numbers are written as null (the one encoder, in records).
_finite = json_safe


def _opt_float(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _opt_int(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


# --------------------------------------------------------------------------- dataclasses

@dataclass(frozen=True)
class LastFrame(Record):
    """What the watcher saw in the newest light frame.

    ``defocus_cfz`` is the defocus as a fraction of the critical focus zone width (1.0 = one
    whole zone); ``decision`` is the policy's word for it (``ok``, ``refocus``, ``skip``).
    ``time`` is the frame's DATE-OBS (UTC) when known.
    """

    file: str
    hfr_px: float | None = None
    defocus_um: float | None = None
    defocus_cfz: float | None = None
    decision: str = ""
    time: str | None = None
    n_stars: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LastFrame":
        return cls(file=str(d.get("file", "")), hfr_px=_opt_float(d.get("hfr_px")),
                   defocus_um=_opt_float(d.get("defocus_um")), defocus_cfz=_opt_float(d.get("defocus_cfz")),
                   decision=str(d.get("decision") or ""), time=_opt_str(d.get("time")),
                   n_stars=_opt_int(d.get("n_stars")))


@dataclass(frozen=True)
class AutofocusEvent(Record):
    """One autofocus run someone told us about: the HFR baseline restarts after ``time``.

    ``source`` says who reported it (``autofocus-done``, ``check --clear``, ``nina-report``,
    ``ekos``...). ``position`` is the focuser position in steps, ``temp_c`` the focuser
    temperature in °C, both optional.
    """

    time: str
    source: str = "autofocus-done"
    filter_name: str | None = None
    position: int | None = None
    temp_c: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AutofocusEvent":
        t = d.get("time")
        if not isinstance(t, str) or parse_iso(t) is None:
            raise ValueError(f"autofocus event without a valid 'time': {t!r}")
        return cls(time=t, source=str(d.get("source") or "autofocus-done"),
                   filter_name=_opt_str(d.get("filter_name", d.get("filter"))),
                   position=_opt_int(d.get("position")), temp_c=_opt_float(d.get("temp_c")),
                   note=str(d.get("note") or ""))

    @property
    def datetime_utc(self) -> datetime:
        dt = parse_iso(self.time)
        assert dt is not None  # checked in from_dict / by the writer
        return dt


@dataclass(frozen=True)
class TriggerNote(Record):
    """The outcome of the newest trigger attempt (NINA API, Ekos, command), for the user.

    A failed trigger does not clear ``refocus_due``: the hooks still see it.
    ``n_attempts`` counts attempts for the current request; ``next_retry_s`` is the wait
    before the next one (``None`` when it succeeded or gave up).
    """

    trigger: str
    ok: bool
    message: str = ""
    time: str | None = None
    n_attempts: int = 1
    next_retry_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TriggerNote":
        return cls(trigger=str(d.get("trigger", "")), ok=bool(d.get("ok", False)),
                   message=str(d.get("message") or ""), time=_opt_str(d.get("time")),
                   n_attempts=_opt_int(d.get("n_attempts")) or 1, next_retry_s=_opt_float(d.get("next_retry_s")))


@dataclass(frozen=True)
class State(Record):
    """The watcher's verdict, as the hooks read it.

    Parameters
    ----------
    refocus_due
        True when the policy asked for a refocus that has not happened yet.
    reason
        Why (the policy's one-line reason), or ``""``.
    since
        ISO UTC time the refocus became due (``None`` when not due). An autofocus event at
        or after this time cancels it (:func:`apply_autofocus_events`).
    last_frame, last_autofocus, last_trigger
        The newest frame, autofocus and trigger attempt, or ``None``.
    filter_name, temp_c
        Current filter and focuser temperature (°C) from the newest frame's header.
    updated
        ISO UTC time the watcher last wrote the file; ``check --max-age-min`` uses it to tell
        a stopped watcher.
    version, pid
        focuswatch version and process id of the writer.
    watch_dir
        The folder being watched (informational).
    """

    refocus_due: bool = False
    reason: str = ""
    since: str | None = None
    last_frame: LastFrame | None = None
    last_autofocus: AutofocusEvent | None = None
    last_trigger: TriggerNote | None = None
    filter_name: str | None = None
    temp_c: float | None = None
    updated: str = ""
    version: str = __version__
    pid: int | None = None
    watch_dir: str | None = None
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["last_frame"] = self.last_frame.to_dict() if self.last_frame else None
        d["last_autofocus"] = self.last_autofocus.to_dict() if self.last_autofocus else None
        d["last_trigger"] = self.last_trigger.to_dict() if self.last_trigger else None
        return _finite(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "State":
        """Build from a decoded state file; unknown keys are ignored, ``filter`` is read as ``filter_name``."""
        if not isinstance(d, Mapping):
            raise ValueError("the state file does not hold a JSON object")
        due = d.get("refocus_due", False)
        if not isinstance(due, bool):
            raise ValueError(f"refocus_due is {due!r}, expected true or false")
        schema = d.get("schema", SCHEMA_VERSION)
        if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= SCHEMA_VERSION:
            raise ValueError(f"schema {schema!r} is not one this focuswatch reads (1 to {SCHEMA_VERSION}); "
                             "it was written by a newer focuswatch, or is not a state file")
        lf, la, lt = d.get("last_frame"), d.get("last_autofocus"), d.get("last_trigger")
        return cls(
            refocus_due=due, reason=str(d.get("reason") or ""),
            since=_opt_str(d.get("since")),
            last_frame=LastFrame.from_dict(lf) if isinstance(lf, Mapping) else None,
            last_autofocus=AutofocusEvent.from_dict(la) if isinstance(la, Mapping) and la.get("time") else None,
            last_trigger=TriggerNote.from_dict(lt) if isinstance(lt, Mapping) else None,
            filter_name=_opt_str(d.get("filter_name", d.get("filter"))), temp_c=_opt_float(d.get("temp_c")),
            updated=str(d.get("updated") or ""), version=str(d.get("version") or ""),
            pid=_opt_int(d.get("pid")), watch_dir=_opt_str(d.get("watch_dir")),
            schema=schema)

    def refocus(self, reason: str, now: datetime | None = None) -> "State":
        """This state with a refocus due for ``reason``; ``since`` is kept if one was already due."""
        since = self.since if self.refocus_due and self.since else iso_utc(now)
        return replace(self, refocus_due=True, reason=reason, since=since)

    def cleared(self, event: AutofocusEvent | None = None) -> "State":
        """This state with no refocus due (after an autofocus ``event``, if given)."""
        return replace(self, refocus_due=False, reason="", since=None,
                       last_autofocus=event if event is not None else self.last_autofocus)


# --------------------------------------------------------------------------- locations

def default_state_dir(environ: Mapping[str, str] | None = None, platform: str | None = None,
                      home: Path | None = None) -> Path:
    """The per-user folder for ``state.json``, the event log (and the journal).

    ``$FOCUSWATCH_STATE_DIR`` wins; otherwise Windows ``%LOCALAPPDATA%\\focuswatch``, macOS
    ``~/Library/Application Support/focuswatch``, elsewhere ``$XDG_STATE_HOME/focuswatch`` or
    ``~/.local/state/focuswatch``. The folder is not created here (writers create it).
    ``environ``/``platform``/``home`` exist so tests can ask about other systems.
    """
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV]).expanduser()
    home = home or Path.home()
    if plat.startswith("win"):
        base = env.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "focuswatch"
    if plat == "darwin":
        return home / "Library" / "Application Support" / "focuswatch"
    xdg = env.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "focuswatch"
    return home / ".local" / "state" / "focuswatch"


def state_path(state_dir: str | Path | None = None) -> Path:
    """``state.json`` inside ``state_dir`` (default: :func:`default_state_dir`)."""
    return Path(state_dir if state_dir is not None else default_state_dir()) / STATE_FILE_NAME


def events_path(state_dir: str | Path | None = None) -> Path:
    """``autofocus-events.jsonl`` inside ``state_dir`` (default: :func:`default_state_dir`)."""
    return Path(state_dir if state_dir is not None else default_state_dir()) / EVENTS_FILE_NAME


def resolve_paths(state_dir: str | Path | None = None, state_file: str | Path | None = None) -> tuple[Path, Path]:
    """(state file, event log) for the CLI's ``--state-dir``/``--state-file``.

    ``--state-file`` wins for the state; the event log always sits in the state file's folder
    so a watcher and its hooks agree on it from one setting.
    """
    if state_file is not None:
        sp = Path(state_file).expanduser()
        return sp, sp.parent / EVENTS_FILE_NAME
    d = Path(state_dir).expanduser() if state_dir is not None else default_state_dir()
    return d / STATE_FILE_NAME, d / EVENTS_FILE_NAME


# --------------------------------------------------------------------------- state file I/O

_REPLACE_TRIES = 20
_REPLACE_PAUSE_S = 0.05


def write_state(path: str | Path, state: State, *, stamp: bool = True) -> Path:
    """Replace the state file at ``path`` atomically with ``state``; returns the path.

    The JSON goes to a temporary file in the same folder, is flushed to disk, then
    ``os.replace``\\d over the old file, so a hook reading at any moment sees the old or the
    new state, never half of one. On Windows a reader holding the file open makes the replace
    fail for a moment; it is retried for about a second. With ``stamp`` (the default),
    ``updated``, ``version`` and ``pid`` are set to now / this process.

    Raises
    ------
    StateFileError
        The folder cannot be created or written (the message names it).
    """
    p = Path(path)
    if stamp:
        state = replace(state, updated=iso_utc(), version=__version__, pid=os.getpid())
    text = json.dumps(state.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        raise StateFileError(f"{p.parent}: cannot write the state file there ({exc.strerror or exc})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        for attempt in range(_REPLACE_TRIES):
            try:
                os.replace(tmp, p)
                break
            except PermissionError:
                if attempt == _REPLACE_TRIES - 1:
                    raise
                time.sleep(_REPLACE_PAUSE_S)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StateFileError(f"{p}: cannot replace the state file ({exc.strerror or exc})") from None
    return p


#: Deeper JSON nesting than this is refused before parsing (a state file is two levels deep;
#: 100,000 nested ``[`` would otherwise end in a ``RecursionError``).
MAX_JSON_DEPTH = 32


def _loads_bounded(text: str) -> Any:
    """``json.loads`` that refuses absurd nesting with a ``ValueError`` instead of recursing.

    The depth is counted outside strings in one pass, so a hostile file costs no recursion.
    """
    depth = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        elif ch in "]}":
            depth -= 1
    return json.loads(text)


def read_state(path: str | Path) -> State | None:
    """Read the state file at ``path``; ``None`` when there is none yet.

    Raises
    ------
    StateFileError
        The file exists but is not a focuswatch state (bad JSON, not an object) or cannot be
        read; the message names the file.
    """
    p = Path(path)
    text = None
    for attempt in range(_REPLACE_TRIES):
        try:
            text = p.read_text(encoding="utf-8")
            break
        except FileNotFoundError:
            return None
        except PermissionError as exc:  # Windows: the writer is replacing it right now
            if attempt == _REPLACE_TRIES - 1:
                raise StateFileError(f"{p}: cannot read the state file ({exc.strerror or exc})") from None
            time.sleep(_REPLACE_PAUSE_S)
        except (OSError, UnicodeDecodeError) as exc:
            raise StateFileError(f"{p}: cannot read the state file ({exc})") from None
    try:
        return State.from_dict(_loads_bounded(text or ""))
    except (ValueError, TypeError) as exc:
        raise StateFileError(f"{p}: not a focuswatch state file ({exc}); delete it and let the watcher "
                           "write a new one") from None


# --------------------------------------------------------------------------- autofocus events

def append_autofocus_event(events_file: str | Path, event: AutofocusEvent) -> Path:
    """Append ``event`` as one JSON line to the event log (created if needed); returns its path.

    One ``write`` of one short line in append mode: concurrent hooks do not interleave.

    Raises
    ------
    StateFileError
        The log cannot be written.
    """
    p = Path(events_file)
    if parse_iso(event.time) is None:
        raise StateFileError(f"autofocus event time {event.time!r} is not an ISO 8601 time")
    line = json.dumps(event.to_dict(), ensure_ascii=False, allow_nan=False) + "\n"
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(line)
    except OSError as exc:
        raise StateFileError(f"{p}: cannot append the autofocus event ({exc.strerror or exc})") from None
    return p


def read_autofocus_events(state_dir_or_file: str | Path | None = None,
                          since: str | datetime | None = None) -> list[AutofocusEvent]:
    """Autofocus events from the log, oldest first, optionally only those after ``since``.

    This is what the watcher polls to restart its HFR baseline: call it with the time of the
    newest event already handled and feed the new ones to the policy.

    Parameters
    ----------
    state_dir_or_file
        The state folder (the log is ``autofocus-events.jsonl`` in it), or the log file itself
        (a path ending in ``.jsonl``); ``None`` means :func:`default_state_dir`.
    since
        Keep only events strictly later than this (ISO string or datetime; naive = UTC).

    Returns
    -------
    list of AutofocusEvent
        Sorted by time. A missing log is an empty list; malformed lines (a hook killed
        mid-write) are skipped, never fatal.
    """
    p = Path(state_dir_or_file) if state_dir_or_file is not None else default_state_dir()
    if p.suffix.lower() != ".jsonl":
        p = p / EVENTS_FILE_NAME
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    except OSError as exc:
        raise StateFileError(f"{p}: cannot read the autofocus event log ({exc.strerror or exc})") from None
    cutoff = parse_iso(since) if isinstance(since, str) else since
    if cutoff is not None and cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=timezone.utc)
    events: list[AutofocusEvent] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            ev = AutofocusEvent.from_dict(_loads_bounded(line))
        except (ValueError, TypeError, AttributeError):
            continue
        if cutoff is None or ev.datetime_utc > cutoff:
            events.append(ev)
    events.sort(key=lambda e: e.datetime_utc)
    return events


def apply_autofocus_events(state: State, events: Iterable[AutofocusEvent]) -> State:
    """Reconcile a state with the event log (pure).

    The newest event becomes ``last_autofocus`` if it is newer than the state's; if it
    happened at or after ``since`` (the moment the refocus became due) the refocus is done
    and ``refocus_due`` is cleared. This is what makes ``autofocus-done`` win even when the
    watcher rewrites the state from a verdict taken just before the autofocus.
    """
    evs = sorted(events, key=lambda e: e.datetime_utc)
    if not evs:
        return state
    newest = evs[-1]
    cur = state.last_autofocus
    if cur is None or newest.datetime_utc > cur.datetime_utc:
        state = replace(state, last_autofocus=newest)
    if state.refocus_due:
        since = parse_iso(state.since)
        if since is None or newest.datetime_utc >= since:
            state = state.cleared(state.last_autofocus)
    return state


def record_autofocus(state_file: str | Path, events_file: str | Path, event: AutofocusEvent) -> State:
    """What ``focuswatch autofocus-done`` does: log the event, then clear ``refocus_due``.

    The event is appended first (the watcher's source of truth), then the state file is
    rewritten with ``refocus_due = false`` and ``last_autofocus = event`` so hooks reading
    it right away agree. The state keeps the watcher's ``pid``/``updated`` (``stamp`` off):
    it is still the watcher's state, only acknowledged. Returns the new state.
    """
    append_autofocus_event(events_file, event)
    try:
        state = read_state(state_file) or State(updated=iso_utc())
    except StateFileError as exc:  # a corrupt state must not block the acknowledgement; the watcher rewrites it
        _log.warning("%s; replacing it", exc)
        state = State(updated=iso_utc())
    new = apply_autofocus_events(state, [event])
    write_state(state_file, new, stamp=False)
    return new


# --------------------------------------------------------------------------- check verdict

@dataclass(frozen=True)
class CheckResult:
    """The verdict of ``focuswatch check`` (pure; see :func:`evaluate`).

    ``status`` is one of ``fine``, ``refocus``, ``no-state``, ``stale``, ``error``;
    ``exit_code`` is 0 fine, 1 refocus due, 2 error. ``age_min`` is how old the state is in
    minutes (``None`` without a state).
    """

    status: str
    exit_code: int
    message: str
    refocus_due: bool = False
    age_min: float | None = None
    state: State | None = None

    def to_dict(self) -> dict[str, Any]:
        return _finite({"status": self.status, "exit_code": self.exit_code, "message": self.message,
                        "refocus_due": self.refocus_due, "age_min": self.age_min,
                        "state": self.state.to_dict() if self.state else None})


def evaluate(state: State | None, events: Iterable[AutofocusEvent] = (), *, now: datetime,
             max_age_min: float | None = 60.0, strict: bool = False) -> CheckResult:
    """Turn a state (plus the event log) into ``check``'s verdict and exit code.

    ========================  ======================  =========================
    situation                 default                 ``strict``
    ========================  ======================  =========================
    no state file yet         0 ``no-state``          2
    state older than max age  0 ``stale``             2
    refocus due               1 ``refocus``           1
    otherwise                 0 ``fine``              0
    ========================  ======================  =========================

    A stale state (watcher stopped or crashed) never asks for a refocus: acting on an old
    verdict would autofocus at every check. ``max_age_min`` of ``None`` or 0 disables it.
    """
    if state is None:
        code = EXIT_ERROR if strict else EXIT_FINE
        return CheckResult("no-state", code, "no watcher state yet — is `focuswatch watch` running?")
    state = apply_autofocus_events(state, events)
    upd = parse_iso(state.updated)
    age_min = (now - upd).total_seconds() / 60.0 if upd is not None else None
    if max_age_min and (age_min is None or age_min > max_age_min):
        code = EXIT_ERROR if strict else EXIT_FINE
        age = f"{age_min:.0f} min old" if age_min is not None else "undated"
        return CheckResult("stale", code, f"watcher state is {age} (limit {max_age_min:g} min) — "
                           "is `focuswatch watch` still running?", state.refocus_due, age_min, state)
    if state.refocus_due:
        return CheckResult("refocus", EXIT_REFOCUS, f"refocus due: {state.reason or 'no reason given'}",
                           True, age_min, state)
    return CheckResult("fine", EXIT_FINE, "in focus" + (f" ({state.reason})" if state.reason else ""),
                       False, age_min, state)


def run_check(state_file: str | Path, events_file: str | Path, *, max_age_min: float | None = 60.0,
              strict: bool = False, clear: bool = False, now: datetime | None = None) -> CheckResult:
    """What ``focuswatch check`` does: read both files, judge, and optionally acknowledge.

    With ``clear`` and a refocus due, an autofocus event (source ``check --clear``) is
    recorded right away — for sequences where the hook itself runs the autofocus — so the
    watcher takes a new baseline and the next check says fine. The returned verdict (and
    exit code 1) is still the one read *before* clearing.

    Raises
    ------
    StateFileError
        The state file or event log exists but cannot be read or written.
    """
    now = now or utc_now()
    state = read_state(state_file)
    events = read_autofocus_events(events_file) if state is not None else []
    result = evaluate(state, events, now=now, max_age_min=max_age_min, strict=strict)
    if clear and result.status == "refocus":
        record_autofocus(state_file, events_file, AutofocusEvent(time=iso_utc(now), source="check --clear",
                                                                 filter_name=state.filter_name if state else None))
    return result


def make_event(when: str | None = None, *, source: str = "autofocus-done", filter_name: str | None = None,
               position: int | None = None, temp_c: float | None = None, note: str = "") -> AutofocusEvent:
    """An :class:`AutofocusEvent` from command-line values; ``when`` is ISO 8601 (default now, UTC).

    Raises
    ------
    ConfigError
        ``when`` is not an ISO 8601 time (names ``--time``).
    """
    from focuswatch.errors import ConfigError

    if when:
        dt = parse_iso(when)
        if dt is None:
            raise ConfigError(f"--time {when!r}: not an ISO 8601 time (e.g. 2024-05-01T22:13:05Z)")
        stamp = iso_utc(dt)
    else:
        stamp = iso_utc()
    return AutofocusEvent(time=stamp, source=source or "autofocus-done", filter_name=filter_name or None,
                          position=position, temp_c=temp_c, note=note or "")


def describe_check(result: CheckResult) -> str:
    """One human line for ``focuswatch check`` (NINA does not show it; a terminal does)."""
    text = result.message
    st = result.state
    if st is not None and st.last_frame is not None:
        lf = st.last_frame
        bits = [Path(lf.file).name or lf.file]
        if lf.hfr_px is not None:
            bits.append(f"HFR {lf.hfr_px:.2f} px")
        if lf.defocus_um is not None:
            cfz = f" ({lf.defocus_cfz:.2f} CFZ)" if lf.defocus_cfz is not None else ""
            bits.append(f"defocus {lf.defocus_um:.0f} µm{cfz}")
        text += "; last frame " + ", ".join(bits)
    if result.status == "refocus" and st is not None and st.since:
        text += f"; due since {st.since}"
    if st is not None and st.last_trigger is not None and not st.last_trigger.ok and result.status == "refocus":
        text += f"; trigger {st.last_trigger.trigger} failed: {st.last_trigger.message}"
    return text
