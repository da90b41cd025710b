"""A simulated night: a focuser that drifts with temperature, a plan of clouds, wind and filter changes, the frames' parameters."""
from __future__ import annotations


import math
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from focuswatch.optics import Rig
from focuswatch.model.records import Record
from focuswatch.sim.image import _parse_date
from focuswatch.sim.params import SimParams, sim_rig


# --------------------------------------------------------------------------- night model

@dataclass
class SimFocuser:
    """A focuser whose best-focus position drifts with temperature and filter.

    ``best_focus(T, filter) = pos0 + coef_um_per_c / step_um * (T - temp0_c) + offset(filter)``
    (steps); the frame's defocus is ``(position - best_focus) * step_um`` (um, signed). This
    is the one mutable object here: it has real state (its position), like a real focuser.
    """

    position: int = 10000
    step_um: float = 2.0
    pos0: float = 10000.0
    temp0_c: float = 10.0
    coef_um_per_c: float = -20.0
    filter_offsets_steps: dict[str, float] = field(default_factory=dict)
    autofocus_error_um: float = 3.0

    def best_focus(self, temp_c: float, filter_name: str | None = None) -> float:
        """Best-focus position (steps, fractional) at ``temp_c`` through ``filter_name``."""
        off = self.filter_offsets_steps.get(filter_name or "", 0.0)
        return self.pos0 + self.coef_um_per_c / self.step_um * (temp_c - self.temp0_c) + off

    def defocus_um(self, temp_c: float, filter_name: str | None = None) -> float:
        """Signed defocus (um) at the current position."""
        return (self.position - self.best_focus(temp_c, filter_name)) * self.step_um

    def move_to(self, position: int) -> int:
        self.position = int(position)
        return self.position

    def autofocus(self, temp_c: float, filter_name: str | None, rng: np.random.Generator) -> int:
        """Move to best focus with a small random error (``autofocus_error_um`` standard deviation)."""
        err = rng.normal(0.0, self.autofocus_error_um) / self.step_um
        return self.move_to(int(round(self.best_focus(temp_c, filter_name) + err)))


@dataclass(frozen=True)
class NightPlan(Record):
    """How a simulated night goes; every field has a unit in its name.

    ``cloud_frames`` is ``(first, last, depth)``: frames first..last (inclusive) get
    ``cloud = depth`` (ramping in and out over a frame). ``filter_change`` is
    ``(frame, filter_name)``: from that frame on the filter changes (the focuser's
    ``filter_offsets_steps`` carry the parfocal offset). From ``dew_start_frame`` on, dew
    grows by ``dew_per_frame`` per frame (up to 1). ``wind_frames`` is ``(first, last,
    trail_px)``: gusts smear the stars of those frames by a random 30-100 % of ``trail_px``
    along ``wind_angle_deg``. ``autofocus_frames`` lists frame
    indices before which the focuser autofocuses (the caller may also call
    :meth:`SimFocuser.autofocus` itself between frames).
    """

    n_frames: int = 30
    start: str = "2026-11-21T21:00:00"
    exposure_s: float = 120.0
    interval_s: float = 130.0
    temp_start_c: float = 10.0
    cooling_c_per_hour: float = -0.8
    temp_noise_c: float = 0.05
    seeing_fwhm_arcsec: float = 2.5
    seeing_jitter_pct: float = 8.0
    cloud_frames: tuple[int, int, float] | None = None
    filter_change: tuple[int, str] | None = None
    autofocus_frames: tuple[int, ...] = ()
    dither_px: float = 3.0
    altitude_start_deg: float = 60.0
    altitude_end_deg: float = 60.0
    dew_start_frame: int | None = None
    dew_per_frame: float = 0.03
    wind_frames: tuple[int, int, float] | None = None
    wind_angle_deg: float = 20.0


def night_frames(base: SimParams, plan: NightPlan, focuser: SimFocuser, seed: int = 0) -> Iterator[SimParams]:
    """Yield the :class:`SimParams` of each frame of a night, in order.

    The defocus of each frame is read from ``focuser`` when the frame is produced, so a
    caller that autofocuses the focuser between ``next()`` calls refocuses the next frame.
    Seeing jitters randomly around ``plan.seeing_fwhm_arcsec`` (no trend; it grows with
    airmass^0.6 when the altitude changes), temperature falls at ``cooling_c_per_hour``
    with a little noise. Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 77]))
    t0 = _parse_date(plan.start)
    filt = base.filter_name
    for i in range(plan.n_frames):
        elapsed_s = i * plan.interval_s
        temp = plan.temp_start_c + plan.cooling_c_per_hour * elapsed_s / 3600.0 + rng.normal(0, plan.temp_noise_c)
        frac = i / max(plan.n_frames - 1, 1)
        alt = plan.altitude_start_deg + (plan.altitude_end_deg - plan.altitude_start_deg) * frac
        airmass_ratio = math.sin(math.radians(plan.altitude_start_deg)) / math.sin(math.radians(max(alt, 5.0)))
        seeing = plan.seeing_fwhm_arcsec * airmass_ratio ** 0.6 * \
            max(0.3, 1.0 + rng.normal(0, plan.seeing_jitter_pct / 100.0))
        cloud = 0.0
        if plan.cloud_frames is not None:
            a, b, depth = plan.cloud_frames
            if a <= i <= b:
                cloud = depth * (0.5 if i in (a, b) and b - a >= 2 else 1.0)
        if plan.filter_change is not None and i >= plan.filter_change[0]:
            filt = plan.filter_change[1]
        if i in plan.autofocus_frames:
            focuser.autofocus(temp, filt, rng)
        dither = rng.uniform(-plan.dither_px, plan.dither_px, 2) if plan.dither_px > 0 else (0.0, 0.0)
        dew = base.dew
        if plan.dew_start_frame is not None and i >= plan.dew_start_frame:
            dew = min(1.0, dew + plan.dew_per_frame * (i - plan.dew_start_frame + 1))
        trail_px, trail_angle = base.trail_px, base.trail_angle_deg
        gust = rng.uniform(0.3, 1.0)
        if plan.wind_frames is not None and plan.wind_frames[0] <= i <= plan.wind_frames[1]:
            trail_px, trail_angle = plan.wind_frames[2] * gust, plan.wind_angle_deg
        yield replace(
            base,
            defocus_um=round(focuser.defocus_um(temp, filt), 4),
            focuser_pos=int(focuser.position),
            temp_c=round(float(temp), 3),
            seeing_fwhm_arcsec=round(float(seeing), 4),
            cloud=float(min(cloud, 1.0)),
            dew=float(dew),
            trail_px=float(trail_px),
            trail_angle_deg=float(trail_angle),
            filter_name=filt,
            date_obs=(t0 + timedelta(seconds=elapsed_s)).isoformat(timespec="milliseconds"),
            exposure_s=plan.exposure_s,
            altitude_deg=round(alt, 3),
            frame_nr=base.frame_nr + i,
            noise_seed=None,
            dither_x_px=float(dither[0]),
            dither_y_px=float(dither[1]),
        )


def _parse_span(text: str | None, flag: str, name: str, example: str, default: float,
                hi: float = math.inf) -> tuple[int, int, float] | None:
    """``FIRST:LAST[:VALUE]`` of a demo option (frames FIRST to LAST get VALUE, 0 <= VALUE <= hi)."""
    if not text:
        return None
    parts = str(text).split(":")
    try:
        first, last = int(parts[0]), int(parts[1])
        value = float(parts[2]) if len(parts) > 2 else default
    except (ValueError, IndexError):
        raise ValueError(f"{flag} {text!r}: expected FIRST:LAST[:{name}], e.g. {example}") from None
    if not (0 <= first <= last and 0.0 <= value <= hi):
        limit = f"in 0..{hi:g}" if math.isfinite(hi) else ">= 0"
        raise ValueError(f"{flag} {text!r}: need 0 <= FIRST <= LAST and {name} {limit}")
    return first, last, value


def _parse_cloud(text: str | None) -> tuple[int, int, float] | None:
    return _parse_span(text, "--cloud-frames", "DEPTH", "10:14:0.7", 0.7, hi=1.0)


def _parse_wind(text: str | None) -> tuple[int, int, float] | None:
    return _parse_span(text, "--wind-frames", "TRAIL_PX", "10:14:6", 6.0)


def _parse_filter_change(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    frame, _, name = str(text).partition(":")
    try:
        return int(frame), name.strip() or "L"
    except ValueError:
        raise ValueError(f"--filter-change {text!r}: expected FRAME:FILTER, e.g. 20:Ha") from None


def _parse_offsets(items: Sequence[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or ():
        name, _, steps = str(item).partition("=")
        try:
            out[name.strip()] = float(steps)
        except ValueError:
            raise ValueError(f"--filter-offset {item!r}: expected FILTER=STEPS, e.g. Ha=35") from None
    return out


def series_from_options(opts: Mapping[str, Any], rig: Rig | None = None) -> Iterator[SimParams]:
    """The frames ``focuswatch sim`` renders, from its options (argparse names; missing = default).

    One frame with the given defocus when ``frames`` is 1; otherwise a night
    (:func:`night_frames`) whose focuser starts ``defocus_um`` from best focus and drifts
    with ``drift_um_per_c`` as the temperature falls. Raises ``ValueError`` for bad options.
    """
    def get(key: str, default: Any) -> Any:
        v = opts.get(key)
        return default if v is None else v

    base = SimParams(
        width_px=int(get("width", 1024)), height_px=int(get("height", 1024)), n_stars=int(get("stars", 200)),
        seed=int(get("seed", 1)), rig=sim_rig(rig),
        seeing_fwhm_arcsec=float(get("seeing_arcsec", 2.5)), moffat_beta=float(get("beta", 3.5)),
        defocus_um=float(get("defocus_um", 0.0)), tilt_x_um=float(get("tilt_x_um", 0.0)),
        tilt_y_um=float(get("tilt_y_um", 0.0)), curvature_um=float(get("curvature_um", 0.0)),
        coma_px=float(get("coma_px", 0.0)), collimation=float(get("collimation", 0.0)),
        collimation_angle_deg=float(get("collimation_angle_deg", 30.0)), trail_px=float(get("trail_px", 0.0)),
        trail_angle_deg=float(get("trail_angle_deg", 0.0)), dew=float(get("dew", 0.0)),
        cloud=float(get("cloud", 0.0)), sky_adu=float(get("sky_adu", 800.0)),
        sky_gradient=float(get("sky_gradient", 0.0)), read_noise_e=float(get("read_noise_e", 3.0)),
        gain_e_per_adu=float(get("gain_e_per_adu", 1.0)), exposure_s=float(get("exposure_s", 120.0)),
        filter_name=str(get("filter", "L")), temp_c=float(get("temp_c", 10.0)),
        n_hot_pixels=int(get("hot_pixels", 0)), n_cosmic_rays=int(get("cosmic_rays", 0)),
        bayer=opts.get("bayer") or None, date_obs=str(get("start", "2026-11-21T22:14:03")),
        frame_nr=int(get("first_frame_nr", 1)),
    )
    n = int(get("frames", 1))
    if n < 1:
        raise ValueError(f"--frames {n}: must be at least 1")
    if n == 1:
        yield base
        return
    step = float(base.rig.focuser_step_um or 2.0)
    focuser = SimFocuser(position=0, step_um=step, pos0=10000.0, temp0_c=base.temp_c,
                         coef_um_per_c=float(get("drift_um_per_c", -20.0)),
                         filter_offsets_steps=_parse_offsets(opts.get("filter_offset")))
    focuser.move_to(int(round(focuser.best_focus(base.temp_c, base.filter_name) + base.defocus_um / step)))
    every = int(get("autofocus_every", 0))
    plan = NightPlan(
        n_frames=n, start=base.date_obs, exposure_s=base.exposure_s,
        interval_s=float(get("interval_s", base.exposure_s + 10.0)), temp_start_c=base.temp_c,
        cooling_c_per_hour=float(get("cooling_c_per_hour", -0.8)), seeing_fwhm_arcsec=base.seeing_fwhm_arcsec,
        seeing_jitter_pct=float(get("seeing_jitter_pct", 8.0)),
        cloud_frames=_parse_cloud(opts.get("cloud_frames")),
        filter_change=_parse_filter_change(opts.get("filter_change")),
        autofocus_frames=tuple(range(every, n, every)) if every > 0 else (),
        dew_start_frame=opts.get("dew_from_frame"), wind_frames=_parse_wind(opts.get("wind_frames")))
    yield from night_frames(base, plan, focuser, seed=base.seed)


#: Fields of :func:`truth_summary` (the ``focuswatch sim --json`` line, besides ``file``).
SUMMARY_KEYS = ("frame_nr", "date_obs", "filter_name", "temp_c", "focuser_pos", "defocus_um", "blur_px",
                "cfz_um", "hfr_px", "hfr_nina_px", "fwhm_px", "hfr0_px", "seeing_fwhm_arcsec",
                "seeing_fwhm_px", "cloud", "dew", "n_stars", "n_stars_inside", "n_saturated")


def truth_summary(truth: Mapping[str, Any]) -> dict[str, Any]:
    """The per-frame headline numbers of a truth dict (no star list, no parameters)."""
    eff = truth.get("effects", {})
    params = truth.get("params", {})
    out: dict[str, Any] = {"file": truth.get("file")}
    for k in SUMMARY_KEYS:
        out[k] = truth.get(k, eff.get(k, params.get(k)))
    return out
