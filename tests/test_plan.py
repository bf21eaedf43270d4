"""Planning estimates agree with the models as built; clean finds exactly the stale folders."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from nnmanifold.core import plan, storage
from nnmanifold.core.config import validate
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import DataSettings
from nnmanifold.train.models import Classifier
from nnmanifold.zoo import specs as zoo


@pytest.mark.parametrize(
    ("space", "data"),
    [
        ({"arch": ["mlp"], "depth": [3], "width": [17]}, "digits"),
        ({"arch": ["mlp"], "depth": [1], "width": [8]}, "mnist1d"),
        ({"arch": ["cnn"], "depth": [2], "channels": [5], "width": [9]}, "digits"),
        ({"arch": ["cnn"], "depth": [3], "channels": [4], "width": [6]}, "cifar10"),
        ({"arch": ["resnet"], "blocks": [1], "channels": [4]}, "digits"),
        ({"arch": ["resnet"], "blocks": [2], "channels": [3]}, "cifar10"),
    ],
)
def test_layer_widths_and_parameters_match_the_built_model(space, data):
    config = validate({"data": {"name": data}, "zoo": {"seeds": [0], "space": space}})
    spec = zoo.expand(config)[0]
    shape, n_classes = plan.KNOWN_DATA[data]
    model = Classifier(spec, shape, n_classes)
    hidden = model.hidden(torch.zeros(2, *shape))
    widths, params = plan._layers(spec, shape, n_classes)
    assert widths == [h.shape[1] for h in hidden.values()]
    assert params == sum(p.numel() for p in model.parameters())
    ckpt, acts = plan.model_bytes(spec, shape, n_classes, n_probe=100)
    assert acts == 100 * sum(widths) * 4 + plan._OVERHEAD
    assert ckpt == params * 4 * 2 + plan._OVERHEAD  # sgd: weights and momentum


def test_npz_shape_is_read_from_the_file_header(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((5, 6, 7), np.uint8), y_train=np.array([0, 1, 2, 3, 4]))
    data = DataSettings.of(validate({"data": {"name": "npz", "npz_path": str(path)}})["data"])
    assert plan.input_shape(data) == ((1, 6, 7), 5)


def test_clean_lists_and_removes_only_folders_outside_the_zoo(tmp_path):
    config = {"results": str(tmp_path / "res"), "zoo": {"seeds": [0, 1]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    ids = [s["model_id"] for s in zoo.expand(validate(config))]
    layout = Layout(config["results"])
    for mid in [*ids, "0123456789ab"]:
        layout.metrics(mid).parent.mkdir(parents=True)
        layout.metrics(mid).write_text("{}")
    assert plan.stale_models(layout, validate(config)) == [layout.model_dir("0123456789ab")]
    assert plan.plan_line([], layout, DataSettings.of(validate({})["data"])).startswith("zoo of 0")

    def clean(*flags):
        cmd = [sys.executable, "-m", "nnmanifold", "clean", str(tmp_path / "c.yaml"), *flags]
        return subprocess.run(cmd, capture_output=True, text=True, check=True)

    assert clean().stdout.split() == [str(layout.model_dir("0123456789ab"))]
    assert layout.model_dir("0123456789ab").exists()  # listing deletes nothing
    clean("--remove")
    assert not layout.model_dir("0123456789ab").exists()
    assert all(layout.metrics(m).exists() for m in ids)


def test_zoo_level_resources_grow_with_the_zoo():
    small, large = (plan.zoo_resources(n, 4, 1000, 10, 100) for n in (48, 10_000))
    assert small == {"mem_mb": 1000, "runtime": 10}
    assert large["mem_mb"] == 1000 + int(4 * 8 * 10_000**2 / 2**20)  # four 763 MB matrices
    assert large["runtime"] == 10 + int(10_000**2 * 100 / 60e6)  # 1e8 pairs at 100 us


def test_clean_remove_keeps_the_models_of_every_recorded_search_round(tmp_path):
    """A model of a recorded round (of the config's search or another), a network from elsewhere
    and a placed network survive `clean --remove`; a model dropped from the config's zoo goes."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.npz").write_bytes(b"")  # only the names matter to clean
    external = {
        "networks": [{"name": "ext", "activations": str(tmp_path / "a.npz")}],
        "place": [{"name": "new", "activations": str(tmp_path / "b.npz")}],
    }
    config = {"results": str(tmp_path / "res"), "zoo": {"seeds": [0, 1]}, **external}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    full = validate(config)
    ids = [s["model_id"] for s in zoo.expand(full)]
    hp = {k: v[0] for k, v in full["zoo"]["space"].items()}
    layout = Layout(config["results"])
    rounds = {}
    for name, lr in (("default", 0.123), ("other", 0.456)):  # the config's search, another
        specs = [zoo.spec({**hp, "lr": lr}, 0, full)]
        storage.write_json(layout.search_round(name, 1), {"round": 1, "specs": specs})
        rounds[name] = specs[0]["model_id"]
    dropped = zoo.expand(validate({**config, "zoo": {"seeds": [2]}}))[0]["model_id"]
    ids += ["ext-a", "new-b"]
    for mid in [*ids, *rounds.values(), dropped]:
        layout.metrics(mid).parent.mkdir(parents=True)
        layout.metrics(mid).write_text("{}")
    assert full["search"]["name"] == "default" and not set(rounds.values()) & set(ids)
    assert plan.kept_models(layout, full) == {*ids, *rounds.values()}

    cmd = [sys.executable, "-m", "nnmanifold", "clean", str(tmp_path / "c.yaml"), "--remove"]
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert not layout.model_dir(dropped).exists()
    assert all(layout.metrics(m).read_text() == "{}" for m in [*ids, *rounds.values()])


def test_unset_models_per_job_is_the_zoo_with_headroom_on_a_ladder():
    assert plan.models_per_job(12, 1000) == (12, "train.models_per_job = 12")
    size, why = plan.models_per_job(None, 150)
    assert size == 256 and "150 models x 1.25" in why  # 187.5 -> 2**8
    assert plan.models_per_job(None, 24)[0] == 32  # 30 -> 2**5
    assert plan.models_per_job(None, 100)[0] == 128  # 125 -> 2**7
    assert plan.models_per_job(None, 500)[0] == 724  # 625 -> 2**9.5
    assert plan.models_per_job(None, 3)[0] == plan.AUTO_MODELS_PER_JOB[0]
    assert plan.models_per_job(None, 10**6)[0] == plan.AUTO_MODELS_PER_JOB[1]
    sizes = [plan.models_per_job(None, n)[0] for n in range(1, 1500)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 2 * 7 + 1  # 8 = 2**3 ... 1024 = 2**10


def test_a_sampled_zoo_of_1000_trains_in_one_job():
    """A 1,000-model sampled zoo trains in one job (its start-up paid once; its groups side by
    side on the job's cores), not in the two of half the zoo or the three of an even share."""
    space = {
        "depth": [1, 2, 3],
        "width": {"low": 8, "high": 128, "log": True},
        "activation": ["relu", "tanh"],
        "lr": {"low": 0.0005, "high": 0.3, "log": True},
        "epochs": [1, 2, 3],
    }
    zoo_section = {"mode": "random", "n_samples": 500, "seeds": [0, 1], "space": space}
    specs = zoo.expand(validate({"data": {"name": "digits"}, "zoo": zoo_section}))
    assert len(specs) == 1000
    size, _ = plan.models_per_job(None, len(specs))
    assert len(zoo.batches(specs, 512)) == 3  # an even share's cap: a 538-model half splits
    assert len(zoo.batches(specs, 724)) == 2  # half the zoo with headroom
    assert len(zoo.batches(specs, size)) == 1


def test_job_threads_are_the_setting_or_the_cores_up_to_a_bound():
    assert plan.job_threads(3, 64) == 3
    assert plan.job_threads(None, 2) == 2
    assert plan.job_threads(None, 64) == plan.JOB_THREADS
    one_shape = _sampled_zoo(20)[:1] * 3
    assert plan.job_threads(None, 64, one_shape) == 1  # one group: one process
    assert plan.job_threads(None, 64, _sampled_zoo(20)) == 3  # depths 1-3: three shapes
    assert plan.job_threads(2, 64, one_shape) == 2


def _sampled_zoo(n: int) -> list[dict]:
    space = {
        "depth": [1, 2, 3],
        "width": {"low": 8, "high": 128, "log": True},
        "lr": {"low": 0.001, "high": 0.1, "log": True},
    }
    zoo_section = {"mode": "random", "n_samples": n, "seeds": [0], "space": space}
    return zoo.expand(validate({"data": {"name": "digits"}, "zoo": zoo_section}))


def test_adding_one_model_to_a_sampled_zoo_changes_one_training_job():
    before, after = _sampled_zoo(2000), _sampled_zoo(2001)
    (new,) = {s["model_id"] for s in after} - {s["model_id"] for s in before}
    size, _ = plan.models_per_job(None, len(before))
    assert plan.models_per_job(None, len(after))[0] == size
    jobs_before, jobs_after = zoo.batches(before, size), zoo.batches(after, size)

    changed = {k for k in jobs_after if jobs_before.get(k) != jobs_after[k]}

    assert jobs_before.keys() == jobs_after.keys() and len(jobs_after) > 1  # no split
    assert len(changed) == 1 and new in jobs_after[changed.pop()]
