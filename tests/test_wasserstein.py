"""Tests for nnmanifold.wasserstein against slow, obviously-correct references, and the
Wasserstein step's cached rows."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import persim
import pytest
from scipy.optimize import linear_sum_assignment

from nnmanifold.core import storage
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import WassersteinSettings
from nnmanifold.geometry import wasserstein
from nnmanifold.steps import geometry as geometry_steps

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


def test_a_diagram_before_empty_ones_in_a_block_keeps_every_point():
    """Diagrams are compared in blocks of concatenated points: an empty diagram after a
    non-empty one (here the block's last two) must not hide the latter's last point (a reviewer
    found a pruning step that did: this pair came out 4.999 instead of 3.566)."""
    a = np.array([[0.0, 1.0], [0.0, 1.05]])
    b = np.array([[5.0, 9.0], [0.0, 1.02]])
    empty = np.zeros((0, 2))
    D = wasserstein.wasserstein_matrix([b, empty, empty, a], n_jobs=1)
    assert D[3, 0] == pytest.approx(_persim(a, b), rel=RTOL, abs=0)
    assert D[3, 0] == pytest.approx(wasserstein.wasserstein_distance(a, b), rel=1e-12)


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


def _counting_pairs(monkeypatch) -> list[int]:
    """Count the diagram pairs the solver evaluates (in this process)."""
    counted: list[int] = []
    solve = wasserstein._against_block

    def counting(first, others):
        counted.append(len(others))
        return solve(first, others)

    monkeypatch.setattr(wasserstein, "_against_block", counting)
    return counted


def test_adding_ten_models_computes_only_their_rows(monkeypatch):
    rng = np.random.default_rng(5)
    diagrams = [_diagram(rng, int(k)) for k in rng.integers(0, 12, size=60)]
    ids = [f"m{k:02d}" for k in range(60)]
    digests = [f"d{k}" for k in range(60)]
    full = wasserstein.wasserstein_matrix(diagrams, n_jobs=1)
    old = list(rng.permutation(50))  # the cache holds the first 50, in another order
    cached = (full[np.ix_(old, old)], [ids[k] for k in old], [digests[k] for k in old])
    counted = _counting_pairs(monkeypatch)

    D, evaluated = wasserstein.incremental_matrix(ids, digests, diagrams, cached, n_jobs=1)

    assert evaluated == sum(counted) == 10 * 50 + 10 * 9 // 2
    np.testing.assert_allclose(D, full, rtol=1e-12, atol=1e-12)
    assert np.array_equal(D, D.T)


def test_a_model_whose_diagrams_changed_is_recomputed(monkeypatch):
    rng = np.random.default_rng(6)
    diagrams = [_diagram(rng, 5) for _ in range(20)]
    ids, digests = [f"m{k}" for k in range(20)], [f"d{k}" for k in range(20)]
    D0, _ = wasserstein.incremental_matrix(ids, digests, diagrams, n_jobs=1)
    diagrams[3] = _diagram(rng, 7)
    changed = [*digests[:3], "new", *digests[4:]]
    counted = _counting_pairs(monkeypatch)

    D, evaluated = wasserstein.incremental_matrix(ids, changed, diagrams, (D0, ids, digests), 1)

    assert evaluated == sum(counted) == 19
    np.testing.assert_allclose(D, wasserstein.wasserstein_matrix(diagrams, 1), rtol=1e-12)
    assert not np.allclose(D[3], D0[3])


def test_the_covered_subset_is_all_up_to_the_cap_and_moves_by_one_when_a_model_is_added():
    ids = [f"model{k}" for k in range(40)]
    assert wasserstein.covered(ids, 40) == list(range(40))
    chosen = {ids[k] for k in wasserstein.covered(ids, 25)}
    grown = ids[:17] + ["another"] + ids[17:]
    chosen_after = {grown[k] for k in wasserstein.covered(grown, 25)}

    assert len(chosen) == len(chosen_after) == 25
    assert len(chosen - chosen_after) <= 1
    backwards = ids[::-1]
    assert {backwards[k] for k in wasserstein.covered(backwards, 25)} == chosen


def _features_job(layout: Layout, batch: str, ids: list[str], rng: np.random.Generator) -> None:
    """A features job's outputs: each model's diagrams file (H0, H1) and the job manifest."""
    for m in ids:
        h0 = np.array([[0.0, 0.2], [0.0, np.inf]])
        storage.write_diagrams(layout.diagrams(m), [h0, _diagram(rng, int(rng.integers(0, 9)))])
    storage.write_json(
        layout.features_manifest(batch), [{"model_id": m, "status": "ok"} for m in ids]
    )


def test_the_step_reuses_cached_rows_by_diagrams_content(tmp_path, monkeypatch):
    layout, rng = Layout(tmp_path), np.random.default_rng(7)
    _features_job(layout, "b0", [f"a{k}" for k in range(30)], rng)
    settings = WassersteinSettings(max_networks=100)
    geometry_steps.wasserstein(layout, ["b0"], settings)
    _features_job(layout, "b1", [f"b{k}" for k in range(10)], rng)
    storage.write_diagrams(layout.diagrams("a4"), [np.zeros((0, 2)), _diagram(rng, 6)])
    counted = _counting_pairs(monkeypatch)

    geometry_steps.wasserstein(layout, ["b0", "b1"], settings)

    assert sum(counted) == 10 * 30 + 10 * 9 // 2 + 29  # the new rows, and a4's changed row
    W, ids, attrs = storage.read_distances(layout.wasserstein)
    diagrams = [wasserstein.finite_bars(storage.read_diagrams(layout.diagrams(m))[1]) for m in ids]
    np.testing.assert_allclose(W, wasserstein.wasserstein_matrix(diagrams, 1), rtol=1e-12)
    assert attrs["networks_of_zoo"] == 40 and len(ids) == 40
    counted.clear()

    geometry_steps.wasserstein(layout, ["b0", "b1"], WassersteinSettings(max_networks=25))

    W, ids, attrs = storage.read_distances(layout.wasserstein)
    assert sum(counted) == 0  # a subset of the cached rows: nothing to compute
    assert len(ids) == 25 and attrs["networks_of_zoo"] == 40
