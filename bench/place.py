"""Placement on a finished map, judged by leave-one-out, and its time on a large map.

Run by hand (not in CI): ``python bench/place.py --distances results/geometry/distances.h5``.
Leave-one-out (issue 22): for networks i of a zoo, fit the map without i, place i from its
distances to the others, align that map to the full map (Procrustes with scaling: the layout is
defined up to rotation, reflection and scale) and measure

- the displacement of the placed i from its place in the full map, as % of the full map's
  diameter (goal: median <= 5 %);
- the overlap of i's 5 nearest map networks (in the map, from the placed position) with its 5
  nearest networks by distance, against the same overlap of the full map's own position of i
  (goal: median placed >= median full map).

Both positions are reported: the potential stress (``placement.place``, the one the workflow
uses) and plain interpolation (``placement.interpolate``). The zoos: the distances of a zoo run
(``--distances``) and a synthetic zoo (``--synthetic N``: networks as noisy random projections
of a latent class structure, at several training stages). Last, ``--timing N``: placing 10
networks on a synthetic N-network map (distances from their activations, graph rebuild,
position) against a PHATE refit of the N + 10 networks. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from scipy.linalg import orthogonal_procrustes

from nnmanifold.core import storage
from nnmanifold.geometry import placement
from nnmanifold.geometry.diffusion import OperatorSettings
from nnmanifold.geometry.distances import cross_distances, distance_matrix
from nnmanifold.geometry.embedding import phate_embedding

SETTINGS = OperatorSettings()  # the workflow's defaults: sigma 0.5, l2, t = 1
KNN, DECAY, SEED = 5, 40.0, 0  # the embedding section's defaults
NEIGHBOURS = 5
BUDGET = 2048 * 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distances", help="a zoo's distances.h5 (leave-one-out on it)")
    parser.add_argument("--synthetic", type=int, default=1000, help="synthetic zoo size (0: none)")
    parser.add_argument("--left-out", type=int, default=20, help="networks left out per zoo")
    parser.add_argument("--timing", type=int, default=10000, help="map size to time (0: none)")
    parser.add_argument("--timing-points", type=int, default=64, help="probe points at --timing")
    parser.add_argument("--points", type=int, default=200, help="probe points, synthetic zoo")
    return parser.parse_args(argv)


def synthetic_zoo(N: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """N representations (n, 32) of one probe set of 10 classes: each network is a noisy random
    projection of the points' latent class structure, separated by a training stage in [0, 1]
    and one of four families (how the latent directions are mixed), so the zoo has clusters and
    a continuum."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    centres = rng.normal(size=(10, 6))
    points = rng.normal(size=(n, 6))
    families = [rng.normal(size=(6, 32)) for _ in range(4)]
    reps = []
    for _ in range(N):
        stage = rng.uniform()
        family = families[rng.integers(4)]
        latent = points + 3.0 * stage * centres[labels]
        W = family + 0.5 * rng.normal(size=family.shape)
        reps.append(np.tanh(latent @ W / 3.0) + 0.05 * rng.normal(size=(n, 32)))
    return reps


def leave_one_out(D: np.ndarray, left_out: int, seed: int = 0) -> dict[str, Any]:
    """Displacement (% of the full map's diameter) and 5-NN overlaps for ``left_out`` networks
    chosen at random, for the stress placement and for interpolation."""
    Y = phate_embedding(D, 2, KNN, DECAY, SEED)
    diameter = float(np.max(np.linalg.norm(Y[:, None] - Y[None], axis=2)))
    chosen = np.random.default_rng(seed).choice(len(D), size=min(left_out, len(D)), replace=False)
    rows: dict[str, list[float]] = {k: [] for k in ("stress", "interp", "nn_stress", "nn_interp")}
    rows["nn_full"], rows["seconds"] = [], []
    for i in chosen:
        others = np.delete(np.arange(len(D)), i)
        D_rest, d = D[np.ix_(others, others)], D[i, others][None]
        Y_rest = phate_embedding(D_rest, 2, KNN, DECAY, SEED)
        start = time.perf_counter()
        graph = placement.map_graph(D_rest, Y_rest, KNN, DECAY, SEED)
        placed = placement.place(graph, d).coords[0]
        rows["seconds"].append(time.perf_counter() - start)
        interp = placement.interpolate(d, graph, Y_rest)[0]
        mu_s, mu_t = Y_rest.mean(axis=0), Y[others].mean(axis=0)
        R, scale = orthogonal_procrustes(Y_rest - mu_s, Y[others] - mu_t)
        s = scale / ((Y_rest - mu_s) ** 2).sum()
        truth_nn = set(np.argsort(d[0], kind="stable")[:NEIGHBOURS])
        for name, y in (("stress", placed), ("interp", interp)):
            aligned = s * (y - mu_s) @ R + mu_t
            rows[name].append(100 * float(np.linalg.norm(aligned - Y[i])) / diameter)
            near = np.argsort(np.linalg.norm(Y_rest - y, axis=1), kind="stable")[:NEIGHBOURS]
            rows[f"nn_{name}"].append(len(truth_nn & set(near)))
        full_near = np.argsort(np.linalg.norm(Y[others] - Y[i], axis=1), kind="stable")
        rows["nn_full"].append(len(truth_nn & set(full_near[:NEIGHBOURS])))
    return {
        "networks": len(D),
        "left_out": len(chosen),
        "median_displacement_pct": float(np.median(rows["stress"])),
        "median_displacement_interp_pct": float(np.median(rows["interp"])),
        "p90_displacement_pct": float(np.percentile(rows["stress"], 90)),
        "median_nn_overlap_placed": float(np.median(rows["nn_stress"])),
        "median_nn_overlap_interp": float(np.median(rows["nn_interp"])),
        "median_nn_overlap_full_map": float(np.median(rows["nn_full"])),
        "mean_nn_overlap_placed": float(np.mean(rows["nn_stress"])),
        "mean_nn_overlap_full_map": float(np.mean(rows["nn_full"])),
        "median_place_s": float(np.median(rows["seconds"])),
    }


def timing(N: int, n: int, n_full: int) -> dict[str, Any]:
    """Seconds to place 10 networks on an N-network map (their m x N distances from the
    activations, the graph rebuilt from the map's distances, the positions) and to refit.

    The map's N x N distances at n probe points are what this machine can afford; the distances
    of the 10 new networks are also timed alone at ``n_full`` probe points (the only part of
    placement whose cost grows with the probe set)."""
    reps = synthetic_zoo(N + 10, n, seed=1)
    start = time.perf_counter()
    D_all = distance_matrix(
        dict(enumerate(reps)), SETTINGS, memory_budget_bytes=2 * BUDGET, device="cpu"
    ).distances
    matrix_s = time.perf_counter() - start
    print(f"map distances {matrix_s:.1f} s", flush=True)
    D = D_all[:N, :N]
    start, cpu = time.perf_counter(), time.process_time()
    Y = phate_embedding(D, 2, KNN, DECAY, SEED)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    print(f"refit {fit_s:.1f} s ({fit_cpu_s:.1f} s CPU)", flush=True)
    start, cpu = time.perf_counter(), time.process_time()
    d = cross_distances(reps[N:], reps[:N], SETTINGS, memory_budget_bytes=BUDGET, device="cpu")
    cross_s = time.perf_counter() - start
    graph = placement.map_graph(D, Y, KNN, DECAY, SEED)
    placement.place(graph, d)
    place_s, place_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    error = float(np.abs(d - D_all[N:, :N]).max())
    del D_all, D, reps
    full = synthetic_zoo(N + 10, n_full, seed=2)
    start = time.perf_counter()
    cross_distances(full[N:], full[:N], SETTINGS, memory_budget_bytes=BUDGET, device="cpu")
    cross_full_s = time.perf_counter() - start
    return {
        "map_networks": N,
        "probe_points": n,
        "placed": 10,
        "place_s": place_s,
        "place_cpu_s": place_cpu_s,
        "cross_distances_s": cross_s,
        "graph_and_position_s": place_s - cross_s,
        f"cross_distances_at_{n_full}_points_s": cross_full_s,
        f"place_at_{n_full}_points_s": place_s - cross_s + cross_full_s,
        "max_cross_distance_error": error,
        "refit_phate_s": fit_s,
        "refit_phate_cpu_s": fit_cpu_s,
        "full_distance_matrix_s": matrix_s,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result: dict[str, Any] = {}
    if args.distances:
        D = storage.read_distances(args.distances)[0]
        result["zoo"] = leave_one_out(D, args.left_out)
        print("zoo", json.dumps(result["zoo"]), flush=True)
    if args.synthetic:
        start = time.perf_counter()
        reps = synthetic_zoo(args.synthetic, args.points)
        D = distance_matrix(
            dict(enumerate(reps)), SETTINGS, memory_budget_bytes=BUDGET, device="cpu"
        ).distances
        result["synthetic"] = leave_one_out(D, args.left_out)
        result["synthetic"]["seconds"] = time.perf_counter() - start
        print("synthetic", json.dumps(result["synthetic"]), flush=True)
    if args.timing:
        result["timing"] = timing(args.timing, args.timing_points, args.points)
        print("timing", json.dumps(result["timing"]), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
