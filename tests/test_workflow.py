"""The real Snakemake workflow on tiny configs in temporary folders."""

import copy
import json
import shutil

import pandas as pd
import yaml
from conftest import planned_jobs, snakemake, write_config

from nnmanifold.core import plan as core_plan
from nnmanifold.core.config import validate
from nnmanifold.zoo import specs as zoo


def _jobs(dry_run_stdout: str, rule: str) -> int:
    return planned_jobs(dry_run_stdout).get(rule, 0)


def test_bad_config_key_stops_before_any_job(tiny):
    workdir, config = tiny
    config["zoo"]["space"]["learning_rate"] = [0.1]
    write_config(workdir, config)
    proc = snakemake(workdir, check=False)
    assert proc.returncode != 0
    assert "learning_rate" in proc.stderr + proc.stdout
    assert not (workdir / "results").exists()


def _jobs_of(config: dict) -> dict[str, set[str]]:
    specs = zoo.expand(validate(config))
    return {k: set(v) for k, v in zoo.batches(specs, config["train"]["models_per_job"]).items()}


def _changed_jobs(before: dict, after: dict) -> set[str]:
    """Training jobs whose members differ between two configs (new jobs included)."""
    old, new = _jobs_of(before), _jobs_of(after)
    return {k for k in new if old.get(k) != new[k]}


def _edit(config: dict, accept) -> dict:
    """The config with one model's lr changed so that ``accept(before, after)`` holds: which
    values do depends on where the ids fall, so the test looks for one instead of fixing it."""
    lrs = config["zoo"]["space"]["lr"]
    for i in range(len(lrs)):
        for value in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7):
            after = copy.deepcopy(config)
            after["zoo"]["space"]["lr"][i] = value
            if value not in lrs and accept(config, after):
                return after
    raise AssertionError("no single-model edit of the kind wanted; widen the candidates")


def _mates(before: dict, after: dict) -> set[str]:
    """Unchanged models in the one training job an edit changes (empty unless exactly one)."""
    changed = _changed_jobs(before, after)
    if len(changed) != 1:
        return set()
    job = changed.pop()
    return _jobs_of(after)[job] & _jobs_of(before).get(job, set())


def test_tiny_zoo_trains_and_reruns_only_what_changed(tiny):
    workdir, config = tiny
    config["train"]["models_per_job"] = 2
    config["zoo"]["space"]["lr"] = [0.1, 0.03, 0.01]
    write_config(workdir, config)
    snakemake(workdir, "trained")

    zoo_csv = (workdir / "results" / "zoo.csv").read_text().splitlines()
    assert len(zoo_csv) == 4  # header + 3 models
    metrics = sorted((workdir / "results" / "models").glob("*/metrics.json"))
    assert len(metrics) == 3
    assert all(json.loads(m.read_text())["status"] == "ok" for m in metrics)
    assert all((m.parent / "activations.h5").is_file() for m in metrics)

    nothing = snakemake(workdir, "trained", "-n")
    assert _jobs(nothing.stdout, "train") == 0
    # a results folder from before jobs had specs files: making them reruns no job
    shutil.rmtree(workdir / "results" / "jobs")
    nothing = snakemake(workdir, "trained", "-n")
    assert _jobs(nothing.stdout, "train") == 0 and _jobs(nothing.stdout, "job_specs") == 0

    # change one model so that its new id falls in the bucket of its old one: one job reruns
    before = config
    config = _edit(before, lambda old, new: len(_changed_jobs(old, new)) == 1)
    write_config(workdir, config)
    plan = snakemake(workdir, "trained", "-n")
    assert _jobs(plan.stdout, "train") == len(_changed_jobs(before, config)) == 1
    snakemake(workdir, "trained")

    # change a model that shares its job: that job reruns, its mate is left as it was
    before = copy.deepcopy(config)
    config = _edit(before, lambda old, new: len(_mates(old, new)) >= 1)
    mate = next(iter(_mates(before, config)))
    kept = workdir / "results" / "models" / mate / "metrics.json"
    stamps = [kept.stat().st_mtime_ns, (kept.parent / "activations.h5").stat().st_mtime_ns]
    write_config(workdir, config)
    plan = snakemake(workdir, "trained", "-n")
    assert _jobs(plan.stdout, "train") == 1
    snakemake(workdir, "trained")
    after = [kept.stat().st_mtime_ns, (kept.parent / "activations.h5").stat().st_mtime_ns]
    assert after == stamps  # not retrained, not even rewritten
    ids = {
        m["model_id"]
        for j in (workdir / "results" / "train").glob("*.json")
        for m in json.loads(j.read_text())
    }
    assert ids == set(pd.read_csv(workdir / "results" / "zoo.csv")["model_id"])
    assert yaml.safe_load((workdir / "config.yaml").read_text()) == config


def test_a_layer_some_models_lack_stops_before_any_job(tiny):
    workdir, config = tiny
    config["zoo"]["space"]["depth"] = [1, 2]
    config["geometry"] = {"layer": "fc2"}
    write_config(workdir, config)
    proc = snakemake(workdir, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "geometry.layer" in out and "mlp of depth 1 (layers fc1)" in out and "fc1" in out
    assert not (workdir / "results").exists()


def test_a_job_of_hundreds_of_models_gets_its_specs_from_a_file(tiny):
    """A 1,000-model sampled zoo plans jobs of hundreds of models (more specs than one shell
    argument holds): the job's command names its specs file, which the plan writes with every
    spec."""
    workdir, config = tiny
    space = {
        "depth": [1, 2],
        "width": {"low": 8, "high": 128, "log": True},
        "lr": {"low": 0.001, "high": 0.1, "log": True},
    }
    config["zoo"] = {"mode": "random", "n_samples": 1000, "seeds": [0], "space": space}
    config["train"]["models_per_job"] = None
    write_config(workdir, config)
    specs = zoo.expand(validate(config))
    batches = zoo.batches(specs, core_plan.models_per_job(None, len(specs))[0])
    batch, members = max(batches.items(), key=lambda item: len(item[1]))
    assert len(json.dumps([s for s in specs if s["model_id"] in members])) > 128 * 1024

    plan = snakemake(workdir, "trained", "-n", "-p")
    commands = [line for line in plan.stdout.splitlines() if " train " in line]
    assert len(commands) == len(batches) and all(len(c) < 4096 for c in commands)
    specs_file = workdir / "results" / "jobs" / f"{batch}.json"
    assert f"--specs results/jobs/{batch}.json" in plan.stdout

    snakemake(workdir, str(specs_file.relative_to(workdir)))
    by_id = {s["model_id"]: s for s in specs}
    assert json.loads(specs_file.read_text()) == [by_id[m] for m in members]
