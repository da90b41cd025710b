"""The frame as data: normalised header values and measurable pixels (pure, no files).

:class:`FrameMeta` is what every command reads from a header, whatever program wrote it;
:class:`Frame` is the float32 image that :mod:`focuswatch.stars` measures. Turning a
header mapping into ``FrameMeta`` and raw pixel arrays into a ``Frame`` (colour planes to
luminance, Bayer mosaics to full-resolution green, saturation level) happens here, apart
from :mod:`focuswatch.io.frames`, which opens files. So the measuring core imports no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from focuswatch.errors import FrameError
from focuswatch.model.records import Record, parse_iso


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
    #: the focuser's name (FOCNAME, as NINA writes it): another focuser's positions are another scale
    focuser_name: str | None = None
    camera: str | None = None
    software: str | None = None
    width: int | None = None
    height: int | None = None
    #: seeing FWHM (arcsec) measured for this frame by a seeing monitor (DIMM, all-sky) that
    #: writes it into the header; never the rig's typical value
    seeing_arcsec: float | None = None
    #: where the telescope pointed (J2000-ish degrees; the plate solution's CRVAL1/2 when the
    #: header has one, else RA/DEC, else OBJCTRA/OBJCTDEC): tells one field from another when
    #: OBJECT is missing (the night's cloud test compares a field only with itself)
    ra_deg: float | None = None
    dec_deg: float | None = None

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
    #: the Bayer pattern whose green channel was interpolated to full resolution
    #: (:func:`bayer_green_full`), else ``None``: the measurement takes that blur out again
    green_interpolated: str | None = None


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

    One ISO parser serves the headers and the state files (:func:`focuswatch.model.records.parse_iso`):
    any number of fractional digits, ``Z`` or a UTC offset, a space or ``T`` separator.
    """
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
        # e-/ADU: EGAIN first; NINA, SGP and ASIAIR write GAIN as the camera's gain setting (0-600)
        gain=_num(_first(h, "EGAIN", "GAIN")),
        offset=_num(_first(h, "OFFSET", "BLKLEVEL")),
        sensor_temp_c=_num(_first(h, "CCD-TEMP", "SET-TEMP")),
        object_name=_str(_first(h, "OBJECT")),
        altitude_deg=alt,
        airmass=airmass,
        bayer_pattern=bayer.upper() if bayer else None,
        telescope=_str(_first(h, "TELESCOP")),
        focuser_name=_str(_first(h, "FOCNAME", "FOCUSER")),
        camera=_str(_first(h, "INSTRUME")),
        software=_str(_first(h, "SWCREATE", "CREATOR", "PROGRAM")),
        width=_int(_first(h, "NAXIS1", "ZNAXIS1")),
        height=_int(_first(h, "NAXIS2", "ZNAXIS2")),
        seeing_arcsec=_positive(_num(_first(h, *SEEING_KEYWORDS))),
        **dict(zip(("ra_deg", "dec_deg"), pointing_deg(h))),
    )


def _angle_deg(v: Any, *, hours: bool) -> float | None:
    """A header angle in degrees: a number as itself (times 15 when ``hours``); a string such as
    ``"05 35 17.3"``, ``"-05:23:28"``, ``"+41d16m09s"`` parsed by astropy's :class:`~astropy.coordinates.Angle`
    (its first field hours when ``hours``), which also refuses a minute or second out of range;
    ``None`` for anything else. astropy.coordinates is imported only here (0.4 s, once), for
    headers that write the pointing as text."""
    if v is None or isinstance(v, bool):
        return None
    if not isinstance(v, str):
        x = _num(v)
        return None if x is None else x * (15.0 if hours else 1.0)
    import warnings

    import astropy.units as u
    from astropy.coordinates import Angle, IllegalHourWarning, IllegalMinuteWarning, IllegalSecondWarning

    try:
        # "05 35 60" (a writer's rounding) is 05 36 00 and "24 00 00" is 0h: no warning per frame
        with warnings.catch_warnings():
            for quiet in (IllegalHourWarning, IllegalMinuteWarning, IllegalSecondWarning):
                warnings.simplefilter("ignore", quiet)
            x = float(Angle(v.strip(), unit=u.hourangle if hours else u.deg).degree)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def pointing_deg(h: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(RA, Dec) in degrees from a header: the plate solution (CRVAL1/2 with an RA/DEC ``CTYPE1``/2)
    first, then ``RA``/``DEC`` (NINA, SGP, ASIAIR write degrees; a sexagesimal string is hours of
    RA), then ``OBJCTRA``/``OBJCTDEC`` (sexagesimal hours / degrees, MaxIm and others). ``(None, None)``
    when none of them gives a pair within range."""
    def ok(ra: float | None, dec: float | None) -> bool:
        return ra is not None and dec is not None and 0.0 <= ra < 360.0 + 1e-9 and -90.0 <= dec <= 90.0

    c1, c2 = str(h.get("CTYPE1", "") or "").upper(), str(h.get("CTYPE2", "") or "").upper()
    if c1.startswith("RA") and c2.startswith("DEC"):
        ra, dec = _num(h.get("CRVAL1")), _num(h.get("CRVAL2"))
        if ok(ra, dec):
            return ra % 360.0, dec
    for ra_key, dec_key in (("RA", "DEC"), ("OBJCTRA", "OBJCTDEC")):
        ra_v, dec_v = _first(h, ra_key), _first(h, dec_key)
        # sexagesimal RA is hours (OBJCTRA always); a plain number in RA is degrees
        ra = _angle_deg(ra_v, hours=ra_key == "OBJCTRA" or isinstance(ra_v, str) and _num(ra_v) is None)
        dec = _angle_deg(dec_v, hours=False)
        if ok(ra, dec):
            return ra % 360.0, dec
    return None, None


#: Header keywords a seeing monitor's value arrives in (arcsec FWHM), first found wins.
SEEING_KEYWORDS = ("SEEING", "DIMMSEE", "SEEFWHM")


def _positive(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) and x > 0 else None


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


#: Header keywords focuswatch reads as numbers: a value there that is not one is noted.
NUMERIC_KEYWORDS = ("FOCPOS", "FOCUSPOS", "FOCUSERP", "EXPTIME", "EXPOSURE", "FOCTEMP", "FOCUSTEM", "XPIXSZ",
                    "FOCALLEN", "FOCRATIO", "APTDIA", "FOCUSSZ", "XBINNING", "CCD-TEMP", "AMBTEMP", "EGAIN")


def header_value_notes(h: Mapping[str, Any] | None) -> list[str]:
    """Notes for keywords focuswatch reads as numbers whose value is not one (a driver writing
    ``FOCPOS = 'abc'``): the value is left out, and the user should know why."""
    out = []
    for k in NUMERIC_KEYWORDS:
        v = (h or {}).get(k)
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        if _num(v) is None:
            out.append(f"header {k} = {v!r} is not a number: left out")
    return out


def _prepare(path: Path | None, data: np.ndarray, meta: FrameMeta, saturation: float | None,
             integer: bool = False, header: Mapping[str, Any] | None = None) -> Frame:
    """Turn raw image data into a measurable float32 frame (or raise FrameError).

    ``integer=True`` says the pixels came from integers, so the NaN scan is skipped.
    ``header``: the keywords ``meta`` came from, to note values that are not numbers.
    """
    arr = np.asarray(data)
    colour_note = None
    if arr.ndim == 3:
        arr, colour_note = _colour_to_luminance(path, arr)
    if arr.ndim != 2:
        raise FrameError(path, f"a {arr.ndim}-D array, not a mono 2-D frame")
    if min(arr.shape) < 16:
        raise FrameError(path, f"image too small to measure ({arr.shape[1]}x{arr.shape[0]} px)")
    notes: list[str] = ([colour_note] if colour_note else []) + header_value_notes(header)
    img = np.ascontiguousarray(arr, dtype=np.float32)
    if integer or arr.dtype.kind in "ui":
        n_bad = 0
    else:
        finite = np.isfinite(img)
        n_bad = img.size - int(np.count_nonzero(finite))
    if n_bad == img.size:
        raise FrameError(path, "every pixel is NaN or infinite")
    if n_bad:
        if np.may_share_memory(img, data):
            img = img.copy()  # the caller's array (measure_array, Siril's pixels, a memory map) is never written
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
    green_interpolated = None
    if meta.bayer_pattern and colour_note is None:
        green_interpolated = meta.bayer_pattern.upper()
        img = bayer_green_full(img, meta.bayer_pattern)
        notes.append(f"one-shot-colour {meta.bayer_pattern}: measured on the green channel, interpolated to full "
                     "resolution (bilinear: each red/blue site gets the mean of its 4 green neighbours)")
    return Frame(path, img, meta, scale, saturation, notes, green_interpolated)


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


def frame_from_array(pixels: np.ndarray, header: Mapping[str, Any] | None = None,
                     saturation_adu: float | None = None) -> Frame:
    """Wrap an in-memory array (tests, the simulator, Siril masters) as a :class:`Frame`."""
    meta = meta_from_header(dict(header or {}))
    return _prepare(None, pixels, meta, saturation_adu)
