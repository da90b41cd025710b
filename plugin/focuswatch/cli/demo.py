"""``focuswatch demo``: a simulated night, watched live by the real watcher.

A writer thread plays the capture program: it renders frames with :mod:`focuswatch.sim`
(thermal drift of a :class:`~focuswatch.sim.SimFocuser`, seeing jitter, a passing cloud, a
filter change) and writes them *in place, in chunks*, into dated sub-folders of a temporary
folder, one every ``interval_s`` seconds. The real :class:`~focuswatch.watch.Watcher`
watches that folder with its journal and state file. When the policy asks for a refocus,
the request goes through a real :class:`~focuswatch.triggers.TriggerRunner` to
:class:`SimAutofocusTrigger`, which makes the simulated capture program autofocus before its
next frame and report it the way a NINA hook does (``autofocus-done``'s event log). The
night ends with a summary and a PNG timeline (HFR, estimated and true defocus against the
zone, temperature, refocus markers).

Everything is written under ``out`` (default: a new folder in the system temp dir).
"""
from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from focuswatch import optics, sim
from focuswatch.io import statefile
from focuswatch.config import Config
from focuswatch.io.journal import Journal
from focuswatch.policy import PolicyConfig, summarize
from focuswatch.optics import Rig
from focuswatch.model.records import Record
from focuswatch.triggers import Trigger, TriggerRequest, TriggerResult, TriggerRunner
from focuswatch.watch import WatchConfig, Processed, Watcher

log = logging.getLogger("focuswatch.cli.demo")

#: 130 mm f/5 refractor with 3.76 um pixels (1.19"/px): 2.5" seeing spans ~2.1 px, sampled
#: well enough to see focus change, and the CFZ (67 um) is narrow enough to be worth watching.
#: Rules that read the stars: a request from one while the true defocus is under a quarter of the
#: zone is a false alarm (seeing jitter taken for focus).
IMAGE_RULES = frozenset({"drift", "consecutive", "hfr_increase"})

DEMO_RIG = Rig(aperture_mm=130.0, focal_length_mm=650.0, pixel_um=3.76, focuser_step_um=2.0)


@dataclass(frozen=True)
class DemoOptions:
    """The demo's knobs (the CLI's options). Times: ``interval_s`` real seconds between frames,
    ``sim_interval_s`` simulated seconds between frames (DATE-OBS)."""

    n_frames: int = 60
    interval_s: float = 0.3
    width_px: int = 1024
    height_px: int = 768
    n_stars: int = 150
    sim_interval_s: float = 150.0
    exposure_s: float = 120.0
    cooling_c_per_hour: float = -1.5
    focus_coef_um_per_c: float = -25.0
    seeing_arcsec: float = 2.8
    seeing_jitter_pct: float = 6.0
    seed: int = 7
    chunk_bytes: int = 256 * 1024


@dataclass
class DemoResult(Record):
    """What the demo did; ``to_dict()`` is ``demo --json``'s object (``from_dict`` reads it back,
    without the per-frame ``rows``, which ``demo --json`` prints as ``demo-frame`` lines)."""

    KIND: ClassVar[str] = "demo"

    folder: str
    frames_folder: str
    png: str | None
    journal: str
    n_frames: int
    n_measured: int
    n_refocus: int
    n_autofocus: int
    refocus_rules: dict[str, int]
    skip_reasons: dict[str, int]
    refocus_frames: list[int]
    autofocus_frames: list[int]
    false_refocus_frames: list[int]
    max_true_defocus_cfz: float | None
    max_true_defocus_cfz_kept: float | None
    worst_kept_frame: int | None
    worst_kept_cause: str | None
    max_defocus_cfz: float | None
    elapsed_s: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("rows")
        return d


class SimAutofocusTrigger(Trigger):
    """A trigger that asks the simulated capture program for an autofocus (in process)."""

    name = "sim-autofocus"

    def __init__(self, requests: "queue.Queue[TriggerRequest]"):
        self.requests = requests

    def _fire(self, request: TriggerRequest) -> TriggerResult:
        self.requests.put(request)
        return self._ok("simulated capture program: autofocus queued before the next frame")


class _Night(threading.Thread):
    """The simulated capture program: renders, autofocuses on request, writes frames in place."""

    def __init__(self, opts: DemoOptions, folder: Path, events_file: Path, requests: "queue.Queue[TriggerRequest]",
                 stop: threading.Event):
        super().__init__(name="focuswatch-demo-night", daemon=True)
        self.opts, self.folder, self.events_file, self.requests, self.stop_event = opts, folder, events_file, \
            requests, stop
        self.focuser = sim.SimFocuser(position=10000, step_um=DEMO_RIG.focuser_step_um or 2.0, pos0=10000.0,
                                      temp0_c=10.0, coef_um_per_c=opts.focus_coef_um_per_c,
                                      filter_offsets_steps={"R": 12.0}, autofocus_error_um=2.0)
        n = opts.n_frames
        self.plan = sim.NightPlan(
            n_frames=n, exposure_s=opts.exposure_s, interval_s=opts.sim_interval_s, temp_start_c=10.0,
            cooling_c_per_hour=opts.cooling_c_per_hour, seeing_fwhm_arcsec=opts.seeing_arcsec,
            seeing_jitter_pct=opts.seeing_jitter_pct,
            cloud_frames=(int(0.30 * n), int(0.30 * n) + max(2, n // 15), 0.85),
            filter_change=(int(0.8 * n), "R"), autofocus_frames=(0,), altitude_start_deg=65.0,
            altitude_end_deg=50.0)
        self.truths: dict[str, dict[str, Any]] = {}
        # the dusk autofocus the plan makes inside ``sim.night_frames`` counts too: it is the
        # first entry, the ones the watcher asked for follow (the timeline skips the first)
        self.autofocus_frames: list[int] = sorted(self.plan.autofocus_frames)
        self.error: BaseException | None = None
        self.done = threading.Event()
        #: how many frames the watcher has handled (set by run_demo). A real night has minutes
        #: between frames; the demo's fraction of a second must not let the camera run ahead
        #: of the watcher, or a refocus would reach it frames late and the night would differ
        #: from run to run with the machine's load.
        self.n_handled: Callable[[], int] = lambda: 1 << 30

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the caller
            self.error = exc
        finally:
            self.done.set()

    def _run(self) -> None:
        o = self.opts
        base = sim.SimParams(width_px=o.width_px, height_px=o.height_px, n_stars=o.n_stars, seed=o.seed,
                             rig=DEMO_RIG, exposure_s=o.exposure_s, star_flux_min_e=5e3)
        rng = np.random.default_rng(o.seed + 1)
        gen = sim.night_frames(base, self.plan, self.focuser, seed=o.seed)
        for i in range(o.n_frames):
            if self.stop_event.is_set():
                return
            t0 = time.monotonic()
            give_up = t0 + 30.0
            while self.n_handled() < i and not self.stop_event.is_set() and time.monotonic() < give_up:
                self.stop_event.wait(0.005)      # the next exposure starts once the last frame was judged
            self._maybe_autofocus(i, rng)
            params = next(gen)
            frame = sim.render(params)
            day = params.date_obs[:10]
            sub = self.folder / day / "LIGHT"
            sub.mkdir(parents=True, exist_ok=True)
            path = sub / frame.file_name
            data = sim.fits_bytes(frame)
            self.truths[str(path.resolve())] = {**frame.truth, "index": i, "temp_c": params.temp_c,
                                                "filter_name": params.filter_name}
            with open(path, "wb") as fh:                 # in place, in pieces, like NINA
                for k in range(0, len(data), o.chunk_bytes):
                    fh.write(data[k:k + o.chunk_bytes])
                    fh.flush()
            wait = o.interval_s - (time.monotonic() - t0)
            if wait > 0:
                self.stop_event.wait(wait)

    def _maybe_autofocus(self, i: int, rng: np.random.Generator) -> None:
        try:
            req = self.requests.get_nowait()
        except queue.Empty:
            return
        while not self.requests.empty():
            self.requests.get_nowait()
        # the plan's temperature for the coming frame (without its noise) is what the AF sees
        temp = self.plan.temp_start_c + self.plan.cooling_c_per_hour * i * self.plan.interval_s / 3600.0
        filt = self.plan.filter_change[1] if self.plan.filter_change and i >= self.plan.filter_change[0] else "L"
        self.focuser.autofocus(temp, filt, rng)
        self.autofocus_frames.append(i)
        statefile.append_autofocus_event(self.events_file, statefile.AutofocusEvent(
            time=statefile.iso_utc(), source="sim-autofocus", filter_name=filt, position=self.focuser.position,
            temp_c=round(temp, 2), note=f"requested: {req.reason[:120]}"))


def run_demo(opts: DemoOptions = DemoOptions(), out: str | Path | None = None, *,
             on_row: Callable[[Processed, dict[str, Any] | None], None] | None = None,
             png: bool = True, policy: PolicyConfig | None = None) -> DemoResult:
    """Simulate, watch and refocus a night; return the summary (and write the timeline PNG)."""
    t_start = time.monotonic()
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="focuswatch-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    frames_dir = root / "frames"
    frames_dir.mkdir(exist_ok=True)
    state_dir = root / "state"
    state_file, events_file = statefile.resolve_paths(state_dir)
    requests: "queue.Queue[TriggerRequest]" = queue.Queue()
    stop = threading.Event()
    night = _Night(opts, frames_dir, events_file, requests, stop)
    rows: list[tuple[Processed, dict[str, Any] | None]] = []
    night.n_handled = lambda: len(rows)

    def collect(p: Processed) -> None:
        truth = night.truths.get(str(p.path.resolve()))
        rows.append((p, truth))
        if on_row:
            on_row(p, truth)

    journal = Journal(state_dir / "journal.sqlite")
    runner = TriggerRunner([SimAutofocusTrigger(requests)], retry_initial_s=1.0, retry_max_s=2.0, max_attempts=2)
    watcher = Watcher(frames_dir, journal, config=Config(rig=DEMO_RIG), policy=policy or PolicyConfig(),
                      state_file=state_file, events_file=events_file, runner=runner,
                      poll_interval_s=min(0.1, max(0.02, opts.interval_s / 4)), rescan_interval_s=2.0,
                      # frames come every interval_s here (minutes on a real night): a gap of a
                      # quarter of it already means "not a burst copy", so each frame goes at once
                      watch=WatchConfig(burst_quiet_s=min(0.5, opts.interval_s / 4)),
                      on_processed=collect)
    try:
        watcher.start()
        night.start()
        while True:
            watcher.process_pending()
            if night.done.is_set() and len(rows) >= opts.n_frames:
                break
            if night.done.is_set() and night.error is not None:
                raise night.error
            if night.done.is_set() and time.monotonic() - t_start > 30 + opts.n_frames * (opts.interval_s + 2):
                break  # pragma: no cover - a frame never arrived; summarise what we have
            time.sleep(watcher.poll_interval_s)
    finally:
        stop.set()
        watcher.stop()
        night.join(10)
        journal.close()
    decisions = [p.decision for p, _ in rows if p.decision is not None]
    summ = summarize(decisions, n_autofocus=len(night.autofocus_frames))
    cfz = optics.cfz_um(DEMO_RIG.f_ratio or 5.0, 550.0)
    true_cfz = [abs(t["defocus_um"]) / cfz for _, t in rows if t]
    kept_rows = [(abs(t["defocus_um"]) / cfz, t["index"], p.decision) for p, t in rows
                 if t and p.decision and p.decision.decision != "skip"]
    kept = [k[0] for k in kept_rows]
    worst = max(kept_rows, key=lambda k: k[0]) if kept_rows else None
    result = DemoResult(
        folder=str(root), frames_folder=str(frames_dir), png=None, journal=str(journal.path),
        n_frames=opts.n_frames, n_measured=len(decisions), n_refocus=summ.n_refocus,
        n_autofocus=len(night.autofocus_frames), refocus_rules=dict(summ.refocus_rules),
        skip_reasons=dict(summ.skip_reasons),
        refocus_frames=[t["index"] for p, t in rows if t and p.decision and p.decision.decision == "refocus"],
        autofocus_frames=list(night.autofocus_frames),
        false_refocus_frames=[t["index"] for p, t in rows if t and p.decision and p.decision.decision == "refocus"
                              and set(p.decision.rules) & IMAGE_RULES and abs(t["defocus_um"]) < 0.25 * cfz],
        max_true_defocus_cfz=max(true_cfz) if true_cfz else None,
        max_true_defocus_cfz_kept=max(kept) if kept else None,
        worst_kept_frame=worst[1] if worst else None,
        worst_kept_cause=_worst_cause(worst[1], rows, night.autofocus_frames) if worst else None,
        max_defocus_cfz=summ.max_defocus_cfz, elapsed_s=round(time.monotonic() - t_start, 2),
        rows=[{"index": t["index"] if t else None, "true_defocus_um": t["defocus_um"] if t else None,
               "temp_c": t["temp_c"] if t else None, **(p.decision.to_dict() if p.decision else {})}
              for p, t in rows])
    if png:
        result.png = str(timeline_png(result, root / "timeline.png", cfz_um=cfz,
                                      limit_cfz=(policy or PolicyConfig()).defocus_limit_cfz,
                                      autofocus_frames=night.autofocus_frames))
    return result


def timeline_png(result: DemoResult, path: Path, *, cfz_um: float, limit_cfz: float,
                 autofocus_frames: list[int]) -> Path:
    """HFR, defocus (estimated and true) against the zone, temperature; refocus markers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.get("index") is not None]
    idx = np.array([r["index"] for r in rows])
    dec = [r.get("decision") for r in rows]

    def col(key: str) -> np.ndarray:
        return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])

    hfr, est, temp = col("hfr_px"), col("defocus_um"), col("temp_c")
    model = col("model_defocus_um")
    true = np.abs(col("true_defocus_um"))
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    skip = np.array([d == "skip" for d in dec])
    axes[0].plot(idx[~skip], hfr[~skip], "o-", ms=3, label="HFR (kept)")
    axes[0].plot(idx[skip], hfr[skip], "x", color="grey", label="set aside (clouds...)")
    axes[0].set_ylabel("HFR [px]")
    axes[1].plot(idx, est, ".", ms=4, color="tab:blue", alpha=0.45, label="one frame's estimate (seeing jitter)")
    axes[1].plot(idx, model, "o-", ms=3, color="tab:blue", label="drift model (what the policy uses)")
    axes[1].plot(idx, true, "--", color="k", lw=1, label="true |defocus| (simulator)")
    axes[1].axhline(limit_cfz * cfz_um, color="orange", label=f"refocus limit {limit_cfz:g} CFZ")
    axes[1].axhline(cfz_um / 2, color="red", label="edge of the zone (CFZ/2)")
    axes[1].set_ylabel("defocus [µm]")
    axes[2].plot(idx, temp, "-", color="tab:purple")
    axes[2].set_ylabel("focuser temp [°C]")
    axes[2].set_xlabel("frame")
    for ax in axes:
        for i, d in zip(idx, dec):
            if d == "refocus":
                ax.axvline(i, color="red", alpha=0.5, lw=1.5)
        for i in autofocus_frames[1:]:
            ax.axvline(i - 0.5, color="green", alpha=0.4, ls=":")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].legend(loc="upper left", fontsize=8)
    axes[0].set_title(f"focuswatch demo: {result.n_refocus} refocus request(s) (red), "
                      f"{max(len(autofocus_frames) - 1, 0)} autofocus run(s) (green)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _worst_cause(index: int, rows: list, autofocus_frames: list[int]) -> str:
    """Why the worst kept frame was off: a filter change not yet refocused, or drift."""
    last = None
    for p, t in rows:
        if t and t["index"] <= index and p.decision is not None and p.decision.decision == "refocus":
            last = (t["index"], p.decision.rules)
    if last and "filter_change" in last[1] and not any(last[0] < a <= index for a in autofocus_frames):
        return f"the filter change at frame {last[0]}, waiting for its autofocus"
    return "thermal drift"


def summary_table(result: DemoResult) -> str:
    """The human summary printed at the end of ``focuswatch demo``."""
    lines = [f"frames           {result.n_measured} of {result.n_frames} measured in {result.elapsed_s:.0f} s",
             f"refocus requests {result.n_refocus} at frames {result.refocus_frames} "
             f"({', '.join(f'{k}: {v}' for k, v in result.refocus_rules.items()) or 'none'})",
             f"false requests   {len(result.false_refocus_frames)} (image rules while the true defocus was under "
             f"0.25 CFZ){' at frames ' + str(result.false_refocus_frames) if result.false_refocus_frames else ''}",
             f"autofocus runs   {max(result.n_autofocus - 1, 0)} before frames {result.autofocus_frames[1:]} "
             f"(plus the one at dusk)",
             f"set aside        {sum(result.skip_reasons.values())} "
             f"({', '.join(f'{k}: {v}' for k, v in result.skip_reasons.items()) or 'none'})"]
    if result.max_true_defocus_cfz_kept is not None:
        lines.append(f"worst true defocus on kept frames {result.max_true_defocus_cfz_kept:.2f} CFZ "
                     f"(0.50 = edge of the zone), frame {result.worst_kept_frame}: {result.worst_kept_cause}")
    lines += [f"timeline         {result.png}" if result.png else "timeline         (not drawn)",
              f"frames, journal  {result.folder}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the per-frame table

#: Width of one table line (fits a 120-column terminal with room to spare).
TABLE_WIDTH = 118


def table_header() -> str:
    """Column heads of :func:`frame_row` (units in the heads, not in every cell)."""
    return (f"{'#':>3} {'UTC':>5} {'filt':<4} {'stars':>5} {'HFR px':>6} {'defoc µm':>8} {'CFZ':>5} "
            f"{'trend µm':>8} {'true µm':>7}  {'decision':<8} why")


def _short_why(d: Any) -> str:
    """The rules that fired, the veto that set the frame aside, or the rules a veto held."""
    if d.decision in ("refocus", "skip") and d.rules:
        return ", ".join(d.rules)
    if d.held:
        return "held: " + ", ".join(d.held)
    return ""


def frame_row(p: Processed, truth: dict[str, Any] | None, *, verbose: bool = False) -> str:
    """One line per frame for ``focuswatch demo`` (at most :data:`TABLE_WIDTH` characters).

    ``verbose`` adds the policy's full reasons on the following line(s), indented.
    """
    from datetime import datetime, timezone

    def num(v: Any, spec: str, width: int) -> str:
        return format(v, spec).rjust(width) if v is not None else "—".rjust(width)

    idx = truth["index"] if truth else None
    d = p.decision
    if d is None:
        head = f"{num(idx, 'd', 3)} {'':>5} {'':<4} {'':>5} {'':>6} {'':>8} {'':>5} {'':>8} {'':>7}  {'skip':<8} "
        return (head + (p.error or "calibration frame (ignored)"))[:TABLE_WIDTH]
    when = datetime.fromtimestamp(d.time_s, tz=timezone.utc).strftime("%H:%M") if d.time_s else "—"
    true_um = truth.get("defocus_um") if truth else None
    line = (f"{num(idx, 'd', 3)} {when:>5} {(d.filter_name or '-')[:4]:<4} {num(d.n_stars, 'd', 5)} "
            f"{num(d.hfr_px, '.2f', 6)} {num(d.defocus_um, '.0f', 8)} {num(d.defocus_cfz, '.2f', 5)} "
            f"{num(d.model_defocus_um, '.0f', 8)} {num(true_um, '+.0f', 7)}  {d.decision:<8} ")
    line = (line + _short_why(d))[:TABLE_WIDTH]
    if verbose and d.reasons:
        line += "".join(f"\n      {r}" for r in d.reasons)
    return line
