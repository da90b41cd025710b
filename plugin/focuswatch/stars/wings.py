"""The light of the stars' wings beyond the measuring aperture (:class:`WingConfig`): how
much there is, read from the frame's bright lone stars, and every star's half-flux radius
re-read against it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from focuswatch.stars.table import _PIX_HFR2


#: Flux fractions (of the light inside the aperture) at which the curve of growth is also
#: read, so the half-flux radius can be re-read against the light beyond the aperture.
_WING_FRACS = (0.525, 0.55, 0.575, 0.6)
#: the same for the 90 % radius (``outer_r``), so r90/r50 keeps its meaning (a halo)
_WING_FRACS_90 = (0.925, 0.95, 0.975)


@dataclass(frozen=True)
class WingConfig:
    """The light of a star's wings beyond its measuring aperture.

    Seeing (Kolmogorov, intensity ~ r^-11/3) and diffraction by the obstruction and the
    spider vanes (~ r^-3) carry 3-10 % of a small star's light beyond a few FWHM; a
    half-flux radius normalised to the light inside the aperture then reads 3-5 % low.
    The frame's lone stars give the wing's brightness at the aperture's edge per unit of flux
    and its log slope there (:func:`_wing_fit`: a line through the annuli' light against the
    stars' flux whose intercept is the sky the frame's model set too high); a power law
    extrapolates the missing share, ``2 pi R^2 I(R) / (alpha - 2)``. The slope at the edge is
    steeper than far out, so the share is a lower bound (see docs/stars.md for the figures).
    """

    #: fewest bright stars (SNR >= ``min_snr``) to estimate the wings from (fainter lone stars
    #: join the fit too: they pin the sky offset)
    min_stars: int = 3
    min_snr: float = 50.0
    #: fewest lone stars (any flux) for the line and its sky offset (the intercept): with fewer,
    #: the bright stars' own slopes and edge light, their medians (a crowded field of 6 px stars
    #: left 5 lone stars, whose intercept put the share at the 15 % cap, HFR +12 %; 7 lone stars of
    #: a Moffat frame read a share twice the medians' and turned a witnessed 1 CFZ miss to seeing)
    min_sky_stars: int = 12
    #: the line (and its sky offset) only for frames whose typical star has a half-flux radius
    #: (pixel in) of at least this: smaller stars keep the per-star medians. Below it their edge
    #: wing is faint against the sky's noise and the line's intercept makes the share jump frame
    #: to frame (130 mm f/5 in 2.8", r50 1.5 px: 0.012-0.045 on one sky, HFR +6 % on 2 of 15
    #: frames, tests/test_monitor); the medians read 1.5-2.5 px FWHM within 1.3 % (held-out) and
    #: 4-6 px FWHM (r50 >= 2.6 px) is where they read -2.4 to -4.1 %
    line_min_r50_px: float = 2.4
    #: log slope clipped to this range (Kolmogorov 11/3, Airy 3; steeper = no wings)
    alpha_min: float = 3.0
    alpha_max: float = 8.0
    #: the share beyond the aperture at most this (the highest of ``_WING_FRACS`` x 2 - 1)
    max_share: float = 0.15


WING = WingConfig()


def _wing_annuli(stamps: np.ndarray, rr: np.ndarray, R: int) -> dict[str, np.ndarray]:
    """Mean intensity of two annuli at the stamp's edge: (0.6-0.8) and (0.8-1.0) of R-1."""
    rmax = R - 1.0
    a1 = (rr >= 0.6 * rmax) & (rr < 0.8 * rmax)
    a2 = (rr >= 0.8 * rmax) & (rr <= rmax)
    n1 = np.maximum(a1.sum(axis=(1, 2)), 1)
    n2 = np.maximum(a2.sum(axis=(1, 2)), 1)
    i1 = np.where(a1, stamps, 0).sum(axis=(1, 2), dtype=np.float64) / n1
    i2 = np.where(a2, stamps, 0).sum(axis=(1, 2), dtype=np.float64) / n2
    return {"wing_i1": i1, "wing_i2": i2}


def wing_share(flux: np.ndarray, snr: np.ndarray, i1: np.ndarray, i2: np.ndarray, R: int,
               config: WingConfig = WING) -> float:
    """The frame's share of star light beyond the aperture of radius ``R - 1`` (0 if unclear):
    :func:`_wing_shares` of the one sample of every star (the formula is written once)."""
    return float(_wing_shares(flux, snr, i1, i2, R, np.arange(len(flux))[None, :], config)[0])


def wing_sky_excess(flux: np.ndarray, snr: np.ndarray, i1: np.ndarray, i2: np.ndarray, R: int,
                    config: WingConfig = WING) -> float:
    """ADU per pixel by which the sky under the stars was set too high (0 if unclear): minus
    the common intercept of both annuli' light against the stars' flux (:func:`_wing_fit`).
    The sky model of a field of bright stars takes in their faint far wings (sep's mesh cannot
    tell them from sky); subtracted, that light is taken from every star's curve of growth."""
    sky = _wing_fit(flux, snr, i1, i2, R, np.arange(len(flux))[None, :], config)[3]
    return float(sky[0])


def _wing_share_hfr_err(flux: np.ndarray, snr: np.ndarray, i1: np.ndarray, i2: np.ndarray, R: int, share: float,
                        r50: np.ndarray, r_wing: np.ndarray, sky_px2: np.ndarray | float = 0.0,
                        config: WingConfig = WING) -> float:
    """1-sigma error (px) that the wing share's own sampling error puts on the median
    half-flux radius: a seeded bootstrap of :func:`wing_share` (with the ``config`` the share
    was read with: the line or the per-star medians) over the stars it was read from, carried
    through :func:`_reread_half_radius` (with the stars' sky excess ``sky_px2``, held fixed)."""
    if share <= 0 or len(flux) < 2 or not len(r50):
        return 0.0
    rng = np.random.default_rng(0)
    boot = _wing_shares(flux, snr, i1, i2, R, rng.integers(0, len(flux), size=(_WING_BOOTSTRAP, len(flux))), config)
    sigma = float(np.std(boot))
    if not sigma:
        return 0.0
    lo = _reread_half_radius(r50, r_wing, max(share - sigma, 0.0), sky_px2=sky_px2, rmax=R - 1.0)
    hi = _reread_half_radius(r50, r_wing, share + sigma, sky_px2=sky_px2, rmax=R - 1.0)

    def hfr_of(r: np.ndarray) -> float:  # as measure() turns radii into hfr (pixel width out)
        return float(np.nanmedian(np.sqrt(np.maximum(r ** 2 - _PIX_HFR2, 0.01))))

    return 0.5 * abs(hfr_of(hi) - hfr_of(lo))


def wing_usable(flux: np.ndarray, snr: np.ndarray, config: WingConfig = WING) -> np.ndarray:
    """Which stars the wing share is read from: bright enough (``snr >= min_snr``) and with a
    positive, finite flux. Their annuli are not selected on their own values (positive, falling): a
    faint star's wing is in the sky's noise, and keeping only its upward draws biases the share."""
    return (snr >= config.min_snr) & (flux > 0) & np.isfinite(flux)


def _line_points(flux: np.ndarray, i1: np.ndarray, i2: np.ndarray) -> np.ndarray:
    """Stars that are points of the wing line: a positive, finite flux and finite annuli (one
    star's NaN or inf, a bad pixel in its annulus, would otherwise void the whole frame's line)."""
    return (flux > 0) & np.isfinite(flux) & np.isfinite(i1) & np.isfinite(i2)


def _wing_fit(flux: np.ndarray, snr: np.ndarray, i1: np.ndarray, i2: np.ndarray, R: int, idx: np.ndarray,
              config: WingConfig = WING) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The wing's light per unit of aperture flux at 0.7 and 0.9 of the aperture's radius
    (``e1``, ``e2``), whether the sample can tell it (``ok``), and the sky excess (ADU per
    pixel), for each resample: rows ``k`` of ``idx`` (the bootstrap), all at once.

    Every star with a positive flux is one point of ``i = e * flux - sky`` in both annuli:
    a least-squares line per annulus with one intercept common to both (the sky level under a
    star is the same in its two annuli). The slope is the wing of the stars' stacked light,
    each star weighed by its flux (the sky's noise is the same in every annulus, so a faint
    star's wing, lost in the noise, barely counts, while it still pins the intercept). The
    intercept is the sky that the frame's sky model set too high: in a field of bright stars
    their far wings, which sep's mesh takes for sky, lower every annulus by the same amount;
    a ratio or a median of ``i / flux`` reads them low, the line does not. Stars are not
    selected on their annuli' values (a faint star's upward noise draws only would bias it).
    """
    rmax = R - 1.0
    use = _line_points(flux, i1, i2)[idx]
    n = np.count_nonzero(use, axis=1)
    n_good = np.count_nonzero(wing_usable(flux, snr, config)[idx], axis=1)
    f = np.where(use, flux[idx], 0.0)
    a1 = np.where(use, i1[idx], 0.0)
    a2 = np.where(use, i2[idx], 0.0)
    sf, sff = f.sum(axis=1), (f * f).sum(axis=1)
    s1, s2 = a1.sum(axis=1), a2.sum(axis=1)
    sf1, sf2 = (f * a1).sum(axis=1), (f * a2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # normal equations of min sum (i1 - e1 f - c)^2 + (i2 - e2 f - c)^2 over e1, e2, c
        spread = 2.0 * (n - sf * sf / sff)  # 1 / (the intercept's variance per unit residual variance)
        c = (s1 + s2 - (sf1 + sf2) * sf / sff) / spread
        e1 = (sf1 - c * sf) / sff
        e2 = (sf2 - c * sf) / sff
        # a sample of few stars, or of stars of like flux, pins the intercept poorly, and its
        # error moves the wing's level the other way: it is shrunk by c^2 / (c^2 + var c)
        # (kept where it stands out of its own noise, towards none where it does not)
        res = ((np.where(use, a1 - e1[:, None] * f - c[:, None], 0.0) ** 2).sum(axis=1)
               + (np.where(use, a2 - e2[:, None] * f - c[:, None], 0.0) ** 2).sum(axis=1))
        var_c = res / np.maximum(2 * n - 3, 1) / spread
        c = c * c * c / (c * c + var_c)
        # a sky set too high lowers both annuli alike, so taking it back flattens the wing; no
        # star's wing is flatter than alpha_min (diffraction, r^-3): an intercept that would make
        # it so holds a neighbour's light or a sky gradient, not the sky excess, and is held at
        # the line's value of that slope (a crowded field of 6 px stars read its share at the 15 % cap)
        q = (0.9 / 0.7) ** config.alpha_min
        c_floor = (q * sf2 - sf1) / ((q - 1.0) * sf)
        c_floor = np.minimum(c_floor, 0.0)  # it bounds a sky excess; it never makes up a sky too low
        c = np.where(n >= config.min_sky_stars, np.maximum(c, c_floor), 0.0)
    # the wing's level: the flux-weighted median of each star's (i - c) / flux (a star's
    # (i - c) / flux is as much surer as it is brighter, but one odd star, a neighbour's light in
    # its annulus, cannot carry it; flux^2, the line's own weights, let one star of five do so)
    w2 = np.where(use, f, 0.0)
    fs = np.where(use, f, 1.0)
    e1 = _weighted_row_medians((a1 - c[:, None]) / fs, w2)
    e2 = _weighted_row_medians((a2 - c[:, None]) / fs, w2)
    # and the intercept again, as the median of both annuli' residuals (each star once per
    # annulus, unweighted: the many faint stars pin it), shrunk as above, then the level again
    res_both = np.concatenate([a1 - e1[:, None] * f, a2 - e2[:, None] * f], axis=1)
    c = _weighted_row_medians(res_both, np.concatenate([use, use], axis=1).astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(n >= config.min_sky_stars, np.maximum(c * c * c / (c * c + var_c), c_floor), 0.0)
    e1 = _weighted_row_medians((a1 - c[:, None]) / fs, w2)
    e2 = _weighted_row_medians((a2 - c[:, None]) / fs, w2)
    ok = (rmax >= 4) & (n_good >= config.min_stars) & (n > 2) & np.isfinite(c) & (e2 > 0)
    return e1, e2, ok, np.where(ok, -c, 0.0)


def _row_medians(vals: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Median of each row's values where ``ok`` (NaN for a row with none), as ``np.median``
    of those values gives it: the middle one, or the mean of the middle two."""
    if not vals.shape[1]:  # no star in the sample (a field with no lone star)
        return np.full(len(vals), np.nan)
    s = np.sort(np.where(ok, vals, np.inf), axis=1)
    c = np.count_nonzero(ok, axis=1)
    rows = np.arange(len(vals))
    lo = s[rows, np.maximum((c - 1) // 2, 0)]
    hi = s[rows, np.minimum(c // 2, vals.shape[1] - 1)]
    return np.where(c > 0, np.where(c % 2 == 1, lo, (lo + hi) / 2.0), np.nan)


def _weighted_row_medians(vals: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted median of each row: the first value (ascending) at which the running weight
    reaches half the row's weight (NaN for a row without weight)."""
    order = np.argsort(vals, axis=1, kind="stable")
    v = np.take_along_axis(vals, order, axis=1)
    cw = np.cumsum(np.take_along_axis(weights, order, axis=1), axis=1)
    tot = cw[:, -1] if vals.shape[1] else np.zeros(len(vals))
    if not vals.shape[1]:
        return np.full(len(vals), np.nan)
    at = np.argmax(cw >= 0.5 * tot[:, None], axis=1)
    return np.where(tot > 0, v[np.arange(len(vals)), at], np.nan)


def _wing_shares(flux: np.ndarray, snr: np.ndarray, i1: np.ndarray, i2: np.ndarray, R: int, idx: np.ndarray,
                 config: WingConfig = WING) -> np.ndarray:
    """:func:`wing_share` of each resample ``flux[k], snr[k], ...`` for the rows ``k`` of
    ``idx`` (the bootstrap), all at once: the stacked wing of :func:`_wing_fit` at 0.7 and 0.9
    of the aperture's radius, its log slope held in ``[alpha_min, alpha_max]``, and a power
    law from there out, integrated beyond the aperture."""
    rmax = R - 1.0
    if rmax < 4:
        return np.zeros(len(idx))
    r1, r2 = 0.7 * rmax, 0.9 * rmax
    share = np.zeros(len(idx))
    # fewer lone stars than a line needs (min_sky_stars): each bright star's own slope and edge
    # light, their medians (stars whose wing reads positive and falling); the line (its
    # bootstrap sorts every resample) only for the rows that use it
    few = np.count_nonzero(_line_points(flux, i1, i2)[idx], axis=1) < config.min_sky_stars
    if not np.all(few):
        e1, e2, ok, _ = _wing_fit(flux, snr, i1, i2, R, idx[~few], config)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.log(e1 / e2) / math.log(r2 / r1)
        # a wing brighter further out (or none to read) has no slope: the flattest allowed
        alpha = np.clip(np.where(np.isfinite(slope), slope, config.alpha_min), config.alpha_min, config.alpha_max)
        with np.errstate(invalid="ignore"):
            share_l = 2.0 * math.pi * r2 ** 2 * e2 / (alpha - 2.0) * (r2 / rmax) ** (alpha - 2.0)
        share[~few] = np.minimum(np.maximum(np.where(ok & np.isfinite(share_l), share_l, 0.0), 0.0), config.max_share)
    if np.any(few):
        sub = idx[few]
        good = (wing_usable(flux, snr, config) & (i1 > 0) & (i2 > 0) & (i1 > i2))[sub]  # the line's bright stars
        with np.errstate(divide="ignore", invalid="ignore"):
            slope_k = (np.log(i1 / i2) / math.log(r2 / r1))[sub]
            edge_k = (i2 / flux)[sub]
        alpha_f = np.clip(_row_medians(slope_k, good), config.alpha_min, config.alpha_max)
        with np.errstate(invalid="ignore"):
            share_f = 2.0 * math.pi * r2 ** 2 * _row_medians(edge_k, good) / (alpha_f - 2.0) * (r2 / rmax) ** (alpha_f - 2.0)
        share_f = np.minimum(np.maximum(np.where(np.isfinite(share_f), share_f, 0.0), 0.0), config.max_share)
        share[few] = np.where(np.count_nonzero(good, axis=1) >= config.min_stars, share_f, 0.0)
    return share


def _reread_half_radius(r50: np.ndarray, r_wing: np.ndarray, share: float, *, frac: float = 0.5,
                        fracs: tuple[float, ...] = _WING_FRACS, sky_px2: np.ndarray | float = 0.0,
                        rmax: float = 0.0) -> np.ndarray:
    """Half-flux radius when ``share`` (of the aperture flux) lies beyond the aperture: the
    radius holding ``0.5 (1 + share)`` of the aperture's light, interpolated on the curve
    of growth read at ``fracs`` (``frac`` = 0.9 with ``_WING_FRACS_90`` for ``outer_r``;
    capped at the last fraction read).

    ``sky_px2`` (per star: the sky excess of :func:`wing_sky_excess` times pi over the star's
    aperture flux) puts back the light a sky set too high took: the curve of growth then holds
    ``f + sky_px2 r^2`` at the radius ``r`` where it read ``f``, and the aperture (radius
    ``rmax``) ``1 + sky_px2 rmax^2``."""
    sky = np.broadcast_to(np.asarray(sky_px2, np.float64), np.shape(r50))
    if share <= 0 and not np.any(sky):
        return r50
    rad = np.column_stack([r50, r_wing])
    grown = np.array((frac,) + tuple(fracs))[None, :] + sky[:, None] * rad ** 2
    target = np.minimum(frac * (1.0 + share) * (1.0 + sky * rmax ** 2), grown[:, -1])
    j = np.clip(np.count_nonzero(grown <= target[:, None], axis=1) - 1, 0, rad.shape[1] - 2)
    rows = np.arange(len(rad))
    g0, g1 = grown[rows, j], grown[rows, j + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (target - g0) / (g1 - g0)
        out = rad[rows, j] + t * (rad[rows, j + 1] - rad[rows, j])
    return np.where(np.isfinite(out), out, r50)


#: resamples of the bootstrap that gives the wing share's uncertainty on a profiled sample
#: (seeded: the same frame gives the same figures)
_WING_BOOTSTRAP = 64
