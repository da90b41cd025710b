"""Triggers off the measuring path: a worker thread and an overall deadline per attempt.

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

import logging
import queue
import threading
import time
from typing import Any, Callable

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

