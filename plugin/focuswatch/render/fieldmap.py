"""Field map: the zone HFR heat map with eccentricity/orientation whiskers (``diagnose --plot``).

Like ASTAP's and PixInsight's inspectors: a 3x3 heat map of the median half-flux radius
per zone, with each star drawn as a whisker whose length is its eccentricity and whose
direction is its major axis, so tilt (a gradient), curvature (corners), coma (radial
whiskers) and trailing (parallel whiskers) can be seen at a glance. This module only
draws; :mod:`focuswatch.diagnose` decides.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from focuswatch.render.charts import save_png
from focuswatch.io.frames import refuse_frame_target


def plot_field_map(stats: Any, diagnosis: Any, path: str | Path, *, max_whiskers: int = 400) -> Path:
    """Draw the field map of one frame into a PNG at ``path`` and return the path.

    Parameters
    ----------
    stats : focuswatch.stars.FrameStats
        The measurement (per-star table for the whiskers; zones for the heat map).
    diagnosis : focuswatch.diagnose.Diagnosis
        Its verdict; the title shows the label, confidence, defocus and tilt/curvature.
    path : str or Path
        Where to write the PNG (never next to the user's frames unless they ask for it).
    max_whiskers : int
        The brightest stars drawn as whiskers (more only clutters the picture).

    Raises
    ------
    ConfigError
        When ``path`` is named like a frame (``.fits``, ``.xisf``...): a slip such as
        ``--plot light.fits`` must never overwrite a user's frame with a PNG.
    """
    refuse_frame_target(path, "field map")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = int(stats.width_px or 1)
    h = int(stats.height_px or 1)
    ev = diagnosis.evidence
    grid = np.array([[np.nan if v is None else v for v in row] for row in ev.zone_hfr_px], float) \
        if ev.zone_hfr_px else np.full((3, 3), np.nan)

    fig, ax = plt.subplots(figsize=(7.0, 7.0 * h / w + 0.9), dpi=110)
    try:
        finite = grid[np.isfinite(grid)]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if vmax <= vmin:
            vmax = vmin + 1e-3
        im = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                       interpolation="nearest", alpha=0.85)
        for r in range(3):
            for c in range(3):
                v = grid[r, c]
                n = ev.zone_n_stars[r][c] if ev.zone_n_stars else 0
                txt = "—" if not np.isfinite(v) else f"{v:.2f} px\n{n} stars"
                ax.text((c + 0.5) * w / 3, (r + 0.5) * h / 3, txt, ha="center", va="center", fontsize=9,
                        color="white", bbox={"facecolor": "black", "alpha": 0.35, "linewidth": 0})
        tab = getattr(stats, "stars", None)
        if tab is not None and len(tab):
            t = tab[np.argsort(-tab["snr"])][:max_whiskers]
            ecc = np.nan_to_num(t["ecc"], nan=0.0)
            scale = 0.06 * min(w, h)  # an eccentricity of 1 spans 6 % of the frame
            dx = 0.5 * ecc * scale * np.cos(t["theta"])
            dy = 0.5 * ecc * scale * np.sin(t["theta"])
            segs = np.stack([np.column_stack([t["x"] - dx, t["y"] - dy]),
                             np.column_stack([t["x"] + dx, t["y"] + dy])], axis=1)
            from matplotlib.collections import LineCollection

            ax.add_collection(LineCollection(segs, colors="white", linewidths=1.2, alpha=0.9))
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cb.set_label("median HFR per zone (px)")

        def f(v: Any, spec: str) -> str:
            return "n/a" if v is None else format(v, spec)

        name = Path(stats.file).name if getattr(stats, "file", None) else "frame"
        ax.set_title(
            f"{name}\n{diagnosis.label} ({f(diagnosis.confidence, '.2f')}), defocus {f(diagnosis.defocus_um, '.0f')} um"
            f" = {f(diagnosis.defocus_cfz, '.2f')} CFZ\ntilt {f(ev.tilt_pct, '.0f')} %, curvature "
            f"{f(ev.curvature_pct, '.0f')} %, radial score {f(ev.radial_score, '.2f')}, "
            f"alignment {f(ev.alignment, '.2f')}", fontsize=9)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return save_png(fig, path, "field map")
