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
``stack``
    What stacking does to a star's FWHM, as a function of its size, for mono subs and for
    one-shot-colour subs debayered by Siril's default demosaicing (read from the settings file
    Siril writes: RCD on 1.0.6). GalSim stars (Kolmogorov seeing times the Airy disk of a 50 mm
    f/5 lens, 2.9 um pixels; coloured R 0.8 / G 1 / B 0.6, and grey) on six subs with random
    sub-pixel dithers, written as noisy 16-bit frames like a night's (sky, Poisson and read
    noise, the star fluxes of tests/galsim_truth.py's nights; mosaicked GRBG for colour), are
    registered and stacked by the real Siril exactly as ``grade`` does
    (:func:`focuswatch.siril.stack`), and measured by focuswatch like a master (the green plane
    of a colour one). The registration variance the table is per unit of is read from Siril's
    own matrices, as the grade reads it. For comparison the table also holds the mean of the
    subs brought back by an exact bilinear shift (``*_bilinear_mean_*``): Siril's master is
    wider than that (its star matching is not exact), most on the smallest stars. Noiseless
    float subs (the first version of this table) made RCD sharpen 1-1.5 px stars and gave half
    the growth Siril's stack of a noisy night shows.
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
#: The subs of the stacking table are noisy 16-bit frames like a night's (tests/galsim_truth.bayer_night): sky (ADU),
#: read noise (ADU), star fluxes (log10 ADU). RCD on noiseless float frames sharpened 1-1.5 px stars (green plane
#: 0.84 px for a 1.25 px star) and the table then held half the growth Siril's stack of a real (noisy) night shows.
SKY_ADU, READ_ADU, LOG_FLUX_ADU = 300.0, 5.0, (3.7, 4.9)
#: RCD and friends, in the order of Siril's ``interpolation_method`` enum (settings ``debayer_algo``)
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
    """focuswatch's own FWHM (the figure the grade compares) of a sky-subtracted star field (ADU)."""
    from focuswatch import stars

    noisy = img + np.random.default_rng(0).normal(0.0, 1e-4 * float(img.max()), img.shape) + SKY_ADU
    return float(stars.measure_array(noisy.astype(np.float32)).fwhm_px)


def _siril_stack(wd: Path, debayer: bool, plane: int | None = None) -> tuple[np.ndarray, float | None]:
    """Register and stack ``wd/light_*.fits`` (``wd/cfa/`` when ``debayer``) with the real Siril
    exactly as ``grade`` does (:func:`focuswatch.siril.stack.grading_commands`): the master
    (``plane`` of a colour one) less its sky, in ADU, and the registration variance read from
    Siril's matrices."""
    from astropy.io import fits

    from focuswatch import grade, siril
    from focuswatch.siril.stack import grading_commands

    log = _siril(wd, grading_commands(debayer))
    m = fits.getdata(wd / "master.fits").astype(np.float64)
    if plane is not None and m.ndim == 3:
        m = m[plane]
    if float(np.max(m)) <= 1.5:  # a 32-bit master holds 0..1 for 0..65535
        m = m * 65535.0
    n = len(list(wd.glob("light_0*.fits")))
    var = grade.registration_var_px2(siril.parse_transforms(log.splitlines()), n, m.shape[::-1])
    return m - float(np.median(m)), var


def _noisy(img: np.ndarray, seed: int) -> np.ndarray:
    """A 16-bit sub of ``img`` (ADU): sky, Poisson and read noise, as the nights of tests/galsim_truth.py."""
    rng = np.random.default_rng(seed)
    frame = rng.poisson(np.clip(img + SKY_ADU, 0, None)) + rng.normal(0.0, READ_ADU, img.shape)
    return np.clip(frame, 0, 65535).astype(np.uint16)


def _bilinear_register(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """A frame displaced by (dx, dy) brought back with Siril's interpolation (bilinear, as measured)."""
    return _shift(img, dx, dy, _bilinear)


#: Independent realizations (star places, dithers, noise) averaged per size: one night's master FWHM
#: scatters by ~4 % from one realization to the next on 1.4 px stars.
REALIZATION_SEEDS = (11, 12, 13)


def debayer_and_register(wd: Path) -> dict:
    """The stacking table: :func:`one_realization` for each of :data:`REALIZATION_SEEDS`,
    averaged size by size (the registration variance over every Siril stack)."""
    runs = []
    for seed in REALIZATION_SEEDS:
        sub = wd / f"seed{seed}"
        sub.mkdir(parents=True, exist_ok=True)
        runs.append(one_realization(sub, seed))

    def mean_rows(key: str, colour: str | None = None) -> list[float]:
        rows = [r[colour][key] if colour else r[key] for r in runs]
        return [float(np.mean(v)) for v in zip(*rows)]

    out = {k: mean_rows(k) for k in ("fwhm_true_px", "fwhm_registered_true_px", "fwhm_bilinear_mean_true_px")}
    for colour in COLOURS:
        out[colour] = {k: mean_rows(k, colour) for k in ("fwhm_debayered_px", "fwhm_registered_px",
                                                          "fwhm_bilinear_mean_px")}
    read = [v for r in runs for v in (r["siril_registration_var_px2"] + r["sunlike"]["siril_registration_var_px2"]
                                      + r["grey"]["siril_registration_var_px2"]) if v is not None]
    # the grade reads the variance from Siril's matrices: the table is per unit of that same figure
    out["registration_var_px2"] = float(np.mean(read))
    out["dither_var_px2"] = float(np.mean([r["dither_var_px2"] for r in runs]))
    out["realization_seeds"] = list(REALIZATION_SEEDS)
    for k in ("method", "fwhm_nominal_px", "n_subs", "noise"):
        out[k] = runs[0][k]
    return out


def one_realization(wd: Path, seed: int) -> dict:
    """FWHM of star fields: the subs, Siril's debayer of colour ones, and Siril's registered and
    stacked master of six dithered subs (mono, and debayered colour); see the module docstring."""
    import galsim
    from astropy.io import fits

    import galsim_truth as gt

    scope = gt.Scope(diam_mm=50.0, f_ratio=5.0, pixel_um=2.9, lam_nm=550.0)
    s = scope.scale_arcsec_px
    airy = scope.lam_nm * 1e-9 / (scope.diam_mm * 1e-3) * gt.ARCSEC_PER_RAD
    size, step, R, n_sub = 288, 24, 8, 6
    grid = [(x, y) for y in range(step, size - step + 1, step) for x in range(step, size - step + 1, step)]
    rng = np.random.default_rng(seed)
    phase = rng.uniform(-0.5, 0.5, (len(grid), 2))
    flux = 10 ** rng.uniform(*LOG_FLUX_ADU, len(grid))
    dither = np.vstack([[0.0, 0.0], rng.uniform(0.0, 1.0, (n_sub - 1, 2)) + rng.integers(-3, 4, (n_sub - 1, 2))])
    v_reg = float(np.mean([(t % 1) * (1 - t % 1) for t in dither.ravel()]))
    out: dict = {"fwhm_true_px": [], "fwhm_registered_true_px": [], "fwhm_bilinear_mean_true_px": [],
                 "siril_registration_var_px2": [], "registration_var_px2": v_reg}
    algo = None
    yy, xx = np.indices((size, size))
    for colour, wts in COLOURS.items():
        out[colour] = {"fwhm_debayered_px": [], "fwhm_registered_px": [], "fwhm_bilinear_mean_px": [],
                       "siril_registration_var_px2": []}
    for fwhm in FWHM_NODES:
        seeing = math.sqrt(max((fwhm * s) ** 2 - (1.03 * airy) ** 2, (0.3 * fwhm * s) ** 2))
        prof = galsim.Convolve([galsim.Kolmogorov(fwhm=seeing), galsim.Airy(lam_over_diam=airy)])
        subs = []
        for dx, dy in dither:
            img = np.zeros((size, size))
            for (x, y), (ox, oy), f in zip(grid, phase, flux):
                px, py = x + ox + dx, y + oy + dy
                gt.place(img, gt.draw(prof, scope, 2 * R + 1, dx_px=px - round(px), dy_px=py - round(py)) * f,
                         px, py)
            subs.append(img)
        seeds = [int(1000 * fwhm) + 10 * seed + k for k in range(n_sub)]
        mono = [_noisy(im, sd) for im, sd in zip(subs, seeds)]
        out["fwhm_true_px"].append(_fwhm_px(mono[0].astype(np.float64) - SKY_ADU))
        out["fwhm_bilinear_mean_true_px"].append(_fwhm_px(np.mean(
            [_bilinear_register(im.astype(np.float64) - SKY_ADU, dx, dy) for im, (dx, dy) in zip(mono, dither)],
            axis=0)))
        mono_dir = wd / f"mono_{fwhm:g}"
        mono_dir.mkdir(parents=True, exist_ok=True)
        for k, im in enumerate(mono, 1):
            fits.PrimaryHDU(im).writeto(mono_dir / f"light_{k:05d}.fits", overwrite=True)
        master, var = _siril_stack(mono_dir, debayer=False)
        out["fwhm_registered_true_px"].append(_fwhm_px(master))
        out["siril_registration_var_px2"].append(var)
        for colour, wts in COLOURS.items():
            sub_dir = wd / f"deb_{fwhm:g}_{colour}"
            (sub_dir / "cfa").mkdir(parents=True, exist_ok=True)
            hdr = fits.Header()
            hdr["BAYERPAT"] = "GRBG"
            for k, (img, sd) in enumerate(zip(subs, seeds), 1):
                mosaic = np.zeros_like(img)
                for sy in (0, 1):
                    for sx in (0, 1):
                        site = (yy % 2 == sy) & (xx % 2 == sx)
                        mosaic[site] = (img * wts["RGB".index("GRBG"[2 * sy + sx])])[site]
                fits.PrimaryHDU(_noisy(mosaic, sd), hdr).writeto(sub_dir / "cfa" / f"light_{k:05d}.fits",
                                                                 overwrite=True)
            master, var = _siril_stack(sub_dir, debayer=True, plane=1)
            out[colour]["siril_registration_var_px2"].append(var)
            if algo is None:
                cfg = (sub_dir / "siril-config" / "siril" / "siril.config").read_text(encoding="utf-8",
                                                                                      errors="replace")
                m = re.search(r"debayer_algo\s*=\s*(\d+)", cfg)
                algo = SIRIL_DEBAYER[int(m.group(1))] if m else "unknown"
            greens = []
            for k in range(1, n_sub + 1):
                g = fits.getdata(sub_dir / f"light_{k:05d}.fits")[1].astype(np.float64)
                if float(np.max(g)) <= 1.5:  # a 32-bit frame holds 0..1 for 0..65535
                    g = g * 65535.0
                # Siril keeps the 16-bit values: the sky stays SKY_ADU (checked; wide stars lift the median a little)
                if abs(float(np.median(g)) / SKY_ADU - 1.0) > 0.05:
                    raise RuntimeError(f"Siril changed the green plane's scale: sky {float(np.median(g)):.2f}")
                greens.append((g - SKY_ADU) / wts[1])
            out[colour]["fwhm_debayered_px"].append(_fwhm_px(greens[0]))
            out[colour]["fwhm_bilinear_mean_px"].append(_fwhm_px(np.mean(
                [_bilinear_register(g, dx, dy) for g, (dx, dy) in zip(greens, dither)], axis=0)))
            out[colour]["fwhm_registered_px"].append(_fwhm_px(master / wts[1]))
            print(f"FWHM {fwhm:4.2f} px {colour:8s}: true {out['fwhm_true_px'][-1]:.3f}, debayered "
                  f"{out[colour]['fwhm_debayered_px'][-1]:.3f}, "
                  f"Siril master {out[colour]['fwhm_registered_px'][-1]:.3f} "
                  f"(exact bilinear mean {out[colour]['fwhm_bilinear_mean_px'][-1]:.3f}; mono: Siril master "
                  f"{out['fwhm_registered_true_px'][-1]:.3f}, exact bilinear mean "
                  f"{out['fwhm_bilinear_mean_true_px'][-1]:.3f}); registration variance {var}", flush=True)
    out["dither_var_px2"] = v_reg
    out["method"] = algo
    out["fwhm_nominal_px"] = list(FWHM_NODES)
    out["n_subs"] = n_sub
    out["noise"] = {"sky_adu": SKY_ADU, "read_adu": READ_ADU, "log10_flux_adu": list(LOG_FLUX_ADU), "format": "uint16"}
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
