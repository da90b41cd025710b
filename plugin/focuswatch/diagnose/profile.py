"""The star-profile model: how seeing and defocus shape a star, and its inversion.

:func:`profile_model` is the forward model: a Moffat seeing profile convolved with the
defocus annulus, read the way :func:`focuswatch.stars.measure` reads stars
(:func:`stars_fwhm_px`); ``scripts/make_calibration.py`` cross-checks the generated tables
with it. :func:`blur_from_profile` inverts those tables
(:mod:`focuswatch.calibration`) for the seeing FWHM and the defocus blur under
every plausible seeing family (:class:`ProfileFit`): a focus miss is called only when even
the smallest of those blurs is large.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from focuswatch import calibration, optics
from focuswatch.diagnose.config import DiagnoseConfig
from focuswatch.stars import moffat_fwhm
# stars.measure's own pixel-width correction of the FWHM (8 ln2/12 px^2), so the two cannot drift
from focuswatch.stars.table import _PIX_FWHM2


#: Half-light radius over FWHM of the Kolmogorov long-exposure profile: the calibration's constant.
KOLMOGOROV_HLR_PER_FWHM = calibration.KOLMOGOROV_HLR_PER_FWHM


def _moffat_alpha(fwhm: float, beta: float) -> float:
    """Moffat ``alpha`` for a FWHM: the inverse of :func:`focuswatch.stars.moffat_fwhm` (same arithmetic)."""
    return fwhm / float(moffat_fwhm(1.0, beta))


def moffat_r50_px(fwhm_px: float, beta: float) -> float:
    """Half-flux radius (px) of a Moffat profile of FWHM ``fwhm_px``: ``alpha sqrt(2^(1/(beta-1)) - 1)``.

    >>> round(moffat_r50_px(1.0, 3.5), 3)
    0.604
    """
    return _moffat_alpha(fwhm_px, beta) * math.sqrt(2.0 ** (1.0 / (beta - 1.0)) - 1.0)


def _fit_moffat_fwhm(rc: np.ndarray, prof: np.ndarray, r50: float) -> tuple[float, float]:
    """FWHM and beta of a Moffat fitted to a radial profile the way :mod:`stars` fits stars
    (out to 3 half-flux radii, points weighted by their pixel count, beta in 1.2-25).

    A Moffat has no flat top: on a defocused star the fit gives an FWHM well below the true
    half-maximum width. ``stars.measure`` keeps the fit only for stars narrower than ~4 px
    (see :func:`stars_fwhm_px`), so this is what the model needs for small stars.
    """
    from scipy.optimize import least_squares

    use = rc <= max(3.0 * r50, 4.0 * (rc[1] - rc[0]))
    r, y = rc[use], prof[use] / prof[0]
    wt = np.sqrt(r)

    def res(p: np.ndarray) -> np.ndarray:
        return wt * (math.exp(p[0]) * (1 + r * r / math.exp(2 * p[1])) ** (-math.exp(p[2])) - y)

    sol = least_squares(res, [0.0, math.log(max(r50, 1e-3)), math.log(3.0)],
                        bounds=([-5.0, math.log(r50 * 0.01), math.log(1.2)], [5.0, math.log(r50 * 100), math.log(25.0)]))
    alpha, beta = math.exp(sol.x[1]), math.exp(sol.x[2])
    return float(moffat_fwhm(alpha, beta)), beta


#: Defaults of the measurement model (settable in :class:`~focuswatch.diagnose.config.DiagnoseConfig`), kept as names.
FIT_FWHM_SCALE = DiagnoseConfig.fit_fwhm_scale
FIT_FWHM_ADD2 = DiagnoseConfig.fit_fwhm_add_px2


def stars_fwhm_px(fit_fwhm_px: Any, half_max_width_px: Any, *, config: "DiagnoseConfig | None" = None) -> Any:
    """The FWHM (px) that :func:`focuswatch.stars.measure` reports for a star.

    ``fit_fwhm_px`` is what its Moffat fit gives on the continuous profile and
    ``half_max_width_px`` the true full width at half maximum (for a donut, at half the
    ring's maximum). Mirrors ``measure()``: both widths are read on pixels (the pixel's
    width adds ``8 ln2/12`` px^2), blended with weight ``w = clip((direct - 4)/2, 0, 1)``
    (``fw = (1-w) fit + w direct``) and the pixel width is taken out again
    (``sqrt(fw^2 - 8 ln2/12)``). The fit itself reads a little wide on noisy pixel data
    (:data:`FIT_FWHM_SCALE`, :data:`FIT_FWHM_ADD2`). Because the blend works in pixels, the measured
    HFD/FWHM of a given profile shape depends on how many pixels the star spans: a 2-px
    seeing disk blurred by 1 px keeps the fit's width, the same shape 4x larger reads its
    true half-maximum width. Works on scalars and numpy arrays.
    """
    c = config or DiagnoseConfig()
    fit = np.sqrt(np.square(c.fit_fwhm_scale * np.asarray(fit_fwhm_px, float)) + c.fit_fwhm_add_px2)
    fit_p = np.sqrt(np.square(fit) + _PIX_FWHM2)
    dir_p = np.sqrt(np.square(half_max_width_px) + _PIX_FWHM2)
    w = np.clip((dir_p - c.blend_lo_px) / (c.blend_hi_px - c.blend_lo_px), 0.0, 1.0)
    fw = (1.0 - w) * fit_p + w * dir_p
    return np.sqrt(np.maximum(fw * fw - _PIX_FWHM2, 0.01))


def profile_model(seeing_fwhm_px: float, beta: float, blur_px: float, obstruction: float = 0.0,
                  n: int = 256) -> dict[str, float]:
    """Shape figures of a Moffat seeing profile convolved with a defocus annulus.

    ``seeing_fwhm_px`` and ``beta`` describe the seeing (Moffat), ``blur_px`` the outer
    diameter of the geometric defocus annulus and ``obstruction`` its inner/outer ratio.
    Returns ``r50_px`` and ``r90_px`` (radii holding 50 and 90 % of the light),
    ``fwhm_px`` (true half-maximum width; for a donut at half the ring's maximum),
    ``fit_fwhm_px``/``fit_beta`` (the Moffat fit of the star measurement),
    ``meas_fwhm_px`` (what ``stars.measure`` reports: :func:`stars_fwhm_px`) and
    ``profile_ratio`` (HFD over ``meas_fwhm_px``, what it reports as ``profile_ratio``).
    Computed on a grid by FFT convolution: the forward model the defocus estimate inverts.

    >>> m = profile_model(3.0, 3.5, 0.0, n=512)
    >>> round(m["fwhm_px"], 1), round(2 * m["r50_px"] / m["fwhm_px"], 1)
    (3.0, 1.2)
    >>> round(profile_model(4.0, 3.5, 20.0, n=512)["profile_ratio"], 2)  # flat-topped
    0.74
    """
    f = float(seeing_fwhm_px)
    half = max(4.0 * f, blur_px) * 1.6 + 6.0 * f
    d = 2.0 * half / n
    ax = (np.arange(n) - n / 2 + 0.5) * d
    xx, yy = np.meshgrid(ax, ax)
    rr = np.hypot(xx, yy)
    alpha = _moffat_alpha(f, beta)
    img = (1.0 + (rr / alpha) ** 2) ** (-beta)
    if blur_px > 0:
        disk = np.clip((blur_px / 2 - rr) / d + 0.5, 0, 1)
        if obstruction > 0:
            disk = disk - np.clip((obstruction * blur_px / 2 - rr) / d + 0.5, 0, 1)
        img = np.fft.fftshift(np.real(np.fft.ifft2(np.fft.fft2(np.fft.ifftshift(img))
                                                     * np.fft.fft2(np.fft.ifftshift(disk)))))
    img = np.clip(img, 0, None)
    img /= img.sum()
    r = rr.ravel()
    v = img.ravel()
    order = np.argsort(r)
    cs = np.cumsum(v[order])
    r50 = float(np.interp(0.5, cs, r[order]))
    r90 = float(np.interp(0.9, cs, r[order]))
    bins = np.arange(0.0, half, d)
    idx = np.digitize(r, bins)
    m = len(bins)
    prof = np.bincount(idx, v, minlength=m + 1)[1:m] / np.maximum(np.bincount(idx, minlength=m + 1)[1:m], 1)
    centres = bins[:-1] + d / 2
    ipk = int(np.argmax(prof))
    pk = prof[ipk]
    j = ipk + int(np.argmax(prof[ipk:] < pk / 2))
    rh = float(np.interp(pk / 2, [prof[j], prof[j - 1]], [centres[j], centres[j - 1]]))
    fit_fwhm, fit_beta = _fit_moffat_fwhm(centres, prof, r50)
    meas = float(stars_fwhm_px(fit_fwhm, 2.0 * rh))
    return {"r50_px": r50, "r90_px": r90, "fwhm_px": 2.0 * rh, "fit_fwhm_px": fit_fwhm, "fit_beta": fit_beta,
            "meas_fwhm_px": meas, "profile_ratio": 2.0 * r50 / meas}


def _profile_table(obstruction: float) -> dict[str, Any]:
    """The generated shape table for the nearest tabulated obstruction
    (:func:`focuswatch.calibration.profile_table`; ``scripts/make_calibration.py``)."""
    return calibration.profile_table(round(float(obstruction), 2))


#: Defaults of the measurement model (settable in :class:`~focuswatch.diagnose.config.DiagnoseConfig`), kept as names.
WING_RATIO_BIAS = DiagnoseConfig.wing_ratio_bias
PROFILE_RATIO_BIAS = DiagnoseConfig.profile_ratio_bias
PIX_R90_2 = DiagnoseConfig.pix_r90_px2


def wing_ratio_px(r90_px: np.ndarray, hfr_px: np.ndarray, pix_r90_px2: float = PIX_R90_2) -> np.ndarray:
    """r90/r50 of measured stars with the pixel's width taken out of the 90 % radius.

    ``hfr_px`` (``stars`` column ``hfr``) is already corrected for the pixel; the 90 %
    radius (``outer_r``) is not, see :data:`PIX_R90_2`.
    """
    r90 = np.sqrt(np.maximum(np.square(r90_px) - pix_r90_px2, np.square(hfr_px)))
    return r90 / hfr_px


@dataclass(frozen=True)
class ProfileFit:
    """What the profile shape says (:func:`blur_from_profile`); sizes in px.

    ``blur_px`` and ``seeing_fwhm_px`` come from the best seeing family; ``seeing_beta`` is
    its Moffat-equivalent beta (Kolmogorov ~4.77); ``min_blur_to_seeing`` (and ``min_blur_px``)
    the smallest blur / seeing ratio (blur) that any seeing family still fits (within
    ``plausible_delta_chi2``): a
    focus miss is only called when even that is large, so a seeing profile with thinner
    wings than the one assumed (Kolmogorov reads HFD/FWHM ~1.13, Moffat beta=4 ~1.17) is
    never taken for a defocus.
    """

    seeing_fwhm_px: float
    blur_px: float
    seeing_beta: float
    wing_excess: float
    family: str
    min_blur_to_seeing: float
    #: The smallest blur diameter (px) any plausible family allows (each with its own seeing).
    min_blur_px: float = 0.0

    def __iter__(self):  # the former 4-tuple (seeing, blur, beta, excess)
        return iter((self.seeing_fwhm_px, self.blur_px, self.seeing_beta, self.wing_excess))


def blur_from_profile(hfr_px: float, wing_ratio: float | None, profile_ratio: float | None, *,
                      obstruction: float = 0.0, config: "DiagnoseConfig | None" = None,
                      lambda_n_px: float | None = None) -> ProfileFit:
    """Invert the profile model: seeing FWHM (px), defocus blur diameter (px), seeing family.

    ``hfr_px`` is the true half-flux radius, ``wing_ratio`` the measured 90 %/50 % flux
    radius ratio (pixel-corrected, :func:`wing_ratio_px`; 1.34 for a flat disk, 2.1-2.5
    for seeing) and ``profile_ratio`` HFD over the FWHM ``stars.measure`` reports
    (~1.13-1.2 for seeing, ~0.72 for a large flat disk). The shape of each seeing family
    (Kolmogorov over the pupil's diffraction, and Moffat cross-check rows) convolved with
    the defocus is tabulated against ``x`` = blur / seeing FWHM in the generated calibration
    data. For each family and ``x`` the half-flux radius fixes the seeing FWHM in pixels,
    hence the FWHM the measurement reports (:func:`stars_fwhm_px`: Moffat fit for small
    stars, direct half-maximum width for large ones); the pair of shape figures then fixes
    the family and ``x``. ``wing_excess`` is how much wider the 90 % radius is than the best
    model allows (r90/r50 units; a halo: dew, scattered light). With ``lambda_n_px`` (the
    rig's lambda N in pixels) the physical families whose seeing in lambda N units (``s``)
    is far from the one the star implies pay a chi^2 (``family_s_width``): how much the
    diffraction shapes the star is known from the rig, not free.

    >>> fit = blur_from_profile(2.0, 2.2, 1.13)  # Kolmogorov seeing, in focus
    >>> fit.min_blur_to_seeing < 0.3
    True
    >>> round(blur_from_profile(4.1, 1.45, 0.76).blur_px / 4.1, 1)  # a big flat disk: blur ~ 2.9 HFR
    2.9
    """
    c = config or DiagnoseConfig()
    tab = _profile_table(obstruction)
    xs = tab["xs"]
    fine = np.linspace(0.0, xs[-1], 801)
    wm = None if wing_ratio is None or not math.isfinite(wing_ratio) else wing_ratio - c.wing_ratio_bias
    pm = None if profile_ratio is None or not math.isfinite(profile_ratio) else profile_ratio - c.profile_ratio_bias
    chis, fits, r50s = [], [], []
    for i, fam in enumerate(tab["families"]):
        moffat = fam["kind"] == "moffat"
        if moffat and not c.seeing_beta_min <= fam["beta_equiv"] <= c.seeing_beta_max:
            continue
        r50 = np.interp(fine, xs, tab["r50"][i])
        w = np.interp(fine, xs, tab["w"][i])
        chi = np.zeros_like(fine)
        if wm is not None:
            chi += ((w - wm) / c.wing_ratio_sigma) ** 2
        if pm is not None:
            seeing = hfr_px / r50  # px, for each candidate x
            meas = stars_fwhm_px(np.interp(fine, xs, tab["fit"][i]) * seeing,
                                 np.interp(fine, xs, tab["hm"][i]) * seeing, config=c)
            chi += ((2.0 * hfr_px / meas - pm) / c.profile_ratio_sigma) ** 2
        if moffat:
            chi += c.moffat_prior_chi2
        elif lambda_n_px and lambda_n_px > 0:
            s_data = hfr_px / r50 / lambda_n_px  # the seeing FWHM in lambda N, for each x
            s_fam = fam.get("s") or c.geometric_family_s
            lr = np.log(s_data / s_fam)
            if not fam.get("s"):
                lr = np.minimum(lr, 0.0)  # the geometric limit holds for any larger seeing
            chi += (lr / math.log(c.family_s_width)) ** 2
        chis.append(chi)
        r50s.append(r50)
        k = int(np.argmin(chi))
        excess = 0.0 if wm is None else float(wm - w[k])
        fits.append((float(chi[k]), float(fine[k]), float(r50[k]), float(fam["beta_equiv"]), excess, fam["name"]))
    best = min(range(len(fits)), key=lambda j: fits[j][0])
    chi_b, x, r50_per_f, be, excess, name = fits[best]
    lim = chi_b + c.plausible_delta_chi2
    lows = [(float(fine[k]), float(fine[k] * hfr_px / r50[k]))
            for ch, r50 in zip(chis, r50s) if np.any(ch <= lim) for k in (int(np.argmax(ch <= lim)),)]
    x_low = min(v[0] for v in lows)
    blur_low = min(v[1] for v in lows)
    seeing = hfr_px / r50_per_f
    return ProfileFit(seeing, x * seeing, be, excess, name, x_low, min(blur_low, x * seeing))


@dataclass(frozen=True)
class StackedProfile:
    """The mean radial profile of a frame's bright stars, each re-centred on its own light.

    ``r_px`` is the mean radius of each ring (px), ``flux`` the mean pixel value there as a
    fraction of each star's flux, ``sem`` its star-to-star standard error, ``n_stars`` the
    stars stacked. Sub-pixel centring samples the profile far finer than one star's pixels do:
    the core's flattening by a defocus shows in a few tenths of the HFR, where one star holds a
    handful of pixels.
    """

    r_px: np.ndarray
    flux: np.ndarray
    sem: np.ndarray
    n_stars: int


def stacked_profile(pixels: np.ndarray, x_px: np.ndarray, y_px: np.ndarray, snr: np.ndarray, hfr_px: float,
                    config: "DiagnoseConfig | None" = None) -> StackedProfile | None:
    """Stack the radial profiles of the stars with ``snr >= stack_min_snr`` (the brightest
    ``stack_max_stars``), in ``stack_bins`` rings out to ``stack_max_hfr`` times the frame's
    median HFR.

    Each star: sky = median of the stamp beyond ``R = stack_sky_hfr * hfr + stack_sky_pad_px``,
    centre = first moment of the positive light within ``stack_centroid_hfr`` HFR, light
    normalised by the flux inside ``R``. Stars whose stamp leaves the frame are skipped.
    ``None`` with fewer than ``stack_min_stars`` stars.
    """
    c = config or DiagnoseConfig()
    pix = np.asarray(pixels)  # stamps are cut first and made float: no copy of a large frame
    ny, nx = pix.shape[:2]
    if not (hfr_px and math.isfinite(hfr_px) and hfr_px > 0):
        return None
    keep = np.isfinite(snr) & (snr >= c.stack_min_snr) & np.isfinite(x_px) & np.isfinite(y_px)
    order = np.argsort(-np.where(keep, snr, -np.inf))[: min(int(keep.sum()), c.stack_max_stars)]
    r_sky = int(math.ceil(c.stack_sky_hfr * hfr_px + c.stack_sky_pad_px))
    edges = np.linspace(0.0, c.stack_max_hfr * hfr_px, c.stack_bins + 1)
    nb = c.stack_bins
    half = r_sky + 2
    yy, xx = np.mgrid[-half: half + 1, -half: half + 1].astype(float)
    per, r_sum, r_cnt = [], np.zeros(nb), np.zeros(nb)
    for k in order:
        ix, iy = int(round(float(x_px[k]))), int(round(float(y_px[k])))
        if ix - half < 0 or iy - half < 0 or ix + half + 1 > nx or iy + half + 1 > ny:
            continue
        cut = np.asarray(pix[iy - half: iy + half + 1, ix - half: ix + half + 1], float)
        dx, dy = xx + (ix - float(x_px[k])), yy + (iy - float(y_px[k]))  # offsets from the catalogue centre
        rr = np.hypot(dx, dy)
        light = cut - float(np.median(cut[rr > r_sky]))
        core = rr < c.stack_centroid_hfr * hfr_px
        w = np.clip(light[core], 0.0, None)
        if w.sum() <= 0:
            continue
        rr = np.hypot(dx - float((dx[core] * w).sum() / w.sum()), dy - float((dy[core] * w).sum() / w.sum()))
        inside = rr <= r_sky
        flux = float(light[inside].sum())
        if flux <= 0:
            continue
        b = np.digitize(rr[inside], edges) - 1
        ok = (b >= 0) & (b < nb)
        n = np.bincount(b[ok], None, nb)
        s = np.bincount(b[ok], light[inside][ok] / flux, nb)
        r_sum += np.bincount(b[ok], rr[inside][ok], nb)
        r_cnt += n
        per.append(np.where(n > 0, s / np.maximum(n, 1), np.nan))
    if len(per) < max(c.stack_min_stars, 3):
        return None
    p = np.array(per)
    n_ok = np.sum(np.isfinite(p), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_ok > 0, np.nansum(p, axis=0) / np.maximum(n_ok, 1), np.nan)
        var = np.nansum((p - mean) ** 2, axis=0) / np.maximum(n_ok - 1, 1)
        sem = np.where(n_ok > 1, np.sqrt(var / np.maximum(n_ok, 1)), np.nan)
    return StackedProfile(r_px=r_sum / np.maximum(r_cnt, 1), flux=mean, sem=sem, n_stars=len(per))


@dataclass(frozen=True)
class StackedFit:
    """What the physical fit of the stacked profile allows (:func:`fit_stacked_profile`).

    ``defocus_cfz`` is the best model's defocus; ``defocus_cfz_low`` and ``blur_to_seeing_low``
    the smallest defocus (CFZ) and smallest geometric blur / seeing FWHM of every model within
    ``stack_delta_chi2`` (in units of the best model's chi^2 per degree of freedom) of the best.
    """

    defocus_cfz: float
    defocus_cfz_low: float
    blur_to_seeing_low: float
    seeing_fwhm_px: float
    n_stars: int


#: Defocus (waves, peak W020 = Delta / (8 N^2 lambda)) of one critical focus zone: the CFZ of
#: :func:`focuswatch.optics.cfz_um` at N = 1, lambda = 1 um, over 8 (0.61).
WAVES_PER_CFZ = optics.cfz_um(1.0, 1000.0) / 8.0


def _pixel_mtf(nu_px: np.ndarray, n_angles: int = 65) -> np.ndarray:
    """Azimuthal mean of the square pixel's MTF (the radial average of a pixel-sampled PSF)."""
    th = np.linspace(0.0, math.pi / 2.0, n_angles)
    return np.mean(np.sinc(nu_px[:, None] * np.cos(th)) * np.sinc(nu_px[:, None] * np.sin(th)), axis=1)


@lru_cache(maxsize=16)
def _rig_otf(lambda_n_px: float, obstruction: float, n_frequencies: int) -> tuple[np.ndarray, np.ndarray]:
    """``(nu, otf)``: the frequency grid (cycles / px, to the pupil's cutoff) and the defocused
    pupil's OTF times the pixel's MTF on it (rows: the tabulated defocus). They depend on the rig
    alone, so they are made once per rig, not once per frame (read-only: shared by every call)."""
    t, _, otf_w = calibration.pupil_otf(obstruction)
    nu = np.linspace(0.0, 1.0 / lambda_n_px, n_frequencies)
    pupil = np.array([np.interp(nu * lambda_n_px, t, row) for row in otf_w])  # W x nu
    otf = pupil * _pixel_mtf(nu)
    nu.flags.writeable = False
    otf.flags.writeable = False
    return nu, otf


def fit_stacked_profile(stack: StackedProfile, lambda_n_px: float, obstruction: float, hfr_px: float,
                        config: "DiagnoseConfig | None" = None) -> StackedFit | None:
    """Fit the stacked profile with physical stars: seeing (Kolmogorov and von Karman with the
    outer scales ``stack_l0_over_r0``) x the defocused obstructed pupil's OTF (generated data,
    :func:`focuswatch.calibration.pupil_otf`) x the pixel, back to a radial profile by one Hankel
    transform; every seeing FWHM of ``stack_seeing_hfr`` (``stack_n_seeing`` log steps, in HFR)
    and every tabulated defocus (0-2 waves). Each model gets its own amplitude and offset (a sky
    or flux-normalisation error), weights ``1 / (sem^2 + (stack_floor * peak)^2)``.

    The rig's lambda N (px) and obstruction are known, so the diffraction is not free: how much
    of the core a defocus flattens is fixed by the optics, which is what tells a 1 CFZ blur from
    a seeing with thinner wings. ``None`` when the rig's lambda N is unknown.
    """
    from scipy.special import j0

    c = config or DiagnoseConfig()
    if not (lambda_n_px and lambda_n_px > 0 and hfr_px and hfr_px > 0):
        return None
    ok = np.isfinite(stack.flux) & np.isfinite(stack.sem) & (stack.r_px > 0)
    r, y, se = stack.r_px[ok], stack.flux[ok], stack.sem[ok]
    if len(r) < 8:
        return None
    w_waves = calibration.pupil_otf(obstruction)[1]
    nu, rig_otf = _rig_otf(float(lambda_n_px), float(obstruction), int(c.stack_n_frequencies))
    dnu = nu[1] - nu[0]
    seeings = hfr_px * np.geomspace(c.stack_seeing_hfr_band[0], c.stack_seeing_hfr_band[1], c.stack_n_seeing)
    atm = np.array([optics.seeing_mtf(nu[None, :], seeings[:, None], l0)
                    for l0 in c.stack_l0_over_r0])  # family x seeing x nu
    mtf = atm[:, :, None, :] * rig_otf[None, None, :, :]
    hankel = 2.0 * math.pi * j0(2.0 * math.pi * nu[:, None] * r[None, :]) * nu[:, None] * dnu
    hankel[0] *= 0.5
    hankel[-1] *= 0.5
    model = (mtf.reshape(-1, len(nu)) @ hankel).reshape(mtf.shape[:-1] + (len(r),))  # family x seeing x W x ring
    wt = 1.0 / (se ** 2 + (c.stack_floor * float(np.max(y))) ** 2)
    sw, sy, syy = wt.sum(), (wt * y).sum(), (wt * y * y).sum()
    sm, smm, smy = (model * wt).sum(-1), (model * model * wt).sum(-1), (model * (wt * y)).sum(-1)
    det = smm * sw - sm * sm
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (smy * sw - sm * sy) / det
        off = (smm * sy - sm * smy) / det
        chi = syy - 2 * a * smy - 2 * off * sy + a * a * smm + 2 * a * off * sm + off * off * sw
    chi = np.where(np.isfinite(chi) & (a > 0), chi, np.inf)
    best = float(np.min(chi))
    if not math.isfinite(best):
        return None
    ib = np.unravel_index(int(np.argmin(chi)), chi.shape)
    per_dof = best / max(len(r) - 4, 1)
    plausible = chi <= best + c.stack_delta_chi2 * per_dof
    cfz = np.broadcast_to((w_waves / WAVES_PER_CFZ)[None, None, :], chi.shape)
    x = np.broadcast_to(8.0 * w_waves[None, None, :] * lambda_n_px / seeings[None, :, None], chi.shape)
    return StackedFit(defocus_cfz=float(w_waves[ib[2]] / WAVES_PER_CFZ), defocus_cfz_low=float(cfz[plausible].min()),
                      blur_to_seeing_low=float(x[plausible].min()), seeing_fwhm_px=float(seeings[ib[1]]),
                      n_stars=stack.n_stars)
