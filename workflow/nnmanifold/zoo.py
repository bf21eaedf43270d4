"""Expand a declarative zoo spec (grid or random, times seeds) into models with stable ids."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from nnmanifold.settings import DataSettings
from nnmanifold.storage import content_hash

#: Hyperparameters each architecture uses; the others are dropped from its spec (and its id).
ARCH_KEYS = {
    "mlp": ("depth", "width", "activation", "dropout"),
    "cnn": ("depth", "channels", "width", "activation", "dropout"),
}
TRAIN_KEYS = ("optimizer", "lr", "weight_decay", "momentum", "batch_size", "epochs")
INT_KEYS = {"depth", "width", "channels", "batch_size", "epochs"}
#: What describes a configuration (the seed is not a hyperparameter here).
HYPERPARAMETERS = ("arch", *ARCH_KEYS["cnn"], *TRAIN_KEYS)
#: Columns of the zoo table, in order.
COLUMNS = ("model_id", "dataset", *HYPERPARAMETERS, "seed", "spec")


def model_id(spec: dict[str, Any]) -> str:
    """A short stable hash of the canonical JSON of a model spec."""
    return content_hash(spec, 12)


def expand(config: dict[str, Any]) -> list[dict[str, Any]]:
    """All model specs of the zoo described by a validated config, in a stable order."""
    zoo = config["zoo"]
    configurations = _grid(zoo["space"]) if zoo["mode"] == "grid" else _random(zoo)
    specs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for hp in configurations:
        for seed in zoo["seeds"]:
            one = spec(hp, seed, config)
            if one["model_id"] not in seen:
                seen.add(one["model_id"])
                specs.append(one)
    return specs


def spec(hp: dict[str, Any], seed: int, config: dict[str, Any]) -> dict[str, Any]:
    """One model's canonical spec with its id: the same configuration, seed and data always get
    the same id, whether it comes from the zoo or from a search round."""
    canonical = _canonical(hp, seed, config)
    return {"model_id": model_id(canonical), **canonical}


def table(specs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The zoo as a table: one row per model, hyperparameters as columns, full spec as JSON."""
    rows = []
    for s in specs:
        spec = {k: v for k, v in s.items() if k != "model_id"}
        row = {k: s.get(k) for k in COLUMNS if k not in ("dataset", "spec")}
        row.update(dataset=s["data"]["name"], spec=json.dumps(spec, sort_keys=True))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def batches(ids: Sequence[str], per_job: int) -> dict[str, list[str]]:
    """Chunk ids (in zoo order) into training jobs named by a hash of their members.

    A chunk keeps its name while its members are unchanged, so editing one model reruns one job.
    """
    chunks = [list(ids[i : i + per_job]) for i in range(0, len(ids), per_job)]
    return {hashlib.sha256("+".join(c).encode()).hexdigest()[:10]: c for c in chunks}


def _canonical(hp: dict[str, Any], seed: int, config: dict[str, Any]) -> dict[str, Any]:
    used = {k: hp[k] for k in (*ARCH_KEYS[hp["arch"]], *TRAIN_KEYS)}
    if used["optimizer"] != "sgd":
        used.pop("momentum")
    for key in used:
        if key in INT_KEYS:
            used[key] = int(used[key])
        elif isinstance(used[key], float | int) and not isinstance(used[key], bool):
            used[key] = float(used[key])
    return {
        "arch": hp["arch"],
        **used,
        "seed": int(seed),
        "data": DataSettings.of(config["data"]).training_identity(),
        "code_version": config["code_version"],
    }


def _grid(space: dict[str, list]) -> list[dict[str, Any]]:
    keys = sorted(space)
    return [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(space[k] for k in keys))
    ]


def _random(zoo: dict[str, Any]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(zoo["sample_seed"])
    keys = sorted(zoo["space"])
    return [{k: _draw(rng, k, zoo["space"][k]) for k in keys} for _ in range(zoo["n_samples"])]


def _draw(rng: np.random.Generator, key: str, axis: list | dict) -> Any:
    if isinstance(axis, list):
        value = axis[rng.integers(len(axis))]
        return value.item() if hasattr(value, "item") else value
    low, high = axis["low"], axis["high"]
    if axis.get("log"):
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return int(round(value)) if key in INT_KEYS else float(value)
