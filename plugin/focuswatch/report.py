"""After the session: measure a session folder, grade its masters, write the night report.

I/O edge (no decisions): it reads a user's frames **read-only** (a user's frames are
sacred: nothing is written next to them), runs Siril through :mod:`focuswatch.siril` in a
work directory of ours, and hands numbers to the pure modules (:mod:`focuswatch.grade`,
:mod:`focuswatch.optics`, and :mod:`focuswatch.diagnose` / the journal when present).

Three layers, in the spirit of "measuring is separate from rendering":

* :func:`scan_session` — find the light frames under a folder, validate and measure each
  (tqdm progress bar on stderr); unreadable, truncated and star-less frames are listed
  with the problem and left out.
* :func:`grade_session` / :func:`grade_master_file` — per filter: stack the valid subs
  with Siril, measure the master with Siril *and* focuswatch, grade it.
* :func:`build_report` + :func:`render_html` — one :class:`NightReport` value (JSON-able)
  and a single self-contained HTML file (plots embedded as PNG data URIs, no scripts, no
  external resources) that opens in any browser offline.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from focuswatch import frames as frames_mod
from focuswatch.errors import ConfigError, FocuswatchError, FrameError, SirilError
from focuswatch.grade import (GradeConfig, MasterGrade, SubQuality, finite_median, master as grade_master,
                              roundness_from_eccentricity)
from focuswatch.optics import Rig, defocus_um_from_hfr
from focuswatch.records import Record

log = logging.getLogger("focuswatch.report")

#: A frame with fewer stars than this is left out of stacking (Siril's registration needs stars).
MIN_STARS_FOR_STACK = 10


# --------------------------------------------------------------------------- scanning a session

@dataclass(frozen=True)
class LeftOut(Record):
    """A frame that was not used, and why (``problem`` is one line for the user)."""

    file: str
    problem: str


@dataclass
class SessionScan:
    """The light frames of a session, measured, in capture order.

    ``stats`` holds ``stars.FrameStats`` of every readable light frame (including those
    with too few stars); ``usable`` the files good enough to stack; ``left_out`` every
    frame not stackable with the reason; ``n_not_light`` counts flats/darks/bias skipped.
    """

    folder: str
    stats: list[Any] = field(default_factory=list)
    usable: list[str] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    n_not_light: int = 0
    measure_s: float = 0.0
    diagnoses: dict[str, Any] = field(default_factory=dict)
    diagnose_notes: list[str] = field(default_factory=list)
    #: frames that could not be read or measured at all (also in ``left_out``): the command exits 1
    unreadable: list[LeftOut] = field(default_factory=list)

    def diagnose(self, rig: Rig | None) -> dict[str, Any]:
        """``diagnose.frame`` of every measured frame (cached; ``None`` where it failed).

        The diagnosis is optional: without the module, or when it fails on a frame, the
        report and the grade carry on without it and say so.
        """
        if self.diagnoses or not self.stats:
            return self.diagnoses
        try:
            from focuswatch import diagnose
        except ImportError:
            self.diagnose_notes.append("diagnosis: the diagnose module is not available")
            self.diagnoses = {str(s.file): None for s in self.stats}
            return self.diagnoses
        from focuswatch.config import rig_with_header

        failures = 0
        for s in self.stats:
            try:
                self.diagnoses[str(s.file)] = diagnose.frame(s, rig_with_header(rig or Rig(), s.meta))
            except Exception as exc:  # a diagnosis problem must not lose the grade or the report
                log.debug("diagnose.frame failed on %s: %s", s.file, exc)
                self.diagnoses[str(s.file)] = None
                failures += 1
        if failures:
            self.diagnose_notes.append(f"diagnosis: failed on {failures} of {len(self.stats)} frames")
        return self.diagnoses

    def by_filter(self) -> dict[str, list[Any]]:
        """Measured frames grouped by FILTER (``"none"`` when the header has none)."""
        out: dict[str, list[Any]] = {}
        for s in self.stats:
            out.setdefault(_filter_of(s), []).append(s)
        return out


def _filter_of(stats: Any) -> str:
    meta = getattr(stats, "meta", None)
    name = getattr(meta, "filter_name", None) if meta else None
    return str(name).strip() if name else "none"


def _progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    """tqdm on stderr, only for a TTY and when wanted (never with --json)."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="frame", file=sys.stderr, leave=False)


def find_frames(folder: str | os.PathLike[str]) -> list[Path]:
    """Every image file under ``folder`` (recursively; hidden files and folders skipped)."""
    root = Path(folder)
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel):
            continue
        if p.is_file() and frames_mod.is_image_file(p):
            out.append(p)
    return sorted(out)


def scan_session(folder: str | os.PathLike[str], *, rig: Rig | None = None, progress: bool = True,
                 min_stars: int = MIN_STARS_FOR_STACK, measure: Callable[..., Any] | None = None) -> SessionScan:
    """Find, validate and measure the light frames of a session folder.

    Each frame is read with ``frames.load`` (which checks completeness) and measured with
    ``stars.measure``. Problems never stop the scan: the frame goes to ``left_out`` with
    the reason (unreadable, truncated, fewer than ``min_stars`` stars), because one bad
    sub would abort Siril's registration.
    """
    from focuswatch import stars
    from focuswatch.boundary import guarded
    from focuswatch.config import rig_with_header

    measure = measure or stars.measure
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder")
    files = find_frames(root)
    scan = SessionScan(str(root))
    t0 = time.monotonic()
    measured: list[tuple[tuple[float, str], Any, Path]] = []
    for path in _progress(files, len(files), "measuring", progress):
        try:
            frame = frames_mod.load(path)
        except FrameError as exc:
            scan.left_out.append(LeftOut(str(path), exc.problem))
            scan.unreadable.append(scan.left_out[-1])
            continue
        if not frame.meta.is_light:
            scan.n_not_light += 1
            continue
        scale = rig_with_header(rig, frame.meta).plate_scale_arcsec_px if rig is not None else None
        try:
            st = guarded(path, measure, frame, plate_scale_arcsec_px=scale)
        except FrameError as exc:
            scan.left_out.append(LeftOut(str(path), exc.problem))
            scan.unreadable.append(scan.left_out[-1])
            continue
        measured.append((frames_mod.frame_order_key(path, frame.meta), st, path))
    measured.sort(key=lambda t: t[0])
    for _, st, path in measured:
        scan.stats.append(st)
        if st.n_stars < min_stars:
            why = st.reason or "too few stars"
            scan.left_out.append(LeftOut(str(path), f"only {st.n_stars} stars ({why}); left out of the stack"))
        else:
            scan.usable.append(str(path))
    scan.measure_s = time.monotonic() - t0
    return scan


# --------------------------------------------------------------------------- grading

@dataclass(frozen=True)
class FilterGrade:
    """The grade of one filter's master, with what Siril and focuswatch measured on it."""

    filter_name: str
    n_frames: int
    n_stacked: int
    left_out: tuple[LeftOut, ...]
    grade: MasterGrade | None
    siril: Mapping[str, Any] | None
    own: Mapping[str, Any] | None
    stack: Mapping[str, Any] | None
    master_path: str | None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "filter": self.filter_name, "n_frames": self.n_frames, "n_stacked": self.n_stacked,
            "left_out": [x.to_dict() for x in self.left_out],
            "grade": self.grade.to_dict() if self.grade else None,
            "siril": dict(self.siril) if self.siril else None, "own": dict(self.own) if self.own else None,
            "stack": dict(self.stack) if self.stack else None, "master_path": self.master_path,
            "problem": self.problem,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FilterGrade":
        return cls(d["filter"], int(d["n_frames"]), int(d["n_stacked"]),
                   tuple(LeftOut(**x) for x in d.get("left_out", ())),
                   MasterGrade.from_dict(d["grade"]) if d.get("grade") else None,
                   d.get("siril"), d.get("own"), d.get("stack"), d.get("master_path"), d.get("problem"))


@dataclass(frozen=True)
class SessionGrade:
    """``focuswatch grade --json``: one entry per filter plus what was left out and timings."""

    source: str
    filters: tuple[FilterGrade, ...]
    left_out: tuple[LeftOut, ...]
    n_frames: int
    siril_version: str | None
    measure_s: float
    siril_s: float
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "filters": [f.to_dict() for f in self.filters],
                "left_out": [x.to_dict() for x in self.left_out], "n_frames": self.n_frames,
                "siril_version": self.siril_version, "measure_s": self.measure_s, "siril_s": self.siril_s,
                "elapsed_s": self.elapsed_s}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SessionGrade":
        return cls(d["source"], tuple(FilterGrade.from_dict(f) for f in d.get("filters", ())),
                   tuple(LeftOut(**x) for x in d.get("left_out", ())), int(d.get("n_frames", 0)),
                   d.get("siril_version"), float(d.get("measure_s", 0.0)), float(d.get("siril_s", 0.0)),
                   float(d.get("elapsed_s", 0.0)))


def _seeing_core(diagnosis: Any) -> float | None:
    """The seeing FWHM (px) of a sub without its defocus blur, from its diagnosis."""
    ev = getattr(diagnosis, "evidence", None)
    v = getattr(ev, "seeing_fwhm_px", None) if ev is not None else None
    return float(v) if v is not None and math.isfinite(v) and v > 0 else None


def _own_summary(st: Any) -> dict[str, Any]:
    return {"fwhm_px": st.fwhm_px, "hfr_px": st.hfr_px, "eccentricity": st.eccentricity,
            "roundness": roundness_from_eccentricity(st.eccentricity), "n_stars": st.n_stars,
            "noise_adu": st.noise_adu, "background_adu": st.background_adu, "profile_ratio": st.profile_ratio}


def _measure_master(master: Path, workdir: Path, info: Any, timeout_s: float, rig: Rig | None):
    """Siril's and focuswatch's measurements of a master; plate scale from rig + header."""
    from focuswatch import siril, stars
    from focuswatch.config import rig_with_header

    sm = siril.measure(master, workdir, info=info, timeout_s=timeout_s)
    pixels, header = siril.load_master_pixels(master)
    meta = frames_mod.meta_from_header(header)
    full_rig = rig_with_header(rig or Rig(), meta)
    own = stars.measure_array(pixels, header, plate_scale_arcsec_px=full_rig.plate_scale_arcsec_px)
    return sm, own, full_rig


def _check_output_dir(out: Path, protected: Path, what: str) -> None:
    """Refuse to write inside the user's session folder (a user's frames are sacred)."""
    try:
        out.resolve().relative_to(protected.resolve())
    except ValueError:
        return
    raise ConfigError(f"{out}: {what} would be written inside the session folder {protected}; "
                      "choose a folder outside it (focuswatch never writes next to your frames)")


def check_output_path(out: str | os.PathLike[str], session: str | os.PathLike[str]) -> None:
    """Raise :class:`ConfigError` if ``out`` lies inside the session folder."""
    _check_output_dir(Path(out), Path(session), "the report")


def grade_session(folder: str | os.PathLike[str], *, rig: Rig | None = None, siril_path: str | None = None,
                  keep_dir: str | os.PathLike[str] | None = None, timeout_s: float = 1800.0,
                  progress: bool = True, config: GradeConfig = GradeConfig(),
                  scan: SessionScan | None = None) -> SessionGrade:
    """Validate, stack (per filter, with Siril) and grade a session folder.

    ``keep_dir`` keeps Siril's work (masters as ``<keep_dir>/<filter>/master.fits``);
    otherwise a temporary directory is used and removed. ``keep_dir`` may not lie inside
    the session folder.
    """
    from focuswatch import siril

    t0 = time.monotonic()
    root = Path(folder)
    if keep_dir is not None:
        _check_output_dir(Path(keep_dir), root, "Siril's work")
    info = siril.find_siril(siril_path)
    scan = scan or scan_session(root, rig=rig, progress=progress)
    usable = set(scan.usable)
    groups = scan.by_filter()
    results: list[FilterGrade] = []
    siril_s = 0.0
    from focuswatch.config import rig_with_header

    with siril.workspace(keep_dir) as wd:
        for filt, stats in groups.items():
            good = [s for s in stats if str(s.file) in usable]
            left = tuple(x for x in scan.left_out if any(str(s.file) == x.file for s in stats))
            diags = scan.diagnose(rig)
            subs = tuple(SubQuality.from_stats(s, _seeing_core(diags.get(str(s.file)))) for s in good)
            frig = rig_with_header(rig or Rig(), stats[0].meta) if stats else rig
            if len(good) < 2:
                results.append(FilterGrade(filt, len(stats), 0, left, None, None, None, None, None,
                                           f"only {len(good)} usable sub(s): nothing to stack"))
                continue
            safe = "".join(ch if ch.isalnum() else "_" for ch in filt) or "none"
            try:
                st = siril.stack([s.file for s in good], wd / safe, info=info, timeout_s=timeout_s)
                sm, own, mrig = _measure_master(Path(st.master_path), wd / safe / "measure", info, timeout_s, frig)
            except SirilError as exc:
                results.append(FilterGrade(filt, len(stats), 0, left, None, None, None, None, None, str(exc)))
                continue
            siril_s += st.elapsed_s + sm.elapsed_s
            g = grade_master(own.fwhm_px or sm.fwhm_px, plate_scale_arcsec_px=mrig.plate_scale_arcsec_px,
                             rig=mrig, subs=subs, roundness=sm.roundness or roundness_from_eccentricity(own.eccentricity),
                             n_stars=own.n_stars or sm.n_stars,
                             noise_adu=own.noise_adu if own.noise_adu is not None else sm.noise_adu,
                             siril_fwhm_px=sm.fwhm_px, config=config)
            results.append(FilterGrade(filt, len(stats), st.n_stacked, left, g, sm.to_dict(), _own_summary(own),
                                       st.to_dict(), st.master_path if keep_dir is not None else None))
    orphan = tuple(x for x in scan.left_out if not any(x.file == str(s.file) for s in scan.stats))
    return SessionGrade(str(root), tuple(results), orphan, len(scan.stats) + len(orphan), info.version_str,
                        scan.measure_s, siril_s, time.monotonic() - t0)


def grade_master_file(path: str | os.PathLike[str], *, rig: Rig | None = None, siril_path: str | None = None,
                      timeout_s: float = 600.0, config: GradeConfig = GradeConfig()) -> SessionGrade:
    """Grade an existing master (no subs: the seeing must come from the rig/--seeing-arcsec)."""
    from focuswatch import siril

    t0 = time.monotonic()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    from focuswatch import frames

    frames.check_complete(p)  # a truncated or non-FITS master gets its own clear line, not Siril's
    info = siril.find_siril(siril_path)
    with siril.workspace() as wd:
        sm, own, mrig = _measure_master(p, wd, info, timeout_s, rig)
    g = grade_master(own.fwhm_px or sm.fwhm_px, plate_scale_arcsec_px=mrig.plate_scale_arcsec_px, rig=mrig,
                     seeing_fwhm_arcsec=mrig.seeing_arcsec,
                     roundness=sm.roundness or roundness_from_eccentricity(own.eccentricity),
                     n_stars=own.n_stars or sm.n_stars, noise_adu=own.noise_adu, siril_fwhm_px=sm.fwhm_px,
                     config=config)
    filt = own.meta.filter_name or "none"
    fg = FilterGrade(filt, 1, 1, (), g, sm.to_dict(), _own_summary(own), None, str(p))
    return SessionGrade(str(p), (fg,), (), 1, info.version_str, 0.0, sm.elapsed_s, time.monotonic() - t0)


# --------------------------------------------------------------------------- the night report

@dataclass(frozen=True)
class FramePoint(Record):
    """One frame on the night's plots (time in hours since the first frame)."""

    file: str
    filter_name: str
    t_h: float
    timestamp: float | None
    hfr_px: float | None
    fwhm_px: float | None
    eccentricity: float | None
    n_stars: int
    background_adu: float | None
    temp_c: float | None
    focuser_pos: int | None
    defocus_um: float | None
    label: str | None = None


@dataclass(frozen=True)
class Event(Record):
    """Something that happened at a time: an autofocus run or a refocus decision."""

    t_h: float | None
    kind: str
    text: str


@dataclass(frozen=True)
class FilterRow(Record):
    """One line of the per-filter table."""

    filter_name: str
    n_frames: int
    n_left_out: int
    hfr_median_px: float | None
    fwhm_median_px: float | None
    fwhm_best_px: float | None
    fwhm_median_arcsec: float | None
    eccentricity_median: float | None
    n_stars_median: float | None
    defocus_max_um: float | None
    grade_letter: str | None


@dataclass(frozen=True)
class NightReport:
    """Everything the HTML shows, as a value (``report --json`` prints it)."""

    session: str
    start_utc: str | None
    rig: Mapping[str, Any]
    cfz_um: float | None
    points: tuple[FramePoint, ...]
    events: tuple[Event, ...]
    filters: tuple[FilterRow, ...]
    left_out: tuple[LeftOut, ...]
    diagnosis: Mapping[str, Any] | None
    grade: SessionGrade | None
    unavailable: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session, "start_utc": self.start_utc, "rig": dict(self.rig), "cfz_um": self.cfz_um,
                "points": [p.to_dict() for p in self.points], "events": [e.to_dict() for e in self.events],
                "filters": [f.to_dict() for f in self.filters], "left_out": [x.to_dict() for x in self.left_out],
                "diagnosis": dict(self.diagnosis) if self.diagnosis else None,
                "grade": self.grade.to_dict() if self.grade else None, "unavailable": list(self.unavailable)}


def _journal_autofocus(j: Any) -> list[Any]:
    """Every autofocus event of a journal: ``Journal.autofocus_events()`` when the journal
    module offers it, else the documented ``autofocus_events`` table read directly."""
    reader = getattr(j, "autofocus_events", None)
    if callable(reader):
        return list(reader())
    import json
    import sqlite3

    from focuswatch.monitor import AutofocusMark

    db = sqlite3.connect(f"{Path(j.path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT data FROM autofocus_events ORDER BY time_s").fetchall()
    finally:
        db.close()
    return [AutofocusMark.from_dict(json.loads(r[0])) for r in rows]


def _journal_events(journal_path: str | os.PathLike[str] | None, t0: float | None,
                    t_end: float | None) -> tuple[list[Event], list[str]]:
    """Autofocus runs and refocus decisions from the watcher's journal, within the session.

    Only events between an hour before the first frame and an hour after the last one are
    kept (a journal holds many nights). The journal is optional: when it is missing or
    unreadable the report says so and carries on.
    """
    if journal_path is None:
        return [], ["journal: none given (--journal), so no refocus decisions or autofocus events are shown"]
    jp = Path(journal_path)
    if not jp.is_file():
        return [], [f"journal: {jp} does not exist, so no refocus decisions or autofocus events are shown"]
    try:
        from focuswatch.journal import Journal
    except ImportError:
        return [], ["journal: the journal module is not available in this version"]
    lo = (t0 - 3600.0) if t0 is not None else -math.inf
    hi = (t_end + 3600.0) if t_end is not None else math.inf

    def when(ts: float | None) -> float | None:
        return (float(ts) - t0) / 3600.0 if (ts is not None and t0 is not None) else None

    events: list[Event] = []
    try:
        with Journal(jp) as j:
            for item in _journal_autofocus(j):
                if lo <= item.time_s <= hi:
                    what = f"{item.source}" + (f", filter {item.filter_name}" if item.filter_name else "") + \
                           (f", position {item.position}" if item.position is not None else "") + \
                           (f", {item.temp_c:.1f} °C" if item.temp_c is not None else "")
                    events.append(Event(when(item.time_s), "autofocus", what))
            for d in j.decisions():
                if d.decision == "refocus" and d.time_s is not None and lo <= d.time_s <= hi:
                    events.append(Event(when(d.time_s), "refocus decision",
                                        f"{Path(d.file).name}: " + "; ".join(d.reasons)))
    except (FocuswatchError, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return [], [f"journal: {jp} could not be read ({exc})"]
    events.sort(key=lambda e: (e.t_h is None, e.t_h or 0.0))
    return events, []


def _night_diagnosis(scan: SessionScan, rig: Rig) -> tuple[list[str | None], Mapping[str, Any] | None, list[str]]:
    """Per-frame labels (diagnose.frame) and the night's verdict (diagnose.night) when present."""
    diags = scan.diagnose(rig)
    labels = [getattr(diags.get(str(s.file)), "label", None) for s in scan.stats]
    notes = list(scan.diagnose_notes)
    summary: dict[str, Any] | None = None
    try:
        from focuswatch import diagnose
        night = getattr(diagnose, "night", None)
    except ImportError:
        night = None
    if night is not None:
        try:
            res = night(list(scan.stats), rig)
            summary = res.to_dict() if hasattr(res, "to_dict") else dict(res)
        except Exception as exc:  # optional: the per-frame labels stand in
            notes.append(f"diagnosis: diagnose.night failed ({exc}); per-frame labels shown instead")
    elif not any("not available" in n for n in notes):
        notes.append("diagnosis: diagnose.night is not available; the per-frame labels are summarised instead")
    if summary is None and any(labels):
        counts: dict[str, int] = {}
        for lab in labels:
            if lab:
                counts[lab] = counts.get(lab, 0) + 1
        summary = {"label_counts": counts, "n_frames": len(labels),
                   "main_label": max(counts, key=lambda k: counts[k]) if counts else None}
    return labels, summary, notes


def build_report(folder: str | os.PathLike[str], *, rig: Rig | None = None, scan: SessionScan | None = None,
                 journal_path: str | os.PathLike[str] | None = None, grade: SessionGrade | None = None,
                 progress: bool = True) -> NightReport:
    """Measure (or reuse ``scan``) and assemble the night's :class:`NightReport`.

    The defocus estimate per frame is the quadrature growth of the half-flux radius over
    the lowest HFR since the session start, the last filter change or the last autofocus
    (NINA's baseline), converted with the rig's focal ratio and pixel size
    (:func:`focuswatch.optics.defocus_um_from_hfr`); it is ``None`` without them.
    """
    from focuswatch.config import rig_with_header

    scan = scan or scan_session(folder, rig=rig, progress=progress)
    stats = scan.stats
    first_meta = stats[0].meta if stats else None
    full_rig = rig_with_header(rig or Rig(), first_meta)
    unavailable: list[str] = []
    ts = [s.meta.timestamp for s in stats]
    t0 = min((t for t in ts if t is not None), default=None)
    if t0 is not None and max(t for t in ts if t is not None) == t0 and len(stats) > 1:
        ts = [None] * len(stats)  # every frame claims the same time: plot against frame number
        t0 = None
    t_end = max((t for t in ts if t is not None), default=None)
    events, notes = _journal_events(journal_path, t0, t_end)
    unavailable += notes
    labels, diagnosis, notes = _night_diagnosis(scan, full_rig) if stats else ([], None, [])
    unavailable += notes
    n = full_rig.f_ratio
    pix = full_rig.effective_pixel_um
    if n is None or pix is None:
        unavailable.append("defocus estimate: the focal ratio or pixel size is unknown (give --rig or header values)")
    af_times = sorted(e.t_h for e in events if e.kind.lower().startswith("autofocus") and e.t_h is not None)
    points: list[FramePoint] = []
    base: float | None = None
    last_filter: str | None = None
    af_idx = 0
    for i, s in enumerate(stats):
        t_h = ((ts[i] - t0) / 3600.0) if (ts[i] is not None and t0 is not None) else float(i)
        filt = _filter_of(s)
        new_af = af_idx < len(af_times) and af_times[af_idx] <= t_h
        while af_idx < len(af_times) and af_times[af_idx] <= t_h:
            af_idx += 1
        if filt != last_filter or new_af:
            base = None
            last_filter = filt
        hfr = s.hfr_px if s.n_stars else None
        if hfr is not None:
            base = hfr if base is None else min(base, hfr)
        defocus = None
        if hfr is not None and base is not None and n is not None and pix is not None:
            defocus = defocus_um_from_hfr(hfr, base, n, pix, full_rig.obstruction)
        points.append(FramePoint(str(s.file), filt, t_h, ts[i], hfr, s.fwhm_px if s.n_stars else None,
                                 s.eccentricity, int(s.n_stars), s.background_adu, s.meta.temperature_c,
                                 s.meta.focuser_pos, defocus, labels[i] if i < len(labels) else None))
    rows = []
    graded = {f.filter_name: f for f in grade.filters} if grade else {}
    for filt, group in scan.by_filter().items():
        pts = [p for p in points if p.filter_name == filt]
        scale = full_rig.plate_scale_arcsec_px
        fw = [p.fwhm_px for p in pts]
        med_fw = finite_median(fw)
        gl = graded.get(filt)
        rows.append(FilterRow(filt, len(pts), sum(1 for x in scan.left_out if any(x.file == str(s.file) for s in group)),
                              finite_median(p.hfr_px for p in pts), med_fw,
                              min((x for x in fw if x is not None), default=None),
                              med_fw * scale if (med_fw is not None and scale) else None,
                              finite_median(p.eccentricity for p in pts), finite_median(float(p.n_stars) for p in pts),
                              max((p.defocus_um for p in pts if p.defocus_um is not None), default=None),
                              gl.grade.letter if gl and gl.grade else None))
    if grade is None:
        unavailable.append("master grade: not computed (run 'focuswatch report --grade' or 'focuswatch grade')")
    start = datetime.fromtimestamp(t0, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if t0 is not None else None
    return NightReport(str(folder), start, full_rig.to_dict(), full_rig.cfz_um(), tuple(points), tuple(events),
                       tuple(rows), tuple(scan.left_out), diagnosis, grade, tuple(unavailable))


# --------------------------------------------------------------------------- HTML

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(rep: NightReport) -> list[tuple[str, str, str]]:
    """(id, title, PNG data URI) of each plot; drawn with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = rep.points
    if not pts:
        return []
    out = []
    filters = sorted({p.filter_name for p in pts})
    colors = {f: c for f, c in zip(filters, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)}
    af = [e for e in rep.events if e.t_h is not None and e.kind.lower().startswith("autofocus")]
    dec = [e for e in rep.events if e.t_h is not None and not e.kind.lower().startswith("autofocus")]

    def marks(ax) -> None:
        for i, e in enumerate(af):
            ax.axvline(e.t_h, color="tab:green", lw=1.0, ls="--", label="autofocus" if i == 0 else None)
        for i, e in enumerate(dec):
            ax.axvline(e.t_h, color="tab:red", lw=0.8, ls=":", label="refocus decision" if i == 0 else None)

    def xlabel(ax) -> None:
        ax.set_xlabel(f"hours since {rep.start_utc}" if rep.start_utc else "frame number")
        ax.grid(alpha=0.3)

    plt.rcParams.update({"font.size": 9})
    # 1. star size
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for f in filters:
        p = [q for q in pts if q.filter_name == f]
        ax.plot([q.t_h for q in p], [q.hfr_px for q in p], "o-", ms=3, color=colors[f], label=f"HFR {f}")
        ax.plot([q.t_h for q in p], [q.fwhm_px for q in p], "s", ms=3, mfc="none", color=colors[f], label=f"FWHM {f}")
    marks(ax)
    ax.set_ylabel("pixels")
    ax.set_title("Star size: half-flux radius (lines) and FWHM (squares)")
    xlabel(ax)
    ax.legend(fontsize=7, ncol=4, loc="upper left")
    fig.tight_layout()
    out.append(("plot-size", "Star size over the night", _png(fig)))
    plt.close(fig)
    # 2. defocus with the zone band
    if any(q.defocus_um is not None for q in pts):
        fig, ax = plt.subplots(figsize=(8, 3.2))
        if rep.cfz_um:
            ax.axhspan(0, rep.cfz_um / 2.0, color="tab:green", alpha=0.15,
                       label=f"within the zone (±{rep.cfz_um / 2:.0f} µm)")
        for f in filters:
            p = [q for q in pts if q.filter_name == f and q.defocus_um is not None]
            ax.plot([q.t_h for q in p], [q.defocus_um for q in p], "o-", ms=3, color=colors[f], label=f)
        marks(ax)
        ax.set_ylabel("estimated defocus (µm)")
        ax.set_title("Estimated defocus from HFR growth, against the critical focus zone")
        xlabel(ax)
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        out.append(("plot-defocus", "Estimated defocus", _png(fig)))
        plt.close(fig)
    # 3. temperature and focuser
    if any(q.temp_c is not None for q in pts):
        fig, ax = plt.subplots(figsize=(8, 2.8))
        ax.plot([q.t_h for q in pts if q.temp_c is not None], [q.temp_c for q in pts if q.temp_c is not None],
                ".-", color="tab:orange", label="temperature")
        ax.set_ylabel("°C")
        marks(ax)
        if any(q.focuser_pos is not None for q in pts):
            ax2 = ax.twinx()
            ax2.plot([q.t_h for q in pts if q.focuser_pos is not None],
                     [q.focuser_pos for q in pts if q.focuser_pos is not None], "s", ms=2, color="tab:gray")
            ax2.set_ylabel("focuser position (steps)")
        ax.set_title("Temperature (orange) and focuser position (grey)")
        xlabel(ax)
        fig.tight_layout()
        out.append(("plot-temperature", "Temperature", _png(fig)))
        plt.close(fig)
    # 4. stars and background: clouds
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.plot([q.t_h for q in pts], [q.n_stars for q in pts], "o-", ms=3, color="tab:blue")
    ax.set_ylabel("stars measured", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot([q.t_h for q in pts if q.background_adu is not None],
             [q.background_adu for q in pts if q.background_adu is not None], ".-", color="tab:purple")
    ax2.set_ylabel("background (ADU)", color="tab:purple")
    marks(ax)
    ax.set_title("Star count and sky background (clouds lower the count and often raise the sky)")
    xlabel(ax)
    fig.tight_layout()
    out.append(("plot-clouds", "Star count and background", _png(fig)))
    plt.close(fig)
    return out


def _f(v: Any, spec: str = ".2f", unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, (int, float)):
        return f"{v:{spec}}{unit}"
    return html.escape(str(v))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222;
background:#fff;line-height:1.4}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:2px;margin-top:1.6em}
.sub{color:#666;margin-top:2px}table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}img{max-width:100%;display:block;margin:6px 0}
.grade{font-size:2.4em;font-weight:bold;display:inline-block;width:1.4em;text-align:center;border-radius:6px;
color:#fff;margin-right:12px;vertical-align:middle}
.gA{background:#2e7d32}.gB{background:#689f38}.gC{background:#f9a825}.gD{background:#ef6c00}.gE{background:#d84315}
.gF{background:#b71c1c}.gN{background:#9e9e9e}.note{color:#8a6d3b;background:#fcf8e3;padding:6px 10px;border-radius:4px}
"""


def _table(cls: str, columns: Sequence[tuple[str, bool]], rows: Iterable[Sequence[str]], *,
           header: bool = True) -> str:
    """An HTML table: ``columns`` are (heading, left-aligned) pairs, ``rows`` hold cells that
    are already HTML (escaped); numbers are right-aligned, text columns left."""
    def cell(tag: str, text: str, left: bool) -> str:
        return f"<{tag} class='l'>{text}</{tag}>" if left else f"<{tag}>{text}</{tag}>"

    out = [f"<table class='{cls}'>"]
    if header:
        out.append("<tr>" + "".join(cell("th", html.escape(h), left) for h, left in columns) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(cell("td", c, left) for c, (_, left) in zip(row, columns)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(rep: NightReport) -> str:
    """The report as one self-contained HTML document (no scripts, no external files)."""
    e = html.escape
    parts: list[str] = []
    title = f"focuswatch night report — {Path(rep.session).name or rep.session}"
    parts.append(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
                 f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{_CSS}</style></head><body>")
    parts.append(f"<h1>{e(title)}</h1><p class='sub'>{e(rep.session)} · {len(rep.points)} light frames"
                 f"{' · start ' + e(rep.start_utc) if rep.start_utc else ''}"
                 f"{' · CFZ ' + format(rep.cfz_um, '.0f') + ' µm' if rep.cfz_um else ''}</p>")
    # grade first: it is the headline
    parts.append("<h2 id='grade'>Master grade</h2>")
    if rep.grade and rep.grade.filters:
        for fg in rep.grade.filters:
            g = fg.grade
            letter = g.letter if g and g.letter else "?"
            cls = f"g{letter}" if letter in "ABCDEF" else "gN"
            parts.append(f"<div class='filtergrade'><p><span class='grade {cls}'>{e(letter)}</span>"
                         f"<b>Filter {e(fg.filter_name)}</b>: {e(g.explanation if g else (fg.problem or 'not graded'))}</p>")
            if g:
                rows = (("master FWHM (focuswatch)", g.master_fwhm_px, g.master_fwhm_arcsec),
                        ("master FWHM (Siril)", g.siril_fwhm_px,
                         g.siril_fwhm_px * g.plate_scale_arcsec_px if (g.siril_fwhm_px and g.plate_scale_arcsec_px)
                         else None),
                        ("limit", g.limit_fwhm_px, g.limit_fwhm_arcsec),
                        (f"seeing ({g.seeing_source or '?'})", g.seeing_fwhm_px, g.seeing_fwhm_arcsec),
                        ("Airy core", g.airy_fwhm_px, None), ("pixel sampling", g.sampling_fwhm_px, None))
                parts.append(_table("gradetable", (("quantity", True), ("px", False), ("arcsec", False)),
                                    ((e(name), _f(px), _f(arc)) for name, px, arc in rows)))
                parts.append(f"<p>ratio {_f(g.ratio)} · roundness {_f(g.roundness)} · {g.n_stars} stars · "
                             f"noise {_f(g.noise_adu, '.1f')} ADU · {fg.n_stacked} of {fg.n_frames} subs stacked</p>")
                if g.reject:
                    parts.append("<p><b>Subs to reject</b>:</p><ul class='reject'>")
                    for v in g.subs:
                        if v.reject:
                            parts.append(f"<li>{e(Path(v.file).name)} — {e(v.cause or '')}: {e(v.detail)}</li>")
                    parts.append("</ul>")
                for a in g.advice:
                    parts.append(f"<p>{e(a)}</p>")
            parts.append("</div>")
    else:
        parts.append("<p class='note'>The master was not graded for this report.</p>")
    parts.append("<h2 id='filters'>Per filter</h2>")
    parts.append(_table("filters", (("filter", True), *((h, False) for h in (
        "frames", "left out", "HFR median px", "FWHM median px", "FWHM best px", "FWHM median ″", "eccentricity",
        "stars", "max defocus µm", "grade"))),
        ((e(r.filter_name), str(r.n_frames), str(r.n_left_out), _f(r.hfr_median_px), _f(r.fwhm_median_px),
          _f(r.fwhm_best_px), _f(r.fwhm_median_arcsec), _f(r.eccentricity_median), _f(r.n_stars_median, ".0f"),
          _f(r.defocus_max_um, ".0f"), e(r.grade_letter or "—")) for r in rep.filters)))
    parts.append("<h2 id='plots'>The night</h2>")
    for pid, ptitle, uri in _plots(rep):
        parts.append(f"<figure id='{pid}'><img class='plot' alt='{e(ptitle)}' src='{uri}'></figure>")
    parts.append("<h2 id='diagnosis'>Diagnosis</h2>")
    d = rep.diagnosis
    if d:
        if "label_counts" in d:
            parts.append(_table("diagnosis", (("verdict", True), ("frames", False)),
                                ((e(str(lab)), str(cnt))
                                 for lab, cnt in sorted(d["label_counts"].items(), key=lambda kv: -kv[1]))))
        else:
            parts.append(_table("diagnosis", (("", True), ("", True)),
                                ((e(str(k)), _f(v)) for k, v in d.items()
                                 if isinstance(v, (str, int, float)) or v is None), header=False))
    else:
        parts.append("<p class='note'>No diagnosis available.</p>")
    if rep.events:
        parts.append("<h2 id='events'>Refocus decisions and autofocus runs</h2>")
        parts.append(_table("events", (("hours", False), ("kind", True), ("what", True)),
                            ((_f(ev.t_h), e(ev.kind), e(ev.text)) for ev in rep.events)))
    if rep.left_out:
        parts.append("<h2 id='leftout'>Frames left out</h2>")
        parts.append(_table("leftout", (("file", True), ("problem", True)),
                            ((e(Path(x.file).name), e(x.problem)) for x in rep.left_out)))
    if rep.unavailable:
        parts.append("<h2 id='unavailable'>Not in this report</h2><ul class='unavailable'>")
        for u in rep.unavailable:
            parts.append(f"<li>{e(u)}</li>")
        parts.append("</ul>")
    parts.append("<p class='sub'>Made by focuswatch. Sizes in sensor pixels unless marked ″ (arcsec).</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def default_report_path(session: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None) -> Path:
    """``<cwd>/<session name>-focuswatch-report.html``."""
    name = Path(session).resolve().name or "session"
    return Path(cwd or os.getcwd()) / f"{name}-focuswatch-report.html"


def write_report(rep: NightReport, path: str | os.PathLike[str], *, protected: str | os.PathLike[str] | None = None) -> Path:
    """Write the HTML to ``path``; refuses a path inside ``protected`` (the session folder)."""
    out = Path(path)
    if protected is not None:
        _check_output_dir(out, Path(protected), "the report")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(render_html(rep), encoding="utf-8")
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------- text output

def format_grade(sg: SessionGrade) -> str:
    """Human-readable ``focuswatch grade`` output."""
    def f(v: Any, spec: str = ".2f") -> str:
        return "—" if v is None else format(v, spec)

    lines = [f"{sg.source}: {sg.n_frames} frame(s), Siril {sg.siril_version or '?'}"]
    for x in sg.left_out:
        lines.append(f"  left out {Path(x.file).name}: {x.problem}")
    for fg in sg.filters:
        g = fg.grade
        lines.append("")
        if g is None:
            lines.append(f"filter {fg.filter_name}: not graded: {fg.problem}")
        else:
            lines.append(f"filter {fg.filter_name}: grade {g.letter or '?'} (ratio {f(g.ratio)}) - {g.explanation}")
            lines.append(f"  master FWHM {f(g.master_fwhm_px)} px = {f(g.master_fwhm_arcsec)}\" (Siril {f(g.siril_fwhm_px)} px"
                         f", {f(g.siril_vs_own_pct, '+.0f')} %), limit {f(g.limit_fwhm_px)} px = "
                         f"{f(g.limit_fwhm_arcsec)}\"")
            lines.append(f"  limit = seeing {f(g.seeing_fwhm_px)} px ({g.seeing_source or '?'}) + Airy "
                         f"{f(g.airy_fwhm_px)} px + pixels {f(g.sampling_fwhm_px)} px in quadrature")
            lines.append(f"  roundness {f(g.roundness)}, {g.n_stars} stars, noise {f(g.noise_adu, '.1f')} ADU, "
                         f"{fg.n_stacked} of {fg.n_frames} subs stacked")
            for v in g.subs:
                if v.reject:
                    lines.append(f"  reject {Path(v.file).name}: {v.cause} - {v.detail}")
            for a in g.advice:
                lines.append(f"  advice: {a}")
            for n in g.notes:
                lines.append(f"  note: {n}")
        for x in fg.left_out:
            lines.append(f"  left out {Path(x.file).name}: {x.problem}")
        if fg.master_path:
            lines.append(f"  master kept at {fg.master_path}")
    return "\n".join(lines)
