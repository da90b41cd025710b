"""Scores: how strongly the evidence supports each label (0..1), and the sentence behind it.

Each label's score is a product of soft steps (``_smooth_step``) over the
:class:`~focuswatch.diagnose.evidence.Evidence` with the thresholds of
:class:`~focuswatch.diagnose.config.DiagnoseConfig`; 0.5 or more means the evidence supports
it. The verdict (:func:`focuswatch.diagnose.frame`) keeps the strongest; ``_detail`` writes the
figures behind the others as findings.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from focuswatch.diagnose.config import DiagnoseConfig
from focuswatch.diagnose.evidence import Evidence
from focuswatch.diagnose.figures import _f
from focuswatch.diagnose.labels import LABELS


def _smooth_step(x: float, lo: float, hi: float) -> float:
    """0 below ``lo``, 1 above ``hi``, linear in between: turns a figure into a score."""
    if hi == lo:
        return float(x >= hi)
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def _dew_score(ev: Evidence, baseline_hfr_px: float | None, c: DiagnoseConfig) -> float:
    """0..1: evidence of a dew halo, and nothing that rules it out.

    Dew scatters a share of every star's light into a broad halo: the 90 % flux radius
    grows far beyond what any seeing profile of the same core allows. That excess must be
    there in r90/r50 units (``dew_wing_excess``) *and* in pixels (``dew_min_halo_px``): on
    stars a pixel or two across the 90 % radius is mostly pixel and noise, and a ratio
    alone would call the sharpest frames of a night dew. A halo only ever makes stars
    larger, so a frame whose stars are smaller than the post-autofocus baseline is not dew,
    and it leaves the core (FWHM) seeing-sized, so a core over ~3x the expected in-focus
    FWHM is a focus or seeing problem (whose wide apertures pick up neighbours' light).
    """
    if ev.halo_rise is not None:  # the night known: a lasting rise over its first frames (diagnose.halo)
        wx, thr = ev.halo_rise, c.dew_night_rise
    elif ev.halo_excess is not None:  # against the rig's own in-focus wings (diagnose.halo)
        wx, thr = ev.halo_excess, c.dew_halo_excess
    else:  # no rig: against the profile fit's best seeing family
        wx, thr = ev.wing_excess or 0.0, c.dew_wing_excess
    score = _smooth_step(wx, thr - c.dew_wing_step, thr + c.dew_wing_step)
    halo_px = wx * (ev.hfr_px or 0.0)  # r90 excess (px): wing excess is in units of r50 = HFR
    score *= _smooth_step(halo_px, c.dew_halo_onset_frac * c.dew_min_halo_px, c.dew_min_halo_px)
    if baseline_hfr_px and ev.hfr_px:
        score *= _smooth_step(ev.hfr_px / baseline_hfr_px, *c.dew_vs_baseline_band)
    if ev.size_excess is not None:  # the core stays seeing-sized under dew: a core several
        score *= 1.0 - _smooth_step(ev.size_excess, *c.dew_core_excess_band)  # times that is focus or seeing
    return score


def _scores(ev: Evidence, defocus: Mapping[str, Any], c: DiagnoseConfig,
            baseline_hfr_px: float | None = None) -> dict[str, float]:
    """A 0..1 score per label; >= 0.5 means the evidence supports it."""
    s = {k: 0.0 for k in LABELS}
    e = ev.eccentricity or 0.0
    ce = ev.centre_ecc if ev.centre_ecc is not None else e
    ee = ev.edge_ecc if ev.edge_ecc is not None else e
    rho = ev.radial_score or 0.0
    al = ev.alignment or 0.0
    pr = ev.profile_ratio
    el = c.elongated_ecc
    elong = _smooth_step(e, el - c.elongated_step, el + c.elongated_step)
    aligned = _smooth_step(al, c.aligned - c.aligned_below, c.aligned + c.aligned_above)
    flare = 0.0  # one-sided, one direction: collimation (needs the pixels)
    if ev.asymmetry_snr is not None and ev.asymmetry is not None:
        flare = _smooth_step(ev.asymmetry_snr, c.flare_snr - c.flare_snr_step, c.flare_snr + c.flare_snr_step) * \
            _smooth_step(ev.asymmetry, *c.flare_asymmetry_band)

    # elongation with one orientation everywhere: a trail, or a flare if it is one-sided
    uniform_e = 1.0 - _smooth_step(abs(ee - ce), *c.uniform_ecc_band)
    common = elong * aligned * uniform_e * (1.0 - _smooth_step(abs(rho), c.radial, c.radial + c.radial_step))
    s["trailing"] = common * (1.0 - flare)
    s["collimation"] = max(common, elong * _smooth_step(al, *c.structured_band)) * flare
    # coma: round centre, radial elongation growing outward
    grow_e = _smooth_step(ee - ce, *c.coma_ecc_growth_band)
    radial_e = _smooth_step(rho, c.radial - c.aligned_below, c.radial + c.aligned_above)
    if ev.asymmetry_radial is not None:
        radial_e = max(radial_e, _smooth_step(ev.asymmetry_radial, c.coma_flare, c.coma_flare_full)
                       * _smooth_step(rho, *c.coma_flare_radial_band))
    # coma, not a curved field with radial astigmatism: comet tails (a one-sided radial flare,
    # needs the pixels) or, without pixels, a size growing ~linearly with the field radius
    if ev.asymmetry_radial is not None:
        comatic = _smooth_step(ev.asymmetry_radial, c.coma_flare, c.coma_flare_full)
    elif ev.field_growth_exponent is not None:
        comatic = 1.0 - _smooth_step(ev.field_growth_exponent, c.coma_max_exponent - c.coma_exponent_step,
                                     c.coma_max_exponent + c.coma_exponent_step)
    else:
        comatic = 1.0
    s["coma"] = grow_e * radial_e * comatic

    # field: curvature (isotropic bowl) vs tilt (plane or trough)
    var = ev.field_variation_pct or 0.0
    sig = ev.field_significance or 0.0
    fieldy = _smooth_step(var, c.field_variation_pct * c.field_variation_band[0],
                          c.field_variation_pct * c.field_variation_band[1]) * \
        _smooth_step(sig, c.field_significance - c.field_significance_step,
                     c.field_significance + c.field_significance_step)
    an = ev.anisotropy if ev.anisotropy is not None else 0.0
    curv = ev.fit_curvature_pct if ev.fit_curvature_pct is not None else 0.0
    aniso = _smooth_step(an, c.anisotropic - c.anisotropic_step, c.anisotropic + c.anisotropic_step)
    bowl = _smooth_step(abs(curv), c.field_curvature_min_pct, c.field_curvature_full_pct) * (1.0 - aniso)
    s["backfocus"] = fieldy * bowl * (1.0 - s["coma"])
    s["tilt"] = fieldy * aniso * (1.0 - s["coma"])

    # size and shape of the profile
    flat = _smooth_step(c.flat_profile_ratio - (pr if pr is not None else 9.0), -c.flat_profile_step,
                        c.flat_profile_step)
    excess = ev.size_excess
    # the smallest blur any plausible seeing profile allows: seeing with thin wings is not defocus
    x = defocus.get("x_low", defocus.get("x")) or 0.0
    miss = _smooth_step(x, c.focus_miss_blur_ratio - c.focus_miss_blur_step,
                        c.focus_miss_blur_ratio + c.focus_miss_blur_step)
    miss = max(miss, flat)  # a flat-topped profile is defocus by itself (design.md section 2)
    dcfz = defocus.get("cfz_low", defocus.get("cfz"))
    if dcfz is not None:
        lo_cfz, hi_cfz = c.focus_miss_cfz_band
        miss *= _smooth_step(dcfz, c.focus_miss_cfz * lo_cfz, c.focus_miss_cfz * hi_cfz)
    size_cfz = defocus.get("cfz_size_low")
    if size_cfz is not None:  # a measured seeing: the size alone can show a defocus the shape hides
        lo_cfz, hi_cfz = c.focus_miss_cfz_band
        size_miss = _smooth_step(size_cfz, c.seeing_size_miss_cfz * lo_cfz, c.seeing_size_miss_cfz * hi_cfz)
        if defocus.get("witness_past"):
            # a past seeing: the size must also show a blur that matters against the seeing, as
            # the profile's call needs. On a large, fast rig in poor seeing a CFZ of defocus hides
            # under the seeing, and a seeing a little worse since the witness grows its stars by as
            # much as that defocus does
            size_miss *= _smooth_step(defocus.get("x_size_low") or 0.0,
                                      c.focus_miss_blur_ratio - c.focus_miss_blur_step,
                                      c.focus_miss_blur_ratio + c.focus_miss_blur_step)
            # a past seeing (the in-focus frames): a size asking for more defocus than the profile can
            # hide grew with the seeing since the witness (the shape's own call stays in ``miss``)
            size_miss *= 1.0 - _smooth_step(size_cfz, *c.witness_size_max_cfz_band)
        miss = max(miss, size_miss)
    stack_cfz = defocus.get("stack_cfz_low")
    if stack_cfz is not None and stack_cfz >= c.focus_miss_cfz and \
            (defocus.get("stack_x_low") or 0.0) >= c.focus_miss_blur_ratio + c.focus_miss_blur_step:
        # the stacked profile, fitted with the rig's own diffraction: even its least defocused
        # plausible model holds a blur the profile's call needs at full strength
        miss = max(miss, c.stack_miss_score)
    if (ev.donut_fraction or 0.0) >= c.donut_fraction:
        miss = max(miss, c.donut_miss_score)
    # elongation only counts with a structure (one orientation, or radial/tangential):
    # random orientations are noise or blends of big disks
    structured = max(_smooth_step(al, *c.structured_band), _smooth_step(abs(rho), *c.structured_band))
    round_ = 1.0 - elong * structured
    # a faint, broad halo makes moment shapes noisy but not aligned: only structured
    # elongation (a trail) rules dew out
    s["dew"] = _dew_score(ev, baseline_hfr_px, c) * round_ * (1.0 - flat)
    # a field pattern explains a large median blur only if part of the field is near focus:
    # when even the sharpest part (the median defocus less the field's spread) is well out of
    # the zone, a refocus is needed whatever the tilt or curvature, so the field does not damp it
    miss_damping = fieldy * c.field_damping
    if dcfz is not None:
        sharpest_cfz = dcfz * max(0.0, 1.0 - var / 100.0)
        miss_damping *= 1.0 - _smooth_step(sharpest_cfz, *c.field_defocused_cfz_band)
    s["focus_miss"] = miss * round_ * (1.0 - miss_damping) * (1.0 - s["dew"])
    if excess is not None:
        big = _smooth_step(excess, c.poor_seeing_excess - c.poor_seeing_step, c.poor_seeing_excess + c.poor_seeing_step)
        s["poor_seeing"] = big * (1.0 - miss) * round_ * (1.0 - s["dew"]) * (1.0 - fieldy * c.field_damping) * \
            (1.0 - c.field_damping * s["coma"])  # coma's growing tails make stars larger, too
    return s


def _detail(label: str, ev: Evidence, defocus: Mapping[str, Any]) -> str:
    """The sentence behind a secondary finding (``Finding.detail``): its figures, ``n/a`` if missing."""
    def f(v: Any, spec: str = ".2f") -> str:
        return _f(v, spec, none="n/a")
    if label == "focus_miss":
        return (f"flat-topped profile (HFD/FWHM {f(ev.profile_ratio)}, r90/r50 {f(ev.wing_ratio)}): "
                f"blur {f(ev.blur_px, '.1f')} px on {f(ev.seeing_fwhm_px, '.1f')} px seeing, "
                f"defocus {f(defocus.get('um'), '.0f')} um = {f(defocus.get('cfz'))} CFZ")
    if label == "poor_seeing":
        return (f"FWHM {f(ev.fwhm_px)} px = {f(ev.size_excess)} x the in-focus size, "
                f"peaked profile (HFD/FWHM {f(ev.profile_ratio)}, r90/r50 {f(ev.wing_ratio)})")
    if label == "backfocus":
        return (f"corners {f(ev.fit_curvature_pct, '.0f')} % larger than the centre all around "
                f"(anisotropy {f(ev.anisotropy)}, significance {f(ev.field_significance, '.1f')})")
    if label == "tilt":
        return (f"size varies {f(ev.field_variation_pct, '.0f')} % across the field along "
                f"{f(ev.gradient_angle_deg, '.0f')} deg (anisotropy {f(ev.anisotropy)}), corner tilt "
                f"{f(ev.fit_tilt_pct, '.0f')} %")
    if label == "coma":
        return (f"eccentricity {f(ev.centre_ecc)} at the centre, {f(ev.edge_ecc)} at the edge, "
                f"radial score {f(ev.radial_score)}")
    if label == "collimation":
        return (f"one-sided flare towards {f(ev.asymmetry_angle_deg, '.0f')} deg on every star "
                f"(asymmetry {f(ev.asymmetry, '.3f')}, {f(ev.asymmetry_snr, '.1f')} sigma), "
                f"eccentricity {f(ev.centre_ecc)} at the centre")
    if label == "trailing":
        return (f"eccentricity {f(ev.eccentricity)}, one orientation ({f(ev.alignment_angle_deg, '.0f')} deg, "
                f"alignment {f(ev.alignment)}), radial score {f(ev.radial_score)}, symmetric")
    if label == "dew":
        if ev.halo_rise is not None:
            return (f"halo: the 90 % radius (r90/r50) has risen {f(ev.halo_rise)} over the night's first frames "
                    f"and stays there; HFD/FWHM {f(ev.profile_ratio)}")
        if ev.halo_excess is not None:
            return (f"halo: the 90 % radius is {f(ev.halo_excess)} wider (r90/r50) than any in-focus seeing "
                    f"star of this size on the rig (von Karman, Kolmogorov, Moffat) allows; "
                    f"HFD/FWHM {f(ev.profile_ratio)}")
        return (f"halo: the 90 % radius is {f(ev.wing_excess)} wider (r90/r50) than any seeing profile "
                f"allows; HFD/FWHM {f(ev.profile_ratio)}")
    return ""
