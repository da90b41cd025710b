"""The Siril driver against the real siril-cli, plus its parsers on Siril's own formats."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from conftest import snapshot
from focuswatch import siril, stars
from focuswatch.render import report
from focuswatch.errors import ConfigError, SirilError

# --------------------------------------------------------------------------- parsers (no Siril needed)

SEQ_V3 = """#Siril sequence file. Contains list of files (images), selection, and registration data
#S 'sequence_name' start_index nb_images nb_selected fixed_len reference_image version
S 'light_' 1 3 3 5 1 3
L 1
I 1 1
I 2 1
I 3 0
R0 0.000000 0.000000 3.27583 3.27583 0.987367 0
R0 0.000000 0.000000 3.2719 3.38282 0.986742 0
R0 0.000000 0.000000 0 0 0 0
"""

SEQ_V4 = """S 'r_light_' 1 2 2 5 0 4 0
L 1
I 1 1
I 2 1
R0 3.1 3.2 0.91 0.5 0.0123 154 H 1 0 0 0 1 0 0 0 1
R0 3.4 3.6 0.88 0.4 0.0125 149 H 1 0 -2.5 0 1 3.1 0 0 1
"""

FINDSTAR = ("# 3 stars found using the following parameters:\n# sigma=1.00 roundness=0.50\n"
            "# star#\tlayer\tB\tA\tbeta\tX\tY\tFWHMx [px]\tFWHMy [px]\tFWHMx [\"]\tFWHMy [\"]\tangle\tRMSE\tmag\n"
            "1\t0\t0.01\t0.5\t-1\t10.00\t20.00\t3.10\t2.90\t2.40\t2.25\t12.0\t1e-3\t-5.1\n"
            "2\t0\t0.01\t0.4\t-1\t30.00\t40.00\t3.30\t3.00\t2.56\t2.33\t-8.0\t1e-3\t-4.9\n")


def test_parse_version():
    assert siril.parse_version("siril 1.0.6") == (1, 0, 6)
    assert siril.parse_version("siril 1.2.1 (commit abc)") == (1, 2, 1)
    assert siril.parse_version("") is None


def test_parse_seq_v3_and_v4():
    s3 = siril.parse_seq(SEQ_V3)
    assert (s3.name, s3.version, s3.reference_index) == ("light_", 3, 1)
    assert [i.included for i in s3.images] == [True, True, False]
    assert s3.images[1].fwhm_px == pytest.approx(3.2719)
    assert s3.images[1].weighted_fwhm_px == pytest.approx(3.38282)
    assert s3.images[0].roundness == pytest.approx(0.987367)
    assert s3.images[2].fwhm_px is None  # 0 means "not measured"
    s4 = siril.parse_seq(SEQ_V4)
    assert s4.version == 4
    assert s4.images[1].fwhm_px == pytest.approx(3.4)
    assert s4.images[1].roundness == pytest.approx(0.88)
    assert s4.images[1].n_stars == 149


def test_parse_findstar_list_by_column_names():
    rows = siril.parse_findstar_list(FINDSTAR)
    assert len(rows) == 2
    assert rows[1]["FWHMx [px]"] == pytest.approx(3.3)
    assert rows[0]["X"] == pytest.approx(10.0)


def test_parse_stat_and_bgnoise():
    lines = ["B&W layer: Mean: 508.7, Median: 500.1, Sigma: 109.6, AvgDev: 12.7, Min: 462.0, Max: 6159.5",
             "Background noise value (channel: #0): 4.620 (7.049e-05)"]
    st = siril.parse_stat(lines)
    assert st is not None and st.median == pytest.approx(500.1) and st.max == pytest.approx(6159.5)
    assert siril.parse_bgnoise(lines) == pytest.approx(4.62)
    assert siril.parse_stat(["nothing"]) is None


# Siril 1.2+ prints the stat line without AvgDev and with bgnoise (Siril 1.2.6 / 1.4.4,
# src/core/command.c process_stat; design.md section 7); 1.0.6 prints AvgDev and no bgnoise.
@pytest.mark.parametrize("line, avg_dev, bgnoise", [
    ("B&W layer: Mean: 508.7, Median: 500.1, Sigma: 109.6, AvgDev: 12.7, Min: 462.0, Max: 6159.5", 12.7, None),
    ("B&W layer: Mean: 508.7, Median: 500.1, Sigma: 109.6, Min: 462.0, Max: 6159.5, bgnoise: 4.62", None, 4.62),
    ("Red layer: Mean: 5.087e+02, Median: 500.1, Sigma: 109.6, Min: 462, Max: 6159.5, bgnoise: 4.62e+00",
     None, 4.62),
])
def test_parse_stat_by_key_name_with_avgdev_optional(line, avg_dev, bgnoise):
    st = siril.parse_stat(["log: some other line", line])
    assert st is not None
    assert (st.mean, st.median, st.sigma, st.min, st.max) == pytest.approx((508.7, 500.1, 109.6, 462.0, 6159.5))
    assert st.avg_dev == (pytest.approx(avg_dev) if avg_dev is not None else None)
    assert st.bgnoise == (pytest.approx(bgnoise) if bgnoise is not None else None)
    assert siril.parse_bgnoise([line]) == (pytest.approx(bgnoise) if bgnoise is not None else None)


def test_registration_matrices_are_keyed_by_image_in_a_real_interleaved_two_thread_log():
    """A real Siril 1.0.6 log of 40 frames registered on 2 threads in which image 22's matrix was
    cut in two by image 3's lines (tests/data/siril/PROVENANCE.txt). The old parser took the next
    three number rows after each header: it lost image 3's matrix (38 of 39) and would have mixed
    rows. Truth: the shift each frame was rendered with, not anything focuswatch computed."""
    import gzip
    import json

    from focuswatch.siril.run import _clean_lines

    data = Path(__file__).parent / "data" / "siril"
    text = gzip.decompress((data / "register_2threads_siril1.0.6.log.gz").read_bytes()).decode()
    truth = json.loads((data / "register_2threads_truth.json").read_text())["shift_px"]
    lines = _clean_lines(text)
    assert sum("Transformation Matrix" in line for line in lines) == 39
    assert len(siril.parse_transforms(lines)) == 39          # the old parser: 38
    by_image = siril.parse_transforms_by_image(lines)
    assert sorted(by_image) == list(range(2, 41))           # every image but the reference, once
    for n, (a, b, c, d, e, f) in by_image.items():
        dx, dy = truth[n - 1]
        assert -c == pytest.approx(dx, abs=0.1) and f == pytest.approx(dy, abs=0.1), n   # y runs bottom-up
        assert a == pytest.approx(1.0, abs=0.01) and e == pytest.approx(1.0, abs=0.01)
    assert siril.parse_transforms(lines) == tuple(by_image[n] for n in range(2, 41))
    # a matrix whose third row is another matrix's first is left out, never mixed
    cut = [line for line in lines]
    k = next(i for i, line in enumerate(cut) if "Transformation Matrix" in line)
    assert siril.parse_transforms_by_image(cut[:k + 3] + cut[k + 4:]).keys() == set(by_image) - {
        next(n for n, m in by_image.items() if m[2] == float(cut[k + 1].split()[2]))}


def test_missing_siril_names_what_to_install(tmp_path):
    with pytest.raises(SirilError) as err:
        siril.find_siril(tmp_path / "no-such-siril-cli")
    assert "install Siril" in str(err.value)
    assert "--siril" in str(err.value)


# --------------------------------------------------------------------------- fake hung / crashing Siril

def _fake(tmp_path: Path, body: str) -> siril.SirilInfo:
    exe = tmp_path / "fake-siril-cli"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return siril.SirilInfo(str(exe), (1, 0, 6), "siril 1.0.6")


@pytest.mark.skipif(os.name != "posix", reason="shell stand-ins need POSIX")
def test_hung_siril_is_killed_after_the_timeout(tmp_path):
    info = _fake(tmp_path, "echo 'log: Welcome to siril v1.0.6'\nexec sleep 30")
    with pytest.raises(SirilError) as err:
        siril.run_script(["register light_"], tmp_path / "wd", info=info, timeout_s=1.0)
    assert "within 1 s" in str(err.value)
    assert err.value.exit_code is None
    assert "Welcome" in " ".join(err.value.log_tail)


@pytest.mark.skipif(os.name != "posix", reason="shell stand-ins need POSIX")
def test_crashing_siril_is_reported(tmp_path):
    info = _fake(tmp_path, "echo 'log: Running command: register'\nkill -SEGV $$")
    with pytest.raises(SirilError) as err:
        siril.run_script(["register light_"], tmp_path / "wd", info=info, timeout_s=20)
    assert "crashed" in str(err.value)
    assert err.value.exit_code == -11


def test_too_old_siril_is_refused(tmp_path):
    if os.name != "posix":
        pytest.skip("shell stand-in needs POSIX")
    info = _fake(tmp_path, "echo 'siril 0.9.12'")
    with pytest.raises(SirilError) as err:
        siril.find_siril(info.executable)
    assert "too old" in str(err.value) and "0.9.12" in str(err.value)


# --------------------------------------------------------------------------- the real siril-cli


@pytest.mark.siril
def test_real_siril_version(siril_cli):
    assert siril_cli.version >= siril.MIN_VERSION
    assert siril_cli.executable.endswith("siril-cli")


@pytest.mark.siril
def test_failed_load_is_caught_although_siril_exits_0(siril_cli, tmp_path):
    with pytest.raises(SirilError) as err:
        siril.run_script(["load does_not_exist"], tmp_path, info=siril_cli, timeout_s=60,
                         expect=[r"Reading FITS: file does_not_exist"])
    assert err.value.exit_code == 0  # Siril says all is well...
    assert "expected result" in str(err.value)
    assert "does_not_exist" in str(err.value)  # ...its own error line is passed on


@pytest.mark.siril
def test_unknown_command_fails_with_siril_output(siril_cli, tmp_path):
    with pytest.raises(SirilError) as err:
        siril.run_script(["frobnicate now"], tmp_path, info=siril_cli, timeout_s=60)
    assert err.value.exit_code == 1
    assert err.value.log_tail


@pytest.mark.siril
def test_subs_of_different_fields_say_registration_left_too_few(siril_cli, tmp_path):
    """Three subs of three different star fields (different seeds: nothing to align by
    construction). Siril's own words were "Cannot load initfile ... Provided filtering options
    do not allow at least two images to be processed"; the user needs to hear that the subs
    could not be registered together."""
    from focuswatch import sim

    folder = tmp_path / "subs"
    folder.mkdir()
    subs = []
    for k in range(3):
        f = sim.render(sim.SimParams(width_px=256, height_px=256, n_stars=40, seed=100 + 17 * k))
        subs.append(folder / f"L_{k:03d}.fits")
        sim.write_fits(subs[-1], f)
    with pytest.raises(SirilError) as err:
        siril.stack(subs, tmp_path / "stack", info=siril_cli, timeout_s=300)
    msg = str(err.value)
    assert "registered only" in msg and "of 3 subs" in msg and "one field" in msg


def test_stack_of_known_fwhm_matches_the_truth(siril_cli, focused_session, tmp_path):
    folder, truths = focused_session
    before = snapshot(folder)
    subs = sorted(folder.glob("*.fits"))
    st = siril.stack(subs, tmp_path / "stack", info=siril_cli, timeout_s=300)
    assert (st.n_input, st.n_registered, st.n_stacked) == (8, 8, 8)
    assert len(st.sub_registration) == 8 and all(r.fwhm_px for r in st.sub_registration)
    truth_fwhm = truths[0]["fwhm_px"]
    own = stars.measure_array(*siril.load_master_pixels(st.master_path))
    sm = siril.measure(st.master_path, tmp_path / "measure", info=siril_cli, timeout_s=300)
    # focuswatch's Moffat FWHM of the master: within 10 % of the subs' true FWHM
    assert own.fwhm_px == pytest.approx(truth_fwhm, rel=0.10)
    # Siril 1.0's Gaussian fit reads Moffat stars large (documented bias) but sees the same stars
    assert truth_fwhm < sm.fwhm_px < 1.3 * truth_fwhm
    assert sm.n_stars > 50 and 0.9 < sm.roundness <= 1.0
    assert sm.noise_adu is not None and sm.noise_adu > 0
    assert sm.method == ("findstar" if siril_cli.has_findstar_out else "register-trick")
    # the master's noise is lower than a sub's: the stack really averaged 8 frames
    sub_noise = stars.measure(report.frames_mod.load(subs[0])).noise_adu
    assert own.noise_adu < 0.6 * sub_noise
    assert snapshot(folder) == before  # the user's frames were not touched


@pytest.mark.siril
def test_one_bad_sub_aborts_siril_registration(siril_cli, focused_session, tmp_path):
    """Why the subs are validated first: Siril itself gives up on the whole sequence."""
    folder, _ = focused_session
    bad = tmp_path / "bad.fits"
    data = sorted(folder.glob("*.fits"))[0].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(SirilError) as err:
        siril.stack([*sorted(folder.glob("*.fits"))[:3], bad], tmp_path / "stack", info=siril_cli, timeout_s=120)
    assert err.value.exit_code == 1


@pytest.mark.siril
@pytest.mark.skipif(os.name != "posix", reason="Siril's pipe mode needs FIFOs")
def test_pipe_client_round_trip(siril_cli, focused_session, tmp_path):
    folder, _ = focused_session
    img = tmp_path / "img.fits"
    shutil.copyfile(sorted(folder.glob("*.fits"))[0], img)
    with siril.PipeClient(tmp_path / "pipe", info=siril_cli) as pc:
        r = pc.execute(f"load {img}", timeout_s=60)
        assert r.ok and any("Reading FITS" in line for line in r.lines)
        r = pc.execute("stat", timeout_s=60)
        st = siril.parse_stat(r.lines)
        assert st is not None and 1000 < st.median < 2000  # bias 500 + sky 800
        r = pc.execute(f"load {tmp_path / 'missing'}", timeout_s=60, check=False)
        assert r.ok and not any("Reading FITS" in line for line in r.lines)  # a failed load "succeeds"
        with pytest.raises(SirilError):
            pc.execute("frobnicate", timeout_s=60)
        proc = pc._proc
    assert proc is None or proc.poll() is not None  # Siril was terminated


# --------------------------------------------------------------------------- the user's frames are sacred

def test_restaging_into_a_kept_workdir_never_writes_through_old_links(tmp_path):
    """A kept work directory holds links to the subs of the earlier run: staging a different
    sub under the same name must replace the link, not copy the new sub into the old one."""
    session = tmp_path / "session"
    session.mkdir()
    a, b = session / "A.fits", session / "B.fits"
    a.write_bytes(b"A" * 2880)
    b.write_bytes(b"B" * 2880)
    before = snapshot(session)
    keep = tmp_path / "keep"
    keep.mkdir()
    dst = keep / "light_00001.fits"
    siril._stage(a, dst)
    siril._stage(b, dst)  # second run, other subs
    assert dst.read_bytes() == b"B" * 2880
    assert a.read_bytes() == b"A" * 2880
    assert snapshot(session) == before


def test_workdir_in_the_folder_of_the_subs_is_refused_before_siril_runs(tmp_path):
    folder = tmp_path / "L"
    folder.mkdir()
    subs = [folder / f"L_{i}.fits" for i in range(3)]
    for s in subs:
        s.write_bytes(b"\0" * 2880)
    before = snapshot(folder)
    never_run = siril.SirilInfo(str(tmp_path / "no-siril"), (1, 0, 6), "siril 1.0.6")
    with pytest.raises(ConfigError) as err:
        siril.stack(subs, folder, info=never_run)
    assert "never writes next to your frames" in str(err.value)
    with pytest.raises(ConfigError):
        siril.measure(subs[0], folder, info=never_run)
    assert snapshot(folder) == before


# --------------------------------------------------------------------------- other programs' settings

@pytest.mark.siril
def test_grade_leaves_the_users_siril_settings_byte_identical(siril_cli, focused_session, tmp_path, monkeypatch):
    """Siril 1.0.6 (src/core/initfile.c, checkinitfile): with ``-i FILE`` and no FILE it falls back to
    ``~/.config/siril/siril.config`` and rewrites it (working-directory, libraw settings...); Siril >= 1.2
    exits instead ("Could not load or create settings file, exiting."). Seen on the real siril-cli 1.0.6:
    `grade` changed a user's file. Siril's settings now live in the work folder (XDG_CONFIG_HOME)."""
    from focuswatch import cli

    home = tmp_path / "home"
    user_cfg = home / ".config" / "siril" / "siril.config"
    user_cfg.parent.mkdir(parents=True)
    user_cfg.write_bytes(b'working-directory = "/my/own/astro";\n# the user\'s own Siril settings\n')
    before = (user_cfg.read_bytes(), user_cfg.stat().st_mtime_ns)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    folder, _ = focused_session
    keep = tmp_path / "keep"
    rc = cli.main(["grade", str(folder), "--keep", str(keep), "--json", "--aperture-mm", "100",
                   "--focal-length-mm", "500", "--pixel-um", "3.76", "--siril-timeout", "300"])
    assert rc == 0
    assert (user_cfg.read_bytes(), user_cfg.stat().st_mtime_ns) == before
    assert sorted(p.name for p in (home / ".config" / "siril").iterdir()) == ["siril.config"]
    # Siril did use a settings file: the private one in our work folder
    assert list(keep.rglob(f"{siril.CONFIG_SUBDIR}/siril/siril.config"))
