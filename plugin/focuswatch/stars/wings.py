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
    The frame's bright stars give the wing's brightness at the aperture's edge and its
    log slope there; a power law extrapolates the missing share, ``2 pi R^2 I(R) / (alpha -
    2)``. The slope at the edge is steeper than far out, so the share is a lower bound.
    """

    #: fewest bright stars (SNR >= ``min_snr``) to estimate the wings from
    min_stars: int = 3
    min_snr: float = 50.0
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


def _wing_share_hfr_err(flux: np.ndarray, snr: np.ndarray, i1: np.ndarray, i2: np.ndarray, R: int, share: float,
                        r50: np.ndarray, r_wing: np.ndarray) -> float:
    """1-sigma error (px) that the wing share's own sampling error puts on the median
    half-flux radius: a seeded bootstrap of :func:`wing_share` over
    the stars it was read from, carried through :func:`_reread_half_radius`."""
    if share <= 0 or len(flux) < 2 or not len(r50):
        return 0.0
    rng = np.random.default_rng(0)
    boot = _wing_shares(flux, snr, i1, i2, R, rng.integers(0, len(flux), size=(_WING_BOOTSTRAP, len(flux))))
    sigma = float(np.std(boot))
    if not sigma:
        return 0.0
    lo = _reread_half_radius(r50, r_wing, max(share - sigma, 0.0))
    hi = _reread_half_radius(r50, r_wing, share + sigma)

    def hfr_of(r: np.ndarray) -> float:  # as measure() turns radii into hfr (pixel width out)
        return float(np.nanmedian(np.sqrt(np.maximum(r ** 2 - _PIX_HFR2, 0.01))))

    return 0.5 * abs(hfr_of(hi) - hfr_of(lo))


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


def _wing_shares(flux: np.ndarray, snr: np.ndarray, i1: np.ndarray, i2: np.ndarray, R: int, idx: np.ndarray,
                 config: WingConfig = WING) -> np.ndarray:
    """:func:`wing_share` of each resample ``flux[k], snr[k], ...`` for the rows ``k`` of
    ``idx`` (the bootstrap), all at once. The log slope of the light between 0.7 and 0.9 of
    the aperture's radius and the light there per unit of aperture flux (medians over the
    good stars) give a power-law wing, integrated out from the aperture."""
    rmax = R - 1.0
    if rmax < 4:
        return np.zeros(len(idx))
    good = ((snr >= config.min_snr) & (flux > 0) & (i1 > 0) & (i2 > 0) & (i1 > i2))[idx]
    r1, r2 = 0.7 * rmax, 0.9 * rmax
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (np.log(i1 / i2) / math.log(r2 / r1))[idx]
        edge_all = (i2 / flux)[idx]
    alpha = np.clip(_row_medians(slope, good), config.alpha_min, config.alpha_max)
    edge = _row_medians(edge_all, good)
    with np.errstate(invalid="ignore"):
        share = 2.0 * math.pi * r2 ** 2 * edge / (alpha - 2.0) * (r2 / rmax) ** (alpha - 2.0)
    share = np.minimum(np.maximum(share, 0.0), config.max_share)
    return np.where(np.count_nonzero(good, axis=1) >= config.min_stars, share, 0.0)


def _reread_half_radius(r50: np.ndarray, r_wing: np.ndarray, share: float, *, frac: float = 0.5,
                        fracs: tuple[float, ...] = _WING_FRACS) -> np.ndarray:
    """Half-flux radius when ``share`` (of the aperture flux) lies beyond the aperture: the
    radius holding ``0.5 (1 + share)`` of the aperture's light, interpolated on the curve
    of growth read at ``fracs`` (``frac`` = 0.9 with ``_WING_FRACS_90`` for ``outer_r``;
    capped at the last fraction read)."""
    if share <= 0:
        return r50
    target = min(frac * (1.0 + share), fracs[-1])
    fr = np.array((frac,) + tuple(fracs))
    rad = np.column_stack([r50, r_wing])
    j = int(min(np.searchsorted(fr, target, side="right") - 1, len(fr) - 2))
    t = (target - fr[j]) / (fr[j + 1] - fr[j])
    out = rad[:, j] + t * (rad[:, j + 1] - rad[:, j])
    return np.where(np.isfinite(out), out, r50)


#: resamples of the bootstrap that gives the wing share's uncertainty on a profiled sample
#: (seeded: the same frame gives the same figures)
_WING_BOOTSTRAP = 64
