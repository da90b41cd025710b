"""Reading the frames capture programs save: pixels, a normalised header, completeness.

This is I/O: it opens files **read-only**, never writes, moves, renames or locks a user's
frame (astropy reads without memory-mapping so Windows keeps no handle open), and turns
every way a file can be bad into a :class:`~focuswatch.errors.FrameError` naming the file.

Supported: FITS (``.fits .fit .fts``), tile-compressed FITS (``.fits.fz``), 8/16/32-bit
integer (with BZERO) and float, mono 2-D or 3-plane colour (measured as luminance, the
mean of the planes); one-shot-colour frames carrying ``BAYERPAT`` are measured on their
green channel interpolated to full resolution (:func:`bayer_green_full`), so the Bayer grid
neither fakes star sizes nor halves the sampling; XISF through the ``xisf`` package.

This module is the front door (:func:`load`, :func:`read_header`, :func:`check_complete`,
:func:`frame_order_key`, :func:`is_image_file`); the work is done by format:

* :mod:`focuswatch.io.fits` — FITS headers parsed by astropy card by card (one unparsable
  card is left out instead of failing the frame), the size arithmetic in Python integers,
  plain and tile-compressed pixels;
* :mod:`focuswatch.io.xisf` — XISF header, attachment bounds, keywords and pixels;
* :mod:`focuswatch.io.completeness` — the proofs both share. :func:`check_complete` proves a
  file whole before it is measured (END cards and the size the headers promise; DATASUM /
  XISF checksums when the data still ends in zero bytes), and absurd sizes, cubes and 1-D
  arrays are refused from the header without reading the pixels.

PNG, JPEG and TIFF pictures are read here, through Pillow (no header).

Keyword sources for :class:`FrameMeta` (NINA, SGP, Ekos, ASIAIR, APT):

==================  =====================================================
field               keywords, first found wins
==================  =====================================================
image_type          IMAGETYP, FRAME, FRAMETYP
exposure_s          EXPTIME, EXPOSURE
date_obs            DATE-OBS (UTC), DATE-LOC
filter_name         FILTER, FILTNAME
focuser_pos         FOCPOS, FOCUSPOS
focuser_temp_c      FOCTEMP, FOCUSTEM, FOCUSTMP, then AMBTEMP, AMB_TEMP
focuser_step_um     FOCUSSZ, FOCSTEP
pixel_um            XPIXSZ (NINA and the FITS convention: already x binning), PIXSIZE1
binning             XBINNING
focal_length_mm     FOCALLEN
f_ratio             FOCRATIO
aperture_mm         APTDIA
==================  =====================================================
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from focuswatch.errors import FrameError, FrameIncomplete
from focuswatch.io.completeness import (MAX_DATA_BYTES, MAX_IMAGE_PIXELS, SIGNATURE_SAMPLE_BYTES, ZERO_PROBE_BYTES,
                                        _layout_still_valid, content_signature)
from focuswatch.io.fits import (FITS_BLOCK, FitsLayout, HduInfo, _load_fits, check_fits_complete, fits_layout,
                                header_meta, read_fits_meta)
from focuswatch.io.xisf import XisfLayout, _load_xisf, check_xisf_complete, read_xisf_meta, xisf_layout
from focuswatch.model.frame import Frame, FrameMeta, _prepare, meta_from_header
# the frame as data lives in focuswatch.model (pure); these names stay importable from here too
from focuswatch.model.frame import frame_from_array, parse_date_obs  # noqa: F401

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.fz", ".fit.fz", ".fz")
XISF_SUFFIXES = (".xisf",)
IMAGE_SUFFIXES = FITS_SUFFIXES + XISF_SUFFIXES
#: Pictures (screen grabs, DSLR conversions) :func:`load` also reads, through Pillow. They are
#: not frames a watcher waits for (no header), so :func:`is_image_file` leaves them out.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def is_image_file(path: str | Path) -> bool:
    """True for names that look like a frame focuswatch can read (by suffix only)."""
    name = Path(path).name.lower()
    return name.endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def refuse_frame_target(path: str | Path, what: str) -> None:
    """Raise :class:`ConfigError` when ``path`` names a frame: an output (a plot, a report)
    must never overwrite one. A path counts as a frame by its name (``.fits``, ``.xisf``...)
    or, for an existing file, by its first bytes (FITS ``SIMPLE``, XISF signature)."""
    p = Path(path)
    looks = is_image_file(p)
    if not looks and p.is_file():
        try:
            with open(p, "rb") as fh:
                head = fh.read(9)
        except OSError:
            head = b""
        looks = head.startswith((b"SIMPLE  =", b"XISF0100"))
    if looks:
        from focuswatch.errors import ConfigError

        raise ConfigError(f"{what} {p}: that is (or is named like) a frame, and frames are never overwritten; "
                          "give a path ending in .png (or .html for a report)")


def check_complete(path: str | Path, size_bytes: int | None = None) -> FitsLayout | XisfLayout:
    """Raise :class:`FrameIncomplete` unless the file at ``path`` is whole.

    FITS (plain and tile-compressed): every header has its END card and the size the headers
    promise is on disk. XISF: the signature, the XML header and every attachment's bytes
    are there. The returned layout's ``proven`` says whether that is beyond doubt (no
    zero-filled tail, or a matching checksum); the watcher measures a proven file at once
    and waits for a stable content check otherwise. Raises :class:`FrameError` for a file
    that can never be a frame (not FITS, only a table, absurd header). ``size_bytes``: the
    file's size from a ``stat()`` the caller has just made (the watcher's readiness poll).
    """
    p = Path(path)
    if p.name.lower().endswith(XISF_SUFFIXES):
        return check_xisf_complete(p, size_bytes)
    return check_fits_complete(p, size_bytes)


def _load_picture(p: Path) -> Frame:
    """A PNG, JPEG or TIFF picture through Pillow, as luminance (the mean of its colours).

    Rows are flipped into FITS order (row 0 = the bottom of the picture), so a picture of a
    frame shown bottom-up, as FITS viewers do, keeps its handedness: a mirrored Bahtinov
    pattern would flip the sign of the focus error. No header: no exposure, no optics.
    """
    try:
        from PIL import Image
    except ImportError:  # pillow is a dependency; a stripped install may lack it
        raise FrameError(p, "reading PNG/JPEG/TIFF needs Pillow: pip install pillow") from None
    try:
        # our own read-only handle: opened by name, Pillow memory-maps uncompressed pictures,
        # and on Windows a mapped file cannot be deleted or renamed by the program that wrote it
        with open(p, "rb") as fh, Image.open(fh) as im:
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
                arr = np.asarray(im)
            else:
                arr = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FrameError(p, f"unreadable picture: {text}") from None
    arr = arr[::-1]
    sat = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else None
    frame = _prepare(p, arr, FrameMeta(width=int(arr.shape[1]), height=int(arr.shape[0])), sat)
    frame.notes.append(f"picture ({mode}): rows flipped to FITS order, row 0 = the bottom of the picture")
    return frame


def _opened_path(path: str | Path) -> tuple[Path, int]:
    """The path and its size in bytes, after telling the ways a name can fail to be a file apart.

    One ``stat()`` serves both: on a network share each one is a round trip, and a watched
    frame is looked at several times (readiness, header, pixels)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise FrameError(p, "a broken symbolic link (its target does not exist)") from None
        raise FrameError(p, "no such file") from None
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:
            raise FrameError(p, "a symbolic link loop (the link points back to itself); not a frame") from None
        raise
    if not stat.S_ISREG(st.st_mode):
        raise FrameError(p, "not a regular file (a folder or a device)")
    return p, st.st_size


def load(path: str | Path, *, check: bool = True, layout: FitsLayout | XisfLayout | None = None) -> Frame:
    """Read a frame from disk, read-only; raise :class:`FrameError` on anything bad.

    ``check=True`` first verifies that the file is complete (FITS size from the headers,
    XISF attachment bounds), so a frame still being written raises
    :class:`FrameIncomplete` instead of being measured on half its pixels. Whatever else
    goes wrong becomes one :class:`FrameError` line (:func:`focuswatch.boundary.frame_boundary`).
    ``layout``: what :func:`check_complete` just returned for this file (the watcher's
    readiness probe); reused while the file keeps that size, so the headers are not
    walked (nor a DATASUM summed) twice per frame.
    """
    from focuswatch.boundary import frame_boundary

    with frame_boundary(path):
        p, size_bytes = _opened_path(path)
        if p.name.lower().endswith(XISF_SUFFIXES):
            return _load_xisf(p, check, layout, size_bytes)
        if p.name.lower().endswith(PICTURE_SUFFIXES):
            return _load_picture(p)
        return _load_fits(p, check, layout, size_bytes)


def read_header(path: str | Path, *, layout: FitsLayout | XisfLayout | None = None,
                size_bytes: int | None = None) -> FrameMeta:
    """Only the normalised header of a FITS/XISF file (cheap: no pixels are read).

    Works on a file still being written once its headers are whole; one bad card is left
    out rather than failing the header. ``layout``: a FITS layout from
    :func:`check_complete` of this file, whose headers are used instead of reading them again
    while the file keeps that size; ``size_bytes``: its size from a ``stat()`` the caller has
    just made (then the file is not looked at again when the layout still holds).
    """
    from focuswatch.boundary import frame_boundary

    with frame_boundary(path):  # the layout's header too: whatever it raises names this frame
        if size_bytes is not None and _layout_still_valid(Path(path), layout, FitsLayout, size_bytes) \
                and layout.hdus:
            return header_meta(layout.hdus)
        p, size_bytes = _opened_path(path)
        if _layout_still_valid(p, layout, FitsLayout, size_bytes) and layout.hdus:
            return header_meta(layout.hdus)
        if p.name.lower().endswith(XISF_SUFFIXES):
            return read_xisf_meta(p)
        return read_fits_meta(p)


def frame_order_key(path: Path, meta: FrameMeta | None, mtime_s: float | None = None) -> tuple[float, str]:
    """Capture order: DATE-OBS when the header has it, else the file's modification time
    (``mtime_s`` when the caller has just read it from ``stat()``)."""
    if meta is not None and meta.timestamp is not None:
        return (meta.timestamp, path.name)
    if mtime_s is not None:
        return (mtime_s, path.name)
    try:
        return (os.stat(path).st_mtime, path.name)
    except OSError:
        return (float("inf"), path.name)


__all__ = [
    "FITS_BLOCK", "FITS_SUFFIXES", "IMAGE_SUFFIXES", "MAX_DATA_BYTES", "MAX_IMAGE_PIXELS", "PICTURE_SUFFIXES",
    "SIGNATURE_SAMPLE_BYTES", "XISF_SUFFIXES", "ZERO_PROBE_BYTES", "FitsLayout", "Frame", "FrameIncomplete",
    "FrameMeta", "HduInfo", "XisfLayout", "check_complete", "content_signature", "fits_layout", "frame_from_array",
    "frame_order_key", "is_image_file", "load", "meta_from_header", "parse_date_obs", "read_header",
    "refuse_frame_target", "xisf_layout",
]
