"""The physical-optics renderer against GalSim and closed forms (the truth the calibration rests on)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from focuswatch.sim import physical as po

galsim = pytest.importorskip("galsim")

LAM_NM = 550.0
N = 5.0
LAM_N_UM = LAM_NM / 1000.0 * N


def test_airy_fwhm_and_hlr_match_closed_form_and_galsim():
    psf = po.optical_psf(f_ratio=N, wavelength_nm=LAM_NM, sample_um=0.2, n=512)
    fwhm = po.fwhm(psf, 0.2) / LAM_N_UM
    hlr = po.encircled_radius(psf, 0.2) / LAM_N_UM
    airy = galsim.Airy(lam_over_diam=1.0)
    assert fwhm == pytest.approx(1.029, rel=0.02)  # 1.03 lambda N, closed form
    assert fwhm == pytest.approx(airy.calculateFWHM(), rel=0.02)
    assert hlr == pytest.approx(airy.half_light_radius, rel=0.02)


def test_obstructed_airy_matches_galsim():
    psf = po.optical_psf(f_ratio=N, wavelength_nm=LAM_NM, sample_um=0.2, n=512, obstruction=0.4)
    hlr = po.encircled_radius(psf, 0.2) / LAM_N_UM
    ref = galsim.Airy(lam_over_diam=1.0, obscuration=0.4).drawImage(scale=0.05, nx=400, ny=400, method="no_pixel")
    assert hlr == pytest.approx(ref.calculateHLR(), rel=0.03)


@pytest.mark.parametrize("kind", ["kolmogorov", "vonkarman"])
def test_seeing_profile_matches_galsim(kind):
    """The long-exposure atmospheric MTF alone (diffraction left out), in arcsec units."""
    fwhm, n, samp = 3.0, 512, 3.0 / 16.0
    s = po.Seeing(fwhm, kind=kind, outer_scale_over_r0=100.0)
    img = np.fft.fftshift(np.real(np.fft.ifft2(s.otf(n, samp, po.ARCSEC_PER_RAD / 1000.0))))  # 1 um = 1"
    from focuswatch.optics import KOLMOGOROV_FWHM_FACTOR

    r0 = KOLMOGOROV_FWHM_FACTOR * 550e-9 / (fwhm / po.ARCSEC_PER_RAD)
    ref = galsim.Kolmogorov(fwhm=fwhm) if kind == "kolmogorov" else galsim.VonKarman(lam=550.0, r0=r0, L0=100.0 * r0)
    assert po.fwhm(img, samp) == pytest.approx(ref.calculateFWHM(), rel=0.02)
    assert po.encircled_radius(img, samp) == pytest.approx(ref.half_light_radius, rel=0.02)


@pytest.mark.parametrize("l0_over_r0", [None, 50.0, 120.0, 300.0])
def test_the_one_seeing_mtf_is_galsims_with_the_rounded_structure_constant(l0_over_r0):
    """optics.seeing_mtf (the renderer draws with it, diagnose.profile fits with it) against
    GalSim's Kolmogorov / VonKarman transfer functions at the same FWHM / r0: -ln MTF is GalSim's
    times 3.44 / 3.44194 (our 6.88 against the exact 2 (24/5 Gamma(6/5))^(5/6)), the same at every
    frequency. A FWHM factor off by 4e-5 (0.9759, 0.976 for 0.975865) moves the ratio by 6e-5."""
    from focuswatch import optics
    from focuswatch.diagnose import profile

    assert po.seeing_mtf is optics.seeing_mtf and not hasattr(profile, "_seeing_mtf")
    nu = np.linspace(0.05, 1.2, 24)  # cycles per arcsec, FWHM 1"
    exact = 2.0 * (24.0 / 5.0 * math.gamma(6.0 / 5.0)) ** (5.0 / 6.0) / 2.0
    if l0_over_r0 is None:
        ref = galsim.Kolmogorov(fwhm=1.0)
    else:
        r0_m = optics.KOLMOGOROV_FWHM_FACTOR * 550e-9 * po.ARCSEC_PER_RAD
        ref = galsim.VonKarman(lam=550.0, r0=r0_m, L0=l0_over_r0 * r0_m)
    truth = np.array([ref.kValue(2.0 * math.pi * v, 0.0).real for v in nu])
    ratio = np.log(optics.seeing_mtf(nu, 1.0, l0_over_r0)) / np.log(truth)
    assert ratio == pytest.approx(3.44 / exact, abs=2e-5)
    # broadcasting (the fit's rows of seeings x frequencies) is the scalar call row by row
    fwhm = np.array([0.7, 1.3, 2.9])
    rows = optics.seeing_mtf(nu[None, :], fwhm[:, None], l0_over_r0)
    for f, row in zip(fwhm, rows):
        np.testing.assert_array_equal(row, optics.seeing_mtf(nu, float(f), l0_over_r0))
    if l0_over_r0 is None:
        # the donut ring fit's Kolmogorov kernel is the same function (no copy of its own)
        from focuswatch.stars import ringfit

        cfg = dataclasses.replace(ringfit.RING_FIT, kernel="kolmogorov")
        np.testing.assert_array_equal(ringfit._kernel_otf(nu, fwhm, cfg), rows)


@pytest.mark.parametrize("waves", [0.7, 2.0])
def test_defocused_psf_matches_galsim_optical_psf(waves):
    """Obstructed pupil with four spider vanes, defocused: half-light radius against GalSim.

    GalSim's ``defocus`` is the Noll Z4 coefficient, ``sqrt(3) (2 rho^2 - 1)``: a peak rho^2
    term of ``2 sqrt(3) z4`` waves.
    """
    d_um = waves * 8.0 * N * N * LAM_NM / 1000.0
    o = po.Optics(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, obstruction=0.33, n_vanes=4,
                  vane_width=0.01)
    img, samp = po.continuous_psf(o, po.Aberrations(defocus_um=d_um), po.Seeing(0.0))
    ours = po.encircled_radius(img, samp) / LAM_N_UM
    g = galsim.OpticalPSF(lam_over_diam=1.0, defocus=waves / (2.0 * math.sqrt(3.0)), obscuration=0.33, nstruts=4,
                          strut_thick=0.01, strut_angle=0.0 * galsim.degrees, pad_factor=2, oversampling=2)
    ref = g.drawImage(scale=0.1, nx=200, ny=200, method="no_pixel").calculateHLR()
    assert ours == pytest.approx(ref, rel=0.03)


@pytest.mark.parametrize("eps", [0.0, 0.33])
def test_large_defocus_gives_the_geometric_blur(eps):
    """Far from focus the star is the cone's cut: a disk of diameter Delta / N, half its light
    inside ``(Delta / 2N) sqrt((1 + eps^2) / 2)``."""
    d_um = 600.0
    o = po.Optics(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, obstruction=eps)
    img, samp = po.continuous_psf(o, po.Aberrations(defocus_um=d_um), po.Seeing(0.0))
    outer = d_um / N / 2.0
    assert po.encircled_radius(img, samp) == pytest.approx(outer * math.sqrt((1 + eps * eps) / 2.0), rel=0.03)
    # 90 % of a uniform annulus lies inside R sqrt(eps^2 + 0.9 (1 - eps^2)): the disk's edge is at Delta / 2N
    assert po.encircled_radius(img, samp, 0.9) == pytest.approx(outer * math.sqrt(0.9 + 0.1 * eps * eps), rel=0.04)


def test_star_image_is_pixel_integrated_and_centred():
    o = po.Optics(obstruction=0.3, n_vanes=3)
    stamp, os_ = po.star_image(o, po.Aberrations(defocus_um=50.0), po.Seeing(2.0), dx_px=0.3, dy_px=-0.2)
    c = stamp.shape[0] // 2
    yy, xx = np.mgrid[0:stamp.shape[0], 0:stamp.shape[1]]
    assert stamp.sum() == pytest.approx(1.0)
    assert (stamp * xx).sum() - c == pytest.approx(0.3, abs=0.03)
    assert (stamp * yy).sum() - c == pytest.approx(-0.2, abs=0.03)


def test_coma_makes_a_one_sided_tail_along_its_angle():
    o = po.Optics(obstruction=0.0)
    img, samp = po.continuous_psf(o, po.Aberrations(coma_waves=1.5, coma_angle_deg=0.0), po.Seeing(0.5))
    n = img.shape[0]
    yy, xx = np.mgrid[0:n, 0:n]
    peak_x = np.unravel_index(np.argmax(img), img.shape)[1]
    cx = (img * xx).sum()
    # the light's centroid sits on the tail's side of the sharp core (+x), rows stay symmetric
    assert cx - peak_x > 1.0
    assert abs((img * yy).sum() - n // 2) < 0.5


def test_moffat_seeing_is_a_cross_check_profile():
    n, samp = 512, 3.0 / 16.0
    otf = po.Seeing(3.0, kind="moffat", beta=4.0).otf(n, samp, po.ARCSEC_PER_RAD / 1000.0)
    img = np.fft.fftshift(np.real(np.fft.ifft2(otf)))
    ref = galsim.Moffat(beta=4.0, fwhm=3.0)
    assert po.encircled_radius(img, samp) == pytest.approx(ref.half_light_radius, rel=0.02)


def test_render_frame_is_seeded_and_places_the_stars():
    spec = po.FrameSpec(width_px=160, height_px=128, n_stars=8, seed=5)
    a = po.render_frame(spec)
    b = po.render_frame(spec)
    assert a.pixels.shape == (128, 160) and a.pixels.dtype == np.uint16
    assert np.array_equal(a.pixels, b.pixels)
    st = a.truth["stars"][0]
    x, y = int(round(st["x"])), int(round(st["y"]))
    assert a.pixels[y, x] > np.median(a.pixels) + 50


def test_kolmogorov_hlr_per_fwhm_matches_galsim():
    """The seeing-dominated limit of the calibration (and the diagnosis' constant) is GalSim's."""
    from focuswatch import calibration

    k = galsim.Kolmogorov(fwhm=1.0)
    assert calibration.KOLMOGOROV_HLR_PER_FWHM == pytest.approx(k.half_light_radius / k.fwhm, rel=1e-4)


@pytest.mark.parametrize("eps", [0.0, 0.15, 0.25, 0.35, 0.45])
def test_geometric_growth_reaches_the_closed_form_annulus(eps):
    """Far out of focus the geometric table is the defocus annulus: half the flux inside
    r = R sqrt((1 + eps^2) / 2), with the in-focus seeing added in quadrature (1 in these units).
    Every obstruction's row sits on the same b axis (in-focus HLRs)."""
    from focuswatch import calibration

    b, g = calibration.geometric_growth(eps)
    truth = math.hypot(b[-1] / 2.0 * math.sqrt((1.0 + eps * eps) / 2.0), 1.0)
    assert g[-1] == pytest.approx(truth, rel=0.01)


@pytest.mark.parametrize("aperture_mm, wavelength_nm", [(200.0, 550.0), (80.0, 656.3)])
def test_airy_fwhm_arcsec_is_galsims_and_the_diagnosis_adds_it_to_the_seeing(aperture_mm, wavelength_nm):
    """One home for the Airy core's angular FWHM (optics), against GalSim's Airy; the diagnosis'
    expected in-focus FWHM is the seeing and that core in quadrature."""
    from focuswatch import diagnose, optics

    lod_arcsec = wavelength_nm * 1e-9 / (aperture_mm * 1e-3) * 206264.806
    truth = galsim.Airy(lam_over_diam=lod_arcsec).calculateFWHM()
    assert optics.airy_fwhm_arcsec(aperture_mm, wavelength_nm) == pytest.approx(truth, rel=2e-3)
    rig = optics.Rig(aperture_mm=aperture_mm, focal_length_mm=5.0 * aperture_mm, pixel_um=3.76,
                     wavelength_nm=wavelength_nm, seeing_arcsec=2.0)
    assert diagnose.expected_fwhm_px(rig) == pytest.approx(math.hypot(2.0, truth) / rig.plate_scale_arcsec_px,
                                                           rel=2e-3)


@pytest.mark.parametrize("eps", [0.0, 0.35])
@pytest.mark.parametrize("blur_px", [6.0, 15.0])
def test_the_labelled_sets_growth_blur_inverts_galsims_seeing_times_annulus(eps, blur_px):
    """The labelled set's effective blur (Kolmogorov star grown by a geometric annulus) against
    GalSim: a Kolmogorov of 3 px FWHM convolved with an annulus of ``blur_px`` (obstruction ``eps``)
    has a half-light radius; the renderer's inversion gives the annulus back within 3 %."""
    fwhm_px, r = 3.0, blur_px / 2.0
    disk = galsim.TopHat(r) if not eps else galsim.Sum(
        [galsim.TopHat(r, flux=1.0 / (1.0 - eps ** 2)), galsim.TopHat(eps * r, flux=-eps ** 2 / (1.0 - eps ** 2))])
    seeing = galsim.Kolmogorov(fwhm=fwhm_px)
    h1 = galsim.Convolve(seeing, disk).calculateHLR(scale=0.05)
    assert po._kolmogorov_growth_blur(h1, seeing.half_light_radius, eps) == pytest.approx(blur_px, rel=0.03)
