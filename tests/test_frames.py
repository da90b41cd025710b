"""Reading frames: formats, header normalisation, completeness, and every kind of bad file."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from focuswatch import frames
from focuswatch.errors import FrameError, FrameIncomplete

NINA_HEADER = {
    "IMAGETYP": "LIGHT", "EXPOSURE": 120.0, "EXPTIME": 120.0, "DATE-OBS": "2026-11-21T22:14:03.123456789",
    "XBINNING": 2, "XPIXSZ": 7.52, "GAIN": 100, "OFFSET": 50, "CCD-TEMP": -10.0, "TELESCOP": "Esprit 100",
    "FOCALLEN": 550.0, "FOCRATIO": 5.5, "FILTER": "Ha", "OBJECT": "M 42", "CENTALT": 30.0,
    "FOCPOS": 12345, "FOCUSSZ": 3.5, "FOCTEMP": 7.25, "AMBTEMP": 6.0,
}


def _write(path, data, header=None, compressed=False):
    hdr = fits.Header()
    for k, v in (header or {}).items():
        hdr[k] = v
    if compressed:
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, hdr)]).writeto(path)
    else:
        fits.PrimaryHDU(data, hdr).writeto(path)
    return Path(path)


def _stars(h=128, w=128, dtype=np.uint16):
    rng = np.random.default_rng(0)
    img = rng.normal(1000, 10, (h, w))
    yy, xx = np.mgrid[:h, :w]
    for x, y in ((40, 40), (90, 70), (60, 100)):
        img += 20000 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.7 ** 2))
    return img.astype(dtype)


def test_nina_header_is_normalised(tmp_path):
    p = _write(tmp_path / "l.fits", _stars(), NINA_HEADER)
    f = frames.load(p)
    m = f.meta
    assert m.is_light and m.exposure_s == 120.0 and m.filter_name == "Ha"
    assert m.focuser_pos == 12345 and m.focuser_step_um == 3.5 and m.focuser_temp_c == 7.25
    assert m.pixel_um == 7.52 and m.binning == 2 and m.focal_length_mm == 550.0 and m.f_ratio == 5.5
    assert m.ambient_temp_c == 6.0 and m.temperature_c == 7.25
    # 9 fractional digits are accepted; the time is UTC
    from datetime import datetime, timezone

    assert m.timestamp == pytest.approx(datetime(2026, 11, 21, 22, 14, 3, 123457, tzinfo=timezone.utc).timestamp(),
                                        abs=1e-3)
    assert m.airmass == pytest.approx(2.0, rel=1e-3)  # from CENTALT = 30 deg
    assert f.pixels.dtype == np.float32 and f.pixels.shape == (128, 128)


def test_date_obs_forms():
    base = frames.parse_date_obs("2026-11-21T22:14:03")
    assert frames.parse_date_obs("2026-11-21T22:14:03.5Z") == pytest.approx(base + 0.5)
    assert frames.parse_date_obs("2026-11-21T23:14:03.250+01:00") == pytest.approx(base + 0.25)
    assert frames.parse_date_obs("2026-11-21 22:14:03") == base
    assert frames.parse_date_obs("garbage") is None


def test_alternative_keywords_and_fallbacks():
    m = frames.meta_from_header({"FRAME": "Light", "EXPTIME": "60", "FOCUSPOS": 500.0, "FOCUSTEM": "3.5",
                                 "FILTER": "L"})
    assert m.focuser_pos == 500 and m.focuser_temp_c == 3.5 and m.exposure_s == 60.0
    m2 = frames.meta_from_header({"AMBTEMP": 4.0})
    assert m2.temperature_c == 4.0  # ambient as fall-back for thermal drift


@pytest.mark.parametrize("kind", ["FLAT", "DARK", "BIAS", "Dark Frame"])
def test_calibration_frames_are_not_lights(kind):
    assert not frames.meta_from_header({"IMAGETYP": kind}).is_light
    assert frames.meta_from_header({}).is_light


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64])
def test_data_types_read_to_the_same_values(tmp_path, dtype):
    base = _stars().astype(np.float64) / (300 if dtype == np.uint8 else 1)
    data = base.astype(dtype)
    p = _write(tmp_path / "x.fits", data)
    f = frames.load(p)
    np.testing.assert_allclose(f.pixels, data.astype(np.float32), rtol=1e-6)


def test_uint16_is_read_through_bzero_big_endian(tmp_path):
    data = _stars()
    p = _write(tmp_path / "u16.fits", data)
    raw = fits.getheader(p)
    assert raw["BZERO"] == 32768 and raw["BITPIX"] == 16  # astropy wrote big-endian int16 + BZERO
    f = frames.load(p)
    assert f.pixels.max() == pytest.approx(float(data.max()))
    assert f.saturation_adu == 65535.0


def test_tile_compressed(tmp_path):
    data = _stars()
    p = _write(tmp_path / "c.fits.fz", data, {"FILTER": "OIII"}, compressed=True)
    f = frames.load(p)
    assert f.meta.filter_name == "OIII"
    np.testing.assert_allclose(f.pixels, data.astype(np.float32))


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG"])
def test_bayer_frames_use_green_at_full_resolution(tmp_path, pattern):
    data = _stars(128, 128)
    p = _write(tmp_path / "osc.fits", data, {"BAYERPAT": pattern})
    f = frames.load(p)
    assert f.scale_px == 1 and f.pixels.shape == (128, 128)
    yy, xx = np.indices(data.shape)
    green = ((yy + xx) % 2 == 0) if pattern == "GRBG" else ((yy + xx) % 2 == 1)
    d = data.astype(np.float32)
    np.testing.assert_array_equal(f.pixels[green], d[green])  # green sites untouched
    # a red/blue site inside the frame: the mean of its four green neighbours
    y, x = next((y, x) for y in range(1, 5) for x in range(1, 5) if not green[y, x])
    assert f.pixels[y, x] == pytest.approx((d[y, x - 1] + d[y, x + 1] + d[y - 1, x] + d[y + 1, x]) / 4)
    assert any("green" in n for n in f.notes)


def test_rgb_fits_is_read_as_luminance(tmp_path):
    from astropy.io import fits

    mono = _stars(96, 128).astype(np.float64)
    cube = np.stack([mono * 0.5, mono, mono * 1.5]).astype(np.float32)  # (3, H, W), as GIMP/Siril save it
    p = tmp_path / "rgb.fits"
    fits.PrimaryHDU(cube).writeto(p)
    f = frames.load(p)
    assert f.pixels.shape == (96, 128)
    np.testing.assert_allclose(f.pixels, mono, rtol=1e-5)
    assert any("luminance" in n for n in f.notes)


def test_rgb_xisf_is_read_as_luminance(tmp_path):
    from xisf import XISF

    mono = _stars(96, 128).astype(np.float64)
    rgb = np.stack([mono * 0.5, mono, mono * 1.5], axis=-1).astype(np.float32)  # (H, W, 3): xisf's order
    p = tmp_path / "rgb.xisf"
    XISF.write(str(p), rgb)
    f = frames.load(p)
    assert f.pixels.shape == (96, 128)
    np.testing.assert_allclose(f.pixels, mono, rtol=1e-5)


def test_xisf(tmp_path):
    from xisf import XISF

    data = _stars()[:, :, None]
    p = tmp_path / "frame.xisf"
    XISF.write(str(p), data, image_metadata={"FITSKeywords": {"FILTER": [{"value": "R", "comment": ""}],
                                                              "FOCPOS": [{"value": "777", "comment": ""}]}})
    f = frames.load(p)
    assert f.pixels.shape == (128, 128)
    assert f.meta.filter_name == "R" and f.meta.focuser_pos == 777


def test_completeness_of_a_file_written_in_chunks(tmp_path):
    src = _write(tmp_path / "full.fits", _stars(256, 256), NINA_HEADER)
    blob = src.read_bytes()
    dst = tmp_path / "growing.fits"
    for cut in (0, 100, 2880, 2880 * 3, len(blob) - 1):
        dst.write_bytes(blob[:cut])
        with pytest.raises(FrameIncomplete):
            frames.check_complete(dst)
        with pytest.raises(FrameIncomplete):
            frames.load(dst)
    dst.write_bytes(blob)
    layout = frames.check_complete(dst)
    assert layout.complete and layout.expected_bytes == len(blob)


def test_checksum_is_noticed(tmp_path):
    p = tmp_path / "cs.fits"
    fits.PrimaryHDU(_stars()).writeto(p, checksum=True)
    assert frames.check_complete(p).has_checksum


BAD = {
    "truncated": (lambda p, good: p.write_bytes(good.read_bytes()[:10000]), "truncated"),
    "empty": (lambda p, good: p.write_bytes(b""), "empty"),
    "text": (lambda p, good: p.write_text("SIMPLE? no, this is text"), "not a FITS"),
    "nan": (lambda p, good: fits.PrimaryHDU(np.full((64, 64), np.nan, np.float32)).writeto(p), "NaN"),
    "zeros": (lambda p, good: fits.PrimaryHDU(np.zeros((64, 64), np.uint16)).writeto(p), "blank"),
    "cube": (lambda p, good: fits.PrimaryHDU(np.zeros((5, 64, 64), np.uint16)).writeto(p), "3-D"),
    "absurd": (lambda p, good: p.write_bytes(good.read_bytes().replace(
        b"NAXIS1  = %20d" % 128, b"NAXIS1  = %20d" % 999999999)), "GB"),
    "tiny": (lambda p, good: fits.PrimaryHDU(np.ones((4, 4), np.float32)).writeto(p), "too small"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_give_one_clear_error_naming_the_file(tmp_path, name):
    good = _write(tmp_path / "good.fits", _stars())
    p = tmp_path / f"{name}.fits"
    make, words = BAD[name]
    make(p, good)
    with pytest.raises(FrameError) as err:
        frames.load(p)
    assert str(p) in str(err.value)
    assert words.lower() in str(err.value).lower()
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(FrameError, match="no such file"):
        frames.load(tmp_path / "nope.fits")


def test_reading_never_changes_the_users_file(tmp_path):
    p = _write(tmp_path / "sacred.fits", _stars(), NINA_HEADER)
    before = (hashlib.sha256(p.read_bytes()).hexdigest(), os.stat(p).st_mtime_ns, os.stat(p).st_mode)
    frames.load(p)
    frames.read_header(p)
    frames.check_complete(p)
    after = (hashlib.sha256(p.read_bytes()).hexdigest(), os.stat(p).st_mtime_ns, os.stat(p).st_mode)
    assert before == after
    assert sorted(x.name for x in tmp_path.iterdir()) == ["sacred.fits"]


def test_nan_pixels_are_filled_and_noted(tmp_path):
    data = _stars().astype(np.float32)
    data[10:20, 10:20] = np.nan
    f = frames.load(_write(tmp_path / "n.fits", data))
    assert np.isfinite(f.pixels).all()
    assert any("NaN" in n for n in f.notes)


def test_image_file_names():
    assert frames.is_image_file("a/b/L_0001.fits") and frames.is_image_file("x.FIT")
    assert frames.is_image_file("x.fits.fz") and frames.is_image_file("x.xisf")
    assert not frames.is_image_file("x.json") and not frames.is_image_file(".x.fits")


@pytest.mark.parametrize("dtype, header, compressed, expected", [
    (np.uint16, {}, False, 65535.0),            # int16 + BZERO 32768 on disk
    (np.int16, {}, False, 32767.0),
    (np.uint8, {}, False, 255.0),
    (np.uint16, {"SATURATE": 60000}, False, 60000.0),
    (np.float32, {}, False, None),
    (np.uint16, {}, True, 65535.0),
])
def test_saturation_level_from_type_and_header(tmp_path, dtype, header, compressed, expected):
    data = (_stars().astype(np.float64) / (300 if dtype == np.uint8 else 1)).astype(dtype)
    f = frames.load(_write(tmp_path / ("s.fits.fz" if compressed else "s.fits"), data, header, compressed))
    assert f.saturation_adu == expected
