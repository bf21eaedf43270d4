"""Vectorised group training: matches the one-model path (SGD and Adam, weight decay, dropout),
isolates members, records a diverged member, resumes, stops."""

import logging
import os
import re
import textwrap

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from conftest import ACCELERATOR, run_killed

from nnmanifold.core import storage
from nnmanifold.core.config import validate
from nnmanifold.core.paths import Layout
from nnmanifold.train import group, members, stacked
from nnmanifold.train import job as train
from nnmanifold.train.datamodule import EpochShuffleSampler
from nnmanifold.train.models import Classifier
from nnmanifold.zoo import specs as zoo


def _specs(seeds=(0,), **space):
    space = {k: v if isinstance(v, list) else [v] for k, v in space.items()}
    return zoo.expand(validate({"zoo": {"seeds": list(seeds), "space": space}}))


def _epochs_logged(results, model_id):
    return pd.read_csv(Layout(results).model_files(model_id).epoch_log)


# --- (a) equivalence with the one-model path -------------------------------------------------


def test_initial_weights_and_data_order_are_the_one_model_paths(digits):
    ds, _ = digits
    for space in ({"arch": "mlp", "width": 16}, {"arch": "cnn", "channels": 4, "width": 16}):
        specs = _specs(seeds=(0, 1), **space)
        states = members.fresh_states(specs, ds.input_shape, ds.n_classes)
        module = group.GroupClassifier(specs, ds, states)
        for k, spec in enumerate(specs):  # initial weights: bitwise those of train_model
            pl.seed_everything(spec["seed"], workers=True, verbose=False)
            reference = Classifier(spec, ds.input_shape, ds.n_classes).state_dict()
            for name, w in module.model.params().items():
                assert torch.equal(w[k], reference[name]), name
    for epoch in (0, 1):  # data order: bitwise what the one-model DataLoader's sampler gives
        order = group.epoch_order([s["seed"] for s in specs], [epoch] * 2, len(ds.y_train))
        for k, spec in enumerate(specs):
            sampler = EpochShuffleSampler(len(ds.y_train), spec["seed"])
            sampler.set_epoch(epoch)
            assert order[k].tolist() == list(sampler)


def _both_paths(specs, ds, probe, tmp_path):
    """Each spec trained in one group (train_job) and alone (train_model): (group, one) pairs."""
    grouped = train.train_job(specs, ds, probe, tmp_path / "group", accelerator="cpu")
    assert [m["group_size"] for m in grouped] == [len(specs)] * len(specs)
    alone = [
        train.train_model(s, ds, probe, tmp_path / "one" / s["model_id"], "cpu") for s in specs
    ]
    for g, one in zip(grouped, alone, strict=True):
        assert g["status"] == one["status"] == "ok"
        assert g["epochs_completed"] == one["epochs_completed"] == g["spec"]["epochs"]
    return grouped, alone


OPTIMISERS = {
    "sgd": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
    "adam": {"optimizer": "adam", "lr": 3e-3, "weight_decay": 1e-3},
}


def assert_group_matches_one_model(spec, g, one, tmp_path, probe) -> None:
    """A member's group result equals its one-model result to float rounding (results under
    ``tmp_path``/group and ``tmp_path``/one/<id>): accuracy, loss and activations."""
    assert abs(g["test_accuracy"] - one["test_accuracy"]) <= 0.005
    assert abs(g["test_loss"] - one["test_loss"]) <= 1e-3 * one["test_loss"]
    X, attrs = storage.read_activations(
        Layout(tmp_path / "group").activations(spec["model_id"]), probe_hash=probe["hash"]
    )
    X1, attrs1 = storage.read_activations(tmp_path / "one" / spec["model_id"] / "activations.h5")
    assert attrs["layer_order"] == attrs1["layer_order"]
    np.testing.assert_allclose(X, X1, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize(
    "space",
    [
        {"arch": "mlp", "width": 16, "depth": 2, "epochs": 2},
        {"arch": "cnn", "channels": 4, "width": 16, "depth": 1, "epochs": 1},
    ],
)
def test_group_matches_the_one_model_path(digits, tmp_path, space, optimizer):
    """Without dropout the two paths do the same arithmetic: equal to float rounding."""
    ds, probe = digits
    specs = _specs(seeds=(0, 1), **OPTIMISERS[optimizer], **space)
    grouped, alone = _both_paths(specs, ds, probe, tmp_path)
    for spec, g, one in zip(specs, grouped, alone, strict=True):
        assert_group_matches_one_model(spec, g, one, tmp_path, probe)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_group_with_dropout_matches_the_one_model_path_statistically(digits, tmp_path, optimizer):
    """With dropout the masks differ (a counter-based stream against torch's generator), so the
    paths agree in distribution: over 3 seeds, mean test loss within 10 % and accuracy within
    0.06 (measured: 2.5 % and 0.03 with SGD, 3.2 % and 0.004 with Adam). Scaling kept units by
    1 - p, or keeping them with probability p, moved the loss by 16-83 % and accuracy by
    0.19-0.47."""
    ds, probe = digits
    specs = _specs(seeds=(0, 1, 2), **OPTIMISERS[optimizer], width=32, dropout=0.4, epochs=2)
    grouped, alone = _both_paths(specs, ds, probe, tmp_path)
    loss_g, loss_1 = (np.mean([m["test_loss"] for m in ms]) for ms in (grouped, alone))
    acc_g, acc_1 = (np.mean([m["test_accuracy"] for m in ms]) for ms in (grouped, alone))
    print(
        f"{optimizer}: test loss group {loss_g:.4f} one {loss_1:.4f}; acc {acc_g:.4f} {acc_1:.4f}"
    )
    assert abs(loss_g - loss_1) <= 0.10 * loss_1
    assert abs(acc_g - acc_1) <= 0.06


def test_dropout_in_training_has_the_one_model_expectation_and_keep_rate(digits):
    """The group's training forward averaged over dropout draws equals the one-model path's
    (nn.Dropout) averaged over as many draws, and both keep 1 - p of the units."""
    ds, _ = digits
    p, draws = 0.3, 400
    spec = _specs(width=32, depth=1, dropout=p)[0]
    model = members.fresh_states([spec], ds.input_shape, ds.n_classes)
    weights, _ = members.stack(model)
    group_model = stacked.StackedClassifier([spec], ds.input_shape, ds.n_classes, weights)
    one = Classifier(spec, ds.input_shape, ds.n_classes)
    one.load_state_dict({n: w[0] for n, w in weights.items()})
    x = torch.from_numpy(ds.x_test[:8])
    keys = stacked.dropout_keys([spec["seed"]], [0])
    with torch.no_grad():
        ours = torch.stack([group_model(x[None], (keys, c))[0][0] for c in range(draws)])
        one.train()
        torch.manual_seed(0)
        theirs = torch.stack([one(x) for _ in range(draws)])
        one.eval()
        plain = one(x)
    se = (ours.std(0) ** 2 / draws + theirs.std(0) ** 2 / draws).sqrt()
    assert ((ours.mean(0) - theirs.mean(0)).abs() < 5 * se + 1e-4).all()
    # with a single dropout before a linear head the expectation is the eval-mode output
    assert ((ours.mean(0) - plain).abs() < 5 * ours.std(0) / draws**0.5 + 1e-4).all()
    h = torch.ones(1, 1000, 50)
    kept = (stacked.dropout(h, torch.tensor([p]), keys, 3) != 0).float().mean().item()
    kept_one = (torch.nn.Dropout(p)(torch.ones(50, 1000)) != 0).float().mean().item()
    assert abs(kept - (1 - p)) < 0.01 and abs(kept - kept_one) < 0.015


# --- (b) isolation ----------------------------------------------------------------------------


def test_a_diverging_member_does_not_touch_the_others(digits, tmp_path):
    ds, probe = digits
    good = _specs(seeds=(0, 1), lr=0.05, dropout=0.3, epochs=2)
    bad = _specs(lr=1e6, dropout=0.3, epochs=2)
    with_bad = train.train_job(good + bad, ds, probe, tmp_path / "a", accelerator="cpu")
    without = train.train_job(good, ds, probe, tmp_path / "b", accelerator="cpu")
    assert [m["group_size"] for m in with_bad] == [3, 3, 3]
    assert with_bad[2]["status"] == "diverged" and np.isnan(with_bad[2]["test_loss"])
    # it diverged in its first epoch: no epoch completed, and its log says where it stopped
    assert with_bad[2]["epochs_completed"] == 0 and with_bad[0]["epochs_completed"] == 2
    logged = _epochs_logged(tmp_path / "a", bad[0]["model_id"])
    assert list(logged["epoch"]) == [0] and list(logged["diverged"]) == [1]
    for a, b in zip(with_bad[:2], without, strict=True):
        assert a["status"] == b["status"] == "ok"
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-6)
    # dropout is really in play: without it the same members end elsewhere
    plain = [{**s, "dropout": 0.0} for s in good]
    plain = [
        {**s, "model_id": zoo.model_id({k: v for k, v in s.items() if k != "model_id"})}
        for s in plain
    ]
    no_drop = train.train_job(plain, ds, probe, tmp_path / "c", accelerator="cpu")
    assert no_drop[0]["test_loss"] != pytest.approx(without[0]["test_loss"], rel=1e-3)


def test_groups_in_forked_processes_train_exactly_as_in_one(digits, tmp_path, caplog):
    """A job's groups side by side in 2 forked processes give every member bitwise the
    results and activations of the same job in one process."""
    ds, probe = digits
    specs = _specs(seeds=(0, 1), lr=0.05, width=[8, 16], depth=[1, 2], dropout=0.2, epochs=[1, 2])
    caplog.set_level(logging.INFO, logger="nnmanifold.train.job")
    forked = train.train_job(specs, ds, probe, tmp_path / "a", accelerator="cpu", processes=2)
    assert "groups train side by side in 2 processes" in caplog.text
    alone = train.train_job(specs, ds, probe, tmp_path / "b", accelerator="cpu")
    assert len({m["test_loss"] for m in alone}) == len(specs)  # every member its own
    for spec, a, b in zip(specs, forked, alone, strict=True):
        assert a["model_id"] == b["model_id"] == spec["model_id"]
        assert (a["status"], a["test_loss"], a["group_size"]) == (
            b["status"],
            b["test_loss"],
            b["group_size"],
        )
        files = [Layout(tmp_path / r).model_files(spec["model_id"]) for r in ("a", "b")]
        hidden = [storage.read_activations(f.activations, None, probe["hash"])[0] for f in files]
        np.testing.assert_array_equal(*hidden)


# --- (d) per-model epochs -----------------------------------------------------------------------


def test_a_member_with_fewer_epochs_stops_updating(digits, tmp_path, caplog):
    ds, probe = digits
    short, long = _specs(lr=0.05, width=16, epochs=[1, 3])
    caplog.set_level(logging.INFO, logger="nnmanifold.train.job")
    both = train.train_job([short, long], ds, probe, tmp_path / "a", accelerator="cpu")
    # the job log's line per group epoch: members trained, members finished
    progress = [
        re.match(r"group of 2: (\d) trained an epoch .*; (\d) of 2 finished", r.getMessage())
        for r in caplog.records
    ]
    assert [m.groups() for m in progress if m] == [("2", "1"), ("1", "1"), ("1", "2")]
    alone = train.train_job([short], ds, probe, tmp_path / "b", accelerator="cpu")
    assert [m["group_size"] for m in both] == [2, 2] and alone[0]["group_size"] == 1
    assert both[0]["epochs_completed"] == 1 and both[1]["epochs_completed"] == 3
    assert both[0]["test_loss"] == pytest.approx(alone[0]["test_loss"], rel=1e-6)
    assert both[1]["test_loss"] != pytest.approx(both[0]["test_loss"], rel=1e-3)
    assert list(_epochs_logged(tmp_path / "a", short["model_id"])["epoch"]) == [0]
    assert list(_epochs_logged(tmp_path / "a", long["model_id"])["epoch"]) == [0, 1, 2]


# --- (c) SIGKILL mid-run, then resume -------------------------------------------------------------

KILLER = textwrap.dedent(
    """
    import json, os, signal
    import numpy as np
    from nnmanifold.train import group
    from nnmanifold.train import job as train
    from nnmanifold.zoo.data import Dataset

    job = json.load(open("job.json"))
    f = np.load("job.npz")
    ds = Dataset("digits", f["x_train"], f["y_train"], f["x_test"], f["y_test"])
    step = group.GroupClassifier.training_step

    def killing_step(self, batch, i):
        if self.done[0] == 2 and i == 7:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, batch, i)

    group.GroupClassifier.training_step = killing_step
    probe = {"x": f["px"], "hash": job["hash"]}
    train.train_job(job["specs"], ds, probe, job["results"], job["accelerator"])
    """
)


def test_sigkill_mid_epoch_resumes_without_repeating_an_epoch(digits, tmp_path):
    ds, probe = digits
    specs = _specs(seeds=(0, 1), lr=0.05, width=16, dropout=0.1, epochs=4)
    whole = train.train_job(specs, ds, probe, tmp_path / "whole", accelerator=ACCELERATOR)

    results = tmp_path / "killed"
    job = {"specs": specs, "results": str(results), "accelerator": ACCELERATOR}
    run_killed(tmp_path, KILLER, job, ds, probe)
    for spec in specs:
        out = Layout(results).model_dir(spec["model_id"])
        assert not (out / "metrics.json").exists()
        assert Layout(results).model_files(spec["model_id"]).group_checkpoint.is_file()

    resumed = train.train_job(specs, ds, probe, results, accelerator=ACCELERATOR)
    for spec, r, w in zip(specs, resumed, whole, strict=True):
        assert r["resumed"] is True and w["resumed"] is False
        assert r["test_loss"] == w["test_loss"]
        assert r["test_accuracy"] == w["test_accuracy"]
        logged = _epochs_logged(results, spec["model_id"])
        assert list(logged["epoch"]) == [0, 1, 2, 3]  # each epoch once: nothing repeated
        killed_pid = logged["pid"].iloc[0]
        assert killed_pid != os.getpid()
        assert list(logged["pid"]) == [killed_pid] * 2 + [os.getpid()] * 2
        uninterrupted = _epochs_logged(tmp_path / "whole", spec["model_id"])
        np.testing.assert_array_equal(logged["train_loss"], uninterrupted["train_loss"])
