"""Vectorised group training: matches the one-model path, isolates members, resumes, stops."""

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
from nnmanifold.train import group
from nnmanifold.train import job as train
from nnmanifold.train.models import Classifier
from nnmanifold.zoo import data
from nnmanifold.zoo import specs as zoo


def _specs(seeds=(0,), **space):
    space = {k: v if isinstance(v, list) else [v] for k, v in space.items()}
    return zoo.expand(validate({"zoo": {"seeds": list(seeds), "space": space}}))


def _epochs_logged(results, model_id):
    return pd.read_csv(Layout(results).model_dir(model_id) / train.EPOCH_LOG)


# --- numerical pieces against slow references ---------------------------------------------


def test_stacked_forward_equals_each_classifier(digits):
    ds, _ = digits
    specs = _specs(seeds=(0, 1, 2), arch="cnn", depth=2, width=8, channels=3)
    specs += _specs(seeds=(0, 1), arch="mlp", depth=2, width=8)
    x = torch.from_numpy(ds.x_test[:20])
    for same in (specs[:3], specs[3:]):
        states = [group.fresh_state(s, ds.input_shape, ds.n_classes) for s in same]
        module = group.GroupClassifier(same, ds, states)
        logits, hidden = group.forward(module.blocks, module.params(), module.activation, x, True)
        per_model = torch.stack([x] * len(same))
        logits_b, _ = group.forward(
            module.blocks, module.params(), module.activation, per_model, False
        )
        for k, spec in enumerate(same):
            pl.seed_everything(spec["seed"], verbose=False)
            one = Classifier(spec, ds.input_shape, ds.n_classes).eval()
            with torch.no_grad():
                torch.testing.assert_close(logits[k], one(x), rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(logits_b[k], one(x), rtol=1e-5, atol=1e-5)
                for name, h in one.hidden(x).items():
                    torch.testing.assert_close(hidden[name][k], h, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_vectorised_optimiser_follows_torch_optim(optimizer):
    gen = torch.Generator().manual_seed(0)
    K, shape = 3, (4, 5)
    p0 = torch.randn(K, *shape, generator=gen)
    grads = [torch.randn(K, *shape, generator=gen) for _ in range(4)]
    lr = torch.tensor([0.1, 0.01, 0.5])
    momentum, wd = torch.tensor([0.9, 0.0, 0.5]), torch.tensor([0.0, 1e-2, 1e-3])
    p, slot1, slot2 = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    for t, g in enumerate(grads, start=1):
        if optimizer == "sgd":
            p, slot1 = group.sgd_update(p, g, slot1, lr, momentum, wd)
        else:
            step = torch.full((K,), float(t))
            p, slot1, slot2 = group.adam_update(p, g, slot1, slot2, step, lr, wd)
    for k in range(K):
        ref = torch.nn.Parameter(p0[k].clone())
        if optimizer == "sgd":
            opt = torch.optim.SGD(
                [ref], lr=float(lr[k]), momentum=float(momentum[k]), weight_decay=float(wd[k])
            )
        else:
            opt = torch.optim.Adam([ref], lr=float(lr[k]), weight_decay=float(wd[k]))
        for g in grads:
            ref.grad = g[k].clone()
            opt.step()
        torch.testing.assert_close(p[k], ref.detach(), rtol=1e-6, atol=1e-7)


def test_member_cross_entropy_equals_torch_per_model():
    gen = torch.Generator().manual_seed(0)
    K, n, C = 3, 7, 10
    feature_major = torch.randn(K, C, n, generator=gen) * 5  # the layout forward gives
    logits = feature_major.transpose(1, 2).requires_grad_()
    y = torch.randint(0, C, (K, n), generator=gen)
    weights = torch.tensor([1.0, 0.0, 2.5])
    (group.member_cross_entropy(logits, y) * weights).sum().backward()
    for k in range(K):
        ref = logits.detach()[k].clone().requires_grad_()
        loss = torch.nn.functional.cross_entropy(ref, y[k])
        torch.testing.assert_close(group.member_cross_entropy(logits, y)[k], loss)
        (loss * weights[k]).backward()
        torch.testing.assert_close(logits.grad[k], ref.grad)


def test_dropout_stream_is_per_model_uniform_and_keyed():
    keys = group.dropout_keys([0, 1, 2], [0, 0, 0])
    u = group.uniforms(keys, 5, (200, 50))
    alone = group.uniforms(keys[1:2], 5, (200, 50))
    assert torch.equal(u[1], alone[0])  # a row depends on its own key only
    assert not torch.equal(u[0], u[1])
    assert not torch.equal(u, group.uniforms(keys, 6, (200, 50)))
    assert abs(u.mean().item() - 0.5) < 0.01 and u.min() >= 0 and u.max() < 1
    hist = torch.histc(u, bins=10, min=0, max=1) / u.numel()
    assert torch.allclose(hist, torch.full((10,), 0.1), atol=0.01)


# --- (a) equivalence with the one-model path -------------------------------------------------


@pytest.mark.parametrize(
    "space",
    [
        {"arch": "mlp", "width": 16, "depth": 2, "epochs": 2},
        {"arch": "cnn", "channels": 4, "width": 16, "depth": 1, "epochs": 1},
    ],
)
def test_group_matches_the_one_model_path(digits, tmp_path, space):
    ds, probe = digits
    specs = _specs(seeds=(0, 1), lr=0.05, **space)
    states = [group.fresh_state(s, ds.input_shape, ds.n_classes) for s in specs]
    module = group.GroupClassifier(specs, ds, states)
    for k, spec in enumerate(specs):  # initial weights: bitwise those of train_model
        pl.seed_everything(spec["seed"], workers=True, verbose=False)
        reference = Classifier(spec, ds.input_shape, ds.n_classes).state_dict()
        for name, w in module.params().items():
            assert torch.equal(w[k], reference[name]), name
    for epoch in (0, 1):  # data order: bitwise what the one-model DataLoader's sampler gives
        order = group.epoch_order([s["seed"] for s in specs], [epoch] * 2, len(ds.y_train))
        for k, spec in enumerate(specs):
            sampler = data.EpochShuffleSampler(len(ds.y_train), spec["seed"])
            sampler.set_epoch(epoch)
            assert order[k].tolist() == list(sampler)

    grouped = train.train_job(specs, ds, probe, tmp_path / "group", accelerator="cpu")
    assert [m["group_size"] for m in grouped] == [2, 2]
    for spec, g in zip(specs, grouped, strict=True):
        one = train.train_model(spec, ds, probe, tmp_path / "one" / spec["model_id"], "cpu")
        assert g["status"] == one["status"] == "ok"
        assert abs(g["test_accuracy"] - one["test_accuracy"]) <= 0.005
        assert abs(g["test_loss"] - one["test_loss"]) <= 1e-3 * one["test_loss"]
        assert g["epochs_completed"] == spec["epochs"]
        X, attrs = storage.read_activations(
            Layout(tmp_path / "group").model_dir(spec["model_id"]) / "activations.h5",
            probe_hash=probe["hash"],
        )
        X1, attrs1 = storage.read_activations(
            tmp_path / "one" / spec["model_id"] / "activations.h5"
        )
        assert attrs["layer_order"] == attrs1["layer_order"]
        np.testing.assert_allclose(X, X1, rtol=1e-3, atol=1e-3)


# --- (b) isolation ----------------------------------------------------------------------------


def test_a_diverging_member_does_not_touch_the_others(digits, tmp_path):
    ds, probe = digits
    good = _specs(seeds=(0, 1), lr=0.05, dropout=0.3, epochs=2)
    bad = _specs(lr=1e6, dropout=0.3, epochs=2)
    with_bad = train.train_job(good + bad, ds, probe, tmp_path / "a", accelerator="cpu")
    without = train.train_job(good, ds, probe, tmp_path / "b", accelerator="cpu")
    assert [m["group_size"] for m in with_bad] == [3, 3, 3]
    assert with_bad[2]["status"] == "diverged" and np.isnan(with_bad[2]["test_loss"])
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
        assert (out / "checkpoints" / train.GROUP_CHECKPOINT).is_file()

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
