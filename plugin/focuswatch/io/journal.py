"""The watcher's journal: every frame, decision, trigger and autofocus, in SQLite.

I/O at the edge, no decisions. The journal lives in the per-user state folder
(``statefile.default_state_dir() / "journal.sqlite"``, or ``--journal``), never next to a
user's frames. It is what lets a restarted watcher continue where it stopped: frames are
keyed by absolute path + size + modification time (a file rewritten in place is a new
frame), and :meth:`Journal.restore_items` hands back the recorded frames and autofocus
events of the current night in the order they were applied, so the policy state is rebuilt
without deciding — or triggering — again.

Tables (schema version in ``schema_version``)

====================  ==========================================================================
``frames``            one row per file seen: key, capture time, status (``measured``, ``error``,
                      ``ignored``), the error line, the policy's :class:`FrameRecord` and the
                      measurement (``FrameStats.to_dict()``) as JSON, and ``dew``: the frame's
                      figures for the night's dew reference (``{"halo_excess", "hfr_px", "halo_inner"}`` from
                      its one diagnosis; NULL when not diagnosed, and in rows written before
                      the column was added, which restore as they did)
``decisions``         one row per measured frame: ``ok`` / ``refocus`` / ``skip``, the reasons
                      and every figure (``Decision.to_dict()``) as JSON
``triggers``          one row per trigger attempt (``TriggerResult.to_dict()``)
``autofocus_events``  one row per autofocus (key = its source + time, so the same event read
                      twice is recorded once)
====================  ==========================================================================

The ``dew`` column was added to schema 1 without a new version: a journal opened here gets it
(``ALTER TABLE``, NULL in the old rows), and an older focuswatch, which names its columns, reads
and writes such a journal as before (its rows then have no dew figures).

SQLite runs in WAL mode so ``focuswatch`` commands can read while the watcher writes. A
journal another process holds locked, or a file that is not a focuswatch journal (or is
corrupt), raises :class:`~focuswatch.errors.JournalError` with the path and what to do.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Mapping

from focuswatch.model.records import json_safe
from focuswatch.model.frame import FrameMeta
from focuswatch.errors import JournalError
from focuswatch.policy import AutofocusMark, Decision, FrameRecord
from focuswatch.io.statefile import default_state_dir, iso_utc

SCHEMA_VERSION = 1
JOURNAL_NAME = "journal.sqlite"
#: How far back (hours before the newest frame) a restart restores the policy's memory.
RESTORE_WINDOW_H = 18.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    time_s REAL,
    status TEXT NOT NULL,
    error TEXT,
    record TEXT,
    stats TEXT,
    recorded_at TEXT NOT NULL,
    UNIQUE (path, size_bytes, mtime_ns)
);
CREATE INDEX IF NOT EXISTS frames_time ON frames (time_s);
CREATE INDEX IF NOT EXISTS frames_seq ON frames (seq);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    frame_id INTEGER NOT NULL REFERENCES frames (id),
    time_s REAL,
    decision TEXT NOT NULL,
    reasons TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_frame ON decisions (frame_id);
CREATE TABLE IF NOT EXISTS triggers (
    id INTEGER PRIMARY KEY,
    decision_id INTEGER REFERENCES decisions (id),
    trigger TEXT NOT NULL,
    ok INTEGER NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS autofocus_events (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL UNIQUE,
    time_s REAL NOT NULL,
    source TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS af_seq ON autofocus_events (seq);
"""

#: ``frames`` columns added after schema 1 shipped, each nullable: (name, declaration).
_ADDED_FRAME_COLUMNS = (("dew", "TEXT"),)


def default_journal_path() -> Path:
    """``journal.sqlite`` in the per-user state folder (:func:`statefile.default_state_dir`)."""
    return default_state_dir() / JOURNAL_NAME


def _json(obj: Any) -> str:
    """One row's JSON, made safe the same way as ``--json`` output (NaN -> null, numpy -> Python)."""
    return json.dumps(json_safe(obj), ensure_ascii=False, allow_nan=False)


def _recorded_meta(stats: str | bytes | None) -> FrameMeta | None:
    """The header facts recorded with a frame's measurement (``FrameStats.to_dict()["meta"]``),
    ``None`` when the row has none (a row written without stats)."""
    if not stats:
        return None
    try:
        meta = json.loads(stats).get("meta")
        return FrameMeta.from_dict(meta) if isinstance(meta, dict) else None
    except (ValueError, TypeError, AttributeError):  # the header is a help here, never the restart's end
        return None


#: What a row's JSON or its ``from_dict`` raise when the row is not what we wrote.
_ROW_ERRORS = (ValueError, TypeError, KeyError, AttributeError)


def _row_dict(text: Any) -> dict[str, Any]:
    """One JSON column read back as the object we wrote; anything else raises ``ValueError``."""
    if not isinstance(text, (str, bytes)):
        raise ValueError(f"empty ({text!r})" if text is None else f"not text ({type(text).__name__})")
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object ({type(obj).__name__})")
    return obj


def _bad_row_line(journal: Path, where: str, column: str, exc: BaseException, outcome: str = "not restored") -> str:
    """The one line a row that cannot be read back costs (journal, row, file, what is wrong, what
    the reader did without it)."""
    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, KeyError):
        why = f"missing field {exc}"
    return (f"{journal}: {where}: its {column} cannot be read back ({why}); {outcome}, "
            "left in the journal as it is")


class Journal:
    """One open journal (a SQLite connection); use as a context manager or call :meth:`close`.

    Not shared between threads: the watcher uses it from its worker only.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"{self.path.parent}: cannot create the journal folder ({exc.strerror or exc})") from None
        try:
            # one worker thread uses it at a time (the watcher may run in a thread of its own)
            self._db = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot open the journal ({exc})") from None
        try:
            self._setup()
        except JournalError:
            self._db.close()
            raise

    # ------------------------------------------------------------------ plumbing
    def _explain(self, exc: sqlite3.Error) -> JournalError:
        text = str(exc)
        low = text.lower()
        if "locked" in low or "busy" in low:
            return JournalError(f"{self.path}: the journal is locked by another program (is another "
                                "`focuswatch watch` running on it?); stop it or give --journal another file")
        if "not a database" in low or "malformed" in low or "corrupt" in low or "disk image" in low:
            return JournalError(f"{self.path}: not a focuswatch journal, or it is corrupt ({text}); move it "
                                "away (the watcher starts a new one) or give --journal another file")
        if "readonly" in low or "read-only" in low or "unable to open" in low:
            return JournalError(f"{self.path}: cannot write the journal ({text}); check the folder's permissions")
        return JournalError(f"{self.path}: journal error: {text}")

    def _exec(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._explain(exc) from None

    def _setup(self) -> None:
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None:
                raise sqlite3.DatabaseError("file is not a database")
            check = self._db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed: {check[0] if check else '?'}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across crashes, no fsync per frame
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in [s for s in _SCHEMA.split(";") if s.strip()]:
                    self._db.execute(stmt)
                # columns added to schema 1 after it shipped (NULL in older rows; older readers ignore them)
                have = {str(r[1]) for r in self._db.execute("PRAGMA table_info(frames)").fetchall()}
                for col, decl in _ADDED_FRAME_COLUMNS:
                    if col not in have:
                        self._db.execute(f"ALTER TABLE frames ADD COLUMN {col} {decl}")
                row = self._db.execute("SELECT version FROM schema_version").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                elif int(row[0]) > SCHEMA_VERSION:
                    self._db.execute("ROLLBACK")
                    raise JournalError(f"{self.path}: written by a newer focuswatch (journal schema {row[0]}, "
                                       f"this version reads {SCHEMA_VERSION}); upgrade focuswatch or use --journal")
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._explain(exc) from None

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:  # pragma: no cover
            pass

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _next_seq(self) -> int:
        row = self._exec("SELECT MAX(s) FROM (SELECT MAX(seq) AS s FROM frames "
                         "UNION ALL SELECT MAX(seq) FROM autofocus_events)").fetchone()
        return int(row[0] or 0) + 1

    def _write(self, fn):
        """Run ``fn`` inside one transaction (all of a frame's rows, or none)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn()
                self._db.execute("COMMIT")
                return out
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._explain(exc) from None

    # ------------------------------------------------------------------ frames
    @staticmethod
    def key_of(path: str | Path, *, resolved: bool = False) -> tuple[str, int, int]:
        """(absolute path, size in bytes, modification time in ns) of a file on disk.

        ``resolved``: ``path`` is already resolved by the caller (the watcher's rescan resolves
        each listed file once; resolving again would lstat every path component a second time,
        per file, per rescan)."""
        p = Path(path) if resolved else Path(path).resolve()
        st = p.stat()
        return str(p), int(st.st_size), int(st.st_mtime_ns)

    def seen(self, key: tuple[str, int, int]) -> bool:
        """True when this exact file (path, size, mtime) was already handled."""
        row = self._exec("SELECT 1 FROM frames WHERE path = ? AND size_bytes = ? AND mtime_ns = ?", key).fetchone()
        return row is not None

    def seen_keys(self, under: str | Path | None = None) -> set[tuple[str, int, int]]:
        """Every handled file key (optionally only below the folder ``under``)."""
        if under is None:
            rows = self._exec("SELECT path, size_bytes, mtime_ns FROM frames").fetchall()
        else:
            prefix = str(Path(under).resolve())
            rows = self._exec("SELECT path, size_bytes, mtime_ns FROM frames WHERE substr(path, 1, ?) = ?",
                              (len(prefix), prefix)).fetchall()
        return {(str(a), int(b), int(c)) for a, b, c in rows}

    def record_frame(self, key: tuple[str, int, int], *, time_s: float | None, status: str,
                     record: FrameRecord | None = None, stats: Mapping[str, Any] | None = None,
                     decision: Decision | None = None, error: str | None = None,
                     dew: Mapping[str, Any] | None = None) -> tuple[int, int | None]:
        """Record one file (and its decision) atomically; returns (frame id, decision id).

        ``dew``: the frame's figures for the night's dew reference
        (:func:`focuswatch.watch.loop.dew_row`), read back by ``restore_items(with_dew=True)``.

        ``status`` is ``measured`` (with ``record`` and ``decision``), ``error`` (with the
        one-line ``error``) or ``ignored`` (calibration frame). A key recorded before is
        updated in place (``INSERT OR REPLACE`` semantics would break the decision link), except
        that a ``measured`` row is never replaced by an ``error`` or ``ignored`` one (the same
        bytes measured well once: a later failure to read them must not lose the measurement).
        """
        if status not in ("measured", "error", "ignored"):
            raise ValueError(f"unknown frame status {status!r}")

        def work() -> tuple[int, int | None]:
            now = iso_utc()
            row = self._db.execute("SELECT id, status FROM frames WHERE path = ? AND size_bytes = ? "
                                   "AND mtime_ns = ?", key).fetchone()
            if row is not None and row[1] == "measured" and status != "measured":
                # the same bytes were measured before: a read that fails now (a share that hiccups,
                # a file locked by another program) is the moment's trouble, not the frame's; the
                # good row and its decision stay as they are
                return int(row[0]), None
            values = (time_s, status, error, _json(record.to_dict()) if record else None,
                      _json(dict(stats)) if stats is not None else None, now,
                      _json(dict(dew)) if dew is not None else None)
            if row is None:
                cur = self._db.execute(
                    "INSERT INTO frames (seq, path, size_bytes, mtime_ns, time_s, status, error, record, stats, "
                    "recorded_at, dew) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (self._next_seq(), *key, *values))
                frame_id = int(cur.lastrowid or 0)
            else:
                frame_id = int(row[0])
                self._db.execute("UPDATE frames SET time_s = ?, status = ?, error = ?, record = ?, stats = ?, "
                                 "recorded_at = ?, dew = ? WHERE id = ?", (*values, frame_id))
            decision_id = None
            if decision is not None:
                cur = self._db.execute(
                    "INSERT INTO decisions (frame_id, time_s, decision, reasons, data, recorded_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (frame_id, decision.time_s, decision.decision, _json(list(decision.reasons)),
                     _json(decision.to_dict()), now))
                decision_id = int(cur.lastrowid or 0)
            return frame_id, decision_id

        return self._write(work)

    # ------------------------------------------------------------------ triggers
    def record_trigger(self, result: Mapping[str, Any], decision_id: int | None = None) -> int:
        """Record one trigger attempt (``TriggerResult.to_dict()``)."""
        def work() -> int:
            cur = self._db.execute(
                "INSERT INTO triggers (decision_id, trigger, ok, message, data, recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
                (decision_id, str(result.get("trigger", "")), 1 if result.get("ok") else 0,
                 str(result.get("message", "")), _json(dict(result)), iso_utc()))
            return int(cur.lastrowid or 0)

        return self._write(work)

    # ------------------------------------------------------------------ autofocus
    def has_autofocus(self, key: str) -> bool:
        return self._exec("SELECT 1 FROM autofocus_events WHERE key = ?", (key,)).fetchone() is not None

    def record_autofocus(self, key: str, mark: AutofocusMark) -> bool:
        """Record an autofocus under ``key``; False (nothing written) when it was recorded before."""
        def work() -> bool:
            if self._db.execute("SELECT 1 FROM autofocus_events WHERE key = ?", (key,)).fetchone():
                return False
            self._db.execute("INSERT INTO autofocus_events (seq, key, time_s, source, data, recorded_at) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             (self._next_seq(), key, mark.time_s, mark.source, _json(mark.to_dict()), iso_utc()))
            return True

        return self._write(work)

    def latest_autofocus_time_s(self) -> float | None:
        row = self._exec("SELECT MAX(time_s) FROM autofocus_events").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # ------------------------------------------------------------------ reading back
    def restore_items(self, window_h: float = RESTORE_WINDOW_H, *, with_header: bool = False,
                      with_dew: bool = False, problems: list[str] | None = None) -> list[tuple[str, Any, Any]]:
        """The current night, in the order it was applied: ``("af", mark, None)`` and
        ``("frame", FrameRecord, Decision)`` items for frames measured within ``window_h``
        hours of the newest one (and autofocus events recorded since the first of them).

        ``with_header``: each frame item is preceded by ``("header", FrameMeta, None)``, the
        header facts recorded with its measurement (the ``stats`` column's ``meta``), when there
        are any: what the night loop merged into the rig for it (pixel size, focal length from
        XPIXSZ/FOCALLEN), so a restart sees the frame as it was seen live.

        ``with_dew``: each frame item is preceded by ``("dew", {"halo_excess", "hfr_px", "halo_inner"}, None)``,
        the figures its one diagnosis gave the night's dew reference (the ``dew`` column), when
        the row has them: a row written before they were kept, or one whose column cannot be read
        back (one line in ``problems``), has none and restores as before, the frame itself kept.

        A row that cannot be read back (JSON cut short or garbled by a crash, a disk fault or a
        hand edit; a record of another shape) is left out, and only that row: it costs the
        restored night one frame (or one autofocus), never the restart. One line per such row,
        naming the journal, the table and row id, the frame's file and what is wrong, is
        appended to ``problems`` when given. The row itself stays in the journal as it is (this
        only reads), and its frame's key stays known, so the watcher neither measures that file
        again nor overwrites the row."""
        row = self._exec("SELECT MAX(time_s) FROM frames WHERE status = 'measured'").fetchone()
        if row is None or row[0] is None:
            return []
        start = float(row[0]) - window_h * 3600.0
        frames = self._exec(
            # as bytes: a garbled column that is not even UTF-8 is that row's problem, not the query's
            "SELECT f.seq, CAST(f.record AS BLOB), CAST(d.data AS BLOB), CAST(f.stats AS BLOB), f.id, f.path, "
            "CAST(f.dew AS BLOB) "
            "FROM frames f JOIN decisions d "
            "ON d.frame_id = f.id WHERE f.status = 'measured' AND f.time_s >= ? AND d.id = (SELECT MAX(id) "
            "FROM decisions WHERE frame_id = f.id) ORDER BY f.seq", (start,)).fetchall()
        if not frames:
            return []
        first_seq = int(frames[0][0])
        afs = self._exec("SELECT seq, CAST(data AS BLOB), id, key FROM autofocus_events WHERE seq >= ? ORDER BY seq",
                         (first_seq,)).fetchall()
        bad: list[str] = [] if problems is None else problems
        items: list[tuple[int, tuple[str, Any, Any]]] = []
        for seq, rec, dec, stats, row_id, path, dew in frames:
            try:
                what = "record"
                record = FrameRecord.from_dict(_row_dict(rec))
                what = "decision"
                decision = Decision.from_dict(_row_dict(dec))
            except _ROW_ERRORS as exc:
                bad.append(_bad_row_line(self.path, f"frames row {row_id} ({path})", what, exc))
                continue
            meta = _recorded_meta(stats) if with_header else None
            if meta is not None:
                items.append((int(seq), ("header", meta, None)))
            if with_dew and dew is not None:
                try:
                    items.append((int(seq), ("dew", _row_dict(dew), None)))
                except _ROW_ERRORS as exc:
                    bad.append(_bad_row_line(self.path, f"frames row {row_id} ({path})", "dew", exc,
                                             "restored without its dew figures"))
            items.append((int(seq), ("frame", record, decision)))
        for seq, data, row_id, key in afs:
            try:
                items.append((int(seq), ("af", AutofocusMark.from_dict(_row_dict(data)), None)))
            except _ROW_ERRORS as exc:
                bad.append(_bad_row_line(self.path, f"autofocus_events row {row_id} ({key})", "data", exc))
        items.sort(key=lambda x: x[0])          # stable: a header stays before its frame
        return [it for _, it in items]

    def decisions(self, since_time_s: float | None = None, *, problems: list[str] | None = None) -> list[Decision]:
        """Every recorded decision (latest per frame), oldest first. A row that cannot be read back is
        left out with one line in ``problems`` (as :meth:`restore_items`)."""
        rows = self._exec(
            "SELECT CAST(d.data AS BLOB), d.id, f.path FROM decisions d JOIN frames f ON d.frame_id = f.id "
            "WHERE (? IS NULL OR f.time_s >= ?) ORDER BY f.seq, d.id", (since_time_s, since_time_s)).fetchall()
        out: list[Decision] = []
        for data, row_id, path in rows:
            try:
                out.append(Decision.from_dict(_row_dict(data)))
            except _ROW_ERRORS as exc:
                if problems is not None:
                    problems.append(_bad_row_line(self.path, f"decisions row {row_id} ({path})", "data", exc))
        return out

    def counts(self) -> dict[str, int]:
        """Rows per table (frames by status), for summaries and tests."""
        out: dict[str, int] = {}
        for status, n in self._exec("SELECT status, COUNT(*) FROM frames GROUP BY status").fetchall():
            out[f"frames_{status}"] = int(n)
        for table in ("decisions", "triggers", "autofocus_events"):
            out[table] = int(self._exec(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        return out

    def last_decision_id(self) -> int | None:
        """The id of the newest decision (trigger rows after a restart link to it)."""
        row = self._exec("SELECT MAX(id) FROM decisions").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def refocus_answered(self) -> bool:
        """True unless the latest refocus decision has no successful trigger after it.

        A watcher killed (``kill -9``, a power cut) between deciding a refocus and hearing back
        from its trigger would otherwise never ask again: the restarted one asks once more.
        """
        row = self._exec("SELECT MAX(id) FROM decisions WHERE decision = 'refocus'").fetchone()
        if row is None or row[0] is None:
            return True
        ok = self._exec("SELECT 1 FROM triggers WHERE ok = 1 AND decision_id >= ?", (int(row[0]),)).fetchone()
        return ok is not None

    def triggers(self) -> list[dict[str, Any]]:
        """Every recorded trigger attempt, oldest first."""
        return [json.loads(r[0]) for r in self._exec("SELECT data FROM triggers ORDER BY id").fetchall()]

    def iter_frames(self) -> Iterator[dict[str, Any]]:
        """Every frame row (path, status, error, time_s), oldest first."""
        for path, status, error, time_s in self._exec(
                "SELECT path, status, error, time_s FROM frames ORDER BY seq").fetchall():
            yield {"path": path, "status": status, "error": error, "time_s": time_s}
