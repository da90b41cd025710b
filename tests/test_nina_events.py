"""NINA's Advanced API events and remote mode, against a real WebSocket + HTTP server on 127.0.0.1.

The fake speaks what the plugin's source sends (christian-photo/ninaAPI 2.2.x): one port serving
``/v2/socket`` (WebService/V2/WebSocketV2.cs: Json.NET-serialised ``HttpResponse`` with ``Type: "Socket"``)
and ``/v2/api/...`` (CoreUtility.HttpResponse). Also: autofocus confirmation (afconfirm) and the
``last-af`` wrapped report.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http import HTTPStatus

import pytest

from focuswatch.policy import afconfirm as afc
from focuswatch import cli
from focuswatch.watch import nina_events as ne
from focuswatch import triggers as tr
from focuswatch.watch.remote import RemoteSession, record_from_image, run_remote
from watch_pump import pump

T0 = datetime(2026, 11, 21, 22, 0, 0, tzinfo=timezone(timedelta(hours=1)))


def _socket(response: dict) -> str:
    """A WebSocket message as WebSocketV2.Send writes it: JsonConvert.SerializeObject(HttpResponse)."""
    return json.dumps({"Response": response, "Error": "", "StatusCode": 200, "Success": True, "Type": "Socket"})


def _api(response, success=True, error="", status=200) -> dict:
    return {"Response": response, "Error": error, "StatusCode": status, "Success": success, "Type": "API"}


def _stats(i: int, hfr, *, stars=250, filt="L", image_type="LIGHT", minutes=2.0) -> dict:
    """One ImageStatistics object (ninaAPI V2 Image.cs ImageResponse; Date = DateTime.Now with 7 digits)."""
    when = T0 + timedelta(minutes=minutes * i)
    return {"ExposureTime": 120.0, "ImageType": image_type, "Filter": filt, "RmsText": "0.45\"",
            "Temperature": -10.0, "CameraName": "ZWO ASI2600MM Pro", "TargetName": "M 31", "Gain": 100,
            "Offset": 50, "Date": when.strftime("%Y-%m-%dT%H:%M:%S.1234567+01:00"), "TelescopeName": "RedCat 51",
            "FocalLength": 250.0, "StDev": 45.2, "Mean": 812.4, "Median": 800.0, "Min": 480, "Max": 65535,
            "Stars": stars, "HFR": hfr, "HFRStDev": 0.31 if hfr != "NaN" else "NaN", "IsBayered": False,
            "Filename": f"2026-11-21_22-{i:02d}-00_{filt}_-10.00_120.00s_{i:04d}.fits"}


class FakeNinaApi:
    """A real server on 127.0.0.1 (websockets' sync server): WebSocket at /v2/socket, JSON routes for HTTP.

    ``script`` is a list of messages sent to each new WebSocket client; ``close_after`` closes the
    first connection after that many messages (to exercise reconnects)."""

    def __init__(self):
        from websockets.http11 import Response
        from websockets.datastructures import Headers
        from websockets.sync.server import serve

        self.routes: dict[str, dict] = {}
        self.requests: list[str] = []
        self.script: list[str] = []
        self.live: list[str] = []
        self.close_after: int | None = None
        self.n_clients = 0
        self._clients = []
        fake = self

        def process_request(connection, request):
            path = request.path.split("?")[0]
            if path == ne.SOCKET_PATH:
                return None  # the WebSocket handshake goes on
            fake.requests.append(request.path)
            body = fake.routes.get(path)
            if body is None:
                return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
            data = json.dumps(body).encode()
            return Response(200, "OK", Headers([("Content-Type", "application/json"),
                                                ("Content-Length", str(len(data)))]), data)

        def handler(ws):
            fake.n_clients += 1
            first = fake.n_clients == 1
            for k, msg in enumerate(fake.script):
                if first and fake.close_after is not None and k >= fake.close_after:
                    ws.close()
                    return
                ws.send(msg)
            fake._clients.append(ws)
            try:
                for _ in ws:
                    pass
            except Exception:  # noqa: BLE001 - client went away
                pass

        self.server = serve(handler, "127.0.0.1", 0, process_request=process_request, compression=None)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def push(self, msg: str) -> None:
        for ws in list(self._clients):
            ws.send(msg)

    def close(self):
        self.server.shutdown()


@pytest.fixture
def nina_api():
    fake = FakeNinaApi()
    yield fake
    fake.close()


def _drain(src: ne.NinaEventSource, n: int, timeout_s: float = 10.0) -> list:
    out = []
    while len(out) < n:
        ev = src.get(timeout_s=timeout_s)
        assert ev is not None, f"only {len(out)} events arrived: {out}"
        out.append(ev)
    return out


# --------------------------------------------------------------------------- parsing

def test_image_save_message_parses_to_a_frozen_event():
    ev = ne.parse_message(_socket({"Event": "IMAGE-SAVE", "ImageStatistics": _stats(3, 2.41)}))
    assert isinstance(ev, ne.ImageSaved)
    assert (ev.hfr_px, ev.hfr_sd_px, ev.n_stars, ev.filter_name, ev.exposure_s) == (2.41, 0.31, 250, "L", 120.0)
    assert ev.filename == "2026-11-21_22-03-00_L_-10.00_120.00s_0003.fits" and ev.is_light
    assert ev.time_s == pytest.approx((T0 + timedelta(minutes=6)).timestamp() + 0.123456)
    with pytest.raises(Exception):
        ev.hfr_px = 1.0  # frozen: safe to pass between threads
    # Json.NET writes NaN as the string "NaN" when NINA found no stars
    none = ne.parse_message(_socket({"Event": "IMAGE-SAVE", "ImageStatistics": _stats(4, "NaN", stars=0)}))
    assert none.hfr_px is None and none.hfr_sd_px is None and none.n_stars == 0


def test_autofocus_events_and_others():
    # ninaAPI V2 Equipment/Focuser.cs FocuserWatcher: SendAndAddEvent(name[, {HFR, Position}])
    at = "2026-11-21T22:30:00+00:00"
    assert ne.parse_message(_socket({"Event": "AUTOFOCUS-STARTING"}), received=at) == ne.AutofocusStarting(at)
    pt = ne.parse_message(_socket({"Event": "AUTOFOCUS-POINT-ADDED", "HFR": 3.2, "Position": 15200}), received=at)
    assert pt == ne.AutofocusPointAdded(at, 15200.0, 3.2)
    assert ne.parse_message(_socket({"Event": "AUTOFOCUS-FINISHED"}), received=at) == ne.AutofocusFinished(at)
    assert ne.parse_message(_socket({"Event": "GUIDER-DITHER"})) is None
    with pytest.raises(ValueError):
        ne.parse_message("[1, 2]")


@pytest.mark.parametrize("text, expected", [("nina-pc", ("nina-pc", 1888)), ("10.0.0.5:1999", ("10.0.0.5", 1999)),
                                            ("[fe80::1]:1890", ("fe80::1", 1890))])
def test_host_port(text, expected):
    assert ne.parse_host_port(text) == expected


# --------------------------------------------------------------------------- live socket

def test_live_events_arrive_in_order(nina_api):
    nina_api.script = [_socket({"Event": "IMAGE-SAVE", "ImageStatistics": _stats(0, 2.0)}),
                       _socket({"Event": "AUTOFOCUS-STARTING"}),
                       _socket({"Event": "AUTOFOCUS-POINT-ADDED", "HFR": 4.1, "Position": 15000}),
                       _socket({"Event": "FILTERWHEEL-CHANGED"}),
                       _socket({"Event": "AUTOFOCUS-FINISHED"})]
    with ne.NinaEventSource("127.0.0.1", nina_api.port) as src:
        evs = _drain(src, 5)
    assert [type(e).__name__ for e in evs] == ["SourceStatus", "ImageSaved", "AutofocusStarting",
                                               "AutofocusPointAdded", "AutofocusFinished"]
    assert evs[0].connected and evs[1].hfr_px == 2.0 and evs[3].position == 15000


def test_reconnects_with_backoff_after_the_socket_drops(nina_api):
    nina_api.script = [_socket({"Event": "IMAGE-SAVE", "ImageStatistics": _stats(0, 2.0)}),
                       _socket({"Event": "IMAGE-SAVE", "ImageStatistics": _stats(1, 2.1)})]
    nina_api.close_after = 1
    with ne.NinaEventSource("127.0.0.1", nina_api.port, reconnect_initial_s=0.05) as src:
        evs = _drain(src, 6)
    kinds = [(type(e).__name__, getattr(e, "connected", None)) for e in evs]
    assert kinds == [("SourceStatus", True), ("ImageSaved", None), ("SourceStatus", False),
                     ("SourceStatus", True), ("ImageSaved", None), ("ImageSaved", None)]
    assert "reconnecting in 0.05 s" in evs[2].message and src.n_connects == 2


def test_nothing_listening_is_reported_not_raised():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with ne.NinaEventSource("127.0.0.1", port, reconnect_initial_s=0.05, reconnect_max_s=0.1) as src:
        a, b = _drain(src, 2)
    assert not a.connected and not b.connected and "Advanced API plugin enabled" in a.message


def test_image_history_catch_up(nina_api, tmp_path):
    hist = [_stats(i, 2.0 + 0.01 * i) for i in range(4)] + [_stats(4, 2.0, image_type="FLAT")]
    nina_api.routes[ne.IMAGE_HISTORY_PATH] = _api(hist)
    images = ne.image_history("127.0.0.1", nina_api.port)
    assert [e.filename for e in images] == [h["Filename"] for h in hist] and not images[-1].is_light
    assert nina_api.requests == [ne.IMAGE_HISTORY_PATH + "?all=true"]
    session = RemoteSession()
    assert session.catch_up(images) == 5 and len(session.decisions) == 4  # the flat is not judged
    assert session.catch_up(images) == 0                                   # seen ones are not fed twice
    saved = tmp_path / "history.json"
    saved.write_text(json.dumps(_api(hist)))
    assert ne.load_image_history(saved) == images
    with pytest.raises(Exception) as exc:
        ne.image_history("127.0.0.1", nina_api.port + 0 if False else 1)  # port 1: nothing there
    assert "unreachable" in str(exc.value)


# --------------------------------------------------------------------------- remote mode end to end

def _night(n: int, grow_from: int = 6, pct_per_frame: float = 4.0) -> list[float]:
    """HFR flat at 2.0 px, then growing ``pct_per_frame`` % of the baseline per frame (the truth)."""
    return [2.0 * (1 + pct_per_frame / 100 * max(0, i - grow_from + 1)) for i in range(n)]


def test_remote_mode_refocuses_through_the_api_and_only_a_confirmed_autofocus_resets(nina_api):
    # the same port serves the autofocus call (ninaAPI routes) and the socket, like the real plugin
    nina_api.routes[tr.NINA_FOCUSER_PATH] = _api({"Name": "EAF", "Connected": True})
    nina_api.routes[tr.NINA_SEQUENCE_STATE_PATH] = _api("", False, "Sequence is not initialized", 409)
    nina_api.routes[tr.NINA_CAMERA_PATH] = _api({"Connected": True, "IsExposing": False})
    nina_api.routes[tr.NINA_AF_PATH] = _api("Autofocus started")
    nina_api.routes[ne.IMAGE_HISTORY_PATH] = _api([])
    hfr = _night(14)
    nina_api.script = [_socket({"Event": "IMAGE-SAVE", "ImageStatistics": _stats(i, h)}) for i, h in enumerate(hfr)]
    fired, marks = [], []
    session = RemoteSession(runner=tr.TriggerRunner([tr.NinaApiTrigger("127.0.0.1", nina_api.port, timeout_s=3)]),
                            on_trigger=fired.append, on_autofocus=marks.append)
    stop = threading.Event()
    t = threading.Thread(target=run_remote, args=("127.0.0.1", nina_api.port, session, stop), daemon=True)
    t.start()
    try:
        _wait(lambda: len(session.decisions) == len(hfr))
        first = next(i for i, d in enumerate(session.decisions) if d.decision == "refocus")
        # the truth: +10 % HFR (the HFR-only limit) is first passed at frame 8 (+12 %); a refocus must come
        # after that and before the growth reaches +25 % (frame 11, +24 %... frame 12, +28 %)
        assert 8 <= first <= 11, [d.decision for d in session.decisions]
        _wait(lambda: fired)                       # the triggers run off the event loop (BackgroundTriggers)
        assert fired[0].ok and tr.NINA_AF_PATH in nina_api.requests
        assert session.monitor.state.waiting_since_s is not None
        # a failed NINA autofocus sends STARTING but no FINISHED: the request and baseline stay
        nina_api.push(_socket({"Event": "AUTOFOCUS-STARTING"}))
        _wait(lambda: session.monitor.state.af_in_progress)
        assert marks == [] and session.monitor.state.waiting_since_s is not None
        nina_api.push(_socket({"Event": "AUTOFOCUS-FINISHED"}))          # sent only for successful runs
        _wait(lambda: marks)
        assert marks[0].source == "nina-api"
        # the session thread applies the autofocus and the trigger worker settles: wait for both
        _wait(lambda: session.monitor.state.waiting_since_s is None and session.monitor.history == []
              and not session.runner.active)
    finally:
        stop.set()
        t.join(timeout=10)


def _wait(cond, timeout_s: float = 30.0) -> None:  # a hang guard on a loaded machine, not a timing check
    import time
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.02)


def test_replay_of_a_saved_image_history_and_the_cli_remote_watch(nina_api, tmp_path, capsys):
    hfr = _night(14)
    hist = _api([_stats(i, h) for i, h in enumerate(hfr)])
    saved = tmp_path / "image-history.json"
    saved.write_text(json.dumps(hist))
    assert cli.main(["replay", str(saved), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 15 and rows[-1]["summary"]["n_frames"] == 14
    first = next(i for i, r in enumerate(rows[:-1]) if r["decision"] == "refocus")
    assert 8 <= first <= 11 and rows[0]["file"].endswith("_0000.fits") and rows[0]["source"] == "nina-api"

    bad = tmp_path / "not-history.json"
    bad.write_text('{"Response": "x", "Success": true}')
    assert cli.main(["replay", str(bad)]) == 1
    assert "not an Advanced API image history" in capsys.readouterr().err

    # `watch --nina-api`: catches up from the image history after connecting, fires nothing by default
    nina_api.routes[ne.IMAGE_HISTORY_PATH] = hist
    assert cli.main(["watch", "--nina-api", f"127.0.0.1:{nina_api.port}", "--json", "--max-minutes", "0.05"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0]["event"] == "connection" and out[0]["connected"] is True
    assert sum(1 for r in out if r.get("status") == "measured") == 14 and "summary" in out[-1]
    assert cli.main(["watch", "--nina-api", "host:notaport"]) == 2
    assert "--nina-api 'host:notaport'" in capsys.readouterr().err
    assert cli.main(["watch"]) == 2


# --------------------------------------------------------------------------- autofocus confirmation

def _report(calc=15100, init=15400, prev=None, filt="L") -> dict:
    """A NINA 3.x autofocus report (AutoFocusReport JSON; PreviousFocusPoint = the run's own result)."""
    pts = [{"Position": 15000 + 50 * k, "Value": 2.0 + 0.02 * (k - 2) ** 2, "Error": 0.05} for k in range(9)]
    return {"Version": 2, "Filter": filt, "AutoFocuserName": "NINA", "StarDetectorName": "NINA",
            "Timestamp": "2026-11-21T23:10:05.1234567+01:00", "Temperature": 4.2, "Method": "STARHFR",
            "Fitting": "HYPERBOLIC", "InitialFocusPoint": {"Position": init, "Value": 2.9, "Error": 0.0},
            "CalculatedFocusPoint": {"Position": calc, "Value": 2.0, "Error": 0.0},
            "PreviousFocusPoint": {"Position": prev if prev is not None else calc, "Value": 2.0, "Error": 0.0},
            "MeasurePoints": pts, "Intersections": {}, "Fittings": {},
            "RSquares": {"Quadratic": 0.97, "Hyperbolic": 0.99, "LeftTrend": 0.95, "RightTrend": 0.96},
            "BacklashCompensation": {}, "Duration": "00:03:12.5000000"}


# NINA 3.x AutoFocusVM.cs: GenerateReport runs before the validation; a failed run moves the focuser back to
# initialFocusPosition. So the report alone (and an autofocus-done hook after ContinueOnError) proves nothing.
@pytest.mark.parametrize("focpos, filt, api_finished, status", [
    (15100, "L", False, "confirmed"),     # FOCPOS at the calculated point
    (15112, "L", False, "confirmed"),     # within half the run's 50-step spacing
    (15400, "L", False, "failed"),        # NINA moved back to the initial position
    (15250, "L", False, "pending"),       # neither: cannot tell
    (None, "L", False, "pending"),        # no frame (or no FOCPOS) yet
    (15400, "Ha", False, "pending"),      # another filter: offsets move the focuser
    (15400, "L", True, "confirmed"),      # AUTOFOCUS-FINISHED is sent only for successful runs
])
def test_autofocus_is_accepted_only_when_confirmed(focpos, filt, api_finished, status):
    from focuswatch.io.afreports import parse_nina_report

    run = parse_nina_report(_report())
    cand = afc.candidate_from_run(run, time_s=0.0)
    if api_finished:
        cand = afc.AFCandidate(**{**cand.to_dict(), "api_finished": True})
    assert cand.step_steps == 50 and afc.tolerance_steps(cand, afc.AFConfirmConfig()) == 25
    assert afc.confirm(cand, focuser_pos=focpos, frame_filter=filt).status == status


def test_previous_focus_point_is_not_read_as_the_previous_autofocus():
    """PreviousFocusPoint is the same run's result: whatever it says, the verdict is the same."""
    from focuswatch.io.afreports import parse_nina_report

    verdicts = {afc.confirm(afc.candidate_from_run(parse_nina_report(_report(prev=p)), 0.0),
                            focuser_pos=15400, frame_filter="L").status for p in (15100, 15400, 9999)}
    assert verdicts == {"failed"}
    same = afc.candidate_from_run(parse_nina_report(_report(calc=15110, init=15100)), 0.0)
    assert afc.confirm(same, focuser_pos=15100, frame_filter="L").status == "pending"


def test_last_af_wrapped_report_is_read_by_af(tmp_path, capsys):
    """GET /v2/api/equipment/focuser/last-af answers {"Response": report, "Success": true, ...}
    (ninaAPI V2 Equipment/Focuser.cs FocuserLastAF); `focuswatch af` reads it like a bare report."""
    wrapped = tmp_path / "last-af.json"
    wrapped.write_text(json.dumps(_api(_report())))
    assert cli.main(["af", str(wrapped), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[0])["runs"][0]
    assert out["run"]["reported_position_steps"] == 15100 and len(out["run"]["points"]) == 9
    none = tmp_path / "no-af.json"
    none.write_text(json.dumps(_api("", False, "No AF available", 500)))
    assert cli.main(["af", str(none)]) != 0
    err = capsys.readouterr().err
    assert "No AF available" in err and "Traceback" not in err


def test_remote_record_is_hfr_only():
    ev = ne.image_from_stats(_stats(2, 2.5))
    rec = record_from_image(ev)
    assert (rec.hfr_px, rec.n_stars, rec.filter_name, rec.exposure_s, rec.profile_ratio, rec.temp_c) == \
        (2.5, 250, "L", 120.0, None, None)
    # policy: NINA's HFR is the flux-weighted mean radius, and the record says so
    assert rec.hfr_kind == "nina" and rec.is_light and rec.time_s == pytest.approx(ev.time_s)
    from focuswatch.watch.remote import hfr_record_from_image

    hr = hfr_record_from_image(ev)
    assert (hr.hfr_kind, hr.hfr_stdev_px, hr.temp_c) == ("nina", 0.31, None)
    none = record_from_image(ne.image_from_stats(_stats(4, "NaN", stars=0)))
    assert none.hfr_px is None and none.n_stars == 0


# --------------------------------------------------------------------------- FOLDER + --nina-api: IMAGE-SAVE = file complete

@pytest.fixture(scope="module")
def sim_frame():
    from focuswatch import sim

    return sim.render(sim.SimParams(width_px=192, height_px=192, n_stars=25, seed=5, star_flux_min_e=2e4))


def _unprovable_fits(frame, **hdr) -> bytes:
    """A complete frame whose pixel data ends in zero bytes: by size alone it looks pre-allocated
    (still being filled), so without NINA's word the watcher must wait for stable content."""
    from dataclasses import replace as dc_replace

    from focuswatch import sim

    pixels = frame.pixels.copy()
    pixels[-1, :] = 32768            # stored as 0 with BZERO = 32768
    return sim.fits_bytes(dc_replace(frame, pixels=pixels, header={**frame.header, **hdr}))


def _folder_watcher(tmp_path, port, *, af=None, verdicts=None):
    from focuswatch.io import statefile
    from focuswatch.config import Config
    from focuswatch.io.journal import Journal
    from focuswatch.policy import PolicyConfig
    from focuswatch.optics import Rig
    from focuswatch.watch import WatchConfig, Watcher

    night = tmp_path / "night"
    night.mkdir(exist_ok=True)
    sf, ef = statefile.resolve_paths(tmp_path / "state")
    # stable_s of an hour: a file that cannot prove it is whole is measured only on NINA's word
    wc = WatchConfig(stable_s=3600.0, checksum_grace_s=3600.0, poll_interval_s=0.05, diagnose=False)
    return Watcher(night, Journal(tmp_path / "state" / "journal.sqlite"), config=Config(rig=Rig(aperture_mm=200)),
                   policy=PolicyConfig(temperature_delta_c=5.0, max_interval_min=0), state_file=sf, events_file=ef,
                   af_folder=af, watch=wc, nina_api=("127.0.0.1", port),
                   on_autofocus_verdict=(lambda m, st, why: verdicts.append(st)) if verdicts is not None else None)


def _saved(name: str, i: int = 1) -> str:
    return _socket({"Event": "IMAGE-SAVE", "ImageStatistics": {**_stats(i, 2.2), "Filename": name}})


def test_image_save_marks_the_file_complete_without_size_polling(nina_api, tmp_path, sim_frame):
    nina_api.routes[ne.IMAGE_HISTORY_PATH] = _api([])
    w = _folder_watcher(tmp_path, nina_api.port)
    try:
        w.start()
        pump(w, lambda o: nina_api.n_clients >= 1 and w.journal is not None)
        target = w.folder / "2026-11-21_22-01-00_L_0001.fits"
        target.write_bytes(_unprovable_fits(sim_frame))
        from focuswatch.io import frames

        assert not frames.check_complete(target).proven          # looks like it is still being filled
        for _ in range(10):                          # no stable hour has passed: not measured
            assert w.process_pending() == []
        nina_api.push(_saved(target.name))           # NINA: "I saved it"
        out = pump(w, lambda o: len(o) >= 1)
        assert [(o.path.name, o.status) for o in out] == [(target.name, "measured")]
        assert out[0].stats["n_stars"] > 5
    finally:
        w.stop()
        w.journal.close()


def test_image_history_catches_up_after_a_restart(nina_api, tmp_path, sim_frame):
    (tmp_path / "night").mkdir()
    name = "2026-11-21_22-03-00_L_0002.fits"
    (tmp_path / "night" / name).write_bytes(_unprovable_fits(sim_frame))   # saved while we were down
    nina_api.routes[ne.IMAGE_HISTORY_PATH] = _api([{**_stats(2, 2.3), "Filename": f"C:\\Data\\M31\\{name}"}])
    w = _folder_watcher(tmp_path, nina_api.port)
    try:
        w.start()
        out = pump(w, lambda o: len(o) >= 1)
        assert [(o.path.name, o.status) for o in out] == [(name, "measured")]
        assert any(r.startswith(ne.IMAGE_HISTORY_PATH) for r in nina_api.requests)
    finally:
        w.stop()
        w.journal.close()


def test_autofocus_finished_confirms_a_held_nina_report(nina_api, tmp_path, sim_frame):
    """NINA's report alone is held (written before validation); AUTOFOCUS-FINISHED, sent only for
    successful runs, confirms it at once, without waiting for a frame."""
    from focuswatch import sim

    nina_api.routes[ne.IMAGE_HISTORY_PATH] = _api([])
    af = tmp_path / "AutoFocus"
    af.mkdir()
    verdicts: list[str] = []
    w = _folder_watcher(tmp_path, nina_api.port, af=af, verdicts=verdicts)
    try:
        w.start()
        (w.folder / "f0.fits").write_bytes(sim.fits_bytes(sim_frame))
        pump(w, lambda o: len(o) >= 1 and nina_api.n_clients >= 1)
        rep = _report()
        rep["Timestamp"] = (datetime.now(timezone.utc) - timedelta(seconds=20)).isoformat()
        (af / "run.json").write_text(json.dumps(rep))
        w.process_pending()
        assert w.monitor.state.n_autofocus == 0 and verdicts == []
        nina_api.push(_socket({"Event": "AUTOFOCUS-FINISHED"}))
        pump(w, lambda o: verdicts == ["confirmed"])
        assert w.monitor.state.n_autofocus == 1 and w.monitor.state.last_focuser_pos == 15100
        rows = dict(w.journal._exec("SELECT key, source FROM autofocus_events").fetchall())
        assert rows.pop("nina-report:run.json") == "nina-report"
        assert list(rows.values()) == ["nina-api:same-run"]          # one run, counted once
    finally:
        w.stop()
        w.journal.close()


def test_cli_watch_folder_with_nina_api(nina_api, tmp_path, sim_frame, capsys):
    """`focuswatch watch FOLDER --nina-api HOST:PORT`: the folder watcher, NINA saying when a file is whole."""
    night = tmp_path / "night"
    night.mkdir()
    name = "2026-11-21_22-05-00_L_0003.fits"
    (night / name).write_bytes(_unprovable_fits(sim_frame))
    nina_api.routes[ne.IMAGE_HISTORY_PATH] = _api([{**_stats(3, 2.3), "Filename": name}])
    cfg = tmp_path / "rig.toml"
    cfg.write_text("[rig]\naperture_mm = 200\n[watch]\nstable_s = 3600.0\nchecksum_grace_s = 3600.0\n")
    assert cli.main(["watch", str(night), "--nina-api", f"127.0.0.1:{nina_api.port}", "--config", str(cfg),
                     "--state-dir", str(tmp_path / "state"), "--max-minutes", "0.06", "--json",
                     "--no-diagnose"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["file"].endswith(name), r["status"]) for r in out if r["kind"] == "decision"] == [(True, "measured")]
