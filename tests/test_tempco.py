"""The temperature rule in focus-zone units: the focuser's temperature coefficient k predicts the
defocus |k x dT| and the rule asks when it reaches defocus_limit_cfz of the CFZ.

Truth the policy did not produce: the night's true defocus is k x dT by construction, the zone is
the closed form 4.88 lambda N^2 written out here, and the star sizes come from physical optics
(focuswatch.sim.physical: Kolmogorov seeing through each aperture's diffraction and the defocus
pupil phase, checked against GalSim in test_physoptics.py), not from the optics model the policy
inverts.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from focuswatch.errors import ConfigError
from focuswatch.optics import Rig
from focuswatch.policy import AutofocusMark, Decision, FrameRecord, Monitor, PolicyConfig
from focuswatch.policy.state import PolicyState, learnt_tempco_steps_per_c, on_autofocus
from physframes import assert_config_error_is_one_line

#: a fast f/4 and a slow f/10, both 3.76 um pixels, 2.5" seeing
FAST = Rig(aperture_mm=100, focal_length_mm=400, pixel_um=3.76, focuser_step_um=2.0)
SLOW = Rig(aperture_mm=200, focal_length_mm=2000, pixel_um=3.76, focuser_step_um=2.0)
SEEING_ARCSEC = 2.5
K_UM_PER_C = 40.0                 # the focuser's true coefficient (focus moves 40 um per degree)
COOLING_C_PER_H = 2.0
CADENCE_S = 120.0
LIMIT_CFZ = 0.4                   # PolicyConfig's default defocus_limit_cfz
WAVELENGTH_NM = {"L": 550.0, "Ha": 656.3}
CFZ_GRID = np.linspace(0.0, 2.0, 9)


def cfz_closed_form_um(f_ratio: float, wavelength_nm: float) -> float:
    """The classic critical focus zone, 4.88 lambda N^2 (total width, um)."""
    return 4.88 * wavelength_nm / 1000.0 * f_ratio ** 2


@functools.lru_cache(maxsize=None)
def _hfr_table(aperture_mm: float, focal_length_mm: float, wavelength_nm: float) -> tuple[float, ...]:
    """True half-light radius (px) at each defocus of ``CFZ_GRID`` (in zones), physical optics."""
    from focuswatch.sim import physical as po

    o = po.Optics(aperture_mm=aperture_mm, focal_length_mm=focal_length_mm, pixel_um=3.76,
                  wavelengths_nm=(wavelength_nm,))
    cfz = cfz_closed_form_um(focal_length_mm / aperture_mm, wavelength_nm)
    out = []
    for z in CFZ_GRID:
        img, samp = po.continuous_psf(o, po.Aberrations(defocus_um=float(z) * cfz), po.Seeing(SEEING_ARCSEC))
        out.append(po.encircled_radius_fast(img, samp) / o.pixel_um)
    return tuple(out)


def cooling_night(rig: Rig, n: int, *, filter_name: str = "L", cooling_c_per_h: float = COOLING_C_PER_H,
                  seed: int = 0) -> tuple[list[FrameRecord], list[float], float]:
    """Frames after an autofocus at 12 °C while the temperature falls steadily; the true defocus
    is K_UM_PER_C x dT. Returns (frames, true defocus in zones per frame, the zone in um)."""
    rng = np.random.default_rng(seed)
    wl = WAVELENGTH_NM[filter_name]
    cfz = cfz_closed_form_um(rig.f_ratio, wl)
    table = np.array(_hfr_table(rig.aperture_mm, rig.focal_length_mm, wl))
    frames, truth = [], []
    for i in range(n):
        d_temp = -cooling_c_per_h * (i + 1) * CADENCE_S / 3600.0
        defocus_cfz = abs(K_UM_PER_C * d_temp) / cfz
        s = 1.0 + rng.normal(0.0, 0.02)                      # 2 % seeing jitter
        hfr = s * float(np.interp(defocus_cfz / s, CFZ_GRID, table))
        frames.append(FrameRecord(file=f"t{i:03d}.fits", time_s=1.7e9 + (i + 1) * CADENCE_S, n_stars=150,
                                  hfr_px=hfr, eccentricity=0.3, star_flux_adu=5e4, background_adu=800.0,
                                  exposure_s=CADENCE_S - 10.0, filter_name=filter_name,
                                  temp_c=12.0 + d_temp + rng.normal(0.0, 0.01)))
        truth.append(defocus_cfz)
    return frames, truth, cfz


def run_night(frames: list[FrameRecord], config: PolicyConfig, rig: Rig,
              marks: tuple[AutofocusMark, ...] | None = None) -> list[Decision]:
    m = Monitor(config, rig)
    for mark in marks or (AutofocusMark(time_s=1.7e9, filter_name=frames[0].filter_name, temp_c=12.0),):
        m.autofocus(mark)
    return [m.observe(f) for f in frames]


def first_with(decisions: list[Decision], rule: str) -> int | None:
    """The first frame where ``rule`` fired, asking or held back (waiting after another rule's request)."""
    return next((i for i, d in enumerate(decisions) if rule in d.rules or rule in d.held), None)


def first_reaching(truth: list[float], limit_cfz: float) -> int:
    return next(i for i, t in enumerate(truth) if t >= limit_cfz)


@pytest.mark.parametrize("rig,filter_name,n", [(FAST, "L", 20), (FAST, "Ha", 20), (SLOW, "L", 50)],
                         ids=["f/4 L", "f/4 Ha", "f/10 L"])
def test_the_temperature_rule_asks_when_the_true_defocus_reaches_the_limit(rig, filter_name, n):
    frames, truth, cfz = cooling_night(rig, n, filter_name=filter_name)
    decisions = run_night(frames, PolicyConfig(tempco_um_per_c=K_UM_PER_C), rig)
    crossing = first_reaching(truth, LIMIT_CFZ)
    i = next((j for j, d in enumerate(decisions) if d.decision == "refocus"), None)
    # the first request of the night is the temperature rule's, at the frame the truth crosses the limit
    assert i is not None and "temperature" in decisions[i].rules, (i, decisions[i].rules if i is not None else None)
    assert crossing <= i <= crossing + 1, (i, crossing, truth[i])
    reason = next(r for r in decisions[i].reasons if "predicted defocus" in r)
    assert f"of {cfz:.0f} µm" in reason and f"{K_UM_PER_C * abs(frames[i].temp_c - 12.0):.0f} µm" in reason


def test_a_fixed_one_degree_rule_asks_too_early_on_f10_and_too_late_on_f4():
    """NINA's fixed 1 °C against the true defocus at its request: the f/10 is well inside the zone
    (0.15 CFZ), the f/4 far past the limit (0.93 CFZ); the coefficient asks at the limit on both,
    after a fraction of a degree on the f/4 and several degrees on the f/10."""
    fixed = PolicyConfig(consecutive_frames=0, reference_frames=0, max_interval_min=0)
    seen = {}
    for name, rig, n in (("f/4", FAST, 20), ("f/10", SLOW, 50)):
        frames, truth, _ = cooling_night(rig, n)
        i_fixed = first_with(run_night(frames, fixed, rig), "temperature")
        i_k = first_with(run_night(frames, PolicyConfig(tempco_um_per_c=K_UM_PER_C, consecutive_frames=0,
                                                        reference_frames=0, max_interval_min=0), rig), "temperature")
        assert i_fixed is not None and i_k is not None
        seen[name] = (truth[i_fixed], truth[i_k], 12.0 - frames[i_k].temp_c)
    fast_fixed, fast_k, fast_dt = seen["f/4"]
    slow_fixed, slow_k, slow_dt = seen["f/10"]
    assert fast_fixed > 2 * LIMIT_CFZ                       # too late: past the zone's edge (0.5)
    assert slow_fixed < LIMIT_CFZ / 2                       # too early: a refocus for nothing
    for at_k in (fast_k, slow_k):
        assert LIMIT_CFZ <= at_k < LIMIT_CFZ + 0.05
    assert fast_dt < 0.6 and slow_dt > 2.5


@pytest.mark.parametrize("rig", [FAST, SLOW], ids=["f/4", "f/10"])
def test_no_request_while_the_temperature_holds(rig):
    frames, truth, _ = cooling_night(rig, 40, cooling_c_per_h=0.0, seed=3)
    assert max(truth) == 0.0
    decisions = run_night(frames, PolicyConfig(tempco_um_per_c=K_UM_PER_C, max_interval_min=0), rig)
    assert all(d.decision != "refocus" for d in decisions), [d.reasons for d in decisions if d.decision == "refocus"]


def test_without_a_coefficient_the_fixed_rule_is_unchanged():
    frames, _, _ = cooling_night(FAST, 20)
    cfg = PolicyConfig(consecutive_frames=0, reference_frames=0, max_interval_min=0)
    i = first_with(run_night(frames, cfg, FAST), "temperature")
    # the first frame 1 °C below the autofocus's 12 °C (temperatures carry 0.01 °C of sensor noise)
    assert i == next(j for j, f in enumerate(frames) if 12.0 - f.temp_c >= 1.0 - 1e-9)
    # a coefficient without optics to size the zone falls back to the fixed rule too
    no_optics = Rig()
    a = run_night(frames, cfg, no_optics)
    b = run_night(frames, PolicyConfig(consecutive_frames=0, reference_frames=0, max_interval_min=0,
                                       tempco_um_per_c=K_UM_PER_C), no_optics)
    assert [d.rules for d in a] == [d.rules for d in b]
    # ... and so does a coefficient with the defocus limit switched off (no zone fraction to reach)
    off = dict(consecutive_frames=0, reference_frames=0, max_interval_min=0, defocus_limit_cfz=0)
    assert first_with(run_night(frames, PolicyConfig(**off, tempco_um_per_c=K_UM_PER_C), FAST), "temperature") == i


def _af(temp_c: float, filter_name: str = "L", offset_steps: float = 0.0) -> AutofocusMark:
    """A run reporting its best position: the truth, K_UM_PER_C over 2 um steps, plus a filter offset."""
    return AutofocusMark(time_s=1.7e9 - 3600.0, filter_name=filter_name, temp_c=temp_c,
                         position=int(round(10000 + offset_steps + K_UM_PER_C / 2.0 * (temp_c - 12.0))))


def test_the_coefficient_is_learnt_from_the_nights_autofocus_runs():
    # two runs of L 3.5 °C apart (the default tempco_learn_span_c is 3 °C) and one of Ha, 300 steps
    # of filter offset, that must not count
    marks = (_af(15.5), _af(13.0, "Ha", 300.0), _af(12.0))
    st = PolicyState()
    for m in marks:
        st = on_autofocus(st, m)
    assert learnt_tempco_steps_per_c(st, 3.0) == pytest.approx(K_UM_PER_C / 2.0, rel=0.05)
    frames, truth, _ = cooling_night(FAST, 20)
    d = run_night(frames, PolicyConfig(consecutive_frames=0, reference_frames=0, max_interval_min=0), FAST, marks)
    i = first_with(d, "temperature")
    assert i is not None and first_reaching(truth, LIMIT_CFZ) <= i <= first_reaching(truth, LIMIT_CFZ) + 1
    assert any("+40.0 µm/°C, learnt from 2 autofocus runs" in r for r in d[i].reasons), d[i].reasons
    # runs closer than tempco_learn_span_c (1.5 °C < 3 °C), or no step size: the fixed 1 °C rule
    assert learnt_tempco_steps_per_c(PolicyState(af_points=(("L", 13.5, 0.0), ("L", 12.0, 60.0))), 3.0) is None
    close = (_af(13.5), _af(12.0))
    fixed_at = next(j for j, f in enumerate(frames) if 12.0 - f.temp_c >= 1.0 - 1e-9)
    cfg = PolicyConfig(consecutive_frames=0, reference_frames=0, max_interval_min=0)
    assert first_with(run_night(frames, cfg, FAST, close), "temperature") == fixed_at
    no_step = Rig(aperture_mm=100, focal_length_mm=400, pixel_um=3.76)
    assert first_with(run_night(frames, cfg, no_step, marks), "temperature") == fixed_at
    assert first_with(run_night(frames, PolicyConfig(consecutive_frames=0, reference_frames=0, max_interval_min=0,
                                                     tempco_learn_span_c=0), FAST, marks), "temperature") == fixed_at


@pytest.mark.parametrize("value", ["1e9", "nan", "\"fast\""])
def test_a_bad_coefficient_is_one_line_naming_the_setting(tmp_path: Path, value: str):
    assert_config_error_is_one_line(tmp_path, f"[policy]\ntempco_um_per_c = {value}\n", "tempco_um_per_c",
                                    says=("must be", "expected"))


def test_bad_values_are_refused_when_the_config_is_built():
    with pytest.raises(ConfigError, match=r"\[policy\] tempco_um_per_c"):
        PolicyConfig(tempco_um_per_c=float("inf"))
    with pytest.raises(ConfigError, match=r"\[policy\] tempco_learn_span_c"):
        PolicyConfig(tempco_learn_span_c=-1.0)
    assert PolicyConfig(tempco_um_per_c=-35.0).tempco_um_per_c == -35.0      # signed
