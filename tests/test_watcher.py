"""The watcher with real files written into a real folder while it runs."""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from focuswatch import sim
from focuswatch.io import statefile
from focuswatch.config import Config
from focuswatch.io.journal import Journal
from focuswatch.policy import PolicyConfig
from focuswatch.optics import Rig
from focuswatch.triggers import Trigger, TriggerRunner, NinaApiTrigger
from focuswatch.watch import Watcher, mark_from_nina_report, replay
from watch_pump import pump

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
        with caplog.at_level(logging.INFO, logger="focuswatch.watch"):
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
        w.process_pending()
        assert w.monitor.state.n_autofocus == 0        # held: NINA writes the report before validating
        (night / "f1.fits").write_bytes(fits_for(base_frame, 1, FOCPOS=10234))   # at the calculated point
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
    shown = []

    def progress(items):  # the caller's bar (watch/ draws none): sees every frame, in capture order
        for it in items:
            shown.append(it[1].name)
            yield it

    rows, mon = replay(night, config=Config(rig=Rig(aperture_mm=200)), policy=QUIET, progress=progress)
    assert [r.path.name for r in rows] == ["n4.fits", "n3.fits", "n2.fits", "n1.fits", "n0.fits"]
    assert shown == [r.path.name for r in rows]
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


def _locked(read, times: int, failures: list[bool]):
    """``read`` of a journal locked past its timeout ``times`` times (each failure appended), then answering."""
    from focuswatch.errors import JournalError

    def locked(*a, **kw):
        if len(failures) < times:
            failures.append(True)
            raise JournalError("database is locked")
        return read(*a, **kw)
    return locked


def test_a_rescan_that_cannot_read_the_journal_is_one_line_not_the_night(tmp_path, base_frame, caplog):
    """The rescan reads the journal's known files (``seen_keys``); a journal locked past its timeout
    there raised out of the worker's pass and ended the night (a row that cannot be written was
    already one line). Now it is one line, and the next rescan finds the frame whose event was lost."""
    night = tmp_path / "night"
    night.mkdir()
    with watching(night, tmp_path, rescan_interval_s=0.2) as w:
        w._observer.stop()  # the OS stops telling us about new files (a lost event)
        w._observer.join(timeout=5)
        failed: list[bool] = []
        w.journal.seen_keys = _locked(w.journal.seen_keys, 1, failed)
        (night / "lost.fits").write_bytes(fits_for(base_frame, 0))
        with caplog.at_level(logging.WARNING, logger="focuswatch.watch"):
            out = pump(w, lambda o: any(p.path.name == "lost.fits" for p in o), timeout_s=20)
    assert failed and [p.status for p in out if p.path.name == "lost.fits"] == ["measured"]
    lines = [r.getMessage() for r in caplog.records if "could not read the journal" in r.getMessage()]
    assert len(lines) == 1 and "database is locked" in lines[0]


def test_a_journal_that_cannot_be_read_for_a_pending_file_keeps_it_pending_not_the_night(tmp_path, base_frame,
                                                                                        caplog):
    """Each pending file is looked up in the journal (``seen``) before it is read; a journal locked
    past its timeout there raised out of the worker's pass and ended the night. Now the file stays
    pending, a spell of failures is one line, and the frame is measured once the journal answers."""
    night = tmp_path / "night"
    night.mkdir()
    with watching(night, tmp_path) as w:
        failures: list[bool] = []
        w.journal.seen = _locked(w.journal.seen, 3, failures)
        (night / "late.fits").write_bytes(fits_for(base_frame, 0))
        with caplog.at_level(logging.WARNING, logger="focuswatch.watch"):
            out = pump(w, lambda o: any(p.path.name == "late.fits" for p in o), timeout_s=20)
    assert len(failures) == 3 and [p.status for p in out if p.path.name == "late.fits"] == ["measured"]
    lines = [r.getMessage() for r in caplog.records if "could not read the journal to check" in r.getMessage()]
    assert len(lines) == 1 and "late.fits" in lines[0] and "database is locked" in lines[0]


def test_one_entry_that_cannot_be_looked_at_costs_one_line_at_the_start_not_the_watcher(tmp_path, base_frame,
                                                                                       monkeypatch, caplog):
    """The first listing at the start had no per-entry guard: a symlink whose target's name is too
    long (``stat`` -> ENAMETOOLONG, which ``Path.is_file`` passes on, as it does EACCES) ended the
    start with an OSError; a broken link and a link loop were skipped without a word. Real files
    and links in a real folder; one file is deleted between the listing and its ``stat``."""
    import errno

    from focuswatch.watch import watcher as watcher_mod

    night = tmp_path / "night"
    night.mkdir()
    for i in range(2):
        (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i))
    (night / "gone.fits").write_bytes(fits_for(base_frame, 2))
    (night / "long.fits").symlink_to("x" * 300 + ".fits")     # no such name can exist: ENAMETOOLONG
    with pytest.raises(OSError) as too_long:
        (night / "long.fits").stat()
    assert too_long.value.errno == errno.ENAMETOOLONG
    (night / "broken.fits").symlink_to(night / "later.fits")   # its target is not there (yet)
    (night / "loop.fits").symlink_to(night / "loop.fits")
    listing = watcher_mod.list_frames

    def listed_then_one_deleted(folder, recursive):
        out = listing(folder, recursive)
        if (night / "gone.fits").exists():                       # deleted after it was listed
            (night / "gone.fits").unlink()
        return out

    monkeypatch.setattr(watcher_mod, "list_frames", listed_then_one_deleted)
    bad = {"long.fits", "broken.fits", "loop.fits"}
    rows = []
    caplog.set_level(logging.INFO, logger="focuswatch")
    with watching(night, tmp_path, rescan_interval_s=0.05, on_processed=rows.append) as w:
        assert w.started                                          # before: OSError out of start()
        out = pump(w, lambda o: sum(p.status == "measured" for p in o) == 2)
        (night / "later.fits").write_bytes(fits_for(base_frame, 3))   # the broken link's target arrives
        out += pump(w, lambda o: any(p.path.name in ("broken.fits", "later.fits") for p in o
                                     if p.status == "measured"))
        for _ in range(5):                                        # more rescans: no bad entry named again
            time.sleep(0.06)
            out += w.process_pending()
        errors = [r for r in rows if r.status == "error"]
        assert sorted(r.path.name for r in errors) == sorted(bad)   # each once, every rescan since
        for r in errors:
            assert r.path.name in r.error and "\n" not in r.error
        by = {r.path.name: r.error for r in errors}
        assert "too long" in by["long.fits"] and "broken symbolic link" in by["broken.fits"]
        assert "symbolic link loop" in by["loop.fits"]
        assert w.n_errors == 3
        measured = sorted(p.path.name for p in out if p.status == "measured")
        assert measured[:2] == ["f0.fits", "f1.fits"] and len(measured) == 3   # + the link or its target
    gone = [r.getMessage() for r in caplog.records if "gone.fits" in r.getMessage()]
    assert len(gone) == 1 and "deleted before it could be read" in gone[0]
    rows_, _ = replay(night, config=Config(rig=Rig(aperture_mm=200)), policy=QUIET, diagnose=False)
    replayed = {r.path.name: r.status for r in rows_}
    assert replayed["long.fits"] == replayed["loop.fits"] == "error"   # the listing names them too
    assert replayed["f0.fits"] == replayed["f1.fits"] == "measured"


# --------------------------------------------------------------------------- issue 9/10: readiness without sleeping

from focuswatch.errors import ConfigError, FrameError, FrameIncomplete  # noqa: E402
from focuswatch.watch.readiness import BAD, GONE, READY, STUCK, WAIT, Readiness, ReadinessConfig  # noqa: E402


class FakeLayout:
    def __init__(self, proven=True, has_checksum=False):
        self.proven, self.has_checksum = proven, has_checksum


def _machine(results, sigs=None, **cfg):
    """A Readiness whose probe returns (or raises) the next item of ``results``."""
    it = iter(results)
    sig_it = iter(sigs or [])

    def probe(_p):
        r = next(it)
        if isinstance(r, BaseException):
            raise r
        return r

    return Readiness(Path("x.fits"), 0.0, ReadinessConfig(**cfg), probe=probe,
                     signature=lambda _p, _l: next(sig_it))


def test_readiness_a_proven_file_is_ready_at_once():
    r = _machine([FakeLayout()])
    assert r.step(1000, 1, now=0.0).verdict == READY            # no stability polls when proven


def test_readiness_incomplete_waits_warns_once_then_gives_up_unchanged():
    inc = FrameIncomplete("x.fits", "truncated")
    r = _machine([inc] * 10, stuck_after_s=100, give_up_s=300)
    assert r.step(10, 1, now=0.0).verdict == WAIT
    assert r.step(20, 2, now=150.0).verdict == STUCK            # grew, but still not whole after 150 s
    assert r.step(20, 2, now=200.0).verdict == WAIT             # the warning is given once
    assert r.step(20, 2, now=449.0).verdict == WAIT             # unchanged for 299 s
    step = r.step(20, 2, now=451.0)
    assert step.verdict == BAD and "given up" in step.problem


def test_readiness_unproven_file_needs_stable_content():
    layout = FakeLayout(proven=False)
    r = _machine([layout] * 10, sigs=[("a",), ("b",), ("b",), ("b",)], stable_s=2.0)
    assert r.step(100, 1, now=0.0).verdict == WAIT              # signature a
    assert r.step(100, 1, now=1.0).verdict == WAIT              # content changed (b) although size did not
    assert r.step(100, 1, now=2.5).verdict == WAIT              # b for 1.5 s only
    assert r.step(100, 1, now=3.1).verdict == READY


def test_readiness_waits_for_checksum_in_checksum_folders_and_other_verdicts():
    r = _machine([FakeLayout(has_checksum=False)] * 3, checksum_grace_s=3.0)
    assert r.step(100, 1, now=0.0, expect_checksum=True).verdict == WAIT
    assert r.step(100, 1, now=3.5, expect_checksum=True).verdict == READY
    assert _machine([FrameError("x.fits", "not a FITS file")]).step(5, 1, now=0).verdict == BAD
    assert _machine([FileNotFoundError()]).step(5, 1, now=0).verdict == GONE
    assert _machine([]).step(None, 0, now=0).verdict == GONE


class Driven:
    """A watcher that is never started: files are handed to it and its clock is stepped."""

    def __init__(self, folder: Path, tmp_path: Path, **kw):
        self.t = 1000.0
        self.rows = []
        sf, ef = statefile.resolve_paths(tmp_path / "state")
        self.journal = Journal(tmp_path / "state" / "journal.sqlite")
        self.w = Watcher(folder, self.journal, config=Config(rig=Rig(aperture_mm=200)), policy=QUIET,
                         state_file=sf, events_file=ef, rescan_interval_s=0, clock=lambda: self.t,
                         on_processed=self.rows.append, diagnose=False, **kw)

    def tick(self, path: Path | None = None, dt: float = 0.3):
        if path is not None:
            self.w._enqueue(path)
        out = self.w.process_pending()
        self.t += dt
        return out

    def close(self):
        self.w.stop()
        self.journal.close()


def test_preallocated_file_filled_in_place_reaches_journal_and_policy_once(tmp_path, base_frame):
    """Finding 5: a zero-filled full-size file being filled gave 3-4 journal rows."""
    night = tmp_path / "night"
    night.mkdir()
    d = Driven(night, tmp_path)
    data = fits_for(base_frame, 0)
    p = night / "prealloc.fits"
    p.write_bytes(b"\0" * len(data))                       # full size at once
    try:
        out = d.tick(p)
        with open(p, "r+b") as fh:
            for k in range(0, len(data), 16384):
                fh.seek(k)
                fh.write(data[k:k + 16384])
                fh.flush()
                os.utime(p, ns=(0, 10 ** 9 * (k // 16384 + 1)))   # every write is visible as a change
                out += d.tick()
        out += d.tick() + d.tick(dt=5.0) + d.tick()
        assert [o.status for o in out] == ["measured"]
        assert out[0].stats["n_stars"] > 10
        c = d.journal.counts()
        assert c.get("frames_measured") == 1 and c.get("frames_error", 0) == 0 and c["decisions"] == 1
        assert p.read_bytes() == data
    finally:
        d.close()


def test_xisf_written_in_8_chunks_is_recorded_once(tmp_path, base_frame):
    """Finding 5: an XISF written in 8 chunks gave 2 error rows before the real one."""
    from xisf import XISF

    night = tmp_path / "night"
    night.mkdir()
    src = tmp_path / "src.xisf"
    kw = {k: [{"value": str(v), "comment": ""}] for k, v in base_frame.header.items()}
    XISF.write(str(src), base_frame.pixels[..., None], image_metadata={"FITSKeywords": kw})
    blob = src.read_bytes()
    d = Driven(night, tmp_path)
    p = night / "chunks.xisf"
    out = []
    try:
        step = len(blob) // 8 + 1
        with open(p, "wb") as fh:
            for k in range(0, len(blob), step):
                fh.write(blob[k:k + step])
                fh.flush()
                out += d.tick(p)
        out += d.tick() + d.tick(dt=5.0) + d.tick()
        assert [o.status for o in out] == ["measured"], [(o.status, o.error) for o in out]
        assert d.journal.counts().get("frames_error", 0) == 0
    finally:
        d.close()


def _set_card(blob: bytes, key: str, value: str) -> bytes:
    i = blob.index(f"{key:<8}= ".encode())
    return blob[:i] + (f"{key:<8}= {value:>20}").ljust(80).encode() + blob[i + 80:]


def test_the_six_watcher_killers_are_one_line_each_and_the_watcher_goes_on(tmp_path, base_frame):
    """Finding 1: each of these stopped the watcher (exit 1, four with a traceback)."""
    night = tmp_path / "night"
    night.mkdir()
    good = fits_for(base_frame, 0)
    from astropy.io import fits

    fz = tmp_path / "src.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(base_frame.pixels.astype("int32"))]).writeto(fz)
    fzb = bytearray(fz.read_bytes())
    fzb[-2500:-200] = bytes(range(230)) * 10
    killers = {
        "exptime_nan.fits": _set_card(good, "EXPTIME", "NAN"),
        "naxis_999.fits": _set_card(good, "NAXIS", "999"),
        "corrupt.fits.fz": bytes(fzb),
        "cube_2e9.fits": _set_card(_set_card(_set_card(_set_card(good, "NAXIS", "3"), "BITPIX", "-64"),
                                             "NAXIS1", "2000000000"), "NAXIS2", "2000000000").replace(
                                                 b"GAIN    = ", b"NAXIS3  = ", 1),
        "bscale.fits": _set_card(_set_card(good, "BZERO", "1E300"), "BSCALE", "1E300"),
    }
    d = Driven(night, tmp_path)
    try:
        out = []
        for name, blob in killers.items():
            (night / name).write_bytes(blob)
            out += d.tick(night / name, dt=400.0) + d.tick(dt=400.0)
        loop = night / "loop.fits"
        loop.symlink_to(loop)                                   # created while it runs
        out += d.tick(loop, dt=400.0) + d.tick(night / "loop.fits", dt=400.0)
        (night / "after.fits").write_bytes(fits_for(base_frame, 1))
        out += d.tick(night / "after.fits") + d.tick()
        by = {o.path.name: o for o in out}
        assert sorted(o.path.name for o in out) == sorted(by)   # each file once
        assert set(by) == set(killers) | {"loop.fits", "after.fits"}
        assert by["after.fits"].status == "measured" and by["exptime_nan.fits"].status == "measured"
        for name in set(killers) - {"exptime_nan.fits"} | {"loop.fits"}:
            assert by[name].status == "error" and name in by[name].error and "\n" not in by[name].error
        assert "symbolic link loop" in by["loop.fits"].error
        assert "GB" in by["cube_2e9.fits"].error and "NAXIS" in by["naxis_999.fits"].error
    finally:
        d.close()


class BlockingTrigger(Trigger):
    """A trigger that hangs until released (a command trigger running 25 s, a frozen NINA)."""

    name = "blocking"

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.timeout_s = 60.0

    def _fire(self, request):
        self.started.set()
        self.release.wait(60)
        return self._ok("finally")


def test_a_hanging_trigger_never_stops_measuring_and_stop_is_prompt(tmp_path, base_frame):
    """Finding 4: a trigger ran on the measuring path; a 25 s command stopped measuring for 21 s."""
    night = tmp_path / "night"
    night.mkdir()
    trig = BlockingTrigger()
    w = make_watcher(night, tmp_path, runner=TriggerRunner([trig]))
    w.start()
    try:
        for i, t in enumerate([10.0, 10.0, 10.0, 8.0]):
            (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i, FOCTEMP=t))
        out = pump(w, lambda o: len(o) >= 4)
        assert [o.decision.decision for o in out] == ["ok", "ok", "ok", "refocus"]
        assert trig.started.wait(20)                          # the trigger is now hanging...
        for i in range(4, 7):                                 # ...and frames are still measured
            (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i, FOCTEMP=8.0))
        more = pump(w, lambda o: len(o) >= 3)
        assert [o.status for o in more] == ["measured"] * 3
        assert not trig.release.is_set()
    finally:
        stopper = threading.Thread(target=w.stop, daemon=True)
        stopper.start()
        stopper.join(10)                                      # stop returns although the trigger hangs
        alive = stopper.is_alive()
        trig.release.set()
        w.journal.close()
    assert not alive


def test_slow_nina_gets_an_overall_deadline(tmp_path):
    """A NINA answering one byte at a time is cut off by the overall deadline, not waited out."""
    import http.server

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    srv.daemon_threads = True
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        trig = NinaApiTrigger("127.0.0.1", srv.server_address[1], timeout_s=0.5, check_camera=False)
        from focuswatch.triggers import TriggerRequest

        res = trig.fire(TriggerRequest(reason="test"))
        assert not res.ok and "did not answer within 0.5 s" in res.message
    finally:
        srv.shutdown()
        srv.server_close()


# --------------------------------------------------------------------------- finding 6: settings

def _cfg(tmp_path, text: str, bom: bool = False) -> Path:
    p = tmp_path / "rig.toml"
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return p


@pytest.mark.parametrize("text, words", [
    ("[policy]\ndefocus_limit_cfz = nan\n", "[policy] defocus_limit_cfz"),
    ("[policy]\nmax_interval_min = inf\n", "[policy] max_interval_min"),
    ("[policy]\nconsecutive_frames = 99999999999999999999\n", "[policy] consecutive_frames"),
    ("[trigger]\ntimeout_s = nan\n", "[trigger] timeout_s"),
    ("[trigger]\nnina_port = 99999999999999\n", "[trigger] nina_port"),
    ("[watch]\nstable_s = -1\n", "[watch] stable_s"),
    ("[watch]\nsurprise = 1\n", "[watch] surprise"),
])
def test_bad_settings_are_one_line_naming_the_file_and_key(tmp_path, text, words):
    from focuswatch.config import load_config

    p = _cfg(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert msg.startswith(str(p)) and words in msg and "\n" not in msg


def test_bom_is_accepted_and_watch_section_is_read(tmp_path):
    from focuswatch.config import load_config

    p = _cfg(tmp_path, "[watch]\nstable_s = 7.5\npoll_interval_s = 0.2\nrecursive = false\n"
                       "[policy]\nmax_interval_min = 30\n", bom=True)
    cfg = load_config(p)
    night = tmp_path / "night"
    night.mkdir()
    with Journal(tmp_path / "j.sqlite") as j:
        w = Watcher(night, j, config=cfg)
        assert w.readiness.stable_s == 7.5 and w.poll_interval_s == 0.2 and w.recursive is False
        assert w.policy.max_interval_min == 30
        w2 = Watcher(night, j, config=cfg, poll_interval_s=1.0)   # a command-line flag wins
        assert w2.poll_interval_s == 1.0


class FailingTrigger(Trigger):
    name = "failing"

    def _fire(self, request):
        return self._fail("nobody home", retryable=False)


def test_a_refocus_never_answered_before_a_crash_is_asked_again_once(tmp_path, base_frame):
    """Soak finding: killed between deciding and delivering, the refocus was never asked again."""
    night = tmp_path / "night"
    night.mkdir()
    with watching(night, tmp_path, runner=TriggerRunner([FailingTrigger()], max_attempts=1), diagnose=False) as w:
        for i, t in enumerate([10.0, 10.0, 10.0, 8.0]):
            (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i, FOCTEMP=t))
        pump(w, lambda o: len(w.journal.triggers()) >= 1)
        assert not w.journal.refocus_answered()
    trig = CountingTrigger()
    with watching(night, tmp_path, runner=TriggerRunner([trig]), diagnose=False) as w2:
        pump(w2, lambda o: len(trig.requests) >= 1 and len(w2.journal.triggers()) >= 2)
        assert len(trig.requests) == 1 and "temperature" in trig.requests[0].reason
        assert w2.journal.refocus_answered()
    with watching(night, tmp_path, runner=TriggerRunner([trig]), diagnose=False) as w3:  # answered: not again
        pump(w3, lambda o: True, 1)
        time.sleep(0.3)
        w3.process_pending()
    assert len(trig.requests) == 1


# --------------------------------------------------------------------------- issue 11 defect 4: a failed NINA autofocus

def _nina_af_report(timestamp: datetime, calc: int = 15100, init: int = 15400) -> dict:
    """A NINA 3.x autofocus report whose run moved the focuser from ``init`` to ``calc``.

    N.I.N.A. 3.x AutoFocusVM.cs writes it (GenerateReport) *before* validating the run; a run
    that fails validation moves the focuser back to InitialFocusPoint, report or not."""
    pts = [{"Position": 15000 + 50 * k, "Value": 2.0 + 0.02 * (k - 2) ** 2, "Error": 0.05} for k in range(9)]
    return {"Version": 2, "Filter": "L", "Timestamp": timestamp.isoformat(), "Temperature": 8.0,
            "Method": "STARHFR", "Fitting": "HYPERBOLIC",
            "InitialFocusPoint": {"Position": init, "Value": 2.9, "Error": 0.0},
            "CalculatedFocusPoint": {"Position": calc, "Value": 2.0, "Error": 0.0},
            "PreviousFocusPoint": {"Position": calc, "Value": 2.0, "Error": 0.0}, "MeasurePoints": pts}


def _af_rows(journal: Journal) -> dict[str, str]:
    return dict(journal._exec("SELECT key, source FROM autofocus_events").fetchall())


def test_a_failed_nina_autofocus_keeps_the_baseline_and_the_request(tmp_path, base_frame):
    """Real report files and real frames: FOCPOS back at InitialFocusPoint → failed (not counted,
    the refocus stays due); a later run whose next frame sits at CalculatedFocusPoint → confirmed."""
    night, af = tmp_path / "night", tmp_path / "AutoFocus"
    night.mkdir()
    af.mkdir()
    counting = CountingTrigger()
    verdicts = []
    now = datetime.now(timezone.utc)
    with watching(night, tmp_path, af_folder=af, runner=TriggerRunner([counting]), background_triggers=False,
                  diagnose=False, on_autofocus_verdict=lambda m, st, why: verdicts.append(st)) as w:
        for i, t in enumerate([10.0, 10.0, 10.0, 8.0]):                 # a 2 °C drop: refocus
            (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i, FOCTEMP=t, FOCPOS=15400, FILTER="L"))
            pump(w, lambda o: len(o) >= 1)
        assert w.decisions[-1].decision == "refocus" and len(counting.requests) == 1
        (af / "run1.json").write_text(json.dumps(_nina_af_report(now - timedelta(minutes=10))))
        w.process_pending()
        assert w.monitor.state.n_autofocus == 0 and verdicts == []                  # held
        # NINA rejected the run and moved back: the next light frame is at the initial position
        (night / "f4.fits").write_bytes(fits_for(base_frame, 4, FOCTEMP=8.0, FOCPOS=15400, FILTER="L"))
        pump(w, lambda o: len(o) >= 1)
        assert verdicts == ["failed"] and w.monitor.state.n_autofocus == 0
        assert statefile.read_state(w.state_file).refocus_due                       # the request stays
        assert _af_rows(w.journal) == {"nina-report:run1.json": "nina-report:failed"}
        # the second run worked: the next frame sits at the calculated point
        (af / "run2.json").write_text(json.dumps(_nina_af_report(now - timedelta(minutes=3))))
        w.process_pending()
        (night / "f5.fits").write_bytes(fits_for(base_frame, 5, FOCTEMP=8.0, FOCPOS=15100, FILTER="L"))
        out = pump(w, lambda o: len(o) >= 1)
        assert verdicts == ["failed", "confirmed"] and w.monitor.state.n_autofocus == 1
        assert out[0].decision.decision == "ok"                     # judged after the new baseline
        assert not statefile.read_state(w.state_file).refocus_due
        assert _af_rows(w.journal)["nina-report:run2.json"] == "nina-report"
    # a restart does not apply the failed run, nor hold it again
    with watching(night, tmp_path, af_folder=af, diagnose=False) as w2:
        w2.process_pending()
        assert w2.monitor.state.n_autofocus == 1 and w2._runs == []


def test_a_nina_hook_after_a_failed_run_is_the_same_run_and_not_counted(tmp_path, base_frame):
    """Run Autofocus continues on error, so the autofocus-done hook after it still runs: the hook
    and the report are one run, judged by the next light frame."""
    night, af = tmp_path / "night", tmp_path / "AutoFocus"
    night.mkdir()
    af.mkdir()
    now = datetime.now(timezone.utc)
    with watching(night, tmp_path, af_folder=af, diagnose=False) as w:
        (night / "f0.fits").write_bytes(fits_for(base_frame, 0, FOCPOS=15400, FILTER="L"))
        pump(w, lambda o: len(o) >= 1)
        statefile.append_autofocus_event(w.events_file, statefile.make_event(
            statefile.iso_utc(now - timedelta(seconds=60)), source="nina-hook", filter_name="L"))
        w.process_pending()                         # the hook before its report was seen: held, no evidence
        report = af / "run.json"
        report.write_text(json.dumps(_nina_af_report(now - timedelta(seconds=70))))
        w.process_pending()
        (night / "f1.fits").write_bytes(fits_for(base_frame, 1, FOCPOS=15400, FILTER="L"))
        pump(w, lambda o: len(o) >= 1)
        assert w.monitor.state.n_autofocus == 0
        rows = _af_rows(w.journal)
        assert rows["nina-report:run.json"] == "nina-report:failed"
        assert [v for k, v in rows.items() if k != "nina-report:run.json"] == ["nina-hook:failed"]


def test_an_unconfirmable_nina_autofocus_is_given_up_after_n_frames(tmp_path, base_frame):
    night, af = tmp_path / "night", tmp_path / "AutoFocus"
    night.mkdir()
    af.mkdir()
    from focuswatch.watch import WatchConfig

    verdicts = []
    with watching(night, tmp_path, af_folder=af, diagnose=False, watch=WatchConfig(af_confirm_frames=2),
                  on_autofocus_verdict=lambda m, st, why: verdicts.append((st, why))) as w:
        (af / "run.json").write_text(json.dumps(_nina_af_report(datetime.now(timezone.utc) - timedelta(minutes=5))))
        w.process_pending()
        for i in range(3):       # another filter: a filter offset may have moved the focuser, proves nothing
            (night / f"h{i}.fits").write_bytes(fits_for(base_frame, i, FOCPOS=15400 + 500, FILTER="Ha"))
            pump(w, lambda o: len(o) >= 1)
        assert [v[0] for v in verdicts] == ["unconfirmed"] and "filter Ha" in verdicts[0][1]
        assert w.monitor.state.n_autofocus == 0
        assert _af_rows(w.journal) == {"nina-report:run.json": "nina-report:unconfirmed"}


def test_a_nina_hook_without_its_report_is_judged_from_where_the_focuser_was(tmp_path, base_frame):
    """No --af-folder: the hook's run is judged against the FOCPOS of the last light frame before it
    (where NINA's run started, and where a failed run moves back to)."""
    night = tmp_path / "night"
    night.mkdir()
    verdicts = []
    now = datetime.now(timezone.utc)
    with watching(night, tmp_path, diagnose=False, on_autofocus_verdict=lambda m, st, why: verdicts.append(st)) as w:
        (night / "f0.fits").write_bytes(fits_for(base_frame, 0, FOCPOS=15400, FILTER="L"))
        pump(w, lambda o: len(o) >= 1)
        statefile.append_autofocus_event(w.events_file, statefile.make_event(
            statefile.iso_utc(now - timedelta(minutes=10)), source="nina-hook"))
        w.process_pending()
        (night / "f1.fits").write_bytes(fits_for(base_frame, 1, FOCPOS=15400, FILTER="L"))   # moved back
        pump(w, lambda o: len(o) >= 1)
        assert verdicts == ["failed"] and w.monitor.state.n_autofocus == 0
        statefile.append_autofocus_event(w.events_file, statefile.make_event(
            statefile.iso_utc(now - timedelta(minutes=5)), source="nina-hook"))
        w.process_pending()
        (night / "f2.fits").write_bytes(fits_for(base_frame, 2, FOCPOS=15180, FILTER="L"))   # a new focus
        pump(w, lambda o: len(o) >= 1)
        assert verdicts == ["failed", "confirmed"] and w.monitor.state.n_autofocus == 1
        # an Ekos or manual autofocus-done is not NINA's: it counts at once, as before
        statefile.append_autofocus_event(w.events_file, statefile.make_event(source="autofocus-done"))
        pump(w, lambda o: w.monitor.state.n_autofocus == 2, timeout_s=5)


def test_replay_judges_nina_reports_as_watch_does(tmp_path, base_frame):
    """`replay --af-folder`: a report whose next frame sits back at the start position is not an
    autofocus (the baseline stays); one whose next frame is at its calculated point is."""
    night, af = tmp_path / "night", tmp_path / "AutoFocus"
    night.mkdir()
    af.mkdir()
    t0 = datetime(2026, 11, 21, 21, 0, tzinfo=timezone.utc).timestamp()
    for i, pos in enumerate([15400, 15400, 15400, 15100]):
        p = night / f"n{i}.fits"
        p.write_bytes(fits_for(base_frame, i, FOCPOS=pos, FILTER="L", FOCTEMP=8.0))
        os.utime(p, (t0 + 600 * i, t0 + 600 * i))                   # written 10 min apart
    for name, after in (("failed.json", 0), ("good.json", 2)):     # each run ends 5 min after frame `after`
        (af / name).write_text(json.dumps(_nina_af_report(datetime.fromtimestamp(t0 + 600 * after + 300,
                                                                                  timezone.utc))))
    marks = [mark_from_nina_report(p) for p in sorted(af.glob("*.json"))]
    _, mon = replay(night, config=Config(rig=Rig(aperture_mm=200)), policy=QUIET, af_marks=marks, diagnose=False)
    assert mon.state.n_autofocus == 1 and mon.state.last_focuser_pos == 15100


def test_a_failing_rescan_does_not_stop_the_watcher(tmp_path, base_frame, monkeypatch):
    """A network share that fails one listing (EIO) is a warning; the next rescan finds the frame."""
    import errno

    from focuswatch.watch import watcher as watcher_mod   # where the catch-up scan looks list_frames up

    night = tmp_path / "night"
    night.mkdir()
    real = watcher_mod.list_frames
    with watching(night, tmp_path, rescan_interval_s=0.2) as w:
        w._observer.stop()  # only the rescan can find the frame
        w._observer.join(timeout=5)
        (night / "share.fits").write_bytes(fits_for(base_frame, 0))

        def broken(*a, **k):
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(watcher_mod, "list_frames", broken)
        w._next_rescan = 0.0
        assert w.process_pending() == []          # the listing failed: no exception, no frame
        monkeypatch.setattr(watcher_mod, "list_frames", real)
        out = pump(w, lambda o: any(p.path.name == "share.fits" for p in o), timeout_s=20)
    assert [p.status for p in out if p.path.name == "share.fits"] == ["measured"]


# --------------------------------------------------------------------------- issue 9: watch and replay are one loop

def _decision_json(d) -> str:
    from focuswatch.model.records import dumps

    return dumps(d.to_dict(), sort_keys=True)     # NaN as null: two equal decisions give one text


def test_a_replayed_night_decides_as_the_watched_one(tmp_path, base_frame):
    """Real files appearing one after another in a real folder while the watcher runs, then the
    same folder replayed: the same rows, frame by frame (action, reasons, defocus — the whole
    decision), the same autofocus journal rows and the same refocus requests. The night has
    a refocus, a corrupt file and a flat in the middle, a NINA autofocus that fails
    confirmation (the focuser is back at the start), one that is confirmed, an ``autofocus-done``
    from the event log, and a NINA hook without a report that fails."""
    from focuswatch.watch.loop import RecordingSink
    from focuswatch.watch import WatchConfig, autofocus_signals

    night, af = tmp_path / "night", tmp_path / "AutoFocus"
    night.mkdir()
    af.mkdir()
    t0 = (datetime.now(timezone.utc) - timedelta(hours=3)).timestamp()   # the PC clock; DATE-OBS is another

    def at(k: float) -> float:                       # frame k is written at t0 + 10 min * k
        return t0 + 600.0 * k

    def utc(t: float) -> datetime:
        return datetime.fromtimestamp(t, timezone.utc)

    def put(name: str, blob: bytes, t: float) -> Path:
        p = night / name
        p.write_bytes(blob)
        os.utime(p, (t, t))
        return p

    def report(name: str, t: float) -> None:
        p = af / name
        p.write_text(json.dumps(_nina_af_report(utc(t))))
        os.utime(p, (t, t))

    frame_plan = [  # (name, written at, header), one at a time
        ("f0.fits", 0, dict(FOCTEMP=10.0, FOCPOS=15400)), ("f1.fits", 1, dict(FOCTEMP=10.0, FOCPOS=15400)),
        ("f2.fits", 2, dict(FOCTEMP=10.0, FOCPOS=15400)), ("f3.fits", 3, dict(FOCTEMP=8.0, FOCPOS=15400)),
        ("bad.fits", 3.1, None), ("flat.fits", 3.2, dict(IMAGETYP="FLAT")),
        ("run1", 3.5, None),                                          # NINA report: moved back (fails)
        ("f4.fits", 4, dict(FOCTEMP=8.0, FOCPOS=15400)),
        ("run2", 4.5, None),                                          # NINA report: at its calculated point
        ("f5.fits", 5, dict(FOCTEMP=8.0, FOCPOS=15100)), ("f6.fits", 6, dict(FOCTEMP=7.0, FOCPOS=15100)),
        ("done", 6.5, None),                                          # `focuswatch autofocus-done`
        ("f7.fits", 7, dict(FOCTEMP=6.0, FOCPOS=15100)),
        ("hook", 7.5, None),                                          # NINA hook, no report: judged by FOCPOS
        ("f8.fits", 8, dict(FOCTEMP=6.0, FOCPOS=15100)), ("f9.fits", 9, dict(FOCTEMP=6.0, FOCPOS=15100)),
    ]
    counting, verdicts = CountingTrigger(), []
    wc = WatchConfig(af_same_run_s=120.0)
    with watching(night, tmp_path, af_folder=af, runner=TriggerRunner([counting]), background_triggers=False,
                  watch=wc, on_autofocus_verdict=lambda m, st, why: verdicts.append(st)) as w:
        watched = []
        for i, (name, k, hdr) in enumerate(frame_plan):
            if name.startswith("run"):
                report(f"{name}.json", at(k))
                w.process_pending()
            elif name == "done":
                statefile.append_autofocus_event(w.events_file, statefile.make_event(
                    statefile.iso_utc(utc(at(k))), source="autofocus-done"))
                w.process_pending()
            elif name == "hook":
                statefile.append_autofocus_event(w.events_file, statefile.make_event(
                    statefile.iso_utc(utc(at(k))), source="nina-hook", filter_name="L"))
                w.process_pending()
            else:
                blob = b"GARBAGE!" * 400 if hdr is None else fits_for(base_frame, i, FILTER="L", **hdr)
                put(name, blob, at(k))
                watched += pump(w, lambda o: len(o) >= 1)
        journal_af = _af_rows(w.journal)
        n_af = w.monitor.state.n_autofocus
    assert verdicts == ["failed", "confirmed", "failed"] and n_af == 2       # run2 and the autofocus-done
    assert [o.path.name for o in watched] == [n for n, _, _ in frame_plan if n.endswith(".fits")]
    assert {o.path.name: o.status for o in watched if o.status != "measured"} == {"bad.fits": "error",
                                                                                "flat.fits": "ignored"}
    assert [o.decision.decision for o in watched if o.decision][3] == "refocus" and len(counting.requests) >= 1

    sink = RecordingSink()
    rows, mon = replay(night, config=Config(rig=Rig(aperture_mm=200)), policy=QUIET,
                       af_marks=autofocus_signals(af, statefile.resolve_paths(tmp_path / "state")[1]), sink=sink)
    assert sorted(o.path.name for o in rows) == sorted(o.path.name for o in watched)
    replayed = {o.path.name: o for o in rows}
    for o in watched:                                 # frame by frame: the whole decision
        r = replayed[o.path.name]
        assert r.status == o.status, o.path.name
        assert (r.decision is None) == (o.decision is None)
        if o.decision is not None:
            assert (r.decision.decision, r.decision.reasons) == (o.decision.decision, o.decision.reasons), o.path.name
            assert _decision_json(r.decision) == _decision_json(o.decision), o.path.name   # defocus_um and all
    assert mon.state.n_autofocus == n_af
    # the autofocus rows the watcher journaled (applied, failed, same run) are the replay's
    assert {r.key: r.data["mark"].source for r in sink.rows if r.what == "autofocus"} == journal_af
    assert [r.data["status"] for r in sink.rows if r.what == "verdict"] == verdicts
    requests = [r.data["request"] for r in sink.rows if r.what == "request"]
    assert [(q.reason, q.frame_file) for q in requests] == [(q.reason, q.frame_file) for q in counting.requests]
    errors = [r for r in sink.rows if r.what == "frame" and r.data["status"] == "error"]
    assert len(errors) == 1 and "bad.fits" in errors[0].data["error"]


def _inside_path_resolution(frame) -> bool:
    """True when a stat call comes from ``Path.resolve`` / ``os.path.realpath``."""
    for _ in range(4):
        if frame is None:
            return False
        if frame.f_code.co_name in ("resolve", "realpath", "_joinrealpath"):
            return True
        frame = frame.f_back
    return False


def test_a_watched_frame_is_looked_at_with_few_stats_and_keyed_as_on_disk(tmp_path, base_frame, monkeypatch):
    """Real frames written into a real folder: the watcher's bookkeeping (readiness, completeness
    proof, header, capture order, autofocus clock, journal key) shares one ``stat()`` of each
    file per poll; the load checks the size once more before reading the pixels (the proof and
    that check are kept). Counted on this thread, per frame, outside path resolution (which runs
    once per file-system event, however many the OS sends): 2, at most 3 when the file is caught
    half-written once (10-12 before). The journal key built from the shared stat is the file's
    own (size, mtime) as the file system reports it afterwards."""
    night = tmp_path / "night"
    night.mkdir()
    me = threading.get_ident()
    counts: dict[str, int] = {}
    real_stat, real_lstat = os.stat, os.lstat

    def counted(real):
        def call(p, *a, **kw):
            name = p if isinstance(p, int) else os.path.basename(os.fsdecode(p))
            if threading.get_ident() == me and isinstance(name, str) and name.endswith(".fits") \
                    and not _inside_path_resolution(sys._getframe(1)):
                counts[name] = counts.get(name, 0) + 1
            return real(p, *a, **kw)
        return call

    monkeypatch.setattr(os, "stat", counted(real_stat))
    monkeypatch.setattr(os, "lstat", counted(real_lstat))
    # no periodic rescan (it keys every file again; not what is counted here)
    with watching(night, tmp_path, stat=lambda p: os.stat(p), rescan_interval_s=0) as w:
        for i in range(3):
            target = night / f"light_{i:03d}.fits"
            target.write_bytes(fits_for(base_frame, i))
            out = pump(w, lambda o: len(o) >= 1)
            assert [o.status for o in out] == ["measured"]
        monkeypatch.undo()
        assert set(counts) == {f"light_{i:03d}.fits" for i in range(3)}
        assert max(counts.values()) <= 3, counts
        keys = w.journal.seen_keys(night)
    assert keys == {Journal.key_of(night / f"light_{i:03d}.fits") for i in range(3)}


def test_the_night_loop_judges_frames_against_the_nights_own_in_focus_frames():
    """The night loop (``watch`` and ``replay``): the first two frames of the filter give the
    seeing (diagnose.WitnessTracker), a 1 CFZ focus slip on an 80 mm f/6 in steady 2.5" seeing,
    which the profile shape alone reads as seeing, reaches the policy as a focus miss, and an
    applied autofocus starts the witness again. Physical-optics frames (tests/physframes.py)."""
    import numpy as np

    from physframes import REFRACTOR_80, night_frame, rig_of
    from focuswatch import diagnose
    from focuswatch.policy import AutofocusMark, Monitor
    from focuswatch.watch import WatchConfig
    from focuswatch.watch.loop import NightSession, RecordingSink

    rig = rig_of(REFRACTOR_80)
    seeings = list(2.5 * np.exp(np.random.default_rng(0).normal(0.0, 0.03, 6)))
    items = [night_frame(REFRACTOR_80, s, c, i, seed=20) for i, (s, c) in enumerate(zip(seeings, [0.0] * 4 + [1.0] * 2))]
    session = NightSession(Monitor(QUIET, rig), Config(rig=rig), watch=WatchConfig(), sink=RecordingSink())
    for i, (frame, _) in enumerate(items):
        out = session.frame(Path(f"L_{i:03d}.fits"), frame.meta, written_s=frame.meta.timestamp,
                            load=lambda f=frame: f)
        assert out is not None and out.status == "measured"
    labels = [r.data["record"].diagnosis for r in session.sink.rows if r.what == "frame"]
    assert len(labels) == 6 and labels[4] == "focus_miss"
    assert "focus_miss" not in labels[:4]
    assert diagnose.frame(items[4][1], rig).label != "focus_miss"  # the profile shape alone
    w = session.witnesses().witness_for("L", items[5][1].meta.timestamp, 1000, rig=rig)
    assert w is not None and w.source == "infocus" and w.n_frames == 2
    session._count("ekos:1", AutofocusMark(time_s=items[5][1].meta.timestamp + 60.0, source="ekos"), None)
    assert session.witnesses().witness_for("L", items[5][1].meta.timestamp + 120.0, 1000, rig=rig) is None


def test_a_witness_that_fails_on_a_frame_is_that_frames_error_line_and_the_night_goes_on():
    """The seeing witness steps of the night loop (lookup before, update after the frame) are
    inside the frame's boundary: an exception there is one FrameError line for that frame, the
    next frame is measured (a bug in the witness must not stop ``watch``)."""
    from physframes import REFRACTOR_80, night_frame, rig_of
    from focuswatch.policy import Monitor
    from focuswatch.watch import WatchConfig
    from focuswatch.watch.loop import NightSession, RecordingSink

    rig = rig_of(REFRACTOR_80)
    items = [night_frame(REFRACTOR_80, 2.5, 0.0, i, seed=20) for i in range(2)]
    session = NightSession(Monitor(QUIET, rig), Config(rig=rig), watch=WatchConfig(), sink=RecordingSink())
    tracker = session.witnesses()
    real_for = tracker.witness_for

    def broken(*args, **kwargs):
        raise ValueError("witness bug")

    tracker.witness_for = broken
    frame0 = items[0][0]
    out = session.frame(Path("L_000.fits"), frame0.meta, written_s=frame0.meta.timestamp, load=lambda: frame0)
    assert out is not None and out.status == "error" and "witness bug" in (out.error or "")
    assert out.path == Path("L_000.fits")
    tracker.witness_for = real_for
    frame1 = items[1][0]
    out = session.frame(Path("L_001.fits"), frame1.meta, written_s=frame1.meta.timestamp, load=lambda: frame1)
    assert out is not None and out.status == "measured"


def test_start_up_rehearses_the_pipeline_so_the_first_frames_do_not_wait(tmp_path):
    """The watcher's start-up measures and diagnoses a made-up frame and builds the policy's
    drift-fit pieces (scipy.stats, the growth curve of the rig's obstruction), which the third
    frame of a night used to wait 1.4-1.9 s for (benchmarks/bench_watch_latency.py). It writes
    nothing into the watched folder, and a rig it cannot use does not stop it."""
    from focuswatch.optics import Rig
    from focuswatch.policy import estimators
    from focuswatch.watch.watcher import warm_up

    night = tmp_path / "night"
    night.mkdir()
    estimators._growth_curve.cache_clear()  # built by an earlier test, it would pass without warm_up
    warm_up(None)
    warm_up(Rig(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, obstruction=0.37))
    hits = estimators._growth_curve.cache_info().hits
    estimators._growth_curve(0.37)
    assert estimators._growth_curve.cache_info().hits == hits + 1      # built at start-up, not now
    assert list(night.iterdir()) == []


def _witness_watcher(tmp_path: Path, name: str, journal: Journal, rig: Rig) -> tuple[Watcher, Path, list[float]]:
    """A diagnosing watcher on ``tmp_path/name`` with a hand-driven clock (restores from ``journal``)."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    clock = [1000.0]
    sf, ef = statefile.resolve_paths(tmp_path / f"{name}-state")
    w = Watcher(folder, journal, config=Config(rig=rig), policy=QUIET, state_file=sf, events_file=ef,
                rescan_interval_s=0, clock=lambda: clock[0], diagnose=True)
    w.start()  # restores from the journal
    return w, folder, clock


def _feed_frames(w: Watcher, folder: Path, clock: list[float], blobs: list[bytes], frames: list,
                 idx: range) -> list:
    """Write frames ``idx`` into the folder one by one (dated as captured) and let the watcher take each."""
    out = []
    for i in idx:
        p = folder / f"L_{i:03d}.fits"
        p.write_bytes(blobs[i])
        t = frames[i].meta.timestamp
        os.utime(p, (t, t))
        w._enqueue(p)
        for dt in (0.3, 0.3, 5.0, 0.3):
            out += w.process_pending()
            clock[0] += dt
    return out


def test_a_restarted_watcher_keeps_the_nights_seeing_witness(tmp_path):
    """A watcher stopped and started again on the same journal judges the next frames against
    the same in-focus frames as one that never stopped: the witness is rebuilt from the journal
    (seeing, frame count, source equal), and a 1 CFZ slip on an 80 mm f/6 in steady 2.5" seeing
    right after the restart is still a focus miss. Physical-optics frames (tests/physframes.py)
    written to a real folder as FITS, dated by DATE-OBS and their file times."""
    import numpy as np

    from types import SimpleNamespace

    from physframes import REFRACTOR_80, night_frame, night_spec, rig_of

    rig = rig_of(REFRACTOR_80)
    seeings = list(2.5 * np.exp(np.random.default_rng(0).normal(0.0, 0.03, 6)))
    cfzs = [0.0] * 4 + [1.0] * 2
    frames = [night_frame(REFRACTOR_80, s, c, i, seed=20)[0] for i, (s, c) in enumerate(zip(seeings, cfzs))]
    blobs = [sim.fits_bytes(SimpleNamespace(pixels=f.pixels, header=night_spec(REFRACTOR_80, s, c, i, seed=20)[1]))
             for i, (f, s, c) in enumerate(zip(frames, seeings, cfzs))]

    def watcher(name: str, journal: Journal) -> tuple[Watcher, Path, list[float]]:
        return _witness_watcher(tmp_path, name, journal, rig)

    def feed(w: Watcher, folder: Path, clock: list[float], idx: range) -> list:
        return _feed_frames(w, folder, clock, blobs, frames, idx)

    def witness(w: Watcher):
        return w.session.witnesses().witness_for("L", frames[4].meta.timestamp, 1000, rig=rig)

    # the unbroken watcher
    with Journal(tmp_path / "a.sqlite") as ja:
        wa, fa, ca = watcher("a", ja)
        try:
            assert [o.status for o in feed(wa, fa, ca, range(4))] == ["measured"] * 4
            unbroken = witness(wa)
            out_a = feed(wa, fa, ca, range(4, 5))
        finally:
            wa.stop()
        assert [it[1].diagnosis for it in ja.restore_items() if it[0] == "frame"][4] == "focus_miss"
    assert unbroken is not None and unbroken.source == "infocus" and unbroken.n_frames == 2

    # the same night, stopped after four frames and started again on the same journal
    with Journal(tmp_path / "b.sqlite") as jb:
        wb, fb, cb = watcher("b", jb)
        try:
            assert [o.status for o in feed(wb, fb, cb, range(4))] == ["measured"] * 4
        finally:
            wb.stop()
    with Journal(tmp_path / "b.sqlite") as jb:
        wb2, fb2, cb2 = watcher("b", jb)
        try:
            restored = witness(wb2)
            assert restored is not None
            assert (restored.seeing_arcsec, restored.n_frames, restored.source, restored.hfr_px) == \
                   (unbroken.seeing_arcsec, unbroken.n_frames, unbroken.source, unbroken.hfr_px)
            assert restored.jitter_pct == unbroken.jitter_pct
            out_b = feed(wb2, fb2, cb2, range(4, 5))
        finally:
            wb2.stop()
        labels = [it[1].diagnosis for it in jb.restore_items() if it[0] == "frame"]
    assert [o.status for o in out_a] == [o.status for o in out_b] == ["measured"]
    assert len(labels) == 5 and labels[4] == "focus_miss" and "focus_miss" not in labels[:4]
    same = {k: v for k, v in out_a[0].decision.to_dict().items() if k != "file"}   # another folder
    assert {k: v for k, v in out_b[0].decision.to_dict().items() if k != "file"} == same

    # an applied autofocus recorded after the frames starts the witness again after a restart too;
    # a failed NINA run (recorded as not applied) does not
    from focuswatch.policy import AutofocusMark, Monitor
    from focuswatch.watch import AF_FAILED, WatchConfig
    from focuswatch.watch.loop import NightSession

    with Journal(tmp_path / "b.sqlite") as jb:
        items = [it for it in jb.restore_items() if it[0] == "frame"][:4]
    t_af = frames[3].meta.timestamp + 60.0
    for source, kept in (("ekos", False), (f"nina{AF_FAILED}", True)):
        s = NightSession(Monitor(QUIET, rig), Config(rig=rig), watch=WatchConfig())
        assert s.restore(items + [("af", AutofocusMark(time_s=t_af, source=source), None)]) == 4
        w = s.witnesses().witness_for("L", frames[4].meta.timestamp, 1000, rig=rig)
        assert (w is not None and w.seeing_arcsec == unbroken.seeing_arcsec) if kept else w is None

    # a journal row the witness cannot take (here: the tracker refuses every row) costs the
    # witness only: the policy is restored as from usable rows, and the restart carries on
    from focuswatch.diagnose.witness import WitnessTracker

    def refuse(*a, **k):
        raise ValueError("unusable row")

    whole = NightSession(Monitor(QUIET, rig), Config(rig=rig), watch=WatchConfig())
    assert whole.restore(items) == 4
    s = NightSession(Monitor(QUIET, rig), Config(rig=rig), watch=WatchConfig())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WitnessTracker, "add", refuse)
        assert s.restore(items) == 4
    assert s.monitor.history == whole.monitor.history and s.monitor.history
    assert s.witnesses().witness_for("L", frames[4].meta.timestamp, 1000, rig=rig) is None


def test_start_up_rehearsal_that_cannot_import_does_not_stop_the_watcher(monkeypatch):
    """warm_up's own imports are part of the rehearsal: a pipeline module that cannot load at
    start-up (an optional piece missing) costs the first frame its speed, never the start."""
    from focuswatch.watch.watcher import warm_up

    monkeypatch.setitem(sys.modules, "focuswatch.policy.estimators", None)  # its import now raises ImportError
    warm_up(None)


def test_a_restarted_watcher_keeps_the_witness_of_a_rig_known_from_the_headers(tmp_path):
    """The same restart with an empty ``[rig]``: pixel size, focal length and aperture come only
    from the frames' headers (XPIXSZ, FOCALLEN, APTDIA), so the witness's plate scale does too. The
    restart reads the header facts recorded with each frame's measurement from our own journal
    (never the frames again), and the witness and the next two frames' diagnoses (a 1 CFZ slip on
    the 80 mm f/6 in steady 2.5", physical optics) equal the unbroken night's. Without them the
    restored witness was keyed at no plate scale, the frames after the restart found none and the
    slip read ``poor_seeing``."""
    import numpy as np

    from types import SimpleNamespace

    from focuswatch.optics import Rig, rig_with_header
    from physframes import REFRACTOR_80, night_frame, night_spec

    seeings = list(2.5 * np.exp(np.random.default_rng(1).normal(0.0, 0.03, 6)))
    cfzs = [0.0] * 4 + [1.0] * 2
    frames = [night_frame(REFRACTOR_80, s, c, i, seed=21)[0] for i, (s, c) in enumerate(zip(seeings, cfzs))]
    blobs = [sim.fits_bytes(SimpleNamespace(pixels=f.pixels, header=night_spec(REFRACTOR_80, s, c, i, seed=21)[1]))
             for i, (f, s, c) in enumerate(zip(frames, seeings, cfzs))]
    header_rig = rig_with_header(Rig(), frames[4].meta)
    assert Rig().plate_scale_arcsec_px is None and header_rig.plate_scale_arcsec_px

    def watcher(name: str, journal: Journal) -> tuple[Watcher, Path, list[float]]:
        return _witness_watcher(tmp_path, name, journal, Rig())

    def feed(w: Watcher, folder: Path, clock: list[float], idx: range) -> list:
        return _feed_frames(w, folder, clock, blobs, frames, idx)

    def witness(w: Watcher):
        return w.session.witnesses().witness_for("L", frames[4].meta.timestamp, 1000, rig=header_rig)

    def labels(j: Journal) -> list:
        return [it[1].diagnosis for it in j.restore_items() if it[0] == "frame"]

    with Journal(tmp_path / "a.sqlite") as ja:
        wa, fa, ca = watcher("a", ja)
        try:
            assert [o.status for o in feed(wa, fa, ca, range(4))] == ["measured"] * 4
            unbroken = witness(wa)
            out_a = feed(wa, fa, ca, range(4, 6))
        finally:
            wa.stop()
        labels_a = labels(ja)
    assert unbroken is not None and unbroken.source == "infocus" and unbroken.n_frames == 2
    assert labels_a[4:] == ["focus_miss", "focus_miss"] and "focus_miss" not in labels_a[:4]

    with Journal(tmp_path / "b.sqlite") as jb:
        wb, fb, cb = watcher("b", jb)
        try:
            feed(wb, fb, cb, range(4))
        finally:
            wb.stop()
    with Journal(tmp_path / "b.sqlite") as jb:
        items = jb.restore_items(with_header=True)
        assert [k for k, _, _ in items].count("header") == 4
        assert all(items[i + 1][0] == "frame" for i, it in enumerate(items) if it[0] == "header")
        wb2, fb2, cb2 = watcher("b", jb)
        try:
            restored = witness(wb2)
            assert restored is not None
            assert restored.to_dict() == unbroken.to_dict()
            out_b = feed(wb2, fb2, cb2, range(4, 6))
        finally:
            wb2.stop()
        labels_b = labels(jb)
    assert labels_b == labels_a
    for a, b in zip(out_a, out_b):
        assert {k: v for k, v in a.decision.to_dict().items() if k != "file"} == \
               {k: v for k, v in b.decision.to_dict().items() if k != "file"}
    # the journal's items without the header facts: the witness is keyed at the [rig]'s (no) scale
    from focuswatch.policy import Monitor
    from focuswatch.watch import WatchConfig
    from focuswatch.watch.loop import NightSession

    with Journal(tmp_path / "b.sqlite") as jb:
        bare = [it for it in jb.restore_items() if it[0] == "frame"][:4]
    s = NightSession(Monitor(QUIET, Rig()), Config(rig=Rig()), watch=WatchConfig())
    assert s.restore(bare) == 4
    assert s.witnesses().witness_for("L", frames[4].meta.timestamp, 1000, rig=header_rig) is None


def _raw_rows(journal_path: Path) -> dict[str, list[tuple]]:
    """Every frames / decisions / autofocus row of a journal file, as bytes (read with sqlite3 itself)."""
    import sqlite3

    con = sqlite3.connect(journal_path)
    try:
        return {t: con.execute(f"SELECT {cols} FROM {t} ORDER BY id").fetchall() for t, cols in (
            ("frames", "id, path, CAST(record AS BLOB), CAST(stats AS BLOB)"),
            ("decisions", "id, frame_id, CAST(data AS BLOB)"),
            ("autofocus_events", "id, key, CAST(data AS BLOB)"))}
    finally:
        con.close()


def test_a_garbled_journal_row_is_one_line_and_the_restarted_watcher_goes_on(tmp_path, base_frame, caplog):
    """A journal row cut short (a crash mid-write, a disk fault, a hand edit) used to stop the
    restarted watcher before its first frame ("a journal row cannot be read back; move the journal
    away"), throwing away the whole night it had recorded. Now: one line per bad row naming the
    journal, the row and the frame's file; every other row is restored (the refocus asked before the
    restart is still awaited, not asked again); the bad rows stay in the file byte for byte and their
    frames are not measured again over them; the frames written meanwhile are measured."""
    import sqlite3

    night = tmp_path / "night"
    night.mkdir()
    temps = [10.0, 10.0, 10.0, 8.5, 8.5, 8.5, 8.4, 8.4]
    trig = CountingTrigger()
    with watching(night, tmp_path, runner=TriggerRunner([trig])) as w:
        for i in range(5):
            (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i, FOCTEMP=temps[i]))
        out = pump(w, lambda o: len(o) >= 5)
        assert [o.decision.decision for o in out] == ["ok", "ok", "ok", "refocus", "ok"]
        pump(w, lambda o: len(w.journal.triggers()) >= 1)
        unbroken = [(r.file, r.hfr_px) for r in w.monitor.history]
    jpath = tmp_path / "state" / "journal.sqlite"
    con = sqlite3.connect(jpath)
    with con:
        # f1's record cut in the middle of its JSON; f2's decision overwritten with bytes that are not even UTF-8
        rec = con.execute("SELECT record FROM frames WHERE path LIKE '%f1.fits'").fetchone()[0]
        con.execute("UPDATE frames SET record = ? WHERE path LIKE '%f1.fits'", (rec[:len(rec) // 2],))
        con.execute("UPDATE decisions SET data = CAST(X'FFFE00C3287B226465' AS TEXT) WHERE frame_id = "
                    "(SELECT id FROM frames WHERE path LIKE '%f2.fits')")
    con.close()
    before = _raw_rows(jpath)
    for i in range(5, 8):
        (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i, FOCTEMP=temps[i]))
    trig2 = CountingTrigger()
    with caplog.at_level(logging.WARNING, logger="focuswatch.watch"):
        with watching(night, tmp_path, runner=TriggerRunner([trig2])) as w2:
            lines = [r.getMessage() for r in caplog.records if "cannot be read back" in r.getMessage()]
            assert len(lines) == 2 and w2.journal_problems == lines and w2.n_errors == 2
            assert all(str(jpath) in ln and "\n" not in ln for ln in lines)
            assert "f1.fits" in lines[0] and "record" in lines[0] and "frames row" in lines[0]
            assert "f2.fits" in lines[1] and "decision" in lines[1]
            # the good rows are restored: f0, f3, f4, in order, as the unbroken watcher had them
            assert [(r.file, r.hfr_px) for r in w2.monitor.history] == [unbroken[i] for i in (0, 3, 4)]
            assert w2.monitor.state.waiting_since_s is not None   # the refocus asked before the restart
            out2 = pump(w2, lambda o: len(o) >= 3)
            assert sorted(o.path.name for o in out2) == ["f5.fits", "f6.fits", "f7.fits"]
            assert {o.status for o in out2} == {"measured"}
            assert [o.decision.decision for o in out2] == ["ok", "ok", "ok"]   # still waiting for the AF
            time.sleep(0.2)
            assert pump(w2, lambda o: True, 1) == []           # f1, f2 are not measured again over their rows
            assert trig2.requests == []
    with Journal(jpath) as j:                                  # the decisions read back: all but f2's, one line
        said: list[str] = []
        assert len(j.decisions(problems=said)) == 7 and len(said) == 1 and "f2.fits" in said[0]
    after = _raw_rows(jpath)
    for table in before:                                       # nothing recorded was lost or rewritten
        assert after[table][:len(before[table])] == before[table]
    assert len(after["frames"]) == 8 and len(after["decisions"]) == 8


def test_watch_command_restarted_on_a_garbled_journal_row_exits_1_at_the_end(tmp_path, base_frame, capsys,
                                                                              caplog):
    """The same through ``focuswatch watch``, stopped and run again on its journal: the second run
    names the bad row on one line, measures the frame written meanwhile, and exits 1 at the end
    (bad input, carried past); the row is left as it was."""
    import sqlite3

    from focuswatch.cli import main

    night = tmp_path / "night"
    night.mkdir()
    for i in range(2):
        (night / f"a{i}.fits").write_bytes(fits_for(base_frame, i))
    args = ["watch", str(night), "--state-dir", str(tmp_path / "state"), "--max-minutes", "0.03",
            "--interval-s", "0.05", "--json"]
    assert main(args) == 0
    capsys.readouterr()
    jpath = tmp_path / "state" / "journal.sqlite"
    with sqlite3.connect(jpath) as con:
        con.execute("UPDATE frames SET record = '{\"file\": \"a0.fi' WHERE path LIKE '%a0.fits'")
    con.close()
    before = _raw_rows(jpath)
    (night / "b.fits").write_bytes(fits_for(base_frame, 2))
    with caplog.at_level(logging.WARNING, logger="focuswatch"):  # the CLI's logging writes these to stderr
        rc = main(args)
    cap = capsys.readouterr()
    rows = [json.loads(ln) for ln in cap.out.splitlines() if ln.startswith("{")]
    assert rc == 1 and "Traceback" not in cap.err
    named = [r.getMessage() for r in caplog.records if "cannot be read back" in r.getMessage()]
    assert len(named) == 1 and "a0.fits" in named[0] and str(jpath) in named[0]
    assert "1 row(s) of" in cap.err
    assert [Path(r["file"]).name for r in rows if r["kind"] == "decision"] == ["b.fits"]
    assert rows[-1]["summary"]["n_frames"] == 1
    assert _raw_rows(jpath)["frames"][:2] == before["frames"]


def test_a_policy_failure_or_an_unwritable_journal_row_costs_one_frame_not_the_night(tmp_path, base_frame, caplog):
    """One odd record the refocus policy trips over, and a journal that refuses one row (locked past
    its timeout, disk full): each is one line naming the frame, and the frames after it are still
    measured, judged and journaled. Before, either exception left the watcher's poll and ended the
    night. The policy's failure is that frame's error row; the unwritten row is counted for the exit."""
    from focuswatch.errors import JournalError

    night = tmp_path / "night"
    night.mkdir()
    with watching(night, tmp_path) as w:
        observe, record_frame = w.monitor.observe, w.journal.record_frame

        def odd_observe(record, **kw):
            if record.file.endswith("f1.fits"):
                raise ZeroDivisionError("float division by zero")
            return observe(record, **kw)

        def locked_record(key, **kw):
            if str(key[0]).endswith("f2.fits"):
                raise JournalError("database is locked")
            return record_frame(key, **kw)

        w.monitor.observe, w.journal.record_frame = odd_observe, locked_record
        with caplog.at_level(logging.WARNING, logger="focuswatch.watch"):
            for i in range(4):
                (night / f"f{i}.fits").write_bytes(fits_for(base_frame, i))
                time.sleep(0.05)
            out = pump(w, lambda o: len(o) >= 4)
        by_name = {o.path.name: o for o in out}
        assert by_name["f1.fits"].status == "error" and "refocus policy could not judge it" in by_name["f1.fits"].error
        assert {by_name[n].status for n in ("f0.fits", "f2.fits", "f3.fits")} == {"measured"}
        assert by_name["f3.fits"].decision is not None
        policy_lines = [r.getMessage() for r in caplog.records if "refocus policy" in r.getMessage()]
        journal_lines = [r.getMessage() for r in caplog.records if "not recorded in the journal" in r.getMessage()]
        assert len(policy_lines) == 1 and "f1.fits" in policy_lines[0] and "Traceback" not in policy_lines[0]
        assert len(journal_lines) == 1 and "f2.fits" in journal_lines[0]
        assert w.journal_unwritten == 1 and w.n_errors == 2
        w.journal.record_frame = record_frame
        rows = {Path(p).name: s for p, s in w.journal._exec("SELECT path, status FROM frames").fetchall()}
    assert rows == {"f0.fits": "measured", "f1.fits": "error", "f3.fits": "measured"}
