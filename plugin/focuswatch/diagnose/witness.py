"""The seeing witness: a seeing measured for a frame, from a monitor or the night's in-focus frames.

The profile shape cannot tell a 1 CFZ blur from seeing on small, slow rigs
(docs/diagnose.md); the star's *size* can, against a seeing measured at about the time of
the frame. Two witnesses exist:

* a seeing monitor (``SEEING``/``DIMMSEE``/``SEEFWHM`` in the header, FrameMeta
  ``seeing_arcsec``): measured at the frame's time, it is used as is;
* the night's own in-focus frames: right after an autofocus the stars show the seeing
  alone, and :func:`focuswatch.calibration.seeing_for_infocus_hfr_arcsec` turns their HFR into
  the seeing FWHM (within 2 % of GalSim's Kolmogorov x obstructed Airy). That seeing is a
  *past* one: it holds only while it is recent, and a later frame larger than it predicts
  may have grown because the seeing got worse. So the witness expires
  (``DiagnoseConfig.witness_max_age_s``), waits until the night's own frame-to-frame scatter
  is known and widens its allowance with it, and its size call fades out where the defocus it
  asks for is one the profile shape would show by itself (``witness_size_max_cfz_band``: a
  star that large with a seeing profile grew with the seeing; :mod:`focuswatch.diagnose.scores`).

The rule for the in-focus frames (:class:`WitnessTracker`), the same in the night loop
(``watch``/``replay``), the night's story and the session grade:

* they are the first ``witness_frames`` usable frames of a filter at a new focus: after an
  autofocus (a confirmed autofocus signal in the night loop), or after the filter's focuser
  position (FOCPOS) moved by more than ``witness_focuser_steps`` (the night story's refocus
  events), and the frame judged must be at that same focuser position. The first frames of
  a night or of a watch count too: frames that were not in focus only make the witness
  *larger*, which can hide a focus miss but never invent one (the only way a witness invents
  one is a seeing that got worse, guarded below);
* the witness seeing is the one their median HFR gives, per filter (each filter has its
  own wavelength and focus);
* it serves the later frames of that filter for ``witness_max_age_s`` after its last frame,
  once the night has shown how much its seeing moves (``witness_min_steps`` frame-to-frame
  steps of the filter's HFR, anywhere in the night at one focus); its size allowance grows with
  that scatter and with the frames since the witness (a random walk);
* the night's *best* frames are not used: the best seeing of the night predicts too small
  a star for every later frame, which would turn ordinary seeing into focus misses.

Pure: no clock, no files (times come from the frames' DATE-OBS).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

from focuswatch import calibration
from focuswatch.diagnose.config import DiagnoseConfig
from focuswatch.diagnose.labels import INFOCUS, MONITOR  # SeeingWitness.source values
from focuswatch.model.numerics import MAD_TO_SIGMA, finite_median
from focuswatch.model.records import Record
from focuswatch.optics import Rig

log = logging.getLogger("focuswatch.diagnose")


@dataclass(frozen=True)
class SeeingWitness(Record):
    """A seeing measured for a frame (``evidence.witness_*`` in the diagnosis' JSON).

    ``seeing_arcsec`` is the seeing FWHM (arcsec); ``source`` ``"monitor"`` (a seeing monitor's
    header value at the frame's time) or ``"infocus"`` (the night's in-focus frames after an
    autofocus); for ``"infocus"``: ``hfr_px`` their median true HFR (px), ``n_frames`` how
    many, ``time_s`` the capture time of the last one (s since the epoch, UTC), ``age_s`` the
    judged frame's time minus ``time_s`` (s), ``filter_name`` and ``focuser_pos`` theirs,
    ``jitter_pct`` the night's frame-to-frame scatter of the filter's HFR (%) and ``frames_since``
    the judged frame's rank after the witness frames (1 = the next frame): the seeing may have
    wandered by about ``jitter x sqrt(frames_since)`` since. ``halo_*``: the night's dew reference.
    """

    seeing_arcsec: float | None
    source: str | None = INFOCUS
    hfr_px: float | None = None
    n_frames: int = 0
    time_s: float | None = None
    age_s: float | None = None
    filter_name: str | None = None
    focuser_pos: float | None = None
    jitter_pct: float | None = None
    frames_since: int = 1
    #: The night's dew reference (:func:`focuswatch.diagnose.halo.night_halo_rise`): the median
    #: single-frame dew figure (``Evidence.halo_excess``) of the night's first ``dew_night_frames``
    #: frames on this plate scale, how many, and the figures of the frames just before this one
    #: (oldest first). A witness may carry only this part (``seeing_arcsec`` and ``source`` ``None``):
    #: the night is known, its seeing witness not (yet).
    halo_ref_excess: float | None = None
    halo_ref_frames: int = 0
    halo_recent: tuple[float, ...] = ()
    #: The median star HFR (px, ``Evidence.hfr_px``) of those reference frames: a halo never makes
    #: stars smaller, so a frame whose stars are clearly smaller (seeing better than the reference's)
    #: counts no rise (``DiagnoseConfig.dew_night_min_hfr_ratio``). ``None``: not measured.
    halo_ref_hfr_px: float | None = None
    #: The star HFRs (px) of the ``halo_recent`` frames, in the same order (the window's star size).
    halo_recent_hfr_px: tuple[float, ...] = ()
    #: The night's dew figure proper (``Evidence.halo_inner``: the light inside the stars' apertures,
    #: :func:`focuswatch.diagnose.halo.inner_halo_excess`): the median of the same reference frames
    #: and the ``halo_recent`` frames' figures (NaN where a frame had none). ``None``: not measured
    #: (the night's rise is then not judged).
    halo_ref_inner: float | None = None
    halo_recent_inner: tuple[float, ...] = ()


def seeing_from_infocus_hfr(hfr_px: float, rig: Rig, plate_scale_arcsec_px: float | None = None) -> float | None:
    """The seeing FWHM (arcsec) an in-focus star of true HFR ``hfr_px`` implies on ``rig``
    (:func:`focuswatch.calibration.seeing_for_infocus_hfr_arcsec`); ``None`` without an
    aperture or a plate scale, or for a star no larger than diffraction alone gives."""
    scale = plate_scale_arcsec_px or rig.plate_scale_arcsec_px
    ap = rig.effective_aperture_mm
    if not (scale and ap and hfr_px and math.isfinite(hfr_px) and hfr_px > 0):
        return None
    see = calibration.seeing_for_infocus_hfr_arcsec(float(hfr_px), ap, rig.wavelength_nm, scale, rig.obstruction or 0.0)
    return float(see) if see and math.isfinite(see) and see > 0 else None


#: Frames whose r90/r50 is no in-focus star's: left out of the night's dew reference and window.
_NO_DEW_FIGURE = ("focus_miss", "trailing")


def frame_dew_figures(stats: Any, rig: Rig | None,
                      config: DiagnoseConfig = DiagnoseConfig()) -> tuple[float | None, float | None]:
    """A frame's single-frame dew figure (``Evidence.halo_excess``) and its stars' HFR (px,
    ``Evidence.hfr_px``) from the one diagnosis call (:func:`focuswatch.diagnose.frame`, the star
    table alone); ``(None, None)`` for a frame it cannot judge
    (not a light, too few stars, no f-ratio or pixel), when judging fails (logged: optional), and for
    a frame it calls ``focus_miss`` or ``trailing``: defocus narrows r90/r50 (a night whose first frames
    were out of focus would read its in-focus frames as a halo: a physical-optics night with its first
    3 frames at 1.5 CFZ called 5 of 7 focused frames dew) and a trail is no in-focus star either."""
    fig, hfr, _ = frame_night_dew_figures(stats, rig, config)
    return fig, hfr


def frame_night_dew_figures(stats: Any, rig: Rig | None, config: DiagnoseConfig = DiagnoseConfig()
                            ) -> tuple[float | None, float | None, float | None]:
    """:func:`frame_dew_figures` and the frame's night dew figure (``Evidence.halo_inner``) from the
    same one diagnosis call; ``(None, None, None)`` where that gives none."""
    from focuswatch.diagnose.verdict import frame

    meta = getattr(stats, "meta", None)
    if meta is not None and not getattr(meta, "is_light", True):
        return None, None, None
    try:
        d = frame(stats, rig, config=config)
    except Exception as exc:  # noqa: BLE001 - the night's dew reference is optional
        log.debug("%s: no dew figure for the night's reference (%s)", getattr(stats, "file", None), exc)
        return None, None, None
    return dew_figures(d)


def dew_figures(diagnosis: Any) -> tuple[float | None, float | None, float | None]:
    """The dew figures (``Evidence.halo_excess``, ``Evidence.hfr_px``, ``Evidence.halo_inner``) a
    frame's diagnosis already holds, for the night's dew reference: the night loop hands over the one
    diagnosis it made for the frame's record instead of diagnosing the frame again. ``(None, None,
    None)`` without a diagnosis and for a frame it calls ``focus_miss`` or ``trailing``
    (:func:`frame_dew_figures` says why)."""
    if diagnosis is None or getattr(diagnosis, "label", None) in _NO_DEW_FIGURE:
        return None, None, None
    ev = getattr(diagnosis, "evidence", None)
    return getattr(ev, "halo_excess", None), getattr(ev, "hfr_px", None), getattr(ev, "halo_inner", None)


#: The dew-reference fields of :class:`SeeingWitness` (``halo_*``): the part of a night's context
#: that travels onto a monitor's witness or a witness of its own.
_HALO_FIELDS = ("halo_ref_excess", "halo_ref_frames", "halo_recent", "halo_ref_hfr_px", "halo_recent_hfr_px",
                "halo_ref_inner", "halo_recent_inner")


def _with_halo(witness: SeeingWitness | None, halo: dict[str, Any]) -> SeeingWitness:
    """``witness`` carrying the night's dew reference ``halo`` (``SeeingWitness.halo_*``); a witness
    of the dew reference alone (``seeing_arcsec`` and ``source`` ``None``) when there is no witness."""
    return SeeingWitness(None, None, **halo) if witness is None else replace(witness, **halo)


def with_monitor(monitor: SeeingWitness | None, night: SeeingWitness | None) -> SeeingWitness | None:
    """The witness a frame is judged with: a seeing monitor's (measured at the frame's time) before
    the night's in-focus seeing, carrying the night's dew reference either way."""
    if monitor is None:
        return night
    if night is None or night.halo_ref_excess is None:
        return monitor
    return _with_halo(monitor, {k: getattr(night, k) for k in _HALO_FIELDS})


def monitor_witness(meta: Any) -> SeeingWitness | None:
    """The seeing monitor's witness from a frame's header (``meta.seeing_arcsec``), if any."""
    see = getattr(meta, "seeing_arcsec", None) if meta is not None else None
    if see and math.isfinite(float(see)) and float(see) > 0:
        return SeeingWitness(float(see), MONITOR)
    return None


@dataclass
class _Collect:
    """The witness frames of one filter since the last autofocus."""

    focuser_pos: float | None
    hfrs: list[float]
    last_time_s: float | None
    n_after: int = 0


#: Successive log-HFR differences of a filter kept for its frame-to-frame scatter.
_JITTER_DIFFS = 12


class WitnessTracker:
    """The in-focus witness per filter through a night, frames fed in capture order (pure).

    ``autofocus()`` when an autofocus was applied (the night loop), then for each frame
    ``witness_for(...)`` before it is diagnosed and ``add(...)`` after. A change of a
    filter's focuser position counts as its autofocus too (a folder has no autofocus
    signals; the night's story does the same).

    >>> from focuswatch.optics import Rig
    >>> rig = Rig(aperture_mm=80, focal_length_mm=480, pixel_um=3.76)
    >>> t = WitnessTracker(rig)
    >>> t.witness_for("L", 0.0, 1000) is None        # nothing known in focus yet
    True
    >>> for k, hfr in enumerate((1.6, 1.7, 1.66, 1.64)):
    ...     t.add("L", 300.0 * k, hfr, 1000)
    >>> w = t.witness_for("L", 1200.0, 1000)
    >>> round(w.hfr_px, 2), w.n_frames, w.age_s, w.source, w.frames_since
    (1.65, 2, 900.0, 'infocus', 3)
    >>> t.witness_for("L", 1200.0 + 3600.0, 1000) is None   # too old
    True
    >>> t.witness_for("L", 1200.0, 1200) is None      # the focuser moved: a new focus
    True
    """

    def __init__(self, rig: Rig | None, config: DiagnoseConfig = DiagnoseConfig(), *,
                 plate_scale_arcsec_px: float | None = None):
        self.rig = rig or Rig()
        self.config = config
        self.plate_scale_arcsec_px = plate_scale_arcsec_px
        self._by_filter: dict[str, _Collect] = {}
        #: per filter (and plate scale): the last frame's (log HFR, focuser position, focus epoch) and the successive differences
        self._last: dict[str, tuple[float, float | None, int]] = {}
        self._diffs: dict[str, list[float]] = {}
        self._epoch = 0
        #: per plate scale (all filters, never reset by an autofocus: dew asks for one): the night's
        #: first dew figures (the reference) and the latest ones (diagnose.halo.night_halo_rise)
        self._halo_ref: dict[float | None, list[float]] = {}
        self._halo_recent: dict[float | None, list[float]] = {}
        self._halo_ref_hfr: dict[float | None, list[float]] = {}
        self._halo_recent_hfr: dict[float | None, list[float]] = {}
        self._halo_ref_inner: dict[float | None, list[float]] = {}
        self._halo_recent_inner: dict[float | None, list[float]] = {}

    def _key(self, filter_name: str | None, rig: Rig | None = None) -> tuple[str, float | None]:
        """Per filter and per plate scale: witness frames binned otherwise (or through another
        camera) have another HFR in pixels for the same seeing, and their steps are no scatter."""
        scale = (rig or self.rig).plate_scale_arcsec_px
        return (filter_name or "").strip().lower(), (round(scale, 6) if scale else None)

    def autofocus(self) -> None:
        """An autofocus was applied: every filter's witness is collected again."""
        self._by_filter.clear()
        self._epoch += 1

    def _same_focus(self, c: _Collect, focuser_pos: float | None) -> bool:
        if c.focuser_pos is None or focuser_pos is None:
            return True
        return abs(float(focuser_pos) - float(c.focuser_pos)) <= self.config.witness_focuser_steps

    def jitter_pct(self, filter_name: str | None, rig: Rig | None = None) -> float | None:
        """Frame-to-frame scatter of the filter's HFR through the night (%): ``1.4826 x median
        |d ln HFR| / sqrt(2)`` over its last successive differences at one focus (a steady seeing
        ramp counts as scatter too: the witness must allow for it). ``None`` before two frames."""
        d = self._diffs.get(self._key(filter_name, rig))
        if not d:
            return None
        return 100.0 * MAD_TO_SIGMA * (finite_median([abs(x) for x in d]) or 0.0) / math.sqrt(2.0)

    def context_for(self, filter_name: str | None, time_s: float | None, focuser_pos: float | None = None, *,
                    rig: Rig | None = None, plate_scale_arcsec_px: float | None = None) -> SeeingWitness | None:
        """The night's context for a frame (what the night loop judges it with): the seeing witness
        (:meth:`witness_for`) with the night's dew reference (:meth:`halo_reference`) added; a
        witness of the dew reference alone (``seeing_arcsec`` ``None``) when only that is known;
        ``None`` when neither is. The dew reference needs the frames' measurements (``add(stats=...)``)."""
        w = self.witness_for(filter_name, time_s, focuser_pos, rig=rig, plate_scale_arcsec_px=plate_scale_arcsec_px)
        halo = self.halo_reference(rig)
        return w if halo is None else _with_halo(w, halo)

    def halo_reference(self, rig: Rig | None = None) -> dict[str, Any] | None:
        """The night's dew reference on this plate scale (``SeeingWitness.halo_*``), once its first
        ``dew_night_frames`` frames with a dew figure are in; else ``None``."""
        key = self._key(None, rig)[1]
        ref = self._halo_ref.get(key, [])
        if len(ref) < self.config.dew_night_frames:
            return None
        hfr = [h for h in self._halo_ref_hfr.get(key, ()) if h is not None and math.isfinite(h) and h > 0]
        inner = [v for v in self._halo_ref_inner.get(key, ()) if math.isfinite(v)]
        return {"halo_ref_excess": float(finite_median(ref)), "halo_ref_frames": len(ref),
                "halo_recent": tuple(self._halo_recent.get(key, ())),
                "halo_ref_hfr_px": float(finite_median(hfr)) if hfr else None,
                "halo_recent_hfr_px": tuple(self._halo_recent_hfr.get(key, ())),
                "halo_ref_inner": float(finite_median(inner)) if inner else None,
                "halo_recent_inner": tuple(self._halo_recent_inner.get(key, ()))}

    def add_halo(self, halo_excess: float | None, rig: Rig | None = None, hfr_px: float | None = None,
                 inner: float | None = None) -> None:
        """A judged frame's single-frame dew figure (``Evidence.halo_excess``): the night's first
        ones are its reference, the latest ``dew_night_window`` - 1 the recent window. ``hfr_px``
        (``Evidence.hfr_px``): the reference frames' star size (``halo_ref_hfr_px``); ``inner``
        (``Evidence.halo_inner``): the night's dew figure, kept alongside."""
        if halo_excess is None or not math.isfinite(halo_excess):
            return
        key = self._key(None, rig)[1]
        ref = self._halo_ref.setdefault(key, [])
        if len(ref) < self.config.dew_night_frames:
            ref.append(float(halo_excess))
            self._halo_ref_hfr.setdefault(key, []).append(float(hfr_px) if hfr_px is not None else math.nan)
            self._halo_ref_inner.setdefault(key, []).append(float(inner) if inner is not None else math.nan)
        # the recent window: the same frames in the three stores, oldest first
        n_recent = max(1, int(self.config.dew_night_window) - 1)
        for store, value in ((self._halo_recent, float(halo_excess)),
                             (self._halo_recent_hfr, float(hfr_px) if hfr_px is not None else math.nan),
                             (self._halo_recent_inner, float(inner) if inner is not None else math.nan)):
            recent = store.setdefault(key, [])
            recent.append(value)
            del recent[:-n_recent]

    def witness_for(self, filter_name: str | None, time_s: float | None, focuser_pos: float | None = None, *,
                    rig: Rig | None = None, plate_scale_arcsec_px: float | None = None) -> SeeingWitness | None:
        """The witness for a frame of ``filter_name`` taken at ``time_s`` (``None``: none yet,
        too old, another focuser position, the frame is itself one of the witness frames, or the
        filter's frame-to-frame scatter is known from fewer than ``witness_min_steps`` steps).
        ``rig`` (the frame's, header merged) turns the HFR into a seeing; default: the tracker's.
        Only witness frames at the frame's plate scale serve it (a binning change is a new witness)."""
        key = self._key(filter_name, rig)
        c = self._by_filter.get(key)
        if c is None or len(c.hfrs) < self.config.witness_frames or not self._same_focus(c, focuser_pos):
            return None
        if len(self._diffs.get(key, ())) < self.config.witness_min_steps:
            return None  # how much this night's seeing moves is not known yet
        age = None
        if time_s is not None and c.last_time_s is not None:
            age = float(time_s) - float(c.last_time_s)
            if age > self.config.witness_max_age_s:
                return None
        hfr = finite_median(c.hfrs[: self.config.witness_frames])
        see = None if hfr is None else seeing_from_infocus_hfr(hfr, rig or self.rig, plate_scale_arcsec_px or self.plate_scale_arcsec_px)
        if see is None:
            return None
        return SeeingWitness(see, INFOCUS, hfr_px=hfr, n_frames=len(c.hfrs[: self.config.witness_frames]),
                             time_s=c.last_time_s, age_s=age, filter_name=filter_name, focuser_pos=c.focuser_pos,
                             jitter_pct=self.jitter_pct(filter_name, rig), frames_since=c.n_after + 1)

    def add(self, filter_name: str | None, time_s: float | None, hfr_px: float | None,
            focuser_pos: float | None = None, *, rig: Rig | None = None, n_stars: int | None = None,
            stats: Any = None, dew: tuple[float | None, float | None, float | None] | None = None) -> None:
        """A frame was judged: while its filter's witness is still being collected since the
        autofocus, its HFR joins it; a frame at another focuser position starts the filter's
        witness again (a new focus). ``rig``: the frame's, as given to :meth:`witness_for`.
        A frame with fewer than ``min_stars`` stars (``n_stars``: clouds, a nearly empty frame) is
        neither a witness frame nor a step of the scatter: the diagnosis does not judge it either.
        ``stats`` (the frame's measurement): its single-frame dew figure joins the night's dew
        reference (:meth:`add_halo`; the one diagnosis call, :func:`focuswatch.diagnose.frame`).
        ``dew``: those figures already known (``(halo_excess, hfr_px, halo_inner)``: :func:`dew_figures` of the
        frame's own diagnosis, or a journal row's), in place of ``stats``: no diagnosis here."""
        if not (hfr_px and math.isfinite(hfr_px) and hfr_px > 0):
            return
        if n_stars is not None and n_stars < self.config.min_stars:
            return
        if dew is not None:
            self.add_halo(dew[0], rig, dew[1], dew[2])
        elif stats is not None:
            fig, fig_hfr, fig_in = frame_night_dew_figures(stats, rig or self.rig, self.config)
            self.add_halo(fig, rig, fig_hfr, fig_in)
        key = self._key(filter_name, rig)
        prev = self._last.get(key)
        if prev is not None and prev[2] == self._epoch and (
                prev[1] is None or focuser_pos is None
                or abs(float(focuser_pos) - float(prev[1])) <= self.config.witness_focuser_steps):
            self._diffs.setdefault(key, []).append(math.log(hfr_px) - prev[0])
            del self._diffs[key][:-_JITTER_DIFFS]
        self._last[key] = (math.log(hfr_px), focuser_pos, self._epoch)
        c = self._by_filter.get(key)
        if c is None or not self._same_focus(c, focuser_pos):
            c = self._by_filter[key] = _Collect(focuser_pos, [], None)
        if len(c.hfrs) < self.config.witness_frames:
            c.hfrs.append(float(hfr_px))
            c.last_time_s = time_s
        else:
            c.n_after += 1


def night_witnesses(stats_list: Sequence[Any], rig: Rig | None = None,
                    config: DiagnoseConfig = DiagnoseConfig(), *,
                    dew_reference: bool = False) -> list[SeeingWitness | None]:
    """The witness for each frame of a folder (same order as ``stats_list``).

    Frames are taken in capture order (DATE-OBS, when every frame has one); a change of a
    filter's focuser position (FOCPOS) is its autofocus, as in the night's story. Without
    FOCPOS the first frames of each filter are its witness until it expires. A seeing
    monitor's header value, when a frame has one, is its witness. With ``dew_reference`` (the
    night's story, ``diagnose FOLDER``, ``grade``) every light frame also gets the night's dew
    reference (``SeeingWitness.halo_*``: the first ``dew_night_frames`` frames of
    the rig and plate scale, whatever the filter or focus), those first frames included.
    """
    from focuswatch.optics import rig_with_header

    items = list(stats_list)
    ts = [getattr(getattr(s, "meta", None), "timestamp", None) for s in items]
    order = sorted(range(len(items)), key=lambda i: ts[i]) if items and all(t is not None for t in ts) \
        else list(range(len(items)))
    out: list[SeeingWitness | None] = [None] * len(items)
    trackers: dict[Any, WitnessTracker] = {}
    # per tracker, in capture order: (index, dew figure, rig, star HFR px, night dew figure)
    seen: dict[Any, list[tuple[int, float | None, Rig, float | None, float | None]]] = {}
    for i in order:
        s = items[i]
        meta = getattr(s, "meta", None)
        mon = monitor_witness(meta)
        pos = getattr(meta, "focuser_pos", None) if meta is not None else None
        r = rig_with_header(rig or Rig(), meta) if meta is not None else (rig or Rig())
        key = (r.aperture_mm, r.focal_length_mm, r.effective_pixel_um)
        tr = trackers.get(key)
        if tr is None:
            tr = trackers[key] = WitnessTracker(r, config, plate_scale_arcsec_px=getattr(s, "plate_scale_arcsec_px", None))
        filt = getattr(meta, "filter_name", None)
        if meta is not None and not getattr(meta, "is_light", True):
            continue  # a flat or dark among the frames: no witness for it, nor from it
        w = tr.context_for(filt, ts[i], pos) if dew_reference else tr.witness_for(filt, ts[i], pos)
        out[i] = with_monitor(mon, w)
        tr.add(filt, ts[i], getattr(s, "hfr_px", None), pos, n_stars=getattr(s, "n_stars", None))
        if dew_reference:
            fig, fig_hfr, fig_in = frame_night_dew_figures(s, r, config)
            tr.add_halo(fig, r, fig_hfr, fig_in)
            seen.setdefault(key, []).append((i, fig, r, fig_hfr, fig_in))
    # the whole night is known here: its first frames (judged before the dew reference was complete)
    # are judged against it too, each with the frames before it (a lone wide frame among them is
    # no lasting halo)
    keep = max(0, int(config.dew_night_window) - 1)
    for key, frames in seen.items():
        for j, (i, _, r, _, _) in enumerate(frames):
            if out[i] is not None and out[i].halo_ref_excess is not None:
                continue
            halo = trackers[key].halo_reference(r)
            if halo is None:
                continue
            before = [(f, fh, fi) for _, f, _, fh, fi in frames[:j] if f is not None and math.isfinite(f)]
            before = before[-keep:] if keep else []
            halo["halo_recent"] = tuple(f for f, _, _ in before)
            halo["halo_recent_hfr_px"] = tuple(math.nan if fh is None else float(fh) for _, fh, _ in before)
            halo["halo_recent_inner"] = tuple(math.nan if fi is None else float(fi) for _, _, fi in before)
            out[i] = _with_halo(out[i], halo)
    return out


#: The labels a seeing witness can turn into ``focus_miss`` (it only adds a size call to the
#: focus-miss score, which needs no pixels; poor seeing falls as the miss rises).
_WITNESS_CAN_CHANGE = ("in_focus", "poor_seeing")


def rejudge(diagnosis: Any, stats: Any, rig: Rig | None, witness: SeeingWitness | None, *,
            baseline_hfr_px: float | None = None, config: DiagnoseConfig = DiagnoseConfig()) -> Any:
    """A frame's diagnosis judged again with the night's seeing witness (batch commands, whose
    frames were diagnosed before the night's witnesses were known).

    The witness adds the size call to the focus-miss score only, and that score needs no
    pixels: so a diagnosis made with the pixels that said ``in_focus`` or ``poor_seeing`` becomes
    the witnessed one (made from the star table) when that says ``focus_miss``; otherwise the
    label, findings and figures stay as they were and only the witness figures of ``evidence``
    (``witness_*``, ``size_defocus_cfz_low``, ``seeing_worse_than_witness``) are added.
    With the night's dew reference (``witness.halo_ref_excess``) the dew call is the night's too
    (it needs no pixels either): ``in_focus``/``poor_seeing`` becomes a witnessed ``dew``, a ``dew``
    whose wings the night's first frames already had becomes the witnessed ``in_focus``/
    ``poor_seeing``, and the ``dew`` finding follows the night's call.
    The witness is optional: when judging again fails, the diagnosis stands (logged), so one
    frame cannot stop ``diagnose FOLDER``, the night's story, ``report`` or ``grade``.
    """
    from dataclasses import replace

    from focuswatch.diagnose.verdict import frame

    if witness is None or diagnosis is None or getattr(diagnosis, "label", None) == "unknown":
        return diagnosis
    try:
        w = frame(stats, rig, baseline_hfr_px=baseline_hfr_px, config=config, seeing_witness=witness)
    except Exception as exc:  # noqa: BLE001 - an optional second look must not lose the first
        log.debug("%s: judging again with the seeing witness failed (%s)", getattr(diagnosis, "file", None), exc,
                  exc_info=exc)
        return diagnosis
    if w.label == "unknown":
        return diagnosis
    night_dew = w.evidence.halo_rise is not None
    # the dew call is the witness' only with the night's reference: a seeing witness alone adds
    # nothing to it, and the pixels' call stands
    if (w.label == "focus_miss" or (night_dew and w.label == "dew")) and diagnosis.label in _WITNESS_CAN_CHANGE:
        return replace(w, file=diagnosis.file)
    if night_dew and diagnosis.label == "dew" and w.label in _WITNESS_CAN_CHANGE:
        return replace(w, file=diagnosis.file)  # the night's reference holds these wings: no lasting rise
    keep = ("size_defocus_cfz_low", "witness_seeing_arcsec", "witness_source", "witness_hfr_px",
            "witness_n_frames", "witness_age_s", "witness_jitter_pct", "seeing_worse_than_witness", "halo_rise")
    findings = diagnosis.findings
    if night_dew:  # the dew finding follows the night's call
        findings = tuple(f for f in findings if f.label != "dew") + tuple(f for f in w.findings if f.label == "dew")
    return replace(diagnosis, findings=findings,
                   evidence=replace(diagnosis.evidence, **{k: getattr(w.evidence, k) for k in keep}))


__all__ = ["INFOCUS", "MONITOR", "SeeingWitness", "WitnessTracker", "dew_figures", "frame_dew_figures",
           "frame_night_dew_figures",
           "monitor_witness", "night_witnesses", "rejudge", "seeing_from_infocus_hfr", "with_monitor"]
