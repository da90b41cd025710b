"""From the mask's spike offset (px) to defocus (um): px of offset per um of defocus.

Two models, chosen by the pattern: Bahtinov Grabber's empirical constant for a plain
Bahtinov mask (:func:`grabber_px_per_um`) and a geometric one for the wedge-shaped
sub-apertures of a Tri-Bahtinov (:func:`tri_px_per_um`). Both need the aperture, focal
length and pixel size; a user-calibrated ``px_per_um`` overrides either.
"""
from __future__ import annotations

import math

from focuswatch.optics import Rig


def grabber_px_per_um(rig: Rig, outer_half_angle_deg: float) -> float | None:
    """Bahtinov Grabber's conversion ``(9/32) D/(f pix) (1 + cos45 (1 + tan b))`` in px per um.

    >>> round(grabber_px_per_um(Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=3.76), 20.0), 4)
    0.0294
    """
    d, f, pix = rig.effective_aperture_mm, rig.focal_length_mm, rig.effective_pixel_um
    if not (d and f and pix):
        return None
    b = math.radians(outer_half_angle_deg)
    return (9.0 / 32.0) * d / (f * pix) * (1.0 + math.cos(math.radians(45.0)) * (1.0 + math.tan(b)))


def _wedge_centroid_mm(r1: float, r2: float) -> float:
    """Distance (mm) from the centre of the centroid of a 60 deg wedge of the annulus r1-r2."""
    return (2.0 / math.pi) * (r2 ** 3 - r1 ** 3) / (r2 ** 2 - r1 ** 2)


def tri_px_per_um(rig: Rig, outer_half_angle_deg: float) -> float | None:
    """Middle-spike offset (px) per um of defocus for one sub-mask of a Tri-Bahtinov mask.

    Geometric (ray) model of the usual Tri-Bahtinov layout (C.Y. Tan's design, also the
    Tri-Bahtinov generators built on it; :mod:`focuswatch.sim.mask` renders it): three 120 deg
    sectors; in each, the middle grating fills the 60 deg wedge on one side of the bisector,
    and the other wedge is split at the equal-area radius ``sqrt((R^2 + r_obs^2)/2)`` into an
    inner part and a rim part whose gratings are turned by -+b (the rim one toward the middle
    wedge). Every spike runs through the image of its sub-aperture's centroid, displaced by
    ``-c * defocus / f``; intersecting the outer spikes and measuring the middle one gives::

        k = (r_m/2 + (r_i + r_o)/4 + (sqrt(3)/4) tan(b) (r_o - r_i)) / (f * pixel_um)

    with ``r = (2/pi)(r2^3 - r1^3)/(r2^2 - r1^2)`` the wedges' centroid distances (mm) between
    the obstruction (``rig.obstruction``) and the rim. Against the Fourier-optics simulation
    the measured slope is close to it (docs/bahtinov.md); a calibrated ``px_per_um`` overrides.

    >>> round(tri_px_per_um(Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=3.76, obstruction=0.33), 15.0), 4)
    0.0192
    """
    d, f, pix = rig.effective_aperture_mm, rig.focal_length_mm, rig.effective_pixel_um
    if not (d and f and pix):
        return None
    radius = d / 2.0
    r1 = float(rig.obstruction or 0.0) * radius
    rs = radius * math.sqrt((1.0 + (r1 / radius) ** 2) / 2.0)
    rm, ri, ro = _wedge_centroid_mm(r1, radius), _wedge_centroid_mm(r1, rs), _wedge_centroid_mm(rs, radius)
    c = rm / 2.0 + (ri + ro) / 4.0 + math.sqrt(3.0) / 4.0 * math.tan(math.radians(outer_half_angle_deg)) * (ro - ri)
    return c / (f * pix)
