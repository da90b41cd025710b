"""A session folder's light frames: finding them, and what measuring them gave (:class:`SessionScan`)."""
from __future__ import annotations


import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from focuswatch.io import frames as frames_mod
from focuswatch.optics import Rig
from focuswatch.model.records import Record

log = logging.getLogger("focuswatch.render.report")


#: A frame with fewer stars than this is left out of stacking (Siril's registration needs stars).
MIN_STARS_FOR_STACK = 10


# --------------------------------------------------------------------------- scanning a session

@dataclass(frozen=True)
class LeftOut(Record):
    """A frame that was not used, and why (``problem`` is one line for the user)."""

    file: str
    problem: str


@dataclass
class SessionScan:
    """The light frames of a session, measured, in capture order.

    ``stats`` holds ``stars.FrameStats`` of every readable light frame (including those
    with too few stars); ``usable`` the files good enough to stack; ``left_out`` every
    frame not stackable with the reason; ``n_not_light`` counts flats/darks/bias skipped.
    """

    folder: str
    stats: list[Any] = field(default_factory=list)
    usable: list[str] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    n_not_light: int = 0
    measure_s: float = 0.0
    diagnoses: dict[str, Any] = field(default_factory=dict)
    diagnose_notes: list[str] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)
    #: frames that could not be read or measured at all (also in ``left_out``): the command exits 1
    unreadable: list[LeftOut] = field(default_factory=list)
    #: the ``[diagnose]`` thresholds (:class:`~focuswatch.diagnose.DiagnoseConfig`) the
    #: report's and the grade's diagnoses use; ``None``: the defaults
    diagnose_config: Any = None
    #: the diagnoses were judged again with the night's seeing witness (``diagnose.night_witnesses``)
    witnessed: bool = False

    def diagnose(self, rig: Rig | None) -> dict[str, Any]:
        """``diagnose.frame`` of every measured frame (cached; ``None`` where it failed).

        The diagnosis is optional: without the module, or when it fails on a frame, the
        report and the grade carry on without it and say so.
        """
        if self.diagnoses and not self.witnessed:
            self._witness(rig)
        if self.diagnoses or not self.stats:
            return self.diagnoses
        try:
            from focuswatch import diagnose
        except ImportError:
            self.diagnose_notes.append("diagnosis: the diagnose module is not available")
            self.diagnoses = {str(s.file): None for s in self.stats}
            return self.diagnoses
        from focuswatch.optics import rig_with_header

        failures = 0
        for s in self.stats:
            try:
                extra = {"config": self.diagnose_config} if self.diagnose_config is not None else {}
                self.diagnoses[str(s.file)] = diagnose.frame(s, rig_with_header(rig or Rig(), s.meta), **extra)
            except Exception as exc:  # a diagnosis problem must not lose the grade or the report
                log.debug("diagnose.frame failed on %s: %s", s.file, exc)
                self.diagnoses[str(s.file)] = None
                failures += 1
        if failures:
            self.diagnose_notes.append(f"diagnosis: failed on {failures} of {len(self.stats)} frames")
        self._witness(rig)
        return self.diagnoses

    def _witness(self, rig: Rig | None) -> None:
        """Judge the diagnoses again with the night's own seeing witness (the first frames at each
        focus, per filter: :func:`focuswatch.diagnose.night_witnesses`), once."""
        self.witnessed = True
        try:
            from focuswatch import diagnose
            from focuswatch.optics import rig_with_header
        except ImportError:
            return
        cfg = self.diagnose_config if self.diagnose_config is not None else diagnose.DiagnoseConfig()
        try:
            witnesses = diagnose.night_witnesses(self.stats, rig, cfg, dew_reference=True)
        except Exception as exc:  # the witness is optional: the diagnoses stand without it
            log.debug("diagnose.night_witnesses failed: %s", exc)
            self.diagnose_notes.append("diagnosis: the night's seeing witness failed; judged without it")
            return
        failures = 0
        for s, w in zip(self.stats, witnesses):
            key = str(s.file)
            if w is not None and self.diagnoses.get(key) is not None:
                try:
                    self.diagnoses[key] = diagnose.rejudge(self.diagnoses[key], s, rig_with_header(rig or Rig(), s.meta),
                                                           w, config=cfg)
                except Exception as exc:  # one frame's witness problem keeps its first diagnosis
                    log.debug("diagnose.rejudge failed on %s: %s", s.file, exc)
                    failures += 1
        if failures:
            self.diagnose_notes.append(f"diagnosis: the seeing witness failed on {failures} frames; judged without it")

    def by_filter(self) -> dict[str, list[Any]]:
        """Measured frames grouped by FILTER (``"none"`` when the header has none)."""
        out: dict[str, list[Any]] = {}
        for s in self.stats:
            out.setdefault(_filter_of(s), []).append(s)
        return out


def _filter_of(stats: Any) -> str:
    meta = getattr(stats, "meta", None)
    name = getattr(meta, "filter_name", None) if meta else None
    return str(name).strip() if name else "none"


def find_frames(folder: str | os.PathLike[str]) -> list[Path]:
    """Every image file under ``folder`` (recursively; hidden files and folders skipped), sorted.

    ``os.walk`` with the hidden folders pruned, so a big archive's ``.git`` or ``.thumbnails``
    is never walked (``archive`` lists whole libraries through this too).
    """
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            p = Path(dirpath) / name
            if frames_mod.is_image_file(name) and p.is_file():
                out.append(p)
    return sorted(out)
