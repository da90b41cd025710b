"""Reading the frames capture programs save: pixels, a normalised header, completeness.

This is I/O: it opens files **read-only**, never writes, moves, renames or locks a user's
frame (astropy reads without memory-mapping so Windows keeps no handle open), and turns
every way a file can be bad into a :class:`~focuswatch.errors.FrameError` naming the file.

Supported: FITS (``.fits .fit .fts``), tile-compressed FITS (``.fits.fz``), 8/16/32-bit
integer (with BZERO) and float, mono 2-D or 3-plane colour (measured as luminance, the
mean of the planes); one-shot-colour frames carrying ``BAYERPAT`` are measured on their
green channel interpolated to full resolution (:func:`bayer_green_full`), so the Bayer grid
neither fakes star sizes nor halves the sampling; XISF through the ``xisf`` package.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from focuswatch.errors import FrameError, FrameIncomplete
from focuswatch.records import Record

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


@dataclass(frozen=True)
class FrameMeta(Record):
    """The header facts focuswatch uses, normalised across capture programs.

    Missing values are ``None``. ``pixel_um`` is the *effective* pixel (binning included),
    as NINA's XPIXSZ already is. ``timestamp`` is seconds since the Unix epoch (UTC) from
    DATE-OBS; it orders frames when file times lie (copies, network shares).
    """

    image_type: str | None = None
    exposure_s: float | None = None
    date_obs: str | None = None
    timestamp: float | None = None
    filter_name: str | None = None
    focuser_pos: int | None = None
    focuser_temp_c: float | None = None
    ambient_temp_c: float | None = None
    focuser_step_um: float | None = None
    pixel_um: float | None = None
    binning: int | None = None
    focal_length_mm: float | None = None
    f_ratio: float | None = None
    aperture_mm: float | None = None
    gain: float | None = None
    offset: float | None = None
    sensor_temp_c: float | None = None
    object_name: str | None = None
    altitude_deg: float | None = None
    airmass: float | None = None
    bayer_pattern: str | None = None
    telescope: str | None = None
    camera: str | None = None
    software: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def is_light(self) -> bool:
        """True unless the header says this is a flat, dark, bias or other calibration frame.

        A frame without IMAGETYP counts as a light: many programs leave it out.
        """
        if not self.image_type:
            return True
        t = self.image_type.strip().upper().replace(" ", "")
        return t in ("LIGHT", "LIGHTFRAME", "OBJECT", "SCIENCE", "")

    @property
    def temperature_c(self) -> float | None:
        """Focuser temperature, else ambient: what drives thermal focus drift."""
        return self.focuser_temp_c if self.focuser_temp_c is not None else self.ambient_temp_c


    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FrameMeta":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Frame:
    """Pixels ready to measure, with their header.

    ``pixels`` is a C-contiguous float32 2-D array (native byte order, NaNs replaced by the
    median). ``scale_px`` is how many sensor pixels one pixel of ``pixels`` spans (2 for a
    Bayer superpixel image): measurements multiply sizes by it so ``hfr_px`` always means
    sensor pixels.
    """

    path: Path | None
    pixels: np.ndarray
    meta: FrameMeta
    scale_px: int = 1
    saturation_adu: float | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- headers

def _first(h: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in h:
            v = h[k]
            if v is None or (isinstance(v, str) and not v.strip()):
                continue
            return v
    return None


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(str(v).strip()) if isinstance(v, str) else float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _int(v: Any) -> int | None:
    x = _num(v)
    return None if x is None else int(round(x))


def _str(v: Any) -> str | None:
    return None if v is None else str(v).strip() or None


def parse_date_obs(text: str | None) -> float | None:
    """Seconds since the epoch for a FITS DATE-OBS string (UTC unless it says otherwise).

    One ISO parser serves the headers and the state files (:func:`statefile.parse_iso`):
    any number of fractional digits, ``Z`` or a UTC offset, a space or ``T`` separator.
    """
    from focuswatch.statefile import parse_iso

    dt = parse_iso(str(text)) if text else None
    return dt.timestamp() if dt else None


def meta_from_header(h: Mapping[str, Any]) -> FrameMeta:
    """Normalise a FITS-like header (any mapping of keyword to value) into :class:`FrameMeta`."""
    date_obs = _str(_first(h, "DATE-OBS", "DATE-LOC", "DATE_OBS"))
    alt = _num(_first(h, "CENTALT", "OBJCTALT", "ALTITUDE", "ALT-OBS"))
    airmass = _num(_first(h, "AIRMASS"))
    if airmass is None and alt is not None and alt > 3:
        airmass = 1.0 / math.sin(math.radians(alt))
    bayer = _str(_first(h, "BAYERPAT", "COLORTYP"))
    if bayer and bayer.upper() not in ("RGGB", "BGGR", "GRBG", "GBRG"):
        bayer = None
    focal = _num(_first(h, "FOCALLEN", "FOCAL"))
    return FrameMeta(
        image_type=_str(_first(h, "IMAGETYP", "FRAME", "FRAMETYP")),
        exposure_s=_num(_first(h, "EXPTIME", "EXPOSURE")),
        date_obs=date_obs,
        timestamp=parse_date_obs(date_obs),
        filter_name=_str(_first(h, "FILTER", "FILTNAME")),
        focuser_pos=_int(_first(h, "FOCPOS", "FOCUSPOS", "FOCUSERP")),
        focuser_temp_c=_num(_first(h, "FOCTEMP", "FOCUSTEM", "FOCUSTMP", "FOCTMP")),
        ambient_temp_c=_num(_first(h, "AMBTEMP", "AMB_TEMP", "TEMPERAT")),
        focuser_step_um=_num(_first(h, "FOCUSSZ", "FOCSTEP")),
        pixel_um=_num(_first(h, "XPIXSZ", "PIXSIZE1", "PIXSIZE")),
        binning=_int(_first(h, "XBINNING", "BINNING")),
        focal_length_mm=focal if focal and focal > 0 else None,
        f_ratio=_num(_first(h, "FOCRATIO", "FNUMBER")),
        aperture_mm=_num(_first(h, "APTDIA", "APERTURE")),
        gain=_num(_first(h, "GAIN", "EGAIN")),
        offset=_num(_first(h, "OFFSET", "BLKLEVEL")),
        sensor_temp_c=_num(_first(h, "CCD-TEMP", "SET-TEMP")),
        object_name=_str(_first(h, "OBJECT")),
        altitude_deg=alt,
        airmass=airmass,
        bayer_pattern=bayer.upper() if bayer else None,
        telescope=_str(_first(h, "TELESCOP")),
        camera=_str(_first(h, "INSTRUME")),
        software=_str(_first(h, "SWCREATE", "CREATOR", "PROGRAM")),
        width=_int(_first(h, "NAXIS1", "ZNAXIS1")),
        height=_int(_first(h, "NAXIS2", "ZNAXIS2")),
    )


# --------------------------------------------------------------------------- completeness

@dataclass(frozen=True)
class FitsLayout:
    """What the headers of a FITS file promise, read without trusting the file to be whole."""

    expected_bytes: int
    actual_bytes: int
    n_hdus: int
    has_image: bool
    has_checksum: bool

    @property
    def complete(self) -> bool:
        return self.has_image and self.actual_bytes >= self.expected_bytes


def _parse_cards(block: bytes) -> tuple[dict[str, str], bool]:
    cards: dict[str, str] = {}
    end = False
    for i in range(0, len(block), 80):
        card = block[i:i + 80].decode("ascii", errors="replace")
        key = card[:8].strip()
        if key == "END":
            end = True
            break
        if card[8:10] == "= " and key:
            val = card[10:].split("/", 1)[0].strip() if not card[10:].strip().startswith("'") else card[10:].strip()
            cards.setdefault(key, val)
    return cards, end


def fits_layout(path: str | Path) -> FitsLayout:
    """Walk the HDU headers of a FITS file and compute the size its headers promise.

    Raises :class:`FrameError` for a file that is not FITS or whose header claims an
    absurd size, and :class:`FrameIncomplete` when the file ends inside a header.
    An uncompressed FITS is complete when its size reaches header + data rounded up to
    2880 bytes; NINA writes in place, so a watcher sees partial files.
    """
    p = Path(path)
    actual = p.stat().st_size
    if actual == 0:
        raise FrameIncomplete(p, "empty file (0 bytes): still being written, or truncated")
    pos = 0
    n_hdus = 0
    has_image = False
    has_checksum = False
    with open(p, "rb") as fh:
        while pos < actual:
            fh.seek(pos)
            cards: dict[str, str] = {}
            header_len = 0
            while True:
                block = fh.read(FITS_BLOCK)
                if n_hdus == 0 and header_len == 0 and not block.startswith(b"SIMPLE  ="):
                    raise FrameError(p, "not a FITS file (no SIMPLE keyword at the start)")
                if len(block) < FITS_BLOCK:
                    raise FrameIncomplete(p, f"truncated: the file ends inside a FITS header ({actual} bytes)")
                header_len += FITS_BLOCK
                new, end = _parse_cards(block)
                for k, v in new.items():
                    cards.setdefault(k, v)
                if end:
                    break
                if header_len > 2880 * 2000:
                    raise FrameError(p, "corrupt FITS header: no END card")
            try:
                bitpix = int(cards.get("BITPIX", "0"))
                naxis = int(cards.get("NAXIS", "0"))
                dims = [int(cards.get(f"NAXIS{i}", "0")) for i in range(1, naxis + 1)]
                pcount = int(cards.get("PCOUNT", "0") or 0)
                gcount = int(cards.get("GCOUNT", "1") or 1)
            except ValueError:
                raise FrameError(p, "corrupt FITS header: BITPIX/NAXIS are not integers") from None
            if bitpix not in (8, 16, 32, 64, -32, -64) or any(d < 0 for d in dims):
                raise FrameError(p, f"corrupt FITS header: BITPIX={bitpix}, NAXIS={dims}")
            nelem = int(np.prod(dims, dtype=np.int64)) if dims else 0
            data = abs(bitpix) // 8 * gcount * (pcount + nelem) if naxis else 0
            if data > MAX_DATA_BYTES:
                raise FrameError(p, f"corrupt FITS header: it claims {data / 1e9:.1f} GB of pixel data")
            if (naxis >= 2 and dims[0] > 1 and dims[1] > 1 and cards.get("XTENSION", "").strip("' ") != "BINTABLE") \
                    or "ZIMAGE" in cards:
                has_image = True
            if "CHECKSUM" in cards or "DATASUM" in cards:
                has_checksum = True
            padded = (data + FITS_BLOCK - 1) // FITS_BLOCK * FITS_BLOCK
            pos += header_len + padded
            n_hdus += 1
            if n_hdus > 1000:
                break
    return FitsLayout(pos, actual, n_hdus, has_image, has_checksum)


def check_complete(path: str | Path) -> FitsLayout | None:
    """Raise :class:`FrameIncomplete` unless the file at ``path`` is whole.

    For FITS the size the headers promise must be on disk; XISF files are checked by
    parsing (returns ``None``). Used by the watcher before it measures a new file.
    """
    p = Path(path)
    if p.name.lower().endswith(XISF_SUFFIXES):
        if p.stat().st_size == 0:
            raise FrameIncomplete(p, "empty file (0 bytes): still being written, or truncated")
        return None
    layout = fits_layout(p)
    if not layout.has_image:
        if layout.actual_bytes <= layout.expected_bytes:
            raise FrameIncomplete(p, "truncated: no image data after the primary header yet")
        raise FrameError(p, "no 2-D image in this FITS file")
    if not layout.complete:
        raise FrameIncomplete(
            p, f"truncated: the header promises {layout.expected_bytes} bytes, the file has {layout.actual_bytes}")
    return layout


# --------------------------------------------------------------------------- pixels

#: Planes a colour image may have (RGB) to be read as luminance.
COLOUR_PLANES = 3


def _colour_to_luminance(path: Path | None, arr: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A 3-D array as one 2-D plane: a single plane as it is, 3 colour planes as luminance.

    Colour FITS (Siril, GIMP, colour-camera tools) stores planes first, ``(3, H, W)``;
    XISF arrives here planes first too; an ``(H, W, 3)`` array (PIL order) is accepted.
    Luminance is the plain mean of the three planes: star sizes need no colour weighting,
    and the mean keeps the ADU scale (and the saturation level) of one plane.
    """
    if arr.shape[0] == 1:
        return arr[0], None
    if arr.shape[-1] == 1:
        return arr[..., 0], None
    if arr.shape[0] == COLOUR_PLANES and arr.shape[-1] != COLOUR_PLANES:
        planes = arr
    elif arr.shape[-1] == COLOUR_PLANES and arr.shape[0] != COLOUR_PLANES:
        planes = np.moveaxis(arr, -1, 0)
    elif arr.shape[0] == COLOUR_PLANES:
        planes = arr
    else:
        raise FrameError(path, f"a 3-D cube of {arr.shape[0]} planes, not a mono 2-D frame or a 3-plane colour image")
    lum = (planes[0].astype(np.float32) + planes[1].astype(np.float32) + planes[2].astype(np.float32)) / np.float32(3)
    return lum, "colour image (3 planes): measured on the luminance, the mean of the planes"


def bayer_green_full(img: np.ndarray, pattern: str) -> np.ndarray:
    """The green channel of a Bayer mosaic at full resolution (float32, same shape).

    Green sites keep their value; each red or blue site gets the mean of its four green
    neighbours (left, right, up, down; mirrored at the border). Why not 2x2 superpixels:
    they halve a sampling that is often already coarse, and on undersampled stars (1-2
    superpixels wide) the moments then read round stars as elongated. ``pattern`` is the
    colour of the top-left 2x2 block, row by row (RGGB, BGGR, GRBG, GBRG).
    """
    pat = pattern.upper()
    a = np.asarray(img, dtype=np.float32)
    green_first = pat in ("GRBG", "GBRG")  # green at (0, 0) and (1, 1), else at (0, 1) and (1, 0)
    yy = np.arange(a.shape[0])[:, None]
    xx = np.arange(a.shape[1])[None, :]
    is_green = ((yy + xx) % 2 == 0) if green_first else ((yy + xx) % 2 == 1)
    p = np.pad(a, 1, mode="reflect")
    neigh = (p[1:-1, :-2] + p[1:-1, 2:] + p[:-2, 1:-1] + p[2:, 1:-1]) * np.float32(0.25)
    return np.ascontiguousarray(np.where(is_green, a, neigh), dtype=np.float32)


def _prepare(path: Path | None, data: np.ndarray, meta: FrameMeta, saturation: float | None,
             integer: bool = False) -> Frame:
    """Turn raw image data into a measurable float32 frame (or raise FrameError).

    ``integer=True`` says the pixels came from integers, so the NaN scan is skipped.
    """
    arr = np.asarray(data)
    colour_note = None
    if arr.ndim == 3:
        arr, colour_note = _colour_to_luminance(path, arr)
    if arr.ndim != 2:
        raise FrameError(path, f"a {arr.ndim}-D array, not a mono 2-D frame")
    if min(arr.shape) < 16:
        raise FrameError(path, f"image too small to measure ({arr.shape[1]}x{arr.shape[0]} px)")
    notes: list[str] = [colour_note] if colour_note else []
    img = np.ascontiguousarray(arr, dtype=np.float32)
    if integer or arr.dtype.kind in "ui":
        n_bad = 0
    else:
        finite = np.isfinite(img)
        n_bad = img.size - int(np.count_nonzero(finite))
    if n_bad == img.size:
        raise FrameError(path, "every pixel is NaN or infinite")
    if n_bad:
        fill = float(np.median(img[finite]))
        img[~finite] = fill
        notes.append(f"{n_bad} NaN/inf pixels replaced by the median")
    probe = img[::7, ::7]  # a cheap look first: a sky frame varies within any sample
    lo, hi = float(probe.min()), float(probe.max())
    if hi <= lo:
        lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        raise FrameError(path, f"blank image: every pixel is {lo:g}")
    scale = 1
    if meta.bayer_pattern and colour_note is None:
        img = bayer_green_full(img, meta.bayer_pattern)
        notes.append(f"one-shot-colour {meta.bayer_pattern}: measured on the green channel, interpolated to full "
                     "resolution (bilinear: each red/blue site gets the mean of its 4 green neighbours)")
    return Frame(path, img, meta, scale, saturation, notes)


def _saturation_adu(header: Mapping[str, Any], raw_dtype: np.dtype, bscale: float = 1.0,
                    bzero: float = 0.0) -> float | None:
    """Saturation level in ADU: SATURATE/DATAMAX when the header gives it, else the top of
    the stored integer type after BSCALE/BZERO (65535 for NINA's int16 + BZERO 32768);
    ``None`` for float data, whose scale is unknown."""
    sat = _num(_first(header, "SATURATE", "DATAMAX"))
    if sat:
        return sat
    if raw_dtype.kind in "ui":
        return float(np.iinfo(raw_dtype.newbyteorder("=")).max) * bscale + bzero
    return None


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
    dt = np.dtype(_FITS_DTYPES[bitpix])
    bscale = float(header.get("BSCALE", 1.0) or 1.0)
    bzero = float(header.get("BZERO", 0.0) or 0.0)
    out = np.empty((h, w), np.float32)
    flat = out.reshape(-1)
    rows = max(1, (8 << 20) // max(1, w * dt.itemsize))
    with open(p, "rb") as fh:
        fh.seek(offset)
        for i in range(0, h, rows):
            k = min(rows, h - i)
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


def _load_fits(p: Path, check: bool) -> Frame:
    from astropy.io import fits

    if check:
        check_complete(p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(p, mode="readonly", memmap=False, lazy_load_hdus=True,
                           ignore_missing_simple=False) as hdul:
                for hdu in hdul:
                    if hdu.is_image and hdu.header.get("NAXIS", 0) >= 2 or isinstance(hdu, fits.CompImageHDU):
                        header = dict(hdul[0].header) if hdu is not hdul[0] else {}
                        header.update({k: v for k, v in hdu.header.items() if k})
                        if not isinstance(hdu, fits.CompImageHDU) and hdu.header.get("NAXIS") == 2:
                            info = hdul.fileinfo(hdul.index_of(hdu))
                            return _plain_image(p, info["datLoc"], header)
                        data = hdu.data
                        if data is None:
                            continue
                        meta = meta_from_header(header)
                        if meta.width is None or meta.height is None:
                            meta = FrameMeta.from_dict({**meta.to_dict(), "width": data.shape[-1],
                                                         "height": data.shape[-2]})
                        # astropy has already applied BSCALE/BZERO here
                        return _prepare(p, data, meta, _saturation_adu(header, np.asarray(data).dtype))
    except FrameError:
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "truncat" in text.lower() or "buffer is too small" in text.lower() or "ended" in text.lower():
            raise FrameIncomplete(p, f"truncated: {text}") from None
        raise FrameError(p, f"unreadable FITS: {text}") from None
    raise FrameError(p, "no 2-D image in this FITS file")


def _xisf_keywords(p: Path):
    """The XISF reader for ``p`` and its first image's FITS keywords (no pixels decoded)."""
    from xisf import XISF

    x = XISF(str(p))
    metas = x.get_images_metadata()
    if not metas:
        raise FrameError(p, "no image in this XISF file")
    return x, {k: (v[0]["value"] if isinstance(v, list) and v else v)
               for k, v in metas[0].get("FITSKeywords", {}).items()}


def _load_xisf(p: Path) -> Frame:
    try:
        x, kw = _xisf_keywords(p)
        data = x.read_image(0)
    except FrameError:
        raise
    except Exception as exc:  # the xisf package raises bare exceptions of many kinds
        raise FrameError(p, f"unreadable XISF: {exc}") from None
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
        with Image.open(p) as im:
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


def load(path: str | Path, *, check: bool = True) -> Frame:
    """Read a frame from disk, read-only; raise :class:`FrameError` on anything bad.

    ``check=True`` first verifies that the file is complete (FITS size from the headers),
    so a frame still being written raises :class:`FrameIncomplete` instead of being
    measured on half its pixels.
    """
    p = Path(path)
    try:
        if not p.is_file():
            raise FrameError(p, "no such file" if not p.exists() else "not a regular file")
        if p.name.lower().endswith(XISF_SUFFIXES):
            return _load_xisf(p)
        if p.name.lower().endswith(PICTURE_SUFFIXES):
            return _load_picture(p)
        return _load_fits(p, check)
    except PermissionError:
        raise FrameIncomplete(p, "locked by another program (permission denied); retry later") from None
    except FileNotFoundError:
        raise FrameError(p, "file disappeared before it could be read") from None


def frame_from_array(pixels: np.ndarray, header: Mapping[str, Any] | None = None,
                     saturation_adu: float | None = None) -> Frame:
    """Wrap an in-memory array (tests, the simulator, Siril masters) as a :class:`Frame`."""
    meta = meta_from_header(dict(header or {}))
    return _prepare(None, pixels, meta, saturation_adu)


def read_header(path: str | Path) -> FrameMeta:
    """Only the normalised header of a FITS/XISF file (cheap: no pixels are read)."""
    p = Path(path)
    if p.name.lower().endswith(XISF_SUFFIXES):
        try:
            return meta_from_header(_xisf_keywords(p)[1])
        except FrameError:
            raise
        except Exception as exc:  # the xisf package raises bare exceptions of many kinds
            raise FrameError(p, f"unreadable XISF: {exc}") from None
    from astropy.io import fits
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(p, mode="readonly", memmap=False, lazy_load_hdus=True) as hdul:
                header = dict(hdul[0].header)
                if len(hdul) > 1 and (header.get("NAXIS", 0) == 0):
                    header.update(dict(hdul[1].header))
    except (OSError, ValueError, IndexError) as exc:
        raise FrameError(p, f"unreadable FITS header: {exc}") from None
    return meta_from_header(header)


def frame_order_key(path: Path, meta: FrameMeta | None) -> tuple[float, str]:
    """Capture order: DATE-OBS when the header has it, else the file's modification time."""
    if meta is not None and meta.timestamp is not None:
        return (meta.timestamp, path.name)
    try:
        return (os.stat(path).st_mtime, path.name)
    except OSError:
        return (float("inf"), path.name)
