"""Autofocus runs: hyperbola refit, judgement, temperature coefficient, filter offsets, NINA reports, ``af``."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from focuswatch import autofocus as af
from focuswatch.io import afreports
from focuswatch.cli import main
from focuswatch.errors import FrameError
from focuswatch.optics import Rig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nina_af"
#: the rig the fixture reports were made with (fixtures/nina_af/rig.toml)
RIG = Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=3.76, obstruction=0.33, focuser_step_um=1.5)


def vcurve(x0: float, positions, *, rig: Rig = RIG, hfr0_px: float = 2.2, noise: float = 0.03,
           kind: str = "nina", seed: int = 0) -> list[af.AFPoint]:
    """HFR points from the optics: seeing HFR and the defocus disk's HFR in quadrature, with noise."""
    rng = np.random.default_rng(seed)
    k = af.hfr_factor(kind, rig.obstruction)
    pts = []
    for x in positions:
        disk = k * abs((x - x0) * rig.focuser_step_um) / (2 * rig.f_ratio * rig.effective_pixel_um)
        pts.append(af.AFPoint(float(x), float(math.hypot(hfr0_px, disk) * (1 + rng.normal(0, noise)))))
    return pts


def test_fit_recovers_best_focus_within_a_quarter_zone_from_9_noisy_points():
    cfz = RIG.cfz_um()
    errs = []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        x0 = 10000 + rng.uniform(-25, 25)
        pts = vcurve(x0, range(9800, 10201, 50), seed=seed)
        fit = af.fit_hyperbola([p.position_steps for p in pts], [p.hfr_px for p in pts])
        errs.append(abs(fit.best_position_steps - x0) * RIG.focuser_step_um / cfz)
    assert max(errs) < 0.25, max(errs)


def test_outlier_point_is_rejected_and_focus_still_right():
    pts = vcurve(10012, range(9800, 10201, 50), seed=3)
    pts[6] = af.AFPoint(pts[6].position_steps, pts[6].hfr_px * 1.8)  # a gust during one exposure
    fit = af.fit_hyperbola([p.position_steps for p in pts], [p.hfr_px for p in pts])
    assert fit.rejected_positions_steps == (pts[6].position_steps,)
    assert abs(fit.best_position_steps - 10012) * 1.5 < 0.25 * RIG.cfz_um()
    assert fit.r_squared > 0.98 > fit.r_squared_all


def test_fit_with_offset_recovers_the_model():
    xs = np.arange(-5, 6) * 30.0
    ys = af.hyperbola(xs, 1.5, 60.0, 12.0, 0.8)
    fit = af.fit_hyperbola(xs, ys, with_offset=True)
    assert fit.with_offset
    assert fit.best_position_steps == pytest.approx(12.0, abs=0.5)
    assert fit.min_hfr_px == pytest.approx(2.3, abs=0.02)
    assert fit.slope_px_per_step == pytest.approx(1.5 / 60.0, rel=0.05)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_points_is_a_fit_error(n):
    with pytest.raises(af.FitError, match="at least 3"):
        af.fit_hyperbola(list(range(n)), [2.0] * n)


def test_good_run_is_judged_good_with_the_expected_slope():
    r = af.judge_run(af.AFRun(points=tuple(vcurve(10000, range(9800, 10201, 50), noise=0.01))), RIG)
    assert r.verdict == "good", r.problems
    assert r.minimum_inside and r.n_left >= 3 and r.n_right >= 3
    assert r.slope_ratio == pytest.approx(1.0, abs=0.1)
    assert r.step_um == 75.0 and r.step_cfz == pytest.approx(75.0 / RIG.cfz_um())
    assert 2.0 < r.outer_ratio_left < 4.0


def test_wrong_step_size_setting_is_detected_with_the_implied_step():
    truth = Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=3.76, obstruction=0.33, focuser_step_um=3.0)
    pts = vcurve(10000, range(9800, 10201, 50), rig=truth, noise=0.01)
    r = af.judge_run(af.AFRun(points=tuple(pts)), RIG)  # the user's setting says 1.5 um/step
    assert r.slope_ratio == pytest.approx(2.0, rel=0.12)
    assert r.implied_step_um == pytest.approx(3.0, rel=0.12)
    assert any("step size setting" in p for p in r.problems)
    assert r.verdict == "marginal"


def test_without_the_step_size_the_judge_asks_for_it_alone_and_says_what_the_curve_implies():
    """Frames' headers give the f-ratio and pixel size (FOCRATIO, XPIXSZ) but rarely the
    focuser's step in µm. Closed-form V-curve: an annulus of outer radius Δ/(2N) with
    obstruction 0.33 (true HFR R·sqrt((1+ε²)/2)) in quadrature with a 2.2 px seeing HFR, at
    3.0 µm per step. The judge must ask only for the missing step size, and the slope of the
    asymptote gives the step back."""
    step_um, eps, n_ratio, pix = 3.0, 0.33, 5.0, 3.76
    pts = []
    for x in range(9700, 10301, 75):
        r_px = abs((x - 10000) * step_um) / (2 * n_ratio * pix)
        pts.append(af.AFPoint(float(x), math.hypot(2.2, r_px * math.sqrt((1 + eps ** 2) / 2))))
    rig = Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=pix, obstruction=eps)  # no focuser_step_um
    r = af.judge_run(af.AFRun(points=tuple(pts)), rig)
    msg = [p for p in r.problems if "asymptote not checked" in p]
    assert len(msg) == 1
    assert "focuser step size" in msg[0] and "f-ratio" not in msg[0] and "pixel size" not in msg[0]
    assert r.implied_step_um == pytest.approx(step_um, rel=0.06)
    assert f"{r.implied_step_um:.2f} µm/step" in msg[0]
    # with nothing known, all three are asked for
    r0 = af.judge_run(af.AFRun(points=tuple(pts)), Rig())
    assert any("f-ratio" in p and "pixel size" in p and "step size" in p for p in r0.problems)


def test_narrow_sweep_is_flagged_and_a_bigger_step_advised():
    pts = vcurve(10000, range(9920, 10081, 20), noise=0.005)  # outer points barely grow
    r = af.judge_run(af.AFRun(points=tuple(pts)), RIG)
    assert max(r.outer_ratio_left, r.outer_ratio_right) < 2.0
    assert any("too narrow" in p for p in r.problems)
    assert r.recommended_step_steps > 20 * 1.5
    assert any("step size" in a for a in r.advice)


def test_minimum_outside_the_sweep_is_bad():
    pts = vcurve(10300, range(9800, 10201, 50), noise=0.01)
    r = af.judge_run(af.AFRun(points=tuple(pts)), RIG)
    assert r.verdict == "bad" and r.minimum_inside is False
    assert any("outside the sampled positions" in p for p in r.problems)


def test_two_point_run_is_bad_with_a_message():
    r = af.judge_run(af.AFRun(points=(af.AFPoint(1, 3.0), af.AFPoint(2, 2.5))), RIG)
    assert r.verdict == "bad" and r.fit is None
    assert "needs at least 3" in r.problems[0]


def _temperature_runs(coef_steps_per_c: float, temps, filter_name="L", base=10000.0, seed=0,
                      scatter_steps=4.0) -> list[af.AFRun]:
    rng = np.random.default_rng(seed)
    runs = []
    for i, t in enumerate(temps):
        x0 = base + coef_steps_per_c * (t - 10.0) + rng.normal(0, scatter_steps)
        start = round(x0 / 50) * 50
        pts = vcurve(x0, range(start - 200, start + 201, 50), seed=seed * 100 + i)
        runs.append(af.AFRun(points=tuple(pts), filter_name=filter_name, temp_c=float(t), source=f"run{i}"))
    return runs


def test_temperature_coefficient_within_10_percent_from_8_runs_with_scatter():
    truth = -12.0  # steps/C = -18 um/C with 1.5 um steps: an aluminium tube
    runs = _temperature_runs(truth, np.linspace(2.0, 14.0, 8), seed=5)
    runs.append(af.AFRun(points=(af.AFPoint(1, 3.0), af.AFPoint(2, 2.5)), filter_name="L", temp_c=8.0))
    s = af.analyze_runs(runs, RIG)
    c = {c.filter_name: c for c in s.coefficients}["L"]
    assert c.n_runs == 8 and c.n_dropped == 1
    assert c.slope_steps_per_c == pytest.approx(truth, rel=0.10)
    assert c.slope_um_per_c == pytest.approx(truth * 1.5, rel=0.10)
    assert c.slope_err_steps_per_c < 1.5 and c.r_squared > 0.9


def test_filter_offsets_at_a_common_temperature():
    runs = (_temperature_runs(-12.0, [4, 8, 12], "L", 10000, seed=1, scatter_steps=1)
            + _temperature_runs(-12.0, [5, 11], "R", 10030, seed=2, scatter_steps=1)
            + _temperature_runs(-12.0, [6, 9], "Ha", 10063, seed=3, scatter_steps=1))
    s = af.analyze_runs(runs, RIG, reference_temp_c=10.0)
    off = {o.filter_name: o for o in s.offsets}
    assert s.reference_filter == "L" and s.reference_temp_c == 10.0
    assert off["L"].offset_steps == 0.0
    assert off["R"].offset_steps == pytest.approx(30, abs=6)
    assert off["Ha"].offset_steps == pytest.approx(63, abs=6)
    assert s.common_slope_steps_per_c == pytest.approx(-12.0, rel=0.15)
    text = af.summary_text(s)
    assert "Focus Offset" in text and "Ha" in text


def test_summary_round_trips_through_json():
    s = af.analyze_runs(_temperature_runs(-10.0, [3, 6, 9, 12], seed=4), RIG)
    back = af.AFSummary.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s


# --------------------------------------------------------------------------- NINA reports

def test_reads_the_nina_fixtures():
    runs, skipped = afreports.read_reports(sorted(FIXTURES.glob("*.json")))
    assert not skipped and len(runs) == 4
    good, ha, failed, hocus = runs
    assert good.filter_name == "L" and good.temp_c == 9.8 and good.hfr_kind == "nina"
    assert good.fitting == "TRENDHYPERBOLIC" and good.reported_position_steps == 10433
    assert good.duration_s == pytest.approx(161.3528812)
    assert ha.temp_c is None and math.isnan(ha.points[-1].hfr_px)  # "NaN" strings
    assert hocus.final_hfr_px == pytest.approx(2.402) and "OuterCropRatio" in hocus.region
    assert failed.reported_r_squared == pytest.approx(0.5127)


def test_fixture_runs_are_judged():
    runs, _ = afreports.read_reports(sorted(FIXTURES.glob("*.json")))
    s = af.analyze_runs(runs, RIG)
    verdicts = [r.verdict for r in s.runs]
    assert verdicts == ["good", "good", "bad", "good"]
    for r in s.runs:
        if r.verdict == "good":  # our refit agrees with NINA's within a few steps
            assert abs(r.shift_from_reported_steps) < 8
            assert r.slope_ratio == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"Filter": "L"}', "no MeasurePoints"),
    ("[1, 2]", "not an object"),
])
def test_bad_reports_raise_frame_error(tmp_path, content, message):
    p = tmp_path / "report.json"
    p.write_text(content)
    with pytest.raises(FrameError, match=message):
        afreports.read_nina_report(p)


def test_cli_af_folder_json_and_plot(tmp_path, capsys):
    png = tmp_path / "af.png"
    rc = main(["af", str(FIXTURES), "--rig", str(FIXTURES / "rig.toml"), "--json", "--plot", str(png)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [r["verdict"] for r in out["runs"]] == ["good", "good", "bad", "good"]
    assert out["runs"][0]["step_um"] == 75.0 and out["runs"][0]["best_position_steps"] > 10400
    assert {o["filter_name"] for o in out["offsets"]} == {"Ha", "L", "R"}
    assert png.stat().st_size > 10000 and png.read_bytes()[:4] == b"\x89PNG"


def test_cli_folder_skips_a_bad_report_but_a_named_one_fails(tmp_path, capsys):
    folder = tmp_path / "AutoFocus"
    folder.mkdir()
    shutil.copy(FIXTURES / "2024-03-09--21-02-11--Default.json", folder)
    (folder / "2024-03-10--00-00-00--Default.json").write_text('{"Version": 2, "MeasurePoi')
    assert main(["af", str(folder)]) == 0
    out = capsys.readouterr()
    assert "skipped" in out.out and "not valid JSON" in out.out
    assert main(["af", str(folder / "2024-03-10--00-00-00--Default.json")]) == 1
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "Traceback" not in err


def test_cli_two_point_report_fails_clearly(tmp_path, capsys):
    p = tmp_path / "two.json"
    p.write_text(json.dumps({"Filter": "L", "MeasurePoints": [{"Position": 100, "Value": 3.1, "Error": 0.1},
                                                               {"Position": 150, "Value": 2.9, "Error": 0.1}]}))
    assert main(["af", str(p)]) == 1
    cap = capsys.readouterr()
    assert "2 usable points" in cap.err and "Traceback" not in cap.err


def test_cli_blank_frames_fail_in_one_line_naming_the_file(tmp_path, capsys):
    from astropy.io import fits
    for i in range(3):
        fits.PrimaryHDU(np.full((32, 32), 100 + i, dtype=np.uint16)).writeto(tmp_path / f"f{i}.fits")
    assert main(["af", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "blank image" in err and "f0.fits" in err and "Traceback" not in err


def _star_frames(folder, hfr_by_frame, *, focpos=None, key=None, shuffle_names=False):
    """Frames of one Gaussian star whose HFR follows ``hfr_by_frame`` (truth by construction:
    a Gaussian's half-flux radius is sigma * sqrt(2 ln 2)); DATE-OBS one minute apart."""
    from astropy.io import fits
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:96, :96]
    names = []
    for i, hfr in enumerate(hfr_by_frame):
        sigma = hfr / math.sqrt(2 * math.log(2))
        img = rng.normal(300, 4, (96, 96)) + 4e4 / (2 * math.pi * sigma ** 2) * np.exp(
            -((xx - 47.3) ** 2 + (yy - 48.6) ** 2) / (2 * sigma ** 2))
        h = fits.Header({"DATE-OBS": f"2024-01-17T20:{10 + i:02d}:00", "EXPTIME": 3.0})
        if focpos is not None:
            h["FOCPOS"] = focpos[i]
        if key is not None:
            h[key[0]] = key[1][i]
        name = f"z{len(hfr_by_frame) - i:02d}.fits" if shuffle_names else f"f{i:02d}.fits"
        fits.PrimaryHDU(img.astype(np.uint16), header=h).writeto(folder / name)
        names.append(name)
    return names


V_HFR = [6.0, 4.6, 3.4, 2.4, 1.9, 2.4, 3.4, 4.6, 6.0]  # minimum at the 5th frame


def test_frames_without_focuser_position_use_the_capture_order(tmp_path, capsys):
    # the names run backwards: the order must come from DATE-OBS, not the names
    _star_frames(tmp_path, V_HFR, shuffle_names=True)
    assert main(["af", str(tmp_path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    run = d["runs"][0]
    assert run["run"]["position_source"] == "frame_order"
    assert run["fit"]["best_position_steps"] == pytest.approx(5.0, abs=0.3)
    assert any("frame numbers" in p for p in run["problems"])


def test_one_frame_with_an_unreadable_focpos_is_left_out_not_the_run(tmp_path, capsys):
    """FOCPOS = 'abc' on one frame of nine (a driver hiccup) threw the whole run back to frame
    numbers ("no focuser position in the headers"). That frame is left out and named, exit 1,
    and the other eight give best focus in steps (truth by construction: the 5th frame)."""
    steps = [1000 + 50 * i for i in range(len(V_HFR))]
    names = _star_frames(tmp_path, V_HFR, focpos=steps)
    from astropy.io import fits
    fits.setval(tmp_path / names[2], "FOCPOS", value="abc")
    assert main(["af", str(tmp_path), "--json"]) == 1
    cap = capsys.readouterr()
    run = json.loads(cap.out.splitlines()[0])["runs"][0]
    assert run["run"]["position_source"] == "header" and len(run["run"]["points"]) == 8
    assert run["fit"]["best_position_steps"] == pytest.approx(steps[4], abs=10)
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and names[2] in err[0] and "FOCPOS" in err[0]


def test_positions_from_a_list_a_file_or_a_named_keyword(tmp_path, capsys):
    steps = [1000 + 50 * i for i in range(len(V_HFR))]
    _star_frames(tmp_path, V_HFR, key=("MYFOCUS", steps))
    expected = steps[4]
    assert main(["af", str(tmp_path), "--json", "--positions", ",".join(str(v) for v in steps)]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert run["run"]["position_source"] == "list"
    assert run["fit"]["best_position_steps"] == pytest.approx(expected, abs=10)
    listing = tmp_path / "positions.txt"
    listing.write_text("# focuser steps\n" + "\n".join(str(v) for v in steps) + "\n")
    assert main(["af", str(tmp_path), "--json", "--positions", str(listing)]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["fit"]["best_position_steps"] == pytest.approx(
        expected, abs=10)
    assert main(["af", str(tmp_path), "--json", "--position-key", "myfocus"]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert run["run"]["position_source"] == "keyword"
    assert run["fit"]["best_position_steps"] == pytest.approx(expected, abs=10)


def test_a_frame_whose_pixels_cannot_be_read_is_named_once_and_fails_the_exit_status(tmp_path, capsys):
    """Its header reads (so it joins the sweep) but its pixels are cut short: the sweep is still
    fitted from the other frames, the frame is named once, and the exit status is 1 (a clean
    sweep of the same frames exits 0, so the 1 is the bad frame's)."""
    names = _star_frames(tmp_path, V_HFR, focpos=[1000 + 50 * i for i in range(len(V_HFR))])
    assert main(["af", str(tmp_path), "--json"]) == 0
    capsys.readouterr()
    cut = tmp_path / names[-1]
    cut.write_bytes(cut.read_bytes()[:2 * 2880 + 100])  # header intact, most pixels gone
    assert main(["af", str(tmp_path), "--json"]) == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and sum(names[-1] in ln for ln in cap.err.splitlines()) == 1
    doc = json.loads(cap.out.splitlines()[-1])
    assert doc["runs"][0]["fit"]["best_position_steps"] == pytest.approx(1200, abs=10)
    assert [Path(s["file"]).name for s in doc["skipped"]] == [names[-1]]


@pytest.mark.parametrize("args, words", [(["--positions", "1,2,3"], "3 position(s) for 9 frames"),
                                          (["--positions", "1,2,x"], "'x' is not a number"),
                                          (["--position-key", "NOSUCHKEY"], "NOSUCHKEY")])
def test_bad_positions_are_refused_in_one_line(tmp_path, capsys, args, words):
    _star_frames(tmp_path, V_HFR)
    assert main(["af", str(tmp_path)] + args) in (1, 2)
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_vcurve_from_simulated_frames(tmp_path, capsys):
    sim = pytest.importorskip("focuswatch.sim")
    rig = sim.DEFAULT_RIG
    x0 = 10013
    for i, pos in enumerate(range(9840, 10161, 40)):
        p = sim.SimParams(width_px=320, height_px=320, n_stars=25, seed=3, focuser_pos=pos,
                          defocus_um=(pos - x0) * rig.focuser_step_um, frame_nr=i + 1,
                          date_obs=f"2026-11-21T22:{10 + i:02d}:03.000")
        sim.write_fits(tmp_path / f"af_{i:02d}.fits", sim.render(p))
    assert main(["af", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    run = out["runs"][0]
    assert run["run"]["hfr_kind"] == "true" and run["n_points"] == 9
    assert abs(run["best_position_steps"] - x0) * rig.focuser_step_um < 0.25 * rig.cfz_um()
    assert run["slope_ratio"] == pytest.approx(1.0, abs=0.15)  # FOCUSSZ and optics from the headers


def test_frames_are_measured_through_the_progress_the_caller_passes(tmp_path):
    """I/O draws no bar itself (no import of render/): the caller's progress wraps the frames
    measured in this process, each once, and the V-curve is that of the Gaussian stars drawn."""
    steps = [1000 + 50 * i for i in range(len(V_HFR))]
    _star_frames(tmp_path, V_HFR, focpos=steps)
    seen = []

    def progress(items):
        for it in items:
            seen.append(it[0][0].name)
            yield it

    runs = afreports.runs_from_frames(sorted(tmp_path.glob("*.fits")), progress=progress)
    assert sorted(seen) == [f"f{i:02d}.fits" for i in range(len(V_HFR))]
    assert [p.hfr_px for p in runs[0].points] == pytest.approx(V_HFR, rel=0.05)
