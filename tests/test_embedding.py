import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform

from nnmanifold.core.errors import UserError
from nnmanifold.geometry import embedding


def _distances(n, seed=0):
    X = np.random.default_rng(seed).normal(size=(n, 3))
    return squareform(pdist(X))


def test_phate_map_is_seeded_and_keeps_neighbourhoods():
    # two far-apart groups of networks must stay apart on the map
    D = _distances(30)
    D[:15, 15:] += 10
    D[15:, :15] += 10
    a = embedding.phate_embedding(D, seed=0)
    b = embedding.phate_embedding(D, seed=0)
    assert a.shape == (30, 2)
    np.testing.assert_array_equal(a, b)
    within = np.linalg.norm(a[:15].mean(0) - a[:15], axis=1).mean()
    between = np.linalg.norm(a[:15].mean(0) - a[15:].mean(0))
    assert between > 3 * within


def test_three_dimensions_and_small_zoos():
    assert embedding.phate_embedding(_distances(12), n_components=3).shape == (12, 3)
    assert np.isfinite(embedding.phate_embedding(_distances(4), knn=5)).all()  # knn shrunk
    with pytest.raises(UserError, match="at least 4"):
        embedding.phate_embedding(_distances(3))


def test_table_has_one_row_per_zoo_model_and_no_place_for_excluded_ones():
    zoo = pd.DataFrame({"model_id": ["a", "b", "c"], "lr": [0.1, 0.2, 0.3], "spec": ["{}"] * 3})
    metrics = pd.DataFrame(
        {
            "model_id": ["a", "b", "c"],
            "status": ["ok", "diverged", "ok"],
            "reason": [None, "non-finite loss", None],
            "test_accuracy": [0.9, np.nan, 0.5],
        }
    )
    table = embedding.embedding_table(np.array([[1.0, 2.0], [3.0, 4.0]]), ["c", "a"], zoo, metrics)
    assert list(table["model_id"]) == ["a", "b", "c"]
    assert list(table.columns[:5]) == ["model_id", "phate_1", "phate_2", "test_accuracy", "status"]
    assert table.loc[0, "phate_1"] == 3.0 and table.loc[2, "phate_2"] == 2.0
    assert np.isnan(table.loc[1, "phate_1"]) and table.loc[1, "reason"] == "non-finite loss"
    assert "lr" in table and "spec" not in table
