"""What a simulated frame is made of (:class:`SimParams`) and the default simulated rig."""
from __future__ import annotations


from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

import numpy as np

from focuswatch import optics
from focuswatch.optics import Rig



#: Default simulated rig: 200 mm f/5, 3.76 um pixels (0.776"/px), 2 um focuser steps.
DEFAULT_RIG = Rig(aperture_mm=200.0, focal_length_mm=1000.0, pixel_um=3.76, binning=1, obstruction=0.0,
                  focuser_step_um=2.0)


SOFTWARE = "N.I.N.A. 3.1.2.9001 (focuswatch sim)"


_BAYER_RESPONSE = {"R": 0.80, "G": 1.00, "B": 0.70}


#: Largest stamp (px, odd): a 60 px donut with seeing, trail and a dew halo fits easily.
MAX_STAMP_PX = 401


# --------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class SimParams:
    """Everything that makes one simulated frame; every effect is a parameter.

    Sizes are sensor pixels (binned), fluxes electrons, levels ADU, angles degrees from +x
    toward +y. Effects default to off, so ``SimParams()`` is a clean, in-focus frame.

    Attributes (beyond the obvious)
    -------------------------------
    seed : star field (positions, fluxes) and sensor (hot pixel map); the same seed gives
        the same stars in every frame of a night.
    noise_seed : photon/read noise and cosmic rays; ``None`` derives it from ``seed`` and
        ``frame_nr`` so frames of a night differ but stay reproducible.
    defocus_um : signed defocus at the field centre (focal plane, um).
    tilt_x_um, tilt_y_um : extra defocus at the right / bottom edge relative to the centre
        (linear, so the left / top edge gets the opposite).
    curvature_um : extra defocus at the corners, growing as r^2 from the centre.
    coma_px : length of the radial comatic tail at the corners (grows linearly with r).
    collimation : 0..1, a one-sided flare (and an off-centre donut hole) in the direction
        ``collimation_angle_deg``, the same everywhere including the centre.
    trail_px, trail_angle_deg : linear smear (wind, guiding), same everywhere.
    dew : 0..1, fraction 0.45*dew of the light goes into a broad halo (FWHM (3+6*dew) x
        seeing), transmission falls by 25*dew %, scattered light raises the sky 25*dew %.
    cloud : 0..1, star flux x (1 - cloud), sky x (1 + cloud_sky_gain * cloud).
    sky_adu : sky level above bias (ADU) at the frame centre; ``sky_gradient`` is the
        fractional change across the frame along ``sky_gradient_angle_deg``.
    star_flux_min_e, star_flux_max_e, flux_power_index : fluxes follow a power law,
        N(>F) ~ F**-flux_power_index, between the two limits (electrons per frame).
    bayer : ``None`` (mono) or a CFA pattern like ``"RGGB"`` (written as BAYERPAT; pixel
        sensitivities R 0.8, G 1.0, B 0.7).
    """

    width_px: int = 1024
    height_px: int = 1024
    n_stars: int = 200
    seed: int = 1
    noise_seed: int | None = None
    rig: Rig = field(default_factory=lambda: DEFAULT_RIG)
    seeing_fwhm_arcsec: float = 2.5
    moffat_beta: float = 3.5
    defocus_um: float = 0.0
    tilt_x_um: float = 0.0
    tilt_y_um: float = 0.0
    curvature_um: float = 0.0
    coma_px: float = 0.0
    collimation: float = 0.0
    collimation_angle_deg: float = 30.0
    trail_px: float = 0.0
    trail_angle_deg: float = 0.0
    dew: float = 0.0
    cloud: float = 0.0
    cloud_sky_gain: float = 1.0
    sky_adu: float = 800.0
    sky_gradient: float = 0.0
    sky_gradient_angle_deg: float = 90.0
    read_noise_e: float = 3.0
    gain_e_per_adu: float = 1.0
    bias_adu: float = 500.0
    exposure_s: float = 120.0
    star_flux_min_e: float = 3000.0
    star_flux_max_e: float = 3.0e6
    flux_power_index: float = 0.75
    saturation_adu: float = 65535.0
    n_hot_pixels: int = 0
    n_cosmic_rays: int = 0
    dither_x_px: float = 0.0
    dither_y_px: float = 0.0
    filter_name: str = "L"
    temp_c: float = 10.0
    sensor_temp_c: float = -10.0
    focuser_pos: int = 10000
    date_obs: str = "2026-11-21T22:14:03.000"
    image_type: str = "LIGHT"
    object_name: str = "SIM FIELD"
    altitude_deg: float = 60.0
    bayer: str | None = None
    frame_nr: int = 1
    camera_gain: int = 100
    camera_offset: int = 50

    def __post_init__(self) -> None:
        problems = []
        if self.width_px < 16 or self.height_px < 16:
            problems.append(f"width_px/height_px = {self.width_px}x{self.height_px}: need at least 16x16")
        if self.n_stars < 0:
            problems.append(f"n_stars = {self.n_stars}: must be >= 0")
        for name in ("dew", "cloud", "collimation"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                problems.append(f"{name} = {v}: must be between 0 and 1")
        if self.seeing_fwhm_arcsec < 0:
            problems.append(f"seeing_fwhm_arcsec = {self.seeing_fwhm_arcsec}: must be >= 0")
        if not self.moffat_beta > 1.0:
            problems.append(f"moffat_beta = {self.moffat_beta}: must be > 1 (inf means Gaussian)")
        if self.trail_px < 0 or self.coma_px < 0:
            problems.append("trail_px and coma_px must be >= 0")
        if self.gain_e_per_adu <= 0 or self.read_noise_e < 0 or self.sky_adu < 0:
            problems.append("gain_e_per_adu must be > 0, read_noise_e and sky_adu >= 0")
        if not 0 < self.star_flux_min_e <= self.star_flux_max_e:
            problems.append("need 0 < star_flux_min_e <= star_flux_max_e")
        if self.flux_power_index <= 0:
            problems.append("flux_power_index must be > 0")
        if self.bayer is not None and self.bayer.upper() not in ("RGGB", "BGGR", "GRBG", "GBRG"):
            problems.append(f"bayer = {self.bayer!r}: use None or one of RGGB, BGGR, GRBG, GBRG")
        rig = self.rig
        if not (rig.f_ratio and rig.effective_pixel_um and rig.focal_length_mm):
            problems.append("rig needs focal_length_mm, aperture_mm (or f_ratio) and pixel_um")
        if not 0.0 <= rig.obstruction < 0.95:
            problems.append(f"rig.obstruction = {rig.obstruction}: must be in [0, 0.95)")
        if problems:
            raise ValueError("SimParams: " + "; ".join(problems))

    # convenient derived quantities -------------------------------------------------
    @property
    def f_ratio(self) -> float:
        return float(self.rig.f_ratio)  # type: ignore[arg-type]

    @property
    def pixel_um(self) -> float:
        return float(self.rig.effective_pixel_um)  # type: ignore[arg-type]

    @property
    def plate_scale_arcsec_px(self) -> float:
        return float(self.rig.plate_scale_arcsec_px)  # type: ignore[arg-type]

    @property
    def seeing_fwhm_px(self) -> float:
        return self.seeing_fwhm_arcsec / self.plate_scale_arcsec_px

    def blur_px(self, defocus_um: float | None = None) -> float:
        """Outer diameter (px) of the defocus disk for ``defocus_um`` (default: the centre's)."""
        d = self.defocus_um if defocus_um is None else defocus_um
        return optics.blur_diameter_um(d, self.f_ratio) / self.pixel_um

    @property
    def field_varies(self) -> bool:
        """True when tilt, curvature or coma make the PSF depend on the position."""
        return bool(self.tilt_x_um or self.tilt_y_um or self.curvature_um or self.coma_px)

    def with_(self, **changes: Any) -> "SimParams":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the rig with all its fields (f_ratio_given too), as from_dict reads it

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SimParams":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "moffat_beta" in kw and kw["moffat_beta"] is None:  # JSON has no infinity: null = Gaussian
            kw["moffat_beta"] = float("inf")
        if isinstance(kw.get("rig"), Mapping):
            rnames = {f.name for f in fields(Rig)}
            kw["rig"] = Rig(**{k: v for k, v in kw["rig"].items() if k in rnames})
        return cls(**kw)


def sim_rig(rig: Rig | None = None) -> Rig:
    """``rig`` completed with :data:`DEFAULT_RIG`'s values where it has none.

    A focal ratio given without an aperture sets the aperture (``focal / N``) so the
    header's APTDIA and FOCRATIO agree.
    """
    if rig is None:
        return DEFAULT_RIG
    given = {f.name: getattr(rig, f.name) for f in fields(Rig)}
    out = DEFAULT_RIG.with_(**given)
    if rig.f_ratio_given and out.focal_length_mm:
        out = replace(out, aperture_mm=out.focal_length_mm / float(rig.f_ratio_given))
    return out


def field_defocus_um(params: SimParams, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """Signed defocus (um) at image position(s) ``(x, y)``: centre + tilt + curvature.

    >>> p = SimParams(width_px=101, height_px=101, tilt_x_um=20.0)
    >>> float(field_defocus_um(p, 100.0, 50.0))
    20.0
    """
    cx, cy = (params.width_px - 1) / 2.0, (params.height_px - 1) / 2.0
    xn = (np.asarray(x, float) - cx) / max(cx, 1e-9)
    yn = (np.asarray(y, float) - cy) / max(cy, 1e-9)
    r2 = (xn * xn * cx * cx + yn * yn * cy * cy) / max(cx * cx + cy * cy, 1e-9)
    return params.defocus_um + params.tilt_x_um * xn + params.tilt_y_um * yn + params.curvature_um * r2
