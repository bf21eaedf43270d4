"""Groups of mixed widths and channel counts: a padded member trains as its unpadded self, its
padded units are inert, and a job's members are cut into groups by a cost model."""

import itertools
import math
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from test_group import OPTIMISERS, _specs

from nnmanifold.train import group, members, padding, stacked
from nnmanifold.train import job as train
from nnmanifold.zoo import architecture

SPACES = {
    "mlp": {"arch": "mlp", "depth": 2, "width": [12, 16]},
    "cnn": {"arch": "cnn", "depth": 1, "channels": [3, 4], "width": [12, 16]},
}


def _trained(specs, ds, epochs=1):
    """A group of ``specs`` after ``epochs`` epochs (no files written)."""
    states = members.fresh_states(specs, ds.input_shape, ds.n_classes)
    module = group.GroupClassifier(specs, ds, states)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        ).fit(module)
    return module


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_a_padded_member_trains_as_its_unpadded_self(digits, arch, optimizer):
    """Members of two widths (and channel counts) with dropout in one padded group: after an
    epoch each one's weights and optimiser state equal its own one-member group's to 1e-6."""
    ds, _ = digits
    specs = _specs(seeds=(0,), **OPTIMISERS[optimizer], **SPACES[arch], dropout=0.3)
    specs = [s for s in specs if arch == "mlp" or s["channels"] * 4 == s["width"]]
    assert len(specs) == 2
    mixed = _trained(specs, ds)
    assert mixed.model.pads, "the group is padded"
    for k, spec in enumerate(specs):
        ours = mixed.member_states([k])[0]
        alone = _trained([spec], ds).member_states([0])[0]
        assert not _trained([spec], ds).model.pads
        for name, w in alone.weights.items():
            assert ours.weights[name].shape == w.shape
            err = (ours.weights[name] - w).abs().max() / w.abs().max()
            assert err <= 1e-6, (spec["width"], name, err.item())
            for slot, state in alone.optim.items():
                torch.testing.assert_close(
                    ours.optim[slot][name], state[name], rtol=1e-6, atol=1e-6 * w.abs().max()
                )
        assert ours.adam_step == alone.adam_step


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_members_of_different_activations_train_as_their_own_groups(digits, arch):
    """relu, tanh and sigmoid members of two widths, with dropout, in one group: after an epoch
    each one's weights equal those of its own one-member group to 1e-6, and its probe
    activations (evaluation path) too."""
    ds, _ = digits
    space = {**SPACES[arch], "activation": ["relu", "tanh", "sigmoid"]}
    specs = _specs(seeds=(0,), **OPTIMISERS["sgd"], **space, dropout=0.2)
    specs = [s for s in specs if arch == "mlp" or s["channels"] * 4 == s["width"]]
    assert len(specs) == 6
    mixed = _trained(specs, ds)
    assert mixed.model.activation.kinds == ["relu", "sigmoid", "tanh"] and mixed.model.masked
    x = torch.from_numpy(ds.x_test[:16])
    hidden = mixed.model.hidden(list(range(len(specs)))[::-1], x)[::-1]
    for k, spec in enumerate(specs):
        alone = _trained([spec], ds)
        for name, w in alone.member_states([0])[0].weights.items():
            err = (mixed.member_states([k])[0].weights[name] - w).abs().max() / w.abs().max()
            assert err <= 1e-6, (spec["activation"], spec["width"], name, err.item())
        for name, h in alone.model.hidden([0], x)[0].items():
            torch.testing.assert_close(hidden[k][name], h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("arch", "activation"), [("mlp", "sigmoid"), ("cnn", "sigmoid"), ("mlp", "relu")]
)
def test_padded_units_are_inert(digits, arch, activation):
    """With dropout: padded units output zero, their weights get zero gradient, and after
    training the padded parts of weights and optimiser state are zero: masked under sigmoid
    (1/2 at zero), kept at zero by their zero weights under relu."""
    ds, _ = digits
    space = {**SPACES[arch], "activation": activation}
    specs = _specs(seeds=(0,), **OPTIMISERS["adam"], **space, dropout=0.3)
    specs = [s for s in specs if arch == "mlp" or s["channels"] * 4 == s["width"]]
    module = _trained(specs, ds)
    model = module.model
    assert model.masked == (activation == "sigmoid")
    narrow = min(range(len(specs)), key=lambda k: specs[k]["width"])

    def padded_part(tensor, k, name):
        outside = torch.ones_like(tensor[k], dtype=torch.bool)
        outside[tuple(slice(0, n) for n in model.shapes[k][name])] = False
        return tensor[k][outside]

    x = torch.from_numpy(ds.x_train[:32])
    logits, hidden = model(torch.stack([x] * len(specs)), (torch.tensor([1, 2]), 0))
    for name, h in hidden.items():
        assert torch.all(h[narrow, :, model.widths[narrow][name] :] == 0), name
    member_loss = stacked.member_cross_entropy(logits, torch.zeros(2, 32, dtype=torch.long))
    member_loss.sum().backward()
    state = module.optimizers(use_pl_optimizer=False).state_dict()["state"]
    for i, (name, w) in enumerate(zip(model.names, model.weights, strict=True)):
        if model.shapes[narrow][name] == tuple(w.shape[1:]):
            continue
        assert torch.all(padded_part(w.grad, narrow, name) == 0), name
        assert torch.all(padded_part(w.detach(), narrow, name) == 0), name
        for slot in ("exp_avg", "exp_avg_sq"):
            assert torch.all(padded_part(state[i][slot], narrow, name) == 0), (name, slot)


def test_dropout_draws_per_real_unit_position():
    """A padded member's stream equals its unpadded self's on its real units."""
    keys = stacked.dropout_keys([3, 4], [1, 1])
    padded = stacked.uniforms(keys, 9, (5, 16), torch.tensor([16, 11]))
    for k, units in enumerate((16, 11)):
        alone = stacked.uniforms(keys[k : k + 1], 9, (5, units))[0]
        assert torch.equal(padded[k, :, :units], alone)
    assert torch.equal(padded[0], stacked.uniforms(keys, 9, (5, 16))[0])


def test_mixed_widths_give_the_per_shape_groups_results(digits, tmp_path):
    """One job of three widths in a bucket trains one padded group; each member's results equal
    those of its width trained as its own group."""
    ds, probe = digits
    specs = _specs(seeds=(0, 1), width=[9, 12, 16], dropout=0.2, lr=0.05, epochs=2)
    mixed = train.train_job(specs, ds, probe, tmp_path / "mixed", accelerator="cpu")
    assert [m["group_size"] for m in mixed] == [6] * 6
    for width in (9, 12, 16):
        own = [s for s in specs if s["width"] == width]
        by_shape = train.train_job(own, ds, probe, tmp_path / str(width), accelerator="cpu")
        for spec, one in zip(own, by_shape, strict=True):
            ours = mixed[specs.index(spec)]
            assert one["group_size"] == 2
            assert ours["n_parameters"] == one["n_parameters"]
            assert ours["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1e-9)
            assert ours["test_loss"] == pytest.approx(one["test_loss"], rel=1e-6)


def _cost(groups, overhead, shape=(64,)):
    """The cost ``padding.partition`` minimises: per group its overhead per layer and its
    members' multiply-adds at the padded shape for a batch."""
    total = 0
    for g in groups:
        layers = architecture.layers(padding.padded_spec(g), shape, 10)
        arithmetic = len(g) * g[0]["batch_size"] * sum(x.multiply_adds for x in layers)
        total += overhead * len(layers) + arithmetic
    return total


def test_groups_keep_other_shapes_apart():
    base = _specs(width=16)[0]

    def together(*specs):
        return len(padding.groups(specs, (1, 8, 8), 10)) == 1

    assert together(base, {**base, "width": 5}, {**base, "activation": "tanh", "lr": 0.5})
    assert not together(base, {**base, "depth": base["depth"] + 1})
    assert not together(base, {**base, "batch_size": base["batch_size"] * 2})
    resnet = {**base, "arch": "resnet", "blocks": 1, "channels": 8}
    assert not together(resnet, {**resnet, "channels": 7})
    assert not together(resnet, {**resnet, "activation": "tanh"})
    with pytest.raises(ValueError, match="padding.groups"):
        padding.padded_spec([base, {**base, "depth": base["depth"] + 1}])


@pytest.mark.parametrize("overhead", [0, 2e4, 3e5, 6e6, 1e12])
def test_groups_are_the_cheapest_cut_of_the_sorted_widths(overhead):
    """Against every cut of 7 distinct widths (64 partitions): the chosen groups cost the least
    under the model, hold every member once, by width (job order among equals), and are runs of
    the sorted widths; no overhead gives a group per width, a huge one a single group."""
    base = _specs(width=16)[0]
    widths = [40, 8, 12, 8, 100, 17, 12, 64, 9, 40]
    specs = [{**base, "width": w, "model_id": f"m{i}"} for i, w in enumerate(widths)]
    groups = padding.partition(specs, (64,), 10, overhead)
    assert sorted(s["model_id"] for g in groups for s in g) == sorted(s["model_id"] for s in specs)
    for g in groups:
        order = [(s["width"], specs.index(s)) for s in g]
        assert order == sorted(order)
    distinct = sorted(set(widths))
    cheapest = math.inf
    for cuts in itertools.product([False, True], repeat=len(distinct) - 1):
        runs, run = [], [distinct[0]]
        for width, cut in zip(distinct[1:], cuts, strict=True):
            runs, run = (runs + [run], [width]) if cut else (runs, run + [width])
        runs.append(run)
        cut_groups = [[s for s in specs if s["width"] in r] for r in runs]
        cheapest = min(cheapest, _cost(cut_groups, overhead))
    assert _cost(groups, overhead) == cheapest
    spans = sorted((min(s["width"] for s in g), max(s["width"] for s in g)) for g in groups)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), spans
    if overhead == 0:
        assert len(groups) == len(distinct)
    if overhead == 1e12:
        assert len(groups) == 1


@pytest.mark.parametrize("overhead", [0, 1e5, 1e12])
def test_cnn_groups_cut_two_padded_sizes(overhead):
    """CNN members of several (width, channels): every member once, at a modelled cost no more
    than one group's or one group per size's; no overhead gives one group per size."""
    base = {**_specs(width=16)[0], "arch": "cnn", "depth": 2}
    sizes = [(16, 4), (32, 4), (16, 8), (64, 16), (32, 4), (16, 2), (64, 8)]
    specs = [
        {**base, "width": w, "channels": c, "model_id": f"m{i}"} for i, (w, c) in enumerate(sizes)
    ]
    groups = padding.partition(specs, (1, 8, 8), 10, overhead)
    assert sorted(s["model_id"] for g in groups for s in g) == sorted(s["model_id"] for s in specs)

    def cost(gs):
        return _cost(gs, overhead, (1, 8, 8))

    per_size = [[s for s in specs if (s["width"], s["channels"]) == z] for z in set(sizes)]
    assert cost(groups) <= min(cost([specs]), cost(per_size))
    if overhead == 0:
        assert len(groups) == len(set(sizes))
    if overhead == 1e12:
        assert len(groups) == 1


def test_a_gpu_pads_more_widths_into_a_group_than_a_cpu():
    """The per-step overhead is the device's: 128 MLPs of widths 8-128 train in several groups
    on a CPU and in one on a GPU, whose steps are bound by launches."""
    base = _specs(width=16)[0]
    rng = np.random.default_rng(0)
    widths = np.rint(np.exp(rng.uniform(np.log(8), np.log(128), 128))).astype(int).tolist()
    specs = [{**base, "width": w, "model_id": f"m{i}"} for i, w in enumerate(widths)]
    assert len(padding.groups(specs, (64,), 10, "cpu")) > 1
    assert len(padding.groups(specs, (64,), 10, "cuda")) == 1


def test_a_group_of_several_activation_functions_is_sized_for_their_outputs(digits):
    """Each activation function beyond the first keeps its output and a selection per layer, so
    fewer such members fit a memory budget."""
    ds, _ = digits
    one = _specs(seeds=(0, 1), width=[12, 16], activation="relu")
    mixed = _specs(seeds=(0, 1), width=[12, 16], activation=["relu", "tanh"])
    budget = 64 * group.member_bytes(padding.padded_spec(one), ds)
    assert group.group_size(one, ds, budget) == 64
    assert group.group_size(mixed, ds, budget) < 64
    assert group.member_bytes(padding.padded_spec(mixed), ds, 2) > group.member_bytes(
        padding.padded_spec(mixed), ds
    )


def test_multiply_adds_count_each_layers_arithmetic():
    """The cost model's arithmetic: a dense layer's weights once per input, a convolution's at
    every pixel of its input (before the pool)."""
    mlp = architecture.layers({"arch": "mlp", "depth": 2, "width": 16}, (64,), 10)
    assert [x.multiply_adds for x in mlp] == [64 * 16, 16 * 16, 16 * 10]
    cnn = {"arch": "cnn", "depth": 2, "width": 16, "channels": 4}
    conv1, conv2, fc, head = architecture.layers(cnn, (1, 8, 8), 10)
    assert conv1.multiply_adds == 1 * 4 * 9 * 8 * 8
    assert conv2.multiply_adds == 4 * 4 * 9 * 4 * 4
    assert fc.multiply_adds == conv2.width * 16 == 4 * 2 * 2 * 16
    assert head.multiply_adds == 16 * 10
