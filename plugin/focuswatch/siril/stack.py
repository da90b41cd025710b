"""Stacking subs and measuring a master in a work folder of ours (the user's frames are only linked or copied, never touched)."""
from __future__ import annotations

import logging

import contextlib
import os
import shutil
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from focuswatch.errors import ConfigError, SirilError
from focuswatch.siril.discover import SirilInfo, find_siril
from focuswatch.siril.parse import ImageStat, SeqImage, parse_bgnoise, parse_findstar_list, parse_seq, parse_stat
from focuswatch.siril.parse import parse_transforms  # the log's matrices, matched to images
from focuswatch.siril.run import run_script

log = logging.getLogger("focuswatch.siril")


#: Siril's 32-bit images hold 0..1 for what 16-bit images hold as 0..65535.
SIRIL_FLOAT_SCALE = 65535.0


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
    #: the subs were one-shot-colour mosaics, debayered by Siril (its default demosaicing) before registering
    debayered: bool = False
    #: the registration's matrices of the subs other than the reference, as printed in Siril's log:
    #: ``(a, b, c, d, e, f)`` of ``x' = a x + b y + c``, ``y' = d x + e y + f`` (empty when not found)
    transforms: tuple[tuple[float, ...], ...] = ()
    #: the subs' size (width, height) in pixels, for the registration's sub-pixel phases over the field
    frame_size_px: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sub_registration"] = [s.to_dict() for s in self.sub_registration]
        d["transforms"] = [list(t) for t in self.transforms]
        return d


def _frame_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a FITS frame from its header, or None."""
    from astropy.io import fits

    with contextlib.suppress(OSError, ValueError, StopIteration, KeyError, TypeError):
        with fits.open(path, mode="readonly", memmap=False, lazy_load_hdus=True) as hdul:
            h = next(x.header for x in hdul if x.header.get("NAXIS", 0) >= 2)
            return int(h["NAXIS1"]), int(h["NAXIS2"])
    return None


def _drop_stale_links(*dirs: Path) -> None:
    """Unlink the ``light_*.fits`` links an earlier run left in a kept work directory.

    In ``dirs[0]`` (where the subs are staged) a link beyond this run's count would be
    stacked too; in ``wd`` of a debayering run, Siril's ``convert -out=..`` writes
    ``light_NNNNN.fits`` where an earlier mono run's links into the user's subs may still
    be, and a writer that opens the old name writes through the link into the sub.
    Only links are removed: unlinking a link never touches its target, and a regular
    file is never deleted here.
    """
    for d in dirs:
        for p in d.glob("light_*.fits"):
            if p.is_symlink():
                p.unlink()


def grading_commands(debayer: bool = False, sigma_low: float = 3.0, sigma_high: float = 3.0) -> list[str]:
    """The Siril script of :func:`stack` (the grading recipe), for subs staged as ``light_00001.fits``...
    in the working directory (in ``cfa/`` when ``debayer``). One place, so that
    ``scripts/make_siril_resampling.py`` measures its stacking table with the very recipe ``grade`` runs."""
    convert = ["cd cfa", "convert light -debayer -out=..", "cd .."] if debayer else []
    return [
        "setext fits",
        "set32bits",
        "setcompress 0",
        *convert,
        "register light_",
        f"stack r_light_ rej w {sigma_low:g} {sigma_high:g} -norm=addscale -out=master",
    ]


def stack(subs: Sequence[str | os.PathLike[str]], workdir: str | os.PathLike[str], *,
          info: SirilInfo | None = None, timeout_s: float = 1800.0, sigma_low: float = 3.0,
          sigma_high: float = 3.0, debayer: bool = False) -> StackResult:
    """Register and stack ``subs`` with Siril into ``workdir/master.fits``.

    The recipe is the one meant for *grading*, not for a pretty picture: global star
    registration, average with winsorized sigma rejection, additive + scale normalisation
    of the inputs and **no** output normalisation (it would rescale the noise). The subs
    must already be validated (one unreadable sub aborts Siril's registration); they are
    linked into ``workdir`` as ``light_00001.fits``... in the order given. A ``workdir``
    that is the folder of a sub raises :class:`~focuswatch.errors.ConfigError` before
    anything is written.

    ``debayer``: the subs are one-shot-colour mosaics (``BAYERPAT``). They are staged in
    ``workdir/cfa`` and debayered by Siril's ``convert -debayer`` (its default demosaicing,
    RCD on 1.0.6, with the pattern from the header) before registration, as Siril's own
    colour-camera scripts do: registering the mosaic itself resamples red, green and blue
    sites into one another (Siril logs "Registering a sequence opened as CFA is a bad idea").
    The master then has three planes (R, G, B).
    """
    info = info or find_siril()
    subs = [Path(s) for s in subs]
    if len(subs) < 2:
        raise SirilError(f"stacking needs at least 2 subs, got {len(subs)}")
    wd = Path(workdir).resolve()
    _check_workdir(wd, subs)
    wd.mkdir(parents=True, exist_ok=True)
    stage_dir = wd / "cfa" if debayer else wd
    stage_dir.mkdir(parents=True, exist_ok=True)
    _drop_stale_links(stage_dir, *((wd,) if debayer else ()))
    for i, src in enumerate(subs, start=1):
        _stage(src, stage_dir / f"light_{i:05d}.fits")
    commands = grading_commands(debayer, sigma_low, sigma_high)
    expect = ((r"Conversion succeeded",) if debayer else ()) + (r"registered\.", r"stacked|Stacked sequence successfully")
    try:
        res = run_script(commands, wd, info=info, timeout_s=timeout_s, name="stack", expect=expect)
    except SirilError as exc:
        n_reg = len(list(wd.glob("r_light_*.fits")))
        if n_reg < 2 and any(wd.glob("light_*.seq")):  # registration ran and left too few to stack
            raise SirilError(f"Siril registered only {n_reg} of {len(subs)} subs, too few to stack: are they one "
                             "field (the same target, overlapping) with enough stars in each?", exc.exit_code,
                             exc.log_tail) from None
        raise
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
                       parse_bgnoise(res.lines), res.elapsed_s, info.version_str, debayer,
                       parse_transforms(res.lines), _frame_size(stage_dir / "light_00001.fits"))


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

