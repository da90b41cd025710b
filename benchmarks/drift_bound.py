"""How early could ANY test ask on issue 13's steady drift nights? An information bound, beside our policy.

Issue 13 (item 3) asks the drift rule to request a refocus before 0.6 CFZ on a steady 2-3 um per
300 s frame drift, with the drift model within 25 % of the truth, and with no false request on
seeing-jitter and cloud nights. This script measures what the frames themselves allow, so the
policy's figures can be read against the best any detector could do on the same nights.

The nights (as ``tests/test_policy_real.drift_night``): the 130 mm f/5, 3.76 um rig in 2.8"
Kolmogorov seeing, 40 frames of 300 s after the onset of a steady drift of 2, 2.5 or 3 um per
frame, either from dusk (onset at the first frame after the autofocus) or after an in-focus hour
(12 in-focus frames first); HFR from GalSim's physical optics (the table ``galsim_defocus_table``
of the test, imported as ``policy_eval.py`` does), 2 % seeing jitter per frame (seeing and blur
scale together) and 0.5 % measurement noise. Truth owes nothing to the policy's optics model.

The oracle: a generalised likelihood-ratio (GLR) test that is told everything the policy must
guess, except the rate and the in-focus level:

* the drift's onset frame (the autofocus, or the end of the in-focus hour),
* the exact shape of the HFR growth with defocus (GalSim's own table at the nominal seeing),
* (a) the jitter sigma (hypot(2 %, 0.5 %) in ln HFR), or (b) sigma estimated from the night's own
  residuals (level + rate fitted: n - 2 degrees of freedom, the statistic turned into a normal
  quantile through Student's t: a realistic best case for a detector that must learn its noise).

At every frame (from the 3rd after the onset: a look per frame, like the policy) it fits the
in-focus level and the rate on a fine grid (the model ``ln HFR_i = level + s(rate * (i - onset))``
with s the known growth) and compares the log-likelihood with "no drift" (level only):
``z = sqrt(chi2_0 - min_rate chi2_rate)``. Its bar is set by Monte Carlo on nights WITHOUT drift of the
same length so that a night's largest z (over all ~40 looks) passes it with the stated false-alarm
budget per night: 1/20 and 1/160 (the issue's 160 seeing/cloud nights with 0 false requests).

Printed per kind of night (dusk / after an in-focus hour) and rate:

* ``detect``: the oracle's first significant look: share before 0.6 CFZ, median true defocus (CFZ);
* ``request``: the first look that is significant AND whose own rate, two frames ahead (the policy's
  ``lookahead_frames``), reaches the 0.4 CFZ limit: what a policy built on the oracle would ask;
* ``rate<25%``: the share of requests whose fitted rate (so defocus) is within 25 % of the truth;
* the policy (``Monitor`` with the test's ``OURS`` settings) on the same kind of nights: the test's
  own seeds (3-12 held out: the 60 nights of ``test_steady_drift_on_held_out_skies``) and more,
  and its false requests on no-drift nights of the same kind (2 % jitter, 40 frames).

The oracle is also run on the test's exact 60 held-out nights (the same HFR series the test feeds the
policy), so the two are compared night for night.

Last, the drift that starts 12, 24 or 36 frames after the autofocus with NO autofocus mark at its
onset (``test_policy_real.first_request_on_late_drift``): the oracle is still told the onset; the
policy must find it (the model from the autofocus, and the later onsets of ``drift_onsets``).

    PYTHONPATH=plugin python benchmarks/drift_bound.py [--quick] [--mc 4000] [--null 20000]
                                                        [--policy-seeds 20] [--policy-null 60]

About 1-2 minutes of CPU by default, ~20 s with ``--quick`` (fewer Monte Carlo nights, the policy on
the test's 60 held-out nights only, no policy null nights).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm, t as student_t

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

RATES_UM = (2.0, 2.5, 3.0)           # um per 300 s frame: the steady drifts
N_AFTER = 40                          # frames after the onset (drift_night's n)
KINDS = {"dusk": 0, "after an in-focus hour": 12}
SEEING_JITTER = 0.02                  # ln seeing per frame (drift_night's jitter_pct)
MEAS_NOISE = 0.005                    # measurement noise, fraction
SEEING_ARCSEC = 2.8
FIRST_LOOK = 3                        # frames after the onset before the first look (a fit needs 3)
LIMIT_CFZ = 0.4                       # the policy's defocus_limit_cfz
LOOKAHEAD_FRAMES = 2.0                # the policy's lookahead_frames
TARGET_CFZ = 0.6                      # issue 13's "before 0.6 CFZ"
RATE_GRID_UM = np.arange(0.05, 8.0001, 0.05)    # um per frame, the oracle's rate grid


def galsim_truth():
    """(defocus grid um, GalSim HFR px at 2.8", CFZ um) from the test module (rendered once, ~2 s)."""
    import test_policy_real as T

    return np.asarray(T.DEFOCUS_GRID_UM, float), np.asarray(T.galsim_defocus_table(), float), float(T.CFZ_UM)


def growth(defocus_um: np.ndarray, grid: np.ndarray, table: np.ndarray) -> np.ndarray:
    """ln(HFR / in-focus HFR) at ``defocus_um``: the table, extended linearly past its last node
    (far from focus the blur disk grows linearly; only the oracle's fastest trial rates reach it)."""
    slope = (table[-1] - table[-2]) / (grid[-1] - grid[-2])
    far = table[-1] + slope * (defocus_um - grid[-1])
    h = np.where(defocus_um <= grid[-1], np.interp(defocus_um, grid, table), far)
    return np.log(h / table[0])


def simulate(rng: np.random.Generator, n_nights: int, rate_um: float, n_before: int, grid: np.ndarray,
             table: np.ndarray) -> np.ndarray:
    """ln HFR (relative to in focus) of ``n_nights`` drift nights, shape (nights, frames): GalSim truth,
    seeing jitter scaling both the seeing and the blur (``galsim_hfr_px``), measurement noise."""
    n = n_before + N_AFTER
    d = rate_um * np.clip(np.arange(n) - n_before, 0, None)[None, :]
    k = SEEING_ARCSEC / 2.8 * np.exp(rng.normal(0.0, SEEING_JITTER, (n_nights, n)))
    hfr = k * np.interp(d / k, grid, table) * (1.0 + rng.normal(0.0, MEAS_NOISE, (n_nights, n)))
    return np.log(hfr / table[0])


def policy_test_nights(seeds, rate_um: float, n_before: int) -> np.ndarray:
    """ln HFR of the test's own nights (``drift_night`` with those seeds): the series the policy sees."""
    import test_policy_real as T

    t0 = float(T.galsim_defocus_table()[0])
    return np.array([[math.log(r.hfr_px / t0) for r in T.drift_night(s, rate_um, n_before, "galsim")[0]]
                     for s in seeds])


class Oracle:
    """The GLR over the drift rate at the KNOWN onset ``n_before`` and the known growth shape.

    ``scan(y)`` returns, for every look (newest frame index ``n_before + FIRST_LOOK - 1`` onwards),
    the known-sigma z, the Student-t z (as a normal quantile) and the fitted rate, vectorised over nights.
    """

    def __init__(self, n_before: int, grid: np.ndarray, table: np.ndarray):
        self.n_before = n_before
        n = n_before + N_AFTER
        steps = np.clip(np.arange(n) - n_before, 0, None)
        self.shapes = growth(RATE_GRID_UM[:, None] * steps[None, :], grid, table)     # (rates, frames)
        self.sigma = math.hypot(SEEING_JITTER, MEAS_NOISE)
        self.looks = np.arange(n_before + FIRST_LOOK, n + 1)                            # frames used per look

    def scan(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = y.shape[0]
        zk = np.empty((m, len(self.looks)))
        zt = np.empty_like(zk)
        rate = np.empty_like(zk)
        for j, n in enumerate(self.looks):
            x = self.shapes[:, :n]
            xc = x - x.mean(axis=1, keepdims=True)
            yc = y[:, :n] - y[:, :n].mean(axis=1, keepdims=True)
            # chi2_0 - chi2_rate = (2 y.xc - |xc|^2) / sigma^2 (level fitted: the centred series)
            gain = 2.0 * (yc @ xc.T) - np.sum(xc * xc, axis=1)[None, :]
            best = np.argmax(gain, axis=1)
            g = np.maximum(gain[np.arange(m), best], 0.0)
            zk[:, j] = np.sqrt(g) / self.sigma
            rss = np.maximum(np.sum(yc * yc, axis=1) - g, 1e-300)
            tz = np.sqrt(g / (rss / (n - 2)))
            zt[:, j] = norm.isf(np.maximum(student_t.sf(tz, n - 2), 1e-300))
            rate[:, j] = RATE_GRID_UM[best]
        return zk, zt, rate

    def bar(self, z_null: np.ndarray, per_night: float) -> float:
        """The z a no-drift night's largest look passes with probability ``per_night``."""
        return float(np.quantile(z_null.max(axis=1), 1.0 - per_night))

    def first(self, z: np.ndarray, rate_fit: np.ndarray, bar: float, cfz_um: float,
              gated: bool) -> tuple[np.ndarray, np.ndarray]:
        """(newest frame's index after the onset, fitted rate) at the first look past ``bar``
        (and, ``gated``, with its own defocus two frames ahead at the limit); -1 where never."""
        ok = z >= bar
        if gated:
            ahead = (self.looks - 1 - self.n_before + LOOKAHEAD_FRAMES)[None, :]
            ok &= rate_fit * ahead >= LIMIT_CFZ * cfz_um
        hit = np.where(ok.any(axis=1), np.argmax(ok, axis=1), -1)
        k = np.where(hit >= 0, self.looks[np.maximum(hit, 0)] - 1 - self.n_before, -1)
        r = np.where(hit >= 0, rate_fit[np.arange(len(hit)), np.maximum(hit, 0)], np.nan)
        return k, r


def cfz_and_within(k: np.ndarray, r_fit: np.ndarray, rate_um: float, cfz_um: float) -> tuple[np.ndarray, np.ndarray]:
    """(true CFZ at the first look, infinite where never; whether the fitted rate is within 25 %)."""
    cfz = np.where(k >= 0, rate_um * k / cfz_um, np.inf)
    within = np.where(k >= 0, np.abs(r_fit / rate_um - 1.0) < 0.25, False)
    return cfz, within


def policy_on(seeds, rate_um: float, n_before: int) -> tuple[np.ndarray, np.ndarray]:
    """(true CFZ, model error) at the policy's first request on the test's nights (inf / nan: never)."""
    import test_policy_real as T

    cfz, err = [], []
    for s in seeds:
        true_um, model_um, _ = T.first_request_on_drift("galsim", s, rate_um, n_before)
        cfz.append(np.inf if true_um is None else true_um / T.CFZ_UM)
        err.append(np.nan if true_um is None else model_um / true_um - 1.0)
    return np.array(cfz), np.array(err)


def policy_false(seeds, n_before: int) -> int:
    """Nights with a request among no-drift nights of the same kind (rate 0: 2 % jitter only)."""
    import test_policy_real as T

    return sum(T.first_request_on_drift("galsim", s, 0.0, n_before)[0] is not None for s in seeds)


def late_onsets(rng: np.random.Generator, args: argparse.Namespace, grid: np.ndarray, table: np.ndarray,
                cfz_um: float, seeds: range) -> None:
    """The drift that starts 1-3 h after the autofocus with NO autofocus mark at its onset: the oracle
    (told the onset, known sigma, its own Monte Carlo bar) beside the policy, which must find it."""
    import test_policy_real as T

    print("\n== a drift that starts 12 / 24 / 36 frames after the autofocus, no autofocus mark at its onset ==")
    for nb in (12, 24, 36):
        orc = Oracle(nb, grid, table)
        zk0, _, _ = orc.scan(simulate(rng, max(args.null // 4, 1000), 0.0, nb, grid, table))
        bar = orc.bar(zk0, 1 / 160)
        out = []
        for r in RATES_UM:
            zk, _, rf = orc.scan(simulate(rng, max(args.mc // 4, 250), r, nb, grid, table))
            k, _ = orc.first(zk, rf, bar, cfz_um, gated=False)
            out.append(np.where(k >= 0, r * k / cfz_um, np.inf))
        cd = np.concatenate(out)
        pol = [T.first_request_on_late_drift(s, r, nb) for r in RATES_UM for s in seeds]
        cf = np.array([np.inf if t is None else t / cfz_um for t, _ in pol])
        er = np.array([np.nan if t is None else m / t - 1.0 for t, m in pol])
        print(f"  onset after {nb} frames: oracle (known onset and sigma, 1/160 per night) before 0.6 CFZ "
              f"{100 * np.mean(cd < TARGET_CFZ):.1f} %, median {np.median(cd):.2f} CFZ | policy, seeds "
              f"{seeds.start}-{seeds.stop - 1}: {np.sum(cf < TARGET_CFZ)}/{len(cf)} before 0.6 CFZ, median "
              f"{np.median(cf):.2f} CFZ, model within 25 % {np.sum(np.abs(er) < 0.25)}/{len(cf)}, median error "
              f"{100 * np.nanmedian(er):+.0f} %")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer Monte Carlo nights; the policy on the test's seeds only")
    ap.add_argument("--mc", type=int, default=4000, help="Monte Carlo drift nights per rate and kind")
    ap.add_argument("--null", type=int, default=20000, help="Monte Carlo no-drift nights per kind (sets the bars)")
    ap.add_argument("--policy-seeds", type=int, default=50,
                    help="drift_night seeds the policy runs on per rate and kind (from seed 3: 3-12 = the test's)")
    ap.add_argument("--policy-null", type=int, default=200, help="no-drift nights per kind the policy runs on")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    if args.quick:
        args.mc, args.null, args.policy_seeds, args.policy_null = 1000, 4000, 10, 0
    c0 = time.process_time()
    grid, table, cfz_um = galsim_truth()
    rng = np.random.default_rng(args.seed)
    budgets = (1 / 20, 1 / 160)
    print(f"steady drift, 2-3 um per 300 s frame, GalSim truth, {100 * SEEING_JITTER:g} % seeing jitter + "
          f"{100 * MEAS_NOISE:g} % measurement; CFZ {cfz_um:.1f} um; {args.mc} MC nights per row, bars from "
          f"{args.null} no-drift nights (largest z over the night's looks)")
    print("oracle: GLR over the rate at the KNOWN onset and growth shape; (a) known sigma, (b) sigma from the "
          "night's residuals (Student t)")
    held = range(3, 13)
    more = range(3, 3 + args.policy_seeds)
    for kind, nb in KINDS.items():
        orc = Oracle(nb, grid, table)
        zk0, zt0, _ = orc.scan(simulate(rng, args.null, 0.0, nb, grid, table))
        bars = {(s, fa): orc.bar(z, fa) for s, z in (("known", zk0), ("est", zt0)) for fa in budgets}
        print(f"\n== {kind} (onset after {nb} in-focus frames) ==  bars: "
              + ", ".join(f"{s} sigma 1/{round(1 / fa)}: {b:.2f}" for (s, fa), b in bars.items()))
        print(f"  {'rate':>5} {'who':<34} {'detect<0.6':>10} {'med':>5} {'request<0.6':>11} {'med':>5} {'rate<25%':>8}")
        mc: dict[tuple[str, float], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        for rate in RATES_UM + ("all",):
            if rate != "all":
                zk, zt, rf = orc.scan(simulate(rng, args.mc, rate, nb, grid, table))
            for sig in ("known", "est"):
                for fa in budgets:
                    if rate == "all":
                        cd, cr, w = (np.concatenate(v) for v in zip(*mc[(sig, fa)]))
                    else:
                        z = zk if sig == "known" else zt
                        kd, rd = orc.first(z, rf, bars[(sig, fa)], cfz_um, gated=False)
                        kr, rr = orc.first(z, rf, bars[(sig, fa)], cfz_um, gated=True)
                        cd, _ = cfz_and_within(kd, rd, rate, cfz_um)
                        cr, w = cfz_and_within(kr, rr, rate, cfz_um)
                        mc.setdefault((sig, fa), []).append((cd, cr, w))
                    print(f"  {str(rate):>5} {'oracle ' + sig + ' sigma, 1/' + str(round(1 / fa)) + ' per night':<34} "
                          f"{100 * np.mean(cd < TARGET_CFZ):>9.1f}% {np.median(cd):>5.2f} "
                          f"{100 * np.mean(cr < TARGET_CFZ):>10.1f}% {np.median(cr):>5.2f} {100 * np.mean(w):>7.1f}%")
        # the test's exact held-out nights (seeds 3-12): the oracle and the policy night for night
        print(f"  the test's held-out nights (seeds 3-12, {3 * len(held)} nights), same HFR series:")
        ys = {rate: policy_test_nights(held, rate, nb) for rate in RATES_UM}
        for sig in ("known", "est"):
            for fa in budgets:
                hits = [0, 0]
                for rate in RATES_UM:
                    zk, zt, rf = orc.scan(ys[rate])
                    z = zk if sig == "known" else zt
                    for g, gated in enumerate((False, True)):
                        k, _ = orc.first(z, rf, bars[(sig, fa)], cfz_um, gated=gated)
                        hits[g] += int(np.sum((k >= 0) & (rate * k / cfz_um < TARGET_CFZ)))
                print(f"    oracle {sig} sigma 1/{round(1 / fa)}: detect before 0.6 CFZ {hits[0]}/{3 * len(held)}, "
                      f"request {hits[1]}/{3 * len(held)}")
        pol = {rate: policy_on(more, rate, nb) for rate in RATES_UM}
        for name, seeds in (("seeds 3-12 (the test's held out)", held), (f"seeds 3-{2 + len(more)}", more)):
            if seeds is more and len(more) == len(held):
                continue
            idx = [more.index(s) for s in seeds]
            cf = np.concatenate([pol[r][0][idx] for r in RATES_UM])
            er = np.concatenate([pol[r][1][idx] for r in RATES_UM])
            print(f"    policy (Monitor, OURS) {name}: before 0.6 CFZ {np.sum(cf < TARGET_CFZ)}/{len(cf)}, "
                  f"median {np.median(cf):.2f} CFZ, model within 25 % {np.sum(np.abs(er) < 0.25)}/{len(cf)}; per rate "
                  + ", ".join(f"{r}: {np.sum(pol[r][0][idx] < TARGET_CFZ)}/{len(idx)}" for r in RATES_UM))
        if args.policy_null:
            nf = policy_false(range(100, 100 + args.policy_null), nb)
            print(f"    policy on {args.policy_null} no-drift nights of this kind (seeds 100+): {nf} with a request")
    late_onsets(rng, args, grid, table, cfz_um, more)
    print(f"\ncpu {time.process_time() - c0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
