"""Expand a declarative zoo spec (grid or random, times seeds) into models with stable ids."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nnmanifold.core.errors import UserError
from nnmanifold.core.settings import DataSettings
from nnmanifold.core.storage import content_hash
from nnmanifold.zoo.architecture import layer_names

if TYPE_CHECKING:  # imported where the table is built: a training job never needs pandas
    import pandas as pd

#: Hyperparameters each architecture uses; the others are dropped from its spec (and its id).
ARCH_KEYS = {
    "mlp": ("depth", "width", "activation", "dropout"),
    "cnn": ("depth", "channels", "width", "activation", "dropout"),
    "resnet": ("blocks", "channels", "activation"),
}
#: Architectures that take images; ``augment`` applies to them, and enters a spec only when
#: it is not "none" (so ids from before it stay as they were).
IMAGE_ARCHS = ("cnn", "resnet")
TRAIN_KEYS = ("optimizer", "lr", "weight_decay", "momentum", "batch_size", "epochs")
INT_KEYS = {"depth", "width", "channels", "batch_size", "epochs", "blocks"}
#: What describes a configuration (the seed is not a hyperparameter here).
HYPERPARAMETERS = ("arch", *ARCH_KEYS["cnn"], "blocks", "augment", *TRAIN_KEYS)
#: Columns of the zoo table, in order.
COLUMNS = ("model_id", "dataset", *HYPERPARAMETERS, "seed", "spec")


def model_id(spec: dict[str, Any]) -> str:
    """A short stable hash of the canonical JSON of a model spec."""
    return content_hash(spec, 12)


def expand(config: dict[str, Any]) -> list[dict[str, Any]]:
    """All model specs of the zoo described by a validated config, in a stable order."""
    zoo = config["zoo"]
    if zoo["mode"] == "none":
        return []
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
    import pandas as pd

    rows = []
    for s in specs:
        spec = {k: v for k, v in s.items() if k != "model_id"}
        row = {k: s.get(k) for k in COLUMNS if k not in ("dataset", "spec")}
        row.update(dataset=s["data"]["name"], spec=json.dumps(spec, sort_keys=True))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def check_layer(specs: Sequence[dict[str, Any]], layer: str | None) -> None:
    """Stop before training if ``geometry.layer`` names a layer some models will not have."""
    if layer is None:
        return
    lacking = sorted({_depth(s) for s in specs if layer not in layer_names(s)})
    if not lacking:
        return
    n = sum(layer not in layer_names(s) for s in specs)
    shared = set.intersection(*(set(layer_names(s)) for s in specs))
    which = "; ".join(
        f"{arch} of {key} {value} (layers {', '.join(layer_names({'arch': arch, key: value}))})"
        for arch, key, value in lacking
    )
    fix = (
        f"set geometry.layer to one every model has ({', '.join(sorted(shared))}), or to null"
        if shared
        else "no layer is shared by every model: set geometry.layer to null"
    )
    raise UserError(
        f"config key 'geometry.layer': {n} of {len(specs)} models have no layer {layer!r}: "
        f"{which}. Fix: {fix} (each model's penultimate layer)"
    )


def _depth(spec: dict[str, Any]) -> tuple[str, str, int]:
    """(architecture, the key that sets its layers, its value): depth, or a ResNet's blocks."""
    key = "blocks" if spec["arch"] == "resnet" else "depth"
    return spec["arch"], key, spec[key]


#: What the models of one vectorised training group share (seed, lr, momentum, weight decay,
#: dropout and epochs may differ); see ``group``.
SHAPE_KEYS = ("arch", "depth", "width", "channels", "activation", "batch_size", "optimizer")
#: Leading bits of a model's job key taken from its shape (the rest are its id's 48 bits).
SHAPE_BITS = 16
#: A job's name: "b" and the binary prefix its members' job keys share (search round k's
#: training jobs "r<k>b", extraction jobs of mapped and placed networks "xb" and "pb").
BATCH_PATTERN = "(?:r[0-9]+|x|p)?b[01]{0,64}"


def shape_key(spec: dict[str, Any]) -> str:
    """What a spec must share with the other members of its training group, as a string."""
    shape = {k: spec.get(k) for k in SHAPE_KEYS}
    shape.update({k: spec[k] for k in ("blocks", "augment") if k in spec})  # only where used
    return json.dumps({**shape, "data": spec["data"]}, sort_keys=True)


#: Padded keys, by the architectures that pad (``train.padding``).
PADDED = {"mlp": ("width",), "cnn": ("width", "channels")}
#: Keys members of one group may differ in without padding (``stacked.MemberActivation``).
PER_MEMBER = {"mlp": ("activation",), "cnn": ("activation",)}


def pad_key(spec: dict[str, Any]) -> str:
    """What members must share to be padded into one training group: the shape apart from
    padded sizes and per-member keys (here, without torch: the plan counts a job's groups)."""
    free = PADDED.get(spec["arch"], ()) + PER_MEMBER.get(spec["arch"], ())
    return shape_key({k: v for k, v in spec.items() if k not in free})


def job_key(spec: dict[str, Any]) -> str:
    """A model's place among training jobs, as bits: a hash of its shape, then its id.

    Same-shaped models therefore share jobs (and train as one vectorised group) until their
    bucket must split; within a shape, the id spreads them evenly.
    """
    return hex_bits(content_hash(shape_key(spec), SHAPE_BITS // 4)) + hex_bits(spec["model_id"])


def batches(
    specs: Sequence[dict[str, Any]],
    per_job: int,
    prefix: str = "b",
    key: Callable[[dict[str, Any]], str] | None = None,
) -> dict[str, list[str]]:
    """Training jobs as buckets of model ids: a bucket holds the models whose job keys
    (``job_key``: shape, then id) start with one binary prefix (named ``<prefix><bits>``; search
    round k uses ``r<k>b``), and a bucket of more than ``per_job`` models is split in two.

    Which job holds a model depends on the set of specs alone (never on order, device or
    hardware), so adding or removing a model changes the bucket that holds it and no other, unless
    that bucket splits or merges, which changes only the models under its prefix. Members keep
    zoo order. ``key`` replaces ``job_key`` (networks from elsewhere: ``extract.sources``); its
    bit strings must all have one length.
    """
    if per_job < 1:
        raise ValueError(f"per_job must be at least 1, got {per_job}")
    bits = {s["model_id"]: (key or job_key)(s) for s in specs}
    jobs: dict[str, list[str]] = {}

    def split(head: str, members: list[str]) -> None:
        if len(members) <= per_job or len(head) == len(bits[members[0]]):
            jobs[f"{prefix}{head}"] = members
            return
        for bit in "01":
            if side := [m for m in members if bits[m][len(head)] == bit]:
                split(head + bit, side)

    if bits:
        split("", list(bits))
    return dict(sorted(jobs.items()))


def hex_bits(model_id: str) -> str:
    """A hexadecimal id or hash as a string of bits, most significant first."""
    try:
        return bin(int(model_id, 16))[2:].zfill(4 * len(model_id))
    except ValueError:
        raise ValueError(f"model id {model_id!r} is not hexadecimal (see zoo.model_id)") from None


def _canonical(hp: dict[str, Any], seed: int, config: dict[str, Any]) -> dict[str, Any]:
    used = {k: hp[k] for k in (*ARCH_KEYS[hp["arch"]], *TRAIN_KEYS)}
    if hp["arch"] in IMAGE_ARCHS and hp.get("augment", "none") != "none":
        used["augment"] = hp["augment"]
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
