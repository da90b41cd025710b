"""The SQLite journal: real files in tmp_path, restart, corruption, locking."""
from __future__ import annotations

import sqlite3

import pytest

from focuswatch.errors import JournalError
from focuswatch.io.journal import SCHEMA_VERSION, Journal
from focuswatch.policy import AutofocusMark, Decision, FrameRecord, Monitor, PolicyConfig
from focuswatch.optics import Rig

RIG = Rig(aperture_mm=100, focal_length_mm=500, pixel_um=3.76)


def _frames(n, t0=1.7e9, hfr=lambda i: 0.8):
    return [FrameRecord(file=f"/night/f{i}.fits", time_s=t0 + 180 * i, n_stars=100, hfr_px=hfr(i),
                        star_flux_adu=5e4, exposure_s=120, filter_name="L", temp_c=10 - 0.05 * i)
            for i in range(n)]


def test_a_measured_row_is_never_replaced_by_a_later_error_on_the_same_bytes(tmp_path):
    """The same key (path, size, mtime) measured, then failing to read (a share hiccups, another
    program holds the file): the measurement, its decision and the restore keep it; the row's bytes
    are those written first. A key that only ever failed is still updated in place."""
    path = tmp_path / "journal.sqlite"
    rec = _frames(1)[0]
    d = Monitor(PolicyConfig(), RIG).observe(rec)
    key = ("/night/f0.fits", 1000, 5)
    with Journal(path) as j:
        fid, _ = j.record_frame(key, time_s=rec.time_s, status="measured", record=rec,
                                stats={"n_stars": 100}, decision=d)
        before = sqlite3.connect(path).execute("SELECT * FROM frames").fetchall()
        assert j.record_frame(key, time_s=None, status="error", error="permission denied") == (fid, None)
        assert j.record_frame(key, time_s=None, status="ignored") == (fid, None)
        assert sqlite3.connect(path).execute("SELECT * FROM frames").fetchall() == before
        assert j.counts()["frames_measured"] == 1 and "frames_error" not in j.counts()
        assert [it[1].file for it in j.restore_items()] == ["/night/f0.fits"]
        bad = ("/night/bad.fits", 10, 1)
        j.record_frame(bad, time_s=None, status="error", error="truncated")
        j.record_frame(bad, time_s=None, status="error", error="still truncated")
        assert sqlite3.connect(path).execute("SELECT error FROM frames WHERE path = ?",
                                             (bad[0],)).fetchall() == [("still truncated",)]


def test_frames_decisions_triggers_autofocus_round_trip(tmp_path):
    path = tmp_path / "state" / "journal.sqlite"
    m = Monitor(PolicyConfig(), RIG)
    with Journal(path) as j:
        for i, rec in enumerate(_frames(5)):
            d = m.observe(rec)
            fid, did = j.record_frame(("/night/f%d.fits" % i, 1000 + i, 5), time_s=rec.time_s, status="measured",
                                      record=rec, stats={"n_stars": 100, "hfr_px": rec.hfr_px}, decision=d)
            assert fid > 0 and did > 0
        j.record_frame(("/night/bad.fits", 10, 1), time_s=None, status="error", error="truncated")
        j.record_trigger({"trigger": "command", "ok": False, "message": "exit 1"}, did)
        assert j.record_autofocus("autofocus-done:2026", AutofocusMark(time_s=1.7e9 + 1000, temp_c=9.5))
        assert not j.record_autofocus("autofocus-done:2026", AutofocusMark(time_s=1.7e9 + 1000))
        assert j.seen(("/night/f3.fits", 1003, 5)) and not j.seen(("/night/f3.fits", 1003, 6))
    with Journal(path) as j:                                 # reopened: everything is still there
        c = j.counts()
        assert c == {"frames_measured": 5, "frames_error": 1, "decisions": 5, "triggers": 1, "autofocus_events": 1}
        items = j.restore_items()
        kinds = [k for k, _, _ in items]
        assert kinds == ["frame"] * 5 + ["af"]
        assert isinstance(items[0][2], Decision) and items[0][1].file == "/night/f0.fits"
        assert j.triggers()[0]["message"] == "exit 1"
        assert [d.file for d in j.decisions()] == [f"/night/f{i}.fits" for i in range(5)]
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def _restored(journal_path, cfg: PolicyConfig) -> Monitor:
    """A new monitor fed the journal's frames and autofocus runs, as a restarted watcher is."""
    restored = Monitor(cfg, RIG)
    with Journal(journal_path) as j:
        for kind, a, b in j.restore_items():
            restored.restore(a, b) if kind == "frame" else restored.autofocus(a)
    return restored


def test_restart_restores_the_policy_state_without_deciding_again(tmp_path):
    frames = _frames(30, hfr=lambda i: 0.8 if i < 5 else 1.6)
    cfg = PolicyConfig(temperature_delta_c=0, max_interval_min=0)
    live = Monitor(cfg, RIG)
    with Journal(tmp_path / "j.sqlite") as j:
        for i, rec in enumerate(frames[:12]):
            j.record_frame((rec.file, 1, i), time_s=rec.time_s, status="measured", record=rec,
                           decision=live.observe(rec))
    restored = _restored(tmp_path / "j.sqlite", cfg)
    assert restored.state == live.state and restored.state.waiting_since_s is not None
    # the refocus asked for before the restart is not asked again while waiting for the autofocus
    assert restored.observe(frames[12]).decision == live.observe(frames[12]).decision == "ok"


def test_restart_restores_the_nights_profile_scatter(tmp_path):
    """The drift fit weighs HFD/FWHM by the night's profile scatter (``NightMemory.profile_jitter``)
    once it rests on ``night_jitter_min_dof`` differences: a watcher restarted from its journal
    must rebuild the same memory (steps within a filter and autofocus segment; a frame without a
    profile adds none), or it would judge the next frames with the profile weighed differently
    (or not at all) from an unbroken watcher. Truth: the unbroken monitor itself."""
    import numpy as np

    rng = np.random.default_rng(7)
    base = _frames(30, hfr=lambda i: 0.8 * float(np.exp(rng.normal(0.0, 0.02))))
    frames = [FrameRecord(**{**r.to_dict(), "profile_ratio": None if i == 9 else
                             1.16 * float(np.exp(rng.normal(0.0, 0.019))),
                             "filter_name": "R" if 14 <= i < 17 else "L"})
              for i, r in enumerate(base)]
    cfg = PolicyConfig(temperature_delta_c=0, max_interval_min=0)
    live = Monitor(cfg, RIG)
    af_at = 12
    with Journal(tmp_path / "j.sqlite") as j:
        for i, rec in enumerate(frames[:24]):
            if i == af_at:
                mark = AutofocusMark(time_s=rec.time_s - 60, filter_name="L")
                live.autofocus(mark)
                j.record_autofocus("af:12", mark)
            j.record_frame((rec.file, 1, i), time_s=rec.time_s, status="measured", record=rec,
                           decision=live.observe(rec))
    restored = _restored(tmp_path / "j.sqlite", cfg)
    sd, dof = live.night.profile_jitter()
    assert sd is not None and dof >= cfg.night_jitter_min_dof     # the profile weighs in the fit
    assert restored.night == live.night and restored.night.profile_jitter() == (sd, dof)
    assert [restored.observe(f).to_dict() for f in frames[24:]] == [live.observe(f).to_dict() for f in frames[24:]]


def test_corrupt_journal_is_a_clear_error(tmp_path):
    bad = tmp_path / "journal.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 200)
    with pytest.raises(JournalError, match="not a focuswatch journal, or it is corrupt"):
        Journal(bad)


def test_newer_schema_is_refused(tmp_path):
    p = tmp_path / "j.sqlite"
    Journal(p).close()
    db = sqlite3.connect(p)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="newer focuswatch"):
        Journal(p)


def test_locked_journal_is_a_clear_error(tmp_path):
    p = tmp_path / "j.sqlite"
    Journal(p).close()
    holder = sqlite3.connect(p, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(JournalError, match="locked by another program"):
            j = Journal(p, timeout_s=0.2)
            j.record_frame(("/x.fits", 1, 1), time_s=1.0, status="ignored")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_journal_written_before_the_dew_figures_were_kept_restores_as_before(tmp_path):
    """A journal made by the schema-1 tables without the ``dew`` column (the old INSERT, by sqlite3
    itself) opens, gains the column and restores its frames as before: no ``dew`` items, so the
    night's dew reference is not rebuilt from them (it comes from the next frames, as before). The
    old writer's INSERT still works on the upgraded file. New rows carry the dew figures back to a
    restarted night loop (``WitnessTracker.halo_reference``: the median of the first 3, in order);
    a garbled ``dew`` column costs that frame its figures only, with one line naming the row."""
    import json

    from focuswatch.config import Config
    from focuswatch.io import journal as journal_mod
    from focuswatch.watch import WatchConfig
    from focuswatch.watch.loop import NightSession

    path = tmp_path / "old.sqlite"
    frames = _frames(6)
    cfg = PolicyConfig(temperature_delta_c=0, max_interval_min=0)
    live = Monitor(cfg, RIG)
    old_insert = ("INSERT INTO frames (seq, path, size_bytes, mtime_ns, time_s, status, error, record, stats, "
                  "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    con = sqlite3.connect(path)
    con.executescript(journal_mod._SCHEMA)
    assert "dew" not in {r[1] for r in con.execute("PRAGMA table_info(frames)")}
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    for i, rec in enumerate(frames[:3]):
        d = live.observe(rec)
        fid = con.execute(old_insert, (i + 1, rec.file, 1, i, rec.time_s, "measured", None,
                                       json.dumps(rec.to_dict()), None, "t")).lastrowid
        con.execute("INSERT INTO decisions (frame_id, time_s, decision, reasons, data, recorded_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (fid, d.time_s, d.decision, "[]", json.dumps(d.to_dict()), "t"))
    con.commit()
    con.close()

    def restarted(j: Journal, problems: list[str] | None = None) -> NightSession:
        s = NightSession(Monitor(cfg, RIG), Config(rig=RIG), watch=WatchConfig())
        s.restore(j.restore_items(with_header=True, with_dew=True, problems=problems))
        return s

    with Journal(path) as j:
        assert "dew" in {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(frames)")}
        items = j.restore_items(with_dew=True)
        assert [k for k, _, _ in items] == ["frame"] * 3
        s = restarted(j)
        assert s.monitor.state == live.state
        assert s.witnesses().halo_reference(RIG) is None          # nothing to rebuild it from
    con = sqlite3.connect(path)                                     # an older focuswatch writing on
    con.execute(old_insert, (99, "/night/by-old.fits", 1, 99, frames[0].time_s, "error", "x", None, None, "t"))
    con.commit()
    con.close()

    # new rows: each with the figures of its one diagnosis
    figs = [(0.31, 2.0, 0.05), (0.12, 2.2, 0.02), (0.50, 1.9, 0.08)]
    path2 = tmp_path / "new.sqlite"
    live2 = Monitor(cfg, RIG)
    with Journal(path2) as j:
        for i, rec in enumerate(frames[3:]):
            j.record_frame((rec.file, 1, i), time_s=rec.time_s, status="measured", record=rec,
                           decision=live2.observe(rec),
                           dew={"halo_excess": figs[i][0], "hfr_px": figs[i][1], "halo_inner": figs[i][2]})
        items = j.restore_items(with_dew=True)
        assert [k for k, _, _ in items] == ["dew", "frame"] * 3
        assert [k for k, _, _ in j.restore_items()] == ["frame"] * 3   # only when asked for
        ref = restarted(j).witnesses().halo_reference(RIG)
        assert ref is not None and ref["halo_ref_frames"] == 3
        assert ref["halo_ref_excess"] == 0.31 and ref["halo_ref_hfr_px"] == 2.0  # medians of the three
        assert ref["halo_recent"] == (0.31, 0.12, 0.50)              # the window's, oldest first
        assert ref["halo_ref_inner"] == 0.05 and ref["halo_recent_inner"] == (0.05, 0.02, 0.08)
    con = sqlite3.connect(path2)
    con.execute("UPDATE frames SET dew = ? WHERE path = ?", ('{"halo_excess": 0.1', frames[4].file))
    con.commit()
    con.close()
    with Journal(path2) as j:
        problems: list[str] = []
        s = restarted(j, problems)
        assert len(problems) == 1 and frames[4].file in problems[0] and "dew" in problems[0]
        assert s.monitor.state == live2.state                        # the frame itself is restored
        assert s.witnesses().halo_reference(RIG) is None             # 2 figures: no reference yet
    # a row without the night's dew figure (halo_inner) gives none: a reference built from it would
    # leave the night's dew call off all night; the next frames rebuild it instead
    from focuswatch.watch.loop import dew_from_row
    assert dew_from_row({"halo_excess": 0.31, "hfr_px": 2.0}) is None
    assert dew_from_row({"halo_excess": 0.31, "hfr_px": 2.0, "halo_inner": "x"}) == (0.31, 2.0, None)
