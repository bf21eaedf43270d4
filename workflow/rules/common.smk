import json
import os
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod

sys.path.insert(0, f"{workflow.basedir}/workflow")

from nnmanifold import zoo as zoo_lib
from nnmanifold.config import ConfigError, validate
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


def warn_missing(folder):
    """Name per-model files that a finished job's manifest lists but that were deleted."""
    for manifest in sorted(Path(folder).glob("*.json")):
        if missing := missing_files(manifest):
            logger.warning(
                f"{', '.join(missing)} listed in {manifest} no longer exist; to regenerate: "
                f"snakemake --forcerun {manifest}"
            )


warn_missing(f"{R}/train")
warn_missing(f"{R}/features")


wildcard_constraints:
    batch="[0-9a-f]{10}",


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
