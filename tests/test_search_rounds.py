"""Search rounds: new model specs per round (duplicates replaced), progress, and the workflow's
checkpoint (a round trains exactly its new models and a recorded round is never redrawn)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, planned_jobs, snakemake, write_config

from nnmanifold.core.config import validate
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import Layout
from nnmanifold.search import rounds
from nnmanifold.search import sampler as search
from nnmanifold.zoo import specs as zoo

SPACE_CONFIG = {
    "zoo": {
        "seeds": [0],
        "space": {"optimizer": ["sgd", "adam"], "lr": [0.1, 0.01], "momentum": [0.9, 0.5]},
    }
}


def _setup():
    config = validate(copy.deepcopy(SPACE_CONFIG))
    distributions, fixed = search.search_space(config["zoo"]["space"])
    return config, distributions, fixed, zoo.expand(config)


def test_a_proposal_identical_to_a_trained_model_is_replaced():
    config, distributions, fixed, trained = _setup()
    existing = next(s for s in trained if s["optimizer"] == "adam")
    # Adam ignores momentum: this proposal differs on the searched keys but is the same model.
    same_model = {"optimizer": "adam", "lr": existing["lr"], "momentum": 0.7}
    new_a = {"optimizer": "adam", "lr": 0.05, "momentum": 0.9}
    new_b = {"optimizer": "sgd", "lr": 0.02, "momentum": 0.6}
    attempts = [[same_model, new_a], [dict(new_a)], [new_b]]
    drawn = []

    def draw(n, attempt):
        drawn.append((n, attempt))
        return attempts[attempt][:n]

    to_spec = lambda c: zoo.spec({**fixed, **c}, 0, config)  # noqa: E731
    taken = {s["model_id"] for s in trained}
    specs = rounds.new_specs(draw, to_spec, taken, per_round=2)
    assert to_spec(same_model)["model_id"] == existing["model_id"]
    assert [s["model_id"] for s in specs] == [
        to_spec(new_a)["model_id"],
        to_spec(new_b)["model_id"],
    ]
    assert drawn == [(2, 0), (1, 1), (1, 2)]  # the repeat of new_a is drawn again
    assert not taken & {s["model_id"] for s in specs}


def test_an_exhausted_space_is_an_error_naming_the_fix():
    config, _, fixed, trained = _setup()
    again = [{k: s[k] for k in ("optimizer", "lr", "momentum") if k in s} for s in trained]

    def draw(n, attempt):
        return [{"momentum": 0.9, **c} for c in again[:n]]

    with pytest.raises(UserError, match="search.per_round"):
        rounds.new_specs(
            draw,
            lambda c: zoo.spec({**fixed, **c}, 0, config),
            {s["model_id"] for s in trained},
            per_round=2,
            max_attempts=3,
        )


@pytest.mark.parametrize("method", ["tpe", "random"])
def test_optuna_rounds_are_valid_and_reproducible(method):
    config, distributions, _, trained = _setup()
    space = config["zoo"]["space"]
    configs = [rounds.configuration(s, space) for s in trained]
    accuracy = np.linspace(0.2, 0.9, len(configs))
    first = rounds.optuna_draw(method, configs, accuracy, distributions, 3, 1)(5, 0)
    again = rounds.optuna_draw(method, configs, accuracy, distributions, 3, 1)(5, 0)
    other = rounds.optuna_draw(method, configs, accuracy, distributions, 3, 2)(5, 0)
    assert first == again and first != other
    for proposal in first:
        assert proposal["optimizer"] in ("sgd", "adam")
        assert 0.01 <= proposal["lr"] <= 0.1 and 0.5 <= proposal["momentum"] <= 0.9


def test_configuration_fills_unused_axes_with_their_first_value():
    space = {"optimizer": ["adam", "sgd"], "momentum": [0.5, 0.9], "lr": {"low": 0.001, "high": 1}}
    spec = {"optimizer": "adam", "lr": 0.01}
    assert rounds.configuration(spec, space) == {"optimizer": "adam", "momentum": 0.5, "lr": 0.01}
    assert rounds.configuration({"optimizer": "sgd"}, space)["lr"] == 0.001


def _slow_progress(models):
    rows = []
    for k in sorted(set(models["round"])):
        upto = models[(models["round"] <= k) & models["val_accuracy"].notna()]
        best = upto.sort_values("val_accuracy", ascending=False, kind="stable").iloc[0]
        here = models[(models["round"] == k)]["val_accuracy"]
        rows.append((k, len(here), here.max(), best["val_accuracy"], best["test_accuracy"]))
    return rows


def test_progress_is_the_best_so_far_by_validation_accuracy():
    rng = np.random.default_rng(0)
    models = pd.DataFrame(
        {
            "round": [0] * 6 + [1] * 3 + [2] * 3,
            "model_id": [f"m{i}" for i in range(12)],
            "val_accuracy": rng.uniform(0.3, 0.9, 12),
            "test_accuracy": rng.uniform(0.3, 0.9, 12),
        }
    )
    models.loc[7, "val_accuracy"] = math.nan  # a failed model
    models.loc[10, "val_accuracy"] = 0.95  # round 2 wins, on validation
    table = rounds.progress(models)
    got = list(
        table[
            ["round", "n_models", "round_best_val_accuracy", "best_val_accuracy"]
            + ["best_test_accuracy"]
        ].itertuples(index=False, name=None)
    )
    np.testing.assert_allclose(np.array(got, float), np.array(_slow_progress(models), float))
    assert table["best_model_id"].iloc[-1] == "m10"


def test_search_defaults():
    assert validate({})["search"] == {
        "rounds": 2,
        "per_round": 8,
        "seed": 0,
        "name": "default",
        "method": "guided",
    }


# --- the workflow ---------------------------------------------------------------------------


def test_a_round_trains_exactly_its_new_models_and_is_never_redrawn(tmp_path):
    config = copy.deepcopy(TINY)
    config["zoo"]["space"].update(lr=[0.1, 0.01], width=[16, 32])
    config["train"]["models_per_job"] = 4
    config["baselines"] = {"distances": []}
    config["sensitivity"] = {"in_default_run": False}
    config["search"] = {"rounds": 1, "per_round": 2}
    write_config(tmp_path, config)
    layout = Layout(tmp_path / "results")
    initial = {s["model_id"] for s in zoo.expand(validate(copy.deepcopy(config)))}

    assert "search_round" not in planned_jobs(snakemake(tmp_path, "-n").stdout)
    first = snakemake(tmp_path, "search")
    record = layout.search_round("default", 1)
    new = [s["model_id"] for s in json.loads(record.read_text())["specs"]]
    jobs = json.loads(layout.search_batches("default", 1).read_text())
    assert len(set(new)) == 2 and not initial & set(new)
    assert sorted(m for members in jobs.values() for m in members) == sorted(new)
    for job in jobs:  # trained by the train rule, each new model exactly once
        trained = json.loads(layout.train_manifest(job).read_text())
        assert [e["model_id"] for e in trained] == jobs[job]
    models = {p.name for p in (layout.root / "models").iterdir()}
    assert models == initial | set(new)
    assert first.stderr.count("rule train:") == 1 + len(jobs)
    progress = pd.read_csv(layout.search_table("default", "progress"))
    assert list(progress["round"]) == [0, 1] and list(progress["n_models"]) == [4, 2]

    frozen = record.read_bytes()
    config["geometry"] = {"sigma": 1.0}
    write_config(tmp_path, config)
    assert "train" not in planned_jobs(snakemake(tmp_path, "-n", "search").stdout)
    again = snakemake(tmp_path, "search")
    assert "rule train:" not in again.stderr and "rule search_report:" in again.stderr
    assert record.read_bytes() == frozen
    assert {p.name for p in (layout.root / "models").iterdir()} == models
