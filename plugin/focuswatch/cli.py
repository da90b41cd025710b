"""The ``focuswatch`` command line: a thin layer over functions tests call directly.

Conventions for every subcommand: human-readable text on stdout by default, ``--json`` for
machines (one document, or JSON Lines for streams of frames); logs and error lines on
stderr; exit 0 fine, 1 runtime problem (a bad frame, an unreachable NINA), 2 bad usage or
configuration. ``check`` documents its own codes (0 fine, 1 refocus due, 2 error).

Each subcommand is one ``_add_<name>`` (its arguments) and one ``cmd_<name>`` (its body).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from focuswatch import __version__
from focuswatch.errors import ConfigError, FocuswatchError

log = logging.getLogger("focuswatch")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


# --------------------------------------------------------------------------- shared helpers

def _clean(obj: Any) -> Any:
    """Make a value JSON-safe: NaN/inf become null, tuples lists, Paths strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        try:
            return _clean(obj.item())
        except (TypeError, ValueError):
            return str(obj)
    return obj


def emit_json(obj: Any, stream=None) -> None:
    """Print one JSON document on one line (JSON Lines when called repeatedly)."""
    stream = stream or sys.stdout
    stream.write(json.dumps(_clean(obj), ensure_ascii=False) + "\n")
    stream.flush()


def error_line(message: str) -> None:
    """One clear line on stderr: ``focuswatch: error: <file or setting>: <what is wrong>``."""
    sys.stderr.write(f"focuswatch: error: {message}\n")
    sys.stderr.flush()


def fmt(value: Any, spec: str = ".2f", unit: str = "") -> str:
    """Format a possibly-missing number for human output."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "—".rjust(int(width)) if width else "—"
    return f"{value:{spec}}{unit}"


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")


def add_rig_args(p: argparse.ArgumentParser) -> None:
    """The calculator's rig inputs; each overrides the TOML file given with --rig/--config."""
    g = p.add_argument_group("rig (override the TOML file and FITS headers)")
    g.add_argument("--rig", "--config", dest="config", metavar="TOML", help="TOML file with a [rig] table")
    g.add_argument("--aperture-mm", type=float, dest="aperture_mm")
    g.add_argument("--focal-length-mm", type=float, dest="focal_length_mm")
    g.add_argument("--f-ratio", type=float, dest="f_ratio")
    g.add_argument("--pixel-um", type=float, dest="pixel_um")
    g.add_argument("--binning", type=int)
    g.add_argument("--obstruction", type=float, help="central obstruction, fraction of the aperture diameter")
    g.add_argument("--wavelength-nm", type=float, dest="wavelength_nm")
    g.add_argument("--seeing-arcsec", type=float, dest="seeing_arcsec")
    g.add_argument("--focuser-step-um", type=float, dest="focuser_step_um")


def rig_from_args(args: argparse.Namespace):
    """Rig from --rig/--config TOML plus command-line overrides (validated)."""
    from focuswatch.config import load_config, rig_from_mapping

    cfg = load_config(getattr(args, "config", None))
    values = dict(cfg.rig_table)
    for key in ("aperture_mm", "focal_length_mm", "f_ratio", "pixel_um", "binning", "obstruction",
                "wavelength_nm", "seeing_arcsec", "focuser_step_um", "seeing_tolerance_pct"):
        v = getattr(args, key, None)
        if v is not None:
            values[key] = v
    return rig_from_mapping(values, "rig" if not cfg.path else f"rig in {cfg.path}")


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
        from focuswatch.charts import focus_zone_chart

        if rig.effective_pixel_um is None:
            raise ConfigError("--chart needs the pixel size (pixel_um)")
        chart = str(focus_zone_chart(rig, args.chart))
    if args.json:
        emit_json({**zone.to_dict(), "chart": chart})
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


# --------------------------------------------------------------------------- measure

def _add_measure(sub) -> None:
    p = sub.add_parser("measure", help="measure stars (HFR, FWHM, eccentricity, 3x3 zones) in frames")
    p.add_argument("files", nargs="+", metavar="FILE", help="FITS/XISF frames or folders")
    add_rig_args(p)
    add_json_flag(p)


def expand_frames(items: Iterable[str]) -> list[Path]:
    """Files as given, folders expanded (recursively) to the image files inside, sorted."""
    from focuswatch.frames import is_image_file

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q)))
        else:
            out.append(p)
    return out


def progress(items: Sequence[Any], enabled: bool, desc: str):
    """A tqdm progress bar on stderr for long batch work (only on a terminal)."""
    if not enabled or len(items) < 3 or not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="frame", file=sys.stderr, leave=False)


def measure_path(path: Path, rig_table=None):
    """Load and measure one frame with the plate scale from the rig file or its header."""
    from focuswatch import frames, stars
    from focuswatch.config import rig_with_header
    from focuswatch.optics import Rig

    frame = frames.load(path)
    rig = rig_with_header(rig_table or Rig(), frame.meta)
    return stars.measure(frame, plate_scale_arcsec_px=rig.plate_scale_arcsec_px)


def cmd_measure(args: argparse.Namespace) -> int:
    from focuswatch.errors import FrameError

    rig = rig_from_args(args)
    paths = expand_frames(args.files)
    if not paths:
        raise ConfigError("no frames found in " + ", ".join(args.files))
    n_bad = 0
    if not args.json:
        print(f"{'file':<40} {'stars':>5} {'HFR px':>7} {'NINA':>6} {'FWHM px':>7} {'ecc':>5} {'HFD/FWHM':>8} "
              f"{'bkg ADU':>8} {'noise':>6}")
    for path in progress(paths, not args.json, "measuring"):
        try:
            st = measure_path(path, rig)
        except FrameError as exc:
            n_bad += 1
            error_line(str(exc))
            if args.json:
                emit_json({"file": str(path), "error": exc.problem})
            continue
        if st.n_stars == 0:
            n_bad += 1
            error_line(f"{path}: {st.reason}")
        if args.json:
            emit_json({**st.to_dict(), **({"error": st.reason} if st.n_stars == 0 else {})})
            continue
        name = path.name if len(path.name) <= 40 else "…" + path.name[-39:]
        print(f"{name:<40} {st.n_stars:>5} {fmt(st.hfr_px, '7.2f')} {fmt(st.hfr_nina_px, '6.2f')} "
              f"{fmt(st.fwhm_px, '7.2f')} {fmt(st.eccentricity, '5.2f')} {fmt(st.profile_ratio, '8.2f')} "
              f"{fmt(st.background_adu, '8.0f')} {fmt(st.noise_adu, '6.1f')}"
              + (f"   ({st.reason})" if st.reason else ""))
    if n_bad:
        error_line(f"{n_bad} of {len(paths)} frames could not be measured")
    return EXIT_FAIL if n_bad else EXIT_OK


# --------------------------------------------------------------------------- sim

def _add_sim(sub) -> None:
    p = sub.add_parser("sim", help="render simulated frames with a known truth")
    p.add_argument("out", metavar="FOLDER", help="where to write the frames and truth.json")
    add_json_flag(p)


def cmd_sim(args: argparse.Namespace) -> int:
    raise NotImplementedError


# --------------------------------------------------------------------------- registry

#: name -> (add-parser function, command function); order is the order in --help.
COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "calc": (_add_calc, cmd_calc),
    "measure": (_add_measure, cmd_measure),
    "sim": (_add_sim, cmd_sim),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="focuswatch",
        description="Keeps you in focus all night and tells a focus miss from seeing, clouds, wind, dew "
                    "and optical defects.")
    parser.add_argument("--version", action="version", version=f"focuswatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``focuswatch`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    _, func = COMMANDS[args.command]
    try:
        return int(func(args) or 0)
    except ConfigError as exc:
        error_line(str(exc))
        return EXIT_USAGE
    except FocuswatchError as exc:
        error_line(str(exc))
        return EXIT_FAIL
    except KeyboardInterrupt:
        sys.stderr.write("focuswatch: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK
