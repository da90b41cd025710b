"""Session grading with the real Siril and the HTML night report in a real headless Chromium."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import snapshot, write_sim_session
from focuswatch.render import report
from focuswatch.cli import main
from focuswatch.errors import ConfigError


@pytest.fixture(scope="module")
def messy_session(focused_session, tmp_path_factory):
    """The focused session plus a truncated sub, a star-less sub and a flat frame."""
    src, truths = focused_session
    folder = tmp_path_factory.mktemp("messy") / "my session"  # a space, as users have
    shutil.copytree(src, folder)
    data = (src / "L_0001.fits").read_bytes()
    (folder / "L_0099_truncated.fits").write_bytes(data[: len(data) // 3])
    write_sim_session(folder / "starless", [0.0], n_stars=0, first_nr=50, seed=9)
    write_sim_session(folder / "FLAT", [0.0], first_nr=60, tweak=lambda i, p: p.__class__(
        **{**p.__dict__, "image_type": "FLAT"}))
    return folder, truths


@pytest.mark.siril
def test_session_with_bad_subs_still_grades_and_names_them(siril_cli, messy_session, tmp_path):
    folder, _ = messy_session
    before = snapshot(folder)
    g = report.grade_session(folder, progress=False, keep_dir=tmp_path / "keep")
    assert snapshot(folder) == before  # nothing written, moved or touched in the session
    [fg] = g.filters
    assert fg.filter_name == "L" and fg.n_stacked == 8
    assert fg.grade is not None and fg.grade.letter in ("A", "B")
    assert fg.grade.reject == ()
    names = {Path(x.file).name: x.problem for x in (*g.left_out, *fg.left_out)}
    assert "truncated" in names["L_0099_truncated.fits"]
    assert "stars" in names["L_0050.fits"]
    assert len(names) == 2  # the flat is skipped silently, not "bad"
    assert Path(fg.master_path).is_file() and Path(fg.master_path).parent.parent == tmp_path / "keep"
    d = json.loads(json.dumps(g.to_dict()))
    assert report.SessionGrade.from_dict(d).to_dict() == d


@pytest.mark.siril
def test_cli_grade_names_the_unreadable_sub_and_exits_1(siril_cli, messy_session, tmp_path, capsys):
    """Issue 10: a folder command grades what it can, names each bad frame once, exits non-zero."""
    folder, _ = messy_session
    assert main(["grade", str(folder), "--keep", str(tmp_path / "k")]) == 1
    err = capsys.readouterr().err
    assert err.count("L_0099_truncated.fits") == 1 and "truncated" in err and "Traceback" not in err


@pytest.mark.siril
def test_drifting_session_grades_worse_and_blames_focus(siril_cli, focused_session, drifting_session):
    good = report.grade_session(focused_session[0], progress=False)
    bad = report.grade_session(drifting_session[0], progress=False)
    g_good, g_bad = good.filters[0].grade, bad.filters[0].grade
    assert g_good.letter == "A"
    assert g_bad.ratio > g_good.ratio + 0.3
    assert g_bad.letter > g_good.letter  # later in the alphabet is worse
    focus_rejects = {Path(v.file).name for v in g_bad.subs if v.cause == "focus"}
    assert {"L_0006.fits", "L_0007.fits", "L_0008.fits"} <= focus_rejects
    assert "L_0001.fits" not in {Path(f).name for f in g_bad.reject}
    assert "focus" in g_bad.explanation
    # Siril and focuswatch see the same master
    assert abs(g_bad.siril_vs_own_pct) < 30


@pytest.mark.siril
def test_cli_grade_json_and_master_mode(siril_cli, focused_session, tmp_path, capsys):
    folder, truths = focused_session
    assert main(["grade", str(folder), "--json", "--keep", str(tmp_path / "k")]) == 0
    out = json.loads(capsys.readouterr().out)
    f = out["filters"][0]
    assert f["grade"]["letter"] == "A" and f["n_stacked"] == 8
    for key in ("ratio", "master_fwhm_px", "master_fwhm_arcsec", "limit_fwhm_px", "seeing_fwhm_arcsec",
                "airy_fwhm_px", "sampling_fwhm_px", "roundness", "n_stars", "noise_adu", "siril_fwhm_px", "reject"):
        assert key in f["grade"]
    master = f["master_path"]
    # grade the master alone: the seeing has to come from the user
    assert main(["grade", master, "--seeing-arcsec", "2.5", "--aperture-mm", "200"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"grade [AB] ", text) and "(given)" in text


def test_cli_grade_refuses_keep_inside_session(focused_session, capsys):
    folder, _ = focused_session
    assert main(["grade", str(folder), "--keep", str(folder / "work")]) == 2
    assert "inside the session folder" in capsys.readouterr().err
    assert not (folder / "work").exists()


def test_cli_grade_missing_source(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nope")]) == 1  # a missing input path is a file problem (1), everywhere
    assert "no such file or folder" in capsys.readouterr().err


def test_report_refuses_to_write_into_the_session(focused_session):
    folder, _ = focused_session
    with pytest.raises(ConfigError):
        report.check_output_path(folder / "sub" / "r.html", folder)


def test_a_report_that_cannot_be_written_names_the_file_asked_for(tmp_path, monkeypatch):
    """On a read-only file system (a NAS share mounted read-only) the error named the
    temporary ``r.html.part`` beside the target, a file the user never asked for."""
    import errno

    real = Path.write_text

    def read_only(self, *a, **k):
        if self.name.endswith(".part"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(report, "render_html", lambda rep: "<html></html>")
    monkeypatch.setattr(Path, "write_text", read_only)
    out = tmp_path / "r.html"
    with pytest.raises(OSError) as err:
        report.write_report(object(), out)
    assert err.value.filename == str(out) and ".part" not in str(err.value)
    assert err.value.errno == errno.EROFS and not list(tmp_path.iterdir())


def _chromium(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chrome-profile'}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_report_without_siril_in_chromium(chromium, drifting_session, tmp_path):
    folder, truths = drifting_session
    out = tmp_path / "night.html"
    assert main(["report", str(folder), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    # self-contained: no external resources, no scripts
    assert not re.search(r"""(src|href)=['"](?!data:)""", text)
    assert "<script" not in text
    # every embedded plot is a real PNG
    uris = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(uris) == 4
    import matplotlib.image as mpimg
    for u in uris:
        img = mpimg.imread(io.BytesIO(base64.b64decode(u)), format="png")
        assert img.shape[0] > 100 and img.shape[1] > 300
        assert float(np.std(img[..., :3])) > 0.01  # not blank
    dom = _chromium(chromium, tmp_path, "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-500:]
    html = dom.stdout
    for pid in ("plot-size", "plot-defocus", "plot-temperature", "plot-clouds"):
        assert f'id="{pid}"' in html
    assert html.count('class="plot"') == 4
    assert 'class="filters"' in html and ">L</td>" in html
    assert 'class="diagnosis"' in html and "focus_miss" in html
    assert "master grade: not computed" in html  # said, not silently missing
    shot = tmp_path / "shot.png"
    r = _chromium(chromium, tmp_path, "--window-size=1000,1600", f"--screenshot={shot}", out.as_uri())
    assert r.returncode == 0 and shot.is_file()
    import matplotlib.image as mpimg
    px = mpimg.imread(shot)
    assert float(np.std(px[..., :3])) > 0.05  # something was drawn


@pytest.mark.siril
def test_report_with_grade_json(siril_cli, drifting_session, tmp_path, capsys):
    folder, truths = drifting_session
    out = tmp_path / "r.html"
    assert main(["report", str(folder), "-o", str(out), "--grade", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["html"] == str(out)
    assert d["grade"]["filters"][0]["grade"]["letter"] in "CDEF"
    assert [f["grade_letter"] for f in d["filters"]] == [d["grade"]["filters"][0]["grade"]["letter"]]
    # the defocus estimate follows the simulated drift: first frame 0, last one large
    defocus = [p["defocus_um"] for p in d["points"]]
    assert defocus[0] == 0.0 and defocus[-1] > 100
    assert d["cfz_um"] == pytest.approx(4.88 * 0.55 * 25, rel=1e-6)
    text = out.read_text(encoding="utf-8")
    assert "Subs to reject" in text and "L_0008.fits" in text


def test_report_shows_journal_events(drifting_session, tmp_path):
    from focuswatch.io.frames import parse_date_obs
    from focuswatch.io.journal import Journal
    from focuswatch.policy import AutofocusMark, Decision, FrameRecord

    folder, truths = drifting_session
    t0 = parse_date_obs("2026-11-21T21:00:00")
    jp = tmp_path / "state" / "journal.sqlite"
    frame = sorted(folder.glob("*.fits"))[5]
    with Journal(jp) as j:
        j.record_autofocus("nina:1", AutofocusMark(time_s=t0 - 60.0, source="nina-report", filter_name="L",
                                                   position=10000, temp_c=10.0))
        j.record_autofocus("old-night", AutofocusMark(time_s=t0 - 86400.0, source="nina-report"))
        j.record_frame(Journal.key_of(frame), time_s=t0 + 5 * 130.0, status="measured",
                       record=FrameRecord(file=str(frame), time_s=t0 + 5 * 130.0, n_stars=80, hfr_px=3.3),
                       decision=Decision(file=str(frame), decision="refocus", reasons=("HFR grew 60 %",),
                                         time_s=t0 + 5 * 130.0))
    rep = report.build_report(folder, journal_path=jp, progress=False)
    kinds = [(e.kind, round(e.t_h, 3)) for e in rep.events]
    assert kinds == [("autofocus", round(-60 / 3600, 3)), ("refocus decision", round(650 / 3600, 3))]
    assert "HFR grew 60 %" in rep.events[1].text
    [note] = [u for u in rep.unavailable if "journal" in u]    # the other frames were not journaled: said
    assert f"{len(rep.points) - 1} of {len(rep.points)} frames are not in" in note
    by_name = {Path(p.file).name: p for p in rep.points}
    assert by_name[frame.name].decision == "refocus" and rep.decisions_source == "journal"
    assert all(p.decision is None and p.defocus_um is None for p in rep.points if p.file != str(frame))
    html = report.render_html(rep)
    assert "class='events'" in html and "nina-report" in html
    # a journal that does not exist is said, not fatal
    rep2 = report.build_report(folder, journal_path=tmp_path / "nope.sqlite", scan=None, progress=False)
    assert any("does not exist" in u for u in rep2.unavailable)


def test_a_garbled_journal_row_is_one_line_and_the_report_shows_the_rest(drifting_session, tmp_path):
    """A journal row cut short or not UTF-8 (a crash mid-write, a disk error): the report leaves
    out that row only, says so in one line naming the journal and the row, and still shows the
    other decision and the autofocus it could read. The journal's bytes are left as they were."""
    import sqlite3

    from focuswatch.io.frames import parse_date_obs
    from focuswatch.io.journal import Journal
    from focuswatch.policy import AutofocusMark, Decision, FrameRecord

    folder, _ = drifting_session
    t0 = parse_date_obs("2026-11-21T21:00:00")
    jp = tmp_path / "state" / "journal.sqlite"
    f5, f6 = sorted(folder.glob("*.fits"))[5:7]
    with Journal(jp) as j:
        j.record_autofocus("nina:1", AutofocusMark(time_s=t0 - 60.0, source="nina-report", filter_name="L"))
        j.record_autofocus("nina:2", AutofocusMark(time_s=t0 + 100.0, source="nina-report", filter_name="L"))
        for i, f in ((5, f5), (6, f6)):
            t = t0 + i * 130.0
            j.record_frame(Journal.key_of(f), time_s=t, status="measured",
                           record=FrameRecord(file=str(f), time_s=t, n_stars=80, hfr_px=3.3),
                           decision=Decision(file=str(f), decision="refocus", reasons=(f"grew {i}",), time_s=t))
    con = sqlite3.connect(jp)
    with con:
        con.execute("UPDATE decisions SET data = CAST(X'FFFE00C3287B' AS TEXT) WHERE frame_id = "
                    "(SELECT id FROM frames WHERE path LIKE ?)", (f"%{f6.name}",))
        con.execute("UPDATE autofocus_events SET data = '{\"time_s\": 1' WHERE key = 'nina:2'")
    con.close()
    before = jp.read_bytes()
    rep = report.build_report(folder, journal_path=jp, progress=False)
    assert jp.read_bytes() == before
    by_name = {Path(p.file).name: p for p in rep.points}
    assert by_name[f5.name].decision == "refocus" and by_name[f6.name].decision is None
    assert [e.kind for e in rep.events] == ["autofocus", "refocus decision"]
    bad = [u for u in rep.unavailable if "cannot be read back" in u]
    assert len(bad) == 2 and all(str(jp) in u and "\n" not in u for u in bad)
    assert any(f6.name in u for u in bad) and any("autofocus_events" in u for u in bad)


@pytest.mark.siril
def test_keep_dir_whose_filter_folder_is_the_session_is_refused(siril_cli, tmp_path):
    """--keep on the parent of a session folder named like its filter: Siril's work for filter
    L would land in KEEP/L, the session itself. Refused before anything is written there."""
    session = tmp_path / "night" / "L"
    write_sim_session(session, [0.0, 0.0], filter_name="L")
    before = snapshot(session)
    with pytest.raises(ConfigError) as err:
        report.grade_session(session, progress=False, keep_dir=tmp_path / "night")
    assert "never writes next to your frames" in str(err.value)
    assert snapshot(session) == before


def test_diagnose_thresholds_from_the_toml_file_reach_the_report_and_the_watchers_step(drifting_session, tmp_path,
                                                                                      capsys):
    """`[diagnose]` in the settings file is not only validated: the report's per-frame labels and the
    watcher's record (the one pipeline step `watch` and `replay` share) are judged with it. Asking for
    more stars than any simulated frame has (closed form: the sim draws 80) must turn every label into
    `unknown`, while the defaults label the drifting frames."""
    from focuswatch.config import load_config
    from focuswatch.io import frames
    from focuswatch.io.assess import measure_record
    from focuswatch.policy import Monitor

    folder, truths = drifting_session
    cfg_path = tmp_path / "focuswatch.toml"
    cfg_path.write_text("[diagnose]\nmin_stars = 5000\n", encoding="utf-8")

    def labels(extra):
        assert main(["report", str(folder), "-o", str(tmp_path / "r.html"), "--json", "--no-journal", *extra]) == 0
        return [p["label"] for p in json.loads(capsys.readouterr().out)["points"]]

    default = labels([])
    strict = labels(["--config", str(cfg_path)])
    assert any(lab not in (None, "unknown") for lab in default)
    assert strict and all(lab in (None, "unknown") for lab in strict)

    frame = frames.load(sorted(folder.glob("*.fits"))[-1])
    cfg = load_config(cfg_path)
    rec, _, _ = measure_record(frame, cfg, Monitor(rig=cfg.rig))
    rec_default, _, _ = measure_record(frame, load_config(None), Monitor(rig=cfg.rig))
    assert rec.diagnosis in (None, "unknown") and rec_default.diagnosis not in (None, "unknown")


def test_the_reports_night_verdict_uses_the_scans_own_diagnoses_and_settings():
    """The report's night verdict (diagnose.night) and its per-frame labels come from the same
    diagnoses: the session scan's (header-merged rig, the [diagnose] settings, the night's
    seeing witness). Physical-optics night (80 mm f/6, 2.5" seeing, a 1 CFZ slip on frames 4-5,
    which only the witness calls a focus miss); with ``witness_min_steps`` set past the night's
    length there is no witness, and the night's story must not judge with the default one."""
    from dataclasses import replace

    from focuswatch import diagnose
    from focuswatch.render.night import _night_diagnosis
    from focuswatch.scale.session import SessionScan
    from physframes import REFRACTOR_80, night_frame, rig_of

    rig = rig_of(REFRACTOR_80)
    seeings = list(2.5 * np.exp(np.random.default_rng(0).normal(0.0, 0.03, 6)))
    stats_list = [replace(night_frame(REFRACTOR_80, s, c, i, seed=20)[1], file=f"L_{i:03d}.fits")
                  for i, (s, c) in enumerate(zip(seeings, [0.0] * 4 + [1.0] * 2))]
    assert diagnose.night(stats_list, rig).frames[4].label == "focus_miss"  # the default witness calls it
    for cfg in (None, diagnose.DiagnoseConfig(witness_min_steps=100)):
        scan = SessionScan(folder="night", stats=list(stats_list), diagnose_config=cfg)
        labels, summary, _ = _night_diagnosis(scan, rig)
        assert summary is not None
        assert [f["label"] for f in summary["frames"]] == labels
    assert labels[4] != "focus_miss"  # no witness under these settings


def test_the_reports_zone_is_the_filters_for_one_filter_and_the_rigs_across_filters(tmp_path):
    """The header-merged rig takes a known FILTER's wavelength. A one-filter night's report shows
    the zone 4.88 lambda N^2 (closed form) at that filter's wavelength; a night across filters shows
    it at the rig's own wavelength, not at whichever filter came first."""
    from focuswatch.optics import Rig

    rig = Rig(aperture_mm=100.0, focal_length_mm=500.0, pixel_um=3.76, wavelength_nm=550.0)

    def zone_um(wavelength_nm: float) -> float:
        return 4.88 * wavelength_nm / 1000.0 * 5.0 ** 2

    one, mixed = tmp_path / "one", tmp_path / "mixed"
    write_sim_session(one, [0.0, 0.0], size_px=256, n_stars=60, filter_name="R")
    write_sim_session(mixed, [0.0, 0.0], size_px=256, n_stars=60, filter_name="R")
    write_sim_session(mixed, [0.0, 0.0], size_px=256, n_stars=60, filter_name="B", first_nr=3,
                      start="2026-11-21T22:00:00")
    rep = report.build_report(one, rig=rig, journal_path=None, progress=False)
    assert rep.cfz_um == pytest.approx(zone_um(640.0), rel=1e-9)
    rep = report.build_report(mixed, rig=rig, journal_path=None, progress=False)
    assert rep.cfz_um == pytest.approx(zone_um(550.0), rel=1e-9)
    assert rep.rig["wavelength_nm"] == 550.0


def test_the_reports_own_policy_run_judges_frames_with_the_nights_witness_as_replay_does(tmp_path, monkeypatch):
    """Without a journal the report runs the policy over the frames as ``replay`` does: each
    frame diagnosed against the policy's baseline *and* the night's in-focus seeing witness so
    far (the first frames at the focuser position), with the [diagnose] settings."""
    from focuswatch import diagnose, pipeline
    from focuswatch.optics import Rig
    from focuswatch.render.night import _policy_decisions
    from focuswatch.policy import PolicyConfig
    from focuswatch.scale.batch import scan_session

    rig = Rig(aperture_mm=100.0, focal_length_mm=500.0, pixel_um=3.76)
    folder = tmp_path / "night"
    write_sim_session(folder, [0.0] * 8, size_px=256, n_stars=60)
    scan, _ = scan_session(folder, rig=rig, progress=False)
    scan.diagnose_config = diagnose.DiagnoseConfig(witness_max_age_s=7200.0)
    scan.diagnose(rig)
    seen = []
    real_judge = pipeline.judge

    def spy(stats, r, context=pipeline.AssessContext(), **kw):
        seen.append((context.seeing_witness, context.diagnose_config))
        return real_judge(stats, r, context, **kw)

    monkeypatch.setattr(pipeline, "judge", spy)
    decisions = _policy_decisions(scan, rig, PolicyConfig())
    assert len(decisions) == 8 and seen
    assert all(cfg is scan.diagnose_config for _, cfg in seen)
    got = [w for w, _ in seen if w is not None]
    assert got and all(w.source == "infocus" and w.n_frames == 2 for w in got)
