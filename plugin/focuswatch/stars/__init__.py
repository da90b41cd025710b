"""Star measurement: the only package that imports ``sep``.

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

How the parts fit, in the order :func:`measure` runs them:

* :mod:`~focuswatch.stars.detect` — sky background and sep's extraction on a
  block-averaged copy; donuts that sep split into pieces or arcs are put back together;
* :mod:`~focuswatch.stars.neighbours` — pairs of nearby detections, their groups and
  each star's nearest neighbours (blends, masking a neighbour's light);
* :mod:`~focuswatch.stars.profile` — full-resolution stamps and the per-star figures:
  centroids, half-flux radii, moments, radial profiles, ring ratios, Moffat fits;
* :mod:`~focuswatch.stars.ringfit` — a model fit of a donut's ring ratio;
* :mod:`~focuswatch.stars.crowded` — donuts that touch: one ring each from a matched
  filter, measured from the part of the ring no neighbour reaches;
* :mod:`~focuswatch.stars.wings` — light beyond the aperture and the re-read radii;
* :mod:`~focuswatch.stars.summary` — frame medians, zones, HFR uncertainty, shape
  reliability (:func:`summarize`, also used on filtered tables);
* :mod:`~focuswatch.stars.measuring` — the pipeline itself (:func:`measure`,
  :func:`measure_array`, :class:`ProfileConfig`, :class:`StarsConfig` — the
  ``[stars]`` table of the settings file);
* :mod:`~focuswatch.stars.table` — the result: :data:`STAR_DTYPE`, :class:`Zone`,
  :class:`FrameStats`.
"""
from __future__ import annotations

from focuswatch.stars import crowded, ringfit
from focuswatch.stars.crowded import CROWDED_RING, CrowdedRingConfig
from focuswatch.stars.detect import GROUP_SPLIT, RING_MERGE, GroupSplitConfig, RingMergeConfig
from focuswatch.stars.measuring import PROFILE, ProfileConfig, StarsConfig, measure, measure_array
from focuswatch.stars.profile import moffat_fwhm
from focuswatch.stars.summary import (MIN_STARS_FOR_STATS, SHAPE, ShapeConfig, elongation_reliable,
                                      hfr_uncertainty_px, summarize)
from focuswatch.stars.table import STAR_DTYPE, FrameStats, Zone
from focuswatch.stars.wings import WING, WingConfig, wing_share

__all__ = [
    "CROWDED_RING", "CrowdedRingConfig", "FrameStats", "GROUP_SPLIT", "GroupSplitConfig", "MIN_STARS_FOR_STATS",
    "PROFILE", "ProfileConfig", "RING_MERGE", "RingMergeConfig", "SHAPE", "STAR_DTYPE", "ShapeConfig", "StarsConfig",
    "WING", "WingConfig", "Zone", "crowded", "elongation_reliable", "hfr_uncertainty_px", "measure", "measure_array",
    "moffat_fwhm", "ringfit", "summarize", "wing_share",
]
