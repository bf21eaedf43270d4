import json
import os
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod

sys.path.insert(0, f"{workflow.basedir}/workflow")

from nnmanifold import UserError
from nnmanifold import zoo as zoo_lib
from nnmanifold.config import ConfigError, validate
from nnmanifold.embedding import MIN_MODELS
from nnmanifold.storage import missing_files

try:
    config.update(validate(config))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

R = config["results"]
SPECS = {s["model_id"]: s for s in zoo_lib.expand(config)}
MODEL_IDS = list(SPECS)
BATCHES = zoo_lib.batches(MODEL_IDS, config["train"]["models_per_job"])

# The rules run `python -m nnmanifold ...`: find the package from its source folder, and run the
# Python that runs Snakemake (the project's venv) unless rules get conda environments.
_prefix = (
    f"export PYTHONPATH={workflow.basedir}/workflow${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    _prefix += f"export PATH={os.path.dirname(sys.executable)}:$PATH; "
shell.prefix(_prefix)


def warn_missing(manifests):
    """Name per-model files that a finished job's manifest lists but that were deleted."""
    for manifest in manifests:
        if not os.path.exists(manifest):
            continue
        try:
            missing = missing_files(manifest)
        except UserError as err:
            raise WorkflowError(str(err)) from None
        if missing:
            logger.warning(
                f"{', '.join(missing)} listed in {manifest} no longer exist; to regenerate: "
                f"snakemake --forcerun {manifest}"
            )


if len(SPECS) < MIN_MODELS:
    logger.warning(
        f"the zoo has {len(SPECS)} models: training runs, but the map needs at least {MIN_MODELS}"
    )


wildcard_constraints:
    batch="[0-9a-f]{10}",


def as_param(value):
    """Canonical JSON for a parameter: key order and unrelated keys never rerun a job."""
    return json.dumps(value, sort_keys=True)


#: What results depend on; where data lives and how jobs run go to the shell command instead.
DATA_PARAM = as_param(
    {k: v for k, v in config["data"].items() if k not in ("data_dir", "download")}
)
OPERATOR_PARAM = as_param(
    {k: config["geometry"][k] for k in ("sigma", "normalization", "t", "layer")}
)
DATA_ACCESS = f"--data-dir {config['data']['data_dir']!r}" + (
    " --download" if config["data"]["download"] else ""
)


def final_targets():
    targets = [
        f"{R}/figures/summary.png",
        f"{R}/stats/map_informativeness.csv",
        f"{R}/provenance.json",
    ]
    if config["sensitivity"]["in_default_run"]:
        targets.append(f"{R}/stats/sensitivity.csv")
    return targets


def train_manifests():
    return [f"{R}/train/{b}.json" for b in BATCHES]


def previous_outputs(*names):
    """A per-batch job's per-model files from an earlier run, as an input function: a file
    changed or truncated since (newer than the job's manifest) makes the job rerun."""

    def existing(wildcards):
        paths = [
            f"{R}/models/{m}/{name}" for m in BATCHES[wildcards.batch] for name in names
        ]
        return [p for p in paths if os.path.exists(p)]

    return existing


def feature_manifests():
    return [f"{R}/features/{b}.json" for b in BATCHES]


def train_gpus():
    """GPUs a training job asks the scheduler for (0 when training is pinned to the CPU)."""
    return 0 if config["train"]["accelerator"] == "cpu" else 1


warn_missing(train_manifests() + feature_manifests())


def zoo_summary_line(path):
    """The run's headline (models ok/diverged/failed, near chance) for the end of the log."""
    import pandas as pd

    from nnmanifold.stats import summary_line

    return summary_line(pd.read_csv(path))
