"""The ``[watch]`` and ``[policy]`` tables as validated settings, and where NINA keeps its reports.

Every tuned number of the folder watcher (poll interval, how long an unproven file must stay
still, how long a NINA autofocus waits for its confirming frame...) is a field of
:class:`WatchConfig`; command-line flags override it in :class:`~focuswatch.watch.watcher.Watcher`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from focuswatch.config import Config
from focuswatch.policy import PolicyConfig
from focuswatch.watch.readiness import ReadinessConfig


def default_nina_autofocus_dir(environ: dict[str, str] | None = None, platform: str | None = None) -> Path | None:
    """NINA's autofocus report folder (``%LOCALAPPDATA%\\NINA\\AutoFocus``); ``None`` off Windows."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if not plat.startswith("win") or not env.get("LOCALAPPDATA"):
        return None
    return Path(env["LOCALAPPDATA"]) / "NINA" / "AutoFocus"


def policy_from_config(cfg: Config) -> PolicyConfig:
    """The ``[policy]`` table as a validated :class:`PolicyConfig` (errors name the file)."""
    from focuswatch.config import validate_section

    return validate_section("policy", cfg.policy, cfg.path)


@dataclass(frozen=True)
class WatchConfig:
    """The ``[watch]`` table: how the watcher looks at the folder (command-line flags win).

    Attributes
    ----------
    recursive, poll
        Watch sub-folders; poll instead of OS file events (network shares).
    poll_interval_s
        Seconds between two passes of the worker (and of the polling observer).
    rescan_interval_s
        Seconds between two rescans for frames whose OS event was lost (0: never).
    settle_polls
        Polls of unchanged size a *proven* complete frame must also wait (0: measure at once).
    stable_s
        How long a frame that cannot prove it is whole (pre-allocated, zero tail, no
        checksum) must keep its size, time and content before it is read.
    checksum_grace_s, stuck_after_s, give_up_s
        See :class:`~focuswatch.watch.readiness.ReadinessConfig`.
    order_hold_s
        A ready frame waits at most this long for an earlier frame still being written.
    burst_quiet_s
        When several new files arrive together (a copy, a catch-up after a restart), the
        proven ones wait until no new file arrived for this long, then go in capture order.
        A lone frame (live capture) is measured the moment it is proven whole.
    diagnose
        Ask the single-frame diagnosis before the policy.
    af_folder
        NINA's autofocus report folder ("" = the default on Windows, none elsewhere).
    af_confirm_frames
        A NINA autofocus (a new report, an ``autofocus-done`` hook) counts only once the next
        light frame confirms it (:mod:`focuswatch.policy.afconfirm`); after this many light frames
        that cannot tell (another filter, FOCPOS near neither focus point) it is given up:
        not counted, the baseline and the refocus request stay.
    af_same_run_s
        NINA signals (report, hook event, the Advanced API's AUTOFOCUS-FINISHED) this close
        in time belong to the same autofocus run.
    af_tolerance_steps
        FOCPOS within this many steps of a focus point is "at" it (grows to half the run's
        step between measure points when that is larger).
    """

    recursive: bool = True
    poll: bool = False
    poll_interval_s: float = field(default=0.5, metadata={"range": (0.01, 60.0)})
    rescan_interval_s: float = field(default=10.0, metadata={"range": (0.0, 86400.0)})
    settle_polls: int = field(default=0, metadata={"range": (0, 100)})
    stable_s: float = field(default=2.0, metadata={"range": (0.0, 3600.0)})
    checksum_grace_s: float = field(default=3.0, metadata={"range": (0.0, 3600.0)})
    stuck_after_s: float = field(default=120.0, metadata={"range": (1.0, 86400.0)})
    give_up_s: float = field(default=300.0, metadata={"range": (1.0, 86400.0)})
    order_hold_s: float = field(default=10.0, metadata={"range": (0.0, 3600.0)})
    burst_quiet_s: float = field(default=0.5, metadata={"range": (0.0, 60.0)})
    diagnose: bool = True
    af_folder: str = ""
    af_confirm_frames: int = field(default=3, metadata={"range": (1, 1000)})
    af_same_run_s: float = field(default=120.0, metadata={"range": (0.0, 3600.0)})
    af_tolerance_steps: float = field(default=3.0, metadata={"range": (0.0, 1.0e6)})

    def readiness(self) -> ReadinessConfig:
        return ReadinessConfig(settle_polls=self.settle_polls, stable_s=self.stable_s,
                               checksum_grace_s=self.checksum_grace_s, stuck_after_s=self.stuck_after_s,
                               give_up_s=self.give_up_s)


def watch_from_config(cfg: Config) -> WatchConfig:
    """The ``[watch]`` table as a validated :class:`WatchConfig` (errors name the file)."""
    from focuswatch.config import validate_section

    return validate_section("watch", cfg.watch, cfg.path)
