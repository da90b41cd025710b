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

from focuswatch.io import frames as frames_mod
from focuswatch.io.xisf import _xisf_keywords
from focuswatch.autofocus import AFPoint, AFRun
from focuswatch.errors import FrameError

#: A progress display the caller passes in: takes the items and gives them back (wrapped or not).
Progress = Callable[[Iterable[Any]], Iterable[Any]]

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


#: Where the focuser positions of frame runs come from (``AFRun.position_source``).
POSITION_SOURCES = ("header", "keyword", "list", "frame_order")


def parse_positions(text: str) -> list[float]:
    """Positions given by the user: a file of numbers, or a comma list ("100,150,200").

    A file may hold the numbers separated by commas, spaces or new lines; ``#`` starts a
    comment. Raises :class:`ConfigError` naming what is wrong.
    """
    from focuswatch.errors import ConfigError

    p = Path(text)
    src = f"--positions {text}"
    if p.is_file():
        try:
            body = p.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ConfigError(f"{src}: unreadable ({exc.strerror or exc})") from None
        body = "\n".join(line.split("#", 1)[0] for line in body.splitlines())
    else:
        body = text
    tokens = [t for t in re.split(r"[,;\s]+", body) if t]
    if not tokens:
        raise ConfigError(f"{src}: no positions (give a comma list such as 100,150,200 or a file of numbers)")
    out = []
    for t in tokens:
        v = _num(t)
        if v is None:
            where = "" if p.is_file() else " (and there is no file of that name)"
            raise ConfigError(f"{src}: '{t}' is not a number{where}")
        out.append(v)
    return out


def _header_keyword(path: Path, key: str) -> Any:
    """The raw value of one header keyword of a FITS or XISF frame (None when absent)."""
    if path.name.lower().endswith(frames_mod.XISF_SUFFIXES):
        try:
            return _xisf_keywords(path)[1].get(key)
        except FrameError:
            raise
        except Exception as exc:  # the xisf package raises bare exceptions of many kinds
            raise FrameError(path, f"unreadable XISF: {exc}") from None
    import warnings

    from astropy.io import fits
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, mode="readonly", memmap=False, lazy_load_hdus=True) as hdul:
                for hdu in hdul:
                    if key in hdu.header:
                        return hdu.header[key]
    except (OSError, ValueError, IndexError) as exc:
        raise FrameError(path, f"unreadable FITS header: {exc}") from None
    return None


def _natural_key(name: str) -> list[Any]:
    """File names with their numbers compared as numbers (STAR_2 before STAR_10)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def capture_order(items: Sequence[tuple[Path, Any]]) -> list[tuple[Path, Any]]:
    """Frames in the order they were taken: DATE-OBS when every frame has one, else the file
    names in natural order (file times are not used: copies and downloads rewrite them)."""
    if all(m.timestamp is not None for _, m in items):
        return sorted(items, key=lambda it: (it[1].timestamp, _natural_key(it[0].name)))
    return sorted(items, key=lambda it: _natural_key(it[0].name))


def runs_from_frames(paths: Sequence[Path], *, plate_scale_arcsec_px: float | None = None,
                     progress: Progress | None = None,
                     measure: Callable[..., Any] | None = None,
                     positions: Sequence[float] | None = None,
                     position_key: str | None = None,
                     min_stars: int = 1,
                     measure_frames: Callable[[list[Path]], list[Any]] | None = None,
                     skipped: list[tuple[str, str]] | None = None) -> list[AFRun]:
    """Measure frames taken at several focuser positions and build V-curve runs from them.

    Where each frame's focuser position comes from, first that applies:

    1. ``positions``: one number per frame, in capture order (``--positions``);
    2. ``position_key``: a header keyword the user names (``--position-key``);
    3. FOCPOS/FOCUSPOS in every header;
    4. otherwise the frame order: 1, 2, 3 ... in capture order (:func:`capture_order`). The
       best focus is then a frame number, the slope is per frame, and uneven steps bend the
       curve (the fit still finds the minimum).

    The run carries ``position_source`` (``list``, ``keyword``, ``header`` or
    ``frame_order``). Frames are grouped by filter and split into runs where they are more
    than ``RUN_GAP_MIN`` minutes apart (not for ``list`` and ``frame_order``: the user
    named one run). Several frames at the same position are kept as separate points (the
    fit averages them). HFR is the true half-flux radius (``hfr_kind = "true"``); a frame
    with fewer than ``min_stars`` stars becomes a NaN point (one star is enough: single-star
    autofocus).
    ``progress``, when given, wraps the frames measured here (the CLI passes its progress bar:
    I/O draws nothing itself).
    ``measure_frames(paths) -> [(path, meta, stats)]``, when given, measures instead (several
    workers: :func:`focuswatch.scale.batch.measure_af_frames`; bad frames are then left out).
    With a ``skipped`` list, an unreadable frame is appended to it as ``(file, problem)``
    and left out instead of stopping the run (:mod:`focuswatch.boundary`).
    """
    from focuswatch.errors import ConfigError
    from focuswatch.boundary import frame_boundary

    if measure is None:
        from focuswatch.pipeline import measure_stats as measure
    paths = list(paths)
    if len(paths) < 3:
        raise FrameError(paths[0] if paths else None,
                         f"{len(paths)} frame(s): a V-curve needs frames at 3 or more focuser positions (7-11 usual)")
    headers = []
    for p in paths:
        try:
            headers.append((p, frames_mod.read_header(p)))
        except FrameError as exc:
            if skipped is None:
                raise
            skipped.append((str(p), exc.problem))
    items = capture_order(headers)
    pos: list[float]
    if positions is not None:
        if len(positions) != len(items):
            raise ConfigError(f"--positions: {len(positions)} position(s) for {len(items)} frames "
                              "(give one per frame, in capture order)")
        pos, source = [float(v) for v in positions], "list"
    elif position_key:
        key = position_key.strip().upper()
        pos = []
        for p, _ in items:
            v = _num(_header_keyword(p, key))
            if v is None:
                raise FrameError(p, f"no number in header keyword {key} (--position-key)")
            pos.append(v)
        source = "keyword"
    elif any(m.focuser_pos is not None for _, m in items):
        # the run's frames carry FOCPOS: one without a readable position (missing, or
        # FOCPOS = 'abc') is left out and named, not the whole run thrown back to frame order
        for p, m in items:
            if m.focuser_pos is None:
                problem = ("no focuser position (FOCPOS/FOCUSPOS missing or not a number) while the other "
                           "frames have one; left out of the V-curve")
                if skipped is None:
                    raise FrameError(p, problem)
                skipped.append((str(p), problem))
        items = [(p, m) for p, m in items if m.focuser_pos is not None]
        pos, source = [float(m.focuser_pos) for _, m in items], "header"
    else:
        pos, source = [float(i + 1) for i in range(len(items))], "frame_order"
    it: Iterable = list(zip(items, pos)) if measure_frames is None else []
    if measure_frames is None and progress is not None:
        it = progress(it)
    measured = []
    for (p, _), x in it:
        try:
            with frame_boundary(p):
                frame = frames_mod.load(p)
                stats = measure(frame, plate_scale_arcsec_px=plate_scale_arcsec_px)
        except FrameError as exc:
            if skipped is None:
                raise
            skipped.append((str(p), exc.problem))
            continue
        measured.append((p, frame.meta, stats, x))
    if measure_frames is not None:
        x_of = {p: x for (p, _), x in zip(items, pos)}
        measured = [(p, meta, stats, x_of[p]) for p, meta, stats in measure_frames([p for p, _ in items])]
    if source in ("list", "frame_order"):
        groups = [measured]
    else:
        by_path = {m[0]: m for m in measured}
        groups = [[by_path[g[0]] for g in grp] for grp in _split_runs([(m[0], m[1], m[2]) for m in measured])]
    order_note = {
        "list": "positions from --positions, in capture order",
        "keyword": f"positions from header keyword {position_key.strip().upper() if position_key else ''}",
        "header": "positions from FOCPOS/FOCUSPOS",
        "frame_order": "no focuser position in the headers: positions are the frame numbers in capture order "
                       "(DATE-OBS, else file name); give --positions or --position-key for focuser steps",
    }[source]
    runs = []
    for group in (g for g in groups if g):  # every frame of a group may have been unreadable
        pts = []
        temps = [m.temperature_c for _, m, _, _ in group if m.temperature_c is not None]
        steps = [m.focuser_step_um for _, m, _, _ in group if m.focuser_step_um]
        for p, m, s, x in group:
            ok = s.n_stars >= max(1, min_stars) and s.hfr_px
            hfr = s.hfr_px if ok else float("nan")
            err = getattr(s, "hfr_err_px", None) if ok else None
            pts.append(AFPoint(position_steps=float(x), hfr_px=float(hfr), n_stars=int(s.n_stars),
                               error_px=float(err) if err is not None else None))
        first = group[0]
        src = str(first[0].parent) if len(group) > 1 else str(first[0])
        notes = (f"{len(group)} frames: {group[0][0].name} ... {group[-1][0].name}", order_note)
        runs.append(AFRun(
            points=tuple(pts), source=src, timestamp=first[1].date_obs, filter_name=first[1].filter_name,
            temp_c=float(np.median(temps)) if temps else None, hfr_kind="true", method="frames",
            fitting=None, focuser_step_um=float(np.median(steps)) if steps and source != "frame_order" else None,
            notes=notes, position_source=source))
    return runs


def load_runs(paths: Sequence[str | Path], rig: Any = None, *, progress: Progress | None = None,
              positions: Sequence[float] | str | None = None, position_key: str | None = None,
              measure_frames: Callable[..., list[Any]] | None = None
              ) -> tuple[list[AFRun], list[tuple[str, str]], Any]:
    """Everything ``focuswatch af`` reads: reports and frames named or found in folders.

    A report named on the command line must be readable (else :class:`FrameError`); bad
    reports found in a folder are skipped and returned as ``(file, problem)``. Returns
    ``(runs, skipped, rig)`` where the rig's gaps (focal length, pixel size, focuser step
    size) are filled from the first frame's header, if frames were read. ``positions`` (a
    list, or the text of ``--positions``) and ``position_key`` say where the frames'
    focuser positions come from, and ``progress`` wraps the frames measured in this process
    (:func:`runs_from_frames`).
    """
    from focuswatch.optics import rig_with_header
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
        if isinstance(positions, str):
            positions = parse_positions(positions)
        runs += runs_from_frames(images, plate_scale_arcsec_px=rig.plate_scale_arcsec_px, progress=progress,
                                 positions=positions, position_key=position_key, skipped=skipped,
                                 measure_frames=None if measure_frames is None else
                                 (lambda ps: measure_frames(ps, rig.plate_scale_arcsec_px)))
    if not runs:
        first = skipped[0] if skipped else ("", "nothing readable")
        raise FrameError(Path(first[0]) if first[0] else None,
                         f"no readable autofocus run ({len(skipped)} report(s) skipped; first: {first[1]})")
    return runs, skipped, rig
