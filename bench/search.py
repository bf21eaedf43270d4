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
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from nnmanifold import search, storage
from nnmanifold.embedding import phate_embedding
from nnmanifold.paths import Layout
from nnmanifold.zoo import HYPERPARAMETERS

METHODS = ("guided", "tpe", "random")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="results folder of the trained grid")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--initial", type=int, default=10, help="initial zoo, in every budget")
    parser.add_argument("--budget", type=int, default=40, help="trained models per method")
    parser.add_argument("--per-round", type=int, default=5, help="proposals per map")
    parser.add_argument("--map", choices=("phate", "mds"), default="phate")
    parser.add_argument("--out", default="bench/search_out", help="figure and table folder")
    return parser.parse_args(argv)


def load_grid(results: Path) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, np.ndarray]:
    """(configurations, validation accuracy, test accuracy, distances) of the grid's models.

    Models missing from the distance matrix (excluded: diverged or failed) score 0 and sit far
    from everyone, so a search that proposes them pays a trained model for nothing.
    """
    layout = Layout(results)
    D_ok, ids_ok, _ = storage.read_distances(layout.distances)
    configs, val, test, ids = [], [], [], []
    for manifest in sorted((Path(results) / "train").glob("*.json")):
        for entry in storage.read_json(manifest):
            spec = storage.read_json(layout.model_dir(entry["model_id"]) / "metrics.json")["spec"]
            configs.append({k: spec[k] for k in HYPERPARAMETERS if k in spec})
            val.append(_score(entry.get("val_accuracy")))
            test.append(_score(entry.get("test_accuracy")))
            ids.append(entry["model_id"])
    at = {m: i for i, m in enumerate(ids_ok)}
    far = 2 * float(D_ok.max())
    D = np.full((len(ids), len(ids)), far)
    placed = [i for i, m in enumerate(ids) if m in at]
    rows = [at[ids[i]] for i in placed]
    D[np.ix_(placed, placed)] = D_ok[np.ix_(rows, rows)]
    np.fill_diagonal(D, 0.0)
    return configs, np.array(val), np.array(test), D


def _score(value: float | None) -> float:
    return 0.0 if value is None or not math.isfinite(value) else float(value)


def grid_space(configs: Sequence[dict[str, Any]]) -> dict[str, BaseDistribution]:
    """The search space spanned by the grid's hyperparameters held by every configuration."""
    keys = [k for k in configs[0] if all(k in c for c in configs)]
    space = {k: sorted({c[k] for c in configs}, key=str) for k in keys}
    return search.search_space(space)[0]


def snap(
    proposal: dict[str, Any],
    configs: Sequence[dict[str, Any]],
    taken: np.ndarray,
    distributions: dict[str, BaseDistribution],
) -> int:
    """Index of the nearest grid configuration not yet taken.

    Numeric axes count on their natural scale (log where searched on log) as a share of their
    range; a categorical mismatch counts 1. Ties go to the first in grid order.
    """
    cost = np.zeros(len(configs))
    for key, dist in distributions.items():
        column = [c[key] for c in configs]
        if isinstance(dist, CategoricalDistribution):
            cost += np.array([v != proposal[key] for v in column], float)
            continue
        scale = np.log if dist.log else np.asarray
        low, high = float(scale(float(dist.low))), float(scale(float(dist.high)))
        values = scale(np.array(column, float))
        cost += np.abs(values - float(scale(float(proposal[key])))) / (high - low)
    cost[taken] = np.inf
    return int(np.argmin(cost))


def run_search(
    sampler: optuna.samplers.BaseSampler,
    configs: Sequence[dict[str, Any]],
    val: np.ndarray,
    initial: np.ndarray,
    budget: int,
    per_round: int,
    distributions: dict[str, BaseDistribution],
) -> list[int]:
    """Grid indices evaluated in order: the initial zoo, then rounds of snapped proposals."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    taken = np.zeros(len(configs), bool)
    order: list[int] = []

    def record(i: int) -> None:
        taken[i] = True
        order.append(i)
        params = {k: configs[i][k] for k in distributions}
        study.add_trial(create_trial(params=params, distributions=distributions, value=val[i]))

    for i in initial:
        record(int(i))
    while len(order) < budget:
        chosen = []
        for _ in range(min(per_round, budget - len(order))):
            trial = study.ask(distributions)
            i = snap(trial.params, configs, taken, distributions)
            study.tell(trial, state=TrialState.FAIL)  # recorded as the snapped configuration
            taken[i] = True
            chosen.append(i)
        for i in chosen:
            record(i)
    return order


def grid_map(
    configs: Sequence[dict[str, Any]], D: np.ndarray, keys: Sequence[str], kind: str, seed: int
) -> Callable[[Sequence[FrozenTrial]], np.ndarray]:
    """Map coordinates of evaluated trials: PHATE (or classical MDS) on their grid distances."""
    index = {_key({k: c[k] for k in keys}): i for i, c in enumerate(configs)}

    def map_of(trials: Sequence[FrozenTrial]) -> np.ndarray:
        rows = [index[_key(t.params)] for t in trials]
        sub = D[np.ix_(rows, rows)]
        if kind == "phate":
            return phate_embedding(sub, seed=seed)
        return classical_mds(sub)

    return map_of


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def classical_mds(D: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS: the top eigenvectors of the double-centred squared distances."""
    n = len(D)
    J = np.eye(n) - 1.0 / n
    B = -0.5 * J @ (D**2) @ J
    w, v = np.linalg.eigh(B)
    top = np.argsort(w)[::-1][:n_components]
    return v[:, top] * np.sqrt(np.maximum(w[top], 0))


def sampler_for(method: str, distributions, map_of, seed: int) -> optuna.samplers.BaseSampler:
    if method == "guided":
        return search.GuidedSampler(distributions, map_of, seed=seed)
    if method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def curves(order: Sequence[int], val: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, ...]:
    """Best-so-far validation accuracy and the test accuracy of the model it picks, per model."""
    v = val[list(order)]
    best = np.maximum.accumulate(v)
    pick = np.array([int(np.argmax(v[: n + 1])) for n in range(len(v))])
    return best, test[list(order)][pick]


def mean_ci(x: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of its 95 % t interval over repeats (axis 0)."""
    from scipy import stats

    n = len(x)
    half = stats.t.ppf(0.975, n - 1) * np.std(x, ddof=1, axis=0) / np.sqrt(n)
    return np.mean(x, axis=0), half


def summarise(best: np.ndarray, picked: np.ndarray, target: float) -> dict[str, Any]:
    """Final best, AUC (mean best-so-far), test of the chosen model, models to reach target."""
    budget = best.shape[1]
    reached = np.where(best[:, -1] >= target, np.argmax(best >= target, axis=1) + 1, budget + 1)
    row = {}
    for name, x in (
        ("final_best_val", best[:, -1]),
        ("auc_val", best.mean(1)),
        ("test_of_chosen", picked[:, -1]),
    ):
        mean, half = mean_ci(x)
        row[name] = [round(float(mean), 4), round(float(half), 4)]
    row["reached_p95"] = f"{int(np.sum(reached <= budget))}/{len(reached)}"
    row["to_p95"] = float(np.median(reached))
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    configs, val, test, D = load_grid(Path(args.results))
    distributions = grid_space(configs)
    target = float(np.percentile(val, 95))
    print(f"grid: {len(configs)} models, best val {val.max():.4f}, 95th percentile {target:.4f}")
    print(f"space: {distributions}")
    best, picked = {m: [] for m in METHODS}, {m: [] for m in METHODS}
    for r in range(args.repeats):
        initial = np.random.default_rng(1000 + r).choice(len(configs), args.initial, replace=False)
        for method in METHODS:
            map_of = grid_map(configs, D, list(distributions), args.map, seed=r)
            sampler = sampler_for(method, distributions, map_of, seed=r)
            order = run_search(
                sampler, configs, val, initial, args.budget, args.per_round, distributions
            )
            b, p = curves(order, val, test)
            best[method].append(b)
            picked[method].append(p)
        print(f"repeat {r}: " + ", ".join(f"{m} {best[m][-1][-1]:.4f}" for m in METHODS))
    table = {m: summarise(np.array(best[m]), np.array(picked[m]), target) for m in METHODS}
    for m in ("tpe", "random"):  # repeats share their initial zoo: compare them pairwise
        diff = np.array(best["guided"])[:, -1] - np.array(best[m])[:, -1]
        mean, half = mean_ci(diff)
        table["guided"][f"final_minus_{m}"] = [round(float(mean), 4), round(float(half), 4)]
    print(
        f"\nbudget {args.budget} models ({args.initial} initial), {args.repeats} repeats, "
        f"mean ± 95% CI half-width; models to p95: median, unreached counted as budget + 1"
    )
    print("| method | final best val | AUC (val) | test of chosen | reached p95 | models to p95 |")
    print("|---|---|---|---|---|---|")
    for m, row in table.items():
        cells = [
            f"{v[0]:.4f} ± {v[1]:.4f}"
            for v in (row["final_best_val"], row["auc_val"], row["test_of_chosen"])
        ]
        print(f"| {m} | " + " | ".join(cells) + f" | {row['reached_p95']} | {row['to_p95']} |")
    for m in ("tpe", "random"):
        mean, half = table["guided"][f"final_minus_{m}"]
        print(f"guided - {m}, final best val, paired: {mean:+.4f} ± {half:.4f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _figure(best, picked, target, args, out / "search_curves.png")
    result = {
        "grid_models": len(configs),
        "p95_val": round(target, 4),
        "map": args.map,
        "budget": args.budget,
        "initial": args.initial,
        "per_round": args.per_round,
        "repeats": args.repeats,
        "methods": table,
    }
    (out / "search_table.json").write_text(json.dumps(result, indent=2))
    return result


def _figure(best, picked, target, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    n = np.arange(1, args.budget + 1)
    for m in METHODS:
        for ax, data in zip(axes, (best[m], picked[m]), strict=True):
            mean, half = mean_ci(np.array(data))
            ax.plot(n, mean, label=m)
            ax.fill_between(n, mean - half, mean + half, alpha=0.2)
    axes[0].axhline(target, color="grey", ls=":", label="grid 95th percentile")
    axes[0].set(xlabel="trained models", ylabel="best validation accuracy so far")
    axes[1].set(xlabel="trained models", ylabel="test accuracy of the chosen model")
    for ax in axes:
        ax.axvline(args.initial, color="grey", lw=0.5)
    axes[0].legend()
    fig.suptitle(f"table mode, {args.repeats} repeats, mean and 95 % CI ({args.map} map)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    print(json.dumps(main()))
