"""Where focus cost you, over an archive: nights, refocus runs, temperature coefficient, filter offsets.

Pure computation over the archive index's rows (plain dicts, one per measured light frame;
see :data:`focuswatch.scale.archive.COLUMNS`), then renderers (text, JSON records, HTML with
embedded PNG plots) of one :class:`ArchiveReport`. No file, clock or database access here.

==============================  ===============================================================
figure                          how
==============================  ===============================================================
rig's limit (optics)            in-focus true HFR of Kolmogorov seeing (``[rig] seeing_arcsec``,
                                else the diffraction floor) through the obstructed pupil, λ by
                                filter: :func:`calibration.infocus_hfr_px` (physical optics)
in-focus baseline               per night, rig and filter: the ``baseline_percentile`` of HFR
outside the focus zone          defocus estimated from HFR growth over the baseline at the
                                filter's wavelength (:func:`defocus_um`, the calibrated
                                :func:`optics.defocus_um_from_hfr`) beyond half the critical
                                focus zone (4.88 λ N², λ by filter), and HFR more than
                                ``seeing_margin_pct`` over the baseline (seeing jitter alone
                                must not count as a focus loss)
refocus (autofocus) detected    the focuser moved by ``af_min_jump_steps`` or more between two
                                frames of one night, rig and filter (FOCPOS jump)
refocus effectiveness           HFR of the last frame before the jump against the median of the
                                ``af_window_frames`` frames after it
temperature coefficient         per rig, least squares over the positions refocus runs chose
                                (the FOCPOS after each jump, FOCTEMP of that frame):
                                pos = c + k·T + Σ offset_filter; k ± its standard error, R²;
                                µm/°C with FOCUSSZ
filter offsets                  the same fit's per-filter terms against the reference filter
nights that lost most           exposure hours of frames outside the focus zone
==============================  ===============================================================
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from focuswatch import calibration
from focuswatch.optics import Rig, cfz_um, defocus_um_from_hfr, wavelength_for_filter
from focuswatch.model.records import Record

#: Version of the ``--json`` records (``kind`` = ``archive.*``) and of the report's fields.
SCHEMA = 1


@dataclass(frozen=True)
class ArchiveReportConfig(Record):
    """Tuned settings of the archive report (why each value: see the module table)."""

    af_min_jump_steps: int = 5
    af_window_frames: int = 3
    baseline_percentile: float = 10.0
    seeing_margin_pct: float = 10.0
    min_segments_for_tempco: int = 4
    min_temp_span_c: float = 1.0
    n_worst_nights: int = 5
    reference_filters: tuple[str, ...] = ("L", "Lum", "Luminance", "CLEAR", "C")


@dataclass(frozen=True)
class NightRow(Record):
    """One night of one rig (``night`` is the local date the night began, noon to noon)."""

    night: str
    rig: str
    n_frames: int
    exposure_h: float
    filters: tuple[str, ...]
    targets: tuple[str, ...]
    median_hfr_px: float | None
    median_hfr_arcsec: float | None
    best_hfr_px: float | None
    limit_hfr_px: float | None
    hfr_over_limit: float | None
    share_out_of_zone: float | None
    lost_exposure_h: float | None
    n_refocus: int
    refocus_gain_px: float | None


@dataclass(frozen=True)
class RefocusEvent(Record):
    """A detected autofocus (FOCPOS jump) and what it did to the star size."""

    night: str
    rig: str
    filter_name: str
    date_obs: str | None
    from_pos: int
    to_pos: int
    hfr_before_px: float | None
    hfr_after_px: float | None
    gain_pct: float | None


@dataclass(frozen=True)
class FilterOffset(Record):
    filter_name: str
    offset_steps: float
    se_steps: float
    n_segments: int


@dataclass(frozen=True)
class RigSummary(Record):
    """Per rig: its optics, the temperature coefficient and the filter offsets."""

    rig: str
    n_frames: int
    n_nights: int
    focal_length_mm: float | None
    f_ratio: float | None
    pixel_um: float | None
    focuser_step_um: float | None
    cfz_um: float | None
    limit_hfr_px: float | None
    tempco_steps_per_c: float | None = None
    tempco_se_steps_per_c: float | None = None
    tempco_um_per_c: float | None = None
    tempco_se_um_per_c: float | None = None
    tempco_r2: float | None = None
    n_segments: int = 0
    temp_span_c: float | None = None
    reference_filter: str | None = None
    filter_offsets: tuple[FilterOffset, ...] = ()
    problem: str | None = None


@dataclass
class ArchiveReport:
    """Everything the archive report shows; text, JSON and HTML render this one object."""

    root: str
    n_frames: int
    n_bad: int
    n_not_light: int
    nights: list[NightRow] = field(default_factory=list)
    rigs: list[RigSummary] = field(default_factory=list)
    refocus: list[RefocusEvent] = field(default_factory=list)
    worst_nights: list[NightRow] = field(default_factory=list)
    n_targets: int = 0
    n_filters: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "root": self.root, "n_frames": self.n_frames, "n_bad": self.n_bad,
                "n_not_light": self.n_not_light, "n_targets": self.n_targets, "n_filters": self.n_filters,
                "nights": [n.to_dict() for n in self.nights], "rigs": [r.to_dict() for r in self.rigs],
                "refocus": [e.to_dict() for e in self.refocus],
                "worst_nights": [n.to_dict() for n in self.worst_nights], "notes": list(self.notes)}

    def records(self) -> list[dict[str, Any]]:
        """JSON Lines records, each tagged with ``kind`` and ``schema``."""
        out = [{"kind": "archive-summary", "schema": SCHEMA, "root": self.root, "n_frames": self.n_frames,
                "n_bad": self.n_bad, "n_not_light": self.n_not_light, "n_nights": len(self.nights),
                "n_rigs": len(self.rigs), "n_targets": self.n_targets, "n_filters": self.n_filters,
                "notes": list(self.notes)}]
        out += [{"kind": "archive-night", "schema": SCHEMA, **n.to_dict()} for n in self.nights]
        out += [{"kind": "archive-rig", "schema": SCHEMA, **r.to_dict()} for r in self.rigs]
        out += [{"kind": "archive-refocus", "schema": SCHEMA, **e.to_dict()} for e in self.refocus]
        return out


# --------------------------------------------------------------------------- helpers

def _ok(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _median(values: Iterable[Any]) -> float | None:
    v = [float(x) for x in values if _ok(x)]
    return float(np.median(v)) if v else None


def _mode(values: Iterable[Any]) -> Any:
    v = [x for x in values if x is not None]
    if not v:
        return None
    uniq, counts = np.unique(np.asarray(v, dtype=object).astype(str), return_counts=True)
    best = uniq[int(np.argmax(counts))]
    return next(x for x in v if str(x) == best)


def rig_optics(rows: Sequence[Mapping[str, Any]], rig: Rig | None = None) -> Rig:
    """A rig's optics from its frames' headers (median values); ``rig`` (the TOML file) wins."""
    base = rig or Rig()
    focal = base.focal_length_mm or _median(r.get("focal_length_mm") for r in rows)
    pixel = base.effective_pixel_um or _median(r.get("pixel_um") for r in rows)
    step = base.focuser_step_um or _median(r.get("focuser_step_um") for r in rows)
    f_ratio = base.f_ratio
    if f_ratio is None:
        f_ratio = _median(r.get("f_ratio") for r in rows)
        if f_ratio is None:
            ap = _median(r.get("aperture_mm") for r in rows)
            f_ratio = focal / ap if focal and ap else None
    return Rig(aperture_mm=None, focal_length_mm=focal, pixel_um=pixel, binning=1,
               obstruction=base.obstruction, wavelength_nm=base.wavelength_nm, seeing_arcsec=base.seeing_arcsec,
               focuser_step_um=step, f_ratio_given=f_ratio)


def limit_hfr_px(rig: Rig, filter_name: str | None = None) -> float | None:
    """The smallest true HFR (px) the optics allow: the one calibrated in-focus size,
    :func:`focuswatch.calibration.infocus_hfr_px` (the diagnosis, policy and grade use it),
    in ``seeing_arcsec`` when set, else at the diffraction floor (its smallest tabulated
    seeing). ``None`` without an aperture or a plate scale."""
    aperture_mm, scale = rig.effective_aperture_mm, rig.plate_scale_arcsec_px
    if not aperture_mm or not scale:
        return None
    return calibration.infocus_hfr_px(rig.seeing_arcsec or 0.0, aperture_mm,
                                      wavelength_for_filter(filter_name, rig.wavelength_nm), scale,
                                      rig.obstruction or 0.0)


def defocus_um(hfr_px: float, hfr0_px: float, rig: Rig, filter_name: str | None = None) -> float:
    """Defocus (um, unsigned) of a frame from its HFR growth over the in-focus ``hfr0_px``.

    The calibrated physical-optics call the policy, diagnosis and grade share
    (:func:`focuswatch.optics.defocus_um_from_hfr`), at the frame's filter wavelength
    (:func:`focuswatch.optics.wavelength_for_filter`, the rig's ``wavelength_nm`` when the
    filter is unknown): near focus diffraction is a fair part of the star, and reading a
    blue or H-alpha frame at 550 nm puts its defocus 10-20 % off on a small refractor.
    """
    if hfr_px <= hfr0_px:
        return 0.0
    return defocus_um_from_hfr(hfr_px, hfr0_px, rig.f_ratio, rig.effective_pixel_um, rig.obstruction or 0.0,
                               wavelength_nm=wavelength_for_filter(filter_name, rig.wavelength_nm))


def _segments(rows: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Runs of consecutive frames (capture order) of one night and filter at one FOCPOS."""
    segs: list[list[Mapping[str, Any]]] = []
    for r in rows:
        if segs:
            last = segs[-1][-1]
            if (last.get("night") == r.get("night") and last.get("filter") == r.get("filter")
                    and last.get("focuser_pos") == r.get("focuser_pos")):
                segs[-1].append(r)
                continue
        segs.append([r])
    return segs


def fit_tempco(points: Sequence[tuple[float, float, str]], reference: str | None = None
               ) -> dict[str, Any] | None:
    """Least squares ``pos = c + k·T + Σ_f d_f`` over ``(pos, temp_c, filter)`` points.

    Returns ``k`` (steps/°C) with its standard error, R², the reference filter and the
    offsets ``d_f`` (steps, ± standard error) of the other filters; ``None`` when there are
    fewer points than parameters + 1.

    >>> pts = [(1000 - 5 * t, t, "L") for t in (2.0, 4.0, 6.0, 8.0)]
    >>> round(fit_tempco(pts)["k"], 6)
    -5.0
    """
    filters = sorted({f for _, _, f in points})
    ref = reference if reference in filters else (filters[0] if filters else None)
    others = [f for f in filters if f != ref]
    n, p = len(points), 2 + len(others)
    if n < p + 1:
        return None
    X = np.zeros((n, p))
    y = np.zeros(n)
    for i, (pos, t, f) in enumerate(points):
        X[i, 0], X[i, 1], y[i] = 1.0, t, pos
        if f != ref:
            X[i, 2 + others.index(f)] = 1.0
    beta, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    if rank < p:
        return None
    resid = y - X @ beta
    dof = n - p
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(X.T @ X)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else None
    return {"k": float(beta[1]), "k_se": float(math.sqrt(max(cov[1, 1], 0.0))), "r2": r2, "reference": ref,
            "offsets": {f: (float(beta[2 + j]), float(math.sqrt(max(cov[2 + j, 2 + j], 0.0))))
                        for j, f in enumerate(others)},
            "counts": {f: sum(1 for _, _, g in points if g == f) for f in filters}}


# --------------------------------------------------------------------------- the report

def build(rows: Sequence[Mapping[str, Any]], *, root: str = "", rig: Rig | None = None,
          n_bad: int = 0, n_not_light: int = 0,
          config: ArchiveReportConfig = ArchiveReportConfig()) -> ArchiveReport:
    """Build the archive report from the index's measured light frames (any order)."""
    rep = ArchiveReport(root=root, n_frames=len(rows), n_bad=n_bad, n_not_light=n_not_light)
    measured = [r for r in rows if _ok(r.get("hfr_px")) and (r.get("n_stars") or 0) > 0]
    measured.sort(key=lambda r: (r.get("rig") or "", r.get("timestamp") or 0.0, r.get("path") or ""))
    rep.n_targets = len({r.get("target") for r in rows if r.get("target")})
    rep.n_filters = len({r.get("filter") for r in rows if r.get("filter")})
    by_rig: dict[str, list[Mapping[str, Any]]] = {}
    for r in measured:
        by_rig.setdefault(r.get("rig") or "unknown rig", []).append(r)
    for rig_key, rrows in sorted(by_rig.items()):
        optics = rig_optics(rrows, rig)
        out_flags, events = _focus_zone_and_refocus(rig_key, rrows, optics, config)
        rep.refocus += events
        rep.rigs.append(_rig_summary(rig_key, rrows, optics, config))
        by_night: dict[str, list[int]] = {}
        for i, r in enumerate(rrows):
            by_night.setdefault(r.get("night") or "unknown", []).append(i)
        for night, idx in sorted(by_night.items()):
            nrows = [rrows[i] for i in idx]
            flags = [out_flags[i] for i in idx]
            known = [f for f in flags if f is not None]
            exposure = [float(r.get("exposure_s") or 0.0) for r in nrows]
            lost_s = sum(e for e, f in zip(exposure, flags) if f) if known else None
            nev = [e for e in events if e.night == night]
            gains = [e.hfr_before_px - e.hfr_after_px for e in nev if _ok(e.hfr_before_px) and _ok(e.hfr_after_px)]
            med = _median(r["hfr_px"] for r in nrows)
            lim = limit_hfr_px(optics, _mode(r.get("filter") for r in nrows))
            rep.nights.append(NightRow(
                night=night, rig=rig_key, n_frames=len(nrows), exposure_h=sum(exposure) / 3600.0,
                filters=tuple(sorted({str(r.get("filter")) for r in nrows if r.get("filter")})),
                targets=tuple(sorted({str(r.get("target")) for r in nrows if r.get("target")})),
                median_hfr_px=med, median_hfr_arcsec=_median(r.get("hfr_arcsec") for r in nrows),
                best_hfr_px=_percentile([r["hfr_px"] for r in nrows], config.baseline_percentile),
                limit_hfr_px=lim, hfr_over_limit=(med / lim) if med and lim else None,
                share_out_of_zone=(sum(1 for f in known if f) / len(known)) if known else None,
                lost_exposure_h=None if lost_s is None else lost_s / 3600.0,
                n_refocus=len(nev), refocus_gain_px=_median(gains)))
    rep.nights.sort(key=lambda n: (n.night, n.rig))
    ranked = [n for n in rep.nights if n.lost_exposure_h]
    ranked.sort(key=lambda n: (-n.lost_exposure_h, n.night))
    rep.worst_nights = ranked[:config.n_worst_nights]
    if len(measured) < len(rows):
        rep.notes.append(f"{len(rows) - len(measured)} light frame(s) without a usable HFR (no stars) "
                         "are counted but not in the figures")
    if any(n.share_out_of_zone is None for n in rep.nights):
        rep.notes.append("focus zone unknown for some rigs: give the focal ratio and pixel size "
                         "(FOCRATIO/APTDIA and XPIXSZ headers, or --rig)")
    return rep


def _percentile(values: Sequence[float], pct: float) -> float | None:
    v = [float(x) for x in values if _ok(x)]
    return float(np.percentile(v, pct)) if v else None


def _focus_zone_and_refocus(rig_key: str, rows: Sequence[Mapping[str, Any]], optics: Rig,
                            config: ArchiveReportConfig) -> tuple[list[bool | None], list[RefocusEvent]]:
    """Per frame: outside the focus zone? (``None`` when the optics are unknown); and the
    refocus events with HFR before and after."""
    groups: dict[tuple[Any, Any], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r.get("night"), r.get("filter")), []).append(i)
    flags: list[bool | None] = [None] * len(rows)
    events: list[RefocusEvent] = []
    can_zone = bool(optics.f_ratio and optics.effective_pixel_um)
    k = config.af_window_frames
    for (night, filt), idx in groups.items():
        hfr = [float(rows[i]["hfr_px"]) for i in idx]
        hfr0 = _percentile(hfr, config.baseline_percentile)
        if can_zone and hfr0:
            half = cfz_um(optics.f_ratio, wavelength_for_filter(filt, optics.wavelength_nm)) / 2.0
            margin = hfr0 * (1.0 + config.seeing_margin_pct / 100.0)
            for i, h in zip(idx, hfr):
                flags[i] = h > margin and defocus_um(h, hfr0, optics, filt) > half
        for a, b in zip(idx, idx[1:]):
            pa, pb = rows[a].get("focuser_pos"), rows[b].get("focuser_pos")
            if pa is None or pb is None or abs(int(pb) - int(pa)) < config.af_min_jump_steps:
                continue
            pos_in_group = idx.index(b)
            before = float(rows[a]["hfr_px"])  # the frame right before: drift is worst there
            after = _median(rows[i]["hfr_px"] for i in idx[pos_in_group:pos_in_group + k])
            gain = 100.0 * (before - after) / before if before and after is not None else None
            events.append(RefocusEvent(night=str(night), rig=rig_key, filter_name=str(filt or "none"),
                                       date_obs=rows[b].get("date_obs"), from_pos=int(pa), to_pos=int(pb),
                                       hfr_before_px=before, hfr_after_px=after, gain_pct=gain))
    events.sort(key=lambda e: (e.date_obs or "", e.filter_name))
    return flags, events


def _rig_summary(rig_key: str, rows: Sequence[Mapping[str, Any]], optics: Rig,
                 config: ArchiveReportConfig) -> RigSummary:
    cfz = cfz_um(optics.f_ratio, optics.wavelength_nm) if optics.f_ratio else None
    base = dict(rig=rig_key, n_frames=len(rows), n_nights=len({r.get("night") for r in rows}),
                focal_length_mm=optics.focal_length_mm, f_ratio=optics.f_ratio, pixel_um=optics.effective_pixel_um,
                focuser_step_um=optics.focuser_step_um, cfz_um=cfz, limit_hfr_px=limit_hfr_px(optics))
    points = []
    for prev, seg in zip(_segments(rows), _segments(rows)[1:]):
        first, before = seg[0], prev[-1]
        if (first.get("focuser_pos") is None or before.get("focuser_pos") is None
                or not _ok(first.get("focuser_temp_c")) or before.get("night") != first.get("night")
                or before.get("filter") != first.get("filter")
                or abs(int(first["focuser_pos"]) - int(before["focuser_pos"])) < config.af_min_jump_steps):
            continue  # only positions a refocus chose are best-focus points
        points.append((float(first["focuser_pos"]), float(first["focuser_temp_c"]), str(first.get("filter") or "none")))
    if len(points) < config.min_segments_for_tempco:
        return RigSummary(**base, n_segments=len(points),
                          problem=f"{len(points)} refocus run(s) with FOCPOS and FOCTEMP; "
                                  f"the temperature fit needs {config.min_segments_for_tempco}")
    temps = [t for _, t, _ in points]
    span = max(temps) - min(temps)
    filters = {f for _, _, f in points}
    ref = next((f for f in config.reference_filters if f in filters), None)
    if ref is None:
        ref = _mode([f for _, _, f in points])
    fit = fit_tempco(points, ref)
    if fit is None or span < config.min_temp_span_c:
        return RigSummary(**base, n_segments=len(points), temp_span_c=span,
                          problem=f"temperatures span only {span:.1f} °C" if span < config.min_temp_span_c
                          else "too few focus segments per filter for the fit")
    step = optics.focuser_step_um
    return RigSummary(
        **base, tempco_steps_per_c=fit["k"], tempco_se_steps_per_c=fit["k_se"],
        tempco_um_per_c=fit["k"] * step if step else None, tempco_se_um_per_c=fit["k_se"] * step if step else None,
        tempco_r2=fit["r2"], n_segments=len(points), temp_span_c=span, reference_filter=fit["reference"],
        filter_offsets=tuple(FilterOffset(f, d, se, fit["counts"][f]) for f, (d, se) in sorted(fit["offsets"].items())))


# --------------------------------------------------------------------------- renderers

def _f(v: Any, spec: str = ".2f", unit: str = "") -> str:
    return "—" if not _ok(v) else f"{v:{spec}}{unit}"


def render_text(rep: ArchiveReport) -> str:
    """The archive report for a terminal."""
    lines = [f"{rep.root}: {rep.n_frames} light frames, {len(rep.nights)} night(s), {len(rep.rigs)} rig(s), "
             f"{rep.n_filters} filter(s), {rep.n_targets} target(s); {rep.n_bad} unreadable, "
             f"{rep.n_not_light} calibration frames"]
    if rep.nights:
        lines.append(f"{'night':<11} {'rig':<28} {'frames':>6} {'HFR px':>7} {'limit':>6} {'x lim':>5} "
                     f"{'out %':>6} {'lost h':>6} {'AF':>3} {'AF gain':>7}")
    for n in rep.nights:
        rig = n.rig if len(n.rig) <= 28 else n.rig[:27] + "…"
        share = None if n.share_out_of_zone is None else 100 * n.share_out_of_zone
        lines.append(f"{n.night:<11} {rig:<28} {n.n_frames:>6} {_f(n.median_hfr_px):>7} {_f(n.limit_hfr_px):>6} "
                     f"{_f(n.hfr_over_limit, '.1f'):>5} {_f(share, '.0f'):>6} {_f(n.lost_exposure_h):>6} "
                     f"{n.n_refocus:>3} {_f(n.refocus_gain_px):>7}")
    for r in rep.rigs:
        if r.tempco_steps_per_c is not None:
            um = (f" = {r.tempco_um_per_c:+.1f} ± {r.tempco_se_um_per_c:.1f} µm/°C" if r.tempco_um_per_c is not None
                  else "")
            lines.append(f"{r.rig}: temperature coefficient {r.tempco_steps_per_c:+.1f} ± "
                         f"{r.tempco_se_steps_per_c:.1f} steps/°C{um} (R² {_f(r.tempco_r2)}, {r.n_segments} "
                         f"segments over {r.temp_span_c:.1f} °C)")
            for o in r.filter_offsets:
                lines.append(f"    filter {o.filter_name}: {o.offset_steps:+.0f} ± {o.se_steps:.0f} steps vs "
                             f"{r.reference_filter}")
        else:
            lines.append(f"{r.rig}: no temperature coefficient ({r.problem})")
    if rep.worst_nights:
        lines.append("nights that lost most to focus: " + ", ".join(
            f"{n.night} ({n.lost_exposure_h:.2f} h, {n.rig})" for n in rep.worst_nights))
    lines += [f"note: {x}" for x in rep.notes]
    return "\n".join(lines)


def _plots(rep: ArchiveReport) -> list[tuple[str, str]]:
    """(title, PNG data URI) of each plot (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from focuswatch.render.report import _png

    out = []
    rigs = sorted({n.rig for n in rep.nights})
    if rep.nights:
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5.5), dpi=96, sharex=False)
        for rig in rigs:
            ns = [n for n in rep.nights if n.rig == rig]
            x = np.arange(len(ns)) if len(rigs) == 1 else [rep.nights.index(n) for n in ns]
            ax1.plot(x, [n.median_hfr_px or np.nan for n in ns], "o-", ms=3, label=f"{rig} median HFR")
            ax1.plot(x, [n.limit_hfr_px or np.nan for n in ns], "--", lw=1, label=f"{rig} optics limit")
            ax2.bar(x, [100 * (n.share_out_of_zone or 0.0) for n in ns], alpha=0.7, label=rig)
        labels = [n.night for n in rep.nights] if len(rigs) > 1 else [n.night for n in rep.nights if n.rig == rigs[0]]
        step = max(1, len(labels) // 12)
        for ax in (ax1, ax2):
            ax.set_xticks(range(0, len(labels), step))
            ax.set_xticklabels(labels[::step], rotation=30, ha="right", fontsize=7)
            ax.grid(alpha=0.3)
        ax1.set_ylabel("HFR (px)")
        ax1.legend(fontsize=7)
        ax2.set_ylabel("frames outside\nfocus zone (%)")
        fig.tight_layout()
        out.append(("Median HFR per night against the optics limit; share of frames outside the focus zone",
                    _png(fig)))
        plt.close(fig)
    if rep.refocus:
        fig, ax = plt.subplots(figsize=(9, 3.2), dpi=96)
        before = [e.hfr_before_px or np.nan for e in rep.refocus]
        after = [e.hfr_after_px or np.nan for e in rep.refocus]
        x = np.arange(len(rep.refocus))
        ax.vlines(x, after, before, color="0.6")
        ax.plot(x, before, "v", color="#b71c1c", ms=4, label="before")
        ax.plot(x, after, "^", color="#2e7d32", ms=4, label="after")
        ax.set_xlabel("autofocus run (capture order)")
        ax.set_ylabel("HFR (px)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out.append(("Refocus effectiveness: HFR before and after each detected autofocus", _png(fig)))
        plt.close(fig)
    return out


def render_html(rep: ArchiveReport, rows: Sequence[Mapping[str, Any]] = ()) -> str:
    """A self-contained HTML page (plots embedded as PNG data URIs)."""
    from focuswatch.render.report import _table

    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>focuswatch archive {e(rep.root)}</title>",
             "<style>body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;"
             "margin:8px 0 18px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;font-size:13px}"
             ".l{text-align:left}.note{color:#8a6d3b;background:#fcf8e3;padding:6px 10px}</style></head><body>",
             f"<h1>Focus over the archive</h1><p>{e(rep.root)}: {rep.n_frames} light frames, {len(rep.nights)} "
             f"night(s), {len(rep.rigs)} rig(s), {rep.n_filters} filter(s), {rep.n_targets} target(s); "
             f"{rep.n_bad} unreadable, {rep.n_not_light} calibration frames.</p>"]
    for title, uri in _plots(rep):
        parts.append(f"<h3>{e(title)}</h3><img src='{uri}' alt='{e(title)}'>")
    parts.append("<h2>Nights</h2>")
    parts.append(_table("nights", [("night", True), ("rig", True), ("frames", False), ("exposure h", False),
                                   ("median HFR px", False), ("HFR ″", False), ("optics limit px", False),
                                   ("× limit", False), ("outside zone %", False), ("lost h", False),
                                   ("autofocus runs", False), ("AF gain px", False), ("filters", True)],
                        ([e(n.night), e(n.rig), str(n.n_frames), _f(n.exposure_h), _f(n.median_hfr_px),
                          _f(n.median_hfr_arcsec), _f(n.limit_hfr_px), _f(n.hfr_over_limit, ".1f"),
                          _f(None if n.share_out_of_zone is None else 100 * n.share_out_of_zone, ".0f"),
                          _f(n.lost_exposure_h), str(n.n_refocus), _f(n.refocus_gain_px),
                          e(", ".join(n.filters))] for n in rep.nights)))
    parts.append("<h2>Nights that lost the most to focus</h2>")
    parts.append(_table("worst", [("night", True), ("rig", True), ("exposure outside the zone h", False),
                                  ("share %", False)],
                        ([e(n.night), e(n.rig), _f(n.lost_exposure_h), _f(100 * (n.share_out_of_zone or 0), ".0f")]
                         for n in rep.worst_nights)) if rep.worst_nights else "<p>None: no frame left the zone, "
                 "or the focus zone is unknown.</p>")
    parts.append("<h2>Temperature coefficient and filter offsets</h2>")
    for r in rep.rigs:
        if r.tempco_steps_per_c is None:
            parts.append(f"<p><b>{e(r.rig)}</b>: not available — {e(r.problem or '')}</p>")
            continue
        um = (f" = {r.tempco_um_per_c:+.1f} ± {r.tempco_se_um_per_c:.1f} µm/°C" if r.tempco_um_per_c is not None
              else "")
        parts.append(f"<p><b>{e(r.rig)}</b>: {r.tempco_steps_per_c:+.2f} ± {r.tempco_se_steps_per_c:.2f} "
                     f"steps/°C{e(um)}, R² {_f(r.tempco_r2)}, {r.n_segments} focus segments over "
                     f"{r.temp_span_c:.1f} °C; offsets against {e(str(r.reference_filter))}:</p>")
        if r.filter_offsets:
            parts.append(_table("offsets", [("filter", True), ("offset steps", False), ("± steps", False),
                                            ("segments", False)],
                                ([e(o.filter_name), f"{o.offset_steps:+.0f}", f"{o.se_steps:.0f}",
                                  str(o.n_segments)] for o in r.filter_offsets)))
    if rep.refocus:
        parts.append("<h2>Refocus runs (FOCPOS jumps)</h2>")
        parts.append(_table("af", [("time", True), ("rig", True), ("filter", True), ("from", False), ("to", False),
                                   ("HFR before", False), ("HFR after", False), ("gain %", False)],
                            ([e(ev.date_obs or ""), e(ev.rig), e(ev.filter_name), str(ev.from_pos), str(ev.to_pos),
                              _f(ev.hfr_before_px), _f(ev.hfr_after_px), _f(ev.gain_pct, ".0f")]
                             for ev in rep.refocus)))
    for n in rep.notes:
        parts.append(f"<p class='note'>{e(n)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
