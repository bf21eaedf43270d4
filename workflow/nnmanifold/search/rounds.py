"""Search rounds: turn a map of trained models into the next round's new model specs.

Round 0 is the initial zoo; round k (1, 2, ...) is ``per_round`` new models proposed from the
models of the rounds before it, by the guided sampler (the map) or by Optuna's TPE or random
search on the same space. A proposal whose spec maps to a model id already trained (or already in
the round) is replaced, so no model is trained twice. The workflow records each round once and
never redraws it (``steps.search_round``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState, create_trial

from nnmanifold.core.errors import UserError
from nnmanifold.search import sampler as search

#: Proposes ``n`` configurations (searched keys only) on attempt ``attempt`` (0, 1, ...).
Draw = Callable[[int, int], list[dict[str, Any]]]


def round_seed(seed: int, k: int, attempt: int = 0) -> int:
    """A seed for round ``k`` of the search seeded ``seed`` (distinct for every triple)."""
    return int(np.random.SeedSequence([seed, k, attempt]).generate_state(1)[0])


def configuration(spec: Mapping[str, Any], space: Mapping[str, Any]) -> dict[str, Any]:
    """A trained model's value on every axis of ``zoo.space``.

    A spec leaves out what its model does not use (momentum with Adam, channels of an MLP); such
    an axis takes its first listed value (the low end of a range), which the model ignores.
    """
    return {
        key: spec[key] if key in spec else (axis["low"] if isinstance(axis, Mapping) else axis[0])
        for key, axis in space.items()
    }


def new_specs(
    draw: Draw,
    to_spec: Callable[[dict[str, Any]], dict[str, Any]],
    taken: set[str],
    per_round: int,
    max_attempts: int = 20,
) -> list[dict[str, Any]]:
    """``per_round`` specs whose model ids are new: not in ``taken`` and not repeated.

    A proposal identical to a trained model (same id) is dropped and drawn again on the next
    attempt, until the round is full.
    """
    ids = set(taken)
    specs: list[dict[str, Any]] = []
    for attempt in range(max_attempts):
        proposed = (to_spec(c) for c in draw(per_round - len(specs), attempt))
        specs += search.unique(proposed, lambda s: s["model_id"], ids, per_round - len(specs))
        if len(specs) == per_round:
            return specs
    raise UserError(
        f"search found only {len(specs)} of search.per_round = {per_round} untrained models in "
        f"{max_attempts} attempts; the space is nearly exhausted: lower search.per_round or "
        "widen zoo.space"
    )


def guided_draw(
    coords: np.ndarray,
    accuracy: np.ndarray,
    configs: Sequence[Mapping[str, Any]],
    distributions: Mapping[str, BaseDistribution],
    seed: int,
    k: int,
) -> Draw:
    """Proposals from the map (``search.propose_round``), reseeded on every attempt."""

    def draw(n: int, attempt: int) -> list[dict[str, Any]]:
        return search.propose_round(
            coords, accuracy, configs, distributions, n, round_seed(seed, k, attempt)
        )

    return draw


def optuna_draw(
    method: str,
    configs: Sequence[Mapping[str, Any]],
    accuracy: np.ndarray,
    distributions: Mapping[str, BaseDistribution],
    seed: int,
    k: int,
) -> Draw:
    """Proposals of Optuna's TPE or random sampler told the trained models' accuracies."""
    sampler = search.sampler_for(method, distributions, None, round_seed(seed, k))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = dict(distributions)
    for config, value in zip(configs, accuracy, strict=True):
        params = {key: config[key] for key in dists}
        study.add_trial(create_trial(params=params, distributions=dists, value=float(value)))

    def draw(n: int, attempt: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            trial = study.ask(dists)
            study.tell(trial, state=TrialState.FAIL)  # its model is trained by the workflow
            out.append(trial.params)
        return out

    return draw


def progress(models: pd.DataFrame) -> pd.DataFrame:
    """Best-so-far per round, selected by validation accuracy, test accuracy beside.

    ``models`` has one row per model: ``round``, ``model_id``, ``val_accuracy``,
    ``test_accuracy`` (NaN for a model that failed). Returns one row per round: models added,
    the round's best validation accuracy, and the best so far with its model and test accuracy.
    """
    rows = []
    best: pd.Series | None = None
    for k, group in models.groupby("round", sort=True):
        scored = group.dropna(subset=["val_accuracy"])
        top = scored.loc[scored["val_accuracy"].idxmax()] if len(scored) else None
        if top is not None and (best is None or top["val_accuracy"] > best["val_accuracy"]):
            best = top
        rows.append(
            {
                "round": int(k),
                "n_models": len(group),
                "n_scored": len(scored),
                "round_best_val_accuracy": np.nan if top is None else top["val_accuracy"],
                "best_val_accuracy": np.nan if best is None else best["val_accuracy"],
                "best_test_accuracy": np.nan if best is None else best["test_accuracy"],
                "best_model_id": None if best is None else best["model_id"],
            }
        )
    return pd.DataFrame(rows)
