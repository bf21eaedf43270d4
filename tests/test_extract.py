"""Networks from elsewhere, extracted from real modules: a torchvision ResNet trained here, a
BatchNorm network, a TorchScript archive and precomputed arrays (extract package)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from nnmanifold.core.config import validate
from nnmanifold.core.errors import UserError
from nnmanifold.extract import layers, load, run, sources

PHATE = ("phate_1", "phate_2")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "external_networks"
sys.path.insert(0, str(EXAMPLE))
import digits_nets  # noqa: E402 - the example's plain PyTorch networks


def _spec(path: Path, **group) -> dict:
    """A network spec as ``sources.resolve`` makes it (schema defaults filled in)."""
    defaults = {"kwargs": {}, "state_dict_key": None, "strip_prefix": None, "trust_pickle": False}
    defaults.update(layer="penultimate", spatial="gap", output=None, metadata=None)
    defaults.update(input_transform=None, batch_size=256, name="g")
    group = {**defaults, **group}
    key = next(k for k in ("factory", "torchscript", "activations") if k in group)
    group.setdefault("checkpoints" if key == "factory" else key, str(path))
    return sources.resolve([group])[0]


def _resnet() -> nn.Module:
    """torchvision's ResNet (one BasicBlock a stage: ResNet-10) for 8x8 one-channel digits."""
    from torchvision.models.resnet import BasicBlock, ResNet

    net = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)
    net.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)  # 8x8 in, 4x4 after max-pooling
    return net


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory, digits) -> tuple[Path, float]:
    """A ResNet briefly trained here (random init, no download), saved the DataParallel way,
    {"model": {"module.<key>": tensor}}, and its test accuracy computed directly."""
    ds, _ = digits
    torch.manual_seed(0)
    net = _resnet()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.tensor(ds.x_train[:384]), torch.tensor(ds.y_train[:384])
    net.train()
    for batch in torch.randperm(len(x)).split(32):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
        opt.step()
    with torch.no_grad():
        accuracy = (net.eval()(torch.tensor(ds.x_test)).argmax(1).numpy() == ds.y_test).mean()
    path = tmp_path_factory.mktemp("resnet") / "resnet10_a.pt"
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    return path, float(accuracy)


def _resnet_spec(path: Path, **extra) -> dict:
    return _spec(
        path,
        factory="test_extract:_resnet",
        state_dict_key="model",
        strip_prefix="module.",
        **extra,
    )


def test_torchvision_resnet_layers_and_accuracy(resnet_checkpoint, digits):
    ds, probe = digits
    path, expected_accuracy = resnet_checkpoint
    spec = _resnet_spec(path, layer="layer4")
    assert spec["model_id"] == "g-resnet10_a"
    values, accuracy = run.extract_network(spec, probe, ds)
    ((name, layer4),) = values.items()
    assert name == "layer4" and layer4.shape == (len(probe["x"]), 512)
    # global average pooling of layer4 is exactly what the final Linear reads (penultimate)
    ((name, penultimate),) = run.extract_network({**spec, "layer": "penultimate"}, probe, None)[
        0
    ].items()
    assert name == "fc.input"
    np.testing.assert_allclose(layer4, penultimate, rtol=0, atol=1e-5)
    # Type:k counts modules of one type: the first convolution is the stem
    ((name, _),) = run.extract_network({**spec, "layer": "Conv2d:1"}, probe, None)[0].items()
    assert name == "conv1"
    assert accuracy["test_accuracy"] == pytest.approx(expected_accuracy)
    assert expected_accuracy > 0.2  # trained: above chance (0.1)
    assert 0 <= accuracy["val_accuracy"] <= 1
    flat = run.extract_network({**spec, "layer": "layer2", "spatial": "flatten"}, probe, None)[0]
    assert next(iter(flat.values())).shape[1] == 128 * 2 * 2  # 8x8 -> 4x4 -> 2x2 maps


def test_batchnorm_network_extracts_identically_at_any_batch_size(tmp_path, digits):
    ds, probe = digits
    torch.manual_seed(1)
    net = digits_nets.small_cnn(4)
    with torch.no_grad():  # BatchNorm statistics far from their initial values
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    torch.save(net.state_dict(), tmp_path / "bn.pt")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    spec = _spec(tmp_path / "bn.pt", factory="digits_nets:small_cnn", kwargs={"channels": 4})
    spec["layer"] = "Conv2d:2"
    first = run.extract_network(spec, probe, ds)[0]["3"]
    again = run.extract_network(spec, probe, ds)[0]["3"]
    small = run.extract_network({**spec, "batch_size": 7}, probe, ds)[0]["3"]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, small, rtol=0, atol=1e-6)
    # the reference: the eval-mode module itself, on the whole probe set at once
    with torch.no_grad():
        net.eval()
        expected = net[:4](torch.tensor(probe["x"])).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(first, expected, rtol=0, atol=1e-6)
    loaded = load.load_network(spec)
    layers.record(
        loaded, probe["x"], layers.find_layer(loaded, "3"), spatial="gap", output=None, batch_size=8
    )
    assert all(torch.equal(before[k], v) for k, v in loaded.state_dict().items())


def test_torchscript_archive(tmp_path, digits):
    ds, probe = digits
    torch.manual_seed(2)
    net = digits_nets.wide_mlp(16).eval()
    torch.jit.save(torch.jit.script(net), tmp_path / "scripted.pt")
    spec = _spec(tmp_path / "scripted.pt", torchscript=str(tmp_path / "scripted.pt"))
    values, accuracy = run.extract_network(spec, probe, ds)
    with torch.no_grad():
        expected = net[:4](torch.tensor(probe["x"])).numpy()  # the input to the last Linear
    np.testing.assert_allclose(values["4.input"], expected, rtol=0, atol=1e-6)
    out = run.extract_network({**spec, "layer": "output"}, probe, ds)[0]["output"]
    with torch.no_grad():
        np.testing.assert_allclose(out, net(torch.tensor(probe["x"])).numpy(), atol=1e-6)
    assert 0 <= accuracy["test_accuracy"] <= 1


def test_precomputed_arrays_are_checked_against_the_probe(tmp_path, digits):
    ds, probe = digits
    values = np.random.default_rng(0).normal(size=(len(probe["x"]), 7)).astype(np.float32)
    np.savez(tmp_path / "ok.npz", activations=values, probe_hash=probe["hash"])
    spec = _spec(tmp_path / "ok.npz", activations=str(tmp_path / "ok.npz"))
    got, accuracy = run.extract_network(spec, probe, None)
    np.testing.assert_array_equal(got["activations"], values)
    assert np.isnan(accuracy["test_accuracy"])
    np.savez(tmp_path / "other.npz", activations=values, probe_hash="0123456789abcdef")
    with pytest.raises(UserError, match="taken on probe set 0123456789abcdef"):
        run.extract_network({**spec, "path": str(tmp_path / "other.npz")}, probe, None)
    np.savez(tmp_path / "short.npz", activations=values[:-1], probe_hash=probe["hash"])
    with pytest.raises(UserError, match=r"expected \(50, d\)"):
        run.extract_network({**spec, "path": str(tmp_path / "short.npz")}, probe, None)


def test_metadata_fills_accuracy_of_a_network_without_logits(tmp_path, digits):
    ds, probe = digits
    values = np.random.default_rng(1).normal(size=(len(probe["x"]), 3))
    np.savez(tmp_path / "a.npz", activations=values, probe_hash=probe["hash"])
    (tmp_path / "a.json").write_text('{"test_accuracy": 0.75, "family": "jax"}')
    pattern = str(tmp_path / "{stem}.json")
    spec = _spec(tmp_path / "a.npz", activations=str(tmp_path / "a.npz"), metadata=pattern)
    assert spec["metadata"] == {"test_accuracy": 0.75, "family": "jax"}
    assert run.extract_network(spec, probe, ds)[1]["test_accuracy"] == 0.75
    # the extraction step writes them into the job's manifest as columns the map colours by
    from nnmanifold.core import storage
    from nnmanifold.core.paths import Layout
    from nnmanifold.core.settings import DataSettings
    from nnmanifold.report.interactive import _fields
    from nnmanifold.steps.extract import extract

    layout = Layout(tmp_path / "results")
    storage.write_probe(layout.probe, {**probe, "chance_accuracy": 0.1})
    data = DataSettings.of(validate({})["data"])
    extract(layout, "xb", [spec], data, accelerator="cpu")
    (row,) = storage.read_json(layout.extract_manifest("xb"))
    assert row["status"] == "ok" and row["test_accuracy"] == 0.75 and row["meta:family"] == "jax"
    assert "meta:family" in _fields(pd.DataFrame([row]).assign(**dict.fromkeys(PHATE, 0.0)))


def test_unusable_activations_are_named():
    assert run.problem(np.full((5, 3), np.nan)) == "NaN or infinite activations"
    assert "constant" in run.problem(np.ones((5, 3)))
    assert run.problem(np.arange(15.0).reshape(5, 3)) is None


def test_readable_ids_make_their_own_jobs():
    specs = [
        {"model_id": sources.network_id(g, f"x/{g} run {i}.pt"), "group": g}
        for g in ("a", "b")
        for i in range(5)
    ]
    assert specs[0]["model_id"] == "a-a_run_0"
    jobs = sources.batches(specs, 4, "xb")
    assert sorted(m for members in jobs.values() for m in members) == sorted(
        s["model_id"] for s in specs
    )
    assert all(len(m) <= 4 and name.startswith("xb") for name, m in jobs.items())
    # adding a network changes only the job that takes it (or the jobs its bucket splits into)
    more = sources.batches([*specs, {"model_id": "a-new", "group": "a"}], 4, "xb")
    changed = {k for k in set(jobs) | set(more) if jobs.get(k) != more.get(k)}
    assert all(any(m.startswith("a-") for m in jobs.get(k, []) + more.get(k, [])) for k in changed)


def test_networks_without_accuracy_stay_on_the_map_but_out_of_the_statistics(tmp_path):
    """A network from elsewhere without accuracy joins the embedding table after the zoo (the
    zoo's rows unchanged) and the statistics step leaves it out."""
    from nnmanifold.analysis.features import FEATURE_NAMES
    from nnmanifold.core import storage
    from nnmanifold.core.paths import Layout
    from nnmanifold.core.settings import StatsSettings
    from nnmanifold.geometry.embedding import embedding_table
    from nnmanifold.steps.stats import stats

    rng = np.random.default_rng(0)
    zoo_ids, ids = [f"{i:012x}" for i in range(6)], [f"{i:012x}" for i in range(6)] + ["arr-x"]
    zoo = pd.DataFrame({"model_id": zoo_ids, "lr": rng.uniform(size=6), "spec": "{}"})
    metrics = pd.DataFrame({"model_id": ids, "status": "ok", "reason": None})
    metrics["test_accuracy"] = [*rng.uniform(0.5, 1, size=6), np.nan]
    coords = rng.normal(size=(7, 2))
    zoo_only = embedding_table(coords[:6], zoo_ids, zoo, metrics.iloc[:6])
    mixed = embedding_table(coords, ids, zoo, metrics)
    assert list(mixed["model_id"]) == ids and np.isnan(mixed["lr"].iloc[-1])
    pd.testing.assert_frame_equal(mixed.iloc[:6].reset_index(drop=True), zoo_only)
    for name in FEATURE_NAMES:
        mixed[name] = rng.normal(size=7)
    layout = Layout(tmp_path)
    storage.write_csv(layout.embedding, mixed)
    X = rng.normal(size=(7, 3))
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    storage.write_distances(layout.distances, D, ids, {})
    probe = {"indices": np.arange(3), "labels": np.arange(3), "x": np.zeros((3, 2))}
    storage.write_probe(
        layout.probe, {**probe, "hash": "h", "dataset": "d", "chance_accuracy": 0.1}
    )
    stats(layout, StatsSettings(knn=2, n_permutations=9, n_bootstrap=10, seed=0))
    info = pd.read_csv(layout.stats("map_informativeness"))
    assert (info.loc[info["stratum"] == "all", "n"] == 6).all()


def _rgb() -> nn.Module:
    """A network for three-channel images."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))


def _three_channels(x: torch.Tensor) -> torch.Tensor:
    """The network's own preprocessing: grey to RGB, then a fixed normalisation."""
    return (x.repeat(1, 3, 1, 1) - 0.5) / 0.25


def test_input_transform_is_applied_before_the_network(tmp_path, digits):
    ds, probe = digits
    torch.manual_seed(3)
    net = _rgb().eval()
    torch.save(net.state_dict(), tmp_path / "rgb.pt")
    spec = _spec(
        tmp_path / "rgb.pt",
        factory="test_extract:_rgb",
        input_transform="test_extract:_three_channels",
    )
    spec["layer"] = "Conv2d:1"
    values = run.extract_network(spec, probe, None)[0]["0"]
    with torch.no_grad():
        expected = net[0](_three_channels(torch.tensor(probe["x"]))).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError):  # the data set's one-channel inputs do not fit
        run.extract_network({**spec, "input_transform": None}, probe, None)
