"""Exact 1-Wasserstein distances between persistence diagrams, N x N, parallel over cores.

The distance is the one ``persim.wasserstein`` computed before: order p = 1, Euclidean ground
metric between points (birth, death), and a point may instead be matched to the diagonal at its
Euclidean distance to it, ``(death - birth) / sqrt(2)``. Diagrams hold finite bars only. Values
agree with persim to 1e-9 relative, except that persim's point distances (sklearn, Gram identity)
give coincident points a cost of ~1e-8 instead of 0; here they are direct differences.

Speed comes from solving a smaller, equivalent assignment problem. With ``c(s, t)`` the cost of
matching two points and ``g(s) = (death - birth) / sqrt(2)`` their diagonal costs, the optimal
partial matching minimises ``sum g + sum over matched pairs of c(s, t) - g(s) - g(t)``, so only
pairs with a negative gain can be worth matching: a rectangular assignment on the m x n matrix
``min(c - g - g, 0)`` finds it (persim solves the square (m + n) x (m + n) problem). The value is
then summed from the matching's own costs, all non-negative, so near-identical diagrams keep
their digits. Rows of the N x N matrix are shared among worker processes: the per-pair work is
short Python-level calls that hold the GIL, so threads do not help (measured in bench/scale.py).

Incremental and bounded. Row i is computed against the diagrams before it, so a matrix known
for its first k diagrams is extended by computing only the pairs with a later one
(:func:`extend_matrix`); :func:`incremental_matrix` reuses an earlier result for every model
whose diagram content digest is unchanged, whatever the order: adding 10 models to N computes
about 10 N pairs. The map is exact up to ``max_networks`` models; above it, it covers the
``max_networks`` models whose ids hash lowest (:func:`covered`), a subset that adding a model
changes by at most one member, so the cached rows stay useful and the cost stays bounded at
``max_networks``^2 / 2 pairs. Distances between covered models are exact; the others have no
place on this map (bench/README.md, Wasserstein at scale, measures the subset map against the
exact one).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from nnmanifold.core.storage import content_hash

#: Below this many pairs the matrix is computed in this process (a pool costs more than it saves).
MIN_PAIRS_FOR_POOL = 20_000
#: Most diagram points one cost block holds (bounds memory at about 40 x this many floats).
MAX_BLOCK_POINTS = 50_000
_SQRT2 = np.sqrt(2.0)

_shared: list[tuple[np.ndarray, np.ndarray]] = []


def diagonal_costs(diagram: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point (birth, death) to the diagonal."""
    return (diagram[:, 1] - diagram[:, 0]) / _SQRT2


def wasserstein_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Exact 1-Wasserstein distance between two finite diagrams (k x 2 arrays, k may be 0)."""
    a, b = _check_diagram(a, "a"), _check_diagram(b, "b")
    return float(_against((a, diagonal_costs(a)), [(b, diagonal_costs(b))])[0])


def wasserstein_matrix(diagrams: Sequence[np.ndarray], n_jobs: int | None = None) -> np.ndarray:
    """N x N exact 1-Wasserstein distances between finite diagrams, symmetric, zero diagonal.

    ``n_jobs`` worker processes share the rows (None: every core this process may use); small
    inputs are computed in this process.
    """
    return extend_matrix(np.zeros((0, 0)), diagrams, n_jobs)[0]


def extend_matrix(
    known: np.ndarray, diagrams: Sequence[np.ndarray], n_jobs: int | None = None
) -> tuple[np.ndarray, int]:
    """The N x N matrix of ``diagrams`` whose first k x k block is ``known``, and the number of
    pairs evaluated: only those with a diagram after the first k, k (N - k) + (N - k choose 2).

    Row i is computed against every diagram before it, so extending by a few diagrams costs a
    few rows (see :func:`wasserstein_matrix` for ``n_jobs``).
    """
    prepared = [
        (d, diagonal_costs(d))
        for d in (_check_diagram(d, f"diagram {k}") for k, d in enumerate(diagrams))
    ]
    n, first = len(prepared), len(known)
    if known.shape != (first, first) or first > n:
        raise ValueError(f"known distances are {known.shape}, not a square block of {n} diagrams")
    new_rows = range(max(first, 1), n)
    jobs = _n_jobs(n_jobs)
    stride = min(4 * jobs, max(len(new_rows), 1))
    tasks = [list(new_rows[k::stride]) for k in range(stride)]
    n_pairs = first * (n - first) + (n - first) * (n - first - 1) // 2
    if jobs == 1 or n_pairs < MIN_PAIRS_FOR_POOL:
        _share(prepared)
        try:
            results = [_rows(task) for task in tasks]
        finally:
            _share([])
    else:
        with ProcessPoolExecutor(jobs, initializer=_share, initargs=(prepared,)) as pool:
            results = list(pool.map(_rows, tasks))
    D = np.zeros((n, n))
    for task, rows in zip(tasks, results, strict=True):
        for i, values in zip(task, rows, strict=True):
            D[i, :i] = values
    D[:first, :first] = np.tril(known, k=-1)
    evaluated = sum(len(values) for rows in results for values in rows)
    return D + D.T, evaluated


def incremental_matrix(
    ids: Sequence[str],
    digests: Sequence[str],
    diagrams: Sequence[np.ndarray],
    cached: tuple[np.ndarray, Sequence[str], Sequence[str]] | None = None,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, int]:
    """Distances between ``diagrams`` (one per model id, made from content ``digests``) and the
    number of pairs evaluated, reusing ``cached`` = (distances, ids, digests) of an earlier
    result for every model whose digest is unchanged; rows follow ``ids``."""
    row: dict[str, tuple[int, str]] = {}
    known = np.zeros((0, 0))
    if cached is not None:
        known, old_ids, old_digests = cached
        row = {m: (k, d) for k, (m, d) in enumerate(zip(old_ids, old_digests, strict=True))}
    kept = [k for k, m in enumerate(ids) if m in row and row[m][1] == digests[k]]
    kept_set = set(kept)
    order = kept + [k for k in range(len(ids)) if k not in kept_set]
    index = [row[ids[k]][0] for k in kept]
    D, evaluated = extend_matrix(known[np.ix_(index, index)], [diagrams[k] for k in order], n_jobs)
    back = np.argsort(order)
    return D[np.ix_(back, back)], evaluated


def covered(model_ids: Sequence[str], max_networks: int) -> list[int]:
    """Indices (ascending) of the models the map covers: all of them up to ``max_networks``,
    else the ``max_networks`` whose ids hash lowest (membership depends on the set of ids
    only: adding a model changes it by at most one)."""
    if max_networks < 2:
        raise ValueError(f"max_networks={max_networks} must be at least 2")
    if len(model_ids) <= max_networks:
        return list(range(len(model_ids)))
    ranked = sorted(range(len(model_ids)), key=lambda k: content_hash(model_ids[k]))
    return sorted(ranked[:max_networks])


def finite_bars(diagram: np.ndarray) -> np.ndarray:
    """The bars of a diagram that die (ripser marks the survivors with death = inf)."""
    diagram = np.asarray(diagram, dtype=np.float64).reshape(-1, 2)
    return diagram[np.isfinite(diagram[:, 1])]


def _share(prepared: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Make the prepared diagrams visible to ``_rows`` (in a worker: its pool initializer)."""
    _shared[:] = prepared


def _rows(rows: list[int]) -> list[np.ndarray]:
    """Distances from diagram i to every earlier diagram, for each i in ``rows``."""
    return [_against(_shared[i], _shared[:i]) for i in rows]


def _against(
    first: tuple[np.ndarray, np.ndarray], others: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Distances from one (diagram, diagonal costs) to each of ``others``, in blocks."""
    out = np.empty(len(others))
    start = 0
    while start < len(others):
        stop, points = start, 0
        while stop < len(others) and (stop == start or points < MAX_BLOCK_POINTS):
            points += len(others[stop][0])
            stop += 1
        out[start:stop] = _against_block(first, others[start:stop])
        start = stop
    return out


def _against_block(
    first: tuple[np.ndarray, np.ndarray], others: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """One cost matrix against the concatenated ``others``, then one assignment per diagram."""
    S, gs = first
    T = np.concatenate([d for d, _ in others])
    gt = np.concatenate([g for _, g in others])
    cost = cdist(S, T)
    gain = np.minimum(cost - gs[:, None] - gt[None, :], 0.0)
    out = np.empty(len(others))
    offset = 0
    for k, (d, g) in enumerate(others):
        stop = offset + len(d)
        block = gain[:, offset:stop]
        rows, cols = linear_sum_assignment(block)
        matched = block[rows, cols] < 0
        rows, cols = rows[matched], cols[matched]
        lone_s, lone_t = np.ones(len(S), dtype=bool), np.ones(len(d), dtype=bool)
        lone_s[rows], lone_t[cols] = False, False
        out[k] = cost[rows, offset + cols].sum() + gs[lone_s].sum() + g[lone_t].sum()
        offset = stop
    return out


def _check_diagram(diagram: np.ndarray, name: str) -> np.ndarray:
    """A diagram as a float64 k x 2 array of finite (birth, death), or a ValueError naming it."""
    d = np.asarray(diagram, dtype=np.float64)
    if d.size == 0:
        return d.reshape(0, 2)
    if d.ndim != 2 or d.shape[1] != 2:
        raise ValueError(f"{name} must be a k x 2 array of (birth, death), got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError(f"{name} has infinite or NaN bars; drop them first (finite_bars)")
    return d


def _n_jobs(n_jobs: int | None) -> int:
    """Worker count: the cores this process may use when None, else ``n_jobs`` (at least 1)."""
    if n_jobs is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if n_jobs < 1:
        raise ValueError(f"n_jobs={n_jobs} must be a positive number of processes (or None)")
    return n_jobs
