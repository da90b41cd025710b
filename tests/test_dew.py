"""Dew against physical-optics truth: frames rendered with focuswatch.sim.physical (von Karman seeing,
which the focus call's profile families do not hold) are not dew until a halo is added to them;
the wing reference the decision reads agrees with GalSim's von Karman x Airy profile.

Small renders (256 px, 30 stars), cached for the session; benchmarks/dew_eval.py gives the rates.
"""
from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest

from focuswatch import calibration, diagnose, stars
from focuswatch.diagnose import halo
from focuswatch.io.frames import frame_from_array
from focuswatch.sim import physical as po

from physframes import NEWTONIAN, REFRACTOR_80, dew_halo, night_spec, rig_of

#: (rig, seeing arcsec, defocus CFZ, seed): von Karman (L0/r0 200) frames without dew. The two
#: refractor frames were called dew (confidence 1.0) before the rig's own wing ceiling.
NO_DEW = ((REFRACTOR_80, 2.5, 0.25, 5), (REFRACTOR_80, 2.0, 0.25, 16), (NEWTONIAN, 2.0, 0.0, 12))


@lru_cache(maxsize=None)
def _render(o: po.Optics, seeing: float, cfz: float, seed: int) -> tuple[np.ndarray, dict]:
    spec, header = night_spec(o, seeing, cfz, 0, seed=seed)
    spec = replace(spec, seeing=po.Seeing(seeing, kind="vonkarman"))
    return po.render_frame(spec).pixels, header


def _diagnosis(o: po.Optics, seeing: float, cfz: float, seed: int, halo_frac: float = 0.0,
               halo_fwhm: float = 0.0) -> diagnose.Diagnosis:
    pix, header = _render(o, seeing, cfz, seed)
    if halo_frac:
        pix = dew_halo(pix, halo_frac, halo_fwhm * seeing / o.plate_scale_arcsec_px).astype(np.float32)
    frame = frame_from_array(pix, header)
    return diagnose.frame(stars.measure(frame), rig_of(o))


@pytest.mark.parametrize("case", NO_DEW, ids=lambda c: f"{c[0].aperture_mm:.0f}mm-{c[1]}as-{c[2]}cfz-s{c[3]}")
def test_von_karman_seeing_is_not_dew_and_the_same_frame_with_a_halo_is(case):
    d = _diagnosis(*case)
    assert d.label != "dew" and all(f.label != "dew" for f in d.findings), (d.label, d.evidence.halo_excess)
    assert d.evidence.halo_excess is not None and d.evidence.halo_excess < diagnose.DiagnoseConfig().dew_halo_excess
    # 10 % of each star's light spread over 3 seeing FWHMs: dew, said with its figure
    fogged = _diagnosis(*case, halo_frac=0.10, halo_fwhm=3.0)
    assert fogged.label == "dew" and fogged.confidence >= 0.6, (fogged.label, fogged.evidence.halo_excess)
    assert fogged.evidence.halo_excess > d.evidence.halo_excess + 0.3


def test_a_weak_halo_on_the_small_refractor_is_dew():
    """5 % of the light over 4 FWHM: the weakest halo the benchmark scores, on a frame where it shows."""
    d = _diagnosis(REFRACTOR_80, 2.0, 0.25, 16, halo_frac=0.05, halo_fwhm=4.0)
    assert d.label == "dew", (d.label, d.evidence.halo_excess)


def _ee_ratio(img: np.ndarray) -> tuple[float, float]:
    """(r50, r90/r50) in pixels of a centred image, by encircled energy."""
    n = img.shape[0]
    c = (np.arange(n) - (n - 1) / 2.0)
    r = np.hypot(*np.meshgrid(c, c)).ravel()
    order = np.argsort(r)
    cs = np.cumsum(img.ravel()[order]) / img.sum()
    r50 = float(np.interp(0.5, cs, r[order]))
    return r50, float(np.interp(0.9, cs, r[order])) / r50


@pytest.mark.parametrize("eps,s,l0_over_r0", [(0.0, 4.0, 50.0), (0.35, 2.0, 200.0)])
def test_wing_reference_von_karman_rows_agree_with_galsim(eps, s, l0_over_r0):
    """The generated von Karman row (the dew ceiling's widest family) against GalSim's own von
    Karman x Airy of the same r0, L0 and obscuration: r50 and r90/r50 within 2 %."""
    galsim = pytest.importorskip("galsim")
    lam_nm, diam_m = 550.0, 0.2
    lod_arcsec = lam_nm * 1e-9 / diam_m * 206264.806
    r0_m = 0.976 * diam_m / s  # the table's s: Kolmogorov seeing FWHM 0.976 lambda/r0, over lambda/D
    prof = galsim.Convolve(galsim.VonKarman(lam=lam_nm, r0=r0_m, L0=l0_over_r0 * r0_m),
                           galsim.Airy(lam=lam_nm, diam=diam_m, obscuration=eps))
    scale = lod_arcsec / 8.0
    img = prof.drawImage(nx=1024, ny=1024, scale=scale, method="no_pixel").array
    r50_px, w = _ee_ratio(img)
    ref = calibration.wing_reference(eps)
    i = [f["name"] for f in ref["families"]].index(f"von karman L0/r0={l0_over_r0:g}")
    j = list(ref["s_nodes"]).index(s)
    assert ref["pupils"]["plain"]["r50"][i, j] == pytest.approx(r50_px / 8.0, rel=0.02)
    assert ref["pupils"]["plain"]["w"][i, j] == pytest.approx(w, rel=0.02)


def test_the_ceiling_is_the_widest_family_and_vanes_widen_it():
    """Closed-form Moffat (no diffraction: r90/r50 = sqrt(0.1^(-1/(b-1)) - 1)/sqrt(0.5^(-1/(b-1)) - 1))
    bounds the seeing-dominated rows; the ceiling covers von Karman and the vanes' spikes."""
    ref = calibration.wing_reference(0.35)
    names = [f["name"] for f in ref["families"]]
    b = 2.5
    moffat = math.sqrt(0.1 ** (-1 / (b - 1)) - 1) / math.sqrt(0.5 ** (-1 / (b - 1)) - 1)
    i = names.index("moffat beta=2.5")
    assert ref["pupils"]["plain"]["w"][i, -1] == pytest.approx(moffat, rel=0.01)  # s = 32: seeing only
    vk, kol = names.index("von karman L0/r0=50"), names.index("kolmogorov")
    assert np.all(ref["pupils"]["plain"]["w"][vk] > ref["pupils"]["plain"]["w"][kol])
    assert np.all(ref["pupils"]["vanes"]["w"][kol] > ref["pupils"]["plain"]["w"][kol])
    h = 2.0  # half-light radius in lambda N
    ceiling = halo.infocus_wing_ceiling(h, 0.35)
    for pupil in ("plain", "vanes"):
        assert ceiling >= np.interp(h, ref["pupils"][pupil]["r50"][vk], ref["pupils"][pupil]["w"][vk]) - 1e-12
