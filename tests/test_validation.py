"""Validation accuracy: every model is scored on the same held-out share of its training data."""

import numpy as np
import pytest
import torch
from conftest import digits_with_probe

from nnmanifold.core.config import validate
from nnmanifold.train import job as train
from nnmanifold.train.models import Classifier
from nnmanifold.zoo import data
from nnmanifold.zoo import specs as zoo


@pytest.fixture(scope="module")
def digits():
    return digits_with_probe({"max_train": 400})


def _reference_accuracy(spec, ds, checkpoint):
    """Load the trained weights and count correct validation answers one point at a time."""
    model = Classifier(spec, ds.input_shape, ds.n_classes)
    model.load_state_dict(torch.load(checkpoint, weights_only=False)["state_dict"])
    model.eval()
    with torch.no_grad():
        right = [
            int(model(x[None]).argmax()) == y
            for x, y in zip(torch.from_numpy(ds.x_val), ds.y_val.tolist(), strict=True)
        ]
    return sum(right) / len(right)


def test_both_training_paths_record_validation_accuracy(digits, tmp_path):
    ds, probe = digits
    space = {"width": [16], "depth": [1], "epochs": [2], "lr": [0.05]}
    specs = zoo.expand(validate({"zoo": {"seeds": [0, 1], "space": space}}))
    one = train.train_model(specs[0], ds, probe, tmp_path / "one", accelerator="cpu")
    ckpt = tmp_path / "one" / "checkpoints" / "last.ckpt"
    assert one["val_accuracy"] == pytest.approx(_reference_accuracy(specs[0], ds, ckpt), abs=1e-6)
    grouped = train.train_job(specs, ds, probe, tmp_path / "group", accelerator="cpu")
    assert abs(grouped[0]["val_accuracy"] - one["val_accuracy"]) <= 0.01
    assert all(0.1 < m["val_accuracy"] <= 1 for m in grouped)


def test_a_dataset_without_validation_split_records_nan(digits, tmp_path):
    ds, probe = digits
    bare = data.Dataset("digits", ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    space = {"width": [16], "depth": [1], "epochs": [1]}
    specs = zoo.expand(validate({"zoo": {"seeds": [0], "space": space}}))
    (m,) = train.train_job(specs, bare, probe, tmp_path, accelerator="cpu")
    assert m["status"] == "ok" and np.isnan(m["val_accuracy"])


def test_validation_fraction_is_part_of_every_model_id():
    space = {"width": [16], "depth": [1]}
    a = zoo.expand(validate({"zoo": {"seeds": [0], "space": space}}))[0]
    b = zoo.expand(
        validate({"zoo": {"seeds": [0], "space": space}, "data": {"validation_fraction": 0.2}})
    )[0]
    assert a["model_id"] != b["model_id"] and a["data"]["validation_fraction"] == 0.1
