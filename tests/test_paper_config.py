"""Dry runs on the slurm profile: the paper zoo and the default run give training jobs a GPU."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, SNAKEMAKE

from nnmanifold.core.config import load_config
from nnmanifold.zoo import specs as zoo


def _train_resources(config: Path, workdir: Path) -> list[str]:
    """The resources line of every train job in a dry run (nothing runs, nothing is downloaded)."""
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-n"]
    cmd += ["--workflow-profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(config)]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"dry run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    resources, in_train = [], False
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("rule "):
            in_train = line == "rule train:"
        elif in_train and line.startswith("resources:"):
            resources.append(line)
    assert sorted(p.name for p in workdir.iterdir()) == [".snakemake"]  # no results, no data
    return resources


def _n_train_jobs(config: dict) -> int:
    return len(zoo.batches(zoo.expand(config), config["train"]["models_per_job"]))


def test_paper_config_is_the_mnist_zoo_at_scale() -> None:
    config = load_config(ROOT / "config" / "paper.yaml")
    specs = zoo.expand(config)
    archs = [spec["arch"] for spec in specs]
    assert archs.count("mlp") >= 200 and archs.count("cnn") >= 200 and archs.count("resnet") >= 72
    # the 432 MLP and CNN ids from before ResNets joined, hashed in sorted order
    old = sorted(s["model_id"] for s in specs if s["arch"] != "resnet")
    assert hashlib.sha256(" ".join(old).encode()).hexdigest()[:16] == "aeef201f7867f638"
    assert (config["data"]["name"], config["data"]["n_probe"]) == ("mnist", 1000)
    assert config["train"]["accelerator"] == "gpu"


def test_resnet_config_is_a_cifar10_resnet_zoo() -> None:
    config = load_config(ROOT / "config" / "resnet.yaml")
    specs = zoo.expand(config)
    assert {s["arch"] for s in specs} == {"resnet"} and config["data"]["name"] == "cifar10"
    assert {6 * s["blocks"] + 2 for s in specs} == {8, 14, 20}
    assert {s.get("augment") for s in specs} == {None, "standard"}


@pytest.mark.parametrize("name", ["paper.yaml", "config.yaml", "resnet.yaml"])
def test_slurm_dry_run_gives_every_train_job_a_gpu(name: str, tmp_path: Path) -> None:
    config = ROOT / "config" / name
    resources = _train_resources(config, tmp_path)
    assert len(resources) == _n_train_jobs(load_config(config))
    for line in resources:
        assert "gpu=1" in line.split(", ") and "slurm_partition=gpu" in line, line
