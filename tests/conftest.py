"""Shared fixtures: tiny configs, the digits data with a probe set, a runner for the real
Snakemake workflow, and one for a training process killed mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
#: The resume tests run on the CPU; bench/gpu_check.sh --part resume runs them on CUDA.
ACCELERATOR = os.environ.get("NNMANIFOLD_TEST_ACCELERATOR", "cpu")

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


def digits_with_probe(data_section: dict | None = None) -> tuple:
    """The digits data set (as ``data_section`` sets it up) and a 50-point probe set."""
    from nnmanifold.core.config import validate
    from nnmanifold.zoo import data

    ds = data.load_dataset(validate({"data": data_section or {}})["data"])
    idx = data.probe_indices(ds.y_test, 50, 0)
    probe = {"indices": idx, "labels": ds.y_test[idx], "x": ds.x_test[idx], "dataset": "digits"}
    probe["hash"] = data.probe_hash("digits", idx, probe["labels"], probe["x"])
    return ds, probe


@pytest.fixture(scope="module")
def digits() -> tuple:
    return digits_with_probe()


#: The environment of the processes the tests start: this checkout's package and tests first,
#: as absolute paths, whatever the caller's PYTHONPATH or editable install points at.
CHILD_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT / "workflow"), str(ROOT / "tests")]),
}
#: Prepended to a killed script: records which nnmanifold package the process imported.
RECORD_IMPORT = (
    "import pathlib, nnmanifold\n"
    "pathlib.Path(__file__).with_name('imported.txt').write_text(nnmanifold.__file__)\n"
)


def run_killed(workdir: Path, script: str, job: dict, ds, probe: dict) -> Path:
    """Run ``script`` in a fresh process that finds the data in ``job.npz`` and its arguments in
    ``job.json``; it must end by SIGKILL (the script kills itself mid-run) and must have imported
    this checkout's package, whose file is returned."""
    workdir = workdir.resolve()
    np.savez(
        workdir / "job.npz",
        x_train=ds.x_train,
        y_train=ds.y_train,
        x_test=ds.x_test,
        y_test=ds.y_test,
        px=probe["x"],
    )
    (workdir / "job.json").write_text(json.dumps({**job, "hash": probe["hash"]}))
    (workdir / "killer.py").write_text(RECORD_IMPORT + script)
    proc = subprocess.run(
        [sys.executable, str(workdir / "killer.py")],
        cwd=workdir,
        env=CHILD_ENV,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    imported = Path((workdir / "imported.txt").read_text())
    expected = ROOT / "workflow" / "nnmanifold" / "__init__.py"
    assert imported == expected, f"the killed process imported {imported}, not {expected}"
    return imported
