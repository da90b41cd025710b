"""In-focus references the refocus policy cannot be fooled by, and HFR-only frame records. Pure.

Why: the first release compared every frame with the median of the first frames after each
autofocus. On a real NINA night (issue 13) the frames after a filter change were already out
of focus, so that baseline was too: the stars looked "as in focus as ever" while they grew by a
third. This module gives the policy in-focus sizes that do not come from the frames being judged:

* **the night's best per filter**: the in-focus levels right after earlier autofocus runs of
  that filter, pooled without the runs 2 sigma above their median (a failed autofocus does not
  raise it, one lucky run does not lower it);
* **the other filters, scaled by wavelength**: the seeing FWHM goes as lambda^-0.2
  (Kolmogorov turbulence), diffraction as lambda; a filter that changed without an
  autofocus (offsets, parfocal filters) is compared with the filter that was just focused;
* **the rig and the measured seeing**: the in-focus true half-flux radius of Kolmogorov
  seeing through the telescope's diffraction (:func:`infocus_hfr_px`: the calibrated call
  :func:`focuswatch.calibration.infocus_hfr_px` the diagnosis uses too; checked against
  GalSim in tests/test_policy_real.py).

Each one carries a log-scatter: the frames' jitter over its sample, the seeing's wander over
the hours since it was measured (``seeing_wander_pct_per_h``), the filter-to-filter model error
(``cross_filter_pct``), the uncertainty of a seeing figure (``rig_seeing_pct``). They are
combined by inverse variance into one :class:`Reference`.

The frame-to-frame scatter used by the significance tests is also kept over the whole night
(:class:`NightMemory`), not only since the last autofocus: with 3-6 long exposures after an
autofocus a scatter measured on those alone has 1-3 degrees of freedom and Student's t makes
any test hopeless.

:class:`focuswatch.policy.HfrRecord` is what a capture program's statistics give without the pixels (NINA's
image history, the Advanced API's ``IMAGE-SAVE`` event): HFR, its scatter over the stars, the
star count, filter, exposure, time. No profile witness (HFD/FWHM): the policy then decides on
HFR alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from focuswatch import optics
from focuswatch.model.numerics import MEDIAN_SE_FACTOR
from focuswatch import calibration

#: Seeing FWHM scales as wavelength**-0.2 (Kolmogorov: r0 ~ lambda**1.2, FWHM ~ lambda/r0).
SEEING_WAVELENGTH_EXPONENT = -0.2
#: Seeing FWHM grows as airmass**0.6 (Kolmogorov turbulence).
AIRMASS_EXPONENT = 0.6


# =========================================================================== the rig's in-focus size

def infocus_hfr_px(seeing_arcsec: float, aperture_mm: float, wavelength_nm: float,
                   plate_scale_arcsec_px: float, obstruction: float = 0.0) -> float:
    """In-focus true half-flux radius (px) of Kolmogorov seeing through the telescope.

    The one calibrated in-focus size, shared with the diagnosis:
    :func:`focuswatch.calibration.infocus_hfr_px` (generated physical-optics tables, central
    obstruction included; checked against GalSim). No pixel (measurements give the true HFR
    corrected for the pixel's width). 2.8" seeing on a 130 mm at 550 nm: 1.51 px at 1.19"/px.
    """
    return calibration.infocus_hfr_px(seeing_arcsec, aperture_mm, wavelength_nm, plate_scale_arcsec_px, obstruction)


#: below this seeing FWHM (arcsec) a star is diffraction-limited for the wavelength scaling
SMALLEST_SEEING_ARCSEC = 0.05


def scale_hfr_to_wavelength(hfr_px: float, from_nm: float, to_nm: float, *, aperture_mm: float | None = None,
                            plate_scale_arcsec_px: float | None = None) -> float:
    """An in-focus HFR measured at ``from_nm`` as it would be at ``to_nm`` (same seeing).

    The seeing part scales as lambda^-0.2. With the rig known, the diffraction part (as
    lambda) is taken out first by inverting :func:`infocus_hfr_px` for the seeing; without,
    the whole size scales as seeing (diffraction is small against seeing on most rigs).
    """
    if abs(to_nm - from_nm) < 1e-6:
        return hfr_px
    if not (aperture_mm and plate_scale_arcsec_px):
        return hfr_px * (to_nm / from_nm) ** SEEING_WAVELENGTH_EXPONENT
    if infocus_hfr_px(SMALLEST_SEEING_ARCSEC, aperture_mm, from_nm, plate_scale_arcsec_px) >= hfr_px:
        return hfr_px * (to_nm / from_nm) ** SEEING_WAVELENGTH_EXPONENT   # smaller than diffraction
    seeing_from = calibration.seeing_for_infocus_hfr_arcsec(hfr_px, aperture_mm, from_nm, plate_scale_arcsec_px)
    seeing_to = seeing_from * (to_nm / from_nm) ** SEEING_WAVELENGTH_EXPONENT
    return infocus_hfr_px(seeing_to, aperture_mm, to_nm, plate_scale_arcsec_px)


# =========================================================================== the night's memory

@dataclass(frozen=True)
class InFocusSample:
    """One accepted light frame as the night remembers it.

    ``log_hfr`` is ln(HFR / airmass**0.6) (the seeing at the zenith); ``segment`` counts the
    autofocus runs; ``trusted`` marks the first ``baseline_frames`` frames right after an
    autofocus in the filter it was made with (the only frames known to be in focus).
    """

    filter_name: str | None
    time_s: float
    log_hfr: float
    segment: int
    trusted: bool


@dataclass
class NightMemory:
    """What the policy keeps over the whole night, across autofocus runs (pure, in memory).

    ``samples`` every accepted frame (``trusted`` those known to be in focus); ``steps`` the log-HFR differences of successive accepted
    frames of one filter within one autofocus segment (the frame-to-frame scatter, free of
    slow drifts, filter changes and autofocus jumps); ``step_runs`` the (segment, filter) run
    each step belongs to, so :meth:`jitter` can take each run's own steady drift out;
    ``profile_steps`` the same differences of ln HFD/FWHM (:meth:`profile_jitter`).
    """

    samples: list[InFocusSample] = field(default_factory=list)
    trusted: list[InFocusSample] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    step_runs: list[tuple[int, str | None]] = field(default_factory=list)
    #: successive differences of ln HFD/FWHM within one filter and autofocus segment (profiles measured only)
    profile_steps: list[float] = field(default_factory=list)
    segment: int = 0
    segment_filter: str | None = None
    n_in_segment: dict[str | None, int] = field(default_factory=dict)
    _last: dict[str | None, float] = field(default_factory=dict)
    _last_profile: dict[str | None, float] = field(default_factory=dict)

    def autofocus(self, filter_name: str | None) -> None:
        """A new autofocus segment: the frames right after it, in ``filter_name``, are trusted."""
        self.segment += 1
        self.segment_filter = filter_name
        self.n_in_segment = {}
        self._last = {}
        self._last_profile = {}

    def add(self, filter_name: str | None, time_s: float, hfr_px: float, airmass: float | None,
            baseline_frames: int, profile_ratio: float | None = None) -> None:
        """Remember an accepted light frame (``profile_ratio``: its HFD/FWHM, when measured)."""
        if not hfr_px or hfr_px <= 0 or not math.isfinite(hfr_px):
            return
        if profile_ratio is not None and math.isfinite(profile_ratio) and profile_ratio > 0:
            log_p = math.log(profile_ratio)
            if filter_name in self._last_profile:
                self.profile_steps.append(log_p - self._last_profile[filter_name])
            self._last_profile[filter_name] = log_p
        if self.segment_filter is None and not self.n_in_segment:
            self.segment_filter = filter_name                     # no filter in the mark: the first frame's
        log_h = math.log(hfr_px) - (AIRMASS_EXPONENT * math.log(airmass) if airmass and airmass > 0 else 0.0)
        k = self.n_in_segment.get(filter_name, 0)
        trusted = filter_name == self.segment_filter and k < baseline_frames
        sample = InFocusSample(filter_name, float(time_s), log_h, self.segment, trusted)
        self.samples.append(sample)
        if trusted:
            self.trusted.append(sample)
        self.n_in_segment[filter_name] = k + 1
        if filter_name in self._last:
            self.steps.append(log_h - self._last[filter_name])
            self.step_runs.append((self.segment, filter_name))
        self._last[filter_name] = log_h

    def jitter(self) -> tuple[float | None, int]:
        """(frame-to-frame seeing jitter over the night as a log scatter, its degrees of freedom).

        The successive differences of each run (one filter within one autofocus segment) about
        that run's own mean step, so a steady drift inside a run is not counted as scatter (a
        drifting run's steps all share its slope; about the night's median step they read as
        scatter, and that blunted every test by ~20 % on issue 13's reconstructed night: 1.35 %
        measured for a true 1.12 %). Centring ``m`` differences of white noise on their mean
        leaves ``2 sigma^2 (m - 1/m)`` of their sum of squares, undone per run; a run of one
        difference is kept as it is. The largest 10 % dropped (a focus step, a gust) and the
        truncation corrected (normal consistency), RMS over sqrt 2; degrees of freedom: the
        differences kept, less one. ``(None, 0)`` with fewer than 3 differences.
        """
        if len(self.steps) < 3:
            return None, 0
        runs: dict[tuple[int, str | None], list[float]] = {}
        for key, step in zip(self.step_runs, self.steps):
            runs.setdefault(key, []).append(step)
        parts: list[np.ndarray] = []
        for steps in runs.values():
            v = np.asarray(steps, dtype=float)
            m = len(v)
            if m >= 2:
                v = (v - v.mean()) * math.sqrt(m / (m - 1.0 / m))
            parts.append(v)
        # degrees of freedom as the night's-median version counted them (differences - 1): the run
        # means cost one each in principle, but successive differences of one run already share
        # frames (correlation -1/2), which neither count honours; subtracting only the run means
        # made the grid's 600 s nights ask later (inside the zone 47 -> 42 %, seeds 0-1)
        return _trimmed_step_scatter(np.concatenate(parts))

    def profile_jitter(self) -> tuple[float | None, int]:
        """(frame-to-frame scatter of ln HFD/FWHM over the night, its degrees of freedom).

        Why: the drift fit weighs the profile by a scatter measured on the residuals of its own
        few frames since the autofocus (3 degrees of freedom on 5 frames), which can read far
        below the truth; a profile fall that is chance then reads as a 7 sigma defocus (the
        policy benchmark's GalSim grid, 10 % jitter, 600 s, cloud, seed 1, frame 13: HFD/FWHM
        1.17 -> 1.12 over three frames, about 2.6 times its real frame scatter of 0.019).
        Successive differences within a filter and segment, the largest 10 % dropped and the
        truncation corrected as in :meth:`jitter`, RMS over sqrt 2. ``(None, 0)`` with fewer
        than 3 differences.
        """
        if len(self.profile_steps) < 3:
            return None, 0
        return _trimmed_step_scatter(np.asarray(self.profile_steps, dtype=float))


def _trimmed_step_scatter(steps: np.ndarray) -> tuple[float, int]:
    """(scatter of one frame, dof) from successive differences: the largest 10 % of |d| dropped
    (a focus step, a gust), the truncation undone (normal consistency), RMS over sqrt 2."""
    d = np.sort(np.abs(steps))
    keep = max(2, int(math.ceil(0.9 * len(d))))
    p = keep / len(d)
    d = d[:keep]
    # the RMS of the kept |d| underestimates a normal scatter (90 % kept: by 21 %): undo that
    z = NormalDist().inv_cdf((1.0 + p) / 2.0) if p < 1.0 else math.inf
    c2 = 1.0 - 2.0 * z * NormalDist().pdf(z) / p if math.isfinite(z) else 1.0
    return math.sqrt(float(np.mean(d ** 2)) / 2.0 / max(c2, 0.1)), len(d) - 1


@dataclass(frozen=True)
class Candidate:
    """One independent in-focus estimate for the frame: ln HFR (px) and its log scatter."""

    source: str
    log_hfr: float
    sigma: float


@dataclass(frozen=True)
class Reference:
    """The combined independent in-focus HFR for a frame (px), its log scatter, its sources."""

    hfr_px: float
    sigma: float
    sources: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.hfr_px:.2f} px ± {100 * self.sigma:.0f} % from {', '.join(self.sources)}"


def reference_for(filter_name: str | None, time_s: float, airmass: float | None, night: NightMemory, *,
                  jitter: float, wander_pct_per_h: float, cross_filter_pct: float, baseline_frames: int,
                  rig: Any = None, seeing_arcsec: float | None = None, rig_seeing_pct: float = 20.0,
                  hfr_kind: str | None = None) -> Reference | None:
    """The independent in-focus HFR of ``filter_name`` at ``time_s`` (``None`` when there is none).

    Candidates (each from frames other than the ones being judged):

    * the night's best of this filter: the in-focus levels right after earlier autofocus runs
      (not the current one); with 3 runs or more those not 2 sigma above their median, pooled
      (a failed run is left out, one lucky run does not set the bar), else the lower one;
    * every other filter's latest trusted median, scaled to this filter's wavelength;
    * the rig with a seeing figure (the frame's measured seeing, else the rig's
      ``seeing_arcsec`` at ``rig_seeing_pct`` uncertainty; true half-flux radius, so
      NINA-style HFR is compared with it at twice that uncertainty).

    Each scatter: ``jitter`` over sqrt of the frames (x 1.25, a median) ⊕ the seeing wander
    since then ⊕ ``cross_filter_pct`` for another filter. Combined by inverse variance.
    """
    am = AIRMASS_EXPONENT * math.log(airmass) if airmass and airmass > 0 else 0.0
    wl_to = optics.wavelength_for_filter(filter_name, getattr(rig, "wavelength_nm", 550.0) if rig else 550.0)
    groups: dict[tuple[int, str | None], list[InFocusSample]] = {}
    for s in night.trusted:
        groups.setdefault((s.segment, s.filter_name), []).append(s)
    cands: list[Candidate] = []
    own: list[Candidate] = []
    latest_other: dict[str | None, tuple[float, Candidate]] = {}
    aperture = getattr(rig, "effective_aperture_mm", None) if rig else None
    scale = getattr(rig, "plate_scale_arcsec_px", None) if rig else None
    for (seg, filt), ss in groups.items():
        ss = ss[:baseline_frames]
        med = float(np.median([s.log_hfr for s in ss]))
        t_mid = float(np.median([s.time_s for s in ss]))
        hours = abs(time_s - t_mid) / 3600.0
        base_var = (MEDIAN_SE_FACTOR * jitter) ** 2 / len(ss) + (wander_pct_per_h / 100.0 * hours) ** 2
        if filt == filter_name:
            if seg == night.segment:
                continue                                          # the baseline under judgement
            own.append(Candidate(f"night's best {filter_name or '-'}", med + am, math.sqrt(base_var)))
        else:
            wl_from = optics.wavelength_for_filter(filt, getattr(rig, "wavelength_nm", 550.0) if rig else 550.0)
            scaled = math.log(scale_hfr_to_wavelength(math.exp(med), wl_from, wl_to, aperture_mm=aperture,
                                                      plate_scale_arcsec_px=scale))
            c = Candidate(f"{filt or '-'} scaled {wl_from:.0f}→{wl_to:.0f} nm", scaled + am,
                          math.sqrt(base_var + (cross_filter_pct / 100.0) ** 2))
            if filt not in latest_other or t_mid > latest_other[filt][0]:
                latest_other[filt] = (t_mid, c)
    if own:
        # the night's best: with 3 runs or more, every run not 2 sigma above their median (a failed
        # run's higher level is left out), pooled, so one lucky run does not set the bar (the
        # lowest of many noisy levels is biased low); with 1-2 runs, the lower one
        if len(own) >= 3:
            mid = float(np.median([c.log_hfr for c in own]))
            keep = [c for c in own if c.log_hfr - mid <= 2.0 * c.sigma]
        else:
            keep = [min(own, key=lambda c: c.log_hfr)]
        w = np.array([1.0 / c.sigma ** 2 for c in keep])
        v = float(np.sum(w * np.array([c.log_hfr for c in keep])) / np.sum(w))
        cands.append(Candidate(f"night's best {filter_name or '-'} ({len(keep)} of {len(own)} autofocus runs)", v,
                               max(math.sqrt(1.0 / float(np.sum(w))), min(c.sigma for c in keep))))
    cands += [c for _, c in latest_other.values()]
    seeing, pct = (seeing_arcsec, rig_seeing_pct / 2.0) if seeing_arcsec else \
        (getattr(rig, "seeing_arcsec", None) if rig else None, rig_seeing_pct)
    if seeing and aperture and scale:
        if hfr_kind == "nina":
            pct *= 2.0
        h = infocus_hfr_px(float(seeing), float(aperture), wl_to, float(scale),
                           float(getattr(rig, "obstruction", 0.0) or 0.0) if rig else 0.0)
        cands.append(Candidate(f"rig + seeing {seeing:g}\"", math.log(h) + am, pct / 100.0))
    if not cands:
        return None
    w = np.array([1.0 / c.sigma ** 2 for c in cands])
    v = np.array([c.log_hfr for c in cands])
    mean = float(np.sum(w * v) / np.sum(w))
    return Reference(math.exp(mean), math.sqrt(1.0 / float(np.sum(w))), tuple(c.source for c in cands))


def combined_jitter(segment_jitter: float, segment_dof: float, night: NightMemory | None, *,
                    floor: float, night_floor: float, night_min_dof: int, prior_dof: float) -> tuple[float, float]:
    """(jitter, dof) for the significance tests, with the scatter measured over the whole night.

    ``segment_jitter`` is the scatter measured since the autofocus (unfloored, 0 when there are
    too few frames). When the night's scatter rests on ``night_min_dof`` differences or more,
    it is trusted down to ``night_floor`` (its Student's t has the night's degrees of freedom);
    the larger of the two scatters counts (seeing can get worse: calm hours never vouch for a
    rough one). Otherwise the segment's, never below ``floor``, with its own degrees of freedom.
    """
    nj, ndof = night.jitter() if night is not None else (None, 0)
    if nj is not None and ndof >= night_min_dof:
        return max(night_floor, nj, segment_jitter), ndof + prior_dof
    return max(floor, segment_jitter), segment_dof
