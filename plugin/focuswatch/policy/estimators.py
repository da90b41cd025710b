"""The statistics behind the rules: baselines, the drift model, trends, scatter and significance.

Pure numerical estimators over HFR ratios (a frame's HFR over the expected in-focus HFR):
the per-filter :class:`Baseline`, the thermal-drift model (:func:`fit_drift`, the seeing-plus-
defocus growth curves of :mod:`focuswatch.optics`), the Theil-Sen :func:`fit_trend`, the
frame-to-frame jitter, the profile (HFD/FWHM) change and the significance bars (Student's t for a
scatter measured on few frames, :func:`drift_bar` for the frame cadence). The rules in
:mod:`focuswatch.policy.rules` only compare their results with the settings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from astropy.stats import mad_std

from focuswatch import optics
from focuswatch.model.numerics import finite_median as _median
from focuswatch.policy.baseline import AIRMASS_EXPONENT, MEDIAN_SE_FACTOR
from focuswatch.policy.config import PolicyConfig
from focuswatch.policy.records import FrameRecord


@dataclass(frozen=True)
class Baseline:
    """The in-focus reference of one filter: medians over the first frames after an autofocus.

    ``jitter_pct`` is the scatter of their HFR in % (``None`` with fewer than 3 frames).
    """

    filter_name: str | None
    n_frames: int
    complete: bool
    hfr_px: float
    fwhm_px: float | None
    profile_ratio: float | None
    n_stars: float
    flux_per_s: float | None
    eccentricity: float | None
    airmass: float | None
    jitter_pct: float | None


@dataclass(frozen=True)
class Trend:
    """A robust straight line through the HFR ratios (HFR / expected in-focus HFR) vs time.

    ``slope_per_min`` in ratio per minute; ``predicted``/``predicted_low`` at ``lookahead_min``
    after the newest frame; ``sigma`` the robust scatter of the ratios around the line.
    """

    n_frames: int
    slope_per_min: float
    slope_z: float
    predicted: float
    predicted_low: float
    sigma: float
    lookahead_min: float


@dataclass(frozen=True)
class DriftFit:
    """The thermal-drift model fitted to the HFR ratios since the autofocus.

    Model: the defocus grows linearly in time from the first frame after the autofocus
    (a steady cooling rate times the focus coefficient), and every frame's HFR is the exact
    seeing-plus-defocus model of it, ``ratio_i = level * g(defocus_i)``, with multiplicative
    seeing jitter ``sigma``. ``level`` (the true in-focus ratio against the baseline) is
    fitted too, so a baseline that happened to be taken in good seeing does not look like
    drift. ``defocus_um`` is at the newest frame, ``predicted_um`` ``lookahead_min`` later,
    ``predicted_low_um`` its lower bound at ``confidence_z``. ``z`` is the significance of
    the growth against "no drift" (root of the likelihood ratio, in sigmas); ``dof`` the
    degrees of freedom of ``sigma`` (frames - 2, plus the night's when its scatter was pooled in).
    ``slope_z`` is the significance of a straight-line rise of ln HFR over the same frames, with
    the same ``sigma``: the witness of a drift that began before the first frame (a filter's
    frames already out of focus, where the growth is no longer the flat start of the curve the
    model assumes from zero, issue 13's second real drift). ``span_min`` is the time from the
    model's origin (the first frame since the autofocus, or the later onset) to the newest frame: ``defocus_um /
    span_min`` is the fitted rate. ``slope_per_h`` is the straight line's rise (ln HFR per hour).
    ``onset_min`` is when the model's drift began, in minutes after the first frame: 0 unless a later
    candidate onset (:func:`fit_drift`'s ``onsets``) explains the growth better; ``z_af`` is then the
    growth's significance with the onset at the autofocus (``None``: the same as ``z``).
    """

    n_frames: int
    defocus_um: float
    predicted_um: float
    predicted_low_um: float
    level: float
    sigma: float
    z: float
    dof: int
    lookahead_min: float
    slope_z: float = 0.0
    span_min: float = 0.0
    slope_per_h: float = 0.0
    onset_min: float = 0.0
    z_af: float | None = None


@lru_cache(maxsize=8)
def _growth_curve(obstruction: float) -> tuple[np.ndarray, np.ndarray]:
    """(blur diameter / in-focus HFR, ln HFR growth) of the optics model, for vectorised fits."""
    u = np.linspace(0.0, 1.0, 241)
    x = 24.0 * u * u                                     # fine near focus, where it matters
    g = np.array([optics.hfr_px_for_blur(float(b), 1.0, obstruction) for b in x])
    return x, np.log(np.maximum.accumulate(g))


#: The share of the theoretical flattening of HFD/FWHM that ``stars.measure`` reports (its
#: Moffat-fit FWHM on pixel-sampled stars sees ~3/4 of it: measured on rendered frames of a
#: 130 mm f/5, 1.19"/px rig, 0.25-1 CFZ). Erring low only makes the profile count for less.
PROFILE_RESPONSE = 0.75


@lru_cache(maxsize=8)
def _profile_curve(obstruction: float) -> tuple[np.ndarray, np.ndarray]:
    """(blur diameter / in-focus HFR, ln of HFD/FWHM relative to in focus) of the optics model.

    :func:`optics.defocused_star` at each node (seeing Moffat convolved with the defocus
    annulus; FWHM twice the outermost half-maximum radius). Computed once per obstruction.
    """
    nodes = np.concatenate([np.linspace(0.0, 4.0, 17), np.linspace(5.0, 24.0, 12)])
    ratio = np.empty_like(nodes)
    for i, b in enumerate(nodes):
        star = optics.defocused_star(float(b), obstruction, n=256, margin=10.0)
        ratio[i] = star["r50"] / (star["fwhm"] / 2.0)
    rel = np.minimum.accumulate(ratio / ratio[0])                   # monotonic: flatter with defocus
    return nodes, np.log(1.0 - PROFILE_RESPONSE * (1.0 - rel))


@lru_cache(maxsize=64)
def _physical_profile_curve(h0_lambda_n: float, obstruction: float) -> tuple[np.ndarray, np.ndarray]:
    """(blur diameter / in-focus HFR, ln of HFD/FWHM relative to in focus) of physical optics.

    From the calibration's profile table (``scripts/make_calibration.py``: Kolmogorov seeing over
    the obstructed pupil's defocused diffraction, FWHM as the Moffat fit ``stars.measure`` makes):
    twice the half-light radius over that FWHM against blur / seeing FWHM, for the seeing whose
    in-focus star is ``h0_lambda_n`` lambda N. Why not :func:`_profile_curve` (geometric Moffat,
    ``PROFILE_RESPONSE``): where diffraction is a fair part of the star the profile barely
    flattens before ~1 CFZ (GalSim, 200 mm f/5 in 2.5": HFD/FWHM -0.01 to -0.02 at 0.7 zone, the
    Moffat curve -0.06), so the fit read the unmoved profile as evidence against the defocus the
    HFR showed and the model lagged.
    """
    from focuswatch import calibration

    s = calibration.seeing_for_hlr(h0_lambda_n, obstruction)
    tab = calibration.profile_table(obstruction)
    names = [f["name"] for f in tab["families"]]
    xs = np.asarray(tab["xs"], float)

    def rel(name: str) -> np.ndarray:
        k = names.index(name)
        r = 2.0 * np.asarray(tab["r50"][k], float) / np.asarray(tab["fit"][k], float)
        return np.log(r / r[0])

    # the table's physical families (Kolmogorov over the pupil, finite seeing ``s``), in s order:
    # generated data (scripts/make_calibration.py), interpolated in log s, clamped at both ends
    fam = sorted((float(f["s"]), f["name"]) for f in tab["families"]
                 if f.get("kind") == "kolmogorov" and f.get("s") is not None)
    if s <= fam[0][0]:
        curve = rel(fam[0][1])
    elif s >= fam[-1][0]:
        curve = rel(fam[-1][1])
    else:
        j = int(np.searchsorted([f[0] for f in fam], s)) - 1
        t = math.log(s / fam[j][0]) / math.log(fam[j + 1][0] / fam[j][0])
        curve = (1.0 - t) * rel(fam[j][1]) + t * rel(fam[j + 1][1])
    # x here is blur / in-focus HFR; the table's is blur / seeing FWHM (both in lambda N)
    return xs * s / h0_lambda_n, curve


def physical_profile(hfr0_px: float, f_ratio: float, pixel_um: float, obstruction: float,
                     wavelength_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """The drift fit's profile curve for a rig (:func:`_physical_profile_curve`, cached per in-focus size)."""
    h0 = hfr0_px * pixel_um / (wavelength_nm / 1000.0 * f_ratio)
    h0 = max(0.01, round(h0, 2))
    return _physical_profile_curve(h0, round(float(obstruction), 3))


@lru_cache(maxsize=1024)
def critical_z(z: float, dof: float) -> float:
    """``z`` (a one-sided normal quantile) turned into Student's t for a scatter with ``dof`` degrees
    of freedom: a jitter measured on few frames is not trusted as if it were known."""
    from scipy.stats import norm, t as student_t

    if dof <= 0 or not math.isfinite(dof):
        return z
    return float(student_t.ppf(norm.cdf(z), dof))


def prepare(obstruction: float = 0.0) -> None:
    """Build what a night's first drift fit would otherwise wait for: scipy.stats (for
    :func:`critical_z`) and the optics model's growth curve for this obstruction. About 1.5 s on a
    2-core machine, paid by the third frame of a night (the first with a fit) unless the watcher
    calls this at start-up."""
    critical_z(3.0, 4.0)
    _growth_curve(round(float(obstruction), 2))


def _rss(y: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Residual sum of squares for each row of ``model`` with the level (mean) fitted."""
    resid = y[None, :] - model
    resid -= resid.mean(axis=1, keepdims=True)
    return np.sum(resid ** 2, axis=1)


def fit_drift(times_min: Sequence[float], ratios: Sequence[float], *, um_per_blur: float, obstruction: float,
              lookahead_min: float, z: float, sigma_floor: float, prior_dof: float = 0.0,
              profiles: Sequence[float | None] | None = None, profile_floor: float = 0.005,
              level_prior: tuple[float, float] | None = None,
              sigma_prior: tuple[float, float] | None = None,
              profile_curve: tuple[np.ndarray, np.ndarray] | None = None,
              profile_sigma_prior: tuple[float, float] | None = None,
              onsets: Sequence[float] = (), min_onset_frames: int = 5,
              onset_min_gain: float = 0.0) -> DriftFit | None:
    """Fit :class:`DriftFit` to HFR ratios (and HFD/FWHM) at ``times_min`` (minutes since the first frame).

    ``um_per_blur`` converts a blur diameter in units of the in-focus HFR to defocus in µm
    (``N * pixel_um * hfr0_px``). The defocus at the newest frame is found on a grid; for
    each, the in-focus levels are fitted by least squares. The HFR scatter is the fit's
    residual standard deviation, never below ``sigma_floor`` (fraction), with ``prior_dof``
    extra degrees of freedom for that prior. ``profiles`` (HFD/FWHM per frame, ``None``
    where not measured) add the flattening of the profile as a second, seeing-insensitive
    witness of the same defocus (scatter never below ``profile_floor``): the two are fitted
    jointly, each weighted by its own scatter. ``level_prior`` = (ln level, its sigma) is an
    independent estimate of the in-focus level (:class:`~focuswatch.policy.baseline.Reference`):
    frames that were already out of focus when the baseline was taken then count as defocus,
    and the fit does not trade the growth for a lower level (the lag of the first release:
    -51 % at the request on a physical-optics night). Returns ``None`` with fewer than 3
    frames or no time span. ``sigma_prior`` = (scatter, its degrees of freedom) measured over
    the whole night is pooled with the fit's residual scatter (both weighted by their degrees
    of freedom; ``dof`` then counts both), so a few long exposures since the autofocus are
    judged against a scatter known to the night's precision. ``profile_curve`` = (blur diameter /
    in-focus HFR, ln HFD/FWHM relative to in focus) is the profile's expected flattening
    (:func:`physical_profile` for a rig; default the geometric Moffat :func:`_profile_curve`).
    ``profile_sigma_prior`` = (scatter of ln HFD/FWHM, its degrees of freedom) over the whole night
    is pooled with the profile fit's residual scatter, as ``sigma_prior`` is for the HFR: a few
    frames' residuals alone can read the profile several times steadier than it is.
    ``onsets`` (fractions of the time since the first frame) are later origins the same model is
    also fitted from, each with at least ``min_onset_frames`` frames after it: a drift that began
    after an in-focus stretch, which the model from the first frame reads diluted (too low a
    defocus, -24 % median on GalSim nights with 3 in-focus hours first). The onset with the largest
    growth z is kept (``onset_min``) when its chi-square beats the first frame's by ``onset_min_gain``
    (the onset is one more fitted number); its z is never below the first frame's (``z_af``), whose
    scatter, taken from the first frame's fit, all onsets share. A handful of fixed fractions, not
    every frame: the cost stays a few fits per frame on a night of 60 s subs.

    >>> t = [0, 10, 20, 30, 40, 50, 60, 70]
    >>> r = [float(np.exp(np.interp(0.2 * i / 7 * 5, *_growth_curve(0.0)))) for i in range(8)]
    >>> f = fit_drift(t, r, um_per_blur=25.0, obstruction=0.0, lookahead_min=0, z=2, sigma_floor=0.01)
    >>> round(f.defocus_um, 0), f.z > 3
    (25.0, True)
    """
    t = np.asarray(times_min, dtype=float)
    y = np.log(np.asarray(ratios, dtype=float))
    n = len(t)
    t_now = float(t.max()) if n else 0.0
    if n < 3 or t_now <= 0 or um_per_blur <= 0:
        return None
    obstruction = round(float(obstruction), 2)
    xs, lg = _growth_curve(obstruction)
    grid = xs[xs <= 20.0]
    x = grid[:, None] * np.clip(t / t_now, 0.0, None)[None, :]        # (grid, frames)
    rss_h = _rss(y, np.interp(x, xs, lg))
    dof = n - 2
    k_h = int(np.argmin(rss_h))
    if sigma_prior is not None and sigma_prior[1] > 0:
        pooled = (float(rss_h[k_h]) + sigma_prior[1] * sigma_prior[0] ** 2) / (max(dof, 0) + sigma_prior[1])
        sigma = max(sigma_floor, math.sqrt(pooled))
        dof = max(dof, 0) + int(sigma_prior[1])
    else:
        sigma = max(sigma_floor, math.sqrt(float(rss_h[k_h]) / dof) if dof > 0 else 0.0)
    p_ok: np.ndarray | None = None
    lp = s_p = None
    if profiles is not None:
        p = np.array([np.nan if v is None else float(v) for v in profiles])
        ok = np.isfinite(p) & (p > 0)
        if ok.sum() >= 3:
            px, pl = profile_curve if profile_curve is not None else _profile_curve(obstruction)
            p_ok, lp = ok, np.log(p[ok])
            rss_p = _rss(lp, np.interp(x[:, ok], px, pl))
            k_p = int(np.argmin(rss_p))
            dof_p = max(int(ok.sum()) - 2, 1)
            if profile_sigma_prior is not None and profile_sigma_prior[1] > 0:
                var_p = (float(rss_p[k_p]) + profile_sigma_prior[1] * profile_sigma_prior[0] ** 2) \
                    / (dof_p + profile_sigma_prior[1])
            else:
                var_p = float(rss_p[k_p]) / dof_p
            s_p = max(profile_floor, math.sqrt(var_p))

    def chi2_of(xx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """chi2 of every grid defocus for the blur diameters ``xx`` (grid, frames), and the fitted ln level."""
        level_log: np.ndarray | None = None
        if level_prior is not None and level_prior[1] > 0 and math.isfinite(level_prior[0]):
            c0, w_p = float(level_prior[0]), 1.0 / float(level_prior[1]) ** 2
            resid = y[None, :] - np.interp(xx, xs, lg)
            w = 1.0 / sigma ** 2
            level_log = (resid.sum(axis=1) * w + c0 * w_p) / (n * w + w_p)
            c2 = np.sum((resid - level_log[:, None]) ** 2, axis=1) * w + (level_log - c0) ** 2 * w_p
        else:
            c2 = _rss(y, np.interp(xx, xs, lg)) / sigma ** 2
        if p_ok is not None and lp is not None and s_p is not None:
            c2 = c2 + _rss(lp, np.interp(xx[:, p_ok], px, pl)) / s_p ** 2
        return c2, level_log

    chi2, level_log = chi2_of(x)
    k = int(np.argmin(chi2))
    gain = gain_af = float(chi2[0] - chi2[k])
    t_on = 0.0
    # later onsets (a drift that began after the autofocus: the air started cooling an hour later):
    # the same model from fixed fractions of the span on, the best taken. Onset 0 is the model
    # above, so the growth's z is never lower; "no drift" (grid 0) is the same row for every onset
    for frac in onsets:
        t_c = float(frac) * t_now
        if not 0.0 < t_c < t_now or int(np.sum(t > t_c)) < min_onset_frames:
            continue
        x_c = grid[:, None] * np.clip((t - t_c) / (t_now - t_c), 0.0, None)[None, :]
        c2, lv = chi2_of(x_c)
        k_c = int(np.argmin(c2))
        if float(c2[0] - c2[k_c]) > max(gain, gain_af + onset_min_gain):
            chi2, level_log, k, gain, t_on, x = c2, lv, k_c, float(c2[0] - c2[k_c]), t_c, x_c
    zz = math.sqrt(max(0.0, gain))
    level = float(np.exp(level_log[k] if level_log is not None else np.mean(y - np.interp(x[k], xs, lg))))
    span = t_now - t_on
    scale = (span + max(lookahead_min, 0.0)) / span
    zc = critical_z(z, dof + prior_dof)
    inside = np.nonzero(chi2 - chi2[k] <= zc * zc)[0]
    x_low = float(grid[inside[0]]) if len(inside) else float(grid[k])
    x_hat = float(grid[k])
    # the straight line's own residuals (pooled with the night's scatter as above): a drift that
    # does not start at zero is a misfit of the curve, not seeing jitter, and must not blunt it
    sxx = float(np.sum((t - t.mean()) ** 2))
    slope_z = slope = 0.0
    if sxx > 0:
        slope = float(np.sum((t - t.mean()) * (y - y.mean()))) / sxx
        rss_l = float(np.sum((y - y.mean() - slope * (t - t.mean())) ** 2))
        if sigma_prior is not None and sigma_prior[1] > 0:
            s_l = math.sqrt((rss_l + sigma_prior[1] * sigma_prior[0] ** 2) / (n - 2 + sigma_prior[1]))
        else:
            s_l = math.sqrt(rss_l / (n - 2)) if n > 2 else 0.0
        slope_z = slope / (max(sigma_floor, s_l) / math.sqrt(sxx))
    return DriftFit(n, x_hat * um_per_blur, x_hat * scale * um_per_blur, x_low * scale * um_per_blur, level, sigma,
                    zz, dof, lookahead_min, slope_z, span, 60.0 * slope, t_on,
                    math.sqrt(max(0.0, gain_af)) if t_on > 0 else None)


def baseline_for(history: Sequence[FrameRecord], filter_name: str | None,
                 config: PolicyConfig) -> Baseline | None:
    """The baseline of ``filter_name`` from the accepted frames since the autofocus (``None`` if none)."""
    frames = [f for f in history if f.filter_name == filter_name and f.has_size]
    frames = frames[:config.baseline_frames]
    if not frames:
        return None
    hfr = _median([f.hfr_px for f in frames])
    assert hfr is not None
    jitter = None
    if len(frames) >= 3:
        jitter = 100.0 * float(np.std([f.hfr_px for f in frames], ddof=1)) / hfr
    return Baseline(filter_name, len(frames), len(frames) >= config.baseline_frames, hfr,
                    _median([f.fwhm_px for f in frames]), _median([f.profile_ratio for f in frames]),
                    float(np.median([f.n_stars for f in frames])), _median([f.flux_per_s for f in frames]),
                    _median([f.eccentricity for f in frames]), _median([f.airmass for f in frames]), jitter)


def expected_hfr_px(base: Baseline, frame: FrameRecord, config: PolicyConfig) -> float:
    """In-focus HFR expected for ``frame``: the baseline, scaled by airmass**0.6 when known."""
    if config.airmass_correction and base.airmass and frame.airmass and base.airmass > 0:
        return base.hfr_px * (frame.airmass / base.airmass) ** AIRMASS_EXPONENT
    return base.hfr_px


def fit_trend(times_min: Sequence[float], ratios: Sequence[float], *, lookahead_min: float,
              z: float, sigma_floor: float) -> Trend:
    """Theil-Sen line through ``ratios`` against ``times_min`` (0 = the newest frame).

    Theil-Sen (the median of pairwise slopes) shrugs off a bad frame or two; the scatter
    around the line (1.4826 x MAD, inflated for small samples, never below
    ``sigma_floor``) gives the standard error of the line at ``lookahead_min`` with the
    ordinary least-squares formula ``sigma * sqrt(1/n + (t - mean t)^2 / Sxx)``.

    >>> t = fit_trend([-40, -30, -20, -10, 0], [1.0, 1.02, 1.04, 1.06, 1.08], lookahead_min=10, z=2, sigma_floor=0.01)
    >>> round(t.slope_per_min, 4), round(t.predicted, 3)
    (0.002, 1.1)
    """
    from scipy.stats import theilslopes

    t = np.asarray(times_min, dtype=float)
    r = np.asarray(ratios, dtype=float)
    n = len(t)
    res = theilslopes(r, t)
    slope, intercept = float(res[0]), float(res[1])
    resid = r - (intercept + slope * t)
    mad = float(mad_std(resid))
    if n > 2:
        mad *= math.sqrt(n / (n - 2.0))
    sigma = max(mad, sigma_floor)
    sxx = float(np.sum((t - t.mean()) ** 2))
    pred = intercept + slope * lookahead_min
    se = sigma * math.sqrt(1.0 / n + ((lookahead_min - t.mean()) ** 2 / sxx if sxx > 0 else 0.0))
    slope_z = slope / (sigma / math.sqrt(sxx)) if sxx > 0 else 0.0
    return Trend(n, slope, slope_z, pred, pred - z * se, sigma, lookahead_min)


def frame_jitter(ratios: Sequence[float], floor: float, prior_dof: float) -> tuple[float, float]:
    """(frame-to-frame seeing jitter as a fraction, its degrees of freedom).

    From the differences of successive frames (about their median, so a steady drift does
    not count), with the largest one dropped (so a single step in focus does not count
    either): their RMS over sqrt 2. Never below ``floor``; ``prior_dof`` degrees of freedom
    are added for that prior. With fewer than 4 frames: the floor alone.
    """
    r = np.log(np.asarray([x for x in ratios if x and x > 0], dtype=float))
    if len(r) < 4:
        return floor, prior_dof
    d = np.diff(r)
    d = np.sort(np.abs(d - np.median(d)))[:-1]
    sd = math.sqrt(float(np.mean(d ** 2)) / 2.0)
    return max(floor, sd), len(d) - 1 + prior_dof


def reference_z_of(log_excess: Sequence[float], ref_sigma: float, jitter: float) -> tuple[float, float]:
    """(mean ln(HFR / reference) of the frames, its significance in sigmas).

    The frames' jitter averages down over their number; the reference's own scatter does not.
    """
    m = float(np.mean(log_excess))
    se = math.sqrt(jitter ** 2 / len(log_excess) + ref_sigma ** 2)
    return m, m / se


#: Frames whose HFD/FWHM is compared with the baseline's for the profile corroboration.
PROFILE_RECENT_FRAMES = 3


def profile_change(same: Sequence[FrameRecord], base: Baseline,
                    config: PolicyConfig) -> tuple[float | None, float | None]:
    """(drop of HFD/FWHM, its standard error): baseline minus the median of the recent frames.

    Defocus flattens the profile (HFD/FWHM falls from ~1.2 toward 0.7), seeing only scales
    it (and worse seeing even peaks it a little), so a drop corroborates HFR growth as
    focus. ``None`` when the baseline or most recent frames lack the profile.
    """
    if base.profile_ratio is None:
        return None, None
    recent = [f.profile_ratio for f in same[-PROFILE_RECENT_FRAMES:]]
    have = [p for p in recent if p is not None and math.isfinite(p)]
    if len(have) < min(2, len(recent)) or not have:
        return None, None
    drop = base.profile_ratio - float(np.median(have))
    allp = np.array([p for p in [f.profile_ratio for f in same] if p is not None and math.isfinite(p)])
    sd = float(np.std(np.diff(allp), ddof=1)) / math.sqrt(2.0) if len(allp) >= 4 else 0.0
    sd = max(config.profile_floor, sd)
    se = MEDIAN_SE_FACTOR * sd * math.sqrt(1.0 / len(have) + 1.0 / max(base.n_frames, 1))
    return drop, se


def drift_bar(config: PolicyConfig, cadence_min: float) -> float:
    """``drift_z`` for frames every ``cadence_min`` minutes: the same false alarms per hour.

    ``drift_z`` is the bar for a frame every ``drift_z_cadence_s``; the policy looks once per
    frame, so with 5-10 minute subs it looks 5-10 times less often in an hour and each look may
    take a 5-10 times larger false-alarm chance (one-sided normal tail) for the same rate per
    night. Never raised for faster frames (the bar of the first release stays the strictest).
    """
    ref_s = config.drift_z_cadence_s
    if ref_s <= 0 or cadence_min * 60.0 <= ref_s:
        return config.drift_z
    from scipy.stats import norm

    return float(min(config.drift_z, norm.isf(min(0.5, norm.sf(config.drift_z) * cadence_min * 60.0 / ref_s))))


def slope_critical_z(zc: float) -> float:
    """The bar for the straight-line witness when the model's own test is ``zc``.

    Two tests on the same frames, either may fire: each at half the false-alarm rate of one
    (Bonferroni), so the pair never asks more often on pure jitter than 1.5 x the model alone.
    The drift rule no longer applies it (policy3): on the same frames the two statistics are
    nearly equal, so the pair asks about as often as the line alone at its per-hour bar.
    """
    from scipy.stats import norm

    return float(norm.isf(norm.sf(zc) / 2.0))
