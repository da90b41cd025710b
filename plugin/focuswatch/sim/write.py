"""The simulator's I/O edge: FITS bytes and files, truth JSON, a whole night into a folder the caller names."""
from __future__ import annotations


import io
import json
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from focuswatch.model.records import json_safe
from focuswatch.sim.image import SimFrame, render
from focuswatch.sim.params import SOFTWARE, SimParams


# --------------------------------------------------------------------------- I/O edge

def fits_bytes(frame: Any) -> bytes:
    """The complete FITS file of a frame (big-endian uint16, BZERO=32768) as bytes.

    ``frame`` is anything with uint16 ``pixels`` and a ``header`` dict: a :class:`SimFrame`
    or a :class:`focuswatch.sim.mask.MaskFrame`. Watcher tests write it piecewise to imitate
    NINA writing a frame in place.
    """
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.ascontiguousarray(frame.pixels, dtype=np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's "card too long" style notes are harmless here
        for k, v in frame.header.items():
            hdu.header[k] = v
    buf = io.BytesIO()
    hdu.writeto(buf, output_verify="silentfix")
    return buf.getvalue()


def write_fits(path: str | Path, frame: SimFrame) -> Path:
    """Write a frame as FITS at ``path`` (or ``path / frame.file_name`` when ``path`` is a folder).

    A plain write (no temp file): exactly what a watcher sees from NINA. Returns the path.
    """
    p = Path(path)
    if p.is_dir():
        p = p / frame.file_name
    p.write_bytes(fits_bytes(frame))
    return p


def write_truth(path: str | Path, truths: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Path:
    """Write the truth of one frame (a dict) or of a series (a list) as JSON."""
    p = Path(path)
    p.write_text(json.dumps(_finite(truths), indent=1, default=_json_default, allow_nan=False), encoding="utf-8")
    return p


#: Strict JSON: infinities and NaN (a Gaussian's beta) become null (the one encoder, in records).
_finite = json_safe


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-able: {type(o).__name__}")


def iter_write_night(folder: str | Path, params: Sequence[SimParams] | Iterator[SimParams],
                     truth_name: str = "truth.json") -> Iterator[dict[str, Any]]:
    """Render and write frames one by one into ``folder`` (created), yielding each truth.

    ``truth_name`` (a JSON list of every truth so far) is rewritten after each frame, so a
    live demo's reader always finds a complete document. Each truth's ``"file"`` is the
    frame's file name inside ``folder``. A file of that name that this simulator did not
    write stops it with :class:`~focuswatch.errors.FrameError` (a user's frame is never overwritten).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    truths: list[dict[str, Any]] = []
    for sp in params:
        frame = render(sp)
        _refuse_foreign_frame(out / frame.file_name)
        path = write_fits(out / frame.file_name, frame)
        truth = {**frame.truth, "file": path.name}
        truths.append(truth)
        write_truth(out / truth_name, truths)
        yield truth


def _refuse_foreign_frame(path: Path) -> None:
    """Raise :class:`~focuswatch.errors.FrameError` when ``path`` holds a frame this simulator did not write.

    ``focuswatch sim`` pointed at a real session folder must never overwrite a user's frame
    that happens to have the same NINA-style name; its own earlier output may be replaced.
    """
    if not path.exists():
        return
    from focuswatch.errors import FrameError
    from focuswatch.io.frames import read_header

    try:
        ours = read_header(path).software == SOFTWARE
    except FrameError:
        ours = False
    if not ours:
        raise FrameError(path, "exists and was not written by focuswatch sim; not overwriting it "
                               "(choose an empty output folder)")


def write_night(folder: str | Path, params: Sequence[SimParams] | Iterator[SimParams],
                truth_name: str = "truth.json") -> list[dict[str, Any]]:
    """Render every frame, write it into ``folder`` (created) and all truths to ``truth_name``.

    Returns the truths (each with ``"file"``, the frame's name inside ``folder``).
    """
    return list(iter_write_night(folder, params, truth_name))
