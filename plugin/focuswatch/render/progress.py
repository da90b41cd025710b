"""One progress bar for batch work: tqdm on stderr, silent when stderr is not a terminal.

Every command that walks many frames (``measure``, ``diagnose``, ``report``, ``grade``,
``af``, ``replay``) wraps its loop in :func:`progress`. The bar is drawn only when a person
is watching: with ``--json``, in a pipe, under a capture program's hook or in CI it returns
the items unchanged, so machine output and logs stay clean.
"""
from __future__ import annotations

import sys
from typing import Iterable, TextIO, TypeVar

T = TypeVar("T")

#: Fewer items than this get no bar: it would flash and vanish.
MIN_ITEMS = 3


def progress(items: Iterable[T], *, desc: str, enabled: bool = True, total: int | None = None,
             unit: str = "frame", stream: TextIO | None = None) -> Iterable[T]:
    """``items`` wrapped in a tqdm bar on ``stream`` (stderr) when it is a terminal.

    Parameters
    ----------
    items
        What to iterate over.
    desc, unit
        The bar's label and the unit of one item.
    enabled
        ``False`` (e.g. ``--json``) never draws a bar.
    total
        Number of items when ``items`` has no ``len`` (a generator).
    stream
        Where to draw (default ``sys.stderr``); a non-terminal stream means no bar.
    """
    out = sys.stderr if stream is None else stream
    if not enabled:
        return items
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        tty = False
    if not tty:
        return items
    n = total if total is not None else (len(items) if hasattr(items, "__len__") else None)  # type: ignore[arg-type]
    if n is not None and n < MIN_ITEMS:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=n, unit=unit, file=out, leave=False)
