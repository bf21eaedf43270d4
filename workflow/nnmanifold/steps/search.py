"""Search steps: a new round, the search report and the search benchmark."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from nnmanifold.core import jobs, storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import (
    EmbeddingSettings,
    GeometrySettings,
    SearchBenchmarkSettings,
    SearchSettings,
)

log = logging.getLogger("nnmanifold")


def search_round(
    layout: Layout,
    k: int,
    batches: Sequence[str],
    settings: SearchSettings,
    zoo_config: dict[str, Any],
    geometry: GeometrySettings,
    embedding: EmbeddingSettings,
    models_per_job: int,
) -> None:
    """Record search round ``k``: ``per_round`` new models proposed from the models of the
    earlier rounds (``batches``), and their training jobs.

    A recorded round is frozen: if its file exists it is kept as it is (a later change of sigma
    or of the map never redraws it); only its job assignment is written again.
    """
    from nnmanifold.zoo import specs as zoo_lib

    path = layout.search_round(settings.name, k)
    if path.exists():
        log.info("search %s round %d is recorded (%s): kept", settings.name, k, path)
    else:
        specs = _draw_round(layout, k, batches, settings, zoo_config, geometry, embedding)
        storage.write_json(path, {"round": k, "search": settings.identity(), "specs": specs})
        log.info("search %s round %d: %d new models recorded", settings.name, k, len(specs))
    jobs = zoo_lib.batches(storage.read_json(path)["specs"], models_per_job, prefix=f"r{k}b")
    storage.write_json(layout.search_batches(settings.name, k), jobs)


def search_benchmark(
    layout: Layout, batches: Sequence[str], settings: SearchBenchmarkSettings
) -> None:
    """Guided search vs TPE vs random search at an equal budget on the trained zoo (table mode):
    the table (final best, AUC, test of the chosen model, models to the 95th percentile, 95 % CIs
    over repeats) and the best-so-far curves."""
    import optuna

    from nnmanifold.report import figures_search, style
    from nnmanifold.search import benchmark as bench

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    configs, val, test, D = bench.load_grid(layout, batches)
    table, best, picked, target = bench.benchmark(configs, val, test, D, settings, log.info)
    storage.write_csv(layout.search_benchmark("table.csv"), bench.table_frame(table))
    figure = figures_search.search_curves(best, picked, target, settings.initial)
    style.save(figure, layout.search_benchmark("curves.png"))


def search_report(
    layout: Layout,
    batches: Sequence[str],
    settings: SearchSettings,
    geometry: GeometrySettings,
    embedding: EmbeddingSettings,
) -> None:
    """The search's progress (best-so-far by validation accuracy, per round, test accuracy
    beside) and where each round's models fall on the map of all of them."""
    import pandas as pd

    from nnmanifold.report import figures_map, figures_search, style
    from nnmanifold.search import rounds

    table = storage.read_manifests([layout.train_manifest(b) for b in batches])
    round_of = {
        s["model_id"]: k
        for k, specs in enumerate(jobs.recorded_rounds(layout, settings.name)[: settings.rounds], 1)
        for s in specs
    }
    table = table[["model_id", "status", "val_accuracy", "test_accuracy"]].assign(
        round=[round_of.get(m, 0) for m in table["model_id"]]
    )
    ok = table[table["status"] == "ok"]
    coords = _search_map(layout, list(ok["model_id"]), geometry, embedding)
    axes = [f"phate_{i + 1}" for i in range(coords.shape[1])]
    placed = pd.DataFrame(coords, columns=axes).assign(model_id=list(ok["model_id"]))
    models = table.merge(placed, on="model_id", how="left")
    progress = rounds.progress(models)
    storage.write_csv(layout.search_table(settings.name, "models"), models)
    storage.write_csv(layout.search_table(settings.name, "progress"), progress)
    log.info("search %s:\n%s", settings.name, progress.to_string(index=False))
    labelled = models.assign(round=[f"round {k}" for k in models["round"]])
    style.save(
        figures_search.search_progress(progress), layout.search_figure(settings.name, "progress")
    )
    style.save(
        figures_map.map_by(labelled.dropna(subset=axes), "round", title="search rounds on the map"),
        layout.search_figure(settings.name, "map"),
    )


def _draw_round(
    layout: Layout,
    k: int,
    batches: Sequence[str],
    settings: SearchSettings,
    zoo_config: dict[str, Any],
    geometry: GeometrySettings,
    embedding: EmbeddingSettings,
) -> list[dict[str, Any]]:
    """Round ``k``'s new specs, proposed from the trained models with a validation accuracy."""
    from nnmanifold.core.config import validate
    from nnmanifold.search import rounds
    from nnmanifold.search import sampler as search
    from nnmanifold.zoo import specs as zoo_lib

    config = validate(zoo_config)
    space = config["zoo"]["space"]
    distributions, fixed = search.search_space(space)
    if not distributions:
        raise UserError("zoo.space fixes every hyperparameter: give an axis two values to search")
    table = storage.read_manifests([layout.train_manifest(b) for b in batches])
    scored = table[(table["status"] == "ok") & table["val_accuracy"].notna()]
    ids = list(scored["model_id"])
    configs = [rounds.configuration(_spec(layout, m), space) for m in ids]
    accuracy = scored["val_accuracy"].to_numpy(float)
    if settings.method == "guided":
        coords = _search_map(layout, ids, geometry, embedding)
        draw = rounds.guided_draw(coords, accuracy, configs, distributions, settings.seed, k)
    else:
        draw = rounds.optuna_draw(
            settings.method, configs, accuracy, distributions, settings.seed, k
        )
    seed = config["zoo"]["seeds"][0]
    return rounds.new_specs(
        draw,
        lambda c: zoo_lib.spec({**fixed, **c}, seed, config),
        set(table["model_id"]),
        settings.per_round,
    )


def _search_map(
    layout: Layout, ids: Sequence[str], geometry: GeometrySettings, embedding: EmbeddingSettings
) -> np.ndarray:
    """PHATE map of the diffusion distances between ``ids`` (the geometry and embedding
    settings of the run), computed here: the search's maps of earlier rounds are not the run's
    map of the whole zoo."""
    from nnmanifold.geometry import embedding as embedding_lib
    from nnmanifold.geometry.diffusion import diffusion_operator
    from nnmanifold.geometry.distances import pairwise_frobenius

    probe = storage.read_probe(layout.probe)
    operators = np.stack(
        [
            diffusion_operator(
                storage.read_activations(layout.activations(m), geometry.layer, probe["hash"])[0],
                geometry.operator,
            )
            for m in ids
        ]
    )
    D = pairwise_frobenius(operators, device=geometry.device)
    return embedding_lib.phate_embedding(
        D, embedding.n_components, embedding.knn, embedding.decay, embedding.seed
    )


def _spec(layout: Layout, model_id: str) -> dict[str, Any]:
    return storage.read_json(layout.metrics(model_id))["spec"]
