"""The verdict on one frame: :func:`frame` gives a :class:`Diagnosis`.

Named ``verdict`` and not ``frame`` so that ``focuswatch.diagnose.frame`` stays the function.
:func:`frame` first checks that the frame can be diagnosed at all (a light frame, enough
stars, a per-star table); otherwise the :class:`Diagnosis` is ``unknown`` with its reason.
Then it gathers the evidence (:mod:`focuswatch.diagnose.evidence`), scores every label
(:mod:`focuswatch.diagnose.scores`) and keeps the strongest problem scoring 0.5 or more,
else ``in_focus``; the other supported labels become :class:`Finding` s. Causes and advice
come from :mod:`focuswatch.diagnose.labels`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from focuswatch.diagnose.config import DiagnoseConfig
from focuswatch.diagnose.evidence import Evidence, _evidence
from focuswatch.diagnose.figures import _r
from focuswatch.diagnose.labels import ADVICE, CAUSES, REFOCUS_LABELS, UNKNOWN
from focuswatch.diagnose.scores import _detail, _scores
from focuswatch.model.records import Record
from focuswatch.optics import Rig


@dataclass(frozen=True)
class Finding(Record):
    """One observation: a label, how sure we are (0..1) and the figures behind it."""

    label: str
    confidence: float
    detail: str = ""


@dataclass(frozen=True)
class Diagnosis(Record):
    """Verdict on one frame (``diagnose --json``).

    ``defocus_um`` is unsigned (star size cannot tell inside from outside focus);
    ``defocus_cfz`` is it in units of the full critical focus zone width (0.5 = at the
    edge of the zone). Both are ``None`` when the rig's focal ratio or pixel is unknown.
    """

    file: str | None
    label: str
    confidence: float
    findings: tuple[Finding, ...] = ()
    defocus_um: float | None = None
    defocus_cfz: float | None = None
    defocus_method: str | None = None
    evidence: Evidence = field(default_factory=lambda: Evidence(0))
    causes: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def refocus_advised(self) -> bool:
        """True when an autofocus run would fix what we see (a focus miss)."""
        return self.label in REFOCUS_LABELS

    def to_dict(self) -> dict[str, Any]:
        """The fields plus ``refocus_advised`` (read back by :meth:`from_dict`, which ignores it)."""
        return {**super().to_dict(), "refocus_advised": self.refocus_advised}


def _unknown(stats: Any, reason: str, n: int = 0) -> Diagnosis:
    return Diagnosis(file=getattr(stats, "file", None), label=UNKNOWN, confidence=0.0,
                     evidence=Evidence(n_stars=n), reason=reason,
                     advice=("no verdict on this frame: " + reason,))


def frame(stats: Any, rig: Rig | None = None, *, image: Any = None, baseline_hfr_px: float | None = None,
          config: DiagnoseConfig = DiagnoseConfig(), measured_seeing_arcsec: float | None = None,
          seeing_witness: Any = None) -> Diagnosis:
    """Diagnose one measured frame.

    Parameters
    ----------
    stats : focuswatch.stars.FrameStats
        The measurement, with its per-star table ``stats.stars``.
    rig : Rig, optional
        Telescope and camera (header already merged in); without a focal ratio and pixel
        size the defocus in um is ``None`` but the label is still given.
    image : focuswatch.io.frames.Frame or numpy.ndarray, optional
        The pixels the stars were measured on. With them the one-sided flare of a
        miscollimated scope is told from a symmetric trail (third moments); without them
        an elongated, aligned field is called ``trailing``.
    baseline_hfr_px : float, optional
        True half-flux radius right after the last autofocus (px). When given, the defocus
        is the blur that grows it to the measured HFR (optics' exact seeing x annulus
        model) rather than inferred from the profile shape; a frame whose stars are
        smaller than it is never called dew.
    config : DiagnoseConfig
        Thresholds.
    measured_seeing_arcsec : float, optional
        Seeing FWHM (arcsec) measured at the time of this frame: a seeing monitor, or the
        seeing the night's in-focus frames give. The profile shape cannot tell a 1 CFZ blur
        from seeing (docs/diagnose.md); with a measured seeing the star's size can, and a
        focus miss is also called when the size alone implies one
        (``DiagnoseConfig.seeing_size_uncertainty``, ``seeing_size_miss_cfz``). Not taken from
        ``rig.seeing_arcsec``, which may be a typical value from the configuration.
    seeing_witness : focuswatch.diagnose.witness.SeeingWitness, optional
        Where the seeing came from (``diagnose.witness``): a monitor, or the night's in-focus
        frames (its seeing is used when ``measured_seeing_arcsec`` is not given). An in-focus
        witness is a *past* seeing: its size call is dropped when the profile cannot hold the
        defocus the size asks for (the seeing got worse since), and the evidence reports it
        (``witness_*``, ``seeing_worse_than_witness``).

    Returns
    -------
    Diagnosis
        Never raises for a bad frame: ``label="unknown"`` and ``reason`` instead.
    """
    rig = rig or Rig()
    meta = getattr(stats, "meta", None)
    if meta is not None and not meta.is_light:
        return _unknown(stats, f"not a light frame (IMAGETYP={meta.image_type!r}): nothing to diagnose")
    n_total = int(getattr(stats, "n_stars", 0) or 0)
    if n_total == 0:
        why = getattr(stats, "reason", None) or "no stars detected"
        return _unknown(stats, f"no stars measured ({why})")
    tab = getattr(stats, "stars", None)
    if tab is None or len(tab) == 0:
        return _unknown(stats, "the per-star table is missing (a measurement read back from JSON): "
                               "measure the frame again", n_total)
    ok = np.isfinite(tab["hfr"]) & (tab["hfr"] > 0) & np.isfinite(tab["x"]) & np.isfinite(tab["y"])
    t = tab[ok]
    if len(t) < config.min_stars:
        return _unknown(stats, f"only {len(t)} usable stars (at least {config.min_stars} are needed "
                               "for a verdict): clouds, a very short exposure or a wrong target?", len(t))
    w = int(stats.width_px or (meta.width if meta else 0) or math.ceil(t["x"].max() + 1))
    h = int(stats.height_px or (meta.height if meta else 0) or math.ceil(t["y"].max() + 1))
    pixels, scale_px = None, 1
    if image is not None:
        pixels = getattr(image, "pixels", image)
        scale_px = int(getattr(image, "scale_px", 1) or 1)

    if measured_seeing_arcsec is None and seeing_witness is not None:
        measured_seeing_arcsec = seeing_witness.seeing_arcsec
    ev, defocus = _evidence(stats, t, w, h, rig, baseline_hfr_px, pixels, scale_px, config,
                            measured_seeing_arcsec=measured_seeing_arcsec, seeing_witness=seeing_witness)
    scores = _scores(ev, defocus, config, baseline_hfr_px)
    problem_label, problem = max(((k, v) for k, v in scores.items() if k != "in_focus"),
                                 key=lambda kv: kv[1])
    if problem < 0.5:
        label, conf = "in_focus", float(np.clip(1.0 - problem, 0.5, 1.0))
    else:
        label, conf = problem_label, problem
        runner = max((v for k, v in scores.items() if k not in ("in_focus", label)), default=0.0)
        conf = float(np.clip(0.5 + (problem - runner), 0.5, 1.0)) if runner >= 0.5 else float(problem)
    findings = tuple(
        Finding(k, round(v, 2), _detail(k, ev, defocus))
        for k, v in sorted(scores.items(), key=lambda kv: -kv[1])
        if k not in ("in_focus", label) and v >= 0.5
    )
    return Diagnosis(
        file=getattr(stats, "file", None), label=label, confidence=round(float(conf), 2),
        findings=findings,
        defocus_um=_r(defocus.get("um"), 1), defocus_cfz=_r(defocus.get("cfz"), 2),
        defocus_method=defocus.get("method"),
        evidence=ev, causes=CAUSES.get(label, ()), advice=ADVICE.get(label, ()),
        reason=None,
    )
