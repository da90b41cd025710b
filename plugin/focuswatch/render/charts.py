"""Small matplotlib charts for the calculator, and the one PNG writer every plot uses.

I/O: writes PNGs, and never over a frame (:func:`save_png`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from focuswatch.io.frames import refuse_frame_target
from focuswatch.optics import Rig, airy_diameter_um, cfz_um


def save_png(fig, path: str | Path, what: str, dpi: int | None = None) -> Path:
    """Write ``fig`` as a PNG at ``path`` and close it; refuse a path that is a frame.

    Every plot goes through here so a slip such as ``--plot light.fits`` can never replace
    a user's frame with a picture (:func:`focuswatch.io.frames.refuse_frame_target`).
    """
    import matplotlib.pyplot as plt

    try:
        refuse_frame_target(path, what)
        out = Path(path)
        fig.savefig(out, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return out


def focus_zone_chart(rig: Rig, path: str | Path) -> Path:
    """Draw the zone width and the Airy diameter in pixels against wavelength (400-700 nm).

    Why: the zone grows with wavelength, so a rig that is forgiving in Ha can be tight in
    blue; the chart shows it at a glance, with the common filter lines marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refuse_frame_target(path, "--chart")
    n = rig.f_ratio
    pix = rig.effective_pixel_um
    if n is None or pix is None:
        raise ValueError("the chart needs the focal ratio and the pixel size")
    wl = np.linspace(400.0, 700.0, 121)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(wl, [cfz_um(n, w) / pix for w in wl], label="critical focus zone (total width)")
    ax.plot(wl, [airy_diameter_um(n, w) / pix for w in wl], label="Airy disk diameter")
    for name, w in (("OIII", 500.7), ("Ha", 656.3), ("SII", 672.4)):
        ax.axvline(w, color="0.8", lw=0.8, zorder=0)
        ax.text(w, ax.get_ylim()[1] * 0.97, name, ha="center", va="top", fontsize=8, color="0.4")
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel("pixels")
    ax.set_title(f"f/{n:.2f}, {pix:.2f} µm pixels")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return save_png(fig, path, "--chart")
