"""Benchmark the representation-similarity distances (CKA, RSA, Procrustes) by zoo size.

Run by hand (not in CI): ``python bench/similarity.py``. Threads are capped at ``--threads``
before NumPy loads. Procrustes runs uncapped (``max_networks=N``) so its full cost is measured,
unless ``--max-networks`` caps it as a run does. ``--widths 8 128`` draws each network's width
log-uniformly, as a random zoo does. Wall and CPU seconds are both printed.
The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def parse_args() -> argparse.Namespace:
    """Command-line options; defaults are the figures quoted in bench/README.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[250, 1000], help="zoo sizes N")
    parser.add_argument("--points", type=int, default=200, help="probe points n")
    parser.add_argument("--width", type=int, default=64, help="representation width")
    parser.add_argument(
        "--widths",
        type=int,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="widths log-uniform in [LOW, HIGH] instead (a random zoo's, e.g. 8 128)",
    )
    parser.add_argument("--max-networks", type=int, help="Procrustes cap (default: N, uncapped)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads")
    parser.add_argument("--budget-mb", type=float, default=1024.0, help="memory budget")
    parser.add_argument(
        "--small-budget-mb", type=float, default=64.0, help="second, blocking budget (CKA, RSA)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    """Time every kind at every zoo size and print the figures, the last line as JSON."""
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    from nnmanifold.geometry.similarity import KINDS, distance_matrix

    rng = np.random.default_rng(args.seed)
    base = rng.normal(size=(args.points, args.width))
    figures: dict[str, float] = {}
    for N in args.models:
        if args.widths:
            low, high = np.log(args.widths)
            widths = np.exp(rng.uniform(low, high, N)).astype(int)
            reps = [np.maximum(rng.normal(size=(args.points, w)), 0) for w in widths]
        else:
            reps = [np.maximum(base + rng.normal(size=base.shape), 0) for _ in range(N)]
        for kind in KINDS:
            budgets = [args.budget_mb]
            if kind != "procrustes":
                budgets.append(args.small_budget_mb)
            for budget_mb in budgets:
                start, cpu = time.perf_counter(), time.process_time()
                cap = args.max_networks or N
                distance_matrix(reps, kind, "l2", int(budget_mb * 2**20), max_networks=cap)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                label = f"{kind}_N{N}_s" + (
                    "" if budget_mb == args.budget_mb else f"_{budget_mb:g}MB"
                )
                figures[label] = seconds
                n = min(N, cap) if kind == "procrustes" else N
                pairs = n * (n - 1) // 2
                figures[f"{kind}_N{N}_cpu_s" + label.split("_s", 1)[1]] = cpu
                print(
                    f"{label}: {seconds:.2f} s ({cpu:.2f} s cpu), "
                    f"{seconds / pairs * 1e6:.1f} us/pair",
                    flush=True,
                )
    print(json.dumps({k: float(f"{v:.4g}") for k, v in figures.items()}))


if __name__ == "__main__":
    main()
