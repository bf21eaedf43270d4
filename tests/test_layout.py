"""Channels-first, channels-last and ambiguous npz images: the probe command, the parse-time plan,
the model ids, and a CNN trained on Keras-shaped images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import digits_with_probe

from nnmanifold.core import plan, storage
from nnmanifold.core.config import validate
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import DataSettings
from nnmanifold.zoo import data
from nnmanifold.zoo import specs as zoo

#: Eight RGB 8x8 images per class, 3 classes, channels first (uint8 pixels).
NCHW = np.random.default_rng(0).integers(0, 256, (48, 3, 8, 8)).astype(np.uint8)
LABELS = np.arange(48) % 3


def _npz(tmp_path: Path, x: np.ndarray, **data) -> dict:
    """A validated data section for an npz of ``x`` (train) and its first 24 rows (test)."""
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=LABELS, x_test=x[:24], y_test=LABELS[:24])
    return validate({"data": {"name": "npz", "npz_path": str(path), "n_probe": 12, **data}})


def _probe(tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    """The real probe command, as the probe rule calls it."""
    data = DataSettings.of(config["data"])
    cmd = [sys.executable, "-m", "nnmanifold", "probe", "--results", str(tmp_path / "res")]
    cmd += ["--data", data.identity_json(), "--data-dir", data.data_dir, "--archs", "mlp", "cnn"]
    return subprocess.run(cmd, capture_output=True, text=True)


def _probe_x(tmp_path: Path) -> np.ndarray:
    return storage.read_probe(Layout(tmp_path / "res").probe)["x"]


def test_channels_last_images_read_as_the_same_channels_first_inputs(tmp_path):
    first, last = tmp_path / "first", tmp_path / "last"
    first.mkdir(), last.mkdir()
    proc = _probe(first, _npz(first, NCHW))
    assert proc.returncode == 0, proc.stderr
    proc = _probe(last, _npz(last, NCHW.transpose(0, 2, 3, 1)))
    assert proc.returncode == 0, proc.stderr
    assert _probe_x(first).shape == (12, 3, 8, 8)
    np.testing.assert_array_equal(_probe_x(last), _probe_x(first))


def test_ambiguous_images_stop_the_probe_job_until_layout_is_set(tmp_path):
    x = NCHW[:, :, :3, :]  # (N, 3, 3, 8) -> channels-first (N, 3, 8, 3): both axes could be C
    x = np.ascontiguousarray(x.transpose(0, 1, 3, 2))
    proc = _probe(tmp_path, _npz(tmp_path, x))
    assert proc.returncode == 1
    assert "d.npz: x_train has shape (48, 3, 8, 3)" in proc.stderr
    assert "Set data.layout: nchw" in proc.stderr and "Traceback" not in proc.stderr
    assert plan.input_shape(DataSettings.of(_npz(tmp_path, x)["data"])) is None
    proc = _probe(tmp_path, _npz(tmp_path, x, layout="nhwc"))
    assert proc.returncode == 0, proc.stderr
    expected = (x.astype(np.float32) / 255.0).transpose(0, 3, 1, 2)[:24]
    np.testing.assert_array_equal(_probe_x(tmp_path), expected[_probe_indices(tmp_path)])
    assert data.load_dataset(_npz(tmp_path, x, layout="nchw")["data"]).input_shape == (3, 8, 3)


def test_five_channel_images_stay_channels_first(tmp_path):
    x = np.random.default_rng(1).random((48, 5, 6, 7)).astype(np.float32)
    proc = _probe(tmp_path, _npz(tmp_path, x))
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(_probe_x(tmp_path), x[:24][_probe_indices(tmp_path)])


def _probe_indices(tmp_path: Path) -> np.ndarray:
    return storage.read_probe(Layout(tmp_path / "res").probe)["indices"]


def test_plan_reads_the_shape_with_the_same_rule(tmp_path):
    last = _npz(tmp_path, NCHW.transpose(0, 2, 3, 1))
    assert plan.input_shape(DataSettings.of(last["data"])) == ((3, 8, 8), 3)
    first = _npz(tmp_path, NCHW)
    assert plan.input_shape(DataSettings.of(first["data"])) == ((3, 8, 8), 3)


def test_only_channels_last_enters_the_model_ids(tmp_path):
    config = _npz(tmp_path, NCHW)
    before = {  # the training identity of an npz before data.layout existed
        "name": "npz",
        "test_fraction": 0.3,
        "validation_fraction": 0.1,
        "split_seed": 0,
        "max_train": None,
        "npz_path": str(tmp_path / "d.npz"),
    }
    for layout in ("auto", "nchw"):
        config = _npz(tmp_path, NCHW, layout=layout)
        assert DataSettings.of(config["data"]).training_identity() == before
    assert "layout" not in DataSettings.of(_npz(tmp_path, NCHW)["data"]).identity()
    ids = {s["model_id"] for s in zoo.expand(_npz(tmp_path, NCHW))}
    last = _npz(tmp_path, NCHW.transpose(0, 2, 3, 1))
    assert DataSettings.of(last["data"]).training_identity() == {**before, "layout": "nhwc"}
    assert not ids & {s["model_id"] for s in zoo.expand(last)}


def test_a_cnn_trains_on_channels_last_images(tmp_path):
    from nnmanifold.train.job import train_model

    digits, probe = digits_with_probe()
    pixels = (np.repeat(digits.x_train[:, 0, :, :, None], 3, axis=-1) * 255).astype(np.uint8)
    path = tmp_path / "rgb.npz"
    np.savez(path, x_train=pixels, y_train=digits.y_train, x_test=pixels, y_test=digits.y_train)
    config = validate(
        {
            "data": {
                "name": "npz",
                "npz_path": str(path),
            }
        }
    )
    ds = data.load_dataset(config["data"])
    assert ds.input_shape == (3, 8, 8)
    space = {"arch": ["cnn"], "depth": [1], "channels": [8], "width": [32], "lr": [0.1]}
    space["epochs"] = [2]
    spec = zoo.expand(validate({**config, "zoo": {"seeds": [0], "space": space}}))[0]
    x = np.repeat(probe["x"], 3, axis=1)
    metrics = train_model(spec, ds, {**probe, "x": x}, tmp_path / "model", accelerator="cpu")
    assert metrics["status"] == "ok", metrics["reason"]
    assert metrics["test_accuracy"] > 0.5
    _, attrs = storage.read_activations(tmp_path / "model" / "activations.h5")
    assert list(attrs["layer_order"]) == ["conv1", "fc"]
