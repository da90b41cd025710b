"""Cost of the donut ring-ratio fit (:mod:`focuswatch.ringfit`); prints figures, not a test.

    PYTHONPATH=plugin python benchmarks/bench_ringfit.py [--repeat 3]

For physical-optics donuts (:mod:`focuswatch.physoptics`; 200 mm f/5, obstruction 0.33,
700 um of defocus, 2.5" seeing) it prints the seconds per donut of the fit with the rig
known and with lambda N fitted too, for batches of 1, 12 and 48 donuts (a frame fits at most
``RingFitConfig.max_fit_stars``), and ``stars.measure`` on a frame of donuts with and
without the fit.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from focuswatch import physoptics as po, ringfit, stars
from focuswatch.frames import frame_from_array


def _best(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    o = po.Optics(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, obstruction=0.33, n_vanes=4)
    img, _ = po.star_image(o, po.Aberrations(defocus_um=700.0), po.Seeing(2.5))
    c, R = img.shape[0] // 2, 40
    stamp = img[c - R:c + R + 1, c - R:c + R + 1] * 1e6
    ax = np.arange(-R, R + 1)
    rr = np.hypot(ax[None, :], ax[:, None])
    d_px = 0.55 * o.f_ratio / o.pixel_um
    rng = np.random.default_rng(1)
    ringfit.fit_rings(*ringfit.radial_profile(stamp[None], rr[None], R + 1), [17.0], [0.3], [3.0],
                      diffraction_px=d_px)  # warm (imports, caches)
    for n in (1, 12, 48):
        st = stamp[None] + rng.normal(0, 20.0, (n,) + stamp.shape)
        prof, rbar = ringfit.radial_profile(st, np.broadcast_to(rr, st.shape), R + 1)
        args = (prof, rbar, np.full(n, 17.0), np.full(n, 0.3), np.full(n, 3.0))
        t_known = _best(lambda: ringfit.fit_rings(*args, diffraction_px=d_px), a.repeat)
        t_free = _best(lambda: ringfit.fit_rings(*args, diffraction_px=0.8, fit_diffraction=True), a.repeat)
        print(f"{n:3d} donuts: {1e3 * t_known / n:6.1f} ms/donut (rig known), {1e3 * t_free / n:6.1f} ms/donut "
              f"(lambda N fitted)")
    spec = po.FrameSpec(optics=o, seeing=po.Seeing(2.5), aberrations=po.FieldAberrations(defocus_um=700.0),
                        width_px=1200, height_px=1200, n_stars=60, seed=3, flux_range_e=(3e5, 2e6),
                        min_separation_px=80.0, margin_px=26)
    frame = frame_from_array(po.render_frame(spec).pixels, po.frame_header(spec))
    t_with = _best(lambda: stars.measure(frame), a.repeat)
    st = stars.measure(frame)
    orig = ringfit.refine_ring_ratio
    ringfit.refine_ring_ratio = lambda prof, rbar, ring0, *_a, **_k: (np.asarray(ring0, float), np.zeros(len(ring0), bool))
    try:
        t_without = _best(lambda: stars.measure(frame), a.repeat)
    finally:
        ringfit.refine_ring_ratio = orig
    print(f"measure, 1200x1200 frame, {st.n_stars} donuts measured: {t_with:.2f} s with the fit, "
          f"{t_without:.2f} s without (ring_ratio {st.ring_ratio})")


if __name__ == "__main__":
    main()
