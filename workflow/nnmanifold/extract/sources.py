"""Networks trained elsewhere, resolved from the config's ``networks`` and ``place`` groups.

A group names files by a glob (checkpoints with a factory, TorchScript archives, or activation
arrays); each file is one network. Its id is readable and stable, ``<group>-<file stem>`` in the
characters ``[A-Za-z0-9_.-]``, and its spec records the file's content hash beside the group's
settings: the spec is what its extraction depends on, so a changed file re-extracts that network
alone. No torch here: the workflow resolves groups while it plans.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnmanifold.core.config import NETWORK_KINDS
from nnmanifold.core.errors import UserError
from nnmanifold.core.storage import FileFacts, content_hash, file_hash
from nnmanifold.zoo import specs as zoo_lib

#: Characters outside a network id's alphabet, replaced by "_".
_OUTSIDE_ID = re.compile(r"[^A-Za-z0-9_.-]")
#: A metadata column that fills the test accuracy of a network without n_classes logits.
ACCURACY_KEY = "test_accuracy"
#: Keys of an activations file (.npz): the (n_probe, d) array and the probe set's hash.
ARRAY_KEY, PROBE_KEY = "activations", "probe_hash"


def network_id(group: str, path: str | os.PathLike) -> str:
    """``<group>-<file stem>``, characters outside ``[A-Za-z0-9_.-]`` replaced by ``_``."""
    return f"{group}-{_OUTSIDE_ID.sub('_', Path(path).stem)}"


def network_ids(groups: Sequence[dict[str, Any]]) -> set[str]:
    """The ids of every file the groups match, without reading the files (``clean`` keeps them)."""
    return {
        network_id(group["name"], path)
        for group in groups
        for path in glob.glob(pattern_of(group), recursive=True)
    }


def pattern_of(group: dict[str, Any]) -> str:
    """The glob naming a group's files (its checkpoints, archives or arrays)."""
    kind = kind_of(group)
    return group["checkpoints" if kind == "factory" else kind]


def kind_of(group: dict[str, Any]) -> str:
    """``factory``, ``torchscript`` or ``activations`` (the config allows exactly one)."""
    return next(k for k in NETWORK_KINDS if k in group)


def resolve(
    groups: Sequence[dict[str, Any]],
    section: str = "networks",
    facts: FileFacts | None = None,
) -> list[dict[str, Any]]:
    """One spec per matching file of each group, in group then file order; each file's content
    hash as ``facts`` remember it while the file is unchanged.

    Raises UserError for a pattern that matches nothing and for two files that give one id.
    """
    facts = FileFacts() if facts is None else facts
    specs: list[dict[str, Any]] = []
    for group in groups:
        kind = kind_of(group)
        pattern = pattern_of(group)
        files = sorted(glob.glob(pattern, recursive=True))
        if not files:
            raise UserError(
                f"config key '{section}', group {group['name']!r}: {pattern!r} matches no file "
                f"(relative to {os.getcwd()}); fix the pattern or run from the folder it names"
            )
        settings = {k: v for k, v in group.items() if k not in ("name", "checkpoints", kind)}
        if kind == "factory":
            settings["factory"] = group["factory"]
        for path in files:
            spec = {
                "model_id": network_id(group["name"], path),
                "group": group["name"],
                "kind": kind,
                "path": path,
                "hash": facts.get(path, "hash", lambda p=path: file_hash(p)),
                **settings,
            }
            if group.get("metadata"):
                spec["metadata"] = read_metadata(
                    group["metadata"].replace("{stem}", Path(path).stem)
                )
            specs.append(spec)
    _check_unique(specs, section)
    return specs


def _check_unique(specs: Sequence[dict[str, Any]], section: str) -> None:
    paths: dict[str, str] = {}
    for spec in specs:
        if (other := paths.setdefault(spec["model_id"], spec["path"])) != spec["path"]:
            raise UserError(
                f"config key '{section}': {other} and {spec['path']} both give the network id "
                f"{spec['model_id']!r} (<group>-<file stem>); rename one or put them in two groups"
            )


def read_metadata(path: str) -> dict[str, Any]:
    """One network's metadata: a JSON object, or a CSV file's first row, of scalar values."""
    try:
        if path.endswith(".csv"):
            rows = pd.read_csv(path).to_dict("records")
            values = rows[0] if rows else {}
        else:
            values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(
            f"metadata file {path}: unreadable ({err}); give a JSON object or a one-row CSV per "
            "network ({stem} in the pattern is the network file's stem)"
        ) from err
    if not isinstance(values, dict) or not all(
        isinstance(v, str | int | float | bool) or v is None for v in values.values()
    ):
        raise UserError(f"metadata file {path}: give an object of names to numbers or text")
    return {str(k): (v.item() if hasattr(v, "item") else v) for k, v in values.items()}


def job_key(spec: dict[str, Any]) -> str:
    """A network's place among extraction jobs: its group's hash, then its id's, as bits (a
    group's networks load the same way, so they share jobs until a job must split)."""
    return zoo_lib.hex_bits(content_hash(spec["group"], 4)) + zoo_lib.hex_bits(
        content_hash(spec["model_id"], 12)
    )


def batches(specs: Sequence[dict[str, Any]], per_job: int, prefix: str) -> dict[str, list[str]]:
    """Extraction jobs as buckets of network ids (``zoo.specs.batches`` with ``job_key``)."""
    return zoo_lib.batches(specs, per_job, prefix=prefix, key=job_key)


def read_array(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """An activations file: the (n_probe, d) array and the hash of the probe it was taken on."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return np.asarray(f[ARRAY_KEY]), str(f[PROBE_KEY])
    except (OSError, KeyError, ValueError) as err:
        raise UserError(
            f"activations file {path}: not an .npz with arrays {ARRAY_KEY!r} (n_probe x d) and "
            f"{PROBE_KEY!r} ({err}); `nnmanifold export-probe` writes the probe inputs and hash"
        ) from err


def array_facts(path: str | os.PathLike) -> tuple[list[int], str]:
    """An activations file's array shape and probe hash (what ``check_array`` checks)."""
    values, found = read_array(path)
    return list(values.shape), found


def check_array(
    path: str, shape: Sequence[int], found: str, n_probe: int, probe: str | None
) -> None:
    """Refuse an activations array of the wrong ``shape``, or one taken on another probe set."""
    if len(shape) != 2 or shape[0] != n_probe:
        raise UserError(
            f"activations file {path}: shape {tuple(shape)}, expected ({n_probe}, d): one row per "
            "probe point, in the probe set's order (`nnmanifold export-probe`)"
        )
    if probe is not None and found != probe:
        raise UserError(
            f"activations file {path} was taken on probe set {found}, not this run's {probe}; "
            "recompute it on the inputs `nnmanifold export-probe` writes"
        )
