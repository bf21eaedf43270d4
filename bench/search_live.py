"""Live search benchmark: guided, TPE and random search, each run through the workflow
(`snakemake search`) for ``--rounds`` rounds, ``--repeats`` times with different seeds, all from
the same initial zoo (trained once). Reports each method's best validation accuracy after the
last round (test accuracy of the chosen model beside) with a t confidence interval over repeats.

Run by hand (not in CI)::

    PYTHONPATH=workflow .venv/bin/python bench/search_live.py --workdir /tmp/searchlive

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nnmanifold.search.sampler import METHODS

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="folder for the results")
    parser.add_argument("--configfile", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-round", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    return parser.parse_args(argv)


def run_search(args: argparse.Namespace, method: str, seed: int) -> pd.DataFrame:
    """One search through the workflow; its per-round progress table."""
    name = f"{method}-{seed}"
    search = f"{{rounds: {args.rounds}, per_round: {args.per_round}, seed: {seed}, "
    search += f"name: {name}, method: {method}}}"
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "-s",
        str(ROOT / "Snakefile"),
        "search",  # before --config, which takes every word after it
        "--cores",
        str(args.cores),
        "--configfile",
        args.configfile,
        "--config",
        f"search={search}",
    ]
    subprocess.run(cmd, cwd=args.workdir, check=True, capture_output=True)
    return pd.read_csv(Path(args.workdir) / "results" / "search" / name / "progress.csv")


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the t confidence interval of the mean."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * stats.sem(values)
    return mean, mean - float(half), mean + float(half)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    result = {}
    for method in METHODS:
        tables = [run_search(args, method, seed) for seed in range(args.repeats)]
        initial = float(tables[0]["best_val_accuracy"].iloc[0])  # round 0: the shared zoo
        finals = [t.iloc[-1] for t in tables]
        val = np.array([f["best_val_accuracy"] for f in finals])
        test = np.array([f["best_test_accuracy"] for f in finals])
        mean, low, high = interval(val)
        result[method] = {
            "best_val": [round(v, 4) for v in val],
            "best_val_mean": round(mean, 4),
            "best_val_ci95": [round(low, 4), round(high, 4)],
            "test_of_chosen_mean": round(float(test.mean()), 4),
        }
        print(method, result[method], flush=True)
    summary = {"rounds": args.rounds, "per_round": args.per_round, "repeats": args.repeats}
    print(json.dumps({**summary, "initial_best_val": round(initial, 4), **result}))


if __name__ == "__main__":
    main()
