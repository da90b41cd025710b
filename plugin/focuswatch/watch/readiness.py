"""When is a new file whole? A small state machine fed ``(size, mtime, now)`` values.

Like watchdog's ``PollingObserverVFS(stat, listdir, polling_interval)``, nothing in here
calls the clock or ``stat()``: the watcher feeds each pending file's size, modification
time and the current monotonic time, and passes in the two functions that look inside a
file (``probe``: :func:`focuswatch.io.frames.check_complete`; ``signature``:
:func:`focuswatch.io.frames.content_signature`). Tests feed it values directly and never sleep.

What "ready" means, cheapest proof first:

1. **Proven complete** (``layout.proven``): every FITS header has its END card and the file
   holds every byte the headers promise, with no zero-filled tail — or its DATASUM (FITS) /
   ``sha1`` checksum (XISF) matches. The file is ready **at once**: no stability polls
   (issue 12: last byte → decision within half a second).
2. **Complete by size but not proven** (a pre-allocated file whose pixel data still ends
   in zero bytes, without a checksum): ready when size, mtime and a content signature stay
   the same for ``stable_s``.
3. **Folders whose earlier frames carried CHECKSUM** (CFITSIO writes it last): a complete
   file without one waits ``checksum_grace_s`` of unchanged size and mtime for it.
4. **Incomplete** (:class:`~focuswatch.errors.FrameIncomplete`): wait; after
   ``stuck_after_s`` one warning; after ``give_up_s`` without any change, one error
   (``bad``): a truncated file is named once instead of waiting forever.
5. **Never a frame** (:class:`~focuswatch.errors.FrameError`: not FITS, a table, an absurd
   header): ``bad`` at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from focuswatch.errors import FrameError, FrameIncomplete

WAIT, READY, GONE, BAD, STUCK = "wait", "ready", "gone", "bad", "stuck"


@dataclass(frozen=True)
class ReadinessConfig:
    """How long to wait for what (seconds of the clock the watcher feeds in).

    Attributes
    ----------
    settle_polls
        Polls of unchanged size and mtime required even for a proven file (0: none).
    stable_s
        How long a file that cannot prove it is whole must keep its size, mtime and content.
    checksum_grace_s
        How long a complete file waits for a CHECKSUM when earlier frames of its folder had one.
    stuck_after_s
        An incomplete or locked file is reported once (a warning) after this long.
    give_up_s
        An incomplete file unchanged for this long is recorded once as an error.
    """

    settle_polls: int = 0
    stable_s: float = 2.0
    checksum_grace_s: float = 3.0
    stuck_after_s: float = 120.0
    give_up_s: float = 300.0


@dataclass(frozen=True)
class Step:
    """What to do with a pending file now: ``wait``, ``ready``, ``gone``, ``bad`` or ``stuck``."""

    verdict: str
    problem: str | None = None
    layout: Any = None


@dataclass
class Readiness:
    """The readiness of one pending file; call :meth:`step` at every poll."""

    path: Path
    first_seen: float
    config: ReadinessConfig = field(default_factory=ReadinessConfig)
    probe: Callable[[Path], Any] | None = None
    signature: Callable[[Path, Any], Any] | None = None
    size: int = -1
    mtime_ns: int = -1
    changed_at: float = 0.0
    stable_polls: int = 0
    sig: Any = None
    sig_since: float = 0.0
    stuck_reported: bool = False
    problem: str | None = None
    order_key: tuple[float, str] | None = None

    def step(self, size: int | None, mtime_ns: int, now: float, *, expect_checksum: bool = False) -> Step:
        """Feed one observation (``size=None``: the file is gone) and get the verdict."""
        if size is None:
            return Step(GONE)
        if size != self.size or mtime_ns != self.mtime_ns:
            self.size, self.mtime_ns, self.changed_at = size, mtime_ns, now
            self.stable_polls, self.sig = 0, None
        else:
            self.stable_polls += 1
        if self.stable_polls < self.config.settle_polls:
            return Step(WAIT)
        try:
            layout = self.probe(self.path) if self.probe else None
        except FileNotFoundError:
            return Step(GONE)
        except FrameIncomplete as exc:
            return self._incomplete(exc.problem, now)
        except FrameError as exc:
            return Step(BAD, exc.problem)
        if layout is None or getattr(layout, "proven", True):
            if expect_checksum and layout is not None and not getattr(layout, "has_checksum", True) \
                    and now - self.changed_at < self.config.checksum_grace_s:
                return Step(WAIT)
            return Step(READY, layout=layout)
        # whole by size, not proven: the content must hold still
        try:
            sig = self.signature(self.path, layout) if self.signature else (size, mtime_ns)
        except FileNotFoundError:
            return Step(GONE)
        except OSError as exc:
            return self._incomplete(f"cannot read it yet ({exc.strerror or exc})", now)
        if sig != self.sig:
            self.sig, self.sig_since = sig, now
            return Step(WAIT)
        if now - self.sig_since >= self.config.stable_s and now - self.changed_at >= self.config.stable_s:
            return Step(READY, layout=layout)
        return Step(WAIT)

    def _incomplete(self, problem: str, now: float) -> Step:
        self.problem = problem
        if now - self.changed_at >= self.config.give_up_s:
            return Step(BAD, f"{problem} (unchanged for {now - self.changed_at:.0f} s; given up)")
        if not self.stuck_reported and now - self.first_seen >= self.config.stuck_after_s:
            self.stuck_reported = True
            return Step(STUCK, problem)
        return Step(WAIT, problem)
