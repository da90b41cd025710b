"""``calc`` (focus zone), ``sim`` (synthetic frames and nights), ``demo`` (a simulated night, end to end)."""
from __future__ import annotations


import argparse
from pathlib import Path

from focuswatch.errors import ConfigError
from focuswatch.render.text import emit_json, fmt
from focuswatch.cli.cmd_watch import _decision_row
from focuswatch.cli.common import EXIT_OK, add_json_flag, add_rig_args, rig_from_args


# --------------------------------------------------------------------------- calc

def _add_calc(sub) -> None:
    p = sub.add_parser("calc", help="critical focus zone, Airy disk, sampling, focuser steps")
    add_rig_args(p)
    p.add_argument("--seeing-tolerance-pct", type=float, dest="seeing_tolerance_pct",
                   help="tolerated star growth for the seeing-aware zone, 1-15 %% (default 5)")
    p.add_argument("--chart", metavar="PNG", help="draw zone width and Airy diameter (px) against wavelength")
    add_json_flag(p)


def cmd_calc(args: argparse.Namespace) -> int:
    from focuswatch.optics import focus_zone

    rig = rig_from_args(args)
    try:
        zone = focus_zone(rig)
    except ValueError as exc:
        raise ConfigError(f"rig: {exc}") from None
    chart = None
    if args.chart:
        from focuswatch.render.charts import focus_zone_chart

        if rig.effective_pixel_um is None:
            raise ConfigError("--chart needs the pixel size (pixel_um)")
        chart = str(focus_zone_chart(rig, args.chart))
    if args.json:
        emit_json({**zone.to_dict(), "chart": chart}, kind="zone")
        return EXIT_OK
    print(render_focus_zone(zone))
    if chart:
        print(f"chart written to {chart}")
    return EXIT_OK


def render_focus_zone(z) -> str:
    """Human-readable calculator output."""
    lines = [
        f"focal ratio             f/{z.f_ratio:.2f}   (at {z.wavelength_nm:g} nm)",
        f"critical focus zone     {fmt(z.cfz_um)} µm total (±{fmt(z.cfz_half_um)} µm)"
        + (f" = {fmt(z.cfz_px, '.1f')} px" if z.cfz_px else ""),
    ]
    if z.cfz_seeing_um:
        lines.append(f"seeing-aware zone       {fmt(z.cfz_seeing_um)} µm (Goldman & Megdal, "
                     f"{z.seeing_arcsec:g}\" seeing, {z.cfz_seeing_tolerance_pct:g} % tolerance)")
    lines.append(f"Airy disk diameter      {fmt(z.airy_um)} µm" + (f" = {fmt(z.airy_px)} px" if z.airy_px else "")
                 + (f" = {fmt(z.airy_arcsec)}\"" if z.airy_arcsec else ""))
    if z.plate_scale_arcsec_px:
        lines.append(f"plate scale             {fmt(z.plate_scale_arcsec_px, '.3f')}\"/px")
    if z.seeing_px:
        lines.append(f"seeing FWHM             {fmt(z.seeing_px)} px: {z.sampling}")
    if z.steps_across_cfz:
        verdict = "fine control" if z.steps_across_cfz >= 10 else "coarse: the zone spans few steps"
        lines.append(f"focuser steps in zone   {fmt(z.steps_across_cfz, '.1f')} steps of {z.focuser_step_um:g} µm "
                     f"(±{fmt(z.steps_across_cfz / 2, '.1f')}) — {verdict}")
    if z.blur_px_per_10um:
        lines.append(f"defocus blur            {fmt(z.blur_px_per_10um, '.3f')} px per 10 µm of defocus")
    lines.append("")
    lines.append(f"{'wavelength':>16}  {'zone µm':>8}  {'zone px':>8}  {'Airy µm':>8}  {'Airy px':>8}")
    for w in z.wavelengths:
        lines.append(f"{w.label:>16}  {w.cfz_um:8.2f}  {fmt(w.cfz_px, '8.1f')}  {w.airy_um:8.2f}  "
                     f"{fmt(w.airy_px, '8.2f')}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- sim

def _add_sim(sub) -> None:
    p = sub.add_parser("sim", help="render simulated frames with a known truth",
                       description="Render NINA-style FITS frames with a known truth (truth.json) into FOLDER. "
                                   "Rig defaults: 200 mm f/5, 3.76 um pixels, 2 um focuser steps; "
                                   "--seeing-arcsec sets the simulated seeing (default 2.5).")
    p.add_argument("out", metavar="FOLDER", help="where to write the frames and truth.json (created)")
    g = p.add_argument_group("frame")
    g.add_argument("--width", type=int, help="frame width, px (default 1024)")
    g.add_argument("--height", type=int, help="frame height, px (default 1024)")
    g.add_argument("--stars", type=int, help="number of stars (default 200)")
    g.add_argument("--seed", type=int, help="star field and noise seed (default 1)")
    g.add_argument("--beta", type=float, help="Moffat beta of the seeing profile (default 3.5; inf = Gaussian)")
    g.add_argument("--exposure-s", type=float, dest="exposure_s", help="exposure, s (default 120)")
    g.add_argument("--filter", help="FILTER keyword (default L)")
    g.add_argument("--temp-c", type=float, dest="temp_c", help="focuser/ambient temperature, C (default 10)")
    g.add_argument("--start", help="DATE-OBS of the first frame, UTC ISO (default 2026-11-21T22:14:03)")
    g.add_argument("--bayer", choices=("RGGB", "BGGR", "GRBG", "GBRG"), help="one-shot-colour pattern")
    g.add_argument("--sky-adu", type=float, dest="sky_adu", help="sky above bias, ADU (default 800)")
    g.add_argument("--sky-gradient", type=float, dest="sky_gradient", help="sky change across the frame, fraction")
    g.add_argument("--read-noise-e", type=float, dest="read_noise_e", help="read noise, e- (default 3)")
    g.add_argument("--gain-e-per-adu", type=float, dest="gain_e_per_adu", help="e-/ADU (default 1)")
    g.add_argument("--hot-pixels", type=int, dest="hot_pixels", help="number of hot pixels (default 0)")
    g.add_argument("--cosmic-rays", type=int, dest="cosmic_rays", help="cosmic-ray hits per frame (default 0)")
    e = p.add_argument_group("effects")
    e.add_argument("--defocus-um", type=float, dest="defocus_um", help="signed defocus at the centre, um")
    e.add_argument("--tilt-x-um", type=float, dest="tilt_x_um", help="extra defocus at the right edge, um")
    e.add_argument("--tilt-y-um", type=float, dest="tilt_y_um", help="extra defocus at the bottom edge, um")
    e.add_argument("--curvature-um", type=float, dest="curvature_um", help="extra defocus at the corners, um")
    e.add_argument("--coma-px", type=float, dest="coma_px", help="radial comatic tail at the corners, px")
    e.add_argument("--collimation", type=float, help="constant asymmetry 0..1")
    e.add_argument("--collimation-angle-deg", type=float, dest="collimation_angle_deg")
    e.add_argument("--trail-px", type=float, dest="trail_px", help="wind/guiding smear length, px")
    e.add_argument("--trail-angle-deg", type=float, dest="trail_angle_deg")
    e.add_argument("--dew", type=float, help="dew 0..1 (halos, contrast loss)")
    e.add_argument("--cloud", type=float, help="cloud 0..1 (every frame; see --cloud-frames for a passage)")
    n = p.add_argument_group("night series")
    n.add_argument("--frames", type=int, help="number of frames (default 1); >1 simulates a cooling night")
    n.add_argument("--interval-s", type=float, dest="interval_s", help="time between frame starts, s")
    n.add_argument("--drift-um-per-c", type=float, dest="drift_um_per_c",
                   help="best-focus shift per C, um (default -20)")
    n.add_argument("--cooling-c-per-hour", type=float, dest="cooling_c_per_hour", help="default -0.8")
    n.add_argument("--seeing-jitter-pct", type=float, dest="seeing_jitter_pct", help="frame-to-frame, default 8")
    n.add_argument("--cloud-frames", dest="cloud_frames", metavar="FIRST:LAST[:DEPTH]", help="a cloud passage")
    n.add_argument("--filter-change", dest="filter_change", metavar="FRAME:FILTER", help="change filter")
    n.add_argument("--filter-offset", dest="filter_offset", action="append", metavar="FILTER=STEPS",
                   help="parfocal offset of a filter, focuser steps (repeatable)")
    n.add_argument("--autofocus-every", type=int, dest="autofocus_every", metavar="N",
                   help="autofocus the simulated focuser every N frames")
    n.add_argument("--dew-from-frame", type=int, dest="dew_from_frame", metavar="N",
                   help="dew builds up from frame N on (+0.03 per frame)")
    n.add_argument("--wind-frames", dest="wind_frames", metavar="FIRST:LAST[:TRAIL_PX]", help="wind gusts")
    add_rig_args(p)
    add_json_flag(p)


def cmd_sim(args: argparse.Namespace) -> int:
    from focuswatch import sim

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    try:
        series = list(sim.series_from_options(vars(args), rig_from_args(args)))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for truth in sim.iter_write_night(out, series):
        s = sim.truth_summary(truth)
        if args.json:
            emit_json({**s, "file": str(out / s["file"])}, kind="sim-frame")
        else:
            print(f"{s['file']}  defocus {fmt(s['defocus_um'], '+.1f', ' um')}  HFR {fmt(s['hfr_px'], '.3f', ' px')}"
                  f"  FWHM {fmt(s['fwhm_px'], '.2f', ' px')}  {s['temp_c']:.2f} C  pos {s['focuser_pos']}")
    if not args.json:
        print(f"wrote {len(series)} frame(s) and truth.json to {out}")
    return EXIT_OK


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="simulate a night live, watch it, refocus it, draw the timeline",
                       description="Renders a simulated night into a temporary folder (thermal drift, seeing "
                                   "jitter, a passing cloud, a filter change), watches it with the real watcher, "
                                   "refocuses the simulated focuser through a trigger and ends with a summary "
                                   "and a PNG timeline.")
    p.add_argument("--out", metavar="DIR", help="where to write frames, journal and timeline "
                                                "(default: a new folder in the system temp dir)")
    p.add_argument("--frames", type=int, default=60, help="number of frames (default 60)")
    p.add_argument("--interval-s", type=float, default=0.3, help="real seconds between frames (default 0.3)")
    p.add_argument("--width-px", type=int, default=1024)
    p.add_argument("--height-px", type=int, default=768)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quiet", action="store_true", help="no line per frame")
    p.add_argument("--verbose", dest="demo_verbose", action="store_true",
                   help="the policy's full reasons under each frame's line")
    add_json_flag(p)


def cmd_demo(args: argparse.Namespace) -> int:
    from focuswatch.cli.demo import DemoOptions, frame_row, run_demo, summary_table, table_header

    if args.frames < 10:
        raise ConfigError(f"--frames {args.frames}: the demo needs at least 10 frames")
    opts = DemoOptions(n_frames=args.frames, interval_s=max(0.0, args.interval_s), width_px=args.width_px,
                       height_px=args.height_px, seed=args.seed)

    def on_row(p, truth) -> None:
        if args.json:  # the full reasons are in the frame's JSON line
            emit_json({**_decision_row(p), "index": truth["index"] if truth else None,
                       "true_defocus_um": truth["defocus_um"] if truth else None}, kind="demo-frame")
        elif not args.quiet:
            print(frame_row(p, truth, verbose=bool(args.demo_verbose or args.verbose)), flush=True)

    if not args.json:
        print(f"simulating {opts.n_frames} frames into {args.out or 'a new temporary folder'}...", flush=True)
        if not args.quiet:
            print(table_header(), flush=True)
    result = run_demo(opts, args.out, on_row=on_row)
    if args.json:
        emit_json(result.to_dict(), kind="demo")
    else:
        print(summary_table(result))
    return EXIT_OK
