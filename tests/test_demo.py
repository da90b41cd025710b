"""`focuswatch demo` end to end, and the watch / replay / rules commands as a user runs them."""
from __future__ import annotations

import json
from pathlib import Path

from focuswatch import sim
from focuswatch.cli import main


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_demo_refocuses_after_the_drift_and_draws_the_timeline(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--frames", "30", "--interval-s", "0.05", "--width-px", "512", "--height-px", "384",
               "--out", str(out), "--json"])
    assert rc == 0
    summary = _json_lines(capsys.readouterr().out)[-1]
    assert summary["n_measured"] == 30
    drift_refocus = [i for i in summary["refocus_frames"] if i < int(0.8 * 30)]   # before the filter change
    assert drift_refocus, summary
    assert set(summary["refocus_rules"]) & {"temperature", "drift", "consecutive"}
    assert summary["n_autofocus"] >= 2                        # dusk + at least one asked for by the watcher
    png = Path(summary["png"])
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert Path(summary["journal"]).is_file()
    assert summary["max_true_defocus_cfz"] > 0.3             # the night did drift
    # no request from the image rules while the true defocus was under 0.25 CFZ (seeing jitter)
    assert summary["false_refocus_frames"] == [], summary
    # every autofocus after dusk answers a request made one or two frames before it (the green markers)
    afs = summary["autofocus_frames"]
    assert afs[0] == 0 and len(afs) == summary["n_autofocus"]
    assert all(any(0 < a - r <= 2 for r in summary["refocus_frames"]) for a in afs[1:]), summary


def test_replay_and_rules_commands(tmp_path, capsys):
    night = tmp_path / "night"
    base = sim.SimParams(width_px=256, height_px=256, n_stars=30, seed=4, star_flux_min_e=2e4,
                         rig=sim.DEFAULT_RIG)
    plan = sim.NightPlan(n_frames=6, filter_change=(4, "R"), seeing_jitter_pct=2.0)
    sim.write_night(night, sim.night_frames(base, plan, sim.SimFocuser(), seed=1))
    (night / "notes.txt").write_text("not a frame")
    rc = main(["replay", str(night), "--json"])
    lines = _json_lines(capsys.readouterr().out)
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert rc == 0 and len(rows) == 6
    assert all({"file", "hfr_px", "defocus_um", "decision", "reasons"} <= set(r) for r in rows)
    assert [r["decision"] for r in rows][4] == "refocus" and "filter_change" in rows[4]["rules"]
    assert summary["n_frames"] == 6 and summary["n_refocus"] >= 1
    assert main(["rules", "--json"]) == 0
    names = [r["name"] for r in _json_lines(capsys.readouterr().out)[0]["rules"]]
    assert {"drift", "consecutive", "temperature", "time", "filter_change", "seeing", "clouds"} <= set(names)


def test_bad_input_is_one_line_and_an_exit_code(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err and "Traceback" not in err
    cfg = tmp_path / "fw.toml"
    cfg.write_text("[policy]\ntemperature_delta_c = -3\n")
    assert main(["rules", "--config", str(cfg)]) == 2
    assert "[policy] temperature_delta_c" in capsys.readouterr().err


def test_watch_command_runs_for_a_while_and_stops(tmp_path, capsys):
    night = tmp_path / "night"
    night.mkdir()
    frame = sim.render(sim.SimParams(width_px=256, height_px=256, n_stars=30, seed=2, star_flux_min_e=2e4))
    sim.write_fits(night / "a.fits", frame)
    rc = main(["watch", str(night), "--state-dir", str(tmp_path / "state"), "--max-minutes", "0.03",
               "--interval-s", "0.05", "--json"])
    lines = _json_lines(capsys.readouterr().out)
    assert rc == 0
    assert lines[0]["file"].endswith("a.fits") and lines[0]["decision"] == "ok"
    assert lines[-1]["summary"]["n_frames"] == 1
    assert (tmp_path / "state" / "journal.sqlite").is_file() and (tmp_path / "state" / "state.json").is_file()
