"""Standard representation-similarity distances between networks: linear CKA, RSA, Procrustes.

Baselines for the diffusion distance (issue 16), computed from the same probe representations:
a list of N arrays (n_probe, d_i), rows in one probe order, widths free to differ. Every
representation first goes through the configured normalisation (:func:`diffusion.normalize`),
so all distances see what the diffusion operator sees.

- ``cka``: 1 - linear CKA of the column-centred representations. CKA is the cosine of the
  centred Gram matrices K_i = X_i X_i^T, so all pairs are one Gram (GEMM) of flattened K_i.
  When n^2 > n w^2 (w: the widest representation without constant columns) the w x w cross
  products are cheaper: CKA = ||X_i^T X_j||_F^2 / (||X_i^T X_i||_F ||X_j^T X_j||_F).
- ``rsa``: 1 - Spearman correlation between the upper triangles of the two RDMs (Euclidean
  distances between probe points, by direct differences so that duplicate points tie exactly).
  Each upper triangle is ranked (ties averaged), centred and scaled to unit length, so all
  correlations are again one Gram of rank vectors.
- ``procrustes``: min over orthogonal Q of ||A - B Q||_F with A, B column-centred and scaled to
  unit Frobenius norm, the narrower one zero-padded: sqrt(2 - 2 ||A^T B||_*). Centring and
  scaling make it invariant to translation and isotropic scale, like CKA, and it is a metric
  (the chordal distance between the shapes on the unit sphere), unlike 1 - CKA. Pairs closer
  than ``distances.RECOMPUTE_RATIO`` are recomputed as ||A Q - B||_F with the optimal Q, where
  the nuclear-norm identity cancels.

Cost and cap. Procrustes needs one SVD of a w_i x w_j cross product per pair (w <= min(n, d)
once constant columns are dropped): about N^2/2 * (2 n w^2 + ~20 w^3) flops. Networks are tiled
in order of width, so a block pads its networks only to its own widest: in a random zoo of widths
8-128 that is about 6 % of the flops of padding every pair to 128 (a fifth of the time).
Measured at n = 200, w = 64 on two cores: 0.5 ms per pair (2 ms when the cores are shared),
4.4 min at N = 1000.
Above ``max_networks`` (default :data:`PROCRUSTES_MAX_NETWORKS`) it is computed on a seeded
random subset of that many networks; the result names the networks it covers. CKA and RSA
are GEMMs (N = 1000 in 30-40 s on two shared cores) and are never capped.

The ``median`` normalisation rescales a network's distances by one number, which none of these
distances can see; it acts like ``none``. A constant representation (no variance after
normalisation) has no geometry: its CKA and Spearman correlation with every network are taken
as 0 (distance 1), and its Procrustes distance to a non-constant network is 1.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nnmanifold.geometry.diffusion import normalize
from nnmanifold.geometry.distances import RECOMPUTE_RATIO, _blocks

log = logging.getLogger(__name__)

KINDS = ("cka", "rsa", "procrustes")
#: Networks above which Procrustes runs on a random subset: 500 networks are 124,750 SVDs,
#: about one minute at width 64 on two idle cores (bench/similarity.py).
PROCRUSTES_MAX_NETWORKS = 500

_BYTES = 8
#: Most networks in one block of cross products: blocks of networks of similar width (they are
#: sorted by width) keep each tile near its own size, not the zoo's widest.
TILE_BLOCK = 16


@dataclass(frozen=True)
class SimilarityResult:
    """Distances between the networks ``networks`` (indices into the input list, sorted)."""

    distances: np.ndarray
    networks: np.ndarray


def distance_matrix(
    reps: Sequence[np.ndarray],
    kind: str,
    normalization: str,
    memory_budget_bytes: int,
    *,
    max_networks: int = PROCRUSTES_MAX_NETWORKS,
    seed: int = 0,
) -> SimilarityResult:
    """Network-by-network distances of ``kind`` (cka, rsa, procrustes), computed in blocks.

    ``memory_budget_bytes`` bounds the working memory beyond the inputs and one normalised
    float64 copy of them: two blocks of per-network features (Gram or rank vectors, or padded
    representations), their pairwise products and two N x N matrices. When every network's
    features fit in one block they are computed once; a smaller budget recomputes a block's
    features each time it is paired.
    ``max_networks`` and ``seed`` apply to Procrustes only (see the module docstring).
    """
    networks = networks_compared(len(reps), kind, max_networks, seed)
    reps = _check_reps(reps)
    reps = [reps[i] for i in networks]
    if kind == "rsa":
        D = 1.0 - _rank_gram(reps, normalization, memory_budget_bytes)
    else:
        reduced = [_reduced(X, normalization) for X in reps]
        if kind == "procrustes":
            D = _procrustes(reduced, memory_budget_bytes)
        else:
            D = 1.0 - _cka(reduced, memory_budget_bytes)
    D = np.triu(np.maximum(D, 0.0), k=1)
    return SimilarityResult(D + D.T, networks)


def networks_compared(
    n: int, kind: str, max_networks: int = PROCRUSTES_MAX_NETWORKS, seed: int = 0
) -> np.ndarray:
    """Indices (ascending) of the networks of ``n`` that :func:`distance_matrix` compares: all,
    or for Procrustes above ``max_networks`` a seeded random subset of that many (a caller
    may read only those)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    if max_networks < 2:
        raise ValueError(f"max_networks={max_networks} must be at least 2 (default 500)")
    if kind != "procrustes" or n <= max_networks:
        return np.arange(n)
    log.warning(
        "Procrustes on %d of %d networks (max_networks=%d, seed=%d); raise max_networks "
        "for all of them (cost grows as N^2 SVDs)",
        max_networks,
        n,
        max_networks,
        seed,
    )
    return np.sort(np.random.default_rng(seed).choice(n, size=max_networks, replace=False))


def _check_reps(reps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The representations as 2-D float64 arrays sharing one probe set, or a ValueError."""
    arrays = [np.asarray(X, dtype=np.float64) for X in reps]
    if len(arrays) < 2:
        raise ValueError(f"need at least 2 representations to compare, got {len(arrays)}")
    for i, X in enumerate(arrays):
        if X.ndim != 2 or X.shape[0] != arrays[0].shape[0]:
            raise ValueError(
                f"representation {i} has shape {X.shape}; every one must be (n_probe, width) "
                f"with n_probe={arrays[0].shape[0]} rows in the same probe order"
            )
        if not np.isfinite(X).all():
            raise ValueError(f"representation {i} contains NaN or inf; drop that network first")
    return arrays


def _reduced(X: np.ndarray, normalization: str) -> np.ndarray:
    """Normalised, column-centred representation without its constant columns (dead units).

    Wider than n_probe, it is replaced by U S of its thin SVD (n_probe columns, same X X^T).
    Neither step changes X X^T, so CKA and Procrustes are exactly the same, only cheaper.
    """
    Y = normalize(X, normalization)
    Y = Y[:, np.ptp(Y, axis=0) > 0]
    Y -= Y.mean(axis=0)
    if Y.shape[1] > Y.shape[0]:
        U, s, _ = np.linalg.svd(Y, full_matrices=False)
        Y = U * s
    return Y


def _constant(indices: Sequence[int]) -> None:
    if len(indices):
        log.warning(
            "representations %s are constant after normalisation; their similarity to every "
            "network is taken as 0",
            list(indices),
        )


def _rank_gram(reps: list[np.ndarray], normalization: str, budget: int) -> np.ndarray:
    """Spearman correlations of the RDM upper triangles, as a blocked Gram of rank vectors."""
    from scipy.spatial.distance import pdist  # here: CKA and Procrustes jobs need no scipy

    n = reps[0].shape[0]

    def ranks(X: np.ndarray) -> np.ndarray:
        # Direct differences (pdist), not the Gram identity: duplicate probe points (e.g. all
        # units dead) must tie exactly, and ranks are sensitive to ties.
        r = average_ranks(pdist(normalize(X, normalization)))
        r -= r.mean()
        norm = np.linalg.norm(r)
        return r / norm if norm > 0 else r

    _constant([i for i, X in enumerate(reps) if not np.ptp(normalize(X, normalization), 0).any()])
    return _row_gram(reps, ranks, n * (n - 1) // 2, budget, transient=3 * n * n)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..m of ``values``, ties sharing their mean rank: ``scipy.stats.rankdata`` (its
    default), without the second of import that scipy.stats costs each job. Ties share one rank
    whatever their order, so an unstable sort serves (NumPy's is 5x faster here)."""
    order = np.argsort(values)
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.r_[np.nonzero(first)[0], len(values)]
    group = np.cumsum(first) - 1
    ranks = np.empty(len(values))
    ranks[order] = 0.5 * (starts[group] + starts[group + 1] + 1)
    return ranks


def _cka(reduced: list[np.ndarray], budget: int) -> np.ndarray:
    """Linear CKA of centred representations: Gram route or cross-product route."""
    n = reduced[0].shape[0]
    width = max(X.shape[1] for X in reduced)
    _constant([i for i, X in enumerate(reduced) if X.shape[1] == 0])
    if width * width < n:
        scaled = [X / np.sqrt(np.linalg.norm(X.T @ X)) if X.shape[1] else X for X in reduced]
        return _tile_blocks(scaled, budget, _squared_frobenius)

    def gram(X: np.ndarray) -> np.ndarray:
        # The whole K, not its triangle: gathering a triangle costs more than the longer GEMM.
        g = (X @ X.T).ravel()
        norm = np.linalg.norm(g)
        return g / norm if norm > 0 else g

    return _row_gram(reduced, gram, n * n, budget, transient=n * n)


def _squared_frobenius(tiles: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """||A_i^T B_j||_F^2 of each tile (the CKA numerator; A and B are not needed)."""
    return np.einsum("abij,abij->ab", tiles, tiles)


def _row_gram(
    reps: list[np.ndarray],
    feature: Callable[[np.ndarray], np.ndarray],
    size: int,
    budget: int,
    transient: int,
) -> np.ndarray:
    """Inner products of per-network feature vectors of length ``size``, blockwise in float64."""
    N = len(reps)
    fixed = (2 * N * N + transient + 3 * size) * _BYTES  # + triangle indices and weights
    rows = min(N, (budget - fixed) // (2 * size * _BYTES))
    _check_rows(rows, budget, fixed + 2 * size * _BYTES)

    def features(lo: int, hi: int) -> np.ndarray:
        return np.stack([feature(X) for X in reps[lo:hi]])

    return _blockwise(N, rows, features, lambda A, B: A @ B.T)


def _tile_blocks(
    reduced: list[np.ndarray],
    budget: int,
    reduce: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Apply ``reduce(tiles, A, B)`` to the cross products A_i^T B_j of two blocks, blockwise;
    the result is symmetric (from the tiles on and above the diagonal).

    Networks are taken in order of width, at most :data:`TILE_BLOCK` to a block, and each block
    is (b, n, w): its representations zero-padded to its widest w (padding changes neither
    Frobenius nor nuclear norms), so a narrow network is not padded to the zoo's widest;
    ``tiles`` is (a, b, w_a, w_b).
    """
    N, n = len(reduced), reduced[0].shape[0]
    order = np.argsort([X.shape[1] for X in reduced], kind="stable")
    ordered = [reduced[k] for k in order]
    w = max(1, ordered[-1].shape[1])
    fixed = 2 * N * N * _BYTES
    # Two padded blocks, and the tiles three times (GEMM output, transposed copy, SVD work).
    quad, lin = 3 * w * w * _BYTES, 2 * n * w * _BYTES
    avail = budget - fixed
    rows = int((-lin + math.sqrt(lin * lin + 4 * quad * max(avail, 0))) / (2 * quad))
    _check_rows(min(N, rows), budget, fixed + quad + lin)

    def features(lo: int, hi: int) -> np.ndarray:
        block = np.zeros((hi - lo, n, max(1, ordered[hi - 1].shape[1])))
        for row, X in zip(block, ordered[lo:hi], strict=True):
            row[:, : X.shape[1]] = X
        return block

    def pairwise(A: np.ndarray, B: np.ndarray) -> np.ndarray:
        (a, _, wa), (b, _, wb) = A.shape, B.shape
        flat = A.transpose(0, 2, 1).reshape(a * wa, n) @ B.transpose(1, 0, 2).reshape(n, b * wb)
        tiles = np.ascontiguousarray(flat.reshape(a, wa, b, wb).transpose(0, 2, 1, 3))
        return reduce(tiles, A, B)

    upper = _blockwise(N, min(N, rows, TILE_BLOCK), features, pairwise)
    symmetric = np.triu(upper) + np.triu(upper, k=1).T
    back = np.argsort(order)
    return symmetric[np.ix_(back, back)]


def _procrustes(reduced: list[np.ndarray], budget: int) -> np.ndarray:
    """Procrustes distances sqrt(|A|^2 + |B|^2 - 2 |A^T B|_*), near pairs recomputed directly."""
    _constant([i for i, X in enumerate(reduced) if X.shape[1] == 0])
    scaled = [X / np.linalg.norm(X) if X.shape[1] else X for X in reduced]

    def distances(tiles: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        nuclear = np.linalg.svd(tiles, compute_uv=False).sum(axis=-1)
        sq_a, sq_b = np.einsum("anw,anw->a", A, A), np.einsum("bnw,bnw->b", B, B)
        scale = sq_a[:, None] + sq_b[None, :]
        D2 = scale - 2.0 * nuclear
        w = max(A.shape[2], B.shape[2])  # blocks of two widths: rotate within the wider
        for i, j in zip(*np.nonzero(D2 <= RECOMPUTE_RATIO * scale), strict=True):
            a, b = (np.pad(X, ((0, 0), (0, w - X.shape[1]))) for X in (A[i], B[j]))
            U, _, Vt = np.linalg.svd(a.T @ b)
            diff = a @ (U @ Vt) - b
            D2[i, j] = np.einsum("nw,nw->", diff, diff)
        return np.sqrt(np.maximum(D2, 0.0))

    return _tile_blocks(scaled, budget, distances)


def _check_rows(rows: int, budget: int, minimum: int) -> None:
    if rows < 1:
        raise ValueError(
            f"memory_budget_bytes={budget} cannot hold one network's features and the N x N "
            f"result; raise it to at least {minimum}"
        )


def _blockwise(
    N: int,
    rows: int,
    features: Callable[[int, int], np.ndarray],
    pairwise: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """N x N matrix of ``pairwise`` over block pairs on and above the diagonal (upper valid)."""
    out = np.zeros((N, N))
    for lo, hi in _blocks(0, N, rows):
        A = features(lo, hi)
        out[lo:hi, lo:hi] = pairwise(A, A)
        for col_lo, col_hi in _blocks(hi, N, rows):
            out[lo:hi, col_lo:col_hi] = pairwise(A, features(col_lo, col_hi))
    return out
