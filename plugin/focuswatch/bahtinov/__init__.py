"""Bahtinov and Tri-Bahtinov mask analysis: find the diffraction spikes, measure the focus error.

Pure computation: an image array (and the rig) in, a :class:`BahtinovResult` out.

Method
------
1. The brightest star (maximum of a Gaussian-smoothed image) is the origin. Its core is
   masked out (radius from the azimuthal median profile): the spikes are measured where
   they stand apart.
2. A Radon-style scan: every pixel of the background-subtracted, square-root-stretched
   star votes, for each normal angle 0-180 deg in 0.5 deg steps, into a 1 px bin of its
   distance from the star along that normal. A spike through the star piles into one bin;
   the peaks of the best bin against angle are the spikes (3 for a Bahtinov mask; 5 or
   more, or three strongest 60 deg apart, mean a Tri-Bahtinov: see below).
3. Each line is refined on the linear image: perpendicular profiles sampled every pixel
   along the line (both sides of the star) give centroids, and a weighted straight-line
   fit through them (with 3-sigma clipping) corrects angle and offset; twice.
4. The middle spike is the one between the two others. The two outer lines are
   intersected and the signed distance of the middle line from that crossing is the
   offset (px).

Sign convention
---------------
Angles are degrees from +x (the column axis) toward +y (the row axis), sep's coordinates.
The middle spike's normal ``n`` is taken with its angle in (-45, 135] deg: for a roughly
vertical middle spike ``n`` points to +x, for a roughly horizontal one to +y.
``offset_px = rho_middle - n . crossing``: positive when the middle spike lies on the +n
side of the outer spikes' crossing. With the mask as :mod:`focuswatch.sim.mask` renders it
(single-grating half on the -x side of the pupil as mapped onto the image) a positive
offset means the sensor is *beyond* focus (too far out); so ``focus_error_um`` > 0 means
"move the focuser inward". A mask turned by 180 deg, or a camera/diagonal that mirrors
the image, flips the sign: nothing in the spike pattern tells those apart, so check once
(rack the focuser out a little: the advice must say "inward") and set ``reverse``.

Tri-Bahtinov
------------
Three Bahtinov sub-masks in 120 deg sectors: nine spikes, directions ``phi + 60 k`` (the
middles) and ``phi + 60 k +- b``. Why grouping them by the gaps between neighbouring
spikes gave wrong numbers: (a) at ``b = 20`` deg all nine are evenly spaced, and any ``b``
makes the same nine directions as ``60 - b`` with the outer spikes handed to the
neighbouring sub-mask; (b) the canonical normal above, chosen line by line, flips the sign
of one of the three sub-masks (their normals are 120 deg apart, not 180); (c) spikes only
``b`` apart were followed from where the 60-deg-apart middles separate, so their profiles
overlapped and the faint rim-grating spikes were pulled toward the bright middles (or lost
in the angle scan). Now: the middles' direction comes from the three strongest spikes, the
half-angle from the angle scan summed over all six outer positions, all nine predicted
spikes are traced from where neighbours separate, on a sloped local background
(:func:`_retrace_tri`); :func:`_group_triplets` assigns them (brightness decides the
middles when the geometry cannot: the middle grating has twice the area of each outer
one); each sub-mask's offset is counted along its own normal, the three normals
``phi0 + 120 k`` with ``phi0`` in [-30, 30) deg. With :mod:`focuswatch.sim.mask`'s layout
at ``rotation_deg`` within +-30 deg a positive offset means beyond focus; a pattern turned
by 60 deg is the same nine lines with the opposite sign (``reverse``). The focus error is
the mean of the three sub-masks', their spread (max - min) the collimation/tilt hint:
miscollimation or astigmatism makes the parts of the pupil focus at different depths.

Conversion
----------
Bahtinov Grabber's empirical constant (design.md section 5)::

    k [px/um] = (9/32) * D / (f * pixel_um) * (1 + cos 45 deg * (1 + tan b))

with ``b`` half the angle between the outer spikes (measured). Against the Fourier-optics
simulation of :mod:`focuswatch.sim.mask` (200 mm f/5, eps 0.33, 3.76 um pixels, b = 20 deg,
broadband 420-680 nm) see docs/bahtinov.md for the measured slope; a user-calibrated
``px_per_um`` overrides the formula. A Tri-Bahtinov's sub-masks use the geometric
:func:`tri_px_per_um` (their sub-apertures are wedges, not half and quarter disks).
"In focus" means ``|error| <= CFZ / 2``.

Parts
-----
The package is pure computation, one module per step (an image array and the rig in, a
result out; reading the file is :func:`focuswatch.io.frames.load`'s job, in ``focuswatch
bahtinov``):

- :mod:`~focuswatch.bahtinov.analysis`: :func:`analyze`, the entry point running the steps below;
- :mod:`~focuswatch.bahtinov.spikes`: the star, its core, the angle scan and the line fits (steps 1-3);
- :mod:`~focuswatch.bahtinov.geometry`: lines as (normal, rho), crossings, the middle spike's offset (step 4);
- :mod:`~focuswatch.bahtinov.tri`: grouping and measuring a Tri-Bahtinov's three sub-masks;
- :mod:`~focuswatch.bahtinov.conversion`: px of offset per um of defocus, from the mask and the rig;
- :mod:`~focuswatch.bahtinov.focus`: focus error, critical focus zone and the advice;
- :mod:`~focuswatch.bahtinov.result`: :class:`BahtinovResult` and its text (:func:`result_text`).
"""
from __future__ import annotations

from focuswatch.bahtinov.analysis import analyze
from focuswatch.bahtinov.config import BAHTINOV, BahtinovConfig
from focuswatch.bahtinov.conversion import grabber_px_per_um, tri_px_per_um
from focuswatch.bahtinov.result import BahtinovResult, SpikeLine, Triplet, result_text
from focuswatch.bahtinov.spikes import SCAN_STEP_DEG
from focuswatch.bahtinov.tri import (TRI_HALF_WIDTH, TRI_RAMP, TRI_SCAN_FRAC, TRI_SPREAD_CFZ, TRI_T_CAP, TRI_T_FACTOR,
                                     TRI_TIE_DEG, TRI_TOL_DEG)
from focuswatch.errors import BahtinovError  # raised here, importable from here

__all__ = [
    "BAHTINOV",
    "BahtinovConfig",
    "BahtinovError",
    "BahtinovResult",
    "SCAN_STEP_DEG",
    "SpikeLine",
    "TRI_HALF_WIDTH",
    "TRI_RAMP",
    "TRI_SCAN_FRAC",
    "TRI_SPREAD_CFZ",
    "TRI_TIE_DEG",
    "TRI_TOL_DEG",
    "TRI_T_CAP",
    "TRI_T_FACTOR",
    "Triplet",
    "analyze",
    "grabber_px_per_um",
    "result_text",
    "tri_px_per_um",
]
