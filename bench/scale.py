"""Benchmark every analysis stage after training on synthetic zoos of growing size.

Run by hand (not in CI): ``python bench/scale.py --sizes 250 1000``. For each zoo size N it makes
random activations shaped like real ones (no training), then times the library functions each
workflow step calls, in the step's order: distances (operators rebuilt from the activations in
blocks within ``--budget-mb``, and all resident for comparison), the baseline distances the default
run computes (CKA, RSA, Procrustes, the last on at most ``baselines.max_networks`` networks),
features (per network, in a pool of ``--jobs`` processes as parallel feature jobs would run),
Wasserstein, PHATE (every map: diffusion, Wasserstein, each baseline), statistics (informativeness
of the diffusion distance against the baselines, as the stats step computes it) and figures. Each
stage prints its time and the peak RSS of this process during it (worker processes not counted).
The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import threadpoolctl
from distances import _proc_status_mb, _reset_peak_rss_mb

from nnmanifold.analysis import features, stats
from nnmanifold.core.config import validate
from nnmanifold.geometry import embedding, similarity
from nnmanifold.geometry.diffusion import OperatorSettings, normalize, transition_matrix
from nnmanifold.geometry.distances import distance_matrix
from nnmanifold.report import figures_map, figures_stats, style
from nnmanifold.report.vocabulary import BASELINE_NAMES
from nnmanifold.zoo.specs import HYPERPARAMETERS

N_CLASSES = 10
LATENT_DIM = 3
GOAL_S = 180.0  # whole analysis at N = 1,000, n_probe = 200, 2 cores (issue 14)
SETTINGS = OperatorSettings()
#: The features section of the default config (the schema's defaults).
FEATURES = validate({})["features"]
#: The baselines section of the default config: which distances, and Procrustes's cap.
BASELINES = validate({})["baselines"]
GRID = {
    "lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    "depth": [1, 2, 3],
    "width": [32, 64, 128],
    "weight_decay": [0.0, 1e-4],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults are the workflow's defaults (config.schema.yaml)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--points", type=int, default=200, help="probe points n")
    parser.add_argument("--width", type=int, default=64, help="representation width")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--budget-mb", type=int, default=2048, help="streamed distances budget")
    parser.add_argument("--in-memory-cap-mb", type=int, default=4096, help="skip in-memory above")
    parser.add_argument("--n-perm", type=int, default=999)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--skip", nargs="*", default=[], help="stages to leave out")
    parser.add_argument(
        "--baselines", nargs="*", default=BASELINES["distances"], help="baseline distances"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def synthetic_zoo(
    n_models: int, n_points: int, width: int, seed: int
) -> tuple[list[np.ndarray], np.ndarray, pd.DataFrame]:
    """Activations (n_points x width, float32), probe labels and a zoo table with accuracy.

    Each network maps class centres in a 3-D latent space through its own random ReLU layer; a
    network's "quality" (set by its hyperparameters plus noise) scales how far apart the classes
    sit, and its accuracy follows the quality, so the map and the features carry signal.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n_points) % N_CLASSES
    centres = rng.normal(size=(N_CLASSES, LATENT_DIM))
    hyper = pd.DataFrame({k: rng.choice(v, size=n_models) for k, v in GRID.items()})
    hyper.insert(0, "arch", "mlp")
    score = -np.abs(np.log10(hyper["lr"]) + 2) + 0.3 * hyper["depth"] + rng.normal(0, 0.5, n_models)
    quality = 1 / (1 + np.exp(-2 * score.to_numpy()))
    activations = []
    for q in quality:
        Z = 3 * q * centres[y] + rng.normal(size=(n_points, LATENT_DIM))
        X = np.maximum(Z @ rng.normal(size=(LATENT_DIM, width)), 0)
        activations.append((X + 0.05 * rng.normal(size=X.shape)).astype(np.float32))
    table = hyper.assign(
        model_id=[f"m{i:05d}" for i in range(n_models)],
        seed=np.arange(n_models) % 3,
        status="ok",
        test_accuracy=np.clip(0.1 + 0.85 * quality + rng.normal(0, 0.02, n_models), 0, 1),
    )
    return activations, y, table


def measure(name: str, fn: Callable[[], Any], log: dict[str, dict]) -> Any:
    """Run one stage; record its wall time and this process's peak RSS during it."""
    before = _reset_peak_rss_mb()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = _proc_status_mb("VmHWM")
    log[name] = {"s": round(seconds, 2), "peak_rss_mb": round(peak), "rss_growth_mb": peak - before}
    print(f"  {name:<22} {seconds:8.2f} s   peak RSS {peak:7.0f} MB", flush=True)
    return result


def _one_blas_thread() -> None:
    """Feature workers run single-threaded BLAS, as parallel one-thread jobs would."""
    threadpoolctl.threadpool_limits(1)


def _features_of(args: tuple[np.ndarray, np.ndarray]) -> tuple[dict, list[np.ndarray]]:
    """What one feature job does per network: normalise, one-step operator, all features."""
    X, y = args
    return features.compute_features(
        normalize(X, SETTINGS.normalization),
        y,
        transition_matrix(X, SETTINGS),
        t=SETTINGS.t,
        max_points=FEATURES["max_points"],
        h1_threshold=FEATURES["h1_threshold"],
        seed=FEATURES["seed"],
    )


def draw_figures(
    ok: pd.DataFrame,
    topology: pd.DataFrame,
    D: np.ndarray,
    diagrams: list[list[np.ndarray]],
    corr: pd.DataFrame,
    info: pd.DataFrame,
    out: Path,
) -> None:
    """What the figures step draws and saves (PNG + PDF), from in-memory tables."""
    ids = list(ok["model_id"])
    ranked = ok.sort_values("test_accuracy")
    best, worst = ranked.index[-1], ranked.index[0]
    figures = {
        "map_accuracy": lambda: figures_map.map_by(ok, "test_accuracy"),
        "map_features": lambda: figures_map.map_facets(ok, list(features.FEATURE_NAMES)),
        "map_hyperparameters": lambda: figures_map.map_facets(ok, [*HYPERPARAMETERS, "seed"]),
        "features_vs_accuracy": lambda: figures_stats.features_vs_accuracy(ok, corr),
        "distance_heatmap": lambda: figures_map.distance_heatmap(D, ids, ok["test_accuracy"]),
        "persistence": lambda: figures_stats.persistence_diagrams(diagrams[best], diagrams[worst]),
        "informativeness": lambda: figures_stats.informativeness(info),
        "map_topology": lambda: figures_map.map_by(topology, "test_accuracy", title="H1 map"),
        "summary": lambda: figures_stats.summary(ok, D, ids, corr),
    }
    for name, draw in figures.items():
        start = time.perf_counter()
        style.save(draw(), out / f"{name}.png")
        print(f"    {name:<22} {time.perf_counter() - start:6.2f} s", flush=True)


def run_size(n_models: int, args: argparse.Namespace, workdir: Path) -> dict[str, dict]:
    """Every stage on one synthetic zoo of ``n_models`` networks; per-stage figures."""
    log: dict[str, dict] = {}
    activations, y, table = synthetic_zoo(n_models, args.points, args.width, args.seed)
    ids = list(table["model_id"])
    operators_mb = n_models * args.points**2 * 8 / 2**20
    print(f"N = {n_models}: {operators_mb:.0f} MB of float64 operators", flush=True)
    reps = dict(zip(ids, activations, strict=True))
    budget = args.budget_mb * 2**20
    D = measure(
        "distances_streamed",
        lambda: distance_matrix(reps, SETTINGS, memory_budget_bytes=budget, device="cpu").distances,
        log,
    )
    if "distances_in_memory" in args.skip or 2 * operators_mb > args.in_memory_cap_mb:
        print(f"  distances_in_memory    skipped (needs ~{2 * operators_mb:.0f} MB)")
    else:
        resident = int(3 * operators_mb * 2**20)
        D_mem = measure(
            "distances_in_memory",
            lambda: (
                distance_matrix(
                    reps, SETTINGS, memory_budget_bytes=resident, device="cpu"
                ).distances
            ),
            log,
        )
        log["distances_in_memory"]["max_rel_diff"] = float(np.max(np.abs(D_mem - D) / (D + 1e-300)))
    baselines = {
        kind: measure(
            f"baseline_{kind}",
            lambda kind=kind: similarity.distance_matrix(
                activations,
                kind,
                SETTINGS.normalization,
                budget,
                max_networks=BASELINES["max_networks"],
            ),
            log,
        )
        for kind in args.baselines
    }
    with ProcessPoolExecutor(args.jobs, initializer=_one_blas_thread) as pool:
        work = [(X, y) for X in activations]
        results = measure("features", lambda: list(pool.map(_features_of, work, chunksize=8)), log)
    feats = pd.DataFrame([values for values, _ in results])
    diagrams = [dgms for _, dgms in results]
    h1_sizes = [len(d[1]) for d in diagrams]
    print(f"    H1 diagram sizes: median {np.median(h1_sizes):.0f}, max {max(h1_sizes)}")
    W = measure(
        "wasserstein", lambda: features.persistence_distances(diagrams, 1, n_jobs=args.jobs), log
    )
    coords = measure("phate", lambda: embedding.phate_embedding(D), log)
    coords_w = measure("phate_wasserstein", lambda: embedding.phate_embedding(W), log)
    for kind, result in baselines.items():
        measure(f"phate_{kind}", lambda D=result.distances: embedding.phate_embedding(D), log)
    others = {}
    for kind, result in baselines.items():  # as the stats step aligns a (sub)set with D
        keep = np.isin(np.arange(n_models), result.networks)
        others[BASELINE_NAMES[kind]] = (result.distances, keep)
    accuracy = table["test_accuracy"].to_numpy()
    hyper = table[[c for c in HYPERPARAMETERS if c in table]]
    corr = measure(
        "stats_correlations",
        lambda: stats.feature_correlations(feats, accuracy, args.n_boot, seed=0),
        log,
    )
    info = measure(
        "stats_informativeness",
        lambda: stats.map_informativeness(
            D, accuracy, feats, hyper, n_perm=args.n_perm, others=others
        ),
        log,
    )
    if "figures" in args.skip:
        print("  figures                skipped (--skip)")
    else:
        ok = pd.concat([table, feats], axis=1).assign(phate_1=coords[:, 0], phate_2=coords[:, 1])
        topology = table.assign(phate_1=coords_w[:, 0], phate_2=coords_w[:, 1])
        out = workdir / f"figures-{n_models}"
        measure("figures", lambda: draw_figures(ok, topology, D, diagrams, corr, info, out), log)
    total = sum(stage["s"] for name, stage in log.items() if name != "distances_in_memory")
    print(f"  {'total (pipeline path)':<22} {total:8.2f} s", flush=True)
    log["total"] = {"s": round(total, 2)}
    return log


def main(argv: list[str] | None = None) -> None:
    """Run the stages for each size and print a table, the last line as JSON."""
    args = parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for n_models in args.sizes:
            results[str(n_models)] = run_size(n_models, args, Path(workdir))
    stages = list(dict.fromkeys(name for log in results.values() for name in log))
    print(f"\n{'stage':<22}" + "".join(f"{'N=' + n:>12}" for n in results))
    for stage in stages:
        cells = [results[n].get(stage, {}).get("s") for n in results]
        print(f"{stage:<22}" + "".join(f"{'-' if c is None else c:>12}" for c in cells))
    if "1000" in results:
        print(f"goal at N = 1000: {GOAL_S:.0f} s, measured {results['1000']['total']['s']:.0f} s")
    print(json.dumps({"jobs": args.jobs, "points": args.points, "sizes": results}))


if __name__ == "__main__":
    main()
