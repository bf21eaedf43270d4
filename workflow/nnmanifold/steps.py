"""One plain function per workflow step: read the step's inputs, call the library, write outputs.

Every path comes from ``paths.Layout``; every setting from ``settings``. The analysis steps
(features, wasserstein, embed, stats, figures, sensitivity) never import torch; only training and
the distance step (CUDA) may.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnmanifold import UserError, storage
from nnmanifold.paths import FEATURE_FILES, FIGURES, TRAIN_FILES, Layout
from nnmanifold.settings import (
    BaselineSettings,
    DataSettings,
    EmbeddingSettings,
    FeatureSettings,
    GeometrySettings,
    SearchBenchmarkSettings,
    SearchSettings,
    SensitivitySettings,
    StatsSettings,
)
from nnmanifold.zoo import HYPERPARAMETERS

log = logging.getLogger("nnmanifold")

#: How the baseline distances are named in the statistics.
BASELINE_NAMES = {"cka": "CKA distance", "rsa": "RSA distance", "procrustes": "Procrustes distance"}
#: The per-job stages whose manifests list per-model files.
STAGES = ("train", "features")
#: What a job manifest records of each model, besides the files it wrote.
MANIFEST_KEYS = ("model_id", "status", "reason", "test_accuracy", "val_accuracy")


def zoo(layout: Layout, config: dict[str, Any], search: str | None = None) -> None:
    """Expand the zoo spec of a config (the parts models depend on) into the zoo table; the
    models of the recorded rounds of the search named ``search`` join it."""
    from nnmanifold import zoo as zoo_lib
    from nnmanifold.config import validate

    specs = zoo_lib.expand(validate(config))
    ids = {s["model_id"] for s in specs}
    for new in recorded_rounds(layout, search) if search else []:
        specs += [s for s in new if s["model_id"] not in ids]
        ids.update(s["model_id"] for s in new)
    storage.write_csv(layout.zoo, zoo_lib.table(specs))
    log.info("zoo of %d models written to %s", len(specs), layout.zoo)


def provenance(layout: Layout, config: dict[str, Any]) -> None:
    """Record the run's validated config, its hash and the library versions."""
    record = {
        "config_hash": storage.content_hash(config),
        "config": config,
        "versions": storage.library_versions(),
    }
    storage.write_json(layout.provenance, record)


def probe(layout: Layout, data: DataSettings, archs: Sequence[str]) -> None:
    """Draw the class-balanced probe set from the test split and store it with its hash."""
    from nnmanifold import data as data_lib

    ds = data_lib.load_dataset(data.loader_config())
    data_lib.check_architectures(ds, archs, data.npz_path or ds.name)
    idx = data_lib.probe_indices(ds.y_test, data.n_probe, data.probe_seed)
    labels, x = ds.y_test[idx], ds.x_test[idx]
    record = {
        "indices": idx,
        "labels": labels,
        "x": x,
        "dataset": ds.name,
        "hash": data_lib.probe_hash(ds.name, idx, labels, x),
        "chance_accuracy": data_lib.chance_accuracy(ds.y_test),
    }
    storage.write_probe(layout.probe, record)
    log.info("probe set of %d points (hash %s) written", len(idx), record["hash"])


def train(
    layout: Layout,
    batch: str,
    specs: list[dict[str, Any]],
    data: DataSettings,
    *,
    accelerator: str = "auto",
    jobs_per_gpu: int = 1,
    threads: int = 1,
) -> None:
    """Train one job's models in this process (same-shaped ones as one vectorised group);
    write the job's manifest at the end."""
    from nnmanifold import gpu

    if accelerator != "cpu":
        if (device := gpu.claim_device(jobs_per_gpu)) is not None:
            log.info("using GPU %s", device)

    # idle OpenMP threads that spin instead of sleeping make tiny-model training on shared
    # cores 10x slower; set before torch starts its thread pool
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from nnmanifold import data as data_lib
    from nnmanifold import train as train_lib

    torch.set_num_threads(threads)
    if len({s["data"]["name"] for s in specs}) != 1:
        raise UserError("one training job trains on one data set")
    ds = data_lib.load_dataset(data.loader_config())
    probe = storage.read_probe(layout.probe)
    trained = train_lib.train_job(specs, ds, probe, layout.root, accelerator=accelerator)
    rows = [_manifest_row(m, layout.model_dir(m["model_id"]), TRAIN_FILES) for m in trained]
    storage.write_json(layout.train_manifest(batch), rows)


def features(
    layout: Layout, batch: str, geometry: GeometrySettings, settings: FeatureSettings
) -> None:
    """Characterise each model of one training job; write features and diagrams (cached)."""
    from tqdm import tqdm

    probe = storage.read_probe(layout.probe)
    rows = []
    for entry in tqdm(storage.read_json(layout.train_manifest(batch)), desc="features"):
        mid = entry["model_id"]
        row = {"model_id": mid, "status": entry["status"]}
        if entry["status"] == "ok":
            row.update(_model_features(layout, mid, probe, geometry, settings))
            row["files"] = [storage.file_record(layout.model_dir(mid) / n) for n in FEATURE_FILES]
        rows.append(row)
    storage.write_json(layout.features_manifest(batch), rows)


def distances(layout: Layout, batches: Sequence[str], geometry: GeometrySettings) -> None:
    """Network distance matrix ||P_i^t - P_j^t||_F over the models that trained ok (cached
    rows); operators are built from the representations on the fly and never stored."""
    from tqdm import tqdm

    from nnmanifold import distances as dist
    from nnmanifold.diffusion import degeneracy_warning

    probe = storage.read_probe(layout.probe)
    ok = _ok_models(layout, batches)
    representations = {
        mid: storage.read_activations(layout.activations(mid), geometry.layer, probe["hash"])[0]
        for mid in tqdm(ok, desc="representations", unit="model", file=sys.stderr)
    }
    attrs = dist.fingerprint(geometry.operator, probe["hash"], geometry.layer_name)
    result = dist.distance_matrix(
        representations,
        geometry.operator,
        memory_budget_bytes=geometry.memory_budget_mb * 2**20,
        cache_path=layout.distance_cache,
        attrs=attrs,
        device=geometry.device,
    )
    for mid, diag in zip(result.model_ids, result.diagnostics, strict=True):
        if message := degeneracy_warning(diag, mid):
            log.warning("%s", message)
    diagnostics = [{"model_id": m, **d} for m, d in zip(ok, result.diagnostics, strict=True)]
    storage.write_csv(layout.kernel_diagnostics, pd.DataFrame(diagnostics))
    log.info("%d x %d distances, %d pairs computed", len(ok), len(ok), result.n_computed)
    attrs = {**attrs, "versions": storage.canonical_json(storage.library_versions())}
    storage.write_distances(layout.distances, result.distances, result.model_ids, attrs)


def baseline(
    layout: Layout,
    batches: Sequence[str],
    kind: str,
    geometry: GeometrySettings,
    settings: BaselineSettings,
) -> None:
    """A standard representation-similarity distance (cka, rsa, procrustes) between the models
    that trained ok, from the same representations and normalisation as the diffusion distance."""
    from nnmanifold import similarity

    probe = storage.read_probe(layout.probe)
    ok = _ok_models(layout, batches, record_excluded=False)
    reps = [
        storage.read_activations(layout.activations(m), geometry.layer, probe["hash"])[0]
        for m in ok
    ]
    result = similarity.distance_matrix(
        reps,
        kind,
        geometry.normalization,
        geometry.memory_budget_mb * 2**20,
        max_networks=settings.max_networks,
    )
    ids = [ok[i] for i in result.networks]
    attrs = {
        "kind": kind,
        "normalization": geometry.normalization,
        "layer": geometry.layer_name,
        "probe_hash": probe["hash"],
        "networks_of_zoo": len(ok),
    }
    storage.write_distances(layout.distances_of(kind), result.distances, ids, attrs)


def embed(
    layout: Layout, batches: Sequence[str], settings: EmbeddingSettings, distance: str
) -> None:
    """PHATE map of a network distance (diffusion, wasserstein or a baseline), joined with
    accuracy, hyperparameters and features."""
    from nnmanifold import embedding

    out = layout.embedding_of(distance)
    D, ids, _ = storage.read_distances(layout.distances_of(distance))
    coords = embedding.phate_embedding(
        D, settings.n_components, settings.knn, settings.decay, settings.seed
    )
    metrics = storage.read_manifests([layout.train_manifest(b) for b in batches])
    feats = storage.read_manifests([layout.features_manifest(b) for b in batches])
    table = embedding.embedding_table(coords, ids, pd.read_csv(layout.zoo), metrics)
    storage.write_csv(out, table.merge(feats.drop(columns=["status"]), on="model_id", how="left"))


def wasserstein(layout: Layout, batches: Sequence[str], threads: int = 1) -> None:
    """Wasserstein distances between the models' H1 persistence diagrams (a second distance)."""
    from nnmanifold import features as features_lib

    table = storage.read_manifests([layout.features_manifest(b) for b in batches])
    ok = list(table.loc[table["status"] == "ok", "model_id"])
    diagrams = [storage.read_diagrams(layout.diagrams(m)) for m in ok]
    W = features_lib.persistence_distances(diagrams, dim=1, n_jobs=threads)
    storage.write_distances(layout.wasserstein, W, ok, {"diagram_dimension": 1})


def stats(layout: Layout, settings: StatsSettings, baselines: Sequence[str] = ()) -> None:
    """Relate features and the map to accuracy: zoo summary, correlations, informativeness."""
    from nnmanifold import stats as stats_lib
    from nnmanifold.features import FEATURE_NAMES

    everyone = pd.read_csv(layout.embedding)
    chance = storage.read_probe(layout.probe)["chance_accuracy"]
    summary = stats_lib.zoo_summary(everyone["status"], everyone["test_accuracy"], chance)
    storage.write_csv(layout.stats("zoo_summary"), summary)
    log.info("%s", stats_lib.summary_line(summary))
    D, ids, _ = storage.read_distances(layout.distances)
    table = everyone.set_index("model_id").loc[ids]
    accuracy = table["test_accuracy"].to_numpy()
    feats = table[list(FEATURE_NAMES)]
    corr = stats_lib.feature_correlations(feats, accuracy, settings.n_bootstrap, settings.seed)
    storage.write_csv(layout.stats("feature_correlations"), corr)
    hyper = table[[c for c in HYPERPARAMETERS if c in table]].dropna(axis=1, how="all")
    others = {}
    for kind in baselines:
        D_k, ids_k, _ = storage.read_distances(layout.distances_of(kind))
        keep = np.isin(ids, ids_k)
        order = pd.Series(range(len(ids_k)), index=ids_k)[np.asarray(ids)[keep]].to_numpy()
        others[BASELINE_NAMES[kind]] = (D_k[np.ix_(order, order)], keep)
    info = stats_lib.map_informativeness(
        D,
        accuracy,
        feats,
        hyper,
        k=settings.knn,
        n_perm=settings.n_permutations,
        seed=settings.seed,
        others=others,
    )
    storage.write_csv(layout.stats("map_informativeness"), info)
    names = ["diffusion distance", *others]
    storage.write_csv(
        layout.stats("distance_comparison"), stats_lib.distance_comparison(info, names)
    )
    log.info("map informativeness:\n%s", info.to_string(index=False))
    storage.write_yaml(layout.report_metadata, stats_lib.headline(summary, info))


def sensitivity(
    layout: Layout,
    batches: Sequence[str],
    settings: SensitivitySettings,
    stats_settings: StatsSettings,
) -> None:
    """Sweep sigma, normalisation, t and layer; report how informative the map stays."""
    from nnmanifold import plots
    from nnmanifold import sensitivity as sweep_lib

    probe = storage.read_probe(layout.probe)
    table = storage.read_manifests([layout.train_manifest(b) for b in batches])
    ok = table[table["status"] == "ok"]
    if len(ok) > settings.max_models:
        log.info("sweeping a random %d of %d networks", settings.max_models, len(ok))
        ok = ok.sample(settings.max_models, random_state=stats_settings.seed).sort_index()
    files = [layout.activations(m) for m in ok["model_id"]]
    penultimate = [storage.read_activations(f, None, probe["hash"]) for f in files]
    representations = {"penultimate": [X for X, _ in penultimate]}
    for layer in sweep_lib.shared_layers([attrs["layer_order"] for _, attrs in penultimate]):
        representations[layer] = [storage.read_activations(f, layer)[0] for f in files]
    result = sweep_lib.sweep(
        representations,
        ok["test_accuracy"].to_numpy(),
        settings.sigmas,
        settings.normalizations,
        settings.ts,
        k=stats_settings.knn,
        n_perm=stats_settings.n_permutations,
        seed=stats_settings.seed,
        progress=True,
    )
    storage.write_csv(layout.stats("sensitivity"), result.assign(n_models=len(ok)))
    plots.save(plots.sensitivity(result), layout.figure("sensitivity"))


def figures(layout: Layout, baselines: Sequence[str] = ()) -> None:
    """Paper figures (PNG + PDF) of the map, the features and the statistics."""
    from nnmanifold import features as features_lib
    from nnmanifold import plots

    table = pd.read_csv(layout.embedding)
    ok = table[table["status"] == "ok"]
    topology = pd.read_csv(layout.wasserstein_embedding)
    D, ids, _ = storage.read_distances(layout.distances)
    corr = pd.read_csv(layout.stats("feature_correlations"))
    accuracy = ok.set_index("model_id").loc[ids, "test_accuracy"].to_numpy()
    extremes = plots.best_and_worst(ok)
    diagrams = [storage.read_diagrams(layout.diagrams(m)) for m in extremes["model_id"]]
    drawn = {
        "map_accuracy": plots.map_by(ok, "test_accuracy"),
        "map_features": plots.map_facets(ok, list(features_lib.FEATURE_NAMES)),
        "map_hyperparameters": plots.map_facets(ok, [*HYPERPARAMETERS, "seed"]),
        "features_vs_accuracy": plots.features_vs_accuracy(ok, corr),
        "distance_heatmap": plots.distance_heatmap(D, ids, accuracy),
        "persistence": plots.persistence_diagrams(*diagrams, labels=list(extremes["label"])),
        "informativeness": plots.informativeness(pd.read_csv(layout.stats("map_informativeness"))),
        "map_topology": plots.map_by(
            topology[topology["status"] == "ok"],
            "test_accuracy",
            title="map of H1 Wasserstein distances",
        ),
        "summary": plots.summary(ok, D, ids, corr),
        "map_baselines": plots.maps_side_by_side(
            {
                "diffusion distance": ok,
                **{
                    BASELINE_NAMES[k]: pd.read_csv(layout.embedding_of(k)).query("status == 'ok'")
                    for k in baselines
                },
            },
            "test_accuracy",
        ),
    }
    assert set(drawn) == set(FIGURES), "paths.FIGURES lists the figures this step draws"
    for name, fig in drawn.items():
        plots.save(fig, layout.figure(name))


def interactive_map(layout: Layout) -> None:
    """The interactive map (one offline HTML page): hover, colour by anything, nearest networks."""
    from nnmanifold import interactive

    page = interactive.map_html(
        pd.read_csv(layout.embedding),
        pd.read_csv(layout.wasserstein_embedding),
        pd.read_csv(layout.excluded),
        results_label=str(layout.root),
    )
    interactive.write(layout.interactive_map, page)


def recorded_rounds(layout: Layout, name: str) -> list[list[dict[str, Any]]]:
    """The specs of search ``name``'s recorded rounds 1, 2, ... (up to the first missing one)."""
    rounds = []
    while (path := layout.search_round(name, len(rounds) + 1)).exists():
        rounds.append(storage.read_json(path)["specs"])
    return rounds


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
    from nnmanifold import zoo as zoo_lib

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

    from nnmanifold import plots
    from nnmanifold import search_benchmark as bench

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    configs, val, test, D = bench.load_grid(layout, batches)
    table, best, picked, target = bench.benchmark(configs, val, test, D, settings, log.info)
    storage.write_csv(layout.search_benchmark("table.csv"), bench.table_frame(table))
    figure = plots.search_curves(best, picked, target, settings.initial)
    plots.save(figure, layout.search_benchmark("curves.png"))


def search_report(
    layout: Layout,
    batches: Sequence[str],
    settings: SearchSettings,
    geometry: GeometrySettings,
    embedding: EmbeddingSettings,
) -> None:
    """The search's progress (best-so-far by validation accuracy, per round, test accuracy
    beside) and where each round's models fall on the map of all of them."""
    from nnmanifold import plots, rounds

    table = storage.read_manifests([layout.train_manifest(b) for b in batches])
    round_of = {
        s["model_id"]: k
        for k, specs in enumerate(recorded_rounds(layout, settings.name)[: settings.rounds], 1)
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
    plots.save(plots.search_progress(progress), layout.search_figure(settings.name, "progress"))
    plots.save(
        plots.map_by(labelled.dropna(subset=axes), "round", title="search rounds on the map"),
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
    from nnmanifold import rounds, search
    from nnmanifold import zoo as zoo_lib
    from nnmanifold.config import validate

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
    from nnmanifold import embedding as embedding_lib
    from nnmanifold.diffusion import diffusion_operator
    from nnmanifold.distances import pairwise_frobenius

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


def verify(
    layout: Layout, batches: Sequence[str], hashes: bool = True, dry_run: bool = False
) -> list[str]:
    """Check every per-model file the jobs' manifests list (size, and with ``hashes`` content).

    A job with a failed file (deleted, truncated, corrupted) is marked to run again: its failed
    files are set aside and its rerun mark renewed (a parameter of the job, so the next run
    reruns it and what depends on it), and the job regenerates exactly those files; its other
    members are kept. (Neither a removed nor a back-dated manifest would do: Snakemake neither
    rebuilds a missing intermediate file whose consumers are up to date nor takes an input
    whose content it has recorded as updated.) Returns one line per failed file; ``dry_run``
    changes nothing.
    """
    lines = []
    for stage in STAGES:
        for batch in batches:
            failed = failed_files(layout, stage, batch, hashes)
            lines += [f"{path} fails its check (job {stage}/{batch})" for path in failed]
            if failed and not dry_run:
                _set_aside(layout, stage, batch, failed)
                storage.write_json(layout.rerun_mark(stage, batch), {"marked": time.time()})
    return lines


def failed_files(layout: Layout, stage: str, batch: str, hashes: bool = False) -> list[str]:
    """Files a finished job's manifest lists that fail their check (none if it has not run;
    an unreadable manifest is itself the failed file)."""
    manifest = layout.manifest(stage, batch)
    if not manifest.exists():
        return []
    try:
        return storage.failed_files(manifest, hashes)
    except storage.CorruptFileError:
        return [str(manifest)]


def _set_aside(layout: Layout, stage: str, batch: str, failed: Sequence[str]) -> None:
    for path in failed:
        if Path(path).exists() and Path(path) != layout.manifest(stage, batch):
            log.warning("%s fails its check: set aside as %s", path, storage.set_aside(path))


def _manifest_row(metrics: dict[str, Any], out: Path, names: Sequence[str]) -> dict[str, Any]:
    files = [storage.file_record(out / n) for n in names]
    return {**{k: metrics[k] for k in MANIFEST_KEYS}, "files": files}


def _ok_models(layout: Layout, batches: Sequence[str], record_excluded: bool = True) -> list[str]:
    """Models that trained ok; the others are listed in ``geometry/excluded.csv``."""
    table = storage.read_manifests([layout.train_manifest(b) for b in batches])
    ok = table["status"] == "ok"
    if not record_excluded:
        return list(table.loc[ok, "model_id"])
    storage.write_csv(layout.excluded, table[~ok])
    if (~ok).any():
        log.warning("%d models excluded from the geometry (see %s)", (~ok).sum(), layout.excluded)
    return list(table.loc[ok, "model_id"])


def _model_features(
    layout: Layout,
    model_id: str,
    probe: dict[str, Any],
    geometry: GeometrySettings,
    settings: FeatureSettings,
) -> dict[str, float]:
    """One model's feature values: from its features.json if current, else computed and saved.

    Current means made with these settings from these very activations, and its diagrams file
    is the one written with it (content, not mtime: a restored or rotted file is recomputed).
    """
    from nnmanifold import features as features_lib
    from nnmanifold.diffusion import normalize, transition_matrix

    made_from = {
        "settings": {"geometry": geometry.identity(), "features": settings.identity()},
        "activations": storage.file_hash(layout.activations(model_id)),
    }
    found = _read_record(layout.features(model_id))
    if storage.is_current(found, made_from) and _file_hash(layout.diagrams(model_id)) == found.get(
        "diagrams"
    ):
        return found["values"]
    op = geometry.operator
    X, _ = storage.read_activations(layout.activations(model_id), geometry.layer, probe["hash"])
    values, diagrams = features_lib.compute_features(
        normalize(X, op.normalization),
        probe["labels"],
        transition_matrix(X, op),
        t=op.t,
        max_points=settings.max_points,
        h1_threshold=settings.h1_threshold,
        seed=settings.seed,
    )
    storage.write_diagrams(layout.diagrams(model_id), diagrams)
    record = {**made_from, "diagrams": storage.file_hash(layout.diagrams(model_id))}
    storage.write_json(layout.features(model_id), {**record, "values": values})
    return values


def _file_hash(path) -> str | None:
    """A file's content hash, None if it is missing or unreadable."""
    try:
        return storage.file_hash(path)
    except OSError:
        return None


def _read_record(path) -> dict[str, Any] | None:
    try:
        return storage.read_json(path)
    except (OSError, UserError):
        return None
