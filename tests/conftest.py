"""Shared fixtures: real external programs (Siril, Chromium) and small simulated sessions.

``siril_cli`` yields the real siril-cli (``focuswatch.siril.SirilInfo``); without it the test
is skipped, unless ``FOCUSWATCH_REQUIRE_SIRIL=1`` (CI), which turns the skip into a failure.
``chromium`` does the same for headless Chromium (``FOCUSWATCH_REQUIRE_CHROMIUM=1``).
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest


def _required(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def siril_cli():
    """The real siril-cli, or skip (fail with FOCUSWATCH_REQUIRE_SIRIL=1)."""
    from focuswatch.errors import SirilError
    from focuswatch.siril import find_siril

    try:
        return find_siril()
    except SirilError as exc:
        if _required("FOCUSWATCH_REQUIRE_SIRIL"):
            pytest.fail(f"FOCUSWATCH_REQUIRE_SIRIL=1 but Siril is not usable: {exc}")
        pytest.skip(f"siril-cli not available: {exc}")


@pytest.fixture(scope="session")
def chromium():
    """Path of a headless-capable Chromium, or skip (fail with FOCUSWATCH_REQUIRE_CHROMIUM=1)."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    if _required("FOCUSWATCH_REQUIRE_CHROMIUM"):
        pytest.fail("FOCUSWATCH_REQUIRE_CHROMIUM=1 but no chromium on PATH")
    pytest.skip("chromium not available")


def write_sim_session(folder: Path, defocus_um: Sequence[float], *, size_px: int = 512, n_stars: int = 150,
                      seed: int = 3, seeing_arcsec: float = 2.5, filter_name: str = "L",
                      start: str = "2026-11-21T21:00:00", interval_s: float = 130.0, dither_px: float = 4.0,
                      first_nr: int = 1, tweak: Callable | None = None) -> list[dict]:
    """Render one simulated sub per entry of ``defocus_um`` into ``folder`` (NINA-style FITS).

    Same star field in every sub (``seed``), small random dithers so registration has work
    to do, time advancing by ``interval_s`` and temperature falling 0.8 °C per hour.
    Returns the truths (with ``"file"``).
    """
    from focuswatch import sim

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1000)
    t0 = datetime.fromisoformat(start)
    truths = []
    for i, d in enumerate(defocus_um):
        p = sim.SimParams(width_px=size_px, height_px=size_px, n_stars=n_stars, seed=seed,
                          seeing_fwhm_arcsec=seeing_arcsec, defocus_um=float(d), filter_name=filter_name,
                          frame_nr=first_nr + i, temp_c=10.0 - 0.8 * i * interval_s / 3600.0,
                          focuser_pos=10000, exposure_s=120.0,
                          date_obs=(t0 + timedelta(seconds=i * interval_s)).isoformat(timespec="milliseconds"),
                          dither_x_px=float(rng.uniform(-dither_px, dither_px)),
                          dither_y_px=float(rng.uniform(-dither_px, dither_px)))
        if tweak is not None:
            p = tweak(i, p)
        frame = sim.render(p)
        path = folder / f"{filter_name}_{first_nr + i:04d}.fits"
        sim.write_fits(path, frame)
        truths.append({**frame.truth, "file": str(path)})
    return truths


@pytest.fixture(scope="session")
def focused_session(tmp_path_factory):
    """8 in-focus 512x512 subs (seeing 2.5", 0.776"/px): ``(folder, truths)``."""
    folder = tmp_path_factory.mktemp("focused") / "session"
    truths = write_sim_session(folder, [0.0] * 8)
    return folder, truths


@pytest.fixture(scope="session")
def drifting_session(tmp_path_factory):
    """8 subs whose focus drifts away (0 to 210 um, no refocus): ``(folder, truths)``."""
    folder = tmp_path_factory.mktemp("drifting") / "session"
    truths = write_sim_session(folder, [0.0, 0.0, 30.0, 60.0, 120.0, 150.0, 180.0, 210.0], seed=4)
    return folder, truths


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Name -> (size, mtime_ns) of every file under ``folder``: proof nothing was touched."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}
