"""Simulated frames with a known truth, for tests, benchmarks and the live demo.

Pure computation (numpy/scipy, a seeded :class:`numpy.random.Generator`): nothing here reads
the clock or the disk, except the small I/O edge :mod:`.write`
(:func:`fits_bytes`, :func:`write_fits`, :func:`write_truth`, :func:`write_night`), which only
ever writes into a folder the caller names (never next to a user's frames).

One module per job: :mod:`.params` (:class:`SimParams`, the default rig), :mod:`.psf` (the
continuous PSF and its exact figures), :mod:`.image` (one frame, its truth and header),
:mod:`.night` (a drifting focuser and a night's plan), :mod:`.write` (files); physical optics
(pupil, aberrations, Kolmogorov seeing) in :mod:`.physical`, Bahtinov masks in :mod:`.mask`.

The model
---------
A star's light at the focal plane is the *continuous* point-spread function (PSF)

    PSF = seeing (Moffat, FWHM, beta)                       -- atmosphere
          (*) defocus annulus (outer diameter B = |defocus| / N,
              inner diameter obstruction * B)                -- geometric defocus
          (*) comatic tail (radial, length grows with r)     -- coma
          (*) one-sided tail in a fixed direction            -- collimation
          (*) line segment                                   -- wind / guiding trail
          (*) (1 - a) delta + a broad Gaussian halo          -- dew

where ``(*)`` is convolution. Defocus varies over the field as
``defocus_um + tilt_x_um * xn + tilt_y_um * yn + curvature_um * (r / r_corner)**2`` with
``xn``, ``yn`` in [-1, 1] from the left/top to the right/bottom edge.

The PSF is computed on a fine grid (``os`` x ``os`` samples per pixel, ``os`` = 7, 5 or 3
depending on the stamp size) by FFT convolution, once per distinct field condition (one
PSF when nothing varies across the field, else one per cell of a coarse grid fine enough
that the blur changes by <= 0.3 px and the coma by <= 0.5 px between cells). Each star is
the fine PSF **block-summed over the pixel** (so the image is pixel-integrated) at the
nearest of ``os`` x ``os`` sub-pixel phases; the star's position in the truth is the
quantised position actually rendered, so no interpolation broadens the PSF and the truth
stays exact.

Coordinates follow sep: ``x`` is the column, ``y`` the row, ``(0, 0)`` is the centre of the
first pixel; angles are in degrees from +x toward +y (downwards on screen).

Truth
-----
:func:`truth_for` (and ``SimFrame.truth``) describes the continuous PSF at the field centre:
``hfr_px`` is the radius of the circle, centred on the PSF's centroid, that holds half of
the light; it is computed numerically on a fine grid (spacing <= 0.1 px and <= HFR/15)
with an anti-aliased circular aperture (see :func:`half_flux_radius`). Against closed forms
(uniform disk R/sqrt(2), annulus R*sqrt((1+e^2)/2), Gaussian sigma*sqrt(2 ln 2), Moffat
alpha*sqrt(2**(1/(beta-1)) - 1)) it agrees to better than 0.05 %; per-cell HFRs computed on the
rendering grid (field-varying PSFs) to 0.2 % (tests/test_sim.py checks 0.2 %).

>>> p = SimParams(width_px=64, height_px=64, n_stars=3, seed=1)
>>> t = truth_for(p)
>>> round(t["seeing_fwhm_px"], 3), round(t["hfr_px"], 3)
(3.223, 1.947)
"""
from __future__ import annotations

from focuswatch.sim.params import (  # noqa: F401 - the package's face
    DEFAULT_RIG,
    SOFTWARE,
    MAX_STAMP_PX,
    SimParams,
    sim_rig,
    field_defocus_um,
)
from focuswatch.sim.psf import (  # noqa: F401 - the package's face
    PsfCondition,
    moffat_alpha,
    psf_condition,
    psf_fine,
    half_flux_radius,
    flux_weighted_radius,
    profile_fwhm,
)
from focuswatch.sim.image import (  # noqa: F401 - the package's face
    SimFrame,
    star_image,
    render,
    truth_for,
    nina_file_name,
    fits_header,
)
from focuswatch.sim.night import (  # noqa: F401 - the package's face
    SimFocuser,
    NightPlan,
    night_frames,
    series_from_options,
    SUMMARY_KEYS,
    truth_summary,
)
from focuswatch.sim.write import (  # noqa: F401 - the package's face
    fits_bytes,
    write_fits,
    write_truth,
    iter_write_night,
    write_night,
)

__all__ = [
    "DEFAULT_RIG",
    "SimParams",
    "SimFrame",
    "PsfCondition",
    "render",
    "truth_for",
    "psf_condition",
    "psf_fine",
    "half_flux_radius",
    "flux_weighted_radius",
    "profile_fwhm",
    "moffat_alpha",
    "field_defocus_um",
    "nina_file_name",
    "fits_header",
    "fits_bytes",
    "write_fits",
    "write_truth",
    "SimFocuser",
    "NightPlan",
    "night_frames",
    "write_night",
    "iter_write_night",
    "truth_summary",
    "SUMMARY_KEYS",
    "star_image",
    "series_from_options",
    "sim_rig",
]
