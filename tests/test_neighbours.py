"""The numpy neighbour search and grouping in stars.py against brute force and scipy."""
from __future__ import annotations

import numpy as np
import pytest

from focuswatch.stars.neighbours import _components, _nearest_offsets, _neighbours_within, _pairs_within
from focuswatch.stars.summary import _mad_std


def _brute_pairs(x, y, reach):
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    r = np.maximum(reach[:, None], reach[None, :])
    i, j = np.nonzero(np.triu(d <= r, k=1))
    return i, j


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairs_within_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 400
    x, y = rng.uniform(0, 300, n), rng.uniform(0, 200, n)
    x[:5] = x[5]  # a column of equal x and an exact duplicate
    y[4] = y[5]
    reach = rng.uniform(0.5, 8.0, n)
    reach[7] = 120.0  # one wide footprint
    i, j = _pairs_within(x, y, reach)
    bi, bj = _brute_pairs(x, y, reach)
    assert np.array_equal(i, bi) and np.array_equal(j, bj)


def test_nearest_neighbours_equal_a_kd_tree():
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(5)
    x, y = rng.uniform(0, 500, 1500), rng.uniform(0, 500, 1500)
    sel = rng.choice(1500, 300, replace=False)
    ix, iy = np.rint(x[sel]).astype(np.int64), np.rint(y[sel]).astype(np.int64)
    r, k = 25.0, 6
    rows, other, d = _neighbours_within(x, y, sel, r)
    nbx, nby = _nearest_offsets(x, y, len(sel), rows, other, d, k, r, ix, iy)
    dist, idx = cKDTree(np.column_stack([x, y])).query(np.column_stack([x[sel], y[sel]]), k=k + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]
    assert np.array_equal(nbx, np.where(dist < r, x[idx] - ix[:, None], 1e6))
    assert np.array_equal(nby, np.where(dist < r, y[idx] - iy[:, None], 1e6))


def test_components_number_groups_as_scipy_does():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(3)
    n = 300
    i, j = rng.integers(0, n, 250), rng.integers(0, n, 250)
    _, truth = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    assert np.array_equal(_components(n, i, j), truth)


def test_mad_std_equals_astropys():
    from astropy.stats import mad_std

    x = np.random.default_rng(9).lognormal(0.0, 0.3, 501)
    assert _mad_std(x) == float(mad_std(x))
