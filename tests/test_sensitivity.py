import numpy as np

from nnmanifold.analysis import sensitivity


def _zoo(n_models=16, n=40, seed=0):
    """Networks whose representations blur the classes more as accuracy drops."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n // 4)
    centres = rng.normal(size=(4, 8)) * 3
    accuracy = np.linspace(0.3, 0.95, n_models)
    reps = [centres[labels] * a + rng.normal(size=(n, 8)) * (1.2 - a) for a in accuracy]
    return reps, accuracy


def test_sweep_covers_the_grid_and_finds_the_signal():
    reps, accuracy = _zoo()
    table = sensitivity.sweep(
        {"fc1": reps}, accuracy, [0.5, "median"], ["l2", "none"], [1, 2], k=3, n_perm=19
    )
    assert len(table) == 2 * 2 * 2
    assert set(table["sigma"]) == {0.5, "median"}
    assert np.isfinite(table["r2"]).all()
    best = table.loc[table["r2"].idxmax()]
    assert best["r2"] > 0.5 and best["smoothness_p"] <= 0.05  # accuracy is in the geometry
    # the per-network median sigma blurs these networks together (cf. the 0.17)
    assert table[table["sigma"] == "median"]["r2"].max() < best["r2"]
    assert ((table["mean_diagonal_mass"] > 0) & (table["mean_diagonal_mass"] < 1)).all()


def test_a_setting_that_cannot_be_computed_is_a_row_with_a_note():
    reps, accuracy = _zoo()
    reps[3] = np.zeros_like(reps[3])  # a collapsed network: median distance 0
    table = sensitivity.sweep(
        {"fc1": reps}, accuracy, ["median", 0.5], ["none"], [1], k=3, n_perm=9
    )
    median = table[table["sigma"] == "median"].iloc[0]
    assert "median" in median["note"] and np.isnan(median["r2"])
    assert np.isfinite(table[table["sigma"] == 0.5]["r2"]).all()
