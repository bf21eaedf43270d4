"""The real Snakemake workflow on tiny configs in temporary folders."""

import json

import yaml
from conftest import planned_jobs, snakemake, write_config


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


def test_tiny_zoo_trains_and_reruns_only_what_changed(tiny):
    workdir, config = tiny
    config["train"]["models_per_job"] = 2
    config["zoo"]["space"]["lr"] = [0.1, 0.03, 0.01]
    write_config(workdir, config)
    snakemake(workdir, "trained")

    zoo = (workdir / "results" / "zoo.csv").read_text().splitlines()
    assert len(zoo) == 4  # header + 3 models
    metrics = sorted((workdir / "results" / "models").glob("*/metrics.json"))
    assert len(metrics) == 3
    assert all(json.loads(m.read_text())["status"] == "ok" for m in metrics)
    assert all((m.parent / "activations.h5").is_file() for m in metrics)

    nothing = snakemake(workdir, "trained", "-n")
    assert _jobs(nothing.stdout, "train") == 0

    # change the third model only (it sits alone in the second job)
    config["zoo"]["space"]["lr"] = [0.1, 0.03, 0.02]
    write_config(workdir, config)
    plan = snakemake(workdir, "trained", "-n")
    assert _jobs(plan.stdout, "train") == 1

    # change the first model: its job (shared with model 2) reruns, model 2 is left as it was
    kept = next(p for p in metrics if json.loads(p.read_text())["spec"]["lr"] == 0.03)
    before = [kept.stat().st_mtime_ns, (kept.parent / "activations.h5").stat().st_mtime_ns]
    config["zoo"]["space"]["lr"] = [0.2, 0.03, 0.02]
    write_config(workdir, config)
    plan = snakemake(workdir, "trained", "-n")
    assert _jobs(plan.stdout, "train") == 2
    snakemake(workdir, "trained")
    after = [kept.stat().st_mtime_ns, (kept.parent / "activations.h5").stat().st_mtime_ns]
    assert after == before  # not retrained, not even rewritten
    ids = {
        m["model_id"]
        for j in (workdir / "results" / "train").glob("*.json")
        for m in json.loads(j.read_text())
    }
    assert len(ids) == 5 and kept.parent.name in ids
    assert yaml.safe_load((workdir / "config.yaml").read_text())["zoo"]["space"]["lr"][0] == 0.2
