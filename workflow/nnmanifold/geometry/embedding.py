"""PHATE on the network distance matrix, and the per-model embedding table."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from nnmanifold.core.errors import UserError

log = logging.getLogger(__name__)

MIN_MODELS = 4  # PHATE's graph needs a few neighbours per point


def phate_embedding(
    D: np.ndarray, n_components: int = 2, knn: int = 5, decay: float = 40, seed: int = 0
) -> np.ndarray:
    """Embed a precomputed N x N network distance with PHATE (knn shrunk for small zoos)."""
    import phate

    n = len(D)
    if n < MIN_MODELS:
        raise UserError(
            f"the map needs at least {MIN_MODELS} models that trained ok, got {n}; "
            "grow the zoo or see results/geometry/excluded.csv for the rest"
        )
    k = min(knn, n - 2)
    if k < knn:
        log.warning("zoo of %d models: PHATE knn lowered from %d to %d", n, knn, k)
    op = phate.PHATE(
        knn_dist="precomputed_distance",
        n_components=n_components,
        knn=k,
        decay=decay,
        t="auto",
        mds_solver="smacof",
        random_state=seed,
        n_jobs=1,
        verbose=0,
    )
    return op.fit_transform(D)


def embedding_table(
    coords: np.ndarray, model_ids: list[str], zoo: pd.DataFrame, metrics: pd.DataFrame
) -> pd.DataFrame:
    """One row per zoo model, then per network from elsewhere (no hyperparameters; its
    metadata columns): id, PHATE coordinates (NaN if excluded), accuracy, status, spec."""
    cols = [f"phate_{i + 1}" for i in range(coords.shape[1])]
    placed = pd.DataFrame(coords, columns=cols).assign(model_id=model_ids)
    hyper = zoo.drop(columns=["spec"])
    table = hyper.merge(metrics, on="model_id", how="left")
    if not (others := metrics[~metrics["model_id"].isin(hyper["model_id"])]).empty:
        table = pd.concat([table, others], ignore_index=True) if len(table) else others
    table = table.merge(placed, on="model_id", how="left")
    first = ["model_id", *cols, "test_accuracy", "status", "reason"]
    return table[first + [c for c in table.columns if c not in first]]
