"""The table-mode search benchmark's pieces: snapping to the grid, the MDS stand-in, the table."""

import itertools
import math

import numpy as np
import optuna
import pytest

from nnmanifold.search import benchmark as bench
from nnmanifold.search import sampler as search

GRID = [
    {"lr": lr, "width": w, "optimizer": o}
    for lr, w, o in itertools.product([1e-3, 1e-2, 1e-1], [16, 64], ["sgd", "adam"])
]


def test_snap_matches_a_loop_and_skips_taken_configurations():
    dists = bench.grid_space(GRID)
    assert dists["lr"].log and dists["width"].log
    proposal = {"lr": 0.02, "width": 40, "optimizer": "adam"}

    def cost(c):
        lr = abs(math.log(c["lr"]) - math.log(0.02)) / math.log(100)
        width = abs(math.log(c["width"]) - math.log(40)) / math.log(4)
        return lr + width + (c["optimizer"] != "adam")

    taken = np.zeros(len(GRID), bool)
    for _ in range(len(GRID)):
        costs = [math.inf if t else cost(c) for c, t in zip(GRID, taken, strict=True)]
        i = bench.snap(proposal, GRID, taken, dists)
        assert i == int(np.argmin(costs))
        taken[i] = True


def test_classical_mds_recovers_points_up_to_rotation():
    x = np.random.default_rng(0).normal(size=(8, 2))
    D = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    y = bench.classical_mds(D)
    np.testing.assert_allclose(np.sqrt(((y[:, None] - y[None]) ** 2).sum(-1)), D, atol=1e-9)


def test_run_search_counts_the_initial_zoo_and_never_repeats():
    dists = bench.grid_space(GRID)
    val = np.linspace(0, 1, len(GRID))
    initial = np.array([0, 5])
    sampler = optuna.samplers.RandomSampler(seed=0)
    order = bench.run_search(sampler, GRID, val, initial, 9, 4, dists)
    assert order[:2] == [0, 5] and len(order) == 9 == len(set(order))
    keys = list(dists)
    guided = search.GuidedSampler(dists, bench.grid_map(GRID, 1 - np.eye(12), keys, "mds", 0))
    assert len(set(bench.run_search(guided, GRID, val, initial, 12, 4, dists))) == 12


def test_summary_of_known_curves():
    best = np.array([[0.5, 0.9, 0.9], [0.5, 0.5, 0.6]])
    picked = np.array([[0.4, 0.7, 0.7], [0.4, 0.4, 0.5]])
    row = bench.summarise(best, picked, target=0.9)
    assert row["final_best_val"][0] == pytest.approx(0.75)
    assert row["test_of_chosen"][0] == pytest.approx(0.6)  # the last picked: 0.7 and 0.5
    assert row["auc_val"][0] == pytest.approx(np.mean([2.3 / 3, 1.6 / 3]), abs=1e-4)
    assert row["reached_p95"] == "1/2" and row["to_p95"] == np.median([2, 4])


def test_the_reported_test_accuracy_is_the_validation_choices():
    """At every step of every curve, the test accuracy reported is that of the model with the
    best validation accuracy so far (never the best test accuracy: that would leak the test set)."""
    from nnmanifold.core.settings import SearchBenchmarkSettings

    rng = np.random.default_rng(0)
    val = rng.permutation(len(GRID)) / len(GRID)  # distinct, so each best names one model
    test = rng.permutation(len(GRID)) / len(GRID)  # unrelated to validation
    settings = SearchBenchmarkSettings(
        repeats=2, initial=2, budget=8, per_round=2, map="mds", seed=0
    )
    D = np.abs(val[:, None] - val[None, :])
    _, best, picked, _ = bench.benchmark(GRID, val, test, D, settings)
    for method in search.METHODS:
        chosen = [[int(np.flatnonzero(val == b)[0]) for b in row] for row in best[method]]
        np.testing.assert_array_equal(picked[method], test[chosen], err_msg=method)


def test_the_benchmark_target_compares_the_three_methods_on_the_trained_zoo(mapped_zoo):
    import json

    import pandas as pd
    from conftest import planned_jobs, snakemake

    workdir, _ = mapped_zoo
    results = workdir / "results"
    assert "search_benchmark" not in planned_jobs(snakemake(workdir, "-n").stdout)  # own target
    small = "search_benchmark={repeats: 3, initial: 2, budget: 4, per_round: 1, map: mds}"
    snakemake(workdir, "search_benchmark", "--config", small)
    table = pd.read_csv(results / "search_benchmark" / "table.csv").set_index("method")
    assert list(table.index) == ["guided", "tpe", "random"]
    val = [
        row.get("val_accuracy")
        for manifest in (results / "train").glob("*.json")
        for row in json.loads(manifest.read_text())
    ]
    val = [v if v is not None else 0.0 for v in val]
    # each method saw 4 of the 5 models: its best is one of theirs, at least the 4th best
    assert (table["final_best_val"] <= max(val) + 5e-5).all()  # the table rounds to 4 places
    assert (table["final_best_val"] >= sorted(val)[1] - 5e-5).all()
    assert (results / "search_benchmark" / "curves.png").stat().st_size > 10_000
