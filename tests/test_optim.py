"""Stacked optimisers: member by member, torch.optim.SGD and torch.optim.Adam; masks and resume.

They agree to float rounding, not bit for bit, where the group keeps its own arithmetic (the
momentum update as one fused addcmul, Adam's lr held in float32): kept so that group results are
unchanged from before the optimisers were split out.
"""

import io

import pytest
import torch

from nnmanifold.train.optim import GroupAdam, GroupSGD

K = 3
SHAPES = [(4, 5), (4,), (2, 3, 3, 3)]  # a dense weight, a bias, a conv kernel
LR = [0.1, 0.01, 0.5]
MOMENTUM = [0.9, 0.0, 0.5]
DECAY = [0.0, 1e-2, 1e-3]
BETAS = [(0.9, 0.999), (0.8, 0.99), (0.5, 0.9)]
EPS = [1e-8, 1e-6, 1e-3]
STEPS = 6


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    start = [torch.randn(K, *s, generator=gen) for s in SHAPES]
    grads = [[torch.randn(K, *s, generator=gen) for s in SHAPES] for _ in range(STEPS)]
    return start, grads


def _group(kind, params):
    if kind == "sgd":
        return GroupSGD(params, lr=LR, momentum=MOMENTUM, weight_decay=DECAY)
    return GroupAdam(params, lr=LR, weight_decay=DECAY, betas=BETAS, eps=EPS)


def _reference(kind, k, params):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=LR[k], momentum=MOMENTUM[k], weight_decay=DECAY[k])
    return torch.optim.Adam(params, lr=LR[k], betas=BETAS[k], eps=EPS[k], weight_decay=DECAY[k])


def _run(opt, params, grads):
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = g.clone()
        opt.step()


def _trained(kind, start, grads):
    """Parameters from ``start`` after the steps ``grads``, and their optimiser."""
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = _group(kind, params)
    _run(opt, params, grads)
    return params, opt


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_each_member_follows_torch_optim(kind):
    start, grads = _problem()
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = _group(kind, params)
    trajectory = []
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = g.clone()
        opt.step()
        trajectory.append([p.detach().clone() for p in params])
    for k in range(K):
        ref = [torch.nn.Parameter(p[k].clone()) for p in start]
        ref_opt = _reference(kind, k, ref)
        for t, step in enumerate(grads):
            for p, g in zip(ref, step, strict=True):
                p.grad = g[k].clone()
            ref_opt.step()
            for p, mine in zip(ref, trajectory[t], strict=True):  # every step, every tensor
                torch.testing.assert_close(mine[k], p.detach(), rtol=1e-6, atol=1e-7)
                if kind == "sgd" and MOMENTUM[k] == 0:  # no buffer arithmetic: the same bits
                    assert torch.equal(mine[k], p.detach())


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_members_left_out_keep_weights_and_state_bit_for_bit(kind):
    start, grads = _problem(1)
    everyone, _ = _trained(kind, start, grads)
    params, opt = _trained(kind, start, grads[:2])
    saved = [p.detach().clone() for p in params]
    state = {i: {k: v.clone() for k, v in opt.state[p].items()} for i, p in enumerate(params)}
    frozen = torch.tensor([True, False, True])  # member 1 sits out steps 3.. (zero gradient)
    for step in grads[2:]:
        for p, g in zip(params, step, strict=True):
            p.grad = torch.where(frozen.view(-1, *[1] * (g.dim() - 1)), g, 0.0)
        opt.step(members=frozen)
    for i, p in enumerate(params):
        assert torch.equal(p[1], saved[i][1])
        for key, value in opt.state[p].items():
            assert torch.equal(value[1], state[i][key][1]), key
        for k in (0, 2):  # the others train exactly as if nobody sat out
            assert torch.equal(p[k], everyone[i][k])


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_state_dict_resumes_bit_for_bit(kind):
    start, grads = _problem(2)
    whole, _ = _trained(kind, start, grads)
    params, opt = _trained(kind, start, grads[:3])
    buffer = io.BytesIO()
    torch.save({"weights": [p.detach() for p in params], "optim": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    again = [torch.nn.Parameter(w.clone()) for w in saved["weights"]]
    resumed = _group(kind, again)
    resumed.load_state_dict(saved["optim"])
    _run(resumed, again, grads[3:])
    for a, b in zip(again, whole, strict=True):
        assert torch.equal(a, b)


def test_hyperparameters_are_per_member_and_saved():
    params = [torch.nn.Parameter(torch.zeros(K, 2))]
    opt = GroupAdam(params, lr=LR, weight_decay=DECAY, betas=BETAS, eps=EPS)
    group = opt.state_dict()["param_groups"][0]
    assert group["lr"] == LR and group["eps"] == EPS
    assert group["beta1"] == [b for b, _ in BETAS] and group["beta2"] == [b for _, b in BETAS]
