"""Fuzzing the frame boundary: mutants of real FITS, tile-compressed FITS and XISF files.

Issue 10, finding 3: 330 byte-level mutants of a valid frame fed to ``measure --json`` gave
27 tracebacks. Here hypothesis makes mutants of the header (flipped bytes, nasty values in
the size and scaling cards), of the pixel data and of the length, for plain FITS, ``.fz``
and XISF, and sends each through ``focuswatch measure --json`` and through the watcher's
frame handler. For every mutant: no traceback, no hang (pytest-timeout), exactly one line
for the file, and the file unchanged. Bounded: ``FOCUSWATCH_FUZZ_EXAMPLES`` examples per
strategy (default 25), so the whole file stays a few seconds.

Also here: finding 2 (one bad frame must not abort a folder command) through the real
commands, with frames that killed the old code.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from focuswatch.io import statefile
from focuswatch.cli import main
from focuswatch.config import Config
from focuswatch.io.journal import Journal
from focuswatch.optics import Rig
from focuswatch.watch import Watcher, WatchConfig

N_EXAMPLES = int(os.environ.get("FOCUSWATCH_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HEADER = {"IMAGETYP": "LIGHT", "EXPTIME": 60.0, "FILTER": "L", "DATE-OBS": "2026-11-21T22:14:03",
          "FOCALLEN": 500.0, "XPIXSZ": 3.76, "FOCPOS": 1000, "FOCTEMP": 5.0}
NASTY_VALUES = ["NAN", "INF", "-1", "0", "1E300", "-1E300", "99999999999999999999", "'text'", "T", "", "3.5",
                "2147483648", "999"]
NASTY_KEYS = ["NAXIS", "NAXIS1", "NAXIS2", "BITPIX", "BSCALE", "BZERO", "EXPTIME", "DATE-OBS", "FOCPOS",
              "PCOUNT", "GCOUNT", "ZNAXIS1", "ZBITPIX", "ZIMAGE"]


def _pixels(h: int = 64, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(1)
    img = rng.normal(1000, 8, (h, w))
    yy, xx = np.mgrid[:h, :w]
    for x, y in ((16, 18), (44, 40), (30, 50), (50, 14)):
        img += 15000 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.6 ** 2))
    return img.astype(np.uint16)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("orig")
    hdr = fits.Header(list(HEADER.items()))
    fits.PrimaryHDU(_pixels(), hdr).writeto(d / "a.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(_pixels(), hdr)]).writeto(d / "a.fits.fz")
    from xisf import XISF

    XISF.write(str(d / "a.xisf"), _pixels()[..., None],
               image_metadata={"FITSKeywords": {k: [{"value": str(v), "comment": ""}] for k, v in HEADER.items()}})
    return {s: (d / f"a{s}").read_bytes() for s in (".fits", ".fits.fz", ".xisf")}


# --------------------------------------------------------------------------- mutations

def _set_card(blob: bytes, key: str, value: str) -> bytes:
    """Give every card ``key`` (any HDU's header) a new value field, as a buggy writer would."""
    out = bytearray(blob)
    for i in range(0, min(len(blob), 2880 * 8), 80):
        if out[i:i + 8].rstrip() == key.encode():
            out[i:i + 80] = f"{key:<8}= {value:>20}".ljust(80).encode()[:80]
    return bytes(out)


@st.composite
def mutants(draw, kind: str) -> tuple[str, bytes]:
    """(suffix, bytes): one of four ways to damage a valid file of ``kind``."""
    suffix, how = kind, draw(st.sampled_from(["header_bytes", "card_value", "data_bytes", "truncate"]))
    return suffix, how, draw(st.randoms(use_true_random=False))


def _mutate(blob: bytes, suffix: str, how: str, rnd) -> bytes:
    header_end = blob.find(b"END" + b" " * 77) + 80 if suffix != ".xisf" else 16 + int.from_bytes(blob[8:12], "little")
    if suffix == ".fits.fz":  # the second header (the compressed image's) is the interesting one
        header_end = blob.find(b"END" + b" " * 77, header_end) + 80
    if how == "card_value" and suffix != ".xisf":
        return _set_card(blob, rnd.choice(NASTY_KEYS), rnd.choice(NASTY_VALUES))
    out = bytearray(blob)
    if how in ("header_bytes", "card_value"):
        for _ in range(rnd.randint(1, 4)):
            out[rnd.randrange(0, header_end)] = rnd.randrange(0, 256)
    elif how == "data_bytes":
        for _ in range(rnd.randint(1, 64)):
            out[rnd.randrange(header_end, len(out))] = rnd.randrange(0, 256)
    else:
        out = out[:rnd.randrange(0, len(out))]
    return bytes(out)


# --------------------------------------------------------------------------- the two paths under test

def _measure_json(path: Path) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["measure", "--json", str(path)])
    return rc, [ln for ln in out.getvalue().splitlines() if ln.strip()], err.getvalue()


class FrameHandler:
    """The watcher's frame handler on one folder, driven by a fake clock (no sleeping)."""

    def __init__(self, folder: Path, state: Path):
        self.t = 0.0
        self.lines: list = []
        sf, ef = statefile.resolve_paths(state)
        self.journal = Journal(state / "journal.sqlite")
        self.w = Watcher(folder, self.journal, config=Config(rig=Rig(aperture_mm=100)), state_file=sf,
                         events_file=ef, watch=WatchConfig(rescan_interval_s=0), diagnose=False,
                         clock=lambda: self.t, on_processed=self.lines.append)

    def handle(self, path: Path) -> list:
        before = len(self.lines)
        self.w._enqueue(path)
        for _ in range(3):  # arrive; then well past every wait (stable content, give-up)
            self.w.process_pending()
            self.t += 1000.0
        return [p for p in self.lines[before:] if p.path.name == path.name]


@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzwatch")
    (root / "frames").mkdir()
    h = FrameHandler(root / "frames", root / "state")
    yield h
    h.journal.close()


def _check_one(path: Path, blob: bytes, handler: FrameHandler) -> None:
    digest = hashlib.sha256(blob).hexdigest()
    rc, lines, err = _measure_json(path)
    assert "Traceback" not in err, err
    assert rc in (0, 1), (rc, err)
    assert len(lines) == 1, lines                                 # one line per file
    row = json.loads(lines[0])
    assert row["file"] == str(path)
    if rc == 1:
        assert str(path) in err and all(ln.startswith("focuswatch: error: ") for ln in err.splitlines())
    got = handler.handle(path)
    assert len(got) == 1 and got[0].status in ("measured", "error", "ignored"), got
    if got[0].status == "error":
        assert "\n" not in got[0].error and str(path) in got[0].error
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # the user's file is unchanged


@pytest.mark.timeout(300)
@pytest.mark.parametrize("suffix", [".fits", ".fits.fz", ".xisf"])
def test_mutants_give_one_line_each_and_no_traceback(originals, handler, suffix):
    folder = handler.w.folder
    counter = iter(range(10 ** 6))
    seen = {"error": 0, "measured": 0}

    @FUZZ
    @given(mutants(suffix))
    def run(m):
        _, how, rnd = m
        blob = _mutate(originals[suffix], suffix, how, rnd)
        path = folder / f"m{next(counter):05d}_{how}{suffix}"
        path.write_bytes(blob)
        _check_one(path, blob, handler)
        rows = [p for p in handler.lines if p.path == path.resolve() or p.path == path]
        seen["error" if rows and rows[-1].status == "error" else "measured"] += 1

    run()
    print(f"fuzz {suffix}: {seen}")
    assert seen["error"] > 0  # the mutants did damage something


# --------------------------------------------------------------------------- finding 2: folder commands

def _bad_folder(tmp_path: Path, originals) -> tuple[Path, list[str]]:
    """Two good frames and three that killed the old code (traceback, rest never measured)."""
    d = tmp_path / "night"
    d.mkdir()
    good = originals[".fits"]
    for i in range(2):
        (d / f"good_{i}.fits").write_bytes(_set_card(good, "DATE-OBS", f"'2026-11-21T22:1{i}:00'"))
    (d / "a_overflow.fits").write_bytes(_set_card(good, "NAXIS1", "99999999999999999999"))
    (d / "b_bscale.fits").write_bytes(_set_card(_set_card(good, "BSCALE", "1E300"), "BZERO", "1E300"))
    fz = bytearray(originals[".fits.fz"])
    fz[-2000:-1000] = bytes(range(250)) * 4
    (d / "c_corrupt.fits.fz").write_bytes(bytes(fz))
    return d, ["a_overflow.fits", "b_bscale.fits", "c_corrupt.fits.fz"]


@pytest.mark.parametrize("command", ["measure", "diagnose", "replay"])
def test_one_bad_frame_does_not_abort_a_folder_command(tmp_path, originals, command, capsys):
    folder, bad = _bad_folder(tmp_path, originals)
    rc = main([command, "--json", str(folder)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert rc == 1                                         # non-zero at the end
    for name in bad:                                       # each bad one named once
        assert sum(name in ln for ln in err.splitlines() if not ln.endswith("could not be measured")) == 1, err
    rows = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{") and '"file"' in ln]
    files = {Path(r["file"]).name for r in rows if "file" in r}
    assert {"good_0.fits", "good_1.fits"} <= files         # the rest were measured


def test_report_scan_carries_on(tmp_path, originals):
    from focuswatch.render import report

    folder, bad = _bad_folder(tmp_path, originals)
    scan = report.scan_session(folder)
    assert sorted(Path(x.file).name for x in scan.left_out if Path(x.file).name in bad) == sorted(bad)
    assert sorted(Path(x.file).name for x in scan.unreadable) == sorted(bad)
    assert len(scan.stats) == 2


def test_report_command_writes_the_report_and_exits_non_zero(tmp_path, originals, capsys):
    folder, bad = _bad_folder(tmp_path, originals)
    out = tmp_path / "r.html"
    rc = main(["report", str(folder), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and out.exists() and "Traceback" not in err
    for name in bad:
        assert sum(name in ln for ln in err.splitlines()) == 1


def test_af_frames_carry_on_and_exit_non_zero(tmp_path, originals, capsys):
    folder = tmp_path / "vcurve"
    folder.mkdir()
    good = originals[".fits"]
    for i, pos in enumerate((900, 950, 1000, 1050, 1100)):
        (folder / f"f{i}.fits").write_bytes(_set_card(_set_card(good, "FOCPOS", str(pos)), "DATE-OBS",
                                                      f"'2026-11-21T22:10:{i:02d}'"))
    (folder / "z_bad.fits").write_bytes(_set_card(good, "NAXIS1", "99999999999999999999"))
    rc = main(["af", "--json", str(folder)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "z_bad.fits" in err and rc == 1
    doc = json.loads(out.splitlines()[-1])
    assert any("z_bad.fits" in s["file"] for s in doc["skipped"])
