"""Table-mode search benchmark: guided search, Optuna TPE and random search on a fully trained zoo.

The zoo is the oracle: a proposal snaps to the nearest configuration not yet evaluated and its
validation and test accuracies are looked up, so repeats are cheap and exact. Every method starts
from the same initial models (drawn per repeat, counted in its budget) and proposes in rounds; the
guided sampler's map is PHATE (or classical MDS) on the zoo's diffusion distances restricted to the
evaluated models. Selection is by validation accuracy; the chosen model's test accuracy is reported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from nnmanifold.core import storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import SearchBenchmarkSettings
from nnmanifold.geometry.embedding import phate_embedding
from nnmanifold.search import sampler as search
from nnmanifold.zoo.specs import HYPERPARAMETERS


def load_grid(
    layout: Layout, batches: Sequence[str]
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, np.ndarray]:
    """(configurations, validation accuracy, test accuracy, distances) of a trained zoo's models.

    Models missing from the distance matrix (excluded: diverged or failed) score 0 and sit far
    from everyone, so a search that proposes them pays a trained model for nothing.
    """
    D_ok, ids_ok, _ = storage.read_distances(layout.distances)
    configs, val, test, ids = [], [], [], []
    for batch in batches:
        for entry in storage.read_json(layout.train_manifest(batch)):
            spec = storage.read_json(layout.metrics(entry["model_id"]))["spec"]
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


def benchmark(
    configs: Sequence[dict[str, Any]],
    val: np.ndarray,
    test: np.ndarray,
    D: np.ndarray,
    settings: SearchBenchmarkSettings,
    progress: Callable[[str], None] = lambda line: None,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """Every method from the same initial zoos, ``settings.repeats`` times: the summary table
    per method, the best-so-far curves and chosen models' test accuracies (repeats x budget),
    and the grid's 95th-percentile validation accuracy (the target)."""
    if settings.budget > len(configs) or settings.initial >= settings.budget:
        raise UserError(
            f"search_benchmark: initial {settings.initial} < budget {settings.budget} <= the "
            f"{len(configs)} trained models is needed; lower search_benchmark.budget"
        )
    distributions = grid_space(configs)
    target = float(np.percentile(val, 95))
    best, picked = {m: [] for m in search.METHODS}, {m: [] for m in search.METHODS}
    for r in range(settings.repeats):
        rng = np.random.default_rng(settings.seed + 1000 + r)
        initial = rng.choice(len(configs), settings.initial, replace=False)
        for method in search.METHODS:
            map_of = grid_map(configs, D, list(distributions), settings.map, seed=r)
            sampler = search.sampler_for(method, distributions, map_of, settings.seed + r)
            order = run_search(
                sampler, configs, val, initial, settings.budget, settings.per_round, distributions
            )
            b, p = curves(order, val, test)
            best[method].append(b)
            picked[method].append(p)
        progress(f"repeat {r}: " + ", ".join(f"{m} {best[m][-1][-1]:.4f}" for m in best))
    best = {m: np.array(v) for m, v in best.items()}
    picked = {m: np.array(v) for m, v in picked.items()}
    table = {m: summarise(best[m], picked[m], target) for m in best}
    for m in ("tpe", "random"):  # repeats share their initial zoo: compare them pairwise
        mean, half = mean_ci(best["guided"][:, -1] - best[m][:, -1])
        table["guided"][f"final_minus_{m}"] = [round(float(mean), 4), round(float(half), 4)]
    return table, best, picked, target


def table_frame(table: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The summary as rows (one per method): mean and 95 % CI half-width of each figure."""
    rows = []
    for method, row in table.items():
        out = {"method": method}
        for key in (
            "final_best_val",
            "auc_val",
            "test_of_chosen",
            "final_minus_tpe",
            "final_minus_random",
        ):
            if key in row:
                out[key], out[f"{key}_ci95"] = row[key]
        out.update(reached_p95=row["reached_p95"], models_to_p95=row["to_p95"])
        rows.append(out)
    return pd.DataFrame(rows)
