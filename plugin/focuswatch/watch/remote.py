"""Remote mode: watch NINA through its Advanced API, from another machine, without a shared folder.

``focuswatch watch --nina-api HOST[:PORT]`` runs the same refocus policy
(:class:`focuswatch.policy.Monitor`) on NINA's own figures: every ``IMAGE-SAVE`` event becomes
an HFR-only record (:class:`~focuswatch.policy.HfrRecord`, ``hfr_kind = "nina"``:
NINA's HFR is its flux-weighted mean radius; star count, filter, exposure; no profile shape,
no focuser temperature — NINA's event carries the *camera* temperature, which says nothing
about focus, so the temperature rule stays quiet). Refocus
requests go out through the configured ``[trigger]``s, normally the Advanced API's own
autofocus call on the same host. ``AUTOFOCUS-STARTING`` holds requests while NINA focuses;
``AUTOFOCUS-FINISHED`` (sent only for successful runs) resets the baseline and answers the
request; a failed run sends nothing, so the baseline and the request stay.

After a (re)connect the night so far is read back with ``/v2/api/image-history?all=true``
and fed to the policy without firing anything, so a restart continues where NINA is.
``replay`` of a saved image-history JSON runs the same path offline.

This module only wires the event source, the policy and the triggers together and returns data; the decisions
stay in :mod:`focuswatch.policy`, and what the user sees (lines, ``--json``) is
:mod:`focuswatch.cli.cmd_watch`'s.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from focuswatch.policy import AutofocusMark, Decision, FrameRecord, HfrRecord, Monitor, PolicyConfig
from focuswatch.watch.nina_events import (AutofocusFinished, AutofocusPointAdded, AutofocusStarting, ImageSaved,
                                    NinaEventSource, SourceStatus, image_history, load_image_history)

log = logging.getLogger("focuswatch.watch.remote")



def hfr_record_from_image(ev: ImageSaved, index: int = 0) -> HfrRecord:
    """The policy's HFR-only view of one NINA image (:class:`~focuswatch.policy.HfrRecord`).

    ``file`` is NINA's base file name (``image-<index>`` when NINA sent none); ``hfr_px`` is
    NINA's HFR — its flux-weighted mean radius, so ``hfr_kind = "nina"`` (the policy compares
    it with the rig's expected size accordingly); 0 or no HFR (no stars) → ``None``, the
    policy skips the frame. No profile witness, no focuser temperature (NINA's event carries
    the camera's), no airmass.
    """
    hfr = ev.hfr_px if ev.hfr_px is not None and ev.hfr_px > 0 else None
    return HfrRecord(file=ev.filename or f"image-{index}", time_s=ev.time_s or 0.0, hfr_px=hfr,
                     n_stars=ev.n_stars, hfr_stdev_px=ev.hfr_sd_px, filter_name=ev.filter_name,
                     exposure_s=ev.exposure_s, image_type=ev.image_type or "LIGHT", hfr_kind="nina")


def record_from_image(ev: ImageSaved, index: int = 0) -> FrameRecord:
    """The :class:`FrameRecord` ``Monitor.observe`` takes, from :func:`hfr_record_from_image`
    (``hfr_kind = "nina"``, no ``profile_ratio``, no ``temp_c``)."""
    return hfr_record_from_image(ev, index).to_frame_record()


@dataclass
class RemoteSession:
    """The policy fed by NINA's events; triggers fired through ``runner`` (``None``: decide only).

    Call :meth:`handle` with every event (live or from the history); ``fire=False`` replays
    without triggering. Callbacks: ``on_decision(record, decision)``, ``on_trigger(result)``,
    ``on_autofocus(mark)``, ``on_status(SourceStatus)``.

    The triggers run off the event loop (:class:`~focuswatch.triggers.runner.BackgroundTriggers`,
    an overall deadline per attempt): a slow NINA answering the autofocus call never delays
    the next event. Results come back through :meth:`poll`; :meth:`close` stops the worker.
    ``background_triggers=False`` runs them in line (tests stepping a fake runner).
    """

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    rig: Any = None
    runner: Any = None
    on_decision: Callable[[FrameRecord, Decision], None] | None = None
    on_trigger: Callable[[Any], None] | None = None
    on_autofocus: Callable[[AutofocusMark], None] | None = None
    on_status: Callable[[SourceStatus], None] | None = None
    background_triggers: bool = True

    def __post_init__(self) -> None:
        if self.runner is not None and self.background_triggers and not hasattr(self.runner, "close"):
            from focuswatch.triggers.runner import BackgroundTriggers

            self.runner = BackgroundTriggers(self.runner)
        self.monitor = Monitor(self.policy, self.rig)
        self.decisions: list[Decision] = []
        self._seen: set[tuple[str | None, str | None]] = set()
        self.n_images = 0

    def handle(self, ev: Any, *, fire: bool = True, now: float | None = None) -> Decision | None:
        if isinstance(ev, ImageSaved):
            key = (ev.filename, ev.time)
            if key in self._seen:
                return None  # the history repeats what the socket already delivered
            self._seen.add(key)
            self.n_images += 1
            if not ev.is_light:
                return None
            rec = record_from_image(ev, self.n_images)
            d = self.monitor.observe(rec)
            self.decisions.append(d)
            if self.on_decision:
                self.on_decision(rec, d)
            if fire and d.decision == "refocus" and self.runner is not None:
                from focuswatch.triggers import TriggerRequest

                req = TriggerRequest(reason="; ".join(d.reasons), time=ev.time or "", filter_name=rec.filter_name,
                                     hfr_px=d.hfr_px, defocus_um=d.defocus_um, defocus_cfz=d.defocus_cfz,
                                     frame_file=rec.file)
                for res in self.runner.request(req, time.monotonic() if now is None else now):
                    if self.on_trigger:
                        self.on_trigger(res)
            return d
        if isinstance(ev, AutofocusStarting):
            self.monitor.autofocus_started()
        elif isinstance(ev, AutofocusFinished):
            from datetime import datetime

            mark = AutofocusMark(time_s=datetime.fromisoformat(ev.time).timestamp(), source="nina-api")
            self.monitor.autofocus(mark)
            if self.runner is not None:
                self.runner.resolve()
            if self.on_autofocus:
                self.on_autofocus(mark)
        elif isinstance(ev, SourceStatus) and self.on_status:
            self.on_status(ev)
        elif isinstance(ev, AutofocusPointAdded):
            log.debug("NINA autofocus point: position %s, HFR %s", ev.position, ev.hfr_px)
        return None

    def catch_up(self, images: Iterable[ImageSaved]) -> int:
        """Feed the night so far (oldest first) without firing; returns how many were new."""
        before = self.n_images
        for ev in sorted(images, key=lambda e: e.time_s or 0.0):
            self.handle(ev, fire=False)
        return self.n_images - before

    def poll(self, now: float | None = None) -> None:
        """Trigger results that finished, due retries (call every loop turn)."""
        if self.runner is None:
            return
        for res in self.runner.poll(time.monotonic() if now is None else now):
            if self.on_trigger:
                self.on_trigger(res)

    def close(self) -> None:
        """Stop the trigger worker (within seconds, whatever a trigger is doing)."""
        close = getattr(self.runner, "close", None)
        if close is not None:
            close()


def run_remote(host: str, port: int, session: RemoteSession, stop: threading.Event, *,
               max_s: float | None = None, history: Callable[[str, int], list[ImageSaved]] = image_history,
               source: NinaEventSource | None = None) -> None:
    """Listen to NINA until ``stop`` is set (or ``max_s`` passes), catching up after every connect."""
    src = source or NinaEventSource(host, port)
    end = None if max_s is None else time.monotonic() + max_s
    src.start()
    try:
        while not stop.is_set() and (end is None or time.monotonic() < end):
            ev = src.get(timeout_s=0.25)
            if ev is not None:
                session.handle(ev)
            if isinstance(ev, SourceStatus) and ev.connected:
                try:
                    n = session.catch_up(history(host, port))
                    log.info("caught up with %d image(s) from NINA's image history", n)
                except Exception as exc:  # noqa: BLE001 - the live events still work without the history
                    log.warning("could not read NINA's image history: %s", exc)
            session.poll()
    finally:
        src.stop()
        session.poll()          # results that finished meanwhile are still reported
        session.close()


def replay_history(path: str | Path, session: RemoteSession) -> list[tuple[ImageSaved, Decision | None]]:
    """Run a saved ``image-history`` JSON through the policy, firing nothing."""
    rows = []
    for ev in sorted(load_image_history(path), key=lambda e: e.time_s or 0.0):
        rows.append((ev, session.handle(ev, fire=False)))
    return rows


__all__ = ["hfr_record_from_image", "record_from_image", "RemoteSession", "run_remote", "replay_history"]
