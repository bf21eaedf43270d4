"""k-NN tests of a signal on a network distance (docs/method.md §7): smoothness of accuracy on the
k-NN graph (Dirichlet energy with a permutation p-value) and leave-one-out k-NN prediction of
accuracy from the distance, over the whole zoo or within accuracy strata.

Conventions shared by every function:
- ``D`` is an N x N precomputed distance (square, finite, non-negative, symmetric); ``f`` is a
  length-N signal on the same networks in the same order. Shape mismatches raise ``ValueError``.
- k-NN neighbourhoods exclude the network itself and share ties: when several networks tie at the
  k-th distance they split the remaining weight equally, so results never depend on network order.
- ``k`` shrinks to ``N - 2`` for tiny zoos; with fewer than 3 networks (or a constant signal) the
  statistics are undefined and returned as NaN instead of raising.
- Randomness comes only from ``seed`` (an int or a ``numpy.random.Generator``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

SeedLike = int | np.random.Generator

_PERM_CHUNK = 256
#: Rows of an N x N distance handled at once where a whole-matrix temporary would not fit
#: (N = 10,000: 80 MB a block instead of several 800 MB copies).
_ROW_BLOCK = 1024
#: Edge-by-signal differences computed at once in the smoothness test (64 MB of float64).
_EDGE_ELEMENTS = 1 << 23


def knn_graph(D: np.ndarray, k: int) -> sp.csr_array:
    """Symmetric k-NN adjacency of a precomputed distance (i~j if either is among the other's k).

    Edges have weight 1; networks tied at the k-th distance share the last places fractionally.
    """
    D = _check_distance(D)
    k_eff = _effective_k(D.shape[0], k)
    if k_eff == 0:
        raise ValueError(f"a k-NN graph needs at least 3 networks, got {D.shape[0]}")
    return _graph(_knn_weights(D, k_eff), k_eff)


def dirichlet_energy(f: np.ndarray, A: np.ndarray | sp.sparray) -> float:
    """Roughness of f on graph A: sum_ij A_ij (f_i - f_j)^2 / 2, divided by (edge weight x 2 var f).

    The normalisation makes it free of the scale of f and of the graph's size: the expected value
    under a random shuffle of f is exactly 1, a constant-on-edges signal scores 0. NaN if f is
    constant or the graph has no edges.
    """
    f = as_vector(f, "f")
    A = sp.coo_array(A)
    if A.shape != (f.size, f.size):
        raise ValueError(f"A must be {f.size} x {f.size} to match f, got {A.shape}")
    return float(_edge_energies(f[None, :], A.row, A.col, A.data)[0])


def smoothness_test(
    D: np.ndarray, f: np.ndarray, k: int = 5, n_perm: int = 999, seed: SeedLike = 0
) -> dict[str, float]:
    """Dirichlet energy of f on the k-NN graph of D and its permutation p-value (small = smooth).

    p = (1 + #{shuffles with energy <= observed}) / (n_perm + 1); ``null_mean`` is the mean
    shuffled energy (close to 1 by construction).
    """
    D, f = check_pair(D, f)
    k_eff = _effective_k(f.size, k)
    return _smoothness(_neighbours(D, f, k_eff), k_eff, f, n_perm, seed)


def _smoothness(
    W: sp.csr_array | None, k_eff: int, f: np.ndarray, n_perm: int, seed: SeedLike
) -> dict[str, float]:
    """``smoothness_test`` on checked inputs, from the k-NN weights (None: undefined)."""
    out = {"energy": np.nan, "p_value": np.nan, "null_mean": np.nan, "k": k_eff, "n": f.size}
    if W is None:
        return out
    A = sp.triu(_graph(W, k_eff), format="coo")  # each edge once: raw and total both halve
    energy = _edge_energies(f[None, :], A.row, A.col, A.data)[0]
    null = np.concatenate(
        [
            _edge_energies(f[perm], A.row, A.col, A.data)
            for perm in _permutation_chunks(f.size, n_perm, seed)
        ]
    )
    out["energy"], out["null_mean"] = float(energy), float(null.mean())
    out["p_value"] = _perm_p(null <= energy, n_perm)
    return out


def loo_knn_r2(D: np.ndarray, f: np.ndarray, k: int = 5) -> float:
    """Leave-one-out R^2 = 1 - SSE/SST of predicting f_i by the mean f of its k nearest others in D.

    The mean is unweighted: distances from different predictors live on different scales and exact
    zeros (duplicate configurations) would make inverse-distance weights infinite.
    """
    D, f = check_pair(D, f)
    k_eff = _effective_k(f.size, k)
    if k_eff == 0 or np.ptp(f) == 0:
        return np.nan
    return float(_loo_r2(f[None, :], _knn_weights(D, k_eff))[0])


def loo_knn_r2_permutation(
    D: np.ndarray, f: np.ndarray, k: int = 5, n_perm: int = 999, seed: SeedLike = 0
) -> dict[str, float]:
    """LOO k-NN R^2 of f from D and the permutation p-value that it beats chance.

    p = (1 + #{shuffles of f with R^2 >= observed}) / (n_perm + 1).
    """
    D, f = check_pair(D, f)
    k_eff = _effective_k(f.size, k)
    return _loo_test(_neighbours(D, f, k_eff), k_eff, f, n_perm, seed)


def _loo_test(
    W: sp.csr_array | None, k_eff: int, f: np.ndarray, n_perm: int, seed: SeedLike
) -> dict[str, float]:
    """``loo_knn_r2_permutation`` on checked inputs, from the k-NN weights (None: undefined)."""
    out = {"r2": np.nan, "p_value": np.nan, "k": k_eff, "n": f.size}
    if W is None:
        return out
    r2 = _loo_r2(f[None, :], W)[0]
    null = np.concatenate(
        [_loo_r2(f[perm], W) for perm in _permutation_chunks(f.size, n_perm, seed)]
    )
    out["r2"], out["p_value"] = float(r2), _perm_p(null >= r2, n_perm)
    return out


def stratified(
    D: np.ndarray,
    f: np.ndarray,
    quantiles: tuple[float, ...] = (0.5, 0.75),
    k: int = 5,
    n_perm: int = 999,
    seed: SeedLike = 0,
) -> list[dict[str, float | str]]:
    """R^2 and smoothness (with p-values) on the whole zoo, then within each top stratum by f.

    The stratum for quantile q keeps networks with f >= the q-quantile of f ("top 50%" for 0.5),
    analysed on the submatrix of D with k shrunk to fit. Rows: stratum, n, k, r2, r2_p,
    smoothness_energy, smoothness_p.
    """
    D, f = check_pair(D, f)
    rng = np.random.default_rng(seed)
    strata = [("all", np.ones(f.size, dtype=bool))]
    strata += [(f"top {100 * (1 - q):g}%", f >= np.quantile(f, q)) for q in quantiles]
    rows = []
    for name, keep in strata:  # submatrices of a checked D need no check; one k-NN each
        sub_D, sub_f = (D, f) if keep.all() else (D[np.ix_(keep, keep)], f[keep])
        k_eff = _effective_k(sub_f.size, k)
        W = _neighbours(sub_D, sub_f, k_eff)
        fit = _loo_test(W, k_eff, sub_f, n_perm, rng)
        smooth = _smoothness(W, k_eff, sub_f, n_perm, rng)
        rows.append(
            {
                "stratum": name,
                "n": int(keep.sum()),
                "k": fit["k"],
                "r2": fit["r2"],
                "r2_p": fit["p_value"],
                "smoothness_energy": smooth["energy"],
                "smoothness_p": smooth["p_value"],
            }
        )
    return rows


def _effective_k(n: int, k: int) -> int:
    """k shrunk so that each network keeps at least one non-neighbour; 0 means too few networks."""
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    return int(min(k, max(n - 2, 0)))


def _knn_weights(D: np.ndarray, k: int) -> sp.csr_array:
    """Row-stochastic weights: 1/k on each of the k nearest others; ties at the k-th share.

    Sparse (k entries a row, more where networks tie at the k-th distance), built a block of
    rows at a time: the temporaries are O(block x N), never N x N.
    """
    n = D.shape[0]
    rows, cols, weights = [], [], []
    for start in range(0, n, _ROW_BLOCK):
        block = np.array(D[start : start + _ROW_BLOCK], dtype=float)
        own = np.arange(block.shape[0])
        block[own, start + own] = np.inf
        kth = np.partition(block, k - 1, axis=1)[:, k - 1 : k]
        closer, tied = block < kth, block == kth
        share = (k - closer.sum(axis=1, keepdims=True)) / tied.sum(axis=1, keepdims=True)
        r, c = np.nonzero(closer | tied)
        weights.append(np.where(closer[r, c], 1.0, share[r, 0]) / k)
        rows.append(r + start)
        cols.append(c)
    ij = (np.concatenate(rows), np.concatenate(cols))
    return sp.csr_array((np.concatenate(weights), ij), shape=(n, n))


def _neighbours(D: np.ndarray, f: np.ndarray, k_eff: int) -> sp.csr_array | None:
    """The k-NN weights of checked D, or None where the tests are undefined (too few networks,
    constant signal)."""
    return None if k_eff == 0 or np.ptp(f) == 0 else _knn_weights(D, k_eff)


def _graph(W: sp.csr_array, k: int) -> sp.csr_array:
    """The symmetric k-NN adjacency (weight 1 per neighbour) of k-NN weights W."""
    A = W * k
    return sp.csr_array(A.maximum(A.T))


def _loo_r2(F: np.ndarray, W: sp.csr_array) -> np.ndarray:
    """LOO R^2 of each row of F (signals, one per row) predicted by W @ f (W sparse: k per row)."""
    resid = F - (W @ F.T).T
    centred = F - F.mean(axis=1, keepdims=True)
    return 1 - (resid**2).sum(axis=1) / (centred**2).sum(axis=1)


def _edge_energies(
    F: np.ndarray, row: np.ndarray, col: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Normalised Dirichlet energy of each row of F on the graph given as weighted edges.

    Signals are gathered as rows of F's transpose (contiguous), far faster than F's columns, a
    few signals at a time: a distance with many ties (hyperparameters repeated over seeds) has a
    k-NN graph of up to N^2 / 4 edges, and all 256 signals of a chunk at once took 3 GB at N=2500.
    """
    total = weight.sum()
    var = F.var(axis=1, ddof=1) if F.shape[1] > 1 else np.zeros(F.shape[0])
    by_node = np.ascontiguousarray(F.T)
    raw = np.empty(F.shape[0])
    step = max(1, _EDGE_ELEMENTS // max(row.size, 1))
    for start in range(0, F.shape[0], step):
        diff = by_node[row, start : start + step] - by_node[col, start : start + step]
        raw[start : start + step] = weight @ (diff * diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((var > 0) & (total > 0), raw / (2 * total * var), np.nan)


def _permutation_chunks(n: int, n_perm: int, seed: SeedLike) -> Iterator[np.ndarray]:
    """Yield index arrays of shape (chunk, n), n_perm random permutations of range(n) in all."""
    if n_perm < 1:
        raise ValueError(f"n_perm must be a positive integer, got {n_perm}")
    rng = np.random.default_rng(seed)
    for start in range(0, n_perm, _PERM_CHUNK):
        yield rng.permuted(np.tile(np.arange(n), (min(_PERM_CHUNK, n_perm - start), 1)), axis=1)


def _perm_p(as_extreme: np.ndarray, n_perm: int) -> float:
    """Permutation p-value with the +1 correction, so it is never 0."""
    return float((1 + np.count_nonzero(as_extreme)) / (n_perm + 1))


def as_vector(values: np.ndarray, name: str) -> np.ndarray:
    """values as a 1-D float array, or a ValueError naming the argument."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per network), got shape {arr.shape}")
    return arr


def _check_distance(D: np.ndarray) -> np.ndarray:
    """D as floats if it is a valid distance matrix, else a ValueError saying what is wrong.

    Checked a block of rows at a time (symmetry against the matching columns, once every entry
    is known to be finite and non-negative): no N x N temporaries.
    """
    D = np.asarray(D, dtype=float)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"D must be a square N x N distance matrix, got shape {D.shape}")
    blocks = [slice(start, start + _ROW_BLOCK) for start in range(0, D.shape[0], _ROW_BLOCK)]
    for rows in blocks:
        if not np.isfinite(D[rows]).all():
            raise ValueError("D contains NaN or inf; drop those networks' rows and columns")
        if (D[rows] < 0).any():
            raise ValueError("D has negative entries; a distance is non-negative")
    for rows in blocks:
        if not np.allclose(D[rows], D[:, rows].T, rtol=1e-6, atol=1e-9):
            raise ValueError("D is not symmetric; symmetrise it with (D + D.T) / 2")
    return D


def check_pair(D: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated (D, f): a distance matrix and a finite signal on the same networks."""
    D, f = _check_distance(D), as_vector(f, "f")
    if D.shape[0] != f.size:
        raise ValueError(f"D is {D.shape[0]} x {D.shape[0]} but the signal has {f.size} values")
    if not np.isfinite(f).all():
        raise ValueError(
            "the signal contains NaN or inf (diverged networks?); drop them from f and D first"
        )
    return D, f
