"""Pictures for ``focuswatch af --plot`` and ``focuswatch bahtinov --plot``.

Rendering only: results come in (:class:`~focuswatch.autofocus.AFSummary`,
:class:`~focuswatch.bahtinov.BahtinovResult`), a PNG goes out. matplotlib runs on the
"Agg" backend so no display is needed.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from focuswatch.render.charts import save_png

if TYPE_CHECKING:  # pragma: no cover
    from focuswatch.autofocus import AFSummary
    from focuswatch.bahtinov import BahtinovResult

MAX_PANELS = 12


def plot_af(summary: "AFSummary", path: str | Path) -> Path:
    """V-curves (points, refit, rejected points, the critical focus zone as a band around best
    focus) and, with runs at several temperatures, best focus against temperature per filter."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from focuswatch.autofocus.trends import _filter_key, _usable

    runs = [r for r in summary.runs if r.n_points][:MAX_PANELS]
    temp_runs, _ = _usable(summary.runs)  # the runs (and filter names) the coefficients were fitted to
    with_temp = len(temp_runs) >= 2
    n = len(runs) + (1 if with_temp else 0)
    n = max(n, 1)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax, r in zip(flat, runs):
        x = np.array([p.position_steps for p in r.run.points], float)
        y = np.array([p.hfr_px for p in r.run.points], float)
        ok = np.isfinite(y)
        colour = {"good": "tab:green", "marginal": "tab:orange", "bad": "tab:red"}[r.verdict]
        ax.plot(x[ok], y[ok], "o", color="k", ms=4, label="measured")
        if r.fit is not None:
            f = r.fit
            rej = np.array(f.rejected_positions_steps, float)
            if len(rej):
                m = np.isin(x, rej) & ok
                ax.plot(x[m], y[m], "x", color="tab:red", ms=8, mew=2, label="rejected")
            lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
            pad = 0.1 * (hi - lo)
            xs = np.linspace(lo - pad, hi + pad, 300)
            ax.plot(xs, f.hfr_at(xs), "-", color=colour, label=f"fit, R² {f.r_squared:.3f}")
            ax.axvline(f.best_position_steps, color=colour, lw=0.8, ls="--")
            if r.cfz_um and r.step_um and r.step_steps:
                half = r.cfz_um / 2 / (r.step_um / r.step_steps)
                ax.axvspan(f.best_position_steps - half, f.best_position_steps + half, color=colour, alpha=0.15,
                           label="critical focus zone")
        hk = "NINA HFR" if r.run.hfr_kind == "nina" else "HFR"
        ax.set_xlabel("focuser position (steps)")
        ax.set_ylabel(f"{hk} (px)")
        name = Path(r.run.source).name if r.run.source else "run"
        ax.set_title(f"{name[:28]}\n{r.run.filter_name or ''} {r.verdict}", fontsize=8)
        ax.legend(fontsize=7)
    if with_temp:
        ax = flat[len(runs)]
        by: dict[str, list] = {}
        for r in temp_runs:
            by.setdefault(_filter_key(r.run.filter_name), []).append(r)
        coefs = {c.filter_name: c for c in summary.coefficients}
        for i, (name, rs) in enumerate(sorted(by.items())):
            t = np.array([r.run.temp_c for r in rs], float)
            p = np.array([r.best_position_steps for r in rs], float)
            line = ax.plot(t, p, "o", label=name)[0]
            c = coefs.get(name)
            if c is not None and c.slope_steps_per_c is not None:
                tt = np.linspace(t.min(), t.max(), 2)
                ax.plot(tt, c.position_at_0c_steps + c.slope_steps_per_c * tt, "-", color=line.get_color(),
                        label=f"{name}: {c.slope_steps_per_c:+.1f} steps/°C")
        ax.set_xlabel("temperature (°C)")
        ax.set_ylabel("best focus (steps)")
        ax.set_title("best focus vs temperature", fontsize=8)
        ax.legend(fontsize=7)
    for ax in flat[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    out = save_png(fig, path, "--plot", dpi=90)
    return out


def plot_bahtinov(image: np.ndarray, result: "BahtinovResult", path: str | Path, half_size_px: int = 120) -> Path:
    """The star (square-root stretch) with the fitted spike lines and the outer spikes' crossing."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = np.asarray(image, dtype=float)
    sx, sy = int(result.star_x_px), int(result.star_y_px)
    h = int(min(half_size_px, sx, sy, img.shape[1] - 1 - sx, img.shape[0] - 1 - sy))
    box = img[sy - h:sy + h + 1, sx - h:sx + h + 1]
    bg = float(np.median(img))
    fig, ax = plt.subplots(figsize=(6.4, 6.4))
    ext = (sx - h - 0.5, sx + h + 0.5, sy - h - 0.5, sy + h + 0.5)
    ax.imshow(np.sqrt(np.clip(box - bg, 0, None)), origin="lower", cmap="gray", extent=ext)
    colours = {"middle": "tab:red", "outer": "tab:cyan"}
    t = np.array([-h, h], float)
    for ln in result.lines:
        th = math.radians(ln.normal_deg)
        nx, ny = math.cos(th), math.sin(th)
        px = sx + ln.rho_px * nx - t * ny
        py = sy + ln.rho_px * ny + t * nx
        ax.plot(px, py, "-", lw=0.8, color=colours.get(ln.role, "tab:orange"),
                label=f"{ln.role} {ln.angle_deg:.1f}°")
    if result.crossing_x_px is not None:
        ax.plot([result.crossing_x_px], [result.crossing_y_px], "+", color="yellow", ms=14, mew=1.5,
                label="outer crossing")
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax.set_title(result.verdict, fontsize=8, wrap=True)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out = save_png(fig, path, "--plot", dpi=90)
    return out
