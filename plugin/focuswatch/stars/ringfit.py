"""Obstruction ratio of defocused stars (donuts) from a physical-optics fit of their profile.

Why a model. The inner/outer ratio read off a donut's profile (the 20 %/80 % flux radii of
:func:`focuswatch.stars._annulus_ratio`) reads low once the hole is less than about four
seeing discs across: seeing spills light into the hole and the ring looks thicker than it
is. And at the defocus a focus run or a collimation check uses (200-1000 um at f/4-f/6.3,
i.e. 2-15 waves) the donut is not the geometric annulus either: it is a Fresnel pattern,
with ripples, a bright rim, and light bent into an obstruction shadow that is only a zone
or two across. A fit with the geometric annulus * seeing reads eps 0.05-0.4 high on
physical-optics renders; this module's fit uses the physical image:

    defocused annular pupil (outer image radius R, hole eps)  ->  OTF  x  seeing  x  pixel,

solving for ``R``, ``eps``, the seeing FWHM and, when the header does not give the focal
ratio and pixel size, ``lambda N`` (flux and a residual background enter linearly and are
solved exactly at every step). Azimuthal averaging makes thin spider vanes nearly
invisible (see ``min_defocus_waves`` for thick ones). ``eps`` is the obstruction ratio.

How. Everything is computed in the Fourier (Hankel) domain, where the factors multiply.
The pupil's OTF is its autocorrelation with the defocus phase (:func:`defocused_annulus_otf`:
closed-form chord lengths, one numerical integral); Kolmogorov seeing is
``exp(-3.44 (q lambda/r0)^(5/3))`` (Gaussian and Moffat kernels too); the square pixel is
its sinc product averaged over azimuth. Per-star matrices of Bessel integrals bring the
product back to the image at each radial bin's own mean pixel radius, and the fit is made
to the encircled flux built from those bins (it weighs the light, not the ripples).
Levenberg-Marquardt runs on all stars at once. Stars whose fit is unreliable (too near
focus, eps poorly constrained, hole much narrower than the seeing) are flagged, and a
frame whose donuts are mostly unreliable reports no ratio (``None``) rather than a wrong
one. The geometric model stays available (``diffraction_px=None``) for tests and for
very large defocus.

Pure computation: no I/O, no clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from focuswatch.optics import seeing_mtf  # long-exposure Kolmogorov: the renderer's and the diagnosis's own

__all__ = ["RingFitConfig", "RING_FIT", "RingFit", "radial_profile", "defocused_annulus_otf", "annulus_ee",
           "annulus_profile", "fit_rings", "diffraction_px", "refine_ring_ratio", "frame_ring_ratio"]



@dataclass(frozen=True)
class RingFitConfig:
    """Settings of the donut fit and its reliability criterion (why each value, below).

    ``kernel``: the seeing profile assumed (``kolmogorov`` is what long exposures through
    turbulence give; ``gaussian`` and ``moffat`` are alternatives). ``moffat_beta`` its beta.
    ``min_hole_seeing``: a hole narrower than this many seeing FWHMs (diameter 2 eps R over
    the fitted FWHM) is filled too much for eps to be trusted; ``max_eps_err``: the largest
    1-sigma uncertainty of eps (from the fit's covariance, scaled by its own residuals, so
    a poor model inflates it) still called reliable. ``min_reliable_share``: a frame
    reports the median eps of its reliable donuts only when at least this share of its
    donuts is reliable. ``eps_bounds``: eps is kept inside (physical obstructions are
    0.1-0.6; the bounds keep the fit away from the degenerate 0 and 1).
    ``fit_extent``: bins fitted reach ``fit_extent * R + 3 FWHM`` (past that, neighbours
    and background only). ``q_max_cyc_px`` / ``q_oversample``: the Hankel grid reaches
    this frequency (the pixel's sinc has its first zero at 1) with steps
    ``1 / (q_oversample * bins)`` (finer steps would not change the bins' values).
    ``n_iter``: Levenberg-Marquardt iterations. ``min_outer_px``: profiles of stars
    smaller than this have too few bins to hold a hole and are not fitted.
    ``diffraction_start_px``: where the fit of ``lambda N`` (in px) starts when the header
    does not give the focal ratio and pixel size (f/4-f/10 with 2.4-9 um pixels span
    0.25-2.3 px; on the renders the fit found it within -17/+22 % from 0.8).
    ``wavelength_um``: the light's mean wavelength (a broadband L filter: 0.55 um).
    ``min_defocus_waves``: nearer focus than this (peak-to-valley waves, ``R / (4 lambda N)``)
    a donut is a few Fresnel rings, the fit finds a wrong minimum (an outer radius 10-25 %
    large, eps 0.1-0.4 low, at 1.8-2.8 waves on the renders) and is not trusted; at
    3.6 waves GalSim donuts with thick vanes (3 x 0.03 D) still read 0.07 high: vanes
    shade a larger share of the pupil near the obstruction than near the rim, which the
    model (no vanes) takes for a larger hole.
    ``max_fit_stars``: the frame's ratio is the median of this many brightest donuts (the
    physical-optics fit costs 10-50 ms a star, see benchmarks/bench_ringfit.py).
    """

    kernel: str = "kolmogorov"
    moffat_beta: float = 4.0
    min_hole_seeing: float = 1.0
    max_eps_err: float = 0.025
    min_reliable_share: float = 0.5
    eps_bounds: tuple[float, float] = (0.02, 0.8)
    fit_extent: float = 1.25
    q_max_cyc_px: float = 1.0
    q_oversample: float = 5.0
    n_iter: int = 15
    min_outer_px: float = 4.0
    diffraction_start_px: float = 0.8
    wavelength_um: float = 0.55
    min_defocus_waves: float = 4.0
    max_fit_stars: int = 12
    xi_per_wave: float = 8.0


RING_FIT = RingFitConfig()


@dataclass(frozen=True)
class RingFit:
    """Per-star results of :func:`fit_rings` (arrays of the batch's length)."""

    eps: np.ndarray             # inner/outer radius ratio (NaN where not fitted)
    eps_err: np.ndarray         # its 1-sigma uncertainty
    outer_px: np.ndarray        # outer radius R of the annulus, px
    seeing_fwhm_px: np.ndarray  # FWHM of the seeing kernel, px
    hole_seeing: np.ndarray     # hole diameter / seeing FWHM
    reliable: np.ndarray        # bool: eps can be trusted (see RingFitConfig)
    diffraction_px: np.ndarray | None = None  # lambda N in px (fitted, or the one given)


def radial_profile(stamps: np.ndarray, rr: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over 1-px annuli ``[k, k+1)`` (by pixel centre) and the annuli's mean radius, per stamp.

    Pixels set to exactly 0 are masked neighbours or outside the frame (a star's own light
    plus noise is never exactly zero): the mean skips them (NaN for an annulus with none
    left), so a partial ring at the frame's edge keeps its true mean level. The mean
    radius is that of all the annulus' pixel centres (1.21 px, not 1.5, for the annulus
    ``[1, 2)``): the model is evaluated there, so pixel sampling near the centre, where
    the hole is, does not bias the fit.
    """
    n = stamps.shape[0]
    bins = np.minimum(rr.astype(np.int64), n_bins)  # n_bins: beyond the last annulus, dropped
    base = np.arange(n)[:, None, None] * (n_bins + 1)
    idx = (base + bins).ravel()
    size = n * (n_bins + 1)
    use = (stamps != 0).ravel()
    sums = np.bincount(idx[use], weights=stamps.ravel()[use], minlength=size).reshape(n, n_bins + 1)[:, :n_bins]
    valid = np.bincount(idx[use], minlength=size).reshape(n, n_bins + 1)[:, :n_bins]
    geo = np.bincount(idx, minlength=size).reshape(n, n_bins + 1)[:, :n_bins]
    rsum = np.bincount(idx, weights=np.broadcast_to(rr, stamps.shape).ravel(), minlength=size)
    rbar = rsum.reshape(n, n_bins + 1)[:, :n_bins] / np.maximum(geo, 1)
    rbar = np.where(geo > 0, rbar, np.arange(n_bins)[None, :] + 0.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid > 0, sums / np.maximum(valid, 1), np.nan)
    return mean, rbar


@lru_cache(maxsize=16)
def _hankel_grid(n_bins: int, q_max: float, q_over: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(q, pixel transfer, M, edges): cell-centre frequencies, the pixel's azimuth-averaged sinc,
    and the matrix taking a radial transform F(q) (constant over each frequency cell) to
    the encircled flux inside radii 1, 2, ... ``n_bins`` px (``ee = M @ F``).

    Inside radius r the flux is ``int F(q) 2 pi r J1(2 pi q r) dq``, and over a cell
    ``[q_a, q_b]`` the integral of ``2 pi r J1(2 pi q r)`` is ``J0(2 pi q_a r) - J0(2 pi q_b r)``:
    exact per cell, so the sum has no floor from a midpoint rule near q = 0.
    """
    from scipy.special import j0

    dq = 1.0 / (q_over * n_bins)
    edges = np.arange(int(math.ceil(q_max / dq)) + 1) * dq
    q = 0.5 * (edges[1:] + edges[:-1])
    th = (np.arange(32) + 0.5) * (0.5 * math.pi / 32)  # a quarter turn holds all of the square's symmetry
    pix = (np.sinc(q[:, None] * np.cos(th)) * np.sinc(q[:, None] * np.sin(th))).mean(axis=1)
    r = np.arange(1, n_bins + 1, dtype=float)[:, None]
    jq = j0(2.0 * math.pi * edges[None, :] * r)
    return q, pix, jq[:, :-1] - jq[:, 1:], edges


def _point_matrix(rbar: np.ndarray, q_edges: np.ndarray) -> np.ndarray:
    """(stars, bins, q) matrix taking F(q) (constant per frequency cell) to the image at
    radii ``rbar``: over a cell, ``int 2 pi q J0(2 pi q r) dq = [q J1(2 pi q r) / r]``."""
    from scipy.special import j1

    r = np.maximum(np.asarray(rbar, float), 1e-6)[:, :, None]
    qe = q_edges[None, None, :]
    t = qe * j1(2.0 * math.pi * qe * r) / r
    return t[:, :, 1:] - t[:, :, :-1]


def _kernel_otf(q: np.ndarray, fwhm_px: np.ndarray, config: RingFitConfig) -> np.ndarray:
    """Transfer function of the seeing kernel, shape (stars, q); unit at q = 0."""
    w = fwhm_px[:, None]
    if config.kernel == "gaussian":
        sigma = w / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        return np.exp(-2.0 * (math.pi * sigma * q[None, :]) ** 2)
    if config.kernel == "moffat":
        from scipy.special import gamma, kv

        b = config.moffat_beta
        nu = b - 1.0
        alpha = w / (2.0 * math.sqrt(2.0 ** (1.0 / b) - 1.0))
        u = np.maximum(2.0 * math.pi * alpha * q[None, :], 1e-9)
        return u ** nu * kv(nu, u) / (2.0 ** (nu - 1.0) * gamma(nu))
    return seeing_mtf(q[None, :], w)


def defocused_annulus_otf(q: np.ndarray, outer_px: np.ndarray, eps: np.ndarray, diffraction_px: float | np.ndarray,
                          n_xi: int | None = None, xi_per_wave: float = 8.0) -> np.ndarray:
    """Transfer function (stars, q) of a defocused annular pupil in physical optics.

    ``diffraction_px`` is ``lambda N`` in pixels; a geometric blur radius ``R`` means a
    defocus of ``W = R / (4 lambda N)`` waves peak to valley. The OTF is the pupil's
    autocorrelation: two copies of the annulus (radius 1, hole ``eps``) sheared by
    ``+-s``, ``s = q lambda N`` (cut-off at ``s = 1``), with the phase difference
    ``W ((x+s)^2 - (x-s)^2) = 4 W s x`` waves across the overlap. Integrated over ``y``
    in closed form (the overlap's chord length), over ``x`` numerically. This is what the
    geometric annulus misses at 1-10 waves of defocus: Fresnel fringes, and light bent
    into an obstruction shadow less than a Fresnel zone or two across.
    """
    # float32: the phase 8 pi W s x stays below ~500 rad, where float32 keeps 1e-4 rad, and
    # the (stars, q, x) arrays are what the fit's time goes into
    f32 = np.float32
    q = np.asarray(q, f32)
    R = np.asarray(outer_px, f32)[:, None, None]
    e = np.asarray(eps, f32)[:, None, None]
    d = np.broadcast_to(np.asarray(diffraction_px, f32), R.shape[:1])[:, None, None]
    W = R / (f32(4.0) * d)
    s = np.clip(q[None, :, None] * d, 0.0, 1.0)
    if n_xi is None:
        n_xi = int(min(512, max(48, xi_per_wave * float(np.max(W)))))
    xi = ((np.arange(n_xi) + 0.5) / n_xi).astype(f32)
    x = (f32(1.0) - s) * xi[None, None, :]
    dx = (f32(1.0) - s) / f32(n_xi)

    def chord(c):
        u2 = (x - c) ** 2
        return np.sqrt(np.clip(f32(1.0) - u2, 0.0, None)), np.sqrt(np.clip(e * e - u2, 0.0, None))

    b1, a1 = chord(s)
    b2, a2 = chord(-s)
    L = np.clip(np.minimum(b1, b2) - np.maximum(a1, a2), 0.0, None)
    phase = (f32(8.0 * math.pi) * W * s) * x
    otf = f32(4.0) * np.einsum("nqx,nqx->nq", L, np.cos(phase)) * dx[:, :, 0] \
        / (f32(math.pi) * (f32(1.0) - e[:, :, 0] ** 2))
    otf = otf.astype(float)
    return np.where(s[:, :, 0] < 1.0, otf, 0.0)


def annulus_ee(n_bins: int, outer_px: np.ndarray, eps: np.ndarray, seeing_fwhm_px: np.ndarray,
               config: RingFitConfig = RING_FIT, diffraction_px: float | None = None) -> np.ndarray:
    """Encircled flux inside radii 1..n_bins px of a unit-flux annulus * seeing * pixel, (stars, bins).

    With ``diffraction_px`` (``lambda N`` in px) the annulus is the physical-optics image of
    a defocused obstructed pupil (:func:`defocused_annulus_otf`), else the geometric one.
    """
    from scipy.special import j1

    q, pix, M, _ = _hankel_grid(int(n_bins), config.q_max_cyc_px, config.q_oversample)
    if diffraction_px:
        ann = defocused_annulus_otf(q, outer_px, eps, diffraction_px)
    else:
        R = np.asarray(outer_px, float)[:, None]
        e = np.asarray(eps, float)[:, None]
        k = 2.0 * math.pi * q[None, :]
        ann = (R * j1(k * R) - e * R * j1(k * e * R)) / (math.pi * q[None, :] * R * R * (1.0 - e * e))
    F = ann * pix[None, :] * _kernel_otf(q, np.asarray(seeing_fwhm_px, float), config)
    return F @ M.T


def annulus_profile(n_bins: int, outer_px: np.ndarray, eps: np.ndarray, seeing_fwhm_px: np.ndarray,
                    config: RingFitConfig = RING_FIT) -> np.ndarray:
    """Mean intensity in the 1-px bins ``[k, k+1)`` of the same model, shape (stars, bins)."""
    ee = annulus_ee(n_bins, outer_px, eps, seeing_fwhm_px, config)
    ring = np.diff(np.concatenate([np.zeros((ee.shape[0], 1)), ee], axis=1), axis=1)
    return ring / (math.pi * (2.0 * np.arange(n_bins) + 1.0))[None, :]


def _to_params(outer_px, eps, fwhm_px, config):
    lo, hi = config.eps_bounds
    s = np.clip((eps - lo) / (hi - lo), 1e-3, 1 - 1e-3)
    return np.stack([np.log(outer_px), np.log(s / (1 - s)), np.log(fwhm_px)], axis=1)


def _from_params(p, config):
    lo, hi = config.eps_bounds
    return np.exp(p[:, 0]), lo + (hi - lo) / (1.0 + np.exp(-p[:, 1])), np.exp(p[:, 2])


def _solve_linear(m: np.ndarray, area: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per star, the flux f and background level b minimising ``sum w (y - f m - b area)^2``;
    returns (weighted residuals, f)."""
    a = area[None, :]
    s11, s12, s22 = (w * m * m).sum(1), (w * m * a).sum(1), (w * a * a).sum(1)
    t1, t2 = (w * m * y).sum(1), (w * a * y).sum(1)
    det = s11 * s22 - s12 * s12
    ok = np.abs(det) > 1e-300
    det = np.where(ok, det, 1.0)
    f = np.where(ok, (s22 * t1 - s12 * t2) / det, 0.0)
    b = np.where(ok, (s11 * t2 - s12 * t1) / det, 0.0)
    return np.sqrt(w) * (y - f[:, None] * m - b[:, None] * a), f


def fit_rings(prof: np.ndarray, rbar_px: np.ndarray, outer0_px: np.ndarray, eps0: np.ndarray,
              seeing0_px: np.ndarray | float, config: RingFitConfig = RING_FIT,
              diffraction_px: float | None = None, fit_diffraction: bool = False) -> RingFit:
    """Fit every profile (rows of ``prof``, 1-px bins from the centre) with the donut model.

    The fit is made to the encircled flux (the profile's bin means times the bins' areas,
    summed outward), not to the profile itself: it weighs the light, not the ripples.
    ``diffraction_px`` (``lambda N`` in image pixels) selects the physical-optics model
    (:func:`defocused_annulus_otf`); without it the geometric annulus is used, which on
    physical-optics renders at 1-10 waves of defocus reads eps 0.05-0.4 high (see
    docs/donuts.md). ``outer0_px``, ``eps0``, ``seeing0_px`` start the fit (rough values
    will do: the outer radius within ~20 %). With ``fit_diffraction`` the ``lambda N`` of
    each star is fitted too, starting from ``diffraction_px`` (for frames whose header does
    not give the focal ratio and pixel size). Radii past ``fit_extent * R + 3 FWHM`` of the
    start are left out (neighbours and background only).
    """
    prof = np.asarray(prof, float)
    n = prof.shape[0]
    nan = np.full(n, np.nan)
    if n == 0:
        return RingFit(nan, nan, nan, nan, nan, np.zeros(0, bool))
    R0 = np.maximum(np.asarray(outer0_px, float), 1.0)
    w0 = np.broadcast_to(np.asarray(seeing0_px, float), (n,)).astype(float)
    lo, hi = config.eps_bounds
    e0 = np.clip(np.nan_to_num(np.asarray(eps0, float), nan=0.3), lo + 0.02, hi - 0.02)
    reach = config.fit_extent * R0 + 3.0 * w0 + 1.0
    nb = int(min(prof.shape[1], math.ceil(float(reach.max())) + 1))
    prof = prof[:, :nb]
    r_out = np.arange(1, nb + 1, dtype=float)
    w = (r_out[None, :] <= reach[:, None]).astype(float)
    area = math.pi * r_out ** 2
    ring_area = (math.pi * (2.0 * np.arange(nb) + 1.0))[None, :]
    ee = np.cumsum(np.nan_to_num(prof) * ring_area, axis=1)
    # scale each curve to order 1 (conditioning; eps does not depend on it)
    scale = np.maximum(np.abs(ee).max(axis=1), 1e-30)
    y = ee / scale[:, None]
    q_max = min(config.q_max_cyc_px, 1.0 / diffraction_px) if (diffraction_px and not fit_diffraction) \
        else config.q_max_cyc_px
    k_par = 4 if (diffraction_px and fit_diffraction) else 3
    q, pix, _, q_edges = _hankel_grid(nb, q_max, config.q_oversample)
    # the model is read at the bins' own mean pixel radii and summed like the data
    P = _point_matrix(np.asarray(rbar_px, float)[:, :nb], q_edges) * ring_area[:, :, None]
    P = np.cumsum(P, axis=1)

    def optics(p):  # the costly part: the annulus' transfer function (R, eps); seeing is a cheap factor
        from scipy.special import j1

        R, e, _ = _from_params(p, config)
        if diffraction_px:
            d = np.exp(p[:, 3]) if k_par == 4 else diffraction_px
            return defocused_annulus_otf(q, R, e, d, xi_per_wave=config.xi_per_wave) * pix[None, :]
        k = 2.0 * math.pi * q[None, :]
        Rc, ec = R[:, None], e[:, None]
        return (Rc * j1(k * Rc) - ec * Rc * j1(k * ec * Rc)) / (math.pi * q[None, :] * Rc * Rc * (1.0 - ec * ec)) \
            * pix[None, :]

    def resid(p, opt):
        return _solve_linear(np.einsum("nbq,nq->nb", P, opt * _kernel_otf(q, np.exp(p[:, 2]), config)), area, y, w)

    p = _to_params(R0, e0, w0, config)
    if k_par == 4:
        p = np.concatenate([p, np.full((n, 1), math.log(diffraction_px))], axis=1)
    opt = optics(p)
    res, flux = resid(p, opt)
    cost = (res ** 2).sum(1)
    lam = np.full(n, 1e-2)
    h = 1e-4
    jac = np.zeros((n, nb, k_par))

    def jacobian(p, opt, res):
        for j in range(k_par):
            dp = p.copy()
            dp[:, j] += h
            jac[:, :, j] = (resid(dp, opt if j == 2 else optics(dp))[0] - res) / h

    for _ in range(config.n_iter):
        jacobian(p, opt, res)
        A = np.einsum("nbi,nbj->nij", jac, jac)
        g = np.einsum("nbi,nb->ni", jac, res)
        diag = np.einsum("nii->ni", A)
        Ad = A + lam[:, None, None] * np.eye(k_par)[None] * (diag[:, :, None] + 1e-12)
        try:
            step = -np.linalg.solve(Ad, g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            break
        step = np.clip(np.nan_to_num(step), -0.5, 0.5)
        p_new = p + step
        opt_new = optics(p_new)
        res_new, flux_new = resid(p_new, opt_new)
        cost_new = (res_new ** 2).sum(1)
        better = np.isfinite(cost_new) & (cost_new < cost)
        p = np.where(better[:, None], p_new, p)
        opt = np.where(better[:, None], opt_new, opt)
        res = np.where(better[:, None], res_new, res)
        flux = np.where(better, flux_new, flux)
        small = np.abs(step).max(axis=1) < 1e-4
        cost = np.where(better, cost_new, cost)
        lam = np.clip(np.where(better, lam / 3.0, lam * 4.0), 1e-6, 1e6)
        if np.all(small | (lam >= 1e6)):
            break

    jacobian(p, opt, res)
    R, e, fw = _from_params(p, config)
    d_fit = np.exp(p[:, 3]) if k_par == 4 else np.full(n, float(diffraction_px or np.nan))
    # covariance of the parameters, scaled by the fit's own residual variance
    dof = np.maximum((w > 0).sum(1) - 5, 1)
    s2 = cost / dof
    A = np.einsum("nbi,nbj->nij", jac, jac)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok_cov = np.linalg.det(A) > 0
        cov = np.linalg.pinv(np.where(ok_cov[:, None, None], A, np.eye(k_par)[None]))
        de_dt = (e - lo) * (hi - e) / (hi - lo)
        eps_err = np.sqrt(np.clip(cov[:, 1, 1] * s2, 0, None)) * de_dt
    eps_err = np.where(ok_cov & (flux > 0), eps_err, np.inf)
    hole = 2.0 * e * R / fw
    reliable = (np.isfinite(eps_err) & (eps_err <= config.max_eps_err) & (hole >= config.min_hole_seeing)
                & (R >= config.min_outer_px) & (e > lo + 0.01) & (e < hi - 0.01))
    return RingFit(e, eps_err, R, fw, hole, reliable, d_fit)


def diffraction_px(meta: object, scale_px: float = 1.0, config: RingFitConfig = RING_FIT) -> float | None:
    """``lambda N`` in image pixels from a frame's metadata (None when the focal ratio or
    the pixel size is unknown). ``scale_px`` is how many sensor pixels one image pixel spans."""
    n = getattr(meta, "f_ratio", None)
    if not n:
        fl, ap = getattr(meta, "focal_length_mm", None), getattr(meta, "aperture_mm", None)
        n = fl / ap if (fl and ap) else None
    pix = getattr(meta, "pixel_um", None)
    if not n or not pix or n <= 0 or pix <= 0:
        return None
    return config.wavelength_um * float(n) / (float(pix) * max(float(scale_px), 1.0))


def refine_ring_ratio(prof: np.ndarray, rbar_px: np.ndarray, ring0: np.ndarray, r90_px: np.ndarray,
                      flux: np.ndarray, diffraction_px_: float | None,
                      config: RingFitConfig = RING_FIT, *,
                      usable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ring ratio of the donuts in a star table and whether it holds: ``(ring, ring_ok)``.

    ``ring0`` is the quick ratio (> 0 marks a donut: a dip in its profile), ``prof`` and
    ``rbar_px`` the stars' radial profiles (:func:`radial_profile`). The ``max_fit_stars``
    brightest donuts are fitted with the physical-optics model, with the rig's
    ``lambda N`` (``diffraction_px_``) or, when the header does not give it, fitting it
    too; those whose fit is reliable (see :class:`RingFitConfig`) get the fitted eps and
    ``ring_ok``. The others keep the quick ratio with ``ring_ok`` False. Every donut keeps
    ``ring > 0``, so counts of donuts do not change. ``usable`` (default all): the donuts
    whose profile may be fitted (a touching donut's stamp profile holds its neighbour's light).
    """
    ring = np.asarray(ring0, float).copy()
    ok = np.zeros(len(ring), bool)
    sel = np.nonzero((ring > 0) & (True if usable is None else np.asarray(usable, bool)))[0]
    prof = np.asarray(prof, float)
    if not len(sel) or prof.shape[1] < 2:
        return ring, ok
    rbar_px = np.asarray(rbar_px, float)
    sel = sel[np.argsort(-np.asarray(flux, float)[sel], kind="stable")[:config.max_fit_stars]]
    e0 = ring[sel]
    # r90 of a blurred annulus ~ R sqrt(0.9 + 0.1 e^2) plus some seeing: start a bit inside it
    outer0 = np.asarray(r90_px, float)[sel] / np.sqrt(0.9 + 0.1 * e0 ** 2) * 0.95
    known = bool(diffraction_px_)
    fit = fit_rings(prof[sel], rbar_px[sel], outer0, e0, np.maximum(0.12 * outer0, 1.5), config,
                    diffraction_px_ if known else config.diffraction_start_px, fit_diffraction=not known)
    waves = fit.outer_px / (4.0 * fit.diffraction_px)
    good = fit.reliable & (waves >= config.min_defocus_waves)
    ring[sel[good]] = fit.eps[good]
    ok[sel[good]] = True
    return ring, ok


def frame_ring_ratio(ring: np.ndarray, ring_ok: np.ndarray, n_stars: int,
                     config: RingFitConfig = RING_FIT, *, usable: np.ndarray | None = None) -> float | None:
    """The frame's ring ratio: median eps of the donuts whose ratio holds (``ring_ok``), or None.

    None when donuts are not most of the stars (not a donut frame), or when fewer than
    ``min_reliable_share`` of the donuts examined (at most ``max_fit_stars``) hold.
    ``usable``: the donuts that could be examined (see :func:`refine_ring_ratio`); all by default.
    """
    ring = np.asarray(ring, float)
    donut = ring > 0
    nd = int(np.count_nonzero(donut))
    if nd == 0 or nd <= n_stars / 2:
        return None
    good = donut & np.asarray(ring_ok, bool)
    n_fit = nd if usable is None else int(np.count_nonzero(donut & np.asarray(usable, bool)))
    if np.count_nonzero(good) < config.min_reliable_share * min(n_fit, config.max_fit_stars):
        return None
    return float(np.median(ring[good]))
