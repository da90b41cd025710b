"""Measure what Siril's default resampling does to a star, with the real ``siril-cli``.

Writes ``plugin/focuswatch/data/siril_resampling.json``, read by :mod:`focuswatch.grade`
(documented in docs/siril.md, *What stacking does to a star*). Needs ``siril-cli`` and GalSim.
Run from the repository root::

    PYTHONPATH=plugin python scripts/make_siril_resampling.py

Two facts, each measured on the Siril that runs here, never assumed:

``registration``
    Which interpolation ``register`` (global star alignment, as a script runs it) resamples
    the subs with. Frames of Gaussian stars shifted by known sub-pixel amounts are registered
    by Siril; the registered frame is compared with the same frame shifted in numpy by the
    matrix Siril printed, with bilinear, bicubic (Keys, a = -0.75, OpenCV's) and Lanczos-4
    kernels. The kernel that reproduces Siril's pixels (largest difference ~1e-4 of the peak)
    is recorded. A bilinear shift by a fraction ``t`` of a pixel is the two-tap kernel
    ``(1 - t, t)``, whose variance is ``t (1 - t)`` per axis: 1/6 px^2 on average over random
    sub-pixel shifts.
``debayer``
    The per-axis variance (px^2) Siril's default demosaicing (read from the settings file
    Siril writes: RCD on 1.0.6) adds to the green plane of a star, as a function of the
    star's FWHM. Noiseless GalSim stars (Kolmogorov seeing times the Airy disk of a 50 mm
    f/5 lens, 2.9 um pixels, coloured R 0.8 / G 1 / B 0.6 and also grey) at random
    sub-pixel places are mosaicked (GRBG) and debayered by ``convert -debayer``; the green
    plane's second moments are compared with those of the true green plane, star by star.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugin"))
sys.path.insert(0, str(ROOT / "tests"))

OUT = ROOT / "plugin" / "focuswatch" / "data" / "siril_resampling.json"
FWHM_NODES = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
COLOURS = {"sunlike": (0.8, 1.0, 0.6), "grey": (1.0, 1.0, 1.0)}
#: RCD and friends, in the order of Siril's ``interpolation_method`` enum (settings ``debayer_algo``)
SKY = 0.01
SIRIL_DEBAYER = ("bilinear", "VNG", "AHD", "AMaZE", "DCB", "HPHD", "IGV", "LMMSE", "RCD", "super pixel", "X-Trans")


def _siril(wd: Path, commands: list[str]) -> str:
    (wd / "run.ssf").write_text("requires 1.0.0\n" + "\n".join(commands) + "\n", encoding="utf-8")
    env = dict(os.environ, XDG_CONFIG_HOME=str(wd / "siril-config"), LC_ALL="C")
    res = subprocess.run(["siril-cli", "-d", str(wd), "-s", str(wd / "run.ssf")], capture_output=True, text=True,
                         env=env, timeout=600, check=False)
    if res.returncode != 0:
        raise RuntimeError(res.stdout[-2000:] + res.stderr[-2000:])
    return res.stdout


def _shift(img: np.ndarray, tx: float, ty: float, kernel) -> np.ndarray:
    """``out(x, y) = img(x + tx, y + ty)`` with a separable interpolation kernel (wrapping)."""
    def one(a, t, axis):
        i, f = int(math.floor(t)), t - math.floor(t)
        return sum(w * np.roll(a, -(i + j), axis=axis) for j, w in kernel(f).items())
    return one(one(img, tx, 1), ty, 0)


def _bilinear(f):
    return {0: 1 - f, 1: f}


def _bicubic(f, a=-0.75):
    def k(x):
        x = abs(x)
        return ((a + 2) * x ** 3 - (a + 3) * x ** 2 + 1) if x <= 1 else (
            a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a) if x < 2 else 0.0
    return {j: k(f - j) for j in range(-1, 3)}


def _lanczos4(f, n=4):
    def k(x):
        return 1.0 if abs(x) < 1e-12 else (n * math.sin(math.pi * x) * math.sin(math.pi * x / n) / (math.pi * x) ** 2
                                           if abs(x) < n else 0.0)
    w = {j: k(f - j) for j in range(-n + 1, n + 1)}
    s = sum(w.values())
    return {j: v / s for j, v in w.items()}


def registration_kernel(wd: Path) -> dict:
    from astropy.io import fits

    rng = np.random.default_rng(5)
    n = 200
    xy = rng.uniform(15, n - 15, (40, 2))
    flux = 10 ** rng.uniform(3.5, 4.5, 40)
    yy, xx = np.indices((n, n))

    def frame(dx, dy, sig=1.3):
        img = np.full((n, n), 100.0)
        for (x, y), f in zip(xy, flux):
            img += f * np.exp(-((xx - x - dx) ** 2 + (yy - y - dy) ** 2) / (2 * sig ** 2)) / (2 * math.pi * sig ** 2)
        return img / 65535.0

    shifts = [(0.0, 0.0), (0.5, 0.5), (0.25, 0.0), (3.5, -2.5), (0.3, 0.7)]
    for i, (dx, dy) in enumerate(shifts, 1):
        fits.PrimaryHDU(frame(dx, dy).astype(np.float32)).writeto(wd / f"light_{i:05d}.fits", overwrite=True)
    out = _siril(wd, ["setext fits", "set32bits", "setcompress 0", "setcpu 1", "setref light_ 1", "register light_"])
    mats = {int(m[-1]): m[:-1] for m in re.findall(
        r"Transformation Matrix:\s*\n\s*(\S+)\s+(\S+)\s+(\S+)\s*\n\s*(\S+)\s+(\S+)\s+(\S+)\s*\n.*\n"
        r".*Matching stars in image (\d+)", out)}
    if sorted(mats) != list(range(2, len(shifts) + 1)):
        raise RuntimeError(f"expected a transformation matrix for images 2-{len(shifts)} in Siril's log, found {sorted(mats)}")
    worst = {"bilinear": 0.0, "bicubic": 0.0, "lanczos4": 0.0}
    inner = (slice(20, -20), slice(20, -20))
    for k, m in sorted(mats.items()):
        tx, ty = -float(m[2]), float(m[5])  # Siril's y axis runs bottom-up
        src = fits.getdata(wd / f"light_{k:05d}.fits").astype(np.float64)
        reg = fits.getdata(wd / f"r_light_{k:05d}.fits").astype(np.float64)
        peak = float(src.max() - np.median(src))
        scale = float(np.median(src) / np.median(reg))  # Siril may write another scale
        for name, kern in (("bilinear", _bilinear), ("bicubic", _bicubic), ("lanczos4", _lanczos4)):
            diff = np.abs(reg * scale - _shift(src, tx, ty, kern))[inner].max() / peak
            worst[name] = max(worst[name], float(diff))
    best = min(worst, key=worst.get)
    return {"interpolation": best, "max_difference_over_peak": worst,
            "mean_var_px2_random_shift": {"bilinear": 1.0 / 6.0}.get(best)}


def _fwhm_px(img: np.ndarray) -> float:
    """focuswatch's own FWHM (the figure the grade compares) of a noiseless star field."""
    from focuswatch import stars

    noisy = img + np.random.default_rng(0).normal(0.0, 1e-4 * float(img.max()), img.shape) + 0.01
    return float(stars.measure_array(noisy.astype(np.float32)).fwhm_px)


def _bilinear_register(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """A frame displaced by (dx, dy) brought back with Siril's interpolation (bilinear, as measured)."""
    return _shift(img, dx, dy, _bilinear)


def debayer_and_register(wd: Path) -> dict:
    """FWHM of star fields: true green plane, after Siril's debayer, and after registration
    (bilinear, random sub-pixel dithers) of several debayered subs, mean-stacked."""
    import galsim
    from astropy.io import fits

    import galsim_truth as gt

    scope = gt.Scope(diam_mm=50.0, f_ratio=5.0, pixel_um=2.9, lam_nm=550.0)
    s = scope.scale_arcsec_px
    airy = scope.lam_nm * 1e-9 / (scope.diam_mm * 1e-3) * gt.ARCSEC_PER_RAD
    size, step, R, n_sub = 288, 24, 8, 6
    grid = [(x, y) for y in range(step, size - step + 1, step) for x in range(step, size - step + 1, step)]
    rng = np.random.default_rng(11)
    phase = rng.uniform(-0.5, 0.5, (len(grid), 2))
    dither = np.vstack([[0.0, 0.0], rng.uniform(0.0, 1.0, (n_sub - 1, 2)) + rng.integers(-3, 4, (n_sub - 1, 2))])
    v_reg = float(np.mean([(t % 1) * (1 - t % 1) for t in dither.ravel()]))
    out: dict = {"fwhm_true_px": [], "fwhm_registered_true_px": [], "registration_var_px2": v_reg}
    algo = None
    yy, xx = np.indices((size, size))
    for colour, wts in COLOURS.items():
        out[colour] = {"fwhm_debayered_px": [], "fwhm_registered_px": []}
    for fwhm in FWHM_NODES:
        seeing = math.sqrt(max((fwhm * s) ** 2 - (1.03 * airy) ** 2, (0.3 * fwhm * s) ** 2))
        prof = galsim.Convolve([galsim.Kolmogorov(fwhm=seeing), galsim.Airy(lam_over_diam=airy)])
        subs = []
        for dx, dy in dither:
            img = np.zeros((size, size))
            for (x, y), (ox, oy) in zip(grid, phase):
                px, py = x + ox + dx, y + oy + dy
                gt.place(img, gt.draw(prof, scope, 2 * R + 1, dx_px=px - round(px), dy_px=py - round(py)) * 0.05,
                         px, py)
            subs.append(img)
        out["fwhm_true_px"].append(_fwhm_px(subs[0]))
        out["fwhm_registered_true_px"].append(_fwhm_px(np.mean(
            [_bilinear_register(im, dx, dy) for im, (dx, dy) in zip(subs, dither)], axis=0)))
        for colour, wts in COLOURS.items():
            sub_dir = wd / f"deb_{fwhm:g}_{colour}"
            (sub_dir / "cfa").mkdir(parents=True, exist_ok=True)
            hdr = fits.Header()
            hdr["BAYERPAT"] = "GRBG"
            for k, img in enumerate(subs, 1):
                mosaic = np.zeros_like(img)
                for sy in (0, 1):
                    for sx in (0, 1):
                        site = (yy % 2 == sy) & (xx % 2 == sx)
                        mosaic[site] = (img * wts["RGB".index("GRBG"[2 * sy + sx])])[site]
                fits.PrimaryHDU((mosaic + SKY).astype(np.float32), hdr).writeto(sub_dir / "cfa" / f"light_{k:05d}.fits",
                                                                               overwrite=True)
            _siril(sub_dir, ["setext fits", "set32bits", "setcompress 0", "cd cfa", "convert light -debayer -out=..",
                             "cd .."])
            if algo is None:
                cfg = (sub_dir / "siril-config" / "siril" / "siril.config").read_text(encoding="utf-8",
                                                                                      errors="replace")
                m = re.search(r"debayer_algo\s*=\s*(\d+)", cfg)
                algo = SIRIL_DEBAYER[int(m.group(1))] if m else "unknown"
            greens = []
            for k in range(1, n_sub + 1):
                g = fits.getdata(sub_dir / f"light_{k:05d}.fits")[1].astype(np.float64)
                # Siril keeps a 32-bit float frame's values: the sky stays SKY (checked)
                if abs(float(np.median(g)) / SKY - 1.0) > 0.02:
                    raise RuntimeError(f"Siril changed the green plane's scale: sky {float(np.median(g)):.5f}")
                greens.append((g - SKY) / wts[1])
            out[colour]["fwhm_debayered_px"].append(_fwhm_px(greens[0]))
            out[colour]["fwhm_registered_px"].append(_fwhm_px(np.mean(
                [_bilinear_register(g, dx, dy) for g, (dx, dy) in zip(greens, dither)], axis=0)))
            print(f"FWHM {fwhm:4.2f} px {colour:8s}: true {out['fwhm_true_px'][-1]:.3f}, debayered "
                  f"{out[colour]['fwhm_debayered_px'][-1]:.3f}, registered {out[colour]['fwhm_registered_px'][-1]:.3f} "
                  f"(mono registered {out['fwhm_registered_true_px'][-1]:.3f})", flush=True)
    out["method"] = algo
    out["fwhm_nominal_px"] = list(FWHM_NODES)
    out["n_subs"] = n_sub
    return out


def main() -> None:
    version = subprocess.run(["siril-cli", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="fw-siril-resampling-") as tmp:
        reg_dir = Path(tmp) / "register"
        reg_dir.mkdir()
        reg = registration_kernel(reg_dir)
        print("registration:", reg, flush=True)
        deb = debayer_and_register(Path(tmp))
    data = {"schema": 1, "siril_version": version,
            "provenance": {"script": "scripts/make_siril_resampling.py",
                           "made_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
            "registration": reg, "stack": deb}
    OUT.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
