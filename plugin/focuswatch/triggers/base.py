"""What every trigger shares: the ``[trigger]`` settings, a request, a result, the :class:`Trigger` interface."""
from __future__ import annotations


import abc
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from focuswatch.config import section_to_dataclass
from focuswatch.errors import ConfigError
from focuswatch.model.records import Record
from focuswatch.io.statefile import TriggerNote, iso_utc


log = logging.getLogger("focuswatch.triggers")


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
