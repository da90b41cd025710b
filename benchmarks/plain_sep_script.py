"""The plain sep pipeline focuswatch's ``measure`` is compared with (imports only numpy, sep, astropy).

What a straightforward sep script does: full-frame background, extract, flux_radius. One copy
serves both comparisons in ``bench_measure.py``: in process (:func:`plain_sep` on pixels already
loaded) and as a whole process (``python benchmarks/plain_sep_script.py FILE.fits``: python start,
imports, read, sep), so the two can never measure different pipelines.
"""
from __future__ import annotations

import sys

import numpy as np


def plain_sep(img: np.ndarray) -> np.ndarray:
    """Flux radii (px) of every object a plain sep pipeline finds on ``img``."""
    import sep

    sep.set_extract_pixstack(5_000_000)
    sep.set_sub_object_limit(4096)
    bkg = sep.Background(img)
    sub = img - bkg
    objs = sep.extract(sub, 5.0, err=bkg.globalrms, minarea=5)
    r, _ = sep.flux_radius(sub, objs["x"], objs["y"], 6.0 * objs["a"], 0.5, normflux=objs["flux"], subpix=5)
    return r


if __name__ == "__main__":
    from astropy.io import fits

    radii = plain_sep(fits.getdata(sys.argv[1]).astype(np.float32))
    print(len(radii), float(np.median(radii)))
