"""The one frame pipeline: frame -> stars -> diagnosis -> the policy's record."""
from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from focuswatch import sim
from focuswatch.io.frames import frame_from_array
from focuswatch.policy import AutofocusMark
from focuswatch.io.assess import assess_path
from focuswatch.pipeline import AssessContext, assess


@pytest.fixture(scope="module")
def two_frames(tmp_path_factory):
    """An in-focus and a 60 um defocused frame (200 mm f/5, known truth)."""
    folder = tmp_path_factory.mktemp("pipe")
    out = []
    for i, defocus in enumerate((0.0, 60.0)):
        f = sim.render(sim.SimParams(width_px=384, height_px=384, n_stars=60, seed=3, defocus_um=defocus,
                                     rig=sim.DEFAULT_RIG, star_flux_min_e=2e4,
                                     date_obs=f"2026-11-21T22:0{i}:00"))
        path = folder / f"f{i}.fits"
        sim.write_fits(path, f)
        out.append((path, f))
    return out


def test_assess_is_pure_and_measures_against_the_truth(two_frames):
    """Pixels in (no file), stars, diagnosis and record out; HFR against the simulator's truth."""
    _, f = two_frames[1]
    frame = frame_from_array(f.pixels, f.header)
    a = assess(frame, sim.DEFAULT_RIG, AssessContext(time_s=123.0, baseline_hfr_px=two_frames[0][1].truth["hfr_px"]))
    assert a.stats.hfr_px == pytest.approx(f.truth["hfr_px"], rel=0.05)
    assert a.record.time_s == 123.0 and a.record.hfr_px == a.stats.hfr_px and a.record.n_stars == a.stats.n_stars
    assert a.diagnosis is not None and a.diagnosis.defocus_um == pytest.approx(60.0, abs=20.0)
    assert a.record.diagnosis == (a.diagnosis.label if a.diagnosis.confidence >= 0.6 else None)
    assert a.rig.f_ratio == pytest.approx(5.0)
    quiet = assess(frame, sim.DEFAULT_RIG, AssessContext(diagnose=False))
    assert quiet.diagnosis is None and quiet.record.diagnosis is None and quiet.stats.hfr_px == a.stats.hfr_px


def test_assess_path_maps_over_a_process_pool(two_frames):
    """Top-level and picklable: what a pool of workers needs to measure a night in parallel."""
    paths = [p for p, _ in two_frames]
    pickle.dumps((assess_path, paths[0], sim.DEFAULT_RIG, AssessContext()))
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(assess_path, paths, [sim.DEFAULT_RIG] * 2, [AssessContext(diagnose=False)] * 2))
    truths = [f.truth["hfr_px"] for _, f in two_frames]
    assert [r.stats.hfr_px for r in results] == pytest.approx(truths, rel=0.05)
    # the capture time comes from DATE-OBS, as the watcher orders frames
    assert results[1].record.time_s - results[0].record.time_s == pytest.approx(60.0)


def test_the_watchers_measure_record_and_the_pipelines_agree(two_frames):
    """The watcher's step (``frames.load`` + boundary + policy baseline + file dating) and the
    batch path (``assess_path``: its own read-only load, DATE-OBS dating) give the same record,
    and both agree with the simulator's truth and the DATE-OBS written into the file. The night
    loop's own step (``NightSession._measure``, which watch and replay run: it calls
    ``pipeline.assess_for_policy`` itself, not ``watch.measure_record``) gives it too."""
    from datetime import datetime, timezone

    from focuswatch.io import frames
    from focuswatch import watch as watcher
    from focuswatch.config import Config
    from focuswatch.policy import Monitor
    from focuswatch.watch.loop import NightSession

    cfg = Config(rig=sim.DEFAULT_RIG)
    ctx = AssessContext(diagnose_config=cfg.diagnose_config(), profile_config=cfg.stars_config().profile())
    for i, (path, f) in enumerate(two_frames):
        theirs = watcher.measure_record(frames.load(path), cfg, Monitor(rig=cfg.rig))
        a = assess_path(path, cfg.rig, ctx)          # no baseline: a fresh Monitor has no history
        mine = (a.record, a.stats, a.rig)
        assert mine[0] == theirs[0] and mine[2] == theirs[2]
        assert mine[1].to_dict() == theirs[1].to_dict()
        loop = NightSession(Monitor(rig=cfg.rig), cfg, watch=watcher.WatchConfig())._measure(frames.load(path))
        assert loop[0] == theirs[0] and loop[2] == theirs[2] and loop[1].to_dict() == theirs[1].to_dict()
        # independent truth: the rendered HFR, and the capture time the fixture wrote
        assert theirs[1].hfr_px == pytest.approx(f.truth["hfr_px"], rel=0.05)
        date_obs = datetime(2026, 11, 21, 22, i, 0, tzinfo=timezone.utc).timestamp()
        assert theirs[0].time_s == pytest.approx(date_obs)


@pytest.mark.parametrize("frames, marks, order", [
    # DATE-OBS on another clock than the PC (a simulator, a camera clock): only file times count
    ([("a", 0, 1000), ("b", 60, 1060), ("c", 120, 1120)], [1030.0], ["a", "af", "b", "c"]),
    # an event before every frame, and one after the last (applied when the night is released)
    ([("a", 0, 1000), ("b", 60, 1060)], [900.0, 2000.0], ["af", "a", "b", "af"]),
    # frames go in capture order; an event goes before the first frame written after it, even
    # when that frame was captured first (the watcher held b for a)
    ([("b", 60, 1050), ("a", 0, 1100)], [1070.0], ["af", "a", "b"]),
    ([("a", 0, 1000)], [], ["a"]),
])
def test_the_night_loop_applies_an_autofocus_before_the_first_frame_written_after_it(frames, marks, order):
    """The one ordering rule of ``watch`` and ``replay`` (pure: no file, no clock)."""
    from types import SimpleNamespace

    from focuswatch.policy import Monitor
    from focuswatch.watch.loop import AFSignal, NightSession, RecordingSink
    from focuswatch.watch import WatchConfig

    sink = RecordingSink()
    night = NightSession(Monitor(), None, watch=WatchConfig(), sink=sink)
    for t in marks:
        night.offer(AFSignal.of(AutofocusMark(time_s=t, source="autofocus-done")), now_s=0.0)
    dark = SimpleNamespace(is_light=False, timestamp=None)          # ignored: no load, no measuring
    for name, capture_s, written_s in sorted(frames, key=lambda f: f[1]):
        night.frame(Path(name), dark, written_s=written_s, load=None, key=name)
    night.release(now_s=0.0)
    assert [("af" if r.what == "autofocus" else r.key) for r in sink.rows] == order
    assert night.monitor.state.n_autofocus == len(marks)
