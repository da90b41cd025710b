"""Star measurement: the only module that imports ``sep``.

Pure computation: arrays in, a :class:`FrameStats` out; no files, no clock.

Coordinates follow sep: ``x`` is the fast (column) axis, ``y`` the slow (row) axis, and
``(0, 0)`` is the *centre* of the first pixel. Sizes are in sensor pixels (a Bayer frame
measured on 2x2 superpixels is scaled back by :attr:`Frame.scale_px`).

Two half-flux definitions are kept apart:

* ``hfr_px`` — the true half-flux radius: the radius of the circle holding half of the
  star's flux (SExtractor FLUX_RADIUS), corrected for the pixel's own width;
* ``hfr_nina_px`` — NINA/ASTAP's "HFR": the flux-weighted mean radius ``sum(I*r)/sum(I)``
  over background-subtracted pixels. For a uniform disk of radius R these are R/sqrt(2)
  and 2R/3.

``fwhm_px`` comes from Moffat fits to the radial profiles of bright, unsaturated, isolated
stars (moment-based FWHM is 15-40 % off on real profiles). ``profile_ratio`` is the
half-flux *diameter* over the FWHM: ~1.0 for a Gaussian, 1.17 for Moffat beta=4, 1.36 for
beta=2.5, ~0.71 for a flat defocus disk — it tells a focus miss (flat-topped) from seeing
(peaked, with wings) on a single frame.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from focuswatch.frames import Frame, FrameMeta

#: dtype of the per-star table (:attr:`FrameStats.stars`).
STAR_DTYPE = np.dtype([
    ("x", "f8"), ("y", "f8"),            # sensor pixels, sep convention
    ("flux", "f8"), ("peak", "f8"),      # ADU above background
    ("snr", "f8"),
    ("hfr", "f8"),                       # true half-flux radius, px
    ("hfr_nina", "f8"),                  # flux-weighted mean radius, px
    ("fwhm", "f8"),                      # Moffat FWHM, px (NaN where not fitted)
    ("beta", "f8"),                      # Moffat beta (NaN where not fitted)
    ("a", "f8"), ("b", "f8"),            # second-moment semi-axes, px
    ("theta", "f8"),                     # orientation of the major axis, rad, from +x toward +y
    ("ecc", "f8"),                       # eccentricity sqrt(1 - b^2/a^2)
    ("ring", "f8"),                      # inner/outer radius ratio of a donut, 0 when filled
    ("outer_r", "f8"),                   # outer radius of the star's light (90 % flux), px
])


@dataclass(frozen=True)
class Zone:
    """Medians over the stars of one cell of the 3x3 grid (row 0 = top = low y)."""

    row: int
    col: int
    n_stars: int
    hfr_px: float | None
    fwhm_px: float | None
    eccentricity: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FrameStats:
    """Everything measured on one frame (field names are the ``measure --json`` keys).

    Zero stars is a value, not an exception: ``n_stars = 0`` and ``reason`` says why.
    ``stars`` (the per-star table) is not part of :meth:`to_dict`.
    """

    file: str | None
    n_stars: int
    hfr_px: float | None = None
    hfr_nina_px: float | None = None
    fwhm_px: float | None = None
    eccentricity: float | None = None
    profile_ratio: float | None = None
    ring_ratio: float | None = None
    star_flux_adu: float | None = None
    background_adu: float | None = None
    noise_adu: float | None = None
    width_px: int | None = None
    height_px: int | None = None
    plate_scale_arcsec_px: float | None = None
    hfr_arcsec: float | None = None
    fwhm_arcsec: float | None = None
    zones: tuple[Zone, ...] = ()
    n_detected: int = 0
    n_rejected: Mapping[str, int] = field(default_factory=dict)
    reason: str | None = None
    notes: tuple[str, ...] = ()
    meta: FrameMeta = field(default_factory=FrameMeta)
    stars: np.ndarray = field(default_factory=lambda: np.zeros(0, STAR_DTYPE), repr=False, compare=False)

    def zone_grid(self, key: str = "hfr_px") -> np.ndarray:
        """The 3x3 zone medians of ``key`` as an array (NaN for empty zones)."""
        grid = np.full((3, 3), np.nan)
        for z in self.zones:
            v = getattr(z, key)
            if v is not None:
                grid[z.row, z.col] = v
        return grid

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("stars", "zones", "meta")}
        d["stars"] = self.n_stars
        d["zones"] = [z.to_dict() for z in self.zones]
        d["n_rejected"] = dict(self.n_rejected)
        d["notes"] = list(self.notes)
        d["meta"] = self.meta.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FrameStats":
        names = set(cls.__dataclass_fields__) - {"stars", "zones", "meta", "notes", "n_rejected"}
        kw = {k: v for k, v in d.items() if k in names}
        kw["zones"] = tuple(Zone(**z) for z in d.get("zones", ()))
        kw["meta"] = FrameMeta.from_dict(d.get("meta", {}))
        kw["notes"] = tuple(d.get("notes", ()))
        kw["n_rejected"] = dict(d.get("n_rejected", {}))
        return cls(**kw)
