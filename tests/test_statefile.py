"""The state file, the autofocus event log, and `focuswatch check` / `autofocus-done`.

Real files in real folders; the CLI is run in-process through ``main(argv)`` and once as the
installed console script so the documented exit codes are checked end to end.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from focuswatch.io import statefile as sf
from focuswatch.cli import main
from focuswatch.errors import StateFileError

T0 = datetime(2024, 5, 1, 22, 0, 0, tzinfo=timezone.utc)


def _state(**kw) -> sf.State:
    base = sf.State(filter_name="Ha", temp_c=4.5, updated=sf.iso_utc(T0), pid=123,
                    last_frame=sf.LastFrame("/frames/L_001.fits", hfr_px=2.41, defocus_um=38.0,
                                            defocus_cfz=0.62, decision="refocus", n_stars=180))
    return replace(base, **kw)


# --------------------------------------------------------------------------- locations

@pytest.mark.parametrize("platform, env, expected", [
    ("win32", {"LOCALAPPDATA": "C:/Users/me/AppData/Local"}, Path("C:/Users/me/AppData/Local/focuswatch")),
    ("win32", {}, Path("/home/me/AppData/Local/focuswatch")),
    ("darwin", {}, Path("/home/me/Library/Application Support/focuswatch")),
    ("linux", {"XDG_STATE_HOME": "/xdg/state"}, Path("/xdg/state/focuswatch")),
    ("linux", {"XDG_STATE_HOME": "relative/ignored"}, Path("/home/me/.local/state/focuswatch")),
    ("linux", {}, Path("/home/me/.local/state/focuswatch")),
    ("win32", {"FOCUSWATCH_STATE_DIR": "/override", "LOCALAPPDATA": "C:/x"}, Path("/override")),
])
def test_default_state_dir_per_platform(platform, env, expected):
    assert sf.default_state_dir(env, platform, home=Path("/home/me")) == expected


def test_resolve_paths_keeps_the_event_log_next_to_the_state_file(tmp_path):
    assert sf.resolve_paths(tmp_path) == (tmp_path / "state.json", tmp_path / "autofocus-events.jsonl")
    custom = tmp_path / "rig2" / "night.json"
    assert sf.resolve_paths(tmp_path, custom) == (custom, tmp_path / "rig2" / "autofocus-events.jsonl")


# --------------------------------------------------------------------------- state file

def test_write_read_roundtrip_and_stamp(tmp_path):
    st = _state().refocus("HFR +14% over 6 frames", now=T0)
    p = sf.write_state(tmp_path / "sub" / "state.json", st)
    back = sf.read_state(p)
    assert back is not None
    assert back.refocus_due and back.reason == "HFR +14% over 6 frames" and back.since == sf.iso_utc(T0)
    assert back.last_frame == st.last_frame
    assert back.pid == __import__("os").getpid()  # stamped by the writer
    assert sf.parse_iso(back.updated) > T0
    assert back.to_dict() == json.loads(p.read_text(encoding="utf-8"))
    assert [q.name for q in p.parent.iterdir()] == ["state.json"]  # no temp file left behind


def test_nan_is_written_as_null_and_filter_alias_is_read(tmp_path):
    p = tmp_path / "state.json"
    sf.write_state(p, _state(temp_c=float("nan")))
    assert json.loads(p.read_text())["temp_c"] is None
    p.write_text(json.dumps({"refocus_due": True, "filter": "OIII", "updated": "2024-05-01T22:00:00Z"}))
    st = sf.read_state(p)
    assert st.filter_name == "OIII" and st.refocus_due and st.last_frame is None


def test_read_state_missing_is_none_and_garbage_names_the_file(tmp_path):
    assert sf.read_state(tmp_path / "nope.json") is None
    bad = tmp_path / "state.json"
    bad.write_text("{half a state")
    with pytest.raises(StateFileError, match="state.json: not a focuswatch state file"):
        sf.read_state(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(StateFileError, match="not a focuswatch state file"):
        sf.read_state(bad)


def test_readers_never_see_a_half_written_state(tmp_path):
    """A writer replacing the file 80 times while a reader reads it: every read parses."""
    p = tmp_path / "state.json"
    sf.write_state(p, _state())
    long_reason = "x" * 20000  # big enough that a non-atomic write would be caught mid-way
    done = threading.Event()

    def writer():
        for i in range(80):
            sf.write_state(p, _state(reason=f"{i} {long_reason}"))
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    n_reads = 0
    while not done.is_set() or n_reads < 10:
        st = sf.read_state(p)
        assert st is not None and st.filter_name == "Ha"
        n_reads += 1
    t.join()
    assert sf.read_state(p).reason.startswith("79 ")


def test_unwritable_state_folder_is_a_trigger_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StateFileError, match="cannot write the state file"):
        sf.write_state(blocker / "state.json", _state())


# --------------------------------------------------------------------------- events

def test_event_log_append_read_since_and_skip_broken_lines(tmp_path):
    log = tmp_path / "autofocus-events.jsonl"
    for minutes in (10, 0, 20):
        sf.append_autofocus_event(log, sf.AutofocusEvent(time=sf.iso_utc(T0 + timedelta(minutes=minutes)),
                                                         source=f"m{minutes}", position=1000 + minutes))
    with open(log, "a", encoding="utf-8") as fh:
        fh.write('{"time": "2024-05-01T23:59:00+00:00", "sou')  # a hook killed mid-write
    evs = sf.read_autofocus_events(tmp_path)
    assert [e.source for e in evs] == ["m0", "m10", "m20"]  # sorted by time, broken line skipped
    assert [e.source for e in sf.read_autofocus_events(log, since=T0 + timedelta(minutes=10))] == ["m20"]
    assert [e.source for e in sf.read_autofocus_events(tmp_path, since="2024-05-01T22:05:00Z")] == ["m10", "m20"]
    assert sf.read_autofocus_events(tmp_path / "empty") == []


def test_event_with_bad_time_is_refused(tmp_path):
    with pytest.raises(StateFileError, match="not an ISO 8601 time"):
        sf.append_autofocus_event(tmp_path / "e.jsonl", sf.AutofocusEvent(time="yesterday"))


@pytest.mark.parametrize("event_offset_min, cleared", [(+5, True), (0, True), (-5, False)])
def test_autofocus_after_the_request_clears_it(event_offset_min, cleared):
    st = _state().refocus("HFR +20%", now=T0)
    ev = sf.AutofocusEvent(time=sf.iso_utc(T0 + timedelta(minutes=event_offset_min)))
    out = sf.apply_autofocus_events(st, [ev])
    assert out.refocus_due is (not cleared)
    assert out.last_autofocus == ev


def test_record_autofocus_wins_over_a_watcher_rewriting_an_old_verdict(tmp_path):
    state_file, events_file = sf.resolve_paths(tmp_path)
    sf.write_state(state_file, _state().refocus("HFR +20%", now=T0))
    ev = sf.AutofocusEvent(time=sf.iso_utc(T0 + timedelta(minutes=3)), source="nina", filter_name="Ha")
    after = sf.record_autofocus(state_file, events_file, ev)
    assert not after.refocus_due and after.last_autofocus == ev
    # The watcher, unaware yet, writes its pre-autofocus verdict again...
    sf.write_state(state_file, _state().refocus("HFR +20%", now=T0))
    # ...but check reconciles with the event log and does not ask for a second autofocus.
    res = sf.run_check(state_file, events_file, max_age_min=0, now=T0 + timedelta(minutes=4))
    assert (res.status, res.exit_code) == ("fine", 0)


def test_record_autofocus_replaces_a_corrupt_state(tmp_path):
    state_file, events_file = sf.resolve_paths(tmp_path)
    state_file.write_text("garbage")
    out = sf.record_autofocus(state_file, events_file, sf.make_event(source="test"))
    assert sf.read_state(state_file) == out and out.last_autofocus.source == "test"


# --------------------------------------------------------------------------- check verdict

NOW = T0 + timedelta(minutes=10)


@pytest.mark.parametrize("state, strict, max_age, status, code", [
    (None, False, 60, "no-state", 0),
    (None, True, 60, "no-state", 2),
    (_state(), False, 60, "fine", 0),
    (_state().refocus("HFR +12%", now=T0), False, 60, "refocus", 1),
    (_state().refocus("HFR +12%", now=T0), True, 60, "refocus", 1),
    (_state().refocus("HFR +12%", now=T0), False, 5, "stale", 0),   # updated 10 min ago > 5
    (_state().refocus("HFR +12%", now=T0), True, 5, "stale", 2),
    (_state().refocus("HFR +12%", now=T0), False, 0, "refocus", 1),  # 0 disables staleness
    (_state(updated=""), False, 60, "stale", 0),                     # undated state is not trusted
])
def test_evaluate_table(state, strict, max_age, status, code):
    res = sf.evaluate(state, [], now=NOW, max_age_min=max_age, strict=strict)
    assert (res.status, res.exit_code) == (status, code)
    if state is not None and state.updated:
        assert res.age_min == pytest.approx(10.0)


# --------------------------------------------------------------------------- CLI

def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_check_and_autofocus_done_cycle(tmp_path, capsys):
    d = str(tmp_path)
    code, out, _ = _run(capsys, "check", "--state-dir", d)
    assert code == 0 and "no watcher state yet" in out
    assert _run(capsys, "check", "--state-dir", d, "--strict")[0] == 2

    sf.write_state(tmp_path / "state.json", _state().refocus("HFR +18% over 8 frames"))
    code, out, _ = _run(capsys, "check", "--state-dir", d)
    assert code == 1 and "HFR +18% over 8 frames" in out and "L_001.fits" in out

    code, out, _ = _run(capsys, "check", "--state-dir", d, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["status"] == "refocus" and doc["exit_code"] == 1
    assert doc["state"]["last_frame"]["defocus_um"] == 38.0 and doc["state"]["filter_name"] == "Ha"

    code, out, _ = _run(capsys, "autofocus-done", "--state-dir", d, "--filter", "Ha", "--position", "15120",
                        "--temp-c", "3.5", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["event"]["position"] == 15120 and doc["state"]["refocus_due"] is False
    assert _run(capsys, "check", "--state-dir", d)[0] == 0
    evs = sf.read_autofocus_events(tmp_path)
    assert len(evs) == 1 and evs[0].temp_c == 3.5 and evs[0].filter_name == "Ha"


def test_cli_check_clear_records_an_autofocus(tmp_path, capsys):
    state_file = tmp_path / "custom" / "rig.json"
    sf.write_state(state_file, _state().refocus("temperature dropped 2.1 °C"))
    assert _run(capsys, "check", "--state-file", str(state_file), "--clear")[0] == 1
    assert _run(capsys, "check", "--state-file", str(state_file))[0] == 0
    evs = sf.read_autofocus_events(state_file.parent)
    assert [e.source for e in evs] == ["check --clear"]


def test_cli_errors_use_the_documented_codes(tmp_path, capsys):
    (tmp_path / "state.json").write_text("{nope")
    code, out, err = _run(capsys, "check", "--state-dir", str(tmp_path), "--json")
    assert code == 2 and json.loads(out)["status"] == "error" and "state.json" in err
    code, _, err = _run(capsys, "autofocus-done", "--state-dir", str(tmp_path), "--time", "tonight")
    assert code == 2 and "--time 'tonight'" in err and "Traceback" not in err


def test_installed_console_script_exit_codes(tmp_path):
    exe = shutil.which("focuswatch")
    argv = [exe] if exe else [sys.executable, "-m", "focuswatch"]
    env = {**__import__("os").environ, "FOCUSWATCH_STATE_DIR": str(tmp_path)}
    sf.write_state(tmp_path / "state.json", _state().refocus("HFR +30%"))
    proc = subprocess.run(argv + ["check"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert subprocess.run(argv + ["autofocus-done"], env=env, capture_output=True, timeout=60).returncode == 0
    assert subprocess.run(argv + ["check"], env=env, capture_output=True, timeout=60).returncode == 0


@pytest.mark.parametrize("text, expected", [
    ("2024-05-01T22:13:05.12Z", datetime(2024, 5, 1, 22, 13, 5, 120000, tzinfo=timezone.utc)),
    ("2024-05-01T22:13:05.1234567", datetime(2024, 5, 1, 22, 13, 5, 123456, tzinfo=timezone.utc)),  # FITS: 7 digits
    ("2024-05-01 22:13:05.5+02:00", datetime(2024, 5, 1, 20, 13, 5, 500000, tzinfo=timezone.utc)),
    ("2024-05-01T22:13:05z", datetime(2024, 5, 1, 22, 13, 5, tzinfo=timezone.utc)),
    ("22:13 yesterday", None),
])
def test_parse_iso_reads_what_capture_programs_write(text, expected):
    assert sf.parse_iso(text) == expected


# --------------------------------------------------------------------------- issue 10, finding 8

def test_deeply_nested_state_file_is_one_error_not_a_recursion(tmp_path):
    p = tmp_path / "state.json"
    p.write_text("[" * 100_000)
    with pytest.raises(StateFileError, match="not a focuswatch state file"):
        sf.read_state(p)
    ev = tmp_path / "autofocus-events.jsonl"
    ev.write_text("[" * 100_000 + "\n")
    assert sf.read_autofocus_events(ev) == []


@pytest.mark.parametrize("bad", [{"refocus_due": "yes"}, {"refocus_due": 1}, {"schema": 99},
                                 {"schema": "1"}, {"schema": 0}])
def test_state_with_wrong_types_or_future_schema_is_refused(tmp_path, bad):
    p = tmp_path / "state.json"
    p.write_text(json.dumps({"refocus_due": False, "schema": 1, **bad}))
    with pytest.raises(StateFileError, match="not a focuswatch state file"):
        sf.read_state(p)


def test_check_and_autofocus_done_on_a_nested_state_file_give_one_line(tmp_path, capsys):
    p = tmp_path / "state.json"
    p.write_text("[" * 100_000)
    assert main(["check", "--state-file", str(p)]) == sf.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not a focuswatch state file" in err
    main(["autofocus-done", "--state-file", str(p)])
    assert "Traceback" not in capsys.readouterr().err
