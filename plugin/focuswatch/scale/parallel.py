"""Run one per-frame function over many frames: on all local cores, or on a Dask cluster.

I/O and process management only; the per-frame work is any *top-level, picklable* function
``func(path, *args)`` (for example :func:`focuswatch.scale.batch.measure_one`). Why processes:
sep holds the GIL while it extracts, so threads do not help; one process per core does.

One interface, two engines:

==========================  ===========================================================
engine                      when
==========================  ===========================================================
inline (this process)       one worker or one frame: no start-up cost at all
local process pool          ``workers`` > 1 (default: the cores this process may use)
Dask distributed            ``scheduler="tcp://HOST:PORT"``; workers read the frames by
                            path from a share they all see, so no pixels travel through
                            the scheduler (only the path goes out, the small result back)
==========================  ===========================================================

What can go wrong, and what happens:

- a bad frame (``func`` raises): reported as ``bad`` with one line, never aborts the batch;
- a worker process dies (killed, out of memory, a crash in C): the frames it may have been
  working on are run again **one at a time**, so the frame that kills a worker is named
  exactly; it is retried ``retries`` times, then reported as ``lost`` (left undone);
  on Dask the scheduler itself reschedules it (``distributed.scheduler.allowed-failures``)
  and a ``KilledWorker`` becomes ``lost``;
- the scheduler goes away: every frame not yet back is reported ``lost`` with the reason;
  whatever came back before is kept (the archive index has already stored it).

Results come back in capture order (DATE-OBS, then file name) from :func:`map_frames`;
:func:`iter_frames` yields them as they complete, for callers that store as they go.
"""
from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from focuswatch.errors import ConfigError, FocuswatchError, FrameError

log = logging.getLogger("focuswatch.scale.parallel")

#: Environment variable naming a Dask scheduler (``tcp://HOST:PORT``) for every batch command.
SCHEDULER_ENV = "FOCUSWATCH_SCHEDULER"


@dataclass(frozen=True)
class ScaleConfig:
    """The ``[scale]`` table of the TOML file.

    ``workers``: local processes (``None`` = the cores available); ``scheduler``: a Dask
    scheduler address; ``retries``: how often a frame whose worker died is run again;
    ``connect_timeout_s``: how long to wait for the scheduler; ``lost_after_s``: how long
    the scheduler may stay unreachable mid-run before the frames still out are reported.
    """

    workers: int | None = None
    scheduler: str | None = None
    retries: int = 1
    connect_timeout_s: float = 10.0
    lost_after_s: float = 10.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"[scale] workers = {self.workers}: must be 1 or more")
        if self.retries < 0:
            raise ConfigError(f"[scale] retries = {self.retries}: must be 0 or more")
        if self.scheduler is not None:
            check_scheduler_address(self.scheduler, "[scale] scheduler")


def check_scheduler_address(address: str, what: str) -> str:
    """Accept ``tcp://HOST:PORT`` (or ``tls://``, ``ws://``, ``wss://``, ``inproc://``)."""
    a = address.strip()
    scheme, sep, rest = a.partition("://")
    if not sep or scheme not in ("tcp", "tls", "ws", "wss", "inproc") or not rest:
        raise ConfigError(f"{what} {address!r}: expected a Dask scheduler address like tcp://HOST:8786")
    return a


def available_cores() -> int:
    """The cores this process may run on (CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Runner:
    """Where per-frame work runs. ``workers=None`` means the cores available."""

    workers: int | None = None
    scheduler: str | None = None
    retries: int = 1
    connect_timeout_s: float = 10.0
    lost_after_s: float = 10.0

    @property
    def n_workers(self) -> int:
        return self.workers if self.workers else available_cores()

    def describe(self) -> str:
        if self.scheduler:
            return f"Dask scheduler {self.scheduler}"
        n = self.n_workers
        return "1 process" if n == 1 else f"{n} local processes"

    @classmethod
    def resolve(cls, *, workers: int | None = None, scheduler: str | None = None,
                config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> "Runner":
        """Command-line values first, then ``FOCUSWATCH_SCHEDULER``, then the ``[scale]`` table.

        ``--workers`` given without ``--scheduler`` means a local run even when the
        environment or the file names a scheduler (the explicit flag wins).
        """
        from focuswatch.config import section_to_dataclass

        cfg = section_to_dataclass(ScaleConfig, config or {}, "scale")
        env = os.environ if environ is None else environ
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: must be 1 or more")
        if scheduler is not None:
            sched: str | None = check_scheduler_address(scheduler, "--scheduler")
        elif workers is not None:
            sched = None
        elif env.get(SCHEDULER_ENV, "").strip():
            sched = check_scheduler_address(env[SCHEDULER_ENV], SCHEDULER_ENV)
        else:
            sched = cfg.scheduler
        return cls(workers=workers if workers is not None else cfg.workers, scheduler=sched,
                   retries=cfg.retries, connect_timeout_s=cfg.connect_timeout_s, lost_after_s=cfg.lost_after_s)


# --------------------------------------------------------------------------- outcomes

OK, BAD, LOST = "ok", "bad", "lost"


@dataclass(frozen=True)
class Outcome:
    """What became of one frame.

    ``status``: ``ok`` (``value`` holds the result), ``bad`` (the frame itself is bad:
    ``problem`` says why; skipping it is final) or ``lost`` (the work was not done: a
    worker died on it ``retries + 1`` times, the scheduler went away, or the run was
    interrupted; a rerun may succeed). ``index`` is the position in the input.
    """

    index: int
    path: Path
    status: str
    value: Any = None
    problem: str | None = None
    attempts: int = 1


@dataclass
class Batch:
    """Every frame's outcome: ``done`` in capture order, ``bad`` and ``lost`` in input order."""

    done: list[Outcome] = field(default_factory=list)
    bad: list[Outcome] = field(default_factory=list)
    lost: list[Outcome] = field(default_factory=list)
    engine: str = ""
    elapsed_s: float = 0.0

    @property
    def values(self) -> list[Any]:
        return [o.value for o in self.done]

    def undone_text(self) -> str | None:
        """One line saying what was left undone, or ``None`` when everything ran."""
        if not self.lost:
            return None
        first = self.lost[0]
        more = f" (first: {first.path}: {first.problem})"
        return f"{len(self.lost)} frame(s) left undone{more}; run the command again to finish them"


def _call(func: Callable[..., Any], path: Path, args: tuple) -> tuple[str, Any]:
    """Run ``func(path, *args)`` in a worker; a bad frame becomes a value, never an exception.

    Why not let the exception travel: exceptions with custom constructors (``FrameError``)
    do not survive pickling back from a process, and one bad frame must not look like a
    broken worker.
    """
    from focuswatch.boundary import guarded

    try:  # the one frame boundary words every failure (focuswatch.boundary)
        return OK, guarded(path, func, path, *args)
    except FrameError as exc:
        return BAD, exc.problem or str(exc)
    except FocuswatchError as exc:  # a settings problem met while measuring: said once per frame
        return BAD, str(exc)


def _call_path(path: Path, func: Callable[..., Any], args: tuple) -> tuple[str, Any]:
    """:func:`_call` with the path first (``Client.map`` maps over the first argument)."""
    return _call(func, path, args)


# --------------------------------------------------------------------------- engines

def _mp_context():
    """``fork`` on Linux when this process has a single thread (fast: nothing re-imported),
    else ``forkserver`` (forking a threaded process can deadlock); ``spawn`` elsewhere."""
    import multiprocessing as mp

    if sys.platform.startswith("linux"):
        # tqdm's monitor thread only sleeps and reads: it does not make forking unsafe
        others = [t for t in threading.enumerate()
                  if t is not threading.main_thread() and type(t).__name__ != "TMonitor"]
        method = "fork" if not others else "forkserver"
        return mp.get_context(method)
    return mp.get_context("spawn")


def _iter_inline(func, items, args) -> Iterator[Outcome]:
    for i, p in enumerate(items):
        status, value = _call(func, p, args)
        yield Outcome(i, p, status, value if status == OK else None, None if status == OK else value)


def _terminate(pool) -> None:
    """Stop a process pool now (Ctrl-C, generator closed): cancel queued work, end workers."""
    procs = list(getattr(pool, "_processes", {}) .values()) if pool is not None else []
    try:
        pool.shutdown(wait=False, cancel_futures=True)
    except Exception:  # pragma: no cover - shutting down a broken pool
        pass
    for pr in procs:
        if pr.is_alive():
            pr.terminate()
    for pr in procs:
        pr.join(timeout=2.0)


def _collect(finished: dict[Any, int], items: Sequence[Path], deaths: dict[int, int],
             broken: list[int]) -> Iterator[Outcome]:
    """The outcomes of finished futures (future -> item index); the indices whose worker
    died (``BrokenProcessPool``) are appended to ``broken`` instead."""
    from concurrent.futures.process import BrokenProcessPool

    for fut, i in list(finished.items()):
        try:
            status, value = fut.result()
        except BrokenProcessPool:
            broken.append(i)
            continue
        yield Outcome(i, items[i], status, value if status == OK else None,
                      None if status == OK else value, deaths.get(i, 0) + 1)


def _iter_local(func, items: Sequence[Path], args: tuple, workers: int, retries: int) -> Iterator[Outcome]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = _mp_context()
    pending = deque(range(len(items)))
    quarantine: deque[int] = deque()  # frames that were out when a worker died: one at a time
    deaths: dict[int, int] = {}
    pool = None
    inflight: dict[Any, int] = {}
    window = 2 * workers  # a few queued per worker keeps them busy without queueing 10,000 paths
    try:
        while pending or quarantine or inflight:
            if pool is None:
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            if quarantine:
                if not inflight:
                    i = quarantine.popleft()
                    inflight[pool.submit(_call, func, items[i], args)] = i
            else:
                while pending and len(inflight) < window:
                    i = pending.popleft()
                    inflight[pool.submit(_call, func, items[i], args)] = i
            alone = len(inflight) == 1
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken: list[int] = []
            yield from _collect({fut: inflight.pop(fut) for fut in done}, items, deaths, broken)
            if not broken:
                continue
            # the pool is dead: every frame still out fails the same way; find out which did finish
            wait(list(inflight))
            yield from _collect(inflight, items, deaths, broken)
            inflight.clear()
            _terminate(pool)
            pool = None
            if alone and len(broken) == 1:  # it ran alone: it is the one that kills workers
                i = broken[0]
                deaths[i] = deaths.get(i, 0) + 1
                if deaths[i] > retries:
                    yield Outcome(i, items[i], LOST, None,
                                  f"a worker process died while measuring it ({deaths[i]} time(s)): "
                                  "out of memory (try fewer --workers) or a corrupt frame?", deaths[i])
                else:
                    log.warning("%s: a worker died measuring it; retrying", items[i])
                    quarantine.append(i)
            else:
                log.warning("a worker process died; re-running the %d frame(s) it may have held one by one",
                            len(broken))
                quarantine.extend(sorted(broken))
    except BaseException:
        _terminate(pool)
        pool = None
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _iter_dask(func, items: Sequence[Path], args: tuple, runner: Runner) -> Iterator[Outcome]:
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(f"--scheduler {runner.scheduler}: Dask is not installed; "
                          "install it with: pip install \"focuswatch[dask]\"") from None
    address = runner.scheduler
    try:
        client = Client(address, timeout=runner.connect_timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise FocuswatchError(f"scheduler {address}: cannot connect ({exc}); is `dask scheduler` running "
                              "and reachable from here?") from None
    futures: dict[Any, int] = {}
    try:
        # paths go out (a few bytes each), small results come back: no pixels through the scheduler
        from functools import partial

        task = partial(_call_path, func=func, args=args)
        tries: dict[int, int] = {}
        futs = client.map(task, items, pure=False, retries=0)
        futures = {f: i for i, f in enumerate(futs)}
        left = set(futures)
        ready: queue.SimpleQueue = queue.SimpleQueue()
        for f in futs:
            f.add_done_callback(ready.put)
        unreachable_since: float | None = None
        quarantine: deque[int] = deque()
        alone = None
        while left or quarantine:
            if quarantine and not left:  # nothing else running: a death now names its frame
                i = quarantine.popleft()
                alone = client.submit(task, items[i], pure=False)
                futures[alone] = i
                left.add(alone)
                alone.add_done_callback(ready.put)
            done = []
            try:
                done.append(ready.get(timeout=0.25))
                while True:
                    done.append(ready.get_nowait())
            except queue.Empty:
                pass
            for fut in done:
                if fut not in left:
                    continue
                left.discard(fut)
                i = futures[fut]
                if fut.status == "finished":
                    try:
                        status, value = _fetch(fut, runner)
                    except Exception as exc:  # the result could not be fetched: the worker left
                        if tries.get(i, 1) <= runner.retries:
                            tries[i] = tries.get(i, 1) + 1
                            log.warning("%s: its result was lost with a Dask worker; it will be run again", items[i])
                            quarantine.append(i)
                            continue
                        yield Outcome(i, items[i], LOST, None, f"result lost ({type(exc).__name__}: {exc})")
                        continue
                    yield Outcome(i, items[i], status, value if status == OK else None,
                                  None if status == OK else value)
                elif fut.status == "error":
                    exc = fut.exception()
                    name = type(exc).__name__
                    tries[i] = tries.get(i, 1) + 1
                    if name == "KilledWorker" and fut is not alone and runner.retries > 0:
                        # the scheduler blames every task a dying worker held: run it again, alone
                        log.warning("%s: its Dask worker died; it will be retried alone", items[i])
                        quarantine.append(i)
                        continue
                    why = ("the Dask workers running it died repeatedly" if name == "KilledWorker"
                           else f"{name}: {exc}")
                    yield Outcome(i, items[i], LOST, None, why, tries[i] - 1)
                elif fut.status == "lost" and tries.get(i, 1) <= runner.retries:
                    # finished, then its result died with the worker holding it (another frame may
                    # have killed that worker): nothing is wrong with this frame, run it again
                    tries[i] = tries.get(i, 1) + 1
                    log.warning("%s: its result was lost with a Dask worker; it will be run again", items[i])
                    quarantine.append(i)
                else:  # cancelled: the scheduler forgot it (restart, lost connection)
                    yield Outcome(i, items[i], LOST, None, f"scheduler {address} dropped it ({fut.status})")
            if client.status == "running":
                unreachable_since = None
            else:
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since >= runner.lost_after_s:
                    for i in sorted([futures[f] for f in left] + list(quarantine)):
                        yield Outcome(i, items[i], LOST, None,
                                      f"scheduler {address} went away before it was measured")
                    left.clear()
                    quarantine.clear()
    finally:
        try:
            client.cancel(list(futures), force=True) if client.status == "running" and futures else None
        except Exception:  # pragma: no cover - the scheduler is gone already
            pass
        try:
            client.close(timeout=2)
        except Exception:  # pragma: no cover
            pass


def _fetch(fut, runner: Runner, attempts: int = 3):
    """A finished future's result. When the worker holding it dies before we fetch it, the
    scheduler computes it again: wait for that instead of reporting the frame lost."""
    for k in range(attempts):
        try:
            return fut.result(timeout=runner.lost_after_s + runner.connect_timeout_s)
        except Exception as exc:
            if type(exc).__name__ in ("KilledWorker", "CancelledError") or k == attempts - 1:
                raise
            log.info("result of %s lost with its worker; waiting for it to be recomputed", fut.key)
    raise RuntimeError("unreachable")  # pragma: no cover


def iter_frames(func: Callable[..., Any], paths: Sequence[str | os.PathLike[str]], *, args: tuple = (),
                runner: Runner | None = None) -> Iterator[Outcome]:
    """Yield one :class:`Outcome` per path, in completion order.

    ``func(path, *args)`` must be a top-level function (it is pickled by reference) that
    reads the frame itself. Close the generator (or interrupt) to stop: local workers are
    terminated, queued Dask work is cancelled.
    """
    runner = runner or Runner()
    items = [Path(p) for p in paths]
    if not items:
        return
    if runner.scheduler:
        yield from _iter_dask(func, items, args, runner)
        return
    workers = min(runner.n_workers, len(items))
    if workers <= 1:
        yield from _iter_inline(func, items, args)
    else:
        yield from _iter_local(func, items, args, workers, runner.retries)


def capture_key(outcome: Outcome) -> tuple[float, str]:
    """DATE-OBS of the result's header (``.meta``, ``.stats.meta`` of an assessment, or the
    first item of a tuple that has one), then the file name; frames without DATE-OBS sort by
    their modification time."""
    from focuswatch.io.frames import frame_order_key

    v = outcome.value
    meta = getattr(v, "meta", None)
    if meta is None:
        meta = getattr(getattr(v, "stats", None), "meta", None)
    if meta is None and isinstance(v, tuple):
        meta = next((getattr(x, "meta", None) for x in v if getattr(x, "meta", None) is not None), None)
        if meta is None:
            meta = next((x for x in v if type(x).__name__ == "FrameMeta"), None)
    return frame_order_key(outcome.path, meta)


def map_frames(func: Callable[..., Any], paths: Sequence[str | os.PathLike[str]], *, args: tuple = (),
               runner: Runner | None = None, progress: bool = False, desc: str = "measuring",
               order: Callable[[Outcome], Any] | None = capture_key,
               on_problem: Callable[[Outcome], None] | None = None) -> Batch:
    """Run ``func`` over ``paths`` and collect the outcomes; ``done`` sorted by ``order``
    (capture order by default; ``None`` keeps the input order).

    ``on_problem`` is called as soon as a frame turns out bad or lost (print it there, so
    the user sees it during a long run). Ctrl-C stops the workers and propagates.
    """
    runner = runner or Runner()
    t0 = time.monotonic()
    items = [Path(p) for p in paths]
    batch = Batch(engine=runner.describe())
    from focuswatch.render.progress import progress as progress_bar

    for o in progress_bar(iter_frames(func, items, args=args, runner=runner), desc=desc, enabled=progress,
                          total=len(items)):
        if o.status == OK:
            batch.done.append(o)
            continue
        (batch.bad if o.status == BAD else batch.lost).append(o)
        if on_problem is not None:
            on_problem(o)
    batch.done.sort(key=order if order is not None else (lambda o: o.index))
    batch.bad.sort(key=lambda o: o.index)
    batch.lost.sort(key=lambda o: o.index)
    batch.elapsed_s = time.monotonic() - t0
    return batch
