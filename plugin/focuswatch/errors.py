"""The exceptions focuswatch raises on purpose.

Every one of them carries a message meant for the user: it names the file or setting and
says what is wrong and, where we can, what to do next. The CLI prints ``str(error)`` as one
line and exits non-zero; it never shows a traceback for these.
"""
from __future__ import annotations

from pathlib import Path


class FocuswatchError(Exception):
    """Base class: a problem the user can act on."""


class FrameError(FocuswatchError):
    """A frame cannot be read or measured (truncated, corrupt, not FITS, no stars...)."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class FrameIncomplete(FrameError):
    """The file is still being written (or is truncated); the watcher retries it later."""


class ConfigError(FocuswatchError):
    """A configuration value is missing or out of range; the message names the setting."""


class TriggerError(FocuswatchError):
    """A refocus trigger (NINA API, Ekos D-Bus, command) failed."""


class StateFileError(FocuswatchError):
    """The state file or the autofocus event log cannot be read, parsed or written.

    Its own class (not a :class:`TriggerError`): a corrupt ``state.json`` is not a failed
    trigger, and ``check`` must tell the two apart.
    """


class JournalError(FocuswatchError):
    """The SQLite journal is corrupt, locked or unwritable."""


class SirilError(FocuswatchError):
    """Siril is missing, too old, failed, crashed or hung.

    Carries the exit code (``None`` when it was killed or never started) and the last
    lines of its log so the user can see what Siril itself said.
    """

    def __init__(self, message: str, exit_code: int | None = None, log_tail: list[str] | None = None):
        self.exit_code = exit_code
        self.log_tail = list(log_tail or [])
        text = message
        if exit_code is not None:
            text += f" (exit code {exit_code})"
        if self.log_tail:
            text += "; last Siril output: " + " | ".join(self.log_tail[-3:])
        super().__init__(text)


class BahtinovError(FocuswatchError, ValueError):
    """No usable Bahtinov pattern in the image (the message says why).

    Also a ``ValueError``, as it was before it joined the hierarchy, so old callers still catch it.
    """


class FitError(FocuswatchError, ValueError):
    """The points cannot make a V-curve (too few, not finite, no spread).

    Also a ``ValueError``, as it was before it joined the hierarchy, so old callers still catch it.
    """


class CalibrationDataError(FocuswatchError, RuntimeError):
    """The packaged calibration data file is missing or unreadable (a broken installation).

    Still a ``RuntimeError`` for callers that caught it as one before it joined the hierarchy."""
