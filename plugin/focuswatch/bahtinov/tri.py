"""Tri-Bahtinov masks: nine spikes grouped into three sub-masks, measured one by one.

The package doc ("Tri-Bahtinov") says why the spikes are grouped by the mask's symmetry
rather than by the gaps between them. :func:`_retrace_tri` traces all nine predicted spikes,
:func:`_group_triplets` assigns them to sub-masks, and :func:`_measure_tri` measures each
sub-mask along its own normal and combines them (mean focus error, spread as the
collimation hint).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from focuswatch.bahtinov.conversion import tri_px_per_um
from focuswatch.bahtinov.focus import _finish
from focuswatch.bahtinov.geometry import LineInfo, _ang_diff, _direction_deg, _offset, _quadrature, _spike_lines
from focuswatch.bahtinov.result import BahtinovResult, Triplet
from focuswatch.bahtinov.spikes import SCAN_STEP_DEG
from focuswatch.optics import Rig


#: worse (rms, deg) an alternative grouping may fit and still count as a tie (then brightness decides).
TRI_TOL_DEG = 2.0
TRI_TIE_DEG = 0.3
#: Sub-masks of a Tri-Bahtinov agreeing within this many critical focus zones (max - min)
#: count as collimated.
TRI_SPREAD_CFZ = 0.5
TRI_T_FACTOR = 2.5
TRI_T_CAP = 0.6
TRI_HALF_WIDTH = 4.0
TRI_RAMP = True
TRI_SCAN_FRAC = 0.45


def _group_triplets(dirs: Sequence[float], strengths: Sequence[float]
                    ) -> tuple[list[tuple[int | None, int | None, int | None]], float, float, bool] | None:
    """Group Tri-Bahtinov spikes by the mask's symmetry.

    A Tri-Bahtinov's nine spike directions are ``phi + 60 k`` (the middles, k = 0, 1, 2: the
    sub-masks are 120 deg apart and a line is the same line turned by 180 deg) and
    ``phi + 60 k +- b`` (the outer ones). Gaps between neighbouring directions do not tell
    the triplets apart: at ``b = 20`` deg all nine are 20 deg apart, and any ``b`` gives the
    same nine directions as ``60 - b`` with the outer spikes handed to the neighbouring
    sub-mask. So every detected line is tried as a middle and every angle to another line as
    ``b`` (3-30 deg: ``b`` and ``60 - b`` make the same directions, mask designs use the
    smaller); the model matching most lines with the smallest rms wins, and among models
    that fit equally well (within ``TRI_TIE_DEG``, e.g. ``b`` near 20 deg) the one whose
    middles are brightest (the middle grating has twice the area of each outer one).

    Returns ``(groups, phi_deg, b_deg, ambiguous)``: three ``(middle, outer-, outer+)`` line
    indices (``None`` where no line matched), the fitted middle direction and half-angle,
    and whether brightness had to decide; ``None`` when fewer than 6 lines fit any model.
    """
    n = len(dirs)
    s = np.asarray(strengths, float)

    def nearest(a: float) -> int | None:
        dd = [_ang_diff(d, a) for d in dirs]
        i = int(np.argmin(dd))
        return i if dd[i] <= TRI_TOL_DEG else None

    cands = []
    for i in range(n):
        for j in range(n):
            beta = _ang_diff(dirs[j], dirs[i])
            if j == i or not 3.0 <= beta < 30.0:
                continue
            # fit phi and beta to the lines matched by the model, twice
            phi, b = dirs[i], beta
            groups: list[tuple[int | None, int | None, int | None]] = []
            for _ in range(2):
                groups, phis, bs = [], [], []
                for k in range(3):
                    m = phi + 60.0 * k
                    im, ia, ib = nearest(m), nearest(m - b), nearest(m + b)
                    groups.append((im, ia, ib))
                    if im is not None:
                        phis.append(((dirs[im] - m + 90.0) % 180.0 - 90.0))
                    if ia is not None and ib is not None:
                        bs.append(_ang_diff(dirs[ia], dirs[ib]) / 2.0)
                phi = phi + (float(np.mean(phis)) if phis else 0.0)
                b = float(np.mean(bs)) if bs else b
            if not 3.0 <= b < 30.0:
                continue
            res, used = [], set()
            for k, g in enumerate(groups):
                m = phi + 60.0 * k
                for idx, a in zip(g, (m, m - b, m + b)):
                    if idx is not None:
                        res.append(_ang_diff(dirs[idx], a))
                        used.add(idx)
            n_match = len(used)  # distinct lines: one line cannot be two spikes
            if n_match < 6:
                continue
            rms = float(np.sqrt(np.mean(np.square(res))))
            mids = [g[0] for g in groups if g[0] is not None]
            bright = float(np.mean(s[mids])) if mids else 0.0
            cands.append((n_match, rms, bright, groups, phi % 180.0, b))
    if not cands:
        return None
    top = max(c[0] for c in cands)
    cands = [c for c in cands if c[0] == top]
    best_rms = min(c[1] for c in cands)
    tied = [c for c in cands if c[1] <= best_rms + TRI_TIE_DEG]
    pick = max(tied, key=lambda c: c[2])
    # a different choice of middles (phi shifted by other than a multiple of 60 deg) fit as well
    ambiguous = any(abs(((c[4] - pick[4] + 30.0) % 60.0) - 30.0) > 2.0 for c in tied)
    return pick[3], pick[4], pick[5], ambiguous


def _sixty_apart(dirs: Sequence[float], tol_deg: float = 3.0) -> bool:
    """Three line directions pairwise 60 deg apart: the middle spikes of a Tri-Bahtinov."""
    return len(dirs) == 3 and all(abs(_ang_diff(dirs[i], dirs[j]) - 60.0) <= tol_deg
                                  for i in range(3) for j in range(i + 1, 3))


def _retrace_tri(found: list, trace: Any, rho_at: Any, strength: np.ndarray, r_in: float,
                 t_max: float) -> list | None:
    """Trace all nine spikes of a Tri-Bahtinov where the mask's symmetry puts them.

    The first pass finds spikes as separate peaks of the angle scan and follows each from
    where the three *strongest* (the middles, 60 deg apart) stand apart. Both fail for a
    Tri-Bahtinov: outer spikes only ``b`` deg from a bright middle merge into its skirt in
    the scan (or come out a few degrees off), some hide in the pixel grid, and spikes ``b``
    deg apart still overlap where the middles are already clear. So the symmetry is used:
    the middles' direction ``phi`` (mod 60 deg) comes from the three strongest lines (or
    from :func:`_group_triplets`), the half-angle ``b`` from the scan (``strength``, made
    on the outer part of the star only) summed over all six outer positions
    ``phi + 60 k +- b`` (after removing each angle's local floor, so a middle's skirt does
    not count; ``b`` 6-30 deg), and every one of the nine predicted
    directions is traced (from the detected line where there is one, else from the best
    1-px bin of the light beyond the start radius projected onto the predicted normal)
    starting where neighbours are ``TRI_T_FACTOR * TRI_HALF_WIDTH`` px apart, with a sloped
    background under each profile (:func:`_refine` ``ramp``).
    Returns ``None`` when the lines fit no Tri-Bahtinov model.
    """
    from scipy import ndimage

    dirs = [_direction_deg(t) for t, _, _ in found]
    if _sixty_apart(dirs[:3]):
        z = np.exp(1j * np.radians(6.0 * np.array(dirs[:3])))
        phi = math.degrees(np.angle(z.sum())) / 6.0 % 60.0
    else:
        grouping = _group_triplets(dirs, [info[0] for _, _, info in found])
        if grouping is None:
            return None
        phi = grouping[1]
    floor = ndimage.minimum_filter1d(strength, int(round(8.0 / SCAN_STEP_DEG)) + 1, mode="wrap")
    top = strength - floor

    def at(direction: float) -> float:
        return float(top[int(round(((direction - 90.0) % 180.0) / SCAN_STEP_DEG)) % len(top)])

    betas = np.arange(6.0, 30.0, SCAN_STEP_DEG)
    score = [sum(at(phi + 60.0 * k + sg * b) for k in range(3) for sg in (-1.0, 1.0)) for b in betas]
    beta = float(betas[int(np.argmax(score))])
    sep = min(beta, 60.0 - 2.0 * beta)
    t_lo = min(max(r_in, TRI_T_FACTOR * TRI_HALF_WIDTH / math.sin(math.radians(sep))), max(r_in, TRI_T_CAP * t_max))
    cands = []
    for k in range(3):
        for dv in (0.0, -beta, beta):
            d = (phi + 60.0 * k + dv) % 180.0
            near = [i for i, dd in enumerate(dirs) if _ang_diff(dd, d) <= 1.0]
            if near:
                t, r, info = found[near[0]]
                cands.append((t, r, info[0]))
                continue
            a = (d - 90.0) % 180.0
            cands.append((a, rho_at(a, t_lo), at(d)))
    out = trace(cands, t_lo, TRI_HALF_WIDTH, TRI_RAMP)
    return out if len(out) >= 6 else None


def _measure_tri(refined: list[tuple[float, float]], line_info: list[LineInfo],
                 sx: int, sy: int, rig: Rig, px_per_um: float | None, cfz: float | None, sign: float,
                 reverse: bool, notes: list[str], file: str | None) -> BahtinovResult:
    """Tri-Bahtinov: group the spikes by the mask's symmetry, measure each sub-mask, combine.

    Each sub-mask's offset is counted along its own normal; the three normals are 120 deg
    apart (``phi0``, ``phi0 + 120``, ``phi0 + 240`` with ``phi0`` in [-30, 30) deg), so they
    turn with the mask and the three signs agree (the canonical normal of a plain Bahtinov,
    chosen per line, would flip one of them). The combined focus error is the mean of the
    three; their spread (max - min) is the collimation/tilt hint.
    """
    dirs = [_direction_deg(t) for t, _ in refined]
    grouping = _group_triplets(dirs, [info[0] for info in line_info])
    if grouping is None:
        notes.append(f"{len(refined)} spikes do not fit the 3-fold symmetry of a Tri-Bahtinov mask (grating angle "
                     "3-30°); focus error not measured")
        return BahtinovResult(pattern="tri-bahtinov", star_x_px=float(sx), star_y_px=float(sy),
                              lines=_spike_lines(refined, line_info, ["spike"] * len(refined)), cfz_um=cfz,
                              reversed=reverse, verdict="Tri-Bahtinov pattern detected; focus error not measured",
                              notes=tuple(notes), file=file)
    groups, phi, beta, ambiguous = grouping
    # the sign set: middle normals phi0 + 120 k, phi0 in [-30, 30)
    phi0 = (phi - 90.0 + 30.0) % 60.0 - 30.0
    roles: list[str] = ["spike"] * len(refined)
    trip: list[int | None] = [None] * len(refined)
    measured = []
    for g in groups:
        im, ia, ib = g
        if im is None:
            continue
        t_mid = refined[im][0]
        k = max(range(3), key=lambda kk: abs(math.cos(math.radians(t_mid - (phi0 + 120.0 * kk)))))
        normal = phi0 + 120.0 * k
        for idx, role in ((im, "middle"), (ia, "outer"), (ib, "outer")):
            if idx is not None and trip[idx] is None:
                roles[idx], trip[idx] = role, k
        if ia is None or ib is None or ia == ib:
            continue
        off, cxp, cyp, half = _offset(refined, im, ia, ib, normal_deg=normal)
        off_err = _quadrature([line_info[i][3] for i in (im, ia, ib)])
        measured.append((k, normal % 360.0, dirs[im], half, sx + cxp, sy + cyp, off, off_err))
    measured.sort(key=lambda m: m[0])
    if len({m[0] for m in measured}) < len(measured):
        measured = []  # two middles claimed the same sub-mask: the grouping is wrong
    if ambiguous:
        why = ("the nine spikes are evenly spaced" if abs(beta - 20.0) < 3.0
               else "some spikes are missing and the rest fit two groupings")
        notes.append(f"grating angle ~{beta:.0f}°: {why}, so the middle spikes were told apart by brightness")
    if any(t is None for t in trip):
        notes.append(f"{sum(t is None for t in trip)} spike(s) outside the Tri-Bahtinov pattern ignored")
    lines = tuple(sorted(_spike_lines(refined, line_info, roles, trip),
                         key=lambda ln: (3 if ln.triplet is None else ln.triplet, ln.role != "middle", ln.angle_deg)))
    if not measured:
        notes.append("no complete triplet of spikes (middle + two outer) could be measured")
        return BahtinovResult(pattern="tri-bahtinov", star_x_px=float(sx), star_y_px=float(sy), lines=lines,
                              cfz_um=cfz, reversed=reverse,
                              verdict="Tri-Bahtinov pattern detected; focus error not measured",
                              notes=tuple(notes), file=file)
    half_mean = float(np.mean([m[3] for m in measured]))
    k_conv, src = px_per_um, ("given" if px_per_um else None)
    if k_conv is None:
        k_conv = tri_px_per_um(rig, half_mean)
        src = "tri-bahtinov-geometric" if k_conv else None
        if k_conv and not rig.obstruction:
            notes.append("the conversion assumes an unobstructed aperture; give the central obstruction "
                         "(--obstruction, e.g. 0.33) for a reflector or SCT (it changes the result by a few %)")
    triplets = []
    for k, normal, mdir, half, cx, cy, off, off_err in measured:
        e = sign * off / k_conv if k_conv else None
        ee = off_err / k_conv if (k_conv and off_err is not None) else None
        triplets.append(Triplet(index=k, middle_angle_deg=mdir, normal_deg=normal, outer_half_angle_deg=half,
                                crossing_x_px=cx, crossing_y_px=cy, offset_px=off, offset_err_px=off_err,
                                focus_error_um=e, focus_error_err_um=ee,
                                focus_error_cfz=e / cfz if (e is not None and cfz) else None))
    n_t = len(measured)
    off_mean = float(np.mean([m[6] for m in measured]))
    off_sum_err = _quadrature([m[7] for m in measured])
    off_mean_err = off_sum_err / n_t if off_sum_err is not None else None
    if n_t < 3:
        notes.append(f"only {n_t} of the 3 sub-masks measured: the focus error is their mean, no collimation check")
    spread = spread_err = spread_cfz = None
    ok, hint = None, None
    if n_t == 3 and k_conv:
        errs_um = [t.focus_error_um for t in triplets]
        hi, lo = int(np.argmax(errs_um)), int(np.argmin(errs_um))
        spread = float(errs_um[hi] - errs_um[lo])
        eh, el = triplets[hi].focus_error_err_um, triplets[lo].focus_error_err_um
        spread_err = math.hypot(eh, el) if (eh is not None and el is not None) else None
        spread_cfz = spread / cfz if cfz else None
        mean_um = float(np.mean(errs_um))
        far = max(range(3), key=lambda i: abs(errs_um[i] - mean_um))
        dev = errs_um[far] - mean_um
        where = "beyond" if dev > 0 else "in front of"
        limit = cfz * TRI_SPREAD_CFZ if cfz else None
        if limit is not None:
            ok = spread <= limit or (spread_err is not None and spread <= 3.0 * spread_err)
        if ok:
            hint = f"the three sub-masks agree within {spread:.0f} µm"
            hint += f" ({spread_cfz:.2f} CFZ): collimation looks fine" if spread_cfz is not None else ""
        else:
            hint = (f"the three sub-masks disagree by {spread:.0f} µm"
                    + (f" ({spread_cfz:.1f} CFZ)" if spread_cfz is not None else "")
                    + f"; the one with its middle spike at {triplets[far].middle_angle_deg:.0f}° focuses "
                      f"{abs(dev):.0f} µm {where} the mean: collimation or tilt (cover one sector of the mask "
                      "to see which screw it belongs to)")
    first = triplets[0]
    res = _finish("tri-bahtinov", sx, sy, lines, None, half_mean, None, None, off_mean, off_mean_err, k_conv, src,
                  rig, cfz, sign, reverse, notes, file)
    return replace(res, middle_angle_deg=first.middle_angle_deg, triplets=tuple(triplets), focus_spread_um=spread,
                   focus_spread_err_um=spread_err, focus_spread_cfz=spread_cfz, collimation_ok=ok,
                   collimation_hint=hint)
