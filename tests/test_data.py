import re
import struct

import numpy as np
import pytest

from nnmanifold.core.config import validate
from nnmanifold.core.paths import Layout
from nnmanifold.zoo import data


def _data(**section):
    return validate({"data": section})["data"]


def test_digits_split_is_stratified_and_seeded():
    a = data.load_dataset(_data())
    b = data.load_dataset(_data())
    assert a.x_train.shape[1:] == (1, 8, 8) and a.n_classes == 10
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert len(a.y_test) == pytest.approx(0.3 * 1797, abs=1)


def test_validation_is_held_out_of_training_seeded_and_stratified():
    a = data.load_dataset(_data(validation_fraction=0.2))
    b = data.load_dataset(_data(validation_fraction=0.2))
    n_train = len(a.y_train) + len(a.y_val)
    assert len(a.y_val) == round(0.2 * n_train)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    # no validation point is a training point, and together they are the whole training split
    rows = {r.tobytes() for r in a.x_train.reshape(len(a.x_train), -1)}
    assert not rows & {r.tobytes() for r in a.x_val.reshape(len(a.x_val), -1)}
    share = np.bincount(a.y_val, minlength=10) / np.bincount(a.y_train, minlength=10)
    assert share.min() > 0.2 and share.max() < 0.3  # each class ~ 0.2 / 0.8 = 0.25


def test_validation_split_reference():
    y = np.repeat(np.arange(3), [10, 20, 30])
    train, val = data.validation_split(y, 0.1, seed=0)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(60))
    assert np.array_equal(np.bincount(y[val]), [1, 2, 3])
    with pytest.raises(data.DataError, match="validation_fraction"):
        data.validation_split(np.array([0, 1]), 0.9, seed=0)


def test_probe_is_class_balanced_and_hashed():
    ds = data.load_dataset(_data())
    idx = data.probe_indices(ds.y_test, 205, seed=0)
    counts = np.bincount(ds.y_test[idx])
    assert counts.sum() == 205 and counts.max() - counts.min() <= 1
    assert len(set(idx)) == len(idx)
    h = data.probe_hash("digits", idx, ds.y_test[idx], ds.x_test[idx])
    assert h == data.probe_hash("digits", idx, ds.y_test[idx], ds.x_test[idx])
    other = data.probe_indices(ds.y_test, 205, seed=1)
    assert h != data.probe_hash("digits", other, ds.y_test[other], ds.x_test[other])


def test_probe_larger_than_test_split_is_refused():
    ds = data.load_dataset(_data())
    with pytest.raises(data.DataError, match="n_probe"):
        data.probe_indices(ds.y_test, len(ds.y_test) + 1, seed=0)


def test_mnist1d_is_generated_locally():
    ds = data.load_dataset(_data(name="mnist1d"))
    assert ds.x_train.shape == (3600, 40) and ds.x_val.shape == (400, 40) and ds.n_classes == 10


def test_max_train_subsamples_stratified():
    ds = data.load_dataset(_data(max_train=100))
    assert len(ds.y_train) + len(ds.y_val) == 100
    assert np.bincount(ds.y_train).min() >= 7


def _write_idx(path, array):
    dims = array.shape
    header = struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
)
def test_torchvision_sets_read_from_local_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    ds = data.load_dataset(_data(name=name, data_dir=str(tmp_path)))
    assert ds.x_train.shape == (54, 1, 28, 28) and ds.x_val.shape == (6, 1, 28, 28)
    assert ds.x_test.shape == (20, 1, 28, 28)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert list(ds.y_test[:3]) == [0, 1, 2]


def test_missing_torchvision_data_says_how_to_fix(tmp_path):
    with pytest.raises(data.DataError, match="download"):
        data.load_dataset(_data(name="mnist", data_dir=str(tmp_path)))


def _npz(tmp_path, **arrays):
    rng = np.random.default_rng(0)
    full = {
        "x_train": rng.normal(size=(40, 5)),
        "y_train": np.arange(40) % 4,
        "x_test": rng.normal(size=(20, 5)),
        "y_test": np.arange(20) % 4,
    }
    full.update(arrays)
    path = tmp_path / "d.npz"
    np.savez(path, **{k: v for k, v in full.items() if v is not None})
    return _data(name="npz", npz_path=str(path))


def test_npz_loads(tmp_path):
    ds = data.load_dataset(_npz(tmp_path))
    assert ds.input_shape == (5,) and ds.n_classes == 4


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y_train": np.arange(39) % 4}, "y_train"),
        ({"x_test": np.zeros((20, 6))}, "x_test"),
        ({"y_test": np.arange(20) % 5}, "never occur"),
        ({"y_test": None}, "lacks"),
        ({"y_train": np.linspace(0, 1, 40)}, "integer"),
    ],
)
def test_bad_npz_is_named(tmp_path, arrays, message):
    with pytest.raises(data.DataError, match=message):
        data.load_dataset(_npz(tmp_path, **arrays))


def _probe(tmp_path, npz, *archs):
    """Run the probe step on an npz config as the workflow does; return (process, probe)."""
    import json
    import subprocess
    import sys

    from nnmanifold.core import storage

    results = tmp_path / f"results-{len(list(tmp_path.glob('results-*')))}"
    section = {k: v for k, v in npz.items() if k not in ("data_dir", "download")}
    section["n_probe"] = 12
    cmd = [sys.executable, "-m", "nnmanifold", "probe", "--data", json.dumps(section)]
    cmd += ["--data-dir", str(tmp_path)]
    cmd += ["--results", str(results), "--archs", *archs] if archs else ["--results", str(results)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc, (storage.read_probe(Layout(results).probe) if proc.returncode == 0 else None)


def test_uint8_images_are_scaled_like_torchvision(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (60, 1, 6, 6)).astype(np.uint8)
    labels = np.arange(60) % 3
    as_int = tmp_path / "int"
    as_float = tmp_path / "float"
    for folder, x in ((as_int, pixels), (as_float, pixels.astype(np.float32) / 255.0)):
        folder.mkdir()
        cfg = _npz(folder, x_train=x, y_train=labels, x_test=x[:30], y_test=labels[:30])
        proc, probe = _probe(folder, cfg, "mlp", "cnn")
        assert proc.returncode == 0, proc.stderr
        folder.joinpath("x.npy").write_bytes(probe["x"].tobytes())
    assert as_int.joinpath("x.npy").read_bytes() == as_float.joinpath("x.npy").read_bytes()
    assert 0.0 <= probe["x"].min() and probe["x"].max() <= 1.0 and probe["x"].max() > 0.9


def test_three_axis_images_get_a_channel_axis(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (40, 8, 8)).astype(np.uint8)
    ds = data.load_dataset(_npz(tmp_path, x_train=x, x_test=x[:20]))
    assert ds.input_shape == (1, 8, 8)
    data.check_architectures(ds, ["mlp", "cnn"], "d.npz")


@pytest.mark.parametrize(
    ("arrays", "archs", "message"),
    [
        ({"x_train": np.full((40, 5), np.nan)}, ("mlp",), "d.npz: x_train has 200 non-finite"),
        ({"x_test": np.full((20, 5), np.inf)}, ("mlp",), "d.npz: x_test has 100 non-finite"),
        ({}, ("mlp", "cnn"), r"arch has cnn, which needs images .*/d.npz"),
        ({"x_train": np.zeros((40, 5, 2, 2, 2))}, ("mlp",), r"x_train has shape \(40, 5, 2"),
        ({"x_train": np.full((40, 5), 300)}, ("mlp",), "integers from 300 to 300"),
    ],
)
def test_bad_inputs_are_named_by_the_probe_job(tmp_path, arrays, archs, message):
    proc, _ = _probe(tmp_path, _npz(tmp_path, **arrays), *archs)
    assert proc.returncode == 1
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def _probe_file(tmp_path, data_section: dict) -> tuple[dict, data.Dataset]:
    """The probe set the probe step writes for this data section, and the data set."""
    from nnmanifold.core import storage
    from nnmanifold.core.settings import DataSettings
    from nnmanifold.steps import zoo as zoo_step

    section = validate({"data": data_section})["data"]
    layout = Layout(tmp_path)
    zoo_step.probe(layout, DataSettings.of(section), ["mlp"])
    return storage.read_probe(layout.probe), data.load_dataset(section)


def test_the_default_probe_set_and_model_ids_are_unchanged(tmp_path):
    """data.probe_split defaults to test: the default run's probe hash and model ids are those
    it had before the option existed (commit 4066e43), so no earlier result is redone."""
    from nnmanifold.zoo.specs import expand

    probe, ds = _probe_file(tmp_path, {})
    assert probe["split"] == "test"
    np.testing.assert_array_equal(probe["x"], ds.x_test[probe["indices"]])
    assert probe["hash"] == "df73817fcd87f607"
    assert expand(validate({}))[0]["model_id"] == "b265f4eb361c"


def test_a_validation_probe_set_is_drawn_off_the_test_set(tmp_path):
    """data.probe_split: validation draws the class-balanced probe set from the validation split
    (held out of training): no probe input is a test input, and model ids stay as they are."""
    from nnmanifold.zoo.specs import expand

    probe, ds = _probe_file(tmp_path, {"probe_split": "validation", "n_probe": 50})
    assert probe["split"] == "validation"
    np.testing.assert_array_equal(probe["x"], ds.x_val[probe["indices"]])
    np.testing.assert_array_equal(probe["labels"], ds.y_val[probe["indices"]])
    assert np.bincount(probe["labels"]).tolist() == [5] * 10
    test_inputs = {row.tobytes() for row in ds.x_test}
    assert not any(row.tobytes() in test_inputs for row in probe["x"])
    default, _ = _probe_file(tmp_path / "default", {"n_probe": 50})
    assert probe["hash"] != default["hash"]
    config = validate({"data": {"probe_split": "validation"}})
    assert [s["model_id"] for s in expand(config)] == [s["model_id"] for s in expand(validate({}))]
