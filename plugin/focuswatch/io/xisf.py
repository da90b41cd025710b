"""XISF files (PixInsight's format) through the ``xisf`` package: completeness, keywords, pixels.

An XISF 1.0 file is ``XISF0100``, a little-endian uint32 length, 4 reserved bytes and that
many bytes of XML; each image's pixels are an ``attachment:POSITION:SIZE`` block, optionally
with a ``checksum="sha1:..."``. :func:`xisf_layout` checks a file against its own header
without trusting it to be whole (the proofs are :mod:`focuswatch.io.completeness`'s); the
FITS keywords an XISF image carries are normalised exactly as a FITS header's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from focuswatch.errors import FrameError, FrameIncomplete
from focuswatch.io.completeness import (MAX_DATA_BYTES, ZERO_PROBE_BYTES, _Completeness, _digest_ok, _gb,
                                        _layout_still_valid, _refuse_shape, _zero_at, file_bytes)
from focuswatch.model.frame import Frame, FrameMeta, _prepare, _saturation_adu, meta_from_header


@dataclass(frozen=True)
class XisfLayout(_Completeness):
    """What an XISF header promises: the attachments' byte ranges (``attachment:POS:SIZE``)."""

    expected_bytes: int
    actual_bytes: int
    zero_tail: bool
    checksum_ok: bool | None = None
    has_image: bool = True
    has_checksum: bool = False


def xisf_layout(path: str | Path, size_bytes: int | None = None) -> XisfLayout:
    """Check an XISF file against its own header: signature, XML, attachment bounds.

    The XISF 1.0 header is ``XISF0100``, a little-endian uint32 length, 4 reserved bytes and
    that many bytes of XML; each image's pixels are an ``attachment:POSITION:SIZE`` block.
    The file is complete when it reaches the end of the last attachment. A data block ending
    in zero bytes is checked against the image's ``checksum="sha1:..."`` when it has one.
    ``size_bytes``: the file's size from a ``stat()`` the caller has just made (not asked again).
    """
    import re
    import xml.etree.ElementTree as ET

    p = Path(path)
    actual = file_bytes(p, size_bytes)
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
                results = [r for r in (_digest_ok(fh, bpos, bsize, c) for bpos, bsize, c in sums) if r is not None]
                ok = all(results) if results else None
    return XisfLayout(expected, actual, zero_tail, ok, True, has_sum)


def check_xisf_complete(path: str | Path, size_bytes: int | None = None) -> XisfLayout:
    """The XISF half of :func:`focuswatch.io.frames.check_complete`: the layout of a whole file,
    else :class:`FrameIncomplete` (an attachment not all there, or its checksum not matching yet)."""
    p = Path(path)
    xl = xisf_layout(p, size_bytes)
    if not xl.complete:
        raise FrameIncomplete(p, f"truncated: the XISF header promises {xl.expected_bytes} bytes, the file "
                                 f"has {xl.actual_bytes}")
    if xl.checksum_ok is False:
        raise FrameIncomplete(p, "the image data does not match its checksum yet (still being filled, "
                                 "or corrupt)")
    return xl


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



def read_xisf_meta(p: Path) -> FrameMeta:
    """Only the normalised keywords of an XISF file's first image (no pixels decoded)."""
    try:
        return meta_from_header(_xisf_keywords(p)[1])
    except FrameError:
        raise
    except Exception as exc:  # noqa: BLE001 - the xisf package raises bare exceptions of many kinds
        raise FrameError(p, f"unreadable XISF: {exc}") from None


def _load_xisf(p: Path, check: bool = True, layout: Any = None, size_bytes: int | None = None) -> Frame:
    if check and not _layout_still_valid(p, layout, XisfLayout, size_bytes):
        check_xisf_complete(p)
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
    return _prepare(p, arr, meta, _saturation_adu(kw, arr.dtype), header=kw)

