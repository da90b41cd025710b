"""The refocus policy: when to ask for an autofocus, and why. Pure: no files, no clock.

Every light frame becomes a :class:`FrameRecord`; :func:`decide` turns the frames since the
last autofocus (``history``), the :class:`PolicyState` and the frame's time (``now``) into a
:class:`Decision` — ``ok``, ``refocus`` or ``skip`` — with its reasons and figures.
:class:`Monitor` is the small stateful wrapper the watcher, ``replay`` and the demo share.

How the parts fit, in the order a frame meets them:

=================  ==========================================================================
module             its job
=================  ==========================================================================
``config``         :class:`PolicyConfig`, every threshold (the ``[policy]`` table), validated
``records``        what travels in and out: :class:`FrameRecord`, :class:`HfrRecord`,
                   :class:`AutofocusMark`, :class:`Decision`
``state``          :class:`PolicyState`, what is remembered between frames, and its transitions
``baseline``       the independent in-focus reference and the night's memory (per filter)
``estimators``     baselines, the drift model, trend, jitter, profile change, significance bars
``context``        everything the rules look at for one frame, computed once (``Context``)
``tempco``         the focuser's temperature coefficient in force (configured, or learnt and
                   past its gate) and the thermal drift rate it allows the drift model
``rules``          one function per rule, :data:`RULES`, and the tables generated from them
``vetoes``         the shared vetoes, written once, :data:`VETOES`
``decide``         :func:`decide` (vetoes, rules, holds → a decision) and :class:`Monitor`
``summary``        a night counted from its decisions (:func:`summarize`)
``afconfirm``      "was that autofocus real?", judged on the frames after it
=================  ==========================================================================

Rules (each one pure function in :mod:`focuswatch.policy.rules`; a refocus lists every rule
that fired). This table and the vetoes' below are generated from :data:`RULES` and
:data:`VETOES` (``focuswatch rules`` prints the same rows with your settings).

{RULE_TABLE}

The defocus limit is ``defocus_limit_cfz`` x the critical focus zone (total width,
``optics.cfz_um`` at the filter's wavelength); 0.5 is the edge of the zone, the default 0.4
asks for a refocus before the stars leave it. HFR growth becomes defocus with the exact
seeing-plus-annulus model (``optics.defocus_um_from_hfr``) against the per-filter baseline
(median of the first ``baseline_frames`` accepted frames after each autofocus), scaled by
``airmass**0.6`` when ``airmass_correction`` is on (seeing grows with airmass; focus does
not). Without a focal ratio or pixel size the limit falls back to
``fallback_hfr_increase_pct`` % HFR growth (and ``drift`` to the Theil-Sen trend's lower bound).

Why a model and not a single frame: near focus a star grows with the *square* of the
defocus, so half the zone adds only ~7 % to a 1.4 px HFR, about one frame of seeing jitter.
A single frame's defocus estimate swings by a whole zone; the drift model pools every frame
since the autofocus (and fits the in-focus level, so a baseline taken in lucky seeing is not
mistaken for drift). The seeing jitter is never trusted below ``jitter_floor_pct`` and a
jitter measured on few frames raises the bar (Student's t with the frames' degrees of
freedom plus ``prior_dof``). HFD/FWHM (``profile_ratio``) flattens with defocus but not with
seeing, so when measured it is a second witness in the fit and the ``seeing`` veto's evidence.

Baselines that frames already out of focus cannot fool (:mod:`focuswatch.policy.baseline`):
the first frames after an autofocus are in focus only in the filter it was made with. For
the others (a filter change without a refocus) and for every frame, an *independent*
reference is kept: the night's best of the filter over earlier autofocus runs, the other
filters' in-focus size scaled by wavelength, and the rig's in-focus size for a measured seeing.
The ``reference`` rule compares the last ``reference_frames`` frames with it, and the drift
model takes it as a prior on its in-focus level. The frame-to-frame scatter behind every
significance test is measured over the whole night (never below the current segment's), so
3-6 long exposures after an autofocus are judged against a scatter known to tens of degrees
of freedom. HFR-only records (NINA's image statistics, :class:`HfrRecord`)
work the same way without the profile witness.

Vetoes (written once, applied to every rule)

{VETO_TABLE}

"skip" sets the frame aside (not counted in the baseline or trend); "hold" keeps the frame
(decision ``ok``) but holds the refocus back, saying which rule was held. Adding a rule is one
function, one row in :data:`RULES` (the tables above follow) and one table-driven test.

>>> from focuswatch.optics import Rig
>>> m = Monitor(PolicyConfig(), Rig(aperture_mm=200, focal_length_mm=1000, pixel_um=3.76))
>>> d = m.observe(FrameRecord(file="a.fits", time_s=0.0, n_stars=80, hfr_px=2.0, temp_c=10.0))
>>> d.decision, d.reasons[0]
('ok', 'building the in-focus baseline for filter - (1/3 frames)')
"""
from __future__ import annotations

from focuswatch.policy.config import PolicyConfig
from focuswatch.policy.decide import Monitor, decide
from focuswatch.policy.estimators import drift_bar, fit_drift, slope_critical_z
from focuswatch.policy.records import AutofocusMark, Decision, FrameRecord, HfrRecord, record_from_stats
from focuswatch.policy.rules import RULES, rule_table_text, rules_table, veto_table_text
from focuswatch.policy.state import PolicyState
from focuswatch.policy.summary import Summary, summarize
from focuswatch.policy.vetoes import OPTICAL_LABELS, TRANSIENT_LABELS, VETOES

__all__ = ["AutofocusMark", "Decision", "FrameRecord", "HfrRecord", "Monitor", "OPTICAL_LABELS", "PolicyConfig",
           "PolicyState", "RULES", "Summary", "TRANSIENT_LABELS", "VETOES", "decide", "drift_bar", "fit_drift",
           "record_from_stats", "rule_table_text", "rules_table", "slope_critical_z", "summarize",
           "veto_table_text"]

if __doc__:
    __doc__ = __doc__.replace("{RULE_TABLE}", rule_table_text()).replace("{VETO_TABLE}", veto_table_text())
