"""What travels in and out of the policy: frames, autofocus marks and decisions.

:class:`FrameRecord` is one measured frame as the policy sees it (built by the pipeline with
:func:`record_from_stats`); :class:`HfrRecord` is a capture program's HFR-only view of a frame
(NINA's image statistics), turned into a :class:`FrameRecord`; :class:`AutofocusMark` says an
autofocus happened; :class:`Decision` is the verdict on one frame. All are frozen
:class:`~focuswatch.model.records.Record` values: the journal, ``--json`` and ``replay`` share
their one schema.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from focuswatch.model.records import Record


DECISIONS = ("ok", "refocus", "skip")


@dataclass(frozen=True)
class FrameRecord(Record):
    """One measured frame as the policy sees it (from ``FrameStats`` plus the header).

    ``time_s`` is the capture time (DATE-OBS, seconds since the epoch, UTC); ``temp_c`` the
    focuser temperature (else ambient); ``star_flux_adu`` the median star flux and
    ``background_adu`` the sky level, both over the whole exposure. ``diagnosis`` is the
    label of the single-frame diagnosis when one was made, ``diagnosis_advice`` its advice.
    ``seeing_arcsec`` is a measured seeing FWHM when one is known (a seeing monitor);
    ``hfr_kind`` ``"nina"`` when ``hfr_px`` is NINA's flux-weighted HFR (HFR-only records,
    :class:`HfrRecord`), else ``None`` (the true half-flux radius).
    """

    file: str
    time_s: float
    n_stars: int = 0
    hfr_px: float | None = None
    fwhm_px: float | None = None
    eccentricity: float | None = None
    profile_ratio: float | None = None
    star_flux_adu: float | None = None
    background_adu: float | None = None
    exposure_s: float | None = None
    filter_name: str | None = None
    temp_c: float | None = None
    focuser_pos: int | None = None
    airmass: float | None = None
    is_light: bool = True
    diagnosis: str | None = None
    diagnosis_advice: str | None = None
    seeing_arcsec: float | None = None
    hfr_kind: str | None = None
    #: what the header says the optical train is (:func:`rig_id_of`); a change forgets the
    #: night's autofocus positions for the temperature coefficient
    rig_id: str | None = None

    @property
    def has_size(self) -> bool:
        """A usable star size: finite and positive. NINA writes HFR 0 or NaN when it found no star;
        such a value in a baseline or a log-HFR fit would turn every later figure into NaN."""
        return self.hfr_px is not None and math.isfinite(self.hfr_px) and self.hfr_px > 0

    @property
    def flux_per_s(self) -> float | None:
        if self.star_flux_adu is None:
            return None
        return self.star_flux_adu / self.exposure_s if self.exposure_s else self.star_flux_adu


def record_from_stats(stats: Any, *, file: str, time_s: float, diagnosis: str | None = None,
                      diagnosis_advice: str | None = None) -> FrameRecord:
    """Build a :class:`FrameRecord` from a ``stars.FrameStats`` (its ``meta`` gives the header)."""
    meta = stats.meta
    return FrameRecord(
        file=file, time_s=float(time_s), n_stars=int(stats.n_stars or 0), hfr_px=stats.hfr_px,
        fwhm_px=stats.fwhm_px, eccentricity=stats.eccentricity, profile_ratio=stats.profile_ratio,
        star_flux_adu=stats.star_flux_adu, background_adu=stats.background_adu,
        exposure_s=meta.exposure_s, filter_name=meta.filter_name, temp_c=meta.temperature_c,
        focuser_pos=meta.focuser_pos, airmass=meta.airmass, is_light=meta.is_light,
        diagnosis=diagnosis, diagnosis_advice=diagnosis_advice, seeing_arcsec=getattr(meta, "seeing_arcsec", None),
        rig_id=rig_id_of(meta))


def rig_id_of(meta: Any) -> str | None:
    """The optical train as the header names it: TELESCOP, the focuser (FOCNAME), FOCALLEN, the
    pixel size and binning, ``None`` when the header gives none of them. Two frames with another
    id were taken through another train (a reducer, another camera or focuser), where the same
    focuser position is another focus."""
    def num(x: Any) -> str:
        return f"{float(x):g}" if isinstance(x, (int, float)) and math.isfinite(x) else ""

    parts = (str(getattr(meta, "telescope", None) or "").strip(), str(getattr(meta, "focuser_name", None) or "").strip(),
             num(getattr(meta, "focal_length_mm", None)), num(getattr(meta, "pixel_um", None)),
             num(getattr(meta, "binning", None)))
    return "|".join(parts) if any(parts) else None


@dataclass(frozen=True)
class HfrRecord(Record):
    """One light frame as a capture program reports it, without pixels: what the policy needs.

    The fields map one to one onto N.I.N.A.'s image statistics (image history
    ``GET /v2/api/image-history`` and the Advanced API WebSocket event ``IMAGE-SAVE`` →
    ``ImageStatistics``):

    ==================  ==================  =======================================================
    field               NINA                meaning
    ==================  ==================  =======================================================
    ``file``            ``Filename``        the frame's (base) name: a key, never opened
    ``time_s``          ``Date``            capture time, seconds since 1970 UTC (convert the ISO
                                            string at the edge, e.g. ``statefile.parse_iso``)
    ``hfr_px``          ``HFR``             NINA's HFR (flux-weighted mean radius, px); 0 or NaN
                                            when NINA found no stars
    ``hfr_stdev_px``    ``HFRStDev``        scatter of the HFR over the stars (px), informative
    ``n_stars``         ``Stars``           stars detected
    ``filter_name``     ``Filter``          the filter (None / "" when there is no wheel)
    ``exposure_s``      ``ExposureTime``    seconds
    ``image_type``      ``ImageType``       LIGHT, FLAT, DARK... (only LIGHT is judged)
    ``temp_c``          --                  focuser temperature when known (°C)
    ``airmass``         --                  when known (the policy scales seeing by it)
    ``seeing_arcsec``   --                  a measured seeing FWHM (seeing monitor) if any
    ==================  ==================  =======================================================

    ``hfr_kind`` says which half-flux definition ``hfr_px`` uses: ``"nina"`` (NINA / ASTAP,
    flux-weighted mean radius) or ``"true"`` (radius enclosing half the flux, as
    ``focuswatch measure``). Growth ratios are nearly the same for both; only the comparison
    with the rig's expected size (:func:`infocus_hfr_px`, a true half-flux radius) needs it.
    """

    file: str
    time_s: float
    hfr_px: float | None
    n_stars: int = 0
    hfr_stdev_px: float | None = None
    filter_name: str | None = None
    exposure_s: float | None = None
    image_type: str = "LIGHT"
    temp_c: float | None = None
    airmass: float | None = None
    seeing_arcsec: float | None = None
    hfr_kind: str = "nina"

    def __post_init__(self) -> None:
        if self.hfr_kind not in ("nina", "true"):
            raise ValueError(f"hfr_kind must be 'nina' or 'true', not {self.hfr_kind!r}")

    @classmethod
    def from_nina(cls, stats: Mapping[str, Any], *, time_s: float, **extra: Any) -> "HfrRecord":
        """From NINA's ``ImageStatistics`` / image-history entry (keys as NINA spells them).

        ``time_s`` is NINA's ``Date`` already converted (this module reads no clock and parses
        no dates). Missing or NaN HFR gives ``hfr_px = None`` (the policy skips the frame).
        """
        def num(key: str) -> float | None:
            v = stats.get(key)
            try:
                x = float(v)
            except (TypeError, ValueError):
                return None
            return x if math.isfinite(x) else None

        hfr = num("HFR")
        stars = num("Stars")
        return cls(file=str(stats.get("Filename") or stats.get("FileName") or ""), time_s=float(time_s),
                   hfr_px=hfr if hfr and hfr > 0 else None, n_stars=int(stars or 0),
                   hfr_stdev_px=num("HFRStDev"), filter_name=(stats.get("Filter") or None),
                   exposure_s=num("ExposureTime"), image_type=str(stats.get("ImageType") or "LIGHT"),
                   **extra)

    def to_frame_record(self) -> "FrameRecord":
        """The :class:`FrameRecord` the policy consumes (no profile, no flux)."""
        return FrameRecord(file=self.file, time_s=float(self.time_s), n_stars=int(self.n_stars),
                           hfr_px=self.hfr_px, exposure_s=self.exposure_s, filter_name=self.filter_name,
                           temp_c=self.temp_c, airmass=self.airmass,
                           is_light=self.image_type.strip().upper() in ("LIGHT", ""),
                           seeing_arcsec=self.seeing_arcsec, hfr_kind=self.hfr_kind)


@dataclass(frozen=True)
class AutofocusMark(Record):
    """An autofocus the policy was told about (NINA report, ``autofocus-done``, focuser jump).

    ``time_s`` in seconds since the epoch; ``temp_c``/``filter_name``/``position`` when known.
    """

    time_s: float
    source: str = "autofocus-done"
    filter_name: str | None = None
    temp_c: float | None = None
    position: int | None = None


@dataclass(frozen=True)
class Decision(Record):
    """The policy's verdict on one frame; the fields are the ``--json`` keys of ``replay``/``watch``.

    ``decision`` is ``ok``, ``refocus`` or ``skip``; ``reasons`` are sentences for people;
    ``rules`` names the rules that fired (refocus) or the veto (skip); ``held`` the rules that
    would have fired but were held back by a veto. Figures: sizes in px, defocus in um and as
    a fraction of the critical focus zone (``defocus_cfz``), ``trend_pct_per_h`` the HFR trend
    in % of the baseline per hour, ``jitter_pct`` the frame-to-frame scatter (% of baseline),
    ``temp_delta_c`` the focuser temperature change since the autofocus.
    ``predicted_defocus_um``/``predicted_defocus_low_um`` come from the drift model one frame
    ahead (point estimate and lower bound), ``model_defocus_um`` its defocus at this frame
    (steadier than ``defocus_um``, one frame's estimate), ``drift_z`` its growth's significance in sigmas
    (from the later onset the model took, if it took one: ``drift_onsets``; the drift rule's reason
    says which asked) and
    ``profile_drop`` how far HFD/FWHM fell below the baseline's (positive: flatter, defocus).
    ``reference_hfr_px`` is the independent in-focus HFR (night's best, other filters scaled
    by wavelength, rig + seeing), ``reference_pct`` its log scatter in %, ``reference_z`` how
    many sigmas the last ``reference_frames`` frames sit above it.
    """

    file: str
    decision: str
    reasons: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    time_s: float | None = None
    filter_name: str | None = None
    n_stars: int | None = None
    hfr_px: float | None = None
    baseline_hfr_px: float | None = None
    expected_hfr_px: float | None = None
    defocus_um: float | None = None
    defocus_cfz: float | None = None
    cfz_um: float | None = None
    limit_um: float | None = None
    predicted_defocus_um: float | None = None
    predicted_defocus_low_um: float | None = None
    trend_pct_per_h: float | None = None
    trend_z: float | None = None
    drift_z: float | None = None
    model_defocus_um: float | None = None
    profile_drop: float | None = None
    jitter_pct: float | None = None
    profile_ratio: float | None = None
    baseline_profile_ratio: float | None = None
    temp_c: float | None = None
    temp_delta_c: float | None = None
    minutes_since_af: float | None = None
    n_frames_since_af: int | None = None
    reference_hfr_px: float | None = None
    reference_pct: float | None = None
    reference_z: float | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {self.decision!r}")

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Record.to_dict`, with the sentence and name tuples as JSON's lists."""
        d = asdict(self)
        for k in ("reasons", "rules", "held", "warnings"):
            d[k] = list(d[k])
        return d
