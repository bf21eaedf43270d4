import json
import re

import numpy as np
import pandas as pd
import pytest

from nnmanifold.core.config import validate
from nnmanifold.core.errors import UserError
from nnmanifold.core.storage import content_hash
from nnmanifold.zoo import specs as zoo


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


def test_batches_are_job_key_prefixes_no_larger_than_the_limit():
    specs = zoo.expand(_config(seeds=list(range(40)), space={"lr": [0.1]}))
    ids = [s["model_id"] for s in specs]
    jobs = zoo.batches(specs, 8)
    assert sorted(m for members in jobs.values() for m in members) == sorted(ids)
    key = {s["model_id"]: _job_key(s) for s in specs}
    for name, members in jobs.items():
        assert re.fullmatch(zoo.BATCH_PATTERN, name)
        assert 1 <= len(members) <= 8
        assert all(key[m].startswith(name[1:]) for m in members)
        # a bucket exists only because its parent held too many models to be one job
        parent = [m for m in ids if key[m].startswith(name[1:-1])]
        assert name == "b" or len(parent) > 8
    assert list(zoo.batches(list(reversed(specs)), 8)) == list(jobs)  # order does not matter


def test_same_shaped_models_share_jobs():
    """So that a job's models train as few, large vectorised groups: 4 shapes of 8 models each,
    with lr and seed varying inside a shape, make 4 jobs of one shape each."""
    specs = zoo.expand(
        _config(
            seeds=[0, 1], space={"depth": [1, 2], "width": [16, 64], "lr": [0.1, 0.01, 0.001, 0.3]}
        )
    )
    jobs = zoo.batches(specs, 8)
    by_id = {s["model_id"]: s for s in specs}
    shapes = [{zoo.shape_key(by_id[m]) for m in members} for members in jobs.values()]
    assert sorted(len(members) for members in jobs.values()) == [8, 8, 8, 8]
    assert all(len(s) == 1 for s in shapes) and len(set().union(*shapes)) == 4


def _job_key(spec: dict) -> str:
    """Slow reference: the shape's hash, then the id, each hex digit as four bits."""
    shape = content_hash(zoo.shape_key(spec), zoo.SHAPE_BITS // 4)
    return "".join(format(int(c, 16), "04b") for c in shape + spec["model_id"])


def _random_specs(rng: np.random.Generator, n: int) -> list[dict]:
    """n specs of random ids spread over 3 shapes."""
    widths = rng.choice([16, 64, 256], size=n)
    return [
        {"model_id": f"{v:012x}", "arch": "mlp", "width": int(w), "data": {"name": "digits"}}
        for v, w in zip(rng.integers(0, 2**48, size=n), widths, strict=True)
    ]


def _changed(before: dict, after: dict) -> set[str]:
    """Buckets whose name or membership differs between two assignments."""
    a = {k: set(v) for k, v in before.items()}
    b = {k: set(v) for k, v in after.items()}
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


@pytest.mark.parametrize("n", [48, 300, 2_000, 10_000])
def test_adding_or_removing_one_model_changes_only_its_bucket(n):
    rng = np.random.default_rng(n)
    limit = 8
    sizes = []
    for _ in range(10):
        specs = _random_specs(rng, n)
        before = zoo.batches(specs, limit)
        sizes += [len(v) for v in before.values()]
        new = _random_specs(rng, 1)[0]
        gone = specs[rng.integers(n)]
        for after, moved in [
            (zoo.batches([*specs, new], limit), new),
            (zoo.batches([s for s in specs if s is not gone], limit), gone),
        ]:
            changed = _changed(before, after)
            holder = {k for k, v in {**before, **after}.items() if moved["model_id"] in v}
            if changed == holder:
                assert len(changed) == 1
            else:  # a split or merge: the changes lie under one prefix holding <= limit + 1 models
                root = min(changed, key=len)[1:]
                assert all(name[1:].startswith(root) for name in changed)
                touched = {m for k in changed for m in [*before.get(k, []), *after.get(k, [])]}
                assert len(touched) <= limit + 1
                key = {s["model_id"]: _job_key(s) for s in [*specs, new]}
                assert all(key[m].startswith(root) for m in touched)
            assert all(len(v) <= limit for v in after.values())
    mean = float(np.mean(sizes))
    print(f"{n} models, limit {limit}: mean job size {mean:.2f}, {len(sizes) // 10} jobs")
    assert mean > limit / 2  # not tiny on average (binary splits fill buckets to ~ln 2)


def test_the_architecture_is_what_the_built_models_compute():
    """Layer names, recorded widths (from a real forward pass), state-dict keys and parameter
    counts of ``zoo.architecture`` against the Classifier as built and run."""
    import torch

    from nnmanifold.train.models import Classifier
    from nnmanifold.zoo import architecture

    base = {"width": 8, "channels": 4, "activation": "relu", "dropout": 0.0}
    for arch, depth, shape in [
        ("mlp", 1, (64,)),
        ("mlp", 3, (64,)),
        ("cnn", 1, (1, 8, 8)),
        ("cnn", 4, (1, 8, 8)),
        ("cnn", 2, (3, 1, 1)),
        ("cnn", 2, (2, 8, 6)),
    ]:
        spec = {**base, "arch": arch, "depth": depth}
        model = Classifier(spec, shape, 10)
        layers = architecture.layers(spec, shape, 10)
        hidden = model.hidden(torch.zeros(2, *shape))
        assert zoo.layer_names(spec) == model.layer_names == list(hidden)
        assert [layer.name for layer in layers] == [*hidden, "head"]
        assert [layer.width for layer in layers[:-1]] == [h.shape[1] for h in hidden.values()]
        keys = [f"{layer.key}.{p}" for layer in layers for p in ("weight", "bias")]
        assert keys == list(model.state_dict())
        assert architecture.n_parameters(spec, shape, 10) == sum(
            p.numel() for p in model.parameters()
        )


def test_a_layer_some_architectures_lack_is_named_before_training():
    specs = zoo.expand(_config(space={"arch": ["mlp", "cnn"], "depth": [1, 2]}))
    zoo.check_layer(specs, None)
    with pytest.raises(UserError, match=r"layer.: 6 of 8 .*'conv2'.*mlp of depth 1.*no layer is"):
        zoo.check_layer(specs, "conv2")
    mlps = zoo.expand(_config(space={"depth": [2, 3]}))
    zoo.check_layer(mlps, "fc2")
    fix = r"mlp of depth 2 \(layers fc1, fc2\).*one every model has \(fc1, fc2\), or to null"
    with pytest.raises(UserError, match=fix):
        zoo.check_layer(mlps, "fc3")
