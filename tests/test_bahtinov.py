"""Bahtinov mask analysis against Fourier-optics simulations with a known defocus (simmask)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from focuswatch import bahtinov as bt, simmask as sm
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


def test_tri_bahtinov_is_detected():
    r = bt.analyze(render(mask="tri-bahtinov", outer_angle_deg=15.0).pixels, RIG)
    assert r.pattern == "tri-bahtinov" and len(r.lines) >= 6
    assert r.focus_error_um is None and "Tri-Bahtinov" in r.verdict


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
    from astropy.io import fits
    hdu = fits.PrimaryHDU(frame.pixels)  # astropy writes big-endian with BZERO
    for k, v in frame.header.items():
        hdu.header[k] = v
    hdu.writeto(path)


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


def test_cli_bahtinov_bad_input(tmp_path, capsys):
    p = tmp_path / "notes.fits"
    p.write_text("not a fits file")
    assert main(["bahtinov", str(p)]) == 1
    err = capsys.readouterr().err
    assert "not a FITS file" in err and "Traceback" not in err
