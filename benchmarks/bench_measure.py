"""Speed and memory of load + measure on full-size frames (prints figures; not a test).

    python benchmarks/bench_measure.py [--repeat 3] [--only IMX571]

For an IMX455 (9576x6388) and an IMX571 (6248x4176) uint16 frame with ~3000 stars it prints
seconds per frame for load + measure, peak memory (tracemalloc, numpy buffers included) and,
in the same run, the ratio to a plain sep pipeline (Background + extract + flux_radius over
the whole frame) and to just loading the file.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from focuswatch import frames, sim, stars
from focuswatch.optics import Rig

SENSORS = {"IMX455": (9576, 6388), "IMX571": (6248, 4176)}


def plain_sep(img: np.ndarray) -> int:
    """What a straightforward sep script does: full-frame background, extract, flux_radius."""
    import sep

    sep.set_extract_pixstack(5_000_000)
    sep.set_sub_object_limit(4096)
    bkg = sep.Background(img)
    sub = img - bkg
    objs = sep.extract(sub, 5.0, err=bkg.globalrms, minarea=5)
    r, _ = sep.flux_radius(sub, objs["x"], objs["y"], 6.0 * objs["a"], 0.5, normflux=objs["flux"], subpix=5)
    return len(r)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def peak_mb(fn) -> float:
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=sorted(SENSORS))
    ap.add_argument("--stars", type=int, default=3000)
    args = ap.parse_args(argv)
    rig = Rig(aperture_mm=106, focal_length_mm=530, pixel_um=3.76)
    print(f"cores available: {os.cpu_count()}, python {sys.version.split()[0]}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (w, h) in SENSORS.items():
            if args.only and name != args.only:
                continue
            t0 = time.perf_counter()
            sf = sim.render(sim.SimParams(width_px=w, height_px=h, n_stars=args.stars, seed=1, rig=rig,
                                          seeing_fwhm_arcsec=2.8))
            t_render = time.perf_counter() - t0
            path = Path(tmp) / f"{name}.fits"
            sim.write_fits(path, sf)
            size_mb = path.stat().st_size / 1e6
            t_load, fr = timed(lambda: frames.load(path), args.repeat)
            t_meas_only, st = timed(lambda: stars.measure(fr), args.repeat)
            t_total, _ = timed(lambda: stars.measure(frames.load(path)), args.repeat)
            t_sep, n_sep = timed(lambda: plain_sep(fr.pixels), args.repeat)
            mem = peak_mb(lambda: stars.measure(frames.load(path)))
            print(f"\n{name} {w}x{h}, {args.stars} stars rendered in {t_render:.1f} s, file {size_mb:.0f} MB")
            print(f"  load only                {t_load:6.3f} s")
            print(f"  measure only             {t_meas_only:6.3f} s   ({st.n_stars} stars measured, "
                  f"{st.n_detected} detected, HFR {st.hfr_px:.3f} px vs truth {sf.truth['hfr_px']:.3f})")
            print(f"  load + measure           {t_total:6.3f} s   = {t_total / t_load:.1f}x loading the file")
            print(f"  plain sep pipeline       {t_sep:6.3f} s   ({n_sep} objects; on pixels already loaded)")
            print(f"  ratio measure / plain sep {t_meas_only / t_sep:5.2f}")
            print(f"  peak memory load+measure {mem:7.0f} MB = {mem / size_mb:.1f}x the file size")
            del fr, st, sf
    return 0


if __name__ == "__main__":
    sys.exit(main())
