"""Siril's pipe protocol (``siril-cli -p``): our :class:`PipeClient`, or pysiril when it is installed. POSIX only."""
from __future__ import annotations


import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from focuswatch.errors import SirilError
from focuswatch.siril.discover import SirilInfo, _siril_env, find_siril
from focuswatch.siril.run import _ANSI, _clean_lines, _errors_in


#: The fixed FIFOs of Siril 1.0.x pipe mode.
FIXED_PIPE_IN = "/tmp/siril_command.in"


FIXED_PIPE_OUT = "/tmp/siril_command.out"


# --------------------------------------------------------------------------- pipe mode

@dataclass(frozen=True)
class PipeReply:
    """The answer to one pipe command: success flag and the ``log:`` lines it produced."""

    command: str
    ok: bool
    lines: tuple[str, ...]


class PipeClient:
    """Our client for Siril's pipe protocol (POSIX only; what pysiril speaks).

    Starts ``siril-cli -p``, opens the FIFOs, sends one command per line and reads until
    ``status: success|error <command>``. Siril 1.0.x uses the fixed FIFOs in /tmp: a lock
    file (``/tmp/focuswatch-siril-pipe.lock``, ``fcntl.flock``) keeps two of our clients
    from talking to one Siril. The process is always terminated on :meth:`close`
    (1.0.6's ``exit`` is not relied upon).

    Use as a context manager::

        with PipeClient(workdir) as siril:
            reply = siril.execute("load master")
    """

    LOCK_PATH = "/tmp/focuswatch-siril-pipe.lock"

    def __init__(self, workdir: str | os.PathLike[str], *, info: SirilInfo | None = None,
                 start_timeout_s: float = 30.0, lock_timeout_s: float = 300.0):
        if os.name != "posix":
            raise SirilError("Siril's pipe mode needs named pipes (Linux/macOS); use script mode on Windows")
        self.info = info or find_siril()
        self.workdir = Path(workdir).resolve()
        self.start_timeout_s = start_timeout_s
        self.lock_timeout_s = lock_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._fd_in: int | None = None
        self._fd_out: int | None = None
        self._buf = b""
        self._tmp: str | None = None
        if self.info.fixed_pipes:
            self.pipe_in, self.pipe_out = FIXED_PIPE_IN, FIXED_PIPE_OUT
        else:
            self._tmp = tempfile.mkdtemp(prefix="focuswatch-pipe-")
            self.pipe_in = os.path.join(self._tmp, "siril_command.in")
            self.pipe_out = os.path.join(self._tmp, "siril_command.out")

    # -- lifecycle
    def __enter__(self) -> "PipeClient":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _lock(self) -> None:
        import fcntl

        fd = os.open(self.LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise SirilError(f"another focuswatch is using Siril's pipe ({self.LOCK_PATH}) for more "
                                     f"than {self.lock_timeout_s:g} s; Siril {self.info.version_str} allows one "
                                     "pipe instance per machine") from None
                time.sleep(0.1)
        self._lock_fd = fd

    def open(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.info.fixed_pipes:
            self._lock()
        try:
            argv = [self.info.executable, "-p", "-d", str(self.workdir)]
            if not self.info.fixed_pipes:
                argv += ["-r", self.pipe_in, "-w", self.pipe_out]
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, env=_siril_env(self.workdir),
                                          cwd=str(self.workdir))
            deadline = time.monotonic() + self.start_timeout_s
            while not (os.path.exists(self.pipe_in) and os.path.exists(self.pipe_out)):
                if self._proc.poll() is not None:
                    raise SirilError("siril-cli -p exited before opening its pipes", self._proc.returncode)
                if time.monotonic() > deadline:
                    raise SirilError(f"siril-cli -p did not create its pipes within {self.start_timeout_s:g} s")
                time.sleep(0.05)
            self._fd_in = self._open_fifo(self.pipe_in, os.O_WRONLY, deadline)
            self._fd_out = self._open_fifo(self.pipe_out, os.O_RDONLY | os.O_NONBLOCK, deadline)
            if not self.info.fixed_pipes:
                self._read_until(lambda line: line.strip() == "ready", deadline, "ready")
        except BaseException:
            self.close()
            raise

    def _open_fifo(self, path: str, flags: int, deadline: float) -> int:
        # opening a FIFO for writing blocks until Siril opens it for reading: poll with O_NONBLOCK
        while True:
            try:
                if flags & os.O_WRONLY:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                    os.set_blocking(fd, True)
                    return fd
                return os.open(path, flags)
            except OSError:
                if self._proc is not None and self._proc.poll() is not None:
                    raise SirilError("siril-cli -p exited while opening its pipes", self._proc.returncode) from None
                if time.monotonic() > deadline:
                    raise SirilError(f"could not open Siril's pipe {path}") from None
                time.sleep(0.05)

    def close(self) -> None:
        for attr in ("_fd_in", "_fd_out"):
            fd = getattr(self, attr)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, attr, None)
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    # -- protocol
    def _read_until(self, done, deadline: float, what: str) -> list[str]:
        import select

        assert self._fd_out is not None
        lines: list[str] = []
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\r")
                lines.append(line)
                if done(line):
                    return lines
            if self._proc is not None and self._proc.poll() is not None:
                raise SirilError(f"Siril exited while waiting for {what}", self._proc.returncode,
                                 _clean_lines("\n".join(lines))[-5:])
            left = deadline - time.monotonic()
            if left <= 0:
                raise SirilError(f"Siril did not answer {what} in time", None, _clean_lines("\n".join(lines))[-5:])
            r, _, _ = select.select([self._fd_out], [], [], min(left, 0.2))
            if r:
                chunk = os.read(self._fd_out, 65536)
                if chunk:
                    self._buf += chunk

    def execute(self, command: str, *, timeout_s: float = 600.0, check: bool = True) -> PipeReply:
        """Send one command and wait for its ``status: success|error`` line.

        ``check=True`` raises :class:`SirilError` on ``status: error``. A successful status
        does not prove success (a failed ``load`` reports success): callers look at the
        returned log lines too.
        """
        if self._fd_in is None:
            raise SirilError("the Siril pipe is not open")
        word = command.split()[0] if command.split() else ""
        os.write(self._fd_in, (command.strip() + "\n").encode("utf-8"))
        deadline = time.monotonic() + timeout_s
        rx = re.compile(rf"^status:\s*(success|error)\s+{re.escape(word)}\b")
        raw = self._read_until(lambda line: bool(rx.match(line)), deadline, f"'{command}'")
        ok = bool(rx.match(raw[-1])) and raw[-1].split()[1] == "success"
        lines = tuple(line[5:] if line.startswith("log: ") else line for line in raw
                      if line.startswith("log: "))
        if check and not ok:
            raise SirilError(f"Siril failed '{command}'" + (f": {_errors_in(lines)[0]}" if _errors_in(lines) else ""),
                             None, list(lines[-5:]))
        return PipeReply(command, ok, lines)


def pysiril_available() -> bool:
    """True when pysiril (distributed outside PyPI) can be imported."""
    import importlib.util

    return importlib.util.find_spec("pysiril") is not None


class _PysirilSession:  # pragma: no cover - pysiril is not installed in CI
    """pysiril behind the same ``execute`` interface as :class:`PipeClient`."""

    def __init__(self, workdir: Path, info: SirilInfo):
        from pysiril.siril import Siril

        self.workdir = workdir
        self._app = Siril(info.executable, bStable=True)

    def __enter__(self) -> "_PysirilSession":
        self._app.Open()
        self._app.Execute(f'cd "{self.workdir}"')
        return self

    def __exit__(self, *exc: Any) -> None:
        with contextlib.suppress(Exception):
            self._app.Close()

    def execute(self, command: str, *, timeout_s: float = 600.0, check: bool = True) -> PipeReply:
        ok = bool(self._app.Execute(command))
        if check and not ok:
            raise SirilError(f"Siril failed '{command}' (through pysiril)")
        return PipeReply(command, ok, ())


def pipe_session(workdir: str | os.PathLike[str], *, info: SirilInfo | None = None, prefer_pysiril: bool = True):
    """A pipe-mode session: pysiril when importable (and wanted), else :class:`PipeClient`."""
    info = info or find_siril()
    if prefer_pysiril and pysiril_available():  # pragma: no cover - not installed here
        return _PysirilSession(Path(workdir).resolve(), info)
    return PipeClient(workdir, info=info)
