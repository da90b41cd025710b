"""The simulator: its truth against closed forms, its pixels against its truth, its files."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from focuswatch import cli, optics, sim
from focuswatch.io import frames
from focuswatch.sim import SimParams

SMALL = dict(width_px=256, height_px=256, n_stars=12)
GAUSS = float("inf")


def _moments(img: np.ndarray, x: float, y: float, r: int):
    """Centroid, second moments (px^2) and orientation of the light in a box about (x, y)."""
    xi, yi = int(round(x)), int(round(y))
    sub = img[yi - r:yi + r + 1, xi - r:xi + r + 1].astype(float)
    yy, xx = np.mgrid[yi - r:yi + r + 1, xi - r:xi + r + 1]
    f = sub.sum()
    cx, cy = (sub * xx).sum() / f, (sub * yy).sum() / f
    dx, dy = xx - cx, yy - cy
    sxx, syy, sxy = (sub * dx * dx).sum() / f, (sub * dy * dy).sum() / f, (sub * dx * dy).sum() / f
    theta = 0.5 * math.atan2(2 * sxy, sxx - syy)
    tr, det = sxx + syy, sxx * syy - sxy * sxy
    lam1 = tr / 2 + math.sqrt(max(tr * tr / 4 - det, 0.0))
    lam2 = tr / 2 - math.sqrt(max(tr * tr / 4 - det, 0.0))
    return cx, cy, sxx, syy, theta, math.sqrt(lam1 / lam2), f


def _isolated(truth: dict, w: int, h: int, r: int, min_flux: float = 0.0) -> list[dict]:
    """Stars whose box of half-size r is inside the frame and free of other stars' boxes."""
    stars = truth["stars"]
    out = []
    for s in stars:
        if not (r + 1 <= s["x"] < w - r - 1 and r + 1 <= s["y"] < h - r - 1) or s["flux_e"] < min_flux:
            continue
        if all(o is s or max(abs(o["x"] - s["x"]), abs(o["y"] - s["y"])) > 2 * r + 2 for o in stars):
            out.append(s)
    return out


# --------------------------------------------------------------------------- truth vs closed forms

@pytest.mark.parametrize("blur_px,eps", [(6.0, 0.0), (24.0, 0.0), (40.0, 0.35), (30.0, 0.5)])
def test_disk_and_annulus_hfr_match_closed_forms(blur_px, eps):
    rig = sim.DEFAULT_RIG.with_(obstruction=eps) if eps else sim.DEFAULT_RIG
    p = SimParams(**SMALL, rig=rig, seeing_fwhm_arcsec=0.0, defocus_um=blur_px * 5.0 * 3.76)
    t = sim.truth_for(p)
    big_r = blur_px / 2
    assert t["blur_px"] == pytest.approx(blur_px, rel=1e-9)
    assert t["hfr_px"] == pytest.approx(big_r * math.sqrt((1 + eps * eps) / 2), rel=2e-3)
    assert t["hfr_nina_px"] == pytest.approx(big_r * optics.nina_hfr_factor(eps), rel=2e-3)
    assert t["fwhm_px"] == pytest.approx(blur_px, rel=0.01)  # a flat disk: half maximum at its edge


@pytest.mark.parametrize("fwhm_arcsec", [1.0, 2.5, 6.0])
def test_gaussian_hfr_is_sigma_sqrt_2ln2(fwhm_arcsec):
    p = SimParams(**SMALL, seeing_fwhm_arcsec=fwhm_arcsec, moffat_beta=GAUSS)
    t = sim.truth_for(p)
    sigma = t["seeing_fwhm_px"] / (2 * math.sqrt(2 * math.log(2)))
    assert t["hfr_px"] == pytest.approx(sigma * math.sqrt(2 * math.log(2)), rel=2e-3)
    assert t["hfr_nina_px"] == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=2e-3)
    assert t["fwhm_px"] == pytest.approx(t["seeing_fwhm_px"], rel=3e-3)
    assert t["profile_ratio"] == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("beta", [2.5, 3.5, 4.0])
def test_moffat_hfr_and_profile_ratio(beta):
    p = SimParams(**SMALL, moffat_beta=beta)
    t = sim.truth_for(p)
    alpha = sim.moffat_alpha(t["seeing_fwhm_px"], beta)
    assert t["hfr_px"] == pytest.approx(alpha * math.sqrt(0.5 ** (1 / (1 - beta)) - 1), rel=2e-3)
    assert t["fwhm_px"] == pytest.approx(t["seeing_fwhm_px"], rel=3e-3)
    expected_ratio = {2.5: 1.36, 3.5: 1.20, 4.0: 1.17}[beta]  # design.md: HFD/FWHM of Moffat profiles
    assert t["profile_ratio"] == pytest.approx(expected_ratio, abs=0.015)
    # closed form: HFD / FWHM = sqrt(2^(1/(beta-1)) - 1) / sqrt(2^(1/beta) - 1)
    closed = math.sqrt(2 ** (1 / (beta - 1)) - 1) / math.sqrt(2 ** (1 / beta) - 1)
    assert t["profile_ratio"] == pytest.approx(closed, rel=5e-3)


def test_truth_basics_and_quadrature_model():
    p = SimParams(**SMALL, defocus_um=150.0, filter_name="Ha")
    t = sim.truth_for(p)
    assert t["plate_scale_arcsec_px"] == pytest.approx(206.265 * 3.76 / 1000)
    assert t["seeing_fwhm_px"] == pytest.approx(2.5 / t["plate_scale_arcsec_px"])
    assert t["blur_px"] == pytest.approx(150.0 / 5.0 / 3.76)
    assert t["cfz_um"] == pytest.approx(optics.cfz_um(5.0, 656.3))
    assert t["defocus_in_cfz"] is False
    assert t["hfr_px"] > t["hfr0_px"] and t["hfr_focus_px"] == pytest.approx(t["hfr_px"], rel=1e-3)
    # the quadrature model of optics.hfr_px_for_defocus is an approximation; it stays within 10 %
    model = optics.hfr_px_for_defocus(150.0, t["hfr0_px"], 5.0, 3.76)
    assert model == pytest.approx(t["hfr_px"], rel=0.10)
    json.dumps(t)  # JSON-able


# --------------------------------------------------------------------------- pixels vs truth

def test_pixel_integrated_star_matches_continuous_truth():
    """A noiseless Gaussian star's second moments are sigma^2 + 1/12 (pixel width), positions exact."""
    p = SimParams(width_px=200, height_px=200, n_stars=6, seed=5, moffat_beta=GAUSS, seeing_fwhm_arcsec=2.0)
    img, truth = sim.star_image(p)
    sigma2 = (truth["seeing_fwhm_px"] / (2 * math.sqrt(2 * math.log(2)))) ** 2
    stars = _isolated(truth, 200, 200, 12)
    assert len(stars) >= 3
    for s in stars:
        cx, cy, sxx, syy, _, _, f = _moments(img, s["x"], s["y"], 12)
        assert cx == pytest.approx(s["x"], abs=0.005) and cy == pytest.approx(s["y"], abs=0.005)
        assert sxx == pytest.approx(sigma2 + 1 / 12, rel=0.005)
        assert syy == pytest.approx(sigma2 + 1 / 12, rel=0.005)
        assert f == pytest.approx(s["flux_e"], rel=1e-4)  # flux conserved into the pixels


def test_flux_conservation_with_donuts():
    rig = sim.DEFAULT_RIG.with_(obstruction=0.3)
    p = SimParams(width_px=400, height_px=400, n_stars=5, seed=3, rig=rig, defocus_um=800.0)
    img, truth = sim.star_image(p)
    r = 30  # blur 42.6 px diameter + seeing
    stars = _isolated(truth, 400, 400, r)
    assert stars
    for s in stars:
        *_, f = _moments(img, s["x"], s["y"], r)
        assert f == pytest.approx(s["flux_e"], rel=2e-3)
    # a donut has a hole: the centre is darker than the ring
    s = stars[0]
    xi, yi = int(round(s["x"])), int(round(s["y"]))
    assert img[yi, xi] < 0.5 * img[yi - 18:yi + 19, xi - 18:xi + 19].max()


def test_reproducible_with_a_seed_and_noise_differs_by_frame():
    a = sim.render(SimParams(**SMALL, seed=7))
    b = sim.render(SimParams(**SMALL, seed=7))
    c = sim.render(SimParams(**SMALL, seed=7, frame_nr=2))
    d = sim.render(SimParams(**SMALL, seed=8))
    assert np.array_equal(a.pixels, b.pixels) and a.truth == b.truth
    assert SimParams.from_dict(json.loads(json.dumps(a.truth["params"]))) == a.params
    assert not np.array_equal(a.pixels, c.pixels)
    assert [s["x"] for s in a.truth["stars"]] == [s["x"] for s in c.truth["stars"]]  # same sky
    assert [s["x"] for s in a.truth["stars"]] != [s["x"] for s in d.truth["stars"]]


@pytest.mark.parametrize("sky_adu,gain,rn", [(800.0, 1.0, 3.0), (4.0, 1.0, 2.0), (2000.0, 0.5, 5.0)])
def test_noise_level_and_levels(sky_adu, gain, rn):
    p = SimParams(width_px=300, height_px=300, n_stars=0, sky_adu=sky_adu, gain_e_per_adu=gain,
                  read_noise_e=rn, bias_adu=300.0)
    px = sim.render(p).pixels.astype(float)
    assert px.mean() == pytest.approx(300.0 + sky_adu, abs=0.5)
    expected_sd = math.sqrt(sky_adu * gain + rn * rn) / gain
    assert px.std() == pytest.approx(math.sqrt(expected_sd ** 2 + 1 / 12), rel=0.03)


def test_saturation_hot_pixels_and_cosmic_rays():
    p = SimParams(**SMALL, star_flux_max_e=5e7, star_flux_min_e=2e7, n_hot_pixels=15, n_cosmic_rays=3)
    f = sim.render(p)
    assert f.pixels.max() == 65535
    assert f.truth["n_saturated"] >= 1
    assert len(f.truth["hot_pixels"]) == 15 and len(f.truth["cosmic_rays"]) == 3
    x, y = f.truth["hot_pixels"][0]
    assert f.pixels[y, x] > np.median(f.pixels) + 1500


# --------------------------------------------------------------------------- effects

def test_trail_elongates_along_its_angle():
    p = SimParams(width_px=240, height_px=240, n_stars=5, seed=2, trail_px=10.0, trail_angle_deg=30.0)
    img, truth = sim.star_image(p)
    for s in _isolated(truth, 240, 240, 14):
        *_, theta, axis_ratio, _ = _moments(img, s["x"], s["y"], 14)
        assert math.degrees(theta) == pytest.approx(30.0, abs=2.0)
        assert axis_ratio > 1.5
    assert truth["hfr_px"] > sim.truth_for(p.with_(trail_px=0.0))["hfr_px"]


def test_clouds_lower_star_flux_and_raise_the_sky():
    clear = sim.render(SimParams(**SMALL))
    cloudy = sim.render(SimParams(**SMALL, cloud=0.6))
    fc = sum(s["flux_e"] for s in clear.truth["stars"])
    fk = sum(s["flux_e"] for s in cloudy.truth["stars"])
    assert fk == pytest.approx(0.4 * fc, rel=1e-6)
    assert np.median(cloudy.pixels) > np.median(clear.pixels) + 300
    assert cloudy.truth["hfr_px"] == pytest.approx(clear.truth["hfr_px"])


def test_dew_adds_halos_and_lowers_contrast():
    p = SimParams(width_px=200, height_px=200, n_stars=4, seed=9)
    img0, t0 = sim.star_image(p)
    img1, t1 = sim.star_image(p.with_(dew=0.8))
    assert t1["hfr_px"] > 1.5 * t0["hfr_px"] and t1["transmission"] < t0["transmission"]
    assert t1["sky_e"] > t0["sky_e"]
    assert img1.max() < 0.7 * img0.max()


def test_tilt_makes_a_gradient_and_curvature_worse_corners():
    tilt = sim.truth_for(SimParams(**SMALL, defocus_um=20.0, tilt_x_um=40.0))
    z = np.array(tilt["zones_hfr_px"])
    assert tilt["field_varies"] and tilt["n_psf_cells"] > 1
    assert z[1, 2] > z[1, 1] > z[1, 0]
    curv = sim.truth_for(SimParams(**SMALL, curvature_um=200.0))
    z = np.array(curv["zones_hfr_px"])
    assert min(z[0, 0], z[0, 2], z[2, 0], z[2, 2]) > z[1, 1] * 1.2
    assert z[1, 1] == pytest.approx(curv["hfr_px"], rel=1e-3)
    # per-star truth follows the field: corner stars are larger than central ones
    stars = curv["stars"]
    r = [math.hypot(s["x"] - 127.5, s["y"] - 127.5) for s in stars]
    assert stars[int(np.argmax(r))]["hfr_px"] > stars[int(np.argmin(r))]["hfr_px"]


def test_coma_is_radial_and_grows_outward():
    p = SimParams(width_px=400, height_px=400, n_stars=40, seed=4, coma_px=12.0)
    img, truth = sim.star_image(p)
    for s in _isolated(truth, 400, 400, 12, min_flux=1e4):
        dx, dy = s["x"] - 199.5, s["y"] - 199.5
        if math.hypot(dx, dy) < 150:
            continue
        *_, theta, axis_ratio, _ = _moments(img, s["x"], s["y"], 12)
        phi = math.atan2(dy, dx)
        assert math.cos(2 * (theta - phi)) > 0.9  # major axis points at the centre
        assert axis_ratio > 1.1


def test_collimation_is_the_same_asymmetry_everywhere():
    p = SimParams(width_px=300, height_px=300, n_stars=12, seed=6, collimation=0.8, collimation_angle_deg=-60.0)
    img, truth = sim.star_image(p)
    stars = _isolated(truth, 300, 300, 12)
    assert len(stars) >= 3
    angles = np.radians(np.arange(0, 360, 5))
    for s in stars:
        xi, yi = int(round(s["x"])), int(round(s["y"]))
        sub = img[yi - 12:yi + 13, xi - 12:xi + 13]
        yy, xx = np.mgrid[yi - 12:yi + 13, xi - 12:xi + 13]
        dx, dy = xx - s["x"], yy - s["y"]
        # the light is skewed toward the flare: the third moment peaks at -60 degrees
        m3 = [(sub * (dx * math.cos(t) + dy * math.sin(t)) ** 3).sum() for t in angles]
        ang = math.degrees(angles[int(np.argmax(m3))])
        assert abs((ang + 60 + 180) % 360 - 180) <= 10


def test_sky_gradient_and_bayer():
    f = sim.render(SimParams(width_px=128, height_px=128, n_stars=0, sky_gradient=0.5, sky_adu=1000.0))
    top, bottom = np.median(f.pixels[:20]), np.median(f.pixels[-20:])
    assert bottom - top == pytest.approx(0.5 * 1000 * (108 / 128), rel=0.05)
    b = sim.render(SimParams(width_px=64, height_px=64, n_stars=0, bayer="RGGB", sky_adu=1000.0))
    r, g = b.pixels[0::2, 0::2].mean() - 500, b.pixels[0::2, 1::2].mean() - 500
    assert r / g == pytest.approx(0.8, rel=0.02)
    assert b.header["BAYERPAT"] == "RGGB"


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="dew"):
        SimParams(dew=1.5)
    with pytest.raises(ValueError, match="bayer"):
        SimParams(bayer="XYZW")


# --------------------------------------------------------------------------- files

def test_fits_round_trip_through_frames_load(tmp_path):
    p = SimParams(width_px=96, height_px=64, n_stars=5, frame_nr=42, filter_name="Ha", temp_c=3.25,
                  focuser_pos=12345, exposure_s=300.0, date_obs="2026-11-21T23:01:02.5")
    f = sim.render(p)
    path = sim.write_fits(tmp_path, f)
    assert path.parent == tmp_path
    assert path.name == "2026-11-21_23-01-02_Ha_-10.00_300.00s_0042.fits"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\w+_-?\d+\.\d\d_\d+\.\d\ds_\d{4}\.fits", path.name)
    raw = path.read_bytes()
    assert raw == sim.fits_bytes(f) and len(raw) % 2880 == 0
    assert b"BZERO   =                32768" in raw and b"BITPIX  =                   16" in raw
    fr = frames.load(path)
    assert np.array_equal(fr.pixels, f.pixels.astype(np.float32))
    m = fr.meta
    assert (m.image_type, m.exposure_s, m.filter_name, m.focuser_pos) == ("LIGHT", 300.0, "Ha", 12345)
    assert (m.focuser_temp_c, m.focuser_step_um, m.pixel_um, m.binning) == (3.25, 2.0, 3.76, 1)
    assert (m.focal_length_mm, m.f_ratio, m.sensor_temp_c) == (1000.0, 5.0, -10.0)
    assert m.date_obs == "2026-11-21T23:01:02.500" and m.altitude_deg == 60.0
    assert m.software.startswith("N.I.N.A.") and m.is_light
    assert fr.saturation_adu == 65535.0
    # piecewise writes (as NINA does) are incomplete until the last byte
    part = tmp_path / "partial.fits"
    part.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(frames.FrameIncomplete):
        frames.load(part)


# --------------------------------------------------------------------------- night model

def test_focuser_drift_and_autofocus():
    foc = sim.SimFocuser(position=10000, step_um=2.0, pos0=10000, temp0_c=10.0, coef_um_per_c=-20.0,
                         filter_offsets_steps={"Ha": 30.0})
    assert foc.defocus_um(10.0, "L") == 0.0
    assert foc.defocus_um(8.0, "L") == pytest.approx(-40.0)  # best focus moved +20 steps
    assert foc.defocus_um(10.0, "Ha") == pytest.approx(-60.0)
    foc.autofocus(8.0, "L", np.random.default_rng(1))
    assert abs(foc.defocus_um(8.0, "L")) < 15.0


def test_night_frames_drift_cloud_filter_and_refocus():
    base = SimParams(width_px=64, height_px=64, n_stars=3)
    foc = sim.SimFocuser(position=10000, pos0=10000, temp0_c=10.0, coef_um_per_c=-20.0,
                         filter_offsets_steps={"Ha": 25.0})
    plan = sim.NightPlan(n_frames=40, interval_s=600.0, temp_start_c=10.0, cooling_c_per_hour=-1.0,
                         cloud_frames=(10, 13, 0.8), filter_change=(30, "Ha"), dew_start_frame=35,
                         wind_frames=(5, 6, 8.0))
    gen = sim.night_frames(base, plan, foc, seed=3)
    series = [next(gen) for _ in range(20)]
    foc.autofocus(series[-1].temp_c, "L", np.random.default_rng(0))  # the caller refocuses mid-night
    series += list(gen)
    assert len(series) == 40
    d = np.array([s.defocus_um for s in series])
    temps = np.array([s.temp_c for s in series])
    assert temps[19] == pytest.approx(10.0 - 19 * 600 / 3600, abs=0.25)
    # best focus moves by coef_um_per_c per C, so the defocus is -coef * (T - T0)
    assert d[19] == pytest.approx(20.0 * (temps[19] - 10.0), abs=3.0)
    assert abs(d[20]) < 15.0 and abs(d[20]) < abs(d[19])
    assert [s.cloud > 0 for s in series[8:16]] == [False, False, True, True, True, True, False, False]
    assert {s.filter_name for s in series[30:]} == {"Ha"} and series[29].filter_name == "L"
    assert d[30] - d[29] == pytest.approx(-50.0, abs=5.0)  # the parfocal offset of Ha
    assert len({s.seeing_fwhm_arcsec for s in series}) > 30 and len({s.frame_nr for s in series}) == 40
    assert [s.dew for s in series[34:37]] == pytest.approx([0.0, 0.03, 0.06])
    assert [s.trail_px > 2 for s in series[4:8]] == [False, True, True, False]
    again = list(sim.night_frames(base, plan, sim.SimFocuser(position=10000, pos0=10000, temp0_c=10.0,
                                                             coef_um_per_c=-20.0), seed=3))
    assert [s.temp_c for s in again] == list(temps)


def test_cli_sim_writes_frames_and_truth(tmp_path, capsys):
    out = tmp_path / "night"
    rc = cli.main(["sim", str(out), "--frames", "3", "--width", "128", "--height", "96", "--stars", "8",
                   "--defocus-um", "30", "--drift-um-per-c", "-40", "--cooling-c-per-hour", "-3",
                   "--interval-s", "1200", "--json"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3
    for k in ("file", "hfr_px", "defocus_um", "cfz_um", "temp_c", "focuser_pos"):
        assert k in lines[0]
    assert lines[0]["defocus_um"] == pytest.approx(30.0, abs=4.0)
    assert lines[2]["defocus_um"] < lines[0]["defocus_um"] - 60  # cooling 2 C, best focus -40 um/C
    truth = json.loads((out / "truth.json").read_text())
    assert [t["file"] for t in truth] == [p.split("/")[-1].split("\\")[-1] for p in (x["file"] for x in lines)]
    assert all((out / t["file"]).is_file() for t in truth)
    assert frames.load(out / truth[1]["file"]).meta.focuser_temp_c == pytest.approx(truth[1]["temp_c"])
    assert cli.main(["sim", str(tmp_path / "g"), "--beta", "inf", "--width", "32", "--height", "32"]) == 0
    gauss = json.loads((tmp_path / "g" / "truth.json").read_text())[0]  # strict JSON: inf -> null
    assert SimParams.from_dict(gauss["params"]).moffat_beta == float("inf")
    assert cli.main(["sim", str(tmp_path / "x"), "--dew", "3"]) == 2
    assert "dew" in capsys.readouterr().err


def test_sim_rig_fills_defaults_and_keeps_a_given_f_ratio():
    rig = sim.sim_rig(optics.Rig(focal_length_mm=700.0, pixel_um=4.63, f_ratio_given=7.0))
    assert (rig.f_ratio, rig.aperture_mm, rig.focuser_step_um) == (7.0, 100.0, 2.0)
    assert sim.sim_rig(None) == sim.DEFAULT_RIG


def test_cli_sim_never_overwrites_a_frame_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "session"
    assert cli.main(["sim", str(out), "--width", "32", "--height", "32", "--stars", "2"]) == 0
    assert cli.main(["sim", str(out), "--width", "32", "--height", "32", "--stars", "2"]) == 0  # its own output
    (name,) = [p.name for p in out.glob("*.fits")]
    user = out / name  # a real capture program's frame that happens to have the same name
    raw = (b"SIMPLE  =                    T".ljust(80) + b"END".ljust(80)).ljust(2880)
    user.write_bytes(raw)
    capsys.readouterr()
    assert cli.main(["sim", str(out), "--width", "32", "--height", "32", "--stars", "2"]) == 1
    err = capsys.readouterr().err
    assert "not overwriting" in err and name in err and "Traceback" not in err
    assert user.read_bytes() == raw


def test_demo_frame_spans_parse_with_defaults_and_refuse_in_one_line():
    from focuswatch.sim.night import _parse_cloud, _parse_wind

    assert _parse_cloud("10:14") == (10, 14, 0.7) and _parse_cloud("1:2:0.5") == (1, 2, 0.5)
    assert _parse_wind("3:4") == (3, 4, 6.0) and _parse_wind("3:4:9") == (3, 4, 9.0)
    assert _parse_cloud(None) is None and _parse_wind("") is None
    for parse, text, words in ((_parse_cloud, "1:2:3", "DEPTH in 0..1"), (_parse_cloud, "x", "FIRST:LAST[:DEPTH]"),
                               (_parse_wind, "5:1", "TRAIL_PX >= 0"), (_parse_wind, "1:2:-1", "TRAIL_PX >= 0")):
        with pytest.raises(ValueError) as err:
            parse(text)
        assert words in str(err.value) and repr(text) in str(err.value) and "\n" not in str(err.value)
