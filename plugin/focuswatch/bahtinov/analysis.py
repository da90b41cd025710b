"""The entry point: :func:`analyze` an image around its brightest star.

It runs the steps of the package doc in order: the spikes (:mod:`focuswatch.bahtinov.spikes`),
plain or Tri-Bahtinov (:mod:`focuswatch.bahtinov.tri`), the offset
(:mod:`focuswatch.bahtinov.geometry`), the conversion to um
(:mod:`focuswatch.bahtinov.conversion`) and the verdict (:mod:`focuswatch.bahtinov.focus`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from astropy.stats import mad_std

from focuswatch.bahtinov.config import BAHTINOV, BahtinovConfig
from focuswatch.bahtinov.conversion import grabber_px_per_um
from focuswatch.bahtinov.focus import _finish
from focuswatch.bahtinov.geometry import (LineInfo, _ang_diff, _canonical_normal, _direction_deg, _offset,
                                         _quadrature, _spike_lines, _triplet)
from focuswatch.bahtinov.result import BahtinovResult
from focuswatch.bahtinov.spikes import (SCAN_STEP_DEG, _core_radius, _find_star, _peaks, _radon, _refine,
                                       flat_disc_radius_px)
from focuswatch.bahtinov.tri import TRI_SCAN_FRAC, _measure_tri, _retrace_tri, _sixty_apart
from focuswatch.errors import BahtinovError
from focuswatch.optics import Rig


def analyze(image: np.ndarray, rig: Rig | None = None, *, px_per_um: float | None = None, reverse: bool = False,
            max_radius_px: int = 300, wavelength_nm: float | None = None, file: str | None = None,
            config: BahtinovConfig = BAHTINOV) -> BahtinovResult:
    """Measure the Bahtinov (or Tri-Bahtinov) pattern around the brightest star.

    Parameters
    ----------
    image : 2-D array of the frame (ADU; any dtype).
    rig : aperture, focal length and pixel size for the conversion to um (else only px are
        reported), focuser step size for the advice in steps.
    px_per_um : a calibrated conversion (px of offset per um of defocus) to use instead of
        the Bahtinov Grabber formula.
    reverse : flip the sign (mask turned by 180 deg or a mirrored image, see the package doc).
    max_radius_px : how far from the star the spikes are followed.
    config : the tuned thresholds (:class:`~focuswatch.bahtinov.config.BahtinovConfig`).

    Raises :class:`BahtinovError` (a ``ValueError``) when no spike pattern is found.
    """
    rig = rig or Rig()
    img = np.asarray(image, dtype=float)
    if img.ndim != 2 or min(img.shape) < 32:
        raise BahtinovError(f"need a 2-D image of at least 32x32 px, got shape {img.shape}")
    bg = float(np.median(img))
    noise = float(mad_std(img)) or 1.0
    sx, sy = _find_star(img)
    h = int(min(max_radius_px, sx, sy, img.shape[1] - 1 - sx, img.shape[0] - 1 - sy))
    if h < 16:
        raise BahtinovError(f"the brightest star at ({sx}, {sy}) is too close to the edge to follow its spikes")
    box = img[sy - h:sy + h + 1, sx - h:sx + h + 1] - bg
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1].astype(float)
    rr_all = np.hypot(xx, yy)
    w = np.sqrt(np.clip(box, 0.0, None))
    cfg = config
    r_in = _core_radius(w, rr_all, math.sqrt(cfg.spike_min_sigma * noise))

    def no_pattern(problem: str) -> BahtinovError:
        """The error, saying so when the star is a defocused disc (the usual reason)."""
        disc = flat_disc_radius_px(w, rr_all, math.sqrt(cfg.spike_min_sigma * noise))
        if disc is None:
            return BahtinovError(problem)
        return BahtinovError(f"the brightest star at ({sx}, {sy}) is a flat disc about {2 * disc:.0f} px across: "
                             "too far out of focus for the mask's spikes; focus roughly first (a few zones), "
                             f"then use the mask ({problem})")
    sel = (rr_all > r_in) & (rr_all < h) & (box > cfg.spike_min_sigma * noise)
    if sel.sum() < cfg.min_spike_pixels:
        raise no_pattern("no diffraction spikes around the brightest star (too faint or no mask?)")
    ang, strength, best = _radon(xx[sel], yy[sel], w[sel], rho_max=min(cfg.scan_rho_max_px, h / 2))
    peaks = _peaks(ang, strength)
    notes: list[str] = []
    if len(peaks) < 3:
        raise no_pattern(f"found {len(peaks)} spike(s) around the brightest star; a Bahtinov mask makes 3")
    # coarse line parameters
    coarse = []
    for a, hgt in peaks:
        j = int(round(a / SCAN_STEP_DEG)) % len(ang)
        coarse.append((a, float(best[j]), hgt))
    dirs = [_direction_deg(a) for a, _, _ in coarse[:3]]
    sep_deg = min(_ang_diff(dirs[i], dirs[j]) for i in range(len(dirs)) for j in range(i + 1, len(dirs)))
    half_width = cfg.profile_half_width_px
    t_max = h - half_width - 1
    t_min = min(max(r_in, cfg.start_clear_half_widths * half_width
                    / math.sin(math.radians(max(sep_deg, cfg.min_spike_angle_deg)))),
                max(r_in, cfg.max_start_frac * t_max))
    if t_max - t_min < cfg.min_followed_px:
        raise no_pattern("the spikes are too short or too close together to measure (crop less, or "
                            "use a longer focal length / smaller pixels)")
    Found = list[tuple[float, float, LineInfo]]

    def trace(cands: Sequence[tuple[float, float, float]], t_lo: float, hw: float = half_width,
              ramp: bool = False) -> Found:
        """Refine coarse lines (normal_deg, rho_px, strength) followed from ``t_lo`` px out.

        A spike is followed over most of its length; noise around a star without a mask is not."""
        n_possible = 2 * len(np.arange(t_lo, t_max, 1.0))
        out: Found = []
        for a, rho0, hgt in cands:
            th, rho, n_s, rms, err = _refine(box, float(h), float(h), a, rho0, t_lo, t_max, hw, noise, ramp)
            if not (n_s >= cfg.min_found_frac * n_possible and rms is not None and rms < cfg.max_line_rms_px):
                continue
            th, rho = _canonical_normal(th, rho)
            if any(_ang_diff(_direction_deg(th), _direction_deg(t2)) < cfg.same_spike_deg
                   and abs(rho - r2) < cfg.same_spike_px for t2, r2, _ in out):
                continue  # the same spike found twice
            out.append((th, rho, (hgt, n_s, rms, err)))
        return out

    found = trace(coarse, t_min)
    middles_60 = _sixty_apart([_direction_deg(t) for t, _, _ in found[:3]])
    if len(found) >= 5 or middles_60:
        def rho_at(normal_deg: float, r_lo: float, rb: float = cfg.tri_rho_window_px) -> float:
            """Best 1-px bin (within ``rb`` px of the star) of the stretched light projected on
            one normal, from the stretch of the line more than ``r_lo`` px from the star."""
            th = math.radians(normal_deg)
            rr = xx * math.cos(th) + yy * math.sin(th)
            near = sel & (np.abs(rr) <= rb) & (np.abs(yy * math.cos(th) - xx * math.sin(th)) > r_lo)
            hist = np.bincount(np.round(rr[near] + rb).astype(int), weights=w[near], minlength=int(2 * rb) + 1)
            return float(np.argmax(hist) - rb)

        # the angle scan again on the outer part only (beyond TRI_SCAN_FRAC of the radius), where
        # spikes a few degrees apart no longer blend: for the outer spikes' half-angle
        far_sel = (rr_all > max(r_in, TRI_SCAN_FRAC * h)) & (rr_all < h)  # no 2-sigma cut: faint spikes count
        _, strength_far, _ = _radon(xx[far_sel], yy[far_sel], w[far_sel], rho_max=min(cfg.scan_rho_max_px, h / 2))
        found = _retrace_tri(found, trace, rho_at, strength_far, r_in, t_max) or found
    if len(found) < 3:
        raise no_pattern(f"no Bahtinov spikes around the brightest star ({len(found)} line(s) could be traced); "
                            "is the mask on, and the star bright enough?")
    pattern = "tri-bahtinov" if (len(found) >= 6 or middles_60) else "bahtinov"
    if pattern == "bahtinov":
        if len(found) > 3:
            notes.append(f"{len(found)} spikes found; the 3 strongest used")
        found = found[:3]
    refined = [(t, r) for t, r, _ in found]
    line_info = [info for _, _, info in found]
    k = px_per_um
    src = "given" if px_per_um else None
    lam = wavelength_nm or rig.wavelength_nm
    cfz = rig.cfz_um(lam)
    sign = -1.0 if reverse else 1.0
    if pattern == "tri-bahtinov":
        return _measure_tri(refined, line_info, sx, sy, rig, px_per_um, cfz, sign, reverse, notes, file)
    mid, o1, o2 = _triplet(refined)
    off, cxp, cyp, half = _offset(refined, mid, o1, o2)
    roles = ["outer"] * 3
    roles[mid] = "middle"
    lines = _spike_lines(refined, line_info, roles)
    lo_deg, hi_deg = cfg.usual_half_angle_deg
    if half < lo_deg or half > hi_deg:
        notes.append(f"outer spikes {2 * half:.1f}° apart: unusual for a Bahtinov mask")
    off_err = _quadrature([line_info[i][3] for i in (mid, o1, o2)])
    if k is None:
        k = grabber_px_per_um(rig, half)
        src = "bahtinov-grabber" if k else None
    return _finish(pattern, sx, sy, lines, refined[mid][0], half, sx + cxp, sy + cyp, off, off_err, k, src, rig,
                   cfz, sign, reverse, notes, file)
