"""The command line: a thin table over ``steps`` (the rules call these) and two user commands.

Every step takes the results folder (paths come from ``paths.Layout``), the identities of the
config sections it depends on (JSON, as the rules pass them) and run-time flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from nnmanifold.core import storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import (
    BaselineSettings,
    DataSettings,
    EmbeddingSettings,
    FeatureSettings,
    GeometrySettings,
    SearchBenchmarkSettings,
    SearchSettings,
    SensitivitySettings,
    StatsSettings,
    WassersteinSettings,
)
from nnmanifold.steps import extract as extract_steps
from nnmanifold.steps import features as features_steps
from nnmanifold.steps import figures as figures_steps
from nnmanifold.steps import geometry as geometry_steps
from nnmanifold.steps import place as place_steps
from nnmanifold.steps import search as search_steps
from nnmanifold.steps import sensitivity as sensitivity_steps
from nnmanifold.steps import stats as stats_steps
from nnmanifold.steps import train as train_steps
from nnmanifold.steps import verify as verify_steps
from nnmanifold.steps import zoo as zoo_steps

log = logging.getLogger("nnmanifold")

#: Optional arguments each command takes (flag -> argparse keywords), and what it runs. A value
#: the config holds has no default here: the rules pass the validated config's (schema defaults).
_RESULTS = {"--results": {"type": Path, "required": True, "help": "results folder"}}
_BATCH = {"--batch": {"required": True, "help": "training job name"}}
_BATCHES = {"--batches": {"nargs": "+", "required": True, "help": "training job names"}}
_DATA = {
    "--data": {"required": True, "help": "identity of the data section (JSON)"},
    "--data-dir": {"required": True, "help": "where torchvision data sets live"},
    "--download": {"action": "store_true", "help": "let torchvision download"},
}
_GEOMETRY = {
    "--geometry": {"required": True, "help": "identity of the geometry section (JSON)"},
    "--memory-budget-mb": {"type": int, "required": True, "help": "memory for operator blocks"},
    "--device": {"required": True, "help": "auto, cpu or cuda"},
}
_BASELINES = {"--baselines": {"nargs": "*", "default": [], "help": "baseline distances"}}
_STATS = {"--stats": {"required": True, "help": "identity of the stats section (JSON)"}}
_SEARCH = {
    "--search": {"required": True, "help": "identity of the search section (JSON)"},
    "--embedding": {"required": True, "help": "the embedding section (JSON)"},
}


def _data(a: argparse.Namespace) -> DataSettings:
    return DataSettings.parse(a.data, data_dir=a.data_dir, download=a.download)


def _geometry(a: argparse.Namespace) -> GeometrySettings:
    return GeometrySettings.parse(a.geometry, memory_budget_mb=a.memory_budget_mb, device=a.device)


def _validate(a: argparse.Namespace) -> None:
    import yaml

    from nnmanifold.core.config import load_config
    from nnmanifold.extract.checks import resolve_and_check

    config = load_config(a.config)
    resolve_and_check(config)
    print(yaml.safe_dump(config, sort_keys=False))


def _clean(a: argparse.Namespace) -> None:
    from nnmanifold.core import plan
    from nnmanifold.core.config import load_config

    config = load_config(a.config)
    stale = plan.stale_models(Layout(config["results"]), config)
    for path in stale:
        print(path)
    if a.remove:
        plan.remove(stale)
    verb = "removed" if a.remove else "no longer kept (--remove deletes them)"
    log.info("%d model folders %s", len(stale), verb)


def _verify(a: argparse.Namespace) -> None:
    lines = verify_steps.verify(Layout(a.results), a.batches, hashes=True, dry_run=a.dry_run)
    for line in lines:
        print(line)
    done = "would be regenerated" if a.dry_run else "set aside; the next run regenerates them"
    log.info("%d failed files%s", len(lines), f" ({done})" if lines else "")


def _train(a: argparse.Namespace) -> None:
    train_steps.train(
        Layout(a.results),
        a.batch,
        storage.read_json(a.specs),
        _data(a),
        accelerator=a.accelerator,
        jobs_per_gpu=a.jobs_per_gpu,
        threads=a.threads,
    )


def _extract(a: argparse.Namespace) -> None:
    extract_steps.extract(
        Layout(a.results),
        a.batch,
        storage.read_json(a.networks),
        _data(a),
        accelerator=a.accelerator,
        jobs_per_gpu=a.jobs_per_gpu,
        threads=a.threads,
    )


COMMANDS: dict[str, tuple[str, dict, Callable[[argparse.Namespace], None]]] = {
    "validate": (
        "Check a config file against the schema, and the networks it names (as the workflow does"
        " before any job), and print it with defaults filled in.",
        {"config": {"type": Path, "help": "YAML config file"}},
        _validate,
    ),
    "clean": (
        "List the model folders of a results folder whose model is neither in the config's zoo"
        " nor in a recorded search round; --remove deletes them.",
        {
            "config": {"type": Path, "help": "YAML config file (its results folder is cleaned)"},
            "--remove": {"action": "store_true", "help": "delete them"},
        },
        _clean,
    ),
    "verify": (
        verify_steps.verify.__doc__,
        {
            **_RESULTS,
            **_BATCHES,
            "--dry-run": {"action": "store_true", "help": "report only; change nothing"},
        },
        _verify,
    ),
    "zoo": (
        zoo_steps.zoo.__doc__,
        {
            **_RESULTS,
            "--config": {"required": True, "help": "the validated config (JSON)"},
            "--search": {"default": None, "help": "a search whose recorded rounds join the zoo"},
        },
        lambda a: zoo_steps.zoo(Layout(a.results), json.loads(a.config), a.search),
    ),
    "provenance": (
        zoo_steps.provenance.__doc__,
        {**_RESULTS, "--config": {"required": True, "help": "the validated config (JSON)"}},
        lambda a: zoo_steps.provenance(Layout(a.results), json.loads(a.config)),
    ),
    "probe": (
        zoo_steps.probe.__doc__,
        {**_RESULTS, **_DATA, "--archs": {"nargs": "+", "default": [], "help": "zoo archs"}},
        lambda a: zoo_steps.probe(Layout(a.results), _data(a), a.archs),
    ),
    "train": (
        train_steps.train.__doc__,
        {
            **_RESULTS,
            **_BATCH,
            **_DATA,
            "--specs": {"required": True, "help": "JSON file: a list of the job's model specs"},
            "--accelerator": {"required": True, "help": "auto, cpu or gpu"},
            "--jobs-per-gpu": {"type": int, "required": True, "help": "jobs sharing one GPU"},
            "--threads": {"type": int, "required": True, "help": "CPU threads"},
        },
        _train,
    ),
    "extract": (
        extract_steps.extract.__doc__,
        {
            **_RESULTS,
            **_BATCH,
            **_DATA,
            "--networks": {"required": True, "help": "JSON file: the job's network specs"},
            "--accelerator": {"default": "auto", "choices": ["auto", "cpu", "gpu"]},
            "--jobs-per-gpu": {"type": int, "default": 1, "help": "jobs sharing one GPU"},
            "--threads": {"type": int, "default": 1, "help": "CPU threads"},
        },
        _extract,
    ),
    "export-probe": (
        extract_steps.export_probe.__doc__,
        {**_RESULTS, "--out": {"required": True, "help": "the .npz file to write"}},
        lambda a: extract_steps.export_probe(Layout(a.results), a.out),
    ),
    "features": (
        features_steps.features.__doc__,
        {
            **_RESULTS,
            **_BATCH,
            **_GEOMETRY,
            "--features": {"required": True, "help": "the features section (JSON)"},
            "--threads": {"type": int, "default": 1, "help": "processes side by side"},
        },
        lambda a: features_steps.features(
            Layout(a.results), a.batch, _geometry(a), FeatureSettings.parse(a.features), a.threads
        ),
    ),
    "distances": (
        geometry_steps.distances.__doc__,
        {**_RESULTS, **_BATCHES, **_GEOMETRY},
        lambda a: geometry_steps.distances(Layout(a.results), a.batches, _geometry(a)),
    ),
    "embed": (
        geometry_steps.embed.__doc__,
        {
            **_RESULTS,
            **_BATCHES,
            "--embedding": {"required": True, "help": "the embedding section (JSON)"},
            "--distances": {
                "nargs": "+",
                "default": ["diffusion"],
                "help": "diffusion, wasserstein or baselines (one map each)",
            },
        },
        lambda a: geometry_steps.embed(
            Layout(a.results), a.batches, EmbeddingSettings.parse(a.embedding), a.distances
        ),
    ),
    "place": (
        place_steps.place.__doc__,
        {
            **_RESULTS,
            **_GEOMETRY,
            "--map-manifests": {"type": Path, "nargs": "+", "required": True, "help": "the map's"},
            "--place-manifests": {"type": Path, "nargs": "+", "required": True, "help": "placed"},
            "--embedding": {"required": True, "help": "the embedding section (JSON)"},
        },
        lambda a: place_steps.place(
            Layout(a.results),
            a.map_manifests,
            a.place_manifests,
            _geometry(a),
            EmbeddingSettings.parse(a.embedding),
        ),
    ),
    "baselines": (
        geometry_steps.baselines.__doc__,
        {
            **_RESULTS,
            **_BATCHES,
            **_GEOMETRY,
            "--baselines": {"required": True, "help": "identity of the baselines section (JSON)"},
        },
        lambda a: geometry_steps.baselines(
            Layout(a.results), a.batches, _geometry(a), BaselineSettings.parse(a.baselines)
        ),
    ),
    "wasserstein": (
        geometry_steps.wasserstein.__doc__,
        {
            **_RESULTS,
            **_BATCHES,
            "--wasserstein": {"required": True, "help": "identity of the wasserstein section"},
            "--threads": {"type": int, "default": 1, "help": "processes"},
        },
        lambda a: geometry_steps.wasserstein(
            Layout(a.results), a.batches, WassersteinSettings.parse(a.wasserstein), a.threads
        ),
    ),
    "stats": (
        stats_steps.stats.__doc__,
        {**_RESULTS, **_STATS, **_BASELINES},
        lambda a: stats_steps.stats(Layout(a.results), StatsSettings.parse(a.stats), a.baselines),
    ),
    "sensitivity": (
        sensitivity_steps.sensitivity.__doc__,
        {
            **_RESULTS,
            **_BATCHES,
            **_STATS,
            "--sensitivity": {"required": True, "help": "identity of the sweep section (JSON)"},
        },
        lambda a: sensitivity_steps.sensitivity(
            Layout(a.results),
            a.batches,
            SensitivitySettings.parse(a.sensitivity, in_default_run=True),
            StatsSettings.parse(a.stats),
        ),
    ),
    "search-round": (
        search_steps.search_round.__doc__,
        {
            **_RESULTS,
            **_BATCHES,
            **_GEOMETRY,
            **_SEARCH,
            "--round": {"type": int, "required": True, "help": "the round to record (1, 2, ...)"},
            "--config": {"required": True, "help": "the zoo config, as the zoo step takes it"},
            "--models-per-job": {"type": int, "required": True, "help": "models per training job"},
        },
        lambda a: search_steps.search_round(
            Layout(a.results),
            a.round,
            a.batches,
            SearchSettings.parse(a.search),
            json.loads(a.config),
            _geometry(a),
            EmbeddingSettings.parse(a.embedding),
            a.models_per_job,
        ),
    ),
    "search-report": (
        search_steps.search_report.__doc__,
        {**_RESULTS, **_BATCHES, **_GEOMETRY, **_SEARCH},
        lambda a: search_steps.search_report(
            Layout(a.results),
            a.batches,
            SearchSettings.parse(a.search),
            _geometry(a),
            EmbeddingSettings.parse(a.embedding),
        ),
    ),
    "search-benchmark": (
        search_steps.search_benchmark.__doc__,
        {
            **_RESULTS,
            **_BATCHES,
            "--benchmark": {"required": True, "help": "the search_benchmark section (JSON)"},
        },
        lambda a: search_steps.search_benchmark(
            Layout(a.results), a.batches, SearchBenchmarkSettings.parse(a.benchmark)
        ),
    ),
    "map": (
        figures_steps.interactive_map.__doc__,
        _RESULTS,
        lambda a: figures_steps.interactive_map(Layout(a.results)),
    ),
    "figures": (
        figures_steps.figures.__doc__,
        {
            **_RESULTS,
            **_BASELINES,
            "--threads": {"type": int, "default": 1, "help": "processes rendering figures"},
        },
        lambda a: figures_steps.figures(Layout(a.results), a.baselines, a.threads),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnmanifold",
        description="Map the manifold of neural networks. The Snakemake workflow calls these "
        "steps; run `snakemake` (or `make run`) for the whole pipeline.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (doc, arguments, _) in COMMANDS.items():
        summary = doc.strip().splitlines()[0]
        p = sub.add_parser(name, help=summary, description=doc)
        for flag, options in arguments.items():
            p.add_argument(flag, **options)
    return parser


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
        COMMANDS[args.command][2](args)
    except UserError as err:
        log.error("%s", err)
        sys.exit(1)
