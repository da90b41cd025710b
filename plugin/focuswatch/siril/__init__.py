"""Driving Siril: find it, run scripts and the pipe protocol, stack subs, measure a master.

This module is I/O only: it starts ``siril-cli``, writes scripts and links into a work
directory **of ours** (never the user's folder: a user's frames are sacred) and parses
what Siril prints. It makes no decisions; :mod:`focuswatch.grade` does the grading.

Two ways to talk to Siril (facts verified on Debian's Siril 1.0.6, see ``docs/siril.md``):

* **script mode** for batch work: ``siril-cli -d WORKDIR -s /abs/script.ssf``. The exit
  code is 0 on success and 1 on failure, *except* that a failed ``load`` does not fail the
  run, so every call also checks that the expected result lines appeared. Every path we
  put inside a script is relative to WORKDIR: ``-out=`` breaks on paths with spaces.
* **pipe mode** (what pysiril speaks): ``siril-cli -p`` reads commands from a FIFO and
  answers ``log: ...``, ``progress: ...`` and ``status: starting|success|error <command>``
  lines. 1.0.6 uses the fixed FIFOs ``/tmp/siril_command.in``/``.out`` (one instance per
  machine; we hold a lock file while using them) and sends no ``ready``; 1.2+ takes
  custom paths with ``-r``/``-w`` and sends ``ready``. pysiril is used when it is
  importable; otherwise our own :class:`PipeClient`. Pipe mode is POSIX only.

Every call has a timeout and the Siril process is always terminated. Siril missing, too
old, crashing or hanging raises :class:`~focuswatch.errors.SirilError` with the exit code,
the last lines of Siril's log and what to install or fix.

Version differences handled here:

===========================  =====================================  ==============================
what                         1.0.x                                  1.2 and later
===========================  =====================================  ==============================
pipe paths                   fixed ``/tmp/siril_command.in/.out``   ``-r``/``-w`` paths, ``ready``
measuring a master           register a two-image sequence made     ``findstar -out=FILE`` per-star
                             of the master twice (``findstar`` and  table
                             ``psf`` refuse to run from scripts)
``.seq`` ``R`` lines (v3)    ``shiftx shifty fwhm wfwhm round q``   ``fwhm wfwhm round q bg n H..``
===========================  =====================================  ==============================
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from focuswatch.errors import ConfigError, SirilError
from focuswatch.model.records import Record

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
#: Siril's 32-bit images hold 0..1 for what 16-bit images hold as 0..65535.
SIRIL_FLOAT_SCALE = 65535.0
#: The fixed FIFOs of Siril 1.0.x pipe mode.
FIXED_PIPE_IN = "/tmp/siril_command.in"
FIXED_PIPE_OUT = "/tmp/siril_command.out"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b.")


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


# --------------------------------------------------------------------------- log parsing

@dataclass(frozen=True)
class ImageStat(Record):
    """Siril's ``stat`` line, in Siril's units (16-bit ADU for integer and 0..1 float images).

    ``avg_dev`` is printed by Siril 1.0 only; ``bgnoise`` by Siril 1.2+ only (``None`` when
    the version does not print it).
    """

    mean: float
    median: float
    sigma: float
    avg_dev: float | None
    min: float
    max: float
    bgnoise: float | None = None


_STAT_PAIR = re.compile(r"([A-Za-z]+):\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)",
                        re.IGNORECASE)


def parse_stat(lines: Sequence[str]) -> ImageStat | None:
    """Parse Siril's ``stat`` line by key name, whatever the version's order and extras.

    1.0.6: ``B&W layer: Mean: 508.7, Median: 500.1, Sigma: 109.6, AvgDev: 12.7, Min: .., Max: ..``;
    1.2+: ``... Sigma: 109.6, Min: .., Max: .., bgnoise: 4.62`` (no AvgDev). Mean, Median,
    Sigma, Min and Max are required; AvgDev and bgnoise are optional.
    """
    for line in lines:
        pairs = {k.lower(): float(v) for k, v in _STAT_PAIR.findall(line)}
        if all(k in pairs for k in ("mean", "median", "sigma", "min", "max")):
            return ImageStat(pairs["mean"], pairs["median"], pairs["sigma"], pairs.get("avgdev"),
                             pairs["min"], pairs["max"], pairs.get("bgnoise"))
    return None


def parse_bgnoise(lines: Sequence[str]) -> float | None:
    """Background noise from ``Background noise value (channel: #0): 4.620 (7.049e-05)``.

    The first number is on the 16-bit ADU scale whatever the image's bit depth.
    """
    for line in reversed(list(lines)):
        m = re.search(r"Background noise value \(channel: #\d+\):\s*([-\d.eE+]+)", line)
        if m:
            return float(m.group(1))
    st = parse_stat(lines)  # Siril 1.2+ also prints it on the stat line
    return st.bgnoise if st is not None else None


@dataclass(frozen=True)
class SeqImage(Record):
    """One image of a ``.seq`` file with its registration data for layer 0."""

    index: int
    filenum: int
    included: bool
    fwhm_px: float | None = None
    weighted_fwhm_px: float | None = None
    roundness: float | None = None
    quality: float | None = None
    n_stars: int | None = None
    background: float | None = None


@dataclass(frozen=True)
class SeqFile(Record):
    """The parts of a Siril ``.seq`` file we use."""

    name: str
    version: int
    reference_index: int
    images: tuple[SeqImage, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "reference_index": self.reference_index,
                "images": [i.to_dict() for i in self.images]}


def _pos(v: float) -> float | None:
    return v if math.isfinite(v) and v > 0 else None


def parse_seq(text: str) -> SeqFile:
    """Parse a ``.seq`` file (formats v0-v3 of Siril 1.0 and v4+ of 1.1/1.2+).

    ``R`` lines: v3 (1.0.x) ``R0 shiftx shifty fwhm wfwhm roundness quality``; v4+
    ``R0 fwhm wfwhm roundness quality background n_stars H h00 ... h22``. A value of 0
    means "not measured" and becomes ``None``.
    """
    name, version, ref = "", 0, -1
    images: list[list[Any]] = []
    regs: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("S "):
            m = re.match(r"S\s+'([^']*)'\s+(.*)$", line) or re.match(r"S\s+(\S+)\s+(.*)$", line)
            if not m:
                raise ValueError(f"bad S line: {line}")
            name = m.group(1)
            nums = [int(x) for x in m.group(2).split()]
            ref = nums[4] if len(nums) > 4 else -1
            version = nums[5] if len(nums) > 5 else 0
        elif line.startswith("I "):
            parts = line.split()
            images.append([int(parts[1]), parts[2] != "0"])
        elif re.match(r"R0\s", line) or line.startswith("R* "):
            vals = line.split()[1:]
            if version >= 4:
                nums = [float(v) for v in vals[:6]]
                regs.append({"fwhm_px": _pos(nums[0]), "weighted_fwhm_px": _pos(nums[1]),
                             "roundness": _pos(nums[2]), "quality": nums[3] if len(nums) > 3 else None,
                             "background": nums[4] if len(nums) > 4 else None,
                             "n_stars": int(nums[5]) if len(nums) > 5 else None})
            elif version == 3:
                nums = [float(v) for v in vals[:6]]
                regs.append({"fwhm_px": _pos(nums[2]), "weighted_fwhm_px": _pos(nums[3]),
                             "roundness": _pos(nums[4]), "quality": nums[5]})
            elif version in (1, 2):
                nums = [float(v) for v in vals[:5]]
                regs.append({"fwhm_px": _pos(nums[2]), "roundness": _pos(nums[3]), "quality": nums[4]})
            else:
                nums = [float(v) for v in vals]
                regs.append({"fwhm_px": _pos(nums[5]) if len(nums) > 5 else None})
    out = []
    for i, (filenum, incl) in enumerate(images):
        reg = regs[i] if i < len(regs) else {}
        out.append(SeqImage(i, filenum, incl, **reg))
    return SeqFile(name, version, ref, tuple(out))


def parse_findstar_list(text: str) -> list[dict[str, float]]:
    """Rows of a ``findstar -out=`` star list (Siril 1.2+), keyed by the header's names.

    The header line starts with ``# star#``; columns differ between versions (1.3 adds
    ``beta``), so they are looked up by name: ``X``, ``Y``, ``FWHMx [px]``, ``FWHMy [px]``.
    """
    header: list[str] | None = None
    rows: list[dict[str, float]] = []
    for raw in text.splitlines():
        if raw.startswith("# star#") or raw.startswith("star#"):
            header = [h.strip() for h in raw.lstrip("# ").split("\t")]
            continue
        if raw.startswith("#") or not raw.strip() or header is None:
            continue
        parts = raw.split("\t")
        row: dict[str, float] = {}
        for key, val in zip(header, parts):
            try:
                row[key] = float(val)
            except ValueError:
                continue
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- staging subs

def _check_workdir(wd: Path, sources: Sequence[Path]) -> None:
    """Refuse a work directory that holds any of ``sources``: Siril writes its sequence,
    registered images and master into it, and nothing is ever written next to a user's frames."""
    for src in sources:
        if src.resolve().parent == wd:
            raise ConfigError(f"{wd}: Siril's work directory is the folder of {src.name}; choose another "
                              "one (focuswatch never writes next to your frames)")


def _stage(src: Path, dst: Path) -> str:
    """Put a copy of the sub ``src`` at ``dst`` for Siril without touching ``src``.

    Plain FITS are symlinked (copied where symlinks are not allowed, e.g. Windows without
    developer mode); compressed FITS and XISF, which Siril 1.0 cannot read, are written
    out as plain FITS. Returns how it was staged.
    """
    name = src.name.lower()
    if os.path.lexists(dst):
        # A kept work directory holds the links/copies of an earlier run. Remove the entry
        # first: copying or writing onto an old *link* would write through it into the
        # user's sub it points at. Unlinking a link never touches its target.
        dst.unlink()
    if name.endswith((".fits", ".fit", ".fts")):
        try:
            os.symlink(src.resolve(), dst)
            return "link"
        except (OSError, NotImplementedError):
            shutil.copyfile(src, dst)
            return "copy"
    import numpy as np
    from astropy.io import fits

    if name.endswith(".xisf"):
        from xisf import XISF

        x = XISF(str(src))
        data = np.asarray(x.read_image(0))
        if data.ndim == 3:
            data = np.moveaxis(data, -1, 0)
            if data.shape[0] == 1:
                data = data[0]
        metas = x.get_images_metadata()
        kw = metas[0].get("FITSKeywords", {}) if metas else {}
        header = fits.Header()
        for k, v in kw.items():
            value = v[0]["value"] if isinstance(v, list) and v else v
            if len(k) <= 8 and k not in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND",
                                          "BZERO", "BSCALE"):
                with contextlib.suppress(ValueError, TypeError):
                    header[k] = value
    else:
        with fits.open(src, mode="readonly", memmap=False) as hdul:
            hdu = next(h for h in hdul if h.is_image and h.data is not None)
            data = np.asarray(hdu.data)
            header = fits.Header([c for c in hdu.header.cards
                                  if c.keyword not in ("ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2",
                                                       "ZCMPTYPE", "ZTILE1", "ZTILE2", "ZQUANTIZ",
                                                       "XTENSION", "PCOUNT", "GCOUNT", "TFIELDS")])
    fits.PrimaryHDU(data, header).writeto(dst, overwrite=True)
    return "converted"


# --------------------------------------------------------------------------- stacking

@dataclass(frozen=True)
class StackResult:
    """A master made by Siril from staged subs (paths inside our work directory)."""

    master_path: str
    n_input: int
    n_registered: int
    n_stacked: int
    sub_files: tuple[str, ...]
    sub_registration: tuple[SeqImage, ...]
    rejection_pct: tuple[float, float] | None
    siril_noise_adu: float | None
    elapsed_s: float
    siril_version: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sub_registration"] = [s.to_dict() for s in self.sub_registration]
        return d


def stack(subs: Sequence[str | os.PathLike[str]], workdir: str | os.PathLike[str], *,
          info: SirilInfo | None = None, timeout_s: float = 1800.0, sigma_low: float = 3.0,
          sigma_high: float = 3.0) -> StackResult:
    """Register and stack ``subs`` with Siril into ``workdir/master.fits``.

    The recipe is the one meant for *grading*, not for a pretty picture: global star
    registration, average with winsorized sigma rejection, additive + scale normalisation
    of the inputs and **no** output normalisation (it would rescale the noise). The subs
    must already be validated (one unreadable sub aborts Siril's registration); they are
    linked into ``workdir`` as ``light_00001.fits``... in the order given. A ``workdir``
    that is the folder of a sub raises :class:`~focuswatch.errors.ConfigError` before
    anything is written.
    """
    info = info or find_siril()
    subs = [Path(s) for s in subs]
    if len(subs) < 2:
        raise SirilError(f"stacking needs at least 2 subs, got {len(subs)}")
    wd = Path(workdir).resolve()
    _check_workdir(wd, subs)
    wd.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(subs, start=1):
        _stage(src, wd / f"light_{i:05d}.fits")
    commands = [
        "setext fits",
        "set32bits",
        "setcompress 0",
        "register light_",
        f"stack r_light_ rej w {sigma_low:g} {sigma_high:g} -norm=addscale -out=master",
    ]
    res = run_script(commands, wd, info=info, timeout_s=timeout_s, name="stack",
                     expect=(r"registered\.", r"stacked|Stacked sequence successfully"))
    master = wd / "master.fits"
    if not master.is_file():
        raise SirilError("Siril reported success but wrote no master.fits", res.returncode, res.tail())
    m = res.find(r"Total:\s*(\d+) failed,\s*(\d+) registered")
    n_reg = int(m[-1].group(2)) if m else len(subs)
    m = res.find(r"(\d+) images have been stacked")
    n_stacked = int(m[-1].group(1)) if m else n_reg
    m = res.find(r"Pixel rejection in channel #\d+:\s*([\d.]+)%\s*-\s*([\d.]+)%")
    rej = (float(m[-1].group(1)), float(m[-1].group(2))) if m else None
    seq_path = wd / "light_.seq"
    regs: tuple[SeqImage, ...] = ()
    if seq_path.is_file():
        with contextlib.suppress(ValueError, IndexError):
            regs = parse_seq(seq_path.read_text(encoding="utf-8", errors="replace")).images
    return StackResult(str(master), len(subs), n_reg, n_stacked, tuple(str(s) for s in subs), regs, rej,
                       parse_bgnoise(res.lines), res.elapsed_s, info.version_str)


# --------------------------------------------------------------------------- measuring

@dataclass(frozen=True)
class SirilMeasurement:
    """Siril's own view of an image: median star FWHM (Gaussian fit), roundness, noise."""

    fwhm_px: float | None
    fwhm_y_px: float | None
    roundness: float | None
    n_stars: int
    noise_adu: float | None
    stat: ImageStat | None
    method: str
    elapsed_s: float
    siril_version: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stat"] = self.stat.to_dict() if self.stat else None
        return d


def measure(image: str | os.PathLike[str], workdir: str | os.PathLike[str], *, info: SirilInfo | None = None,
            timeout_s: float = 600.0) -> SirilMeasurement:
    """Measure stars and noise of one image (a master) with Siril.

    Siril 1.0.x refuses ``findstar``/``psf`` in scripts, so there the image is registered
    as a two-image sequence of itself: the log says ``Found N stars in reference`` and
    ``FWHMx/FWHMy``, and the ``.seq`` ``R`` line holds FWHM and roundness (FWHMy/FWHMx).
    1.2+ runs ``findstar -out=`` and takes medians over its per-star table. ``stat`` and
    ``bgnoise`` give the statistics and the noise in both.
    """
    info = info or find_siril()
    src = Path(image)
    wd = Path(workdir).resolve()
    _check_workdir(wd, [src])
    wd.mkdir(parents=True, exist_ok=True)
    if info.has_findstar_out:
        _stage(src, wd / "m_00001.fits")
        res = run_script(["setext fits", "load m_00001", "findstar -out=stars.lst", "stat", "bgnoise"], wd,
                         info=info, timeout_s=timeout_s, name="measure",
                         expect=(r"Reading FITS|Loading", r"Found \d+", r"Background noise value"))
        rows = parse_findstar_list((wd / "stars.lst").read_text(encoding="utf-8", errors="replace")) \
            if (wd / "stars.lst").is_file() else []
        fx = [r["FWHMx [px]"] for r in rows if r.get("FWHMx [px]", 0) > 0]
        fy = [r["FWHMy [px]"] for r in rows if r.get("FWHMy [px]", 0) > 0]
        rnd = [r["FWHMy [px]"] / r["FWHMx [px]"] for r in rows
               if r.get("FWHMx [px]", 0) > 0 and r.get("FWHMy [px]", 0) > 0]
        med = (lambda v: statistics.median(v) if v else None)
        return SirilMeasurement(med(fx), med(fy), med(rnd), len(rows), parse_bgnoise(res.lines),
                                parse_stat(res.lines), "findstar", res.elapsed_s, info.version_str)
    for i in (1, 2):
        _stage(src, wd / f"m_{i:05d}.fits")
    res = run_script(["setext fits", "register m_", "load m_00001", "stat", "bgnoise"], wd, info=info,
                     timeout_s=timeout_s, name="measure",
                     expect=(r"Found \d+ stars in reference", r"Reading FITS: file m_00001",
                             r"Background noise value"))
    m = res.find(r"Found (\d+) stars in reference")
    n_stars = int(m[0].group(1)) if m else 0
    fx = res.find(r"FWHMx:\s*([\d.]+)\s*(\S*)")
    fy = res.find(r"FWHMy:\s*([\d.]+)\s*(\S*)")
    fwhm_x = float(fx[0].group(1)) if fx else None
    fwhm_y = float(fy[0].group(1)) if fy else None
    roundness = None
    seq = wd / "m_.seq"
    if seq.is_file():
        with contextlib.suppress(ValueError, IndexError):
            parsed = parse_seq(seq.read_text(encoding="utf-8", errors="replace"))
            if parsed.images and parsed.images[0].fwhm_px:
                fwhm_x = parsed.images[0].fwhm_px
                roundness = parsed.images[0].roundness
    if fx and fx[0].group(2).startswith('"'):
        log.warning("Siril reported FWHM in arcsec; the .seq value in pixels is used")
    if roundness is None and fwhm_x and fwhm_y:
        roundness = fwhm_y / fwhm_x
    return SirilMeasurement(fwhm_x, fwhm_y, roundness, n_stars, parse_bgnoise(res.lines), parse_stat(res.lines),
                            "register-trick", res.elapsed_s, info.version_str)


@contextlib.contextmanager
def workspace(keep: str | os.PathLike[str] | None = None, prefix: str = "focuswatch-siril-") -> Iterator[Path]:
    """A work directory of ours: a fresh temp dir removed afterwards, or ``keep`` kept."""
    if keep is not None:
        p = Path(keep)
        p.mkdir(parents=True, exist_ok=True)
        yield p
        return
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


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


def load_master_pixels(path: str | os.PathLike[str]):
    """Read a Siril master for focuswatch's own measurement: ``(pixels float32, header dict)``.

    Siril's 32-bit masters hold 0..1; they are scaled back to the 16-bit ADU range so
    thresholds and noise read the same as on the subs.
    """
    import numpy as np
    from astropy.io import fits

    with fits.open(Path(path), mode="readonly", memmap=False) as hdul:
        hdu = next(h for h in hdul if h.is_image and h.data is not None)
        is_float = hdu.data.dtype.kind == "f"
        data = np.asarray(hdu.data, dtype=np.float32)
        header = {k: v for k, v in hdu.header.items() if k}
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    finite = data[np.isfinite(data)]
    if finite.size and is_float and float(finite.max()) <= 1.5:
        data = data * np.float32(SIRIL_FLOAT_SCALE)
    return np.ascontiguousarray(data), header


__all__ = [
    "MIN_VERSION", "SirilInfo", "find_siril", "parse_version", "ScriptResult", "run_script", "ImageStat",
    "parse_stat", "parse_bgnoise", "SeqImage", "SeqFile", "parse_seq", "parse_findstar_list", "StackResult",
    "stack", "SirilMeasurement", "measure", "workspace", "PipeClient", "PipeReply", "pipe_session",
    "pysiril_available", "load_master_pixels",
]
