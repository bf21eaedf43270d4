"""Which network distance organises a finished zoo best: diffusion vs CKA, RSA and Procrustes.

Usage: ``python bench/compare_distances.py RESULTS_DIR``. Reads the diffusion distance
(``geometry/distances.h5``), the joined table (``geometry/embedding.csv``) and every listed
model's activations (the layer and normalisation the geometry used), computes the three baseline
distances, and runs ``stats.map_informativeness`` on each with the run's stats settings. Prints
one table, distance x stratum -> LOO k-NN R^2 and smoothness with permutation p-values, then the
hyperparameter and random baselines; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nnmanifold.analysis import stats
from nnmanifold.analysis.features import FEATURE_NAMES
from nnmanifold.core import storage
from nnmanifold.core.paths import Layout
from nnmanifold.geometry import similarity
from nnmanifold.zoo.specs import HYPERPARAMETERS

BASELINES = ("hyperparameters", "random distance")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a finished results folder of the workflow")
    parser.add_argument(
        "--memory-budget-mb", type=float, help="per kind (default: the run's geometry budget)"
    )
    parser.add_argument(
        "--procrustes-max-networks", type=int, default=similarity.PROCRUSTES_MAX_NETWORKS
    )
    return parser.parse_args()


def informativeness(
    D: np.ndarray, table: pd.DataFrame, cfg: dict, keep: np.ndarray | None = None
) -> pd.DataFrame:
    """``map_informativeness`` of D over the networks ``keep`` (rows of ``table``), as cmd_stats."""
    sub = table if keep is None else table.iloc[keep]
    hyper = sub[[c for c in HYPERPARAMETERS if c in sub]].dropna(axis=1, how="all")
    return stats.map_informativeness(
        D,
        sub["test_accuracy"].to_numpy(),
        sub[list(FEATURE_NAMES)],
        hyper,
        k=cfg["knn"],
        n_perm=cfg["n_permutations"],
        seed=cfg["seed"],
    )


def main() -> None:
    """Compute the baseline distances, print the comparison table and its JSON."""
    args = parse_args()
    layout = Layout(args.results)
    config = storage.read_json(layout.provenance)["config"]
    D_diffusion, ids, attrs = storage.read_distances(layout.distances)
    table = pd.read_csv(layout.embedding).set_index("model_id").loc[ids]
    probe = storage.read_probe(layout.probe)
    layer = config["geometry"]["layer"]
    reps = [storage.read_activations(layout.activations(m), layer, probe["hash"])[0] for m in ids]
    budget_mb = args.memory_budget_mb or config["geometry"]["memory_budget_mb"]
    normalization = attrs["normalization"]
    print(
        f"{layout.root}: {len(ids)} networks, {probe['dataset']}, n_probe={len(probe['labels'])}, "
        f"layer {layer or 'penultimate'}, normalization {normalization}"
    )
    frames = [informativeness(D_diffusion, table, config["stats"]).assign(distance="diffusion")]
    seconds = {}
    for kind in similarity.KINDS:
        start = time.perf_counter()
        result = similarity.distance_matrix(
            reps,
            kind,
            normalization,
            int(budget_mb * 2**20),
            max_networks=args.procrustes_max_networks,
            seed=config["stats"]["seed"],
        )
        seconds[kind] = time.perf_counter() - start
        frame = informativeness(result.distances, table, config["stats"], result.networks)
        frames.append(frame.assign(distance=kind))
    every = pd.concat(frames, ignore_index=True)
    columns = ["stratum", "n", "r2", "r2_p", "smoothness_energy", "smoothness_p"]
    network = every[every["predictor"] == "diffusion distance"]
    pd.set_option("display.width", 200)
    print("\nnetwork distance (R^2: LOO k-NN of test accuracy; energy: Dirichlet, 1 = chance)")
    print(network[["distance", *columns]].to_string(index=False, float_format="{:.3f}".format))
    baselines = every[(every["distance"] == "diffusion") & every["predictor"].isin(BASELINES)]
    print("\nbaselines")
    print(baselines[["predictor", *columns]].to_string(index=False, float_format="{:.3f}".format))
    print(f"\nseconds: {json.dumps({k: round(v, 2) for k, v in seconds.items()})}")
    summary = {
        f"{row.distance}|{row.stratum}": {"r2": round(row.r2, 4), "p": round(row.r2_p, 4)}
        for row in network.itertuples()
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
