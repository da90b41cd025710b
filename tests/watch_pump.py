"""Driving a :class:`focuswatch.watch.Watcher` in tests without its run loop (shared helper)."""
from __future__ import annotations

import time


def pump(w, until, timeout_s: float = 20.0) -> list:
    """Call ``w.process_pending()`` until ``until(outcomes so far)`` holds; the outcomes.

    The timeout only stops a broken test from hanging; it is generous on a loaded 2-core box
    and no test asserts how long anything took.
    """
    t0 = time.monotonic()
    out: list = []
    while time.monotonic() - t0 < timeout_s:
        out += w.process_pending()
        if until(out):
            return out
        time.sleep(0.05)
    raise AssertionError(f"timed out; processed so far: {[(o.path.name, o.status) for o in out]}")
