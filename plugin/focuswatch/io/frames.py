"""Reading the frames capture programs save: pixels, a normalised header, completeness.

This is I/O: it opens files **read-only**, never writes, moves, renames or locks a user's
frame (astropy reads without memory-mapping so Windows keeps no handle open), and turns
every way a file can be bad into a :class:`~focuswatch.errors.FrameError` naming the file.

Supported: FITS (``.fits .fit .fts``), tile-compressed FITS (``.fits.fz``), 8/16/32-bit
integer (with BZERO) and float, mono 2-D or 3-plane colour (measured as luminance, the
mean of the planes); one-shot-colour frames carrying ``BAYERPAT`` are measured on their
green channel interpolated to full resolution (:func:`bayer_green_full`), so the Bayer grid
neither fakes star sizes nor halves the sampling; XISF through the ``xisf`` package.

Headers are parsed by astropy (``Header.fromstring``) card by card, so one unparsable card is
left out instead of failing the frame; only the size arithmetic is ours, in Python integers.
:func:`check_complete` proves a file whole before it is measured (END cards and the size the
headers promise; DATASUM / XISF checksums when the data still ends in zero bytes; XISF
attachment bounds), and absurd sizes, cubes and 1-D arrays are refused from the header
without reading the pixels.

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

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from focuswatch.errors import FrameError, FrameIncomplete
from focuswatch.model.frame import COLOUR_PLANES, Frame, FrameMeta, _prepare, _saturation_adu, meta_from_header
# the frame as data lives in focuswatch.model (pure); these names stay importable from here too
from focuswatch.model.frame import frame_from_array, parse_date_obs  # noqa: F401

FITS_BLOCK = 2880
#: A frame bigger than this (in bytes of pixel data) is treated as a corrupt header.
MAX_DATA_BYTES = 8 * 1024 ** 3
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


# --------------------------------------------------------------------------- completeness

#: Largest 2-D image read (pixels): three times the biggest astro CMOS sensor (IMX411, 151 MP).
#: A header claiming more is refused before a byte of pixels is read (a float32 copy of it
#: alone would take 1.8 GB).
MAX_IMAGE_PIXELS = 450_000_000
#: Bytes looked at, at the end of the pixel data, for the zero fill of a pre-allocated file
#: (small: the writer's last chunk may leave only a few unwritten bytes).
ZERO_PROBE_BYTES = 256
#: Bytes per sample of :func:`content_signature`.
SIGNATURE_SAMPLE_BYTES = 4096
_END_CARD = b"END" + b" " * 77
_MAX_HEADER_BLOCKS = 2000


@dataclass(frozen=True)
class HduInfo:
    """One HDU as its header describes it: where its data starts and how long it is.

    ``header`` holds every card astropy could parse (keyword -> value); ``bad_cards`` the
    keywords of the cards it could not (a flipped byte, ``EXPTIME = NAN``): those are left
    out instead of failing the whole frame, unless the size arithmetic needs them.
    """

    index: int
    header: Mapping[str, Any]
    header_start: int
    data_start: int
    data_bytes: int
    dims: tuple[int, ...]
    bitpix: int
    compressed: bool
    is_table: bool
    bad_cards: tuple[str, ...] = ()

    @property
    def image_dims(self) -> tuple[int, ...]:
        """Image axes (NAXIS1 first); ZNAXISn for a tile-compressed image; () for a table."""
        if self.compressed:
            n = _header_int(self.header, "ZNAXIS", 0)
            return tuple(_header_int(self.header, f"ZNAXIS{i}", 0) for i in range(1, n + 1))
        return () if self.is_table else self.dims

    @property
    def has_pixels(self) -> bool:
        return bool(self.image_dims) and all(d > 0 for d in self.image_dims)


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


@dataclass(frozen=True)
class FitsLayout(_Completeness):
    """What the headers of a FITS file promise, read without trusting the file to be whole.

    ``complete`` means every header has its END card and the file holds all the bytes the
    headers promise. ``zero_tail`` flags pixel data that ends in zero bytes: a file
    pre-allocated at full size and still being filled looks complete by size alone, so
    the watcher then wants the DATASUM to match (``checksum_ok``) or the content to stay
    the same between two looks.
    """

    expected_bytes: int
    actual_bytes: int
    n_hdus: int
    has_image: bool
    has_checksum: bool
    hdus: tuple[HduInfo, ...] = ()
    zero_tail: bool = False
    checksum_ok: bool | None = None
    notes: tuple[str, ...] = ()

    @property
    def image_hdu(self) -> HduInfo | None:
        """The first HDU holding pixels (primary or extension, plain or tile-compressed)."""
        return next((h for h in self.hdus if h.has_pixels), None)


def _gb(n_bytes: int) -> str:
    """``12.5 GB``, or ``3.2e+12 GB`` for the absurd sizes a corrupt header claims."""
    gb = n_bytes / 1e9
    return f"{gb:.1f} GB" if gb < 1e6 else f"{gb:.2g} GB"


def _header_int(h: Mapping[str, Any], key: str, default: int) -> int:
    v = h.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise ValueError(key)
    return int(v)


def _parse_header(p: Path, raw: bytes) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Cards to a dict with astropy's parser, card by card: one unparsable card is left out.

    ``Header.fromstring`` splits the cards and handles quoting (``XTENSION= 'BINTABLE' / x``,
    CONTINUE, HIERARCH); a card's value is parsed on first access, so a bad card raises
    there and only that card is lost.
    """
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            hdr = fits.Header.fromstring(raw.decode("ascii", errors="replace"))
        except Exception as exc:  # noqa: BLE001 - astropy raises several types for garbage
            raise FrameError(p, f"corrupt FITS header ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None
        out: dict[str, Any] = {}
        bad: list[str] = []
        for card in hdr.cards:
            try:
                key = card.keyword
                if not key or key in ("COMMENT", "HISTORY", "END"):
                    continue
                value = card.value
            except Exception:  # noqa: BLE001 - VerifyError, ValueError...: that card only
                bad.append(str(getattr(card, "_keyword", None) or card.image[:8]).strip() or "?")
                continue
            if hasattr(value, "__class__") and value.__class__.__name__ == "Undefined":
                value = None
            out.setdefault(key, value)
    return out, tuple(bad)


def _read_hdu_header(p: Path, fh: Any, pos: int, actual: int, first: bool) -> tuple[bytes, int]:
    """The raw header starting at ``pos`` (through its END card) and its padded length."""
    fh.seek(pos)
    chunks: list[bytes] = []
    n = 0
    while True:
        block = fh.read(FITS_BLOCK)
        if first and n == 0:
            if block[:80].strip(b"\0") == b"" and len(block) > 0:
                raise FrameIncomplete(p, "the file starts with zero bytes: pre-allocated and still being written")
            if not block.startswith(b"SIMPLE  ="):
                if len(block) < 9 and b"SIMPLE  ="[:len(block)] == block:
                    raise FrameIncomplete(p, f"truncated: the file ends inside a FITS header ({actual} bytes)")
                raise FrameError(p, "not a FITS file (no SIMPLE keyword at the start)")
        if len(block) < FITS_BLOCK:
            raise FrameIncomplete(p, f"truncated: the file ends inside a FITS header ({actual} bytes)")
        chunks.append(block)
        n += 1
        for i in range(0, FITS_BLOCK, 80):
            if block[i:i + 80] == _END_CARD or block[i:i + 3] == b"END" and not block[i + 3:i + 80].strip():
                return b"".join(chunks)[:(n - 1) * FITS_BLOCK + i], n * FITS_BLOCK
        if block.strip(b"\0") == b"":
            raise FrameIncomplete(p, "a FITS header block of zero bytes: still being written")
        if n > _MAX_HEADER_BLOCKS:
            raise FrameError(p, "corrupt FITS header: no END card")


def _hdu_from_header(p: Path, index: int, header: Mapping[str, Any], bad: tuple[str, ...],
                     start: int, data_start: int) -> HduInfo:
    """Size arithmetic of one HDU in Python integers (no overflow for NAXIS1 = 10**20)."""
    needed = ["BITPIX", "NAXIS"]
    try:
        bitpix = _header_int(header, "BITPIX", 0)
        naxis = _header_int(header, "NAXIS", 0)
        if not 0 <= naxis <= 999:
            raise FrameError(p, f"corrupt FITS header: NAXIS = {naxis} (0 to 999 allowed)")
        needed += [f"NAXIS{i}" for i in range(1, naxis + 1)]
        missing = [k for k in needed if k not in header]
        if missing:
            why = "cannot be read" if missing[0] in bad else "is missing"
            raise FrameError(p, f"corrupt FITS header: {missing[0]} {why}"
                                + (f" (NAXIS = {naxis})" if missing[0].startswith("NAXIS") and naxis > 2 else ""))
        dims = tuple(_header_int(header, f"NAXIS{i}", 0) for i in range(1, naxis + 1))
        pcount = _header_int(header, "PCOUNT", 0) if "PCOUNT" in header else 0
        gcount = _header_int(header, "GCOUNT", 1) if "GCOUNT" in header else 1
    except ValueError as exc:
        raise FrameError(p, f"corrupt FITS header: {exc.args[0] if exc.args else 'a size keyword'} is not a "
                            "whole number") from None
    if bitpix not in (8, 16, 32, 64, -32, -64):
        raise FrameError(p, f"corrupt FITS header: BITPIX = {bitpix} (8, 16, 32, 64, -32 or -64 allowed)")
    if any(d < 0 for d in dims) or pcount < 0 or gcount < 0:
        raise FrameError(p, f"corrupt FITS header: negative size (NAXISn = {list(dims)})")
    nelem = math.prod(dims) if dims else 0
    data = abs(bitpix) // 8 * gcount * (pcount + nelem) if naxis else 0
    if data > MAX_DATA_BYTES:
        raise FrameError(p, f"corrupt or unsupported FITS header: it claims {_gb(data)} of data "
                            f"(axes {' x '.join(str(d) for d in dims)})")
    xt = str(header.get("XTENSION", "") or "").strip().upper()
    compressed = bool(header.get("ZIMAGE") is True) and xt == "BINTABLE"
    return HduInfo(index, dict(header), start, data_start, data, dims, bitpix, compressed,
                   xt in ("BINTABLE", "TABLE", "A3DTABLE"), bad)


def _walk_hdus(p: Path, fh: Any, actual: int, *, headers_only_first_image: bool = False) -> list[HduInfo]:
    hdus: list[HduInfo] = []
    pos = 0
    while pos < actual and len(hdus) < 1000:
        raw, hlen = _read_hdu_header(p, fh, pos, actual, first=not hdus)
        header, bad = _parse_header(p, raw)
        info = _hdu_from_header(p, len(hdus), header, bad, pos, pos + hlen)
        hdus.append(info)
        if headers_only_first_image and info.has_pixels:
            break
        pos = info.data_start + (info.data_bytes + FITS_BLOCK - 1) // FITS_BLOCK * FITS_BLOCK
        if pos + FITS_BLOCK > actual:
            break
        fh.seek(pos)
        peek = fh.read(8)
        if not peek.startswith(b"XTENSION"):
            break  # trailing bytes after the last HDU (padding, junk): not another HDU
    return hdus


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


def fits_layout(path: str | Path) -> FitsLayout:
    """Walk the HDU headers of a FITS file and compute the size its headers promise.

    Raises :class:`FrameError` for a file that is not FITS or whose header claims an
    absurd size, and :class:`FrameIncomplete` when the file ends inside a header (or starts
    with zero bytes: pre-allocated). Cards are parsed by astropy (``Header.fromstring``);
    only the size arithmetic is ours. An uncompressed FITS is complete when its size reaches
    header + data rounded up to 2880 bytes; NINA writes in place, so a watcher sees partial
    files. When the complete file's pixel data ends in zero bytes, its DATASUM (if any) is
    checked: a pre-allocated file being filled has the right size long before its pixels.
    """
    p = Path(path)
    actual = os.stat(p).st_size
    if actual == 0:
        raise FrameIncomplete(p, "empty file (0 bytes): still being written, or truncated")
    with open(p, "rb") as fh:
        hdus = _walk_hdus(p, fh, actual)
        last = hdus[-1]
        expected = last.data_start + (last.data_bytes + FITS_BLOCK - 1) // FITS_BLOCK * FITS_BLOCK
        has_image = any(h.has_pixels for h in hdus)
        has_checksum = any("CHECKSUM" in h.header or "DATASUM" in h.header for h in hdus)
        zero_tail = False
        checksum_ok: bool | None = None
        notes = tuple(f"unreadable header card {k} left out" for h in hdus for k in h.bad_cards)
        if actual >= expected:
            data_hdus = [h for h in hdus if h.data_bytes > 0]
            if data_hdus:
                d = data_hdus[-1]
                zero_tail = _zero_at(fh, d.data_start + d.data_bytes, min(ZERO_PROBE_BYTES, d.data_bytes))
            if zero_tail:
                sums = [h for h in hdus if isinstance(h.header.get("DATASUM"), str) and h.data_bytes > 0]
                if sums:
                    checksum_ok = all(
                        h.header["DATASUM"].strip().isdigit()
                        and int(h.header["DATASUM"].strip()) == _datasum(fh, h.data_start, h.data_bytes)
                        for h in sums)
    return FitsLayout(expected, actual, len(hdus), has_image, has_checksum, tuple(hdus), zero_tail,
                      checksum_ok, notes)


@dataclass(frozen=True)
class XisfLayout(_Completeness):
    """What an XISF header promises: the attachments' byte ranges (``attachment:POS:SIZE``)."""

    expected_bytes: int
    actual_bytes: int
    zero_tail: bool
    checksum_ok: bool | None = None
    has_image: bool = True
    has_checksum: bool = False


def xisf_layout(path: str | Path) -> XisfLayout:
    """Check an XISF file against its own header: signature, XML, attachment bounds.

    The XISF 1.0 header is ``XISF0100``, a little-endian uint32 length, 4 reserved bytes and
    that many bytes of XML; each image's pixels are an ``attachment:POSITION:SIZE`` block.
    The file is complete when it reaches the end of the last attachment. A data block ending
    in zero bytes is checked against the image's ``checksum="sha1:..."`` when it has one.
    """
    import hashlib
    import re
    import xml.etree.ElementTree as ET

    p = Path(path)
    actual = os.stat(p).st_size
    if actual == 0:
        raise FrameIncomplete(p, "empty file (0 bytes): still being written, or truncated")
    with open(p, "rb") as fh:
        head = fh.read(16)
        if len(head) >= 8 and not any(head[:8]):
            raise FrameIncomplete(p, "the file starts with zero bytes: pre-allocated and still being written")
        if not head.startswith(b"XISF0100"[:len(head)]) or len(head) >= 8 and head[:8] != b"XISF0100":
            raise FrameError(p, "not an XISF file (no XISF0100 signature at the start)")
        if len(head) < 16:
            raise FrameIncomplete(p, f"truncated: the file ends inside the XISF header ({actual} bytes)")
        xml_len = int.from_bytes(head[8:12], "little")
        if xml_len > 64 << 20:
            raise FrameError(p, f"corrupt XISF header: it claims {xml_len} bytes of XML")
        if actual < 16 + xml_len:
            raise FrameIncomplete(p, f"truncated: the file ends inside the XISF header ({actual} bytes)")
        xml = fh.read(xml_len)
        if not xml.strip(b"\0"):
            raise FrameIncomplete(p, "the XISF header is still zero bytes: still being written")
        try:
            root = ET.fromstring(xml.rstrip(b"\0"))
        except ET.ParseError as exc:
            raise FrameError(p, f"corrupt XISF header: the XML does not parse ({exc})") from None
        blocks: list[tuple[int, int, str | None]] = []
        for el in root.iter():
            loc = el.attrib.get("location", "")
            m = re.fullmatch(r"\s*attachment:(\d+):(\d+)\s*", loc)
            if m:
                blocks.append((int(m.group(1)), int(m.group(2)), el.attrib.get("checksum")))
        if not any(el.tag.rsplit("}", 1)[-1] == "Image" for el in root.iter()):
            raise FrameError(p, "no image in this XISF file")
        expected = max((pos + size for pos, size, _ in blocks), default=16 + xml_len)
        if expected > MAX_DATA_BYTES + 16 + xml_len:
            raise FrameError(p, f"corrupt XISF header: it claims {_gb(expected)} of data")
        zero_tail, ok = False, None
        has_sum = any(c for *_, c in blocks)
        if actual >= expected and blocks:
            pos, size, _ = max(blocks, key=lambda b: b[0] + b[1])
            zero_tail = size > 0 and _zero_at(fh, pos + size, min(ZERO_PROBE_BYTES, size))
            if zero_tail:
                sums = [(pos, size, c) for pos, size, c in blocks if c and ":" in c]
                results = []
                for bpos, bsize, c in sums:
                    algo, want = c.split(":", 1)
                    algo = algo.strip().lower().replace("-", "")
                    if algo not in ("sha1", "sha256", "sha512", "md5"):
                        continue
                    hsh = hashlib.new(algo)
                    fh.seek(bpos)
                    left = bsize
                    while left > 0:
                        chunk = fh.read(min(left, 8 << 20))
                        if not chunk:
                            break
                        hsh.update(chunk)
                        left -= len(chunk)
                    results.append(hsh.hexdigest() == want.strip().lower())
                ok = all(results) if results else None
    return XisfLayout(expected, actual, zero_tail, ok, True, has_sum)


def check_complete(path: str | Path) -> FitsLayout | XisfLayout:
    """Raise :class:`FrameIncomplete` unless the file at ``path`` is whole.

    FITS (plain and tile-compressed): every header has its END card and the size the headers
    promise is on disk. XISF: the signature, the XML header and every attachment's bytes
    are there. The returned layout's ``proven`` says whether that is beyond doubt (no
    zero-filled tail, or a matching checksum); the watcher measures a proven file at once
    and waits for a stable content check otherwise. Raises :class:`FrameError` for a file
    that can never be a frame (not FITS, only a table, absurd header).
    """
    p = Path(path)
    if p.name.lower().endswith(XISF_SUFFIXES):
        xl = xisf_layout(p)
        if not xl.complete:
            raise FrameIncomplete(p, f"truncated: the XISF header promises {xl.expected_bytes} bytes, the file "
                                     f"has {xl.actual_bytes}")
        if xl.checksum_ok is False:
            raise FrameIncomplete(p, "the image data does not match its checksum yet (still being filled, "
                                     "or corrupt)")
        return xl
    layout = fits_layout(p)
    if not layout.complete:
        raise FrameIncomplete(
            p, f"truncated: the header promises {layout.expected_bytes} bytes, the file has {layout.actual_bytes}")
    if not layout.has_image:
        if any(h.is_table for h in layout.hdus):
            raise FrameError(p, "no image in this FITS file (only a table)")
        raise FrameError(p, "no image in this FITS file (the header has no pixel data)")
    if layout.checksum_ok is False:
        raise FrameIncomplete(p, "the data does not match the header's DATASUM yet (still being filled, "
                                 "or corrupt)")
    return layout


def content_signature(path: str | Path, layout: FitsLayout | XisfLayout | None = None) -> tuple[int, ...]:
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


# --------------------------------------------------------------------------- pixels

_FITS_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _plain_image(p: Path, offset: int, header: Mapping[str, Any]) -> Frame:
    """Read an uncompressed 2-D image straight into float32, a block of rows at a time.

    Why not ``hdu.data``: astropy would first build the scaled integer array and we would
    then copy it to float32 — three times the file in memory and two passes. Reading in
    8 MB blocks keeps the peak near the float32 image itself (2x a 16-bit file), needs no
    memory map (which Windows would keep locked) and touches each byte once.
    """
    bitpix = int(header["BITPIX"])
    h, w = int(header["NAXIS2"]), int(header["NAXIS1"])
    planes = int(header.get("NAXIS3", 1) or 1) if int(header.get("NAXIS", 2) or 2) == 3 else 1
    dt = np.dtype(_FITS_DTYPES[bitpix])
    bscale = float(header.get("BSCALE", 1.0) or 1.0)
    bzero = float(header.get("BZERO", 0.0) or 0.0)
    out = np.empty((planes, h, w) if planes > 1 else (h, w), np.float32)  # colour planes: _prepare averages
    flat = out.reshape(-1)
    h_all = h * planes  # the planes follow each other: read them as one tall image
    rows = max(1, (8 << 20) // max(1, w * dt.itemsize))
    with open(p, "rb") as fh:
        fh.seek(offset)
        for i in range(0, h_all, rows):
            k = min(rows, h_all - i)
            chunk = np.fromfile(fh, dtype=dt, count=k * w)
            if chunk.size != k * w:
                raise FrameIncomplete(p, "truncated: the pixel data ends early")
            blk = flat[i * w:(i + k) * w]
            if bscale != 1.0:
                np.multiply(chunk, np.float32(bscale), out=blk, dtype=np.float32, casting="unsafe")
                blk += np.float32(bzero)
            elif bzero:
                np.add(chunk, np.float32(bzero), out=blk, dtype=np.float32, casting="unsafe")
            else:
                blk[:] = chunk
    return _prepare(p, out, meta_from_header(header), _saturation_adu(header, dt, bscale, bzero),
                    integer=dt.kind in "ui")


def _merged_header(hdus: tuple[HduInfo, ...] | list[HduInfo], hdu: HduInfo) -> dict[str, Any]:
    """The primary header with the image extension's cards on top (NINA: primary only).

    For a tile-compressed image the table's NAXISn/BITPIX describe the table: the image's
    own (ZNAXISn, ZBITPIX) take their place, as astropy's ``CompImageHDU.header`` does.
    """
    header = dict(hdus[0].header) if hdu.index != 0 else {}
    header.update(hdu.header)
    if hdu.compressed:
        dims = hdu.image_dims
        header.update({"NAXIS": len(dims), **{f"NAXIS{i + 1}": d for i, d in enumerate(dims)}})
        if isinstance(header.get("ZBITPIX"), int):
            header["BITPIX"] = header["ZBITPIX"]
    return header


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


def _scaling_ok(p: Path, header: Mapping[str, Any], bitpix: int) -> None:
    """BSCALE/BZERO must keep every pixel a finite float32 (``1E300`` would give inf/NaN)."""
    for key in ("BSCALE", "BZERO"):
        v = header.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise FrameError(p, f"{key} = {v!r} is not a number")
    bscale = float(header.get("BSCALE", 1.0) or 1.0)
    bzero = float(header.get("BZERO", 0.0) or 0.0)
    top = 2.0 ** abs(bitpix) if bitpix > 0 else 1.0
    if not (math.isfinite(bscale) and math.isfinite(bzero)) or abs(bscale) * top + abs(bzero) > 3.0e38:
        raise FrameError(p, f"BSCALE = {bscale:g}, BZERO = {bzero:g} put pixel values beyond what a float "
                            "can hold; corrupt header")


def _layout_still_valid(p: Path, layout: Any, kind: type) -> bool:
    """Whether ``layout`` (from :func:`check_complete` a moment ago) still describes ``p``:
    same kind and same size on disk. Saves walking the headers (and a DATASUM pass) again."""
    if not isinstance(layout, kind):
        return False
    try:
        return os.stat(p).st_size == layout.actual_bytes
    except OSError:
        return False


def _load_fits(p: Path, check: bool, layout: Any = None) -> Frame:
    """Open a FITS frame from its proven layout: plain 2-D images are read directly, only
    tile-compressed ones go through astropy (which decompresses them)."""
    if not _layout_still_valid(p, layout, FitsLayout):
        layout = check_complete(p) if check else fits_layout(p)
    hdu = layout.image_hdu
    if hdu is None:
        if any(h.is_table for h in layout.hdus):
            raise FrameError(p, "no image in this FITS file (only a table)")
        raise FrameError(p, "no image in this FITS file")
    dims = hdu.image_dims
    _refuse_shape(p, dims)
    header = _merged_header(layout.hdus, hdu)
    if not hdu.compressed:
        if not check and layout.actual_bytes < hdu.data_start + hdu.data_bytes:
            raise FrameIncomplete(p, "truncated: the pixel data ends early")
        _scaling_ok(p, header, hdu.bitpix)
        frame = _plain_image(p, hdu.data_start, {**header, "NAXIS": len(dims),
                                                  **{f"NAXIS{i + 1}": d for i, d in enumerate(dims)}})
    else:
        frame = _compressed_image(p, hdu, header)
    if layout.notes:
        frame.notes.extend(layout.notes)
    return frame


def _compressed_image(p: Path, hdu: HduInfo, header: Mapping[str, Any]) -> Frame:
    from astropy.io import fits

    _scaling_ok(p, header, int(header.get("BITPIX", 16)) if isinstance(header.get("BITPIX"), int) else 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(p, mode="readonly", memmap=False, lazy_load_hdus=True, ignore_missing_simple=False,
                       disable_image_compression=False) as hdul:
            data = hdul[hdu.index].data
            if data is None:
                raise FrameError(p, "no pixel data in the compressed image")
            data = np.array(data)  # decompressed here, before the file is closed
    meta = meta_from_header(header)
    if meta.width is None or meta.height is None:
        meta = FrameMeta.from_dict({**meta.to_dict(), "width": data.shape[-1], "height": data.shape[-2]})
    # astropy has already applied BSCALE/BZERO here
    return _prepare(p, data, meta, _saturation_adu(header, data.dtype))


#: the last XISF header parsed, keyed by (path, size, mtime): the watcher reads a new frame's
#: header and then loads it, and each would parse the XML again
_XISF_LAST: dict[tuple[str, int, int], tuple[Any, dict[str, Any]]] = {}


def _xisf_keywords(p: Path):
    """The XISF reader for ``p`` and its first image's FITS keywords (no pixels decoded).

    Parsed once per file version: a second call for the same unchanged file (same size and
    modification time) returns the same reader."""
    from xisf import XISF

    st = os.stat(p)
    key = (str(p), st.st_size, st.st_mtime_ns)
    hit = _XISF_LAST.get(key)
    if hit is not None:
        return hit
    x = XISF(str(p))
    metas = x.get_images_metadata()
    if not metas:
        raise FrameError(p, "no image in this XISF file")
    out = x, {k: (v[0]["value"] if isinstance(v, list) and v else v)
              for k, v in metas[0].get("FITSKeywords", {}).items()}
    _XISF_LAST.clear()
    _XISF_LAST[key] = out
    return out


def _load_xisf(p: Path, check: bool = True, layout: Any = None) -> Frame:
    if check and not _layout_still_valid(p, layout, XisfLayout):
        check_complete(p)
    try:
        x, kw = _xisf_keywords(p)
        geometry = x.get_images_metadata()[0].get("geometry")
        if geometry:
            dims = tuple(int(g) for g in geometry)
            _refuse_shape(p, dims[:2] + ((dims[2],) if len(dims) > 2 and dims[2] > 1 else ()))
        data = x.read_image(0)
    except FrameError:
        raise
    except Exception as exc:  # noqa: BLE001 - the xisf package raises bare exceptions of many kinds
        raise FrameError(p, f"unreadable XISF: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    arr = np.asarray(data)
    if arr.ndim == 3:
        arr = np.moveaxis(arr, -1, 0)
    meta = meta_from_header(kw)
    return _prepare(p, arr, meta, _saturation_adu(kw, arr.dtype))


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


def _opened_path(path: str | Path) -> Path:
    """The path, after telling the ways a name can fail to be a file apart."""
    p = Path(path)
    try:
        os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise FrameError(p, "a broken symbolic link (its target does not exist)") from None
        raise FrameError(p, "no such file") from None
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:
            raise FrameError(p, "a symbolic link loop (the link points back to itself); not a frame") from None
        raise
    if not p.is_file():
        raise FrameError(p, "not a regular file (a folder or a device)")
    return p


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
        p = _opened_path(path)
        if p.name.lower().endswith(XISF_SUFFIXES):
            return _load_xisf(p, check, layout)
        if p.name.lower().endswith(PICTURE_SUFFIXES):
            return _load_picture(p)
        return _load_fits(p, check, layout)


def read_header(path: str | Path, *, layout: FitsLayout | XisfLayout | None = None) -> FrameMeta:
    """Only the normalised header of a FITS/XISF file (cheap: no pixels are read).

    Works on a file still being written once its headers are whole; one bad card is left
    out rather than failing the header. ``layout``: a FITS layout from
    :func:`check_complete` of this file, whose headers are used instead of reading them again.
    """
    from focuswatch.boundary import frame_boundary

    with frame_boundary(path):
        p = _opened_path(path)
        if _layout_still_valid(p, layout, FitsLayout) and layout.hdus:
            img = next((h for h in layout.hdus if h.has_pixels), layout.hdus[-1])
            return meta_from_header(_merged_header(layout.hdus, img))
        if p.name.lower().endswith(XISF_SUFFIXES):
            try:
                return meta_from_header(_xisf_keywords(p)[1])
            except FrameError:
                raise
            except Exception as exc:  # noqa: BLE001 - the xisf package raises bare exceptions of many kinds
                raise FrameError(p, f"unreadable XISF: {exc}") from None
        actual = os.stat(p).st_size
        if actual == 0:
            raise FrameIncomplete(p, "empty file (0 bytes): still being written, or truncated")
        with open(p, "rb") as fh:
            hdus = _walk_hdus(p, fh, actual, headers_only_first_image=True)
        img = next((h for h in hdus if h.has_pixels), hdus[-1])
        return meta_from_header(_merged_header(hdus, img))


def frame_order_key(path: Path, meta: FrameMeta | None) -> tuple[float, str]:
    """Capture order: DATE-OBS when the header has it, else the file's modification time."""
    if meta is not None and meta.timestamp is not None:
        return (meta.timestamp, path.name)
    try:
        return (os.stat(path).st_mtime, path.name)
    except OSError:
        return (float("inf"), path.name)
