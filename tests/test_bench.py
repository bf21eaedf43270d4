"""The logic of the benchmark scripts that a GPU session runs unattended (bench/gpu_check.sh)."""

from __future__ import annotations

import importlib.util
import re
from datetime import datetime

from conftest import ROOT


def bench_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_phase_is_read_from_a_real_snakemake_log(mapped_zoo):
    """Every train job of a real run is found, and the phase lies within the run."""
    workdir, _ = mapped_zoo
    log = (workdir / "run.log").read_text()
    seconds, jobs = bench_script("train_pipeline").training_phase(log)
    assert jobs == len(list((workdir / "results" / "train").glob("*.json")))
    stamps = [
        datetime.strptime(m, "%a %b %d %H:%M:%S %Y")
        for m in re.findall(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", log, re.M)
    ]
    assert 0 <= seconds <= (max(stamps) - min(stamps)).total_seconds()


def test_gpu_wheels_carry_what_the_device_lacks_and_nothing_it_has():
    wheels = bench_script("gpu_wheels")
    packages = wheels.needed(wheels._requires("nnmanifold"))
    assert {"snakemake", "jsonschema", "phate", "ripser", "optuna", "mnist1d"} <= set(packages)
    assert not set(packages) & wheels.ON_DEVICE  # torch, numpy, h5py, ... stay the image's own
    assert "nnmanifold" not in packages  # travels as source
