"""An index of every light frame under a folder, measured once, kept in SQLite.

I/O: walks the folder (read-only: the frames are never written, moved or locked), measures
new and changed files on the workers of :mod:`focuswatch.scale.parallel`, stores one row per
file in an SQLite index (WAL mode) and exports it as CSV (standard library) or Parquet
(``pyarrow``, the ``parquet`` extra).

Incremental and interrupt-safe:

- a file is measured again only when its (path, size, mtime) changed; its row is keyed by
  the absolute path (``INSERT OR REPLACE``), so it can never be counted twice;
- results are committed every ``commit_every_s`` seconds as they arrive: a kill (even
  ``kill -9``) loses at most the uncommitted few, which the next run measures again; SQLite's
  journal keeps the index itself whole;
- frames a worker could not finish (it died, the scheduler went away, Ctrl-C) get no row, so
  the next run picks them up; unreadable frames get a ``bad`` row with the reason and are not
  retried until the file changes (or ``retry_bad``);
- a file that vanishes between the listing and its read (deleted, or moved by the capture
  program or the user) is named in one line and counted as left undone; while its folder is
  still there its row, if it had one, is dropped, so a frame moved elsewhere under the root is
  counted once, at its new place (a folder gone with it, as an unmounted share, keeps its rows).

Grouping, from headers first and folder/file names second (NINA's default pattern
``$$DATEMINUS12$$\\$$IMAGETYPE$$\\$$DATETIME$$_$$FILTER$$_$$SENSORTEMP$$_$$EXPOSURETIME$$s_$$FRAMENR$$``):

======  =====================================================================================
night   local date at which the night began (noon to noon): DATE-LOC − 12 h; else NINA's
        ``DATETIME`` in the file name (local) − 12 h; else a ``YYYY-MM-DD`` folder
        (``$$DATEMINUS12$$``); else DATE-OBS (UTC) + ``utc_offset_h`` − 12 h
filter  FILTER; else the ``$$FILTER$$`` token of a NINA file name
target  OBJECT
rig     TELESCOP · INSTRUME · FOCALLEN
type    IMAGETYP; else an ``$$IMAGETYPE$$`` folder (LIGHT, DARK, FLAT, BIAS, DARKFLAT)
======  =====================================================================================
"""
from __future__ import annotations

import csv
import logging
import math
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from focuswatch.errors import ConfigError, FocuswatchError, FrameError
from focuswatch.optics import Rig

log = logging.getLogger("focuswatch.scale.archive")

SCHEMA_VERSION = 1

#: Index columns: name -> SQLite type. ``status`` is ``measured``, ``bad`` or ``not_light``.
COLUMNS: dict[str, str] = {
    "path": "TEXT PRIMARY KEY", "size_bytes": "INTEGER", "mtime_ns": "INTEGER", "status": "TEXT",
    "problem": "TEXT", "indexed_utc": "TEXT", "date_obs": "TEXT", "timestamp": "REAL", "night": "TEXT",
    "rig": "TEXT", "telescope": "TEXT", "camera": "TEXT", "focal_length_mm": "REAL", "aperture_mm": "REAL",
    "f_ratio": "REAL", "pixel_um": "REAL", "filter": "TEXT", "target": "TEXT", "image_type": "TEXT",
    "exposure_s": "REAL", "focuser_pos": "INTEGER", "focuser_temp_c": "REAL", "focuser_step_um": "REAL",
    "n_stars": "INTEGER", "hfr_px": "REAL", "hfr_nina_px": "REAL", "fwhm_px": "REAL", "eccentricity": "REAL",
    "profile_ratio": "REAL", "background_adu": "REAL", "noise_adu": "REAL", "plate_scale_arcsec_px": "REAL",
    "hfr_arcsec": "REAL", "fwhm_arcsec": "REAL",
}

IMAGE_TYPE_FOLDERS = {"LIGHT": "LIGHT", "LIGHTS": "LIGHT", "DARK": "DARK", "DARKS": "DARK", "FLAT": "FLAT",
                      "FLATS": "FLAT", "BIAS": "BIAS", "BIASES": "BIAS", "DARKFLAT": "DARKFLAT",
                      "DARKFLATS": "DARKFLAT", "SNAPSHOT": "SNAPSHOT"}
#: NINA's ``$$DATETIME$$`` (local time, ``yyyy-MM-dd_HH-mm-ss``) then ``_$$FILTER$$_`` at the start of a name.
NINA_NAME = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})_(?P<time>\d{2}-\d{2}-\d{2})_(?P<filter>[^_]+)_")
NIGHT_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --------------------------------------------------------------------------- grouping (pure)

def _night_from_local(local: datetime) -> str:
    return (local - timedelta(hours=12)).date().isoformat()


def night_of(path: Path, cards: Mapping[str, Any], timestamp: float | None,
             utc_offset_h: float | None) -> str | None:
    """The night a frame belongs to (see the module table); ``None`` without any date."""
    loc = cards.get("DATE-LOC")
    if isinstance(loc, str) and loc.strip():
        try:
            return _night_from_local(datetime.fromisoformat(loc.strip().replace("Z", "")[:26]))
        except ValueError:
            pass
    m = NINA_NAME.match(path.name)
    if m:
        try:
            return _night_from_local(datetime.fromisoformat(f"{m['date']}T{m['time'].replace('-', ':')}"))
        except ValueError:
            pass
    for part in reversed(path.parent.parts[-3:]):
        if NIGHT_FOLDER.match(part):
            return part
    if timestamp is None:
        return None
    utc = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    offset = utc.astimezone().utcoffset() if utc_offset_h is None else timedelta(hours=utc_offset_h)
    return _night_from_local(utc.replace(tzinfo=None) + offset)


def image_type_of(path: Path, header_type: str | None) -> str:
    """IMAGETYP, else an ``$$IMAGETYPE$$`` folder name, else LIGHT (as :attr:`FrameMeta.is_light`)."""
    if header_type and header_type.strip():
        return header_type.strip().upper()
    for part in reversed(path.parent.parts[-3:]):
        t = IMAGE_TYPE_FOLDERS.get(part.upper())
        if t:
            return t
    return "LIGHT"


def rig_key(telescope: str | None, camera: str | None, focal_length_mm: float | None) -> str:
    """``TELESCOP · INSTRUME · FOCALLEN mm`` (``?`` for a missing part)."""
    focal = f"{focal_length_mm:.0f} mm" if focal_length_mm else "? mm"
    return f"{telescope or '?'} · {camera or '?'} · {focal}"


# --------------------------------------------------------------------------- per-frame work (in a worker)

def _raw_cards(path: Path, max_blocks: int = 200) -> dict[str, Any]:
    """The primary FITS header as keyword -> value (strings unquoted), without astropy.

    Why: the archive must skip thousands of darks and flats quickly; their header says so.
    """
    out: dict[str, Any] = {}
    with open(path, "rb") as fh:
        for _ in range(max_blocks):
            block = fh.read(2880)
            if len(block) < 2880:
                break
            for i in range(0, 2880, 80):
                card = block[i:i + 80].decode("ascii", errors="replace")
                key = card[:8].strip()
                if key == "END":
                    return out
                if card[8:10] != "= " or not key or key in out:
                    continue
                raw = card[10:].strip()
                if raw.startswith("'"):
                    m = re.match(r"'((?:[^']|'')*)'", raw)
                    out[key] = m.group(1).replace("''", "'").rstrip() if m else raw
                else:
                    val = raw.split("/", 1)[0].strip()
                    out[key] = {"T": True, "F": False}.get(val, val)
    return out


def index_one(path: Path, rig: Rig | None = None, utc_offset_h: float | None = None) -> dict[str, Any]:
    """One row of the index for the frame at ``path`` (run in a worker).

    Calibration frames are recognised from the header (or their folder) and not measured.
    Raises :class:`FrameError` for an unreadable frame (the caller stores a ``bad`` row).
    """
    from focuswatch.io import frames
    from focuswatch.pipeline import AssessContext, assess

    st_ = path.stat()
    is_fits = not path.name.lower().endswith(frames.XISF_SUFFIXES)
    try:
        cards = _raw_cards(path) if is_fits else {}
    except OSError as exc:
        raise FrameError(path, f"cannot read ({exc.strerror or exc})") from None
    if is_fits and cards and cards.get("SIMPLE") is not True:
        raise FrameError(path, "not a FITS file (no SIMPLE = T at the start)")
    meta = frames.meta_from_header(cards) if cards and str(cards.get("NAXIS", "0")) != "0" else frames.read_header(path)
    row: dict[str, Any] = {"path": str(path), "size_bytes": st_.st_size, "mtime_ns": st_.st_mtime_ns}
    image_type = image_type_of(path, meta.image_type)
    row.update(_meta_columns(path, meta, cards, utc_offset_h, image_type))
    if image_type not in ("LIGHT", "LIGHTFRAME", "OBJECT", "SCIENCE"):
        row["status"] = "not_light"
        return row
    frame = frames.load(path)
    s = assess(frame, rig, AssessContext(diagnose=False)).stats  # the one frame pipeline, as `measure`
    row.update({"status": "measured", "problem": s.reason, "n_stars": s.n_stars, "hfr_px": s.hfr_px,
                "hfr_nina_px": s.hfr_nina_px, "fwhm_px": s.fwhm_px, "eccentricity": s.eccentricity,
                "profile_ratio": s.profile_ratio, "background_adu": s.background_adu, "noise_adu": s.noise_adu,
                "plate_scale_arcsec_px": s.plate_scale_arcsec_px, "hfr_arcsec": s.hfr_arcsec,
                "fwhm_arcsec": s.fwhm_arcsec})
    return row


def _meta_columns(path: Path, meta: Any, cards: Mapping[str, Any], utc_offset_h: float | None,
                  image_type: str) -> dict[str, Any]:
    filt = meta.filter_name
    if not filt:
        m = NINA_NAME.match(path.name)
        filt = m["filter"] if m else None
    f_ratio = meta.f_ratio or (meta.focal_length_mm / meta.aperture_mm
                               if meta.focal_length_mm and meta.aperture_mm else None)
    return {"date_obs": meta.date_obs, "timestamp": meta.timestamp,
            "night": night_of(path, cards, meta.timestamp, utc_offset_h),
            "rig": rig_key(meta.telescope, meta.camera, meta.focal_length_mm), "telescope": meta.telescope,
            "camera": meta.camera, "focal_length_mm": meta.focal_length_mm, "aperture_mm": meta.aperture_mm,
            "f_ratio": f_ratio, "pixel_um": meta.pixel_um, "filter": filt, "target": meta.object_name,
            "image_type": image_type, "exposure_s": meta.exposure_s, "focuser_pos": meta.focuser_pos,
            "focuser_temp_c": meta.temperature_c, "focuser_step_um": meta.focuser_step_um}


# --------------------------------------------------------------------------- the index

def default_index_path() -> Path:
    """``archive.sqlite`` in the per-user state folder (one index can hold many roots)."""
    from focuswatch.io.statefile import default_state_dir

    return default_state_dir() / "archive.sqlite"


class ArchiveIndex:
    """The SQLite index. Use as a context manager; rows are plain dicts."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=30.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            cols = ", ".join(f'"{k}" {v}' for k, v in COLUMNS.items())
            self.db.execute(f"CREATE TABLE IF NOT EXISTS frames ({cols})")
            self.db.execute("CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("INSERT OR IGNORE INTO info VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            have = {r[1] for r in self.db.execute("PRAGMA table_info(frames)")}
            for k, v in COLUMNS.items():  # an index from an older focuswatch gains the new columns
                if k not in have:
                    self.db.execute(f'ALTER TABLE frames ADD COLUMN "{k}" {v.replace(" PRIMARY KEY", "")}')
            self.db.commit()
        except sqlite3.DatabaseError as exc:
            raise FocuswatchError(f"{self.path}: not a usable archive index ({exc}); give another --index") from None

    def __enter__(self) -> "ArchiveIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.db.commit()
        finally:
            self.db.close()

    def known(self) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, status) of every indexed file."""
        return {p: (s, m, st) for p, s, m, st in self.db.execute(
            "SELECT path, size_bytes, mtime_ns, status FROM frames")}

    def forget(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Drop the rows of files that are gone (deleted or moved away), and commit."""
        self.db.executemany("DELETE FROM frames WHERE path = ?", [(str(p),) for p in paths])
        self.db.commit()

    def put(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert or replace rows (keyed by path) and commit."""
        names = list(COLUMNS)
        sql = f"INSERT OR REPLACE INTO frames ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        self.db.executemany(sql, [tuple(_sql(r.get(k)) for k in names) for r in rows])
        self.db.commit()

    def rows(self, under: str | os.PathLike[str] | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Rows whose path lies under ``under`` (all when ``None``), optionally of one status."""
        self.db.row_factory = sqlite3.Row
        try:
            sql, args = "SELECT * FROM frames", []
            where = []
            if under is not None:
                prefix = str(Path(under).resolve())
                where.append("(path = ? OR substr(path, 1, ?) = ?)")
                args += [prefix, len(prefix) + 1, prefix.rstrip(os.sep) + os.sep]
            if status is not None:
                where.append("status = ?")
                args.append(status)
            if where:
                sql += " WHERE " + " AND ".join(where)
            return [dict(r) for r in self.db.execute(sql + " ORDER BY timestamp, path", args)]
        finally:
            self.db.row_factory = None


def _sql(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item") and callable(v.item):
        return v.item()
    return v


# --------------------------------------------------------------------------- scanning a root

def find_images(root: Path) -> list[Path]:
    """Every FITS/XISF file under ``root`` (hidden files and folders skipped), sorted:
    :func:`focuswatch.render.report.find_frames`, the one folder walk of the batch commands."""
    from focuswatch.scale.session import find_frames

    return find_frames(root)


@dataclass
class IndexRun:
    """What one ``archive`` run did."""

    root: str
    index: str
    n_files: int = 0
    n_unchanged: int = 0
    n_measured: int = 0
    n_not_light: int = 0
    n_bad: int = 0
    n_lost: int = 0
    lost: list[tuple[str, str]] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0
    engine: str = ""
    interrupted: bool = False

    @property
    def frames_per_s(self) -> float | None:
        n = self.n_measured + self.n_not_light + self.n_bad
        return n / self.elapsed_s if self.elapsed_s > 0 and n else None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "archive-run", "schema": SCHEMA_VERSION, "root": self.root, "index": self.index,
                "n_files": self.n_files, "n_unchanged": self.n_unchanged, "n_measured": self.n_measured,
                "n_not_light": self.n_not_light, "n_bad": self.n_bad, "n_lost": self.n_lost,
                "left_undone": [{"file": f, "problem": p} for f, p in self.lost],
                "unreadable": [{"file": f, "problem": p} for f, p in self.bad],
                "elapsed_s": self.elapsed_s, "frames_per_s": self.frames_per_s, "engine": self.engine,
                "interrupted": self.interrupted}


def update_index(root: str | os.PathLike[str], index: ArchiveIndex, *, rig: Rig | None = None,
                 runner: Any = None, utc_offset_h: float | None = None, retry_bad: bool = False,
                 progress: bool = False, commit_every_s: float = 0.5,
                 on_problem: Callable[[Any], None] | None = None) -> IndexRun:
    """Measure every new or changed image under ``root`` into ``index``.

    Rows are committed as results arrive (at most every ``commit_every_s``); on Ctrl-C what
    is done so far is committed and ``interrupted`` is set.
    """
    from focuswatch.scale.parallel import BAD, LOST, OK, Outcome, iter_frames
    from focuswatch.render.progress import progress as progress_bar

    top = Path(root)
    if not top.is_dir():
        raise ConfigError(f"{top}: not a folder")
    top = top.resolve()
    run = IndexRun(str(top), str(index.path), engine=getattr(runner, "describe", lambda: "")())
    t0 = time.monotonic()
    files = find_images(top)
    run.n_files = len(files)
    known = index.known()
    todo = []
    gone: list[Path] = []

    def left_undone(o: Outcome) -> None:
        run.n_lost += 1
        run.lost.append((str(o.path), o.problem or ""))
        if on_problem is not None:
            on_problem(o)

    for p in files:
        try:
            st = p.stat()
        except OSError as exc:
            if _vanished_alone(p):
                gone.append(p)
            left_undone(Outcome(-1, p, LOST, None, _unlisted_problem(p, exc, "before it was read")))
            continue
        k = known.get(str(p))
        if k and k[0] == st.st_size and k[1] == st.st_mtime_ns and not (retry_bad and k[2] == "bad"):
            run.n_unchanged += 1
        else:
            todo.append(p)
    n_listing_lost = run.n_lost
    pending: list[dict[str, Any]] = []
    last = time.monotonic()
    try:
        for o in progress_bar(iter_frames(index_one, todo, args=(rig, utc_offset_h), runner=runner),
                              desc="indexing", enabled=progress, total=len(todo)):
            if o.status == OK:
                pending.append(o.value)
                if o.value.get("status") == "not_light":
                    run.n_not_light += 1
                else:
                    run.n_measured += 1
            elif o.status == BAD and not os.path.lexists(o.path):  # vanished while read: not a bad frame
                if _vanished_alone(o.path):
                    gone.append(o.path)
                left_undone(Outcome(o.index, o.path, LOST, None, _unlisted_problem(o.path, None, "while it was read")))
            elif o.status == BAD:
                run.n_bad += 1
                run.bad.append((str(o.path), o.problem or ""))
                pending.append(_bad_row(o.path, o.problem))
                if on_problem is not None:
                    on_problem(o)
            elif o.status == LOST:
                left_undone(o)
            now = time.monotonic()
            if pending and now - last >= commit_every_s:
                index.put(pending)
                pending, last = [], now
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        if pending:
            index.put(pending)
        if gone:
            index.forget(gone)
        run.elapsed_s = time.monotonic() - t0
    done = run.n_measured + run.n_not_light + run.n_bad + run.n_lost - n_listing_lost
    if run.interrupted and done < len(todo):
        run.n_lost += len(todo) - done
        run.lost.append(("", f"{len(todo) - done} frame(s) not reached before the interruption"))
    return run


def _vanished_alone(p: Path) -> bool:
    """The file is gone but its folder is still there: deleted or moved by a person or a
    program, so its row goes. A folder gone with it (an unmounted NAS, a night folder moved
    away) keeps its rows: years of measurements are not erased by a share that dropped."""
    return not os.path.lexists(p) and p.parent.is_dir()


def _unlisted_problem(path: Path, exc: OSError | None, when: str) -> str:
    """Why a listed file was not measured: it vanished (deleted or moved), or its stat failed."""
    if exc is None or not os.path.lexists(path):
        return f"vanished {when} (deleted or moved since the folder was listed); not in the index"
    return f"cannot read ({exc.strerror or exc})"


def _bad_row(path: Path, problem: str | None) -> dict[str, Any]:
    try:
        st = path.stat()
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        size, mtime = None, None
    return {"path": str(path), "size_bytes": size, "mtime_ns": mtime, "status": "bad", "problem": problem}


# --------------------------------------------------------------------------- export

def export(rows: Sequence[Mapping[str, Any]], out: str | os.PathLike[str]) -> Path:
    """Write rows as CSV (``.csv``) or Parquet (``.parquet``/``.pq``, needs pyarrow)."""
    from focuswatch.io.frames import refuse_frame_target

    p = Path(out)
    refuse_frame_target(p, "--export")
    names = list(COLUMNS)
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError(f"--export {p}: Parquet needs pyarrow; install it with "
                              "pip install \"focuswatch[parquet]\", or export to .csv") from None
        types = {"TEXT": pa.string(), "INTEGER": pa.int64(), "REAL": pa.float64()}
        schema = pa.schema([(k, types[COLUMNS[k].split()[0]]) for k in names])
        table = pa.table({k: [_sql(r.get(k)) for r in rows] for k in names}, schema=schema)
        pq.write_table(table, p)
        return p
    if suffix != ".csv":
        raise ConfigError(f"--export {p}: give a file ending in .csv or .parquet")
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for r in rows:
            w.writerow(["" if r.get(k) is None else _sql(r.get(k)) for k in names])
    return p


def refuse_output(path: Path, root: Path, what: str) -> None:
    """An output (report, export) must never overwrite a frame nor land inside ROOT."""
    from focuswatch.io.frames import refuse_frame_target

    refuse_frame_target(path, what)
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return
    raise ConfigError(f"{what} {path}: inside the archive {root}; choose a place outside it "
                      "(focuswatch never writes next to your frames)")
