"""Bahtinov mask analysis against Fourier-optics simulations with a known defocus (focuswatch.sim.mask)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from focuswatch import bahtinov as bt, sim
from focuswatch.sim import mask as sm
from focuswatch.cli import main

RIG = sm.DEFAULT_MASK_RIG  # 200 mm f/5, eps 0.33, 3.76 um pixels, 2 um steps
CFZ = RIG.cfz_um()
#: five wavelengths over 420-680 nm keep each render around a second
BAND = (420.0, 485.0, 550.0, 615.0, 680.0)


def render(**kw) -> sm.MaskFrame:
    return sm.render(sm.MaskParams(wavelengths_nm=BAND, **kw))


@pytest.fixture(scope="module")
def sweep():
    """Offsets measured across +-3 zones (CFZ = 67 um): [(defocus_um, result)]."""
    out = []
    for i, z in enumerate((-3.0, -2.0, -1.0, -0.6, 0.0, 0.6, 1.0, 2.0, 3.0)):
        d = z * CFZ
        out.append((d, bt.analyze(render(defocus_um=d, seed=10 + i).pixels, RIG)))
    return out


def test_focus_error_within_20_percent_across_3_zones_and_sign_right(sweep):
    for d, r in sweep:
        assert r.pattern == "bahtinov"
        if abs(d) > CFZ / 2:  # outside half a zone: the sign is always right, the size within 20 %
            assert np.sign(r.focus_error_um) == np.sign(d), (d, r.focus_error_um)
            assert r.focus_error_um == pytest.approx(d, rel=0.20)
            assert r.direction == ("inward" if d > 0 else "outward") and not r.in_focus
        else:
            assert abs(r.focus_error_um - d) < 0.2 * CFZ


def test_conversion_constant_matches_the_grabber_formula(sweep):
    d = np.array([d for d, _ in sweep])
    off = np.array([r.offset_px for _, r in sweep])
    slope, icpt = np.polyfit(d, off, 1)
    formula = bt.grabber_px_per_um(RIG, 20.0)
    assert formula == pytest.approx(0.0294, abs=5e-4)
    assert slope == pytest.approx(formula, rel=0.10)  # measured ~0.0303 px/um (docs/bahtinov.md)
    assert abs(icpt) < 0.2


def test_spike_angles_and_middle_spike(sweep):
    _, r = sweep[4]  # in focus
    mid = [ln for ln in r.lines if ln.role == "middle"]
    assert len(mid) == 1 and mid[0].angle_deg == pytest.approx(90.0, abs=0.3)
    assert r.outer_half_angle_deg == pytest.approx(20.0, abs=0.3)
    assert r.in_focus and r.direction is None and "in focus" in r.verdict


def test_rotated_mask_and_off_centre_star():
    f = render(defocus_um=-130.0, rotation_deg=30.0, star_dx_px=6.4, star_dy_px=-3.7)
    r = bt.analyze(f.pixels, RIG)
    assert r.middle_angle_deg == pytest.approx(120.0, abs=0.5)
    assert r.focus_error_um == pytest.approx(-130.0, rel=0.2)
    assert r.move_steps == pytest.approx(abs(r.focus_error_um) / 2.0)


def test_reverse_and_calibrated_constant():
    px = render(defocus_um=150.0).pixels
    r = bt.analyze(px, RIG, reverse=True, px_per_um=0.0303)
    assert r.reversed and r.px_per_um_source == "given"
    assert r.focus_error_um == pytest.approx(-150.0, rel=0.1) and r.direction == "outward"


# --------------------------------------------------------------------------- Tri-Bahtinov

@pytest.fixture(scope="module")
def tri_sweep():
    """Tri-Bahtinov (b = 15 deg, turned 0-24 deg) across +-3 zones: [(defocus_um, frame, result)]."""
    out = []
    for i, z in enumerate((-3.0, -2.0, -1.0, -0.6, 0.0, 0.6, 1.0, 2.0, 3.0)):
        d = z * CFZ
        f = render(mask="tri-bahtinov", outer_angle_deg=15.0, defocus_um=d, rotation_deg=(8.0 * i) % 25 - 8.0,
                   seed=30 + i)
        out.append((d, f, bt.analyze(f.pixels, RIG)))
    return out


def test_tri_focus_error_within_20_percent_across_3_zones_and_sign_right(tri_sweep):
    for d, _, r in tri_sweep:
        assert r.pattern == "tri-bahtinov" and len(r.triplets) == 3 and len(r.lines) == 9
        assert r.px_per_um_source == "tri-bahtinov-geometric"
        errs = [r.focus_error_um] + [t.focus_error_um for t in r.triplets]  # combined and each sub-mask
        if abs(d) > CFZ / 2:
            for e in errs:
                assert np.sign(e) == np.sign(d), (d, errs)
                assert e == pytest.approx(d, rel=0.20), (d, errs)  # measured: within 7 %
            assert r.direction == ("inward" if d > 0 else "outward") and not r.in_focus
        else:
            assert all(abs(e - d) < 0.2 * CFZ for e in errs), (d, errs)
        # perfect optics: the three sub-masks agree (measured spread <= 0.08 CFZ)
        assert r.focus_spread_um < 0.25 * CFZ and r.collimation_ok is True


def test_tri_offsets_follow_the_geometric_conversion(tri_sweep):
    d = np.array([d for d, _, _ in tri_sweep])
    off = np.array([r.offset_px for _, _, r in tri_sweep])
    slope, icpt = np.polyfit(d, off, 1)
    formula = bt.tri_px_per_um(RIG, 15.0)
    assert formula == pytest.approx(tri_sweep[0][1].truth["geometric_px_per_um"], rel=0.01)  # simulator's own centroids
    assert slope == pytest.approx(formula, rel=0.10) and abs(icpt) < 0.2  # measured ~2 % low


def test_tri_triplets_follow_the_mask_symmetry(tri_sweep):
    _, f, r = tri_sweep[4]  # in focus, mask turned by -1 deg
    rot = f.truth["rotation_deg"]
    assert [t.index for t in r.triplets] == [0, 1, 2]
    for t, want in zip(r.triplets, (90.0, 30.0, 150.0)):
        assert t.middle_angle_deg == pytest.approx((want + rot) % 180.0, abs=0.3)
        assert t.outer_half_angle_deg == pytest.approx(15.0, abs=0.5)
    for t, want in zip(r.triplets, (rot, rot + 120.0, rot + 240.0)):  # 0-360 deg, 120 deg apart
        assert (t.normal_deg - want + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=0.5)
    for k in range(3):  # one middle and two outer spikes per sub-mask
        assert sorted(ln.role for ln in r.lines if ln.triplet == k) == ["middle", "outer", "outer"]


@pytest.mark.parametrize("beta, defocus_um", [(20.0, -150.0), (10.0, 120.0)])
def test_tri_evenly_spaced_and_narrow_spikes(beta, defocus_um):
    """b = 20 deg: nine spikes 20 deg apart (gaps cannot group them); b = 10 deg: crowded spikes."""
    r = bt.analyze(render(mask="tri-bahtinov", outer_angle_deg=beta, defocus_um=defocus_um, seed=5).pixels, RIG)
    assert [round(t.middle_angle_deg) for t in r.triplets] == [90, 30, 150]
    assert r.outer_half_angle_deg == pytest.approx(beta, abs=0.5)
    for t in r.triplets:
        assert t.focus_error_um == pytest.approx(defocus_um, rel=0.20)
    assert any("evenly spaced" in n for n in r.notes) == (beta == 20.0)


@pytest.fixture(scope="module")
def tri_astigmatic():
    """Sensor 50 um beyond focus, astigmatism 150 um along x: the sub-masks see different focus."""
    return render(mask="tri-bahtinov", defocus_um=50.0, astigmatism_um=150.0, seed=7)


def test_tri_miscollimation_shows_as_spread(tri_astigmatic):
    f = tri_astigmatic
    r = bt.analyze(f.pixels, RIG)
    truth = [t["defocus_um"] for t in f.truth["triplets"]]  # the simulator's ray model: ~118, 18, 14 um
    assert max(truth) - min(truth) > CFZ
    for t, want in zip(r.triplets, truth):
        assert t.focus_error_um == pytest.approx(want, abs=0.15 * CFZ)  # measured within 9 um
    assert r.focus_error_um == pytest.approx(50.0, abs=0.15 * CFZ)  # the mean: the astigmatism averages out
    assert r.focus_spread_um == pytest.approx(max(truth) - min(truth), abs=0.25 * CFZ)
    assert r.collimation_ok is False and "90°" in r.collimation_hint and "beyond" in r.collimation_hint


def test_tri_turned_60_degrees_flips_the_sign_and_reverse_fixes_it():
    px = render(mask="tri-bahtinov", defocus_um=120.0, rotation_deg=45.0, seed=8).pixels
    r, rr = bt.analyze(px, RIG), bt.analyze(px, RIG, reverse=True)
    assert r.focus_error_um == pytest.approx(-120.0, rel=0.2) and r.direction == "outward"
    assert rr.focus_error_um == pytest.approx(120.0, rel=0.2) and rr.direction == "inward"
    assert all(t.focus_error_um > 0 for t in rr.triplets)


def test_unsymmetric_spikes_are_reported_but_not_measured():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:200, :200].astype(float)
    img = rng.normal(1000, 10, (200, 200)) + 60000 * np.exp(-((xx - 100) ** 2 + (yy - 100) ** 2) / 8.0)
    for a in np.radians([0, 25, 50, 100, 130, 160]):  # six spikes, no 3-fold symmetry
        img += 3000 * np.exp(-(-(xx - 100) * np.sin(a) + (yy - 100) * np.cos(a)) ** 2 / 4.0)
    r = bt.analyze(img, RIG)
    assert r.pattern == "tri-bahtinov" and r.focus_error_um is None and not r.triplets
    assert "not measured" in r.verdict and any("symmetry" in n for n in r.notes)


def test_tri_result_round_trips(tri_sweep):
    r = tri_sweep[-1][2]
    assert bt.BahtinovResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_star_without_mask_is_an_error():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :200]
    img = rng.normal(1000, 10, (200, 200)) + 50000 * np.exp(-((xx - 100) ** 2 + (yy - 100) ** 2) / 8.0)
    with pytest.raises(bt.BahtinovError, match="Bahtinov"):
        bt.analyze(img, RIG)


def test_result_round_trips():
    r = bt.analyze(render(defocus_um=70.0).pixels, RIG)
    assert bt.BahtinovResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def _write(path, frame):
    path.write_bytes(sim.fits_bytes(frame))  # the simulator's FITS writer: big-endian with BZERO, NINA keywords


def test_cli_bahtinov_json_plot_and_rig_from_header(tmp_path, capsys):
    f = render(defocus_um=-200.0)
    p = tmp_path / "mask.fits"
    _write(p, f)
    png = tmp_path / "b.png"
    assert main(["bahtinov", str(p), "--json", "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pattern"] == "bahtinov" and out["direction"] == "outward"
    assert out["focus_error_um"] == pytest.approx(-200.0, rel=0.2)
    assert out["cfz_um"] == pytest.approx(CFZ) and out["move_steps"] > 60  # FOCUSSZ = 2 um from the header
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["bahtinov", str(p)]) == 0
    assert "move the focuser outward" in capsys.readouterr().out


def test_cli_bahtinov_tri_json_and_text(tmp_path, capsys, tri_astigmatic):
    p = tmp_path / "tri.fits"
    _write(p, tri_astigmatic)
    assert main(["bahtinov", str(p), "--obstruction", "0.33", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pattern"] == "tri-bahtinov" and out["px_per_um_source"] == "tri-bahtinov-geometric"
    assert [t["index"] for t in out["triplets"]] == [0, 1, 2]
    assert out["triplets"][0]["focus_error_um"] > out["focus_error_um"] > out["triplets"][1]["focus_error_um"]
    assert out["focus_spread_um"] > CFZ and out["collimation_ok"] is False and out["direction"] == "inward"
    assert main(["bahtinov", str(p)]) == 0  # no obstruction given: a note says so
    text = capsys.readouterr().out
    assert "sub-mask 2: middle spike 150.0°" in text and "collimation: the three sub-masks disagree" in text
    assert "--obstruction" in text


def test_cli_bahtinov_bad_input(tmp_path, capsys):
    p = tmp_path / "notes.fits"
    p.write_text("not a fits file")
    assert main(["bahtinov", str(p)]) == 1
    err = capsys.readouterr().err
    assert "not a FITS file" in err and "Traceback" not in err


def test_the_thresholds_live_in_one_config_and_are_used(sweep):
    """The default config is the tuned one (same result as the sweep's, whose defocus is known by
    construction), and its thresholds are really read: asking for more spike pixels than the
    star has, or a line fit tighter than any noise allows, refuses the pattern."""
    from dataclasses import replace

    d, r = sweep[1]
    img = render(defocus_um=d, seed=11).pixels
    again = bt.analyze(img, RIG, config=bt.BahtinovConfig())
    assert again.focus_error_um == pytest.approx(r.focus_error_um, rel=1e-12)
    assert again.focus_error_um == pytest.approx(d, rel=0.20)
    with pytest.raises(bt.BahtinovError, match="no diffraction spikes"):
        bt.analyze(img, RIG, config=replace(bt.BAHTINOV, min_spike_pixels=10 ** 9))
    with pytest.raises(bt.BahtinovError):
        bt.analyze(img, RIG, config=replace(bt.BAHTINOV, max_line_rms_px=1e-6))
