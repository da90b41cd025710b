"""Evidence: the figures of one frame's stars that a verdict rests on.

``_evidence`` reads a measured frame's per-star table (and its pixels, when given) into an
:class:`Evidence`: the sizes against the rig's in-focus size (:func:`expected_fwhm_px`,
:func:`expected_hfr_px`), the profile figures, the shapes and the field map
(:mod:`focuswatch.diagnose.shape`) and the donuts; ``_defocus`` gives the blur and the
defocus by the best method at hand (donuts, a post-autofocus baseline, else the profile
shape through :mod:`focuswatch.diagnose.profile`). Nothing here decides:
:mod:`focuswatch.diagnose.scores` does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.stats import mad_std

from focuswatch import optics
from focuswatch import calibration
from focuswatch.diagnose.config import DiagnoseConfig
from focuswatch.diagnose.figures import _r
from focuswatch.diagnose.halo import halo_excess, inner_halo_excess, lambda_n_px, night_halo_rise
from focuswatch.diagnose.profile import (KOLMOGOROV_HLR_PER_FWHM, StackedFit, blur_from_profile,
                                        fit_stacked_profile, stacked_profile, wing_ratio_px)
from focuswatch.diagnose.shape import _field_fit, _orientation, _zones, field_growth_exponent, star_asymmetry
from focuswatch.diagnose.labels import MONITOR
from focuswatch.model.numerics import finite_median as _median  # the one median helper
from focuswatch.model.records import Record
from focuswatch.optics import Rig


@dataclass(frozen=True)
class Evidence(Record):
    """The figures a verdict rests on (``--json`` key ``evidence``; units in the names).

    Zone grids are 3x3 lists, row 0 at the top of the frame (low y), ``None`` for an empty zone.
    """

    n_stars: int
    n_bright: int = 0
    hfr_px: float | None = None
    fwhm_px: float | None = None
    fwhm_arcsec: float | None = None
    expected_fwhm_px: float | None = None
    #: In-focus true HFR (px) of the rig in the rig's seeing (a measured value) or the reference
    #: night's: :func:`focuswatch.calibration.infocus_hfr_px`, the call the policy shares.
    expected_hfr_px: float | None = None
    #: Measured HFR over ``expected_hfr_px`` when the seeing was measured (``rig.seeing_arcsec``).
    hfr_over_seeing_expected: float | None = None
    #: With a seeing measured for this frame (``diagnose.frame(measured_seeing_arcsec=...)``): the
    #: smallest defocus (CFZ units) the star's size implies, over the largest in-focus HFR that seeing
    #: allows (a monitor: raised by ``DiagnoseConfig.seeing_size_uncertainty``; the night's in-focus
    #: witness: a seeing ``witness_size_uncertainty`` worse, the night's scatter; both: the median's
    #: own error, ``size_noise_z``; see :func:`_size_defocus`).
    size_defocus_cfz_low: float | None = None
    #: ... and the smallest blur / seeing FWHM it implies (the geometric blur growing the allowed
    #: in-focus HFR to the measured one, over the allowed seeing): a size call needs both, as the
    #: profile's call does (``focus_miss_blur_ratio``).
    size_blur_to_seeing_low: float | None = None
    #: The seeing witness used (``diagnose.witness.SeeingWitness``): its seeing FWHM (arcsec),
    #: ``"monitor"`` or ``"infocus"``, the median true HFR (px) and number of the in-focus
    #: frames, the frame's time after the last of them (s), and the night's frame-to-frame HFR
    #: scatter of the filter (%) that widened its allowance. ``None`` without a witness.
    witness_seeing_arcsec: float | None = None
    witness_source: str | None = None
    witness_hfr_px: float | None = None
    witness_n_frames: int | None = None
    witness_age_s: float | None = None
    witness_jitter_pct: float | None = None
    #: True when the star's size asks for more defocus than its profile allows against an
    #: in-focus witness: the seeing got worse since the witness, the size calls no focus miss.
    seeing_worse_than_witness: bool | None = None
    size_excess: float | None = None
    profile_ratio: float | None = None
    wing_ratio: float | None = None
    wing_excess: float | None = None
    #: r90/r50 above the widest in-focus seeing wings of the rig at this star size (the dew
    #: evidence, ``diagnose.halo``); ``None`` without the rig's f-ratio and pixel size.
    halo_excess: float | None = None
    #: With the night known (the witness' ``halo_ref_excess``): the lasting rise of ``halo_excess``
    #: over the night's first frames (median of this frame and the few before it, ``diagnose.halo.
    #: night_halo_rise``): the dew evidence then. ``None`` without a night reference.
    halo_rise: float | None = None
    #: ``halo_excess`` of the light inside each star's measuring aperture alone (its 90 % radius
    #: before the wing share re-read, ``diagnose.halo.inner_halo_excess``): the night's dew figure.
    halo_inner: float | None = None
    beta: float | None = None
    seeing_beta: float | None = None
    eccentricity: float | None = None
    centre_ecc: float | None = None
    edge_ecc: float | None = None
    radial_score: float | None = None
    alignment: float | None = None
    alignment_angle_deg: float | None = None
    asymmetry: float | None = None
    asymmetry_snr: float | None = None
    asymmetry_angle_deg: float | None = None
    asymmetry_radial: float | None = None
    field_variation_pct: float | None = None
    field_significance: float | None = None
    tilt_pct: float | None = None
    curvature_pct: float | None = None
    fit_tilt_pct: float | None = None
    fit_curvature_pct: float | None = None
    anisotropy: float | None = None
    #: Power law of the size's growth with the field radius (coma ~1, curvature ~2).
    field_growth_exponent: float | None = None
    gradient_angle_deg: float | None = None
    best_spot_xy_px: tuple[float, float] | None = None
    ring_ratio: float | None = None
    donut_fraction: float | None = None
    donut_outer_diameter_px: float | None = None
    obstruction_estimate: float | None = None
    seeing_fwhm_px: float | None = None
    blur_px: float | None = None
    blur_to_seeing: float | None = None
    #: The smallest blur / seeing FWHM any plausible seeing profile allows (the focus call).
    min_blur_to_seeing: float | None = None
    seeing_family: str | None = None
    #: The stacked profile of the bright stars fitted with physical stars (seeing x defocused pupil
    #: x pixel; :func:`focuswatch.diagnose.profile.fit_stacked_profile`, needs the pixels and the
    #: rig's focal ratio and pixel size): stars stacked, best defocus (CFZ), and the smallest
    #: defocus and blur / seeing FWHM any plausible model allows (the call: both large).
    stack_n_stars: int | None = None
    stack_defocus_cfz: float | None = None
    stack_defocus_cfz_low: float | None = None
    stack_blur_to_seeing_low: float | None = None
    zone_hfr_px: tuple[tuple[float | None, ...], ...] = ()
    zone_fwhm_px: tuple[tuple[float | None, ...], ...] = ()
    zone_ecc: tuple[tuple[float | None, ...], ...] = ()
    zone_angle_deg: tuple[tuple[float | None, ...], ...] = ()
    zone_n_stars: tuple[tuple[int, ...], ...] = ()


def _finite(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, float)
    return a[np.isfinite(a)]


def _grid(values: np.ndarray, nd: int = 3) -> tuple[tuple[float | None, ...], ...]:
    return tuple(tuple(_r(float(v), nd) if np.isfinite(v) else None for v in row) for row in values)


def expected_fwhm_px(rig: Rig, config: DiagnoseConfig = DiagnoseConfig(),
                     plate_scale_arcsec_px: float | None = None) -> float | None:
    """In-focus FWHM (px) the rig should give: seeing (the rig's, else the reference night)
    added in quadrature to the Airy core. ``None`` without a plate scale."""
    scale = plate_scale_arcsec_px or rig.plate_scale_arcsec_px
    if not scale:
        return None
    seeing = rig.seeing_arcsec or config.reference_seeing_arcsec
    airy = 0.0
    if rig.effective_aperture_mm:
        airy = optics.airy_fwhm_arcsec(rig.effective_aperture_mm, rig.wavelength_nm)
    return math.hypot(seeing, airy) / scale


def expected_hfr_px(rig: Rig, config: DiagnoseConfig = DiagnoseConfig(),
                    plate_scale_arcsec_px: float | None = None) -> float | None:
    """In-focus true half-flux radius (px) the rig should give in the rig's seeing (a measured
    value, ``rig.seeing_arcsec``) or else the reference night's: Kolmogorov seeing through the
    obstructed pupil, :func:`focuswatch.calibration.infocus_hfr_px` (the one calibrated
    in-focus size; the policy's rig reference is the same call). Without an aperture the
    seeing alone (Kolmogorov half-light radius). ``None`` without a plate scale."""
    scale = plate_scale_arcsec_px or rig.plate_scale_arcsec_px
    if not scale:
        return None
    seeing = rig.seeing_arcsec or config.reference_seeing_arcsec
    if not rig.effective_aperture_mm:
        return KOLMOGOROV_HLR_PER_FWHM * seeing / scale
    return calibration.infocus_hfr_px(seeing, rig.effective_aperture_mm, rig.wavelength_nm, scale,
                                      rig.obstruction or 0.0)


def _bright(t: np.ndarray, n_min: int = 12) -> np.ndarray:
    """Stars bright enough for shape work: SNR >= 20, else the brighter half."""
    b = t[t["snr"] >= 20]
    if len(b) >= n_min:
        return b
    return t[np.argsort(-t["snr"])][:max(n_min, len(t) // 2)]


def _own_light(bt: np.ndarray) -> np.ndarray:
    """The stars whose half-flux radius holds only their own light, on frames of big disks.

    ``stars.measure`` sizes every aperture for the frame's largest stars; on strongly
    defocused frames (disks tens of px wide) most apertures also catch part of a
    neighbour, which only ever *widens* r50 and r90 (simulated 10 CFZ frames with 60
    stars on 640x640 px: 12-16 of 17-22 stars, median HFR +30 % and more, r90/r50 3-4
    instead of 1.4) while the FWHM read off the profile stays right. The bias is
    one-sided and these bright, large stars have little noise, so the third of the stars
    with the lowest HFD/FWHM (at least 5) are kept. Their 90 % radius may still reach a
    neighbour: the caller does not use r90 on such frames.
    """
    fitted = bt[np.isfinite(bt["fwhm"]) & (bt["fwhm"] > 0)]
    if len(fitted) < 8:
        return bt
    order = np.argsort(fitted["hfr"] / fitted["fwhm"])
    return fitted[order[:max(5, len(fitted) // 3)]]


def _evidence(stats: Any, t: np.ndarray, w: int, h: int, rig: Rig, baseline_hfr_px: float | None,
              pixels: np.ndarray | None, scale_px: int, config: DiagnoseConfig,
              measured_seeing_arcsec: float | None = None,
              seeing_witness: Any = None) -> tuple[Evidence, dict[str, Any]]:
    bt = _bright(t)
    x, y = bt["x"], bt["y"]
    hfr = bt["hfr"]
    ecc = np.nan_to_num(bt["ecc"], nan=0.0)
    theta = np.nan_to_num(bt["theta"], nan=0.0)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    hd = math.hypot(cx, cy) or 1.0
    rn = np.hypot(x - cx, y - cy) / hd
    phi = np.arctan2(y - cy, x - cx)

    fitted = bt[np.isfinite(bt["fwhm"]) & (bt["fwhm"] > 0)]
    fwhm_med = float(np.median(fitted["fwhm"])) if len(fitted) else stats.fwhm_px
    scale = stats.plate_scale_arcsec_px or rig.plate_scale_arcsec_px
    exp_fwhm = expected_fwhm_px(rig, config, scale)
    exp_hfr = expected_hfr_px(rig, config, scale)
    # big disks (several times the in-focus size): the wide apertures catch neighbours
    crowded = bool(fwhm_med and fwhm_med >= config.crowded_fwhm_px
                   and (exp_fwhm is None or fwhm_med >= config.crowded_vs_expected * exp_fwhm))
    own = _own_light(bt) if crowded else bt  # the profile figures: stars free of neighbours' light
    hfr_med = float(np.median(own["hfr"]))
    own_fit = own[np.isfinite(own["fwhm"]) & (own["fwhm"] > 0)]
    pr = float(np.median(2.0 * own_fit["hfr"] / own_fit["fwhm"])) if len(own_fit) >= 5 else stats.profile_ratio
    outer = own["outer_r"]
    good_outer = np.isfinite(outer) & (outer > 0)
    wing = None
    if good_outer.sum() >= 5 and not crowded:  # r90 reaches neighbours even where r50 does not
        wing = float(np.median(wing_ratio_px(outer[good_outer], own["hfr"][good_outer], config.pix_r90_px2)))
    beta = _median(fitted["beta"]) if len(fitted) else None

    # orientation: alignment over the whole frame, radial score away from the centre
    align, ang = _orientation(ecc, theta)
    far = rn > 0.35
    rho = None
    if far.sum() >= 5 and ecc[far].sum() > 0:
        rho = float(np.sum(ecc[far] * np.cos(2 * (theta[far] - phi[far]))) / ecc[far].sum())
    centre = rn < 0.3
    edge = rn > 0.6
    centre_ecc = _median(ecc[centre]) if centre.sum() >= 3 else None
    edge_ecc = _median(ecc[edge]) if edge.sum() >= 3 else None

    # asymmetry (third moments) on the brightest stars, when the pixels are at hand
    asym = asym_snr = asym_ang = asym_rad = None
    if pixels is not None:
        top = bt[np.argsort(-bt["snr"])][:120]
        vec = star_asymmetry(pixels, top["x"], top["y"], top["hfr"], scale_px, config=config)
        okv = np.isfinite(vec[:, 0])
        if okv.sum() >= 8:
            v = vec[okv]
            med = np.median(v, axis=0)
            err = mad_std(v, axis=0) / math.sqrt(len(v))
            asym = float(math.hypot(*med))
            asym_snr = float(asym / (math.hypot(*err) + 1e-9))
            asym_ang = math.degrees(math.atan2(med[1], med[0])) % 360.0
            tp = top[okv]
            pphi = np.arctan2(tp["y"] - cy, tp["x"] - cx)
            pfar = np.hypot(tp["x"] - cx, tp["y"] - cy) / hd > 0.35
            if pfar.sum() >= 5:
                asym_rad = float(np.median(v[pfar, 0] * np.cos(pphi[pfar]) + v[pfar, 1] * np.sin(pphi[pfar])))

    # 3x3 zones (all usable stars, as in stars.Zone)
    zid = _zones(t["x"], t["y"], w, h)
    zh, zf, ze, za = (np.full(9, np.nan) for _ in range(4))
    zn = np.zeros(9, int)
    tecc = np.nan_to_num(t["ecc"], nan=0.0)
    ttheta = np.nan_to_num(t["theta"], nan=0.0)
    for k in range(9):
        m = zid == k
        zn[k] = int(m.sum())
        if zn[k]:
            zh[k] = np.median(t["hfr"][m])
            f = _finite(t["fwhm"][m])
            zf[k] = np.median(f) if f.size else np.nan
            ze[k] = np.median(tecc[m])
            if zn[k] >= 2 and tecc[m].sum() > 0:
                za[k] = math.degrees(_orientation(tecc[m], ttheta[m])[1]) % 180.0
    zh3 = zh.reshape(3, 3)
    corners = zh3[[0, 0, 2, 2], [0, 2, 0, 2]]
    tilt_pct = curv_pct = None
    if np.all(np.isfinite(corners)) and np.isfinite(zh3[1, 1]):
        allmed = float(np.nanmedian(zh))
        tilt_pct = 100.0 * (corners.max() - corners.min()) / allmed
        curv_pct = 100.0 * (corners.mean() - zh3[1, 1]) / zh3[1, 1]

    fit = _field_fit(x, y, hfr, w, h)
    growth_p = field_growth_exponent(rn, hfr)

    # donuts
    ring = np.nan_to_num(bt["ring"], nan=0.0)
    donut = ring > config.donut_ring_ratio
    donut_frac = float(donut.mean())
    # the obstruction as the stars show it: the physical-optics ring fit (``ring_ok``) where it can
    # be trusted; the quick hole-depth ratio reads up to ~0.4 low when seeing fills the hole, so
    # without a trusted fit the frame's own (fitted or None) ratio, else the rig's setting
    ring_ratio = stats.ring_ratio
    trusted = donut & bt["ring_ok"] if "ring_ok" in (bt.dtype.names or ()) else np.zeros_like(donut)
    donut_d = eps_est = None
    if donut_frac >= config.donut_fraction and donut.sum() >= 3:
        eps_est = (float(np.median(ring[trusted])) if trusted.any()
                   else stats.ring_ratio if stats.ring_ratio is not None else float(rig.obstruction or 0.0))
        # the annulus whose convolution with the seeing gives the donuts' half-flux radius:
        # optics' exact forward model (seeing Moffat x annulus), inverted. (The 90 % radius
        # would be more direct but picks up neighbours inside the big stamps of defocused stars.)
        h_don = float(np.median(hfr[donut]))
        eps_tab = round(min(max(eps_est, 0.0), 0.9) * 20.0) / 20.0  # 0.05 steps: few growth tables
        if exp_hfr:
            donut_d = optics.defocus_blur_px_from_hfr(h_don, exp_hfr, eps_tab, None)
        else:  # no plate scale: the disk alone
            donut_d = 2.0 * h_don / optics.true_hfr_factor(eps_tab)

    defocus = _defocus(hfr_med, wing, pr, rig, baseline_hfr_px, donut_d, eps_est, config)
    stack = _stack_fit(stats, t, pixels, scale_px, rig, hfr_med, config) if (donut_d is None and not crowded) else None
    if stack is not None:
        defocus["stack_cfz_low"] = stack.defocus_cfz_low
        defocus["stack_x_low"] = stack.blur_to_seeing_low
    size_cfz = size_x = None
    # a past seeing (the night's in-focus frames) may have moved since: its allowance grows with
    # the night's frame-to-frame scatter of the filter's HFR
    past = seeing_witness is not None and getattr(seeing_witness, "source", None) != MONITOR
    if measured_seeing_arcsec and donut_d is None and scale:
        # the median HFR's own error (its stars' scatter): few stars, a wider allowance
        noise = config.size_noise_z * _median_rel_error(own["hfr"])
        if past:
            # the same rig and seeing kind as the witness: what may differ is the seeing itself,
            # up to witness_size_uncertainty worse, turned into an in-focus HFR by the rig's own
            # calibrated call (diffraction makes a seeing change grow the star less on small,
            # slow rigs), then the night's scatter as a random walk since the witness
            steps = math.sqrt(max(1, int(getattr(seeing_witness, "frames_since", 1) or 1)))
            jitter = config.witness_jitter_z * steps * (getattr(seeing_witness, "jitter_pct", None) or 0.0) / 100.0
            see_allow = measured_seeing_arcsec * (1.0 + config.witness_size_uncertainty)
            h_allow = expected_hfr_px(rig.with_(seeing_arcsec=see_allow), config, scale)
            if h_allow:
                h_allow *= (1.0 + jitter) * (1.0 + noise)
        else:
            # a monitor: another instrument, and any seeing kind: the in-focus HFR of real seeing
            # profiles spreads around the Kolmogorov size for the same nominal FWHM
            see_allow = measured_seeing_arcsec * (1.0 + config.seeing_size_uncertainty)
            h_allow = expected_hfr_px(rig.with_(seeing_arcsec=measured_seeing_arcsec), config, scale)
            if h_allow:
                h_allow *= (1.0 + config.seeing_size_uncertainty) * (1.0 + noise)
        size_cfz, size_x = _size_defocus(hfr_med, h_allow, see_allow / scale, rig)
    if size_cfz is not None:
        defocus["cfz_size_low"] = size_cfz
        defocus["x_size_low"] = size_x
    worse = None
    if size_cfz is not None and past:
        defocus["witness_past"] = True
        # a size asking for more defocus than the shape can hide, with no such blur in the shape
        worse = bool(size_cfz > config.witness_size_max_cfz_band[0]
                     and (defocus.get("x_low") or 0.0) < config.focus_miss_blur_ratio)
    wit = seeing_witness
    hx = halo_excess(wing, hfr_med, rig, config)
    hxi = inner_halo_excess(own[good_outer], hfr_med, rig, config) if wing is not None else None
    ev = Evidence(
        n_stars=int(len(t)), n_bright=int(len(bt)),
        hfr_px=_r(hfr_med), fwhm_px=_r(fwhm_med),
        fwhm_arcsec=_r(fwhm_med * scale) if (fwhm_med and scale) else None,
        expected_fwhm_px=_r(exp_fwhm), expected_hfr_px=_r(exp_hfr),
        hfr_over_seeing_expected=_r(hfr_med / exp_hfr) if (rig.seeing_arcsec and exp_hfr) else None,
        size_defocus_cfz_low=_r(size_cfz), size_blur_to_seeing_low=_r(size_x),
        witness_seeing_arcsec=_r(wit.seeing_arcsec if wit is not None else measured_seeing_arcsec),
        witness_source=(wit.source if wit is not None else (MONITOR if measured_seeing_arcsec else None)),
        witness_hfr_px=_r(getattr(wit, "hfr_px", None)), witness_n_frames=getattr(wit, "n_frames", None) or None,
        witness_age_s=_r(getattr(wit, "age_s", None), 1), witness_jitter_pct=_r(getattr(wit, "jitter_pct", None), 2),
        seeing_worse_than_witness=worse,
        size_excess=_r(fwhm_med / exp_fwhm) if (fwhm_med and exp_fwhm) else None,
        profile_ratio=_r(pr), wing_ratio=_r(wing), wing_excess=_r(defocus.get("wing_excess")),
        halo_excess=_r(hx), halo_rise=_r(night_halo_rise(hx, seeing_witness, config, hfr_med, hxi)),
        halo_inner=_r(hxi),
        beta=_r(beta), seeing_beta=_r(defocus.get("seeing_beta")),
        eccentricity=_r(float(np.median(ecc))), centre_ecc=_r(centre_ecc), edge_ecc=_r(edge_ecc),
        radial_score=_r(rho), alignment=_r(align), alignment_angle_deg=_r(math.degrees(ang) % 180.0, 1),
        asymmetry=_r(asym), asymmetry_snr=_r(asym_snr, 2), asymmetry_angle_deg=_r(asym_ang, 1),
        asymmetry_radial=_r(asym_rad),
        field_variation_pct=_r(fit.variation_pct, 1) if fit else None,
        field_significance=_r(fit.significance, 2) if fit else None,
        tilt_pct=_r(tilt_pct, 1), curvature_pct=_r(curv_pct, 1),
        fit_tilt_pct=_r(fit.tilt_pct, 1) if fit else None,
        fit_curvature_pct=_r(fit.curvature_pct, 1) if fit else None,
        anisotropy=_r(fit.anisotropy) if fit else None, field_growth_exponent=_r(growth_p, 2),
        gradient_angle_deg=_r(fit.gradient_angle_deg, 1) if fit and fit.gradient_angle_deg is not None else None,
        best_spot_xy_px=(round(fit.best_xy[0], 1), round(fit.best_xy[1], 1)) if fit else None,
        ring_ratio=_r(ring_ratio), donut_fraction=_r(donut_frac),
        donut_outer_diameter_px=_r(donut_d), obstruction_estimate=_r(eps_est),
        seeing_fwhm_px=_r(defocus.get("seeing_px")), blur_px=_r(defocus.get("blur_px")),
        blur_to_seeing=_r(defocus.get("x")), min_blur_to_seeing=_r(defocus.get("x_low")),
        seeing_family=defocus.get("family"),
        stack_n_stars=stack.n_stars if stack else None, stack_defocus_cfz=_r(stack.defocus_cfz) if stack else None,
        stack_defocus_cfz_low=_r(stack.defocus_cfz_low) if stack else None,
        stack_blur_to_seeing_low=_r(stack.blur_to_seeing_low) if stack else None,
        zone_hfr_px=_grid(zh3), zone_fwhm_px=_grid(zf.reshape(3, 3)), zone_ecc=_grid(ze.reshape(3, 3)),
        zone_angle_deg=_grid(za.reshape(3, 3), 1),
        zone_n_stars=tuple(tuple(int(v) for v in row) for row in zn.reshape(3, 3)),
    )
    return ev, defocus


def _stack_fit(stats: Any, t: np.ndarray, pixels: np.ndarray | None, scale_px: int, rig: Rig, hfr_med: float,
               config: DiagnoseConfig) -> StackedFit | None:
    """The physical fit of the stacked profile (:func:`focuswatch.diagnose.profile.fit_stacked_profile`),
    or ``None`` without the pixels (or on binned superpixels), the rig's lambda N, or enough bright
    stars. The rings are in the frame's median HFR (``stats.hfr_px``, else the bright stars')."""
    if pixels is None or scale_px != 1 or np.ndim(pixels) != 2 or not (rig.f_ratio and rig.effective_pixel_um):
        return None
    hfr = getattr(stats, "hfr_px", None) or hfr_med
    if "snr" not in (t.dtype.names or ()):
        return None
    stack = stacked_profile(pixels, t["x"], t["y"], np.asarray(t["snr"], float), float(hfr), config)
    if stack is None:
        return None
    ln_px = lambda_n_px(rig)
    if ln_px is None:
        return None
    return fit_stacked_profile(stack, ln_px, float(rig.obstruction or 0.0), float(hfr), config)


def _defocus(hfr_px: float, wing_ratio: float | None, profile_ratio: float | None, rig: Rig,
             baseline_hfr_px: float | None, donut_d_px: float | None, eps: float | None,
             config: DiagnoseConfig) -> dict[str, Any]:
    """Blur diameter (px) and defocus (um, CFZ units) by the best method available."""
    obstruction = rig.obstruction or 0.0
    out: dict[str, Any] = {}
    if wing_ratio is not None or profile_ratio is not None:
        ln_px = lambda_n_px(rig)
        if 2.0 * hfr_px > config.family_s_max_hfd_px:
            ln_px = None  # the rig-aware family prior only where the measurement model holds
        fit = blur_from_profile(hfr_px, wing_ratio, profile_ratio,
                                obstruction=eps if eps is not None else obstruction, config=config,
                                lambda_n_px=ln_px)
        seeing = fit.seeing_fwhm_px
        out.update(method=f"profile shape ({fit.family} seeing x defocus)", blur_px=fit.blur_px, seeing_px=seeing,
                   seeing_beta=fit.seeing_beta, wing_excess=fit.wing_excess,
                   x=fit.blur_px / seeing if seeing > 0 else None, x_low=fit.min_blur_to_seeing,
                   blur_low_px=fit.min_blur_px, family=fit.family)
    n = rig.f_ratio
    pix = rig.effective_pixel_um
    if donut_d_px is not None:
        out.update(method="donut outer diameter", blur_px=donut_d_px)
    elif baseline_hfr_px and n and pix:
        um = optics.defocus_um_from_hfr(hfr_px, baseline_hfr_px, n, pix, obstruction,
                                        wavelength_nm=rig.wavelength_nm)
        out.update(method="HFR growth over the post-autofocus baseline (physical optics)", blur_px=um / n / pix)
    elif baseline_hfr_px:
        out.update(method="HFR growth over the post-autofocus baseline",
                   blur_px=optics.defocus_blur_px_from_hfr(hfr_px, baseline_hfr_px, obstruction, None))
    if "blur_px" not in out:
        return out
    if n and pix:
        um = optics.defocus_um_from_blur(out["blur_px"] * pix, n)
        out["um"] = um
        out["cfz"] = um / optics.cfz_um(n, rig.wavelength_nm)
        if out.get("blur_low_px") is not None and donut_d_px is None:
            # the smallest defocus the profile allows, for the zone gate of the focus call
            low_um = optics.defocus_um_from_blur(out["blur_low_px"] * pix, n)
            out["cfz_low"] = min(low_um / optics.cfz_um(n, rig.wavelength_nm), out["cfz"])
    return out


def _median_rel_error(hfr_px: np.ndarray) -> float:
    """Relative standard error of the median of the stars' HFRs (1.2533 x their robust scatter
    over sqrt(n), over the median): the frame's own size is known only that well."""
    h = _finite(hfr_px)
    h = h[h > 0]
    if h.size < 3:
        return 0.0
    return float(1.2533 * mad_std(h) / math.sqrt(h.size) / np.median(h))


def _size_defocus(hfr_px: float | None, allowed_hfr_px: float | None, seeing_px: float | None,
                  rig: Rig) -> tuple[float | None, float | None]:
    """The smallest defocus the star's size implies when the seeing was measured: in CFZ
    units, and as the blur over the seeing FWHM.

    Only for a seeing measured at the time of the frame (a seeing monitor, or the night's
    in-focus frames), never for ``rig.seeing_arcsec`` from a configuration file: a typical
    seeing on a bad night would make every focused frame a focus miss.
    ``allowed_hfr_px`` is the largest in-focus HFR the measured seeing allows (the caller
    raises it by its allowance: ``seeing_size_uncertainty`` for a monitor, whose seeing kind
    and instrument differ from the telescope's; for the night's in-focus witness a seeing up to
    ``witness_size_uncertainty`` worse through the rig's calibrated in-focus size, the night's
    scatter and the median's own error). The measured HFR's growth over it is turned into a
    defocus through the calibrated physical growth (:func:`focuswatch.optics.defocus_um_from_hfr`).
    The same relative uncertainty costs more defocus where seeing dominates the star (fast,
    large rigs: the HFR grows slowly with defocus) than where diffraction does (slow, small
    rigs), so the size witness is strongest exactly where the profile shape is weakest.

    The second figure is the geometric blur that grows the allowed HFR to the measured one
    (the seeing-dominated model, :func:`focuswatch.optics.defocus_blur_px_from_hfr`) over the
    allowed seeing FWHM (``seeing_px``): the same blur/seeing the labelled truth and the
    profile's call (``focus_miss_blur_ratio``) use. A defocus of one CFZ or more on a large,
    fast rig in poor seeing hides under the seeing (blur/seeing well under 1): not a focus miss.
    ``(None, None)`` without a focal ratio or pixel size.
    """
    n, pix = rig.f_ratio, rig.effective_pixel_um
    if not (hfr_px and allowed_hfr_px and seeing_px and n and pix):
        return None, None
    eps = rig.obstruction or 0.0
    um = optics.defocus_um_from_hfr(hfr_px, allowed_hfr_px, n, pix, eps, wavelength_nm=rig.wavelength_nm)
    x = optics.defocus_blur_px_from_hfr(hfr_px, allowed_hfr_px, eps, None) / seeing_px
    return um / optics.cfz_um(n, rig.wavelength_nm), x
