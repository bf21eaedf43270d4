"""Members of different widths (MLP) or channel counts (CNN) in one group, padded to a shared shape.

A group's layers are those of its widest member (``padded_spec``). Member k's weights sit in the
leading corner of each stacked tensor (``pad``; the flattened conv output is channel-major, so a
CNN's dense layer pads the same way) and the rest is zero. Padded units then output zero, get
zero gradient, and leave the optimiser state and the loss alone: their zero weights keep them at
zero under an activation that maps zero to zero, and ``masks`` zero them after any other (sigmoid);
``unpad`` gives a member's own tensors back. Dropout draws per real unit position
(``stacked.uniforms``), so a padded member's masks are its unpadded self's.

``groups`` cuts a job's members into the groups they train in: members share a group only when
their shapes differ at most in width, channels and activation function (``pad_key``), and the
widths are cut where a cost model (``STEP_OVERHEAD``) says padding would cost more than another
group's steps. ResNets keep exact shapes.
"""

from __future__ import annotations

import bisect
import collections
import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from nnmanifold.zoo import architecture
from nnmanifold.zoo.specs import PADDED, pad_key

#: A group's cost per training step and layer with weights, besides its members' arithmetic (a
#: step launches a few small ops per layer, and the optimiser's bookkeeping), in what the same time
#: buys: multiply-adds (forward, per input) of the members' layers, by device. CPU, fitted on
#: groups of 8-128 MLPs of widths 8-128 and depth 1-2 (64 inputs, batch 32, 1 thread;
#: bench/group_cost.py): a group took 0.17 s per layer + 5.4 ms per member + 1.2 us per member and
#: multiply-add per input, over 250 steps of 32 inputs: 0.67 ms per layer and step, or 4.5 million
#: multiply-adds (a second run: 2.1 million; the fit is noisy on a shared machine). GPU: a guess,
#: not yet measured (bench/gpu_check.sh, part mixed): a step of zoo-sized groups is bound by
#: kernel launches (~0.7 ms a layer), against ~3 T multiply-adds/s over the forward and backward
#: passes (3 per forward multiply-add): about 0.7 billion.
STEP_OVERHEAD = {"cpu": 4_500_000, "cuda": 700_000_000}


def groups(
    specs: Sequence[dict[str, Any]],
    input_shape: tuple[int, ...],
    n_classes: int,
    device: str = "cpu",
) -> list[list[dict[str, Any]]]:
    """The specs cut into groups that train together: members of one ``pad_key``, sorted by
    their own arithmetic and cut where the cost model says padding costs more than another
    group's steps would (``partition``). ResNets keep exact shapes."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        by_key.setdefault(pad_key(spec), []).append(spec)
    out = []
    for members in by_key.values():
        out.extend(partition(members, input_shape, n_classes, STEP_OVERHEAD[device]))
    return out


def partition(
    specs: Sequence[dict[str, Any]],
    input_shape: tuple[int, ...],
    n_classes: int,
    overhead: float,
) -> list[list[dict[str, Any]]]:
    """Specs of one ``pad_key`` in the groups of least modelled cost per step: ``overhead`` per
    layer with weights each, plus every member's multiply-adds at its group's padded shape for a
    batch. Each group lists its members by size (their own multiply-adds; job order among
    equals), so that a group split to fit memory splits by size.

    Groups are runs of the distinct padded sizes sorted by their multiply-adds, the best found
    by dynamic programming (fewer groups on a tie): optimal for one padded size (MLP widths), a
    heuristic for two (a CNN's channels and width). Members' epochs and activation functions are
    left out of the model.
    """
    if not specs:
        return []
    keys = PADDED.get(specs[0]["arch"], ())
    if not keys:
        return [list(specs)]

    @functools.cache
    def cost(sizes: tuple[int, ...]) -> int:
        padded = {**specs[0], **dict(zip(keys, sizes, strict=True))}
        layers = architecture.layers(padded, input_shape, n_classes)
        return sum(layer.multiply_adds for layer in layers)

    per_group = overhead * len(architecture.layers(specs[0], input_shape, n_classes))
    sizes_of = [tuple(s[k] for k in keys) for s in specs]
    counted = collections.Counter(sizes_of)
    distinct = sorted(counted, key=lambda z: (cost(z), z))
    batch = specs[0]["batch_size"]
    best, start = [0.0] + [math.inf] * len(distinct), [0] * (len(distinct) + 1)
    for j in range(1, len(distinct) + 1):
        padded, members = distinct[j - 1], 0
        for i in range(j - 1, -1, -1):  # a last group of the distinct sizes i..j-1
            padded = tuple(map(max, padded, distinct[i]))
            members += counted[distinct[i]]
            total = best[i] + per_group + members * batch * cost(padded)
            if total <= best[j]:
                best[j], start[j] = total, i
    starts, j = [], len(distinct)
    while j:
        starts.append(start[j])
        j = start[j]
    starts.reverse()
    rank = {z: r for r, z in enumerate(distinct)}
    out: list[list[dict[str, Any]]] = [[] for _ in starts]
    for k in sorted(range(len(specs)), key=lambda k: rank[sizes_of[k]]):
        out[bisect.bisect_right(starts, rank[sizes_of[k]]) - 1].append(specs[k])
    return out


def work(
    specs: Sequence[dict[str, Any]], input_shape: tuple[int, ...], n_classes: int, n_train: int
) -> float:
    """A group's modelled cost on a CPU, to start the costliest first when groups train side by
    side: its steps, each ``STEP_OVERHEAD`` per layer with weights plus every member's
    multiply-adds at the padded shape for a batch (ResNets, not padded: members times steps)."""
    batch = specs[0]["batch_size"]
    steps = math.ceil(n_train / batch) * max(s["epochs"] for s in specs)
    if specs[0]["arch"] not in PADDED:
        return float(steps * len(specs))
    layers = architecture.layers(padded_spec(specs), input_shape, n_classes)
    per_member = batch * sum(layer.multiply_adds for layer in layers)
    return float(steps * (STEP_OVERHEAD["cpu"] * len(layers) + len(specs) * per_member))


def padded_spec(specs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A spec of the group's shared shape: the first member's, with the largest padded sizes."""
    if len({pad_key(s) for s in specs}) != 1:
        raise ValueError(
            "a group holds models that differ at most in width, channels and activation; split "
            "the specs by train.padding.groups"
        )
    return {**specs[0], **{k: max(s[k] for s in specs) for k in PADDED.get(specs[0]["arch"], ())}}


def pad(tensors: Sequence[torch.Tensor], shape: Sequence[int] | None = None) -> torch.Tensor:
    """Tensors stacked (K, *shape) with each in its leading corner and zeros elsewhere (shape: the
    largest of each axis by default)."""
    shape = shape or [max(t.shape[i] for t in tensors) for i in range(tensors[0].dim())]
    return torch.stack(
        [
            F.pad(t, [x for i in reversed(range(t.dim())) for x in (0, shape[i] - t.shape[i])])
            for t in tensors
        ]
    )


def unpad(stacked: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """One member's tensor (its own ``shape``) from its row of a padded stack."""
    return stacked[tuple(slice(0, n) for n in shape)]


def masks(
    sizes: dict[str, list[int]], padded: dict[str, int]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per padded layer (some member has fewer units than ``padded``): a (K, units) float mask
    of the real units and each member's real units (K,)."""
    out = {}
    for name, own in sizes.items():
        if min(own) < padded[name]:
            units = torch.tensor(own)
            out[name] = ((torch.arange(padded[name])[None, :] < units[:, None]).float(), units)
    return out
