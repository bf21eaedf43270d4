"""A config must never run code: hostile values in every string-valued key either work as the
literal text they are (paths) or are refused before any job, naming the key."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, snakemake, write_config

from nnmanifold.core.config import ConfigError, load_schema, validate

#: Shell metacharacters that would run `touch PWNED` if a value reached a shell unquoted.
HOSTILE = 'it\'s "q" $(touch PWNED) `touch PWNED`; touch PWNED & x'
#: Keys that name paths: any text but control characters is a valid (if odd) path.
PATH_KEYS = {"results", "data.data_dir", "data.npz_path"}


def _leaves(schema: dict, prefix: str = "") -> Iterator[str]:
    """Every configurable key of the schema, dotted (``zoo.space.lr``)."""
    for name, sub in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        if sub.get("type") == "object" and "properties" in sub:
            yield from _leaves(sub, f"{key}.")
        else:
            yield key


def _with(config: dict, key: str, value: object) -> dict:
    config = copy.deepcopy(config)
    *parents, last = key.split(".")
    section = config
    for part in parents:
        section = section.setdefault(part, {})
    section[last] = value
    return config


def _no_pwned(*folders: Path) -> None:
    found = [p for folder in folders for p in folder.rglob("*") if p.name == "PWNED"]
    assert not found, f"a config value ran a shell command: {found}"


@pytest.mark.parametrize("value", [HOSTILE, f"a\n{HOSTILE}", "x\x00y", "{wildcard}"])
def test_every_key_refuses_a_hostile_value_or_keeps_it_literally(value: str) -> None:
    keys = list(_leaves(load_schema()))
    assert PATH_KEYS <= set(keys) and "geometry.layer" in keys
    for key in keys:
        config = _with({}, key, value)
        literal = (
            key in PATH_KEYS
            and not any(c in value for c in "\n\x00")
            and (key != "results" or "{" not in value)
        )
        if literal:
            filled = validate(config)
            section = filled
            for part in key.split("."):
                section = section[part]
            assert section == value, key  # kept as the very text given, never re-read
        else:
            with pytest.raises(ConfigError, match=f"config key '{key}'"):
                validate(config)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("results", f"out\n{HOSTILE}"),
        ("data.data_dir", f"data\r{HOSTILE}"),
        ("data.npz_path", f"x\t{HOSTILE}.npz"),
        ("geometry.layer", f"fc1; {HOSTILE}"),
    ],
)
def test_a_refused_value_stops_the_workflow_before_any_job(
    tmp_path: Path, key: str, value: str
) -> None:
    write_config(tmp_path, _with(TINY, key, value))
    proc = snakemake(tmp_path, check=False)
    assert proc.returncode != 0
    assert f"config key '{key}'" in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) in (
        ["config.yaml"],
        [".snakemake", "config.yaml"],
    )
    _no_pwned(tmp_path)


def test_hostile_paths_are_used_literally_and_run_nothing(tmp_path: Path) -> None:
    results, data_dir, npz = f"out {HOSTILE}", f"data {HOSTILE}", f"set {HOSTILE}.npz"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 3
    y_train, y_test = np.arange(120) % 3, np.arange(60) % 3
    np.savez(
        tmp_path / npz,
        x_train=(centres[y_train] + rng.normal(size=(120, 6))).astype(np.float32),
        y_train=y_train,
        x_test=(centres[y_test] + rng.normal(size=(60, 6))).astype(np.float32),
        y_test=y_test,
    )
    config = copy.deepcopy(TINY)
    config["results"] = results
    config["data"] = {"name": "npz", "npz_path": npz, "data_dir": data_dir, "n_probe": 30}
    write_config(tmp_path, config)
    snakemake(tmp_path, "trained")
    _no_pwned(tmp_path)
    manifests = list((tmp_path / results / "train").glob("*.json"))
    rows = [row for m in manifests for row in json.loads(m.read_text())]
    assert len(rows) == 2 and all(row["status"] == "ok" for row in rows)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        ["config.yaml", npz, results]
    )
