"""Who is near whom: pairs of points within a reach, connected groups of them, and each
star's nearest neighbours (pure numpy; a star field is too small to pay for importing a
k-d tree).

Detection uses the pairs and groups to find deblended pieces of one donut; measuring uses
the nearest neighbours to mask their light out of a star's stamp.
"""
from __future__ import annotations

import numpy as np


def _neighbours_within(x: np.ndarray, y: np.ndarray, sel: np.ndarray,
                       r: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every other point within ``r`` of the points ``sel``: (row in ``sel``, index of the
    neighbour, distance), sorted by row then distance."""
    i, j = _pairs_within(x, y, r)
    row_of = np.full(len(x), -1, np.int64)
    row_of[sel] = np.arange(len(sel))
    rows = np.concatenate([row_of[i], row_of[j]])
    other = np.concatenate([j, i])
    take = rows >= 0
    rows, other = rows[take], other[take]
    me = np.asarray(sel)[rows]
    d = np.sqrt((x[me] - x[other]) ** 2 + (y[me] - y[other]) ** 2)
    o = np.lexsort((other, d, rows))
    return rows[o], other[o], d[o]


def _nearest_offsets(x: np.ndarray, y: np.ndarray, n: int, rows: np.ndarray, other: np.ndarray, d: np.ndarray,
                     k: int, r: float, ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) offsets from each star's stamp centre ``(ix, iy)`` to its ``k`` nearest
    neighbours closer than ``r`` (from :func:`_neighbours_within`); 1e6 where there are fewer."""
    nbx = np.full((n, k), 1e6)
    nby = np.full((n, k), 1e6)
    close = d < r
    rows, other = rows[close], other[close]
    if len(rows):
        first = np.searchsorted(rows, rows, side="left")
        rank = np.arange(len(rows)) - first
        use = rank < k
        rows, other, rank = rows[use], other[use], rank[use]
        nbx[rows, rank] = x[other] - ix[rows]
        nby[rows, rank] = y[other] - iy[rows]
    return nbx, nby


#: candidate pairs examined per numpy step in :func:`_pairs_within` (bounds memory in a
#: crowded field: 2M pairs ~ 50 MB of temporaries)
_PAIR_CHUNK = 2_000_000


def _pairs_within(x: np.ndarray, y: np.ndarray, reach: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j), in lexicographic order, with distance <= max(reach_i, reach_j).

    A sweep over the points sorted by x: each point looks only at the points within its own
    reach in x, then the exact distance decides. Pure numpy (importing scipy.spatial for a
    k-d tree costs more than the whole search on a few thousand stars).
    """
    n = len(x)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    reach = np.broadcast_to(np.asarray(reach, dtype=np.float64), x.shape)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    pad = reach + 1e-9 * (1.0 + np.abs(x))  # rounding of x +- reach must not lose a pair
    lo = np.searchsorted(xs, x - pad, side="left")
    cnt = np.searchsorted(xs, x + pad, side="right") - lo
    cum = np.cumsum(cnt)
    keys = []
    start = 0
    while start < n:
        done = int(cum[start - 1]) if start else 0
        end = max(start + 1, int(np.searchsorted(cum, done + _PAIR_CHUNK, side="right")))
        c = cnt[start:end]
        ii = np.repeat(np.arange(start, end), c)
        within = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        jj = order[np.repeat(lo[start:end], c) + within]
        d2 = (x[ii] - x[jj]) ** 2 + (y[ii] - y[jj]) ** 2
        ok = (d2 <= reach[ii] * reach[ii]) & (ii != jj)
        a, b = np.minimum(ii[ok], jj[ok]), np.maximum(ii[ok], jj[ok])
        keys.append(a * n + b)
        start = end
    key = np.unique(np.concatenate(keys))
    return key // n, key % n


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected components of the undirected graph with edges (i, j) on ``n`` nodes.

    Labels are numbered in the order of each component's lowest node, as
    ``scipy.sparse.csgraph.connected_components`` numbers them (min-label propagation with
    pointer jumping; a few numpy passes for the small groups of a star field).
    """
    label = np.arange(n)
    if len(i):
        while True:
            m = np.minimum(label[i], label[j])
            new = label.copy()
            np.minimum.at(new, i, m)
            np.minimum.at(new, j, m)
            new = new[new]
            while True:
                nxt = new[new]
                if np.array_equal(nxt, new):
                    break
                new = nxt
            if np.array_equal(new, label):
                break
            label = new
    return np.unique(label, return_inverse=True)[1].astype(np.int32)


def _candidate_pairs(cx: np.ndarray, cy: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) closer than the larger of their two ``reach`` values.

    One search radius per object: a single big object (a bright star's wide footprint)
    must not make every small one search that far, which on a 3000-star frame costs more
    than the whole measurement.
    """
    return _pairs_within(cx, cy, reach)
