"""The run's training jobs as the Snakefile asks for them: zoo plus recorded rounds, files changed
since a job's manifest, size checks that only tell, and shell commands no value can break."""

from __future__ import annotations

import os
import subprocess

from nnmanifold.core import commands, jobs, storage
from nnmanifold.core.config import validate
from nnmanifold.core.paths import Layout
from nnmanifold.zoo import specs as zoo

HOSTILE = 'it\'s "q" $(echo RAN) `echo RAN`; echo RAN & {x}'


def _round(config: dict, lr: float) -> list[dict]:
    hp = {k: v[0] for k, v in config["zoo"]["space"].items()}
    return [zoo.spec({**hp, "lr": lr}, 0, config)]


def test_rounds_add_their_own_jobs_and_keep_the_zoos(tmp_path):
    config = validate({"zoo": {"seeds": [0, 1, 2]}})
    zoo_specs = zoo.expand(config)
    layout = Layout(tmp_path)
    new = _round(config, 0.123)
    storage.write_json(layout.search_round("s", 1), {"round": 1, "specs": new})
    storage.write_json(layout.search_round("s", 3), {"round": 3, "specs": _round(config, 0.5)})
    assert jobs.recorded_rounds(layout, "s") == [new]  # up to the first missing round
    assert jobs.search_names(layout) == ["s"]
    alone, alone_jobs = jobs.with_rounds(zoo_specs, [], 2)
    specs, batches = jobs.with_rounds(zoo_specs, [new, [*new, *zoo_specs[:1]]], 2)
    assert set(specs) == {*alone, new[0]["model_id"]}
    assert {b: m for b, m in batches.items() if b in alone_jobs} == alone_jobs
    assert [m for b, m in batches.items() if b not in alone_jobs] == [[new[0]["model_id"]]]


def test_only_files_changed_since_the_manifest_are_inputs(tmp_path):
    layout = Layout(tmp_path)
    ids = ["a", "b", "c"]
    for m in ids:
        layout.model_dir(m).mkdir(parents=True)
        for name in jobs.STAGE_FILES["train"]:
            (layout.model_dir(m) / name).write_text("x")
            os.utime(layout.model_dir(m) / name, (1000, 1000))
    assert jobs.changed_outputs(layout, "train", "b0", ids) == []  # no manifest: runs anyway
    storage.write_json(layout.manifest("train", "b0"), [])
    os.utime(layout.manifest("train", "b0"), (2000, 2000))
    assert jobs.changed_outputs(layout, "train", "b0", ids) == []
    os.utime(layout.metrics("b"), (3000, 3000))
    (layout.model_dir("c") / "activations.h5").unlink()
    assert jobs.changed_outputs(layout, "train", "b0", ids) == [layout.metrics("b")]


def test_size_warnings_name_the_file_and_change_nothing(tmp_path):
    layout = Layout(tmp_path)
    path = layout.metrics("a")
    path.parent.mkdir(parents=True)
    path.write_text("12345")
    storage.write_json(layout.manifest("train", "b0"), [{"files": [storage.file_record(path)]}])
    assert jobs.size_warnings(layout, ["b0", "b1"]) == []
    path.write_text("123")
    (warning,) = jobs.size_warnings(layout, ["b0", "b1"])
    assert str(path) in warning and "train/b0" in warning and "snakemake verify" in warning
    assert path.read_text() == "123"
    layout.manifest("features", "b1").parent.mkdir(parents=True)
    layout.manifest("features", "b1").write_text("{not json")
    assert str(layout.manifest("features", "b1")) in jobs.size_warnings(layout, ["b1"])[0]


def test_commands_pass_any_value_as_one_literal_word(tmp_path):
    line = commands.flags(results=HOSTILE, download=True, quiet=False, memory_budget_mb=7)
    assert line.startswith("--results ") and line.endswith(" --download --memory-budget-mb 7")
    assert "--quiet" not in line
    formatted = line.format()  # Snakemake formats the command: escaped braces come back single
    out = subprocess.run(
        f"printf '%s\\n' {formatted}", shell=True, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["--results", HOSTILE, "--download", "--memory-budget-mb", "7"]
    step = commands.step("res", "train", "--batch b0")
    assert step == "python -m nnmanifold train --results res --batch b0"
    conda, venv = commands.shell_prefix("/src", None), commands.shell_prefix("/src", "/v/bin/py")
    assert conda == "export PYTHONPATH=/src${{PYTHONPATH:+:$PYTHONPATH}}; "
    assert venv == conda + "export PATH=/v/bin:$PATH; "
