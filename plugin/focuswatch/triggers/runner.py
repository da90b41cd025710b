"""Running the triggers: :func:`build_triggers` from ``[trigger]``, :class:`TriggerRunner` (retries
with back-off, driven by an explicit ``now``), and :class:`BackgroundTriggers` (off the measuring
path: a worker thread and an overall deadline per attempt).

A NINA Advanced API that answers one byte per second froze the first watcher: a socket
timeout restarts at every byte, so a request never timed out, no frame was measured and
Ctrl-C went unheard (issue 10). Here:

* :class:`BackgroundTriggers` wraps a :class:`~focuswatch.triggers.TriggerRunner` and runs
  it in one daemon thread. The watcher's ``request`` / ``poll`` / ``resolve`` calls only
  post messages and collect finished results: measuring never waits for a trigger.
* Every attempt runs under an **overall deadline** (:class:`DeadlineTrigger`): connect plus
  read, measured from the start of the attempt. Past it the attempt counts as a failure
  ("no answer within N s") and is retried by the runner's back-off; the late thread is
  abandoned (daemon) and its result dropped.
* :func:`focuswatch.triggers.read_before` reads an HTTP body against a deadline, so the NINA trigger's own
  thread also ends instead of trickling on.
* :meth:`BackgroundTriggers.close` returns within ``join_s`` whatever a trigger is doing:
  stop and Ctrl-C end the watcher within a few seconds.

Time comes from the ``clock`` passed in (``time.monotonic`` by default).
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from focuswatch.triggers.base import Trigger, TriggerConfig, TriggerRequest, TriggerResult
from focuswatch.triggers.command import CommandTrigger
from focuswatch.triggers.ekos import EkosDbusTrigger
from focuswatch.triggers.nina_api import NinaApiTrigger

log = logging.getLogger("focuswatch.triggers")

#: Extra seconds an attempt gets beyond its trigger's own ``timeout_s`` budget.
DEADLINE_MARGIN_S = 1.0
#: Requests one attempt may make (NINA: focuser, sequence and camera checks, then the autofocus).
REQUESTS_PER_ATTEMPT = 4
#: After the deadline the worker waits this much longer for the trigger's own (better worded) failure.
GRACE_S = 0.5


def attempt_deadline_s(trigger: Any) -> float:
    """The overall deadline of one attempt of ``trigger``: its requests' budgets plus a margin.

    A command trigger's budget is its run time (``timeout_s``, killed after it); a network
    trigger may make :data:`REQUESTS_PER_ATTEMPT` requests of ``timeout_s`` each.
    """
    own = getattr(trigger, "deadline_s", None)
    if own:
        return float(own)
    per = float(getattr(trigger, "timeout_s", 5.0) or 5.0)
    n = 1 if getattr(trigger, "name", "") == "command" else REQUESTS_PER_ATTEMPT
    return n * per + DEADLINE_MARGIN_S


class DeadlineTrigger:
    """A trigger whose :meth:`fire` returns within ``deadline_s``, whatever the remote does."""

    def __init__(self, inner: Any, deadline_s: float | None = None):
        import inspect

        self.inner = inner
        self.name = getattr(inner, "name", "trigger")
        self.deadline_s = float(deadline_s if deadline_s is not None else attempt_deadline_s(inner))
        try:
            self._takes_deadline = "deadline" in inspect.signature(inner.fire).parameters
        except (TypeError, ValueError):
            self._takes_deadline = False

    def __getattr__(self, item: str) -> Any:
        return getattr(self.inner, item)

    def __call__(self, request: Any, *, deadline: float | None = None) -> Any:
        return self.fire(request, deadline=deadline)

    def fire(self, request: Any, *, deadline: float | None = None) -> Any:
        """Fire ``inner`` in a thread; give up waiting at the overall deadline.

        The deadline (``deadline_s`` from now, or the caller's if sooner) is also handed to
        the trigger, which cuts its own waits to it (``Trigger.fire(deadline=...)``), so the
        abandoned thread ends soon after too.
        """
        box: dict[str, Any] = {}
        done = threading.Event()
        own = time.monotonic() + self.deadline_s
        dl = own if deadline is None else min(own, deadline)

        def work() -> None:
            try:
                box["result"] = self.inner.fire(request, deadline=dl) if self._takes_deadline \
                    else self.inner.fire(request)
            except BaseException as exc:  # noqa: BLE001 - fire() should not raise; never kill the worker
                box["error"] = exc
            finally:
                done.set()

        t0 = time.monotonic()
        threading.Thread(target=work, name=f"focuswatch-{self.name}", daemon=True).start()
        if not done.wait(max(0.0, dl - t0) + GRACE_S):
            from focuswatch.triggers import TriggerResult

            log.warning("%s: no answer within the overall deadline of %.3g s; the attempt is abandoned",
                        self.name, self.deadline_s)
            return TriggerResult(self.name, False, f"{self.name}: no complete answer within {self.deadline_s:g} s "
                                 "(connect + read, overall deadline); will retry", retryable=True,
                                 detail={"deadline_s": self.deadline_s}, elapsed_s=round(time.monotonic() - t0, 3))
        if "error" in box:
            from focuswatch.triggers import TriggerResult

            return TriggerResult(self.name, False, f"{self.name}: unexpected error: {box['error']!r}")
        return box["result"]


class BackgroundTriggers:
    """Run a :class:`~focuswatch.triggers.TriggerRunner` in a worker thread.

    Same calls as the runner (``request``, ``poll``, ``resolve``, ``active``), but
    ``request`` and ``poll`` never block: they return the results that finished since the
    last call. Each trigger is wrapped in a :class:`DeadlineTrigger`.
    """

    def __init__(self, runner: Any, *, clock: Callable[[], float] = time.monotonic, tick_s: float = 0.1,
                 deadline_s: float | None = None):
        self.runner = runner
        runner.triggers = [t if isinstance(t, DeadlineTrigger) else DeadlineTrigger(t, deadline_s)
                           for t in runner.triggers]
        self.clock = clock
        self.tick_s = tick_s
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._results: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="focuswatch-triggers", daemon=True)
        self._thread.start()

    # ---- the watcher's side
    @property
    def triggers(self) -> list[Any]:
        return self.runner.triggers

    @property
    def active(self) -> bool:
        return bool(self.runner.active) or not self._inbox.empty()

    def request(self, request: Any, now: float | None = None) -> list[Any]:
        """Queue a refocus request; returns results finished so far (never waits)."""
        self._inbox.put(("request", request))
        return self._drain()

    def poll(self, now: float | None = None) -> list[Any]:
        """Results that finished since the last call (retries run in the worker)."""
        return self._drain()

    def resolve(self) -> None:
        """The refocus happened: stop the retries (in the worker, in order with requests)."""
        self._inbox.put(("resolve", None))

    def close(self, join_s: float = 2.0) -> None:
        """Stop the worker; returns within ``join_s`` even while an attempt hangs."""
        self._stop.set()
        self._inbox.put(("stop", None))
        self._thread.join(join_s)

    def _drain(self) -> list[Any]:
        out = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    # ---- the worker
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                kind, item = self._inbox.get(timeout=self.tick_s)
            except queue.Empty:
                kind, item = "tick", None
            try:
                if kind == "stop":
                    return
                with self._lock:
                    if kind == "request":
                        results = self.runner.request(item, self.clock())
                    elif kind == "resolve":
                        self.runner.resolve()
                        results = []
                    else:
                        results = []
                    if not self._stop.is_set():
                        results += self.runner.poll(self.clock())
                for r in results:
                    self._results.put(r)
            except Exception:  # noqa: BLE001 - the worker must outlive any trigger bug
                log.exception("trigger worker: unexpected error (the watcher goes on)")


def build_triggers(config: TriggerConfig | Mapping[str, Any] | None) -> list[Trigger]:
    """The triggers ``config`` switches on, in a fixed order (NINA, Ekos, command).

    Accepts the frozen :class:`TriggerConfig` or the raw ``[trigger]`` table (validated here,
    raising :class:`ConfigError` naming ``[trigger] key``). An empty list is fine: the state
    file alone then carries the request.
    """
    if config is None or isinstance(config, Mapping):
        config = TriggerConfig.from_mapping(config or {})
    out: list[Trigger] = []
    if config.nina_api:
        out.append(NinaApiTrigger(config.nina_host, config.nina_port, timeout_s=config.timeout_s,
                                  check_camera=config.nina_check_camera,
                                  check_sequence=config.nina_check_sequence,
                                  check_focuser=config.nina_check_focuser))
    if config.ekos_dbus:
        out.append(EkosDbusTrigger(config.ekos_train, bus_address=config.ekos_bus_address,
                                   timeout_s=config.timeout_s, confirm_s=config.ekos_confirm_s))
    if config.command:
        out.append(CommandTrigger(config.command, timeout_s=config.command_timeout_s))
    return out


# --------------------------------------------------------------------------- retries

@dataclass(frozen=True)
class PendingTrigger:
    """A trigger still owed a success for the current request (read-only view)."""

    trigger: str
    n_attempts: int
    next_at: float | None
    gave_up: bool
    last_message: str


def backoff_s(n_failures: int, *, initial_s: float, max_s: float, factor: float = 2.0) -> float:
    """Seconds to wait after the ``n_failures``-th failure: ``initial_s * factor**(n-1)``, capped.

    >>> [backoff_s(n, initial_s=30, max_s=200) for n in (1, 2, 3, 4)]
    [30.0, 60.0, 120.0, 200.0]
    """
    if n_failures < 1:
        return 0.0
    try:
        delay = initial_s * factor ** (n_failures - 1)
    except OverflowError:
        delay = max_s
    return float(min(delay, max_s))


class TriggerRunner:
    """Fires the configured triggers for a refocus request and retries the failures.

    Time is whatever the caller says it is (``now``, seconds on any monotonic clock), so the
    watcher drives it from its loop and tests step through a night without sleeping.

    Typical use in the watcher::

        runner = TriggerRunner.from_config(trigger_config)
        ...
        if decision.refocus:                       # new request
            results = runner.request(TriggerRequest(reason), now=time.monotonic())
        results += runner.poll(now=time.monotonic())   # every loop turn: due retries
        if autofocus_seen:                          # autofocus-done / NINA report / Ekos
            runner.resolve()

    A request while one is pending does not fire again at once: it updates the request and
    keeps the back-off schedule (no hammering a NINA that is down); after a success or a give-up
    the trigger stays quiet for ``retry_max_s`` unless :meth:`resolve` is called. After ``max_attempts``
    failures (or a failure that is not retryable) the trigger gives up for this request; the
    state file still says a refocus is due, so in-sequence hooks can act on it.

    Parameters
    ----------
    triggers
        What to fire.
    retry_initial_s, retry_max_s, retry_factor, max_attempts
        See :class:`TriggerConfig`.
    on_result
        Called with every :class:`TriggerResult` (for the journal); its exceptions are logged
        and swallowed.
    """

    def __init__(self, triggers: Iterable[Trigger], *, retry_initial_s: float = 30.0, retry_max_s: float = 600.0,
                 retry_factor: float = 2.0, max_attempts: int = 5,
                 on_result: Callable[[TriggerResult], None] | None = None):
        self.triggers = list(triggers)
        self.retry_initial_s, self.retry_max_s = float(retry_initial_s), float(retry_max_s)
        self.retry_factor, self.max_attempts = float(retry_factor), int(max_attempts)
        self.on_result = on_result
        self.request_: TriggerRequest | None = None
        # per trigger index: [n_attempts, next_at or None (done), gave_up, last_message, last_attempt_at]
        self._slots: dict[int, list[Any]] = {}

    @classmethod
    def from_config(cls, config: TriggerConfig | Mapping[str, Any] | None,
                    on_result: Callable[[TriggerResult], None] | None = None) -> "TriggerRunner":
        """Runner with :func:`build_triggers` and the config's retry settings."""
        if config is None or isinstance(config, Mapping):
            config = TriggerConfig.from_mapping(config or {})
        return cls(build_triggers(config), retry_initial_s=config.retry_initial_s,
                   retry_max_s=config.retry_max_s, retry_factor=config.retry_factor,
                   max_attempts=config.max_attempts, on_result=on_result)

    # ---- state
    @property
    def active(self) -> bool:
        """True while some trigger still owes a success (retry scheduled)."""
        return any(s[1] is not None for s in self._slots.values())

    @property
    def pending(self) -> list[PendingTrigger]:
        return [PendingTrigger(self.triggers[i].name, s[0], s[1], s[2], s[3]) for i, s in sorted(self._slots.items())
                if s[1] is not None or s[2]]

    def next_due(self) -> float | None:
        """The earliest ``now`` at which :meth:`poll` has work, or ``None``."""
        times = [s[1] for s in self._slots.values() if s[1] is not None]
        return min(times) if times else None

    def backoff_s(self, n_failures: int) -> float:
        return backoff_s(n_failures, initial_s=self.retry_initial_s, max_s=self.retry_max_s,
                         factor=self.retry_factor)

    # ---- actions
    def request(self, request: TriggerRequest, now: float) -> list[TriggerResult]:
        """A refocus is due: fire every trigger that is not already busy with this request.

        Safe to call on every frame while the refocus stays due: a trigger waiting for a retry
        keeps its back-off, and one that succeeded or gave up is left alone for ``retry_max_s``
        after its last attempt (an autofocus takes minutes, and NINA's API would cancel a running
        one to start another). After that quiet time a still-standing request fires afresh — the
        autofocus evidently did not happen or was never reported. :meth:`resolve` re-arms at once.
        """
        self.request_ = request
        results = []
        for i in range(len(self.triggers)):
            slot = self._slots.get(i)
            if slot is not None:
                if slot[1] is not None:
                    continue  # a retry is scheduled: keep the back-off
                if now - slot[4] < self.retry_max_s:
                    continue  # succeeded or gave up recently: give the autofocus time to be reported
            self._slots[i] = [0, now, False, "", now]
            results.append(self._attempt(i, now))
        return results

    def poll(self, now: float) -> list[TriggerResult]:
        """Retry every trigger whose back-off has expired at ``now``."""
        if self.request_ is None:
            return []
        return [self._attempt(i, now) for i, s in sorted(self._slots.items()) if s[1] is not None and s[1] <= now]

    def resolve(self) -> None:
        """The refocus happened (or is no longer wanted): stop all retries."""
        self._slots.clear()
        self.request_ = None

    def _attempt(self, i: int, now: float) -> TriggerResult:
        trig, slot = self.triggers[i], self._slots[i]
        assert self.request_ is not None
        result = trig.fire(self.request_)
        slot[0] += 1
        slot[4] = now
        n = slot[0]
        if result.ok:
            slot[1], slot[2] = None, False
            result = dataclasses.replace(result, n_attempts=n, next_retry_s=None)
            log.info("%s: %s", trig.name, result.message)
        elif not result.retryable or (self.max_attempts and n >= self.max_attempts):
            slot[1], slot[2] = None, True
            why = "not retryable" if not result.retryable else f"after {n} attempt{'s' if n > 1 else ''}"
            result = dataclasses.replace(result, n_attempts=n, next_retry_s=None, gave_up=True)
            log.error("%s failed, giving up (%s): %s — `focuswatch check` still reports the refocus",
                      trig.name, why, result.message)
        else:
            delay = self.backoff_s(n)
            slot[1] = now + delay
            result = dataclasses.replace(result, n_attempts=n, next_retry_s=delay)
            log.warning("%s failed (attempt %d), retrying in %.0f s: %s", trig.name, n, delay, result.message)
        slot[3] = result.message
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:  # a journal problem must not stop the triggers
                log.exception("recording the %s trigger result failed", trig.name)
        return result
