"""The watcher with real files written into a real folder while it runs."""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from focuswatch import sim, statefile
from focuswatch.config import Config
from focuswatch.journal import Journal
from focuswatch.monitor import PolicyConfig
from focuswatch.optics import Rig
from focuswatch.triggers import Trigger, TriggerRunner, NinaApiTrigger
from focuswatch.watcher import Watcher, mark_from_nina_report, replay

QUIET = PolicyConfig(temperature_delta_c=1.0, max_interval_min=0)


@pytest.fixture(scope="module")
def base_frame():
    return sim.render(sim.SimParams(width_px=256, height_px=256, n_stars=30, seed=2, star_flux_min_e=2e4))


def fits_for(base, i: int, **hdr) -> bytes:
    """The base frame's pixels with a header of frame ``i`` (DATE-OBS 3 min apart)."""
    h = dict(base.header)
    h["DATE-OBS"] = f"2026-11-21T22:{i // 20:02d}:{(i * 3) % 60:02d}.000"
    h.update(hdr)
    return sim.fits_bytes(replace(base, header=h))


class CountingTrigger(Trigger):
    """An in-process trigger that records every request it gets."""

    name = "counting"

    def __init__(self):
        self.requests = []

    def _fire(self, request):
        self.requests.append(request)
        return self._ok("counted")


def make_watcher(folder: Path, tmp_path: Path, *, runner=None, policy=QUIET, **kw) -> Watcher:
    journal = Journal(tmp_path / "state" / "journal.sqlite")
    sf, ef = statefile.resolve_paths(tmp_path / "state")
    return Watcher(folder, journal, config=Config(rig=Rig(aperture_mm=200)), policy=policy, state_file=sf,
                   events_file=ef, runner=runner, poll_interval_s=0.05, **kw)


@contextmanager
def watching(folder: Path, tmp_path: Path, **kw):
    """A started watcher (``make_watcher``), stopped and its journal closed afterwards."""
    w = make_watcher(folder, tmp_path, **kw)
    w.start()
    try:
        yield w
    finally:
        w.stop()
        w.journal.close()


def pump(w: Watcher, until, timeout_s: float = 20.0):
    t0 = time.monotonic()
    out = []
    while time.monotonic() - t0 < timeout_s:
        out += w.process_pending()
        if until(out):
            return out
        time.sleep(0.05)
    raise AssertionError(f"timed out; processed so far: {[(o.path.name, o.status) for o in out]}")


def test_a_frame_written_slowly_in_chunks_is_measured_once_complete(tmp_path, base_frame):
    night = tmp_path / "night" / "2026-11-21" / "LIGHT"
    night.mkdir(parents=True)
    data = fits_for(base_frame, 0)
    with watching(tmp_path / "night", tmp_path) as w:
        target = night / "slow.fits"
        seen_early = []
        with open(target, "wb") as fh:                     # NINA writes in place, in pieces
            for k in range(0, len(data), 8192):
                fh.write(data[k:k + 8192])
                fh.flush()
                got = w.process_pending()
                if k + 8192 < len(data):
                    seen_early += got
                time.sleep(0.02)
        assert seen_early == [], "a partial frame was read"
        # proven whole (size + END card) by the last chunk: measured at once, or on the next pass
        out = got or pump(w, lambda o: len(o) >= 1)
        assert [o.status for o in out] == ["measured"]
        assert out[0].stats["n_stars"] > 10 and out[0].decision.decision == "ok"
        time.sleep(0.2)
        assert pump(w, lambda o: True, 1) == []           # never processed twice
        assert w.journal.counts()["frames_measured"] == 1
        assert target.read_bytes() == data                 # untouched
        assert list(night.iterdir()) == [target]           # nothing written next to it


def test_burst_of_200_frames_processed_once_each_in_capture_order(tmp_path, base_frame):
    night = tmp_path / "night"
    night.mkdir()
    blobs = [fits_for(base_frame, i) for i in range(200)]
    with watching(night, tmp_path, diagnose=False) as w:
        order = list(range(200))
        random.Random(3).shuffle(order)                    # names do not follow capture order
        names = {i: f"frame_{random.Random(i).randint(0, 10**9):010d}.fits" for i in order}
        for i in order:
            (night / names[i]).write_bytes(blobs[i])
        out = pump(w, lambda o: len(o) >= 200, timeout_s=60)
        assert len(out) == 200 and {o.status for o in out} == {"measured"}
        times = [o.decision.time_s for o in out]
        assert times == sorted(times)
        assert len({o.path for o in out}) == 200
        assert w.journal.counts()["decisions"] == 200
        # every frame as written, nothing added next to them
        assert {p.name: p.read_bytes() for p in night.iterdir()} == {names[i]: blobs[i] for i in order}


def test_deleted_corrupt_calibration_and_other_files(tmp_path, base_frame, caplog):
    night = tmp_path / "night"
    night.mkdir()
    with watching(night, tmp_path) as w:
        with caplog.at_level(logging.INFO, logger="focuswatch.watcher"):
            part = night / "gone.fits"
            part.write_bytes(fits_for(base_frame, 0)[:5000])   # partial, then deleted
            w.process_pending()
            part.unlink()
            (night / "corrupt.fits").write_bytes(b"GARBAGE!" * 400)
            (night / "flat.fits").write_bytes(fits_for(base_frame, 1, IMAGETYP="FLAT"))
            (night / "notes.txt").write_text("not an image")
            (night / "good.fits").write_bytes(fits_for(base_frame, 2))
            out = pump(w, lambda o: len(o) >= 3)
        by = {o.path.name: o for o in out}
        assert set(by) == {"corrupt.fits", "flat.fits", "good.fits"}
        assert by["corrupt.fits"].status == "error" and "not a FITS file" in by["corrupt.fits"].error
        assert by["flat.fits"].status == "ignored"
        assert by["good.fits"].status == "measured"
        assert any("gone.fits" in r.getMessage() and "deleted" in r.getMessage() for r in caplog.records)
        c = w.journal.counts()
        assert c["frames_error"] == 1 and c["frames_ignored"] == 1 and c["frames_measured"] == 1
        # the corrupt frame is reported, never removed or renamed
        assert sorted(p.name for p in night.iterdir()) == ["corrupt.fits", "flat.fits", "good.fits", "notes.txt"]


def test_restart_mid_night_catches_up_without_retriggering(tmp_path, base_frame):
    night = tmp_path / "night"
    night.mkdir()
    trig = CountingTrigger()
    temps = [10.0, 10.0, 10.0, 8.5, 8.5, 8.5, 8.4, 8.4]
    with watching(night, tmp_path, runner=TriggerRunner([trig])) as w:
        for i in range(5):
            (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i, FOCTEMP=temps[i]))
        out = pump(w, lambda o: len(o) >= 5)
        assert [o.decision.decision for o in out] == ["ok", "ok", "ok", "refocus", "ok"]
        pump(w, lambda o: len(w.journal.triggers()) >= 1)   # triggers run in their own worker
        assert len(trig.requests) == 1
    for i in range(5, 8):                                  # written while the watcher was stopped
        (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i, FOCTEMP=temps[i]))
    trig2 = CountingTrigger()
    with watching(night, tmp_path, runner=TriggerRunner([trig2])) as w2:
        out2 = pump(w2, lambda o: len(o) >= 3)
        assert sorted(o.path.name for o in out2) == ["f5.fits", "f6.fits", "f7.fits"]
        assert [o.decision.decision for o in out2] == ["ok", "ok", "ok"]     # still waiting for the AF
        assert trig2.requests == []
        assert w2.journal.counts()["frames_measured"] == 8
        state = statefile.read_state(w2.state_file)
        assert state.refocus_due and "temperature" in state.reason
        # an autofocus reported through `focuswatch autofocus-done`'s event log clears it
        statefile.append_autofocus_event(w2.events_file, statefile.AutofocusEvent(
            time=statefile.iso_utc(), source="autofocus-done", temp_c=8.4))
        pump(w2, lambda o: w2.monitor.state.n_autofocus == 1)
        assert not statefile.read_state(w2.state_file).refocus_due
        assert w2.journal.counts()["autofocus_events"] == 1


def test_nina_api_refusing_connections_is_recorded_and_the_watcher_goes_on(tmp_path, base_frame):
    with socket.socket() as s:                              # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    night = tmp_path / "night"
    night.mkdir()
    runner = TriggerRunner([NinaApiTrigger("127.0.0.1", port, timeout_s=1.0)], retry_initial_s=0.2,
                           retry_max_s=0.4, max_attempts=3)
    with watching(night, tmp_path, runner=runner) as w:
        for i, t in enumerate([10.0, 10.0, 8.0, 8.0]):
            (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i, FOCTEMP=t))
        out = pump(w, lambda o: len(o) >= 4)
        assert [o.decision.decision for o in out] == ["ok", "ok", "refocus", "ok"]
        pump(w, lambda o: len(w.journal.triggers()) >= 3, timeout_s=10)
        results = w.journal.triggers()
        assert all(not r["ok"] for r in results) and results[-1]["gave_up"]
        assert "127.0.0.1" in results[0]["message"]
        state = statefile.read_state(w.state_file)
        assert state.refocus_due and state.last_trigger is not None and not state.last_trigger.ok


def _nina_report(temp_c: float, timestamp: str) -> dict:
    return {"Filter": "L", "Timestamp": timestamp, "Temperature": temp_c,
            "CalculatedFocusPoint": {"Position": 10234, "Value": 2.1, "Error": 0.01},
            "MeasurePoints": [{"Position": 10100 + 40 * k, "Value": 2 + abs(k - 3) * 0.5, "Error": 0.1}
                              for k in range(7)]}


def test_nina_autofocus_report_resets_the_baseline(tmp_path, base_frame):
    night, af = tmp_path / "night", tmp_path / "AutoFocus"
    night.mkdir()
    af.mkdir()
    # an earlier night's report and event (NINA keeps every report; the journal is new): history
    three_days_ago = datetime.now(timezone.utc) - timedelta(days=3)
    old = af / "old--profile.json"
    old.write_text(json.dumps(_nina_report(3.0, three_days_ago.isoformat())))
    os.utime(old, (three_days_ago.timestamp(), three_days_ago.timestamp()))
    statefile.append_autofocus_event(statefile.resolve_paths(tmp_path / "state")[1], statefile.AutofocusEvent(
        time=statefile.iso_utc(three_days_ago), source="autofocus-done", temp_c=3.0))
    with watching(night, tmp_path, af_folder=af) as w:
        (night / "f0.fits").write_bytes(fits_for(base_frame, 0))
        pump(w, lambda o: len(o) >= 1)
        assert w.monitor.state.n_autofocus == 0 and w.journal.counts()["autofocus_events"] == 0
        report = _nina_report(7.5, "2026-11-21T23:01:02.1234567+01:00")
        (af / "2026-11-21--23-01-02--profile.json").write_text(json.dumps(report))
        pump(w, lambda o: w.monitor.state.n_autofocus == 1)
        assert w.monitor.state.af_temp_c == 7.5 and w.monitor.state.last_focuser_pos == 10234
        m = mark_from_nina_report(af / "2026-11-21--23-01-02--profile.json")
        utc = datetime(2026, 11, 21, 22, 1, 2, 123456, tzinfo=timezone.utc)      # 23:01:02+01:00
        assert m.time_s == pytest.approx(utc.timestamp(), abs=1e-3)
        assert w.journal.counts()["autofocus_events"] == 1


def test_run_loop_with_a_stop_event_and_polling_observer(tmp_path, base_frame):
    night = tmp_path / "night"
    night.mkdir()
    w = make_watcher(night, tmp_path, poll=True)
    stop = threading.Event()
    th = threading.Thread(target=w.run, args=(stop,), daemon=True)
    th.start()
    try:
        (night / "f0.fits").write_bytes(fits_for(base_frame, 0))
        t0 = time.monotonic()
        while not w.decisions and time.monotonic() - t0 < 20:
            time.sleep(0.05)
        assert len(w.decisions) == 1
    finally:
        stop.set()
        th.join(10)
        w.journal.close()
    assert not th.is_alive()


def test_replay_runs_the_same_policy_without_writing(tmp_path, base_frame):
    night = tmp_path / "night"
    night.mkdir()
    for i, t in enumerate([10.0, 10.0, 10.0, 8.0, 8.0]):
        (night / f"n{4 - i}.fits").write_bytes(fits_for(base_frame, i, FOCTEMP=t))
    before = sorted(p.name for p in night.iterdir())
    rows, mon = replay(night, config=Config(rig=Rig(aperture_mm=200)), policy=QUIET)
    assert [r.path.name for r in rows] == ["n4.fits", "n3.fits", "n2.fits", "n1.fits", "n0.fits"]
    assert [r.decision.decision for r in rows] == ["ok", "ok", "ok", "refocus", "ok"]
    assert sorted(p.name for p in night.iterdir()) == before


def test_a_frame_whose_file_event_was_lost_is_found_by_the_rescan(tmp_path, base_frame):
    night = tmp_path / "night"
    night.mkdir()
    with watching(night, tmp_path, rescan_interval_s=0.2) as w:
        w._observer.stop()  # the OS stops telling us about new files (a lost event)
        w._observer.join(timeout=5)
        (night / "lost.fits").write_bytes(fits_for(base_frame, 0))
        out = pump(w, lambda o: any(p.path.name == "lost.fits" for p in o), timeout_s=20)
    assert [p.status for p in out if p.path.name == "lost.fits"] == ["measured"]
