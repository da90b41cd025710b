"""The night report rendered: plain text, and one self-contained HTML file (plots as PNG data URIs).

The numbers come from :mod:`focuswatch.render.night` (scan, grade, journal, :class:`NightReport`);
this module only draws them, so a saved report JSON re-renders without re-measuring. Every
name of the former single ``report`` module is still importable from here.
"""
from __future__ import annotations


import base64
import html
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from focuswatch.io import frames as frames_mod  # noqa: F401 - the old module's names stay importable here
from focuswatch.render.night import (  # noqa: F401
    AUTO,
    Event,
    FilterGrade,
    FilterRow,
    FramePoint,
    JournalNight,
    NightReport,
    SessionGrade,
    _af_text,
    _check_output_dir,
    _journal_events,
    _measure_master,
    _night_diagnosis,
    _open_ro,
    _own_summary,
    _policy_decisions,
    _seeing_core,
    build_report,
    check_output_path,
    find_journal,
    grade_master_file,
    grade_session,
    journal_candidates,
    load_report,
    read_journal_night,
    scan_session,
)
from focuswatch.scale.session import (  # noqa: F401
    MIN_STARS_FOR_STACK,
    LeftOut,
    SessionScan,
    _filter_of,
    find_frames,
)


def render_text(rep: NightReport) -> str:
    """The report for a terminal: one line per filter, the refocus decisions and autofocus runs."""
    lines = [f"{rep.session}: {len(rep.points)} light frames"
             + (f" from {rep.start_utc}" if rep.start_utc else "") + f", {len(rep.left_out)} left out"
             + (f"; decisions from {rep.decisions_source}" + (f" {rep.journal}" if rep.journal else "")
                if rep.decisions_source else "")]
    for r in rep.filters:
        lines.append(f"  filter {r.filter_name}: {r.n_frames} frames, HFR {_f(r.hfr_median_px)} px, "
                     f"FWHM {_f(r.fwhm_median_px)} px, worst defocus {_f(r.defocus_max_um, '.0f')} µm"
                     + (f", grade {r.grade_letter}" if r.grade_letter else ""))
    for ev in rep.events:
        lines.append(f"  {_f(ev.t_h, '5.2f')} h  {ev.kind}: {ev.text}")
    for u in rep.unavailable:
        lines.append(f"  not included: {u}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(rep: NightReport) -> list[tuple[str, str, str]]:
    """(id, title, PNG data URI) of each plot; drawn with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = rep.points
    if not pts:
        return []
    out = []
    filters = sorted({p.filter_name for p in pts})
    colors = {f: c for f, c in zip(filters, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)}
    af = [e for e in rep.events if e.t_h is not None and e.kind.lower().startswith("autofocus")]
    dec = [e for e in rep.events if e.t_h is not None and not e.kind.lower().startswith("autofocus")]

    def marks(ax) -> None:
        for i, e in enumerate(af):
            ax.axvline(e.t_h, color="tab:green", lw=1.0, ls="--", label="autofocus" if i == 0 else None)
        for i, e in enumerate(dec):
            ax.axvline(e.t_h, color="tab:red", lw=0.8, ls=":", label="refocus decision" if i == 0 else None)

    def xlabel(ax) -> None:
        ax.set_xlabel(f"hours since {rep.start_utc}" if rep.start_utc else "frame number")
        ax.grid(alpha=0.3)

    plt.rcParams.update({"font.size": 9})
    # 1. star size
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for f in filters:
        p = [q for q in pts if q.filter_name == f]
        ax.plot([q.t_h for q in p], [q.hfr_px for q in p], "o-", ms=3, color=colors[f], label=f"HFR {f}")
        ax.plot([q.t_h for q in p], [q.fwhm_px for q in p], "s", ms=3, mfc="none", color=colors[f], label=f"FWHM {f}")
    marks(ax)
    ax.set_ylabel("pixels")
    ax.set_title("Star size: half-flux radius (lines) and FWHM (squares)")
    xlabel(ax)
    ax.legend(fontsize=7, ncol=4, loc="upper left")
    fig.tight_layout()
    out.append(("plot-size", "Star size over the night", _png(fig)))
    plt.close(fig)
    # 2. defocus with the zone band
    if any(q.defocus_um is not None for q in pts):
        fig, ax = plt.subplots(figsize=(8, 3.2))
        if rep.cfz_um:
            ax.axhspan(0, rep.cfz_um / 2.0, color="tab:green", alpha=0.15,
                       label=f"within the zone (±{rep.cfz_um / 2:.0f} µm)")
        if rep.limit_um:
            ax.axhline(rep.limit_um, color="tab:orange", lw=1.0, label=f"refocus limit ({rep.limit_um:.0f} µm)")
        for f in filters:
            p = [q for q in pts if q.filter_name == f and q.defocus_um is not None]
            ax.plot([q.t_h for q in p], [q.defocus_um for q in p], "o", ms=3, alpha=0.45, color=colors[f],
                    label=f"{f}: one frame's estimate")
            m = [q for q in pts if q.filter_name == f and q.model_defocus_um is not None]
            if m:
                ax.plot([q.t_h for q in m], [q.model_defocus_um for q in m], "-", lw=1.5, color=colors[f],
                        label=f"{f}: drift model (what the policy uses)")
        marks(ax)
        ax.set_ylabel("defocus (µm)")
        where = "the watcher's journal" if rep.decisions_source == "journal" else "the refocus policy run over the frames"
        ax.set_title(f"Defocus from {where}, against the critical focus zone")
        xlabel(ax)
        ax.legend(fontsize=6.5, loc="upper left", ncol=3)
        fig.tight_layout()
        out.append(("plot-defocus", "Estimated defocus", _png(fig)))
        plt.close(fig)
    # 3. temperature and focuser
    if any(q.temp_c is not None for q in pts):
        fig, ax = plt.subplots(figsize=(8, 2.8))
        ax.plot([q.t_h for q in pts if q.temp_c is not None], [q.temp_c for q in pts if q.temp_c is not None],
                ".-", color="tab:orange", label="temperature")
        ax.set_ylabel("°C")
        marks(ax)
        if any(q.focuser_pos is not None for q in pts):
            ax2 = ax.twinx()
            ax2.plot([q.t_h for q in pts if q.focuser_pos is not None],
                     [q.focuser_pos for q in pts if q.focuser_pos is not None], "s", ms=2, color="tab:gray")
            ax2.set_ylabel("focuser position (steps)")
        ax.set_title("Temperature (orange) and focuser position (grey)")
        xlabel(ax)
        fig.tight_layout()
        out.append(("plot-temperature", "Temperature", _png(fig)))
        plt.close(fig)
    # 4. stars and background: clouds
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.plot([q.t_h for q in pts], [q.n_stars for q in pts], "o-", ms=3, color="tab:blue")
    ax.set_ylabel("stars measured", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot([q.t_h for q in pts if q.background_adu is not None],
             [q.background_adu for q in pts if q.background_adu is not None], ".-", color="tab:purple")
    ax2.set_ylabel("background (ADU)", color="tab:purple")
    marks(ax)
    ax.set_title("Star count and sky background (clouds lower the count and often raise the sky)")
    xlabel(ax)
    fig.tight_layout()
    out.append(("plot-clouds", "Star count and background", _png(fig)))
    plt.close(fig)
    return out


def _f(v: Any, spec: str = ".2f", unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, (int, float)):
        return f"{v:{spec}}{unit}"
    return html.escape(str(v))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222;
background:#fff;line-height:1.4}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:2px;margin-top:1.6em}
.sub{color:#666;margin-top:2px}table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}img{max-width:100%;display:block;margin:6px 0}
.grade{font-size:2.4em;font-weight:bold;display:inline-block;width:1.4em;text-align:center;border-radius:6px;
color:#fff;margin-right:12px;vertical-align:middle}
.gA{background:#2e7d32}.gB{background:#689f38}.gC{background:#f9a825}.gD{background:#ef6c00}.gE{background:#d84315}
.gF{background:#b71c1c}.gN{background:#9e9e9e}.note{color:#8a6d3b;background:#fcf8e3;padding:6px 10px;border-radius:4px}
"""


def _table(cls: str, columns: Sequence[tuple[str, bool]], rows: Iterable[Sequence[str]], *,
           header: bool = True) -> str:
    """An HTML table: ``columns`` are (heading, left-aligned) pairs, ``rows`` hold cells that
    are already HTML (escaped); numbers are right-aligned, text columns left."""
    def cell(tag: str, text: str, left: bool) -> str:
        return f"<{tag} class='l'>{text}</{tag}>" if left else f"<{tag}>{text}</{tag}>"

    out = [f"<table class='{cls}'>"]
    if header:
        out.append("<tr>" + "".join(cell("th", html.escape(h), left) for h, left in columns) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(cell("td", c, left) for c, (_, left) in zip(row, columns)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(rep: NightReport) -> str:
    """The report as one self-contained HTML document (no scripts, no external files)."""
    e = html.escape
    parts: list[str] = []
    title = f"focuswatch night report — {Path(rep.session).name or rep.session}"
    parts.append(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
                 f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{_CSS}</style></head><body>")
    parts.append(f"<h1>{e(title)}</h1><p class='sub'>{e(rep.session)} · {len(rep.points)} light frames"
                 f"{' · start ' + e(rep.start_utc) if rep.start_utc else ''}"
                 f"{' · CFZ ' + format(rep.cfz_um, '.0f') + ' µm' if rep.cfz_um else ''}</p>")
    # grade first: it is the headline
    parts.append("<h2 id='grade'>Master grade</h2>")
    if rep.grade and rep.grade.filters:
        for fg in rep.grade.filters:
            g = fg.grade
            letter = g.letter if g and g.letter else "?"
            cls = f"g{letter}" if letter in "ABCDEF" else "gN"
            parts.append(f"<div class='filtergrade'><p><span class='grade {cls}'>{e(letter)}</span>"
                         f"<b>Filter {e(fg.filter_name)}</b>: {e(g.explanation if g else (fg.problem or 'not graded'))}</p>")
            if g:
                rows = (("master FWHM (focuswatch)", g.master_fwhm_px, g.master_fwhm_arcsec),
                        ("master FWHM (Siril)", g.siril_fwhm_px,
                         g.siril_fwhm_px * g.plate_scale_arcsec_px if (g.siril_fwhm_px and g.plate_scale_arcsec_px)
                         else None),
                        ("limit", g.limit_fwhm_px, g.limit_fwhm_arcsec),
                        (f"seeing ({g.seeing_source or '?'})", g.seeing_fwhm_px, g.seeing_fwhm_arcsec),
                        ("Airy core", g.airy_fwhm_px, None), ("pixel sampling", g.sampling_fwhm_px, None))
                parts.append(_table("gradetable", (("quantity", True), ("px", False), ("arcsec", False)),
                                    ((e(name), _f(px), _f(arc)) for name, px, arc in rows)))
                parts.append(f"<p>ratio {_f(g.ratio)} · roundness {_f(g.roundness)} · {g.n_stars} stars · "
                             f"noise {_f(g.noise_adu, '.1f')} ADU · {fg.n_stacked} of {fg.n_frames} subs stacked</p>")
                if g.reject:
                    parts.append("<p><b>Subs to reject</b>:</p><ul class='reject'>")
                    for v in g.subs:
                        if v.reject:
                            parts.append(f"<li>{e(Path(v.file).name)} — {e(v.cause or '')}: {e(v.detail)}</li>")
                    parts.append("</ul>")
                for a in g.advice:
                    parts.append(f"<p>{e(a)}</p>")
            parts.append("</div>")
    else:
        parts.append("<p class='note'>The master was not graded for this report.</p>")
    parts.append("<h2 id='filters'>Per filter</h2>")
    parts.append(_table("filters", (("filter", True), *((h, False) for h in (
        "frames", "left out", "HFR median px", "FWHM median px", "FWHM best px", "FWHM median ″", "eccentricity",
        "stars", "max defocus µm", "grade"))),
        ((e(r.filter_name), str(r.n_frames), str(r.n_left_out), _f(r.hfr_median_px), _f(r.fwhm_median_px),
          _f(r.fwhm_best_px), _f(r.fwhm_median_arcsec), _f(r.eccentricity_median), _f(r.n_stars_median, ".0f"),
          _f(r.defocus_max_um, ".0f"), e(r.grade_letter or "—")) for r in rep.filters)))
    parts.append("<h2 id='plots'>The night</h2>")
    for pid, ptitle, uri in _plots(rep):
        parts.append(f"<figure id='{pid}'><img class='plot' alt='{e(ptitle)}' src='{uri}'></figure>")
    parts.append("<h2 id='diagnosis'>Diagnosis</h2>")
    d = rep.diagnosis
    if d:
        if "label_counts" in d:
            parts.append(_table("diagnosis", (("verdict", True), ("frames", False)),
                                ((e(str(lab)), str(cnt))
                                 for lab, cnt in sorted(d["label_counts"].items(), key=lambda kv: -kv[1]))))
        else:
            parts.append(_table("diagnosis", (("", True), ("", True)),
                                ((e(str(k)), _f(v)) for k, v in d.items()
                                 if isinstance(v, (str, int, float)) or v is None), header=False))
    else:
        parts.append("<p class='note'>No diagnosis available.</p>")
    if rep.events:
        parts.append("<h2 id='events'>Refocus decisions and autofocus runs</h2>")
        parts.append(_table("events", (("hours", False), ("kind", True), ("what", True)),
                            ((_f(ev.t_h), e(ev.kind), e(ev.text)) for ev in rep.events)))
    if rep.left_out:
        parts.append("<h2 id='leftout'>Frames left out</h2>")
        parts.append(_table("leftout", (("file", True), ("problem", True)),
                            ((e(Path(x.file).name), e(x.problem)) for x in rep.left_out)))
    if rep.unavailable:
        parts.append("<h2 id='unavailable'>Not in this report</h2><ul class='unavailable'>")
        for u in rep.unavailable:
            parts.append(f"<li>{e(u)}</li>")
        parts.append("</ul>")
    parts.append("<p class='sub'>Made by focuswatch. Sizes in sensor pixels unless marked ″ (arcsec).</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def default_report_path(session: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None) -> Path:
    """``<cwd>/<session name>-focuswatch-report.html``."""
    name = Path(session).resolve().name or "session"
    return Path(cwd or os.getcwd()) / f"{name}-focuswatch-report.html"


def write_report(rep: NightReport, path: str | os.PathLike[str], *, protected: str | os.PathLike[str] | None = None) -> Path:
    """Write the HTML to ``path``; refuses a path that is or is named like a frame, and one
    inside ``protected`` (the session folder)."""
    from focuswatch.io.frames import refuse_frame_target

    out = Path(path)
    refuse_frame_target(out, "the report")
    if protected is not None:
        _check_output_dir(out, Path(protected), "the report")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    try:
        tmp.write_text(render_html(rep), encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:  # name the file the user asked for, not the temporary one beside it
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(out)) from None
    return out


# --------------------------------------------------------------------------- text output

def format_grade(sg: SessionGrade) -> str:
    """Human-readable ``focuswatch grade`` output."""
    def f(v: Any, spec: str = ".2f") -> str:
        return "—" if v is None else format(v, spec)

    lines = [f"{sg.source}: {sg.n_frames} frame(s), Siril {sg.siril_version or '?'}"]
    for x in sg.left_out:
        lines.append(f"  left out {Path(x.file).name}: {x.problem}")
    for fg in sg.filters:
        g = fg.grade
        lines.append("")
        if g is None:
            lines.append(f"filter {fg.filter_name}: not graded: {fg.problem}")
        else:
            lines.append(f"filter {fg.filter_name}: grade {g.letter or '?'} (ratio {f(g.ratio)}) - {g.explanation}")
            lines.append(f"  master FWHM {f(g.master_fwhm_px)} px = {f(g.master_fwhm_arcsec)}\" (Siril {f(g.siril_fwhm_px)} px"
                         f", {f(g.siril_vs_own_pct, '+.0f')} %), limit {f(g.limit_fwhm_px)} px = "
                         f"{f(g.limit_fwhm_arcsec)}\"")
            resamp = (f" + stacking {f(g.resampling_fwhm_px)} px" if getattr(g, "resampling_fwhm_px", 0.0) else "")
            lines.append(f"  limit = seeing {f(g.seeing_fwhm_px)} px ({g.seeing_source or '?'}) + Airy "
                         f"{f(g.airy_fwhm_px)} px + pixels {f(g.sampling_fwhm_px)} px{resamp} in quadrature")
            lines.append(f"  roundness {f(g.roundness)}, {g.n_stars} stars, noise {f(g.noise_adu, '.1f')} ADU, "
                         f"{fg.n_stacked} of {fg.n_frames} subs stacked")
            for v in g.subs:
                if v.reject:
                    lines.append(f"  reject {Path(v.file).name}: {v.cause} - {v.detail}")
            for a in g.advice:
                lines.append(f"  advice: {a}")
            for n in g.notes:
                lines.append(f"  note: {n}")
        for x in fg.left_out:
            lines.append(f"  left out {Path(x.file).name}: {x.problem}")
        if fg.master_path:
            lines.append(f"  master kept at {fg.master_path}")
    return "\n".join(lines)
