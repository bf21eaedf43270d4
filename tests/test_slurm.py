"""The workflow through profiles/slurm on a real single-node SLURM, started by .ci/slurm.sh."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pytest
from conftest import ROOT, snakemake, write_config

from nnmanifold.zoo import specs as zoo

pytestmark = pytest.mark.slurm

SLURM_SH = ROOT / ".ci" / "slurm.sh"
CANNOT_INSTALL = 3  # slurm.sh's exit status when apt-get cannot install slurm-wlm and munge
MIN_JOB_AGE = 3600  # seconds finished jobs must stay in squeue: far beyond a slow run


def _unavailable(reason: str) -> NoReturn:
    """Skip; but in CI (CI=true), where the cluster must start, fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _keeps_finished_jobs() -> bool:
    """Whether the running cluster lists finished jobs long enough for a slow run (squeue is
    this test's only record: there is no sacct)."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    age = re.search(r"MinJobAge\s*=\s*(\d+)", config.stdout)
    return age is not None and int(age.group(1)) >= MIN_JOB_AGE


@pytest.fixture(scope="session")
def slurm() -> Iterator[None]:
    """A running local SLURM; stopped afterwards only if this fixture started it."""
    status = subprocess.run([SLURM_SH, "status"], capture_output=True)
    if status.returncode == 0 and _keeps_finished_jobs():
        yield
        return
    if os.geteuid() != 0:
        _unavailable("a local SLURM needs root (.ci/slurm.sh installs packages, starts daemons)")
    start = subprocess.run([SLURM_SH, "start"], capture_output=True, text=True)
    if start.returncode == CANNOT_INSTALL:
        _unavailable(f"SLURM cannot be installed here: {start.stderr.strip()}")
    assert start.returncode == 0, f".ci/slurm.sh start failed:\n{start.stdout}{start.stderr}"
    assert _keeps_finished_jobs(), "slurm.sh must set MinJobAge high: squeue is the only record"
    yield
    subprocess.run([SLURM_SH, "stop"], check=True, capture_output=True)


def test_tiny_zoo_trains_on_slurm_with_train_jobs_grouped_on_one_gpu(
    slurm: None, tmp_path: Path
) -> None:
    # accelerator auto: train jobs request a GPU (the cluster's are pretend) and train on the CPU
    config = {
        "data": {"name": "digits", "n_probe": 50},
        "zoo": {"seeds": [0, 1], "space": {"width": [8, 16], "depth": [1], "epochs": [1]}},
        "train": {"models_per_job": 2, "accelerator": "auto"},
    }
    write_config(tmp_path, config)
    proc = snakemake(
        tmp_path,
        "trained",
        "--workflow-profile",
        str(ROOT / "profiles" / "slurm"),
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--slurm-status-command",
        "squeue",
    )
    log = proc.stdout + proc.stderr

    # one SLURM job each for zoo and probe, and one for both train jobs, holding a single GPU
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    fields = "Comment:40,State:20,Partition:20,tres-per-job:40"
    squeue = ["squeue", "--states=all", "--noheader", "--name", run_id, "-O", fields]
    lines = subprocess.check_output(squeue, text=True).splitlines()
    jobs = sorted(tuple(line.split()) for line in lines)
    assert jobs == [
        ("rule_probe", "COMPLETED", "cpu", "N/A"),
        ("rule_train_train", "COMPLETED", "gpu", "gres:gpu:1"),
        ("rule_zoo", "COMPLETED", "cpu", "N/A"),
    ], log[-3000:]

    results = tmp_path / "results"
    table = pd.read_csv(results / "zoo.csv")
    ids = table["model_id"].tolist()
    assert len(ids) == 4
    manifests = [json.loads(p.read_text()) for p in (results / "train").glob("*.json")]
    specs = [{**json.loads(s), "model_id": m} for m, s in zip(ids, table["spec"], strict=True)]
    buckets = zoo.batches(specs, config["train"]["models_per_job"])
    assert sorted(len(m) for m in manifests) == sorted(len(b) for b in buckets.values())
    assert all(len(m) <= 2 for m in manifests)
    assert sorted(m["model_id"] for job in manifests for m in job) == sorted(ids)
    for model_id in ids:
        metrics = json.loads((results / "models" / model_id / "metrics.json").read_text())
        assert metrics["status"] == "ok", metrics
