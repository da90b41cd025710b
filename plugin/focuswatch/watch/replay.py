"""A finished night run through the watcher's loop: ``focuswatch replay``, firing nothing.

:func:`replay` feeds the same :class:`~focuswatch.watch.loop.NightSession` the live watcher
feeds, from the finished files sorted in capture order and every autofocus signal known up
front (:func:`~focuswatch.watch.afsignals.autofocus_signals`), so a replayed night decides as
the watched one did. :func:`list_frames` is the folder listing both use (the watcher's
catch-up scan too).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from focuswatch.boundary import frame_boundary
from focuswatch.config import Config
from focuswatch.errors import FrameError, FrameIncomplete
from focuswatch.io import frames as frames_mod
from focuswatch.policy import Monitor
from focuswatch.watch.config import policy_from_config, watch_from_config
from focuswatch.watch.loop import AFSignal, NightSession, NightSink, Processed


def list_frames(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (sorted by name; callers order them by capture time)."""
    root = Path(folder)
    it: Iterable[Path] = root.rglob("*") if recursive else root.glob("*")
    return sorted(p for p in it if _listed(p))


def _listed(p: Path) -> bool:
    """Does ``p`` belong in the listing? A frame's name (checked first: no ``stat`` for other
    files), and a file or a symlink. A symlink that is not a file (broken, a loop) is listed too,
    and so is an entry that cannot be looked at (a permission error, a link whose target's name is
    too long): whoever takes the list names it in one line; one such entry never ends the listing."""
    if not frames_mod.is_image_file(p):
        return False
    try:
        return p.is_file() or p.is_symlink()
    except OSError:  # Path.is_file() passes on EACCES, ENAMETOOLONG, EIO...: listed, named downstream
        return True


def replay(folder: str | Path, *, config: Any = None, policy: Any = None, af_marks: Any = (),
           recursive: bool = True, on_row: Any = None,
           progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
           diagnose: bool = True, sink: NightSink | None = None) -> tuple[list[Processed], Any]:
    """Run a finished night through the policy as the watcher would have, firing nothing.

    The same loop as ``watch`` (:class:`~focuswatch.watch.loop.NightSession`), fed from the
    finished files in capture order and every autofocus signal up front: an autofocus goes
    before the first frame *written* after it, a NINA run counts once a light frame confirms
    it. ``af_marks``: :class:`~focuswatch.watch.loop.AFSignal` items
    (:func:`autofocus_signals`, what ``watch`` reads) or bare :class:`AutofocusMark` ones.
    ``sink`` receives the journal rows ``watch`` would write (default: nowhere); ``progress``, when
    given, wraps the frames (the caller's progress bar: this module draws nothing). Returns the
    :class:`Processed` rows and the monitor. Nothing is written anywhere.
    """
    config = config or Config()
    policy = policy or policy_from_config(config)
    out: list[Processed] = []

    def emit(row: Processed | None) -> None:
        if row is not None:
            out.append(row)
            if on_row:
                on_row(row)

    session = NightSession(Monitor(policy, config.rig), config, watch=watch_from_config(config), diagnose=diagnose,
                           sink=sink, log_errors=False)
    night: list[tuple[tuple[float, str], Path, Any, float]] = []
    for p in list_frames(folder, recursive):
        try:
            meta = frames_mod.read_header(p)
            written = p.stat().st_mtime
        except (FrameError, OSError) as exc:   # not a frame: one row (the journal's, as in ``watch``)
            err = exc if isinstance(exc, FrameError) else FrameError(p, str(exc.strerror or exc))
            emit(session.error(p, err))
            continue
        night.append((frames_mod.frame_order_key(p, meta), p, meta, written))
    night.sort(key=lambda x: x[0])
    for item in af_marks:
        session.offer(item if isinstance(item, AFSignal) else AFSignal.of(item), 0.0)
    for _, p, meta, written in (progress(night) if progress is not None else night):
        emit(session.frame(p, meta, written_s=written, load=lambda p=p: _load_finished(p)))
    session.release(0.0)
    return out, session.monitor


def _load_finished(p: Path) -> Any:
    """A finished night's file: one still incomplete is a bad file, not one to wait for."""
    with frame_boundary(p):
        try:
            return frames_mod.load(p)
        except FrameIncomplete as exc:
            raise FrameError(p, exc.problem) from None
