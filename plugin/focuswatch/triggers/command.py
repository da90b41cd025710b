"""The ``command`` trigger: run a program (never through a shell) with a timeout."""
from __future__ import annotations


import os
import subprocess
from typing import Mapping, Sequence

from focuswatch.errors import ConfigError
from focuswatch.triggers.base import Trigger, TriggerRequest, TriggerResult


#: How much of a failed command's stderr goes into the message.
STDERR_TAIL_CHARS = 400


class CommandTrigger(Trigger):
    """Run a program (no shell) when a refocus is due; exit 0 is success.

    ``{reason}``-style placeholders in the arguments are replaced (see the module table) and
    ``FOCUSWATCH_REASON``, ``FOCUSWATCH_HFR_PX``, ``FOCUSWATCH_DEFOCUS_UM``,
    ``FOCUSWATCH_DEFOCUS_CFZ``, ``FOCUSWATCH_FILTER``, ``FOCUSWATCH_FILE``, ``FOCUSWATCH_TIME``
    are set in its environment. Output is captured; a failure reports the tail of stderr.
    """

    name = "command"

    def __init__(self, argv: Sequence[str], *, timeout_s: float = 120.0):
        if not argv:
            raise ConfigError("[trigger] command: needs at least the program to run")
        self.argv, self.timeout_s = [str(a) for a in argv], float(timeout_s)

    def describe(self) -> str:
        return "command: " + " ".join(self.argv)

    def _fire(self, request: TriggerRequest) -> TriggerResult:
        values = request.placeholders()
        argv = [self.argv[0]] + [_substitute(a, values) for a in self.argv[1:]]
        env = dict(os.environ)
        env.update({f"FOCUSWATCH_{k.upper()}": v for k, v in values.items()})
        prog = argv[0]
        try:
            limit_s = self.budget_s(self.timeout_s)
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=limit_s,
                                  env=env, shell=False, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except FileNotFoundError:
            return self._fail(f"command: program not found: {prog} (give the full path in [trigger] command)",
                              retryable=False)
        except PermissionError:
            return self._fail(f"command: not allowed to run {prog} (is it executable?)", retryable=False)
        except subprocess.TimeoutExpired as exc:
            tail = _tail(exc.stderr)
            return self._fail(f"command: {prog} did not finish within {limit_s:.3g} s and was killed"
                              + (f"; stderr: {tail}" if tail else ""), timeout_s=limit_s)
        except OSError as exc:
            return self._fail(f"command: cannot run {prog} ({exc.strerror or exc})")
        if proc.returncode != 0:
            tail = _tail(proc.stderr)
            return self._fail(f"command: {prog} exited with code {proc.returncode}"
                              + (f"; stderr: {tail}" if tail else ""), exit_code=proc.returncode,
                              stderr_tail=tail)
        return self._ok(f"command: {prog} finished (exit 0)", exit_code=0, stdout_tail=_tail(proc.stdout))


def _substitute(arg: str, values: Mapping[str, str]) -> str:
    """Replace the known ``{name}`` placeholders only (no str.format: user text stays inert)."""
    for k, v in values.items():
        arg = arg.replace("{" + k + "}", v)
    return arg


def _tail(data: bytes | str | None) -> str:
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text[-STDERR_TAIL_CHARS:]
