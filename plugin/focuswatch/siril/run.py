"""Running a Siril script (``siril-cli -d WORKDIR -s script.ssf``) with a timeout; its cleaned log."""
from __future__ import annotations

import logging

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from focuswatch.errors import SirilError
from focuswatch.siril.discover import SirilInfo, _siril_env, find_siril

log = logging.getLogger("focuswatch.siril")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b.")


# --------------------------------------------------------------------------- script mode

@dataclass(frozen=True)
class ScriptResult:
    """What one ``siril-cli -s`` run printed: the ``log:`` lines without their prefix."""

    returncode: int
    lines: tuple[str, ...]
    elapsed_s: float
    workdir: str

    def find(self, pattern: str) -> list[re.Match[str]]:
        """Every match of the regular expression ``pattern`` over the log lines."""
        rx = re.compile(pattern)
        return [m for m in (rx.search(line) for line in self.lines) if m]

    def tail(self, n: int = 5) -> list[str]:
        return [line for line in self.lines if line.strip()][-n:]


def _clean_lines(text: str) -> list[str]:
    """Siril's stdout without terminal escapes; ``log: `` prefixes removed."""
    out = []
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("log: "):
            line = line[5:]
        out.append(line)
    return out


def _errors_in(lines: Sequence[str]) -> list[str]:
    keys = ("error", "failed", "cannot", "could not", "unknown command", "not found", "aborted")
    return [line for line in lines if any(k in line.lower() for k in keys)]


def run_script(commands: Sequence[str], workdir: str | os.PathLike[str], *, info: SirilInfo | None = None,
               timeout_s: float = 600.0, expect: Sequence[str] = (), name: str = "focuswatch") -> ScriptResult:
    """Run Siril commands in script mode inside ``workdir`` and check they worked.

    Parameters
    ----------
    commands
        Siril commands, one per item; ``requires`` is prepended. Paths in them must be
        relative to ``workdir`` (``-out=`` breaks on spaces).
    workdir
        A directory of ours; the script file and Siril's config go there too.
    timeout_s
        Wall-clock limit in seconds; a hung Siril is killed and :class:`SirilError` raised.
    expect
        Regular expressions that must each match some log line: Siril exits 0 after a failed
        ``load``, so success is judged by the result lines, not only the exit code.
    """
    info = info or find_siril()
    wd = Path(workdir).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    script = wd / f"{name}.ssf"
    body = ["requires 1.0.0", *commands]
    script.write_text("\n".join(body) + "\n", encoding="utf-8")
    # no -i: Siril's settings live in a private folder of wd (see _siril_env)
    argv = [info.executable, "-d", str(wd), "-s", str(script)]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=str(wd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_siril_env(wd))
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        lines = _clean_lines(out.decode("utf-8", "replace"))
        raise SirilError(f"Siril did not finish '{name}' within {timeout_s:g} s and was stopped; "
                         "give it more time (--siril-timeout) or check the frames", None, lines[-5:]) from None
    finally:
        if proc.poll() is None:  # pragma: no cover - only on an exception in communicate
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - t0
    lines = _clean_lines(out.decode("utf-8", "replace"))
    err_lines = _clean_lines(err.decode("utf-8", "replace"))
    result = ScriptResult(proc.returncode, tuple(lines), elapsed, str(wd))
    log.debug("siril %s: exit %s in %.2f s", name, proc.returncode, elapsed)
    if proc.returncode < 0 or proc.returncode > 1:
        raise SirilError(f"Siril crashed while running '{name}' (signal or abnormal exit); "
                         "retry, and report it to the Siril developers if it repeats",
                         proc.returncode, (lines + err_lines)[-5:])
    failed = proc.returncode != 0 or any("Script execution failed" in line for line in lines)
    if failed:
        bad = [line for line in lines if line.startswith("Error in line")]
        what = _errors_in(lines)
        detail = what[0] if what else (bad[0] if bad else "see its log")
        raise SirilError(f"Siril failed running '{name}': {detail}", proc.returncode,
                         [line for line in lines if "Script execution" not in line][-5:])
    for pattern in expect:
        if not result.find(pattern):
            what = _errors_in(lines)
            raise SirilError(f"Siril ran '{name}' but did not report the expected result "
                             f"(/{pattern}/){': ' + what[-1] if what else ''}", proc.returncode, lines[-5:])
    return result
