"""Shared fixtures: tiny configs and a runner for the real Snakemake workflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

TINY = {
    "data": {"name": "digits", "n_probe": 50},
    "zoo": {
        "seeds": [0],
        "space": {"lr": [0.1, 0.01], "epochs": [1], "width": [16], "depth": [1]},
    },
    "train": {"models_per_job": 1, "accelerator": "cpu"},
    "stats": {"n_permutations": 19, "n_bootstrap": 20},
    "features": {"max_points": 30},
}


def write_config(directory: Path, config: dict) -> Path:
    """Write a config YAML into ``directory`` and return its path."""
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the project's Snakefile on ``workdir``/config.yaml; outputs land in ``workdir``."""
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(ROOT / "Snakefile"),
        "--cores",
        "2",
        *args,
        "--configfile",
        "config.yaml",
    ]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def planned_jobs(dry_run_stdout: str) -> dict[str, int]:
    """Jobs per rule in the job-stats table of a dry run ("total" and "all" left out)."""
    jobs = {}
    for line in dry_run_stdout.splitlines():
        parts = line.split()
        if (
            len(parts) == 2
            and parts[0].isidentifier()  # not a job's "jobid: 0" line
            and parts[1].isdigit()
            and parts[0] not in ("total", "all")
        ):
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="session")
def mapped_zoo(tmp_path_factory):
    """A finished tiny pipeline with one diverging model (5 models, 1 epoch), shared by the tests
    that read a real run (each leaves it complete)."""
    import json

    workdir = tmp_path_factory.mktemp("zoo")
    config = json.loads(json.dumps(TINY))
    config["zoo"]["space"]["lr"] = [0.3, 0.1, 0.03, 0.01, 1.0e10]
    config["train"]["models_per_job"] = 2
    write_config(workdir, config)
    (workdir / "run.log").write_text(snakemake(workdir).stderr)
    return workdir, config


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, dict]:
    """A working directory holding a tiny config (2 MLPs, 1 epoch, 50 probe points)."""
    import copy

    config = copy.deepcopy(TINY)
    write_config(tmp_path, config)
    return tmp_path, config
