"""The logic of the benchmark scripts (the GPU session runs some unattended: bench/gpu_check.sh)."""

from __future__ import annotations

import importlib.util
from datetime import datetime
from types import ModuleType

from conftest import ROOT

#: Snakemake's log as it prints jobs: stamps, other rules between, both "Finished" spellings.
LOG = """\
[Sun Nov 29 22:40:01 2026]
localrule probe:
    jobid: 2
[Sun Nov 29 22:40:05 2026]
Finished jobid: 2 (Rule: probe)
[Sun Nov 29 22:40:06 2026]
localrule train:
    output: results/train/b0.json
    jobid: 5
[Sun Nov 29 22:40:07 2026]
rule train:
    jobid: 7
[Sun Nov 29 22:40:19 2026]
Finished job 5.
[Sun Nov 29 22:40:30 2026]
Finished jobid: 7 (Rule: train)
[Sun Nov 29 22:40:41 2026]
Finished jobid: 9 (Rule: features)
"""


def bench_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_phase_runs_from_the_first_train_start_to_the_last_train_end():
    assert bench_script("train_pipeline").training_phase(LOG) == (24.0, 2)


def test_training_phase_is_read_from_a_real_snakemake_log(mapped_zoo):
    """Every train job of a real run is found (the log format is Snakemake's, not ours), and
    the phase lasts at least as long as the longest job's own training (the sum of its members'
    shares in metrics.json; the log's stamps have one-second resolution) and at most the run."""
    from nnmanifold.core import storage
    from nnmanifold.core.paths import Layout

    workdir, _ = mapped_zoo
    log = (workdir / "run.log").read_text()
    pipeline = bench_script("train_pipeline")
    seconds, jobs = pipeline.training_phase(log)
    layout = Layout(workdir / "results")
    manifests = sorted((workdir / "results" / "train").glob("*.json"))
    assert jobs == len(manifests)
    longest_job = max(
        sum(storage.read_json(layout.metrics(e["model_id"]))["wall_seconds"] for e in entries)
        for entries in map(storage.read_json, manifests)
    )
    found = [pipeline.STAMP.match(line) for line in log.splitlines()]
    stamps = [datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y") for m in found if m]
    run = (max(stamps) - min(stamps)).total_seconds()
    assert longest_job - 1 <= seconds <= run, (longest_job, seconds, run)


def test_gpu_wheels_carry_what_the_device_lacks():
    wheels = bench_script("gpu_wheels")
    assert {"python-dateutil", "mypy-extensions", "torch", "numpy"} <= wheels.ON_DEVICE
    assert not any(name.endswith("-") for name in wheels.ON_DEVICE)
    packages = wheels.needed(wheels._requires("nnmanifold"))
    assert {"snakemake", "jsonschema", "phate", "ripser", "optuna", "mnist1d"} <= set(packages)
    assert "nnmanifold" not in packages  # travels as source


def test_sampled_zoo_sums_each_rules_benchmark_files(tmp_path):
    """Per rule: its jobs' benchmark rows summed (train from two jobs, a rule of one file)."""
    sampled_zoo = bench_script("sampled_zoo")
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    rows = {"train/b0.tsv": (12.5, 11.0), "train/b1.tsv": (10.25, 9.5), "zoo.tsv": (0.5, "NA")}
    for name, (wall, cpu) in rows.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(header + f"{wall}\t0:00:12\t1\t1\t1\t1\t0\t0\t90\t{cpu}\n")
    times = sampled_zoo.rule_times(tmp_path)
    assert times == {
        "train": {"jobs": 2, "s": 22.75, "cpu_s": 20.5},
        "zoo": {"jobs": 1, "s": 0.5, "cpu_s": 0.0},
    }
