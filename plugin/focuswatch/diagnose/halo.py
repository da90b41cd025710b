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

from typing import Any

import numpy as np

from focuswatch import calibration
from focuswatch.diagnose.config import DiagnoseConfig
from focuswatch.diagnose.profile import wing_ratio_px
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


def inner_halo_excess(stars_table: Any, hfr_px: float | None, rig: Rig,
                      config: DiagnoseConfig | None = None) -> float | None:
    """:func:`halo_excess` of the light inside each star's measuring aperture alone: the median
    pixel-corrected r90/r50 of the stars' ``outer_r_ap`` (their 90 % radius before
    ``stars.measure`` re-reads it against the wing share beyond the aperture) above the same
    ceiling. The night's dew figure (``Evidence.halo_inner``, :func:`night_halo_rise`).

    Why not ``outer_r``: the wing share is read per frame from the edge light of a few bright
    stars (their medians on small-star frames) and is 0 when too few read; r90 re-read at
    ``0.9 (1 + share)`` of the aperture's light moves ~10 r90/r50 units per unit of share.
    On the no-dew tuning nights of ``benchmarks/dew_eval.py --nights`` (seeds 0-5) the share
    carried 70-80 % of ``halo_excess``' frame-to-frame variance (correlation 0.83-0.90, sd
    0.11-0.16 per rig; unread on 8-27 % of frames), while star size (the suspected cause of the
    false dew nights) moved it by only -0.08..-0.27 per unit of ln HFR. Without the re-read
    the figure scatters by 0.05-0.07 and keeps a halo's light inside the aperture.
    ``None`` with fewer than 5 stars measured so (a table without the column: older callers).
    """
    names = getattr(getattr(stars_table, "dtype", None), "names", None) or ()
    if "outer_r_ap" not in names or not hfr_px:
        return None
    ap = np.asarray(stars_table["outer_r_ap"], float)
    ok = np.isfinite(ap) & (ap > 0) & np.isfinite(stars_table["hfr"]) & (stars_table["hfr"] > 0)
    if ok.sum() < 5:
        return None
    c = config or DiagnoseConfig()
    wing = float(np.median(wing_ratio_px(ap[ok], stars_table["hfr"][ok], c.pix_r90_px2)))
    return halo_excess(wing, hfr_px, rig, c)


def night_halo_rise(excess: float | None, witness: Any, config: DiagnoseConfig | None = None,
                    hfr_px: float | None = None, inner: float | None = None) -> float | None:
    """The lasting rise of the night's dew figure over its own reference (``Evidence.halo_rise``).

    The figure is :func:`inner_halo_excess` (``inner``, the light inside the stars' apertures; the
    witness' ``halo_ref_inner`` and ``halo_recent_inner``); ``excess`` is this frame's
    :func:`halo_excess` and ``witness.halo_ref_excess`` the median one of the night's first
    ``config.dew_night_frames`` frames (the site's in-focus r90/r50 on this rig, whatever its vanes
    and seeing kind). The rise is the median ``inner`` over this frame and up to
    ``dew_night_window`` - 1 frames before it, minus the reference frames' median: dew grows over
    hours and lasts, one frame's r90/r50 scatters. ``None`` without a night reference or a figure
    (a witness without the inner figures too: the single-frame call stays), and when the reference
    frames' ``halo_excess`` was already over the single-frame threshold (dew from the start).
    ``hfr_px``: this frame's star HFR (``Evidence.hfr_px``); when the window's median HFR (this
    frame's and ``witness.halo_recent_hfr_px``) is under ``dew_night_min_hfr_ratio`` (> 0) of the
    reference frames' (``witness.halo_ref_hfr_px``) the rise counts at most 0 (a halo never makes
    stars smaller).
    The outer path (``dew_night_outer_*``): a weak halo's light lands mostly beyond the apertures; when
    the same window's median ``excess`` (with ``witness.halo_recent``) minus ``halo_ref_excess`` reaches
    ``dew_night_outer_rise``, the window's stars are not smaller than ``dew_night_outer_min_hfr_ratio``
    of the reference's and the inner rise reaches ``dew_night_outer_confirm``, the rise is at least that
    outer rise on the inner scale (outer / ``dew_night_outer_rise`` x ``dew_night_rise``).

    >>> from types import SimpleNamespace as NS
    >>> w = NS(halo_ref_excess=-0.6, halo_ref_inner=-0.8, halo_recent_inner=(-0.8, -0.6, -0.55, -0.7),
    ...        halo_recent=(-0.6, -0.6, -0.6, -0.6))
    >>> round(night_halo_rise(-0.2, w, inner=-0.5), 2)
    0.2
    >>> w = NS(halo_ref_excess=-0.6, halo_ref_inner=-0.8, halo_recent_inner=(-0.8, -0.7, -0.72, -0.68),
    ...        halo_recent=(-0.3, -0.35, -0.6, -0.25))   # weak halo: outer rise 0.3, inner 0.1
    >>> round(night_halo_rise(-0.2, w, inner=-0.7), 2)
    0.18
    >>> round(night_halo_rise(-0.2, w, DiagnoseConfig(dew_night_outer_rise=0), inner=-0.7), 2)   # outer path off
    0.1
    >>> night_halo_rise(-0.2, NS(halo_ref_excess=0.2, halo_ref_inner=-0.3), inner=-0.3) is None   # dewed from the start
    True
    >>> night_halo_rise(-0.2, NS(halo_ref_excess=-0.6, halo_recent=(-0.3,)), inner=-0.5) is None  # no inner reference
    True
    >>> w = NS(halo_ref_excess=-0.6, halo_ref_inner=-0.8, halo_recent_inner=(-0.5,), halo_ref_hfr_px=2.0,
    ...        halo_recent_hfr_px=(1.6,))
    >>> night_halo_rise(-0.2, w, DiagnoseConfig(dew_night_min_hfr_ratio=0.9), hfr_px=1.5, inner=-0.5)   # stars smaller
    0.0
    """
    c = config or DiagnoseConfig()
    ref = getattr(witness, "halo_ref_excess", None) if witness is not None else None
    ref_in = getattr(witness, "halo_ref_inner", None) if witness is not None else None
    if excess is None or ref is None or not np.isfinite(excess) or ref >= c.dew_halo_excess:
        return None
    if inner is None or ref_in is None or not np.isfinite(inner) or not np.isfinite(ref_in):
        return None
    recent = [float(v) for v in (getattr(witness, "halo_recent_inner", None) or ()) if v is not None and np.isfinite(v)]
    keep = max(0, int(c.dew_night_window) - 1)
    window = (recent[-keep:] if keep else []) + [float(inner)]
    rise = float(np.median(window) - ref_in)
    ref_hfr = getattr(witness, "halo_ref_hfr_px", None)
    sizes = [float(v) for v in (getattr(witness, "halo_recent_hfr_px", None) or ())][-keep:] if keep else []
    sizes = [v for v in sizes + [np.nan if hfr_px is None else float(hfr_px)] if np.isfinite(v) and v > 0]
    # the window's median star size, read once for both size guards (None: no size or no reference size)
    size = float(np.median(sizes)) if sizes and ref_hfr and np.isfinite(ref_hfr) else None
    if c.dew_night_min_hfr_ratio > 0 and size is not None and size < c.dew_night_min_hfr_ratio * ref_hfr:
        return min(rise, 0.0)  # the window's stars clearly smaller than the reference's: better seeing, no halo
    if c.dew_night_outer_rise > 0 and rise >= c.dew_night_outer_confirm:
        # The outer path: the single-frame figure's rise (light beyond the apertures too, where most of
        # a weak halo lands), guarded by star size and confirmed by a small inner rise. Reported on the
        # inner rise's scale, so that ``dew_night_rise`` still decides: outer rise / outer threshold x it.
        old = [float(v) for v in (getattr(witness, "halo_recent", None) or ()) if v is not None and np.isfinite(v)]
        outer = float(np.median((old[-keep:] if keep else []) + [float(excess)]) - ref)
        guarded = bool(c.dew_night_outer_min_hfr_ratio > 0 and size is not None
                       and size < c.dew_night_outer_min_hfr_ratio * ref_hfr)
        if not guarded and outer >= c.dew_night_outer_rise:
            return max(rise, outer / c.dew_night_outer_rise * c.dew_night_rise)
    return rise
