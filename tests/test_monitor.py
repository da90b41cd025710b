"""The refocus policy on HFR series with a known truth (table-driven, one row per rule)."""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from focuswatch import optics
from focuswatch import policy as monitor
from focuswatch.config import section_to_dataclass
from focuswatch.errors import ConfigError
from focuswatch.policy import AutofocusMark, Decision, FrameRecord, Monitor, PolicyConfig
from focuswatch.optics import Rig

import galsim_profile as galsim_profile_table     # tests/: HFD/FWHM measured on GalSim frames

#: 100 mm f/5 refractor, 3.76 um pixels at 500 mm: the CFZ matters against 2" seeing.
RIG = Rig(aperture_mm=100, focal_length_mm=500, pixel_um=3.76, focuser_step_um=2.0)
CFZ_UM = optics.cfz_um(5.0, 550.0)          # 67.1 um, L filter
HFR0_PX = 0.8


def series(n: int, *, dt_min: float = 3.0, defocus=lambda i: 0.0, jitter_pct: float = 2.0, seed: int = 1,
           temp=lambda i: None, filt=lambda i: "L", stars=lambda i: 120, flux=lambda i: 5e4,
           ecc=lambda i: 0.3, airmass=lambda i: None, hfr_scale=lambda i: 1.0, profile=lambda i: None,
           focuser=lambda i: None, exposure_s: float = 120.0) -> list[FrameRecord]:
    """Frames whose HFR follows the optics model for a known defocus, with seeing jitter."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h0 = HFR0_PX * hfr_scale(i) * (1.0 + rng.normal(0.0, jitter_pct / 100.0))
        hfr = optics.hfr_px_for_defocus(defocus(i), h0, 5.0, 3.76)
        out.append(FrameRecord(file=f"f{i:03d}.fits", time_s=1.7e9 + 60.0 * dt_min * i, n_stars=stars(i),
                               hfr_px=hfr, fwhm_px=2 * hfr / 1.1, eccentricity=ecc(i), profile_ratio=profile(i),
                               star_flux_adu=flux(i), background_adu=800.0, exposure_s=exposure_s,
                               filter_name=filt(i), temp_c=temp(i), focuser_pos=focuser(i), airmass=airmass(i)))
    return out


def run(frames, config: PolicyConfig = PolicyConfig(temperature_delta_c=0, max_interval_min=0),
        rig: Rig = RIG, marks: dict[int, AutofocusMark] | None = None) -> list[Decision]:
    m = Monitor(config, rig)
    out = []
    for i, f in enumerate(frames):
        if marks and i in marks:
            m.autofocus(marks[i])
        out.append(m.observe(f))
    return out


def first_refocus(decisions) -> int | None:
    return next((i for i, d in enumerate(decisions) if d.decision == "refocus"), None)


QUIET = dict(temperature_delta_c=0.0, max_interval_min=0.0)

# One row per rule: (rule, config, frames, first frame allowed to fire, last frame by which it must fire)
RULE_TABLE = [
    ("drift", PolicyConfig(**QUIET, consecutive_frames=0),
     series(60, defocus=lambda i: 0.8 * i, jitter_pct=3.0), 8, 45),
    ("consecutive", PolicyConfig(**QUIET),
     series(12, dt_min=10, defocus=lambda i: 0.0 if i < 5 else 0.9 * CFZ_UM), 7, 7),
    ("temperature", PolicyConfig(temperature_delta_c=1.0, max_interval_min=0),
     series(30, temp=lambda i: 10.0 - 0.1 * i), 10, 10),
    ("time", PolicyConfig(temperature_delta_c=0, max_interval_min=90),
     series(40, dt_min=5.0), 18, 18),
    ("filter_change", PolicyConfig(**QUIET),
     series(10, filt=lambda i: "L" if i < 6 else "R"), 6, 6),
    ("hfr_increase", PolicyConfig(**QUIET, defocus_limit_cfz=0, hfr_increase_pct=5.0),
     series(40, jitter_pct=8.0, seed=4), 2, 39),
]


@pytest.mark.parametrize("rule,config,frames,earliest,latest", RULE_TABLE, ids=[r[0] for r in RULE_TABLE])
def test_each_rule_fires_on_its_series(rule, config, frames, earliest, latest):
    decisions = run(frames, config)
    first = first_refocus(decisions)
    assert first is not None, f"{rule} never fired"
    assert earliest <= first <= latest, (rule, first)
    assert rule in decisions[first].rules
    assert decisions[first].reasons and all(isinstance(r, str) and r for r in decisions[first].reasons)


def test_every_rule_and_veto_is_in_the_docstring_table():
    doc = monitor.__doc__ or ""
    for r in monitor.RULES:
        assert f"\n{r.name} " in doc, r.name
    for v in monitor.VETOES:
        assert f"\n{v.name} " in doc, v.name
    names = [row["name"] for row in monitor.rules_table()]
    assert names[:len(monitor.RULES)] == [r.name for r in monitor.RULES]


def test_drift_is_caught_before_the_defocus_leaves_the_zone():
    # 0.8 um per 3-min frame = 16 um/h; the zone's edge (CFZ/2 = 33.5 um) is reached at frame 42
    frames = series(70, defocus=lambda i: 0.8 * i, jitter_pct=3.0, seed=7)
    decisions = run(frames, PolicyConfig(**QUIET))
    first = first_refocus(decisions)
    assert first is not None
    true_defocus = 0.8 * first
    assert true_defocus < CFZ_UM / 2, f"fired at {true_defocus:.1f} um, zone edge {CFZ_UM / 2:.1f} um"
    d = decisions[first]
    assert d.predicted_defocus_um is not None and d.limit_um == pytest.approx(0.4 * CFZ_UM)
    # the same drift (0.8 um per 3-min frame, 3 % jitter) with physical-optics growth as the truth,
    # not the optics model the policy inverts: still asked inside the zone (0.35 CFZ on this seed)
    phys, truth_cfz = physical_jittery_night(70, cadence_s=180, jitter_pct=3.0, um_per_min=0.8 / 3, seed=7)
    phys_decisions = run(phys, PolicyConfig(**QUIET), rig=NIGHT_RIG)
    phys_first = first_refocus(phys_decisions)
    assert phys_first is not None and truth_cfz[phys_first] < 0.5, (phys_first, max(truth_cfz))
    assert phys_decisions[phys_first].limit_um == pytest.approx(0.4 * CFZ_UM)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seeing_jitter_without_drift_never_fires(seed):
    frames = series(120, jitter_pct=8.0, seed=seed)
    decisions = run(frames, PolicyConfig(**QUIET))
    assert first_refocus(decisions) is None
    # NINA's own rule on the same frames fires (it compares with the lowest HFR since the autofocus)
    nina = run(frames, PolicyConfig(**QUIET, defocus_limit_cfz=0, hfr_increase_pct=5.0))
    assert first_refocus(nina) is not None


def test_cloud_passage_is_set_aside_and_triggers_nothing():
    cloudy = range(20, 27)
    frames = series(40, stars=lambda i: 30 if i in cloudy else 120, flux=lambda i: 1e4 if i in cloudy else 5e4,
                    hfr_scale=lambda i: 1.6 if i in cloudy else 1.0)
    decisions = run(frames, PolicyConfig(**QUIET))
    assert first_refocus(decisions) is None
    assert [d.decision for d in decisions[20:27]] == ["skip"] * 7
    assert all("clouds" in d.rules for d in decisions[20:27])
    assert decisions[27].decision == "ok"


def test_trailing_frames_are_skipped_not_counted_as_defocus():
    frames = series(20, ecc=lambda i: 0.85 if i >= 10 else 0.3, hfr_scale=lambda i: 1.5 if i >= 10 else 1.0)
    decisions = run(frames, PolicyConfig(**QUIET))
    assert first_refocus(decisions) is None
    assert {d.decision for d in decisions[10:]} == {"skip"}
    assert decisions[12].rules == ("trailing",)


def test_calibration_frames_and_starless_frames_are_skipped():
    frames = series(6)
    frames[2] = replace(frames[2], is_light=False)
    frames[3] = replace(frames[3], n_stars=2)
    frames[4] = replace(frames[4], hfr_px=None, n_stars=0)
    d = run(frames)
    assert [x.decision for x in d[2:5]] == ["skip", "skip", "skip"]
    assert d[2].rules == ("not_light",) and d[3].rules == ("too_few_stars",)


def test_diagnosis_hook_skips_transient_and_warns_on_optical_defects():
    frames = series(12, defocus=lambda i: 0.0 if i < 5 else 0.9 * CFZ_UM, dt_min=10)
    frames = [replace(f, diagnosis="tilt", diagnosis_advice="check the sensor tilt") if i >= 5 else f
              for i, f in enumerate(frames)]
    d = run(frames, PolicyConfig(**QUIET))
    assert first_refocus(d) is None
    assert "consecutive" in d[7].held and any("tilt" in w for w in d[7].warnings)
    frames2 = [replace(f, diagnosis="trailing") if i == 3 else f for i, f in enumerate(series(6))]
    assert run(frames2)[3].decision == "skip"


def test_cooldown_after_a_refocus_then_autofocus_resets_the_baseline():
    cfg = PolicyConfig(**QUIET, cooldown_frames=4)
    frames = series(30, dt_min=10, defocus=lambda i: 0.0 if i < 5 else 0.9 * CFZ_UM)
    m = Monitor(cfg, RIG)
    out = [m.observe(f) for f in frames[:8]]
    assert out[7].decision == "refocus"
    held = [m.observe(f) for f in frames[8:12]]
    assert [d.decision for d in held] == ["ok"] * 4
    assert all(d.held for d in held) and "waiting for the autofocus" in held[0].reasons[0]
    assert m.observe(frames[12]).decision == "refocus"      # no autofocus came within 4 frames: ask again
    m.autofocus(AutofocusMark(time_s=frames[13].time_s - 30, source="autofocus-done", temp_c=9.0))
    after = [m.observe(replace(f, hfr_px=HFR0_PX)) for f in frames[13:20]]
    assert after[0].decision == "ok" and "baseline" in after[0].reasons[0]
    assert first_refocus(after) is None
    assert m.state.n_autofocus == 1 and m.state.af_temp_c == 9.0


def test_focuser_jump_in_the_headers_counts_as_an_autofocus():
    frames = series(12, focuser=lambda i: 10000 if i < 6 else 10040, temp=lambda i: 10.0)
    m = Monitor(PolicyConfig(**QUIET), RIG)
    decisions = [m.observe(f) for f in frames]
    assert m.state.af_source == "focuser-jump" and m.state.n_autofocus == 1
    assert "baseline" in decisions[6].reasons[0]
    # small temperature-compensation moves are not an autofocus
    m2 = Monitor(PolicyConfig(**QUIET), RIG)
    for f in series(12, focuser=lambda i: 10000 + 2 * i):
        m2.observe(f)
    assert m2.state.n_autofocus == 0


def _filter_night(n: int, change_at: int, *, move_steps: int, defocus_after=lambda i: 0.0, back_at: int | None = None):
    """L frames, then R from ``change_at`` (and L again from ``back_at``), the focuser moving by
    ``move_steps`` at each change (NINA's filter offset) and the R frames' defocus given."""
    def filt(i: int) -> str:
        return "R" if change_at <= i < (back_at if back_at is not None else n) else "L"

    return series(n, jitter_pct=1.0, filt=filt, focuser=lambda i: 10000 + (move_steps if filt(i) == "R" else 0),
                  defocus=lambda i: defocus_after(i) if filt(i) == "R" else 0.0)


def test_a_focuser_move_at_a_filter_change_matching_its_offset_is_not_an_autofocus():
    """Issue 13: NINA's filter offsets move the focuser at a filter change. A move that matches the
    pair's configured offset (or the one seen at an earlier change between the two) is the offset."""
    cfg = PolicyConfig(**QUIET, parfocal_filters=True, filter_offsets="L=0, R=40")
    m = Monitor(cfg, RIG)
    for f in _filter_night(12, 6, move_steps=42):
        m.observe(f)
    assert m.state.n_autofocus == 0 and m.state.af_source != "focuser-jump"
    # learnt: the first L->R move counts as an autofocus (nothing to match), the way back R->L and
    # the next L->R, with the same move, are the offset
    m = Monitor(PolicyConfig(**QUIET, parfocal_filters=True), RIG)
    frames = _filter_night(18, 4, move_steps=-60, back_at=9)
    frames += [replace(f, file=f"x{i}", time_s=f.time_s + 18 * 180.0) for i, f in enumerate(frames[4:9])]
    for f in frames:
        m.observe(f)
    assert m.state.n_autofocus == 1 and m.expected_offset_steps("R", "L") == 60.0
    # a move that does not match the offset is an autofocus
    m = Monitor(cfg, RIG)
    for f in _filter_night(12, 6, move_steps=80):
        m.observe(f)
    assert m.state.n_autofocus == 1 and m.state.af_source == "focuser-jump"
    # a move without a filter change is an autofocus, whatever its size
    m = Monitor(cfg, RIG)
    for f in series(12, jitter_pct=1.0, focuser=lambda i: 10000 if i < 6 else 10040):
        m.observe(f)
    assert m.state.n_autofocus == 1


def test_a_filter_change_with_a_new_hfr_minimum_stays_an_autofocus():
    """R was out of focus (the stars 0.8 CFZ big); back to R with the offset's move and the stars
    clearly smaller than R's last frames: an autofocus ran at the filter change."""
    cfg = PolicyConfig(**QUIET, parfocal_filters=True, filter_offsets="L=0 R=40")
    frames = _filter_night(20, 4, move_steps=40, back_at=10, defocus_after=lambda i: 0.8 * CFZ_UM)
    frames += [replace(f, file=f"y{i}", time_s=f.time_s + 20 * 180.0, hfr_px=frames[0].hfr_px)
               for i, f in enumerate(frames[4:8])]
    m = Monitor(cfg, RIG)
    n_af = []
    for f in frames:
        m.observe(f)
        n_af.append(m.state.n_autofocus)
    assert n_af[19] == 0 and n_af[-1] == 1, n_af
    with pytest.raises(ConfigError, match="filter_offsets"):
        PolicyConfig(filter_offsets="L=0 R=forty")


def test_drift_bar_keeps_the_false_alarms_per_hour():
    """drift_z is meant for 60 s frames; 5-minute subs look 5 x less often, so each look may take a
    5 x larger one-sided tail (closed form), never a higher bar for faster frames; the straight-line
    witness takes half of it (Bonferroni)."""
    from scipy.stats import norm

    cfg = PolicyConfig()
    assert monitor.drift_bar(cfg, 1.0) == cfg.drift_z == monitor.drift_bar(cfg, 0.2)
    assert norm.sf(monitor.drift_bar(cfg, 5.0)) == pytest.approx(5.0 * norm.sf(cfg.drift_z), rel=1e-9)
    assert monitor.drift_bar(PolicyConfig(drift_z_cadence_s=0), 10.0) == cfg.drift_z
    assert norm.sf(monitor.slope_critical_z(3.0)) == pytest.approx(norm.sf(3.0) / 2.0, rel=1e-9)


def test_straight_line_witness_only_for_a_filter_the_autofocus_did_not_focus():
    """A filter changed to without refocusing, whose frames rise steadily from an already-grown
    start (the drift began before them): the straight line asks where the model's curve from zero
    lags; the same frames in the autofocus's own filter wait for the model."""
    start, step = 0.3 * CFZ_UM, 0.05 * CFZ_UM
    frames = series(14, dt_min=5.0, jitter_pct=0.7, seed=3, filt=lambda i: "L" if i < 4 else "R",
                    defocus=lambda i: 0.0 if i < 4 else start + step * (i - 4))
    cfg = PolicyConfig(**QUIET, parfocal_filters=True, consecutive_frames=0, reference_frames=0)
    m = Monitor(cfg, RIG)
    m.autofocus(AutofocusMark(time_s=frames[0].time_s - 60, source="dusk", filter_name="L"))
    other = [m.observe(f) for f in frames]
    m = Monitor(cfg, RIG)
    m.autofocus(AutofocusMark(time_s=frames[4].time_s - 60, source="autofocus-done", filter_name="R"))
    own = [m.observe(f) for f in frames[4:]]
    first_other, first_own = first_refocus(other), first_refocus(own)
    assert first_other is not None and "steady rise" in other[first_other].reasons[0]
    assert first_own is None or first_own + 4 > first_other, (first_own, first_other)


@pytest.mark.parametrize("bad_hfr_px", [math.nan, math.inf, 0.0, -1.0])
def test_a_frame_without_a_usable_size_is_skipped_and_not_remembered(bad_hfr_px):
    """One bad frame (no size, zero or negative: a failed measurement) is skipped, never enters the
    history, and the next good frame decides as if it had not been there (no NaN, no warning)."""
    frames = series(8, jitter_pct=1.0)
    m = Monitor(PolicyConfig(**QUIET, min_stars=0), RIG)
    clean = Monitor(PolicyConfig(**QUIET, min_stars=0), RIG)
    for f in frames[:6]:
        m.observe(f)
        clean.observe(f)
    bad = replace(frames[6], file="bad.fits", hfr_px=bad_hfr_px)
    d = m.observe(bad)
    assert d.decision == "skip" and d.rules == ("too_few_stars",), d
    assert len(m.history) == 6
    good, want = m.observe(frames[7]), clean.observe(frames[7])
    assert good.decision == want.decision == "ok" and good.defocus_um == want.defocus_um


def test_airmass_growth_is_not_taken_for_defocus():
    am = lambda i: 1.0 + 0.02 * i                                  # noqa: E731  1.0 -> 2.2
    frames = series(60, airmass=am, hfr_scale=lambda i: am(i) ** 0.6)
    assert first_refocus(run(frames, PolicyConfig(**QUIET))) is None
    assert first_refocus(run(frames, PolicyConfig(**QUIET, airmass_correction=False))) is not None


def test_seeing_step_with_peaked_profile_is_held_as_seeing():
    frames = series(30, dt_min=10, hfr_scale=lambda i: 1.0 if i < 5 else 1.5, profile=lambda i: 1.15)
    d = run(frames, PolicyConfig(**QUIET))
    held = [x for x in d if "seeing" in " ".join(x.reasons)]
    assert first_refocus(d) is None and held
    # the same growth with a flattening profile is a focus miss
    frames2 = series(30, dt_min=10, defocus=lambda i: 0.0 if i < 5 else 0.9 * CFZ_UM,
                     profile=lambda i: 1.15 if i < 5 else 0.98)
    assert first_refocus(run(frames2, PolicyConfig(**QUIET))) in (6, 7)    # 2nd or 3rd defocused frame


def test_restore_from_recorded_decisions_reproduces_the_state():
    frames = series(40, dt_min=10, defocus=lambda i: 0.0 if i < 5 else 0.9 * CFZ_UM, temp=lambda i: 10 - 0.01 * i)
    m = Monitor(PolicyConfig(), RIG)
    recorded = [(f, m.observe(f)) for f in frames[:20]]
    m2 = Monitor(PolicyConfig(), RIG)
    for f, d in recorded:
        m2.restore(f, Decision.from_dict(d.to_dict()))
    assert m2.state == m.state and m2.history == m.history
    assert [m.observe(f).to_dict() for f in frames[20:]] == [m2.observe(f).to_dict() for f in frames[20:]]


def test_without_optics_the_limit_falls_back_to_hfr_percent():
    frames = series(12, dt_min=10, defocus=lambda i: 0.0 if i < 5 else 0.9 * CFZ_UM)
    d = run(frames, PolicyConfig(**QUIET), rig=Rig())
    assert d[7].defocus_um is None and d[7].decision == "refocus"
    assert "HFR" in d[7].reasons[0]


def test_policy_config_from_toml_table_and_errors():
    cfg = section_to_dataclass(PolicyConfig, {"temperature_delta_c": 2, "refocus_on_filter_change": False},
                               "policy")
    assert cfg.temperature_delta_c == 2.0 and cfg.refocus_on_filter_change is False
    with pytest.raises(ConfigError, match=r"\[policy\] temperature_delta_c"):
        section_to_dataclass(PolicyConfig, {"temperature_delta_c": -1}, "policy")
    with pytest.raises(ConfigError, match="unknown setting"):
        section_to_dataclass(PolicyConfig, {"temp_limit": 1}, "policy")
    with pytest.raises(ConfigError, match="defocus_limit_cfz"):
        section_to_dataclass(PolicyConfig, {"defocus_limit_cfz": "half"}, "policy")


def test_decision_round_trips_and_summary_counts():
    d = run(series(12, dt_min=10, defocus=lambda i: 0.0 if i < 5 else 0.9 * CFZ_UM), PolicyConfig(**QUIET))
    assert all(Decision.from_dict(x.to_dict()) == x for x in d)
    s = monitor.summarize(d)
    assert s.n_frames == 12 and s.n_refocus == sum(x.decision == "refocus" for x in d) >= 1
    assert s.refocus_rules.get("consecutive", 0) >= 1
    assert monitor.Summary.from_dict(s.to_dict()) == s
    assert s.max_defocus_um is not None and math.isfinite(s.max_defocus_um)


def _measured_night(plan, coef_um_per_c: float, seed: int):
    """Render a small night with the simulator and measure it with the real star measurement."""
    from focuswatch import sim, stars
    from focuswatch.policy import record_from_stats

    base = sim.SimParams(width_px=320, height_px=256, n_stars=45, seed=seed, rig=RIG, star_flux_min_e=8e3)
    focuser = sim.SimFocuser(coef_um_per_c=coef_um_per_c, autofocus_error_um=0.0)
    out = []
    for p in sim.night_frames(base, plan, focuser, seed=seed):
        f = sim.render(p)
        st = stars.measure(f.to_frame(), plate_scale_arcsec_px=RIG.plate_scale_arcsec_px)
        from focuswatch.io.frames import parse_date_obs
        out.append((record_from_stats(st, file=f.file_name, time_s=parse_date_obs(p.date_obs)), f.truth, p))
    return out


def test_rendered_night_with_seeing_jitter_and_a_cloud_triggers_nothing():
    from focuswatch import sim

    plan = sim.NightPlan(n_frames=24, seeing_fwhm_arcsec=2.0, seeing_jitter_pct=8.0, cloud_frames=(12, 15, 0.8),
                         temp_noise_c=0.02, cooling_c_per_hour=-0.3, dither_px=2.0)
    night = _measured_night(plan, coef_um_per_c=0.0, seed=5)
    decisions = run([r for r, _, _ in night], PolicyConfig())
    assert first_refocus(decisions) is None, [(d.decision, d.reasons) for d in decisions]
    assert {d.decision for d in decisions[13:15]} == {"skip"}
    assert all("clouds" in decisions[i].rules for i in (13, 14))


def test_rendered_night_thermal_drift_is_caught_before_the_zone_edge():
    """30 um/°C, -2 °C/h: the default policy refocuses inside the zone; the image rules alone
    (no temperature probe) still catch it, a little later, through 6 % seeing jitter."""
    from focuswatch import sim

    plan = sim.NightPlan(n_frames=24, seeing_fwhm_arcsec=2.0, seeing_jitter_pct=6.0, cooling_c_per_hour=-2.0,
                         temp_noise_c=0.03, dither_px=2.0)
    night = _measured_night(plan, coef_um_per_c=-30.0, seed=5)
    records = [r for r, _, _ in night]
    true_cfz = [abs(t["defocus_um"]) / CFZ_UM for _, t, _ in night]
    d = run(records, PolicyConfig())
    i = first_refocus(d)
    assert i is not None and true_cfz[i] < 0.5, (i, true_cfz[i] if i is not None else None)
    d2 = run(records, PolicyConfig(temperature_delta_c=0))
    j = first_refocus(d2)
    assert j is not None and true_cfz[j] < 0.7 and set(d2[j].rules) & {"drift", "consecutive"}
    assert first_refocus(d2[:j]) is None and true_cfz[j] > 0.3     # not fired on jitter early on


# --------------------------------------------------------------------------- seeing jitter vs drift
# The demo rig of issue 3: 130 mm f/5, 3.76 um pixels, 2.8" seeing (HFR ~1.42 px). Half the zone
# (33.5 um) grows these stars by only ~7 %, less than one frame of 10 % seeing jitter.
NIGHT_RIG = Rig(aperture_mm=130, focal_length_mm=650, pixel_um=3.76, focuser_step_um=2.0)
NIGHT_HFR0_PX = 1.42


def jittery_night(n: int, *, cadence_s: float, jitter_pct: float, um_per_min: float = 0.0, seed: int = 0,
                  profile: bool = True, step_um: tuple[int, float] | None = None, galsim_profile: bool = False):
    """Frames of a night: seeing jitter, linear defocus drift (or a step), HFD/FWHM as stars.measure
    reported it on focuswatch.sim's frames of this rig (1.18 in focus, ~-0.03 at 0.4 CFZ, 0.004
    noise), or with ``galsim_profile`` as it reads it on GalSim frames (tests/galsim_profile.py: flat
    to ~1 CFZ at 2.8", 0.019 scatter; the same random draws, so the HFR series is identical).
    Returns (records, true CFZ)."""
    rng = np.random.default_rng(seed)
    out, truth = [], []
    for i in range(n):
        t_min = i * cadence_s / 60.0
        d = um_per_min * t_min + (step_um[1] if step_um and i >= step_um[0] else 0.0)
        s = max(0.3, 1.0 + rng.normal(0.0, jitter_pct / 100.0))
        h0 = NIGHT_HFR0_PX * s
        hfr = optics.hfr_px_for_defocus(d, h0, 5.0, 3.76) * (1.0 + rng.normal(0.0, 0.004))
        x = d / 5.0 / 3.76 / h0
        z = rng.normal()
        prof = (galsim_profile_table.profile_ratio(2.8 * s, d / CFZ_UM, z) if galsim_profile
                else 1.18 + 0.025 * (s - 1.0) - 0.03 * x * x / (1.0 + 0.05 * x * x) + 0.004 * z)
        out.append(FrameRecord(file=f"n{i:04d}.fits", time_s=1.7e9 + i * cadence_s, n_stars=150, hfr_px=hfr,
                               fwhm_px=2 * hfr / prof, eccentricity=0.3, profile_ratio=prof if profile else None,
                               star_flux_adu=5e4, background_adu=800.0, exposure_s=cadence_s - 10.0,
                               filter_name="L"))
        truth.append(d / CFZ_UM)
    return out, truth


# (name, night kwargs, frames, must fire: None = never, else (lowest, highest) true CFZ at the request)
JITTER_TABLE = [
    # seeds on which the previous policy (3-frame jitter, lower-bound trend) fired falsely
    *[(f"10 % jitter, no drift, 60 s, seed {k}", dict(cadence_s=70, jitter_pct=10.0, seed=k), 250, None)
      for k in (2, 8)],
    *[(f"10 % jitter, no drift, HFR only, seed {k}", dict(cadence_s=70, jitter_pct=10.0, seed=k, profile=False),
       250, None) for k in (4, 8)],
    *[(f"10 % jitter, no drift, 600 s, seed {k}", dict(cadence_s=610, jitter_pct=10.0, seed=k), 36, None)
      for k in (1, 3)],
    ("6 % jitter, 1 um/min drift, 60 s", dict(cadence_s=70, jitter_pct=6.0, um_per_min=1.0, seed=14), 60, (0.25, 0.5)),
    ("10 % jitter, 0.5 um/min drift, 60 s", dict(cadence_s=70, jitter_pct=10.0, um_per_min=0.5, seed=15), 100,
     (0.25, 0.5)),
    ("3 % jitter, 0.5 um/min drift, HFR only", dict(cadence_s=70, jitter_pct=3.0, um_per_min=0.5, seed=16,
                                                     profile=False), 100, (0.25, 0.6)),
    ("6 % jitter, 600 s frames, 0.25 um/min", dict(cadence_s=610, jitter_pct=6.0, um_per_min=0.25, seed=17), 30,
     (0.25, 0.75)),
    ("focus step of 1 CFZ, HFR only", dict(cadence_s=70, jitter_pct=6.0, seed=18, profile=False,
                                          step_um=(20, CFZ_UM)), 30, (0.9, 1.1)),
]


@pytest.mark.parametrize("name,kw,n,window", JITTER_TABLE, ids=[r[0] for r in JITTER_TABLE])
def test_seeing_jitter_never_fires_and_drift_is_caught_in_the_zone(name, kw, n, window):
    frames, truth = jittery_night(n, **kw)
    decisions = run(frames, PolicyConfig(**QUIET), rig=NIGHT_RIG)
    first = first_refocus(decisions)
    if window is None:
        assert first is None, (name, first, decisions[first].reasons if first is not None else None)
        assert max(d.jitter_pct or 0 for d in decisions) > (5.0 if kw["jitter_pct"] >= 10 else 0)
        return
    assert first is not None, f"{name}: never fired (true defocus reached {max(truth):.2f} CFZ)"
    lo, hi = window
    assert lo <= truth[first] < hi, (name, first, truth[first])
    assert set(decisions[first].rules) & {"drift", "consecutive"}


# JITTER_TABLE's rows that carry a profile, drawn from GalSim-measured HFD/FWHM (policy8)
_GALSIM_PROFILE_ROWS = [r for r in JITTER_TABLE if r[1].get("profile", True)]


@pytest.mark.parametrize("name,kw,n,window", _GALSIM_PROFILE_ROWS, ids=[r[0] for r in _GALSIM_PROFILE_ROWS])
def test_a_galsim_measured_profile_never_fires_alone_and_never_delays_a_drift(name, kw, n, window):
    """JITTER_TABLE's nights with the HFD/FWHM that stars.measure reads on GalSim frames of this rig
    (flat to ~1 CFZ at 2.8", 0.019 frame scatter) instead of the simulator's flattening. Physics
    gives the profile almost nothing to say below a zone here, so the profile must neither make a
    request on a night without drift nor hold a drift the HFR alone catches: with the profile the
    request comes at most one frame later than on the same frames without it. (Measured, seeds of
    the rows and 100-105: the physical profile curve asks within a frame of HFR alone, up to
    0.06 CFZ earlier; the Moffat profile
    curve before policy7 asked up to 0.3 CFZ later or never on 19 of 21 drift nights and once at
    0.15 CFZ, far too early.) JITTER_TABLE's windows (0.5 / 0.75 CFZ) hold only on the simulator's
    flattening: here the drift rows ask at 0.61, 0.77 and 0.76 CFZ, as HFR alone does."""
    frames, truth = jittery_night(n, **kw, galsim_profile=True)
    decisions = run(frames, PolicyConfig(**QUIET), rig=NIGHT_RIG)
    first = first_refocus(decisions)
    if window is None:
        assert first is None, (name, first, decisions[first].reasons if first is not None else None)
        return
    hfr_only = first_refocus(run([replace(f, profile_ratio=None) for f in frames], PolicyConfig(**QUIET),
                                 rig=NIGHT_RIG))
    assert hfr_only is not None, name
    assert first is not None and first <= hfr_only + 1, (name, first, hfr_only)
    assert truth[first] >= window[0], (name, truth[first])
    assert set(decisions[first].rules) & {"drift", "consecutive"}


@pytest.mark.parametrize("kw,n", [(dict(cadence_s=70, jitter_pct=10.0, seed=8, profile=False), 250),
                                  (dict(cadence_s=610, jitter_pct=10.0, seed=3), 36)], ids=["60 s", "600 s"])
def test_seeing_jitter_in_a_filter_the_autofocus_did_not_focus_never_fires(kw, n):
    """No drift, 10 % seeing jitter, every frame in a filter the autofocus was not made with: the
    straight-line witness is on at its per-hour bar (no longer halved for a second test, policy3)
    and still never asks (72 such nights, 3-10 % jitter, seeds 100-105: none either)."""
    frames, _ = jittery_night(n, **kw)
    m = Monitor(PolicyConfig(**QUIET, parfocal_filters=True), NIGHT_RIG)
    m.autofocus(AutofocusMark(time_s=frames[0].time_s - 60, source="dusk", filter_name="R"))
    decisions = [m.observe(f) for f in frames]
    assert first_refocus(decisions) is None, [d.reasons for d in decisions if d.decision == "refocus"][:1]
    assert max(d.jitter_pct or 0 for d in decisions) > 5.0


# The same nights with the star's growth from physical optics (focuswatch.sim.physical: Kolmogorov
# seeing through the 130 mm f/5's diffraction, checked against GalSim in test_physoptics.py), not the
# optics model the policy inverts. HFR only: no profile witness derived from the policy's own numbers.
_PHYS_CFZ_GRID = np.arange(0.0, 1.51, 0.125)


def _phys_growth_table() -> np.ndarray:
    """True HFR (px) at 2.8" over the 130 mm f/5 at each defocus of ``_PHYS_CFZ_GRID`` (cached)."""
    cached = getattr(_phys_growth_table, "cache", None)
    if cached is None:
        from focuswatch.sim import physical as po

        o = po.Optics(aperture_mm=130.0, focal_length_mm=650.0, pixel_um=3.76)
        hs = []
        for z in _PHYS_CFZ_GRID:
            img, samp = po.continuous_psf(o, po.Aberrations(defocus_um=float(z) * CFZ_UM), po.Seeing(2.8))
            hs.append(po.encircled_radius(img, samp) / o.pixel_um)
        cached = _phys_growth_table.cache = np.array(hs)
    return cached


def physical_jittery_night(n: int, *, cadence_s: float, jitter_pct: float, um_per_min: float = 0.0, seed: int = 0):
    """As :func:`jittery_night`, HFR only, from the physical-optics table (seeing and defocus blur scale
    together: HFR(s * 2.8", d) = s * HFR(2.8", d / s))."""
    rng = np.random.default_rng(seed)
    table = _phys_growth_table()
    out, truth = [], []
    for i in range(n):
        d = um_per_min * i * cadence_s / 60.0
        s = max(0.3, 1.0 + rng.normal(0.0, jitter_pct / 100.0))
        hfr = s * float(np.interp(d / s / CFZ_UM, _PHYS_CFZ_GRID, table)) * (1.0 + rng.normal(0.0, 0.004))
        out.append(FrameRecord(file=f"p{i:04d}.fits", time_s=1.7e9 + i * cadence_s, n_stars=150, hfr_px=hfr,
                               fwhm_px=None, eccentricity=0.3, profile_ratio=None, star_flux_adu=5e4,
                               background_adu=800.0, exposure_s=cadence_s - 10.0, filter_name="L"))
        truth.append(d / CFZ_UM)
    return out, truth


def test_a_focuser_slipping_faster_than_a_thermal_drift_is_still_caught():
    """A ramp of 8 CFZ/h (a slipping focuser, twice the thermal-rate cap max_drift_cfz_per_h = 4)
    on physical-optics star sizes, 70 s frames: the drift model no longer asks for it, the
    consecutive rule does, at 1.24 CFZ on seeds 1-3 (without the cap the drift model asked at
    0.93-1.09 CFZ: the cap's cost is one or two frames on a ramp no thermal drift makes)."""
    um_per_min = 8.0 * CFZ_UM / 60.0
    for seed in (1, 2, 3):
        frames, truth = physical_jittery_night(40, cadence_s=70, jitter_pct=3.0, um_per_min=um_per_min, seed=seed)
        d = run(frames, PolicyConfig(**QUIET), rig=NIGHT_RIG)
        i = first_refocus(d)
        assert i is not None and truth[i] < 1.3 and "consecutive" in d[i].rules, (seed, i)
        uncapped = first_refocus(run(frames, PolicyConfig(**QUIET, max_drift_cfz_per_h=0), rig=NIGHT_RIG))
        assert uncapped is not None and uncapped <= i


def test_physical_optics_table_is_monotone_and_between_the_geometric_bounds():
    t = _phys_growth_table()
    assert np.all(np.diff(t) > 0)
    # far out: above the geometric disk's HFR alone ((d / N) / 2 / sqrt 2), below its quadrature sum with focus
    disk = _PHYS_CFZ_GRID[-1] * CFZ_UM / 5.0 / 3.76 / 2.0 / math.sqrt(2.0)
    assert disk < t[-1] < math.hypot(t[0], disk)


@pytest.mark.parametrize("kw,n,window", [
    (dict(cadence_s=70, jitter_pct=10.0, seed=4), 120, None),
    (dict(cadence_s=610, jitter_pct=10.0, seed=3), 36, None),
    (dict(cadence_s=70, jitter_pct=3.0, um_per_min=0.5, seed=16), 100, (0.25, 0.6)),
    (dict(cadence_s=610, jitter_pct=6.0, um_per_min=0.25, seed=17), 30, (0.25, 1.0)),
], ids=["10% jitter 60s", "10% jitter 600s", "3% jitter 0.5um/min", "6% jitter 600s 0.25um/min"])
def test_jitter_and_drift_windows_hold_on_physical_optics(kw, n, window):
    """The model-only rows of JITTER_TABLE (HFR only), with physical-optics growth as the truth.
    The 600 s, 6 % jitter row asks at 0.76-0.91 CFZ over seeds 17-22 HFR-only (on the model's own
    growth too): JITTER_TABLE's 0.75 bound for it holds only with the synthetic HFD/FWHM witness.
    That is the information limit, not a tuning miss: 0.6 CFZ is the 16th frame of this drift, +7.2 %
    HFR against 6 % jitter, 1.6 sigma for a matched filter with the in-focus size fitted (3.5 sigma
    only at ~0.83 CFZ; docs/watch.md)."""
    frames, truth = physical_jittery_night(n, **kw)
    decisions = run(frames, PolicyConfig(**QUIET), rig=NIGHT_RIG)
    first = first_refocus(decisions)
    if window is None:
        assert first is None, (first, decisions[first].reasons if first is not None else None)
        return
    assert first is not None, f"never fired (true defocus reached {max(truth):.2f} CFZ)"
    assert window[0] <= truth[first] < window[1], (first, truth[first])
    assert set(decisions[first].rules) & {"drift", "consecutive"}


def test_drift_z_and_jitter_floor_are_switchable_settings():
    frames, truth = jittery_night(60, cadence_s=70, jitter_pct=6.0, um_per_min=1.0, seed=14)
    early = first_refocus(run(frames, PolicyConfig(**QUIET, drift_z=1.0), rig=NIGHT_RIG))
    late = first_refocus(run(frames, PolicyConfig(**QUIET, drift_z=6.0), rig=NIGHT_RIG))
    assert early is not None and (late is None or late >= early)
    off = run(frames, PolicyConfig(**QUIET, defocus_limit_cfz=0), rig=NIGHT_RIG)
    assert first_refocus(off) is None
    with pytest.raises(ConfigError, match="drift_z"):
        PolicyConfig(drift_z=0)


def test_fit_drift_recovers_a_known_drift_and_its_significance():
    """The truth is physical optics (Fourier optics through the 130 mm f/5, checked against GalSim),
    not the growth curve the fit inverts; HFR only (no profile witness made from the policy's own
    numbers). 0.9 um/min over 40 frames of 70 s ends at 0.61 CFZ. On seeds 20-29 the fit reads
    -1 % to -20 % (median -9 %: the model's curve grows a little faster than physical optics) and
    z 3.3-5.7; seed 20: -4 %, z 5.7."""
    frames, truth = physical_jittery_night(40, cadence_s=70, jitter_pct=3.0, um_per_min=0.9, seed=20)
    hfr0_px = float(_phys_growth_table()[0])                  # the truth's own in-focus size
    t = [(f.time_s - frames[0].time_s) / 60.0 for f in frames]
    r = [f.hfr_px / hfr0_px for f in frames]
    fit = monitor.fit_drift(t, r, um_per_blur=5.0 * 3.76 * hfr0_px, obstruction=0.0, lookahead_min=0,
                            z=2.0, sigma_floor=0.03)
    assert fit is not None and fit.z > 4
    assert fit.defocus_um == pytest.approx(truth[-1] * CFZ_UM, rel=0.25)
    assert fit.predicted_low_um <= fit.defocus_um
    still = monitor.fit_drift(t, [1.0 + 0.03 * math.sin(i) for i in range(40)], um_per_blur=26.7,
                              obstruction=0.0, lookahead_min=0, z=2.0, sigma_floor=0.03)
    assert still is not None and still.z < 2


def test_later_onsets_never_lower_the_growth_and_find_a_late_drift():
    """Closed form (white ln-HFR noise, 2 %): the later onsets the drift model tries keep the model from
    the first frame as a candidate, so its z never falls and ``z_af`` is that model's own z, on any series
    (50 noise-only and 50 drifting ones). For a drift that starts at frame 20 of 40 after an
    in-focus stretch: physical optics (Fourier optics, checked against GalSim, 70 s frames, 2.5 um/min
    to 0.83 CFZ), not the growth curve the fit inverts: on seeds 1-8 a later onset is taken and the
    defocus is read closer to the truth on every seed (median -11 %; from the first frame -21 %: the
    in-focus frames dilute the growth)."""
    rng = np.random.default_rng(7)
    t = [70.0 * i / 60.0 for i in range(40)]
    kw = dict(um_per_blur=26.7, obstruction=0.0, lookahead_min=0, z=2.0, sigma_floor=0.01)
    for k in range(100):
        y = rng.normal(0.0, 0.02, 40) + (0.0 if k < 50 else 0.004 * np.clip(np.arange(40) - 20, 0, None) ** 1.5)
        r = list(np.exp(y))
        base = monitor.fit_drift(t, r, **kw)
        late = monitor.fit_drift(t, r, onsets=(0.25, 0.5, 0.75), **kw)
        assert late.z >= base.z - 1e-12
        assert (late.z_af is None and late.z == base.z) or late.z_af == pytest.approx(base.z)
    hfr0_px = float(_phys_growth_table()[0])
    kw = dict(um_per_blur=5.0 * 3.76 * hfr0_px, obstruction=0.0, lookahead_min=0, z=2.0, sigma_floor=0.02)
    err_af, err_late = [], []
    for seed in range(1, 9):
        frames, truth = physical_jittery_night(20, cadence_s=70, jitter_pct=2.0, um_per_min=2.5, seed=seed)
        focused = np.exp(np.random.default_rng(100 + seed).normal(0.0, 0.02, 20))
        rr = list(focused) + [f.hfr_px / hfr0_px for f in frames]
        from_af = monitor.fit_drift(t, rr, **kw)
        late = monitor.fit_drift(t, rr, onsets=(0.25, 0.5, 0.75), **kw)
        assert late.onset_min >= 0.25 * t[-1] - 1e-9 and late.z > from_af.z
        err_af.append(from_af.defocus_um / (truth[-1] * CFZ_UM) - 1.0)
        err_late.append(late.defocus_um / (truth[-1] * CFZ_UM) - 1.0)
    assert np.all(np.abs(err_late) < np.abs(err_af)), (err_af, err_late)
    assert abs(np.median(err_late)) < 0.15 < abs(np.median(err_af)), (err_af, err_late)


def _closed_form_nights(add: Callable[[Any, str, int, float], None], scatter: str,
                        n_nights: int = 150) -> tuple[list[float], list[int]]:
    """The closed-form nights of the night-scatter tests: each a fresh ``NightMemory`` with three
    autofocus segments of L, R and B runs of 6, 4 and 5 frames, 320 s apart; ``add(night, filter,
    frame in run, time s)`` records each frame. Returns each night's ``scatter()`` (``jitter`` or
    ``profile_jitter``) and its degrees of freedom."""
    from focuswatch.policy.baseline import NightMemory

    got, dofs = [], []
    for _ in range(n_nights):
        night = NightMemory()
        t_s = 0.0
        for _segment in range(3):
            night.autofocus("L")
            for filt, n in (("L", 6), ("R", 4), ("B", 5)):
                for k in range(n):
                    add(night, filt, k, t_s)
                    t_s += 320.0
        j, dof = getattr(night, scatter)()
        got.append(j)
        dofs.append(dof)
    return got, dofs


@pytest.mark.parametrize("drift_sigmas_per_frame", [0.0, 3.0])
def test_the_nights_scatter_reads_the_jitter_not_a_drift_inside_a_run(drift_sigmas_per_frame):
    """Closed form: white log-HFR jitter of known sigma (1.12 %, the reconstructed NINA night's
    seeing and measurement noise), three autofocus segments of L, R and B runs of 4-6 frames; with
    drift, every run rises steadily by up to 3 sigma per frame (a filter drifting through its
    frames). The night's frame-to-frame scatter, which every significance test divides by, is the
    jitter: mean over 150 nights within 5 % of sigma with and without the drifts (about the night's
    median step, as before policy4, the drifting nights read +75 %)."""
    sigma = 0.0112
    rng = np.random.default_rng(11)
    run = {"slope": 0.0}

    def add(night: Any, filt: str, k: int, t_s: float) -> None:
        if k == 0:                                                  # each run's own drift
            run["slope"] = drift_sigmas_per_frame * sigma * rng.uniform(0.0, 1.0)
        night.add(filt, t_s, 1.4 * math.exp(rng.normal(0.0, sigma) + run["slope"] * k), None, 3)

    got, dofs = _closed_form_nights(add, "jitter")
    assert np.mean(got) == pytest.approx(sigma, rel=0.05), np.mean(got) / sigma
    # 36 differences, the largest 10 % trimmed, less one (as the night's-median version counted them)
    assert min(dofs) == max(dofs) == 32


def test_the_nights_profile_scatter_reads_the_profile_jitter():
    """Closed form: white ln HFD/FWHM noise of known sigma (0.0164, the frame scatter of HFD/FWHM
    ``stars.measure`` reads on GalSim frames of the demo rig, 0.019 at 1.16: tests/galsim_profile.py),
    three autofocus segments of L, R and B runs; the autofocus jumps and filter changes are not
    differences. The night's profile scatter is within 5 % of sigma over 150 nights; frames
    without a profile add nothing."""
    from focuswatch.policy.baseline import NightMemory

    sigma = 0.0164
    rng = np.random.default_rng(12)
    seg = {"level": 1.16}

    def add(night: Any, filt: str, k: int, t_s: float) -> None:
        if filt == "L" and k == 0:                                  # each segment's own level: not a difference
            seg["level"] = 1.16 * math.exp(rng.normal(0.0, 0.05))
        night.add(filt, t_s, 1.4, None, 3, profile_ratio=seg["level"] * math.exp(rng.normal(0.0, sigma)))
        night.add(filt, t_s + 1.0, 1.4, None, 3)                    # HFR only: no profile step

    got, dofs = _closed_form_nights(add, "profile_jitter")
    assert np.mean(got) == pytest.approx(sigma, rel=0.05), np.mean(got) / sigma
    assert min(dofs) == max(dofs) == 32                    # 36 differences, 10 % trimmed, less one
    assert NightMemory().profile_jitter() == (None, 0)


def test_a_chance_profile_fall_on_few_frames_is_not_a_drift_once_the_night_knows_its_scatter():
    """The policy benchmark's GalSim grid (10 % seeing jitter, 600 s, cloud, seed 1), five frames
    after an autofocus, in focus (truth: no defocus): HFR flat within its jitter, HFD/FWHM 1.17 ->
    1.12 over three frames, a few times the frame scatter GalSim frames show (0.019 when traced;
    the table re-measured with the wing fit: 0.023). Weighed by its own five frames' residuals
    (3 degrees of freedom) that fall read as a 7 sigma drift, the default policy's false request
    there; with the night's profile scatter pooled in (the GalSim table's, read from it, not a
    copy) it is not significant, and the HFR alone says nothing."""
    from focuswatch.policy.estimators import fit_drift, physical_profile

    t_min = [0.0, 10.17, 20.33, 30.5, 40.67]
    hfr = [1.313, 1.564, 1.630, 1.612, 1.405]
    prof = [1.174, 1.166, 1.169, 1.148, 1.120]
    kw = dict(um_per_blur=5.0 * 3.76 * 1.564, obstruction=0.0, lookahead_min=20.0, z=2.0, sigma_floor=0.01,
              sigma_prior=(0.078, 10.0), profiles=prof, profile_floor=0.005,
              profile_curve=physical_profile(1.564, 5.0, 3.76, 0.0, 550.0))
    ratios = [h / 1.564 for h in hfr]
    assert fit_drift(t_min, ratios, **{**kw, "profiles": None}).z < 1.0
    assert fit_drift(t_min, ratios, **kw).z > 5.0                    # the failure: its own 3-dof scatter
    galsim_sd = galsim_profile_table.profile_sd() / float(np.mean(prof))   # ln HFD/FWHM scatter
    pooled = fit_drift(t_min, ratios, profile_sigma_prior=(galsim_sd, 40.0), **kw)
    assert pooled.z < 2.0, pooled


def test_the_profile_waits_for_the_nights_scatter_before_it_weighs_in_the_drift_fit():
    """At the start of a night (fewer than ``night_jitter_min_dof`` profile differences) the drift
    fit decides on the HFR alone: the same six 600 s frames give the same growth z with and without
    their HFD/FWHM, although it falls 1.17 -> 1.11 (on GalSim frames a chance fall that size is
    ~3 frame scatters; grid seed 4, 6 % jitter, 600 s, cloud, frame 5 asked at 6.5 sigma on it).
    Once the night knows its profile scatter, the profile is weighed again (the z differs)."""
    rng = np.random.default_rng(4)
    hfr = 1.42 * np.exp(rng.normal(0.0, 0.03, 40))
    prof = np.concatenate([[1.17, 1.17, 1.16, 1.14, 1.12, 1.11], 1.16 + rng.normal(0.0, 0.019, 34)])

    def night(with_profile: bool) -> list[Decision]:
        m = Monitor(PolicyConfig(), RIG)
        m.autofocus(AutofocusMark(time_s=1.75e9 - 60, source="dusk", filter_name="L"))
        return [m.observe(FrameRecord(file=f"p{i:03d}.fits", time_s=1.75e9 + 620.0 * i, hfr_px=float(hfr[i]), n_stars=200,
                                      filter_name="L", exposure_s=600.0,
                                      profile_ratio=float(prof[i]) if with_profile else None))
                for i in range(40)]

    both, alone = night(True), night(False)
    assert [d.drift_z for d in both[:6]] == [d.drift_z for d in alone[:6]]
    assert any(d.drift_z is not None and a.drift_z is not None and abs(d.drift_z - a.drift_z) > 1e-6
               for d, a in zip(both[12:], alone[12:]))


# --------------------------------------------------------------------------- one source of truth (issue 9)

def test_rule_tables_are_generated_from_rules_and_each_rule_owns_its_off_switch():
    doc = monitor.__doc__ or ""
    assert "{RULE_TABLE}" not in doc and "{VETO_TABLE}" not in doc
    assert monitor.rule_table_text() in doc and monitor.veto_table_text() in doc
    assert not hasattr(monitor, "_rule_enabled")
    rows = {r["name"]: r for r in monitor.rules_table()}
    # switching a rule off by its own setting is what the table reports, and it stops firing
    offs = {"drift": dict(defocus_limit_cfz=0), "reference": dict(reference_frames=0),
            "consecutive": dict(consecutive_frames=0), "temperature": dict(temperature_delta_c=0),
            "time": dict(max_interval_min=0), "filter_change": dict(refocus_on_filter_change=False)}
    assert set(offs) | {"hfr_increase"} == {r.name for r in monitor.RULES}
    for rule in monitor.RULES:
        assert rows[rule.name]["active"] == (rule.name != "hfr_increase")
        if rule.name in offs:
            cfg = PolicyConfig(**offs[rule.name])
            assert not rule.enabled(cfg) and not monitor.rules_table(cfg)[monitor.RULES.index(rule)]["active"]
            assert all(k in rule.off_when for k in offs[rule.name])
    # the time rule, switched off, never fires on a night that makes it fire
    frames = series(40, dt_min=5.0)
    assert first_refocus(run(frames, PolicyConfig(temperature_delta_c=0, max_interval_min=0))) is None


def test_veto_labels_are_the_diagnosis_groups():
    from focuswatch import diagnose

    optical = {str(getattr(x, "value", x)) for x in diagnose.OPTICAL_LABELS}
    assert monitor.OPTICAL_LABELS == optical
    # what the diagnosis can emit: every member of its Label enum (frame() and night(); clouds is a night label)
    emitted = {str(x.value) for x in diagnose.Label}
    # every veto label is one the diagnosis can emit (the first release listed wind, guiding, clouds...)
    assert monitor.TRANSIENT_LABELS <= emitted and monitor.OPTICAL_LABELS <= emitted
    assert "trailing" in monitor.TRANSIENT_LABELS and "dew" in monitor.TRANSIENT_LABELS
    assert not monitor.TRANSIENT_LABELS & {"focus_miss", "in_focus", "poor_seeing"}
    d = run([replace(f, diagnosis="dew") if i == 4 else f for i, f in enumerate(series(6))])
    assert d[4].decision == "skip" and d[4].rules == ("diagnosis",)


@pytest.mark.parametrize("key,value", [("defocus_limit_cfz", float("nan")), ("max_interval_min", float("inf")),
                                       ("consecutive_frames", 1e20), ("consecutive_frames", 2.5),
                                       ("drift_z", -1.0), ("cross_filter_pct", 0.0), ("jitter_floor_pct", -0.1),
                                       ("min_trend_frames", 2), ("cloud_star_fraction", 1.0)])
def test_policy_config_refuses_non_finite_and_out_of_range_values_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"\[policy\] {key} = "):
        PolicyConfig(**{key: value})
    with pytest.raises(ConfigError, match=rf"\[policy\] {key}"):
        section_to_dataclass(PolicyConfig, {key: value}, "policy")


@pytest.mark.parametrize("filter_name, wavelength_nm", [("B", 450.0), ("Ha", 656.3)])
def test_the_policy_reads_a_frames_defocus_at_its_filters_wavelength(filter_name, wavelength_nm):
    """Physical optics (Fourier optics, checked against GalSim in test_physoptics.py): a 60 mm f/6
    refractor in 1.5" seeing, five in-focus frames then one defocused by half a zone, in a blue and
    an H-alpha filter. The true HFRs (half the light, on the render) go through the policy: the
    defocus it reports is the one drawn within 5 %, and the limit is 0.4 of the zone at that
    wavelength. Read at 550 nm (the policy before), the half-zone frame was 11-15 % off."""
    from focuswatch.sim import physical as po

    o = po.Optics(aperture_mm=60.0, focal_length_mm=360.0, pixel_um=2.4, wavelengths_nm=(wavelength_nm,))
    rig = Rig(aperture_mm=o.aperture_mm, focal_length_mm=o.focal_length_mm, pixel_um=o.pixel_um)

    def true_hfr_px(defocus_um: float) -> float:
        img, sample_um = po.continuous_psf(o, po.Aberrations(defocus_um=defocus_um), po.Seeing(1.5))
        return po.encircled_radius(img, sample_um) / o.pixel_um

    zone_um = 4.88 * wavelength_nm / 1000.0 * o.f_ratio ** 2
    hfr0, truth_um = true_hfr_px(0.0), 0.5 * zone_um
    frames = series(6, jitter_pct=0.0, filt=lambda i: filter_name)
    frames = [replace(f, hfr_px=hfr0 if i < 5 else true_hfr_px(truth_um), fwhm_px=None) for i, f in enumerate(frames)]
    decisions = run(frames, PolicyConfig(**QUIET), rig=rig)
    last = decisions[-1]
    assert last.limit_um == pytest.approx(0.4 * zone_um, rel=1e-6)
    assert last.defocus_um == pytest.approx(truth_um, rel=0.05)


def test_frames_a_fraction_of_a_second_apart_do_not_stop_the_policy():
    """Near-equal capture times (a broken or simulated capture clock: frames 0.1 s apart) and a
    rising HFR in a filter the autofocus was not made with: the straight line's rise is
    over 709 ln HFR per hour. Its per-hour bar (line_min_rise_pct_per_h) once went through
    expm1 of that and raised OverflowError out of Monitor.observe; every frame must get a decision."""
    m = Monitor(PolicyConfig(), NIGHT_RIG)
    m.autofocus(AutofocusMark(time_s=1.7e9 - 60, filter_name="R"))
    hfrs = [2.0, 2.02, 1.98, 2.0, 2.01, 2.0, 2.0, 2.0, 2.6, 3.2, 4.0]
    decisions = []
    for i, hfr in enumerate(hfrs):
        t = 1.7e9 + 0.1 * i
        decisions.append(m.observe(FrameRecord(file=f"d{i:02d}.fits", time_s=t, n_stars=150, hfr_px=hfr,
                                               eccentricity=0.3, star_flux_adu=5e4, background_adu=800.0,
                                               exposure_s=60.0, filter_name="G")))
    assert len(decisions) == len(hfrs)
    assert all(d.decision in {"ok", "refocus", "skip"} for d in decisions), \
        [d.decision for d in decisions]


def test_frames_that_all_carry_one_capture_time_get_a_one_line_answer():
    """A stuck capture clock: every frame since the autofocus carries the same DATE-OBS. No line
    can be fitted through one instant (scipy's Theil-Sen warned, and pytest turns warnings into
    errors, as a user's ``-W error`` would): each decision says so in one line instead, and the
    rules that need no time still judge. Physical-optics sizes (the 130 mm f/5 table), a 1 CFZ
    step from frame 12: the consecutive rule asks on it, as with a working clock."""
    frames, _ = physical_jittery_night(20, cadence_s=120, jitter_pct=2.0, seed=5)
    table = _phys_growth_table()
    step = float(np.interp(1.0, _PHYS_CFZ_GRID, table) / table[0])
    stuck = [replace(f, time_s=1.7e9, hfr_px=f.hfr_px * (step if i >= 12 else 1.0)) for i, f in enumerate(frames)]
    decisions = run(stuck, PolicyConfig(**QUIET), rig=NIGHT_RIG)
    notes = [w for d in decisions for w in d.warnings if "same capture time" in w]
    n_window = [i for i, d in enumerate(decisions) if d.decision != "skip" and i >= PolicyConfig().min_trend_frames - 1]
    assert len(notes) >= len(n_window) - 1 > 5
    assert all("\n" not in w and "2023-11-14T22:13:20 UTC" in w for w in notes)
    ok = [d for d in decisions if d.decision == "ok" and d.warnings and not d.held]
    assert ok and all("same capture time" in d.reasons[-1] for d in ok)
    assert all(d.trend_pct_per_h is None and d.drift_z is None for d in decisions)
    first = first_refocus(decisions)
    assert first is not None and first >= 12 and "consecutive" in decisions[first].rules


# --- GalSim truth for the shared vetoes (clouds, seeing) ---------------------------------------

#: The issue's 200 mm f/5 Newtonian (0.33 obstruction, 3.76 um pixels, 0.78"/px).
NEWT = Rig(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, obstruction=0.33)


def _galsim_record(psf, i: int, *, transmission: float = 1.0, n: int = 140, size_px: int = 320,
                   minutes: float = 4.0, faintest_adu: float = 1.5e3, rig: Rig = NEWT,
                   noise_seed: int | None = None) -> FrameRecord:
    """One frame of the same sky (seed 1: power-law star fluxes from ``faintest_adu`` up, N(>F) ~
    F^-0.75 as real fields have) through ``psf``, measured by ``stars.measure``, as the policy's
    record of frame ``i``."""
    pytest.importorskip("galsim")
    from galsim_truth import power_law_sky

    from focuswatch import stars
    from focuswatch.model.frame import Frame, FrameMeta

    scale = rig.plate_scale_arcsec_px
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # GalSim's pupil-sampling advice (see galsim_truth.psf)
        stamp = psf.drawImage(nx=31, ny=31, scale=scale).array
    px = power_law_sky(stamp, size_px, n, faintest_adu=faintest_adu, sky_seed=1,
                       noise_seed=100 + i if noise_seed is None else noise_seed, margin_px=20,
                       transmission=transmission)
    st = stars.measure(Frame(path=None, pixels=px, meta=FrameMeta(), saturation_adu=65535),
                       plate_scale_arcsec_px=scale)
    return replace(monitor.record_from_stats(st, file=f"g{i:03d}.fits", time_s=1.7e9 + 60.0 * minutes * i),
                   filter_name="L", exposure_s=60.0)


def _seeing_psf(fwhm_arcsec: float, defocus_um: float = 0.0):
    """Kolmogorov seeing through the Newtonian (Fourier optics with its defocus), in arcsec."""
    import galsim_truth as gt

    return gt.psf(gt.Scope(200.0, 5.0, 3.76), obscuration=0.33, defocus_um=defocus_um,
                  seeing_fwhm_arcsec=fwhm_arcsec)


#: The demo rig's optics for GalSim (130 mm f/5 refractor, 3.76 um pixels: NIGHT_RIG, 1.19"/px).
_NIGHT_SCOPE = (130.0, 5.0, 3.76)


def _night_record(seeing_arcsec: float, defocus_um: float, i: int, noise_seed: int) -> FrameRecord:
    """Frame ``i`` (70 s cadence) of one sky through GalSim's Kolmogorov seeing and Fourier optics of
    the 130 mm f/5 (unobstructed, Zernike defocus), measured by ``stars.measure``."""
    import galsim_truth as gt

    psf = gt.psf(gt.Scope(*_NIGHT_SCOPE), defocus_um=defocus_um, seeing_fwhm_arcsec=seeing_arcsec)
    return _galsim_record(psf, i, n=150, size_px=400, faintest_adu=5e3, rig=NIGHT_RIG, minutes=70.0 / 60.0,
                          noise_seed=noise_seed)


_STEP_AT, _STEP_FRAMES = 15, 8


@pytest.fixture(scope="module")
def galsim_steps() -> dict[str, list[FrameRecord]]:
    """GalSim nights on the 130 mm f/5: 15 frames in focus in 2.8" (3 % seeing jitter), then 8 frames
    after a step: the seeing 1.5 times worse (4.2", no defocus) or a defocus of 1.5 CFZ (2.8")."""
    pytest.importorskip("galsim")
    rng = np.random.default_rng(0)
    seeing = 2.8 * np.exp(rng.normal(0.0, 0.03, _STEP_AT + _STEP_FRAMES))
    before = [_night_record(float(seeing[i]), 0.0, i, 1000 + i) for i in range(_STEP_AT)]
    after = range(_STEP_AT, _STEP_AT + _STEP_FRAMES)
    return {"seeing": before + [_night_record(1.5 * float(seeing[i]), 0.0, i, 1000 + i) for i in after],
            "defocus": before + [_night_record(float(seeing[i]), 1.5 * CFZ_UM, i, 1000 + i) for i in after]}


@functools.lru_cache(maxsize=None)
def _galsim_profile_change(defocus_cfz: float, seeds: int = 4) -> float:
    """Mean HFD/FWHM change ``stars.measure`` reads on GalSim frames of the 130 mm f/5 in 2.8" at
    ``defocus_cfz`` against in focus (same sky, noise seeds paired)."""
    got = [[_night_record(2.8, d * CFZ_UM, 0, 2000 + k).profile_ratio for k in range(seeds)]
           for d in (0.0, defocus_cfz)]
    return float(np.mean(got[1]) - np.mean(got[0]))


def test_a_profile_that_does_not_flatten_holds_the_growth_as_seeing(galsim_steps):
    """Stars grow but their profile does not flatten: seeing, not focus, so no refocus (and the
    seeing veto is what holds it). Truth: GalSim frames of the demo rig (130 mm f/5, 1.19"/px),
    measured by ``stars.measure``; the same growth from a real defocus is asked at once.

    This replaces the simulator-only ``test_a_profile_that_does_not_flatten_holds_the_drift_as_seeing``
    (policy7), which held a *steady* +1 %/frame growth with HFD/FWHM pinned at 1.18. Its premise,
    the simulator's profile flattening (``jittery_night``: -0.03 at 0.4 CFZ, 0.004 noise), is not
    what physical optics gives on this rig: on GalSim frames defocus raises HFD/FWHM +0.01-0.03 up
    to 1 CFZ and lowers it only past ~1.2 CFZ (-0.07 at 1.5 CFZ), seeing growth raises it
    (+0.02-0.04), and the measurement scatters 0.01-0.02 per frame. So while a steady growth is
    below ~+35 % HFR the frames cannot tell seeing from a drift the policy must catch by 0.6 CFZ
    (+10 % HFR); on GalSim's steady +1 %/frame seeing growth the policy asks with either profile
    curve (seeds 0-7, frames 10-21). What physics does separate is a growth past that point: a
    +45 % step whose profile rose (seeing) against one whose profile fell (defocus). The three
    assertions of the old test are kept on it (no request; held as seeing; asked without the
    veto), plus the defocus counterpart and the measured premise."""
    seeing, defocus = galsim_steps["seeing"], galsim_steps["defocus"]

    def mean_profile(frames):
        return float(np.mean([f.profile_ratio for f in frames]))

    base = mean_profile(seeing[:_STEP_AT])
    # the premise, measured on physical optics: both steps grow the stars by over 35 %; the seeing
    # step's profile did not flatten, the defocus step's fell; below a zone defocus does not flatten it
    for frames in (seeing, defocus):
        hfr = [f.hfr_px for f in frames]
        assert np.median(hfr[_STEP_AT:]) > 1.35 * np.median(hfr[:_STEP_AT])
    assert mean_profile(seeing[_STEP_AT:]) > base
    assert mean_profile(defocus[_STEP_AT:]) < base - 0.04
    assert _galsim_profile_change(0.4) > -0.01       # the simulator's night draws -0.03 here
    d = run(seeing, PolicyConfig(**QUIET), rig=NIGHT_RIG)
    assert first_refocus(d) is None, [x.reasons for x in d if x.decision == "refocus"][:1]
    assert any("seeing" in " ".join(x.reasons) and x.held for x in d)
    d2 = run(seeing, PolicyConfig(**QUIET, seeing_veto=False), rig=NIGHT_RIG)
    assert first_refocus(d2) is not None
    f = run(defocus, PolicyConfig(**QUIET), rig=NIGHT_RIG)
    first = first_refocus(f)
    assert first is not None and _STEP_AT <= first <= _STEP_AT + 2, [x.reasons for x in f[_STEP_AT:]]
    assert not any("seeing, not focus" in " ".join(x.reasons) for x in f[:first + 1])


def test_the_drift_fits_profile_curve_is_what_stars_measure_reads_on_physical_optics():
    """The profile curve the drift fit weighs HFD/FWHM with (``estimators.physical_profile``, the
    calibration's Kolmogorov-over-the-pupil table) against GalSim frames of the demo rig measured
    by ``stars.measure`` (4 noise seeds): GalSim's HFD/FWHM falls by -0.01 and +0.012 at 0.4 and
    0.8 CFZ (within its ~0.01 scatter; 8 other seeds read rises of 0.013 and 0.015) and by 0.084 at
    1.5 CFZ; the curve expects under 0.02 at 0.4-0.8 CFZ and over 0.04 at 1.5 CFZ.
    The geometric Moffat curve it replaced (``_profile_curve`` x ``PROFILE_RESPONSE``) expects
    0.036 and 0.106 at 0.4 and 0.8 CFZ, a flattening these frames do not show: it read a real drift's unmoved
    profile as evidence against it (GalSim 1.2 um/frame nights: asked on 5 of 8 by 0.70 CFZ, at
    0.57-0.66; with this curve 8 of 8 at 0.43-0.61; policy7-REPORT.md)."""
    from focuswatch.policy.estimators import _profile_curve, physical_profile

    pytest.importorskip("galsim")
    base = 1.13                                  # HFD/FWHM stars.measure reads in focus here

    def expected_drop(curve, cfz: float) -> float:
        x = cfz * CFZ_UM / (5.0 * 3.76 * NIGHT_HFR0_PX)
        return base * (1.0 - math.exp(float(np.interp(x, *curve))))

    measured = {c: -_galsim_profile_change(c) for c in (0.4, 0.8, 1.5)}     # drops
    assert measured[0.4] < 0.02 and measured[0.8] < 0.02 and measured[1.5] > 0.04, measured
    phys = physical_profile(NIGHT_HFR0_PX, 5.0, 3.76, 0.0, 550.0)
    assert expected_drop(phys, 0.4) < 0.02 and expected_drop(phys, 0.8) < 0.02
    assert expected_drop(phys, 1.5) > 0.04
    assert expected_drop(_profile_curve(0.0), 0.8) > 0.04


def test_the_nights_sharpest_frame_is_not_clouds_but_a_real_cloud_is():
    """GalSim, one sky with a power-law star count. Baseline in 3.0-3.2" seeing, then a 1.7"
    frame (clear: truth) and a 3.0" frame under a cloud letting 60 % through (truth). In the
    sharp frame fainter stars pass the threshold, so the median flux of the measured stars falls
    below half the baseline's although nothing dimmed: it was set aside as "clouds? star flux
    46 %" (wander5, replay of seeing2 frame 7). Clouds never add stars; the real cloud removes
    them (0.6^0.75 ~ 0.7) and must still be set aside."""
    pytest.importorskip("galsim")
    seeing = [3.0, 3.2, 3.1, 1.7, 3.0]
    trans = [1.0, 1.0, 1.0, 1.0, 0.6]
    frames = [_galsim_record(_seeing_psf(s), i, transmission=t) for i, (s, t) in enumerate(zip(seeing, trans))]
    base_flux = float(np.median([f.star_flux_adu for f in frames[:3]]))
    base_n = float(np.median([f.n_stars for f in frames[:3]]))
    # the premise, measured: the sharp frame's stars are fainter on the median, and more
    assert frames[3].star_flux_adu < 0.5 * base_flux and frames[3].n_stars > base_n
    assert frames[4].n_stars < base_n
    d = run(frames, PolicyConfig(**QUIET), rig=NEWT)
    assert d[3].decision != "skip" and "clouds" not in d[3].rules, d[3].reasons
    assert d[4].decision == "skip" and "clouds" in d[4].rules, d[4].reasons


def test_a_steady_drift_the_profile_cannot_show_is_not_held_as_seeing():
    """GalSim truth: the Newtonian in 2.5" seeing, the focus drifting 4 um per 4-min frame
    (zone 67 um). At 0.7 zone HFD/FWHM has barely moved (~0.01-0.02, within its frame-to-frame
    scatter) while the drift model, with the profile weighed in, is past 4.7 sigma: the seeing
    veto held it back as "the profile did not flatten" past the end of the 16 frames (0.9 zone;
    wander5's drift2 likewise until 0.88 zone). A steady growth the
    drift model asks for is focus; the veto still holds a growth whose profile contradicts it
    (test_a_profile_that_does_not_flatten_holds_the_drift_as_seeing)."""
    pytest.importorskip("galsim")
    um_per_frame, zone_um = 4.0, optics.cfz_um(5.0, 550.0)
    frames = [_galsim_record(_seeing_psf(2.5, um_per_frame * i), i, n=150, size_px=400, faintest_adu=5e3)
              for i in range(16)]
    d = run(frames, PolicyConfig(**QUIET), rig=NEWT)
    first = first_refocus(d)
    assert first is not None and "drift" in d[first].rules, [x.reasons for x in d]
    assert um_per_frame * first / zone_um < 0.8                 # truth: asked inside 0.8 zone
    assert um_per_frame * first / zone_um > 0.3                 # ... and not on seeing noise early
    assert not any("seeing, not focus" in " ".join(x.reasons) for x in d[:first + 1])


def test_a_year_one_capture_time_is_dated_in_the_stuck_clock_note():
    """A .NET capture program with an unset clock writes DATE-OBS 0001-01-01 (time -62135596800 s
    from 1970, the proleptic Gregorian calendar's first day): the note names that date in ISO form
    and never asks the platform's ``fromtimestamp`` (Windows refuses times before 1970)."""
    from focuswatch.policy.context import same_time_note

    assert "(0001-01-01T00:00:00 UTC, DATE-OBS)" in same_time_note(4, -62135596800.0)
    assert "(2023-11-14T22:13:20 UTC, DATE-OBS)" in same_time_note(4, 1.7e9)
    assert "(nan UTC" in same_time_note(4, float("nan"))
    # the whole range a datetime holds is dated (year 9999 closed form: 253402300799 s), beyond it the number
    assert "(9999-12-31T23:59:59 UTC, DATE-OBS)" in same_time_note(4, 253402300799.0)
    assert "(300000000000.0 UTC" in same_time_note(4, 3e11)
