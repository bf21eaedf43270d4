"""Benchmark guided search against TPE and random search on a fully trained grid (table mode).

The grid is the oracle: a proposal snaps to the nearest grid configuration not yet evaluated, and
its validation and test accuracies are looked up, so repeats are cheap and exact. Every method
starts from the same initial zoo (drawn per repeat, counted in its budget) and proposes in rounds of
``--per-round``; the guided sampler's map is PHATE on the grid's diffusion distances restricted to
the evaluated models (``--map mds``: classical MDS, a cheaper stand-in). Selection is by validation
accuracy; the test accuracy of the chosen model is reported beside it.

Run by hand (not in CI), after the grid has been trained through the workflow::

    PYTHONPATH=workflow .venv/bin/python bench/search.py --results /tmp/searchgrid/results

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna

from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import SearchBenchmarkSettings
from nnmanifold.report import figures_search, style
from nnmanifold.search import benchmark as bench


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="results folder of the trained grid")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--initial", type=int, default=10, help="initial zoo, in every budget")
    parser.add_argument("--budget", type=int, default=40, help="trained models per method")
    parser.add_argument("--per-round", type=int, default=5, help="proposals per map")
    parser.add_argument("--map", choices=("phate", "mds"), default="phate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/search_out", help="figure and table folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = SearchBenchmarkSettings(
        args.repeats, args.initial, args.budget, args.per_round, args.map, args.seed
    )
    layout = Layout(args.results)
    batches = [p.stem for p in sorted((layout.root / "train").glob("*.json"))]
    configs, val, test, D = bench.load_grid(layout, batches)
    print(f"grid: {len(configs)} models, best val {val.max():.4f}")
    table, best, picked, target = bench.benchmark(configs, val, test, D, settings, print)
    frame = bench.table_frame(table)
    print(f"\nbudget {args.budget} ({args.initial} initial), {args.repeats} repeats, mean, 95% CI")
    print(frame.to_string(index=False))
    out = Path(args.out)
    style.save(
        figures_search.search_curves(best, picked, target, args.initial), out / "search_curves.png"
    )
    result = {
        "grid_models": len(configs),
        "p95_val": round(target, 4),
        **vars(args),
        "methods": table,
    }
    (out / "search_table.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
