"""Command-line entry points: one subcommand per workflow step (the rules call these)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from nnmanifold import UserError

log = logging.getLogger("nnmanifold")

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {}


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
    from nnmanifold import storage, zoo
    from nnmanifold.config import validate

    specs = zoo.expand(validate(json.loads(args.config)))
    storage.write_csv(args.out, zoo.table(specs))
    log.info("zoo of %d models written to %s", len(specs), args.out)


@command
def cmd_probe(args: argparse.Namespace) -> None:
    """Draw the class-balanced probe set from the test split and store it with its hash."""
    from nnmanifold import data, storage

    cfg = json.loads(args.data)
    ds = data.load_dataset(cfg)
    idx = data.probe_indices(ds.y_test, cfg["n_probe"], cfg["probe_seed"])
    probe = {"indices": idx, "labels": ds.y_test[idx], "x": ds.x_test[idx], "dataset": ds.name}
    probe["hash"] = data.probe_hash(ds.name, idx, probe["labels"], probe["x"])
    storage.write_probe(args.out, probe)
    log.info("probe set of %d points (hash %s) written to %s", len(idx), probe["hash"], args.out)


@command
def cmd_train(args: argparse.Namespace) -> None:
    """Train the given models one after another in this process; write a manifest at the end."""
    from nnmanifold import gpu

    device = gpu.claim_device(args.jobs_per_gpu) if args.accelerator != "cpu" else None
    if device is not None:
        log.info("using GPU %s", device)

    import torch
    from tqdm import tqdm

    from nnmanifold import data, storage, train

    torch.set_num_threads(args.threads)
    specs = json.loads(args.specs)
    cfg = json.loads(args.data)
    datasets = {s["data"]["name"] for s in specs}
    if len(datasets) != 1:
        raise SystemExit(f"one training job trains on one data set, got {sorted(datasets)}")
    ds = data.load_dataset({**cfg, **specs[0]["data"]})
    probe = storage.read_probe(args.probe)
    results = []
    for spec in tqdm(specs, desc="training", unit="model", file=sys.stderr):
        m = train.train_model(
            spec,
            ds,
            probe,
            train.model_dir(args.results, spec["model_id"]),
            accelerator=args.accelerator,
        )
        results.append({k: m[k] for k in ("model_id", "status", "reason", "test_accuracy")})
    storage.write_json(args.manifest, results)


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

    p = sub.add_parser("probe", help=cmd_probe.__doc__, description=cmd_probe.__doc__)
    p.add_argument("--data", required=True, help="the config's data section as JSON")
    p.add_argument("--out", required=True, type=Path, help="probe set (HDF5)")

    p = sub.add_parser("train", help=cmd_train.__doc__, description=cmd_train.__doc__)
    p.add_argument("--specs", required=True, help="JSON list of model specs (rows of the zoo)")
    p.add_argument("--probe", required=True, type=Path, help="probe set (HDF5)")
    p.add_argument("--data", required=True, help="the config's data section as JSON")
    p.add_argument("--results", required=True, type=Path, help="results folder")
    p.add_argument("--manifest", required=True, type=Path, help="job manifest (JSON) to write")
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--jobs-per-gpu", type=int, default=1, help="jobs sharing one GPU")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", module="lightning_fabric")
    try:
        COMMANDS[args.command](args)
    except UserError as err:
        log.error("%s", err)
        sys.exit(1)
