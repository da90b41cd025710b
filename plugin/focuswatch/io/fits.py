"""FITS files as the capture programs write them: headers, the size they promise, the pixels.

Headers are parsed by astropy (``Header.fromstring``) card by card, so one unparsable card is
left out instead of failing the frame; only the size arithmetic is ours, in Python integers
(no overflow for ``NAXIS1 = 10**20``). :func:`fits_layout` walks the HDUs of a file that may
still be being written and says what its headers promise; :func:`check_fits_complete` turns
that into a verdict with the proofs of :mod:`focuswatch.io.completeness`. Pixels: a plain 2-D
(or 3-plane colour) image is read straight into float32 a block of rows at a time; a
tile-compressed one (``.fits.fz``) goes through astropy, which decompresses it.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from focuswatch.errors import FrameError, FrameIncomplete
from focuswatch.io.completeness import (MAX_DATA_BYTES, ZERO_PROBE_BYTES, _Completeness, _datasum, _gb,
                                        _layout_still_valid, _refuse_shape, _zero_at, file_bytes)
from focuswatch.model.frame import Frame, FrameMeta, _prepare, _saturation_adu, meta_from_header

FITS_BLOCK = 2880
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


def fits_layout(path: str | Path, size_bytes: int | None = None) -> FitsLayout:
    """Walk the HDU headers of a FITS file and compute the size its headers promise.

    Raises :class:`FrameError` for a file that is not FITS or whose header claims an
    absurd size, and :class:`FrameIncomplete` when the file ends inside a header (or starts
    with zero bytes: pre-allocated). Cards are parsed by astropy (``Header.fromstring``);
    only the size arithmetic is ours. An uncompressed FITS is complete when its size reaches
    header + data rounded up to 2880 bytes; NINA writes in place, so a watcher sees partial
    files. When the complete file's pixel data ends in zero bytes, its DATASUM (if any) is
    checked: a pre-allocated file being filled has the right size long before its pixels.
    ``size_bytes``: the file's size from a ``stat()`` the caller has just made (not asked again).
    """
    p = Path(path)
    actual = file_bytes(p, size_bytes)
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


def check_fits_complete(path: str | Path, size_bytes: int | None = None) -> FitsLayout:
    """The FITS half of :func:`focuswatch.io.frames.check_complete`: the layout of a whole file
    with an image, else :class:`FrameIncomplete` (wait) or :class:`FrameError` (never a frame)."""
    p = Path(path)
    layout = fits_layout(p, size_bytes)
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


def header_meta(hdus: tuple[HduInfo, ...] | list[HduInfo]) -> FrameMeta:
    """The normalised header of the first HDU with pixels (the last HDU when none has any)."""
    img = next((h for h in hdus if h.has_pixels), hdus[-1])
    return meta_from_header(_merged_header(hdus, img))


def read_fits_meta(p: Path) -> FrameMeta:
    """Only the headers up to the first image (no pixels read; works while the pixels are
    still being written)."""
    actual = file_bytes(p)
    with open(p, "rb") as fh:
        hdus = _walk_hdus(p, fh, actual, headers_only_first_image=True)
    return header_meta(hdus)


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
                    integer=dt.kind in "ui", header=header)


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



def _load_fits(p: Path, check: bool, layout: Any = None, size_bytes: int | None = None) -> Frame:
    """Open a FITS frame from its proven layout: plain 2-D images are read directly, only
    tile-compressed ones go through astropy (which decompresses them)."""
    if not _layout_still_valid(p, layout, FitsLayout, size_bytes):
        layout = check_fits_complete(p) if check else fits_layout(p)
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
    return _prepare(p, data, meta, _saturation_adu(header, data.dtype), header=header)

