"""Proofs that a frame file is whole and sane, shared by the FITS and XISF readers.

A capture program writes a frame in place (NINA) or pre-allocates it at full size and fills
it, so "the file exists" proves nothing. The format readers (:mod:`focuswatch.io.fits`,
:mod:`focuswatch.io.xisf`) compute what their headers promise; the rules here say what counts
as proof: the size the headers promise is on disk and the data does not end in zero bytes,
or a checksum (FITS ``DATASUM``, XISF ``sha1:``) matches (:class:`_Completeness`). A file
that cannot prove it is whole is watched for stable content (:func:`content_signature`).
Absurd sizes and shapes are refused from the header, before a byte of pixels is read.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from focuswatch.errors import FrameError, FrameIncomplete
from focuswatch.model.frame import COLOUR_PLANES

#: A frame bigger than this (in bytes of pixel data) is treated as a corrupt header.
MAX_DATA_BYTES = 8 * 1024 ** 3
#: Largest 2-D image read (pixels): three times the biggest astro CMOS sensor (IMX411, 151 MP).
#: A header claiming more is refused before a byte of pixels is read (a float32 copy of it
#: alone would take 1.8 GB).
MAX_IMAGE_PIXELS = 450_000_000
#: Bytes looked at, at the end of the pixel data, for the zero fill of a pre-allocated file
#: (small: the writer's last chunk may leave only a few unwritten bytes).
ZERO_PROBE_BYTES = 256
#: Bytes per sample of :func:`content_signature`.
SIGNATURE_SAMPLE_BYTES = 4096


def file_bytes(p: Path, size_bytes: int | None = None) -> int:
    """The file's size (``size_bytes`` when the caller has just stat()ed it, else asked now);
    :class:`FrameIncomplete` for an empty file: being created, or cut off. Both readers start here."""
    actual = os.stat(p).st_size if size_bytes is None else size_bytes
    if actual == 0:
        raise FrameIncomplete(p, "empty file (0 bytes): still being written, or truncated")
    return actual


class _Completeness:
    """``complete`` and ``proven`` for both layouts (FITS and XISF say the same things)."""

    actual_bytes: int
    expected_bytes: int
    zero_tail: bool
    checksum_ok: bool | None

    @property
    def complete(self) -> bool:
        return self.actual_bytes >= self.expected_bytes

    @property
    def proven(self) -> bool:
        """Complete beyond doubt: size plus END cards and no zero tail, or a matching checksum."""
        return self.complete and (self.checksum_ok is True or (not self.zero_tail and self.checksum_ok is None))


def _gb(n_bytes: int) -> str:
    """``12.5 GB``, or ``3.2e+12 GB`` for the absurd sizes a corrupt header claims."""
    gb = n_bytes / 1e9
    return f"{gb:.1f} GB" if gb < 1e6 else f"{gb:.2g} GB"



def _datasum(fh: Any, start: int, nbytes: int) -> int:
    """FITS DATASUM: the 32-bit ones' complement sum of the data (fill included, zeros)."""
    fh.seek(start)
    total = 0
    left = nbytes
    while left > 0:
        chunk = fh.read(min(left, 8 << 20))
        if not chunk:
            break
        left -= len(chunk)
        if len(chunk) % 4:
            chunk += b"\0" * (4 - len(chunk) % 4)
        total += int(np.frombuffer(chunk, ">u4").sum(dtype=np.uint64))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _zero_at(fh: Any, end: int, n: int) -> bool:
    """True when the ``n`` bytes before ``end`` are all zero (unwritten pre-allocated space)."""
    start = max(0, end - n)
    fh.seek(start)
    chunk = fh.read(end - start)
    return bool(chunk) and not any(chunk) if len(chunk) < 64 else bool(chunk) and not np.frombuffer(
        chunk[:len(chunk) // 8 * 8], np.uint64).any() and not any(chunk[len(chunk) // 8 * 8:])



#: Checksum algorithms an XISF data block may name (``checksum="sha1:..."``).
XISF_DIGESTS = ("sha1", "sha256", "sha512", "md5")


def _digest_ok(fh: Any, pos: int, size: int, checksum: str) -> bool | None:
    """Whether the ``size`` bytes at ``pos`` match an XISF ``checksum="ALGO:HEX"`` attribute;
    ``None`` for an algorithm we do not know (no proof either way)."""
    import hashlib

    algo, want = checksum.split(":", 1)
    algo = algo.strip().lower().replace("-", "")
    if algo not in XISF_DIGESTS:
        return None
    hsh = hashlib.new(algo)
    fh.seek(pos)
    left = size
    while left > 0:
        chunk = fh.read(min(left, 8 << 20))
        if not chunk:
            break
        hsh.update(chunk)
        left -= len(chunk)
    return hsh.hexdigest() == want.strip().lower()


def _refuse_shape(p: Path, dims: tuple[int, ...]) -> None:
    """Refuse from the header what :func:`_prepare` would refuse after reading it all."""
    planes = math.prod(dims[2:]) if len(dims) > 2 else 1
    if len(dims) == 1:
        raise FrameError(p, f"a 1-D array of {dims[0]} values, not a 2-D frame")
    if len(dims) == 3 and planes == COLOUR_PLANES:  # RGB as Siril, GIMP and colour cameras save it: luminance
        pass
    elif planes > 1:
        raise FrameError(p, f"a {len(dims)}-D cube of {planes} planes ({' x '.join(map(str, dims))}), "
                            "not a mono 2-D frame; refused without reading its pixels")
    if dims[0] * dims[1] > MAX_IMAGE_PIXELS:
        raise FrameError(p, f"a {dims[0]}x{dims[1]} image is larger than any camera sensor "
                            f"({MAX_IMAGE_PIXELS / 1e6:.0f} MP at most); refused without reading it")


def _layout_still_valid(p: Path, layout: Any, kind: type, size_bytes: int | None = None) -> bool:
    """Whether ``layout`` (from :func:`check_complete` a moment ago) still describes ``p``:
    same kind and same size on disk. Saves walking the headers (and a DATASUM pass) again.
    ``size_bytes``: the size the caller has just read from ``stat()`` (not read again)."""
    if not isinstance(layout, kind):
        return False
    if size_bytes is not None:
        return size_bytes == layout.actual_bytes
    try:
        return os.stat(p).st_size == layout.actual_bytes
    except OSError:
        return False


def content_signature(path: str | Path, layout: _Completeness | None = None) -> tuple[int, ...]:
    """A cheap fingerprint of a file's content: its size and a hash of a few sampled blocks.

    The stable-content check for a file that cannot prove it is whole (zero-filled tail,
    no checksum): two equal signatures some time apart, with no size or mtime change.
    """
    import zlib

    p = Path(path)
    size = os.stat(p).st_size
    out = [size]
    with open(p, "rb") as fh:
        for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
            fh.seek(max(0, int(size * frac) - SIGNATURE_SAMPLE_BYTES))
            out.append(zlib.crc32(fh.read(SIGNATURE_SAMPLE_BYTES)))
    return tuple(out)

