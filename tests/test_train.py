"""Training: learns, records divergence and failure, resumes after SIGKILL to identical metrics."""

import json
import textwrap

import numpy as np
import torch
from conftest import ACCELERATOR, run_killed

from nnmanifold.core import storage
from nnmanifold.core.config import validate
from nnmanifold.train import job as train
from nnmanifold.train import models
from nnmanifold.zoo import data
from nnmanifold.zoo import specs as zoo


def _spec(**space):
    space = {k: [v] for k, v in space.items()}
    return zoo.expand(validate({"zoo": {"seeds": [0], "space": space}}))[0]


def test_mlp_learns_digits_well_above_chance(digits, tmp_path):
    ds, probe = digits
    m = train.train_model(_spec(lr=0.1, epochs=5), ds, probe, tmp_path, accelerator="cpu")
    assert m["status"] == "ok"
    assert m["test_accuracy"] > 0.85  # chance is 0.1
    X, attrs = storage.read_activations(tmp_path / "activations.h5", probe_hash=probe["hash"])
    assert X.shape == (50, 64) and X.dtype == np.float32
    assert attrs["layer_order"] == ["fc1", "fc2"] and attrs["penultimate"] == "fc2"
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "ok"


def test_cnn_trains_on_images(digits, tmp_path):
    ds, probe = digits
    spec = _spec(arch="cnn", depth=2, channels=4, width=16, lr=0.1, epochs=2)
    m = train.train_model(spec, ds, probe, tmp_path, accelerator="cpu")
    assert m["status"] == "ok" and m["test_accuracy"] > 0.3
    _, attrs = storage.read_activations(tmp_path / "activations.h5")
    assert attrs["layer_order"] == ["conv1", "conv2", "fc"]


def test_training_is_deterministic(digits, tmp_path):
    ds, probe = digits
    spec = _spec(lr=0.05, epochs=2, dropout=0.2)
    a = train.train_model(spec, ds, probe, tmp_path / "a", accelerator="cpu")
    b = train.train_model(spec, ds, probe, tmp_path / "b", accelerator="cpu")
    assert a["test_loss"] == b["test_loss"]
    xa, _ = storage.read_activations(tmp_path / "a" / "activations.h5")
    xb, _ = storage.read_activations(tmp_path / "b" / "activations.h5")
    np.testing.assert_array_equal(xa, xb)


def test_complete_outputs_are_kept_and_a_new_probe_set_is_recorded_again(digits, tmp_path):
    ds, probe = digits
    spec = _spec(lr=0.1, epochs=1)
    first = train.train_model(spec, ds, probe, tmp_path, accelerator="cpu")
    files = [tmp_path / "metrics.json", tmp_path / "activations.h5"]
    stamps = [p.stat().st_mtime_ns for p in files]
    assert train.train_model(spec, ds, probe, tmp_path, accelerator="cpu") == first
    assert [p.stat().st_mtime_ns for p in files] == stamps

    other = {**probe, "x": probe["x"][:20], "hash": "another-probe-set"}
    again = train.train_model(spec, ds, other, tmp_path, accelerator="cpu")
    assert again["resumed"] is True and again["test_loss"] == first["test_loss"]
    X, _ = storage.read_activations(tmp_path / "activations.h5", probe_hash="another-probe-set")
    assert X.shape[0] == 20


def test_diverged_model_is_recorded_not_fatal(digits, tmp_path):
    ds, probe = digits
    m = train.train_model(_spec(lr=1e6, epochs=2), ds, probe, tmp_path, accelerator="cpu")
    assert m["status"] == "diverged"
    assert np.isnan(m["test_accuracy"])
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"


def test_crashing_model_is_recorded_as_failed(digits, tmp_path):
    ds, probe = digits
    flat = data.Dataset(
        "flat",
        ds.x_train.reshape(len(ds.x_train), -1),
        ds.y_train,
        ds.x_test.reshape(len(ds.x_test), -1),
        ds.y_test,
    )
    m = train.train_model(_spec(arch="cnn", epochs=1), flat, probe, tmp_path, accelerator="cpu")
    assert m["status"] == "failed" and "image data" in m["reason"]
    assert (tmp_path / "activations.h5").is_file()


KILLER = textwrap.dedent(
    """
    import json, os, signal, sys
    import numpy as np
    import torch
    from nnmanifold.train import models
    from nnmanifold.train import job as train
    from nnmanifold.zoo.data import Dataset

    job = json.load(open("job.json"))
    if "threads" in job:  # as many as the run it is compared with: sums differ by thread count
        torch.set_num_threads(job["threads"])
    f = np.load("job.npz")
    ds = Dataset("digits", f["x_train"], f["y_train"], f["x_test"], f["y_test"])
    step = models.Classifier.training_step

    def killing_step(self, batch, i):
        if self.current_epoch == 2 and i == 7:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, batch, i)

    models.Classifier.training_step = killing_step
    train.train_model(
        job["spec"], ds, {"x": f["px"], "hash": job["hash"]}, job["out"], job["accelerator"]
    )
    """
)


def test_sigkill_mid_epoch_resumes_to_identical_metrics(digits, tmp_path):
    ds, probe = digits
    spec = _spec(lr=0.05, epochs=4, dropout=0.1)
    whole = train.train_model(spec, ds, probe, tmp_path / "whole", accelerator=ACCELERATOR)

    out = tmp_path / "killed"
    job = {"spec": spec, "out": str(out), "accelerator": ACCELERATOR}
    run_killed(tmp_path, KILLER, job, ds, probe)
    assert not (out / "metrics.json").exists()
    assert not (out / "activations.h5").exists()
    assert (out / "checkpoints" / "last.ckpt").is_file()  # epochs 0 and 1 were saved

    steps = []
    step = models.Classifier.training_step

    def counting_step(self, batch, i):
        steps.append(self.current_epoch)
        return step(self, batch, i)

    models.Classifier.training_step = counting_step
    try:
        resumed = train.train_model(spec, ds, probe, out, accelerator=ACCELERATOR)
    finally:
        models.Classifier.training_step = step
    assert resumed["resumed"] is True
    # a resume, not a restart: only the epochs after the last checkpoint ran again
    per_epoch = -(-len(ds.y_train) // spec["batch_size"])
    assert sorted(set(steps)) == [2, 3] and len(steps) == 2 * per_epoch
    assert resumed["test_loss"] == whole["test_loss"]
    assert resumed["test_accuracy"] == whole["test_accuracy"]


def test_checkpoint_restores_every_random_state(digits, tmp_path):
    import random

    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    saved = models.rng_states()
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    path = tmp_path / "rng.pt"
    torch.save({"nnmanifold": saved}, path)
    models.restore_rng_states(torch.load(path, weights_only=True)["nnmanifold"])
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(expected[0], again[0])
    np.testing.assert_array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_truncated_checkpoint_is_set_aside_and_training_starts_afresh(digits, tmp_path, caplog):
    ds, probe = digits
    spec = _spec(lr=0.05, epochs=2)
    whole = train.train_model(spec, ds, probe, tmp_path / "whole", accelerator="cpu")
    last = tmp_path / "torn" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    data = (tmp_path / "whole" / "checkpoints" / "last.ckpt").read_bytes()
    last.write_bytes(data[: len(data) // 2])
    torn = train.train_model(spec, ds, probe, tmp_path / "torn", accelerator="cpu")
    assert torn["status"] == "ok" and torn["resumed"] is False
    assert torn["test_loss"] == whole["test_loss"]  # from scratch, deterministic
    assert last.with_name("last.ckpt.failed").read_bytes() == data[: len(data) // 2]
    assert "cannot be loaded" in caplog.text
