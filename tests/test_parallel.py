"""Per-frame work on several local processes and on a real Dask cluster on 127.0.0.1.

Truth: the simulator's half-flux radius and the DATE-OBS we wrote (capture order differs from
the file-name order on purpose); "same numbers" is checked against the one-process run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from focuswatch.scale import parallel
from focuswatch.scale.batch import measure_one, scan_session
from focuswatch.errors import ConfigError
from focuswatch.scale.parallel import Runner, map_frames

N_FRAMES = 6


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """Six small frames whose names run backwards in time, plus one truncated frame."""
    from focuswatch import sim

    folder = tmp_path_factory.mktemp("night")
    t0 = datetime(2026, 11, 21, 22, 0, 0)
    truths = []
    rendered = {}  # two renders (in focus, 80 um out), headers per frame: rendering is the slow part
    for i in range(N_FRAMES):
        p = sim.SimParams(width_px=192, height_px=192, n_stars=50, seed=5, seeing_fwhm_arcsec=2.5,
                          defocus_um=80.0 * (i % 2), frame_nr=i + 1, exposure_s=60.0, focuser_pos=1000 + i,
                          date_obs=(t0 + timedelta(minutes=2 * i)).isoformat(timespec="seconds"))
        if p.defocus_um not in rendered:
            rendered[p.defocus_um] = sim.render(p)
        frame = sim.SimFrame(rendered[p.defocus_um].pixels, sim.fits_header(p), {}, p)
        path = folder / f"L_{N_FRAMES - i:04d}.fits"  # later frames get smaller names
        sim.write_fits(path, frame)
        truths.append({"file": path, "hfr_px": rendered[p.defocus_um].truth["hfr_px"], "date": p.date_obs})
    good = truths[0]["file"].read_bytes()
    (folder / "L_9999_truncated.fits").write_bytes(good[: len(good) // 2])
    return folder, truths


def _paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.fits"))


def test_two_local_workers_give_the_one_worker_numbers_in_capture_order(night):
    folder, truths = night
    one = map_frames(measure_one, _paths(folder), runner=Runner(workers=1))
    two = map_frames(measure_one, _paths(folder), runner=Runner(workers=2))
    # capture order = the DATE-OBS we wrote, which is the reverse of the name order
    assert [o.path for o in two.done] == [t["file"] for t in truths]
    assert [o.value.hfr_px for o in two.done] == [o.value.hfr_px for o in one.done]
    assert [o.value.n_stars for o in two.done] == [o.value.n_stars for o in one.done]
    for o, t in zip(two.done, truths):
        assert o.value.hfr_px == pytest.approx(t["hfr_px"], rel=0.08)
    # the truncated frame is reported and skipped, nothing else is lost
    assert [o.path.name for o in two.bad] == ["L_9999_truncated.fits"]
    assert "truncated" in two.bad[0].problem
    assert not two.lost and two.undone_text() is None


def kill_self_on_poison(path: Path, marker_dir: str) -> int:
    """A per-frame function whose worker process dies on some frames (as after a crash in C).

    ``poison*`` kills every worker that touches it; ``once*`` kills the first one only.
    """
    marker = Path(marker_dir) / (path.name + ".seen")
    if path.name.startswith("poison"):
        os._exit(3)
    if path.name.startswith("once") and not marker.exists():
        marker.write_text("x")
        os._exit(3)
    return path.stat().st_size


def test_a_dead_local_worker_is_retried_then_its_frame_reported(tmp_path):
    names = ["a", "once", "b", "poison", "c", "d", "e"]
    paths = []
    for k, name in enumerate(names):
        p = tmp_path / f"{name}.fits"
        p.write_bytes(b"x" * (k + 1))
        paths.append(p)
    batch = map_frames(kill_self_on_poison, paths, args=(str(tmp_path),), runner=Runner(workers=2, retries=1),
                       order=None)
    assert {o.path.name: o.value for o in batch.done} == {
        f"{n}.fits": k + 1 for k, n in enumerate(names) if n != "poison"}
    assert [o.path.name for o in batch.lost] == ["poison.fits"]
    assert batch.lost[0].attempts == 2 and "worker process died" in batch.lost[0].problem
    assert "1 frame(s) left undone" in batch.undone_text()


def test_session_scan_on_workers_equals_the_one_process_scan(night):
    from focuswatch.render import report

    folder, _ = night
    serial = report.scan_session(folder, progress=False)
    par, batch = scan_session(folder, progress=False, runner=Runner(workers=2))
    assert [s.file for s in par.stats] == [s.file for s in serial.stats]
    assert [s.hfr_px for s in par.stats] == [s.hfr_px for s in serial.stats]
    assert par.usable == serial.usable
    assert [(x.file, x.problem) for x in par.left_out] == [(x.file, x.problem) for x in serial.left_out]


def test_runner_settings_flag_then_environment_then_file():
    cfg = {"workers": 3, "scheduler": "tcp://10.0.0.5:8786"}
    env = {parallel.SCHEDULER_ENV: "tcp://nas:8786"}
    assert Runner.resolve(config=cfg, environ={}).scheduler == "tcp://10.0.0.5:8786"
    assert Runner.resolve(config=cfg, environ=env).scheduler == "tcp://nas:8786"
    assert Runner.resolve(scheduler="tcp://h:1", config=cfg, environ=env).scheduler == "tcp://h:1"
    local = Runner.resolve(workers=2, config=cfg, environ=env)
    assert local.scheduler is None and local.n_workers == 2
    assert Runner.resolve(config={"workers": 3}, environ={}).n_workers == 3
    assert Runner.resolve(environ={}).n_workers == parallel.available_cores()
    with pytest.raises(ConfigError, match="workers"):
        Runner.resolve(workers=0, environ={})
    with pytest.raises(ConfigError, match=r"\[scale\] scheduler"):
        Runner.resolve(config={"scheduler": "10.0.0.5"}, environ={})
    with pytest.raises(ConfigError, match=r"\[scale\] worker"):
        Runner.resolve(config={"worker": 2}, environ={})


def test_measure_command_on_two_workers_json_in_capture_order(night, capsys):
    from focuswatch.cli import main

    folder, truths = night
    rc = main(["measure", str(folder), "--workers", "2", "--json"])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 1  # the truncated frame
    assert [r["file"] for r in rows if "hfr_px" in r] == [str(t["file"]) for t in truths]
    bad = [r for r in rows if "hfr_px" not in r]
    assert len(bad) == 1 and bad[0]["file"].endswith("L_9999_truncated.fits")
    assert "L_9999_truncated.fits" in err and "1 of 7 frames" in err


def test_scale_section_in_the_toml_file_is_used(night, tmp_path, capsys, monkeypatch):
    from focuswatch.cli import main

    monkeypatch.delenv(parallel.SCHEDULER_ENV, raising=False)
    folder, _ = night
    toml = tmp_path / "fw.toml"
    toml.write_text('[scale]\nscheduler = "tcp://127.0.0.1:9"\nconnect_timeout_s = 1.0\n', encoding="utf-8")
    rc = main(["measure", str(folder / "L_0001.fits"), "--config", str(toml)])
    err = capsys.readouterr().err
    assert rc == 1 and "scheduler tcp://127.0.0.1:9: cannot connect" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- Dask

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    """A real scheduler and two worker processes on 127.0.0.1 (a worker that dies is not retried
    elsewhere more than once, to keep the test short)."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                          "distributed.worker.daemon": False}):
        lc = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                      dashboard_address=None)
        try:
            yield lc
        finally:
            lc.close()


def test_dask_cluster_gives_the_local_numbers(night, cluster):
    folder, truths = night
    local = map_frames(measure_one, _paths(folder), runner=Runner(workers=1))
    remote = map_frames(measure_one, _paths(folder), runner=Runner(scheduler=cluster.scheduler_address))
    assert [o.path for o in remote.done] == [t["file"] for t in truths]
    assert [o.value.hfr_px for o in remote.done] == [o.value.hfr_px for o in local.done]
    assert [o.value.fwhm_px for o in remote.done] == [o.value.fwhm_px for o in local.done]
    assert [o.path.name for o in remote.bad] == ["L_9999_truncated.fits"]


def test_dask_worker_death_reports_the_frame_and_keeps_the_rest(tmp_path, cluster):
    paths = []
    for k, name in enumerate(["a", "b", "poison", "c"]):
        p = tmp_path / f"{name}.fits"
        p.write_bytes(b"x" * (k + 1))
        paths.append(p)
    batch = map_frames(kill_self_on_poison, paths, args=(str(tmp_path),),
                       runner=Runner(scheduler=cluster.scheduler_address), order=None)
    assert sorted(o.path.name for o in batch.done) == ["a.fits", "b.fits", "c.fits"], batch.lost + batch.bad
    assert [o.path.name for o in batch.lost] == ["poison.fits"]
    assert "died" in batch.lost[0].problem


def slow_size(path: Path, delay_s: float) -> int:
    time.sleep(delay_s)
    return path.stat().st_size


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_scheduler_that_goes_away_leaves_the_rest_reported_not_lost_silently(tmp_path):
    """`dask scheduler` and `dask worker` as real processes; the scheduler is killed mid-run."""
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent)] + sys.path)}
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(sched_file)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    worker = None
    try:
        for _ in range(300):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        paths = []
        for k in range(8):
            p = tmp_path / f"f{k}.fits"
            p.write_bytes(b"x" * (k + 1))
            paths.append(p)
        runner = Runner(scheduler=address, connect_timeout_s=30.0, lost_after_s=1.0)
        seen = []
        for o in parallel.iter_frames(slow_size, paths, args=(0.4,), runner=runner):
            seen.append(o)
            if len(seen) == 2:
                sched.send_signal(signal.SIGKILL)
        by_status = {s: [o for o in seen if o.status == s] for s in ("ok", "bad", "lost")}
        assert len(seen) == len(paths) and len({o.index for o in seen}) == len(paths)
        assert len(by_status["ok"]) >= 2 and by_status["lost"]
        assert all(o.value == o.path.stat().st_size for o in by_status["ok"])
        assert any("went away" in o.problem or "dropped" in o.problem or "lost" in o.problem
                   for o in by_status["lost"])
    finally:
        for pr in (worker, sched):
            if pr is not None and pr.poll() is None:
                pr.kill()
                pr.wait(timeout=10)


def test_archive_index_on_the_cluster_equals_the_local_index(night, cluster, tmp_path):
    from focuswatch.scale import archive

    folder, truths = night
    rows = {}
    for name, runner in (("local", Runner(workers=1)), ("dask", Runner(scheduler=cluster.scheduler_address))):
        with archive.ArchiveIndex(tmp_path / f"{name}.sqlite") as index:
            run = archive.update_index(folder, index, runner=runner)
            assert run.n_measured == N_FRAMES and run.n_bad == 1 and run.n_lost == 0
            rows[name] = {r["path"]: r["hfr_px"] for r in index.rows(folder, status="measured")}
    assert rows["dask"] == rows["local"] and len(rows["local"]) == N_FRAMES
