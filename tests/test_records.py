"""One schema: every result type survives JSON and comes back equal; every JSON line is tagged."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from focuswatch import sim
from focuswatch.cli import main
from focuswatch.model.records import SCHEMA_VERSION, Record, dumps, json_safe


def _through_json(d):
    return json.loads(dumps(d))


@pytest.fixture(scope="module")
def small_night(tmp_path_factory):
    """Four small simulated frames of a drifting night (a filter change on the last)."""
    night = tmp_path_factory.mktemp("rec") / "night"
    base = sim.SimParams(width_px=256, height_px=256, n_stars=40, seed=4, star_flux_min_e=2e4, rig=sim.DEFAULT_RIG)
    plan = sim.NightPlan(n_frames=4, filter_change=(3, "R"), seeing_jitter_pct=2.0)
    sim.write_night(night, sim.night_frames(base, plan, sim.SimFocuser(), seed=1))
    return night


def test_json_safe_writes_nan_as_null_and_numpy_as_python():
    import numpy as np

    d = json_safe({"a": float("nan"), "b": np.float32(1.5), "c": (np.int64(2), float("inf")), "p": Path("x")})
    assert d == {"a": None, "b": 1.5, "c": [2, None], "p": "x"}
    assert dumps({"x": float("-inf")}) == '{"x": null}'


def test_pipeline_results_round_trip(small_night):
    """FrameStats, Diagnosis, FrameRecord, Decision, AutofocusMark, PolicyState, Summary."""
    from focuswatch.diagnose import Diagnosis
    from focuswatch.policy import AutofocusMark, Decision, FrameRecord, Monitor, PolicyState, Summary, summarize
    from focuswatch.io.assess import assess_path
    from focuswatch.pipeline import AssessContext, FrameAssessment
    from focuswatch.stars import FrameStats

    mon = Monitor(rig=sim.DEFAULT_RIG)
    mon.autofocus(AutofocusMark(time_s=1.0e9, source="nina-report", filter_name="L", temp_c=9.5, position=10000))
    decisions = []
    for p in sorted(small_night.glob("*.fits")):
        a = assess_path(p, sim.DEFAULT_RIG, AssessContext())
        assert a.stats.n_stars > 10 and a.diagnosis is not None
        assert FrameStats.from_dict(_through_json(a.stats.to_dict())).to_dict() == _through_json(a.stats.to_dict())
        assert _through_json(Diagnosis.from_dict(_through_json(a.diagnosis.to_dict())).to_dict()) == \
            _through_json(a.diagnosis.to_dict())
        assert FrameRecord.from_dict(_through_json(a.record.to_dict())) == a.record
        whole = _through_json(a.to_dict())
        assert _through_json(FrameAssessment.from_dict(whole).to_dict()) == whole
        assert FrameAssessment.from_dict(whole).rig == a.rig
        d = mon.observe(a.record, rig=a.rig)
        assert Decision.from_dict(_through_json(d.to_dict())) == d
        decisions.append(d)
    assert decisions[-1].decision == "refocus" and "filter_change" in decisions[-1].rules
    assert PolicyState.from_dict(_through_json(mon.state.to_dict())) == mon.state
    s = summarize(decisions, 1)
    assert Summary.from_dict(_through_json(s.to_dict())) == s
    m = AutofocusMark(time_s=2.5, source="x", position=3)
    assert AutofocusMark.from_dict(_through_json(m.to_dict())) == m


def test_state_file_records_round_trip():
    from focuswatch.io import statefile as sf

    st = sf.State(refocus_due=True, reason="drift", since="2026-11-21T22:00:00.000+00:00",
                  last_frame=sf.LastFrame("a.fits", hfr_px=2.5, defocus_um=float("nan"), decision="refocus"),
                  last_autofocus=sf.AutofocusEvent("2026-11-21T21:00:00.000+00:00", position=10000, temp_c=9.0),
                  last_trigger=sf.TriggerNote("nina-api", True, "started", n_attempts=2), filter_name="L", pid=42)
    assert isinstance(st, Record)
    back = sf.State.from_dict(_through_json(st.to_dict()))
    assert back.last_frame.defocus_um is None  # NaN was written as null
    assert back == sf.State(**{**st.__dict__, "last_frame": sf.LastFrame("a.fits", hfr_px=2.5, decision="refocus")})


def test_siril_seq_file_round_trips():
    from focuswatch.siril import SeqFile, parse_seq

    text = ("#Siril sequence file. Contains list of files (images), selection, registration data and statistics\n"
            "#S 'sequence_name' start_index nb_images nb_selected fixed_len reference_image version\n"
            "S 'r_light_' 1 2 2 5 0 3\nL 1\nI 1 1\nI 2 1\n"
            "R0 0.000 0.000 2.61 2.70 0.912 0.0\nR0 1.250 -0.750 2.95 3.10 0.874 0.0\n")
    seq = parse_seq(text)
    assert seq.version == 3 and len(seq.images) == 2 and seq.images[1].fwhm_px == pytest.approx(2.95)
    assert SeqFile.from_dict(_through_json(seq.to_dict())) == seq


def test_night_report_round_trips_and_re_renders(small_night):
    from focuswatch.render import report

    rep = report.build_report(small_night, rig=sim.DEFAULT_RIG, progress=False, journal_path=None)
    assert rep.decisions_source == "policy" and [p.decision for p in rep.points][-1] == "refocus"
    d = _through_json(rep.to_dict())
    back = report.NightReport.from_dict(d)
    assert _through_json(back.to_dict()) == d
    assert back.points == rep.points and back.events == rep.events and back.filters == rep.filters
    assert report.render_html(back) == report.render_html(rep)
    assert report.render_text(back) == report.render_text(rep)


def test_from_dict_is_strict_about_what_matters():
    from focuswatch.policy import Decision, FrameRecord

    with pytest.raises(ValueError, match="missing field.*time_s"):
        FrameRecord.from_dict({"file": "a.fits"})
    with pytest.raises(ValueError, match="FrameRecord.hfr_px: expected a number"):
        FrameRecord.from_dict({"file": "a.fits", "time_s": 1.0, "hfr_px": "2.5"})
    with pytest.raises(ValueError, match="n_stars: expected a whole number"):
        FrameRecord.from_dict({"file": "a.fits", "time_s": 1.0, "n_stars": 2.5})
    with pytest.raises(ValueError, match="reasons: expected a list"):
        Decision.from_dict({"file": "a", "decision": "ok", "reasons": "tight"})
    with pytest.raises(ValueError, match="schema 99"):
        Decision.from_dict({"kind": "decision", "schema": SCHEMA_VERSION + 98, "file": "a", "decision": "ok"})
    # unknown keys (a newer writer's, or the line's tags) are ignored; NaN written as null reads back
    r = FrameRecord.from_dict({"kind": "x", "file": "a", "time_s": 1.0, "new_field": 3, "schema": SCHEMA_VERSION})
    assert r.file == "a"
    from focuswatch.render.report import NightReport
    with pytest.raises(ValueError, match="not a 'report'"):
        NightReport.from_dict({"kind": "frame", "schema": 1})


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_json_line_is_tagged(small_night, tmp_path, capsys):
    """`--json` of every command: each line says what it is (`kind`) and its `schema`."""
    frames = sorted(str(p) for p in small_night.glob("*.fits"))
    state = tmp_path / "state"
    runs = {
        "calc": (["calc", "--f-ratio", "5", "--pixel-um", "3.76", "--json"], {"zone"}),
        "measure": (["measure", "--json", *frames[:2]], {"frame"}),
        "diagnose": (["diagnose", "--json", *frames[:2]], {"diagnosis", "night"}),
        "sim": (["sim", str(tmp_path / "s"), "--width", "128", "--height", "128", "--stars", "10", "--json"],
                {"sim-frame"}),
        "rules": (["rules", "--json"], {"rules"}),
        "replay": (["replay", str(small_night), "--json"], {"decision", "summary"}),
        "autofocus-done": (["autofocus-done", "--state-dir", str(state), "--json"], {"autofocus-done"}),
        "check": (["check", "--state-dir", str(state), "--json"], {"check"}),
        "report": (["report", str(small_night), "--no-journal", "-o", str(tmp_path / "r.html"), "--json"],
                   {"report"}),
    }
    for name, (argv, kinds) in runs.items():
        rc = main(argv)
        lines = _lines(capsys.readouterr().out)
        assert rc == 0 and lines, name
        assert {ln["kind"] for ln in lines} == kinds, name
        assert all(ln["schema"] == SCHEMA_VERSION for ln in lines), name
    # documented fields kept: the wrapped objects of diagnose/replay and measure's n_stars
    main(["diagnose", "--json", *frames[:2]])
    night = _lines(capsys.readouterr().out)[-1]
    assert night["kind"] == "night" and night["night"]["n_frames"] == 2
    assert math.isfinite(_lines((main(["measure", "--json", frames[0]]), capsys.readouterr().out)[1])[0]["hfr_px"])


def test_without_a_journal_the_report_decides_as_replay(small_night):
    """No journal: the report runs the same pipeline and policy as `replay` (no autofocus events)."""
    from focuswatch.render import report
    from focuswatch.config import Config
    from focuswatch.watch import replay as replay_night

    rep = report.build_report(small_night, rig=sim.DEFAULT_RIG, progress=False, journal_path=None)
    rows, _ = replay_night(small_night, config=Config(rig=sim.DEFAULT_RIG))
    replayed = {str(r.path): r.decision for r in rows}
    assert len(replayed) == len(rep.points) == 4
    for p in rep.points:
        d = replayed[p.file]
        assert (p.decision, p.defocus_um, p.model_defocus_um) == (d.decision, d.defocus_um, d.model_defocus_um)


def test_records_and_settings_share_one_type_reflector(tmp_path):
    """`Record.from_dict` and the TOML sections check values with the same `records.revive`: the
    JSON side takes any number, the settings side only finite ones of sane size, and each
    names where the value was (`Class.field`, the file and `[section] key`)."""
    from focuswatch import config as config_mod
    from focuswatch.config import MAX_MAGNITUDE, load_config, section_to_dataclass
    from focuswatch.errors import ConfigError
    from focuswatch.policy import FrameRecord, PolicyConfig
    from focuswatch.model.records import TypeMismatch, revive

    assert not hasattr(config_mod, "_type_ok")                       # the second reflector is gone
    # one function, two strictness levels
    assert revive([1, 2.0], tuple[float, ...], "x") == (1.0, 2.0)
    assert revive(1e20, float, "x") == 1e20
    with pytest.raises(TypeMismatch, match=r"^\[policy\] x: expected a finite number"):
        revive(1e20, float, "[policy] x", limit=MAX_MAGNITUDE)
    with pytest.raises(TypeMismatch, match=r"x\[1\]: expected a finite number"):
        revive([1.0, math.nan], tuple[float, ...], "x", limit=MAX_MAGNITUDE)
    with pytest.raises(TypeMismatch, match="a list of 2"):
        revive([1.0, 2.0, 3.0], tuple[float, float], "band")
    # JSON's Infinity in a whole-number field was an OverflowError escaping from_dict
    with pytest.raises(ValueError, match="FrameRecord.n_stars: expected a whole number"):
        FrameRecord.from_dict(json.loads('{"file": "a", "time_s": 1.0, "n_stars": Infinity}'))
    # the settings side keeps its messages: the file, `[section] key = value`, what was expected
    p = tmp_path / "rig.toml"
    p.write_text("[policy]\nconsecutive_frames = 2.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value) == f"{p}: [policy] consecutive_frames = 2.5: expected a whole number (at most 1e+09 in size)"
    assert section_to_dataclass(PolicyConfig, {"consecutive_frames": 3.0}, "policy").consecutive_frames == 3
    p.write_text("[diagnose]\nfocus_miss_cfz_band = [0.5, nan]\n")
    with pytest.raises(ConfigError, match=r"\[diagnose\] focus_miss_cfz_band = \[0.5, nan\]: expected"):
        load_config(p)


def test_mad_to_sigma_is_the_gaussian_quartile_and_astropys():
    """One home for 1.4826 (stars' robust scatter, the Bahtinov spike fit): 1 / Phi^-1(3/4)."""
    import numpy as np
    from astropy.stats import mad_std
    from scipy.stats import norm

    from focuswatch.model.numerics import MAD_TO_SIGMA
    from focuswatch.stars.summary import _mad_std

    assert MAD_TO_SIGMA == pytest.approx(1.0 / norm.ppf(0.75), rel=1e-12)
    x = np.random.default_rng(3).normal(5.0, 2.0, 501)
    assert _mad_std(x) == pytest.approx(float(mad_std(x)), rel=1e-12)


def test_median_in_place_is_numpys_median_bit_for_bit():
    """The fast median (one partition) against numpy's own, on float32/float64 arrays of 1-5000
    values with ties, signed zeros, NaN and 10^+-3 scales: the same bits (NaN: NaN), same dtype.
    Also the stars' noise figure and the frame medians built on it."""
    import numpy as np

    from focuswatch.model.numerics import finite_median, median_in_place
    from focuswatch.stars.detect import _MAD_TO_SIGMA, _robust_rms

    rng = np.random.default_rng(11)
    for trial in range(600):
        n = int(rng.integers(1, 5000))
        a = (rng.normal(0.0, 3.0, n) * 10.0 ** rng.uniform(-3, 3)).astype([np.float32, np.float64][trial % 2])
        if trial % 5 == 0:
            a = np.round(a)
        if trial % 7 == 0:
            a[: n // 3] = -0.0
        if trial % 9 == 0:
            a[int(rng.integers(0, n))] = np.nan
        ref, got = np.median(a), median_in_place(a.copy())
        assert np.asarray(got).dtype == np.asarray(ref).dtype
        assert np.asarray(got).tobytes() == np.asarray(ref).tobytes() or (np.isnan(ref) and np.isnan(got)) or (
            ref == 0 and got == 0), (trial, ref, got)
    assert finite_median([3.0, None, float("nan"), 1.0, 2.0, 8.0]) == 2.5
    sub = rng.normal(0.0, 4.0, (300, 500)).astype(np.float32)
    d = (sub[:, 2:] - sub[:, :-2]).ravel()
    truth = float(_MAD_TO_SIGMA * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))  # numpy's medians
    assert _robust_rms(sub) == pytest.approx(truth, rel=1e-7) and _robust_rms(sub) == pytest.approx(4.0, rel=0.02)
