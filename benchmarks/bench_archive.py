"""A 10,000-frame synthetic archive: index it, re-run it, report on it; frames per second printed.

    PYTHONPATH=plugin python benchmarks/bench_archive.py [--frames 10000] [--size 128] [--workers N]

Frames are small simulated subs (a few renders written with per-frame headers: 100 nights
of NINA folders, three filters, focuser positions that follow the temperature, an
autofocus every 20 frames). Prints: time to write the archive, the first indexing run
(frames/s), the second run with nothing new (files/s checked), the report build and its
HTML, and the size of the index. Not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from focuswatch import sim
from focuswatch.scale import archive
from focuswatch.scale import archive_report
from focuswatch.scale.parallel import Runner, available_cores


def _card(key: str, value) -> str:
    if isinstance(value, bool):
        v = f"{'T' if value else 'F':>20}"
    elif isinstance(value, (int, float)):
        v = f"{value!r:>20}" if isinstance(value, int) else f"{value:>20.10G}"
    else:
        v = "'" + str(value).replace("'", "''").ljust(8) + "'"
    return f"{key:<8}= {v}"[:80].ljust(80)


def fits_bytes(pixels, header) -> bytes:
    """A minimal 16-bit FITS file (what NINA writes: int16 + BZERO 32768), without astropy:
    writing 10,000 files through astropy would take longer than indexing them."""
    import numpy as np

    h, w = pixels.shape
    cards = [_card("SIMPLE", True), _card("BITPIX", 16), _card("NAXIS", 2), _card("NAXIS1", w),
             _card("NAXIS2", h), _card("BZERO", 32768), _card("BSCALE", 1)]
    skip = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BZERO", "BSCALE", "EXTEND", "COMMENT", "HISTORY"}
    cards += [_card(k, v) for k, v in header.items() if k not in skip and v is not None and len(k) <= 8]
    cards.append("END".ljust(80))
    text = "".join(cards)
    text += " " * (-len(text) % 2880)
    data = (pixels.astype(np.int32) - 32768).astype(">i2").tobytes()
    return text.encode("ascii") + data + b"\0" * (-len(data) % 2880)


def write_archive(root: Path, n: int, size: int) -> int:
    filters = ("L", "R", "Ha")
    offsets = {"L": 0, "R": -12, "Ha": 40}
    renders = {}
    per_night = 100
    written = 0
    for i in range(n):
        night, k = divmod(i, per_night)
        filt = filters[(k // 34) % 3]
        temp = 12.0 - 0.3 * (night % 30) - 0.05 * k
        af_temp = 12.0 - 0.3 * (night % 30) - 0.05 * (k // 20 * 20)
        best = 10000 - 10 * (temp - 10)
        pos = round(10000 - 10 * (af_temp - 10)) + offsets[filt]
        defocus = round((pos - best - offsets[filt]) * 2.0 / 20.0) * 20.0  # 20 um classes: few renders
        start = datetime(2025, 1, 1, 21, 0) + timedelta(days=night)
        when = start + timedelta(seconds=180 * k)
        p = sim.SimParams(width_px=size, height_px=size, n_stars=20, seed=2, defocus_um=defocus, filter_name=filt,
                          temp_c=temp, focuser_pos=int(pos), exposure_s=180.0, frame_nr=k + 1,
                          date_obs=when.isoformat(timespec="seconds"), object_name=f"T{night % 7}")
        key = (filt, defocus)
        if key not in renders:
            renders[key] = sim.render(p).pixels
        folder = root / start.strftime("%Y-%m-%d") / "LIGHT"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{when:%Y-%m-%d_%H-%M-%S}_{filt}_-10.00_180.00s_{k + 1:04d}.fits"
        (folder / name).write_bytes(fits_bytes(renders[key], sim.fits_header(p)))
        written += 1
    return len(renders)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=128, help="frame width and height, px")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--keep", metavar="DIR", help="write the archive here and keep it")
    args = ap.parse_args(argv)
    runner = Runner(workers=args.workers)
    print(f"cores available: {available_cores()}; {runner.describe()}; load average {getattr(os, 'getloadavg', lambda: (float('nan'),))()[0]:.1f} "
          "(shared machine: timings are noisy)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp) / "archive"
        t0 = time.perf_counter()
        n_renders = write_archive(root, args.frames, args.size)
        size_mb = sum(p.stat().st_size for p in root.rglob("*.fits")) / 1e6
        print(f"wrote {args.frames} frames of {args.size}x{args.size} px ({size_mb:.0f} MB, {n_renders} renders) "
              f"in {time.perf_counter() - t0:.1f} s")
        db = Path(tmp) / "index.sqlite"
        with archive.ArchiveIndex(db) as index:
            run = archive.update_index(root, index, runner=runner)
            print(f"first run: {run.n_measured} measured, {run.n_bad} bad, {run.n_lost} left undone in "
                  f"{run.elapsed_s:.1f} s = {run.frames_per_s:.1f} frames/s")
            run2 = archive.update_index(root, index, runner=runner)
            print(f"second run (nothing new): {run2.n_unchanged} unchanged, {run2.n_measured} measured in "
                  f"{run2.elapsed_s:.2f} s = {run2.n_files / run2.elapsed_s:.0f} files checked/s")
            t0 = time.perf_counter()
            rows = index.rows(root, status="measured")
            rep = archive_report.build(rows, root=str(root))
            t_build = time.perf_counter() - t0
            t0 = time.perf_counter()
            html = archive_report.render_html(rep)
            t_html = time.perf_counter() - t0
        print(f"report: {len(rep.nights)} nights, {len(rep.refocus)} refocus runs, built in {t_build:.2f} s, "
              f"HTML ({len(html) / 1e3:.0f} kB) in {t_html:.2f} s; index {db.stat().st_size / 1e6:.1f} MB")
        for r in rep.rigs:
            if r.tempco_steps_per_c is not None:
                print(f"  temperature coefficient {r.tempco_steps_per_c:+.2f} ± {r.tempco_se_steps_per_c:.2f} steps/°C "
                      f"(truth -10), offsets " + ", ".join(f"{o.filter_name} {o.offset_steps:+.1f}"
                                                           for o in r.filter_offsets) + " (truth R -12, Ha +40)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
