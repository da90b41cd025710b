"""Asking a capture program for a refocus: NINA's Advanced API, Ekos over D-Bus, or a command.

This is I/O at the edge: the policy (:mod:`focuswatch.policy`) decides *that* a refocus is
due; this module only delivers the request and reports what happened. The state file
(:mod:`focuswatch.io.statefile`) is always written by the watcher, whatever the triggers do, so
hooks inside the capture program (``focuswatch check``) see the request even when every
trigger here fails.

==============  ==========================================================================
trigger         what it does
==============  ==========================================================================
``nina-api``    ``GET .../v2/api/equipment/focuser/info`` (not connected: fails, not retried),
                ``.../sequence/state`` (defers while an instruction is RUNNING),
                ``.../equipment/camera/info`` (defers while ``IsExposing``), then
                ``GET .../v2/api/equipment/focuser/auto-focus``; the JSON answer must say
                ``"Success": true`` (a 409 is not retried). Advanced API plugin, default port
                1888. It runs outside the sequencer: prefer in-sequence hooks when you can.
``ekos-dbus``   introspects ``org.kde.kstars`` ``/KStars/Ekos/Focus``, finds the optical
                train over D-Bus (or ``ekos_train``), defers while the focus module is busy,
                calls ``start()`` (KStars 3.6) or ``start(train)`` and succeeds only when
                ``newStatus``/``status`` show the autofocus running.
``command``     runs a program with arguments (never through a shell) with a timeout; exit 0
                is success. ``{reason}``, ``{hfr_px}``, ``{defocus_um}``, ``{defocus_cfz}``,
                ``{filter}``, ``{file}``, ``{time}`` in arguments are replaced; the same
                values are in ``FOCUSWATCH_*`` environment variables.
==============  ==========================================================================

A trigger never raises for a remote failure: :meth:`Trigger.fire` returns a
:class:`TriggerResult` with ``ok = False`` and a message that says what to check.
:class:`TriggerRunner` retries failed triggers with exponential back-off (``retry_initial_s``
doubling up to ``retry_max_s``, at most ``max_attempts``), driven by an explicit ``now`` so
the watcher's loop — and the tests — decide when time passes.

Configuration (``[trigger]`` in the TOML file, see :class:`TriggerConfig`)::

    [trigger]
    nina_api = true
    nina_host = "127.0.0.1"
    nina_port = 1888
    timeout_s = 5
    ekos_dbus = false
    ekos_train = "Primary"
    command = ["C:/Tools/notify.exe", "--text", "refocus: {reason}"]
    command_timeout_s = 60
    retry_initial_s = 30
    retry_max_s = 600
    max_attempts = 5
"""
from __future__ import annotations

import abc
import dataclasses
import json
import logging
import math
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from focuswatch.config import section_to_dataclass
from focuswatch.errors import ConfigError
from focuswatch.model.records import Record
from focuswatch.io.statefile import TriggerNote, iso_utc

log = logging.getLogger("focuswatch.triggers")

NINA_AF_PATH = "/v2/api/equipment/focuser/auto-focus"
NINA_CAMERA_PATH = "/v2/api/equipment/camera/info"
NINA_FOCUSER_PATH = "/v2/api/equipment/focuser/info"
NINA_SEQUENCE_STATE_PATH = "/v2/api/sequence/state"
NINA_LAST_AF_PATH = "/v2/api/equipment/focuser/last-af"
EKOS_BUS_NAME = "org.kde.kstars"
EKOS_FOCUS_PATH = "/KStars/Ekos/Focus"
EKOS_FOCUS_INTERFACE = "org.kde.kstars.Ekos.Focus"
#: How much of a failed command's stderr goes into the message.
STDERR_TAIL_CHARS = 400


# --------------------------------------------------------------------------- HTTP against a deadline

def read_before(resp: Any, deadline: float, clock: Callable[[], float] = time.monotonic,
                chunk_bytes: int = 65536) -> bytes:
    """Read an ``http.client`` response body, raising ``TimeoutError`` once ``deadline`` passes.

    Each read waits at most the time left (the socket timeout is lowered as it goes), so a
    server trickling one byte a second cannot keep it past the deadline.
    """
    parts: list[bytes] = []
    while True:
        left = deadline - clock()
        if left <= 0:
            raise TimeoutError("the answer did not arrive before the overall deadline")
        sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
        if sock is not None:
            try:
                sock.settimeout(max(0.01, left))
            except OSError:
                pass
        reader = getattr(resp, "read1", None) or resp.read
        data = reader(chunk_bytes)
        if not data:
            return b"".join(parts)
        parts.append(data)


# --------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class TriggerConfig:
    """The ``[trigger]`` table: which triggers are on and how patient to be.

    Parameters
    ----------
    nina_api
        Start NINA's autofocus through the Advanced API plugin (off by default: it runs
        outside the sequence; the state file + ``focuswatch check`` hooks are the safer way).
    nina_host, nina_port
        Where the Advanced API listens (plugin default 1888).
    nina_check_camera
        Ask ``camera/info`` first and defer while the camera is exposing.
    nina_check_sequence
        Ask ``sequence/state`` first and defer while a sequence instruction is RUNNING (an
        API autofocus runs outside the sequencer and would collide with it).
    nina_check_focuser
        Ask ``focuser/info`` first; a focuser that is not connected is a failure that is
        not retried (each retry would open another failing autofocus).
    timeout_s
        Seconds to wait for NINA's HTTP answer and for the Ekos D-Bus reply.
    ekos_dbus
        Call Ekos's ``start`` on the session D-Bus.
    ekos_train
        Optical train to focus (``""``: the one Ekos's focus module reports over D-Bus; KStars
        versions with ``start(trainname)`` that do not report it need the name here).
    ekos_confirm_s
        Seconds to wait, after ``start``, for Ekos's status to show the autofocus running.
    ekos_bus_address
        D-Bus address (``unix:path=...``); ``""`` uses ``$DBUS_SESSION_BUS_ADDRESS``.
    command
        Program and arguments to run, e.g. ``["/usr/local/bin/notify", "{reason}"]``;
        empty: no command trigger.
    command_timeout_s
        Seconds before the command is killed and counted as failed.
    retry_initial_s, retry_max_s, retry_factor
        Back-off after a failure: ``retry_initial_s * retry_factor**(n-1)`` seconds after the
        n-th failure, never more than ``retry_max_s``.
    max_attempts
        Attempts per refocus request (first try included); 0 means no limit.
    """

    nina_api: bool = False
    nina_host: str = "127.0.0.1"
    nina_port: int = 1888
    nina_check_camera: bool = True
    nina_check_sequence: bool = True
    nina_check_focuser: bool = True
    timeout_s: float = 5.0
    ekos_dbus: bool = False
    ekos_train: str = ""
    ekos_bus_address: str = ""
    ekos_confirm_s: float = 15.0
    command: tuple[str, ...] = ()
    command_timeout_s: float = 120.0
    retry_initial_s: float = 30.0
    retry_max_s: float = 600.0
    retry_factor: float = 2.0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"[trigger] {key} = {getattr(self, key)!r}: {why}")

        if not 1 <= self.nina_port <= 65535:
            raise bad("nina_port", "must be a TCP port between 1 and 65535")
        if not self.nina_host.strip():
            raise bad("nina_host", "must name the machine NINA runs on (e.g. 127.0.0.1)")
        for key in ("timeout_s", "command_timeout_s", "retry_initial_s", "retry_max_s", "ekos_confirm_s"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                raise bad(key, "must be a positive number of seconds")
        if self.retry_max_s < self.retry_initial_s:
            raise bad("retry_max_s", f"must be at least retry_initial_s ({self.retry_initial_s:g})")
        if not (math.isfinite(self.retry_factor) and self.retry_factor >= 1.0):
            raise bad("retry_factor", "must be 1 or more")
        if self.max_attempts < 0:
            raise bad("max_attempts", "must be 0 (no limit) or more")
        if self.command and not self.command[0].strip():
            raise bad("command", "the first item must be the program to run")
        object.__setattr__(self, "command", tuple(self.command))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, section: str = "trigger") -> "TriggerConfig":
        """Validate a ``[trigger]`` TOML table (unknown keys and bad types raise ConfigError)."""
        cmd = (values or {}).get("command")
        if cmd is not None and not (isinstance(cmd, (list, tuple)) and all(isinstance(a, str) for a in cmd)):
            raise ConfigError(f"[{section}] command = {cmd!r}: expected a list of strings, program first, "
                              'e.g. ["C:/Tools/notify.exe", "--text", "{reason}"] (no shell is used)')
        return section_to_dataclass(cls, values, section)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["command"] = list(self.command)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TriggerConfig":
        return cls.from_mapping(d)


# --------------------------------------------------------------------------- request / result

@dataclass(frozen=True)
class TriggerRequest(Record):
    """What the watcher asks for: a refocus, with the why and the numbers behind it.

    ``hfr_px`` is the newest frame's HFR in pixels, ``defocus_um`` the estimated defocus in µm,
    ``defocus_cfz`` the same as a fraction of the critical focus zone; ``time`` is ISO UTC.
    """

    reason: str
    time: str = ""
    filter_name: str | None = None
    hfr_px: float | None = None
    defocus_um: float | None = None
    defocus_cfz: float | None = None
    frame_file: str | None = None

    def placeholders(self) -> dict[str, str]:
        """Values for ``{name}`` placeholders in a command and ``FOCUSWATCH_*`` variables."""
        def num(v: float | None, spec: str) -> str:
            return "" if v is None or not math.isfinite(v) else format(v, spec)

        return {"reason": self.reason, "time": self.time or iso_utc(), "filter": self.filter_name or "",
                "hfr_px": num(self.hfr_px, ".3f"), "defocus_um": num(self.defocus_um, ".1f"),
                "defocus_cfz": num(self.defocus_cfz, ".2f"), "file": self.frame_file or ""}


@dataclass(frozen=True)
class TriggerResult(Record):
    """What one attempt of one trigger did.

    ``ok`` is True only when the other side confirmed (NINA ``Success: true``, Ekos ``true``,
    command exit 0). ``retryable`` is False for failures a retry cannot fix (a command that
    does not exist). ``elapsed_s`` is the attempt's duration in seconds; ``n_attempts`` and
    ``next_retry_s`` (seconds until the next attempt, ``None`` when done) are filled in by
    :class:`TriggerRunner`. ``detail`` holds the raw answer (NINA's JSON, the exit code...).
    """

    trigger: str
    ok: bool
    message: str
    time: str = ""
    elapsed_s: float = 0.0
    retryable: bool = True
    n_attempts: int = 1
    next_retry_s: float | None = None
    gave_up: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_note(self) -> TriggerNote:
        """The summary the watcher stores in the state file's ``last_trigger``."""
        return TriggerNote(trigger=self.trigger, ok=self.ok, message=self.message, time=self.time or None,
                           n_attempts=self.n_attempts, next_retry_s=self.next_retry_s)


# --------------------------------------------------------------------------- triggers

class Trigger(abc.ABC):
    """One way to ask for a refocus. Subclasses implement :meth:`_fire`.

    :meth:`fire` never raises: remote failures come back as ``ok = False``, and even an
    unexpected exception is turned into a failed result, so a watcher cannot die of a trigger.
    """

    #: Short stable name used in logs, the journal and ``--json`` (``nina-api``, ...).
    name: str = "trigger"

    #: ``time.monotonic()`` value by which the current :meth:`fire` must return (``None``: no limit).
    _deadline: float | None = None

    def __call__(self, request: TriggerRequest, *, deadline: float | None = None) -> TriggerResult:
        """Same as :meth:`fire`: a trigger is a callable a runner can schedule with a deadline."""
        return self.fire(request, deadline=deadline)

    def budget_s(self, want_s: float) -> float:
        """``want_s`` seconds, or less so that the current call ends by its deadline (at least 0.05 s)."""
        if self._deadline is None:
            return want_s
        return max(0.05, min(want_s, self._deadline - time.monotonic()))

    def fire(self, request: TriggerRequest, *, deadline: float | None = None) -> TriggerResult:
        """Deliver ``request`` once; returns the outcome (never raises).

        ``deadline`` (a ``time.monotonic()`` value) bounds every wait inside the call: network
        and D-Bus timeouts, Ekos's confirmation, a command's run time are cut to what is left.
        A deadline already passed gives a failed (retryable) result without trying.
        """
        start = time.monotonic()
        stamp = iso_utc()
        if deadline is not None and deadline <= start:
            return TriggerResult(self.name, False, f"{self.name}: no time left before the deadline; not tried",
                                 time=stamp)
        self._deadline = deadline
        try:
            result = self._fire(request)
        except Exception as exc:  # the watcher must survive any trigger bug
            log.exception("%s trigger crashed", self.name)
            result = TriggerResult(self.name, False, f"{self.name}: unexpected error: {exc!r}")
        finally:
            self._deadline = None
        return dataclasses.replace(result, time=stamp, elapsed_s=round(time.monotonic() - start, 4))

    @abc.abstractmethod
    def _fire(self, request: TriggerRequest) -> TriggerResult:
        """Do the work; may return failures, should not raise for expected ones."""

    def describe(self) -> str:
        """One line for ``--help``-style listings and logs."""
        return self.name

    def _fail(self, message: str, *, retryable: bool = True, **detail: Any) -> TriggerResult:
        return TriggerResult(self.name, False, message, retryable=retryable, detail=detail)

    def _ok(self, message: str, **detail: Any) -> TriggerResult:
        return TriggerResult(self.name, True, message, detail=detail)


class _NinaFailure(Exception):
    def __init__(self, message: str, **detail: Any):
        super().__init__(message)
        self.detail = detail


class NinaApiTrigger(Trigger):
    """Start NINA's autofocus through the Advanced API plugin (``/v2/api``).

    The API answers every route with HTTP 200 and ``{"Response", "Error", "StatusCode",
    "Success", "Type"}``; newer versions may also set the HTTP status. Both are handled: the
    JSON ``Success`` decides, an HTTP error without JSON is a failure with its status.
    """

    name = "nina-api"

    def __init__(self, host: str = "127.0.0.1", port: int = 1888, *, timeout_s: float = 5.0,
                 check_camera: bool = True, check_sequence: bool = True, check_focuser: bool = True):
        self.host, self.port, self.timeout_s, self.check_camera = host, int(port), float(timeout_s), check_camera
        self.check_sequence, self.check_focuser = check_sequence, check_focuser
        # No proxies: NINA is on this machine or the LAN, and an HTTP_PROXY must not eat the call.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def where(self) -> str:
        return f"NINA at {self.host}:{self.port}"

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        q = f"?{urllib.parse.urlencode(query)}" if query else ""
        return f"http://{host}:{self.port}{path}{q}"

    def describe(self) -> str:
        return f"nina-api: GET {self.url(NINA_AF_PATH)}"

    def _get_json(self, path: str) -> dict[str, Any]:
        """GET ``path`` and return the decoded JSON object, or raise _NinaFailure with a clear message."""

        url = self.url(path)
        status: int | None = None
        deadline = time.monotonic() + self.budget_s(self.timeout_s)  # connect + read, from the start
        try:
            with self._opener.open(url, timeout=self.budget_s(self.timeout_s)) as resp:
                status = resp.status
                body = read_before(resp, deadline)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                body = exc.read()
            except OSError:
                body = b""
            finally:
                exc.close()
            parsed = _loads_object(body)
            if parsed is None:
                raise _NinaFailure(f"{self.where} answered HTTP {exc.code} {exc.reason} for {path}",
                                   http_status=exc.code, url=url) from None
            return {**parsed, "_http_status": status}
        except urllib.error.URLError as exc:
            raise _NinaFailure(self._explain(exc.reason), url=url) from None
        except (TimeoutError, socket.timeout):
            raise _NinaFailure(f"{self.where} did not answer within {self.timeout_s:g} s ({path})",
                               url=url) from None
        except (ConnectionError, OSError) as exc:
            raise _NinaFailure(self._explain(exc), url=url) from None
        parsed = _loads_object(body)
        if parsed is None:
            snippet = body[:80].decode("utf-8", "replace").strip()
            raise _NinaFailure(f"{self.where} answered {path} with something that is not the Advanced API's "
                               f"JSON ({snippet!r}); is port {self.port} the Advanced API plugin?",
                               http_status=status, url=url)
        return {**parsed, "_http_status": status}

    def _explain(self, reason: Any) -> str:
        if isinstance(reason, ConnectionRefusedError):
            # ninaAPI/AdvancedAPI.cs (2.2.x): ActualPort = GetNearestAvailablePort(PreferredPort), and
            # PreferredPort is stored per NINA profile: the server may listen on another port.
            return (f"{self.where} refused the connection — is NINA running with the Advanced API plugin "
                    f"enabled? The plugin moves to the next free port when {self.port} is taken, and its port "
                    "is a per-profile setting: check the port shown in NINA (Plugins → Advanced API) and set "
                    "[trigger] nina_port")
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"{self.where} did not answer within {self.timeout_s:g} s"
        if isinstance(reason, socket.gaierror):
            return f"{self.where}: unknown host {self.host!r} ({reason.strerror or reason})"
        return f"{self.where} is unreachable ({getattr(reason, 'strerror', None) or reason})"

    @staticmethod
    def _api_error(answer: Mapping[str, Any]) -> str:
        err = answer.get("Error") or answer.get("Response") or "no error text"
        code = answer.get("StatusCode") or answer.get("_http_status")
        return f"{err} (status {code})" if code else str(err)

    def _fire(self, request: TriggerRequest) -> TriggerResult:
        try:
            if self.check_focuser:
                blocked = self._focuser_blocked()
                if blocked is not None:
                    return blocked
            if self.check_sequence:
                blocked = self._sequence_blocked()
                if blocked is not None:
                    return blocked
            if self.check_camera:
                cam = self._get_json(NINA_CAMERA_PATH)
                info = cam.get("Response")
                if cam.get("Success") is True and isinstance(info, Mapping) and info.get("IsExposing") is True:
                    return self._fail(f"{self.where}: the camera is exposing; autofocus deferred so the frame "
                                      "is not ruined (will retry)", camera=_short(info), deferred=True)
            answer = self._get_json(NINA_AF_PATH)
        except _NinaFailure as exc:
            return self._fail(str(exc), **exc.detail)
        answer_clean = {k: v for k, v in answer.items() if not k.startswith("_")}
        if answer.get("Success") is not True:
            # "Focuser not connected" comes as StatusCode 409 in the body (ninaAPI
            # WebService/V2/Equipment/Focuser.cs): a retry only opens another failing autofocus.
            conflict = answer.get("StatusCode") == 409 or answer.get("_http_status") == 409
            return self._fail(f"{self.where} refused the autofocus: {self._api_error(answer)}",
                              retryable=not conflict, answer=answer_clean)
        text = answer.get("Response")
        if not isinstance(text, str):
            return self._fail(f"{self.where} answered the autofocus call without a 'Response' text "
                              f"({answer_clean!r:.120})", answer=answer_clean)
        return self._ok(f"{self.where}: {text}", answer=answer_clean)

    def _focuser_blocked(self) -> TriggerResult | None:
        """A failed result when NINA's focuser is not connected (not retried), else None."""
        try:
            foc = self._get_json(NINA_FOCUSER_PATH)
        except _NinaFailure as exc:
            if exc.detail.get("http_status") == 404:
                return None  # an Advanced API without this route: the autofocus call will tell
            raise
        info = foc.get("Response")
        if foc.get("Success") is True and isinstance(info, Mapping) and info.get("Connected") is False:
            return self._fail(f"{self.where}: NINA's focuser is not connected; connect it in NINA (Equipment → "
                              "Focuser) — not retried", retryable=False, focuser=_short(info))
        return None

    def _sequence_blocked(self) -> TriggerResult | None:
        """A deferral while an instruction of NINA's sequence is RUNNING, else None."""
        try:
            seq = self._get_json(NINA_SEQUENCE_STATE_PATH)
        except _NinaFailure as exc:
            if exc.detail.get("http_status") == 404:
                return None  # older Advanced API: no sequence/state route
            raise
        if seq.get("Success") is not True:
            return None  # "Sequence is not initialized" (409): no sequence, nothing to collide with
        running = running_sequence_items(seq.get("Response"))
        if not running:
            return None
        names = ", ".join(running[:3])
        if any("autofocus" in n.lower() for n in running):
            return self._fail(f"{self.where}: NINA is already running an autofocus ({names}); not starting "
                              "another", deferred=True, running=running)
        return self._fail(f"{self.where}: NINA's sequence is running ({names}); an Advanced API autofocus would "
                          "collide with it, so it is deferred (will retry; the in-sequence hooks of docs/nina.md "
                          "act between exposures)", deferred=True, running=running)


def running_sequence_items(tree: Any) -> list[str]:
    """Names of the instructions and triggers with ``Status == "RUNNING"`` in ``sequence/state``.

    The Advanced API (ninaAPI WebService/V2/Application/Sequence.cs, ``SequenceState``) answers
    a list: ``{"GlobalTriggers": [...]}`` then the containers, each ``{"Name": "..._Container",
    "Status", "Items", "Conditions", "Triggers"}``; leaves are ``{"Name", "Status", ...}``.
    A running container alone is the sequence stepping between instructions; only running
    instructions (and triggers, e.g. an autofocus trigger at work) are listed, deepest first.
    """
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for x in node:
                walk(x)
            return
        if not isinstance(node, Mapping):
            return
        for key in ("Items", "Triggers", "GlobalTriggers"):
            if key in node:
                walk(node[key])
        name = node.get("Name")
        is_container = "Items" in node or (isinstance(name, str) and name.endswith("_Container"))
        if not is_container and isinstance(name, str) and str(node.get("Status", "")).upper() == "RUNNING":
            found.append(name)

    walk(tree)
    return found


def _loads_object(body: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _short(info: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("Name", "Connected", "IsExposing", "CameraState", "ExposureEndTime")
    return {k: info[k] for k in keys if k in info}


#: Ekos::FocusState (kstars/ekos/ekos.h, KStars 3.6.2 and later; later builds may append values).
EKOS_FOCUS_STATES = {0: "FOCUS_IDLE", 1: "FOCUS_COMPLETE", 2: "FOCUS_FAILED", 3: "FOCUS_ABORTED",
                     4: "FOCUS_WAITING", 5: "FOCUS_PROGRESS", 6: "FOCUS_FRAMING", 7: "FOCUS_CHANGING_FILTER",
                     8: "FOCUS_UNKNOWN"}
#: States in which the focus module is free: a new autofocus may start.
EKOS_IDLE_STATES = frozenset({0, 1, 2, 3})
#: States that show a started autofocus at work.
EKOS_RUNNING_STATES = frozenset({5, 6, 7})
EKOS_FOCUS_COMPLETE, EKOS_FOCUS_FAILED, EKOS_FOCUS_ABORTED, EKOS_FOCUS_WAITING = 1, 2, 3, 4
EKOS_CAPTURE_PATH = "/KStars/Ekos/Capture"
EKOS_CAPTURE_INTERFACE = "org.kde.kstars.Ekos.Capture"


def ekos_state_name(state: int | None) -> str:
    return "unknown" if state is None else EKOS_FOCUS_STATES.get(state, f"state {state}")


def _ekos_state(value: Any) -> int | None:
    """An Ekos::FocusState from D-Bus: a plain ``i`` (property) or the struct ``(i)`` (signal, status())."""
    while isinstance(value, (tuple, list)) and value:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return int(value)


@dataclass(frozen=True)
class EkosFocusApi:
    """What a running KStars exports on ``/KStars/Ekos/Focus`` (read by introspection).

    KStars 3.6.2 (Debian 12, verified against the real program): ``start()`` (no reply
    value), properties ``opticalTrain``, ``status`` (``i``), signal ``newStatus((i))``.
    Later KStars (optical trains per focuser, e.g. 3.7): ``start(s trainname)``,
    ``status(s) -> (i)``, signal ``newStatus((i), s)``.
    """

    start_signatures: tuple[str, ...]
    has_status_method: bool
    properties: tuple[str, ...]

    @property
    def takes_train(self) -> bool:
        return "s" in self.start_signatures

    @classmethod
    def from_introspection(cls, xml_text: str) -> "EkosFocusApi | None":
        import xml.etree.ElementTree as ET

        try:
            root = ET.fromstring(xml_text)
        except ET.ParseError:
            return None
        for iface in root.iter("interface"):
            if iface.get("name") != EKOS_FOCUS_INTERFACE:
                continue
            starts, status_m = [], False
            for m in iface.iter("method"):
                ins = "".join(a.get("type", "") for a in m.iter("arg") if a.get("direction", "in") == "in")
                if m.get("name") == "start":
                    starts.append(ins)
                elif m.get("name") == "status":
                    status_m = True
            props = tuple(p.get("name", "") for p in iface.iter("property"))
            return cls(tuple(starts), status_m, props)
        return None


class _EkosBus:
    """A few D-Bus calls on one jeepney connection, each within the trigger's time budget."""

    def __init__(self, conn: Any, timeout_s: float):
        self.conn, self.timeout_s = conn, timeout_s

    def call(self, path: str, interface: str, member: str, signature: str = "", body: tuple = (),
             timeout_s: float | None = None) -> tuple:
        from jeepney import DBusAddress, new_method_call
        from jeepney.wrappers import unwrap_msg

        addr = DBusAddress(path, bus_name=EKOS_BUS_NAME, interface=interface)
        msg = new_method_call(addr, member, signature or None, body) if signature else new_method_call(addr, member)
        return unwrap_msg(self.conn.send_and_get_reply(msg, timeout=timeout_s or self.timeout_s))

    def send_no_reply(self, path: str, interface: str, member: str) -> None:
        from jeepney import DBusAddress, new_method_call
        from jeepney.low_level import MessageFlag

        msg = new_method_call(DBusAddress(path, bus_name=EKOS_BUS_NAME, interface=interface), member)
        msg.header.flags |= MessageFlag.no_reply_expected
        self.conn.send(msg)

    def introspect(self, path: str) -> str:
        return str(self.call(path, "org.freedesktop.DBus.Introspectable", "Introspect")[0])

    def get_property(self, path: str, interface: str, name: str) -> Any:
        (variant,) = self.call(path, "org.freedesktop.DBus.Properties", "Get", "ss", (interface, name))
        return variant[1] if isinstance(variant, tuple) and len(variant) == 2 else variant


class EkosDbusTrigger(Trigger):
    """Start an Ekos autofocus over D-Bus and confirm that it runs (``org.kde.kstars`` ``/KStars/Ekos/Focus``).

    Steps, each read from the real KStars (3.6.2) or its source (later versions):

    1. introspect ``/KStars/Ekos/Focus`` to learn the API (``start()`` or ``start(s)``); no such
       object means Ekos is not started;
    2. find the optical train: ``[trigger] ekos_train``, else the focus module's
       ``opticalTrain`` property, else the capture module's; with ``start(s)`` and no train
       found the trigger refuses (``start("")`` opens a new focus tab on an unused train and
       still answers true). With ``start()`` (one focuser) a configured train that differs
       from the module's is refused: that KStars can only focus the train its Focus tab shows;
    3. refuse while the module is busy (``status`` WAITING, PROGRESS, FRAMING, CHANGING_FILTER);
    4. call ``start`` and confirm through ``newStatus`` (and ``status`` polls) that the autofocus
       runs within ``confirm_s``: ``true`` from ``start`` alone does not mean it ran.

    Use :func:`ekos_wait_result` to follow a run to its end (only ``FOCUS_COMPLETE`` is a success).
    """

    name = "ekos-dbus"

    def __init__(self, train: str = "", *, bus_address: str = "", timeout_s: float = 5.0, confirm_s: float = 15.0):
        self.train, self.bus_address, self.timeout_s = train, bus_address, float(timeout_s)
        self.confirm_s = float(confirm_s)

    def describe(self) -> str:
        return f"ekos-dbus: {EKOS_BUS_NAME} {EKOS_FOCUS_PATH} start({self.train!r})"

    def _fire(self, request: TriggerRequest) -> TriggerResult:
        try:
            from jeepney import MatchRule
            from jeepney.bus_messages import message_bus
            from jeepney.io.blocking import open_dbus_connection
            from jeepney.wrappers import DBusErrorResponse, unwrap_msg
        except ImportError as exc:  # pragma: no cover - jeepney is a dependency
            return self._fail(f"ekos-dbus: the jeepney package is missing ({exc})", retryable=False)
        bus = self.bus_address or os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
        if not bus:
            return self._fail("ekos-dbus: no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set); run "
                              "focuswatch in the desktop session where KStars runs, or set "
                              "[trigger] ekos_bus_address")
        try:
            conn = open_dbus_connection(bus, auth_timeout=self.budget_s(self.timeout_s))
        except Exception as exc:  # RuntimeError (transport), OSError, TimeoutError...
            return self._fail(f"ekos-dbus: cannot connect to the D-Bus session bus at {bus} ({exc})")
        dbus = _EkosBus(conn, self.budget_s(self.timeout_s))
        try:
            try:
                has = unwrap_msg(conn.send_and_get_reply(message_bus.NameHasOwner(EKOS_BUS_NAME),
                                                         timeout=self.timeout_s))
                if not has or not has[0]:
                    return self._fail(f"ekos-dbus: KStars is not running on the session bus ({EKOS_BUS_NAME} "
                                      "not found)")
                api = EkosFocusApi.from_introspection(dbus.introspect(EKOS_FOCUS_PATH))
                if api is None or not api.start_signatures:
                    return self._fail("ekos-dbus: KStars runs but Ekos is not started (no focus module on "
                                      f"{EKOS_FOCUS_PATH}); start Ekos with your profile and connect the devices")
                train, problem = self._train(dbus, api)
                if problem is not None:
                    return problem
                state = self._status(dbus, api, train)
                if state is not None and state not in EKOS_IDLE_STATES:
                    return self._fail(f"ekos-dbus: Ekos's focus module is busy ({ekos_state_name(state)}, train "
                                      f"{train!r}); not starting another autofocus (will retry)", deferred=True,
                                      status=ekos_state_name(state), train=train)
                rule = MatchRule(type="signal", interface=EKOS_FOCUS_INTERFACE, member="newStatus",
                                 path=EKOS_FOCUS_PATH)
                with conn.filter(rule) as signals:
                    unwrap_msg(conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=self.timeout_s))
                    if api.takes_train:
                        call = "start(s)"
                        reply = dbus.call(EKOS_FOCUS_PATH, EKOS_FOCUS_INTERFACE, "start", "s", (train,))
                        if reply and reply[0] is False:
                            return self._fail(f"ekos-dbus: Ekos refused to start an autofocus (train {train!r}); is "
                                              "the train's focuser connected?", reply=list(reply), call=call,
                                              train=train)
                    else:
                        call = "start()"
                        dbus.send_no_reply(EKOS_FOCUS_PATH, EKOS_FOCUS_INTERFACE, "start")
                    seen = self._confirm(dbus, api, train, signals)
            except DBusErrorResponse as exc:
                return self._fail(f"ekos-dbus: Ekos answered with an error: {exc.name}: "
                                  f"{' '.join(map(str, exc.data)) or 'no message'}", dbus_error=exc.name)
            except TimeoutError:
                return self._fail(f"ekos-dbus: no reply from Ekos within {self.timeout_s:g} s")
            except OSError as exc:
                return self._fail(f"ekos-dbus: the D-Bus connection failed ({exc})")
        finally:
            conn.close()
        names = [ekos_state_name(s) for s in seen]
        if any(s in EKOS_RUNNING_STATES or s == EKOS_FOCUS_COMPLETE for s in seen):
            return self._ok(f"ekos-dbus: Ekos autofocus running ({call}, train {train!r}; {' → '.join(names)})",
                            call=call, train=train, states=names)
        why = "no status change"
        if seen and seen[-1] == EKOS_FOCUS_WAITING:
            why = ("Ekos waits for a star to be selected: turn on 'Auto Select Star' in the Focus tab's "
                   "settings")
        elif seen:
            why = f"status went {' → '.join(names)}"
        return self._fail(f"ekos-dbus: Ekos accepted {call} but no autofocus started within {self.confirm_s:g} s "
                          f"(train {train!r}: {why})", call=call, train=train, states=names)

    def _train(self, dbus: _EkosBus, api: EkosFocusApi) -> tuple[str, TriggerResult | None]:
        current = ""
        if "opticalTrain" in api.properties:
            current = str(dbus.get_property(EKOS_FOCUS_PATH, EKOS_FOCUS_INTERFACE, "opticalTrain") or "")
        if not api.takes_train:
            if self.train and current and self.train != current:
                return current, self._fail(
                    f"ekos-dbus: [trigger] ekos_train is {self.train!r} but Ekos's Focus tab uses {current!r}; this "
                    "KStars starts the autofocus of the train its Focus tab shows: select it there or change "
                    "ekos_train", retryable=False, train=current)
            return self.train or current, None
        train = self.train or current
        if not train:
            try:
                xml_text = dbus.introspect(EKOS_CAPTURE_PATH)
                if 'name="opticalTrain"' in xml_text:
                    train = str(dbus.get_property(EKOS_CAPTURE_PATH, EKOS_CAPTURE_INTERFACE, "opticalTrain") or "")
            except Exception:  # noqa: BLE001 - discovery is best effort; the message below says what to do
                train = ""
        if not train:
            return "", self._fail(
                "ekos-dbus: cannot tell which optical train to focus (Ekos does not say over D-Bus); set "
                "[trigger] ekos_train to the train name shown in Ekos's Focus tab — an empty name would open a "
                "new focus tab on an unused train", retryable=False)
        return train, None

    def _status(self, dbus: _EkosBus, api: EkosFocusApi, train: str) -> int | None:
        if api.has_status_method:
            return _ekos_state(dbus.call(EKOS_FOCUS_PATH, EKOS_FOCUS_INTERFACE, "status", "s", (train,)))
        if "status" in api.properties:
            return _ekos_state(dbus.get_property(EKOS_FOCUS_PATH, EKOS_FOCUS_INTERFACE, "status"))
        return None

    def _confirm(self, dbus: _EkosBus, api: EkosFocusApi, train: str, signals: Any) -> list[int]:
        """States seen after ``start`` until the run shows up (or ``confirm_s`` passes)."""
        seen: list[int] = []
        end = time.monotonic() + self.budget_s(self.confirm_s)
        while time.monotonic() < end:
            try:
                msg = dbus.conn.recv_until_filtered(signals, timeout=min(0.5, max(0.01, end - time.monotonic())))
                body = msg.body
                if api.takes_train and len(body) > 1 and body[1] != train:
                    continue  # another train's focus module
                state = _ekos_state(body[0] if body else None)
            except TimeoutError:
                state = self._status(dbus, api, train)
                if seen and state == seen[-1]:
                    continue
            if state is None:
                continue
            seen.append(state)
            if state in EKOS_RUNNING_STATES or state == EKOS_FOCUS_COMPLETE:
                break
        return seen


def ekos_wait_result(train: str = "", *, bus_address: str = "", timeout_s: float = 600.0,
                     poll_s: float = 1.0) -> int | None:
    """Follow Ekos's focus module until the run ends; the final Ekos::FocusState, ``None`` on timeout.

    Only ``FOCUS_COMPLETE`` (1) is a successful autofocus; ``FOCUS_FAILED``/``FOCUS_ABORTED``
    are not (a failed Ekos run moves the focuser back to where it started: seen on KStars
    3.6.2, "Autofocus failed, moving back to initial focus position", then ABORTED), nor is
    ``FOCUS_WAITING`` after the start (Ekos waits for a star to be clicked). Reads the
    ``status`` property (KStars 3.6) or ``status(train)`` (later) every ``poll_s`` seconds.
    """
    from jeepney.io.blocking import open_dbus_connection

    conn = open_dbus_connection(bus_address or os.environ.get("DBUS_SESSION_BUS_ADDRESS", ""))
    try:
        dbus = _EkosBus(conn, 10.0)
        api = EkosFocusApi.from_introspection(dbus.introspect(EKOS_FOCUS_PATH))
        if api is None:
            return None
        trig = EkosDbusTrigger(train)
        end = time.monotonic() + timeout_s
        started = False
        while time.monotonic() < end:
            state = trig._status(dbus, api, train)
            if state == EKOS_FOCUS_WAITING and started:
                return state  # waits for a user's click (no Auto Select Star): not a success either
            if state is not None and state not in EKOS_IDLE_STATES:
                started = True
            elif started or state in (EKOS_FOCUS_COMPLETE, EKOS_FOCUS_FAILED, EKOS_FOCUS_ABORTED):
                return state
            time.sleep(poll_s)
        return None
    finally:
        conn.close()


class CommandTrigger(Trigger):
    """Run a program (no shell) when a refocus is due; exit 0 is success.

    ``{reason}``-style placeholders in the arguments are replaced (see the module table) and
    ``FOCUSWATCH_REASON``, ``FOCUSWATCH_HFR_PX``, ``FOCUSWATCH_DEFOCUS_UM``,
    ``FOCUSWATCH_DEFOCUS_CFZ``, ``FOCUSWATCH_FILTER``, ``FOCUSWATCH_FILE``, ``FOCUSWATCH_TIME``
    are set in its environment. Output is captured; a failure reports the tail of stderr.
    """

    name = "command"

    def __init__(self, argv: Sequence[str], *, timeout_s: float = 120.0):
        if not argv:
            raise ConfigError("[trigger] command: needs at least the program to run")
        self.argv, self.timeout_s = [str(a) for a in argv], float(timeout_s)

    def describe(self) -> str:
        return "command: " + " ".join(self.argv)

    def _fire(self, request: TriggerRequest) -> TriggerResult:
        values = request.placeholders()
        argv = [self.argv[0]] + [_substitute(a, values) for a in self.argv[1:]]
        env = dict(os.environ)
        env.update({f"FOCUSWATCH_{k.upper()}": v for k, v in values.items()})
        prog = argv[0]
        try:
            limit_s = self.budget_s(self.timeout_s)
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=limit_s,
                                  env=env, shell=False, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except FileNotFoundError:
            return self._fail(f"command: program not found: {prog} (give the full path in [trigger] command)",
                              retryable=False)
        except PermissionError:
            return self._fail(f"command: not allowed to run {prog} (is it executable?)", retryable=False)
        except subprocess.TimeoutExpired as exc:
            tail = _tail(exc.stderr)
            return self._fail(f"command: {prog} did not finish within {limit_s:.3g} s and was killed"
                              + (f"; stderr: {tail}" if tail else ""), timeout_s=limit_s)
        except OSError as exc:
            return self._fail(f"command: cannot run {prog} ({exc.strerror or exc})")
        if proc.returncode != 0:
            tail = _tail(proc.stderr)
            return self._fail(f"command: {prog} exited with code {proc.returncode}"
                              + (f"; stderr: {tail}" if tail else ""), exit_code=proc.returncode,
                              stderr_tail=tail)
        return self._ok(f"command: {prog} finished (exit 0)", exit_code=0, stdout_tail=_tail(proc.stdout))


def _substitute(arg: str, values: Mapping[str, str]) -> str:
    """Replace the known ``{name}`` placeholders only (no str.format: user text stays inert)."""
    for k, v in values.items():
        arg = arg.replace("{" + k + "}", v)
    return arg


def _tail(data: bytes | str | None) -> str:
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text[-STDERR_TAIL_CHARS:]


def build_triggers(config: TriggerConfig | Mapping[str, Any] | None) -> list[Trigger]:
    """The triggers ``config`` switches on, in a fixed order (NINA, Ekos, command).

    Accepts the frozen :class:`TriggerConfig` or the raw ``[trigger]`` table (validated here,
    raising :class:`ConfigError` naming ``[trigger] key``). An empty list is fine: the state
    file alone then carries the request.
    """
    if config is None or isinstance(config, Mapping):
        config = TriggerConfig.from_mapping(config or {})
    out: list[Trigger] = []
    if config.nina_api:
        out.append(NinaApiTrigger(config.nina_host, config.nina_port, timeout_s=config.timeout_s,
                                  check_camera=config.nina_check_camera,
                                  check_sequence=config.nina_check_sequence,
                                  check_focuser=config.nina_check_focuser))
    if config.ekos_dbus:
        out.append(EkosDbusTrigger(config.ekos_train, bus_address=config.ekos_bus_address,
                                   timeout_s=config.timeout_s, confirm_s=config.ekos_confirm_s))
    if config.command:
        out.append(CommandTrigger(config.command, timeout_s=config.command_timeout_s))
    return out


# --------------------------------------------------------------------------- retries

@dataclass(frozen=True)
class PendingTrigger:
    """A trigger still owed a success for the current request (read-only view)."""

    trigger: str
    n_attempts: int
    next_at: float | None
    gave_up: bool
    last_message: str


def backoff_s(n_failures: int, *, initial_s: float, max_s: float, factor: float = 2.0) -> float:
    """Seconds to wait after the ``n_failures``-th failure: ``initial_s * factor**(n-1)``, capped.

    >>> [backoff_s(n, initial_s=30, max_s=200) for n in (1, 2, 3, 4)]
    [30.0, 60.0, 120.0, 200.0]
    """
    if n_failures < 1:
        return 0.0
    try:
        delay = initial_s * factor ** (n_failures - 1)
    except OverflowError:
        delay = max_s
    return float(min(delay, max_s))


class TriggerRunner:
    """Fires the configured triggers for a refocus request and retries the failures.

    Time is whatever the caller says it is (``now``, seconds on any monotonic clock), so the
    watcher drives it from its loop and tests step through a night without sleeping.

    Typical use in the watcher::

        runner = TriggerRunner.from_config(trigger_config)
        ...
        if decision.refocus:                       # new request
            results = runner.request(TriggerRequest(reason), now=time.monotonic())
        results += runner.poll(now=time.monotonic())   # every loop turn: due retries
        if autofocus_seen:                          # autofocus-done / NINA report / Ekos
            runner.resolve()

    A request while one is pending does not fire again at once: it updates the request and
    keeps the back-off schedule (no hammering a NINA that is down); after a success or a give-up
    the trigger stays quiet for ``retry_max_s`` unless :meth:`resolve` is called. After ``max_attempts``
    failures (or a failure that is not retryable) the trigger gives up for this request; the
    state file still says a refocus is due, so in-sequence hooks can act on it.

    Parameters
    ----------
    triggers
        What to fire.
    retry_initial_s, retry_max_s, retry_factor, max_attempts
        See :class:`TriggerConfig`.
    on_result
        Called with every :class:`TriggerResult` (for the journal); its exceptions are logged
        and swallowed.
    """

    def __init__(self, triggers: Iterable[Trigger], *, retry_initial_s: float = 30.0, retry_max_s: float = 600.0,
                 retry_factor: float = 2.0, max_attempts: int = 5,
                 on_result: Callable[[TriggerResult], None] | None = None):
        self.triggers = list(triggers)
        self.retry_initial_s, self.retry_max_s = float(retry_initial_s), float(retry_max_s)
        self.retry_factor, self.max_attempts = float(retry_factor), int(max_attempts)
        self.on_result = on_result
        self.request_: TriggerRequest | None = None
        # per trigger index: [n_attempts, next_at or None (done), gave_up, last_message, last_attempt_at]
        self._slots: dict[int, list[Any]] = {}

    @classmethod
    def from_config(cls, config: TriggerConfig | Mapping[str, Any] | None,
                    on_result: Callable[[TriggerResult], None] | None = None) -> "TriggerRunner":
        """Runner with :func:`build_triggers` and the config's retry settings."""
        if config is None or isinstance(config, Mapping):
            config = TriggerConfig.from_mapping(config or {})
        return cls(build_triggers(config), retry_initial_s=config.retry_initial_s,
                   retry_max_s=config.retry_max_s, retry_factor=config.retry_factor,
                   max_attempts=config.max_attempts, on_result=on_result)

    # ---- state
    @property
    def active(self) -> bool:
        """True while some trigger still owes a success (retry scheduled)."""
        return any(s[1] is not None for s in self._slots.values())

    @property
    def pending(self) -> list[PendingTrigger]:
        return [PendingTrigger(self.triggers[i].name, s[0], s[1], s[2], s[3]) for i, s in sorted(self._slots.items())
                if s[1] is not None or s[2]]

    def next_due(self) -> float | None:
        """The earliest ``now`` at which :meth:`poll` has work, or ``None``."""
        times = [s[1] for s in self._slots.values() if s[1] is not None]
        return min(times) if times else None

    def backoff_s(self, n_failures: int) -> float:
        return backoff_s(n_failures, initial_s=self.retry_initial_s, max_s=self.retry_max_s,
                         factor=self.retry_factor)

    # ---- actions
    def request(self, request: TriggerRequest, now: float) -> list[TriggerResult]:
        """A refocus is due: fire every trigger that is not already busy with this request.

        Safe to call on every frame while the refocus stays due: a trigger waiting for a retry
        keeps its back-off, and one that succeeded or gave up is left alone for ``retry_max_s``
        after its last attempt (an autofocus takes minutes, and NINA's API would cancel a running
        one to start another). After that quiet time a still-standing request fires afresh — the
        autofocus evidently did not happen or was never reported. :meth:`resolve` re-arms at once.
        """
        self.request_ = request
        results = []
        for i in range(len(self.triggers)):
            slot = self._slots.get(i)
            if slot is not None:
                if slot[1] is not None:
                    continue  # a retry is scheduled: keep the back-off
                if now - slot[4] < self.retry_max_s:
                    continue  # succeeded or gave up recently: give the autofocus time to be reported
            self._slots[i] = [0, now, False, "", now]
            results.append(self._attempt(i, now))
        return results

    def poll(self, now: float) -> list[TriggerResult]:
        """Retry every trigger whose back-off has expired at ``now``."""
        if self.request_ is None:
            return []
        return [self._attempt(i, now) for i, s in sorted(self._slots.items()) if s[1] is not None and s[1] <= now]

    def resolve(self) -> None:
        """The refocus happened (or is no longer wanted): stop all retries."""
        self._slots.clear()
        self.request_ = None

    def _attempt(self, i: int, now: float) -> TriggerResult:
        trig, slot = self.triggers[i], self._slots[i]
        assert self.request_ is not None
        result = trig.fire(self.request_)
        slot[0] += 1
        slot[4] = now
        n = slot[0]
        if result.ok:
            slot[1], slot[2] = None, False
            result = dataclasses.replace(result, n_attempts=n, next_retry_s=None)
            log.info("%s: %s", trig.name, result.message)
        elif not result.retryable or (self.max_attempts and n >= self.max_attempts):
            slot[1], slot[2] = None, True
            why = "not retryable" if not result.retryable else f"after {n} attempt{'s' if n > 1 else ''}"
            result = dataclasses.replace(result, n_attempts=n, next_retry_s=None, gave_up=True)
            log.error("%s failed, giving up (%s): %s — `focuswatch check` still reports the refocus",
                      trig.name, why, result.message)
        else:
            delay = self.backoff_s(n)
            slot[1] = now + delay
            result = dataclasses.replace(result, n_attempts=n, next_retry_s=delay)
            log.warning("%s failed (attempt %d), retrying in %.0f s: %s", trig.name, n, delay, result.message)
        slot[3] = result.message
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:  # a journal problem must not stop the triggers
                log.exception("recording the %s trigger result failed", trig.name)
        return result
