"""Reading frames: formats, header normalisation, completeness, and every kind of bad file."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from focuswatch.io import frames
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


def test_a_numeric_keyword_that_is_not_a_number_is_noted(tmp_path):
    """README: a card focuswatch cannot use is left out *and noted*. FOCPOS = 'abc' parses
    as a string, so it was dropped without a word (and `af` then had no position)."""
    hdr = {**NINA_HEADER, "FOCPOS": "abc", "FOCTEMP": "  "}
    f = frames.load(_write(tmp_path / "a.fits", _stars(), hdr))
    assert f.meta.focuser_pos is None
    assert [n for n in f.notes if "FOCPOS" in n] == ["header FOCPOS = 'abc' is not a number: left out"]
    assert not any("FOCTEMP" in n for n in f.notes)  # blank is just missing
    ok = frames.load(_write(tmp_path / "b.fits", _stars(), NINA_HEADER))
    assert ok.meta.focuser_pos == 12345 and not any("not a number" in n for n in ok.notes)


def test_egain_is_the_electrons_per_adu_not_the_gain_setting():
    """NINA writes GAIN as the camera's gain setting (here 10, a ZWO/QHY value) and EGAIN as
    e-/ADU; the photon noise needs e-/ADU. GAIN alone (older programs) is still read."""
    m = frames.meta_from_header({"GAIN": 10, "EGAIN": 0.25})
    assert m.gain == 0.25
    assert frames.meta_from_header({"GAIN": 1.5}).gain == 1.5


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


def test_xisf_header_is_parsed_once_per_file_version(tmp_path, monkeypatch):
    """The watcher reads a new frame's header, then loads it: one XML parse by the reader,
    and a rewritten file (new size or time) is parsed again, with its new keywords."""
    import os
    import xisf

    data = _stars()[:, :, None]
    p = tmp_path / "frame.xisf"
    xisf.XISF.write(str(p), data, image_metadata={"FITSKeywords": {"FILTER": [{"value": "R", "comment": ""}]}})
    opened = []
    real = xisf.XISF

    class Counting(real):
        def __init__(self, fname):
            opened.append(fname)
            super().__init__(fname)

    monkeypatch.setattr(xisf, "XISF", Counting)
    meta = frames.read_header(p)
    f = frames.load(p)
    assert meta.filter_name == "R" and f.meta.filter_name == "R" and f.pixels.shape == (128, 128)
    assert len(opened) == 1
    real.write(str(p), data, image_metadata={"FITSKeywords": {"FILTER": [{"value": "Ha", "comment": ""}]}})
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # the same size: the time tells it apart
    assert frames.load(p).meta.filter_name == "Ha" and len(opened) == 2


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


# --------------------------------------------------------------------------- issue 10: bad input, one line each

def _good_blob(tmp_path, h=64, w=64, **kw):
    return _write(tmp_path / "good_src.fits", _stars(h, w), NINA_HEADER, **kw).read_bytes()


def _set_card(blob: bytes, key: str, value: str) -> bytes:
    """Replace the value field of card ``key`` in the first header (byte-level, like a bad writer)."""
    i = 0
    while i < 2880 * 4:
        if blob[i:i + 8].rstrip() == key.encode():
            card = (f"{key:<8}= {value:>20}").ljust(80).encode()
            return blob[:i] + card + blob[i + 80:]
        i += 80
    raise AssertionError(key)


def _replace_card(blob: bytes, old_key: str, key: str, value: str) -> bytes:
    i = blob.index(f"{old_key:<8}= ".encode())
    return blob[:i] + (f"{key:<8}= {value:>20}").ljust(80).encode() + blob[i + 80:]


KILLERS = {
    # the six files that killed the watcher (issue 10, finding 1), each named in one line
    "exptime_nan": (lambda b: _set_card(b, "EXPTIME", "NAN"), None),
    "naxis_999": (lambda b: _set_card(b, "NAXIS", "999"), "NAXIS"),
    "cube_2e9": (lambda b: _set_card(_set_card(_set_card(_set_card(b, "NAXIS", "3"), "BITPIX", "-64"),
                                               "NAXIS1", "2000000000"), "NAXIS2", "2000000000").replace(b"GAIN    = ", b"NAXIS3  = "), "GB"),
    "bscale_1e300": (lambda b: _set_card(_set_card(b, "BZERO", "1E300"), "BSCALE", "1E300"), "BSCALE"),
    "naxis1_overflow": (lambda b: _set_card(b, "NAXIS1", "99999999999999999999"), "GB"),
}


@pytest.mark.parametrize("name", sorted(KILLERS))
def test_watcher_killer_headers_give_one_line(tmp_path, name):
    make, words = KILLERS[name]
    p = tmp_path / f"{name}.fits"
    p.write_bytes(make(_good_blob(tmp_path)))
    if words is None:  # an unparsable EXPTIME card is left out, the frame is still measured
        f = frames.load(p)
        # EXPTIME is left out (noted); NINA's EXPOSURE card still gives the exposure
        assert f.meta.exposure_s == 120.0 and any("EXPTIME" in n for n in f.notes)
        assert frames.read_header(p).filter_name == "Ha"
        return
    for fn in (frames.load, frames.check_complete) if words != "BSCALE" else (frames.load,):
        with pytest.raises(FrameError) as err:
            fn(p)
        assert str(p) in str(err.value) and words in str(err.value) and "\n" not in str(err.value)


def test_corrupt_tile_compressed_data_is_one_line(tmp_path):
    good = _write(tmp_path / "g.fits.fz", _stars(256, 256), NINA_HEADER, compressed=True)
    blob = bytearray(good.read_bytes())
    lay = frames.fits_layout(good)
    h = lay.image_hdu
    heap = h.data_start + h.data_bytes
    blob[heap - 3000:heap - 100] = bytes(range(256)) * 11 + bytes(2900 - 2816)  # garbage in the tiles
    p = tmp_path / "bad.fits.fz"
    p.write_bytes(bytes(blob))
    with pytest.raises(FrameError) as err:
        frames.load(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_quoted_xtension_with_comment_is_a_table_not_an_image(tmp_path):
    """The hand parser kept the comment of ``XTENSION= 'BINTABLE' / comment``: a table-only FITS said has_image."""
    t = fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.arange(20.0)),
                                       fits.Column("b", "E", array=np.arange(20.0))])
    t.header["XTENSION"] = ("BINTABLE", "binary table extension")
    p = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), t]).writeto(p)
    assert b"'BINTABLE'           / binary" in p.read_bytes() or b"/ binary table" in p.read_bytes()
    assert not frames.fits_layout(p).has_image
    with pytest.raises(FrameError, match="only a table"):
        frames.load(p)


def test_one_d_and_one_by_one_images_are_not_called_truncated(tmp_path):
    one_d = tmp_path / "line.fits"
    fits.PrimaryHDU(np.arange(100, dtype=np.float32)).writeto(one_d)
    single = tmp_path / "dot.fits"
    fits.PrimaryHDU(np.ones((1, 1), np.float32)).writeto(single)
    with pytest.raises(FrameError) as e1:
        frames.load(one_d)
    assert "1-D" in str(e1.value) and "truncat" not in str(e1.value)
    assert not isinstance(e1.value, FrameIncomplete)
    frames.check_complete(one_d)  # complete: no error
    with pytest.raises(FrameError) as e2:
        frames.load(single)
    assert "too small" in str(e2.value) and "truncat" not in str(e2.value)


def test_big_cube_is_refused_from_the_header_without_reading(tmp_path):
    """A 4.8 GB cube was read whole (9.4 GB of memory) before being refused; here 240 MB."""
    import tracemalloc

    hdr = fits.Header()
    hdr["SIMPLE"], hdr["BITPIX"], hdr["NAXIS"] = True, 16, 3
    hdr["NAXIS1"], hdr["NAXIS2"], hdr["NAXIS3"] = 4000, 3000, 10
    p = tmp_path / "cube.fits"
    with open(p, "wb") as fh:
        fh.write(hdr.tostring().encode())
        fh.truncate(2880 + (4000 * 3000 * 10 * 2 + 2879) // 2880 * 2880)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(FrameError, match="3-D cube of 10 planes"):
            frames.load(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB allocated to refuse a cube"


@pytest.mark.skipif(os.name == "nt" or (hasattr(os, "geteuid") and os.geteuid() == 0),
                    reason="mode 000 is readable by root / has no meaning on Windows")
def test_unreadable_file_is_not_called_locked(tmp_path):
    p = _write(tmp_path / "secret.fits", _stars())
    p.chmod(0)
    try:
        with pytest.raises(FrameError) as err:
            frames.load(p)
    finally:
        p.chmod(0o644)
    assert "not readable" in str(err.value) and "locked" not in str(err.value)
    assert not isinstance(err.value, FrameIncomplete)


def test_unreadable_versus_locked_without_root(tmp_path, monkeypatch):
    """The same PermissionError means 'unreadable' when we may not read the file, 'locked' when we may."""
    from focuswatch.boundary import guarded

    p = _write(tmp_path / "x.fits", _stars())

    def denied():
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(FrameError) as err:
        guarded(p, denied)
    assert "not readable" in str(err.value) and not isinstance(err.value, FrameIncomplete)
    monkeypatch.setattr(os, "access", lambda *a, **k: True)
    with pytest.raises(FrameIncomplete, match="locked"):
        guarded(p, denied)


def test_permission_error_on_another_file_names_that_file(tmp_path):
    """astropy failing to write its own config under a read-only HOME is not 'the frame is locked'."""
    from focuswatch.boundary import guarded

    frame = tmp_path / "a.fits"
    cfg = tmp_path / "home" / ".astropy" / "config"

    def astropy_like():
        raise PermissionError(13, "Permission denied", str(cfg))

    with pytest.raises(FrameError) as err:
        guarded(frame, astropy_like)
    assert str(cfg) in str(err.value) and "locked" not in str(err.value) and str(frame) in str(err.value)


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_symlink_loop_is_named_as_such(tmp_path):
    p = tmp_path / "loop.fits"
    p.symlink_to(p)
    for fn in (frames.load, frames.read_header):
        with pytest.raises(FrameError) as err:
            fn(p)
        assert "symbolic link loop" in str(err.value) and "no such file" not in str(err.value)


def test_datasum_matches_astropy(tmp_path):
    from focuswatch.io.completeness import _datasum

    p = tmp_path / "cs.fits"
    fits.PrimaryHDU(_stars(100, 90)).writeto(p, checksum=True)
    lay = frames.fits_layout(p)
    h = lay.image_hdu
    with open(p, "rb") as fh:
        assert _datasum(fh, h.data_start, h.data_bytes) == int(h.header["DATASUM"])


def test_preallocated_zero_filled_file_is_not_proven_complete(tmp_path):
    """Pre-allocated at full size, then filled: size alone says complete; the zero tail says not yet."""
    good = _write(tmp_path / "g.fits", _stars(), NINA_HEADER)
    blob = good.read_bytes()
    p = tmp_path / "prealloc.fits"
    p.write_bytes(b"\0" * len(blob))
    with pytest.raises(FrameIncomplete, match="zero bytes"):
        frames.check_complete(p)
    half = len(blob) // 2
    p.write_bytes(blob[:half] + b"\0" * (len(blob) - half))
    lay = frames.check_complete(p)
    assert lay.complete and lay.zero_tail and not lay.proven
    p.write_bytes(blob)
    assert frames.check_complete(p).proven
    # with a DATASUM, a zero tail is settled by the sum
    cs = tmp_path / "cs.fits"
    fits.PrimaryHDU(_stars(), fits.Header(list(NINA_HEADER.items()))).writeto(cs, checksum=True)
    cblob = cs.read_bytes()
    lay = frames.check_complete(cs)
    assert lay.proven
    cs.write_bytes(cblob[:len(cblob) - 3000] + b"\0" * 3000)
    with pytest.raises(FrameIncomplete, match="DATASUM"):
        frames.check_complete(cs)


def test_xisf_attachment_bounds(tmp_path):
    from xisf import XISF

    p = tmp_path / "x.xisf"
    XISF.write(str(p), _stars()[..., None], image_metadata={"FITSKeywords": {}})
    blob = p.read_bytes()
    lay = frames.check_complete(p)
    assert lay.complete and lay.expected_bytes == len(blob) and lay.proven
    part = tmp_path / "part.xisf"
    for cut in (10, 200, len(blob) // 2, len(blob) - 1):
        part.write_bytes(blob[:cut])
        with pytest.raises(FrameIncomplete):
            frames.check_complete(part)
        with pytest.raises(FrameIncomplete):
            frames.load(part)
    part.write_bytes(b"\0" * len(blob))
    with pytest.raises(FrameIncomplete, match="zero bytes"):
        frames.check_complete(part)


def test_unknown_errors_are_one_line_with_the_traceback_only_in_the_debug_log(tmp_path, caplog):
    import logging

    from focuswatch.boundary import guarded

    def buggy():
        return {}["no such key"]

    p = tmp_path / "f.fits"
    with caplog.at_level(logging.DEBUG, logger="focuswatch.boundary"):
        with pytest.raises(FrameError) as err:
            guarded(p, buggy)
    assert str(p) in str(err.value) and "KeyError" in str(err.value) and "\n" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    rec = [r for r in caplog.records if r.exc_info]
    assert rec and rec[0].levelno == logging.DEBUG and rec[0].exc_info[0] is KeyError


def test_cli_debug_flag_shows_what_the_plain_run_hides(tmp_path, capsys, monkeypatch):
    from focuswatch import cli

    def boom(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "calc", (cli.COMMANDS["calc"][0], boom))
    assert cli.main(["calc"]) == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "calc"])


def test_layout_from_the_probe_is_reused_not_walked_again(tmp_path, monkeypatch):
    """The watcher's readiness probe already walked the headers: load and read_header
    reuse that layout (same pixels, same header) instead of opening the headers again."""
    p = _write(tmp_path / "probe.fits", _stars(), NINA_HEADER)
    expected = frames.load(p)
    expected_meta = frames.read_header(p)
    layout = frames.check_complete(p)
    walks = []
    from focuswatch.io import fits as fits_io   # where the headers are walked

    real = fits_io._walk_hdus
    monkeypatch.setattr(fits_io, "_walk_hdus", lambda *a, **k: walks.append(1) or real(*a, **k))
    got = frames.load(p, layout=layout)
    meta = frames.read_header(p, layout=layout)
    assert walks == []
    np.testing.assert_array_equal(got.pixels, expected.pixels)
    assert meta == expected_meta and got.meta == expected.meta


def test_stale_layout_is_not_trusted(tmp_path):
    """A layout whose size no longer matches the file (rewritten, truncated) is checked again."""
    src = _write(tmp_path / "full.fits", _stars(256, 256), NINA_HEADER)
    blob = src.read_bytes()
    layout = frames.check_complete(src)
    src.write_bytes(blob[:len(blob) - 2880])
    with pytest.raises(FrameIncomplete):
        frames.load(src, layout=layout)


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_pictures_are_read_without_a_memory_map(tmp_path, monkeypatch, mode):
    """Pillow memory-maps an uncompressed TIFF it opened by name; on Windows a mapped file
    cannot be deleted or renamed by the capture program, so pictures are read from our own
    read-only handle instead (same pixels)."""
    import mmap

    from PIL import Image

    rng = np.random.default_rng(1)
    arr = (rng.random((64, 64)) * (250 if mode == "L" else 60000)).astype(np.uint8 if mode == "L" else np.uint16)
    p = tmp_path / "grab.tif"
    Image.fromarray(arr).save(p)
    maps = []
    real = mmap.mmap
    monkeypatch.setattr(mmap, "mmap", lambda *a, **k: maps.append(a) or real(*a, **k))
    f = frames.load(p)
    assert maps == []
    np.testing.assert_array_equal(f.pixels, arr[::-1].astype(np.float32))


def test_the_size_a_caller_just_saw_is_the_one_the_proof_and_header_use(tmp_path):
    """The watcher's one stat() per poll: the completeness proof reads the size given (a file
    seen short is still being written, whatever it holds by now), the header comes from the
    proof's layout without looking at the file again, and the load still checks the size on disk
    before reading pixels (a file cut short since is refused, never read half)."""
    p = _write(tmp_path / "l.fits", _stars(), NINA_HEADER)
    size = p.stat().st_size
    with pytest.raises(FrameIncomplete):
        frames.check_complete(p, size - 2880)
    layout = frames.check_complete(p, size)
    assert layout.proven and layout.actual_bytes == size
    hidden = p.rename(tmp_path / "moved.fits")  # the header must not need the file any more
    meta = frames.read_header(p, layout=layout, size_bytes=size)
    assert (meta.filter_name, meta.focuser_pos, meta.exposure_s) == ("Ha", 12345, 120.0)
    hidden.rename(p)
    p.write_bytes(p.read_bytes()[:size - 2880])
    with pytest.raises(FrameIncomplete):
        frames.load(p, layout=layout)


def test_a_header_from_the_proofs_layout_that_fails_is_that_frames_error(tmp_path, monkeypatch):
    """The header taken from the watcher's proof (no file access) is inside the frame boundary
    too: whatever goes wrong there is one FrameError naming the frame (the watcher catches
    FrameError around read_header), never an exception that escapes the poll."""
    p = _write(tmp_path / "l.fits", _stars(), NINA_HEADER)
    size = p.stat().st_size
    layout = frames.check_complete(p, size)

    def broken(hdus):
        raise ValueError("bad card")

    monkeypatch.setattr(frames, "header_meta", broken)
    with pytest.raises(FrameError) as err:
        frames.read_header(p, layout=layout, size_bytes=size)
    assert "l.fits" in str(err.value)
