"""How informative the map is across operator settings: sigma x normalisation x t x layer."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from nnmanifold.analysis import knn_tests
from nnmanifold.geometry.diffusion import (
    OperatorSettings,
    kernel_diagnostics,
    power,
    transition_matrix,
)
from nnmanifold.geometry.distances import pairwise_frobenius


def shared_layers(layer_orders: Sequence[Sequence[str]]) -> list[str]:
    """The hidden layers every model has (sorted): the layers the sweep can compare."""
    return sorted(set.intersection(*(set(order) for order in layer_orders)))


def sweep(
    representations: Mapping[str, Sequence[np.ndarray]],
    accuracy: np.ndarray,
    sigmas: Sequence[float | str],
    normalizations: Sequence[str],
    ts: Sequence[int],
    k: int = 5,
    n_perm: int = 999,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per (layer, sigma, normalisation, t): kernel diagnostics, LOO R^2 and smoothness.

    A setting that cannot be computed (say, sigma "median" on a collapsed representation) gets a
    row with empty statistics and the reason in ``note``.

    ``representations`` maps a layer name to each model's (n, d) representation, in the order of
    ``accuracy``. One-step operators are built once per (layer, sigma, normalisation) and raised
    to every t.
    """
    rows = []
    grid = list(itertools.product(representations, sigmas, normalizations))
    for layer, sigma, norm in tqdm(grid, desc="settings", unit="setting", disable=not progress):
        setting = {"layer": layer, "sigma": sigma, "normalization": norm}
        try:
            one_step = [
                transition_matrix(X, OperatorSettings(sigma, norm)) for X in representations[layer]
            ]
        except ValueError as err:  # e.g. a median distance of 0 for a collapsed network
            rows += [{**setting, "t": t, "note": str(err)} for t in ts]
            continue
        diag = pd.DataFrame([kernel_diagnostics(P) for P in one_step]).mean()
        for t in ts:
            ops = np.stack([power(P, t) for P in one_step])
            D = pairwise_frobenius(ops, device="cpu")
            fit = knn_tests.loo_knn_r2_permutation(D, accuracy, k=k, n_perm=n_perm, seed=seed)
            smooth = knn_tests.smoothness_test(D, accuracy, k=k, n_perm=n_perm, seed=seed)
            rows.append(
                {
                    **setting,
                    "t": t,
                    "r2": fit["r2"],
                    "r2_p": fit["p_value"],
                    "smoothness_energy": smooth["energy"],
                    "smoothness_p": smooth["p_value"],
                    "mean_diagonal_mass": diag["mean_diagonal_mass"],
                    "effective_neighbours": diag["effective_neighbours"],
                }
            )
    return pd.DataFrame(rows)
