import json

import pandas as pd

from nnmanifold import zoo
from nnmanifold.config import validate


def _config(**zoo_section):
    return validate({"zoo": zoo_section})


def test_ids_stable_and_spec_sensitive():
    a = zoo.expand(_config(space={"lr": [0.1, 0.01]}))
    b = zoo.expand(_config(space={"lr": [0.1, 0.01]}))
    assert [s["model_id"] for s in a] == [s["model_id"] for s in b]
    c = zoo.expand(_config(space={"lr": [0.1, 0.02]}))
    ids = {(s["lr"], s["seed"]): s["model_id"] for s in a}
    changed = {(s["lr"], s["seed"]): s["model_id"] for s in c}
    assert ids[(0.1, 0)] == changed[(0.1, 0)]  # lr 0.1 unchanged -> same id
    assert ids[(0.01, 0)] not in changed.values()  # lr changed -> new id
    d = zoo.expand(validate({"zoo": {"space": {"lr": [0.1]}}, "code_version": 2}))
    assert d[0]["model_id"] != a[0]["model_id"]


def test_id_ignores_keys_the_architecture_does_not_use():
    a = zoo.expand(_config(space={"arch": ["mlp"], "channels": [8]}))
    b = zoo.expand(_config(space={"arch": ["mlp"], "channels": [32]}))
    assert [s["model_id"] for s in a] == [s["model_id"] for s in b]


def test_grid_is_the_product_times_seeds():
    specs = zoo.expand(_config(seeds=[0, 1, 2], space={"lr": [0.1, 0.01], "depth": [1, 2, 3]}))
    assert len(specs) == 2 * 3 * 3
    assert len({s["model_id"] for s in specs}) == len(specs)
    assert {s["depth"] for s in specs} == {1, 2, 3}


def test_random_sampling_in_ranges_and_seeded():
    section = {
        "mode": "random",
        "n_samples": 30,
        "seeds": [0],
        "space": {"lr": {"low": 1e-4, "high": 1e-1, "log": True}, "width": {"low": 8, "high": 64}},
    }
    specs = zoo.expand(_config(**section))
    lrs = [s["lr"] for s in specs]
    assert len(specs) == 30
    assert all(1e-4 <= v <= 1e-1 for v in lrs)
    assert sum(v < 1e-2 for v in lrs) > 10  # log-uniform: two thirds of mass below 1e-2
    assert all(isinstance(s["width"], int) and 8 <= s["width"] <= 64 for s in specs)
    again = zoo.expand(_config(**section))
    assert [s["model_id"] for s in again] == [s["model_id"] for s in specs]
    other = zoo.expand(_config(**{**section, "sample_seed": 1}))
    assert [s["model_id"] for s in other] != [s["model_id"] for s in specs]


def test_table_has_one_row_per_model_with_its_spec(tmp_path):
    specs = zoo.expand(_config(space={"lr": [0.1, 0.01]}))
    path = tmp_path / "zoo.csv"
    zoo.table(specs).to_csv(path, index=False)
    back = pd.read_csv(path)
    assert list(back["model_id"]) == [s["model_id"] for s in specs]
    assert list(back["lr"]) == [s["lr"] for s in specs]
    assert json.loads(back["spec"][1])["seed"] == specs[1]["seed"]


def test_batches_keep_names_when_other_batches_change():
    ids = [f"m{i}" for i in range(7)]
    before = zoo.batches(ids, 3)
    after = zoo.batches([*ids[:4], "changed", *ids[5:]], 3)
    assert [len(v) for v in before.values()] == [3, 3, 1]
    assert len(set(before) & set(after)) == 2  # only the batch holding the change is new
