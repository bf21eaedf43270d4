"""Benchmark the Wasserstein map at scale: full, incremental, and the bounded subset's error.

Run by hand (not in CI): ``python bench/wasserstein.py``. Synthetic H1 diagrams with structure
(families of diagrams and a continuous scale, like a zoo's), so that the map has something to
show. Prints (1) the CPU seconds of the full N x N matrix and of adding ``--added`` models to
it from the cache, with the pairs each evaluated, and the largest difference between the two
results; (2) the map of the ``--cap`` models :func:`covered` keeps against the exact map of all
N restricted to them (Procrustes disparity of the PHATE coordinates, and the share of each
model's 10 nearest map neighbours that both maps agree on), next to the same figures for the
exact map of the N models against the exact map after ``--added`` more joined (how much any
map moves when the zoo changes). The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def parse_args() -> argparse.Namespace:
    """Command-line options; defaults are the figures quoted in bench/README.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000, help="zoo size N")
    parser.add_argument("--added", type=int, default=10, help="models added to the cached N")
    parser.add_argument("--cap", type=int, default=500, help="max_networks for the subset map")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def synthetic_diagrams(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """H1 diagrams of 5-40 bars: one of four families' bars, scaled, jittered, plus noise bars."""
    families = [rng.uniform(0.3, 1.0, (int(rng.integers(5, 25)), 1)) for _ in range(4)]
    out = []
    for _ in range(n):
        base = families[rng.integers(len(families))]
        scale = rng.uniform(0.5, 2.0)
        birth = base[:, 0] + rng.normal(0, 0.02, len(base))
        life = scale * 0.1 * (1 + base[:, 0]) + rng.exponential(0.01, len(base))
        noise_birth = rng.uniform(0.3, 1.0, int(rng.integers(0, 15)))
        bars = np.r_[birth, noise_birth]
        lives = np.r_[life, rng.exponential(0.02, len(noise_birth))]
        out.append(np.column_stack([bars, bars + lives]))
    return out


def map_agreement(a: np.ndarray, b: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Procrustes disparity of two 2-D maps of the same models, and their mean k-NN overlap."""
    from scipy.spatial import procrustes
    from scipy.spatial.distance import cdist

    _, _, disparity = procrustes(a, b)
    near_a = np.argsort(cdist(a, a), axis=1)[:, 1 : k + 1]
    near_b = np.argsort(cdist(b, b), axis=1)[:, 1 : k + 1]
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(near_a, near_b, strict=True)])
    return float(disparity), float(overlap)


def main() -> None:
    """Time the full and the incremental matrix, then compare the subset map with the exact one."""
    args = parse_args()
    from nnmanifold.geometry.embedding import phate_embedding
    from nnmanifold.geometry.wasserstein import covered, incremental_matrix

    rng = np.random.default_rng(args.seed)
    n = args.models
    diagrams = synthetic_diagrams(n + args.added, rng)
    ids = [f"model{k}" for k in range(n + args.added)]
    digests = [f"d{k}" for k in range(n + args.added)]
    figures: dict[str, float] = {}

    start = time.process_time()
    W, pairs = incremental_matrix(ids[:n], digests[:n], diagrams[:n], n_jobs=args.jobs)
    figures["full_cpu_s"], figures["full_pairs"] = time.process_time() - start, pairs
    print(f"full N={n}: {pairs} pairs, {figures['full_cpu_s']:.2f} s cpu", flush=True)

    start = time.process_time()
    grown, pairs = incremental_matrix(
        ids, digests, diagrams, (W, ids[:n], digests[:n]), n_jobs=args.jobs
    )
    figures["added_cpu_s"], figures["added_pairs"] = time.process_time() - start, pairs
    print(f"+{args.added} from the cache: {pairs} pairs, {figures['added_cpu_s']:.2f} s cpu")
    reference, _ = incremental_matrix(ids, digests, diagrams, n_jobs=args.jobs)
    figures["added_max_abs_diff"] = float(np.abs(grown - reference).max())
    print(f"  max |incremental - full recomputation| = {figures['added_max_abs_diff']:.3g}")

    keep = covered(ids[:n], args.cap)
    exact = phate_embedding(W, 2, 5, 40, args.seed)
    grown_map = phate_embedding(grown, 2, 5, 40, args.seed)
    subset = phate_embedding(W[np.ix_(keep, keep)], 2, 5, 40, args.seed)
    figures["subset_disparity"], figures["subset_knn_overlap"] = map_agreement(exact[keep], subset)
    figures["grown_disparity"], figures["grown_knn_overlap"] = map_agreement(exact, grown_map[:n])
    print(
        f"map of {len(keep)} of {n} vs the exact map: disparity {figures['subset_disparity']:.3f}, "
        f"10-NN overlap {figures['subset_knn_overlap']:.2f} (exact map before and after "
        f"+{args.added}: {figures['grown_disparity']:.3f}, {figures['grown_knn_overlap']:.2f})"
    )
    print(json.dumps({k: float(f"{v:.4g}") for k, v in figures.items()}))


if __name__ == "__main__":
    main()
