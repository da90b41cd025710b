"""The story of a night: :func:`night` gives a :class:`NightStory`.

Named ``nightstory`` and not ``night`` so that ``focuswatch.diagnose.night`` stays the
function. :func:`night` diagnoses every frame (:func:`focuswatch.diagnose.verdict.frame`, or
takes the diagnoses it is given), orders the frames by DATE-OBS and tells the behaviours
apart across them: focus drift (defocus growing between focuser moves), seeing jitter,
cloud periods (star count or flux falling), a lasting dew halo and the frames to reject,
then names the single most likely problem.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

import numpy as np
from astropy.stats import mad_std

from focuswatch import optics
from focuswatch.diagnose.config import DiagnoseConfig
from focuswatch.diagnose.figures import _r, fmt_pct
from focuswatch.diagnose.labels import ADVICE, OPTICAL_LABELS, UNKNOWN
from focuswatch.diagnose.verdict import Diagnosis, frame
from focuswatch.model.numerics import pooled_line_fit
from focuswatch.model.records import Record
from focuswatch.optics import Rig


@dataclass(frozen=True)
class NightFrame(Record):
    """One frame's line in the night's story (units in the names)."""

    file: str | None
    elapsed_h: float | None
    temp_c: float | None
    focuser_pos: int | None
    label: str
    n_stars: int
    hfr_px: float | None
    seeing_fwhm_px: float | None
    defocus_um: float | None
    star_flux_adu: float | None
    cloud: bool = False
    reject: str | None = None
    #: The seeing witness the frame was judged against: ``"monitor"`` or ``"infocus"`` and its
    #: seeing FWHM (arcsec); ``None`` without one (the profile shape alone).
    witness_source: str | None = None
    witness_seeing_arcsec: float | None = None


@dataclass(frozen=True)
class NightStory:
    """What several frames of one night say (``diagnose FOLDER --json``).

    ``drift_um_per_h`` and ``drift_um_per_c`` are the growth of the (unsigned) defocus
    between refocus events, per hour and per degree of focuser temperature change;
    ``seeing_scatter_pct`` the frame-to-frame scatter of the seeing FWHM (the seeing part
    the profile separates from defocus), robust, in % of its median. ``cloud_periods``
    are ``[first_file, last_file, n_frames, start_h, end_h]``; ``dew_onset_file`` the first frame of a
    lasting halo. ``label`` is the single most likely problem (a frame label, or
    ``clouds``). Each frame's line says which seeing witness judged it (``witness_source``,
    ``witness_seeing_arcsec``; :mod:`focuswatch.diagnose.witness`).
    """

    n_frames: int
    n_diagnosed: int
    label: str
    confidence: float
    summary: str
    duration_h: float | None = None
    drift_um_per_h: float | None = None
    drift_um_per_c: float | None = None
    drift_cfz_per_h: float | None = None
    seeing_fwhm_arcsec: float | None = None
    seeing_scatter_pct: float | None = None
    hfr_trend_pct_per_h: float | None = None
    n_refocus: int = 0
    cloud_periods: tuple[tuple[Any, ...], ...] = ()
    dew_onset_file: str | None = None
    dew_onset_h: float | None = None
    label_counts: Mapping[str, int] = field(default_factory=dict)
    reject: tuple[tuple[str | None, str], ...] = ()
    advice: tuple[str, ...] = ()
    frames: tuple[NightFrame, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cloud_periods"] = [list(c) for c in self.cloud_periods]
        d["reject"] = [{"file": f, "reason": r} for f, r in self.reject]
        d["label_counts"] = dict(self.label_counts)
        d["advice"] = list(self.advice)
        d["frames"] = [f.to_dict() for f in self.frames]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NightStory":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["cloud_periods"] = tuple(tuple(c) for c in d.get("cloud_periods", ()))
        kw["reject"] = tuple((r["file"], r["reason"]) for r in d.get("reject", ()))
        kw["advice"] = tuple(d.get("advice", ()))
        kw["frames"] = tuple(NightFrame.from_dict(f) for f in d.get("frames", ()))
        kw["label_counts"] = dict(d.get("label_counts", {}))
        return cls(**kw)


def _pooled_slope(groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """Least-squares slope shared by several groups, each with its own intercept."""
    return pooled_line_fit(groups)[0]


#: The size fit's growth table (:func:`_size_drift_fit`): it reaches a defocus whose disk alone is
#: ``_GROWTH_TABLE_DISK_PER_HFR`` times ``_GROWTH_TABLE_HFR_SPAN`` x the night's largest HFR (far past
#: any frame the fit sees), in ``_GROWTH_TABLE_POINTS`` steps spaced as the square (dense near focus,
#: where the growth bends). Numerical method, not tuned on nights: 4x/12x span, 80 or 320 points
#: move the 90 um/h GalSim night of tests/test_nightstory.py by 1 um/h at most (81.7 -> 80.7-81.5).
_GROWTH_TABLE_HFR_SPAN = 3.0
_GROWTH_TABLE_DISK_PER_HFR = 8.0
_GROWTH_TABLE_POINTS = 160
#: The in-focus HFR of a segment may fit down to this fraction of its smallest star (a bound that
#: keeps ``h0`` positive and the fit off a zero-size star; the fit lands near the smallest).
_H0_LOWER_FRACTION = 0.3
#: Frames beyond the parameters (a rate, and h0, t0 per segment) the size fit needs; fewer and the
#: night keeps the line through the per-frame figures.
_SIZE_FIT_SPARE_FRAMES = 2
#: Starting points: the rate growing each segment's smallest star to its largest over its span, and
#: fractions of it; in focus at the segment's start (after an autofocus), midway, or at its end.
_RATE_START_FRACTIONS = (1.0, 0.5)
_FOCUS_TIME_STARTS = (0.0, 0.5, 1.0)


def _size_drift_fit(segments: Sequence[tuple[np.ndarray, np.ndarray]], um_per_blur_px: float, eps: float,
                    calibrated: tuple[float, float, float] | None = None) -> tuple[float | None, float | None]:
    """The drift rate (um/h of defocus) fitted to the star sizes themselves, and its standard
    error: each segment's HFRs ``h(t) = G(rate |t - t0|; h0)`` (the growth calibrated on physical
    optics, :func:`focuswatch.optics.hfr_px_for_defocus`, when ``calibrated`` gives f-ratio, pixel and
    wavelength; else the seeing x annulus one, :func:`focuswatch.optics.hfr_px_for_blur`), with its own in-focus HFR ``h0`` and the time
    ``t0`` within the segment when it was in focus, one rate for the night. ``segments``: (hours
    since the segment's first frame, HFR px). The same premise as the per-frame figures (the
    segment's best frames are in focus: an autofocus started it), without their bias.

    Why not a line through per-frame defocus figures: near focus the HFR grows with the square of
    the defocus, so one frame's size noise maps to a defocus that is never below zero and large for
    a small excess (2 % larger reads 0.5 CFZ on a 200 mm f/5 in 2.5"): the early frames of a
    drift read high, the slope low (-15 to -24 % on GalSim drift nights, tests/test_nightstory.py).
    In HFR the noise is symmetric and the fit has no such floor. With ``t0`` left free the rate
    and the focus time trade off against each other; a free defocus at the segment's start (no
    in-focus frame) read -32 to -57 %. ``(None, None)`` without a segment of 3 frames or a fit."""
    from scipy.optimize import least_squares

    segs = [(t, h) for t, h in segments if len(t) >= 3 and float(np.ptp(t)) > 0]
    # a rate, and an in-focus size and time per segment: at least 2 frames more than that
    if (not segs or not um_per_blur_px > 0
            or sum(len(t) for t, _ in segs) < 1 + 2 * len(segs) + _SIZE_FIT_SPARE_FRAMES):
        return None, None

    def growth_um(h_ref: float) -> tuple[np.ndarray, np.ndarray]:
        """HFR / in-focus HFR against defocus (um) for a star of in-focus HFR ``h_ref``, tabulated
        once per segment (the shape barely changes within a fit's range of ``h0``): the fit then
        costs interpolations, not a calibration lookup per frame and step."""
        if calibrated is not None:
            n_ratio, pix_um, lam_nm = calibrated

            def one(d: float) -> float:
                return optics.hfr_px_for_defocus(d, h_ref, n_ratio, pix_um, eps, wavelength_nm=lam_nm)
        else:
            def one(d: float) -> float:
                return optics.hfr_px_for_blur(d / um_per_blur_px, h_ref, eps)
        h_top = _GROWTH_TABLE_HFR_SPAN * float(np.max(np.concatenate([h for _, h in segs])))
        d_top = _GROWTH_TABLE_DISK_PER_HFR * um_per_blur_px * h_top
        d = d_top * np.linspace(0.0, 1.0, _GROWTH_TABLE_POINTS) ** 2
        return d, np.array([one(float(x)) for x in d]) / h_ref

    tables = [growth_um(float(np.min(h))) for _, h in segs]

    def model(params: np.ndarray) -> np.ndarray:
        rate, out = params[0], []
        for k, (t, _) in enumerate(segs):
            h0, t0 = params[1 + 2 * k], params[2 + 2 * k]
            d, ratio = tables[k]
            out.append(h0 * np.interp(rate * np.abs(t - t0), d, ratio))
        return np.concatenate(out)

    h_all = np.concatenate([h for _, h in segs])
    lo = np.array([0.0] + [v for _, h in segs for v in (_H0_LOWER_FRACTION * float(np.min(h)), 0.0)])
    hi = np.array([np.inf] + [v for t, h in segs for v in (float(np.max(h)), float(t[-1]))])
    # starts: the rate that grows the segment's smallest star to its largest over its span (the
    # growth is flat at zero defocus, so a start near 0 never leaves it), and half of it
    growth = max(optics.defocus_blur_px_from_hfr(float(np.max(h)), float(np.min(h)), eps) * um_per_blur_px
                 / float(np.ptp(t)) for t, h in segs)
    best = None
    for r0, where in ((f * growth, w) for f in _RATE_START_FRACTIONS for w in _FOCUS_TIME_STARTS):
        # in focus at the segment's start (after an autofocus), midway, or at its end
        x0 = np.array([max(r0, 1e-3)] + [v for t, h in segs for v in (float(np.min(h)), where * float(t[-1]))])
        x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
        try:
            fit = least_squares(lambda x: model(x) - h_all, x0, bounds=(lo, hi), x_scale="jac")
        except (ValueError, np.linalg.LinAlgError):
            continue
        if best is None or fit.cost < best.cost:
            best = fit
    if best is None:
        return None, None
    rate = float(best.x[0])
    dof = len(h_all) - len(best.x)
    cov = np.linalg.pinv(best.jac.T @ best.jac) * (2.0 * best.cost / dof)
    return rate, (float(np.sqrt(cov[0, 0])) if cov[0, 0] > 0 else None)


def _seeing_aware_count_residual(nall: np.ndarray, hfr: np.ndarray, config: DiagnoseConfig) -> np.ndarray | None:
    """log star count minus what the frame's star size predicts, for the night's clear frames.

    In a real field the count of stars above the detection limit is a power law of their
    peak brightness, so it falls with the star size (N ~ FWHM^-a): a frame in 4" seeing shows
    half the stars of a 2" frame under the same clear sky. Clouds dim every star whatever the
    seeing. The night's own log N against log HFR (slope within ``night_count_slope_band``: size
    never adds stars) is fitted, the frames falling short of it by more than ``cloud_fraction``
    are left out and the fit repeated, so the clouds do not pull the line down. ``None`` when
    fewer than ``night_count_min_frames`` frames have stars and a size, or their sizes do not
    spread (the plain count then decides). The constants: :class:`DiagnoseConfig` ``night_count_*``.
    """
    c = config
    ok = (nall > 0) & np.isfinite(hfr) & (hfr > 0)
    if ok.sum() < c.night_count_min_frames:
        return None
    x, y = np.log(hfr), np.log(np.maximum(nall, 1.0))
    if float(np.ptp(x[ok])) < c.night_count_min_log_hfr_spread:
        return None
    keep = ok.copy()
    resid = np.zeros_like(x)
    lo, hi = c.night_count_slope_band
    for _ in range(c.night_count_passes):
        if keep.sum() < c.night_count_min_clear_frames:
            return None
        xm, ym = x[keep].mean(), y[keep].mean()
        b = float(np.clip(pooled_line_fit([(x[keep], y[keep])])[0] or 0.0, lo, hi))
        a = ym - b * xm
        resid = y - (a + b * x)
        top = float(np.percentile(resid[keep], c.night_clear_percentile))
        new = ok & (resid >= top + np.log(c.cloud_fraction))
        if np.array_equal(new, keep):
            break
        keep = new
    top = float(np.percentile(resid[keep], c.night_clear_percentile))
    out = resid - top
    out[~ok] = np.nan
    return out


def _seeing_fwhm_px_of(hfr0_px: float, rig: Rig, scale: float | None, eps: float) -> float | None:
    """The seeing FWHM (px) whose in-focus star has the true HFR ``hfr0_px`` (the calibrated
    inverse, :func:`focuswatch.calibration.seeing_for_infocus_hfr_arcsec`); without an
    aperture, the Kolmogorov HFR/FWHM ratio alone. ``scale``: the night's plate scale (arcsec/px)."""
    from focuswatch import calibration

    ap = rig.effective_aperture_mm
    if not (hfr0_px and hfr0_px > 0):
        return None
    if scale and ap and rig.wavelength_nm:
        return calibration.seeing_for_infocus_hfr_arcsec(hfr0_px, ap, rig.wavelength_nm, scale, eps) / scale
    return hfr0_px / calibration.KOLMOGOROV_HLR_PER_FWHM


def _separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angle on the sky between two pointings (degrees; haversine, good at any distance)."""
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return float(np.degrees(2 * np.arcsin(np.sqrt(min(1.0, h)))))


def _pointing_fields(items: Sequence[Any], scale: float | None, config: DiagnoseConfig) -> list[int | None]:
    """Each frame's field by where the telescope pointed (``FrameMeta.ra_deg``/``dec_deg``): a frame
    joins the first field whose first frame lies within ``night_field_change_fov_fraction`` of the
    field of view (the frame's shorter side, from its size and plate scale; else
    ``night_field_change_deg``), else starts a new one. ``None`` for a frame without a pointing.
    Frames back on a field seen earlier (A, B, A) join it again."""
    firsts: list[tuple[float, float]] = []
    out: list[int | None] = []
    for s in items:
        meta = getattr(s, "meta", None)
        ra, dec = getattr(meta, "ra_deg", None), getattr(meta, "dec_deg", None)
        if ra is None or dec is None:
            out.append(None)
            continue
        side_px = min((v for v in (getattr(s, "width_px", None), getattr(s, "height_px", None)) if v), default=None)
        own = getattr(s, "plate_scale_arcsec_px", None) or scale
        limit = (config.night_field_change_fov_fraction * side_px * own / 3600.0 if (side_px and own)
                 else config.night_field_change_deg)
        k = next((j for j, (r0, d0) in enumerate(firsts) if _separation_deg(r0, d0, ra, dec) <= limit), None)
        if k is None:
            firsts.append((ra, dec))
            k = len(firsts) - 1
        out.append(k)
    return out


def _count_fields(counts: np.ndarray, ratio: float, m: int) -> list[int]:
    """Fields of frames with neither OBJECT nor a pointing, from their star counts in time order.

    A boundary where the median count of the ``m`` frames after it differs from the median of
    the ``m`` frames before it by more than ``ratio`` (either way; at least 2 frames a side; of
    boundaries closer than ``m``, the one where the means change most) splits the frames into stretches. Clouds
    only take stars away and pass: stretches all lower than the stretches either side of them,
    which match each other within ``ratio``, are a cloud inside one field (one level or several: a
    cloud thickening, or two dips whose clear gap is shorter than ``m``), and all are one field. Any other
    step (a new level that stays, or comes back only after a richer stretch) is a field change:
    the frames either side are never compared for clouds. A cloud bank that lasts to the end of
    the run (or was there from its start) therefore reads as a field change and is not called
    clouds: too few stars to compare is better than clouds called across two fields."""
    n = len(counts)
    if n < 4 or not ratio > 1.0:
        return [0] * n
    lc = np.log(np.maximum(counts, 1.0))
    step_med, step_mean = np.zeros(n), np.zeros(n)
    for j in range(2, n - 1):
        left, right = lc[max(0, j - m):j], lc[j:j + m]
        if len(left) >= 2 and len(right) >= 2:
            step_med[j] = abs(float(np.median(right)) - float(np.median(left)))
            step_mean[j] = abs(float(right.mean()) - float(left.mean()))
    # the medians find a lasting step (one odd frame moves neither); the means, sharpest at the
    # step itself, place it: the strongest first, none within m frames of one taken
    cut: list[int] = []
    for j in sorted(np.nonzero(step_med > np.log(ratio))[0], key=lambda j: -step_mean[j]):
        if all(abs(int(j) - c) >= m for c in cut):
            cut.append(int(j))
    bounds = [0, *sorted(cut), n]
    level = [float(np.median(lc[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]
    field = list(range(len(level)))
    for i in range(len(level) - 2):
        # the stretches after i up to one that matches it, all lower than both: one cloud episode
        # over i's field, however many levels it passed through (thin, then thick; two dips with a
        # short clear gap between them, too short to be a stretch of its own)
        for j in range(i + 2, len(level)):
            inner = max(level[i + 1:j])
            if inner >= level[i]:
                break  # a stretch as rich as i's in between: what follows is not a cloud over i's field
            if inner < level[j] and abs(level[i] - level[j]) <= np.log(ratio):
                field[i + 1:j + 1] = [field[i]] * (j - i)
                break
    out = [0] * n
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        out[a:b] = [field[k]] * (b - a)
    return out


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - 1))
            start = None
    return out


def _cloud_flags(nall: np.ndarray, nsat: np.ndarray, flux: np.ndarray, hfr: np.ndarray,
                 config: DiagnoseConfig) -> np.ndarray:
    """Frames of one field and filter under clouds: star count or flux well below the group's
    typical (upper) level. Saturated stars are stars the clouds let through. Clouds only dim: a
    frame holding more stars, or more saturated ones, than the group's median is not under clouds,
    whatever its median flux (in good seeing fainter stars are found and more of the bright ones
    saturate, so the median flux of the measured stars falls while the sky is as clear as ever)."""
    n = len(nall)
    if not n:
        return np.zeros(0, bool)
    cloud_fraction, clear_pct = config.cloud_fraction, config.night_clear_percentile
    ref_n = float(np.percentile(nall, clear_pct))
    ref_f = float(np.nanpercentile(flux, clear_pct)) if np.isfinite(flux).any() else np.nan
    more = (nall > np.median(nall)) | (nsat > np.median(nsat))
    few = nall < cloud_fraction * ref_n
    # ... and the count the frame's seeing leaves: in poor seeing the faint stars drop below the
    # detection limit as under a cloud, so the count is judged against the count-size line
    # (cloud_fraction 0: no frame is called clouds, and the line is not fitted: its cut is log 0)
    count_resid = _seeing_aware_count_residual(nall, hfr, config) if cloud_fraction > 0 else None
    if count_resid is not None:
        # called clouds: short of the level with at most night_count_size_share of that shortfall
        # (in magnitudes) explained by the frame's size, or short of what its size predicts
        known = np.isfinite(count_resid)
        r = np.where(known, count_resid, 0.0)
        few = np.where(known, (few & (r < config.night_count_size_share * np.log(cloud_fraction)))
                       | (r < np.log(cloud_fraction)), few)
        more = more | (known & (count_resid > np.nanmedian(count_resid)))
    return few | (np.isfinite(flux) & (flux < cloud_fraction * ref_f) & ~more)


def night(stats_list: Sequence[Any], rig: Rig | None = None, *, diagnoses: Sequence[Diagnosis] | None = None,
          config: DiagnoseConfig = DiagnoseConfig(), witnesses: Sequence[Any] | None = None) -> NightStory:
    """The story of a night from its frames' measurements.

    Parameters
    ----------
    stats_list : sequence of focuswatch.stars.FrameStats
        The frames, any order (sorted here by DATE-OBS when every frame has one).
    rig : Rig, optional
        For defocus in um and CFZ units.
    diagnoses : sequence of Diagnosis, optional
        Per-frame diagnoses in the same order as ``stats_list`` (computed here when
        omitted; pass them when you diagnosed with the pixels at hand).
    config : DiagnoseConfig
    witnesses : sequence of SeeingWitness or None, optional
        The night's context (:func:`focuswatch.diagnose.night_witnesses` with ``dew_reference``),
        same order as ``stats_list``, when the caller already built it and judged ``diagnoses``
        with it (:func:`focuswatch.diagnose.rejudge`): ``diagnose FOLDER`` builds it once for its
        frame lines and the story. It is then neither built nor applied again here (without
        ``diagnoses``, the frames diagnosed here are judged with it).

    Notes
    -----
    Each frame is judged against the night's seeing witness (:func:`focuswatch.diagnose.night_witnesses`:
    a seeing monitor's header value, else the first frames of its filter at its focuser
    position), so the given ``diagnoses`` may come back as ``focus_miss`` where the star's size
    shows the defocus the profile hides (:func:`focuswatch.diagnose.rejudge`).
    Focus drift and seeing are told apart by behaviour: drift is a slow monotonic growth
    of the defocus between refocus events (a focuser position change starts a new
    segment), seeing is jitter without a trend. Clouds are frames whose star count or
    star flux falls below ``config.cloud_fraction`` of the night's typical level; their
    star sizes are not used for the drift.
    """
    from focuswatch.diagnose.witness import night_witnesses, rejudge
    from focuswatch.optics import rig_with_header

    rig = rig or Rig()
    items = list(stats_list)
    diags = list(diagnoses) if diagnoses is not None else [frame(s, rig, config=config) for s in items]
    if len(diags) != len(items):
        raise ValueError("diagnoses must match stats_list one to one")
    # the night's own seeing witness (the first frames at each focus): the star size then judges
    # focus too; a frame already judged with it is judged the same again
    judged = witnesses is not None and diagnoses is not None  # the caller's context, already applied
    if witnesses is None:
        witnesses = night_witnesses(items, rig, config, dew_reference=True)  # and the night's dew reference
    elif len(witnesses) != len(items):
        raise ValueError("witnesses must match stats_list one to one")
    if not judged:
        diags = [rejudge(d, s, rig_with_header(rig, s.meta) if getattr(s, "meta", None) is not None else rig, w,
                         config=config) for d, s, w in zip(diags, items, witnesses)]
    ts = [getattr(getattr(s, "meta", None), "timestamp", None) for s in items]
    if items and all(t is not None for t in ts):
        order = sorted(range(len(items)), key=lambda i: ts[i])
        items = [items[i] for i in order]
        diags = [diags[i] for i in order]
        ts = [ts[i] for i in order]
    n = len(items)
    if n == 0:
        return NightStory(0, 0, UNKNOWN, 0.0, "no frames")
    t0 = ts[0] if ts and ts[0] is not None else None
    el = np.array([((t - t0) / 3600.0) if (t is not None and t0 is not None) else np.nan for t in ts])
    temp = np.array([getattr(s.meta, "temperature_c", None) if getattr(s, "meta", None) else None for s in items],
                    dtype=float)
    pos = [getattr(s.meta, "focuser_pos", None) if getattr(s, "meta", None) else None for s in items]
    nst = np.array([float(s.n_stars or 0) for s in items])
    flux = np.array([float(s.star_flux_adu) if s.star_flux_adu else np.nan for s in items])
    hfr = np.array([float(d.evidence.hfr_px) if d.evidence.hfr_px else np.nan for d in diags])
    seeing = np.array([float(d.evidence.seeing_fwhm_px) if d.evidence.seeing_fwhm_px else np.nan for d in diags])

    # clouds (:func:`_cloud_flags`), each field and filter against its own level: a narrowband
    # filter passes a fraction of a broadband one's starlight and another target has another star
    # count, neither of which is a cloud
    nsat = np.array([float((getattr(s, "n_rejected", None) or {}).get("saturated", 0) or 0) for s in items])
    nall = nst + nsat
    # a field is its OBJECT and its pointing; frames with neither are split at a lasting jump of
    # their star count (:func:`_count_fields`): another field is never called clouds
    # the night's plate scale: the first frame's own, else the rig's (also the seeing's arcsec below)
    scale = next((s.plate_scale_arcsec_px for s in items if getattr(s, "plate_scale_arcsec_px", None)),
                 None) or rig.plate_scale_arcsec_px
    pointing = _pointing_fields(items, scale, config)
    keys = [(getattr(getattr(s, "meta", None), "object_name", None), pointing[i],
             getattr(getattr(s, "meta", None), "filter_name", None)) for i, s in enumerate(items)]
    bare: dict[Any, list[int]] = {}
    for i, (obj, where, filt) in enumerate(keys):
        if obj is None and where is None:
            bare.setdefault(filt, []).append(i)
    for filt, idx in bare.items():
        by_count = _count_fields(nall[idx], 1.0 / config.cloud_fraction if config.cloud_fraction > 0 else 0.0,
                                 int(config.night_field_step_frames))
        for i, f in zip(idx, by_count):
            keys[i] = (None, ("count", f), filt)
    groups: dict[tuple[Any, Any, Any], list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    cloud = np.zeros(n, bool)
    for idx in groups.values():
        sel = np.array(idx)
        cloud[sel] = _cloud_flags(nall[sel], nsat[sel], flux[sel], hfr[sel], config)
    cloud_runs = _runs(cloud.tolist())
    files = [s.file for s in items]
    cloud_periods = tuple((files[a], files[b], b - a + 1,
                           _r(float(el[a]), 3) if np.isfinite(el[a]) else None,
                           _r(float(el[b]), 3) if np.isfinite(el[b]) else None) for a, b in cloud_runs)

    # dew: a halo that appears and stays
    dew_flag = [d.label == "dew" or any(f.label == "dew" for f in d.findings) for d in diags]
    dew_onset = None
    for i in range(n):
        rest = dew_flag[i:]
        if dew_flag[i] and sum(rest) >= 3 and sum(rest) >= 0.7 * len(rest):
            dew_onset = i
            break

    # refocus segments: the focuser moved
    seg = np.zeros(n, int)
    for i in range(1, n):
        seg[i] = seg[i - 1] + (1 if (pos[i] is not None and pos[i - 1] is not None and pos[i] != pos[i - 1]) else 0)
    n_refocus = int(seg[-1])

    # defocus per frame. A frame whose profile shows the defocus (a focus miss) gives the
    # profile's figure. Any other frame's profile only says "within what the seeing hides":
    # its own defocus figure is then noise of the seeing fit (0-2 CFZ on in-focus GalSim
    # frames in 2-4" seeing) and drew a drift from the seeing. Its defocus comes from the
    # star's growth over the segment's best frames (optics' seeing x annulus model) - unless
    # the segment shows the seeing moved: a growth needing a blur of
    # ``night_size_refute_blur_ratio`` seeing FWHMs, which the profile would have seen, with
    # none in the profile. The size then says nothing about focus in that segment and its
    # in-focus frames count as in focus (the profile's own lower bound, 0).
    usable = ~cloud & np.isfinite(hfr) & np.array([d.label not in (UNKNOWN, "trailing") for d in diags])
    if dew_onset is not None:
        usable[dew_onset:] = False
    defocus = np.full(n, np.nan)
    nratio, pix = rig.f_ratio, rig.effective_pixel_um
    eps = rig.obstruction or 0.0
    size_read: list[int] = []  # frames of segments whose drift is read from the stars' growth
    for k in np.unique(seg):
        m = (seg == k) & usable
        if m.sum() < 1:
            continue
        h0 = (float(np.min(hfr[m])) if m.sum() < config.night_infocus_percentile_min_frames
              else float(np.percentile(hfr[m], config.night_infocus_hfr_percentile)))
        see0_px = _seeing_fwhm_px_of(h0, rig, scale, eps)
        idx = np.nonzero(m)[0]
        blur = {i: optics.defocus_blur_px_from_hfr(hfr[i], h0, eps) for i in idx}
        excess = {i for i in idx if diags[i].label != "focus_miss" and see0_px
                  and blur[i] >= config.night_size_refute_blur_ratio * see0_px}
        # the seeing moved - unless the only such frames are lone spikes between two frames of the
        # segment that are not (the seeing of one frame, or the mount shaken round by a gust): those
        # frames' defocus is unknown, and the rest of the segment is still read from its growth
        pos_in = {i: j for j, i in enumerate(idx)}
        lone = {i for i in excess if 0 < pos_in[i] < len(idx) - 1
                and idx[pos_in[i] - 1] not in excess and idx[pos_in[i] + 1] not in excess}
        refuted = bool(excess - lone)
        if not refuted:
            size_read.extend(i for i in idx if i not in excess)
        for i in idx:
            if diags[i].label == "focus_miss" and diags[i].defocus_um is not None:
                defocus[i] = diags[i].defocus_um
            elif refuted:
                defocus[i] = 0.0
            elif i in excess:
                continue  # unknown (NaN): left out of the drift
            else:
                defocus[i] = optics.defocus_um_from_blur(blur[i] * pix, nratio) if (nratio and pix) else blur[i]
    groups_t = [(el[(seg == k) & usable], defocus[(seg == k) & usable]) for k in np.unique(seg)]
    groups_t = [(a[np.isfinite(a) & np.isfinite(b)], b[np.isfinite(a) & np.isfinite(b)]) for a, b in groups_t]
    drift_h, drift_h_err = pooled_line_fit(groups_t)
    # the segments read from the stars' growth: the rate fitted to their sizes, not to per-frame
    # defocus figures (:func:`_size_drift_fit`: those are biased high near focus); the segments
    # whose seeing moved say nothing about focus from their size and are left to the line above
    if size_read and nratio and pix and np.isfinite(el[size_read]).all():
        sr = np.zeros(n, bool)
        sr[size_read] = True
        fit_segs = []
        for k in np.unique(seg[sr]):
            m = sr & (seg == k)
            fit_segs.append((el[m] - el[m][0], hfr[m]))
        if any(len(t) >= 3 for t, _ in fit_segs):
            rate, rate_err = _size_drift_fit(fit_segs, nratio * pix, eps,
                                             (nratio, pix, rig.wavelength_nm) if rig.wavelength_nm else None)
            if rate is not None:
                drift_h, drift_h_err = rate, rate_err
    drift_c = None
    if np.isfinite(temp).sum() >= 3:
        groups_c = []
        for k in np.unique(seg):
            m = (seg == k) & usable & np.isfinite(temp) & np.isfinite(defocus)
            if m.sum() >= 3:
                dt = np.abs(temp[m] - temp[m][0])
                groups_c.append((dt, defocus[m]))
        drift_c = _pooled_slope(groups_c)
    have_um = bool(nratio and pix)
    cfz = optics.cfz_um(nratio, rig.wavelength_nm) if nratio else None
    hfr_trend = _pooled_slope([(el[(seg == k) & usable], hfr[(seg == k) & usable]) for k in np.unique(seg)])
    med_hfr = float(np.nanmedian(hfr[usable])) if usable.any() else None

    # seeing scatter: the seeing part of the profile, detrended by a running median
    sv = seeing[usable & np.isfinite(seeing)]
    scatter = None
    if sv.size >= 4:
        k = 2
        smooth = np.array([np.median(sv[max(0, i - k):i + k + 1]) for i in range(sv.size)])
        resid = sv - smooth
        mad = float(mad_std(resid))
        scatter = 100.0 * mad * 1.25 / float(np.median(sv))  # running-median residuals understate by ~1/1.25
    seeing_arcsec = float(np.nanmedian(sv)) * scale if (sv.size and scale) else None

    # frames to reject
    reject: list[tuple[str | None, str]] = []
    lines: list[NightFrame] = []
    for i, (s, d) in enumerate(zip(items, diags)):
        why = None
        if d.label == UNKNOWN:
            why = d.reason or "no verdict"
        elif cloud[i]:
            why = "clouds: star count or star flux well below the night's level"
        elif d.label == "trailing":
            why = "trailed stars"
        elif dew_onset is not None and i >= dew_onset:
            why = "dew halo"
        elif med_hfr and np.isfinite(hfr[i]) and hfr[i] > 1.5 * med_hfr:
            why = f"stars {hfr[i] / med_hfr:.1f}x the night's median size"
        if why:
            reject.append((s.file, why))
        lines.append(NightFrame(
            file=s.file, elapsed_h=_r(float(el[i]), 3) if np.isfinite(el[i]) else None,
            temp_c=_r(float(temp[i]), 2) if np.isfinite(temp[i]) else None, focuser_pos=pos[i],
            label=d.label, n_stars=int(s.n_stars or 0), hfr_px=_r(float(hfr[i])) if np.isfinite(hfr[i]) else None,
            seeing_fwhm_px=_r(float(seeing[i])) if np.isfinite(seeing[i]) else None,
            defocus_um=(_r(float(defocus[i]), 1) if (have_um and np.isfinite(defocus[i]))
                        else None if (d.label == "trailing" or (usable[i] and have_um)) else d.defocus_um),
            star_flux_adu=_r(float(flux[i]), 1) if np.isfinite(flux[i]) else None,
            cloud=bool(cloud[i]), reject=why, witness_source=d.evidence.witness_source,
            witness_seeing_arcsec=d.evidence.witness_seeing_arcsec))

    counts: dict[str, int] = {}
    for d in diags:
        counts[d.label] = counts.get(d.label, 0) + 1
    n_diag = n - counts.get(UNKNOWN, 0)
    duration = float(np.nanmax(el)) if np.isfinite(el).any() else None

    # the single most likely problem
    label, conf, why = "in_focus", 0.6, "stars stay within the focus zone and the seeing is steady"
    optical = {k: v for k, v in counts.items() if k in OPTICAL_LABELS}
    drift_total_cfz = None
    if drift_h is not None and duration and cfz and have_um:
        drift_total_cfz = max(drift_h, 0.0) * duration / cfz
    frac = {k: v / max(n_diag, 1) for k, v in counts.items()}
    if n_diag == 0:  # no frame had a verdict: nothing says the night was in focus either
        label, conf, why = UNKNOWN, 0.0, f"none of the {n} frames could be diagnosed (their reasons are listed)"
    elif optical and max(optical.values()) >= 0.5 * n_diag:
        label = max(optical, key=optical.get)
        conf, why = frac[label], f"{optical[label]} of {n_diag} frames show it; it does not change with focus"
    elif (drift_total_cfz is not None and drift_total_cfz >= 0.7 and drift_h and drift_h > 0
          and (drift_h_err is None or drift_h >= config.night_drift_min_t * drift_h_err)):
        label, conf = "focus_miss", float(np.clip(0.5 + drift_total_cfz / 4, 0.5, 0.95))
        why = f"focus drifted {drift_h:.0f} um/h ({drift_total_cfz:.1f} CFZ over the run)"
    elif frac.get("focus_miss", 0) >= 0.3:
        label, conf, why = "focus_miss", frac["focus_miss"], f"{counts['focus_miss']} frames out of focus"
    elif dew_onset is not None:
        label, conf, why = "dew", 0.8, f"a halo from {files[dew_onset]} on"
    elif cloud.mean() >= 0.25:
        label, conf, why = "clouds", float(cloud.mean()), f"{int(cloud.sum())} of {n} frames under clouds"
    elif frac.get("trailing", 0) >= 0.3:
        label, conf, why = "trailing", frac["trailing"], f"{counts['trailing']} frames trailed"
    elif frac.get("poor_seeing", 0) >= 0.4 or (scatter is not None and scatter >= 15.0):
        label = "poor_seeing"
        conf = max(frac.get("poor_seeing", 0), 0.6)
        # the scatter needs frames to be measured; with too few the verdict rests on the frames' own labels
        why = (f"the seeing jitters {fmt_pct(scatter)} frame to frame without a trend" if scatter is not None
               else f"{counts.get('poor_seeing', 0)} of {n_diag} frames show seeing-limited stars")
    summary = f"{label}: {why}"
    adv = ADVICE.get(label, ("wait for the clouds to pass; the frames under them are soft and faint",
                             "pause autofocus triggers during clouds") if label == "clouds" else ())
    return NightStory(
        n_frames=n, n_diagnosed=n_diag, label=label, confidence=round(float(conf), 2), summary=summary,
        duration_h=_r(duration, 3),
        drift_um_per_h=_r(drift_h, 1) if (drift_h is not None and have_um) else None,
        drift_um_per_c=_r(drift_c, 1) if (drift_c is not None and have_um) else None,
        drift_cfz_per_h=_r(drift_h / cfz, 3) if (drift_h is not None and have_um and cfz) else None,
        seeing_fwhm_arcsec=_r(seeing_arcsec, 2), seeing_scatter_pct=_r(scatter, 1),
        hfr_trend_pct_per_h=_r(100.0 * hfr_trend / med_hfr, 1) if (hfr_trend is not None and med_hfr) else None,
        n_refocus=n_refocus, cloud_periods=cloud_periods,
        dew_onset_file=files[dew_onset] if dew_onset is not None else None,
        dew_onset_h=_r(float(el[dew_onset]), 3) if (dew_onset is not None and np.isfinite(el[dew_onset])) else None,
        label_counts=counts, reject=tuple(reject), advice=tuple(adv), frames=tuple(lines),
    )
