"""ResNet groups: the one-model path's initial weights, data order and augmentation; results
equal to it; BatchNorm statistics per member; SIGKILL and resume; activations in eval mode."""

import pytest
import pytorch_lightning as pl
import torch
from conftest import ACCELERATOR, run_killed
from test_group import KILLER, assert_group_matches_one_model  # KILLER: third epoch

from nnmanifold.core.config import validate
from nnmanifold.core.paths import Layout
from nnmanifold.train import group, members, resnet, stacked_resnet
from nnmanifold.train import job as train
from nnmanifold.train.datamodule import EpochShuffleSampler
from nnmanifold.train.models import Classifier
from nnmanifold.zoo import data
from nnmanifold.zoo import specs as zoo

SMALL = {"arch": "resnet", "channels": 2, "blocks": 1, "batch_size": 32}
SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}


def _specs(seeds=(0, 1), **space):
    space = {k: v if isinstance(v, list) else [v] for k, v in {**SMALL, **space}.items()}
    return zoo.expand(validate({"zoo": {"seeds": list(seeds), "space": space}}))


@pytest.fixture(scope="module")
def small(digits):
    """A few hundred digits: enough to train a tiny ResNet for an epoch in a second."""
    ds, probe = digits
    cut = data.Dataset(ds.name, ds.x_train[:320], ds.y_train[:320], ds.x_test, ds.y_test)
    return cut, probe


def test_initial_weights_data_order_and_augmentation_are_the_one_model_paths(small):
    ds, _ = small
    specs = _specs(augment="standard")
    module = group.GroupClassifier(
        specs, ds, members.fresh_states(specs, ds.input_shape, ds.n_classes)
    )
    for k, spec in enumerate(specs):  # weights and running statistics: bitwise train_model's
        pl.seed_everything(spec["seed"], workers=True, verbose=False)
        reference = Classifier(spec, ds.input_shape, ds.n_classes).state_dict()
        tensors = module.model.params()
        assert set(tensors) == set(reference)
        for name, w in tensors.items():
            assert torch.equal(w[k], reference[name]), name
    # augmentation: each member's batch is what its one-model run's training_step feeds the model
    order = group.epoch_order([s["seed"] for s in specs], [1, 1], len(ds.y_train))
    x = torch.from_numpy(ds.x_train)[order[:, 32:64]]
    augmented = stacked_resnet.augment_members(x, specs, [1, 1], 1)
    for k, spec in enumerate(specs):
        sampler = EpochShuffleSampler(len(ds.y_train), spec["seed"])
        sampler.set_epoch(1)
        batch = torch.from_numpy(ds.x_train)[list(sampler)[32:64]]
        expected = resnet.augment(batch, resnet.augment_generator(spec["seed"], 1, 1))
        assert torch.equal(augmented[k], expected)
        assert not torch.equal(augmented[k], batch)


@pytest.mark.parametrize("augment", ["none", "standard"])
def test_group_matches_the_one_model_path(small, tmp_path, augment):
    """The same arithmetic up to float rounding: the bounds of test_group's MLP/CNN test."""
    ds, probe = small
    specs = _specs(augment=augment, epochs=2, **SGD)
    grouped = train.train_job(specs, ds, probe, tmp_path / "group", accelerator="cpu")
    assert [m["group_size"] for m in grouped] == [2, 2]
    for spec, g in zip(specs, grouped, strict=True):
        one = train.train_model(spec, ds, probe, tmp_path / "one" / spec["model_id"], "cpu")
        assert g["status"] == one["status"] == "ok"
        assert g["n_parameters"] == one["n_parameters"]
        assert_group_matches_one_model(spec, g, one, tmp_path, probe)


def _stacked(specs, ds):
    states = members.fresh_states(specs, ds.input_shape, ds.n_classes)
    return stacked_resnet.StackedResNet(
        specs, ds.input_shape, ds.n_classes, members.stack(states)[0]
    )


def test_batchnorm_statistics_are_each_members_own(small):
    """A member fed NaNs leaves the others' statistics as they are without it, each member's
    are its one-model BatchNorm's, and a member that did not train gets its own back."""
    ds, _ = small
    specs = _specs(seeds=(0, 1, 2))
    three, two = _stacked(specs, ds).train(), _stacked(specs[:2], ds).train()
    before = {n: b.clone() for n, b in three.running.items()}
    x = torch.randn(3, 16, *ds.input_shape)
    x[2] = float("nan")
    three(x)
    two(x[:2])
    for name, b in three.running.items():
        if name.endswith("running_mean"):
            assert b[2].isnan().all(), name
            torch.testing.assert_close(b[:2], two.running[name], atol=1e-6, rtol=0)
    pl.seed_everything(specs[0]["seed"], verbose=False)
    alone = Classifier(specs[0], ds.input_shape, ds.n_classes).train()
    alone(x[0])
    for name, b in alone.state_dict().items():
        if name.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(three.running[name][0], b, atol=1e-6, rtol=1e-5)
    three.keep_running(torch.tensor([True, True, False]))
    for name, b in three.running.items():
        assert torch.equal(b[2], before[name][2]), name  # the NaN member's own, restored
        if name.endswith("num_batches_tracked"):
            assert b.tolist() == [1, 1, 0]


def test_activations_are_taken_in_eval_mode_and_identical_twice(small):
    ds, probe = small
    specs = _specs()
    model = _stacked(specs, ds).train()
    model(torch.randn(2, 16, *ds.input_shape))  # running statistics away from their start
    model.keep_running(torch.tensor([True, True]))
    running = {n: b.clone() for n, b in model.running.items()}
    x = torch.from_numpy(probe["x"])
    first, second = model.hidden([0, 1], x), model.hidden([0, 1], x)
    pl.seed_everything(specs[1]["seed"], verbose=False)
    alone = Classifier(specs[1], ds.input_shape, ds.n_classes)
    alone.load_state_dict({n: t[1] for n, t in model.params().items()})
    expected = alone.eval().hidden(x)
    for name in resnet.LAYERS:
        assert torch.equal(first[1][name], second[1][name]), name
        torch.testing.assert_close(first[1][name], expected[name], atol=1e-5, rtol=1e-4)
    for name, b in model.running.items():  # extraction changed no statistic
        assert torch.equal(b, running[name]), name


def test_sigkill_mid_epoch_resumes_with_running_statistics(small, tmp_path):
    ds, probe = small
    specs = _specs(augment="standard", epochs=3, **SGD)
    whole = train.train_job(specs, ds, probe, tmp_path / "whole", accelerator=ACCELERATOR)
    results = tmp_path / "killed"
    job = {"specs": specs, "results": str(results), "accelerator": ACCELERATOR}
    run_killed(tmp_path, KILLER, job, ds, probe)
    for spec in specs:  # two epochs' statistics, per member, in its checkpoint
        saved = torch.load(Layout(results).model_files(spec["model_id"]).group_checkpoint)
        weights = saved["state_dict"]
        assert int(weights["blocks.stage1.1.num_batches_tracked"]) == 2 * len(ds.y_train) // 32
        assert not torch.equal(weights["blocks.stage1.1.running_mean"], torch.zeros(2))
    resumed = train.train_job(specs, ds, probe, results, accelerator=ACCELERATOR)
    for r, w in zip(resumed, whole, strict=True):
        assert r["resumed"] is True and w["resumed"] is False
        assert r["test_loss"] == w["test_loss"]
        assert r["test_accuracy"] == w["test_accuracy"]
