"""Throughput on several workers, memory per worker, a Dask cluster, and ASTAP side by side.

    PYTHONPATH=plugin python benchmarks/bench_parallel.py [--frames 12] [--sensor IMX571] [--no-dask]

Prints each figure beside its target (issue 12), all ratios measured in the same run:

- throughput over a folder of 12 IMX571 frames, 2 local workers against 1: target >= 1.6x;
- peak memory of one worker's load + measure (tracemalloc, numpy buffers included) against
  the file size: target <= 3x;
- the same frames on a Dask LocalCluster (2 worker processes on 127.0.0.1) against local;
- ASTAP's command line (``astap_cli -f FILE -analyse 10``), when installed: seconds per frame
  and HFD_MEDIAN / 2 against the simulator's truth, beside focuswatch's HFR.

Frames come from :mod:`focuswatch.sim` (one render, written with per-frame headers: the pixels
are the same, which is fine for speed). Not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

from focuswatch import sim
from focuswatch.scale.batch import measure_one
from focuswatch.optics import Rig
from focuswatch.scale.parallel import Runner, available_cores, map_frames

SENSORS = {"IMX455": (9576, 6388), "IMX571": (6248, 4176)}


def measure_peak(path: Path) -> tuple[float, float]:
    """Run in a worker: (HFR, peak traced bytes of load + measure)."""
    tracemalloc.start()
    st = measure_one(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return st.hfr_px, float(peak)


def write_frames(folder: Path, n: int, sensor: str, n_stars: int) -> tuple[list[Path], dict]:
    w, h = SENSORS[sensor]
    rig = Rig(aperture_mm=106, focal_length_mm=530, pixel_um=3.76)
    t0 = time.perf_counter()
    base = sim.SimParams(width_px=w, height_px=h, n_stars=n_stars, seed=1, rig=rig, seeing_fwhm_arcsec=2.8)
    frame = sim.render(base)
    print(f"rendered one {sensor} {w}x{h} frame with {n_stars} stars in {time.perf_counter() - t0:.1f} s")
    start = datetime(2026, 11, 21, 22, 0, 0)
    paths = []
    for i in range(n):
        p = sim.SimParams(**{**base.__dict__, "frame_nr": i + 1,
                             "date_obs": (start + timedelta(seconds=130 * i)).isoformat(timespec="seconds")})
        paths.append(sim.write_fits(folder / f"{sensor}_{i + 1:03d}.fits",
                                    sim.SimFrame(frame.pixels, sim.fits_header(p), frame.truth, p)))
    return paths, frame.truth


def run_astap(paths: list[Path], truth: dict) -> None:
    exe = shutil.which("astap_cli")
    if not exe:
        print("ASTAP: astap_cli not found (apt-get install astap-cli); skipped")
        return
    times, hfds, stars = [], [], []
    with tempfile.TemporaryDirectory() as tmp:  # ASTAP may write next to its input: give it copies
        for p in paths[:4]:
            q = Path(tmp) / p.name
            shutil.copy(p, q)
            t0 = time.perf_counter()
            r = subprocess.run([exe, "-f", str(q), "-analyse", "10"], capture_output=True, text=True, timeout=600)
            times.append(time.perf_counter() - t0)
            text = r.stdout + r.stderr
            m = re.search(r"HFD_MEDIAN=([0-9.]+)", text)
            s = re.search(r"STARS=([0-9]+)", text)
            if m:
                hfds.append(float(m.group(1)))
            if s:
                stars.append(int(s.group(1)))
            if not m:
                print(f"ASTAP output not understood (exit {r.returncode}): {text.strip()[:200]}")
    if hfds:
        hfd = statistics.median(hfds)
        print(f"ASTAP -analyse 10          {statistics.median(times):6.2f} s/frame (whole process), "
              f"HFD_MEDIAN {hfd:.3f} px -> HFR {hfd / 2:.3f} px, {statistics.median(stars) if stars else '?'} stars")
        print(f"  vs truth: flux-weighted HFR {truth['hfr_nina_px']:.3f} px (error {hfd / 2 - truth['hfr_nina_px']:+.3f}), "
              f"true HFR {truth['hfr_px']:.3f} px (error {hfd / 2 - truth['hfr_px']:+.3f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--sensor", choices=sorted(SENSORS), default="IMX571")
    ap.add_argument("--stars", type=int, default=3000)
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating rounds of 1 and 2 workers (the medians are printed)")
    args = ap.parse_args(argv)
    print(f"cores available: {available_cores()}, python {sys.version.split()[0]}; load average "
          f"{getattr(os, 'getloadavg', lambda: (float('nan'),))()[0]:.1f} (other work on this machine makes timings noisy; ratios are same-run)")
    with tempfile.TemporaryDirectory() as tmp:
        paths, truth = write_frames(Path(tmp), args.frames, args.sensor, args.stars)
        size_mb = paths[0].stat().st_size / 1e6
        runs: dict[int, list[float]] = {1: [], 2: []}
        results = {}
        for r in range(max(1, args.rounds)):  # alternate: the load of a shared machine drifts
            for w in (1, 2):
                t0 = time.perf_counter()
                b = map_frames(measure_peak, paths, runner=Runner(workers=w))
                runs[w].append(time.perf_counter() - t0)
                results[w] = b
                print(f"round {r + 1}: {w} worker(s): {len(b.done)} frames in {runs[w][-1]:6.2f} s = "
                      f"{len(b.done) / runs[w][-1]:.2f} frames/s")
        times = {w: statistics.median(v) for w, v in runs.items()}
        ratio = times[1] / times[2]
        print(f"throughput 2 workers vs 1   {ratio:5.2f}x   (target >= 1.6x)  {'OK' if ratio >= 1.6 else 'MISSED'}; "
              f"medians of {len(runs[1])} alternating rounds, round by round "
              f"{', '.join(f'{a / b:.2f}' for a, b in zip(runs[1], runs[2]))}")
        same = [o.value[0] for o in results[1].done] == [o.value[0] for o in results[2].done]
        print(f"same HFR with 1 and 2 workers: {same}; HFR {results[1].done[0].value[0]:.3f} px vs truth "
              f"{truth['hfr_px']:.3f} px")
        peak_mb = max(o.value[1] for o in results[2].done) / 1e6
        print(f"peak memory per worker      {peak_mb:6.0f} MB = {peak_mb / size_mb:.2f}x the {size_mb:.0f} MB file "
              f"(target <= 3x)  {'OK' if peak_mb / size_mb <= 3 else 'MISSED'}")
        if not args.no_dask:
            try:
                import distributed
            except ImportError:
                print("Dask: not installed (pip install \"focuswatch[dask]\"); skipped")
            else:
                with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                              dashboard_address=None) as lc:
                    map_frames(measure_one, paths[:2], runner=Runner(scheduler=lc.scheduler_address))  # warm up
                    t0 = time.perf_counter()
                    b = map_frames(measure_one, paths, runner=Runner(scheduler=lc.scheduler_address))
                    t = time.perf_counter() - t0
                    print(f"Dask LocalCluster, 2 workers: {t:6.2f} s = {times[1] / t:.2f}x one local worker, "
                          f"{times[2] / t:.2f}x two local workers; same HFR: "
                          f"{[o.value.hfr_px for o in b.done] == [o.value[0] for o in results[1].done]}")
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "focuswatch", "measure", str(paths[0])], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        fw_s = time.perf_counter() - t0
        print(f"focuswatch measure (whole process, 1 frame) {fw_s:6.2f} s")
        run_astap(paths, truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
