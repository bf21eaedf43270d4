"""The stacked model: each member computes what its own Classifier computes (forward, loss,
dropout), checked against the one-model modules on small inputs."""

import math

import pytest
import pytorch_lightning as pl
import torch
from test_group import _specs

from nnmanifold.train import members, stacked
from nnmanifold.train.models import Classifier


def _stacked(specs, ds):
    states = members.fresh_states(specs, ds.input_shape, ds.n_classes)
    weights, _ = members.stack(states)
    return stacked.StackedClassifier(specs, ds.input_shape, ds.n_classes, weights)


def test_stacked_forward_equals_each_classifier(digits):
    ds, _ = digits
    specs = _specs(seeds=(0, 1, 2), arch="cnn", depth=2, width=8, channels=3)
    specs += _specs(seeds=(0, 1), arch="mlp", depth=2, width=8)
    x = torch.from_numpy(ds.x_test[:20])
    for same in (specs[:3], specs[3:]):
        model = _stacked(same, ds)
        logits, hidden = stacked.forward(model.layers, model.params(), model.activation, x, True)
        with torch.no_grad():
            logits_b, hidden_b = model(torch.stack([x] * len(same)))  # one batch per member
        for k, spec in enumerate(same):
            pl.seed_everything(spec["seed"], verbose=False)
            one = Classifier(spec, ds.input_shape, ds.n_classes).eval()
            assert list(one.state_dict()) == model.names
            with torch.no_grad():
                torch.testing.assert_close(logits[k], one(x), rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(logits_b[k], one(x), rtol=1e-5, atol=1e-5)
                for name, h in one.hidden(x).items():
                    torch.testing.assert_close(hidden[name][k], h, rtol=1e-5, atol=1e-5)
                    torch.testing.assert_close(hidden_b[name][k], h, rtol=1e-5, atol=1e-5)


def test_shapes_must_agree(digits):
    ds, _ = digits
    specs = _specs(seeds=(0,), depth=[1, 2])
    with pytest.raises(ValueError, match="split the specs by train.padding.groups"):
        _stacked(specs, ds)


def test_member_cross_entropy_equals_torch_per_member():
    gen = torch.Generator().manual_seed(0)
    K, n, C = 3, 7, 10
    feature_major = torch.randn(K, C, n, generator=gen) * 5  # the layout forward gives
    logits = feature_major.transpose(1, 2).requires_grad_()
    y = torch.randint(0, C, (K, n), generator=gen)
    weights = torch.tensor([1.0, 0.0, 2.5])
    (stacked.member_cross_entropy(logits, y) * weights).sum().backward()
    for k in range(K):
        ref = logits.detach()[k].clone().requires_grad_()
        loss = torch.nn.functional.cross_entropy(ref, y[k])
        torch.testing.assert_close(stacked.member_cross_entropy(logits, y)[k], loss)
        (loss * weights[k]).backward()
        torch.testing.assert_close(logits.grad[k], ref.grad)


def test_dropout_stream_is_per_member_uniform_and_keyed():
    keys = stacked.dropout_keys([0, 1, 2], [0, 0, 0])
    u = stacked.uniforms(keys, 5, (200, 50))
    alone = stacked.uniforms(keys[1:2], 5, (200, 50))
    assert torch.equal(u[1], alone[0])  # a row depends on its own key only
    assert not torch.equal(u[0], u[1])
    assert not torch.equal(u, stacked.uniforms(keys, 6, (200, 50)))
    next_epoch = stacked.dropout_keys([0, 1, 2], [1, 1, 1])  # a member's masks change by epoch
    assert not torch.equal(u, stacked.uniforms(next_epoch, 5, (200, 50)))
    assert abs(u.mean().item() - 0.5) < 0.01 and u.min() >= 0 and u.max() < 1
    hist = torch.histc(u, bins=10, min=0, max=1) / u.numel()
    assert torch.allclose(hist, torch.full((10,), 0.1), atol=0.01)


def test_dropout_keeps_and_scales_as_nn_dropout():
    """Keep rate 1 - p, kept units scaled by 1 / (1 - p), expectation unchanged: as nn.Dropout,
    member by member (p != 0.5, so that keeping with probability p would show)."""
    p = torch.tensor([0.1, 0.3, 0.8])
    features, n = 64, 500
    out = stacked.dropout(
        torch.ones(3, features, n), p, stacked.dropout_keys([0, 1, 2], [0] * 3), 7
    )
    torch.manual_seed(0)
    for k, rate in enumerate(p.tolist()):
        ref = torch.nn.Dropout(rate).train()(torch.ones(n, features))
        kept, ref_kept = out[k] != 0, ref != 0
        se = math.sqrt(rate * (1 - rate) / kept.numel())  # standard error of a keep rate
        assert abs(kept.float().mean().item() - (1 - rate)) < 5 * se
        assert abs(kept.float().mean().item() - ref_kept.float().mean().item()) < 7 * se
        torch.testing.assert_close(out[k][kept], torch.full_like(out[k][kept], 1 / (1 - rate)))
        torch.testing.assert_close(ref[ref_kept], torch.full_like(ref[ref_kept], 1 / (1 - rate)))
        assert abs(out[k].mean().item() - 1) < 5 * se / (1 - rate)
