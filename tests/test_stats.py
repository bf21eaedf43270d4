"""Tests for nnmanifold.stats on synthetic zoos where the right answer is known."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from nnmanifold.analysis import knn_tests, stats


def _zoo(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Accuracies and a network distance that encodes them exactly, D_ij = |a_i - a_j|."""
    acc = np.random.default_rng(seed).uniform(0.5, 0.99, size=n)
    return np.abs(acc[:, None] - acc[None, :]), acc


def _reference_loo_r2(D: np.ndarray, f: np.ndarray, k: int) -> float:
    """Slow LOO k-NN R^2 for distances without ties."""
    pred = [f[[j for j in np.argsort(D[i]) if j != i][:k]].mean() for i in range(f.size)]
    return 1 - np.sum((f - pred) ** 2) / np.sum((f - f.mean()) ** 2)


def test_exact_distance_predicts_accuracy_and_is_smooth() -> None:
    D, acc = _zoo()
    fit = knn_tests.loo_knn_r2_permutation(D, acc, k=5, n_perm=199, seed=1)
    smooth = knn_tests.smoothness_test(D, acc, k=5, n_perm=199, seed=1)
    assert fit["r2"] > 0.95
    assert fit["p_value"] == pytest.approx(1 / 200)
    assert smooth["energy"] < 0.05
    assert smooth["p_value"] == pytest.approx(1 / 200)


def test_random_distance_predicts_nothing() -> None:
    _, acc = _zoo(n=80)
    D = stats.random_distance(80, seed=3)
    fit = knn_tests.loo_knn_r2_permutation(D, acc, k=5, n_perm=199, seed=1)
    smooth = knn_tests.smoothness_test(D, acc, k=5, n_perm=199, seed=1)
    assert fit["r2"] <= 0.1
    assert fit["p_value"] > 0.05
    assert smooth["p_value"] > 0.05
    assert smooth["null_mean"] == pytest.approx(1.0, abs=0.05)


def test_loo_r2_matches_slow_reference() -> None:
    rng = np.random.default_rng(4)
    points = rng.normal(size=(30, 3))
    D = np.linalg.norm(points[:, None] - points[None, :], axis=-1)
    f = points[:, 0] + 0.3 * rng.normal(size=30)
    for k in (1, 3, 7):
        assert knn_tests.loo_knn_r2(D, f, k=k) == pytest.approx(_reference_loo_r2(D, f, k))


def test_permutation_tests_match_slow_references_shuffle_by_shuffle() -> None:
    rng = np.random.default_rng(8)
    points = rng.normal(size=(40, 3))
    D = np.linalg.norm(points[:, None] - points[None, :], axis=-1)
    f = points[:, 0] + 0.3 * rng.normal(size=40)
    k, n_perm = 4, 300  # more shuffles than one chunk
    shuffles = [f[p] for chunk in knn_tests._permutation_chunks(f.size, n_perm, 5) for p in chunk]
    A = knn_tests.knn_graph(D, k).toarray()

    def energy(g: np.ndarray) -> float:
        pairs = sum(A[i, j] * (g[i] - g[j]) ** 2 for i in range(g.size) for j in range(g.size))
        return pairs / (2 * A.sum() * g.var(ddof=1))

    null = np.array([energy(g) for g in shuffles])
    smooth = knn_tests.smoothness_test(D, f, k=k, n_perm=n_perm, seed=5)
    assert smooth["energy"] == pytest.approx(energy(f), rel=1e-9)
    assert smooth["null_mean"] == pytest.approx(null.mean(), rel=1e-9)
    assert smooth["p_value"] == (1 + np.sum(null <= energy(f))) / (n_perm + 1)

    r2_null = np.array([_reference_loo_r2(D, g, k) for g in shuffles])
    fit = knn_tests.loo_knn_r2_permutation(D, f, k=k, n_perm=n_perm, seed=5)
    assert fit["r2"] == pytest.approx(_reference_loo_r2(D, f, k), rel=1e-9)
    assert fit["p_value"] == (1 + np.sum(r2_null >= fit["r2"])) / (n_perm + 1)


def test_networks_tied_at_kth_distance_share_the_last_place() -> None:
    x = np.array([0.0, 1.0, -1.0, 10.0, 12.0])
    D = np.abs(x[:, None] - x[None, :])
    f = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    pred = np.array([(2 + 4) / 2, 1, 1, 16, 8])
    expected = 1 - np.sum((f - pred) ** 2) / np.sum((f - f.mean()) ** 2)
    assert knn_tests.loo_knn_r2(D, f, k=1) == pytest.approx(expected)
    order = np.array([2, 4, 0, 3, 1])
    assert knn_tests.loo_knn_r2(D[np.ix_(order, order)], f[order], k=1) == pytest.approx(expected)
    graph = knn_tests.knn_graph(D, 1).toarray()
    reordered = knn_tests.knn_graph(D[np.ix_(order, order)], 1).toarray()
    assert np.allclose(reordered, graph[np.ix_(order, order)])


def test_knn_graph_is_symmetric_and_covers_k_neighbours() -> None:
    D, _ = _zoo(n=25)
    A = knn_tests.knn_graph(D, 4).toarray()
    assert np.array_equal(A, A.T)
    assert np.all(np.diag(A) == 0)
    assert np.all((A > 0).sum(axis=1) >= 4)


def test_blockwise_knn_and_checks_equal_the_whole_matrix(monkeypatch) -> None:
    """k-NN weights and distance checks built a few rows at a time (as at N = 10,000) give the
    single-block results, ties included, and still find a flaw in a late block."""
    x = np.round(np.random.default_rng(2).normal(size=40), 1)  # rounding makes ties
    D, f = np.abs(x[:, None] - x[None, :]), np.random.default_rng(3).normal(size=40)
    whole_graph, whole_r2 = knn_tests.knn_graph(D, 3).toarray(), knn_tests.loo_knn_r2(D, f, k=3)
    monkeypatch.setattr(knn_tests, "_ROW_BLOCK", 7)
    assert np.array_equal(knn_tests.knn_graph(D, 3).toarray(), whole_graph)
    assert knn_tests.loo_knn_r2(D, f, k=3) == whole_r2
    for flaw, message in ((-1.0, "negative"), (np.nan, "NaN")):
        bad = D.copy()
        bad[39, 0] = flaw  # last block, first column: named for what it is, not as asymmetry
        with pytest.raises(ValueError, match=message):
            knn_tests.knn_graph(bad, 3)
    lopsided = D.copy()
    lopsided[39, 30] += 1.0
    with pytest.raises(ValueError, match="symmetric"):
        knn_tests.knn_graph(lopsided, 3)


def test_smoothness_energies_in_chunks_equal_all_at_once(monkeypatch) -> None:
    """The smoothness test's edge differences, a few shuffled signals at a time (a tie-heavy
    graph has ~N^2/4 edges), give the energies of all signals at once."""
    D = stats.euclidean_distances_of(pd.DataFrame({"lr": [0.1, 0.01] * 20}))  # ties everywhere
    f = np.random.default_rng(4).normal(size=40)
    whole = knn_tests.smoothness_test(D, f, k=3, n_perm=99, seed=5)
    monkeypatch.setattr(knn_tests, "_EDGE_ELEMENTS", 1000)  # a few signals a chunk
    chunked = knn_tests.smoothness_test(D, f, k=3, n_perm=99, seed=5)
    assert chunked["energy"] == pytest.approx(whole["energy"], rel=1e-12)
    assert chunked["null_mean"] == pytest.approx(whole["null_mean"], rel=1e-12)
    assert chunked["p_value"] == whole["p_value"]


def test_dirichlet_energy_matches_double_sum_and_is_scale_free() -> None:
    rng = np.random.default_rng(5)
    A = np.triu(rng.integers(0, 2, size=(10, 10)), 1).astype(float)
    A = A + A.T
    f = rng.normal(size=10)
    raw = sum(A[i, j] * (f[i] - f[j]) ** 2 for i in range(10) for j in range(10)) / 2
    expected = raw / (A.sum() / 2 * 2 * f.var(ddof=1))
    assert knn_tests.dirichlet_energy(f, A) == pytest.approx(expected)
    assert knn_tests.dirichlet_energy(3 * f + 7, A) == pytest.approx(expected)
    assert np.isnan(knn_tests.dirichlet_energy(np.ones(10), A))


def test_spearman_of_monotone_transform_is_one() -> None:
    x = np.random.default_rng(6).uniform(size=40)
    res = stats.spearman_with_ci(x, np.exp(3 * x), n_boot=300, seed=0)
    assert res["rho"] == pytest.approx(1.0)
    assert 0.9 <= res["ci_low"] <= res["ci_high"] <= 1.0
    assert res["p"] < 1e-6
    assert stats.spearman_with_ci(x, -(x**3), n_boot=50)["rho"] == pytest.approx(-1.0)


def test_spearman_drops_nans_and_ci_covers_zero_for_noise() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=50), rng.normal(size=50)
    x[:5] = np.nan
    res = stats.spearman_with_ci(x, y, n_boot=500, seed=0)
    assert res["n"] == 45
    assert res["ci_low"] < 0 < res["ci_high"]


def test_stratified_rows_have_the_right_size() -> None:
    D, acc = _zoo(n=40)
    rows = knn_tests.stratified(D, acc, k=5, n_perm=99, seed=0)
    assert [r["stratum"] for r in rows] == ["all", "top 50%", "top 25%"]
    assert [r["n"] for r in rows] == [40, 20, 10]
    assert all(r["r2"] > 0.5 and r["r2_p"] < 0.05 and r["smoothness_p"] < 0.05 for r in rows)


def test_k_shrinks_for_tiny_zoos_without_crashing() -> None:
    D, acc = _zoo(n=4)
    assert knn_tests.smoothness_test(D, acc, k=5, n_perm=20)["k"] == 2
    assert knn_tests.loo_knn_r2_permutation(D, acc, k=5, n_perm=20)["k"] == 2
    rows = knn_tests.stratified(D, acc, k=5, n_perm=20)
    assert [r["k"] for r in rows] == [2, 0, 0]
    assert np.isnan(rows[2]["r2"]) and np.isnan(rows[2]["smoothness_p"])
    assert np.isnan(knn_tests.loo_knn_r2(D[:2, :2], acc[:2], k=5))


def test_permutation_p_values_lie_in_unit_interval() -> None:
    D, acc = _zoo(n=20)
    noisy = acc + np.random.default_rng(8).normal(scale=0.2, size=20)
    for n_perm in (1, 9, 99):
        p_fit = knn_tests.loo_knn_r2_permutation(D, noisy, n_perm=n_perm, seed=2)["p_value"]
        p_smooth = knn_tests.smoothness_test(D, noisy, n_perm=n_perm, seed=2)["p_value"]
        assert 0 < p_fit <= 1 and 0 < p_smooth <= 1
        assert p_fit * (n_perm + 1) == pytest.approx(round(p_fit * (n_perm + 1)))


def test_permutation_results_are_seeded() -> None:
    D = stats.random_distance(30, seed=1)
    _, acc = _zoo(n=30)
    first = knn_tests.smoothness_test(D, acc, n_perm=99, seed=11)
    assert knn_tests.smoothness_test(D, acc, n_perm=99, seed=11) == first
    assert knn_tests.smoothness_test(D, acc, n_perm=99, seed=12)["p_value"] != first["p_value"]


def test_euclidean_distances_standardise_and_one_hot() -> None:
    table = pd.DataFrame({"lr": [1e-3, 1e-2, 1e-1], "act": ["relu", "relu", "tanh"]})
    D = stats.euclidean_distances_of(table)
    rescaled = stats.euclidean_distances_of(table.assign(lr=table["lr"] * 1000))
    assert np.allclose(D, rescaled)
    lr_only = stats.euclidean_distances_of(table["lr"])
    assert D[0, 2] ** 2 == pytest.approx(lr_only[0, 2] ** 2 + 2)
    assert D[0, 1] == pytest.approx(lr_only[0, 1])


def test_random_distance_is_a_seeded_symmetric_distance() -> None:
    D = stats.random_distance(12, seed=4)
    assert (
        np.array_equal(D, D.T)
        and np.all(np.diag(D) == 0)
        and np.all(D[~np.eye(12, dtype=bool)] > 0)
    )
    assert np.array_equal(D, stats.random_distance(12, seed=4))
    assert not np.array_equal(D, stats.random_distance(12, seed=5))


def test_map_informativeness_ranks_the_informative_distance_first() -> None:
    D, acc = _zoo(n=40)
    rng = np.random.default_rng(9)
    features = pd.DataFrame(
        {"sep": acc + rng.normal(scale=0.01, size=40), "noise": rng.normal(size=40)}
    )
    features.loc[3, "noise"] = np.nan
    hyper = pd.DataFrame(
        {"width": rng.choice([16, 32, 64], size=40), "opt": rng.choice(["sgd", "adam"], 40)}
    )
    table = stats.map_informativeness(D, acc, features, hyper, k=5, n_perm=99, seed=0)
    assert list(table.columns) == [
        "predictor",
        "stratum",
        "r2",
        "r2_p",
        "smoothness_energy",
        "smoothness_p",
        "n",
        "k",
    ]
    predictors = [
        "diffusion distance",
        "hyperparameters",
        "random distance",
        "feature: sep",
        "feature: noise",
    ]
    assert list(table["predictor"].unique()) == predictors
    assert len(table) == 3 * len(predictors)
    everyone = table[table["stratum"] == "all"].set_index("predictor")
    assert everyone.loc["diffusion distance", "r2"] > 0.9
    assert everyone.loc["random distance", "r2"] < 0.2
    assert everyone.loc["diffusion distance", "smoothness_p"] < 0.05
    assert everyone.loc["feature: noise", "n"] == 39
    assert stats.map_informativeness(D, acc, features, hyper, n_perm=99, seed=0).equals(table)


def test_map_informativeness_survives_a_tiny_zoo() -> None:
    D, acc = _zoo(n=3)
    table = stats.map_informativeness(
        D, acc, pd.DataFrame({"sep": acc}), pd.DataFrame({"width": [8, 16, 32]}), n_perm=9
    )
    assert len(table) == 4 * 3
    assert set(table.loc[table["stratum"] == "all", "k"]) == {1}


def test_feature_correlations_report_each_feature() -> None:
    _, acc = _zoo(n=30)
    features = pd.DataFrame({"up": acc**2, "down": -acc})
    table = stats.feature_correlations(features, acc, n_boot=200, seed=0)
    assert list(table["feature"]) == ["up", "down"]
    assert list(table.columns) == ["feature", "rho", "ci_low", "ci_high", "p", "n"]
    assert table["rho"].tolist() == pytest.approx([1.0, -1.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda D, a: knn_tests.loo_knn_r2(D, a[:-1]),
        lambda D, a: knn_tests.smoothness_test(D[:, :-1], a),
        lambda D, a: stats.spearman_with_ci(a, a[:-1]),
        lambda D, a: stats.map_informativeness(
            D, a, pd.DataFrame({"x": a[:-1]}), pd.DataFrame({"w": a})
        ),
        lambda D, a: stats.feature_correlations(pd.DataFrame({"x": a[:-1]}), a),
        lambda D, a: knn_tests.loo_knn_r2(D, np.where(np.arange(a.size) == 0, np.nan, a)),
        lambda D, a: stats.feature_correlations(pd.DataFrame({"name": ["m"] * a.size}), a),
        lambda D, a: knn_tests.loo_knn_r2(D + np.triu(np.ones_like(D)), a),
    ],
)
def test_bad_inputs_raise_value_error(call: Callable[[np.ndarray, np.ndarray], object]) -> None:
    D, acc = _zoo(n=10)
    with pytest.raises(ValueError):
        call(D, acc)


def test_zoo_summary_counts_models_near_chance() -> None:
    status = pd.Series(["ok", "ok", "ok", "diverged", "failed", "ok"])
    accuracy = pd.Series([0.95, 0.12, 0.119, np.nan, np.nan, 0.121])
    summary = stats.zoo_summary(status, accuracy, chance_accuracy=0.1)
    row = summary.iloc[0]
    assert (row["models"], row["ok"], row["diverged"], row["failed"]) == (6, 4, 1, 1)
    assert row["near_chance"] == 2  # 0.12 and 0.119 are within 2 points; 0.121 is not
    assert row["best_accuracy"] == 0.95
    line = stats.summary_line(summary)
    assert "2 ended near chance" in line and "0.120" in line
    clean = stats.zoo_summary(status, accuracy, chance_accuracy=0.05)
    assert clean.iloc[0]["near_chance"] == 0 and "near chance" not in stats.summary_line(clean)
