"""Per-network characterisation (docs/method.md §6): class separation, hierarchical cluster
structure, diffusion spectral entropy and topology, as scalar features painted on the map.

Functions take a network's probe representation ``X`` (n x d, already normalised as for the
diffusion operator), its labels ``y`` (n,) and its one-step diffusion operator ``P`` (n x n,
row-stochastic, ``P = Q^-1 W`` for a symmetric kernel ``W``); it opens no file. Sizes and
thresholds have no defaults here: the config schema holds them.
"""

from __future__ import annotations

import numpy as np
from ripser import ripser
from scipy.cluster.hierarchy import cophenet, fcluster, linkage
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import adjusted_rand_score, silhouette_score

from nnmanifold.geometry.wasserstein import finite_bars, wasserstein_matrix

FEATURE_NAMES: dict[str, str] = {
    "separation_ratio": "mean between-class / mean within-class distance",
    "diffusion_retention": "probability that one diffusion step stays in the class",
    "silhouette": "silhouette score of the class labels",
    "ward_ari": "adjusted Rand index of the Ward k = n_classes cut with the labels",
    "cophenetic_corr": "cophenetic correlation of the Ward tree",
    "spectral_entropy": "diffusion spectral entropy (nats)",
    "h0_total_persistence": "total persistence of finite H0 bars",
    "h1_total_persistence": "total persistence of H1 bars",
    "h1_n_bars": "number of H1 bars longer than the threshold",
}

ZERO_EIGENVALUE_TOL = 1e-10
_STOCHASTIC_TOL = 1e-6


def separation_ratio(X: np.ndarray, y: np.ndarray) -> float:
    """Mean between-class over mean within-class Euclidean distance (self-pairs excluded)."""
    X, y = _check_data(X, y)
    i, j = np.triu_indices(len(y), k=1)
    distances = pdist(X)
    same = y[i] == y[j]
    if same.all() or not same.any():
        raise ValueError("separation_ratio needs at least two classes and one class with 2+ points")
    return float(distances[~same].mean() / distances[same].mean())


def diffusion_class_retention(P: np.ndarray, y: np.ndarray) -> float:
    """Mean over points of the probability that one step of ``P`` stays in the point's class.

    The diagonal counts (the operator keeps it), so a point that stays put stays in its class.
    """
    y = np.asarray(y)
    _check_operator(P, len(y))
    same = y[:, None] == y[None, :]
    return float((np.asarray(P) * same).sum(axis=1).mean())


def silhouette(X: np.ndarray, y: np.ndarray) -> float:
    """Silhouette score of the class labels in the representation (sklearn, Euclidean)."""
    X, y = _check_data(X, y)
    return float(silhouette_score(X, y))


def ward_structure(X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Ward tree of the rows: ARI of its ``k = n_classes`` cut with ``y``; cophenetic corr."""
    X, y = _check_data(X, y)
    tree = linkage(X, method="ward")
    cut = fcluster(tree, t=len(np.unique(y)), criterion="maxclust")
    corr, _ = cophenet(tree, pdist(X))
    return {"ward_ari": float(adjusted_rand_score(y, cut)), "cophenetic_corr": float(corr)}


def symmetric_conjugate(P: np.ndarray, W: np.ndarray | None = None) -> np.ndarray:
    """Symmetric matrix ``Q^-1/2 W Q^-1/2`` with the spectrum of ``P``, from ``W`` or from ``P``.

    Without ``W`` it is recovered exactly from ``P = Q^-1 W`` as ``sqrt(P * P.T)``, since
    ``P_ij P_ji = W_ij^2 / (q_i q_j)`` for a symmetric non-negative ``W``.
    """
    if W is None:
        P = np.asarray(P, dtype=np.float64)
        return np.sqrt(P * P.T)
    W = np.asarray(W, dtype=np.float64)
    inv_sqrt_q = 1.0 / np.sqrt(W.sum(axis=1))
    return inv_sqrt_q[:, None] * W * inv_sqrt_q[None, :]


def diffusion_spectral_entropy(P: np.ndarray, t: float = 1, W: np.ndarray | None = None) -> float:
    """Shannon entropy (nats) of the normalised non-trivial spectrum ``|lambda_k|^t`` of ``P``.

    The largest eigenvalue (the trivial 1) is dropped. Eigenvalues with ``|lambda| <=
    ZERO_EIGENVALUE_TOL`` count as zero, so round-off is not mistaken for structure; when every
    non-trivial eigenvalue is zero (``P`` has collapsed onto its stationary distribution, e.g.
    ``W`` all ones) the entropy is defined as 0. ``W ~ I`` gives the maximum, ``log(n - 1)``.
    """
    _check_operator(P, np.shape(P)[0])
    eigenvalues = np.linalg.eigvalsh(symmetric_conjugate(P, W))[:-1]
    magnitudes = np.where(np.abs(eigenvalues) > ZERO_EIGENVALUE_TOL, np.abs(eigenvalues), 0.0)
    weights = magnitudes**t
    total = weights.sum()
    if total == 0:
        return 0.0
    p = weights[weights > 0] / total
    return float(-(p * np.log(p)).sum())


def stratified_subsample(
    n: int, max_points: int, seed: int = 0, y: np.ndarray | None = None
) -> np.ndarray:
    """Sorted indices of a seeded subsample of ``max_points`` of ``n`` points (all if ``n`` fits).

    With labels, each class gets its proportional share (largest remainders break rounding), so
    the topology of a small class is not lost by chance.
    """
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if y is None:
        return np.sort(rng.choice(n, size=max_points, replace=False))
    y = np.asarray(y)
    if len(y) != n:
        raise ValueError(f"labels have {len(y)} entries but there are {n} points")
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * max_points / n
    quota = np.floor(exact).astype(int)
    by_remainder = np.argsort(-(exact - quota), kind="stable")
    quota[by_remainder[: max_points - quota.sum()]] += 1
    chosen = [
        rng.permutation(np.flatnonzero(y == label))[:k]
        for label, k in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def persistence(
    X: np.ndarray,
    max_points: int,
    h1_threshold: float,
    seed: int = 0,
    y: np.ndarray | None = None,
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Vietoris-Rips persistence (H0, H1) of a seeded subsample: summaries and diagrams.

    ``h1_n_bars`` counts H1 bars whose persistence exceeds ``h1_threshold`` times the diameter of
    the subsample, so the count does not depend on the scale of the representation. Total
    persistence sums ``death - birth`` over finite bars, in the units of ``X``. Cost grows steeply
    with ``max_points`` on high-dimensional, unstructured data (about 1 s at 200 points).
    """
    X = np.asarray(X, dtype=np.float64)
    keep = stratified_subsample(len(X), max_points, seed, y)
    distances = squareform(pdist(X[keep]))
    diagrams = [
        np.asarray(d, dtype=np.float64)
        for d in ripser(distances, maxdim=1, distance_matrix=True)["dgms"]
    ]
    h0, h1 = (finite_bars(d) for d in diagrams)
    h1_lengths = h1[:, 1] - h1[:, 0]
    summary = {
        "h0_total_persistence": float((h0[:, 1] - h0[:, 0]).sum()),
        "h1_total_persistence": float(h1_lengths.sum()),
        "h1_n_bars": float((h1_lengths > h1_threshold * distances.max(initial=0.0)).sum()),
    }
    return summary, diagrams


def persistence_distances(
    diagrams_list: list[list[np.ndarray]], dim: int = 1, n_jobs: int | None = None
) -> np.ndarray:
    """N x N 1-Wasserstein distances between networks' dimension-``dim`` diagrams.

    Infinite bars are left out. Exact, the distance persim computes (Euclidean ground metric,
    see ``nnmanifold.wasserstein``), over ``n_jobs`` processes (None: every usable core).
    """
    finite = [finite_bars(diagrams[dim]) for diagrams in diagrams_list]
    return wasserstein_matrix(finite, n_jobs=n_jobs)


def compute_features(
    X: np.ndarray,
    y: np.ndarray,
    P: np.ndarray,
    W: np.ndarray | None = None,
    t: float = 1,
    *,
    max_points: int,
    h1_threshold: float,
    seed: int = 0,
) -> tuple[dict[str, float], list[np.ndarray]]:
    """All scalar features of one network (keys and order of ``FEATURE_NAMES``) and its diagrams."""
    X, y = _check_data(X, y)
    topology, diagrams = persistence(X, max_points, h1_threshold, seed, y)
    features = {
        "separation_ratio": separation_ratio(X, y),
        "diffusion_retention": diffusion_class_retention(P, y),
        "silhouette": silhouette(X, y),
        **ward_structure(X, y),
        "spectral_entropy": diffusion_spectral_entropy(P, t, W),
        **topology,
    }
    return {name: features[name] for name in FEATURE_NAMES}, diagrams


def _check_data(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Representation as float64 and labels as an array, with matching lengths."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be n x d and y length n; got X {X.shape}, y {y.shape}")
    return X, y


def _check_operator(P: np.ndarray, n: int) -> None:
    """Fail loudly unless ``P`` is an n x n non-negative row-stochastic matrix."""
    P = np.asarray(P)
    if P.shape != (n, n):
        raise ValueError(f"operator P has shape {P.shape}, expected ({n}, {n}) for {n} points")
    if (P < 0).any() or not np.allclose(P.sum(axis=1), 1.0, atol=_STOCHASTIC_TOL):
        raise ValueError("P must be the one-step operator Q^-1 W (non-negative, rows sum to 1)")
