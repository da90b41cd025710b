"""The pure grade: limit, letters, culprits (numbers in, numbers out; no Siril)."""
from __future__ import annotations

import json
import math

import pytest

from focuswatch import grade
from focuswatch.grade import GradeConfig, MasterGrade, SubQuality
from focuswatch.optics import Rig, airy_fwhm_um

RIG = Rig(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76)  # f/5, 0.776"/px


def test_sampling_term_is_the_pixel_box():
    # variance of a unit box is 1/12; FWHM^2 = 8 ln2 * variance
    assert grade.SAMPLING_FWHM_PX == pytest.approx(math.sqrt(8 * math.log(2) / 12), rel=1e-12)
    assert grade.SAMPLING_FWHM_PX == pytest.approx(0.680, abs=5e-4)


def test_limit_is_quadrature_sum_with_given_seeing():
    g = grade.master(4.0, plate_scale_arcsec_px=RIG.plate_scale_arcsec_px, rig=RIG, seeing_fwhm_arcsec=2.0)
    seeing_px = 2.0 / RIG.plate_scale_arcsec_px
    airy_px = airy_fwhm_um(5.0, 550.0) / 3.76
    expected = math.sqrt(seeing_px ** 2 + airy_px ** 2 + grade.SAMPLING_FWHM_PX ** 2)
    assert g.limit_fwhm_px == pytest.approx(expected, rel=1e-9)
    assert g.airy_fwhm_px == pytest.approx(airy_px, rel=1e-9)
    assert g.seeing_source == "given"
    assert g.ratio == pytest.approx(4.0 / expected)
    assert g.limit_fwhm_arcsec == pytest.approx(expected * RIG.plate_scale_arcsec_px)


def test_limit_from_best_subs_equals_their_fwhm():
    subs = [SubQuality(f"s{i}", fwhm_px=f) for i, f in enumerate([3.0, 3.1, 3.2, 3.3, 3.6, 3.8, 4.0, 4.2])]
    g = grade.master(3.4, plate_scale_arcsec_px=0.78, rig=RIG, subs=subs)
    # best quarter = 2 subs (3.0, 3.1), median 3.05; removing and re-adding the instrument terms
    assert g.n_best_subs == 2
    assert g.best_subs_fwhm_px == pytest.approx(3.05)
    assert g.limit_fwhm_px == pytest.approx(3.05, rel=1e-9)
    assert g.seeing_fwhm_px < 3.05


def test_seeing_core_keeps_a_uniformly_defocused_night_from_grading_itself_an_A():
    # every sub 6 px FWHM, but the diagnosis says the seeing core is 3 px: defocus all night
    blurred = [SubQuality(f"s{i}", fwhm_px=6.0 + 0.05 * i, seeing_fwhm_px=3.0, profile_ratio=0.8) for i in range(8)]
    plain = [SubQuality(f"s{i}", fwhm_px=6.0 + 0.05 * i) for i in range(8)]
    g_core = grade.master(6.3, plate_scale_arcsec_px=0.78, rig=RIG, subs=blurred)
    g_plain = grade.master(6.3, plate_scale_arcsec_px=0.78, rig=RIG, subs=plain)
    assert g_plain.letter == "A"
    assert g_core.seeing_source == "best subs (seeing core)"
    assert g_core.ratio == pytest.approx(6.3 / 3.0, rel=1e-6)
    assert g_core.letter == "F"


@pytest.mark.parametrize("ratio,letter", [(0.9, "A"), (1.15, "A"), (1.16, "B"), (1.30, "B"), (1.45, "C"),
                                          (1.7, "D"), (1.99, "E"), (2.01, "F"), (5.0, "F")])
def test_letters(ratio, letter):
    assert grade.letter_for(ratio) == letter
    g = grade.master(3.0 * ratio, best_subs_fwhm_px=3.0)
    assert g.letter == letter
    assert g.ratio == pytest.approx(ratio)


def test_custom_thresholds():
    cfg = GradeConfig(letter_limits=(1.05, 1.1, 1.2, 1.3, 1.4))
    assert grade.letter_for(1.12, cfg) == "C"


def test_culprits_by_cause():
    subs = [
        SubQuality("good1", fwhm_px=3.0, eccentricity=0.2, profile_ratio=1.15, n_stars=150),
        SubQuality("good2", fwhm_px=3.05, eccentricity=0.25, profile_ratio=1.17, n_stars=148),
        SubQuality("good3", fwhm_px=3.1, eccentricity=0.2, profile_ratio=1.16, n_stars=152),
        SubQuality("seeing", fwhm_px=4.2, eccentricity=0.2, profile_ratio=1.2, n_stars=140),
        SubQuality("focus", fwhm_px=4.5, eccentricity=0.15, profile_ratio=0.78, n_stars=120),
        SubQuality("trail", fwhm_px=4.0, eccentricity=0.8, profile_ratio=1.1, n_stars=140),
        SubQuality("cloud", fwhm_px=3.1, eccentricity=0.2, profile_ratio=1.1, n_stars=30),
        SubQuality("good4", fwhm_px=3.2, eccentricity=0.2, profile_ratio=1.15, n_stars=150),
    ]
    g = grade.master(3.9, plate_scale_arcsec_px=0.78, rig=RIG, subs=subs)
    causes = {v.file: v.cause for v in g.subs}
    assert causes == {"good1": None, "good2": None, "good3": None, "good4": None,
                      "seeing": "seeing", "focus": "focus", "trail": "trailing", "cloud": "clouds"}
    assert set(g.reject) == {"seeing", "focus", "trail", "cloud"}
    assert g.causes == {"seeing": 1, "focus": 1, "trailing": 1, "clouds": 1}
    assert len(g.advice) == 4
    assert g.letter in ("B", "C")  # 3.9 / ~3.03


def test_round_trip_and_json():
    subs = [SubQuality("a", 3.0, n_stars=100), SubQuality("b", 4.5, profile_ratio=0.7, n_stars=90)]
    g = grade.master(3.6, plate_scale_arcsec_px=1.1, rig=RIG, subs=subs, roundness=0.8, n_stars=90,
                     noise_adu=3.2, siril_fwhm_px=3.9)
    d = json.loads(json.dumps(g.to_dict()))
    assert MasterGrade.from_dict(d) == g
    assert d["roundness_ok"] is False
    assert "elongated" in d["explanation"]
    assert d["siril_vs_own_pct"] == pytest.approx(100 * (3.9 / 3.6 - 1))


def test_no_limit_no_letter():
    g = grade.master(3.5, plate_scale_arcsec_px=None)
    assert g.letter is None and g.ratio is None
    assert "seeing" in g.explanation
    g0 = grade.master(None, best_subs_fwhm_px=3.0)
    assert g0.letter is None and "no stars" in g0.explanation


def test_airy_left_out_without_rig():
    g = grade.master(3.5, best_subs_fwhm_px=3.0)
    assert g.airy_fwhm_px is None
    assert any("Airy" in n for n in g.notes)


def test_roundness_from_eccentricity():
    assert grade.roundness_from_eccentricity(0.0) == 1.0
    assert grade.roundness_from_eccentricity(0.6) == pytest.approx(0.8)
    assert grade.roundness_from_eccentricity(None) is None


def test_seeing_core_uses_each_best_sub_own_core_or_its_fwhm():
    # best quarter of 8 = the two sharpest; only the second has a seeing core (3.1 px < its 3.2 px FWHM).
    # Each sub contributes its own core, else its FWHM: median(3.0, 3.1) = 3.05.
    subs = [SubQuality("a", fwhm_px=3.0), SubQuality("b", fwhm_px=3.2, seeing_fwhm_px=3.1)]
    subs += [SubQuality(f"s{i}", fwhm_px=4.0 + i) for i in range(6)]
    core, source = grade.best_subs_core(subs)
    assert source == "best subs (seeing core)"
    assert core == pytest.approx((3.0 + 3.1) / 2)
    # a core above the sub's own FWHM is capped at the FWHM
    capped, _ = grade.best_subs_core([SubQuality("c", fwhm_px=3.0, seeing_fwhm_px=3.4)])
    assert capped == pytest.approx(3.0)


# --------------------------------------------------------------------------- physical optics

def test_a_seeing_night_blames_no_sub_on_focus():
    """30 subs, seeing 2.0-4.2" (Kolmogorov), no defocus at all, rendered with physical optics:
    the grade (the diagnosis' calibrated profile call) blames none on focus. The size-only
    rule it replaced blamed the subs over 1.6x the best ones (5 of 30 on such a night)."""
    import numpy as np

    from focuswatch import diagnose
    from physframes import NEWTONIAN, measured, rig_of, seeing_frame

    rng = np.random.default_rng(30)
    seeings = (2.0, 2.4, 2.8, 3.2, 3.6, 3.9, 4.2)  # rendered once each, 30 subs drawn from them
    rendered = {s: measured(seeing_frame(s, seed=int(100 * s))) for s in seeings}
    subs = []
    for i in range(30):
        s = seeings[int(rng.integers(len(seeings)))] if i not in (0, 1) else seeings[-i]  # both ends present
        frame, st = rendered[s]
        d = diagnose.frame(st, rig_of(NEWTONIAN), image=frame)
        subs.append(grade.SubQuality.from_stats(st, d.evidence.seeing_fwhm_px, d.evidence.min_blur_to_seeing))
    g = grade.master(float(np.median([s.fwhm_px for s in subs])), plate_scale_arcsec_px=NEWTONIAN.plate_scale_arcsec_px,
                     rig=rig_of(NEWTONIAN), subs=subs)
    assert g.causes.get("focus", 0) == 0
    assert g.causes.get("seeing", 0) >= 1  # the 4.2" subs are soft, and put down to the seeing
    # without the diagnosis' figure the grade runs the same calibrated call on HFR and HFD/FWHM
    bare = [grade.SubQuality.from_stats(rendered[s][1]) for s in seeings]
    verdicts = grade.judge_subs(bare, bare[0].fwhm_px)
    assert not any(v.cause == "focus" for v in verdicts)


def test_a_defocused_sub_is_put_down_to_focus():
    import numpy as np

    from physframes import NEWTONIAN, measured, seeing_frame

    from focuswatch import optics

    # critical focus zone in closed form (4.88 lambda N^2, lambda = 0.55 um), not the code's figure
    cfz_um = 4.88 * 0.55 * NEWTONIAN.f_ratio ** 2
    assert optics.cfz_um(NEWTONIAN.f_ratio) == pytest.approx(cfz_um, rel=1e-3)
    good = [grade.SubQuality.from_stats(measured(seeing_frame(2.0, seed=k))[1]) for k in (1, 2)]
    bad = grade.SubQuality.from_stats(measured(seeing_frame(2.0, defocus_um=3.0 * cfz_um, seed=3))[1])
    v = grade.judge_subs([*good, bad], float(np.median([s.fwhm_px for s in good])))
    assert v[-1].cause == "focus"
    assert all(x.cause is None for x in v[:2])
    # a quarter zone out is within focus: physically the star barely grows, so never put down to focus
    near = grade.SubQuality.from_stats(measured(seeing_frame(2.0, defocus_um=0.25 * cfz_um, seed=4))[1])
    assert grade.judge_subs([*good, near], float(np.median([s.fwhm_px for s in good])))[-1].cause != "focus"


@pytest.mark.parametrize("key,value", [("soft_factor", 0.5), ("best_fraction", float("nan")),
                                       ("letter_limits", [1.3, 1.2, 1.5, 1.75, 2.0])])
def test_grade_config_rejects_bad_values(key, value):
    with pytest.raises(ValueError, match=key):
        GradeConfig(**{key: tuple(value) if isinstance(value, list) else value})


@pytest.mark.parametrize("rig_name", ["80 mm f/6", "200 mm f/5"])
def test_a_seeing_night_judged_with_its_own_witness_blames_no_sub_on_focus(rig_name):
    """The grade's subs judged as `report`/`grade` judge them: each sub against the night's own
    seeing witness (its first subs at the focuser position, diagnose.night_witnesses). 12 subs
    of 5 minutes, seeing jumping between 2.0 and 4.2" (Kolmogorov, physical optics), no defocus:
    no sub is put down to focus, on the small slow refractor (where the size is the only focus
    witness) nor on the Newtonian."""
    import numpy as np

    from focuswatch import diagnose
    from physframes import NEWTONIAN, REFRACTOR_80, night_frame, rig_of

    o = REFRACTOR_80 if rig_name.startswith("80") else NEWTONIAN
    rig = rig_of(o)
    seeings = [2.0, 2.1] + list(np.random.default_rng(7).uniform(2.0, 4.2, 10))  # the witness at a good moment
    items = [night_frame(o, s, 0.0, i, seed=40) for i, s in enumerate(seeings)]
    stats_list = [st for _, st in items]
    witnesses = diagnose.night_witnesses(stats_list, rig)
    # subs 0-1 are the witness; from the fourth frame-to-frame step on, within witness_max_age_s
    # (30 min) of the second sub, the subs carry it
    cfg = diagnose.DiagnoseConfig()
    assert [w is not None for w in witnesses] == [i >= 1 + cfg.witness_min_steps and (i - 1) * 300.0 <= cfg.witness_max_age_s
                                                  for i in range(len(items))]
    subs = []
    for (frame, st), w in zip(items, witnesses):
        d = diagnose.rejudge(diagnose.frame(st, rig, image=frame), st, rig, w)
        assert d.label != "focus_miss"
        subs.append(grade.SubQuality.from_stats(st, d.evidence.seeing_fwhm_px, d.evidence.min_blur_to_seeing,
                                                diagnosis_focus_miss=d.label == "focus_miss"))
    g = grade.master(float(np.median([s.fwhm_px for s in subs])), plate_scale_arcsec_px=o.plate_scale_arcsec_px,
                     rig=rig, subs=subs)
    assert g.causes.get("focus", 0) == 0
    assert g.causes.get("seeing", 0) >= 1


def test_a_sub_the_diagnosis_calls_a_focus_miss_is_put_down_to_focus():
    """With the diagnosis' own call (made with the night's seeing witness) the grade follows it:
    a soft sub whose profile alone reads as seeing but whose size showed a focus slip is blamed on
    focus; one the diagnosis calls seeing is not, even with a large smallest blur (the
    diagnosis' defocus-in-CFZ gate, which the grade's own profile call lacks)."""
    slip = grade.SubQuality("slip", fwhm_px=4.0, hfr_px=2.3, profile_ratio=1.15, n_stars=100, blur_to_seeing=0.0,
                            diagnosis_focus_miss=True)
    seeing = grade.SubQuality("seeing", fwhm_px=4.0, hfr_px=2.3, profile_ratio=1.15, n_stars=100, blur_to_seeing=0.9,
                              diagnosis_focus_miss=False)
    bare = grade.SubQuality("bare", fwhm_px=4.0, hfr_px=2.3, profile_ratio=1.15, n_stars=100, blur_to_seeing=0.9)
    v = {x.file: x for x in grade.judge_subs([slip, seeing, bare], 3.0)}
    assert v["slip"].cause == "focus" and "diagnosis" in v["slip"].detail
    assert v["seeing"].cause == "seeing"
    assert v["bare"].cause == "focus"  # without a diagnosis the grade's own profile call


def test_a_witness_failure_in_the_session_scan_keeps_the_diagnoses_and_says_so(monkeypatch):
    """`report` and `grade` read the session scan's diagnoses, judged again with the night's
    seeing witness: when that step fails on a frame the frame keeps its first diagnosis and the
    notes say so (the witness is optional; it must not lose the report or the grade)."""
    from dataclasses import replace

    import numpy as np

    from focuswatch import diagnose
    from focuswatch.scale.session import SessionScan
    from physframes import REFRACTOR_80, night_frame, rig_of

    rig = rig_of(REFRACTOR_80)
    seeings = [2.0, 2.1] + list(np.random.default_rng(7).uniform(2.0, 4.2, 10))
    stats_list = [replace(night_frame(REFRACTOR_80, s, 0.0, i, seed=40)[1], file=f"L_{i:03d}.fits")
                  for i, s in enumerate(seeings)]
    assert any(w is not None for w in diagnose.night_witnesses(stats_list, rig))  # a witness to apply

    def broken(*args, **kwargs):
        raise ValueError("witness bug")

    monkeypatch.setattr(diagnose, "rejudge", broken)
    scan = SessionScan(folder="night", stats=stats_list)
    diags = scan.diagnose(rig)
    assert len(diags) == len(stats_list) and all(d is not None for d in diags.values())
    assert any("seeing witness failed" in n for n in scan.diagnose_notes)


def test_the_grade_follows_the_diagnosis_only_where_it_chose_between_focus_and_seeing():
    """A sub the diagnosis calls dew or tilt made no focus-versus-seeing call: the grade reads the
    profile itself there (as without a diagnosis), instead of blaming "a seeing profile (the
    diagnosis)"; focus_miss / in_focus / poor_seeing are the diagnosis' call."""
    from types import SimpleNamespace

    from focuswatch.render.night import _focus_miss

    assert _focus_miss(SimpleNamespace(label="focus_miss")) is True
    assert _focus_miss(SimpleNamespace(label="poor_seeing")) is False
    assert _focus_miss(SimpleNamespace(label="in_focus")) is False
    for other in ("dew", "tilt", "unknown", None):
        assert _focus_miss(SimpleNamespace(label=other)) is None
    assert _focus_miss(None) is None


def test_the_seeing_core_is_taken_only_out_of_subs_that_were_out_of_focus():
    """The diagnosis' seeing core of an in-focus sub is the best-fitting family's pick, not a
    measurement (on in-focus GalSim stars it read 10-35 % under their FWHM): the limit keeps such
    a sub's own star. A sub the diagnosis calls a focus miss, or whose profile needs a defocus
    when it made no call, still gives its core (a night out of focus all along)."""
    in_focus = [SubQuality(f"s{i}", fwhm_px=3.36, seeing_fwhm_px=2.6, blur_to_seeing=0.0,
                           diagnosis_focus_miss=False) for i in range(8)]
    core, source = grade.best_subs_core(in_focus)
    assert (core, source) == (pytest.approx(3.36), "best subs")
    no_call = [SubQuality(f"s{i}", fwhm_px=3.36, seeing_fwhm_px=2.6, blur_to_seeing=0.0) for i in range(8)]
    assert grade.best_subs_core(no_call) == (pytest.approx(3.36), "best subs")
    missed = [SubQuality(f"s{i}", fwhm_px=6.0, seeing_fwhm_px=3.0, blur_to_seeing=0.0, diagnosis_focus_miss=True)
              for i in range(8)]
    assert grade.best_subs_core(missed) == (pytest.approx(3.0), "best subs (seeing core)")
    needs_blur = [SubQuality(f"s{i}", fwhm_px=6.0, seeing_fwhm_px=3.0, blur_to_seeing=1.2) for i in range(8)]
    assert grade.best_subs_core(needs_blur) == (pytest.approx(3.0), "best subs (seeing core)")
    assert grade.sub_core_px(SubQuality("x", fwhm_px=3.0, seeing_fwhm_px=3.4, blur_to_seeing=0.5)) == 3.0  # capped


@pytest.mark.parametrize("n_focus,n_seeing,letter", [(0, 0, "A"), (0, 3, "A"), (1, 0, "B"), (2, 0, "C"), (4, 0, "C")])
def test_a_master_with_subs_lost_to_focus_is_not_as_sharp_as_the_night_allowed(n_focus, n_seeing, letter):
    """A master at the limit (ratio 1.02) whose subs the grade itself blames on focus: a stack
    without them is sharper, so it is not A; with a quarter of the subs or more, C ("reject the
    subs listed and stack again"). Subs lost to the seeing are the sky's, not the rig's."""
    subs = [SubQuality(f"good{i}", fwhm_px=3.0, diagnosis_focus_miss=False) for i in range(8 - n_focus - n_seeing)]
    subs += [SubQuality(f"focus{i}", fwhm_px=5.0, diagnosis_focus_miss=True) for i in range(n_focus)]
    subs += [SubQuality(f"seeing{i}", fwhm_px=4.5, diagnosis_focus_miss=False) for i in range(n_seeing)]
    g = grade.master(3.06, plate_scale_arcsec_px=1.0, subs=subs)
    assert g.ratio == pytest.approx(3.06 / 3.0) and g.causes.get("focus", 0) == n_focus
    assert g.letter == letter
    assert ("out of focus" in g.explanation) == (letter != "A")
    assert g.ratio_letter == "A" and g.to_dict()["ratio_letter"] == "A"  # the cap is visible in the JSON
    assert grade.MasterGrade.from_dict(g.to_dict()) == g
