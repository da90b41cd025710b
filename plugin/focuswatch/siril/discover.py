"""Finding Siril: the executable, its version, and the private settings folder it runs with."""
from __future__ import annotations


import logging
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from focuswatch.errors import SirilError



log = logging.getLogger("focuswatch.siril")


#: Oldest Siril we drive (the first with ``requires``, 32-bit stacking and ``-norm=addscale``).
MIN_VERSION: tuple[int, int, int] = (1, 0, 0)


#: First version with ``findstar -out``, ``ready`` on the pipe and the v4 ``.seq`` format.
FINDSTAR_OUT_VERSION: tuple[int, int, int] = (1, 2, 0)


#: Environment variable naming the siril-cli executable (overrides PATH).
ENV_SIRIL = "FOCUSWATCH_SIRIL"


INSTALL_HINT = ("install Siril 1.0 or newer (Debian/Ubuntu: 'apt install siril'; Windows/macOS: "
                "https://siril.org/download/) or give the path to siril-cli with --siril or "
                f"the {ENV_SIRIL} environment variable")


# --------------------------------------------------------------------------- finding Siril

@dataclass(frozen=True)
class SirilInfo:
    """The siril-cli we drive: its path and version, and what that version can do."""

    executable: str
    version: tuple[int, int, int]
    version_text: str

    @property
    def version_str(self) -> str:
        return ".".join(str(v) for v in self.version)

    @property
    def has_findstar_out(self) -> bool:
        """1.2+: ``findstar -out=`` writes a per-star table and runs in scripts."""
        return self.version >= FINDSTAR_OUT_VERSION

    @property
    def fixed_pipes(self) -> bool:
        """1.0.x: pipe mode uses the fixed FIFOs in /tmp (one instance per machine)."""
        return self.version < FINDSTAR_OUT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["version"] = self.version_str
        return d


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The ``(major, minor, patch)`` in ``siril-cli --version`` output, e.g. ``siril 1.0.6``.

    >>> parse_version("siril 1.0.6")
    (1, 0, 6)
    >>> parse_version("siril-cli 1.2.0-beta1")
    (1, 2, 0)
    >>> parse_version("nothing") is None
    True
    """
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def find_siril(executable: str | os.PathLike[str] | None = None, *, timeout_s: float = 30.0) -> SirilInfo:
    """Locate siril-cli and read its version; raise :class:`SirilError` saying what to install.

    Order: ``executable``, then ``$FOCUSWATCH_SIRIL``, then ``siril-cli`` on PATH (the GUI
    binary ``siril`` needs a display, so it is not used).
    """
    candidate = str(executable) if executable else os.environ.get(ENV_SIRIL) or None
    path = shutil.which(candidate) if candidate else shutil.which("siril-cli")
    if path is None and candidate and Path(candidate).is_file():
        path = candidate
    if path is None:
        where = f"'{candidate}' was not found or is not executable" if candidate else "siril-cli is not on PATH"
        raise SirilError(f"Siril is needed for this: {where}; {INSTALL_HINT}")
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        raise SirilError(f"{path} --version did not answer within {timeout_s:g} s; "
                         "is this really siril-cli? Reinstall Siril") from None
    except OSError as exc:
        raise SirilError(f"cannot run {path}: {exc}; {INSTALL_HINT}") from None
    text = (proc.stdout + proc.stderr).strip()
    version = parse_version(text)
    if proc.returncode != 0 or version is None:
        raise SirilError(f"{path} --version gave no version ('{text[:80]}'); {INSTALL_HINT}",
                         proc.returncode, text.splitlines()[-3:])
    if version < MIN_VERSION:
        raise SirilError(f"{path} is Siril {'.'.join(map(str, version))}, too old: focuswatch needs "
                         f"{'.'.join(map(str, MIN_VERSION))} or newer; {INSTALL_HINT}")
    return SirilInfo(path, version, text.splitlines()[0] if text else "")


#: Sub-folder of a work directory that holds Siril's own settings (see :func:`_siril_env`).
CONFIG_SUBDIR = "siril-config"


def _siril_env(workdir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Environment for siril-cli: C numbers, and Siril's settings isolated in ``workdir``.

    C locale: a decimal comma would break our parsing. Settings: Siril keeps them in GLib's
    user config folder (``$XDG_CONFIG_HOME/siril``; GLib honours ``XDG_CONFIG_HOME`` on
    Windows too, ``APPDATA``/``LOCALAPPDATA`` are set as well for older builds). ``-i FILE``
    is no help: Siril >= 1.2 exits at start when FILE does not exist ("Could not load or
    create settings file, exiting.") and 1.0.6 then falls back to the user's own
    ``~/.config/siril/siril.config`` and rewrites it (seen: ``grade`` changed a user's
    settings). So Siril gets a private config folder inside our work directory: the user's
    preferences neither change our results nor get overwritten.
    """
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    env["LC_NUMERIC"] = "C"
    if workdir is not None:
        cfg = Path(workdir).resolve() / CONFIG_SUBDIR
        cfg.mkdir(parents=True, exist_ok=True)
        env["XDG_CONFIG_HOME"] = str(cfg)
        if os.name == "nt":  # pragma: no cover - Windows only
            env["APPDATA"] = str(cfg)
            env["LOCALAPPDATA"] = str(cfg)
    return env
