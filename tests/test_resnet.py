"""ResNets in the zoo: ids, the network of He et al., augmentation, training on digits, resume with
BatchNorm statistics, and activations taken in eval mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ACCELERATOR, run_killed, snakemake, write_config
from test_train import KILLER

from nnmanifold.core import storage
from nnmanifold.core.config import validate
from nnmanifold.train import job as train
from nnmanifold.train import models, resnet
from nnmanifold.zoo import architecture
from nnmanifold.zoo import specs as zoo
from nnmanifold.zoo.data import Dataset


def _spec(**space) -> dict:
    space = {"arch": "resnet", "blocks": 1, "channels": 4, **space}
    space = {k: [v] for k, v in space.items()}
    return zoo.expand(validate({"zoo": {"seeds": [0], "space": space}}))[0]


def test_existing_mlp_and_cnn_ids_are_unchanged_beside_resnets():
    space = {"arch": ["mlp", "cnn", "resnet"], "depth": [1, 2], "augment": ["none", "standard"]}
    specs = zoo.expand(validate({"zoo": {"seeds": [0], "space": space}}))
    ids = {(s["arch"], s.get("depth"), s.get("augment")): s["model_id"] for s in specs}
    # ids of the same grid before arch resnet, blocks and augment existed
    assert ids[("mlp", 1, None)] == "10879c9e7355"
    assert ids[("mlp", 2, None)] == "b265f4eb361c"
    assert ids[("cnn", 1, None)] == "bb42ef42b8ce"
    assert ids[("cnn", 2, None)] == "72fb2ccd6787"
    assert zoo.job_key(specs[0]).startswith("1110000111111100")  # the old shape bits
    # depth and the mlp's augmentation do not apply, so 4 + 2 cnn + 2 resnet models
    assert len(specs) == 8 and {(s["arch"], s.get("augment")) for s in specs} >= {
        ("resnet", None),
        ("resnet", "standard"),
        ("cnn", "standard"),
    }
    net = next(s for s in specs if s["arch"] == "resnet")
    assert {"blocks", "channels", "activation"} <= set(net) and not {"depth", "width"} & set(net)
    assert zoo.layer_names(net) == list(resnet.LAYERS)


def test_random_mode_ids_are_unchanged():
    space = {"arch": ["mlp", "cnn"], "depth": {"low": 1, "high": 4}}
    space["lr"] = {"low": 1e-3, "high": 1e-1, "log": True}
    config = validate({"zoo": {"mode": "random", "n_samples": 3, "space": space}})
    assert [s["model_id"] for s in zoo.expand(config)][:3] == [
        "b9600e27b49b",
        "330275be65ce",
        "cfec1ef801b5",
    ]


@pytest.mark.parametrize("blocks", [1, 3])
def test_resnet_has_6_blocks_plus_2_layers_and_projection_shortcuts(blocks):
    model = models.Classifier(_spec(blocks=blocks, channels=16), (3, 32, 32), 10)
    convs = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    shortcuts = [m for n, m in model.named_modules() if n.endswith("shortcut.0")]
    assert len(convs) - len(shortcuts) + 1 == 6 * blocks + 2  # and the linear head
    assert [s.out_channels for s in shortcuts] == [32, 64]  # projections into stages 2, 3
    widths = {k: v.shape[1] for k, v in model.hidden(torch.zeros(2, 3, 32, 32)).items()}
    assert widths == {"stage1": 16, "stage2": 32, "stage3": 64, "penultimate": 64}
    if blocks == 3:  # ResNet-20 has 0.27 M parameters (He et al. 2016, table 6)
        assert sum(p.numel() for p in model.parameters()) == 272_474


@pytest.mark.parametrize(
    ("blocks", "channels", "shape"), [(1, 4, (1, 8, 8)), (2, 3, (3, 9, 7)), (3, 16, (3, 32, 32))]
)
def test_the_architecture_describes_the_built_resnet(blocks, channels, shape):
    """``zoo.architecture``'s ResNet (what the plan and the group's memory estimate read) against
    the network as built and run: recorded widths, parameters, and the values its convolutions,
    BatchNorms and activations output per input, counted by forward hooks."""
    spec = _spec(blocks=blocks, channels=channels)
    model = models.Classifier(spec, shape, 10).eval()
    per_point = 0

    def count(_module, _input, out):
        nonlocal per_point
        per_point += out[0].numel()

    kinds = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU)
    for m in model.modules():
        if isinstance(m, kinds):
            m.register_forward_hook(count)
    with torch.no_grad():
        hidden = model.hidden(torch.zeros(1, *shape))
    widths, params, outputs = architecture.resnet_summary(spec, shape, 10)
    assert widths == [h.shape[1] for h in hidden.values()]
    assert params == sum(p.numel() for p in model.parameters())
    assert outputs == per_point
    with pytest.raises(ValueError, match="image data"):
        architecture.resnet_blocks(spec, (64,))


def test_augment_is_a_padded_crop_and_flip_per_image_reproducible_per_batch():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = resnet.augment(x, resnet.augment_generator(seed=5, epoch=1, batch=2))
    again = resnet.augment(x, resnet.augment_generator(seed=5, epoch=1, batch=2))
    assert torch.equal(out, again)
    assert not torch.equal(out, resnet.augment(x, resnet.augment_generator(5, 1, 3)))
    # the slow obvious reference: every crop of the 1-padded image, flipped or not
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)))
    for i in range(2):
        crops = [
            c[..., ::-1] if flip else c
            for dy in range(3)
            for dx in range(3)
            for flip in (False, True)
            for c in [padded[i, :, dy : dy + 8, dx : dx + 8]]
        ]
        assert any(np.array_equal(out[i].numpy(), c) for c in crops)


def test_activations_are_taken_in_eval_mode_and_identical_twice(digits):
    ds, probe = digits
    model = models.Classifier(_spec(), ds.input_shape, ds.n_classes)
    model.train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    first = train._hidden(model, probe["x"])
    model.train()
    second = train._hidden(model, probe["x"])
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())  # no BN update
    batch = model.hidden(torch.from_numpy(probe["x"][:25]))  # eval: per point, not per batch
    assert np.allclose(batch["penultimate"].detach().numpy(), first["penultimate"][:25], atol=1e-6)


def test_sigkill_mid_epoch_resumes_with_batchnorm_statistics(digits, tmp_path):
    full, probe = digits
    ds = Dataset("digits", full.x_train[:320], full.y_train[:320], full.x_test, full.y_test)
    spec = _spec(lr=0.1, epochs=3, augment="standard")
    whole = train.train_model(spec, ds, probe, tmp_path / "whole", accelerator=ACCELERATOR)
    assert whole["status"] == "ok"

    out = tmp_path / "killed"
    job = {"spec": spec, "out": str(out), "accelerator": ACCELERATOR}
    run_killed(tmp_path, KILLER, {**job, "threads": torch.get_num_threads()}, ds, probe)
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    running = saved["blocks.stage1.1.running_var"]  # the stem's BatchNorm after 2 epochs
    assert not torch.equal(running, torch.ones_like(running))

    resumed = train.train_model(spec, ds, probe, out, accelerator=ACCELERATOR)
    assert resumed["resumed"] is True
    assert resumed["test_loss"] == whole["test_loss"]
    for layer in resnet.LAYERS:
        a, _ = storage.read_activations(tmp_path / "whole" / "activations.h5", layer)
        b, _ = storage.read_activations(out / "activations.h5", layer)
        assert np.array_equal(a, b), layer


def test_job_trains_resnets_in_groups_of_their_shape(digits, tmp_path):
    ds, probe = digits
    specs = [_spec(lr=0.1, epochs=2), _spec(epochs=1, channels=2)]
    trained = train.train_job(specs, ds, probe, tmp_path, accelerator="cpu")
    assert [m["status"] for m in trained] == ["ok", "ok"]
    assert trained[0]["test_accuracy"] > 0.5  # chance is 0.1
    assert [m["group_size"] for m in trained] == [1, 1]  # two shapes: two groups


def test_a_digits_zoo_with_resnets_trains_through_the_workflow(tmp_path):
    space = {"arch": ["mlp", "resnet"], "channels": [2, 4], "epochs": [1], "width": [16]}
    config = {
        "data": {"name": "digits", "n_probe": 50},
        "zoo": {"seeds": [0], "space": {**space, "depth": [1], "lr": [0.1]}},
        "train": {"models_per_job": 8, "accelerator": "cpu"},
    }
    write_config(tmp_path, config)
    snakemake(tmp_path, "trained")
    specs = zoo.expand(validate(config))
    assert sorted(s["arch"] for s in specs) == ["mlp", "resnet", "resnet"]
    for spec in specs:
        folder = tmp_path / "results" / "models" / spec["model_id"]
        metrics = storage.read_json(folder / "metrics.json")
        assert metrics["status"] == "ok", metrics["reason"]
        _, attrs = storage.read_activations(folder / "activations.h5")
        assert list(attrs["layer_order"]) == zoo.layer_names(spec)
        if spec["arch"] == "resnet":
            penultimate, _ = storage.read_activations(folder / "activations.h5")
            assert penultimate.shape == (50, 4 * spec["channels"])


def test_a_resnet_zoo_on_feature_vectors_is_refused_before_training():
    from nnmanifold.zoo import data

    flat = Dataset("npz", np.zeros((4, 5), np.float32), np.arange(4), np.zeros((2, 5)), np.zeros(2))
    with pytest.raises(data.DataError, match="arch has resnet, which needs images"):
        data.check_architectures(flat, ["mlp", "resnet"], "d.npz")
