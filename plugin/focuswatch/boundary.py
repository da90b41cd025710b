"""The frame boundary: whatever goes wrong with one frame becomes one :class:`FrameError` line.

Every path that reads or measures a single frame (the watcher, ``measure``, ``diagnose``,
``report``, ``grade``, ``replay``, ``af``) passes through :func:`frame_boundary` (a context
manager) or :func:`guarded` (the same around one call). Inside, any exception —
astropy's ``VerifyError`` for a card it cannot parse, cfitsio's decompression errors, an
``OverflowError`` from an absurd header value, a ``MemoryError``, a symlink loop, a bug of
ours — comes out as a :class:`~focuswatch.errors.FrameError` that names the file and says
the problem in words, so the caller prints one line, carries on with the next frame and
exits non-zero at the end. One wrapper here, not a ``try`` in every caller.

Exceptions we did not foresee keep their traceback, but only in the log at DEBUG level
(``-vv``/``--debug``, or a log file); the user sees one line. ``KeyboardInterrupt`` and
``SystemExit`` always pass through: Ctrl-C must stop a folder command.

Why catch by type here rather than match message texts in every caller: the style guide
(sep's errors say how to fix the problem) — one place to word each problem.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from focuswatch.errors import FocuswatchError, FrameError, FrameIncomplete

T = TypeVar("T")
log = logging.getLogger("focuswatch.boundary")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _is_frame_path(path: Path | None, filename: object) -> bool:
    """True when an ``OSError``'s ``filename`` is the frame itself (not, say, astropy's config)."""
    if path is None or filename is None:
        return True
    try:
        return os.path.abspath(os.fsdecode(filename)) == os.path.abspath(path)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def permission_problem(path: Path | None, exc: PermissionError) -> FrameError:
    """Tell an unreadable file (mode 000, ACL) from one another program holds locked.

    ``os.access`` says whether *we* may read it at all: if not, retrying will not help. A
    readable file that still refused us is locked (Windows: the capture program is writing
    it): that one is worth a retry, so it is a :class:`FrameIncomplete`. A permission error
    on some other file (astropy writing its own config under a read-only HOME) names that file.
    """
    other = getattr(exc, "filename", None)
    if not _is_frame_path(path, other):
        return FrameError(path, f"permission denied on {os.fsdecode(other)} (not the frame: a program "
                                "folder or settings file that cannot be written; check HOME and its permissions)")
    if path is not None and path.exists() and not os.access(path, os.R_OK):
        return FrameError(path, "not readable: permission denied (check the file's permissions; "
                                "focuswatch only needs to read it)")
    return FrameIncomplete(path, "locked by another program (permission denied although the file is "
                                 "readable); retry later")


def describe(path: Path | None, exc: BaseException) -> FrameError:
    """The one-line :class:`FrameError` for ``exc`` raised while handling the frame at ``path``."""
    if isinstance(exc, FrameError):
        return exc
    if isinstance(exc, FocuswatchError):
        return FrameError(path, str(exc))
    if isinstance(exc, PermissionError):
        return permission_problem(path, exc)
    if isinstance(exc, FileNotFoundError):
        if path is not None and os.path.islink(path) and not path.exists():
            return FrameError(path, "a broken symbolic link (its target does not exist)")
        return FrameError(path, "file disappeared before it could be read")
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP or (
            isinstance(exc, RuntimeError) and "symlink loop" in str(exc).lower()):
        return FrameError(path, "a symbolic link loop (the link points back to itself); not a frame")
    if isinstance(exc, IsADirectoryError):
        return FrameError(path, "a folder, not a frame")
    if isinstance(exc, MemoryError):
        return FrameError(path, "too large to read into memory (is its header's image size right?)")
    if isinstance(exc, OverflowError):
        return FrameError(path, f"a header value is out of range ({_first_line(exc)})")
    name = type(exc).__name__
    if name == "VerifyError":
        return FrameError(path, f"corrupt FITS header: {_first_line(exc)}")
    if "cfitsio" in name.lower() or "decompress" in str(exc).lower():
        return FrameError(path, f"corrupt compressed FITS data ({_first_line(exc)})")
    if isinstance(exc, OSError):
        return FrameError(path, f"cannot read the file: {exc.strerror or _first_line(exc)}")
    return FrameError(path, f"cannot read or measure this frame ({name}: {_first_line(exc)})")


_KNOWN = (FocuswatchError, OSError, MemoryError, OverflowError)


@contextlib.contextmanager
def frame_boundary(path: str | Path | None) -> Iterator[None]:
    """Turn any exception raised inside into a :class:`FrameError` naming ``path``.

    >>> from focuswatch.errors import FrameError
    >>> try:
    ...     with frame_boundary("night/light_001.fits"):
    ...         int("x")
    ... except FrameError as exc:
    ...     print(exc.problem.split(" (")[0])
    cannot read or measure this frame
    """
    p = Path(path) if path is not None else None
    try:
        yield
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the whole point: one line per bad frame
        err = describe(p, exc)
        if err is exc:
            raise
        if not isinstance(exc, _KNOWN) and type(exc).__name__ != "VerifyError":
            # not foreseen: keep the traceback where a developer looks (-vv / --debug / log file)
            log.debug("%s: unexpected %s while reading or measuring", p, type(exc).__name__, exc_info=exc)
        raise err from None


def guarded(path: str | Path | None, func: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Call ``func(*args, **kwargs)`` inside :func:`frame_boundary` for ``path``."""
    with frame_boundary(path):
        return func(*args, **kwargs)
