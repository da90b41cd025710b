"""Benchmark: stack and grade 20 IMX571-size subs (6248 x 4176, 16-bit) with the real Siril.

Reports wall time per phase (rendering is excluded from the grade's time), the share spent
inside Siril, and peak memory of focuswatch (this process) and of Siril (children; POSIX only, null on Windows).

    python benchmarks/bench_grade.py [--n 20] [--width 6248 --height 4176] [--stars 1500] [--subs DIR]

The subs are rendered once into a temporary folder (or ``--subs DIR`` reuses a folder of
FITS); expect ~1 GB of FITS for the full size. Results print as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np


def render_subs(folder: Path, n: int, width: int, height: int, n_stars: int) -> float:
    from focuswatch import sim

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    t0 = datetime(2026, 11, 21, 21, 0, 0)
    start = time.perf_counter()
    base = sim.SimParams(width_px=width, height_px=height, n_stars=n_stars, seed=11, seeing_fwhm_arcsec=2.4)
    for i in range(n):
        p = replace(base, frame_nr=i + 1, defocus_um=float(max(0.0, (i - n / 2) * 12.0)),
                    date_obs=(t0 + timedelta(seconds=130 * i)).isoformat(timespec="milliseconds"),
                    dither_x_px=float(rng.uniform(-6, 6)), dither_y_px=float(rng.uniform(-6, 6)))
        sim.write_fits(folder / f"L_{i + 1:04d}.fits", sim.render(p))
        print(f"rendered {i + 1}/{n}", file=sys.stderr, flush=True)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--width", type=int, default=6248)
    ap.add_argument("--height", type=int, default=4176)
    ap.add_argument("--stars", type=int, default=1500)
    ap.add_argument("--subs", metavar="DIR", help="reuse these subs instead of rendering")
    args = ap.parse_args()

    from focuswatch.render import report

    with tempfile.TemporaryDirectory(prefix="fw-bench-grade-") as tmp:
        folder = Path(args.subs) if args.subs else Path(tmp) / "session"
        render_s = 0.0 if args.subs else render_subs(folder, args.n, args.width, args.height, args.stars)
        t = time.perf_counter()
        scan = report.scan_session(folder, progress=False)
        scan_s = time.perf_counter() - t
        t = time.perf_counter()
        g = report.grade_session(folder, scan=scan, progress=False)
        grade_s = time.perf_counter() - t
        try:
            import resource  # POSIX only
        except ImportError:
            self_kb = child_kb = None
        else:
            self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        fg = g.filters[0]
        total = scan_s + grade_s
        out = {
            "n_subs": len(scan.stats), "width_px": args.width, "height_px": args.height,
            "render_s": round(render_s, 1), "measure_subs_s": round(scan_s, 2),
            "stack_grade_s": round(grade_s, 2), "total_s": round(total, 2),
            "siril_s": round(g.siril_s, 2), "siril_share_pct": round(100 * g.siril_s / total, 1),
            "peak_rss_focuswatch_mb": round(self_kb / 1024, 1) if self_kb else None,
            "peak_rss_siril_mb": round(child_kb / 1024, 1) if child_kb else None,
            "letter": fg.grade.letter if fg.grade else None, "ratio": fg.grade.ratio if fg.grade else None,
            "n_stacked": fg.n_stacked, "n_reject": len(fg.grade.reject) if fg.grade else None,
            "siril_version": g.siril_version,
        }
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
