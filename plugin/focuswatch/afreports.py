"""Reading autofocus runs: NINA's JSON reports and folders of frames at several focuser positions.

I/O only: files are opened read-only and turned into :class:`~focuswatch.autofocus.AFRun`
values; the fitting and judging live in :mod:`focuswatch.autofocus`.

NINA writes one JSON report per autofocus run to
``%LOCALAPPDATA%\\NINA\\AutoFocus\\yyyy-MM-dd--HH-mm-ss--<profile>.json`` (also for runs
that later fail validation). Its fields (NINA 3.x; Json.NET writes NaN as the *string*
``"NaN"``)::

    Version, Filter, AutoFocuserName, StarDetectorName, Timestamp (local time), Temperature,
    Method, Fitting, InitialFocusPoint / CalculatedFocusPoint / PreviousFocusPoint
    ({Position, Value, Error}), MeasurePoints [{Position, Value, Error}], Intersections,
    Fittings, RSquares {Quadratic, Hyperbolic, LeftTrend, RightTrend},
    BacklashCompensation, Duration ("hh:mm:ss.fffffff")

Hocus Focus adds ``FinalHFR`` and ``Region`` (and its options). The HFR values in a NINA
report follow NINA's definition (flux-weighted mean radius), so runs read here carry
``hfr_kind = "nina"``; runs built from frames carry focuswatch's true half-flux radius
(``hfr_kind = "true"``).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from focuswatch import frames as frames_mod
from focuswatch.autofocus import AFPoint, AFRun
from focuswatch.errors import FrameError

#: Frames of one filter further apart than this (minutes) belong to different runs.
RUN_GAP_MIN = 15.0


def _num(v: Any) -> float | None:
    """A number from a NINA field: floats, ints, "NaN"/"Infinity"/numeric strings; None if absent."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        try:
            return float(s)  # float() understands "NaN", "Infinity", "-Infinity"
        except ValueError:
            return None
    return None


def _finite(v: Any) -> float | None:
    x = _num(v)
    return x if x is not None and math.isfinite(x) else None


def _duration_s(v: Any) -> float | None:
    """Seconds from a .NET TimeSpan string ``[d.]hh:mm:ss[.fffffff]`` or a number."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if not isinstance(v, str):
        return None
    m = re.fullmatch(r"\s*(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)\s*", v)
    if not m:
        return None
    d, h, mi, s = m.groups()
    return (int(d or 0) * 24 + int(h)) * 3600 + int(mi) * 60 + float(s)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v.strip() or None
    return json.dumps(v, separators=(",", ":"), sort_keys=True)


def _point(d: Any) -> tuple[float | None, float | None, float | None]:
    if not isinstance(d, dict):
        return None, None, None
    return _num(d.get("Position")), _num(d.get("Value")), _num(d.get("Error"))


def _unwrap_advanced_api(data: dict) -> dict:
    """The report inside an Advanced API answer, or ``data`` itself when it is a bare report.

    ``GET /v2/api/equipment/focuser/last-af`` (ninaAPI WebService/V2/Equipment/Focuser.cs)
    answers ``{"Response": <report>, "Error", "StatusCode", "Success", "Type"}``, and
    ``{"Success": false, "Error": "No AF available", ...}`` when there is none.
    """
    if "MeasurePoints" in data or "Success" not in data or "Response" not in data:
        return data
    if data.get("Success") is not True or not isinstance(data.get("Response"), dict):
        raise ValueError(f"the Advanced API has no autofocus report: {data.get('Error') or 'no error text'}")
    return data["Response"]


def parse_nina_report(data: Any, source: str | None = None) -> AFRun:
    """Turn a decoded NINA autofocus report into an :class:`AFRun` (``ValueError`` if it is not one).

    Points whose HFR is NaN (no stars found) are kept with ``hfr_px = nan`` so the judgement
    can count them; a ``Value`` of 0 is NINA's "nothing measured" and becomes NaN as well.
    """
    if not isinstance(data, dict):
        raise ValueError("not a NINA autofocus report (the JSON is not an object)")
    data = _unwrap_advanced_api(data)
    mp = data.get("MeasurePoints")
    if not isinstance(mp, list):
        raise ValueError("not a NINA autofocus report (no MeasurePoints list)")
    points = []
    notes = []
    for i, p in enumerate(mp):
        pos, val, err = _point(p)
        if pos is None or not math.isfinite(pos):
            notes.append(f"measure point {i + 1} has no focuser position; left out")
            continue
        hfr = val if (val is not None and math.isfinite(val) and val > 0) else float("nan")
        points.append(AFPoint(position_steps=pos, hfr_px=hfr,
                              error_px=err if err is not None and math.isfinite(err) else None))
    calc_pos, calc_val, _ = _point(data.get("CalculatedFocusPoint"))
    prev_pos, _, _ = _point(data.get("PreviousFocusPoint"))
    init_pos, _, _ = _point(data.get("InitialFocusPoint"))
    rsq = data.get("RSquares") if isinstance(data.get("RSquares"), dict) else {}
    fitting = _text(data.get("Fitting"))
    r2 = _finite(rsq.get("Hyperbolic"))
    if fitting and "PARABOLIC" in fitting.upper():
        r2 = _finite(rsq.get("Quadratic"))
    elif fitting and fitting.upper() == "TRENDLINES":
        lt, rt = _finite(rsq.get("LeftTrend")), _finite(rsq.get("RightTrend"))
        r2 = min(lt, rt) if lt is not None and rt is not None else None
    temp = _finite(data.get("Temperature"))
    if data.get("Temperature") is not None and temp is None:
        notes.append("no temperature in the report (NaN)")
    final = _finite(data.get("FinalHFR"))
    return AFRun(
        points=tuple(points), source=source, timestamp=_text(data.get("Timestamp")),
        filter_name=_text(data.get("Filter")), temp_c=temp, hfr_kind="nina",
        method=_text(data.get("Method")), fitting=fitting,
        reported_position_steps=_finite(calc_pos), reported_hfr_px=_finite(calc_val), reported_r_squared=r2,
        previous_position_steps=_finite(prev_pos), initial_position_steps=_finite(init_pos),
        final_hfr_px=final, region=_text(data.get("Region")),
        focuser_name=_text(data.get("AutoFocuserName")), star_detector=_text(data.get("StarDetectorName")),
        duration_s=_duration_s(data.get("Duration")), notes=tuple(notes))


def read_nina_report(path: str | Path) -> AFRun:
    """Read one NINA autofocus report; :class:`FrameError` naming the file if it is not one."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FrameError(p, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FrameError(p, f"cannot read the report ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FrameError(p, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                            "is it a NINA autofocus report?") from None
    try:
        return parse_nina_report(data, str(p))
    except ValueError as exc:
        raise FrameError(p, str(exc)) from None


def collect(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """Split command-line paths into NINA reports (``*.json``) and frames; folders are listed.

    A folder contributes its ``*.json`` files and its frames (not recursive: NINA's
    AutoFocus folder is flat). Raises :class:`FrameError` for a path that does not exist
    or a file that is neither.
    """
    reports: list[Path] = []
    images: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in sorted(p.iterdir()):
                if child.is_file() and child.suffix.lower() == ".json":
                    reports.append(child)
                elif child.is_file() and frames_mod.is_image_file(child):
                    images.append(child)
        elif p.is_file():
            if p.suffix.lower() == ".json":
                reports.append(p)
            elif frames_mod.is_image_file(p):
                images.append(p)
            else:
                raise FrameError(p, "neither a NINA autofocus report (.json) nor a FITS/XISF frame")
        else:
            raise FrameError(p, "no such file or folder")
    return reports, images


def read_reports(paths: Iterable[Path], *, strict: bool = True) -> tuple[list[AFRun], list[tuple[str, str]]]:
    """Read many reports. ``strict``: the first bad one raises; else it is skipped and listed.

    Returns the runs (in file-name order, which is NINA's time order) and
    ``(file, problem)`` pairs for the skipped ones.
    """
    runs, skipped = [], []
    for p in paths:
        try:
            runs.append(read_nina_report(p))
        except FrameError as exc:
            if strict:
                raise
            skipped.append((str(p), exc.problem))
    return runs, skipped


def _split_runs(items: list[tuple[Path, Any, Any]]) -> list[list[tuple[Path, Any, Any]]]:
    """Group (path, meta, stats) by filter, then split where frames are > RUN_GAP_MIN apart."""
    by_filter: dict[str, list[tuple[Path, Any, Any]]] = {}
    for it in items:
        by_filter.setdefault(it[1].filter_name or "", []).append(it)
    groups = []
    for _, its in sorted(by_filter.items()):
        its.sort(key=lambda it: frames_mod.frame_order_key(it[0], it[1]))
        cur: list[tuple[Path, Any, Any]] = []
        last = None
        for it in its:
            ts = it[1].timestamp
            if cur and ts is not None and last is not None and (ts - last) > RUN_GAP_MIN * 60:
                groups.append(cur)
                cur = []
            cur.append(it)
            last = ts if ts is not None else last
        if cur:
            groups.append(cur)
    return groups


def runs_from_frames(paths: Sequence[Path], *, plate_scale_arcsec_px: float | None = None,
                     progress: bool = False,
                     measure: Callable[..., Any] | None = None,
                     skipped: list[tuple[str, str]] | None = None) -> list[AFRun]:
    """Measure frames taken at several focuser positions and build V-curve runs from them.

    Every frame needs a focuser position (FOCPOS/FOCUSPOS); without one a
    :class:`FrameError` names the frame. Frames are grouped by filter and split into runs
    where they are more than ``RUN_GAP_MIN`` minutes apart. Several frames at the same
    position are kept as separate points (the fit averages them). HFR is the true
    half-flux radius (``hfr_kind = "true"``); a frame without stars becomes a NaN point.
    With a ``skipped`` list, an unreadable frame is appended to it as ``(file, problem)``
    and left out instead of stopping the run (:mod:`focuswatch.boundary`).
    """
    from focuswatch.boundary import frame_boundary

    if measure is None:
        from focuswatch import stars
        measure = stars.measure
    paths = list(paths)
    if len(paths) < 3:
        raise FrameError(paths[0] if paths else None,
                         f"{len(paths)} frame(s): a V-curve needs frames at 3 or more focuser positions (7-11 usual)")
    items = []
    no_pos = []
    for p in paths:
        try:
            meta = frames_mod.read_header(p)
        except FrameError as exc:
            if skipped is None:
                raise
            skipped.append((str(p), exc.problem))
            continue
        if meta.focuser_pos is None:
            no_pos.append(p)
        items.append((p, meta))
    if no_pos:
        more = f" (and {len(no_pos) - 1} more)" if len(no_pos) > 1 else ""
        raise FrameError(no_pos[0], "no focuser position in the header (FOCPOS/FOCUSPOS)" + more +
                         ": a V-curve needs the position of every frame")
    it: Iterable = items
    if progress:
        from tqdm import tqdm
        it = tqdm(items, desc="measuring", unit="frame", leave=False)
    measured = []
    for p, meta in it:
        try:
            with frame_boundary(p):
                frame = frames_mod.load(p)
                stats = measure(frame, plate_scale_arcsec_px=plate_scale_arcsec_px)
        except FrameError as exc:
            if skipped is None:
                raise
            skipped.append((str(p), exc.problem))
            continue
        measured.append((p, frame.meta, stats))
    runs = []
    for group in _split_runs(measured):
        pts = []
        temps = [m.temperature_c for _, m, _ in group if m.temperature_c is not None]
        steps = [m.focuser_step_um for _, m, _ in group if m.focuser_step_um]
        for p, m, s in group:
            hfr = s.hfr_px if (s.n_stars and s.hfr_px) else float("nan")
            pts.append(AFPoint(position_steps=float(m.focuser_pos), hfr_px=float(hfr), n_stars=int(s.n_stars)))
        first = group[0]
        src = str(first[0].parent) if len(group) > 1 else str(first[0])
        notes = (f"{len(group)} frames: {group[0][0].name} ... {group[-1][0].name}",)
        runs.append(AFRun(
            points=tuple(pts), source=src, timestamp=first[1].date_obs, filter_name=first[1].filter_name,
            temp_c=float(np.median(temps)) if temps else None, hfr_kind="true", method="frames",
            fitting=None, focuser_step_um=float(np.median(steps)) if steps else None, notes=notes))
    return runs


def load_runs(paths: Sequence[str | Path], rig: Any = None, *, progress: bool = False
              ) -> tuple[list[AFRun], list[tuple[str, str]], Any]:
    """Everything ``focuswatch af`` reads: reports and frames named or found in folders.

    A report named on the command line must be readable (else :class:`FrameError`); bad
    reports found in a folder are skipped and returned as ``(file, problem)``. Returns
    ``(runs, skipped, rig)`` where the rig's gaps (focal length, pixel size, focuser step
    size) are filled from the first frame's header, if frames were read.
    """
    from focuswatch.config import rig_with_header
    from focuswatch.optics import Rig

    rig = rig or Rig()
    strict = all(not Path(p).is_dir() for p in paths)
    reports, images = collect(paths)
    if not reports and not images:
        raise FrameError(Path(paths[0]) if paths else None,
                         "no NINA autofocus reports (*.json) or frames (FITS/XISF) found")
    runs, skipped = read_reports(reports, strict=strict)
    if images:
        for img in images:  # the first readable header fills the rig's gaps
            try:
                rig = rig_with_header(rig, frames_mod.read_header(img))
                break
            except FrameError:
                continue
        runs += runs_from_frames(images, plate_scale_arcsec_px=rig.plate_scale_arcsec_px, progress=progress,
                                 skipped=skipped)
    if not runs:
        first = skipped[0] if skipped else ("", "nothing readable")
        raise FrameError(Path(first[0]) if first[0] else None,
                         f"no readable autofocus run ({len(skipped)} report(s) skipped; first: {first[1]})")
    return runs, skipped, rig
