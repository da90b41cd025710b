"""The calc and measure commands as a user runs them: real processes, real files."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from focuswatch import sim
from focuswatch.cli import main
from focuswatch.optics import Rig


def run(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "focuswatch", *map(str, args)], capture_output=True, text=True,
                       timeout=120, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def test_calc_json_from_a_rig_file(tmp_path):
    rig = tmp_path / "rig.toml"
    rig.write_text("[rig]\naperture_mm = 100\nfocal_length_mm = 600\npixel_um = 3.76\nfocuser_step_um = 2\n")
    rc, out, err = run("calc", "--rig", rig, "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["cfz_um"] == pytest.approx(96.62, abs=0.01)
    assert d["cfz_px"] == pytest.approx(25.7, abs=0.05)
    assert round(d["steps_across_cfz"]) == 48
    assert {w["wavelength_nm"] for w in d["wavelengths"]} >= {450.0, 500.7, 550.0, 656.3, 672.4}


def test_calc_flags_override_the_file_and_chart_is_drawn(tmp_path, capsys):
    rig = tmp_path / "rig.toml"
    rig.write_text("[rig]\naperture_mm = 100\nfocal_length_mm = 600\npixel_um = 3.76\n")
    png = tmp_path / "zone.png"
    assert main(["calc", "--rig", str(rig), "--focal-length-mm", "800", "--chart", str(png)]) == 0
    out = capsys.readouterr().out
    assert "f/8.00" in out and "171.78" in out  # 4.88 * 0.55 * 64
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("toml, words", [
    ("[rig]\naperture_mm = -5\nfocal_length_mm = 600\n", "aperture_mm"),
    ("[rig]\naperture_mm = 'big'\n", "aperture_mm"),
    ("[rig]\napperture_mm = 100\n", "apperture_mm"),
    ("[rigg]\n", "rigg"),
    ("[rig\n", "TOML"),
])
def test_bad_config_values_are_named(tmp_path, toml, words):
    rig = tmp_path / "rig.toml"
    rig.write_text(toml)
    rc, out, err = run("calc", "--rig", rig)
    assert rc == 2
    assert words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("toml, shown", [
    ("[rig]\npixel_um = true\n", "pixel_um = true:"),
    ("[rig]\nobstruction = false\n", "obstruction = false:"),
    ("[policy]\ndefocus_limit_cfz = [true]\n", "defocus_limit_cfz = [true]:"),
])
def test_a_wrong_value_is_quoted_as_the_toml_file_writes_it(tmp_path, toml, shown):
    """The user fixes the line they see in their file: TOML's true and false, not Python's
    True and False."""
    rig = tmp_path / "rig.toml"
    rig.write_text(toml)
    rc, out, err = run("calc", "--rig", rig, "--aperture-mm", "100", "--f-ratio", "6", "--pixel-um", "3.76")
    assert rc == 2 and shown in err and len(err.strip().splitlines()) == 1


def test_an_unknown_rig_setting_lists_the_names_the_file_uses(tmp_path):
    """README: the [rig] table takes ``f_ratio``; the list of known settings must say so, not
    the dataclass's internal field name."""
    rig = tmp_path / "rig.toml"
    rig.write_text("[rig]\nfocal_lenght_mm = 1000\n")
    rc, out, err = run("calc", "--rig", rig)
    assert rc == 2 and "focal_lenght_mm" in err
    known = err.split("known:")[1]
    assert "f_ratio" in known and "f_ratio_given" not in known and "focal_length_mm" in known
    ok = tmp_path / "ok.toml"
    ok.write_text("[rig]\naperture_mm = 200\nf_ratio = 5\npixel_um = 3.76\n")
    rc, out, err = run("calc", "--rig", ok)
    assert rc == 0 and "f/5.00" in out and "67.10" in out  # 4.88 * 0.55 * 25


def test_measure_table_tells_two_nights_frames_of_the_same_name_apart(tmp_path, capsys):
    """Two nights' folders both hold L_001.fits (NINA's numbering restarts): the table showed
    two rows named L_001.fits. Frames from several folders show the path below the common one."""
    import numpy as np
    from astropy.io import fits

    yy, xx = np.mgrid[:96, :96]
    star = 300 + 2e4 * np.exp(-((xx - 47.3) ** 2 + (yy - 40.6) ** 2) / (2 * 1.5 ** 2))
    for night, hour in (("n1", 21), ("n2", 22)):
        (tmp_path / night).mkdir()
        h = fits.Header({"DATE-OBS": f"2026-11-21T{hour}:00:00"})
        fits.PrimaryHDU(star.astype(np.uint16), h).writeto(tmp_path / night / "L_001.fits")
    assert main(["measure", str(tmp_path / "n1"), str(tmp_path / "n2")]) == 0
    rows = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [str(Path("n1") / "L_001.fits"), str(Path("n2") / "L_001.fits")]


def test_an_option_a_command_does_not_take_shows_that_command_s_usage(tmp_path):
    """`replay` takes the rig from --config only; `--aperture-mm` (as other commands take) was
    refused with the top-level usage, which does not show what replay takes."""
    rc, out, err = run("replay", tmp_path, "--aperture-mm", "200")
    assert rc == 2 and "usage: focuswatch replay" in err
    assert "focuswatch replay: error: unrecognized arguments: --aperture-mm 200" in err and "--config" in err
    rc, out, err = run("--bogus")
    assert rc == 2 and "focuswatch: error: unrecognized arguments: --bogus" in err


def test_calc_without_focal_ratio_is_a_usage_error():
    rc, out, err = run("calc", "--pixel-um", "3.76")
    assert rc == 2 and "focal ratio" in err


def test_measure_good_and_bad_frames(tmp_path):
    frames_dir = tmp_path / "night"
    frames_dir.mkdir()
    f = sim.render(sim.SimParams(width_px=512, height_px=512, n_stars=80, seed=3,
                                 rig=Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=3.76)))
    good = frames_dir / "good.fits"
    sim.write_fits(good, f)
    (frames_dir / "truncated.fits").write_bytes(good.read_bytes()[:50_000])
    (frames_dir / "notes.fits").write_text("not an image")
    before = sorted(p.name for p in frames_dir.iterdir())
    rc, out, err = run("measure", "--json", frames_dir)
    assert rc == 1
    rows = {Path(d["file"]).name: d for d in map(json.loads, out.splitlines())}
    assert rows["good.fits"]["n_stars"] > 30 and rows["good.fits"]["stars"] == rows["good.fits"]["n_stars"]  # alias kept for the published contract
    assert {d["kind"] for d in rows.values()} == {"frame"} and {d["schema"] for d in rows.values()} == {1}
    assert rows["good.fits"]["hfr_px"] == pytest.approx(f.truth["hfr_px"], rel=0.05)
    assert rows["good.fits"]["plate_scale_arcsec_px"] == pytest.approx(0.7756, rel=1e-3)  # from the header
    assert "truncated" in rows["truncated.fits"]["error"]
    assert "not a FITS" in rows["notes.fits"]["error"]
    assert "Traceback" not in err
    assert sum("truncated.fits" in line for line in err.splitlines()) == 1
    assert sorted(p.name for p in frames_dir.iterdir()) == before  # nothing written beside the frames


def test_measure_human_output(tmp_path):
    f = sim.render(sim.SimParams(width_px=384, height_px=384, n_stars=50, seed=2))
    path = tmp_path / "a.fits"
    sim.write_fits(path, f)
    rc, out, err = run("measure", path)
    assert rc == 0, err
    assert "a.fits" in out and "HFR" in out


def test_no_frames_found(tmp_path):
    rc, out, err = run("measure", tmp_path)
    assert rc == 2 and "no frames" in err


def test_diagnose_and_grade_name_bad_frames(tmp_path):
    import numpy as np
    from astropy.io import fits

    starless = tmp_path / "starless.fits"
    fits.PrimaryHDU(np.random.default_rng(0).normal(500, 5, (256, 256)).astype(np.float32)).writeto(starless)
    rc, out, err = run("diagnose", "--json", starless)
    assert rc == 1 and "starless.fits" in err and "no stars" in err and "Traceback" not in err
    assert json.loads(out.splitlines()[0])["label"] == "unknown"
    truncated = tmp_path / "master.fits"
    truncated.write_bytes(starless.read_bytes()[:20_000])
    rc, out, err = run("grade", truncated)
    assert rc == 1 and "master.fits" in err and "truncated" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["frame.fits", "frame_without_suffix"])
def test_a_plot_never_overwrites_a_frame(tmp_path, name):
    f = sim.render(sim.SimParams(width_px=256, height_px=256, n_stars=30, seed=5))
    target = tmp_path / name
    target.write_bytes(sim.fits_bytes(f))
    before = target.read_bytes()
    rc, out, err = run("calc", "--f-ratio", "5", "--pixel-um", "3.76", "--chart", target)
    assert rc == 2 and "never overwritten" in err and "Traceback" not in err
    assert target.read_bytes() == before


@pytest.mark.parametrize("argv", [
    ["measure", "{missing}"], ["diagnose", "{missing}"], ["grade", "{missing}"], ["report", "{missing}"],
    ["replay", "{missing}"], ["af", "{missing}"], ["bahtinov", "{missing}"], ["report", "--from-json", "{missing}"],
    ["watch", "{missing}", "--max-minutes", "0.01", "--state-dir", "{state}"],
])
def test_a_missing_input_path_is_exit_1_in_every_command(tmp_path, capsys, argv):
    """README: 1 = a runtime problem such as a bad or missing file, 2 = bad usage. Every command agrees."""
    missing = tmp_path / "no such night"
    args = [a.format(missing=missing, state=tmp_path / "state") for a in argv]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert str(missing) in err.splitlines()[0] and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # the line naming it (and a batch's count)


def test_an_empty_folder_is_bad_usage_in_every_command(tmp_path, capsys):
    for cmd in ("measure", "diagnose", "replay"):
        assert main([cmd, str(tmp_path)]) == 2, cmd
        assert "no frames" in capsys.readouterr().err.replace("no FITS/XISF frames", "no frames")


def test_output_into_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`focuswatch measure ... | head -1`: the reader goes away; no traceback, exit 0."""
    f = sim.render(sim.SimParams(width_px=128, height_px=128, n_stars=10, seed=2))
    for i in range(3):
        sim.write_fits(tmp_path / f"a{i}.fits", f)
    p = subprocess.Popen([sys.executable, "-m", "focuswatch", "measure", "--json", *[str(tmp_path)] * 40],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()  # as `head -1` does
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait(timeout=120) == 0
    assert json.loads(first)["kind"] == "frame"
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_diagnose_folder_goes_on_when_the_nights_witness_fails(tmp_path, capsys, monkeypatch):
    """The night's seeing witness is a second look: when it fails, ``diagnose`` still prints every
    frame's diagnosis and the night, names the failure once and exits 0 (as report and grade)."""
    from focuswatch import diagnose

    paths = []
    for i in range(2):
        f = sim.render(sim.SimParams(width_px=256, height_px=256, n_stars=30, seed=10 + i))
        paths.append(tmp_path / f"l{i}.fits")
        sim.write_fits(paths[-1], f)

    def broken(*a, **kw):
        raise ValueError("witness bug")

    monkeypatch.setattr(diagnose, "night_witnesses", broken)
    assert main(["diagnose", "--json", *map(str, paths)]) == 0
    cap = capsys.readouterr()
    rows = [json.loads(line) for line in cap.out.splitlines()]
    assert sum("label" in r for r in rows) >= 2
    assert "witness bug" in cap.err and "Traceback" not in cap.err
