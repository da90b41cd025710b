"""The dew halo's evidence: how far the stars' wings reach beyond the widest in-focus wings the rig
can give (:func:`halo_excess`).

Kept apart from the focus-versus-seeing call (:mod:`focuswatch.diagnose.profile`): that call fits
the profile shape (HFD/FWHM and r90/r50) with a few seeing families and reads the defocus from
the fit; its leftover r90/r50 (``Evidence.wing_excess``) is measured against the best-fitting family
only. Real seeing has a finite outer scale (von Karman): for the same core its wings reach further
than any Kolmogorov or Moffat family of the focus table holds, and the spider vanes of a Newtonian
add their own diffraction, so that leftover called dew on physical-optics frames with none.

Here the reference is the rig's own: the generated ``wing_reference`` table
(:func:`focuswatch.calibration.wing_reference`, ``scripts/make_calibration.py``) gives the in-focus
r90/r50 of Kolmogorov, von Karman (L0/r0 25-400) and Moffat (beta 2.5-5) seeing over the rig's
pupil (with and without vanes) against the half-light radius in units of lambda N. The ceiling at
the frame's own star size is the widest of those families (defocus only narrows the wings, so the
in-focus star is the ceiling); a halo is what the measured r90/r50 holds beyond it.
"""
from __future__ import annotations

import numpy as np

from focuswatch import calibration
from focuswatch.diagnose.config import DiagnoseConfig
from focuswatch.optics import Rig


def lambda_n_px(rig: Rig) -> float | None:
    """lambda N (the diffraction scale) in pixels of the rig, ``None`` without f-ratio or pixel."""
    n, pix = rig.f_ratio, rig.effective_pixel_um
    if not (n and pix and rig.wavelength_nm):
        return None
    return rig.wavelength_nm / 1000.0 * n / pix


def infocus_wing_ceiling(hlr_lambda_n: float, obstruction: float = 0.0, *,
                         config: DiagnoseConfig | None = None) -> float:
    """The widest in-focus r90/r50 any seeing family of the wing reference gives a star of
    half-light radius ``hlr_lambda_n`` (in lambda N) on a pupil of this obstruction (with or
    without spider vanes: a rig does not say). Von Karman rows with an outer scale below
    ``config.dew_min_outer_scale_over_r0`` r0 are left out (rarer than the halo they would hide).

    >>> round(infocus_wing_ceiling(2.2, 0.0), 2) > round(infocus_wing_ceiling(8.0, 0.0), 2)  # diffraction widens
    True
    """
    c = config or DiagnoseConfig()
    ref = calibration.wing_reference(round(float(obstruction), 2))
    best = -np.inf
    for rows in ref["pupils"].values():
        for i, fam in enumerate(ref["families"]):
            l0 = fam.get("outer_scale_over_r0")
            if l0 is not None and l0 < c.dew_min_outer_scale_over_r0:
                continue
            best = max(best, float(np.interp(hlr_lambda_n, rows["r50"][i], rows["w"][i])))
    return best


def halo_excess(wing_ratio: float | None, hfr_px: float | None, rig: Rig,
                config: DiagnoseConfig | None = None) -> float | None:
    """How much wider (r90/r50 units) the stars' 90 % radius is than the widest in-focus seeing
    star of the same half-flux radius on this rig (:func:`infocus_wing_ceiling`): the dew halo's
    evidence. ``wing_ratio`` is the measured, pixel-corrected r90/r50 (its measurement bias
    ``config.wing_ratio_bias`` is taken out), ``hfr_px`` the true half-flux radius. ``None``
    without either or without the rig's f-ratio and pixel size (the diagnosis then falls back
    on the profile fit's ``wing_excess``)."""
    c = config or DiagnoseConfig()
    ln_px = lambda_n_px(rig)
    if wing_ratio is None or not hfr_px or not ln_px or not np.isfinite(wing_ratio):
        return None
    ceiling = infocus_wing_ceiling(hfr_px / ln_px, rig.obstruction or 0.0, config=c)
    return float(wing_ratio - c.wing_ratio_bias - ceiling)
