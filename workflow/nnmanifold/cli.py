"""Command-line entry points: one subcommand per workflow step (the rules call these)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from nnmanifold import UserError, storage
from nnmanifold.zoo import HYPERPARAMETERS

log = logging.getLogger("nnmanifold")

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {}
FEATURE_FILES = ("features.json", "diagrams.npz")
MANIFEST_KEYS = ("model_id", "status", "reason", "test_accuracy")


def command(func: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
    COMMANDS[func.__name__.removeprefix("cmd_")] = func
    return func


@command
def cmd_validate(args: argparse.Namespace) -> None:
    """Check a config file against the schema and print it with defaults filled in."""
    import yaml

    from nnmanifold.config import load_config

    print(yaml.safe_dump(load_config(args.config), sort_keys=False))


@command
def cmd_zoo(args: argparse.Namespace) -> None:
    """Expand the zoo spec of a config into the zoo table (one row per model)."""
    from nnmanifold import zoo
    from nnmanifold.config import validate

    specs = zoo.expand(validate(json.loads(args.config)))
    storage.write_csv(args.out, zoo.table(specs))
    log.info("zoo of %d models written to %s", len(specs), args.out)


@command
def cmd_provenance(args: argparse.Namespace) -> None:
    """Record the run's validated config, its hash and the library versions."""
    import hashlib

    config = json.loads(args.config)
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    storage.write_json(
        args.out,
        {
            "config_hash": hashlib.sha256(canonical.encode()).hexdigest()[:16],
            "config": config,
            "versions": storage.library_versions(),
        },
    )


@command
def cmd_probe(args: argparse.Namespace) -> None:
    """Draw the class-balanced probe set from the test split and store it with its hash."""
    from nnmanifold import data

    cfg = {**json.loads(args.data), "data_dir": args.data_dir, "download": args.download}
    ds = data.load_dataset(cfg)
    idx = data.probe_indices(ds.y_test, cfg["n_probe"], cfg["probe_seed"])
    probe = {"indices": idx, "labels": ds.y_test[idx], "x": ds.x_test[idx], "dataset": ds.name}
    probe["hash"] = data.probe_hash(ds.name, idx, probe["labels"], probe["x"])
    storage.write_probe(args.out, probe)
    log.info("probe set of %d points (hash %s) written to %s", len(idx), probe["hash"], args.out)


@command
def cmd_train(args: argparse.Namespace) -> None:
    """Train the given models in this process (same-shaped ones as one group); write a manifest."""
    from nnmanifold import gpu

    device = gpu.claim_device(args.jobs_per_gpu) if args.accelerator != "cpu" else None
    if device is not None:
        log.info("using GPU %s", device)

    import torch

    from nnmanifold import data, train

    torch.set_num_threads(args.threads)
    specs = json.loads(args.specs)
    datasets = {s["data"]["name"] for s in specs}
    if len(datasets) != 1:
        raise UserError(f"one training job trains on one data set, got {sorted(datasets)}")
    ds = data.load_dataset(
        {**specs[0]["data"], "data_dir": args.data_dir, "download": args.download}
    )
    probe = storage.read_probe(args.probe)
    results = []
    for m in train.train_job(specs, ds, probe, args.results, accelerator=args.accelerator):
        out = storage.model_dir(args.results, m["model_id"])
        files = [str(out / name) for name in train.OUTPUTS]
        results.append({**{k: m[k] for k in MANIFEST_KEYS}, "files": files})
    storage.write_json(args.manifest, results)


@command
def cmd_features(args: argparse.Namespace) -> None:
    """Characterise each trained model of one training job; write features and diagrams."""
    from tqdm import tqdm

    from nnmanifold import features
    from nnmanifold.diffusion import normalize, transition_matrix

    geo, feat = json.loads(args.geometry), json.loads(args.features)
    op = _operator_settings(geo)
    probe = storage.read_probe(args.probe)
    settings = {"geometry": geo, "features": feat}
    rows = []
    for entry in tqdm(storage.read_json(args.manifest), desc="features", unit="model"):
        mid = entry["model_id"]
        row = {"model_id": mid, "status": entry["status"]}
        out = storage.model_dir(args.results, mid)
        if entry["status"] == "ok":
            values = _current_features(out, settings)
            if values is None:
                X, _ = storage.read_activations(out / "activations.h5", geo["layer"], probe["hash"])
                values, diagrams = features.compute_features(
                    normalize(X, op.normalization),
                    probe["labels"],
                    transition_matrix(X, op),
                    t=op.t,
                    max_points=feat["max_points"],
                    h1_threshold=feat["h1_threshold"],
                    seed=feat["seed"],
                )
                features.save_diagrams(out / "diagrams.npz", diagrams)
                storage.write_json(out / "features.json", {"settings": settings, "values": values})
            row.update(values)
            row["files"] = [str(out / name) for name in FEATURE_FILES]
        rows.append(row)
    storage.write_json(args.out, rows)


@command
def cmd_distances(args: argparse.Namespace) -> None:
    """Network distance matrix ||P_i^t - P_j^t||_F over the models that trained ok (cached)."""
    import pandas as pd
    from tqdm import tqdm

    from nnmanifold import distances
    from nnmanifold.diffusion import degeneracy_warning

    geo = json.loads(args.geometry)
    settings = _operator_settings(geo)
    probe = storage.read_probe(args.probe)
    models = _manifest_table(args.manifests)
    ok = models[models["status"] == "ok"]
    storage.write_csv(args.excluded, models[models["status"] != "ok"])
    if len(models) > len(ok):
        log.warning(
            "%d models excluded from the geometry (see %s)", len(models) - len(ok), args.excluded
        )
    geometry_dir = args.out.parent
    store = distances.OperatorStore(
        geometry_dir / "operators.h5", settings, probe["hash"], geo["layer"] or "penultimate"
    )
    diagnostics = []
    for mid in tqdm(ok["model_id"], desc="operators", unit="model", file=sys.stderr):
        X, _ = storage.read_activations(
            storage.model_dir(args.results, mid) / "activations.h5", geo["layer"], probe["hash"]
        )
        store.add(mid, X)
        diag = store.diagnostics(mid)
        if message := degeneracy_warning(diag, mid):
            log.warning("%s", message)
        diagnostics.append({"model_id": mid, **diag})
    storage.write_csv(args.diagnostics, pd.DataFrame(diagnostics))
    if dropped := store.prune(list(ok["model_id"])):
        log.info("dropped %d operators of models no longer in the zoo from %s", dropped, store.path)
    result = distances.distance_matrix(
        store,
        list(ok["model_id"]),
        memory_budget_bytes=args.memory_budget_mb * 2**20,
        cache_path=geometry_dir / "distance_cache.h5",
        device=args.device,
    )
    log.info("%d x %d distances, %d pairs computed", len(ok), len(ok), result.n_computed)
    attrs = {**store.attrs, "versions": json.dumps(storage.library_versions())}
    distances.write_distances(args.out, result.distances, result.model_ids, attrs)


@command
def cmd_embed(args: argparse.Namespace) -> None:
    """PHATE map of the network distance, joined with accuracy, hyperparameters and features."""
    import pandas as pd

    from nnmanifold import embedding
    from nnmanifold.distances import read_distances

    emb = json.loads(args.embedding)
    D, ids, _ = read_distances(args.distances)
    coords = embedding.phate_embedding(
        D, emb["n_components"], emb["knn"], emb["decay"], emb["seed"]
    )
    metrics = _manifest_table(args.manifests)
    feats = _manifest_table(args.features).drop(columns=["status"])
    table = embedding.embedding_table(coords, ids, pd.read_csv(args.zoo), metrics)
    storage.write_csv(args.out, table.merge(feats, on="model_id", how="left"))


@command
def cmd_wasserstein(args: argparse.Namespace) -> None:
    """Wasserstein distances between the models' H1 persistence diagrams (a second distance)."""
    from nnmanifold import features
    from nnmanifold.distances import write_distances

    table = _manifest_table(args.features)
    ok = list(table.loc[table["status"] == "ok", "model_id"])
    diagrams = [
        features.load_diagrams(storage.model_dir(args.results, m) / "diagrams.npz") for m in ok
    ]
    W = features.persistence_distances(diagrams, dim=1)
    write_distances(args.out, W, ok, {"diagram_dimension": 1})


@command
def cmd_stats(args: argparse.Namespace) -> None:
    """Relate features and the map to accuracy: correlations, smoothness, k-NN prediction."""
    import pandas as pd

    from nnmanifold import stats
    from nnmanifold.distances import read_distances
    from nnmanifold.features import FEATURE_NAMES

    cfg = json.loads(args.stats)
    D, ids, _ = read_distances(args.distances)
    table = pd.read_csv(args.embedding).set_index("model_id").loc[ids]
    accuracy = table["test_accuracy"].to_numpy()
    feats = table[list(FEATURE_NAMES)]
    corr = stats.feature_correlations(feats, accuracy, cfg["n_bootstrap"], cfg["seed"])
    storage.write_csv(args.correlations, corr)
    hyper = table[[c for c in HYPERPARAMETERS if c in table]].dropna(axis=1, how="all")
    info = stats.map_informativeness(
        D, accuracy, feats, hyper, k=cfg["knn"], n_perm=cfg["n_permutations"], seed=cfg["seed"]
    )
    storage.write_csv(args.informativeness, info)
    log.info("map informativeness:\n%s", info.to_string(index=False))


def _current_features(out: Path, settings: dict) -> dict | None:
    """Feature values already computed with these settings from the current activations."""
    found = out / "features.json"
    if not (found.exists() and (out / "diagrams.npz").exists()):
        return None
    if found.stat().st_mtime_ns < (out / "activations.h5").stat().st_mtime_ns:
        return None
    try:
        record = storage.read_json(found)
    except UserError:
        return None
    return record["values"] if record.get("settings") == settings else None


def _operator_settings(geometry: dict):
    from nnmanifold.diffusion import OperatorSettings

    return OperatorSettings(geometry["sigma"], geometry["normalization"], geometry["t"])


def _manifest_table(paths: Sequence[Path]):
    """Rows of several job manifests (JSON lists of per-model records) as one table."""
    import pandas as pd

    rows = [row for path in paths for row in storage.read_json(path)]
    return pd.DataFrame(rows).drop(columns=["files"], errors="ignore")


@command
def cmd_sensitivity(args: argparse.Namespace) -> None:
    """Sweep sigma, normalisation, t and layer; report how informative the map stays."""
    from nnmanifold import plots, sensitivity

    cfg, st = json.loads(args.sensitivity), json.loads(args.stats)
    probe = storage.read_probe(args.probe)
    models = _manifest_table(args.manifests)
    ok = models[models["status"] == "ok"]
    files = [storage.model_dir(args.results, m) / "activations.h5" for m in ok["model_id"]]
    penultimate = [storage.read_activations(f, None, probe["hash"]) for f in files]
    common = set.intersection(*(set(attrs["layer_order"]) for _, attrs in penultimate))
    representations = {"penultimate": [X for X, _ in penultimate]}
    for layer in sorted(common):
        representations[layer] = [storage.read_activations(f, layer)[0] for f in files]
    table = sensitivity.sweep(
        representations,
        ok["test_accuracy"].to_numpy(),
        cfg["sigmas"],
        cfg["normalizations"],
        cfg["ts"],
        k=st["knn"],
        n_perm=st["n_permutations"],
        seed=st["seed"],
        progress=True,
    )
    storage.write_csv(args.out, table)
    plots.save(plots.sensitivity(table), args.figure)


@command
def cmd_figures(args: argparse.Namespace) -> None:
    """Paper figures (PNG + PDF) of the map, the features and the statistics."""
    import pandas as pd

    from nnmanifold import features, plots
    from nnmanifold.distances import read_distances

    out = args.out
    table = pd.read_csv(args.embedding)
    ok = table[table["status"] == "ok"]
    topology = pd.read_csv(args.topology_map)
    D, ids, _ = read_distances(args.distances)
    corr = pd.read_csv(args.correlations)
    accuracy = ok.set_index("model_id").loc[ids, "test_accuracy"].to_numpy()
    ranked = ok.sort_values("test_accuracy")
    best, worst = ranked["model_id"].iloc[-1], ranked["model_id"].iloc[0]
    diagrams = [
        features.load_diagrams(storage.model_dir(args.results, m) / "diagrams.npz")
        for m in (best, worst)
    ]
    figures = {
        "map_accuracy": plots.map_by(ok, "test_accuracy"),
        "map_features": plots.map_facets(ok, list(features.FEATURE_NAMES)),
        "map_hyperparameters": plots.map_facets(ok, [*HYPERPARAMETERS, "seed"]),
        "features_vs_accuracy": plots.features_vs_accuracy(ok, corr),
        "distance_heatmap": plots.distance_heatmap(D, ids, accuracy),
        "persistence": plots.persistence_diagrams(
            *diagrams,
            labels=[
                f"{kind}: {m} ({acc:.0%})"
                for kind, m, acc in zip(
                    ("best", "worst"),
                    (best, worst),
                    ranked["test_accuracy"].iloc[[-1, 0]],
                    strict=True,
                )
            ],
        ),
        "informativeness": plots.informativeness(pd.read_csv(args.informativeness)),
        "map_topology": plots.map_by(
            topology[topology["status"] == "ok"],
            "test_accuracy",
            title="map of H1 Wasserstein distances",
        ),
        "summary": plots.summary(ok, D, ids, corr),
    }
    for name, fig in figures.items():
        plots.save(fig, out / f"{name}.png")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnmanifold",
        description="Map the manifold of neural networks. The Snakemake workflow calls these "
        "steps; run `snakemake` (or `make run`) for the whole pipeline.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help=cmd_validate.__doc__, description=cmd_validate.__doc__)
    p.add_argument("config", type=Path, help="YAML config file")

    p = sub.add_parser("zoo", help=cmd_zoo.__doc__, description=cmd_zoo.__doc__)
    p.add_argument("--config", required=True, help="the validated config as JSON")
    p.add_argument("--out", required=True, type=Path, help="zoo table (CSV)")

    p = sub.add_parser(
        "provenance", help=cmd_provenance.__doc__, description=cmd_provenance.__doc__
    )
    p.add_argument("--config", required=True, help="the validated config as JSON")
    p.add_argument("--out", required=True, type=Path, help="provenance record (JSON)")

    p = sub.add_parser("probe", help=cmd_probe.__doc__, description=cmd_probe.__doc__)
    p.add_argument("--data", required=True, help="the config's data section as JSON")
    _data_access(p)
    p.add_argument("--out", required=True, type=Path, help="probe set (HDF5)")

    p = sub.add_parser("train", help=cmd_train.__doc__, description=cmd_train.__doc__)
    p.add_argument("--specs", required=True, help="JSON list of model specs (rows of the zoo)")
    p.add_argument("--probe", required=True, type=Path, help="probe set (HDF5)")
    _data_access(p)
    p.add_argument("--results", required=True, type=Path, help="results folder")
    p.add_argument("--manifest", required=True, type=Path, help="job manifest (JSON) to write")
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--jobs-per-gpu", type=int, default=1, help="jobs sharing one GPU")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")

    p = sub.add_parser("features", help=cmd_features.__doc__, description=cmd_features.__doc__)
    p.add_argument("--manifest", required=True, type=Path, help="training job manifest (JSON)")
    p.add_argument("--probe", required=True, type=Path, help="probe set (HDF5)")
    p.add_argument("--results", required=True, type=Path, help="results folder")
    p.add_argument("--geometry", required=True, help="the config's geometry section as JSON")
    p.add_argument("--features", required=True, help="the config's features section as JSON")
    p.add_argument("--out", required=True, type=Path, help="features manifest (JSON) to write")

    p = sub.add_parser("distances", help=cmd_distances.__doc__, description=cmd_distances.__doc__)
    p.add_argument("--manifests", required=True, nargs="+", type=Path, help="training manifests")
    p.add_argument("--probe", required=True, type=Path, help="probe set (HDF5)")
    p.add_argument("--results", required=True, type=Path, help="results folder")
    p.add_argument("--geometry", required=True, help="the config's geometry section as JSON")
    p.add_argument("--out", required=True, type=Path, help="distances (HDF5)")
    p.add_argument("--excluded", required=True, type=Path, help="excluded models (CSV)")
    p.add_argument("--diagnostics", required=True, type=Path, help="kernel diagnostics (CSV)")
    p.add_argument("--memory-budget-mb", type=int, default=2048, help="memory for operators")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    p = sub.add_parser("embed", help=cmd_embed.__doc__, description=cmd_embed.__doc__)
    p.add_argument("--distances", required=True, type=Path, help="distances (HDF5)")
    p.add_argument("--zoo", required=True, type=Path, help="zoo table (CSV)")
    p.add_argument("--manifests", required=True, nargs="+", type=Path, help="training manifests")
    p.add_argument("--features", required=True, nargs="+", type=Path, help="feature manifests")
    p.add_argument("--embedding", required=True, help="the config's embedding section as JSON")
    p.add_argument("--out", required=True, type=Path, help="embedding table (CSV)")

    p = sub.add_parser(
        "wasserstein", help=cmd_wasserstein.__doc__, description=cmd_wasserstein.__doc__
    )
    p.add_argument("--features", required=True, nargs="+", type=Path, help="feature manifests")
    p.add_argument("--results", required=True, type=Path, help="results folder")
    p.add_argument("--out", required=True, type=Path, help="Wasserstein distances (HDF5)")

    p = sub.add_parser("stats", help=cmd_stats.__doc__, description=cmd_stats.__doc__)
    p.add_argument("--embedding", required=True, type=Path, help="embedding table (CSV)")
    p.add_argument("--distances", required=True, type=Path, help="distances (HDF5)")
    p.add_argument("--stats", required=True, help="the config's stats section as JSON")
    p.add_argument("--correlations", required=True, type=Path, help="feature correlations (CSV)")
    p.add_argument("--informativeness", required=True, type=Path, help="map statistics (CSV)")

    p = sub.add_parser(
        "sensitivity", help=cmd_sensitivity.__doc__, description=cmd_sensitivity.__doc__
    )
    p.add_argument("--manifests", required=True, nargs="+", type=Path, help="training manifests")
    p.add_argument("--probe", required=True, type=Path, help="probe set (HDF5)")
    p.add_argument("--results", required=True, type=Path, help="results folder")
    p.add_argument("--sensitivity", required=True, help="the config's sensitivity section (JSON)")
    p.add_argument("--stats", required=True, help="the config's stats section as JSON")
    p.add_argument("--out", required=True, type=Path, help="sweep table (CSV)")
    p.add_argument("--figure", required=True, type=Path, help="sweep figure (PNG, PDF beside)")

    p = sub.add_parser("figures", help=cmd_figures.__doc__, description=cmd_figures.__doc__)
    p.add_argument("--embedding", required=True, type=Path, help="embedding table (CSV)")
    p.add_argument("--distances", required=True, type=Path, help="distances (HDF5)")
    p.add_argument("--correlations", required=True, type=Path, help="feature correlations (CSV)")
    p.add_argument("--informativeness", required=True, type=Path, help="map statistics (CSV)")
    p.add_argument("--topology-map", required=True, type=Path, help="Wasserstein map (CSV)")
    p.add_argument("--results", required=True, type=Path, help="results folder")
    p.add_argument("--out", required=True, type=Path, help="folder for the figures")
    return parser


def _data_access(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default="data", help="where torchvision data sets live")
    parser.add_argument("--download", action="store_true", help="let torchvision download")


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", module="lightning_fabric")
    try:
        COMMANDS[args.command](args)
    except UserError as err:
        log.error("%s", err)
        sys.exit(1)
