"""Star sizes on physical optics and real frames: focuswatch beside a plain sep pipeline and ASTAP.

Run from the repository root::

    PYTHONPATH=plugin:tests python benchmarks/bench_realsky_measure.py

Sets
----
* GalSim donuts: 200 mm f/5 Newtonian, 3.76 um pixels, obstruction 0.2-0.45, 3 or 4 spider
  vanes, 200-1000 um of defocus, Kolmogorov seeing 2"; 14 donuts on a frame. Truth: GalSim's
  half-light radius of the profile (``tests/galsim_truth.py``).
* GalSim small in-focus stars: FWHM 1.5-6 px, 3.76 um and 9 um pixels, 30 stars a frame.
* The real Atik 383L single-star focus run (``fixtures/real/atik_star_focus``): per frame,
  and which frame is the best focus (the PROVENANCE says 11-12).

Peers
-----
* plain sep, as its documentation shows it: ``sep.Background``, ``sep.extract(data - bkg, 4,
  err=bkg.globalrms)``, ``sep.flux_radius(..., 6 * a, 0.5, normflux=flux, subpix=5)``; the
  median over all detections.
* ASTAP (``astap_cli -f FILE -analyse 10``) where installed: its HFD_MEDIAN / 2 (ASTAP's HFD is
  a diameter). Skipped when ``astap_cli`` is not on PATH.

Printed: one table per set with each tool's median HFR (px) and its error against the truth,
and the number of detections (a donut split into arcs shows as many detections).
"""
from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "plugin"))

import galsim  # noqa: E402

import galsim_truth as gt  # noqa: E402
from focuswatch import stars  # noqa: E402
from focuswatch.io import frames  # noqa: E402


def plain_sep(img: np.ndarray) -> tuple[float | None, int]:
    """Median flux radius and detection count from sep used as its docs show."""
    import sep

    data = np.ascontiguousarray(img, dtype=np.float64)
    bkg = sep.Background(data)
    sub = data - bkg.back()
    objs = sep.extract(sub, 4.0, err=bkg.globalrms)
    if len(objs) == 0:
        return None, 0
    r, flag = sep.flux_radius(sub, objs["x"], objs["y"], 6.0 * objs["a"], 0.5, normflux=objs["flux"], subpix=5)
    ok = np.isfinite(r) & (r > 0)
    return (float(np.median(r[ok])) if ok.any() else None), int(len(objs))


def astap(img: np.ndarray) -> tuple[float | None, int | None]:
    """ASTAP's median HFD / 2 and star count, or (None, None) when ASTAP is not installed."""
    exe = shutil.which("astap_cli")
    if not exe:
        return None, None
    from astropy.io import fits

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "frame.fits"
        data = np.clip(img, 0, 65535).astype(np.uint16)
        fits.PrimaryHDU(data).writeto(p)
        try:
            out = subprocess.run([exe, "-f", str(p), "-analyse", "10"], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return None, None
    vals = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    try:
        hfd = float(vals.get("HFD_MEDIAN", "nan"))
        n = int(float(vals.get("STARS", "0")))
    except ValueError:
        return None, None
    return (hfd / 2.0 if math.isfinite(hfd) and hfd > 0 else None), n


def _err(v: float | None, truth: float) -> str:
    return "     —" if v is None else f"{100 * (v / truth - 1):+6.1f}%"


def _v(v: float | None) -> str:
    return "    —" if v is None else f"{v:5.2f}"


def donuts() -> None:
    scope = gt.Scope()
    print("\nGalSim donuts (200 mm f/5, 3.76 um px, seeing 2\", 14 donuts): median HFR px and error vs truth")
    print(f"{'obstr':>5} {'defoc um':>8} {'vanes':>5} {'truth':>6} | {'ours':>5} {'err':>7} {'n':>4} {'ring':>5} | "
          f"{'sep':>5} {'err':>7} {'n':>5} | {'ASTAP':>5} {'err':>7} {'n':>4} | {'ours s':>6}")
    for obs, d, ns in [(0.20, 200, 3), (0.33, 400, 3), (0.45, 300, 4), (0.33, 700, 4), (0.40, 600, 4),
                       (0.45, 1000, 4), (0.20, 1000, 3)]:
        prof = gt.psf(scope, obscuration=obs, defocus_um=d, nstruts=ns, strut_thick=0.03, seeing_fwhm_arcsec=2.0,
                      strut_angle_deg=17.0)
        blur = d / scope.f_ratio / scope.pixel_um
        stamp = gt.draw(prof, scope, int(blur * 1.3 + 24) | 1)
        stamp /= stamp.sum()
        truth = gt.true_hlr_px_intrinsic(prof, scope)
        img, _ = gt.scatter(stamp, 14, 640 if blur > 30 else 400, seed=int(d), min_sep=blur * 1.25 + 10,
                            margin=blur / 2 + 6)
        t0 = time.perf_counter()
        st = stars.measure_array(img)
        dt = time.perf_counter() - t0
        s_hfr, s_n = plain_sep(img)
        a_hfr, a_n = astap(img)
        ring = f"{st.ring_ratio:5.2f}" if st.ring_ratio is not None else "    —"
        print(f"{obs:5.2f} {d:8.0f} {ns:5d} {truth:6.2f} | {_v(st.hfr_px)} {_err(st.hfr_px, truth)} "
              f"{st.n_detected:4d} {ring} | {_v(s_hfr)} {_err(s_hfr, truth)} {s_n:5d} | {_v(a_hfr)} "
              f"{_err(a_hfr, truth)} {a_n if a_n is not None else '—':>4} | {dt:6.2f}")


def small_stars() -> None:
    print("\nGalSim small in-focus stars (obstruction 0.33, Kolmogorov, 30 stars): median HFR px vs truth")
    print(f"{'pix um':>6} {'FWHM px':>7} {'vanes':>5} {'truth':>6} | {'ours':>5} {'err':>7} | {'sep':>5} {'err':>7} | "
          f"{'ASTAP':>5} {'err':>7}")
    for pix, fw, ns in [(3.76, 1.5, 0), (3.76, 2.5, 4), (3.76, 4.0, 4), (3.76, 6.0, 4), (9.0, 1.5, 0), (9.0, 2.5, 4),
                        (9.0, 4.0, 4)]:
        scope = gt.Scope(pixel_um=pix)
        prof = gt.psf(scope, obscuration=0.33, nstruts=ns, seeing_fwhm_arcsec=fw * scope.scale_arcsec_px)
        truth = gt.true_hlr_px_intrinsic(prof, scope)
        img = gt.small_star_field(prof, scope, seed=int(fw * 10 + pix))
        st = stars.measure_array(img)
        s_hfr, _ = plain_sep(img)
        a_hfr, _ = astap(img)
        print(f"{pix:6.2f} {fw:7.1f} {ns:5d} {truth:6.3f} | {_v(st.hfr_px)} {_err(st.hfr_px, truth)} | {_v(s_hfr)} "
              f"{_err(s_hfr, truth)} | {_v(a_hfr)} {_err(a_hfr, truth)}")


def bayer_shapes() -> None:
    print("\nUndersampled colour (50 mm f/5, 2.9 um, Bayer GRBG, 50 stars): eccentricity, and whether it may be used")
    print(f"{'FWHM px':>7} {'axis ratio':>10} {'true e':>6} | {'ours e':>6} {'reliable':>8} | {'superpixel e':>12}")
    scope = gt.Scope(pixel_um=2.9, diam_mm=50.0, f_ratio=5.0)
    for fw, q in [(1.2, 1.0), (1.6, 1.0), (2.0, 1.0), (2.5, 1.0), (2.5, 1.5), (4.0, 1.5)]:
        prof = galsim.Kolmogorov(fwhm=fw * scope.scale_arcsec_px)
        if q != 1.0:
            prof = prof.shear(q=1 / q, beta=30 * galsim.degrees)
        img = gt.bayer_field(prof, scope, "GRBG", seed=1)
        st = stars.measure_array(img, {"BAYERPAT": "GRBG"})
        v = img[:256, :256]
        sp = v[0::2, 0::2] + v[0::2, 1::2] + v[1::2, 0::2] + v[1::2, 1::2]  # the old 2x2 superpixels
        st_sp = stars.measure_array(sp)
        true_e = math.sqrt(1 - 1 / q ** 2)
        print(f"{fw:7.1f} {q:10.1f} {true_e:6.2f} | {st.eccentricity:6.2f} {str(st.elongation_reliable):>8} | "
              f"{st_sp.eccentricity:12.2f}")


def atik() -> None:
    folder = ROOT / "fixtures" / "real" / "atik_star_focus"
    ref = [14.84, 12.88, 8.04, 4.84, 4.05, 3.76, 3.34, 2.88, 2.56, 2.37, 2.10, 2.07, 2.70, 4.18, 6.61, 10.11, 13.37]
    print("\nReal Atik 383L single-star run: HFR px per frame (sep flux_radius from the PROVENANCE; ASTAP HFD/2)")
    print(f"{'frame':>5} | {'ours':>5} {'stars':>5} | {'sep':>5} {'ours/sep':>8} | {'ASTAP':>5}")
    ours = []
    for k in range(1, 18):
        f = frames.load(folder / f"STAR_FOCUS_{k}.fits")
        st = stars.measure(f)
        a_hfr, _ = astap(f.pixels)
        ours.append(st.hfr_px if st.hfr_px else float("nan"))
        print(f"{k:5d} | {_v(st.hfr_px)} {st.n_stars:5d} | {ref[k - 1]:5.2f} "
              f"{(st.hfr_px or float('nan')) / ref[k - 1]:8.2f} | {_v(a_hfr)}")
    print(f"lowest HFR: ours frame {int(np.nanargmin(ours)) + 1}, sep frame {int(np.argmin(ref)) + 1} "
          "(PROVENANCE: best focus 11-12)")


if __name__ == "__main__":
    which = set(sys.argv[1:]) or {"donuts", "small", "bayer", "atik"}
    if "donuts" in which:
        donuts()
    if "small" in which:
        small_stars()
    if "bayer" in which:
        bayer_shapes()
    if "atik" in which:
        atik()
