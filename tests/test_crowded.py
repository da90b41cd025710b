"""Crowded donuts (issue 13 item 2, "rings in a crowded field"): touching and overlapping
defocused stars are found once each and measured from the part of their ring no neighbour
reaches (:mod:`focuswatch.stars.crowded`).

Truth: physical-optics renders (:mod:`focuswatch.sim.physical`, checked against GalSim in
test_physoptics.py): the true star positions, and the true half-light radius from the
rendered PSF itself, never from our measurement.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from focuswatch import stars
from focuswatch.sim import physical as po

from functools import lru_cache

from focuswatch.io.frames import frame_from_array

F5 = po.Optics(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, obstruction=0.45, n_vanes=4,
               vane_width=0.01)
F5_3 = F5.with_(obstruction=0.33, n_vanes=3)


def _true_hlr_px(spec: po.FrameSpec) -> float:
    img, _ = po.star_image(spec.optics, po.Aberrations(defocus_um=spec.aberrations.defocus_um), spec.seeing)
    return po.encircled_radius(img, 1.0, 0.5)


def _crowded(o: po.Optics, defocus_um: float, seeing: float, *, n: int, size: int, sep_share: float,
             flux: tuple[float, float], seed: int) -> po.FrameSpec:
    blur_px = defocus_um / o.f_ratio / o.pixel_um
    return po.FrameSpec(optics=o, seeing=po.Seeing(seeing), aberrations=po.FieldAberrations(defocus_um=defocus_um),
                        width_px=size, height_px=size, n_stars=n, seed=seed, flux_range_e=flux,
                        min_separation_px=sep_share * blur_px, margin_px=int(blur_px / 2) + 6)


@lru_cache(maxsize=None)
def measured(spec: po.FrameSpec):
    """(rendered frame, stats), rendered and measured once per spec."""
    fr = po.render_frame(spec)
    return fr, stars.measure(frame_from_array(fr.pixels, po.frame_header(spec)))


def _match(fr, st) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth xy, distance of each measured star to its nearest true donut, which donut)."""
    truth = fr.truth["stars"]
    xy = np.array([[s["x"], s["y"]] for s in truth])
    d = np.hypot(st.stars["x"][:, None] - xy[None, :, 0], st.stars["y"][:, None] - xy[None, :, 1])
    return xy, d.min(axis=1), d.argmin(axis=1)


# 53 px donuts, each a 52 px from its nearest neighbour or more (random packing): most touch
# or overlap a neighbour (before: 41 detections for 300 donuts, 6 measured, on the 1200 px frame)
TOUCHING = [(F5, 2), (F5_3, 3)]


@pytest.mark.parametrize("optics, seed", TOUCHING)
def test_touching_donuts_are_found_once_and_most_are_measured(optics, seed):
    spec = _crowded(optics, 1000.0, 2.5, n=80, size=600, sep_share=52.0 / 53.2, flux=(3e5, 2e6), seed=seed)
    fr, st = measured(spec)
    xy, dist, who = _match(fr, st)
    n = len(xy)
    assert n >= 70
    assert abs(st.n_detected - n) <= 2  # one detection per donut: not merged, not split into arcs
    assert np.all(dist < 4.0)  # every measured star sits on a true donut (0.15 rim radii) ...
    assert len(np.unique(who)) == len(who)  # ... and no donut is measured twice
    assert st.n_stars >= 0.85 * n
    assert st.n_masked >= 10  # touching donuts measured from their clean sectors
    assert st.n_masked == int(np.count_nonzero(st.stars["masked"]))
    truth = _true_hlr_px(spec)
    assert st.hfr_px == pytest.approx(truth, rel=0.05)
    assert float(np.median(st.stars["hfr"][st.stars["masked"]])) == pytest.approx(truth, rel=0.05)
    assert np.all(np.isnan(st.stars["ecc"][st.stars["masked"]]))  # no shape from a masked ring


def test_touching_donuts_of_a_read_only_frame_measure_the_same():
    """The finder and the masked measurement only read the frame: a read-only array (a
    memory map, a user's frame) measures to the same bits, and is left as it was."""
    spec = _crowded(F5, 1000.0, 2.5, n=80, size=600, sep_share=52.0 / 53.2, flux=(3e5, 2e6), seed=2)
    fr, st = measured(spec)
    assert st.n_masked >= 10  # the crowded path ran
    ro = np.array(fr.pixels, dtype=np.float32)
    before = ro.copy()
    ro.flags.writeable = False
    st_ro = stars.measure(frame_from_array(ro, po.frame_header(spec)))
    np.testing.assert_array_equal(ro, before)
    assert st_ro.n_masked == st.n_masked
    assert st_ro.stars.tobytes() == st.stars.tobytes()


def test_random_overlapping_donuts_of_varied_brightness():
    """No minimum separation, fluxes over a factor 60: rings overlap by any amount."""
    spec = _crowded(F5.with_(obstruction=0.33), 700.0, 2.0, n=70, size=520, sep_share=0.0, flux=(5e4, 3e6), seed=5)
    fr, st = measured(spec)
    xy, dist, who = _match(fr, st)
    r = 700.0 / F5.f_ratio / F5.pixel_um / 2
    inside = (xy[:, 0] > r + 3) & (xy[:, 0] < 516 - r) & (xy[:, 1] > r + 3) & (xy[:, 1] < 516 - r)
    assert st.n_stars >= 0.55 * np.count_nonzero(inside)
    assert np.count_nonzero(dist < 3.0) >= 0.8 * len(dist)  # rings overlapping by more than a radius pull the centre
    assert st.n_masked >= 5
    assert st.hfr_px == pytest.approx(_true_hlr_px(spec), rel=0.05)


def test_blends_of_focused_stars_are_still_rejected():
    """The masked path is for touching donuts only: close pairs of focused stars stay blended."""
    o = F5.with_(n_vanes=0)
    spec = po.FrameSpec(optics=o, seeing=po.Seeing(2.5), width_px=320, height_px=320, n_stars=40, seed=4,
                        flux_range_e=(2e4, 4e5), min_separation_px=0.0)
    img = po.render_frame(spec).pixels.astype(np.float32)
    st = stars.measure_array(img)
    assert st.n_masked == 0
    assert not np.any(st.stars["masked"])
    assert st.to_dict()["n_masked"] == 0  # the measure --json field


def test_masked_profile_of_a_lone_ring_equals_the_whole_ring():
    """Closed form: masking half of a round star's stamp (a neighbour that is not there)
    leaves its curve of growth unchanged; the centre is found from the clean half."""
    from focuswatch.stars import crowded

    img, _ = po.star_image(F5, po.Aberrations(defocus_um=1000.0), po.Seeing(2.5))
    c = img.shape[0] // 2  # the star's centre pixel; placed at (80, 80)
    frame = np.zeros((160, 160))
    frame[80 - c:80 - c + img.shape[0], 80 - c:80 - c + img.shape[1]] = img * 1e6
    truth = po.encircled_radius(img, 1.0, 0.5)
    rim = 1000.0 / F5.f_ratio / F5.pixel_um / 2
    lone = crowded.masked_profiles(frame, np.array([81.5]), np.array([79.0]), np.zeros(1), rim * 1.05 + 2.0,
                                   [np.zeros(0)], [np.zeros(0)], [np.zeros(0)])
    half = crowded.masked_profiles(frame, np.array([81.5]), np.array([79.0]), np.zeros(1), rim * 1.05 + 2.0,
                                   [np.array([80.0 + 2 * rim])], [np.array([80.0])], [np.array([1.05 * rim + 2.0])])
    assert lone["ok"][0] and half["ok"][0]
    assert half["coverage"][0] < 0.9
    assert half["x"][0] == pytest.approx(80.0, abs=0.3) and half["y"][0] == pytest.approx(80.0, abs=0.3)
    assert half["r50"][0] == pytest.approx(lone["r50"][0], rel=0.01)
    assert lone["r50"][0] == pytest.approx(truth, rel=0.03)


def test_autofocus_on_a_crowded_through_focus_series_counts_the_far_ends(tmp_path, capsys):
    """`focuswatch af` on physical-optics frames of one crowded field, best focus at 10030
    steps by construction (10 um a step), the far ends 69 px and 37 px donuts that touch
    (66 donuts of 69 px in 400 px: each pixel under 1.5 donuts on average). Before: no star
    at 9900 and 9950, 7 stars reading 15.95 px for a true 13.79 at 10100; on the 9-point
    800 px version of this series the run was BAD (best 10022 +- 8, R^2 0.57)."""
    import json

    from astropy.io import fits

    from focuswatch.cli import main

    o = F5.with_(obstruction=0.33)
    x0 = 10030
    truth = {}
    for i, pos in enumerate(range(9900, 10101, 50)):
        d = (pos - x0) * 10.0
        spec = po.FrameSpec(optics=o, seeing=po.Seeing(2.5), aberrations=po.FieldAberrations(defocus_um=d),
                            width_px=400, height_px=400, n_stars=75, seed=20 + i, flux_range_e=(2e5, 2e6),
                            min_separation_px=36.0, margin_px=30)
        fr = po.render_frame(spec)
        h = fits.Header(po.frame_header(spec))
        h["FOCPOS"] = pos
        h["FOCUSSZ"] = 10.0
        h["DATE-OBS"] = f"2026-11-21T23:{10 + i:02d}:03.000"
        fits.PrimaryHDU(fr.pixels, header=h).writeto(tmp_path / f"af_{i:02d}.fits")
        truth[float(pos)] = _true_hlr_px(spec)
    assert main(["af", str(tmp_path), "--json"]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    points = {p["position_steps"]: p for p in run["run"]["points"]}
    assert len(points) == 5
    for pos in (9900.0, 10100.0):  # the far ends: counted, with many stars, at the true size
        assert points[pos]["n_stars"] >= 10
        assert points[pos]["hfr_px"] == pytest.approx(truth[pos], rel=0.05)
    assert abs(run["best_position_steps"] - x0) <= 5  # 50 um: under one critical focus zone (67 um)
