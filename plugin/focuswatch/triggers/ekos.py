"""The ``ekos-dbus`` trigger: KStars/Ekos focus module over D-Bus."""
from __future__ import annotations


import os
import time
from dataclasses import dataclass
from typing import Any

from focuswatch.triggers.base import Trigger, TriggerRequest, TriggerResult


EKOS_BUS_NAME = "org.kde.kstars"


EKOS_FOCUS_PATH = "/KStars/Ekos/Focus"


EKOS_FOCUS_INTERFACE = "org.kde.kstars.Ekos.Focus"


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
