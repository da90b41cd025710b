"""After the session, the data: measure a session folder, grade its masters, write the night report.

I/O edge (no decisions): it reads a user's frames **read-only** (a user's frames are
sacred: nothing is written next to them), runs Siril through :mod:`focuswatch.siril` in a
work directory of ours, and hands numbers to the pure modules (:mod:`focuswatch.grade`,
:mod:`focuswatch.optics`, and :mod:`focuswatch.diagnose` / the journal when present).

The data half of the report (the HTML half is :mod:`focuswatch.render.report`).

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


import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Mapping

from focuswatch.io import frames as frames_mod
from focuswatch.errors import ConfigError, FocuswatchError, FrameError, SirilError
from focuswatch.grade import (GradeConfig, MasterGrade, SubQuality, finite_median, master as grade_master,
                              registration_var_px2 as grade_registration_var, roundness_from_eccentricity)
from focuswatch.optics import Rig
from focuswatch.model.records import Record
from focuswatch.scale.session import LeftOut, MIN_STARS_FOR_STACK, SessionScan, _filter_of


log = logging.getLogger("focuswatch.render.report")


def scan_session(folder: str | os.PathLike[str], *, rig: Rig | None = None, progress: bool = True,
                 min_stars: int = MIN_STARS_FOR_STACK, diagnose: bool = True) -> SessionScan:
    """Find, validate, measure and diagnose the light frames of a session folder.

    Each frame is read with :func:`focuswatch.io.frames.load` (which checks completeness) and judged by the
    one frame pipeline (:func:`focuswatch.pipeline.assess`: stars, diagnosis and the
    policy's record, exactly as the watcher does). Problems never stop the scan: the frame
    goes to ``left_out`` with the reason (unreadable, truncated, fewer than ``min_stars``
    stars), because one bad sub would abort Siril's registration.

    This is :func:`focuswatch.scale.batch.scan_session` run in this process (one code path for
    ``--workers 1`` and ``--workers 8``).
    """
    from focuswatch.scale.batch import scan_session as scan_on_workers
    from focuswatch.scale.parallel import Runner

    scan, _ = scan_on_workers(folder, rig=rig, progress=progress, runner=Runner(workers=1),
                              min_stars=min_stars, diagnose=diagnose)
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


#: The diagnosis labels that are its call between focus and seeing (the grade's own question).
_FOCUS_OR_SEEING = ("focus_miss", "in_focus", "poor_seeing")


def _focus_miss(diagnosis: Any) -> bool | None:
    """The diagnosis' focus call on a sub (made with the night's seeing witness); ``None``
    without a diagnosis or where its label is another problem (dew, tilt...): it made no call
    between focus and seeing there, and the grade then reads the profile itself."""
    label = str(getattr(getattr(diagnosis, "label", None), "value", getattr(diagnosis, "label", None)))
    return label == "focus_miss" if label in _FOCUS_OR_SEEING else None


def _measured_as_mosaic(st: Any) -> bool:
    """The sub is a one-shot-colour mosaic (``BAYERPAT`` on a one-plane frame), measured on its
    green sites: the note :func:`focuswatch.model.frame._prepare` leaves says so. A colour frame
    that was already debayered keeps its ``BAYERPAT`` card in some programs, and is no mosaic."""
    meta = getattr(st, "meta", None)
    return bool(getattr(meta, "bayer_pattern", None)) and any(
        str(n).startswith("one-shot-colour") for n in (getattr(st, "notes", None) or ()))


def _registration_var(st: Any) -> float | None:
    """The registration's variance from the matrices parsed out of Siril's log, or ``None``
    (random shifts assumed, and the grade says so) when fewer were found than subs were
    moved: a matrix missing from the log must not count as an unshifted sub. One line in
    the log, and grading carries on."""
    moved = int(st.n_stacked) - 1
    if st.transforms and len(st.transforms) < moved:
        log.warning("Siril's log: %d registration matrices read for %d moved subs; random sub-pixel shifts "
                    "assumed for the stacking term", len(st.transforms), moved)
        return None
    return grade_registration_var(st.transforms, st.n_stacked, st.frame_size_px)


def _own_summary(st: Any) -> dict[str, Any]:
    return {"fwhm_px": st.fwhm_px, "hfr_px": st.hfr_px, "eccentricity": st.eccentricity,
            "roundness": roundness_from_eccentricity(st.eccentricity), "n_stars": st.n_stars,
            "noise_adu": st.noise_adu, "background_adu": st.background_adu, "profile_ratio": st.profile_ratio}


def _measure_master(master: Path, workdir: Path, info: Any, timeout_s: float, rig: Rig | None,
                    green_plane: bool = False):
    """Siril's and focuswatch's measurements of a master; plate scale from rig + header.

    ``green_plane``: the master was stacked from debayered one-shot-colour subs; focuswatch
    measures its green plane (the subs were measured on their green sites, and Siril
    registered on green), not the mean of the planes."""
    from focuswatch import siril, stars
    from focuswatch.optics import rig_with_header

    sm = siril.measure(master, workdir, info=info, timeout_s=timeout_s)
    pixels, header = siril.load_master_pixels(master)
    if green_plane and pixels.ndim == 3 and pixels.shape[0] == 3:
        import numpy as np

        pixels = np.ascontiguousarray(pixels[1])
        header = {k: v for k, v in header.items() if k not in ("BAYERPAT", "COLORTYP")}
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
    from focuswatch.optics import rig_with_header

    with siril.workspace(keep_dir) as wd:
        for filt, stats in groups.items():
            good = [s for s in stats if str(s.file) in usable]
            left = tuple(x for x in scan.left_out if any(str(s.file) == x.file for s in stats))
            diags = scan.diagnose(rig)
            subs = tuple(SubQuality.from_stats(s, _seeing_core(diags.get(str(s.file))),
                                               diagnosis_focus_miss=_focus_miss(diags.get(str(s.file)))) for s in good)
            frig = rig_with_header(rig or Rig(), stats[0].meta) if stats else rig
            if len(good) < 2:
                results.append(FilterGrade(filt, len(stats), 0, left, None, None, None, None, None,
                                           f"only {len(good)} usable sub(s): nothing to stack"))
                continue
            safe = "".join(ch if ch.isalnum() else "_" for ch in filt) or "none"
            # one-shot-colour subs are debayered by Siril before registering (see siril.stack)
            bayer = bool(good) and all(_measured_as_mosaic(s) for s in good)
            try:
                st = siril.stack([s.file for s in good], wd / safe, info=info, timeout_s=timeout_s, debayer=bayer)
                sm, own, mrig = _measure_master(Path(st.master_path), wd / safe / "measure", info, timeout_s, frig,
                                                green_plane=st.debayered)
            except SirilError as exc:
                results.append(FilterGrade(filt, len(stats), 0, left, None, None, None, None, None, str(exc)))
                continue
            siril_s += st.elapsed_s + sm.elapsed_s
            g = grade_master(own.fwhm_px or sm.fwhm_px, plate_scale_arcsec_px=mrig.plate_scale_arcsec_px,
                             rig=mrig, subs=subs, roundness=sm.roundness or roundness_from_eccentricity(own.eccentricity),
                             n_stars=own.n_stars or sm.n_stars,
                             noise_adu=own.noise_adu if own.noise_adu is not None else sm.noise_adu,
                             siril_fwhm_px=sm.fwhm_px, stacked=st.debayered,
                             registration_var_px2=_registration_var(st),
                             debayered=st.debayered, config=config)
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
    from focuswatch.io import frames

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
    """One frame on the night's plots (time in hours since the first frame).

    ``defocus_um``, ``defocus_cfz``, ``model_defocus_um`` and ``decision`` are the refocus
    policy's (:class:`~focuswatch.policy.Decision`): from the watcher's journal when it
    recorded the frame, else from running the policy over the night as ``replay`` does.
    ``timestamp`` is the capture time in seconds since the epoch (UTC).
    """

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
    model_defocus_um: float | None = None
    defocus_cfz: float | None = None
    decision: str | None = None


@dataclass(frozen=True)
class Event(Record):
    """Something that happened at a time: an autofocus run or a refocus decision.

    ``time_s`` is the event's own time (s since the epoch) when it is on the frames' clock,
    ``file`` the frame it was decided on (refocus) or the first frame after it (autofocus).
    """

    t_h: float | None
    kind: str
    text: str
    time_s: float | None = None
    file: str | None = None


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
class NightReport(Record):
    """Everything the report shows, as one value: HTML, text and JSON are renderers of it.

    ``report --json`` prints it; :meth:`from_dict` reads that JSON back, so a saved night
    re-renders (``focuswatch report --from-json FILE``) without measuring again.
    ``start_time_s`` is the first frame's time (s since the epoch, UTC), ``start_utc`` the
    same for people. ``decisions_source`` says where the defocus and decisions came from:
    ``journal`` (the watcher's, ``journal`` names it) or ``policy`` (run over the frames).
    """

    KIND: ClassVar[str] = "report"

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
    start_time_s: float | None = None
    decisions_source: str | None = None
    journal: str | None = None
    limit_um: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session, "start_utc": self.start_utc, "rig": dict(self.rig), "cfz_um": self.cfz_um,
                "points": [p.to_dict() for p in self.points], "events": [e.to_dict() for e in self.events],
                "filters": [f.to_dict() for f in self.filters], "left_out": [x.to_dict() for x in self.left_out],
                "diagnosis": dict(self.diagnosis) if self.diagnosis else None,
                "grade": self.grade.to_dict() if self.grade else None, "unavailable": list(self.unavailable),
                "start_time_s": self.start_time_s, "decisions_source": self.decisions_source,
                "journal": self.journal, "limit_um": self.limit_um}


def load_report(path: str | os.PathLike[str]) -> NightReport:
    """Read a saved ``report --json`` document back (:class:`ConfigError` naming the file if it is not one)."""
    import json

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return NightReport.from_dict(data)
    except FileNotFoundError:
        raise FrameError(p, "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{p}: not a focuswatch report JSON ({exc})") from None


# --------------------------------------------------------------------------- the watcher's journal

@dataclass(frozen=True)
class JournalNight:
    """What the watcher's journal recorded for one session folder (read-only).

    ``frames`` maps each frame's resolved path to (journal order, the policy's
    :class:`~focuswatch.policy.Decision` or ``None``); ``autofocus`` lists (journal order,
    :class:`~focuswatch.policy.AutofocusMark`) of every autofocus in the journal.
    """

    path: Path
    frames: Mapping[str, tuple[int, Any]]
    autofocus: tuple[tuple[int, Any], ...]
    #: one line per row that could not be read back (left out; the rest of the night is shown)
    problems: tuple[str, ...] = ()


def _open_ro(path: Path):
    import sqlite3

    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)


def read_journal_night(path: str | os.PathLike[str], session: str | os.PathLike[str]) -> JournalNight:
    """The journal's frames under ``session`` with their decisions, and its autofocus runs.

    Opened read-only (the watcher may be writing it). Raises :class:`FocuswatchError`
    subclasses or ``sqlite3.Error`` / ``ValueError`` for a file that is not a journal.
    """
    import sqlite3

    from focuswatch.io.journal import _ROW_ERRORS, _bad_row_line, _row_dict
    from focuswatch.policy import AutofocusMark, Decision

    jp = Path(path)
    prefix = str(Path(session).resolve())
    db = _open_ro(jp)
    try:
        # as text only when it is text: a garbled row is that row's problem, not the query's (see Journal)
        rows = db.execute(
            "SELECT f.seq, f.path, (SELECT CAST(d.data AS BLOB) FROM decisions d WHERE d.frame_id = f.id "
            "ORDER BY d.id DESC LIMIT 1) FROM frames f WHERE substr(f.path, 1, ?) = ? ORDER BY f.seq",
            (len(prefix), prefix)).fetchall()
        afs = db.execute("SELECT seq, CAST(data AS BLOB), id FROM autofocus_events ORDER BY seq").fetchall()
    except sqlite3.Error as exc:
        raise ConfigError(f"{jp}: not a focuswatch journal ({exc})") from None
    finally:
        db.close()
    problems: list[str] = []
    frames: dict[str, tuple[int, Any]] = {}
    for seq, p, data in rows:
        try:
            frames[str(p)] = (int(seq), Decision.from_dict(_row_dict(data)) if data else None)
        except _ROW_ERRORS as exc:  # the frame stays, without its decision
            frames[str(p)] = (int(seq), None)
            problems.append(_bad_row_line(jp, f"decision of {p}", "data", exc, "not shown"))
    from focuswatch.watch import _NOT_APPLIED  # a failed / unconfirmed NINA run is not an autofocus

    marks: list[tuple[int, Any]] = []
    for seq, data, row_id in afs:
        try:
            marks.append((int(seq), AutofocusMark.from_dict(_row_dict(data))))
        except _ROW_ERRORS as exc:
            problems.append(_bad_row_line(jp, f"autofocus_events row {row_id}", "data", exc, "not shown"))
    autofocus = tuple((seq, m) for seq, m in marks if not str(m.source).endswith(_NOT_APPLIED))
    return JournalNight(jp, frames, autofocus, tuple(problems))


def journal_candidates(session: str | os.PathLike[str]) -> list[Path]:
    """Where the watcher writes its journal, nearest first.

    ``focuswatch watch`` writes ``journal.sqlite`` into its state folder: the per-user one
    (``$FOCUSWATCH_STATE_DIR``, else the platform's, :func:`focuswatch.io.journal.default_journal_path`)
    or the ``--state-dir`` given. A ``state`` folder beside the session (or beside its
    parent) is where ``focuswatch demo`` and many users put it.
    """
    from focuswatch.io.journal import JOURNAL_NAME, default_journal_path

    root = Path(session).resolve()
    out = [root.parent / "state" / JOURNAL_NAME, root.parent.parent / "state" / JOURNAL_NAME, default_journal_path()]
    seen: list[Path] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def find_journal(session: str | os.PathLike[str]) -> Path | None:
    """The first journal (:func:`journal_candidates`) that recorded frames of ``session``."""
    for cand in journal_candidates(session):
        if not cand.is_file():
            continue
        try:
            if read_journal_night(cand, session).frames:
                return cand
        except (FocuswatchError, OSError, ValueError, TypeError, KeyError) as exc:
            log.debug("journal %s not usable: %s", cand, exc)
        except Exception as exc:  # sqlite3.Error and friends: a candidate, not the user's choice
            log.debug("journal %s not usable: %s", cand, exc)
    return None


def _af_text(mark: Any) -> str:
    return (f"{mark.source}" + (f", filter {mark.filter_name}" if mark.filter_name else "")
            + (f", position {mark.position}" if mark.position is not None else "")
            + (f", {mark.temp_c:.1f} °C" if mark.temp_c is not None else ""))


def _journal_events(night: JournalNight, times: Mapping[str, float], t0: float | None, t_end: float | None,
                    files_by_key: Mapping[str, str]) -> list[Event]:
    """Autofocus runs and refocus decisions of the session, placed on its time axis.

    A refocus decision sits at its frame. An autofocus sits at its own time when that time
    is on the frames' clock (within an hour of the session); otherwise (an event log
    written with the PC's clock while the frames carry DATE-OBS of another clock, as in the
    demo) it sits where the watcher applied it: between the two frames it came between in
    the journal. Autofocus runs outside the session are left out (a journal holds many nights).
    """
    lo = (t0 - 3600.0) if t0 is not None else -math.inf
    hi = (t_end + 3600.0) if t_end is not None else math.inf
    order = sorted((seq, key) for key, (seq, _) in night.frames.items() if key in times)
    events: list[Event] = []
    for seq, mark in night.autofocus:
        before = [k for s, k in order if s < seq]
        after = [k for s, k in order if s > seq]
        if t0 is not None and lo <= mark.time_s <= hi:
            t_h = (mark.time_s - t0) / 3600.0
            events.append(Event(t_h, "autofocus", _af_text(mark), mark.time_s,
                                files_by_key.get(after[0]) if after else None))
        elif before and after:
            t_h = (times[before[-1]] + times[after[0]]) / 2.0
            events.append(Event(t_h, "autofocus", _af_text(mark) + f" (before {Path(after[0]).name})",
                                None, files_by_key.get(after[0])))
    for key, (seq, d) in night.frames.items():
        if d is not None and d.decision == "refocus" and key in times:
            t_h = (d.time_s - t0) / 3600.0 if (d.time_s is not None and t0 is not None) else times[key]
            events.append(Event(t_h, "refocus decision", f"{Path(d.file).name}: " + "; ".join(d.reasons),
                                d.time_s, files_by_key.get(key)))
    events.sort(key=lambda e: (e.t_h is None, e.t_h or 0.0))
    return events


def _policy_decisions(scan: SessionScan, rig: Rig, policy: Any) -> dict[str, Any]:
    """Without a journal: the refocus policy run over the frames in capture order (``replay``
    without autofocus events; a focuser jump still counts as one). As in ``replay``, each frame
    is diagnosed with the ``[diagnose]`` settings and the night's in-focus seeing witness so far
    (:class:`focuswatch.diagnose.WitnessTracker`; a focuser move starts it again)."""
    from focuswatch.optics import rig_with_header
    from focuswatch.policy import Monitor
    from focuswatch.pipeline import AssessContext, baseline_hfr_px, judge

    mon = Monitor(policy, rig)
    out: dict[str, Any] = {}
    tracker = None
    if scan.diagnoses:
        from focuswatch.diagnose import DiagnoseConfig, WitnessTracker

        tracker = WitnessTracker(rig, scan.diagnose_config or DiagnoseConfig())
    for s in scan.stats:
        rec = scan.records.get(str(s.file))
        if rec is None:
            continue
        frig = rig_with_header(rig, s.meta)
        base = baseline_hfr_px(mon.history, rec.filter_name)
        if base is not None and tracker is not None:  # as the watcher: diagnosed against the policy's baseline
            witness = tracker.witness_for(s.meta.filter_name, rec.time_s, s.meta.focuser_pos, rig=frig)
            rec = judge(s, frig, AssessContext(time_s=rec.time_s, baseline_hfr_px=base, seeing_witness=witness,
                                               diagnose_config=scan.diagnose_config), file=rec.file).record
        if tracker is not None:
            tracker.add(s.meta.filter_name, rec.time_s, s.hfr_px, s.meta.focuser_pos, rig=frig, n_stars=s.n_stars)
        out[str(s.file)] = mon.observe(rec, rig=frig)
    return out


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
            # the scan's own diagnoses (header-merged rig, [diagnose] settings, the night's witness)
            # when every frame has one, so the night's verdict and the per-frame labels agree
            given = [diags.get(str(s.file)) for s in scan.stats]
            kw: dict[str, Any] = {"diagnoses": given} if all(d is not None for d in given) else {}
            if scan.diagnose_config is not None:
                kw["config"] = scan.diagnose_config
            res = night(list(scan.stats), rig, **kw)
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


#: ``journal_path`` value that means: look for the watcher's journal (:func:`find_journal`).
AUTO = "auto"


def build_report(folder: str | os.PathLike[str], *, rig: Rig | None = None, scan: SessionScan | None = None,
                 journal_path: str | os.PathLike[str] | None = AUTO, grade: SessionGrade | None = None,
                 progress: bool = True, policy: Any = None) -> NightReport:
    """Measure (or reuse ``scan``) and assemble the night's :class:`NightReport`.

    The defocus and the decisions are the refocus policy's, never a second estimate: read
    from the watcher's journal (``journal_path``; :data:`AUTO` finds it, ``None`` does not
    look) for the frames it recorded, else computed by running the policy (``policy``, a
    :class:`~focuswatch.policy.PolicyConfig`) over the frames in capture order.
    """
    from focuswatch.optics import rig_with_header
    from focuswatch.policy import PolicyConfig

    scan = scan or scan_session(folder, rig=rig, progress=progress)
    stats = scan.stats
    first_meta = stats[0].meta if stats else None
    full_rig = rig_with_header(rig or Rig(), first_meta)
    if len({_filter_of(s) for s in stats}) > 1:
        # a night across filters: its one zone (the report's band) and the rig it shows are at the
        # rig's own wavelength, not the first frame's filter's; every frame is still read at its
        # filter's (rig_with_header per frame), an unknown filter name at the rig's
        full_rig = full_rig.with_(wavelength_nm=(rig or Rig()).wavelength_nm)
    unavailable: list[str] = []
    ts = [scan.records[str(s.file)].time_s if str(s.file) in scan.records else s.meta.timestamp for s in stats]
    ts = [s.meta.timestamp if s.meta.timestamp is not None else t for s, t in zip(stats, ts)]
    t0 = min((t for t in ts if t is not None), default=None)
    if t0 is not None and max(t for t in ts if t is not None) == t0 and len(stats) > 1:
        ts = [None] * len(stats)  # every frame claims the same time: plot against frame number
        t0 = None
    t_end = max((t for t in ts if t is not None), default=None)
    t_h_of = [((ts[i] - t0) / 3600.0) if (ts[i] is not None and t0 is not None) else float(i)
              for i in range(len(stats))]
    key_of = {str(Path(str(s.file)).resolve()): str(s.file) for s in stats}
    times = {k: t_h_of[i] for i, s in enumerate(stats) for k in [str(Path(str(s.file)).resolve())]}
    # the policy's decisions: the journal's, else the policy run here
    night: JournalNight | None = None
    jp: Path | None = None
    if journal_path == AUTO:
        jp = find_journal(folder)
        if jp is None:
            unavailable.append("journal: no journal of the watcher recorded these frames (looked in "
                               + ", ".join(str(c) for c in journal_candidates(folder))
                               + "); give --journal; defocus and decisions are the policy's, run over the frames")
    elif journal_path is None:
        unavailable.append("journal: not read (--no-journal); defocus and decisions are the policy's, "
                           "run over the frames")
    else:
        jp = Path(journal_path)
        if not jp.is_file():
            unavailable.append(f"journal: {jp} does not exist, so no refocus decisions or autofocus events are shown")
            jp = None
    if jp is not None:
        try:
            night = read_journal_night(jp, folder)
        except Exception as exc:  # sqlite3.Error too: an unreadable journal is said, not fatal
            unavailable.append(f"journal: {jp} could not be read ({exc})")
            night = None
        else:
            unavailable.extend(f"journal: {line}" for line in night.problems)
    events: list[Event] = []
    decisions: dict[str, Any] = {}
    source = None
    if night is not None:
        events = _journal_events(night, times, t0, t_end, key_of)
        decisions = {key_of[k]: d for k, (_, d) in night.frames.items() if k in key_of and d is not None}
        source = "journal"
        missing = sum(1 for s in stats if str(s.file) not in decisions)
        if missing:
            unavailable.append(f"journal: {missing} of {len(stats)} frames are not in {jp} (the watcher was not "
                               "running?): no defocus or decision for them")
    elif stats:
        decisions = _policy_decisions(scan, full_rig, policy or PolicyConfig())
        source = "policy"
        events = [Event(t_h_of[i], "refocus decision", f"{Path(str(s.file)).name}: " + "; ".join(d.reasons),
                        d.time_s, str(s.file))
                  for i, s in enumerate(stats) for d in [decisions.get(str(s.file))]
                  if d is not None and d.decision == "refocus"]
    labels, diagnosis, notes = _night_diagnosis(scan, full_rig) if stats else ([], None, [])
    unavailable += notes
    if full_rig.f_ratio is None or full_rig.effective_pixel_um is None:
        unavailable.append("defocus: the focal ratio or pixel size is unknown (give --rig or header values)")
    points: list[FramePoint] = []
    for i, s in enumerate(stats):
        d = decisions.get(str(s.file))
        points.append(FramePoint(
            str(s.file), _filter_of(s), t_h_of[i], ts[i], s.hfr_px if s.n_stars else None,
            s.fwhm_px if s.n_stars else None, s.eccentricity, int(s.n_stars), s.background_adu,
            s.meta.temperature_c, s.meta.focuser_pos, d.defocus_um if d else None,
            labels[i] if i < len(labels) else None, d.model_defocus_um if d else None,
            d.defocus_cfz if d else None, d.decision if d else None))
    limits = [d.limit_um for d in decisions.values() if d.limit_um is not None]
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
                              max((p.defocus_um for p in pts if p.defocus_um is not None and p.decision != "skip"),
                                  default=None),
                              gl.grade.letter if gl and gl.grade else None))
    if grade is None:
        unavailable.append("master grade: not computed (run 'focuswatch report --grade' or 'focuswatch grade')")
    start = datetime.fromtimestamp(t0, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if t0 is not None else None
    return NightReport(str(folder), start, full_rig.to_dict(), full_rig.cfz_um(), tuple(points), tuple(events),
                       tuple(rows), tuple(scan.left_out), diagnosis, grade, tuple(unavailable), t0, source,
                       str(jp) if night is not None and jp is not None else None,
                       finite_median(limits))
