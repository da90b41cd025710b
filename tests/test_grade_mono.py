"""Grading mono nights: Siril's registration term in the limit, and the letters, on physical optics.

Truth that focuswatch did not produce: GalSim nights (Kolmogorov seeing x the scope's Airy
pattern and Zernike defocus x the pixel, noisy 16-bit subs, random sub-pixel dithers), stacked by
the real ``siril-cli`` exactly as ``grade`` does. Two samplings: the issue's 50 mm f/5 with 2.9 um
pixels (1.43 px stars, undersampled) and a 200 mm f/5 with 3.76 um pixels (3.36 px stars).
"""
from __future__ import annotations

from pathlib import Path

import pytest

import galsim_truth as gt
from focuswatch.render import night

UNDER = gt.Scope(diam_mm=50.0, f_ratio=5.0, pixel_um=2.9, lam_nm=550.0)
WELL = gt.Scope()
IN_FOCUS = [0.0] * 8
#: four subs in focus, then a drift (the CFZ at f/5 is ~67 um): the defocused ones are what a restack drops
DRIFT = [0.0] * 4 + [60.0, 90.0, 120.0, 150.0]
#: test_report's drifting session (focuswatch.sim), on physical optics
REPORT_DRIFT = [0.0, 0.0, 30.0, 60.0, 120.0, 150.0, 180.0, 210.0]


@pytest.fixture(scope="module")
def mono_nights(tmp_path_factory):
    root = tmp_path_factory.mktemp("mono")
    nights = {("under", "focus"): (UNDER, IN_FOCUS), ("under", "drift"): (UNDER, DRIFT),
              ("well", "focus"): (WELL, IN_FOCUS), ("well", "report_drift"): (WELL, REPORT_DRIFT)}
    for (kind, name), (scope, defocus) in nights.items():
        gt.mono_night(root / f"{kind}_{name}", defocus, scope=scope, seed=3)
    return root


def _grade(folder: Path):
    sg = night.grade_session(folder, progress=False)
    return sg.filters[0]


@pytest.mark.siril
@pytest.mark.parametrize("kind", ["under", "well"])
def test_in_focus_mono_night_grades_a_with_the_stacking_term(siril_cli, mono_nights, kind):
    """Perfect focus, steady 2.5" seeing: the master is as sharp as Siril's stacking allows. Before,
    the undersampled night graded C (1.33): no stacking term, and a seeing core read 10 % under the
    stars' FWHM; the well-sampled one C (1.33), the core 22 % under."""
    fg = _grade(mono_nights / f"{kind}_focus")
    g = fg.grade
    assert fg.stack["debayered"] is False and fg.n_stacked == 8
    assert g.letter == "A", (g.ratio, g.explanation)
    assert g.causes == {} and g.reject == ()
    assert g.resampling_fwhm_px > 0.5 and 0.0 < g.registration_var_px2 < 0.25
    # nothing taken out of in-focus subs: the limit holds the best subs' own stars
    assert g.seeing_source == "best subs"
    assert g.limit_fwhm_px > g.best_subs_fwhm_px


@pytest.mark.siril
def test_drifting_undersampled_mono_night_is_not_a_and_blames_exactly_the_defocused_subs(siril_cli, mono_nights):
    g = _grade(mono_nights / "under_drift").grade
    assert set(g.causes) == {"focus"}
    assert sorted(Path(p).name for p in g.reject) == [f"light_{k:03d}.fits" for k in range(4, 8)]
    assert g.letter not in ("A", "B")  # half the subs out of focus: reject them and stack again
    assert "out of focus" in g.explanation


@pytest.mark.siril
def test_report_sessions_drift_on_physical_optics(siril_cli, mono_nights):
    """test_report's drifting session (0-210 um on the 200 mm f/5, up to 3 CFZ) rendered with
    physical optics instead of focuswatch.sim: the master is clearly softer than the in-focus
    night's (its FWHM 22 % above it, against 32 % on the simulator), the subs from 120 um on are
    blamed on focus and the sub at 0 um is not."""
    good = _grade(mono_nights / "well_focus").grade
    bad = _grade(mono_nights / "well_report_drift").grade
    assert good.letter == "A" and bad.letter > "B"
    assert bad.master_fwhm_px > 1.15 * good.master_fwhm_px
    assert bad.ratio > good.ratio + 0.15
    focus = {Path(v.file).name for v in bad.subs if v.cause == "focus"}
    assert {f"light_{k:03d}.fits" for k in range(4, 8)} <= focus
    assert "light_000.fits" not in {Path(f).name for f in bad.reject}
