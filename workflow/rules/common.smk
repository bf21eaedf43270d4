import json
import sys

sys.path.insert(0, f"{workflow.basedir}/workflow")

from nnmanifold import zoo as zoo_lib
from nnmanifold.config import ConfigError, validate

try:
    config.update(validate(config))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

R = config["results"]
SPECS = {s["model_id"]: s for s in zoo_lib.expand(config)}
MODEL_IDS = list(SPECS)
BATCHES = zoo_lib.batches(MODEL_IDS, config["train"]["models_per_job"])

# The rules run `python -m nnmanifold ...`; this finds the package in conda envs too.
shell.prefix(
    f"export PYTHONPATH={workflow.basedir}/workflow${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)


wildcard_constraints:
    batch="[0-9a-f]{10}",


def final_targets():
    return [f"{R}/figures/summary.png", f"{R}/stats/map_informativeness.csv"]


def train_manifests():
    return [f"{R}/train/{b}.json" for b in BATCHES]


def feature_manifests():
    return [f"{R}/features/{b}.json" for b in BATCHES]


def train_gpus():
    """GPUs a training job asks the scheduler for (0 when training is pinned to the CPU)."""
    return 0 if config["train"]["accelerator"] == "cpu" else 1
