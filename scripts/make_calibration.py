"""Generate focuswatch's focus-versus-seeing calibration tables from physical optics.

Writes ``plugin/focuswatch/data/focus_seeing_calibration.json`` (read by
:mod:`focuswatch.optics` and :mod:`focuswatch.diagnose`; documented in docs/diagnose.md).
Everything comes from :mod:`focuswatch.sim.physical` (obstructed pupil, defocus phase,
Kolmogorov seeing; itself checked against GalSim in tests/test_physoptics.py), plus Moffat
rows as a cross-check profile. Run from the repository root::

    PYTHONPATH=plugin python scripts/make_calibration.py [--quick]

Tables
------
``growth``: half-light radius (in units of lambda N) of Kolmogorov seeing of FWHM
``s * lambda N`` convolved with the diffraction PSF of an obstructed pupil defocused by
``W`` waves (peak, ``W = Delta / (8 N^2 lambda)``), for each obstruction ``eps``.
``growth_geometric``: the seeing-dominated limit (no diffraction): HLR / in-focus HLR of
Kolmogorov seeing convolved with the geometric annulus of diameter ``b`` in-focus HLRs.
``profile``: shape figures of seeing families convolved with defocus, per obstruction, in
units of the seeing FWHM over ``x = blur diameter / seeing FWHM``: ``r50``, ``w`` (r90/r50),
``fit`` (FWHM of the Moffat fit stars.measure makes), ``hm`` (true half-maximum width).
``infocus_profile``: the same four figures for the in-focus star (Kolmogorov seeing over the
obstructed pupil) at every tabulated seeing ``s`` (``s_nodes``), per obstruction: what an
in-focus star of a given size must look like on a given telescope.
``wing_reference``: the dew decision's reference (separate from the focus call's tables): the
in-focus half-light radius (``r50``, in lambda N) and r90/r50 (``w``) of every seeing family of
``WING_FAMILIES`` (Kolmogorov, von Karman outer scales, Moffat beta 2.5-5) over the pupil of
each obstruction, plain and with four spider vanes (``vanes``), at every ``s`` of ``s_nodes``:
the widest wings a star of a given size can have in focus on a given telescope without a halo.

``--pupil-otf`` writes a second file, ``plugin/focuswatch/data/defocus_pupil_otf.json``
(:func:`focuswatch.calibration.pupil_otf`): the radially averaged optical transfer function of
an obstructed circular pupil defocused by ``W`` waves (``W = Delta / (8 N^2 lambda)``, 1 CFZ =
0.61 waves), over the spatial frequency in units of the cutoff ``1 / (lambda N)``, per
obstruction. The diagnosis fits the stacked profile of a frame's stars with it
(:func:`focuswatch.diagnose.profile.fit_stacked_profile`). It is a separate file so that
regenerating it leaves the focus/seeing tables (and every figure measured on them) alone::

    PYTHONPATH=plugin python scripts/make_calibration.py --pupil-otf
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugin"))

from focuswatch.sim import physical as po  # noqa: E402

OUT = ROOT / "plugin" / "focuswatch" / "data" / "focus_seeing_calibration.json"
OTF_OUT = ROOT / "plugin" / "focuswatch" / "data" / "defocus_pupil_otf.json"
#: pupil-OTF table: obstructions (linear interpolation between them), defocus in waves, and the
#: pupil's radius in samples (the frequency step is 1 / (2 * OTF_PUPIL_RADIUS) of the cutoff)
OTF_EPS = tuple(np.round(np.arange(0.0, 0.501, 0.05), 3))
OTF_W = tuple(np.round(np.arange(0.0, 2.001, 0.05), 3))
OTF_PUPIL_RADIUS = 64

EPS = (0.0, 0.15, 0.25, 0.35, 0.45)
#: seeing FWHM / (lambda N): from diffraction-limited (0.1) to seeing-dominated (32); dense
#: enough that the in-focus radius interpolates to ~0.2 % (:func:`focuswatch.calibration.infocus_hlr_lambda_n`).
S_NODES = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0)
W_NODES = tuple(np.round(np.concatenate([np.arange(0.0, 1.0, 0.1), np.arange(1.0, 3.0, 0.25),
                                          np.arange(3.0, 8.01, 0.5)]), 4))
B_NODES = tuple(np.round(np.concatenate([np.linspace(0.0, 4.0, 21), np.linspace(4.5, 20.0, 32),
                                          np.linspace(21.0, 80.0, 24)]), 4))
XS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0)
#: seeing families of the profile table: physical (Kolmogorov seeing over the diffraction of
#: the pupil, s = seeing FWHM / (lambda N)) and Moffat cross-check rows.
FAMILIES = (
    {"name": "kolmogorov s=2", "kind": "kolmogorov", "s": 2.0, "beta_equiv": 4.765},
    {"name": "kolmogorov s=4", "kind": "kolmogorov", "s": 4.0, "beta_equiv": 4.765},
    {"name": "kolmogorov s=8", "kind": "kolmogorov", "s": 8.0, "beta_equiv": 4.765},
    {"name": "kolmogorov geometric", "kind": "kolmogorov", "s": None, "beta_equiv": 4.765},
    {"name": "moffat beta=2.5", "kind": "moffat", "beta": 2.5, "beta_equiv": 2.5},
    {"name": "moffat beta=3", "kind": "moffat", "beta": 3.0, "beta_equiv": 3.0},
    {"name": "moffat beta=3.5", "kind": "moffat", "beta": 3.5, "beta_equiv": 3.5},
    {"name": "moffat beta=4", "kind": "moffat", "beta": 4.0, "beta_equiv": 4.0},
    {"name": "moffat beta=5", "kind": "moffat", "beta": 5.0, "beta_equiv": 5.0},
)

#: seeing families of the wing reference (``wing_reference``): the in-focus wings real seeing
#: can give. Von Karman at L0/r0 from 25 (short outer scale, good seeing) to 400 (the r90/r50
#: of a finite outer scale sits above Kolmogorov's for the same core); Moffat rows over the
#: betas the diagnosis accepts for seeing.
WING_FAMILIES = (
    {"name": "kolmogorov", "kind": "kolmogorov"},
    {"name": "von karman L0/r0=25", "kind": "vonkarman", "outer_scale_over_r0": 25.0},
    {"name": "von karman L0/r0=50", "kind": "vonkarman", "outer_scale_over_r0": 50.0},
    {"name": "von karman L0/r0=100", "kind": "vonkarman", "outer_scale_over_r0": 100.0},
    {"name": "von karman L0/r0=200", "kind": "vonkarman", "outer_scale_over_r0": 200.0},
    {"name": "von karman L0/r0=400", "kind": "vonkarman", "outer_scale_over_r0": 400.0},
    {"name": "moffat beta=2.5", "kind": "moffat", "beta": 2.5},
    {"name": "moffat beta=3", "kind": "moffat", "beta": 3.0},
    {"name": "moffat beta=4", "kind": "moffat", "beta": 4.0},
    {"name": "moffat beta=5", "kind": "moffat", "beta": 5.0},
)
#: spider vanes of the wing reference's obstructed pupils: four, 1 % of the aperture wide
WING_VANES = (4, 0.01)


def _radial_otf(otf: np.ndarray, samp: float) -> tuple[np.ndarray, np.ndarray]:
    """Compress a 2-D OTF (unshifted, OTF[0, 0] = 1) to ``(nu_k, weight_k)``: frequencies and
    OTF x frequency-cell area, summed in fine radial bins (|OTF| < 1e-9 dropped)."""
    n = otf.shape[0]
    dnu = 1.0 / (n * samp)
    f = np.fft.fftfreq(n, d=samp)
    nu = np.hypot(*np.meshgrid(f, f)).ravel()
    v = np.real(otf).ravel()
    keep = np.abs(v) > 1e-9
    nu, v = nu[keep], v[keep]
    k = np.round(nu / (dnu / 8.0)).astype(int)
    wsum = np.bincount(k, v * dnu * dnu)
    nsum = np.bincount(k, nu * np.abs(v))
    asum = np.bincount(k, np.abs(v))
    ok = asum > 0
    return np.where(ok, nsum / np.maximum(asum, 1e-300), 0.0)[ok], wsum[ok]


def _ee_curve(nu: np.ndarray, w: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Encircled energy at ``radii`` from the radial OTF (Parseval with the disk's transform
    ``R J1(2 pi nu R) / nu``): exact for a band-limited PSF, no pixel staircase."""
    from scipy.special import j1

    out = np.empty(len(radii))
    z = nu == 0
    for i, r in enumerate(radii):
        c = np.where(z, math.pi * r * r, r * j1(2.0 * math.pi * nu * r) / np.where(z, 1.0, nu))
        out[i] = float(np.sum(w * c))
    return out


def _ee(otf: np.ndarray, samp: float, fracs=(0.5, 0.9), r_max: float | None = None) -> list[float]:
    """Radii (same unit as ``samp``) holding ``fracs`` of the light: a coarse log grid, then a
    fine one around each answer."""
    nu, w = _radial_otf(otf, samp)
    return _ee_radial(nu, w, fracs, r_max or otf.shape[0] * samp / 3.0)


def _ee_radial(nu: np.ndarray, w: np.ndarray, fracs, r_max: float) -> list[float]:
    """:func:`_ee` on a radial OTF ``(nu_k, weight_k)`` (:func:`_radial_otf`). A radial transfer
    function (the seeing's) multiplies the weights directly: the optical OTF is compressed
    once per defocus and each seeing costs a few thousand Bessel values, not a 2-D pass."""
    radii = np.geomspace(r_max / 2000.0, r_max, 120)
    ee = np.maximum.accumulate(_ee_curve(nu, w, radii))
    out = []
    for f in fracs:
        k = int(np.clip(np.searchsorted(ee, f), 1, len(radii) - 1))
        fine = np.linspace(radii[k - 1], radii[k], 24)
        ef = np.maximum.accumulate(_ee_curve(nu, w, fine))
        out.append(float(np.interp(f, ef, fine)))
    return out


def _radial_profile(otf: np.ndarray, samp: float, radii: np.ndarray) -> np.ndarray:
    """Azimuthally averaged intensity at ``radii`` from the OTF (J0 transform)."""
    from scipy.special import j0

    nu, w = _radial_otf(otf, samp)
    return np.array([float(np.sum(w * j0(2.0 * math.pi * nu * r))) for r in radii])


def growth_tables(n: int) -> dict:
    """HLR / (lambda N) over (eps, s, W), diffraction included."""
    out = {}
    for eps in EPS:
        tab = np.zeros((len(S_NODES), len(W_NODES)))
        for samp, (lo, hi) in ((0.125, (0.0, 1.5)), (0.25, (1.5, 4.0)), (0.45, (4.0, 99.0))):
            # sample in units of lambda N: fine for small seeing, coarse for large (wider field)
            s_idx = [i for i, s in enumerate(S_NODES) if lo < s <= hi]
            if not s_idx:
                continue
            for j, w in enumerate(W_NODES):
                psf = po.optical_psf(f_ratio=1.0, wavelength_nm=1000.0, sample_um=samp, n=n, obstruction=eps,
                                     defocus_um=8.0 * w)
                nu_k, w_k = _radial_otf(np.fft.fft2(np.fft.ifftshift(psf)), samp)
                for i in s_idx:
                    tab[i, j] = _ee_radial(nu_k, w_k * po.seeing_mtf(nu_k, S_NODES[i]), (0.5,), n * samp / 3.0)[0]
        out[str(eps)] = np.round(tab, 5).tolist()
        print(f"growth eps={eps} done", flush=True)
    return out


def _annulus_otf(nu: np.ndarray, blur: float, eps: float) -> np.ndarray:
    """Transform of a uniform annulus of outer diameter ``blur`` and hole ``eps * blur``, 1 at nu = 0."""
    from scipy.special import j1

    def disk(rad: float) -> np.ndarray:
        x = 2.0 * math.pi * nu * rad
        return np.where(x > 1e-9, rad * j1(x) / np.where(nu > 0, nu, 1.0), math.pi * rad * rad)

    big, small = blur / 2.0, eps * blur / 2.0
    area = math.pi * (big * big - small * small)
    return (disk(big) - (disk(small) if small > 0 else 0.0)) / area


def _kolmogorov_annulus_otf(eps: float, blur: float, fwhm: float, n: int, samp: float) -> np.ndarray:
    fx = np.fft.fftfreq(n, d=samp)
    nu = np.hypot(*np.meshgrid(fx, fx))
    otf = po.seeing_mtf(nu, fwhm)
    return otf * _annulus_otf(nu, blur, eps) if blur > 0 else otf


def geometric_growth(n: int) -> dict:
    """HLR / in-focus HLR over b = blur / in-focus HLR (Kolmogorov x annulus, no diffraction)."""
    out = {}
    fwhm = 1.0
    # b is in units of the in-focus HLR, the same for every eps (no blur, no pupil): measured
    # once here, so every row (the first included) sits on the same b axis
    samp0 = 20 * fwhm / n
    h0 = _ee(_kolmogorov_annulus_otf(0.0, 0.0, fwhm, n, samp0), samp0, (0.5,))[0]
    for eps in EPS:
        g = []
        for b in B_NODES:
            blur = b * h0
            samp = (max(blur, 8 * fwhm) + 12 * fwhm) / n
            g.append(_ee(_kolmogorov_annulus_otf(eps, blur, fwhm, n, samp), samp, (0.5,))[0])
        g = np.array(g)
        out[str(eps)] = np.round(np.maximum.accumulate(g / g[0]), 5).tolist()
        print(f"geometric eps={eps} done", flush=True)
    return out


def _profile_figures(otf: np.ndarray, samp: float, fwhm_unit: float, fit_moffat) -> tuple[float, float, float, float]:
    """(r50, r90/r50, Moffat-fit FWHM, half-maximum width), sizes over ``fwhm_unit``."""
    r50, r90 = _ee(otf, samp)
    n = otf.shape[0]
    centres = np.arange(0.0, min(n * samp / 3.0, 8.0 * r90), samp / 2.0) + samp / 4.0
    prof = _radial_profile(otf, samp, centres)
    ipk = int(np.argmax(prof))
    pk = prof[ipk]
    j = ipk + int(np.argmax(prof[ipk:] < pk / 2))
    rh = float(np.interp(pk / 2, [prof[j], prof[j - 1]], [centres[j], centres[j - 1]]))
    fit_fwhm, _ = fit_moffat(centres, np.clip(prof, 0.0, None), r50)
    return r50 / fwhm_unit, r90 / r50, fit_fwhm / fwhm_unit, 2.0 * rh / fwhm_unit


def profile_tables(n: int) -> dict:
    from focuswatch.diagnose.profile import _fit_moffat_fwhm, profile_model

    out = {}
    for eps in EPS:
        rows = {k: [] for k in ("r50", "w", "fit", "hm")}
        for fam in FAMILIES:
            vals = {k: [] for k in rows}
            for x in XS:
                if fam["kind"] == "moffat":
                    m = profile_model(4.0, fam["beta"], 4.0 * x, eps, n=n)
                    fig = (m["r50_px"] / 4.0, m["r90_px"] / m["r50_px"], m["fit_fwhm_px"] / 4.0, m["fwhm_px"] / 4.0)
                elif fam["s"] is None:
                    fwhm = 1.0
                    samp = (max(4.0 * fwhm, x * fwhm) * 1.6 + 6.0 * fwhm) * 2 / n
                    fig = _profile_figures(_kolmogorov_annulus_otf(eps, x * fwhm, fwhm, n, samp), samp, fwhm,
                                           _fit_moffat_fwhm)
                else:
                    s = fam["s"]  # seeing FWHM in lambda N; lambda N = 1
                    w = x * s / 8.0
                    span = (max(4.0 * s, x * s) * 1.6 + 6.0 * s) * 2
                    samp = min(0.45, span / n)
                    nn = n
                    while 2.0 * (4 * w + 16) > nn * samp:  # enough pupil samples for the phase
                        nn *= 2
                    psf = po.optical_psf(f_ratio=1.0, wavelength_nm=1000.0, sample_um=samp, n=nn, obstruction=eps,
                                         defocus_um=8.0 * w)
                    fx = np.fft.fftfreq(nn, d=samp)
                    nu = np.hypot(*np.meshgrid(fx, fx))
                    otf = np.fft.fft2(np.fft.ifftshift(psf)) * po.seeing_mtf(nu, s)
                    fig = _profile_figures(otf, samp, s, _fit_moffat_fwhm)
                for k, v in zip(rows, fig):
                    vals[k].append(round(float(v), 5))
            for k in rows:
                rows[k].append(vals[k])
        out[str(eps)] = rows
        print(f"profile eps={eps} done", flush=True)
    return out


def infocus_profile_tables(n: int) -> dict:
    """Shape figures of the in-focus star (Kolmogorov seeing of FWHM ``s lambda N`` over the
    obstructed pupil's diffraction) for every tabulated seeing ``s``: the rig-aware in-focus
    hypothesis of the diagnosis (how an in-focus star of this half-light radius must look on
    this telescope). Sizes over the seeing FWHM, as in :func:`profile_tables`."""
    from focuswatch.diagnose.profile import _fit_moffat_fwhm

    out = {}
    for eps in EPS:
        rows = {k: [] for k in ("r50", "w", "fit", "hm")}
        psfs: dict[float, np.ndarray] = {}
        for s in S_NODES:
            span = (4.0 * s * 1.6 + 6.0 * s + 12.0) * 2  # the Airy rings of small s need room too
            samp = min(0.45, max(span / n, 0.02))
            key = round(samp, 6)
            if key not in psfs:
                psfs[key] = po.optical_psf(f_ratio=1.0, wavelength_nm=1000.0, sample_um=samp, n=n, obstruction=eps,
                                           defocus_um=0.0)
            fx = np.fft.fftfreq(n, d=samp)
            nu = np.hypot(*np.meshgrid(fx, fx))
            otf = np.fft.fft2(np.fft.ifftshift(psfs[key])) * po.seeing_mtf(nu, s)
            for k, v in zip(rows, _profile_figures(otf, samp, s, _fit_moffat_fwhm)):
                rows[k].append(round(float(v), 5))
        out[str(eps)] = rows
        print(f"in-focus profile eps={eps} done", flush=True)
    return out


def _moffat_radial_otf(nu: np.ndarray, fwhm: float, beta: float) -> np.ndarray:
    """Transfer function of a Moffat profile of this FWHM (closed form, 1 at nu = 0):
    ``2^(2-beta) / Gamma(beta-1) z^(beta-1) K_(beta-1)(z)``, ``z = 2 pi alpha nu``."""
    from scipy.special import gamma, kv

    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    m = beta - 1.0
    z = np.maximum(2.0 * math.pi * alpha * np.asarray(nu, float), 1e-12)
    return np.where(z > 1e-9, 2.0 ** (1.0 - m) / gamma(m) * z ** m * kv(m, z), 1.0)


def _family_mtf(fam: dict, nu: np.ndarray, s: float) -> np.ndarray:
    """The seeing transfer function of a ``WING_FAMILIES`` row at seeing ``s`` (lambda N = 1).
    Von Karman keeps the Kolmogorov r0 of ``s`` (its own FWHM is narrower)."""
    if fam["kind"] == "moffat":
        return _moffat_radial_otf(nu, s, fam["beta"])
    return po.seeing_mtf(nu, s, fam.get("outer_scale_over_r0"))


def wing_reference_tables(n: int) -> dict:
    """In-focus ``r50`` (lambda N) and r90/r50 (``w``) per obstruction, pupil (``plain``, and
    ``vanes`` for obstructed ones), family (``WING_FAMILIES``) and seeing (``S_NODES``).

    The in-focus optical PSF is band-limited (cut-off 1 / lambda N), so sampling it at 0.45
    lambda N loses nothing for the encircled energy (:func:`_ee_radial` is exact for it); the
    field must instead be wide: an obstructed Airy pattern keeps ~1/r of its light beyond r, and
    r90 on an 80 lambda N field reads 6 % low (2.96 against 3.15 for L0/r0 200, s = 2, eps 0.35).
    ``n`` 2048 (a 920 lambda N field) is within 0.3 % of 4096."""
    samp = 0.45
    out = {}
    for eps in EPS:
        pupils = {"plain": 0} if eps == 0 else {"plain": 0, "vanes": WING_VANES[0]}
        out[str(eps)] = {}
        for pname, n_vanes in pupils.items():
            psf = po.optical_psf(f_ratio=1.0, wavelength_nm=1000.0, sample_um=samp, n=n, obstruction=eps,
                                 n_vanes=n_vanes, vane_width=WING_VANES[1], defocus_um=0.0)
            nu_k, w_k = _radial_otf(np.fft.fft2(np.fft.ifftshift(psf)), samp)
            rows = {"r50": [[0.0] * len(S_NODES) for _ in WING_FAMILIES],
                    "w": [[0.0] * len(S_NODES) for _ in WING_FAMILIES]}
            for j, s in enumerate(S_NODES):
                for i, fam in enumerate(WING_FAMILIES):
                    r50, r90 = _ee_radial(nu_k, w_k * _family_mtf(fam, nu_k, s), (0.5, 0.9), n * samp / 2.5)
                    rows["r50"][i][j] = round(r50, 5)
                    rows["w"][i][j] = round(r90 / r50, 5)
            out[str(eps)][pname] = rows
        print(f"wing reference eps={eps} done", flush=True)
    return out


def pupil_otf_tables(pupil_radius: int = OTF_PUPIL_RADIUS) -> dict:
    """Radially averaged OTF of the defocused, obstructed pupil, per obstruction and defocus.

    The pupil (radius ``pupil_radius`` samples, antialiased edges) with the defocus phase
    ``exp(-2 pi i W rho^2)`` is zero-padded 4x; the OTF is its autocorrelation (inverse FFT of
    the PSF), normalised to 1 at zero frequency and averaged in rings of one sample: ring ``k``
    is the frequency ``k / (2 pupil_radius)`` of the cutoff ``1 / (lambda N)``.
    """
    n = 8 * pupil_radius
    c = (np.arange(n) - n // 2) / pupil_radius
    u, v = np.meshgrid(c, c)
    rho = np.hypot(u, v)
    edge = 1.0 / pupil_radius  # one sample: antialiased rim
    ii = np.indices((n, n))
    ring = np.round(np.hypot(ii[0] - n // 2, ii[1] - n // 2)).astype(int).ravel()
    n_t = 2 * pupil_radius + 1
    counts = np.bincount(ring, None, n_t + 1)[:n_t]
    out = {}
    for eps in OTF_EPS:
        amp = np.clip(0.5 + (1.0 - rho) / edge, 0.0, 1.0)
        if eps > 0:
            amp = amp * np.clip(0.5 + (rho - eps) / edge, 0.0, 1.0)
        rows = []
        for w in OTF_W:
            field = amp * np.exp(-2j * math.pi * w * rho ** 2)
            psf = np.abs(np.fft.fft2(field)) ** 2
            otf = np.fft.fftshift(np.real(np.fft.ifft2(psf)))
            otf /= otf[n // 2, n // 2]
            prof = np.bincount(ring, otf.ravel(), n_t + 1)[:n_t] / counts
            prof[-1] = 0.0  # the cutoff
            rows.append([round(float(x), 4) for x in prof])
        out[f"{eps:.2f}"] = rows
    return {"t": [round(k / (2 * pupil_radius), 6) for k in range(n_t)], "w_waves": [float(w) for w in OTF_W],
            "eps": [float(e) for e in OTF_EPS], "otf": out}


def _provenance(script: str, **facts: object) -> dict:
    """Which script made a data file, when, with which numpy and Python, and its own ``facts``."""
    return {"script": script,
            "generated_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "numpy": np.__version__, "python": platform.python_version(), **facts}


def write_pupil_otf(out: Path = OTF_OUT) -> int:
    """Write the pupil-OTF file (``--pupil-otf``)."""
    t0 = time.time()
    doc = {
        "schema": "focuswatch.defocus_pupil_otf/1",
        "provenance": _provenance("scripts/make_calibration.py --pupil-otf",
                                  model="radially averaged OTF of an obstructed circular pupil (no vanes) with "
                                        "the defocus phase exp(-2 pi i W rho^2), W in waves; t = spatial "
                                        "frequency * lambda * N"),
        **pupil_otf_tables(),
    }
    doc["provenance"]["seconds"] = round(time.time() - t0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {out} in {time.time() - t0:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small grids (a test of the script, not for use)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", default=None,
                    help="comma-separated tables to recompute (growth, growth_geometric, profile, infocus_profile, "
                         "wing_reference); "
                         "the others are copied from --base, which must have the same grids")
    ap.add_argument("--base", type=Path, default=OUT, help="existing data file for --only (default: the package's)")
    ap.add_argument("--pupil-otf", action="store_true",
                    help="write only the defocused pupil's OTF table (data/defocus_pupil_otf.json)")
    args = ap.parse_args(argv)
    if args.pupil_otf:
        return write_pupil_otf(args.out if args.out != OUT else OTF_OUT)
    tables = ("growth_geometric", "growth", "profile", "infocus_profile", "wing_reference")
    only = set(tables if not args.only else (t.strip() for t in args.only.split(",")))
    if not only <= set(tables):
        ap.error(f"--only: unknown table(s) {', '.join(sorted(only - set(tables)))}; choose from {', '.join(tables)}")
    base = None
    if only != set(tables):
        base = json.loads(args.base.read_text(encoding="utf-8"))
    n = 256 if args.quick else 1024
    t0 = time.time()
    data = {
        "schema": "focuswatch.focus_seeing_calibration/1",
        "provenance": _provenance(
            "scripts/make_calibration.py", grid_n=n, quick=bool(args.quick),
            model="physoptics: obstructed circular pupil (no vanes), W020 = Delta/(8 N^2), monochromatic; "
                  "Kolmogorov long-exposure MTF exp(-3.44 (nu lambda F / r0)^(5/3)), FWHM = 0.976 lambda/r0"),
        "eps": list(EPS),
        "s_nodes": list(S_NODES),
        "w_nodes": [float(w) for w in W_NODES],
        "b_nodes": [float(b) for b in B_NODES],
        "xs": list(XS),
        "families": list(FAMILIES),
        "wing_families": list(WING_FAMILIES),
        "wing_vanes": list(WING_VANES),
    }
    makers = {"growth_geometric": lambda: geometric_growth(n), "growth": lambda: growth_tables(n),
              "profile": lambda: profile_tables(512 if not args.quick else 256),
              "infocus_profile": lambda: infocus_profile_tables(512 if not args.quick else 256),
              "wing_reference": lambda: wing_reference_tables(2048 if not args.quick else 512)}
    grids = {"growth_geometric": ("eps", "b_nodes"), "profile": ("eps", "xs", "families"),
             "growth": ("eps", "s_nodes", "w_nodes"), "infocus_profile": ("eps", "s_nodes"),
             "wing_reference": ("eps", "s_nodes", "wing_families", "wing_vanes")}
    for name in tables:
        if name in only:
            data[name] = makers[name]()
            continue
        if name not in base:
            raise SystemExit(f"{args.base}: it has no {name} table: recompute it too (--only)")
        for g in grids[name]:  # a copied table must sit on the same grid as this script's
            if base.get(g) != data[g]:
                raise SystemExit(f"{args.base}: its {g} differs from this script's: recompute {name} too (--only)")
        data[name] = base[name]
        data["provenance"].setdefault("copied_from_previous", {})[name] = base["provenance"].get("generated_utc")
    data["provenance"]["seconds"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
