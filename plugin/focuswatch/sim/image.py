"""Rendering one frame (stars block-summed over pixels, sky, noise, defects) and its truth and FITS header. Pure."""
from __future__ import annotations


import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from focuswatch import optics
from focuswatch.sim.params import SOFTWARE, SimParams, _BAYER_RESPONSE, field_defocus_um
from focuswatch.sim.psf import PsfCondition, _Stamp, _make_stamp, _psf_stats, psf_condition


# --------------------------------------------------------------------------- planning

@dataclass
class _Plan:
    params: SimParams
    x: np.ndarray          # nominal (rendered, quantised) positions
    y: np.ndarray
    flux_e: np.ndarray
    cell: np.ndarray       # index into stamps
    conds: list[PsfCondition]
    cell_xy: list[tuple[float, float]]


def _rng(params: SimParams, stream: int) -> np.random.Generator:
    if stream == 3:  # noise
        extra = params.noise_seed if params.noise_seed is not None else 1_000_003 + params.frame_nr
        return np.random.default_rng(np.random.SeedSequence([int(params.seed), 3, int(extra)]))
    return np.random.default_rng(np.random.SeedSequence([int(params.seed), stream]))


def _transmission(params: SimParams) -> float:
    return (1.0 - params.cloud) * (1.0 - 0.25 * params.dew)


def _sky_e(params: SimParams) -> float:
    return params.sky_adu * params.gain_e_per_adu * (1.0 + params.cloud_sky_gain * params.cloud) \
        * (1.0 + 0.25 * params.dew)


def _cells(params: SimParams, tol: float = 0.02) -> tuple[int, int]:
    """How many PSF cells across x and y so the HFR changes by <= ``tol`` between cells.

    Uses the quadrature model ``hfr^2 ~ hfr0^2 + (0.354 B)^2 + (0.25 coma)^2`` on a grid of
    positions to find the steepest change per frame width/height; capped at 12 x 9 cells.
    """
    if not params.field_varies:
        return 1, 1
    w, h = params.width_px, params.height_px
    gx = np.linspace(-0.5, w - 0.5, 41)[None, :]
    gy = np.linspace(-0.5, h - 0.5, 41)[:, None]
    blur = optics.blur_diameter_um(field_defocus_um(params, gx, gy), params.f_ratio) / params.pixel_um
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    coma = params.coma_px * np.hypot(gx - cx, gy - cy) / max(math.hypot(cx, cy), 1e-9)
    hfr0 = max(0.6 * params.seeing_fwhm_px, 0.3)
    hfr = np.sqrt(hfr0 ** 2 + (0.354 * blur) ** 2 + (0.25 * coma) ** 2)
    step_x = float(np.abs(np.diff(hfr, axis=1)).max()) * 40  # change over the whole width
    step_y = float(np.abs(np.diff(hfr, axis=0)).max()) * 40
    ref = float(hfr.min()) * tol
    # cells of at least ~40 px: small test frames stay cheap
    nx = int(min(12, max(1, w // 40), max(1, math.ceil(step_x / ref))))
    ny = int(min(9, max(1, h // 40), max(1, math.ceil(step_y / ref))))
    return nx, ny


def _plan(params: SimParams) -> _Plan:
    rng = _rng(params, 1)
    n = params.n_stars
    w, h = params.width_px, params.height_px
    x = rng.uniform(-0.5, w - 0.5, n) + params.dither_x_px
    y = rng.uniform(-0.5, h - 0.5, n) + params.dither_y_px
    g = params.flux_power_index
    ratio = (params.star_flux_min_e / params.star_flux_max_e) ** g
    u = rng.uniform(0.0, 1.0, n)
    flux = params.star_flux_min_e * (1.0 - u * (1.0 - ratio)) ** (-1.0 / g)
    flux = flux * _transmission(params)
    nx, ny = _cells(params)
    if nx == 1 and ny == 1:
        conds = [psf_condition(params)]
        cell = np.zeros(n, np.int64)
        cell_xy = [((w - 1) / 2.0, (h - 1) / 2.0)]
    else:
        ex = (np.arange(nx) + 0.5) * w / nx - 0.5
        ey = (np.arange(ny) + 0.5) * h / ny - 0.5
        ix = np.clip(((x + 0.5) * nx / w).astype(np.int64), 0, nx - 1)
        iy = np.clip(((y + 0.5) * ny / h).astype(np.int64), 0, ny - 1)
        cell = iy * nx + ix
        cell_xy = [(float(ex[i % nx]), float(ey[i // nx])) for i in range(nx * ny)]
        conds = [psf_condition(params, cx, cy) for cx, cy in cell_xy]
    return _Plan(params, x, y, flux, cell, conds, cell_xy)


# --------------------------------------------------------------------------- rendering

@dataclass(frozen=True)
class SimFrame:
    """A rendered frame: uint16 pixels (bias, sky, stars, noise), its FITS header and the truth.

    ``header`` maps FITS keywords to values (NINA's names); ``truth`` is JSON-able (see
    :func:`truth_for`); ``params`` made it.
    """

    pixels: np.ndarray
    header: dict[str, Any]
    truth: dict[str, Any]
    params: SimParams

    @property
    def file_name(self) -> str:
        return nina_file_name(self.params)

    def to_frame(self):
        """The pixels as a :class:`focuswatch.model.frame.Frame`, as :func:`focuswatch.io.frames.load`
        would return them."""
        from focuswatch.model.frame import frame_from_array
        return frame_from_array(self.pixels, self.header, saturation_adu=self.params.saturation_adu)


def _quantise(v: np.ndarray, os_: int, x0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stamp origin pixel, phase index and rendered (quantised) position for positions ``v``."""
    k = np.rint(v * os_).astype(np.int64) - int(round(x0 * os_))
    origin = -((-k) // os_)
    phase = origin * os_ - k
    return origin, phase, (k + int(round(x0 * os_))) / os_


def _cfa_map(params: SimParams) -> np.ndarray | None:
    if not params.bayer:
        return None
    pat = params.bayer.upper()
    resp = np.array([[_BAYER_RESPONSE[pat[0]], _BAYER_RESPONSE[pat[1]]],
                     [_BAYER_RESPONSE[pat[2]], _BAYER_RESPONSE[pat[3]]]], np.float32)
    return resp


def _render_electrons(plan: _Plan, stamps: list[_Stamp]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    p = plan.params
    w, h = p.width_px, p.height_px
    img = np.zeros((h, w), np.float32)
    n = len(plan.x)
    rx = np.empty(n)
    ry = np.empty(n)
    peak = np.empty(n)
    for ci, st in enumerate(stamps):
        sel = np.nonzero(plan.cell == ci)[0]
        if len(sel) == 0:
            continue
        ox, px, qx = _quantise(plan.x[sel], st.os, st.x0)
        oy, py, qy = _quantise(plan.y[sel], st.os, st.x0)
        rx[sel] = qx + st.dx
        ry[sel] = qy + st.dy
        s = st.size
        for j, i in enumerate(sel):
            x0, y0 = int(ox[j]), int(oy[j])
            xa, ya = max(x0, 0), max(y0, 0)
            xb, yb = min(x0 + s, w), min(y0 + s, h)
            stamp = st.phases[py[j], px[j]]
            peak[i] = float(stamp.max()) * plan.flux_e[i]
            if xa >= xb or ya >= yb:
                continue
            img[ya:yb, xa:xb] += np.float32(plan.flux_e[i]) * stamp[ya - y0:yb - y0, xa - x0:xb - x0]
    return img, {"x": rx, "y": ry, "peak_e": peak}


def _sky_map(p: SimParams, rows: slice) -> np.ndarray:
    sky = _sky_e(p)
    t = math.radians(p.sky_gradient_angle_deg)
    xs = (np.arange(p.width_px, dtype=np.float32) - (p.width_px - 1) / 2) / p.width_px
    ys = (np.arange(p.height_px, dtype=np.float32)[rows] - (p.height_px - 1) / 2) / p.height_px
    return np.float32(sky) * (1.0 + np.float32(p.sky_gradient) * (
        xs[None, :] * np.float32(math.cos(t)) + ys[:, None] * np.float32(math.sin(t))))


def _to_adu(p: SimParams, electrons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add sky, CFA response, shot and read noise; convert to ADU; clip; uint16 (row chunks)."""
    h, w = electrons.shape
    out = np.empty((h, w), np.uint16)
    cfa = _cfa_map(p)
    rn2 = np.float32(p.read_noise_e ** 2)
    poisson = _sky_e(p) * (1.0 - abs(p.sky_gradient) / 2) < 30.0
    top = min(p.saturation_adu, 65535.0)
    chunk = max(1, 4_000_000 // w) // 2 * 2 or 2
    for r0 in range(0, h, chunk):
        rows = slice(r0, min(r0 + chunk, h))
        e = electrons[rows] + _sky_map(p, rows)
        if cfa is not None:
            e *= np.tile(cfa, ((e.shape[0] + 1) // 2, (w + 1) // 2))[:e.shape[0], :w]
        if poisson:
            e = rng.poisson(np.maximum(e, 0.0)).astype(np.float32)
            e += rng.standard_normal(e.shape, dtype=np.float32) * np.float32(p.read_noise_e)
        else:  # Gaussian approximation of Poisson (fine above ~30 e-), one draw for both noises
            sd = np.sqrt(np.maximum(e, 0.0) + rn2)
            e += rng.standard_normal(e.shape, dtype=np.float32) * sd
        adu = e / np.float32(p.gain_e_per_adu) + np.float32(p.bias_adu)
        np.rint(adu, out=adu)
        np.clip(adu, 0, top, out=adu)
        out[rows] = adu.astype(np.uint16)
    return out


def _defects(p: SimParams, img: np.ndarray, rng_noise: np.random.Generator) -> dict[str, list]:
    """Hot pixels (fixed per sensor: seeded by ``seed``) and cosmic-ray hits (per frame)."""
    h, w = img.shape
    top = int(min(p.saturation_adu, 65535))
    hot: list[list[int]] = []
    if p.n_hot_pixels > 0:
        rs = _rng(p, 2)
        hx = rs.integers(0, w, p.n_hot_pixels)
        hy = rs.integers(0, h, p.n_hot_pixels)
        level = rs.uniform(2000, 60000, p.n_hot_pixels)
        for x, y, v in zip(hx, hy, level):
            img[y, x] = min(top, int(img[y, x]) + int(v))
            hot.append([int(x), int(y)])
    rays: list[list[float]] = []
    for _ in range(max(0, p.n_cosmic_rays)):
        x, y = rng_noise.uniform(0, w - 1), rng_noise.uniform(0, h - 1)
        length = rng_noise.uniform(1, 12)
        ang = rng_noise.uniform(0, math.pi)
        level = rng_noise.uniform(3000, 40000)
        for s in np.linspace(0, length, int(length * 2) + 1):
            xi, yi = int(round(x + s * math.cos(ang))), int(round(y + s * math.sin(ang)))
            if 0 <= xi < w and 0 <= yi < h:
                img[yi, xi] = min(top, int(img[yi, xi]) + int(level))
        rays.append([round(x, 2), round(y, 2), round(length, 2), round(math.degrees(ang), 1)])
    return {"hot_pixels": hot, "cosmic_rays": rays}


def star_image(params: SimParams) -> tuple[np.ndarray, dict[str, Any]]:
    """The noiseless stars alone (float32, electrons; no bias, sky, noise or defects) and the truth.

    For tests of the rendering itself: flux conservation, pixel integration, positions.
    """
    plan = _plan(params)
    stamps = [_make_stamp(c) for c in plan.conds]
    electrons, rendered = _render_electrons(plan, stamps)
    return electrons, _truth(plan, stamps, rendered, None)


def render(params: SimParams) -> SimFrame:
    """Render one frame with its truth (pure: same params, same pixels).

    A 1024 x 1024 frame with 200 stars takes ~0.1-0.3 s; 6248 x 4176 with 3000 stars a few
    seconds (mostly the noise on 26 Mpx).
    """
    plan = _plan(params)
    stamps = [_make_stamp(c) for c in plan.conds]
    electrons, rendered = _render_electrons(plan, stamps)
    rng = _rng(params, 3)
    pixels = _to_adu(params, electrons, rng)
    del electrons
    defects = _defects(params, pixels, rng)
    truth = _truth(plan, stamps, rendered, defects)
    return SimFrame(pixels, fits_header(params), truth, params)


# --------------------------------------------------------------------------- truth

_EFFECT_KEYS = ("defocus_um", "tilt_x_um", "tilt_y_um", "curvature_um", "coma_px", "collimation",
                "collimation_angle_deg", "trail_px", "trail_angle_deg", "dew", "cloud", "sky_gradient",
                "moffat_beta", "seeing_fwhm_arcsec")


def _zone_truth(params: SimParams) -> list[list[float]]:
    """True HFR (px) at the centres of the 3 x 3 zones (row 0 = top)."""
    w, h = params.width_px, params.height_px
    out = []
    for r in range(3):
        row = []
        for c in range(3):
            x = (c + 0.5) * w / 3 - 0.5
            y = (r + 0.5) * h / 3 - 0.5
            row.append(round(_psf_stats(psf_condition(params, x, y))["hfr_px"], 5))
        out.append(row)
    return out


def _truth(plan: _Plan, stamps: list[_Stamp] | None, rendered: dict[str, np.ndarray] | None,
           defects: dict[str, list] | None) -> dict[str, Any]:
    p = plan.params
    centre = psf_condition(p)
    stats = _psf_stats(centre)
    focus = _psf_stats(PsfCondition(p.seeing_fwhm_px, p.moffat_beta, p.blur_px(), p.rig.obstruction))
    seeing_only = _psf_stats(PsfCondition(p.seeing_fwhm_px, p.moffat_beta, 0.0))
    wavelength = optics.wavelength_for_filter(p.filter_name, p.rig.wavelength_nm)
    cfz = optics.cfz_um(p.f_ratio, wavelength)
    sky_e = _sky_e(p)
    if not p.field_varies:  # one PSF: every star has the centre's (accurate) truth
        cell_hfr = [stats["hfr_px"]]
    else:  # per cell: HFR of the rendered stamp's fine grid (within ~0.2 % of the continuous one)
        cell_hfr = [s.hfr_px for s in (stamps or [_make_stamp(c, False) for c in plan.conds])]
    if rendered is None:  # truth without rendering: positions as generated (no quantisation)
        xs, ys, peaks = plan.x, plan.y, None
    else:
        xs, ys, peaks = rendered["x"], rendered["y"], rendered["peak_e"]
    rn2 = p.read_noise_e ** 2
    stars = []
    local_defocus = field_defocus_um(p, xs, ys)
    for i in range(len(plan.x)):
        hfr = cell_hfr[int(plan.cell[i])]
        f = float(plan.flux_e[i])
        area = math.pi * (2.0 * max(hfr, 0.5)) ** 2
        snr = f / math.sqrt(f + area * (sky_e + rn2))
        s = {"x": round(float(xs[i]), 4), "y": round(float(ys[i]), 4), "flux_e": round(f, 2),
             "flux_adu": round(f / p.gain_e_per_adu, 2), "snr": round(snr, 2), "hfr_px": round(hfr, 5),
             "defocus_um": round(float(local_defocus[i]), 4)}
        if peaks is not None:
            pk = float(peaks[i])
            s["peak_e"] = round(pk, 1)
            s["saturated"] = bool(p.bias_adu + (pk + sky_e) / p.gain_e_per_adu >= p.saturation_adu)
        stars.append(s)
    inside = [s for s in stars if -0.5 <= s["x"] < p.width_px - 0.5 and -0.5 <= s["y"] < p.height_px - 0.5]
    t: dict[str, Any] = {
        "file": nina_file_name(p),
        "hfr_px": stats["hfr_px"],
        "hfr_nina_px": stats["hfr_nina_px"],
        "fwhm_px": stats["fwhm_px"],
        "hfr_focus_px": focus["hfr_px"],
        "hfr0_px": seeing_only["hfr_px"],
        "hfr0_nina_px": seeing_only["hfr_nina_px"],
        "seeing_fwhm_px": p.seeing_fwhm_px,
        "seeing_fwhm_arcsec": p.seeing_fwhm_arcsec,
        "profile_ratio": 2.0 * stats["hfr_px"] / stats["fwhm_px"] if stats["fwhm_px"] > 0 else None,
        "defocus_um": p.defocus_um,
        "blur_px": p.blur_px(),
        "f_ratio": p.f_ratio,
        "pixel_um": p.pixel_um,
        "plate_scale_arcsec_px": p.plate_scale_arcsec_px,
        "plate_scale": p.plate_scale_arcsec_px,
        "wavelength_nm": wavelength,
        "cfz_um": cfz,
        "defocus_in_cfz": abs(p.defocus_um) <= cfz / 2.0,
        "focuser_pos": p.focuser_pos,
        "focuser_step_um": p.rig.focuser_step_um,
        "temp_c": p.temp_c,
        "filter_name": p.filter_name,
        "date_obs": _date_obs(p.date_obs),
        "exposure_s": p.exposure_s,
        "sky_e": sky_e,
        "sky_adu": sky_e / p.gain_e_per_adu,
        "bias_adu": p.bias_adu,
        "read_noise_e": p.read_noise_e,
        "gain_e_per_adu": p.gain_e_per_adu,
        "transmission": _transmission(p),
        "field_varies": p.field_varies,
        "n_psf_cells": len(plan.conds),
        "zones_hfr_px": _zone_truth(p) if p.field_varies else [[round(stats["hfr_px"], 5)] * 3] * 3,
        "effects": {k: getattr(p, k) for k in _EFFECT_KEYS},
        "n_stars": len(stars),
        "n_stars_inside": len(inside),
        "n_saturated": sum(1 for s in stars if s.get("saturated")),
        "stars": stars,
        "params": p.to_dict(),
    }
    if defects is not None:
        t.update(defects)
    return t


def truth_for(params: SimParams) -> dict[str, Any]:
    """The truth of a frame without rendering it (same dict as ``render(params).truth``,
    except that star positions are not quantised to the rendering phases and there is no
    ``peak_e``/``saturated`` per star nor hot pixel/cosmic ray list)."""
    return _truth(_plan(params), None, None, None)


# --------------------------------------------------------------------------- headers and names

def _parse_date(text: str) -> datetime:
    """A ``date_obs`` parameter (ISO 8601, UTC, optional ``Z``) as a naive datetime."""
    return datetime.fromisoformat(str(text).replace("Z", ""))


def _date_obs(text: str) -> str:
    """Normalise a DATE-OBS to NINA's ``YYYY-MM-DDTHH:MM:SS.fff`` (UTC)."""
    dt = _parse_date(text)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def nina_file_name(params: SimParams) -> str:
    """NINA's default pattern ``$$DATETIME$$_$$FILTER$$_$$SENSORTEMP$$_$$EXPOSURETIME$$s_$$FRAMENR$$``.

    >>> nina_file_name(SimParams(frame_nr=42))
    '2026-11-21_22-14-03_L_-10.00_120.00s_0042.fits'
    """
    dt = _parse_date(params.date_obs)
    filt = re.sub(r"[^A-Za-z0-9+-]", "", params.filter_name) or "NOFILTER"
    return (f"{dt.strftime('%Y-%m-%d_%H-%M-%S')}_{filt}_{params.sensor_temp_c:.2f}_"
            f"{params.exposure_s:.2f}s_{params.frame_nr:04d}.fits")


def fits_header(params: SimParams) -> dict[str, Any]:
    """NINA-style FITS keywords for a simulated frame (values only; comments in :func:`fits_bytes`)."""
    rig = params.rig
    alt = params.altitude_deg
    h: dict[str, Any] = {
        "IMAGETYP": params.image_type,
        "EXPOSURE": float(params.exposure_s),
        "EXPTIME": float(params.exposure_s),
        "DATE-OBS": _date_obs(params.date_obs),
        "XBINNING": int(rig.binning),
        "YBINNING": int(rig.binning),
        "GAIN": int(params.camera_gain),
        "OFFSET": int(params.camera_offset),
        "EGAIN": float(params.gain_e_per_adu),
        "XPIXSZ": float(params.pixel_um),
        "YPIXSZ": float(params.pixel_um),
        "INSTRUME": "Simulated camera",
        "SET-TEMP": float(params.sensor_temp_c),
        "CCD-TEMP": float(params.sensor_temp_c),
        "TELESCOP": f"focuswatch sim {rig.aperture_mm:g}/{rig.focal_length_mm:g}"
        if rig.aperture_mm else "focuswatch sim",
        "FOCALLEN": float(rig.focal_length_mm),
        "FOCRATIO": round(float(params.f_ratio), 4),
        "APTDIA": float(rig.effective_aperture_mm or 0.0),
        "FILTER": params.filter_name,
        "OBJECT": params.object_name,
        "CENTALT": float(alt),
        "AIRMASS": round(1.0 / math.sin(math.radians(alt)), 4) if alt > 1 else 57.3,
        "FOCNAME": "Simulated focuser",
        "FOCPOS": int(params.focuser_pos),
        "FOCUSPOS": int(params.focuser_pos),
        "FOCTEMP": round(float(params.temp_c), 3),
        "FOCUSTEM": round(float(params.temp_c), 3),
        "AMBTEMP": round(float(params.temp_c), 3),
        "SWCREATE": SOFTWARE,
    }
    if rig.focuser_step_um:  # NINA leaves it out when the focuser does not report it
        h["FOCUSSZ"] = float(rig.focuser_step_um)
    if params.bayer:
        h["BAYERPAT"] = params.bayer.upper()
        h["XBAYROFF"] = 0
        h["YBAYROFF"] = 0
    return h
