"""Tests for nnmanifold.features on constructed data with known answers."""

from __future__ import annotations

import numpy as np
import persim
import pytest
from scipy.spatial.distance import cdist

from nnmanifold.analysis import features
from nnmanifold.core import storage
from nnmanifold.core.storage import CorruptFileError

N_CLASSES = 10


def _operator(X: np.ndarray, sigma: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian kernel W and its one-step operator P = Q^-1 W, as docs/method.md §3."""
    W = np.exp(-cdist(X, X, "sqeuclidean") / (2 * sigma**2))
    return W / W.sum(axis=1, keepdims=True), W


def _clusters(per_class: int = 20, spread: float = 0.05, seed: int = 0):
    """Ten tight Gaussian clusters whose centres are about 10 apart (one-hot directions times 7)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(N_CLASSES), per_class)
    X = 7.0 * np.eye(N_CLASSES)[y] + spread * rng.normal(size=(len(y), N_CLASSES))
    return X, y


def _circle(n: int = 100, seed: int = 0) -> np.ndarray:
    """Points on the unit circle with a little noise."""
    rng = np.random.default_rng(seed)
    angle = np.sort(rng.uniform(0, 2 * np.pi, n))
    return np.column_stack([np.cos(angle), np.sin(angle)]) + 0.01 * rng.normal(size=(n, 2))


def _blob(n: int = 100, seed: int = 1) -> np.ndarray:
    """A Gaussian blob in 3-D, with no loop."""
    return np.random.default_rng(seed).normal(size=(n, 3))


def test_separated_classes_score_high_and_shuffled_labels_score_chance():
    X, y = _clusters()
    P, _ = _operator(X)
    shuffled = np.random.default_rng(1).permutation(y)

    assert features.separation_ratio(X, y) > 20
    assert features.separation_ratio(X, shuffled) == pytest.approx(1.0, abs=0.1)
    assert features.diffusion_class_retention(P, y) > 0.999
    assert features.diffusion_class_retention(P, shuffled) < 2.5 / N_CLASSES
    assert features.silhouette(X, y) > 0.95
    assert -0.2 < features.silhouette(X, shuffled) < 0.05  # chance: slightly negative


def test_separation_and_retention_match_slow_references():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(12, 3))
    y = rng.integers(0, 3, size=12)
    P, _ = _operator(X, sigma=1.0)
    between, within = [], []
    for i in range(12):
        for j in range(i + 1, 12):
            (within if y[i] == y[j] else between).append(np.linalg.norm(X[i] - X[j]))
    stay = [sum(P[i, j] for j in range(12) if y[j] == y[i]) for i in range(12)]

    assert features.separation_ratio(X, y) == pytest.approx(np.mean(between) / np.mean(within))
    assert features.diffusion_class_retention(P, y) == pytest.approx(np.mean(stay))


def test_retention_rejects_an_operator_that_is_not_row_stochastic():
    _, W = _operator(_blob(10))
    with pytest.raises(ValueError, match="rows sum to 1"):
        features.diffusion_class_retention(W, np.zeros(10))


def test_perfect_ten_cluster_structure_gives_ward_ari_one():
    X, y = _clusters()
    ward = features.ward_structure(X, y)
    shuffled = features.ward_structure(X, np.random.default_rng(3).permutation(y))

    assert ward["ward_ari"] == 1.0
    assert ward["cophenetic_corr"] > 0.95
    assert abs(shuffled["ward_ari"]) < 0.1


def test_spectral_entropy_identity_is_maximal_and_uniform_is_zero():
    n = 50
    identity, near_identity, uniform = np.eye(n), np.eye(n) + 1e-6, np.ones((n, n))

    assert features.diffusion_spectral_entropy(identity) == pytest.approx(np.log(n - 1))
    assert features.diffusion_spectral_entropy(
        near_identity / near_identity.sum(1, keepdims=True)
    ) == (pytest.approx(np.log(n - 1), abs=1e-6))
    assert features.diffusion_spectral_entropy(uniform / n) == 0.0
    assert features.diffusion_spectral_entropy(uniform / n, W=uniform) == 0.0


def test_spectral_entropy_from_p_or_w_matches_the_spectrum_of_p():
    P, W = _operator(_blob(40), sigma=1.0)
    for t in (1, 3):
        magnitudes = np.sort(np.abs(np.linalg.eigvals(P).real))[:-1] ** t
        p = magnitudes / magnitudes.sum()
        expected = -(p * np.log(p)).sum()
        assert features.diffusion_spectral_entropy(P, t) == pytest.approx(expected, rel=1e-8)
        assert features.diffusion_spectral_entropy(P, t, W=W) == pytest.approx(expected, rel=1e-8)
    assert features.diffusion_spectral_entropy(P, 3) < features.diffusion_spectral_entropy(P, 1)


def test_stratified_subsample_is_seeded_and_proportional():
    y = np.repeat([0, 1, 2], [60, 30, 10])
    first = features.stratified_subsample(100, 50, seed=4, y=y)

    assert len(first) == 50 and len(np.unique(first)) == 50
    assert np.bincount(y[first]).tolist() == [30, 15, 5]
    assert np.array_equal(first, features.stratified_subsample(100, 50, seed=4, y=y))
    assert not np.array_equal(first, features.stratified_subsample(100, 50, seed=5, y=y))
    assert np.array_equal(features.stratified_subsample(40, 50, seed=4), np.arange(40))


def test_circle_has_exactly_one_long_h1_bar_and_blob_none():
    circle_summary, circle_dgms = features.persistence(
        _circle(), max_points=80, h1_threshold=0.1, seed=0
    )
    blob_summary, _ = features.persistence(_blob(), max_points=80, h1_threshold=0.1, seed=0)
    h1 = circle_dgms[1]
    longest = np.max(h1[:, 1] - h1[:, 0])

    assert circle_summary["h1_n_bars"] == 1.0
    assert longest > 1.2  # born near 0, dies near sqrt(3) for the unit circle
    assert blob_summary["h1_n_bars"] == 0.0
    assert np.isinf(circle_dgms[0][:, 1]).sum() == 1
    finite_h0 = circle_dgms[0][np.isfinite(circle_dgms[0][:, 1])]
    assert circle_summary["h0_total_persistence"] == pytest.approx(np.ptp(finite_h0, axis=1).sum())
    assert circle_summary["h1_total_persistence"] >= longest


def test_wasserstein_matrix_is_symmetric_with_zero_diagonal_and_separates_shapes():
    dgms = [
        features.persistence(X, max_points=60, h1_threshold=0.1, seed=0)[1]
        for X in (_circle(), _blob())
    ]
    dgms.append(features.persistence(_circle(seed=7), max_points=60, h1_threshold=0.1, seed=0)[1])
    distances = features.persistence_distances(dgms, dim=1)

    assert distances.shape == (3, 3)
    assert np.array_equal(distances, distances.T)
    assert np.all(np.diag(distances) == 0)
    assert distances[0, 1] > 0.5
    assert distances[0, 2] < distances[0, 1]
    assert distances[0, 1] == pytest.approx(persim.wasserstein(dgms[0][1], dgms[1][1]))


def test_compute_features_returns_every_named_feature():
    X, y = _clusters(per_class=6)
    P, W = _operator(X)
    values, diagrams = features.compute_features(X, y, P, W, max_points=30, h1_threshold=0.1)

    assert list(values) == list(features.FEATURE_NAMES)
    assert all(isinstance(v, float) and np.isfinite(v) for v in values.values())
    assert values["ward_ari"] == 1.0
    assert len(diagrams) == 2
    assert len(diagrams[0]) == 30  # one H0 bar per subsampled point


def test_diagram_save_load_round_trip(tmp_path):
    _, diagrams = features.persistence(_circle(), max_points=50, h1_threshold=0.1)
    path = tmp_path / "sub" / "diagrams.npz"
    storage.write_diagrams(path, diagrams)
    loaded = storage.read_diagrams(path)

    assert sorted(p.name for p in path.parent.iterdir()) == ["diagrams.npz"]
    assert len(loaded) == len(diagrams)
    for original, back in zip(diagrams, loaded, strict=True):
        assert np.array_equal(original, back)  # including the inf death of the H0 survivor


def test_load_diagrams_names_a_corrupt_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(CorruptFileError, match="broken.npz"):
        storage.read_diagrams(path)
