"""Autofocus runs: V-curve refits, judgement of a run, temperature coefficients, filter offsets.

Pure computation: runs come in as :class:`AFRun` values (built from NINA reports or from a
folder of frames by :mod:`focuswatch.io.afreports`), results go out as frozen dataclasses. No
files, no clock.

The V-curve model is the hyperbola NINA, ASTAP and Ekos fit::

    HFR(x) = a * sqrt(1 + ((x - x0) / b)**2)  (+ c, optional, as Ekos does)

``x`` is the focuser position in steps, ``x0`` the best focus, ``a`` (+ ``c``) the HFR at best
focus in px and ``a / b`` the asymptotic slope in px per step. The slope is what ties a run to
the optics: a defocus ``D`` um spreads a star into a disk of diameter ``D / N`` um, whose
half-flux radius is ``k * D / (2 N)`` um, so far from focus the HFR grows by::

    k * step_um / (2 * N * pixel_um)   px per focuser step

with ``k = optics.true_hfr_factor(obstruction)`` for a true half-flux radius (what
focuswatch measures on frames) or ``optics.nina_hfr_factor(obstruction)`` for NINA's
flux-weighted "HFR" (what NINA reports contain). A fitted slope far from that value means
the focuser step size setting is wrong or the sweep is too narrow for the fit to reach the
asymptote.

Judgement of one run (thresholds in :class:`AFJudgeConfig`):

=========================  ========================================================
check                      why
=========================  ========================================================
R^2 of the refit >= 0.7    NINA's own rule; below it the curve is noise (clouds, seeing)
x0 inside the positions    an extrapolated minimum is a guess
>= 3 points on each side   an unbalanced curve pins x0 on one branch only
outer HFR ~3x the minimum  under 2x the sweep is too narrow (slope and x0 poorly fixed),
                           over 5x the outer stars are bloated, faint or lost
step vs the CFZ            reported in zones; the fit, not the zone, sets the advice
fitted slope vs optics     0.7-1.4x expected; otherwise step size setting or sweep
=========================  ========================================================

>>> xs = [100 * i for i in range(-4, 5)]
>>> hs = [hyperbola(x, 2.0, 150.0, 30.0) for x in xs]
>>> fit = fit_hyperbola(xs, hs)
>>> round(fit.best_position_steps, 1), round(fit.min_hfr_px, 3)
(30.0, 2.0)

Parts
-----
One module per job, each pure (no files, no clock):

- :mod:`~focuswatch.autofocus.run`: :class:`AFRun` and :class:`AFPoint`, a run as data;
- :mod:`~focuswatch.autofocus.vcurve`: the hyperbola and its robust fit (:class:`HyperbolaFit`);
- :mod:`~focuswatch.autofocus.judge`: one run refitted and judged (:func:`judge_run`, :class:`AFJudgeConfig`);
- :mod:`~focuswatch.autofocus.trends`: many runs: temperature coefficients, filter offsets,
  :func:`analyze_runs` and its :class:`AFSummary`;
- :mod:`~focuswatch.autofocus.text`: the text ``focuswatch af`` prints.
"""
from __future__ import annotations

from focuswatch.autofocus.judge import AFJudgeConfig, AFRunResult, expected_slope_px_per_step, hfr_factor, judge_run
from focuswatch.autofocus.run import HFR_KINDS, AFPoint, AFRun
from focuswatch.autofocus.text import run_text, summary_text
from focuswatch.autofocus.trends import (AFSummary, FilterOffset, TempCoefficient, analyze_runs, filter_offsets,
                                         summarize, temperature_coefficient)
from focuswatch.autofocus.vcurve import HyperbolaFit, fit_hyperbola, hyperbola
from focuswatch.errors import FitError  # raised here, importable from here

__all__ = [
    "AFJudgeConfig",
    "AFPoint",
    "AFRun",
    "AFRunResult",
    "AFSummary",
    "FilterOffset",
    "FitError",
    "HFR_KINDS",
    "HyperbolaFit",
    "TempCoefficient",
    "analyze_runs",
    "expected_slope_px_per_step",
    "filter_offsets",
    "fit_hyperbola",
    "hfr_factor",
    "hyperbola",
    "judge_run",
    "run_text",
    "summarize",
    "summary_text",
    "temperature_coefficient",
]
