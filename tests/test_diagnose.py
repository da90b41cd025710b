"""Diagnosis against the simulator's truth: labels, defocus, donuts, the night's story, the CLI."""
from __future__ import annotations

import dataclasses
import math
import json
from collections import Counter

import numpy as np
import pytest

from focuswatch import calibration, diagnose, optics, sim, stars
from focuswatch.cli import main
from focuswatch.diagnose.profile import _profile_table
from focuswatch.diagnose.scores import _dew_score
from focuswatch.optics import Rig
from focuswatch.sim import NightPlan, SimFocuser, SimParams

RIG = Rig(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76)  # sim.DEFAULT_RIG, f/5
CFZ_UM = RIG.cfz_um()  # 67.1 um
SIZE = 640

#: label -> (mild, clear, severe) simulator settings
CASES: dict[str, tuple[dict, dict, dict]] = {
    "in_focus": (dict(), dict(seeing_fwhm_arcsec=2.0), dict(defocus_um=15.0)),
    "focus_miss": (dict(defocus_um=1.0 * CFZ_UM), dict(defocus_um=2.5 * CFZ_UM), dict(defocus_um=6.0 * CFZ_UM)),
    "poor_seeing": (dict(seeing_fwhm_arcsec=3.8), dict(seeing_fwhm_arcsec=4.8), dict(seeing_fwhm_arcsec=6.0)),
    "backfocus": (dict(curvature_um=80.0), dict(curvature_um=150.0), dict(curvature_um=300.0)),
    "tilt": (dict(tilt_x_um=80.0), dict(tilt_x_um=150.0, tilt_y_um=50.0), dict(tilt_x_um=-200.0, tilt_y_um=200.0)),
    "coma": (dict(coma_px=4.0), dict(coma_px=8.0), dict(coma_px=14.0)),
    "collimation": (dict(collimation=0.3), dict(collimation=0.6), dict(collimation=1.0)),
    "trailing": (dict(trail_px=3.0), dict(trail_px=6.0, trail_angle_deg=60.0),
                 dict(trail_px=12.0, trail_angle_deg=120.0)),
    "dew": (dict(dew=0.3), dict(dew=0.6), dict(dew=1.0)),
}
SEVERITIES = ("mild", "clear", "severe")
DENSITIES = (50, 150)
LABELLED_SIZE = 512


def _diagnose(params: SimParams, rig: Rig = RIG, **kw):
    f = sim.render(params)
    frame = f.to_frame()
    st = stars.measure(frame, plate_scale_arcsec_px=rig.plate_scale_arcsec_px)
    return diagnose.frame(st, rig, image=frame, **kw), st, f


@pytest.fixture(scope="session")
def labelled():
    """Every label at three severities and two star densities: (label, severity, n, Diagnosis)."""
    out = []
    for label, settings in CASES.items():
        for sev, kw in zip(SEVERITIES, settings):
            for n in DENSITIES:
                d, _, _ = _diagnose(SimParams(width_px=LABELLED_SIZE, height_px=LABELLED_SIZE, n_stars=n,
                                              seed=11 + n + 7 * SEVERITIES.index(sev), **kw))
                out.append((label, sev, n, d))
    return out


def _confusion(rows) -> str:
    table = Counter((r[0], r[3].label) for r in rows)
    labels = list(CASES) + ["unknown"]
    head = "truth \\ said".ljust(13) + " ".join(f"{lab[:9]:>9}" for lab in labels)
    lines = [head] + [f"{t:<13}" + " ".join(f"{table.get((t, s), 0):>9}" for s in labels) for t in CASES]
    wrong = [f"{t}/{sev}/n{n}: said {d.label} ({d.confidence})" for t, sev, n, d in rows if d.label != t]
    return "\n".join(lines + ["misses:"] + wrong)


@pytest.mark.slow
def test_labelled_set_clear_and_severe_cases_are_right(labelled):
    strong = [r for r in labelled if r[1] in ("clear", "severe")]
    right = sum(r[3].label == r[0] for r in strong)
    print(_confusion(labelled))
    assert right / len(strong) >= 0.9, _confusion(labelled)
    # every label is recognised at least once among its clear/severe cases
    for label in CASES:
        assert any(r[3].label == label for r in strong if r[0] == label), _confusion(labelled)


@pytest.mark.slow
def test_in_focus_frames_are_never_called_anything_else(labelled):
    said = [r[3].label for r in labelled if r[0] == "in_focus"]
    assert said == ["in_focus"] * len(said), _confusion(labelled)


@pytest.mark.slow
def test_only_focus_miss_advises_a_refocus(labelled):
    for label, _, _, d in labelled:
        assert d.refocus_advised == (d.label == "focus_miss")
        assert d.advice, f"{label}: no advice"


def test_mild_focus_miss_and_poor_seeing_of_equal_size_are_told_apart():
    """Same star size, different cause: the profile shape (flat-topped vs peaked) decides."""
    miss = SimParams(width_px=SIZE, height_px=SIZE, n_stars=120, seed=5, defocus_um=1.5 * CFZ_UM)
    # find the seeing that gives the same true HFR as the focus miss
    target = sim.truth_for(miss)["hfr_px"]
    lo, hi = 2.5, 8.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if sim.truth_for(miss.with_(defocus_um=0.0, seeing_fwhm_arcsec=mid))["hfr_px"] < target:
            lo = mid
        else:
            hi = mid
    seeing = miss.with_(defocus_um=0.0, seeing_fwhm_arcsec=(lo + hi) / 2)
    d_miss, st_miss, _ = _diagnose(miss)
    d_seeing, st_seeing, _ = _diagnose(seeing)
    assert st_seeing.hfr_px == pytest.approx(st_miss.hfr_px, rel=0.08)
    assert d_miss.label == "focus_miss", d_miss.evidence
    assert d_seeing.label == "poor_seeing", d_seeing.evidence
    assert d_miss.evidence.profile_ratio < d_seeing.evidence.profile_ratio


@pytest.mark.parametrize("zones", [1.0, 3.0, 6.0, 10.0])
def test_defocus_estimate_within_20_percent_without_a_baseline(zones):
    # bright stars: a 36 px disk spreads its light thin, and sep has to find it
    d, _, _ = _diagnose(SimParams(width_px=SIZE, height_px=SIZE, n_stars=60 if zones > 5 else 100, seed=21,
                                  defocus_um=zones * CFZ_UM, star_flux_min_e=2e5, star_flux_max_e=3e6))
    truth = zones * CFZ_UM
    assert d.defocus_um is not None
    assert abs(d.defocus_um - truth) <= max(0.2 * truth, 10.0), (d.defocus_um, truth, d.defocus_method)
    assert d.defocus_cfz == pytest.approx(d.defocus_um / CFZ_UM, abs=0.01)


def test_donuts_give_the_defocus_and_the_obstruction():
    rig = RIG.with_(obstruction=0.4)
    truth = 8.0 * CFZ_UM  # blur 28.5 px
    d, _, _ = _diagnose(SimParams(width_px=SIZE, height_px=SIZE, n_stars=60, seed=4, rig=rig, defocus_um=truth,
                                  star_flux_min_e=2e5, star_flux_max_e=3e6), rig=rig)
    assert d.label == "focus_miss"
    ev = d.evidence
    assert ev.donut_fraction >= 0.5
    assert d.defocus_method == "donut outer diameter"
    assert abs(d.defocus_um - truth) <= 0.2 * truth, (d.defocus_um, truth)
    assert ev.obstruction_estimate == pytest.approx(0.4, abs=0.12)


#: The demo's former rig: 100 mm f/5 with 3.76 um pixels, 1.55"/px (2" seeing spans 1.3 px).
UNDERSAMPLED = Rig(aperture_mm=100.0, focal_length_mm=500.0, pixel_um=3.76)


def test_smaller_sharper_stars_than_usual_are_never_dew():
    """Watcher report (``focuswatch demo`` on an undersampled rig): the night's sharpest frames
    (HFR ~0.65 px against ~0.8 px usual) were called dew with confidence >= 0.6. The 90 % flux
    radius of a star a pixel across is mostly pixel; dew needs a resolved halo, never a
    smaller star. Called as the watcher calls it: no pixels, the usual HFR as baseline."""
    usual = sim.truth_for(SimParams(width_px=512, height_px=512, n_stars=150, seed=3, rig=UNDERSAMPLED,
                                    seeing_fwhm_arcsec=2.0))["hfr_px"]
    for seeing in (1.6, 1.7):
        f = sim.render(SimParams(width_px=512, height_px=512, n_stars=150, seed=3, rig=UNDERSAMPLED,
                                 seeing_fwhm_arcsec=seeing, star_flux_min_e=5e3))
        st = stars.measure(f.to_frame(), plate_scale_arcsec_px=UNDERSAMPLED.plate_scale_arcsec_px)
        assert st.hfr_px < 0.9 * usual
        for base in (None, usual):
            d = diagnose.frame(st, UNDERSAMPLED, baseline_hfr_px=base)
            assert d.label == "in_focus", (seeing, base, d.label, d.confidence, d.evidence.wing_excess)
            assert all(x.label != "dew" for x in d.findings)
    # a real halo on the same rig is still dew
    d, _, _ = _diagnose(SimParams(width_px=512, height_px=512, n_stars=150, seed=7, rig=UNDERSAMPLED,
                                  seeing_fwhm_arcsec=2.0, dew=0.6, star_flux_min_e=5e3), rig=UNDERSAMPLED)
    assert d.label == "dew" and d.confidence >= 0.6, (d.label, d.evidence.wing_excess)


def test_dew_needs_a_resolved_halo_and_a_star_not_smaller_than_the_baseline():
    cfg = diagnose.DiagnoseConfig()
    halo = diagnose.Evidence(n_stars=50, hfr_px=2.0, wing_excess=0.5, size_excess=1.1)
    assert _dew_score(halo, None, cfg) == 1.0
    assert _dew_score(halo, 1.9, cfg) == 1.0
    assert _dew_score(halo, 2.2, cfg) == 0.0                 # smaller than the baseline
    tiny = diagnose.Evidence(n_stars=50, hfr_px=0.3, wing_excess=0.5, size_excess=1.1)
    assert _dew_score(tiny, None, cfg) == 0.0                # 0.15 px: not a resolved halo
    big_core = diagnose.Evidence(n_stars=50, hfr_px=8.0, wing_excess=0.5, size_excess=5.0)
    assert _dew_score(big_core, None, cfg) == 0.0            # a defocus disk, not a halo


def test_too_few_stars_is_unknown_with_a_reason_not_a_guess():
    d, st, _ = _diagnose(SimParams(width_px=256, height_px=256, n_stars=4, seed=2))
    assert d.label == "unknown"
    assert d.confidence == 0.0
    assert "stars" in d.reason
    assert d.defocus_um is None and not d.refocus_advised


def test_calibration_frames_and_missing_tables_are_unknown():
    d, st, _ = _diagnose(SimParams(width_px=256, height_px=256, n_stars=30, seed=2, image_type="FLAT"))
    assert d.label == "unknown" and "light" in d.reason
    light, st, _ = _diagnose(SimParams(width_px=256, height_px=256, n_stars=30, seed=2))
    again = stars.FrameStats.from_dict(st.to_dict())  # JSON round trip drops the star table
    d2 = diagnose.frame(again, RIG)
    assert d2.label == "unknown" and "table" in d2.reason


def test_diagnosis_round_trips_through_json():
    d, _, _ = _diagnose(SimParams(width_px=SIZE, height_px=SIZE, n_stars=80, seed=8, trail_px=6.0))
    text = json.dumps(d.to_dict())
    back = diagnose.Diagnosis.from_dict(json.loads(text))
    assert back.label == d.label == "trailing"
    assert back.evidence.zone_hfr_px == d.evidence.zone_hfr_px
    assert back.to_dict() == d.to_dict()
    for key in ("label", "confidence", "findings", "defocus_um", "defocus_cfz", "evidence", "advice"):
        assert key in d.to_dict()


def test_star_asymmetry_tells_a_one_sided_flare_from_a_symmetric_smear():
    yy, xx = np.mgrid[0:41, 0:41].astype(float)
    core = np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / (2 * 1.5 ** 2))
    smear = sum(np.exp(-((xx - 20 - s) ** 2 + (yy - 20) ** 2) / (2 * 1.5 ** 2)) for s in (-3, -1.5, 0, 1.5, 3))
    flare = core + sum(0.3 * (1 - s / 6) * np.exp(-((xx - 20 - s) ** 2 + (yy - 20) ** 2) / (2 * 1.5 ** 2))
                       for s in (1.5, 3, 4.5))
    x, y, h = np.array([20.0]), np.array([20.0]), np.array([2.5])
    a_smear = diagnose.star_asymmetry(smear * 1000, x, y, h)[0]
    a_flare = diagnose.star_asymmetry(flare * 1000, x, y, h)[0]
    assert abs(a_smear[0]) < 0.01 and abs(a_smear[1]) < 0.01
    assert a_flare[0] > 0.05 and abs(a_flare[1]) < 0.01  # points along +x, where the flare is
    # the aperture is a setting: one that stops short of the flare sees a nearly symmetric core
    tight = diagnose.DiagnoseConfig(asymmetry_aperture_hfr=0.5, asymmetry_aperture_pad_px=0.5)
    assert diagnose.star_asymmetry(flare * 1000, x, y, h, config=tight)[0][0] < 0.5 * a_flare[0]
    # a stamp wider than the image leaves the star out (NaN), never a crash
    wide = diagnose.DiagnoseConfig(asymmetry_stamp_min_px=30, asymmetry_stamp_max_px=30)
    assert np.isnan(diagnose.star_asymmetry(flare * 1000, x, y, h, config=wide)[0]).all()


def _family(tab, name):
    return [f["name"] for f in tab["families"]].index(name)


def test_generated_profile_table_matches_the_model():
    """The generated Moffat cross-check rows are what profile_model computes (spot checks)."""
    for eps, name, xi in ((0.0, "moffat beta=4", 0), (0.0, "moffat beta=3", 8), (0.35, "moffat beta=4", 14),
                          (0.25, "moffat beta=5", 11)):
        tab = _profile_table(eps)
        i = _family(tab, name)
        beta = tab["families"][i]["beta_equiv"]
        m = diagnose.profile_model(4.0, beta, 4.0 * tab["xs"][xi], eps, n=512)
        assert tab["r50"][i, xi] == pytest.approx(m["r50_px"] / 4.0, abs=2e-3)
        assert tab["w"][i, xi] == pytest.approx(m["r90_px"] / m["r50_px"], abs=2e-3)
        assert tab["fit"][i, xi] == pytest.approx(m["fit_fwhm_px"] / 4.0, rel=5e-3)
        assert tab["hm"][i, xi] == pytest.approx(m["fwhm_px"] / 4.0, rel=5e-3)


def test_generated_kolmogorov_rows_agree_with_galsim():
    """The physical rows start from GalSim's Kolmogorov profile (in focus, seeing-dominated)."""
    galsim = pytest.importorskip("galsim")
    tab = _profile_table(0.0)
    i = _family(tab, "kolmogorov geometric")
    k = galsim.Kolmogorov(fwhm=1.0)
    assert tab["r50"][i, 0] == pytest.approx(k.half_light_radius, rel=0.01)
    assert tab["hm"][i, 0] == pytest.approx(1.0, rel=0.01)
    assert 2.0 * tab["r50"][i, 0] / tab["hm"][i, 0] == pytest.approx(1.13, abs=0.01)  # HFD/FWHM, below Moffat 4's
    # the same ratio from GalSim's own numbers (not a copied literal), and below a Moffat beta=4 profile's
    # closed form HFD/FWHM = sqrt(2^(1/(beta-1)) - 1) / sqrt(2^(1/beta) - 1), beta = 4
    hfd_over_fwhm = 2.0 * k.half_light_radius / k.fwhm
    assert 2.0 * tab["r50"][i, 0] / tab["hm"][i, 0] == pytest.approx(hfd_over_fwhm, rel=0.01)
    moffat4 = ((2.0 ** (1.0 / 3.0) - 1.0) / (2.0 ** 0.25 - 1.0)) ** 0.5
    assert 2.0 * tab["r50"][i, 0] / tab["hm"][i, 0] < moffat4 - 0.02


def test_generated_kolmogorov_growth_agrees_with_optics():
    """The profile table's Kolmogorov row and optics' calibrated geometric growth are the same physics
    (two grids: 512 samples over the star here, 1024 over a wider field there): 3 %."""
    tab = _profile_table(0.0)
    i = _family(tab, "kolmogorov geometric")
    r0 = tab["r50"][i, 0]
    for xi in (4, 8, 12, 15, 19):
        x = tab["xs"][xi]
        assert tab["r50"][i, xi] == pytest.approx(optics.hfr_px_for_blur(x, r0, 0.0, None), rel=0.03)


@pytest.mark.parametrize("beta,eps,x", [(2.5, 0.0, 1.0), (3.5, 0.0, 4.0), (3.5, 0.35, 2.0), (5.0, 0.35, 10.0)])
def test_profile_model_agrees_with_optics_defocused_star(beta, eps, x):
    """Two grids of the same physics (seeing Moffat x defocus annulus): diagnose's
    anti-aliased one in seeing-FWHM units and optics' hard-edged one in in-focus HFR units
    agree on r50, r90 and the half-maximum width within their grid steps."""
    fwhm = 4.0
    m = diagnose.profile_model(fwhm, beta, x * fwhm, eps, n=512)
    r0 = diagnose.moffat_r50_px(fwhm, beta)
    o = optics.defocused_star(x * fwhm / r0, eps, beta, n=512)
    assert o["r50"] * r0 == pytest.approx(m["r50_px"], rel=0.02)
    assert o["r90"] * r0 == pytest.approx(m["r90_px"], rel=0.01)
    assert o["fwhm"] * r0 == pytest.approx(m["fwhm_px"], rel=0.01)


def test_model_mirrors_the_blended_fwhm_of_stars():
    """Small stars keep the Moffat fit's width, large ones the direct half-maximum width."""
    assert diagnose.stars_fwhm_px(2.0, 3.0) == pytest.approx(2.0 * diagnose.FIT_FWHM_SCALE, rel=0.05)
    assert diagnose.stars_fwhm_px(9.0, 12.0) == pytest.approx(12.0, rel=1e-6)
    # seeing reads HFD/FWHM ~1.2, a large flat disk ~0.72, as stars.measure does (test_stars)
    assert diagnose.profile_model(4.0, 3.5, 0.0, n=512)["profile_ratio"] == pytest.approx(1.19, abs=0.03)
    assert diagnose.profile_model(2.6, 3.5, 20.0, n=512)["profile_ratio"] == pytest.approx(0.72, abs=0.02)


def test_inverting_the_model_recovers_blur_and_seeing():
    for seeing_px, blur_px in ((3.0, 6.0), (2.0, 4.0), (2.5, 20.0)):
        m = diagnose.profile_model(seeing_px, 3.5, blur_px)
        seeing, blur, beta, excess = diagnose.blur_from_profile(
            m["r50_px"], m["r90_px"] / m["r50_px"] + diagnose.WING_RATIO_BIAS,
            m["profile_ratio"] + diagnose.PROFILE_RATIO_BIAS)
        assert blur == pytest.approx(blur_px, rel=0.1)
        assert seeing == pytest.approx(seeing_px, rel=0.15)
        assert abs(excess) < 0.05


# --------------------------------------------------------------------------- the night

@pytest.fixture(scope="session")
def drifting_night():
    """Two hours cooling 2 C/h at 25 um/C (50 um/h) with a cloud passing frames 5-7."""
    base = SimParams(width_px=512, height_px=512, n_stars=90, seed=5)
    plan = NightPlan(n_frames=14, interval_s=600.0, cooling_c_per_hour=-2.0, cloud_frames=(5, 7, 0.85),
                     seeing_jitter_pct=5.0)
    foc = SimFocuser(coef_um_per_c=-25.0, autofocus_error_um=0.0)
    foc.autofocus(plan.temp_start_c, None, np.random.default_rng(0))
    out = []
    for p in sim.night_frames(base, plan, foc, seed=1):
        f = sim.render(p)
        out.append(stars.measure(f.to_frame(), plate_scale_arcsec_px=RIG.plate_scale_arcsec_px))
    return out


def test_night_tells_drift_and_clouds(drifting_night):
    story = diagnose.night(drifting_night, RIG)
    assert story.label == "focus_miss", story.summary
    assert story.drift_um_per_h == pytest.approx(50.0, rel=0.3)
    assert story.drift_um_per_c == pytest.approx(25.0, rel=0.3)
    assert story.duration_h == pytest.approx(13 * 600 / 3600, abs=0.01)
    assert len(story.cloud_periods) == 1
    first, last, n, start_h, end_h = story.cloud_periods[0]
    assert n >= 2 and start_h >= 5 * 600 / 3600 - 0.01 and end_h <= 7 * 600 / 3600 + 0.01
    rejected = {r for _, r in story.reject}
    assert any("clouds" in r for r in rejected)
    back = diagnose.NightStory.from_dict(json.loads(json.dumps(story.to_dict())))
    assert back.to_dict() == story.to_dict()


def test_night_with_cloud_fraction_zero_calls_no_clouds(drifting_night):
    """``cloud_fraction = 0`` (allowed: a count below 0 x the night's level never happens) calls no
    frame clouds, the passing cloud of frames 5-7 included, and fits no count-size line: its cut
    was log 0 (a RuntimeWarning, an error under pytest's filterwarnings)."""
    story = diagnose.night(drifting_night, RIG, config=diagnose.DiagnoseConfig(cloud_fraction=0.0))
    assert not any(f.cloud for f in story.frames)
    assert any(f.cloud for f in diagnose.night(drifting_night, RIG).frames)   # the default sees the cloud


def test_night_sorts_by_date_obs(drifting_night):
    shuffled = list(reversed(drifting_night))
    a = diagnose.night(shuffled, RIG)
    b = diagnose.night(drifting_night, RIG)
    assert [f.elapsed_h for f in a.frames] == [f.elapsed_h for f in b.frames]
    assert a.drift_um_per_h == b.drift_um_per_h


def test_steady_focus_with_jittery_seeing_is_not_a_drift():
    base = SimParams(width_px=512, height_px=512, n_stars=90, seed=6)
    plan = NightPlan(n_frames=8, interval_s=600.0, cooling_c_per_hour=0.0, seeing_jitter_pct=25.0)
    foc = SimFocuser(autofocus_error_um=0.0)
    foc.autofocus(plan.temp_start_c, None, np.random.default_rng(0))
    sts = [stars.measure(sim.render(p).to_frame()) for p in sim.night_frames(base, plan, foc, seed=3)]
    story = diagnose.night(sts, RIG)
    assert story.label in ("poor_seeing", "in_focus"), story.summary
    assert story.seeing_scatter_pct is not None and story.seeing_scatter_pct > 8.0
    assert abs(story.drift_um_per_h or 0.0) < 0.5 * CFZ_UM


# --------------------------------------------------------------------------- CLI

@pytest.fixture(scope="session")
def frame_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    for i, kw in enumerate([dict(defocus_um=2.5 * CFZ_UM), dict(trail_px=8.0)]):
        sim.write_fits(d / f"f{i}.fits", sim.render(SimParams(width_px=512, height_px=512, n_stars=90, seed=3 + i,
                                                               frame_nr=i + 1, **kw)))
    return d


def test_cli_diagnose_one_frame_json_and_plot(frame_dir, tmp_path, capsys):
    png = tmp_path / "map.png"
    rc = main(["diagnose", str(frame_dir / "f0.fits"), "--json", "--plot", str(png)])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 1
    doc = json.loads(out[0])
    assert doc["label"] == "focus_miss"
    assert doc["defocus_cfz"] == pytest.approx(2.5, rel=0.2)
    assert set(doc["evidence"]) >= {"zone_hfr_px", "tilt_pct", "curvature_pct", "radial_score", "alignment",
                                    "profile_ratio", "ring_ratio"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_diagnose_folder_tells_the_night(frame_dir, capsys):
    rc = main(["diagnose", str(frame_dir)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "f0.fits: focus_miss" in out and "f1.fits: trailing" in out and "night: 2 frames" in out
    rc = main(["diagnose", str(frame_dir), "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(x)["label"] for x in lines[:2]] == ["focus_miss", "trailing"]
    assert "night" in json.loads(lines[-1])


def test_cli_plot_never_overwrites_a_frame(frame_dir, tmp_path, capsys):
    """``--plot light.fits`` (a slip of the fingers) must leave the user's frame untouched."""
    light = tmp_path / "light.fits"
    light.write_bytes((frame_dir / "f0.fits").read_bytes())
    before = light.read_bytes()
    assert main(["diagnose", str(light), "--plot", str(light)]) == 2
    err = capsys.readouterr().err
    assert "light.fits" in err and "Traceback" not in err
    assert light.read_bytes() == before


def test_cli_bad_input_is_one_line_and_nonzero(frame_dir, tmp_path, capsys):
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"not a fits file at all" * 10)
    rc = main(["diagnose", str(bad), str(frame_dir / "f0.fits")])
    captured = capsys.readouterr()
    assert rc == 1
    assert captured.err.count("\n") == 2 and "broken.fits" in captured.err and "Traceback" not in captured.err
    assert "f0.fits: focus_miss" in captured.out
    assert main(["diagnose", str(tmp_path / "empty_dir_does_not_exist")]) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["diagnose", str(empty)]) == 2
    assert main(["diagnose", str(frame_dir / "f0.fits"), "--baseline-hfr-px", "-1"]) == 2


# --------------------------------------------------------------------------- physical optics (independent truth)

from physframes import NEWTONIAN, assert_config_error_is_one_line, measured, night_frame, rig_of, seeing_frame  # noqa: E402

from focuswatch.sim import physical as po  # noqa: E402


@pytest.mark.parametrize("seeing,kind", [(4.2, "kolmogorov"), (5.0, "kolmogorov"), (3.5, "vonkarman")])
def test_focused_frame_in_bad_seeing_is_never_a_focus_miss(seeing, kind):
    """Kolmogorov seeing reads HFD/FWHM ~1.13, below the Moffat beta=4 value (1.17) the former
    discriminator assumed: it called a focused 4.2" frame ``focus_miss``."""
    spec = seeing_frame(seeing, kind=kind)
    frame, st = measured(spec)
    d = diagnose.frame(st, rig_of(NEWTONIAN), image=frame)
    assert d.label != "focus_miss"
    assert not d.refocus_advised
    assert d.label in ("poor_seeing", "in_focus")
    assert d.evidence.min_blur_to_seeing is not None and d.evidence.min_blur_to_seeing < 0.6


def test_focus_miss_versus_seeing_on_a_held_out_physical_set():
    """Held-out frames (a seed the thresholds were not looked at with): rigs, seeing kinds
    (Kolmogorov, von Karman, Moffat), 1.5-5", 0-3 CFZ, FWHM 1.5-6 px. No frame truly in focus
    (0 or 0.25 CFZ) is ever called a focus miss. The target is 95 %; the tuning seed reaches
    98.2 %, the 80-frame held-out seed 12 90.6 % (benchmarks/diagnose_eval.py), this small
    held-out set 12 of 14: both misses are a small
    refractor (80 mm f/6) at 1 CFZ, 0.6 waves of defocus, where wave optics grows the star
    without flattening its top, so the profile shape cannot see it (the baseline can)."""
    frames = po.labelled_set(seed=2027, n_frames=16, width_px=256, n_stars=30)
    scored = right = 0
    for lf in frames:
        frame, st = measured(lf.spec)
        d = diagnose.frame(st, rig_of(lf.spec.optics), image=frame)
        if lf.defocus_cfz <= 0.25:
            assert d.label != "focus_miss", (lf.rig_name, lf.spec.seeing)
        if lf.truth == "ambiguous":
            continue
        scored += 1
        right += (d.label == "focus_miss") == (lf.truth == "focus_miss")
    assert scored >= 10
    assert right / scored >= 0.85


def _field_frame(ab: po.FieldAberrations, seeing: float = 1.8) -> po.FrameSpec:
    return po.FrameSpec(optics=NEWTONIAN, seeing=po.Seeing(seeing), aberrations=ab, width_px=512, height_px=512,
                        n_stars=90, seed=4, field_zones=4)


def test_coma_is_not_read_as_backfocus():
    """Coma (W131 growing with the field radius): radial comet tails with a sharp centre."""
    frame, st = measured(_field_frame(po.FieldAberrations(coma_waves=3.0)))
    d = diagnose.frame(st, rig_of(NEWTONIAN), image=frame)
    assert d.label == "coma"
    assert d.evidence.asymmetry_radial is not None and d.evidence.asymmetry_radial > 0.04


def test_curved_field_with_radial_astigmatism_is_backfocus_not_coma():
    """A curved field (focus shift ~ r^2) with astigmatism: radially elongated, but symmetric stars."""
    frame, st = measured(_field_frame(po.FieldAberrations(curvature_um=200.0, astig_waves=0.5)))
    d = diagnose.frame(st, rig_of(NEWTONIAN), image=frame)
    assert d.label == "backfocus"
    assert d.evidence.radial_score is not None and d.evidence.radial_score > 0.5  # elongated, radially
    assert abs(d.evidence.asymmetry_radial) < 0.02


# --------------------------------------------------------------------------- thresholds from TOML

def test_diagnose_and_grade_thresholds_come_from_toml(tmp_path):
    from focuswatch.config import load_config

    p = tmp_path / "fw.toml"
    p.write_text("[diagnose]\nfocus_miss_cfz = 1.0\nmin_stars = 8\nasymmetry_aperture_hfr = 3.0\n"
                 "asymmetry_stamp_max_px = 40\n\n[grade]\nsoft_factor = 1.3\n", encoding="utf-8")
    cfg = load_config(p)
    assert cfg.diagnose_config().focus_miss_cfz == 1.0 and cfg.diagnose_config().min_stars == 8
    assert cfg.diagnose_config().asymmetry_aperture_hfr == 3.0 and cfg.diagnose_config().asymmetry_stamp_max_px == 40
    assert cfg.grade_config().soft_factor == 1.3
    assert diagnose.DiagnoseConfig().focus_miss_cfz == 0.7  # defaults untouched
    p.write_text("[diagnose]\nwitness_frames = 3\nwitness_max_age_s = 900\nwitness_size_max_cfz_band = [0.5, 0.8]\n"
                 "witness_min_steps = 4\nwitness_jitter_z = 1.5\nwitness_size_uncertainty = 0.2\nsize_noise_z = 3\n",
                 encoding="utf-8")
    w = load_config(p).diagnose_config()
    assert (w.witness_frames, w.witness_max_age_s, w.witness_size_max_cfz_band) == (3, 900.0, (0.5, 0.8))
    assert (w.witness_min_steps, w.witness_jitter_z, w.witness_size_uncertainty) == (4, 1.5, 0.2)
    assert w.size_noise_z == 3.0 and diagnose.DiagnoseConfig().size_noise_z == 2.0
    p.write_text("[diagnose]\nstack_delta_chi2 = 24\nstack_l0_over_r0 = [0, 100]\nstack_miss_score = 0.8\n",
                 encoding="utf-8")
    k = load_config(p).diagnose_config()
    assert (k.stack_delta_chi2, k.stack_l0_over_r0, k.stack_miss_score) == (24.0, (0.0, 100.0), 0.8)
    assert diagnose.DiagnoseConfig().stack_delta_chi2 == 17.0


@pytest.mark.parametrize("text,key", [
    ("[diagnose]\nfocus_miss_cfz = -1.0\n", "focus_miss_cfz"),
    ("[diagnose]\nplausible_delta_chi2 = nan\n", "plausible_delta_chi2"),
    ("[diagnose]\nfocus_miss_cfz = \"big\"\n", "focus_miss_cfz"),
    ("[diagnose]\nno_such_thing = 1\n", "no_such_thing"),
    ("[diagnose]\nasymmetry_aperture_hfr = 0.0\n", "asymmetry_aperture_hfr"),
    ("[diagnose]\nasymmetry_stamp_min_px = 50\nasymmetry_stamp_max_px = 20\n", "asymmetry_stamp_max_px"),
    ("[grade]\nfocus_blur_to_seeing = 0.0\n", "focus_blur_to_seeing"),
    ("[diagnose]\nwitness_size_max_cfz_band = [1.0, 0.7]\n", "witness_size_max_cfz_band"),
    ("[diagnose]\nwitness_frames = 0\n", "witness_frames"),
    ("[diagnose]\nwitness_max_age_s = -5.0\n", "witness_max_age_s"),
    ("[diagnose]\nsize_noise_z = -1\n", "size_noise_z"),
    ("[diagnose]\nstack_delta_chi2 = -1\n", "stack_delta_chi2"),
    ("[diagnose]\nstack_l0_over_r0 = []\n", "stack_l0_over_r0"),
    ("[diagnose]\nstack_min_stars = 50\nstack_max_stars = 20\n", "stack_max_stars"),
])
def test_a_wrong_threshold_is_one_line_naming_file_section_and_key(tmp_path, text, key):
    assert_config_error_is_one_line(tmp_path, text, key)


def test_labels_are_an_enum_that_stays_a_plain_string():
    lab = diagnose.Label.focus_miss
    assert lab == "focus_miss" and json.dumps({"label": lab}) == '{"label": "focus_miss"}'
    assert "focus_miss" in diagnose.REFOCUS_LABELS and lab in diagnose.REFOCUS_LABELS
    assert diagnose.OPTICAL_LABELS == {"backfocus", "tilt", "coma", "collimation"}
    assert diagnose.TRANSIENT_LABELS == {"trailing", "dew", "clouds"}
    assert set(diagnose.LABELS) | {"unknown"} == diagnose.FRAME_LABELS
    assert diagnose.OPTICAL_LABELS <= diagnose.FRAME_LABELS


# --------------------------------------------------------------------------- calibration data

@pytest.mark.parametrize("content,why", [(None, "cannot read"), ("{not json", "not JSON"),
                                         ('{"eps": [0.0]}', "missing")])
def test_missing_or_corrupt_calibration_data_is_one_clear_error_naming_the_file(tmp_path, monkeypatch, content, why):
    from focuswatch import calibration

    bad = tmp_path / "focus_seeing_calibration.json"
    if content is not None:
        bad.write_text(content, encoding="utf-8")
    monkeypatch.setattr(calibration, "_data_path", lambda: bad)
    calibration.tables.cache_clear()
    try:
        with pytest.raises(calibration.CalibrationDataError) as err:
            calibration.infocus_hfr_px(2.5, 130.0, 550.0, 1.2)
    finally:
        monkeypatch.undo()
        calibration.tables.cache_clear()
    assert str(bad) in str(err.value) and why in str(err.value) and "\n" not in str(err.value)
    assert calibration.infocus_hfr_px(2.5, 130.0, 550.0, 1.2) > 0  # the real file again


def test_the_in_focus_size_is_one_calibrated_call_that_agrees_with_galsim():
    """Kolmogorov seeing through an obstructed pupil: calibration.infocus_hfr_px against GalSim
    (Kolmogorov convolved with an obstructed Airy), from diffraction- to seeing-dominated."""
    galsim = pytest.importorskip("galsim")
    from focuswatch import calibration

    lod = 550e-9 / 0.08 * 206264.806  # lambda/D of an 80 mm, arcsec
    for seeing, eps in ((0.6, 0.0), (1.5, 0.0), (2.8, 0.33), (4.5, 0.45)):
        psf = galsim.Convolve(galsim.Kolmogorov(fwhm=seeing), galsim.Airy(lam_over_diam=lod, obscuration=eps))
        truth = psf.calculateHLR(size=1024, scale=lod / 16.0)
        assert calibration.infocus_hfr_px(seeing, 80.0, 550.0, 1.0, eps) == pytest.approx(truth, rel=0.01)


REFRACTOR_80 = po.Optics(aperture_mm=80.0, focal_length_mm=480.0, pixel_um=2.4)
WIDE_NEWTONIAN = po.Optics(aperture_mm=250.0, focal_length_mm=1200.0, pixel_um=4.63, obstruction=0.45, n_vanes=3,
                           vane_width=0.01)


def test_a_measured_seeing_lets_the_size_call_a_1_cfz_miss_as_a_lower_bound():
    """At 1 CFZ (0.61 wave) an 80 mm f/6 star in 3.4" Kolmogorov seeing keeps a seeing-like
    profile; with the seeing measured at the time, its size shows the defocus. The size's
    defocus is a lower bound (the in-focus HFR is raised by the seeing uncertainty), so it must
    not exceed the true 1 CFZ."""
    spec = seeing_frame(3.4, optics=REFRACTOR_80, defocus_um=optics.cfz_um(REFRACTOR_80.f_ratio), seed=5,
                        size_px=256, n_stars=30)
    frame, st = measured(spec)
    d = diagnose.frame(st, rig_of(REFRACTOR_80), image=frame, measured_seeing_arcsec=3.4)
    assert d.label == "focus_miss"
    assert 0.3 <= d.evidence.size_defocus_cfz_low <= 1.0
    assert diagnose.frame(st, rig_of(REFRACTOR_80), image=frame).evidence.size_defocus_cfz_low is None


@pytest.mark.parametrize("optics_, seeing", [(WIDE_NEWTONIAN, po.Seeing(3.6, kind="moffat", beta=2.5)),
                                             (NEWTONIAN, po.Seeing(4.2)), (REFRACTOR_80, po.Seeing(3.4))])
def test_a_measured_seeing_never_makes_a_focused_frame_a_focus_miss(optics_, seeing):
    """Broad Moffat wings (beta 2.5) make a focused star ~16 % larger than the Kolmogorov size
    for the same FWHM: the size witness allows for that."""
    spec = po.FrameSpec(optics=optics_, seeing=seeing, width_px=256, height_px=256, n_stars=30, seed=6)
    frame, st = measured(spec)
    d = diagnose.frame(st, rig_of(optics_), image=frame, measured_seeing_arcsec=seeing.fwhm_arcsec)
    assert d.label != "focus_miss"
    assert d.evidence.size_defocus_cfz_low is not None and d.evidence.size_defocus_cfz_low < 0.3


def test_a_typical_seeing_in_the_rig_settings_is_not_taken_as_measured():
    """``[rig] seeing_arcsec`` may be a typical night's value: on a 4.2" night it must not turn
    the focused frame's larger stars into a focus miss."""
    frame, st = measured(seeing_frame(4.2))
    rig = rig_of(NEWTONIAN).with_(seeing_arcsec=2.0)
    d = diagnose.frame(st, rig, image=frame)
    assert d.label != "focus_miss"
    assert d.evidence.size_defocus_cfz_low is None


def test_the_seeing_from_an_in_focus_hfr_inverts_galsim():
    """calibration.seeing_for_infocus_hfr_arcsec: the seeing a focused star's true HFR implies,
    against GalSim's Kolmogorov convolved with the obstructed Airy pattern."""
    galsim = pytest.importorskip("galsim")
    from focuswatch import calibration

    lod = 550e-9 / 0.2 * 206264.806  # lambda/D of a 200 mm, arcsec
    for seeing, eps in ((1.0, 0.0), (2.5, 0.33), (4.5, 0.45)):
        psf = galsim.Convolve(galsim.Kolmogorov(fwhm=seeing), galsim.Airy(lam_over_diam=lod, obscuration=eps))
        hlr_arcsec = psf.calculateHLR(size=1024, scale=lod / 16.0)
        got = calibration.seeing_for_infocus_hfr_arcsec(hlr_arcsec / 0.78, 200.0, 550.0, 0.78, eps)
        assert got == pytest.approx(seeing, rel=0.02)


def test_a_field_pattern_does_not_hide_a_defocus_of_the_whole_field():
    """3 CFZ on a 250 mm f/4.8 in 3.45" seeing: the noisy star sizes read as a 26 % field pattern
    (tilt-like), but even the sharpest part of the field is ~2.7 CFZ out, so it is a focus miss
    (a refocus is needed whatever the field does). Held-out seed 12's frame; it was called tilt."""
    spec = po.FrameSpec(optics=WIDE_NEWTONIAN, seeing=po.Seeing(3.4539286963103737),
                        aberrations=po.FieldAberrations(defocus_um=3.0 * optics.cfz_um(WIDE_NEWTONIAN.f_ratio)),
                        width_px=320, height_px=320, n_stars=36, margin_px=17, seed=238600356)
    frame, st = measured(spec)
    d = diagnose.frame(st, rig_of(WIDE_NEWTONIAN), image=frame)
    assert d.label == "focus_miss"
    assert d.defocus_cfz is not None and d.defocus_cfz >= 2.0


def test_a_seeing_monitor_in_the_header_reaches_the_diagnosis_through_the_pipeline():
    """A seeing monitor's value written as ``SEEING`` in the header is the measured seeing the
    diagnosis needs to call a 1 CFZ miss on a small slow rig (the frame above); without it the
    same frame stays a seeing-like call. Both through :func:`focuswatch.pipeline.assess`, the
    one step every command and the watcher share."""
    from focuswatch.model.frame import frame_from_array
    from focuswatch.pipeline import AssessContext, assess

    spec = seeing_frame(3.4, optics=REFRACTOR_80, defocus_um=optics.cfz_um(REFRACTOR_80.f_ratio), seed=5,
                        size_px=256, n_stars=30)
    fr = po.render_frame(spec)
    header = po.frame_header(spec)
    with_monitor = frame_from_array(fr.pixels, {**header, "SEEING": 3.4})
    without = frame_from_array(fr.pixels, header)
    assert with_monitor.meta.seeing_arcsec == 3.4 and without.meta.seeing_arcsec is None
    a = assess(with_monitor, rig_of(REFRACTOR_80), AssessContext(time_s=0.0))
    b = assess(without, rig_of(REFRACTOR_80), AssessContext(time_s=0.0))
    assert a.diagnosis.label == "focus_miss" and a.record.seeing_arcsec == 3.4
    assert b.diagnosis.label != "focus_miss"


# --------------------------------------------------------------------------- the night's own seeing witness

def _witnessed_night(o: po.Optics, seeings, cfzs, seed: int):
    """Diagnose a night frame by frame as the night loop does: the witness from the night's own
    first frames (WitnessTracker), judged before the frame is added. Returns (plain, witnessed)."""
    rig = rig_of(o)
    tracker = diagnose.WitnessTracker(rig)
    plain, witnessed = [], []
    for i, (s, c) in enumerate(zip(seeings, cfzs)):
        frame, st = night_frame(o, s, c, i, seed)
        w = tracker.witness_for("L", st.meta.timestamp, st.meta.focuser_pos)
        plain.append(diagnose.frame(st, rig))
        witnessed.append(diagnose.frame(st, rig, seeing_witness=w))
        tracker.add("L", st.meta.timestamp, st.hfr_px, st.meta.focuser_pos)
    return plain, witnessed


def test_the_witness_tracker_takes_the_first_frames_at_a_focus_and_lets_them_age():
    """The rule: the first witness_frames frames of a filter at a focus give the seeing (their
    median HFR through the calibrated in-focus call); later frames of that filter and focus get
    it until witness_max_age_s; an autofocus or a focuser move starts again; filters are apart;
    the night's HFR scatter and the frames since widen the allowance."""
    from focuswatch import calibration

    rig = rig_of(REFRACTOR_80)
    cfg = diagnose.DiagnoseConfig(witness_frames=2, witness_max_age_s=1800.0)
    t = diagnose.WitnessTracker(rig, cfg)
    assert t.witness_for("L", 0.0, 1000) is None
    t.add("L", -300.0, 1.0, 1000, n_stars=cfg.min_stars - 1)  # a nearly empty frame: no witness, no step
    t.add("L", 0.0, 1.50, 1000)
    assert t.witness_for("L", 300.0, 1000) is None  # the second frame is a witness frame itself
    t.add("L", 300.0, 1.60, 1000)
    assert t.witness_for("L", 600.0, 1000) is None  # one frame-to-frame step: the night's scatter unknown
    t.add("L", 600.0, 1.58, 1000)
    t.add("L", 900.0, 1.52, 1000)
    w = t.witness_for("L", 1200.0, 1000)
    assert w.source == "infocus" and w.n_frames == 2 and w.hfr_px == pytest.approx(1.55) and w.age_s == 1200.0 - 300.0
    assert w.frames_since == 3
    assert w.seeing_arcsec == pytest.approx(calibration.seeing_for_infocus_hfr_arcsec(
        1.55, 80.0, 550.0, rig.plate_scale_arcsec_px, 0.0))
    assert calibration.infocus_hfr_px(w.seeing_arcsec, 80.0, 550.0, rig.plate_scale_arcsec_px) == pytest.approx(1.55, rel=1e-3)
    steps = np.abs(np.diff(np.log([1.50, 1.60, 1.58, 1.52])))
    from scipy import stats as sps

    mad_to_sigma = 1.0 / sps.norm.ppf(0.75)  # a normal's sigma over its median |deviation|
    assert w.jitter_pct == pytest.approx(100 * mad_to_sigma * np.median(steps) / np.sqrt(2), rel=1e-6)
    assert t.witness_for("R", 1200.0, 1000) is None          # another filter has its own
    assert t.witness_for("L", 300.0 + 1801.0, 1000) is None  # too old
    assert t.witness_for("L", 1200.0, 1100) is None          # the focuser moved: another focus
    # binned 2x2 (another plate scale): the 1x1 frames' HFR in pixels is no witness for it, nor
    # their steps its scatter; the 1x1 frames keep theirs
    assert t.witness_for("L", 1200.0, 1000, rig=rig.with_(binning=2)) is None
    t.add("L", 1000.0, 3.2, 1000, rig=rig.with_(binning=2))
    assert t.witness_for("L", 1200.0, 1000).hfr_px == pytest.approx(1.55)
    t.autofocus()
    assert t.witness_for("L", 1200.0, 1000) is None
    # a larger allowance on a night whose sizes jump about: the same star is no longer a miss
    spec = seeing_frame(3.4, optics=REFRACTOR_80, defocus_um=optics.cfz_um(REFRACTOR_80.f_ratio), seed=5,
                        size_px=256, n_stars=30)
    frame, st = measured(spec)
    steady = diagnose.SeeingWitness(3.4, "infocus", jitter_pct=0.0)
    jumpy = diagnose.SeeingWitness(3.4, "infocus", jitter_pct=15.0, frames_since=4)
    d_steady = diagnose.frame(st, rig, seeing_witness=steady)
    d_jumpy = diagnose.frame(st, rig, seeing_witness=jumpy)
    assert d_steady.label == "focus_miss" and d_steady.evidence.witness_source == "infocus"
    assert d_steady.evidence.witness_seeing_arcsec == 3.4 and d_steady.evidence.witness_jitter_pct == 0.0
    assert d_jumpy.label != "focus_miss"
    assert d_jumpy.evidence.size_defocus_cfz_low < d_steady.evidence.size_defocus_cfz_low


@pytest.mark.parametrize("pattern", ["ramp", "jitter"])
def test_a_night_whose_seeing_gets_worse_blames_no_frame_on_focus_through_the_witness(pattern):
    """80 mm f/6 (the rig where the profile shape cannot tell 1 CFZ from seeing), no defocus at
    all, seeing 2 -> 4" in ten 5-minute frames (a steady ramp) or jumping between 2 and 4.2":
    the witness from the first two frames must not turn the seeing into a focus miss."""
    n = 10
    if pattern == "ramp":
        seeings = [2.0 * 2.0 ** (k / (n - 1)) for k in range(n)]
    else:
        seeings = list(np.random.default_rng(3).uniform(2.0, 4.2, n))
    plain, witnessed = _witnessed_night(REFRACTOR_80, seeings, [0.0] * n, seed=11 if pattern == "ramp" else 12)
    assert sum(d.evidence.witness_source == "infocus" for d in witnessed) >= 4  # the witness was there
    assert [d.label for d in witnessed if d.label == "focus_miss"] == []
    assert [d.label for d in plain if d.label == "focus_miss"] == []


def test_a_focus_slip_at_1_cfz_is_caught_by_the_witness_on_its_first_frame():
    """80 mm f/6, steady 2.5" seeing (3 % jitter): four frames in focus, then the focus slips by
    1 CFZ. The profile shape reads the slipped frame as seeing; against the night's in-focus
    frames its size shows the defocus. Over four nights, at least three slips are caught on
    their first frame, none without the witness, and no in-focus frame is ever a miss."""
    caught = 0
    for seed in range(4):
        seeings = list(2.5 * np.exp(np.random.default_rng(seed).normal(0.0, 0.03, 6)))
        plain, witnessed = _witnessed_night(REFRACTOR_80, seeings, [0.0] * 4 + [1.0] * 2, seed=20 + seed)
        assert all(d.label != "focus_miss" for d in plain[:4] + witnessed[:4])
        assert plain[4].label != "focus_miss"
        caught += witnessed[4].label == "focus_miss"
        assert witnessed[4].evidence.size_defocus_cfz_low <= 1.0  # a lower bound of the true 1 CFZ
    assert caught >= 3


SCT_BIN2 = po.Optics(aperture_mm=203.0, focal_length_mm=2032.0, pixel_um=7.52, obstruction=0.35)


def _with_twin_witness(spec: po.FrameSpec, worse: float = 1.0):
    """``(frame, stats, witness, twin)``: the frame, and the night's in-focus witness from the same rig
    and seeing rendered in focus (other stars), its seeing divided by ``worse`` (the seeing at the
    frame is that much worse than at the witness). ``twin`` is the in-focus frame's ``(frame, stats)``."""
    frame, st = measured(spec)
    focused = dataclasses.replace(spec, aberrations=po.FieldAberrations(), seed=spec.seed + 1)
    twin = measured(focused)
    see = diagnose.witness.seeing_from_infocus_hfr(twin[1].hfr_px, rig_of(spec.optics))
    return frame, st, diagnose.SeeingWitness(see / worse, "infocus", hfr_px=twin[1].hfr_px, n_frames=1), twin


@pytest.mark.parametrize("optics_, seeing", [(REFRACTOR_80, po.Seeing(3.6, kind="moffat", beta=3.5)),
                                             (SCT_BIN2, po.Seeing(1.95, kind="vonkarman", outer_scale_over_r0=100.0))])
def test_the_witness_allows_for_a_seeing_change_through_the_rigs_own_size(optics_, seeing):
    """On a rig where diffraction is a fair part of the star (2-3 lambda N of seeing), a seeing 15-20 %
    worse grows the in-focus star by only ~12 %, while 1 CFZ grows it by ~25 %: the witness's
    allowance is a seeing change turned into a size by the rig's calibrated in-focus call, not a
    fixed 25 % of the size (which hid these 1 CFZ misses: main called them poor_seeing / in_focus).
    Truth: the physical renderer's effective blur/seeing >= 1.2 at 1 CFZ (a miss), and the focused
    frame judged against a witness 15 and 20 % better than its seeing is never a miss."""
    defocus = optics.cfz_um(optics_.f_ratio)
    fwhm_px = seeing.fwhm_arcsec / optics_.plate_scale_arcsec_px
    assert po.effective_blur_px(optics_, seeing, defocus) / fwhm_px >= 1.2
    rig = rig_of(optics_)
    for seed in (7, 8):
        spec = po.FrameSpec(optics=optics_, seeing=seeing, aberrations=po.FieldAberrations(defocus_um=defocus),
                            width_px=256, height_px=256, n_stars=30, seed=seed)
        frame, st, witness, (twin_frame, twin_st) = _with_twin_witness(spec)
        assert st.hfr_px / twin_st.hfr_px < 1.3  # grown by about a quarter: the size alone cannot tell
        # without a witness only the stacked profile's physical fit can call it (it does on the SCT,
        # not on the 80 mm): then as a miss whose defocus bound stays under the true 1 CFZ
        alone = diagnose.frame(st, rig, image=frame)
        assert alone.label in ("focus_miss", "poor_seeing", "in_focus"), alone.label
        if alone.label == "focus_miss":
            assert alone.evidence.stack_defocus_cfz_low <= 1.0 + 0.05 / 0.61 + 1e-6
        d = diagnose.frame(st, rig, image=frame, seeing_witness=witness)
        assert d.label == "focus_miss", (seed, d.evidence.size_defocus_cfz_low)
        assert 0.3 <= d.evidence.size_defocus_cfz_low <= 1.0  # a lower bound of the true 1 CFZ
        for worse in (1.15, 1.2):
            w_better = dataclasses.replace(witness, seeing_arcsec=witness.seeing_arcsec / worse)
            assert diagnose.frame(twin_st, rig, image=twin_frame, seeing_witness=w_better).label != "focus_miss"


@pytest.mark.parametrize("optics_, seeing", [(NEWTONIAN, po.Seeing(4.6, kind="vonkarman", outer_scale_over_r0=100.0)),
                                             (WIDE_NEWTONIAN, po.Seeing(4.4))])
def test_a_defocus_hidden_by_the_seeing_is_no_miss_when_the_seeing_got_worse_since_the_witness(optics_, seeing):
    """1 CFZ on a large, fast Newtonian in 4.4-4.6" seeing: the blur is under 0.6 of the seeing
    (truth: inside the seeing-aware zone, not a miss). With the seeing 15-25 % worse since the
    witness the star is 15-30 % larger than the witness predicts, which the size alone would
    read as about a CFZ (main called 5 of these 8 frames focus_miss at +20-25 %); the size's own
    blur over the seeing (``size_blur_to_seeing_low``) shows it does not matter, as the profile
    call's ``focus_miss_blur_ratio`` requires (beyond ``witness_size_max_cfz_band`` the size
    cap holds it too)."""
    defocus = optics.cfz_um(optics_.f_ratio)
    fwhm_px = seeing.fwhm_arcsec / optics_.plate_scale_arcsec_px
    assert po.effective_blur_px(optics_, seeing, defocus) / fwhm_px <= 0.6
    rig = rig_of(optics_)
    c = diagnose.DiagnoseConfig()
    for seed in (7, 8):
        spec = po.FrameSpec(optics=optics_, seeing=seeing, aberrations=po.FieldAberrations(defocus_um=defocus),
                            width_px=256, height_px=256, n_stars=30, seed=seed)
        for worse in (1.15, 1.2, 1.25):
            frame, st, witness, _ = _with_twin_witness(spec, worse)
            d = diagnose.frame(st, rig, image=frame, seeing_witness=witness)
            assert d.label != "focus_miss", (seed, worse, d.evidence.size_defocus_cfz_low)
            ev = d.evidence
            assert ev.size_blur_to_seeing_low is not None
            if c.seeing_size_miss_cfz * c.focus_miss_cfz_band[1] <= ev.size_defocus_cfz_low <= c.witness_size_max_cfz_band[0]:
                # the CFZ alone would call it, and it is not so large that the profile would show it:
                # the blur against the seeing is what holds it
                assert ev.size_blur_to_seeing_low < c.focus_miss_blur_ratio + c.focus_miss_blur_step


def test_a_growing_defocus_at_fixed_seeing_is_blamed_with_the_witness():
    """Defocus growing 0 -> 2.1 CFZ at a steady 2.5" on the 80 mm f/6: from 1.5 CFZ on every frame
    is a focus miss (the witness never holds the shape's call back), none up to 0.3 CFZ."""
    cfzs = [0.0, 0.0, 0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1]
    plain, witnessed = _witnessed_night(REFRACTOR_80, [2.5] * len(cfzs), cfzs, seed=31)
    labels = [d.label for d in witnessed]
    assert all(lb == "focus_miss" for lb, c in zip(labels, cfzs) if c >= 1.5)
    assert all(lb != "focus_miss" for lb, c in zip(labels, cfzs) if c <= 0.3)


def test_the_night_story_judges_a_folder_with_its_own_witness():
    """A folder with DATE-OBS and FOCPOS: diagnose.night takes the first frames at the focuser
    position as the witness, reports it per frame, and the 1 CFZ slip the shape reads as seeing
    becomes a focus miss; night_witnesses gives nothing to the first frames."""
    seeings = list(2.5 * np.exp(np.random.default_rng(0).normal(0.0, 0.03, 6)))
    items = [night_frame(REFRACTOR_80, s, c, i, seed=20) for i, (s, c) in enumerate(zip(seeings, [0.0] * 4 + [1.0] * 2))]
    stats_list = [st for _, st in items]
    rig = rig_of(REFRACTOR_80)
    ws = diagnose.night_witnesses(stats_list[::-1], rig)[::-1]  # any order in, capture order used
    # frames 0-1 are the witness, 2-3 wait for three frame-to-frame steps of the night's scatter
    assert ws[:4] == [None] * 4 and ws[4].source == "infocus" and ws[4].n_frames == 2
    story = diagnose.night(stats_list, rig)
    assert story.frames[2].witness_source is None and story.frames[4].witness_source == "infocus"
    assert story.frames[4].label == "focus_miss"
    assert all(f.label != "focus_miss" for f in story.frames[:4])
    given = [diagnose.frame(st, rig, image=fr) for fr, st in items]
    assert given[4].label != "focus_miss"  # the shape alone
    assert diagnose.night(stats_list, rig, diagnoses=given).frames[4].label == "focus_miss"
    assert story.to_dict()["frames"][4]["witness_seeing_arcsec"] == pytest.approx(ws[4].seeing_arcsec, abs=1e-3)
    again = diagnose.rejudge(given[4], stats_list[4], rig, ws[4])
    assert again.label == "focus_miss" and again.evidence.witness_n_frames == 2
    assert f"seeing witness: {ws[4].seeing_arcsec:.2f}\" from the night's in-focus frames" in diagnose.format_diagnosis(again)
    assert "seeing witness" not in diagnose.format_diagnosis(given[4])



def test_a_second_look_with_the_witness_that_fails_keeps_the_first_diagnosis(monkeypatch):
    """rejudge is optional: if judging again with the witness raises, the frame keeps the
    diagnosis it had (one frame must not stop `diagnose FOLDER`, the story, report or grade)."""
    from focuswatch.diagnose import verdict

    seeings = list(2.5 * np.exp(np.random.default_rng(0).normal(0.0, 0.03, 6)))
    items = [night_frame(REFRACTOR_80, s, c, i, seed=20) for i, (s, c) in enumerate(zip(seeings, [0.0] * 4 + [1.0] * 2))]
    stats_list = [st for _, st in items]
    rig = rig_of(REFRACTOR_80)
    ws = diagnose.night_witnesses(stats_list, rig)
    given = diagnose.frame(stats_list[4], rig, image=items[4][0])
    assert ws[4] is not None

    def broken(*args, **kwargs):
        raise ValueError("verdict bug")

    monkeypatch.setattr(verdict, "frame", broken)
    assert diagnose.rejudge(given, stats_list[4], rig, ws[4]) is given


@pytest.mark.parametrize("filter_name, wavelength_nm, zones", [("B", 450.0, 2.0), ("B", 450.0, 3.0), ("Ha", 656.3, 2.0)])
def test_a_frames_defocus_is_counted_in_the_zone_of_its_filter(filter_name, wavelength_nm, zones):
    """Physical optics rendered at the filter's wavelength (an 80 mm f/6 in 2" seeing, defocused by
    2-3 zones of that wavelength, header FILTER): through the header-merged rig the diagnosis counts
    the defocus in the zone 4.88 lambda N^2 of the filter (closed form) and reads the drawn number of
    zones within 15 %. At 550 nm (before) the blue frames read 1.61 and 2.29 zones."""
    from physframes import rig_of
    from focuswatch.io.frames import frame_from_array
    from focuswatch.sim import physical as po

    o = po.Optics(aperture_mm=80.0, focal_length_mm=480.0, pixel_um=2.4, wavelengths_nm=(wavelength_nm,))
    zone_um = 4.88 * wavelength_nm / 1000.0 * o.f_ratio ** 2
    spec = po.FrameSpec(optics=o, seeing=po.Seeing(2.0), aberrations=po.FieldAberrations(defocus_um=zones * zone_um),
                        width_px=256, height_px=256, n_stars=30, seed=5)
    frame = frame_from_array(po.render_frame(spec).pixels, po.frame_header(spec, filter_name=filter_name))
    rig = optics.rig_with_header(rig_of(o), frame.meta)
    assert rig.wavelength_nm == wavelength_nm
    d = diagnose.frame(stars.measure(frame), rig, image=frame)
    assert d.label == "focus_miss"
    assert d.defocus_um / d.defocus_cfz == pytest.approx(zone_um, rel=0.02)
    assert d.defocus_cfz == pytest.approx(zones, rel=0.15)


def test_the_night_s_sharpest_frame_is_not_clouds_but_a_real_cloud_is():
    """GalSim stars (Airy with a 0.33 obstruction * Kolmogorov) on the same sky every frame,
    with a power-law count of faint stars (N(>F) ~ F^-0.75) as real fields have. Seeing
    2.9-3.2" with one 2.0" frame; a cloud letting 40 % through on the last frame. Truth: only
    the last frame is under a cloud. In the sharp frame fainter stars are found, so the median
    flux of the measured stars halves while the sky is as clear as ever: it was flagged as
    clouds and rejected (the best sub of the night). Under the real cloud the star count falls
    (0.4^0.75 ~ half) while the median flux of what is still found barely moves."""
    galsim = pytest.importorskip("galsim")
    from focuswatch.model.frame import Frame, FrameMeta

    rig = Rig(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, obstruction=0.33)
    scale = rig.plate_scale_arcsec_px
    lod = 550e-9 / 0.2 * 206264.806
    sky = np.random.default_rng(1)
    n, size = 140, 320
    xy = sky.uniform(20, size - 20, (n, 2)).astype(int)
    flux = 1.5e3 * (1 - sky.uniform(size=n)) ** (-1 / 0.75)
    seeing = [3.0, 3.2, 2.9, 3.1, 2.0, 3.0, 3.0]
    transmission = [1, 1, 1, 1, 1, 1, 0.4]
    measured = []
    for i, (s, t) in enumerate(zip(seeing, transmission)):
        psf = galsim.Convolve(galsim.Kolmogorov(fwhm=s), galsim.Airy(lam_over_diam=lod, obscuration=0.33))
        stamp = psf.drawImage(nx=31, ny=31, scale=scale).array
        img = np.zeros((size, size))
        for (x, y), f in zip(xy, flux):
            img[y - 15:y + 16, x - 15:x + 16] += stamp * f * t
        rng = np.random.default_rng(i)
        px = np.clip(rng.poisson(img + 800.0) + rng.normal(0, 5, img.shape), 0, 65535).astype(np.float32)
        measured.append(stars.measure(Frame(path=None, pixels=px, meta=FrameMeta(), saturation_adu=65535),
                                      plate_scale_arcsec_px=scale))
    # the premise: the sharp frame's measured stars are fainter on the median, the cloud's are not
    assert measured[4].star_flux_adu < 0.6 * np.median([m.star_flux_adu for m in measured[:4]])
    assert measured[6].star_flux_adu > 0.6 * np.median([m.star_flux_adu for m in measured[:4]])
    story = diagnose.night(measured, rig)
    assert [f.cloud for f in story.frames] == [False] * 6 + [True]
    assert len(story.cloud_periods) == 1


# --------------------------------------------------------------------------- seeing is not a focus drift

_SEEN_RIG = Rig(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, obstruction=0.33)


def _galsim_night_frame(galsim: object, seeing_arcsec: float, defocus_um: float, transmission: float, i: int,
                        t_s: float):
    """One frame of a GalSim night on one sky: 200 mm f/5 Newtonian (0.33 obstruction), Kolmogorov
    seeing times the defocused obstructed pupil (Noll Z4 from the wavefront's peak-to-valley
    defocus / (8 N^2)), 150 stars with a power-law count N(>F) ~ F^-0.75, measured by focuswatch."""
    from focuswatch.model.frame import Frame, FrameMeta
    from galsim_truth import power_law_sky

    rig, lam_nm, size = _SEEN_RIG, 550.0, 360
    scale = rig.plate_scale_arcsec_px
    z4 = defocus_um / (8 * 5.0 ** 2) / (lam_nm / 1000) / (2 * np.sqrt(3))
    optic = galsim.OpticalPSF(lam_over_diam=lam_nm * 1e-9 / 0.2 * 206264.806, obscuration=0.33, defocus=z4)
    psf = galsim.Convolve(galsim.Kolmogorov(fwhm=seeing_arcsec), optic)
    stamp = psf.drawImage(nx=41, ny=41, scale=scale).array
    px = power_law_sky(stamp, size, 150, faintest_adu=1.5e3, sky_seed=3, noise_seed=100 + i, margin_px=22,
                       transmission=transmission)
    meta = FrameMeta(timestamp=1.8e9 + t_s, focuser_pos=5000, filter_name="L", exposure_s=120.0)
    return stars.measure(Frame(path=None, pixels=px, meta=meta, saturation_adu=65535), plate_scale_arcsec_px=scale)


@pytest.fixture(scope="session")
def galsim_seeing_and_drift_nights():
    """GalSim truth, every 4 min: a seeing-only night (every frame in focus, seeing 2.0-4.2"
    with 0.15" of jitter), and a 2.5" night whose focus drifts 6 um a frame (90 um/h, 1.3 CFZ/h)."""
    galsim = pytest.importorskip("galsim")
    rng = np.random.default_rng(8)
    seeing = np.sort(np.linspace(2.0, 4.2, 10) + rng.normal(0, 0.15, 10))
    seeing_night = [_galsim_night_frame(galsim, float(s), 0.0, 1.0, i, 240.0 * i) for i, s in enumerate(seeing)]
    drift_night = [_galsim_night_frame(galsim, 2.5, 6.0 * i, 1.0, 20 + i, 240.0 * i) for i in range(12)]
    return seeing, seeing_night, drift_night


def _retimed(sts, order):
    """The same frames taken in another order (their DATE-OBS swapped)."""
    return [dataclasses.replace(sts[i], meta=dataclasses.replace(sts[i].meta, timestamp=1.8e9 + 240.0 * j))
            for j, i in enumerate(order)]


@pytest.mark.parametrize("order", ["rising", "falling", "shuffled"])
def test_a_seeing_only_night_reads_no_focus_drift(galsim_seeing_and_drift_nights, order):
    """Every frame in focus, the seeing 2.0-4.2": worse through the night, better, or jumping.
    The frames' own profile defocus figures (0-2 CFZ of seeing-fit noise on in-focus frames)
    built the drift: 'focus_miss: focus drifted 76 um/h' on such a night. Truth: no drift;
    the worst-seeing frames lose their faint stars to the detection limit but are not clouds."""
    seeing, sts, _ = galsim_seeing_and_drift_nights
    n = len(sts)
    order_idx = {"rising": list(range(n)), "falling": list(range(n))[::-1],
                 "shuffled": list(np.random.default_rng(5).permutation(n))}[order]
    night = _retimed(sts, order_idx)
    # the premise: the worst seeing's star count falls under 0.6 of the night's upper level
    counts = [s.n_stars for s in sts]
    assert min(counts[-2:]) < 0.6 * np.percentile(counts, 80)
    story = diagnose.night(night, _SEEN_RIG)
    cfz = optics.cfz_um(5.0, _SEEN_RIG.wavelength_nm)
    assert story.label != "focus_miss", story.summary
    assert story.drift_um_per_h is not None and abs(story.drift_um_per_h) * story.duration_h < 0.3 * cfz, story.summary
    assert not any(f.cloud for f in story.frames), [(f.hfr_px, f.n_stars) for f in story.frames]


def test_a_slow_focus_drift_in_steady_seeing_is_still_read(galsim_seeing_and_drift_nights):
    """6 um a frame every 4 min (90 um/h) in 2.5" seeing: 1 CFZ by the end, every frame still
    looks in focus to its profile. The night reads the drift from the stars' growth, its rate
    within 25 %, and calls it a focus miss. Before, in-focus frames gave their profile's noise
    (0-95 um) and the night read a drift of -27 um/h."""
    _, _, sts = galsim_seeing_and_drift_nights
    story = diagnose.night(sts, _SEEN_RIG)
    assert story.drift_um_per_h == pytest.approx(90.0, rel=0.25), story.summary
    assert story.label == "focus_miss", story.summary
    assert not any(f.cloud for f in story.frames)


def test_a_real_cloud_on_a_seeing_night_is_still_clouds(galsim_seeing_and_drift_nights):
    """The seeing-only night with a cloud letting 40 % through on a 2.8" frame: the count falls
    below what its seeing predicts (0.4^0.75 ~ half), so that frame alone is clouds."""
    galsim = pytest.importorskip("galsim")
    seeing, sts, _ = galsim_seeing_and_drift_nights
    k = int(np.argmin(np.abs(seeing - 2.8)))
    cloudy = list(sts)
    cloudy[k] = _galsim_night_frame(galsim, float(seeing[k]), 0.0, 0.4, k, 240.0 * k)
    story = diagnose.night(cloudy, _SEEN_RIG)
    assert [f.cloud for f in story.frames] == [i == k for i in range(len(sts))]
    assert story.label != "focus_miss", story.summary


def test_cli_plot_into_an_unwritable_place_is_a_runtime_problem_like_every_other_output(frame_dir, tmp_path, capsys):
    """README: exit 1 = a runtime problem (an unwritable output), 2 = bad usage. ``calc --chart`` into a
    folder that cannot exist (its parent is a file) says 1; ``diagnose --plot`` to the same place said 2."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be", encoding="utf-8")
    target = blocker / "field.png"
    rc_chart = main(["calc", "--f-ratio", "5", "--pixel-um", "3.76", "--chart", str(target)])
    capsys.readouterr()
    rc = main(["diagnose", str(frame_dir / "f0.fits"), "--plot", str(target)])
    err = capsys.readouterr().err
    assert rc_chart == 1 and rc == 1
    assert "field.png" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_short_poor_seeing_night_says_what_it_saw_not_n_a():
    """Three frames are too few for the frame-to-frame seeing scatter (it needs four): the night's
    poor-seeing verdict then names the frames that show it instead of "jitters n/a frame to frame".
    GalSim: one sky through a 200 mm f/5 Newtonian in focus, Kolmogorov 4.5" (seeing-limited)."""
    galsim = pytest.importorskip("galsim")
    from galsim_truth import power_law_sky

    from focuswatch.model.frame import Frame, FrameMeta

    rig = _SEEN_RIG
    scale = rig.plate_scale_arcsec_px
    optic = galsim.OpticalPSF(lam_over_diam=550e-9 / 0.2 * 206264.806, obscuration=0.33)
    stamp = galsim.Convolve(galsim.Kolmogorov(fwhm=4.5), optic).drawImage(nx=41, ny=41, scale=scale).array
    stats = []
    for i in range(3):
        px = power_law_sky(stamp, 300, 120, faintest_adu=1.5e3, sky_seed=3, noise_seed=200 + i, margin_px=22)
        meta = FrameMeta(timestamp=1.8e9 + 300.0 * i, filter_name="L", exposure_s=120.0)
        stats.append(stars.measure(Frame(path=None, pixels=px, meta=meta, saturation_adu=65535),
                                   plate_scale_arcsec_px=scale))
    story = diagnose.night(stats, rig, diagnoses=[diagnose.frame(st, rig) for st in stats])
    assert story.label == "poor_seeing", story.summary
    assert "n/a" not in story.summary and "of 3 frames" in story.summary, story.summary


def test_a_narrowband_filter_or_another_target_in_the_folder_is_not_clouds():
    """An LRGB+Ha night in one folder: the Ha filter passes ~5 % of the broadband starlight, so its
    frames hold fewer, fainter stars than the L frames — a filter, not a cloud. A second target in
    the same folder has its own star count. Each field and filter is judged against its own level;
    a real cloud (40 % of the light through) on one L frame is still called clouds.
    GalSim: one sky per target through a 200 mm f/5 Newtonian in focus, Kolmogorov 2.5"."""
    galsim = pytest.importorskip("galsim")
    from galsim_truth import power_law_sky

    from focuswatch.model.frame import Frame, FrameMeta

    rig = _SEEN_RIG
    scale = rig.plate_scale_arcsec_px
    optic = galsim.OpticalPSF(lam_over_diam=550e-9 / 0.2 * 206264.806, obscuration=0.33)
    stamp = galsim.Convolve(galsim.Kolmogorov(fwhm=2.5), optic).drawImage(nx=41, ny=41, scale=scale).array
    plan = ([("M31", "L", 1.0, 3)] * 4 + [("M31", "Ha", 0.05, 3)] * 4 + [("M31", "L", 0.4, 3)]
            + [("NGC 7000", "L", 1.0, 9)] * 4)
    stats = []
    for i, (target, filt, light, sky_seed) in enumerate(plan):
        n = 150 if sky_seed == 3 else 60
        px = power_law_sky(stamp, 300, n, faintest_adu=1.5e3, sky_seed=sky_seed, noise_seed=300 + i, margin_px=22,
                           transmission=light)
        meta = FrameMeta(timestamp=1.8e9 + 300.0 * i, filter_name=filt, exposure_s=300.0, object_name=target)
        stats.append(stars.measure(Frame(path=None, pixels=px, meta=meta, saturation_adu=65535),
                                   plate_scale_arcsec_px=scale))
    story = diagnose.night(stats, rig, diagnoses=[diagnose.frame(st, rig) for st in stats])
    clouds = [i for i, f in enumerate(story.frames) if f.cloud]
    assert clouds == [8], (clouds, story.summary)


RC_150 = po.Optics(aperture_mm=150.0, focal_length_mm=1200.0, pixel_um=5.4, obstruction=0.4, n_vanes=4,
                   vane_width=0.01)


def test_the_stacked_profile_tells_a_1_cfz_miss_from_seeing_on_one_frame_without_any_witness():
    """No seeing measured and no in-focus frame: a 150 mm f/8 RC (obstruction 0.4, 4 vanes) in 2.5"
    Kolmogorov seeing at 1 CFZ grows its stars by ~25 % and keeps a seeing-like HFD/FWHM, so the size
    and the two shape figures call it poor seeing. The stack of its ~30 bright stars, fitted with the
    rig's own diffraction (pupil OTF x seeing x pixel), shows the flattened core. Truth: the physical
    renderer's effective blur / seeing is >= 1.2 at 1 CFZ (a miss) and 0 in focus. The delta chi^2
    was chosen on labelled seeds 11-12; these seeds are new. At least a third of the 1 CFZ frames
    are caught (3 of 6 when written), each with a defocus bound under the true 1 CFZ; no focused
    frame is a miss, nor the 80 mm f/6 in 4.2" whose core noise a looser bound (12-14) took for 1 CFZ."""
    rig = rig_of(RC_150)
    one_cfz = optics.cfz_um(RC_150.f_ratio)
    assert po.effective_blur_px(RC_150, po.Seeing(2.5), one_cfz) / (2.5 / RC_150.plate_scale_arcsec_px) >= 1.2
    step_cfz = 0.05 / 0.61  # the pupil table's defocus step
    caught = 0
    for seed in range(21, 27):
        for cfz in (0.0, 1.0):
            spec = po.FrameSpec(optics=RC_150, seeing=po.Seeing(2.5),
                                aberrations=po.FieldAberrations(defocus_um=cfz * one_cfz),
                                width_px=320, height_px=320, n_stars=36, seed=seed)
            frame, st = measured(spec)
            d = diagnose.frame(st, rig, image=frame)
            ev = d.evidence
            assert ev.stack_n_stars is not None and ev.stack_n_stars >= 20
            if cfz == 0.0:
                assert d.label != "focus_miss", seed
                assert ev.stack_defocus_cfz_low < 0.7, seed
            elif d.label == "focus_miss":
                caught += 1
                assert 0.7 <= ev.stack_defocus_cfz_low <= 1.0 + step_cfz + 1e-6, (seed, ev.stack_defocus_cfz_low)
                assert ev.stack_blur_to_seeing_low >= 0.65
    assert caught >= 2
    for seed in (21, 22, 23):
        spec = po.FrameSpec(optics=REFRACTOR_80, seeing=po.Seeing(4.2), width_px=320, height_px=320,
                            n_stars=36, seed=seed)
        frame, st = measured(spec)
        d = diagnose.frame(st, rig_of(REFRACTOR_80), image=frame)
        assert d.label != "focus_miss" and d.evidence.stack_defocus_cfz_low < 0.7, seed


def test_the_pupil_otf_table_is_the_diffraction_of_the_pupil():
    """The generated table (scripts/make_calibration.py --pupil-otf) against closed forms: the
    in-focus OTF of a clear circular pupil, (2/pi)(acos t - t sqrt(1 - t^2)), and the
    obstructed pupil's zero-frequency normalisation; a defocused pupil passes less contrast."""
    t, w, otf = calibration.pupil_otf(0.0)
    mid = (t > 0.05) & (t < 0.95)
    clear = 2.0 / math.pi * (np.arccos(t[mid]) - t[mid] * np.sqrt(1.0 - t[mid] ** 2))
    assert np.max(np.abs(otf[0][mid] - clear)) < 0.01
    assert w[0] == 0.0 and abs(w[1] - 0.05) < 1e-9 and otf[0][0] == 1.0
    k = int(np.argmin(np.abs(w - 0.61)))  # 1 CFZ of defocus
    assert np.all(otf[k][mid] <= otf[0][mid] + 0.01) and np.mean(otf[k][mid]) < 0.7 * np.mean(otf[0][mid])
    t2, _, otf_e = calibration.pupil_otf(0.33)
    assert otf_e.shape == otf.shape and abs(otf_e[0][0] - 1.0) < 1e-6
