"""Tests for nnmanifold.wasserstein against slow, obviously-correct references."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import persim
import pytest
from scipy.optimize import linear_sum_assignment

from nnmanifold.geometry import wasserstein

RTOL = 1e-9


def _diagram(rng: np.random.Generator, k: int) -> np.ndarray:
    """k bars born in [0.3, 1] with short exponential lifetimes, like a network's H1 diagram."""
    birth = rng.uniform(0.3, 1.0, k)
    return np.column_stack([birth, birth + rng.exponential(0.05, k)])


def _augmented_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The square (m + n) cost matrix of persim: points, diagonal copies, direct differences."""
    m, n = len(a), len(b)
    cost = np.zeros((m + n, m + n))
    cost[:m, :n] = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))
    cost[:m, n:] = np.inf
    cost[m:, :n] = np.inf
    cost[np.arange(m), n + np.arange(m)] = (a[:, 1] - a[:, 0]) / np.sqrt(2)
    cost[m + np.arange(n), np.arange(n)] = (b[:, 1] - b[:, 0]) / np.sqrt(2)
    return cost


def _square_assignment(a: np.ndarray, b: np.ndarray) -> float:
    """W1 from the full (m + n) x (m + n) assignment problem, costs by direct subtraction."""
    cost = _augmented_cost(a, b)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


def _every_permutation(a: np.ndarray, b: np.ndarray) -> float:
    """W1 as the cheapest of all (m + n)! permutations of the augmented problem (tiny inputs)."""
    cost = _augmented_cost(a, b)
    size = len(cost)
    return min(cost[np.arange(size), list(p)].sum() for p in itertools.permutations(range(size)))


def _persim(a: np.ndarray, b: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(persim.wasserstein(a, b))


def test_tiny_pairs_match_brute_force_over_every_matching():
    rng = np.random.default_rng(0)
    for m, n in [(0, 0), (0, 3), (3, 0), (1, 1), (2, 3), (3, 3), (4, 2)]:
        a, b = _diagram(rng, m), _diagram(rng, n)
        expected = _every_permutation(a, b) if m + n else 0.0
        assert wasserstein.wasserstein_distance(a, b) == pytest.approx(expected, rel=RTOL, abs=0)


def test_matrix_matches_persim_with_empty_and_one_point_diagrams():
    rng = np.random.default_rng(1)
    diagrams = [_diagram(rng, k) for k in [0, 1, 5, 17, 40, 0, 3, 25, 12, 8]]

    D = wasserstein.wasserstein_matrix(diagrams, n_jobs=1)

    expected = np.array([[_persim(a, b) for b in diagrams] for a in diagrams])
    off_diagonal = ~np.eye(len(D), dtype=bool)
    np.testing.assert_allclose(D[off_diagonal], expected[off_diagonal], rtol=RTOL, atol=0)
    assert np.array_equal(D, D.T) and np.all(np.diag(D) == 0)
    assert D[0, 5] == 0.0 and D[0, 2] > 0


def test_shared_bars_match_the_square_assignment_where_persim_loses_digits():
    rng = np.random.default_rng(4)
    a, b = _diagram(rng, 40), _diagram(rng, 25)
    b[:10] = a[:10]
    expected = _square_assignment(a, b)

    assert wasserstein.wasserstein_distance(a, b) == pytest.approx(expected, rel=RTOL, abs=0)
    assert wasserstein.wasserstein_distance(a, a) == 0.0


def test_near_identical_diagrams_keep_their_digits():
    rng = np.random.default_rng(2)
    base = _diagram(rng, 30)
    for scale in (1e-6, 1e-9, 1e-12):
        near = base[rng.permutation(len(base))] + scale * rng.normal(size=base.shape)
        expected = _square_assignment(base, near)
        assert 0 < expected < 100 * scale
        got = wasserstein.wasserstein_distance(base, near)
        assert got == pytest.approx(expected, rel=RTOL, abs=0)
    assert wasserstein.wasserstein_distance(base, base.copy()) == 0.0


def test_process_pool_gives_the_in_process_matrix(monkeypatch):
    rng = np.random.default_rng(3)
    diagrams = [_diagram(rng, int(k)) for k in rng.integers(0, 30, size=41)]
    serial = wasserstein.wasserstein_matrix(diagrams, n_jobs=1)
    monkeypatch.setattr(wasserstein, "MIN_PAIRS_FOR_POOL", 0)
    monkeypatch.setattr(wasserstein, "MAX_BLOCK_POINTS", 50)  # several cost blocks per row

    pooled = wasserstein.wasserstein_matrix(diagrams, n_jobs=2)

    assert np.array_equal(pooled, serial)
    pairs = [(0, 40), (5, 17), (39, 40)]
    for i, j in pairs:
        assert serial[i, j] == pytest.approx(
            _square_assignment(diagrams[i], diagrams[j]), rel=RTOL, abs=0
        )


def test_bad_diagrams_are_named():
    good = np.array([[0.1, 0.5]])
    with pytest.raises(ValueError, match="diagram 1 has infinite"):
        wasserstein.wasserstein_matrix([good, np.array([[0.2, np.inf]])])
    with pytest.raises(ValueError, match="diagram 0 must be a k x 2"):
        wasserstein.wasserstein_matrix([np.ones((2, 3)), good])
    with pytest.raises(ValueError, match="n_jobs=0"):
        wasserstein.wasserstein_matrix([good, good], n_jobs=0)
