"""Triggers against real servers: an HTTP server answering like NINA's Advanced API, a private
session D-Bus with a stand-in Ekos focus module, real child processes; plus the retry schedule
and the nina_hooks/ scripts run with bash against real state files."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from focuswatch.io import statefile as sf
from focuswatch import triggers as tr
from focuswatch.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
HOOKS = REPO / "nina_hooks"
REQ = tr.TriggerRequest("HFR +18% over 6 frames", time="2024-05-01T22:00:00+00:00", filter_name="Ha",
                        hfr_px=2.61, defocus_um=41.5, defocus_cfz=0.64, frame_file="/frames/Ha_0042.fits")


# --------------------------------------------------------------------------- fake NINA

def _sequence(exposure_status: str, af_status: str, container_status: str = "RUNNING") -> list:
    """A ``/v2/api/sequence/state`` Response (ninaAPI V2 Sequence.cs getSequenceRecursivleyNew): a target
    container holding Take Exposure and Run Autofocus, plus the global triggers."""
    return [{"GlobalTriggers": [{"Name": "Meridian Flip_Trigger", "Status": "CREATED"}]},
            {"Name": "Start_Container", "Status": "FINISHED", "Items": [], "Conditions": [], "Triggers": []},
            {"Name": "Target Area_Container", "Status": container_status, "Conditions": [], "Triggers": [],
             "Items": [{"Name": "M 31_Container", "Status": container_status, "Conditions": [],
                        "Triggers": [{"Name": "Autofocus After HFR Increase_Trigger", "Status": "CREATED"}],
                        "Items": [{"Name": "Take Exposure", "Status": exposure_status, "ExposureTime": 300},
                                  {"Name": "Run Autofocus", "Status": af_status}]}]},
            {"Name": "End_Container", "Status": "CREATED", "Items": [], "Conditions": [], "Triggers": []}]


def _api(response, success=True, error="", status=200):
    """A body shaped like the Advanced API's HttpResponse (ninaAPI CoreUtility.HttpResponse)."""
    return {"Response": response, "Error": error, "StatusCode": status, "Success": success, "Type": "API"}


class FakeNina:
    """Real HTTP server on 127.0.0.1; ``routes[path] = (http_status, body, delay_s)``."""

    def __init__(self):
        self.routes: dict[str, tuple[int, object, float]] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                fake.requests.append(self.path)
                status, body, delay = fake.routes.get(self.path.split("?")[0], (404, "Not Found", 0.0))
                if delay:
                    time.sleep(delay)
                data = body if isinstance(body, bytes) else (
                    json.dumps(body).encode() if not isinstance(body, str) else body.encode())
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def idle(self):
        # shapes from ninaAPI 2.2.x: WebService/V2/Equipment/Focuser.cs (FocuserInfo -> focuser.GetInfo()),
        # WebService/V2/Application/Sequence.cs (SequenceState: [{"GlobalTriggers": [...]}, containers...])
        self.routes[tr.NINA_FOCUSER_PATH] = (200, _api({"Name": "ZWO EAF", "Connected": True, "Position": 15120,
                                                        "IsMoving": False}), 0.0)
        self.routes[tr.NINA_SEQUENCE_STATE_PATH] = (200, _api(_sequence("FINISHED", "CREATED")), 0.0)
        self.routes[tr.NINA_CAMERA_PATH] = (200, _api({"Name": "ZWO ASI2600MM", "Connected": True,
                                                       "IsExposing": False}), 0.0)
        self.routes[tr.NINA_AF_PATH] = (200, _api("Autofocus started"), 0.0)
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nina():
    fake = FakeNina().idle()
    yield fake
    fake.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_nina_starts_autofocus_after_checking_the_camera(nina):
    res = tr.NinaApiTrigger("127.0.0.1", nina.port, timeout_s=2).fire(REQ)
    assert res.ok and res.trigger == "nina-api"
    assert "Autofocus started" in res.message and f"127.0.0.1:{nina.port}" in res.message
    assert nina.requests == [tr.NINA_FOCUSER_PATH, tr.NINA_SEQUENCE_STATE_PATH, tr.NINA_CAMERA_PATH, tr.NINA_AF_PATH]
    assert res.detail["answer"]["Success"] is True and res.time and res.elapsed_s >= 0


def test_nina_defers_while_the_camera_is_exposing(nina):
    nina.routes[tr.NINA_CAMERA_PATH] = (200, _api({"Connected": True, "IsExposing": True,
                                                   "ExposureEndTime": "2024-05-01T22:05:00"}), 0.0)
    res = tr.NinaApiTrigger("127.0.0.1", nina.port, timeout_s=2).fire(REQ)
    assert not res.ok and res.retryable and "exposing" in res.message and res.detail["deferred"] is True
    assert tr.NINA_AF_PATH not in nina.requests  # never interrupts an exposure


def test_nina_without_camera_check_goes_straight_to_autofocus(nina):
    nina.routes[tr.NINA_CAMERA_PATH] = (200, _api({"IsExposing": True}), 0.0)
    res = tr.NinaApiTrigger("127.0.0.1", nina.port, timeout_s=2, check_camera=False, check_sequence=False,
                            check_focuser=False).fire(REQ)
    assert res.ok and nina.requests == [tr.NINA_AF_PATH]


def test_nina_refused_connection_says_what_to_check():
    port = _closed_port()
    res = tr.NinaApiTrigger("127.0.0.1", port, timeout_s=1).fire(REQ)
    assert not res.ok and res.retryable
    # ninaAPI/AdvancedAPI.cs: ActualPort = GetNearestAvailablePort(PreferredPort), PreferredPort per profile
    assert res.message.startswith(f"NINA at 127.0.0.1:{port} refused the connection — is NINA running with the "
                                  "Advanced API plugin enabled?")
    assert "next free port" in res.message and "per-profile" in res.message and "nina_port" in res.message


def test_nina_timeout(nina):
    nina.routes[tr.NINA_FOCUSER_PATH] = (200, _api({"IsExposing": False}), 1.0)
    res = tr.NinaApiTrigger("127.0.0.1", nina.port, timeout_s=0.3).fire(REQ)
    assert not res.ok and "did not answer within 0.3 s" in res.message
    assert res.elapsed_s < 0.95  # gave up on its own timeout, not the server's delay


@pytest.mark.parametrize("route, answer, expected", [
    (tr.NINA_AF_PATH, (200, _api("", False, "Focuser not connected", 409), 0.0),
     "refused the autofocus: Focuser not connected (status 409)"),
    (tr.NINA_AF_PATH, (200, _api("Autofocus started", False, "Focuser not connected", 409), 0.0),
     "refused the autofocus: Focuser not connected (status 409)"),  # ninaAPI v2 does not return early
    (tr.NINA_AF_PATH, (409, _api("", False, "Focuser not connected", 409), 0.0),
     "refused the autofocus: Focuser not connected (status 409)"),
    (tr.NINA_AF_PATH, (500, "Internal Server Error", 0.0), "answered HTTP 500"),
    (tr.NINA_AF_PATH, (200, "<html>router login</html>", 0.0), "not the Advanced API's JSON"),
    (tr.NINA_AF_PATH, (200, {"Success": True, "Response": {"odd": 1}}, 0.0), "without a 'Response' text"),
    (tr.NINA_CAMERA_PATH, (404, "Not Found", 0.0), "answered HTTP 404"),
])
def test_nina_error_replies(nina, route, answer, expected):
    nina.routes[route] = answer
    res = tr.NinaApiTrigger("127.0.0.1", nina.port, timeout_s=2).fire(REQ)
    assert not res.ok and expected in res.message


# ninaAPI 2.2.x WebService/V2/Equipment/Focuser.cs FocuserStartAF: a disconnected focuser sets the error table
# (StatusCode 409) but does not return, so StartAutoFocus still runs and fails: each retry would open another
# failing autofocus. Checked first through focuser/info, and a 409 answer is not retried.
def test_disconnected_focuser_is_not_retried_and_no_autofocus_is_opened(nina):
    nina.routes[tr.NINA_FOCUSER_PATH] = (200, _api({"Name": "ZWO EAF", "Connected": False}), 0.0)
    runner = tr.TriggerRunner([tr.NinaApiTrigger("127.0.0.1", nina.port, timeout_s=2)], max_attempts=5)
    (res,) = runner.request(REQ, now=0.0)
    assert not res.ok and not res.retryable and res.gave_up and "focuser is not connected" in res.message
    assert not runner.active and tr.NINA_AF_PATH not in nina.requests


def test_a_409_autofocus_answer_is_not_retried(nina):
    nina.routes[tr.NINA_FOCUSER_PATH] = (404, "Not Found", 0.0)   # an older plugin without focuser/info
    nina.routes[tr.NINA_AF_PATH] = (200, _api("Autofocus started", False, "Focuser not connected", 409), 0.0)
    runner = tr.TriggerRunner([tr.NinaApiTrigger("127.0.0.1", nina.port, timeout_s=2)], max_attempts=5)
    (res,) = runner.request(REQ, now=0.0)
    assert not res.ok and not res.retryable and res.gave_up and not runner.active
    assert nina.requests.count(tr.NINA_AF_PATH) == 1


# ninaAPI WebService/V2/Application/Sequence.cs: statuses are SequenceEntityStatus names (CREATED, RUNNING,
# FINISHED, FAILED, SKIPPED, DISABLED); "Sequence is not initialized" is a 409 error table.
@pytest.mark.parametrize("state, fires, words", [
    (_api(_sequence("RUNNING", "CREATED")), False, "sequence is running (Take Exposure)"),
    (_api(_sequence("FINISHED", "RUNNING")), False, "already running an autofocus (Run Autofocus)"),
    (_api(_sequence("FINISHED", "CREATED")), True, ""),          # between two instructions
    (_api(_sequence("FINISHED", "FINISHED", "FINISHED")), True, ""),
    (_api("", False, "Sequence is not initialized", 409), True, ""),
])
def test_sequence_state_is_checked_before_the_autofocus(nina, state, fires, words):
    nina.routes[tr.NINA_SEQUENCE_STATE_PATH] = (200, state, 0.0)
    res = tr.NinaApiTrigger("127.0.0.1", nina.port, timeout_s=2).fire(REQ)
    assert res.ok is fires and (tr.NINA_AF_PATH in nina.requests) is fires
    if not fires:
        assert words in res.message and res.retryable and res.detail["deferred"] is True


# --------------------------------------------------------------------------- retries

def test_backoff_schedule_grows_caps_and_gives_up_while_state_says_due(tmp_path):
    port = _closed_port()
    runner = tr.TriggerRunner([tr.NinaApiTrigger("127.0.0.1", port, timeout_s=0.5)],
                              retry_initial_s=10, retry_max_s=35, retry_factor=2, max_attempts=6)
    state_file = tmp_path / "state.json"
    state = sf.State(filter_name="Ha").refocus(REQ.reason)
    seen: list[tuple[float, float | None, bool]] = []

    first = runner.request(REQ, now=0.0)
    assert len(first) == 1 and not first[0].ok
    seen.append((0.0, first[0].next_retry_s, first[0].gave_up))
    now = 0.0
    while runner.active:
        due = runner.next_due()
        assert runner.poll(now=due - 0.5) == []  # nothing fires early
        assert runner.request(REQ, now=due - 0.5) == []  # a repeated request keeps the back-off
        now = due
        (res,) = runner.poll(now=now)
        seen.append((now, res.next_retry_s, res.gave_up))
        # The watcher records every attempt in the state file; the refocus stays due.
        state = replace(state, last_trigger=res.to_note())
        sf.write_state(state_file, state)
        verdict = sf.run_check(state_file, tmp_path / "autofocus-events.jsonl")
        assert (verdict.status, verdict.exit_code) == ("refocus", 1)
    assert [t for t, _, _ in seen] == [0.0, 10.0, 30.0, 65.0, 100.0, 135.0]
    assert [d for _, d, _ in seen] == [10.0, 20.0, 35.0, 35.0, 35.0, None]
    assert [g for _, _, g in seen] == [False] * 5 + [True]
    note = sf.read_state(state_file).last_trigger
    assert note.n_attempts == 6 and not note.ok and "refused the connection" in note.message
    assert runner.pending[0].gave_up and runner.poll(now=1000.0) == []
    assert runner.request(REQ, now=150.0) == []            # gave up 15 s ago: stays quiet for retry_max_s
    (again,) = runner.request(REQ, now=171.0)               # 36 s later the standing request fires afresh
    assert again.n_attempts == 1 and again.next_retry_s == 10.0


def test_retry_succeeds_once_nina_answers_and_resolve_stops_retries(nina):
    nina.routes[tr.NINA_AF_PATH] = (500, "busy", 0.0)
    results = []
    runner = tr.TriggerRunner([tr.NinaApiTrigger("127.0.0.1", nina.port, timeout_s=2)], retry_initial_s=5,
                              retry_max_s=60, on_result=results.append)
    assert not runner.request(REQ, now=100.0)[0].ok and runner.next_due() == 105.0
    nina.idle()
    (ok,) = runner.poll(now=105.0)
    assert ok.ok and ok.n_attempts == 2 and not runner.active and results[-1] is ok
    assert runner.request(REQ, now=110.0) == []  # the next frame's request does not restart the autofocus
    # Long after the success (> retry_max_s) a still-standing request fires again; resolve() drops its retry.
    nina.routes[tr.NINA_AF_PATH] = (500, "busy", 0.0)
    assert not runner.request(REQ, now=200.0)[0].ok and runner.active
    runner.resolve()
    assert not runner.active and runner.poll(now=1e9) == [] and runner.next_due() is None


def test_a_trigger_is_a_callable_that_keeps_its_deadline(tmp_path):
    """For a runner off the measuring path: every wait inside a call is cut to the deadline."""
    import time as _time

    script = _script(tmp_path, "time.sleep(30)\n")
    trig = tr.CommandTrigger([sys.executable, str(script)], timeout_s=120)
    res = trig(REQ, deadline=_time.monotonic() + 0.5)
    assert not res.ok and "did not finish within 0.5 s" in res.message and res.elapsed_s < 20
    late = trig(REQ, deadline=_time.monotonic() - 1)
    assert not late.ok and "no time left" in late.message and late.retryable


class _Exploding(tr.Trigger):
    name = "boom"

    def _fire(self, request):
        raise RuntimeError("bug in a trigger")


def test_a_crashing_trigger_or_journal_never_kills_the_watcher(caplog):
    def bad_journal(result):
        raise OSError("disk full")

    runner = tr.TriggerRunner([_Exploding()], retry_initial_s=1, max_attempts=2, on_result=bad_journal)
    (res,) = runner.request(REQ, now=0.0)
    assert not res.ok and "bug in a trigger" in res.message and res.next_retry_s == 1.0
    (res,) = runner.poll(now=1.0)
    assert res.gave_up and not runner.active
    assert "recording the boom trigger result failed" in caplog.text


# --------------------------------------------------------------------------- command

def _script(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "hook.py"
    p.write_text("import json, os, sys, time\n" + body, encoding="utf-8")
    return p


def test_command_runs_without_shell_with_placeholders_and_env(tmp_path):
    out = tmp_path / "out.json"
    script = _script(tmp_path, "json.dump({'argv': sys.argv[1:], 'reason': os.environ['FOCUSWATCH_REASON'],"
                               " 'defocus': os.environ['FOCUSWATCH_DEFOCUS_UM']}, open(sys.argv[1], 'w'))\n")
    trig = tr.CommandTrigger([sys.executable, str(script), str(out), "{reason}", "{hfr_px}px", "$HOME;{x}"],
                             timeout_s=30)
    res = trig.fire(REQ)
    assert res.ok and res.detail["exit_code"] == 0
    got = json.loads(out.read_text())
    assert got["argv"] == [str(out), "HFR +18% over 6 frames", "2.610px", "$HOME;{x}"]  # no shell expansion
    assert got["reason"] == REQ.reason and got["defocus"] == "41.5"


def test_command_failure_reports_exit_code_and_stderr_tail(tmp_path):
    script = _script(tmp_path, "print('NINA not reachable', file=sys.stderr); sys.exit(3)\n")
    res = tr.CommandTrigger([sys.executable, str(script)]).fire(REQ)
    assert not res.ok and res.retryable and res.detail["exit_code"] == 3
    assert "exited with code 3" in res.message and "NINA not reachable" in res.message


def test_command_timeout_kills_it(tmp_path):
    script = _script(tmp_path, "time.sleep(30)\n")
    res = tr.CommandTrigger([sys.executable, str(script)], timeout_s=0.5).fire(REQ)
    assert not res.ok and "did not finish within 0.5 s" in res.message and res.elapsed_s < 20


def test_missing_program_is_not_retried(tmp_path):
    runner = tr.TriggerRunner([tr.CommandTrigger([str(tmp_path / "no-such-program")])], max_attempts=5)
    (res,) = runner.request(REQ, now=0.0)
    assert not res.ok and not res.retryable and res.gave_up and "program not found" in res.message
    assert not runner.active


# --------------------------------------------------------------------------- config

def test_build_triggers_from_a_toml_table():
    trigs = tr.build_triggers({"nina_api": True, "nina_port": 1999, "ekos_dbus": True, "ekos_train": "Main",
                               "command": ["notify", "{reason}"], "timeout_s": 2})
    assert [t.name for t in trigs] == ["nina-api", "ekos-dbus", "command"]
    assert trigs[0].port == 1999 and trigs[0].timeout_s == 2.0 and trigs[1].train == "Main"
    assert tr.build_triggers(None) == [] and tr.build_triggers(tr.TriggerConfig()) == []
    cfg = tr.TriggerConfig.from_mapping({"command": ["a", "b"]})
    assert tr.TriggerConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("table, message", [
    ({"nina_port": 70000}, "[trigger] nina_port = 70000: must be a TCP port"),
    ({"timeout_s": 0}, "[trigger] timeout_s = 0.0: must be a positive number of seconds"),
    ({"retry_initial_s": 60, "retry_max_s": 30}, "[trigger] retry_max_s = 30.0: must be at least"),
    ({"command": "notify.exe --now"}, "[trigger] command = 'notify.exe --now': expected a list of strings"),
    ({"nina_api": "yes"}, "[trigger] nina_api = 'yes': expected true or false"),
    ({"nina_ip": "1.2.3.4"}, "[trigger] nina_ip: unknown setting"),
])
def test_bad_trigger_config_names_the_setting(table, message):
    with pytest.raises(ConfigError) as exc:
        tr.TriggerConfig.from_mapping(table)
    assert str(exc.value).startswith(message)


# --------------------------------------------------------------------------- Ekos over D-Bus

@pytest.fixture
def session_bus(tmp_path):
    """A private session bus from the real dbus-daemon; skipped only where D-Bus is not installed."""
    exe = shutil.which("dbus-daemon")
    if exe is None:
        if os.environ.get("FOCUSWATCH_REQUIRE_DBUS"):
            pytest.fail("dbus-daemon is required (FOCUSWATCH_REQUIRE_DBUS is set) but not installed")
        pytest.skip("dbus-daemon is not installed")
    address = f"unix:path={tmp_path / 'bus'}"
    proc = subprocess.Popen([exe, "--session", "--nofork", "--print-address=1", f"--address={address}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        printed = proc.stdout.readline().strip()
        assert printed.startswith("unix:path="), printed
        yield printed
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


# Introspection XML of /KStars/Ekos/Focus as the real KStars 3.6.2 (Debian 12) exports it (captured with
# `gdbus introspect` from a headless KStars with the Simulators profile), trimmed to what the trigger reads.
KSTARS_362_FOCUS_XML = """<node><interface name="org.kde.kstars.Ekos.Focus">
<method name="start"><annotation name="org.freedesktop.DBus.Method.NoReply" value="true"/></method>
<method name="abort"><annotation name="org.freedesktop.DBus.Method.NoReply" value="true"/></method>
<method name="canAutoFocus"><arg type="b" direction="out"/></method>
<signal name="newStatus"><arg name="status" type="(i)" direction="out"/></signal>
<signal name="newHFR"><arg name="HFR" type="d" direction="out"/><arg name="position" type="i" direction="out"/></signal>
<property name="opticalTrain" type="s" access="readwrite"/>
<property name="status" type="i" access="read"/>
</interface></node>"""
# Later KStars (trains per focuser; KDE/kstars ekos/focus, as the jeepney/Java clients of it call it):
# start(s trainname) -> b, status(s trainname) -> (i), signal newStatus((i) status, s trainname).
KSTARS_TRAIN_FOCUS_XML = """<node><interface name="org.kde.kstars.Ekos.Focus">
<method name="start"><arg name="trainname" type="s" direction="in"/><arg type="b" direction="out"/></method>
<method name="status"><arg name="trainname" type="s" direction="in"/><arg type="(i)" direction="out"/></method>
<signal name="newStatus"><arg type="(i)" direction="out"/><arg type="s" direction="out"/></signal>
</interface></node>"""
CAPTURE_XML = """<node><interface name="org.kde.kstars.Ekos.Capture">
<property name="opticalTrain" type="s" access="readwrite"/></interface></node>"""


class EkosStandIn:
    """Owns org.kde.kstars and answers /KStars/Ekos/Focus like KStars 3.6.2 (``modern=False``) or a KStars
    with per-train focus (``modern=True``): introspection, properties, status, start and newStatus signals.

    ``after_start`` lists the states it goes through after ``start`` (each sent as ``newStatus``)."""

    def __init__(self, address: str, *, modern: bool = False, reply: bool = True, status: int = 0,
                 train: str = "Primary", after_start=(5,), capture_train: str | None = None, with_focus=True):
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection
        from jeepney.wrappers import unwrap_msg

        self.modern, self.reply, self.status, self.train = modern, reply, status, train
        self.after_start, self.capture_train, self.with_focus = list(after_start), capture_train, with_focus
        self.calls: list[tuple[str, str, str, tuple]] = []
        self.conn = open_dbus_connection(address)
        assert unwrap_msg(self.conn.send_and_get_reply(message_bus.RequestName(tr.EKOS_BUS_NAME), timeout=5)) == (1,)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _signal(self, state: int, train: str) -> None:
        from jeepney import DBusAddress, new_signal

        addr = DBusAddress(tr.EKOS_FOCUS_PATH, interface=tr.EKOS_FOCUS_INTERFACE)
        if self.modern:
            self.conn.send(new_signal(addr, "newStatus", "(i)s", ((state,), train)))
        else:
            self.conn.send(new_signal(addr, "newStatus", "(i)", ((state,),)))

    def _serve(self):
        from jeepney import HeaderFields, MessageType, new_error, new_method_return

        while not self._stop.is_set():
            try:
                msg = self.conn.receive(timeout=0.05)
            except TimeoutError:
                continue
            except OSError:
                return
            h = msg.header
            if h.message_type != MessageType.method_call:
                continue
            path, iface = h.fields.get(HeaderFields.path), h.fields.get(HeaderFields.interface)
            member, sig = h.fields.get(HeaderFields.member), h.fields.get(HeaderFields.signature, "")
            self.calls.append((iface, member, sig, msg.body))
            wants_reply = not (h.flags & 1)
            if member == "Introspect":
                xml = {tr.EKOS_FOCUS_PATH: (KSTARS_TRAIN_FOCUS_XML if self.modern else KSTARS_362_FOCUS_XML)
                       if self.with_focus else "<node/>",
                       tr.EKOS_CAPTURE_PATH: CAPTURE_XML if self.capture_train is not None else "<node/>"}
                self.conn.send(new_method_return(msg, "s", (xml.get(path, "<node/>"),)))
            elif member == "Get":
                value = {"status": ("i", self.status), "opticalTrain": ("s", self.train if path == tr.EKOS_FOCUS_PATH
                                                                        else self.capture_train)}[msg.body[1]]
                self.conn.send(new_method_return(msg, "v", (value,)))
            elif member == "status":
                self.conn.send(new_method_return(msg, "(i)", ((self.status,),)))
            elif member == "start":
                train = msg.body[0] if msg.body else self.train
                if self.modern:
                    self.conn.send(new_method_return(msg, "b", (self.reply,)))
                elif wants_reply:
                    self.conn.send(new_method_return(msg))
                if self.reply:
                    for st in self.after_start:
                        self.status = st
                        self._signal(st, train)
            elif wants_reply:
                self.conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "s", ("no",)))

    def close(self):
        self._stop.set()
        self.thread.join(timeout=5)
        self.conn.close()


def _starts(ekos):
    return [c for c in ekos.calls if c[1] == "start"]


def _fire_at_standin(session_bus, train: str, *, confirm_s: float | None = None, **standin_kw):
    """Fire an Ekos trigger for ``train`` at a fresh Ekos stand-in; ``(result, stand-in)`` (closed)."""
    ekos = EkosStandIn(session_bus, **standin_kw)
    try:
        kw = {} if confirm_s is None else {"confirm_s": confirm_s}
        res = tr.EkosDbusTrigger(train, bus_address=session_bus, timeout_s=3, **kw).fire(REQ)
    finally:
        ekos.close()
    return res, ekos


def test_ekos_362_start_without_train_is_confirmed_by_newstatus(session_bus):
    """KStars 3.6.2: start() (NoReply), train from the opticalTrain property, confirmed by newStatus((5,))."""
    res, ekos = _fire_at_standin(session_bus, "", confirm_s=3)
    assert res.ok, res.message
    assert _starts(ekos) == [(tr.EKOS_FOCUS_INTERFACE, "start", "", ())]
    assert res.detail["train"] == "Primary" and res.detail["states"] == ["FOCUS_PROGRESS"]


def test_ekos_train_name_is_found_never_empty(session_bus):
    """start("") on a per-train KStars opens a new focus tab on an unused train and still answers true: the
    train comes from the config, else Ekos (focus module, then capture module), else the trigger refuses."""
    res, ekos = _fire_at_standin(session_bus, "", confirm_s=3, modern=True, capture_train="Main Scope")
    assert res.ok, res.message
    assert _starts(ekos) == [(tr.EKOS_FOCUS_INTERFACE, "start", "s", ("Main Scope",))]

    res, ekos = _fire_at_standin(session_bus, "", confirm_s=3, modern=True, capture_train=None)
    assert not res.ok and not res.retryable and "set [trigger] ekos_train" in res.message
    assert _starts(ekos) == []

    res, ekos = _fire_at_standin(session_bus, "Guide Scope", confirm_s=3, modern=True)
    assert res.ok and _starts(ekos) == [(tr.EKOS_FOCUS_INTERFACE, "start", "s", ("Guide Scope",))]


def test_ekos_true_without_a_running_autofocus_is_not_success(session_bus):
    # answers true, nothing happens
    res, ekos = _fire_at_standin(session_bus, "Main", confirm_s=1, modern=True, after_start=())
    assert not res.ok and "no autofocus started within 1 s" in res.message

    # KStars 3.6.2 observed: without Auto Select Star the run stops in FOCUS_WAITING for a click
    res, ekos = _fire_at_standin(session_bus, "", confirm_s=1, after_start=(5, 4))
    assert res.ok and res.detail["states"][0] == "FOCUS_PROGRESS"

    res, ekos = _fire_at_standin(session_bus, "", confirm_s=1, after_start=(4,))
    assert not res.ok and "Auto Select Star" in res.message

    res, ekos = _fire_at_standin(session_bus, "Main", confirm_s=1, modern=True, reply=False)
    assert not res.ok and "Ekos refused to start an autofocus" in res.message


@pytest.mark.parametrize("modern", [False, True])
def test_ekos_busy_focus_module_is_not_started(session_bus, modern):
    res, ekos = _fire_at_standin(session_bus, "Primary", confirm_s=1, modern=modern, status=5)  # FOCUS_PROGRESS
    assert not res.ok and res.retryable and "busy (FOCUS_PROGRESS" in res.message and _starts(ekos) == []


def test_ekos_362_other_train_is_refused(session_bus):
    res, ekos = _fire_at_standin(session_bus, "Guide Scope", confirm_s=1)
    assert not res.ok and not res.retryable and "uses 'Primary'" in res.message and _starts(ekos) == []


def test_ekos_not_running_and_no_bus(session_bus, monkeypatch, tmp_path):
    res = tr.EkosDbusTrigger("", bus_address=session_bus, timeout_s=3).fire(REQ)
    assert not res.ok and "KStars is not running on the session bus" in res.message
    res, ekos = _fire_at_standin(session_bus, "", with_focus=False)
    assert not res.ok and "Ekos is not started" in res.message
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    res = tr.EkosDbusTrigger("").fire(REQ)
    assert not res.ok and "no D-Bus session bus" in res.message
    res = tr.EkosDbusTrigger("", bus_address=f"unix:path={tmp_path / 'no-bus-here'}").fire(REQ)
    assert not res.ok and "cannot connect to the D-Bus session bus" in res.message


# --------------------------------------------------------------------------- nina_hooks/

def _hook_env(state_dir: Path) -> dict[str, str]:
    exe = shutil.which("focuswatch")
    env = {**os.environ, "FOCUSWATCH_STATE_DIR": str(state_dir)}
    if exe:
        env["FOCUSWATCH"] = exe
    else:
        env["FOCUSWATCH_PYTHON"] = sys.executable
    return env


def _bash(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(HOOKS / script), *args], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_sh_hooks_exit_codes_through_a_refocus_cycle(tmp_path):
    env = _hook_env(tmp_path)
    assert _bash("focuswatch-check.sh", env).returncode == 0          # no state yet
    assert _bash("focuswatch-check.sh", env, "--strict").returncode == 2
    assert _bash("focuswatch-refocus-gate.sh", env).returncode == 1   # gate: skip the autofocus

    sf.write_state(tmp_path / "state.json", sf.State(filter_name="L").refocus("temperature fell 1.4 °C"))
    check = _bash("focuswatch-check.sh", env)
    assert check.returncode == 1 and "temperature fell" in check.stdout
    assert _bash("focuswatch-refocus-gate.sh", env).returncode == 0   # gate: run the autofocus

    done = _bash("autofocus-done.sh", env, "--filter", "L", "--position", "20400")
    assert done.returncode == 0, done.stderr
    assert _bash("focuswatch-check.sh", env).returncode == 0
    assert _bash("focuswatch-refocus-gate.sh", env).returncode == 1
    (ev,) = sf.read_autofocus_events(tmp_path)
    assert ev.source == "nina-hook" and ev.position == 20400

    (tmp_path / "state.json").write_text("{broken")
    assert _bash("focuswatch-check.sh", env).returncode == 2
    assert _bash("focuswatch-refocus-gate.sh", env).returncode == 1   # errors never autofocus

    missing = {**env, "FOCUSWATCH": str(tmp_path / "nope"), "FOCUSWATCH_PYTHON": ""}
    r = _bash("focuswatch-check.sh", missing)
    assert r.returncode == 2 and "set FOCUSWATCH to its full path" in r.stderr


def test_hook_set_ups_survive_a_failed_autofocus_and_name_what_they_need():
    """The set-ups as a user follows them. Sources: Sequencer Powerups 3.28 ExternalScript (`EXITCODE` set from
    the exit code; a script that cannot run keeps the old value) and Powerups Lite (assignment commented out:
    `EXITCODE` never changes); NINA 3.x Run Autofocus defaults to ContinueOnError after AutoFocusVM moved the
    focuser back; Python Scripting plugin (PythonScriptingTrigger.cs: ScriptSource Inline/File, phase,
    nextItem, required module-level `result`; NINA 3.3.0.1037+, 64-bit CPython through pythonnet)."""
    text = (HOOKS / "README.md").read_text(encoding="utf-8")
    parts = text.split("## Set-up ")
    powerups, python, core = parts[1], parts[2], parts[3]
    for setup in (powerups, python, core):
        run_af = setup[setup.index("**Run Autofocus**"):]
        assert run_af[:200].count("On error: Skip current instruction") == 1, setup[:40]
    assert "Powerups Lite does not set `EXITCODE`" in powerups
    done = powerups[powerups.index("autofocus-done.bat") - 200:powerups.index("autofocus-done.bat")]
    assert "**External Script +**" in done                      # so EXITCODE goes back to 0
    for words in ("Script source: File", "`phase`", "`nextItem`", "`result`", "3.3.0.1037", "64-bit CPython"):
        assert words in python, words
    nina_md = (REPO / "docs" / "nina.md").read_text(encoding="utf-8")
    assert "Powerups Lite" in nina_md and "On error: Skip" in nina_md


def _run_like_the_python_plugin(tmp_path, phase="before"):
    """Execute the snippet the way NINA's Python Scripting plugin does (NINA.Plugin.Python,
    PythonScriptingTrigger.cs EvaluateTriggerScript): the whole file in a fresh scope with phase,
    previousItem, nextItem, parent, trigger, state and __file__ set, then ``scope.Contains("result")``
    or "Python trigger script must assign a result value."; ``result`` truthy runs the instructions."""
    path = HOOKS / "python_scripting_trigger.py"
    scope = {"__name__": "__main__", "__file__": str(path), "phase": phase, "previousItem": None,
             "nextItem": None, "parent": None, "trigger": None, "state": {}}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), scope)  # noqa: S102 - what the plugin does
    if "result" not in scope:
        raise RuntimeError("Python trigger script must assign a result value.")
    return bool(scope["result"])


def test_python_scripting_plugin_gets_a_module_level_result_and_never_an_exception(tmp_path, monkeypatch):
    monkeypatch.setenv("FOCUSWATCH_STATE_DIR", str(tmp_path))
    assert _run_like_the_python_plugin(tmp_path) is False                    # no state yet
    state_file, events_file = sf.resolve_paths(tmp_path)
    sf.write_state(state_file, sf.State().refocus("HFR +25%"))
    assert _run_like_the_python_plugin(tmp_path) is True
    assert _run_like_the_python_plugin(tmp_path, phase="after") is True
    state_file.write_text("not json")
    assert _run_like_the_python_plugin(tmp_path) is False                    # unreadable: False, no raise
    state_file.unlink()
    state_file.mkdir()                                                       # even an OS error inside
    assert _run_like_the_python_plugin(tmp_path) is False


def test_python_scripting_snippet_agrees_with_check(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("fw_snippet", HOOKS / "python_scripting_trigger.py")
    snippet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snippet)
    monkeypatch.setenv("FOCUSWATCH_STATE_DIR", str(tmp_path))
    assert snippet.state_dir() == tmp_path and snippet.refocus_due() is False   # no state

    state_file, events_file = sf.resolve_paths(tmp_path)
    sf.write_state(state_file, sf.State().refocus("HFR +25%"))
    assert snippet.check()[0] == sf.run_check(state_file, events_file).exit_code == 1
    assert snippet.refocus_due() is True

    sf.append_autofocus_event(events_file, sf.make_event(source="nina"))       # autofocus reported
    assert snippet.check()[0] == sf.run_check(state_file, events_file).exit_code == 0
    assert snippet.refocus_due() is False

    time.sleep(0.02)  # the new request must be later than the autofocus (times have ms resolution)
    sf.write_state(state_file, sf.State().refocus("HFR +30%"))                  # a new request
    monkeypatch.setattr(snippet, "CLEAR_ON_TRIGGER", True)
    assert snippet.refocus_due() is True and snippet.refocus_due() is False     # cleared once fired
    assert sf.run_check(state_file, events_file).exit_code == 0
    assert sf.read_autofocus_events(tmp_path)[-1].source == "python-scripting"

    state_file.write_text("not json")
    assert snippet.check()[0] == 2 and snippet.refocus_due() is False

    proc = subprocess.run([sys.executable, str(HOOKS / "python_scripting_trigger.py")],
                          env={**os.environ, "FOCUSWATCH_STATE_DIR": str(tmp_path / "empty")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "no watcher state yet" in proc.stdout
