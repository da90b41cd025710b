"""`focuswatch demo` end to end, and the watch / replay / rules commands as a user runs them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from focuswatch import sim
from focuswatch.cli import main


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def demo_night(tmp_path_factory):
    """One small demo night, watched live (shared by the tests below: it takes ~15 s)."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", "--frames", "30", "--interval-s", "0.05", "--width-px", "512", "--height-px", "384",
                   "--out", str(out), "--json"])
    assert rc == 0
    return out, _json_lines(buf.getvalue())


def test_demo_refocuses_after_the_drift_and_draws_the_timeline(demo_night):
    out, lines = demo_night
    summary = lines[-1]
    assert summary["kind"] == "demo" and summary["schema"] == 1
    from focuswatch.cli.demo import DemoResult
    assert DemoResult.from_dict(summary).to_json() == summary    # the demo's result round-trips
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
    # every autofocus after dusk answers a request made a few frames before it (the green markers):
    # the demo writes a frame every 0.3 s, and the request travels measure -> policy -> the trigger
    # worker (off the measuring path) -> the simulated capture program, which acts before its next frame
    afs = summary["autofocus_frames"]
    assert afs[0] == 0 and len(afs) == summary["n_autofocus"]
    assert all(any(0 < a - r <= 2 for r in summary["refocus_frames"]) for a in afs[1:]), summary


def test_the_demo_prints_one_short_line_per_frame(demo_night):
    """One line per frame within 120 columns; the policy's full reasons in --verbose and --json."""
    from focuswatch.cli.demo import frame_row, table_header
    from focuswatch.policy import Decision
    from focuswatch.watch import Processed

    _, lines = demo_night
    rows = [ln for ln in lines if ln["kind"] == "demo-frame"]
    assert len(rows) == 30 and lines[-1]["kind"] == "demo"
    assert len(table_header()) <= 120
    long = 0
    for r in rows:
        assert r["reasons"] and r["index"] is not None and r["true_defocus_um"] is not None
        p = Processed(Path(r["file"]), r["status"], decision=Decision.from_dict(r))
        truth = {"index": r["index"], "defocus_um": r["true_defocus_um"]}
        short = frame_row(p, truth)
        assert "\n" not in short and len(short) <= 120 and r["decision"] in short
        assert f"{r['true_defocus_um']:+.0f}" in short
        verbose = frame_row(p, truth, verbose=True)
        assert all(reason in verbose for reason in r["reasons"])
        long += any(len(f"{r['decision']}  {reason}") > 120 for reason in r["reasons"])
    assert long > 0  # the reasons really are too long for one line: that is why they moved


def _journal_decisions(journal: Path) -> list:
    from focuswatch.io.journal import Journal

    with Journal(journal) as j:
        return j.decisions()


def test_a_replayed_night_decides_as_the_watched_one(demo_night, tmp_path, capsys):
    """`replay` of the demo's frames and autofocus log gives the watcher's decisions, frame by frame."""
    from focuswatch.cli.demo import DEMO_RIG

    out, _ = demo_night
    watched = _journal_decisions(out / "state" / "journal.sqlite")
    assert len(watched) == 30 and sum(d.decision == "refocus" for d in watched) >= 2
    cfg = tmp_path / "rig.toml"
    cfg.write_text("[rig]\n" + "".join(f"{k} = {v}\n" for k, v in DEMO_RIG.to_dict().items()
                                        if k in ("aperture_mm", "focal_length_mm", "pixel_um", "focuser_step_um")))
    rc = main(["replay", str(out / "frames"), "--config", str(cfg), "--events",
               str(out / "state" / "autofocus-events.jsonl"), "--json"])
    lines = _json_lines(capsys.readouterr().out)
    assert rc == 0
    rows = [r for r in lines if r["kind"] == "decision"]
    assert lines[-1]["kind"] == "summary"
    replayed = {Path(r["file"]).resolve(): r for r in rows}
    assert len(replayed) == 30
    for d in watched:
        r = replayed[Path(d.file).resolve()]
        assert (r["decision"], tuple(r["rules"])) == (d.decision, d.rules), (Path(d.file).name, r["reasons"], d.reasons)
        for key in ("defocus_um", "model_defocus_um", "baseline_hfr_px"):
            want = getattr(d, key)
            assert (r[key] is None) == (want is None) and (want is None or abs(r[key] - want) < 1e-6), key
    n_events = len([ln for ln in (out / "state" / "autofocus-events.jsonl").read_text().splitlines() if ln.strip()])
    # every logged autofocus counts once: the focuser move the policy sees in the frame after the
    # logged event is the same autofocus, a move at a filter change that matches its offset none
    assert lines[-1]["summary"]["n_autofocus"] == n_events


def test_the_report_draws_the_watchers_defocus_and_autofocus_runs(demo_night, tmp_path, capsys):
    """`report` on the demo's frames finds the journal by itself and shows the policy's numbers."""
    from focuswatch.render.report import NightReport, render_html

    out, lines = demo_night
    watched = {str(Path(d.file).resolve()): d for d in _journal_decisions(out / "state" / "journal.sqlite")}
    saved = tmp_path / "night.json"
    rc = main(["report", str(out / "frames"), "-o", str(tmp_path / "night.html"), "--json"])
    text = capsys.readouterr().out
    assert rc == 0
    saved.write_text(text)
    d = json.loads(text)
    assert d["kind"] == "report" and d["decisions_source"] == "journal"
    assert Path(d["journal"]) == out / "state" / "journal.sqlite"
    assert len(d["points"]) == 30
    for p in d["points"]:
        w = watched[str(Path(p["file"]).resolve())]
        assert p["decision"] == w.decision
        assert p["defocus_um"] == w.defocus_um and p["model_defocus_um"] == w.model_defocus_um
    n_af = len(lines[-1]["autofocus_frames"]) - 1             # the dusk one is the simulator's own
    kinds = [e["kind"] for e in d["events"]]
    assert kinds.count("autofocus") == n_af >= 1
    assert kinds.count("refocus decision") == sum(w.decision == "refocus" for w in watched.values())
    # each autofocus sits just before the frame the simulator took after it
    names = sorted(Path(p["file"]).name for p in d["points"])
    for e, idx in zip([e for e in d["events"] if e["kind"] == "autofocus"], lines[-1]["autofocus_frames"][1:]):
        assert Path(e["file"]).name == names[idx]
    # the saved JSON re-renders the same HTML without measuring again
    rep = NightReport.from_dict(json.loads(saved.read_text()))
    html2 = tmp_path / "again.html"
    assert main(["report", "--from-json", str(saved), "-o", str(html2)]) == 0
    assert html2.read_text(encoding="utf-8") == render_html(rep)
    assert "sim-autofocus" in html2.read_text(encoding="utf-8")
    # a re-render never overwrites a frame: not a path named like one, not one inside the session
    frame = sorted((out / "frames").rglob("*.fits"))[0]
    before = frame.read_bytes()
    capsys.readouterr()
    assert main(["report", "--from-json", str(saved), "-o", str(tmp_path / "light.fits")]) == 2
    assert main(["report", "--from-json", str(saved), "-o", str(out / "frames" / "r.html")]) == 2
    assert frame.read_bytes() == before and not (out / "frames" / "r.html").exists()
    assert not (tmp_path / "light.fits").exists() and "Traceback" not in capsys.readouterr().err


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


def test_watch_carries_on_past_bad_frames_and_exits_1_at_the_end(tmp_path, capsys):
    """README: one bad frame never stops `watch`; it is one line naming the file and the
    exit status is 1 at the end. A 4-plane cube and an all-NaN frame beside a good frame."""
    import numpy as np
    from astropy.io import fits

    night = tmp_path / "night"
    night.mkdir()
    frame = sim.render(sim.SimParams(width_px=256, height_px=256, n_stars=30, seed=2, star_flux_min_e=2e4))
    sim.write_fits(night / "a.fits", frame)
    fits.PrimaryHDU(np.zeros((4, 64, 64), np.uint16)).writeto(night / "cube4.fits")
    fits.PrimaryHDU(np.full((64, 64), np.nan, np.float32)).writeto(night / "nan.fits")
    rc = main(["watch", str(night), "--state-dir", str(tmp_path / "state"), "--max-minutes", "0.03",
               "--interval-s", "0.05", "--json"])
    cap = capsys.readouterr()
    lines = _json_lines(cap.out)
    assert rc == 1
    by_file = {Path(ln["file"]).name: ln for ln in lines if ln["kind"] == "decision"}
    assert by_file["a.fits"]["decision"] == "ok"  # the good frame was measured all the same
    assert by_file["cube4.fits"]["status"] == by_file["nan.fits"]["status"] == "error"
    assert lines[-1]["summary"]["n_frames"] == 1
    assert "Traceback" not in cap.err and "2 frame(s) could not be measured" in cap.err


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
    assert [ln["kind"] for ln in lines] == ["decision", "summary"] and {ln["schema"] for ln in lines} == {1}
    assert (tmp_path / "state" / "journal.sqlite").is_file() and (tmp_path / "state" / "state.json").is_file()
