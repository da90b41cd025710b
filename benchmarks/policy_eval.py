"""Evaluate the refocus policy on many simulated nights (prints figures; not a test).

Every night is driven through :class:`focuswatch.policy.Monitor` frame by frame, exactly as
the watcher does: a refocus request makes the simulated capture program autofocus before the
next frame (the focuser lands within ~2 µm of best focus) and the monitor is told about it.

Nights (the grid; ``--seeds`` nights per cell):

* seeing 2.8" FWHM with frame-to-frame jitter of 3, 6 and 10 % (the 130 mm f/5, 3.76 µm rig of
  ``focuswatch demo``: in-focus HFR ~1.42 px, CFZ 67 µm, so the zone's edge is only +7 % HFR);
* thermal focus drift of 0, 15 and 30 µm/°C while the air cools by a random 1-2 °C/h;
* 60 s exposures (~300 frames a night) and 600 s exposures (~35 frames a night);
* with and without a passing cloud (stars dimmed 80 %, a few frames).

Frame records come from the simulator's truth plus realistic measurement noise: the HFR is
the calibrated physical-optics model (``optics.hfr_px_for_defocus``: Kolmogorov seeing through the
defocused pupil, diffraction included; ``--hfr-truth moffat`` for the former geometric Moffat model)
of the jittered seeing and the true defocus, with 0.4 % measurement noise; the HFD/FWHM is what
``stars.measure`` reads on GalSim frames of this rig (``tests/galsim_profile.py``: a measured table
over seeing 2.2-4.6" and defocus 0-2 CFZ, interpolated, plus its measured frame-to-frame scatter,
0.01-0.03; at 2.8" it barely moves before 1 CFZ). ``--profile-truth sim`` draws the former
formula fitted to our own simulator's frames instead (1.18 in focus, -0.03 at 0.4 CFZ, 0.004
noise), which GalSim contradicts; kept only to compare with figures measured on it. ``--rendered N`` adds
N nights rendered with :mod:`focuswatch.sim` and measured with :func:`focuswatch.stars.measure`
(slow: about a second per frame).

Reported per policy:

* ``false/night``: refocus requests per night on nights without drift (all are false);
* ``early``: requests (any night) while the true |defocus| was below 0.25 CFZ (for the default
  policy both count the star rules only: its temperature and time rules fire by design);
* ``caught at``: the true |defocus| in CFZ units when a drift was caught (median / 90th
  percentile / worst) and the share caught before 0.5 CFZ, the edge of the zone;
* ``out``: the share of kept frames whose true |defocus| was past 0.5 CFZ.

Policies: the star-based rules alone (temperature and time rules off), the same with the
records' HFD/FWHM removed (HFR only, as from a measurement without profiles), the default
policy, and NINA's HFR-increase trigger (rule ``hfr_increase`` at 5 %, our drift rules off, no seeing
veto: NINA has none). ``--policies "default + true tempco"`` (not in the default run): the
default policy told each night's true focuser coefficient (``tempco_um_per_c``; the temperature rule
off on nights without drift, k = 0), its temperature rule asking at the predicted 0.4 CFZ instead of
a fixed 1 °C.

``--real N`` adds the issue-13 nights (``tests/test_policy_real.py`` builds them; truth from GalSim
and closed-form optics, HFR-only records as NINA reports them), our policy beside NINA's 5 % rule,
N seeds each: the reconstructed NINA night (catch frames of its two drifts), 30-frame seeing-jitter
and cloud nights (``--noise-seeds`` of them, requests per night, every request false; also with the
autofocus made in another filter), steady 2-3 um/frame drifts (true defocus
and the drift model's error at the first request).

    python benchmarks/policy_eval.py [--seeds 4] [--hours 6] [--rendered 0] [--real 0] [--noise-seeds 0] [--json]
                                      [--hfr-truth physical|moffat] [--profile-truth galsim|sim]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from focuswatch import optics
from focuswatch.policy import AutofocusMark, FrameRecord, Monitor, PolicyConfig
from focuswatch.optics import Rig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import galsim_profile  # noqa: E402  (tests/: the GalSim-measured HFD/FWHM table)

RIG = Rig(aperture_mm=130.0, focal_length_mm=650.0, pixel_um=3.76, focuser_step_um=2.0)
F_RATIO, PIXEL_UM = 5.0, 3.76
CFZ_UM = optics.cfz_um(F_RATIO, 550.0)
#: HFD/FWHM frame scatter of the ``--profile-truth sim`` formula (stars.measure on focuswatch.sim's
#: frames); the GalSim truth rescales the same normal draws to its own measured scatter
SIM_PROFILE_NOISE = 0.004
SEEING_ARCSEC = 2.8
HFR_AT_SEEING_PX = 1.417          # stars.measure / sim truth at 2.8" on this rig, in focus
OVERHEAD_S = 10.0                 # download + dither between exposures
STAR_RULES = ("drift", "consecutive", "reference")


POLICIES: dict[str, PolicyConfig] = {
    "star rules": PolicyConfig(temperature_delta_c=0.0, max_interval_min=0.0),
    "star rules HFR-only": PolicyConfig(temperature_delta_c=0.0, max_interval_min=0.0),
    "default": PolicyConfig(),
    "NINA hfr+5%": PolicyConfig(temperature_delta_c=0.0, max_interval_min=0.0, defocus_limit_cfz=0.0,
                                consecutive_frames=0, hfr_increase_pct=5.0, seeing_veto=False),
}

#: not in the default run (``--policies "default + true tempco"``): the default policy told each
#: night's true focuser coefficient (``tempco_um_per_c``); a night without drift (k = 0) is one whose
#: user knows the focuser does not move with temperature and switches the temperature rule off
TEMPCO_POLICY = "default + true tempco"


def policy_for(name: str, spec: "NightSpec", base: PolicyConfig) -> PolicyConfig:
    """The config a night runs with: ``base``, plus the night's true coefficient for TEMPCO_POLICY."""
    if name != TEMPCO_POLICY:
        return base
    if spec.coef_um_per_c == 0:
        return replace(base, temperature_delta_c=0.0)
    return replace(base, tempco_um_per_c=spec.coef_um_per_c)


@dataclass(frozen=True)
class NightSpec:
    seed: int
    jitter_pct: float
    coef_um_per_c: float
    exposure_s: float
    cloud: bool
    hours: float = 6.0
    wander_pct: float = 0.0
    #: the HFR growth truth: "physical" (the calibrated physical-optics model, diffraction
    #: included: ``optics.hfr_px_for_defocus``'s default since the diagcal merge) or "moffat"
    #: (the geometric Moffat-beta-3.5 model the figures before that merge were measured on)
    hfr_truth: str = "physical"
    #: the HFD/FWHM truth: "galsim" (measured on GalSim frames, tests/galsim_profile.py) or "sim"
    #: (the formula fitted to focuswatch.sim's frames, the grid's truth before policy8)
    profile_truth: str = "galsim"

    @property
    def label(self) -> str:
        return (f"jit{self.jitter_pct:g} drift{self.coef_um_per_c:g} exp{self.exposure_s:g}"
                f"{' cloud' if self.cloud else ''} s{self.seed}")


@dataclass
class NightResult:
    spec: NightSpec
    n_frames: int
    #: (frame, true |defocus| in CFZ, rules) of every refocus request
    requests: list[tuple[int, float, tuple[str, ...]]] = field(default_factory=list)
    n_kept: int = 0
    n_out: int = 0                                          # kept frames past 0.5 CFZ

    def add(self, i: int, dec: Any, cfz: float) -> bool:
        """Count frame ``i``'s decision at true |defocus| ``cfz``; True when it asked for a refocus."""
        if dec.decision != "skip":
            self.n_kept += 1
            self.n_out += cfz > 0.5
        if dec.decision == "refocus":
            self.requests.append((i, cfz, tuple(dec.rules)))
            return True
        return False


def _profile_ratio(defocus_um: float, h0_px: float, seeing_rel: float, noise: float) -> float:
    """HFD/FWHM as stars.measure reported it on focuswatch.sim's frames of this rig (``--profile-truth sim``)."""
    x = abs(defocus_um) / F_RATIO / PIXEL_UM / h0_px          # blur diameter / in-focus HFR
    drop = 0.03 * x * x / (1.0 + 0.05 * x * x)
    return 1.18 + 0.025 * (seeing_rel - 1.0) - drop + noise


class TruthNight:
    """The sky and the focuser of one night; frames are drawn on demand (common random numbers)."""

    def __init__(self, spec: NightSpec):
        self.spec = spec
        rng = np.random.default_rng([spec.seed, int(spec.jitter_pct * 10), int(spec.coef_um_per_c),
                                     int(spec.exposure_s), int(spec.cloud)])
        self.cadence_s = spec.exposure_s + OVERHEAD_S
        self.n = int(spec.hours * 3600 / self.cadence_s)
        t_h = np.arange(self.n) * self.cadence_s / 3600.0
        self.cooling = -rng.uniform(1.0, 2.0)
        self.temp = 10.0 + self.cooling * t_h + rng.normal(0, 0.03, self.n)
        wander = 1.0 + spec.wander_pct / 100.0 * np.sin(2 * math.pi * t_h / 3.0 + rng.uniform(0, 6.3))
        alt = np.radians(np.linspace(65.0, 40.0, self.n))
        self.airmass = 1.0 / np.sin(alt)
        self.seeing_rel = (self.airmass / self.airmass[0]) ** 0.6 * wander * \
            np.maximum(0.3, 1.0 + rng.normal(0, spec.jitter_pct / 100.0, self.n))
        self.meas = rng.normal(0, 0.004, self.n)
        self.prof_noise = rng.normal(0, SIM_PROFILE_NOISE, self.n)
        self.n_stars = rng.integers(140, 160, self.n)
        self.af_error_um = rng.normal(0, 2.0, 64)
        self.cloud = np.zeros(self.n)
        if spec.cloud:
            a = int(rng.uniform(0.3, 0.6) * self.n)
            self.cloud[a:a + max(2, self.n // 20)] = 0.8

    def record(self, i: int, defocus_um: float) -> FrameRecord:
        s = self.seeing_rel[i]
        h0 = HFR_AT_SEEING_PX * s
        beta = optics.SEEING_BETA if self.spec.hfr_truth == "moffat" else None
        hfr = optics.hfr_px_for_defocus(abs(defocus_um), h0, F_RATIO, PIXEL_UM, beta=beta) * (1.0 + self.meas[i])
        cloud = self.cloud[i]
        hfr *= 1.0 + 0.03 * cloud                      # faint stars measure a little larger
        if self.spec.profile_truth == "sim":
            prof = _profile_ratio(defocus_um, h0, s, self.prof_noise[i])
        else:   # the same normal draw, scaled to GalSim's measured scatter
            prof = galsim_profile.profile_ratio(SEEING_ARCSEC * s, abs(defocus_um) / CFZ_UM,
                                                self.prof_noise[i] / SIM_PROFILE_NOISE)
        return FrameRecord(
            file=f"n{i:04d}.fits", time_s=1.7e9 + i * self.cadence_s, n_stars=int(self.n_stars[i] * (1 - 0.85 * cloud)),
            hfr_px=hfr, fwhm_px=2 * hfr / prof, eccentricity=0.3, profile_ratio=prof,
            star_flux_adu=4e4 * self.spec.exposure_s / 60.0 * (1 - cloud), background_adu=800.0,
            exposure_s=self.spec.exposure_s, filter_name="L", temp_c=round(float(self.temp[i]), 2),
            airmass=float(self.airmass[i]))


def run_truth_night(spec: NightSpec, config: PolicyConfig, with_profile: bool = True) -> NightResult:
    """One night through the monitor; ``with_profile=False`` drops HFD/FWHM from the records."""
    night = TruthNight(spec)
    coef = spec.coef_um_per_c
    m = Monitor(config, RIG)
    t_af, d_af, n_af = night.temp[0], night.af_error_um[0], 1
    m.autofocus(AutofocusMark(time_s=1.7e9 - 60, source="dusk", filter_name="L", temp_c=float(t_af)))
    pending = False
    res = NightResult(spec, night.n)
    for i in range(night.n):
        if pending:
            t_af, d_af = night.temp[i], night.af_error_um[n_af % 64]
            n_af += 1
            m.autofocus(AutofocusMark(time_s=1.7e9 + i * night.cadence_s - 30, source="autofocus-done",
                                      filter_name="L", temp_c=float(t_af)))
            pending = False
        d = d_af + coef * (night.temp[i] - t_af)
        rec = night.record(i, d)
        dec = m.observe(rec if with_profile else replace(rec, profile_ratio=None))
        pending = res.add(i, dec, abs(d) / CFZ_UM)
    return res


def run_rendered_night(spec: NightSpec, config: PolicyConfig, width: int = 512, height: int = 384,
                       n_stars: int = 70) -> NightResult:
    """The same night rendered by the simulator and measured by stars.measure (slow)."""
    from focuswatch import sim, stars
    from focuswatch.io.frames import parse_date_obs
    from focuswatch.policy import record_from_stats

    cadence = spec.exposure_s + OVERHEAD_S
    n = int(spec.hours * 3600 / cadence)
    rng = np.random.default_rng(spec.seed)
    plan = sim.NightPlan(n_frames=n, exposure_s=spec.exposure_s, interval_s=cadence,
                         cooling_c_per_hour=-rng.uniform(1.0, 2.0), temp_noise_c=0.03,
                         seeing_fwhm_arcsec=SEEING_ARCSEC, seeing_jitter_pct=spec.jitter_pct,
                         cloud_frames=(n // 2, n // 2 + max(2, n // 20), 0.8) if spec.cloud else None,
                         autofocus_frames=(0,), altitude_start_deg=65.0, altitude_end_deg=40.0)
    base = sim.SimParams(width_px=width, height_px=height, n_stars=n_stars, seed=spec.seed, rig=RIG,
                         exposure_s=spec.exposure_s, star_flux_min_e=8e3)
    focuser = sim.SimFocuser(coef_um_per_c=-spec.coef_um_per_c, autofocus_error_um=2.0)
    gen = sim.night_frames(base, plan, focuser, seed=spec.seed)
    m = Monitor(config, RIG)
    res = NightResult(spec, n)
    pending = False
    last_time_s = 0.0
    for i in range(n):
        if pending:
            temp = plan.temp_start_c + plan.cooling_c_per_hour * i * cadence / 3600.0
            focuser.autofocus(temp, "L", rng)
            m.autofocus(AutofocusMark(time_s=last_time_s + cadence - 30, source="autofocus-done",
                                      filter_name="L", temp_c=round(temp, 2)))
            pending = False
        p = next(gen)
        f = sim.render(p)
        st = stars.measure(f.to_frame(), plate_scale_arcsec_px=RIG.plate_scale_arcsec_px)
        rec = record_from_stats(st, file=f.file_name, time_s=parse_date_obs(p.date_obs))
        last_time_s = rec.time_s
        dec = m.observe(rec)
        pending = res.add(i, dec, abs(f.truth["defocus_um"]) / CFZ_UM)
    return res


# ---------------------------------------------------------------------------------------- figures

def figures(results: list[NightResult], rules: tuple[str, ...] | None,
            false_rules: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Aggregate a group of nights; ``rules`` limits the requests counted (None: every rule) and
    ``false_rules`` those counted as false/early (default: ``rules``; the default policy's
    temperature and time rules fire by design, whatever the drift)."""
    def counted(r: tuple[int, float, tuple[str, ...]]) -> bool:
        return rules is None or bool(set(r[2]) & set(rules))

    def counted_false(r: tuple[int, float, tuple[str, ...]]) -> bool:
        want = false_rules if false_rules is not None else rules
        return want is None or bool(set(r[2]) & set(want))

    flat = [n for n in results if n.spec.coef_um_per_c == 0]
    drift = [n for n in results if n.spec.coef_um_per_c != 0]
    false_per_night = (sum(sum(1 for r in n.requests if counted_false(r)) for n in flat) / len(flat)) if flat else None
    early = sum(1 for n in results for r in n.requests if counted_false(r) and r[1] < 0.25)
    caught = [r[1] for n in drift for r in n.requests if counted(r) and r[1] >= 0.25]
    kept = sum(n.n_kept for n in results)
    return {
        "n_nights": len(results),
        "false_per_night": false_per_night,
        "early_per_night": early / len(results) if results else None,
        "n_caught": len(caught),
        "caught_median_cfz": float(np.median(caught)) if caught else None,
        "caught_p90_cfz": float(np.percentile(caught, 90)) if caught else None,
        "caught_max_cfz": float(max(caught)) if caught else None,
        "caught_in_zone_pct": 100.0 * float(np.mean(np.array(caught) < 0.5)) if caught else None,
        "out_of_zone_pct": 100.0 * sum(n.n_out for n in results) / kept if kept else None,
        "requests_per_night": sum(len(n.requests) for n in results) / len(results) if results else None,
    }


def _f(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(f"\n{title}")
    print(f"  {'group':<34} {'nights':>6} {'false/nt':>8} {'early/nt':>8} {'caught':>6} "
          f"{'med CFZ':>7} {'p90':>5} {'max':>5} {'<0.5':>5} {'out %':>6} {'req/nt':>6}")
    for name, f in rows:
        print(f"  {name:<34} {f['n_nights']:>6} {_f(f['false_per_night']):>8} {_f(f['early_per_night']):>8} "
              f"{f['n_caught']:>6} {_f(f['caught_median_cfz']):>7} {_f(f['caught_p90_cfz']):>5} "
              f"{_f(f['caught_max_cfz']):>5} {_f(f['caught_in_zone_pct'], '.0f'):>5} "
              f"{_f(f['out_of_zone_pct'], '.1f'):>6} {_f(f['requests_per_night'], '.1f'):>6}")


def real_nights(n_seeds: int, as_json: bool, n_noise_seeds: int | None = None) -> None:
    """The issue-13 nights: ours vs NINA's 5 % rule (see ``--real``); ``n_noise_seeds`` seeing-jitter
    and cloud nights (default ``n_seeds``), each also on a filter the autofocus was not made with."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import test_policy_real as T

    rows: list[dict[str, Any]] = []
    b_ours, b_nina, r_ours, r_nina, r_cfz_ours, r_cfz_nina, other = [], [], [], [], [], [], 0
    cfz_r = optics.cfz_um(5.0, 640.0)
    for seed in range(n_seeds):
        mk_n, mk_o = T.real_night_frame(seed), T.real_night_frame(seed)
        _, nina = T.closed_loop(mk_n, len(T.PLAN), T.NINA)
        _, ours = T.closed_loop(mk_o, len(T.PLAN), T.OURS)
        for reqs, mk, b_list, r_list, c_list in ((T.requests(nina), mk_n, b_nina, r_nina, r_cfz_nina),
                                                  (T.requests(ours), mk_o, b_ours, r_ours, r_cfz_ours)):
            b = [i - T.B_FIRST + 1 for i in reqs if T.B_FIRST <= i < T.B_FIRST + 7]
            r = [i for i in reqs if T.R2_FIRST <= i < T.R2_FIRST + 14]
            b_list.append(b[0] if b else None)
            r_list.append(r[0] - T.R2_FIRST + 1 if r else None)
            c_list.append(mk.truth_um[r[0]] / cfz_r if r else None)
        other += len([i for i in T.requests(ours) if not (T.B_FIRST <= i < T.B_FIRST + 7
                                                            or T.R2_FIRST <= i < T.R2_FIRST + 14)])

    def med(v: list[Any]) -> str:
        v = [x for x in v if x is not None]
        return f"{np.median(v):.2f}" if v else "-"

    def cell(x: Any, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    if not as_json:
        print("\nreconstructed NINA night, per seed (truth: GalSim renders per filter; frame = n-th frame of the drift)")
        print(f"  {'seed':>4} | {'drift 1 ours':>12} {'NINA':>5} | {'drift 2 ours':>12} {'CFZ':>5} | {'NINA':>5} {'CFZ':>5}")
        for seed in range(n_seeds):
            print(f"  {seed:>4} | {cell(b_ours[seed], 'd'):>12} {cell(b_nina[seed], 'd'):>5} | "
                  f"{cell(r_ours[seed], 'd'):>12} {cell(r_cfz_ours[seed], '.2f'):>5} | "
                  f"{cell(r_nina[seed], 'd'):>5} {cell(r_cfz_nina[seed], '.2f'):>5}")

    # seeds 0-9 tune, 10-19 are held out (policy3 onwards); NINA's own catch below our 0.4 CFZ
    # limit is counted apart: asking later there is the limit, not the test
    for lo, hi in ((0, min(10, n_seeds)), (10, n_seeds)):
        if hi <= lo:
            continue
        late = [k for k in range(lo, hi) if r_ours[k] is None or (r_nina[k] is not None and r_ours[k] > r_nina[k])]
        past = [k for k in late if r_cfz_nina[k] is not None and r_cfz_nina[k] >= 0.4 - 1e-9]
        if not as_json:
            print(f"  drift 2, seeds {lo}-{hi - 1}: later than NINA on {len(late)} of {hi - lo} (seeds {late}); "
                  f"of those, NINA asked at or past our 0.40 CFZ limit on {len(past)} (seeds {past})")
    rows.append({"night": "reconstructed NINA night", "seeds": n_seeds,
                 "drift1_frame_ours": med(b_ours), "drift1_frame_nina": med(b_nina),
                 "drift1_missed_ours": sum(x is None for x in b_ours),
                 "drift2_frame_ours": med(r_ours), "drift2_frame_nina": med(r_nina),
                 "drift2_cfz_ours": med(r_cfz_ours), "drift2_cfz_nina": med(r_cfz_nina),
                 "drift2_missed_ours": sum(x is None for x in r_ours), "other_requests_ours": other})
    n_noise = n_noise_seeds or n_seeds
    for kind, night in (("seeing jitter 2.0-4.2\"", T.seeing_jitter_night), ("clouds", T.cloud_night)):
        # "L": the autofocus was made in the frames' filter; "R": it was not (a filter changed to
        # without refocusing: the straight-line witness is on, its first frames are not trusted)
        for af_filter in ("L", "R"):
            counts: dict[str, list[int]] = {"ours": [], "nina": []}
            for seed in range(n_noise):
                frames = night(seed)
                for who, cfg in (("ours", T.OURS), ("nina", T.NINA)):
                    _, d = T.closed_loop(lambda i, _f: frames[i], len(frames), cfg, first_filter=af_filter)
                    counts[who].append(len(T.requests(d)))
            what = "" if af_filter == "L" else ", autofocus in another filter"
            rows.append({"night": f"{kind}, 30 x 300 s{what}", "seeds": n_noise,
                         "false_per_night_ours": float(np.mean(counts["ours"])),
                         "false_per_night_nina": float(np.mean(counts["nina"])),
                         "nights_with_a_false_request_ours": int(sum(c > 0 for c in counts["ours"])),
                         "false_seeds_ours": [k for k, c in enumerate(counts["ours"]) if c]})
            if not as_json:
                print(f"\n{kind}{what}, false requests per seed: ours {counts['ours']}, NINA 5 % {counts['nina']}"
                      f" (ours false on seeds {rows[-1]['false_seeds_ours']}; seeds 0-19 tune, 20-39 held out)")
    for truth in ("moffat 2.5", "moffat 4.5", "galsim"):
        got = T.drift_requests(truth)
        cfz = np.array([t / T.CFZ_UM for t, _, _ in got])
        err = np.array([m / t - 1.0 for t, m, _ in got])
        if not as_json:
            print(f"\nsteady drift, truth {truth}: request at true defocus (CFZ) / drift model error, per night")
            print("  " + "  ".join(f"{c:.2f}/{100 * e:+.0f}%{'*' if nb else ''}" for c, e, (_, _, nb) in zip(cfz, err, got))
                  + "   (* after an in-focus hour; else from dusk)")
        rows.append({"night": f"steady drift 2-3 um/frame, truth {truth}", "seeds": 3,
                     "request_cfz_median": float(np.median(cfz)), "request_cfz_max": float(cfz.max()),
                     "share_before_0p6_cfz": float(np.mean(cfz < 0.6)),
                     "share_model_within_25pct": float(np.mean(np.abs(err) < 0.25)),
                     "model_error_median_pct": 100 * float(np.median(err)),
                     "model_error_worst_pct": 100 * float(err[np.argmax(np.abs(err))])})
    if as_json:
        for r in rows:
            print(json.dumps({"group": "real nights", **r}))
        return
    print("\nissue-13 nights: our policy (defaults, image rules) beside NINA's 5 % HFR-increase rule")
    for r in rows:
        print("  " + r["night"] + ": " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in r.items() if k != "night"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=4, help="nights per grid cell")
    ap.add_argument("--first-seed", type=int, default=0, help="first grid seed (held-out checks: seeds not tuned on)")
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--wander-pct", type=float, default=0.0, help="slow seeing wander amplitude (3 h period)")
    ap.add_argument("--rendered", type=int, default=0, help="extra nights rendered and measured (slow)")
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated subset of: " + ", ".join([*POLICIES, TEMPCO_POLICY]).replace("%", "%%"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a [policy] setting in every policy (repeatable), e.g. --set drift_z=3.5")
    ap.add_argument("--real", type=int, default=0, help="seeds of the issue-13 nights (ours vs NINA); 0 = skip")
    ap.add_argument("--noise-seeds", type=int, default=0,
                    help="seeds of the seeing-jitter and cloud nights with --real (default: as --real)")
    ap.add_argument("--profile-truth", choices=("galsim", "sim"), default="galsim",
                    help="HFD/FWHM of the simulated nights: measured on GalSim frames (default) or the formula "
                         "fitted to focuswatch.sim's frames (the grid before policy8)")
    ap.add_argument("--json", action="store_true", help="one JSON object per policy and group")
    ap.add_argument("--hfr-truth", choices=("physical", "moffat"), default="physical",
                    help="HFR growth of the simulated nights: calibrated physical optics (default) or the "
                         "geometric Moffat model of the figures measured before the diagcal merge")
    args = ap.parse_args(argv)
    if args.real:
        real_nights(args.real, args.json, args.noise_seeds or None)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = type(getattr(PolicyConfig(), key.strip()))(float(value) if value.strip()
                                                                              not in ("true", "false")
                                                                              else value.strip() == "true")

    specs = [NightSpec(seed, jit, coef, exp, cloud, args.hours, args.wander_pct, args.hfr_truth,
                       args.profile_truth)
             for seed in range(args.first_seed, args.first_seed + args.seeds) for jit in (3.0, 6.0, 10.0) for coef in (0.0, 15.0, 30.0)
             for exp in (60.0, 600.0) for cloud in (False, True)]
    names = [p.strip() for p in args.policies.split(",") if p.strip()]
    t0 = time.perf_counter()
    for name in names:
        config = replace(POLICIES["default" if name == TEMPCO_POLICY else name],
                         **{k: v for k, v in overrides.items() if not (name.startswith("NINA") and k == "seeing_veto")})
        results = [run_truth_night(s, policy_for(name, s, config), with_profile="HFR-only" not in name) for s in specs]
        rules = STAR_RULES if name.startswith("star rules") else ("hfr_increase",) if name.startswith("NINA") else None
        fr = STAR_RULES if name in ("default", TEMPCO_POLICY) else None
        groups: list[tuple[str, dict[str, Any]]] = [("all nights", figures(results, rules, fr))]
        for exp in (60.0, 600.0):
            for jit in (3.0, 6.0, 10.0):
                sel = [r for r in results if r.spec.exposure_s == exp and r.spec.jitter_pct == jit]
                groups.append((f"{exp:g} s, jitter {jit:g} %", figures(sel, rules, fr)))
        for exp in (60.0, 600.0):
            for coef in (15.0, 30.0):
                sel = [r for r in results if r.spec.exposure_s == exp and r.spec.coef_um_per_c in (0.0, coef)]
                groups.append((f"{exp:g} s, drift {coef:g} um/C", figures(sel, rules, fr)))
        if args.json:
            for g, f in groups:
                print(json.dumps({"policy": name, "group": g, **f}))
        else:
            counted = ("drift + consecutive + reference" if rules == STAR_RULES else "hfr_increase" if rules
                       else "every rule; false/early: drift + consecutive + reference")
            print_table(f"policy: {name} (requests counted: {counted}; {len(specs)} nights of "
                        f"{args.hours:g} h)", groups)
        if args.rendered and "HFR-only" not in name:
            rspecs = [NightSpec(100 + k, (6.0, 10.0)[k % 2], (0.0, 30.0, 15.0)[k % 3], 120.0, k % 4 == 3, 2.5)
                      for k in range(args.rendered)]
            rres = []
            for s in rspecs:
                rres.append(run_rendered_night(s, policy_for(name, s, config)))
                print(f"  rendered {s.label}: requests {[(i, round(c, 2), r) for i, c, r in rres[-1].requests]}",
                      file=sys.stderr, flush=True)
            f = figures(rres, rules)
            if args.json:
                print(json.dumps({"policy": name, "group": "rendered + stars.measure", **f}))
            else:
                print_table("  rendered frames measured with stars.measure (120 s exposures, 2.5 h)",
                            [("rendered + stars.measure", f)])
    print(f"\n({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
