"""The refocus policy on real nights' numbers and physical-optics truth (issue 13 item 8, item 3's drift targets).

Truth never comes from the policy's own model:

* in-focus sizes: Kolmogorov seeing through the telescope's diffraction, checked against GalSim
  (``galsim.Kolmogorov`` convolved with ``galsim.Airy``);
* defocused sizes: GalSim's physical optics (``galsim.OpticalPSF`` with a Zernike defocus,
  convolved with ``galsim.Kolmogorov``), a small table rendered once per session;
* the real NINA night of issue 13 is RECONSTRUCTED from the issue's description of it (55 lights,
  4 targets, 5 filters, 180-600 s subs; a filter change whose new 300 s subs start ~19 % above the
  other filters' HFR and grow 11 % in two more frames, an autofocus that then brings HFR down 22 %;
  a second drift of +9 % over nine frames). The per-frame numbers themselves were not published
  with the issue: the series below follows those figures, with 1 % seeing jitter (see SEEING_JITTER).
  Its star sizes, per filter and defocus, are GalSim renders (Kolmogorov at the filter's
  wavelength through the aperture's physical optics, :func:`galsim_filter_table`), and so are the
  seeing-jitter and cloud nights' in-focus sizes: none comes from the policy's optics model.

NINA's HFR-increase trigger is the project's ``hfr_increase`` rule at 5 %, which follows NINA's
``AutofocusAfterHFRIncreaseTrigger.ShouldTrigger`` (per filter, frames since the last autofocus,
least-squares line over the last 10, its end against the lowest HFR).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from focuswatch import optics
from focuswatch.policy import AutofocusMark, Decision, FrameRecord, Monitor, PolicyConfig
from focuswatch.optics import Rig
from focuswatch.policy import HfrRecord
from focuswatch.policy.baseline import infocus_hfr_px, scale_hfr_to_wavelength

#: 130 mm f/5, 3.76 um pixels (1.19"/px): the zone (67 um) is only +7 % HFR wide in 2.8" seeing.
RIG = Rig(aperture_mm=130, focal_length_mm=650, pixel_um=3.76)
SCALE = RIG.plate_scale_arcsec_px
CFZ_UM = optics.cfz_um(5.0, 550.0)
T0 = 1.75e9
#: Image rules only: no time or temperature rule (HFR-only records carry no temperature), filters
#: focused with offsets (the real night did not refocus on a filter change).
OURS = PolicyConfig(max_interval_min=0, temperature_delta_c=0, parfocal_filters=True)
#: NINA's HFR-increase trigger at 5 %, nothing else (NINA has no cloud or star-count veto).
NINA = PolicyConfig(max_interval_min=0, temperature_delta_c=0, parfocal_filters=True, defocus_limit_cfz=0,
                    hfr_increase_pct=5.0, seeing_veto=False, min_stars=0, cloud_star_fraction=0,
                    cloud_flux_fraction=0, thin_cloud_star_fraction=0, max_eccentricity=1.0)
WAVELENGTH_NM = {"L": 550.0, "R": 640.0, "G": 530.0, "B": 450.0, "Ha": 656.3}


def requests(decisions: list[Decision]) -> list[int]:
    return [i for i, d in enumerate(decisions) if d.decision == "refocus"]


def closed_loop(make_frame, n: int, config: PolicyConfig, first_filter: str | None = "L"):
    """Drive a night where every refocus request is answered by an autofocus before the next frame.

    ``make_frame(i, focused_at)`` gives frame ``i`` knowing the frame indices an autofocus ran
    before (per filter); returns (records, decisions).
    """
    m = Monitor(config, RIG)
    m.autofocus(AutofocusMark(time_s=T0 - 300, source="dusk", filter_name=first_filter))
    focused: dict[str | None, int] = {first_filter: 0}
    recs, out = [], []
    for i in range(n):
        if out and out[-1].decision == "refocus":
            f = recs[-1].filter_name
            focused[f] = i
            m.autofocus(AutofocusMark(time_s=recs[-1].time_s + 60, source="autofocus-done", filter_name=f))
        rec = make_frame(i, focused)
        recs.append(rec)
        out.append(m.observe(rec))
    return recs, out


# --------------------------------------------------------------------------- the rig's in-focus size

@pytest.mark.parametrize("seeing", [1.5, 2.8, 4.2])
def test_infocus_size_matches_galsim_kolmogorov_through_the_aperture(seeing):
    galsim = pytest.importorskip("galsim")
    psf = galsim.Convolve(galsim.Kolmogorov(fwhm=seeing), galsim.Airy(lam_over_diam=550e-9 / 0.13 * 206264.806))
    truth = _hlr_px(psf)
    assert infocus_hfr_px(seeing, 130.0, 550.0, SCALE) == pytest.approx(truth, rel=0.01)


def test_wavelength_scaling_follows_kolmogorov_and_diffraction():
    galsim = pytest.importorskip("galsim")
    lod = lambda nm: nm * 1e-9 / 0.13 * 206264.806                                  # noqa: E731
    at = lambda nm: _hlr_px(galsim.Convolve(galsim.Kolmogorov(fwhm=2.5 * (nm / 550.0) ** -0.2),  # noqa: E731
                                            galsim.Airy(lam_over_diam=lod(nm))))
    ha = scale_hfr_to_wavelength(at(550.0), 550.0, 656.3, aperture_mm=130.0, plate_scale_arcsec_px=SCALE)
    assert ha == pytest.approx(at(656.3), rel=0.01)


def _hlr_px(psf, oversample: int = 4, size_px: int = 96) -> float:
    """True half-light radius (px) of a GalSim profile: encircled energy on a fine grid, no pixel."""
    s = SCALE / oversample
    off = (0.3137, 0.1711)                               # off-centre: radii of the grid all distinct
    n = size_px * oversample
    im = psf.drawImage(nx=n, ny=n, scale=s, method="no_pixel", offset=off).array
    y, x = np.indices(im.shape)
    r = np.hypot(x - (n - 1) / 2.0 - off[0], y - (n - 1) / 2.0 - off[1]).ravel()
    o = np.argsort(r)
    cum = np.cumsum(im.ravel()[o])
    return float(np.interp(0.5, cum / cum[-1], r[o]) * s / SCALE)


def _hlr_px_exact(psf, wavelength_nm: float = 550.0) -> float:
    """True half-light radius (px) of a round GalSim profile from its Fourier transform, no image.

    Encircled energy EE(R) = 2 pi R * integral of J1(2 pi R f) OTF(f) df (f in cycles per arcsec,
    the optical transfer function zero past the 130 mm aperture's cutoff D / lambda). Why not
    :func:`_hlr_px`: the encircled energy of a pixel grid counts whole pixels by their centres,
    and the number of centres inside a radius jumps with it (the Gauss circle problem), so that
    size moves by up to ~1 % between neighbouring defocus nodes (on 2.8" 130 mm f/5: +2.3 %
    from 12 to 18 um, +0.3 % from 18 to 24) - as large as the growth a 0.3 CFZ defocus makes.
    """
    from scipy.special import j1

    cutoff = 1.0 / (wavelength_nm * 1e-9 / 0.13 * 206264.806)           # cycles per arcsec
    nf = 600                                                             # ~60 nodes per J1 period at 8"
    df = 1.1 * cutoff / nf
    f = (np.arange(nf) + 0.5) * df
    otf = np.array([psf.kValue(2.0 * math.pi * v, 0.0).real for v in f]) / psf.flux
    radii = np.linspace(0.2, 8.0, 800)                                   # arcsec
    ee = np.array([2.0 * math.pi * r * df * float(np.sum(j1(2.0 * math.pi * r * f) * otf)) for r in radii])
    k = int(np.argmax(ee >= 0.5))
    return float(np.interp(0.5, ee[k - 1:k + 1], radii[k - 1:k + 1])) / SCALE


def test_the_exact_half_light_radius_is_galsims_own():
    """The truth tables' size: GalSim's closed-form half-light radii (Kolmogorov, Airy) to 0.05 %,
    and the pixel-grid measure within its 1 % lattice noise."""
    galsim = pytest.importorskip("galsim")
    lod = 550e-9 / 0.13 * 206264.806
    for prof in (galsim.Kolmogorov(fwhm=2.8), galsim.Kolmogorov(fwhm=1.5), galsim.Airy(lam_over_diam=lod)):
        assert _hlr_px_exact(prof) * SCALE == pytest.approx(prof.half_light_radius, rel=5e-4)
    psf = galsim.Convolve(galsim.Kolmogorov(fwhm=2.8), galsim.OpticalPSF(lam_over_diam=lod, defocus=0.2))
    assert _hlr_px_exact(psf) == pytest.approx(_hlr_px(psf), rel=0.01)


# --------------------------------------------------------------------------- HFR-only records

def test_nina_image_statistics_become_policy_records():
    rec = HfrRecord.from_nina({"HFR": 2.31, "HFRStDev": 0.4, "Stars": 812, "Filter": "Ha", "ExposureTime": 600.0,
                               "Filename": "M31_Ha_0007.fits"}, time_s=T0)
    f = rec.to_frame_record()
    assert (f.file, f.hfr_px, f.n_stars, f.filter_name, f.exposure_s, f.profile_ratio) == \
        ("M31_Ha_0007.fits", 2.31, 812, "Ha", 600.0, None)
    assert f.is_light and f.hfr_kind == "nina"
    none = HfrRecord.from_nina({"HFR": "NaN", "Stars": 0, "Filter": "L"}, time_s=T0).to_frame_record()
    assert none.hfr_px is None
    assert Monitor(OURS, RIG).observe(none).decision == "skip"
    assert not HfrRecord.from_nina({"HFR": 2.0, "ImageType": "FLAT"}, time_s=T0).to_frame_record().is_light
    assert HfrRecord.from_dict(rec.to_dict()) == rec


# --------------------------------------------------------------------------- the real night, reconstructed

#: The night's seeing (arcsec at 550 nm) and the defocus grid of its GalSim tables (um).
NIGHT_SEEING = 2.6
NIGHT_GRID_UM = np.arange(0.0, 97.0, 8.0)


@functools.lru_cache(maxsize=None)
def galsim_filter_table(wavelength_nm: float) -> np.ndarray:
    """True HFR (px) through the 130 mm f/5 at ``wavelength_nm`` over NIGHT_GRID_UM (GalSim).

    Kolmogorov seeing of NIGHT_SEEING x (lambda / 550)^-0.2 convolved with GalSim's physical
    optics (Airy diffraction at this wavelength, Zernike defocus): the reconstructed night's truth
    owes nothing to the policy's optics model.
    """
    galsim = pytest.importorskip("galsim")
    lod = wavelength_nm * 1e-9 / 0.13 * 206264.806
    seeing = NIGHT_SEEING * (wavelength_nm / 550.0) ** -0.2
    out = []
    for d in NIGHT_GRID_UM:
        z4_waves = d / (16.0 * math.sqrt(3.0) * 25.0 * wavelength_nm * 1e-3)
        psf = galsim.Convolve(galsim.Kolmogorov(fwhm=seeing), galsim.OpticalPSF(lam_over_diam=lod, defocus=z4_waves))
        out.append(_hlr_px_exact(psf, wavelength_nm))
    return np.maximum.accumulate(np.array(out))          # the grid's sampling noise never makes it shrink


def night_hfr_px(filt: str, seeing_factor: float, defocus_um: float) -> float:
    """GalSim's HFR in ``filt`` when the seeing is ``seeing_factor`` x the night's (blur scales with it)."""
    t = galsim_filter_table(WAVELENGTH_NM[filt])
    return seeing_factor * float(np.interp(defocus_um / seeing_factor, NIGHT_GRID_UM, t))


def _growth(ratio: float, filt: str) -> float:
    """Defocus (um) that grows ``filt``'s in-focus star by ``ratio``, read off GalSim's table."""
    t = galsim_filter_table(WAVELENGTH_NM[filt])
    return float(np.interp(ratio * t[0], t, NIGHT_GRID_UM))


#: (filter, exposure s, target) of the 55 lights, in capture order.
PLAN = ([("L", 180.0, "A")] * 10 + [("R", 300.0, "A")] * 4 + [("G", 300.0, "A")] * 4
        + [("B", 300.0, "B")] * 7 + [("Ha", 600.0, "C")] * 6 + [("R", 300.0, "D")] * 14 + [("L", 180.0, "D")] * 10)
assert len(PLAN) == 55 and len({p[0] for p in PLAN}) == 5 and len({p[2] for p in PLAN}) == 4
B_FIRST = 18
R2_FIRST = 31
#: Frame-to-frame seeing jitter of the reconstructed night's long subs (a clean +9 % over nine frames
#: and +11 % in two frames, as the issue describes them, mean little scatter); 0.5 % measurement noise.
SEEING_JITTER = 0.01
#: B's first three subs against the L frames' HFR, as in the issue (+19 %, then +11 % in two frames).
B_VS_OTHERS = (1.19, 1.19 * 1.055, 1.19 * 1.11)


def real_night_frame(seed: int):
    """Frame maker for :func:`closed_loop`: the reconstructed NINA night, HFR-only records, GalSim truth."""
    rng = np.random.default_rng(seed)
    seeing = np.exp(rng.normal(0.0, SEEING_JITTER, len(PLAN)))
    meas = rng.normal(0.0, 0.005, len(PLAN))
    stars = rng.integers(560, 640, len(PLAN))
    times = T0 + np.cumsum([0.0] + [p[1] + 20.0 for p in PLAN[:-1]])
    l_hfr, b_hfr = night_hfr_px("L", 1.0, 0.0), night_hfr_px("B", 1.0, 0.0)
    # B: out of focus from its first frame (a wrong offset plus the tube cooling), growing 11 % in
    # two frames; R at target D: a steady drift from +3 % to +12 % over nine frames
    b_defocus = [_growth(r * l_hfr / b_hfr, "B") for r in B_VS_OTHERS]
    b_defocus += [b_defocus[-1] + (b_defocus[-1] - b_defocus[0]) / 2 * k for k in range(1, 5)]
    r0, r8 = _growth(1.03, "R"), _growth(1.03 * 1.09, "R")
    r_defocus = [r0 + (r8 - r0) / 8.0 * k for k in range(14)]

    def make(i: int, focused: dict) -> FrameRecord:
        filt, exp_s, _ = PLAN[i]
        if filt == "B" and focused.get("B", -1) <= B_FIRST:
            d = b_defocus[i - B_FIRST]
        elif filt == "R" and i >= R2_FIRST and focused.get("R", -1) <= R2_FIRST:
            d = r_defocus[i - R2_FIRST]
        else:
            d = 0.0
        make.truth_um[i] = d
        hfr = night_hfr_px(filt, float(seeing[i]), d) * (1.0 + meas[i])
        return HfrRecord(file=f"{PLAN[i][2]}_{filt}_{i:03d}.fits", time_s=float(times[i]), hfr_px=round(hfr, 3),
                         n_stars=int(stars[i]), filter_name=filt, exposure_s=exp_s).to_frame_record()
    make.truth_um = {}
    return make


def test_night_tables_are_physical():
    """The night's GalSim truth: in focus as Kolmogorov through the aperture; blue stars larger
    than red in focus (seeing ~ lambda^-0.2 outweighs diffraction ~ lambda at 130 mm)."""
    for filt in ("B", "L", "R"):
        t = galsim_filter_table(WAVELENGTH_NM[filt])
        see = NIGHT_SEEING * (WAVELENGTH_NM[filt] / 550.0) ** -0.2
        assert t[0] == pytest.approx(infocus_hfr_px(see, 130.0, WAVELENGTH_NM[filt], SCALE), rel=0.015)
        assert t[-1] > 1.3 * t[0]
    assert galsim_filter_table(450.0)[0] > galsim_filter_table(640.0)[0]


@pytest.mark.parametrize("seed", range(5))
def test_real_night_drifts_are_caught_like_ninas_rule(seed):
    """Drift 1 (B, out of focus from its first frame): asked at the same frame as NINA, the third.
    Drift 2 (R, +9 % over nine frames): asked before 0.6 CFZ; over 10 seeds at NINA's median frame
    (the 6th, 0.48 CFZ), on single seeds 0-3 frames after NINA's rule, which compares with the
    lowest (noisiest) HFR since the autofocus with no significance test at all; at most one frame
    after it where NINA's request was at or past our own limit."""
    mk_nina = real_night_frame(seed)
    nina_recs, nina = closed_loop(mk_nina, len(PLAN), NINA)
    make = real_night_frame(seed)
    recs, ours = closed_loop(make, len(PLAN), OURS)
    nina_req, our_req = requests(nina), requests(ours)
    # NINA, fed these numbers, asks at the third B frame, as it did that night; the autofocus
    # then brings B's HFR down ~22 %
    assert B_FIRST + 2 in nina_req
    drop = 1.0 - nina_recs[B_FIRST + 3].hfr_px / nina_recs[B_FIRST + 2].hfr_px
    assert 0.17 < drop < 0.27, drop
    nina_r2 = min(i for i in nina_req if i >= R2_FIRST)
    assert nina_r2 <= R2_FIRST + 9                                       # NINA catches the second drift
    # the first release's policy never asked: its B baseline was built from B's drifting frames
    old = PolicyConfig(**{**OURS.to_dict(), "reference_frames": 0})
    _, before = closed_loop(real_night_frame(seed), B_FIRST + 3, old)
    assert requests(before[B_FIRST:]) == []
    # ours: drift 1 no later than NINA, drift 2 before 0.6 CFZ and at most 3 frames after NINA
    ours_b = [i for i in our_req if B_FIRST <= i < B_FIRST + 7]
    ours_r2 = [i for i in our_req if R2_FIRST <= i < R2_FIRST + 14]
    assert ours_b and ours_b[0] <= B_FIRST + 2, (our_req, [d.reasons for d in ours[B_FIRST:B_FIRST + 3]])
    assert "reference" in ours[ours_b[0]].rules
    assert ours_r2 and ours_r2[0] <= nina_r2 + 3, (our_req, nina_r2)
    # where NINA asked at or past our own 0.4 CFZ limit, at most one frame after it (20 seeds, exact
    # GalSim radii since policy6: 17 equal or earlier; seed 19 one frame later, NINA at 0.42 CFZ; seeds
    # 1 and 8, two frames later, NINA at 0.38 CFZ, under our limit)
    if mk_nina.truth_um[nina_r2] >= 0.4 * optics.cfz_um(5.0, 640.0) - 1e-9:
        assert ours_r2[0] <= nina_r2 + 1, (our_req, nina_r2)
    assert make.truth_um[ours_r2[0]] < 0.6 * optics.cfz_um(5.0, 640.0)      # the drift target of item 3
    # and nothing else all night: every request of ours answers a real defocus
    assert set(our_req) <= {ours_b[0], ours_r2[0]}, our_req
    first = ours[ours_b[0]]
    assert first.reference_hfr_px is not None and first.reference_z is not None



@functools.lru_cache(maxsize=None)
def drift2_catch(seed: int) -> tuple[int, float, int]:
    """(NINA's frame of drift 2, GalSim's true defocus there in CFZ, our frame) on the reconstructed night."""
    mk_nina = real_night_frame(seed)
    _, nina = closed_loop(mk_nina, len(PLAN), NINA)
    _, ours = closed_loop(real_night_frame(seed), len(PLAN), OURS)
    nina_r2 = min(i for i in requests(nina) if i >= R2_FIRST)
    ours_r2 = min(i for i in requests(ours) if i >= R2_FIRST)
    return nina_r2 - R2_FIRST + 1, mk_nina.truth_um[nina_r2] / optics.cfz_um(5.0, 640.0), ours_r2 - R2_FIRST + 1


def test_drift_2_is_asked_no_later_than_ninas_rule_on_most_seeds():
    """Drift 2 over 20 seeds (0-9 tuned policy4's change, 10-19 held out), GalSim truth: later than
    NINA's rule where NINA asked at or past our 0.4 CFZ limit on at most two seeds of each ten, one
    frame each (policy4: seeds 1, 9 / 19 on the pixel-grid radii; exact radii, policy6: none / 19;
    policy3: 4 and 3 of ten). The change: the night's scatter no longer counts a drifting run's
    rise as jitter (1.35 % read for a true 1.12 %)."""
    for lo in (0, 10):
        late = []
        for seed in range(lo, lo + 10):
            nina, nina_cfz, ours = drift2_catch(seed)
            assert ours <= nina + 3, (seed, ours, nina)
            if nina_cfz >= 0.4 - 1e-9 and ours > nina:
                assert ours == nina + 1, (seed, ours, nina)
                late.append(seed)
        assert len(late) <= 2, (lo, late)

# --------------------------------------------------------------------------- seeing-jitter and cloud nights

def seeing_jitter_night(seed: int, n: int = 30, exp_s: float = 300.0) -> list[FrameRecord]:
    """In focus all night; seeing anywhere from 2.0 to 4.2" from one 5-min frame to the next."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        see = math.exp(rng.uniform(math.log(2.0), math.log(4.2)))
        h = night_hfr_px("L", see / NIGHT_SEEING, 0.0) * (1 + rng.normal(0, 0.01))
        out.append(HfrRecord(file=f"s{i:03d}.fits", time_s=T0 + i * (exp_s + 15), hfr_px=h,
                             n_stars=int(300 * (2.8 / see) ** 0.5), filter_name="L", exposure_s=exp_s,
                             hfr_kind="true").to_frame_record())
    return out


def cloud_night(seed: int, n: int = 30, exp_s: float = 300.0) -> list[FrameRecord]:
    """In focus all night in 2.8" seeing (3 % jitter); two cloud passages of 3-5 frames each let
    25-85 % of the light through: fewer stars, and the ones left measure larger."""
    rng = np.random.default_rng(seed)
    trans = np.ones(n)
    for a in (rng.integers(5, 10), rng.integers(17, 23)):
        k = int(rng.integers(3, 6))
        trans[a:a + k] = rng.uniform(0.25, 0.85, size=len(trans[a:a + k]))
    out = []
    for i in range(n):
        see = 2.8 * (1 + rng.normal(0, 0.03))
        h = night_hfr_px("L", see / NIGHT_SEEING, 0.0) * (1 + 0.25 * (1 - trans[i])) * (1 + rng.normal(0, 0.01))
        out.append(HfrRecord(file=f"c{i:03d}.fits", time_s=T0 + i * (exp_s + 15), hfr_px=h,
                             n_stars=int(300 * trans[i] ** 1.3), filter_name="L", exposure_s=exp_s,
                             hfr_kind="true").to_frame_record())
    return out


@pytest.mark.parametrize("kind,night,nina_mean", [("seeing jitter", seeing_jitter_night, 8),
                                                   ("clouds", cloud_night, 3)])
def test_no_false_requests_on_seeing_and_cloud_nights(kind, night, nina_mean):
    nina_counts = []
    for seed in range(6):
        frames = night(seed)
        _, ours = closed_loop(lambda i, _f: frames[i], len(frames), OURS)
        assert requests(ours) == [], (kind, seed, [ours[i].reasons for i in requests(ours)])
        _, nina = closed_loop(lambda i, _f: frames[i], len(frames), NINA)
        nina_counts.append(len(requests(nina)))
    # NINA's rule, fed the same frames, asks again and again (the issue: 8 and 5 times in 30 frames)
    assert np.mean(nina_counts) >= nina_mean and min(nina_counts) >= 2, nina_counts


@pytest.mark.parametrize("af_filter", ["L", "R"])
@pytest.mark.parametrize("seed", [12, 32])
def test_bad_seeing_in_the_first_frames_is_not_a_drift(seed, af_filter):
    """Seeing-jitter seeds 12 and 32 of 40 asked once or twice before policy3: seeing 2.0 -> 4.2" over
    the first five 5-min frames (GalSim HFR +35 to +70 %), before the night's scatter is known. Seed
    12: the drift model fitted 101 um in 21 min (4.3 CFZ/h, faster than any thermal drift: the
    rate cap, max_drift_cfz_per_h, chosen on seeds 0-19); seed 32: three rising frames, the first
    of them in the baseline, read as a step (the consecutive rule now counts only frames after the
    baseline; seed 32 is a held-out seed). Also with the autofocus made in another filter (the
    straight-line witness on). NINA's rule asks on both nights."""
    frames = seeing_jitter_night(seed)
    _, ours = closed_loop(lambda i, _f: frames[i], len(frames), OURS, first_filter=af_filter)
    assert requests(ours) == [], [ours[i].reasons for i in requests(ours)]
    assert max(f.hfr_px for f in frames[:5]) > 1.3 * min(f.hfr_px for f in frames[:5])
    _, nina = closed_loop(lambda i, _f: frames[i], len(frames), NINA, first_filter=af_filter)
    assert len(requests(nina)) >= 2


def test_slow_seeing_wander_in_a_filter_the_autofocus_did_not_focus_is_not_a_drift():
    """Cloud seed 0 of 40, autofocus made in another filter (issue 13 item 8): in focus all night
    (GalSim sizes, 3 % seeing jitter, true log-HFR scatter 3.1 % over the clear frames), but its
    clear frames happen to climb 4.3 %/h while successive frames differ little (the night's
    scatter reads 1.3-1.7 %): the straight-line witness read that as a 3.9 sigma rise and asked.
    A rise slower than ``line_min_rise_pct_per_h`` (one seeing makes alone) no longer counts; the
    reconstructed night's drift 2 rises 10-18 %/h where the line asks on it
    (test_real_night_drifts_are_caught_like_ninas_rule). NINA asks too."""
    frames = cloud_night(0)
    clear = np.log([f.hfr_px for f in frames if f.n_stars >= 299])
    assert np.std(clear, ddof=1) > 0.025                     # the truth: seeing scatter, no defocus
    _, ours = closed_loop(lambda i, _f: frames[i], len(frames), OURS, first_filter="R")
    assert requests(ours) == [], [ours[i].reasons for i in requests(ours)]
    # without the minimum rise the straight line asks on this night (what this test guards)
    bare = PolicyConfig(**{**OURS.to_dict(), "line_min_rise_pct_per_h": 0.0})
    _, before = closed_loop(lambda i, _f: frames[i], len(frames), bare, first_filter="R")
    assert requests(before) and "drift" in before[requests(before)[0]].rules
    _, nina = closed_loop(lambda i, _f: frames[i], len(frames), NINA, first_filter="R")
    assert len(requests(nina)) >= 2


# --------------------------------------------------------------------------- drift on physical optics

DEFOCUS_GRID_UM = np.arange(0.0, 133.0, 6.0)


@functools.lru_cache(maxsize=None)
def galsim_defocus_table() -> np.ndarray:
    """True HFR (px) of 2.8" Kolmogorov seeing through the 130 mm f/5 at each defocus (GalSim)."""
    galsim = pytest.importorskip("galsim")
    lod = 550e-9 / 0.13 * 206264.806
    out = []
    for d in DEFOCUS_GRID_UM:
        # wavefront: peak-to-valley d / (8 N^2); Noll Z4 = sqrt(3) (2 rho^2 - 1) has PV 2 sqrt(3)
        z4_waves = d / (16.0 * math.sqrt(3.0) * 25.0 * 0.55)
        psf = galsim.Convolve(galsim.Kolmogorov(fwhm=2.8), galsim.OpticalPSF(lam_over_diam=lod, defocus=z4_waves))
        out.append(_hlr_px_exact(psf))
    return np.array(out)


def galsim_hfr_px(seeing_arcsec: float, defocus_um: float) -> float:
    """GalSim's HFR at any seeing: seeing and defocus blur scale together (diffraction a small term)."""
    k = seeing_arcsec / 2.8
    return k * float(np.interp(defocus_um / k, DEFOCUS_GRID_UM, galsim_defocus_table()))


def test_galsim_table_is_physical():
    t = galsim_defocus_table()
    assert t[0] == pytest.approx(infocus_hfr_px(2.8, 130.0, 550.0, SCALE), rel=0.01)
    # far from focus: between the geometric blur disk alone, (d / N) / 2 / sqrt 2, and its sum in
    # quadrature with the in-focus star (which overstates the growth)
    disk = 132.0 / 5.0 / 3.76 / 2.0 / math.sqrt(2.0)
    assert disk < t[-1] < math.hypot(t[0], disk)
    assert np.all(np.diff(t) > -1e-3)
    # exact half-light radii: the growth is smooth and convex (the pixel-grid measure it replaced had
    # a second difference of -0.027 px between 12 and 24 um: lattice noise of ~1 % HFR)
    assert np.all(np.diff(t, 2) > 0.0)


def test_the_calibrated_growth_is_galsims_physical_optics():
    """The calibrated HFR-vs-defocus model the policy reads limits and per-frame defocus from
    (``optics.hfr_px_for_defocus``, tables of scripts/make_calibration.py) against GalSim's exact
    half-light radii, 0 to 2 CFZ on the 130 mm f/5 in 2.8": within 0.5 % (measured 0.3 %); the
    geometric Moffat beta 3.5 curve of the drift fit is 1-3 % above it past 0.5 CFZ (its lag is
    measured, not hidden: docs/watch.md)."""
    t = galsim_defocus_table()
    model = np.array([optics.hfr_px_for_defocus(float(d), float(t[0]), 5.0, 3.76, 0.0) for d in DEFOCUS_GRID_UM])
    assert np.max(np.abs(model / t - 1.0)) < 0.005


def closed_form_hfr_px(seeing_arcsec: float, defocus_um: float, beta: float) -> float:
    """Closed-form optics: a Moffat (``beta``) seeing disk convolved with the defocus disk."""
    h0 = infocus_hfr_px(2.8, 130.0, 550.0, SCALE) * seeing_arcsec / 2.8
    return optics.hfr_px_for_defocus(defocus_um, h0, 5.0, 3.76, beta=beta)


TRUTHS = {"galsim": galsim_hfr_px,
          "moffat 2.5": functools.partial(closed_form_hfr_px, beta=2.5),
          "moffat 4.5": functools.partial(closed_form_hfr_px, beta=4.5)}


def drift_night(seed: int, um_per_frame: float, n_before: int, truth: str, n: int = 40, jitter_pct: float = 2.0,
                exp_s: float = 300.0):
    rng = np.random.default_rng(seed)
    hfr_of = TRUTHS[truth]
    recs, defocus = [], []
    for i in range(n_before + n):
        d = 0.0 if i < n_before else um_per_frame * (i - n_before)
        see = 2.8 * math.exp(rng.normal(0, jitter_pct / 100))
        h = hfr_of(see, d) * (1 + rng.normal(0, 0.005))
        recs.append(HfrRecord(file=f"g{i:03d}.fits", time_s=T0 + i * (exp_s + 15), hfr_px=h, n_stars=200,
                              filter_name="L", exposure_s=exp_s, hfr_kind="true").to_frame_record())
        defocus.append(d)
    return recs, defocus


def first_request_on_drift(truth: str, seed: int, um_per_frame: float, n_before: int):
    """(true defocus um, the drift model's defocus um, decision) at the first refocus request."""
    recs, defocus = drift_night(seed, um_per_frame, n_before, truth)
    m = Monitor(OURS, RIG)
    m.autofocus(AutofocusMark(time_s=T0 - 300, source="dusk", filter_name="L"))
    for i, r in enumerate(recs):
        if i == n_before and n_before:
            m.autofocus(AutofocusMark(time_s=r.time_s - 60, source="autofocus-done", filter_name="L"))
        d = m.observe(r)
        if d.decision == "refocus":
            return defocus[i], d.model_defocus_um, d
    return None, None, None


@functools.lru_cache(maxsize=None)
def drift_requests(truth: str) -> tuple[tuple[float, float, int], ...]:
    """(true defocus um, model defocus um, n_before) at the first request of 18 drift nights:
    2, 2.5 and 3 um per 300 s frame, from dusk or after an earlier in-focus hour, 3 seeds."""
    out = []
    for n_before in (0, 12):
        for um_per_frame in (2.0, 2.5, 3.0):
            for seed in range(3):
                true_um, model_um, d = first_request_on_drift(truth, seed, um_per_frame, n_before)
                assert true_um is not None, (truth, seed, um_per_frame, n_before, "never asked")
                out.append((true_um, model_um, n_before))
    return tuple(out)


@pytest.mark.parametrize("truth", ["moffat 2.5", "moffat 4.5", "galsim"])
def test_steady_drift_asks_before_0p6_cfz_with_the_model_within_25_pct(truth):
    """300 s subs, HFR only (no profile witness), 2 % seeing jitter. Truth: closed-form seeing x
    defocus disk with other seeing profiles than the model's Moffat beta 3.5, and GalSim's
    physical optics (diffraction included, exact half-light radii). The first release asked at
    0.79 CFZ with the model at -51 %. Before 0.6 CFZ on 17-18 of 18 nights (GalSim: one at 0.63,
    after an in-focus hour, 3 um/frame, seed 2: the growth test reaches its bar one frame late); the
    model within 25 % on 16 of 18: the two outside are requests at 0.36-0.41 CFZ (GalSim +48 % and
    +29 %, Moffat +47 % and +33 %), where a 1 % HFR error is ~15 % of the defocus and the frames that
    tipped the test were 2 sigma high (winner's curse). Worst |error| 0.48 (GalSim; it was 0.5997
    on the pixel-grid truth, whose +1.1 % HFR bump at 18 um this night sat on)."""
    got = drift_requests(truth)
    cfz = np.array([t / CFZ_UM for t, _, _ in got])
    err = np.array([m / t - 1.0 for t, m, _ in got])
    assert cfz.min() > 0.2, cfz                                       # never on seeing jitter
    assert np.median(cfz) < 0.55 and np.mean(cfz < 0.6) >= 0.9, cfz
    assert cfz.max() < 0.65, cfz
    assert abs(np.median(err)) < 0.1 and np.mean(np.abs(err) < 0.25) >= 0.85 and np.all(np.abs(err) < 0.6), err


def test_steady_drift_on_held_out_skies():
    """The same 2-3 um/frame nights on GalSim truth over ten skies no constant was chosen on
    (seeds 3-12, 60 nights): requests 0.37-0.67 CFZ (median 0.53), 55 of 60 before 0.6 CFZ; the
    model within 25 % on 58 of 60, worst +28 %. Bounds leave one or two nights of margin. The
    information bound (benchmarks/drift_bound.py: a likelihood-ratio test told the onset, the growth's
    exact shape and the jitter, at 1 false request per 160 no-drift nights) asks 26 of these 30 dusk
    nights before 0.6 CFZ, as the policy does."""
    got = []
    for n_before in (0, 12):
        for um_per_frame in (2.0, 2.5, 3.0):
            for seed in range(3, 13):
                true_um, model_um, _ = first_request_on_drift("galsim", seed, um_per_frame, n_before)
                assert true_um is not None, (seed, um_per_frame, n_before, "never asked")
                got.append((true_um, model_um))
    cfz = np.array([t / CFZ_UM for t, _ in got])
    err = np.array([m / t - 1.0 for t, m in got])
    assert cfz.min() > 0.3 and np.median(cfz) < 0.56 and cfz.max() < 0.72, cfz
    assert np.mean(cfz < 0.6) >= 0.88, cfz
    assert abs(np.median(err)) < 0.1 and np.mean(np.abs(err) < 0.25) >= 0.93 and np.all(np.abs(err) < 0.4), err


def first_request_on_late_drift(seed: int, um_per_frame: float, n_before: int):
    """(true defocus um, the drift model's defocus um) at the first request on :func:`drift_night` when the
    drift starts ``n_before`` frames after the dusk autofocus WITHOUT any autofocus mark at its onset
    (the air starts cooling hours after focusing): the policy must find the onset itself."""
    recs, defocus = drift_night(seed, um_per_frame, n_before, "galsim")
    m = Monitor(OURS, RIG)
    m.autofocus(AutofocusMark(time_s=T0 - 300, source="dusk", filter_name="L"))
    for i, r in enumerate(recs):
        d = m.observe(r)
        if d.decision == "refocus":
            return defocus[i], d.model_defocus_um
    return None, None


@functools.lru_cache(maxsize=None)
def late_drift_requests() -> tuple[tuple[float | None, float | None], ...]:
    """The late-onset row on held-out skies: 3 in-focus hours (36 frames of 300 s), then 2-3 um per frame,
    seeds 3-12 (drift_onsets and drift_onset_z were chosen on seeds 0-2 and on no-drift nights)."""
    return tuple(first_request_on_late_drift(seed, um, 36) for um in (2.0, 2.5, 3.0) for seed in range(3, 13))


def test_a_drift_that_starts_hours_after_the_autofocus_is_read_from_its_onset():
    """GalSim truth, HFR only, 2 % seeing jitter: a drift that begins three hours after the autofocus, with no
    autofocus mark at its onset. The model from the autofocus dilutes it over the in-focus hours and reads
    too little defocus at the request (main before policy10: median -19 %, within 25 % on 19 of 30 nights,
    28 of 30 asked before 0.6 CFZ); with the later onsets the model also tries (``drift_onsets``) the
    median error is -5 %, 24 of 30 within 25 %, all 30 before 0.6 CFZ (the bounds leave 1-2 nights). The
    same nights without a drift are never asked."""
    got = late_drift_requests()
    assert all(t is not None for t, _ in got), got
    cfz = np.array([t / CFZ_UM for t, _ in got])
    err = np.array([m / t - 1.0 for t, m in got])
    assert cfz.min() > 0.2 and np.sum(cfz < 0.6) >= 29, cfz
    assert abs(np.median(err)) < 0.1 and np.sum(np.abs(err) < 0.25) >= 22, err
    for seed in range(3, 8):
        assert first_request_on_late_drift(seed, 0.0, 36) == (None, None), seed
