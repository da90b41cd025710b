"""Physical-optics frames shared by the diagnosis, grade and optics tests (cached per session).

Rendered with :mod:`focuswatch.sim.physical` (checked against GalSim in test_physoptics.py),
never with the simulator the thresholds were first tuned on.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from focuswatch import optics, stars
from focuswatch.sim import physical as po
from focuswatch.io.frames import frame_from_array
from focuswatch.optics import Rig

#: An 80 mm f/6 refractor: the small, slow rig where the profile shape cannot tell 1 CFZ from seeing.
REFRACTOR_80 = po.Optics(aperture_mm=80.0, focal_length_mm=480.0, pixel_um=2.4)
NEWTONIAN = po.Optics(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, obstruction=0.33, n_vanes=4,
                      vane_width=0.01)


def rig_of(o: po.Optics) -> Rig:
    return Rig(aperture_mm=o.aperture_mm, focal_length_mm=o.focal_length_mm, pixel_um=o.pixel_um,
               obstruction=o.obstruction)


@lru_cache(maxsize=None)
def measured(spec: po.FrameSpec) -> tuple[Any, Any]:
    """``(frame, stats)`` of a rendered spec (cached: the specs are frozen and hashable)."""
    fr = po.render_frame(spec)
    frame = frame_from_array(fr.pixels, po.frame_header(spec))
    return frame, stars.measure(frame)


def seeing_frame(seeing_arcsec: float, *, kind: str = "kolmogorov", defocus_um: float = 0.0, seed: int = 1,
                 optics: po.Optics = NEWTONIAN, size_px: int = 320, n_stars: int = 40) -> po.FrameSpec:
    return po.FrameSpec(optics=optics, seeing=po.Seeing(seeing_arcsec, kind=kind),
                        aberrations=po.FieldAberrations(defocus_um=defocus_um), width_px=size_px, height_px=size_px,
                        n_stars=n_stars, seed=seed)


@lru_cache(maxsize=None)
def night_frame(o: po.Optics, seeing_arcsec: float, cfz: float, index: int, seed: int, *,
                 focpos: int = 1000, filter_name: str = "L", cadence_s: float = 300.0):
    """One frame of a physical-optics night (256 px, 30 stars), dated DATE-OBS = index x cadence
    after 2026-11-21T22:00 and at focuser position ``focpos`` (cached: nights share frames)."""
    spec, header = night_spec(o, seeing_arcsec, cfz, index, seed, focpos=focpos, filter_name=filter_name,
                              cadence_s=cadence_s)
    frame = frame_from_array(po.render_frame(spec).pixels, header)
    return frame, stars.measure(frame)


def night_spec(o: po.Optics, seeing_arcsec: float, cfz: float, index: int, seed: int, *,
               focpos: int = 1000, filter_name: str = "L", cadence_s: float = 300.0) -> tuple[po.FrameSpec, dict]:
    """The spec and FITS header of :func:`night_frame`'s frame (for tests that write it to a file)."""
    import datetime as dt

    spec = po.FrameSpec(optics=o, seeing=po.Seeing(float(seeing_arcsec)),
                        aberrations=po.FieldAberrations(defocus_um=cfz * optics.cfz_um(o.f_ratio)),
                        width_px=256, height_px=256, n_stars=30, seed=seed * 1000 + index)
    when = dt.datetime(2026, 11, 21, 22, 0, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=index * cadence_s)
    header = {**po.frame_header(spec, filter_name=filter_name), "DATE-OBS": when.strftime("%Y-%m-%dT%H:%M:%S"),
              "FOCPOS": focpos}
    return spec, header


def dew_halo(pixels: Any, frac: float, width_px: float) -> Any:
    """``pixels`` (a frame) with a dew halo: a share ``frac`` of the light above the sky (the
    median) spread by the kernel ``(1 + r^2 / w^2)^(-3/2)`` of width ``w = width_px``, the rest
    left in place (dew on the optics scatters a fixed share of every star's light into a broad,
    slowly falling skirt). Float result; the frame's noise is convolved along with its light."""
    import numpy as np
    from scipy import signal

    n = int(6 * width_px) | 1
    c = np.arange(n) - n // 2
    kern = 1.0 / (1.0 + np.add.outer(c * c, c * c) / width_px ** 2) ** 1.5
    kern /= kern.sum()
    p = np.asarray(pixels, float)
    sky = float(np.median(p))
    above = p - sky
    return (1.0 - frac) * above + frac * signal.fftconvolve(above, kern, mode="same") + sky


def assert_config_error_is_one_line(tmp_path: Path, text: str, key: str,
                                    says: tuple[str, ...] = ("expected", "unknown setting")) -> None:
    """Loading the config ``text`` fails with one line naming the file, the section and ``key``
    and one of ``says`` (what was expected, or that the setting is unknown): the user fixes one line."""
    from focuswatch.config import load_config
    from focuswatch.errors import ConfigError

    p = tmp_path / "fw.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    section = text.split("]")[0] + "]"
    assert "\n" not in msg
    assert str(p) in msg and section in msg and key in msg
    assert any(word in msg for word in says)
