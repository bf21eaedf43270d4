"""Members of different widths (MLP) or channel counts (CNN) in one group, padded to a shared shape.

A group's layers are those of its widest member (``padded_spec``). Member k's weights sit in the
leading corner of each stacked tensor (``pad``; the flattened conv output is channel-major, so a
CNN's dense layer pads the same way) and the rest is zero. Padded units then output zero, get
zero gradient, and leave the optimiser state and the loss alone: their zero weights keep them at
zero under an activation that maps zero to zero, and ``masks`` zero them after any other (sigmoid);
``unpad`` gives a member's own tensors back. Dropout draws per real unit position
(``stacked.uniforms``), so a padded member's masks are its unpadded self's.

``group_key`` is what job members must share to train together: their shape apart from width,
channels and activation function (``PER_MEMBER``), and a width bucket (``BUCKET_BASE``, by
device) that bounds the padding waste. ResNets keep exact shapes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from nnmanifold.zoo.specs import shape_key

#: Padded keys, by the architectures that pad.
PADDED = {"mlp": ("width",), "cnn": ("width", "channels")}
#: Keys members of one group may differ in without padding (``stacked.MemberActivation``).
PER_MEMBER = {"mlp": ("activation",), "cnn": ("activation",)}
#: Members share a group when each padded size lies in one bucket (base**(b-1), base**b]: a
#: group's widest member is then under ``base`` times its narrowest. Fewer groups pay the per-step
#: cost fewer times; wider buckets pay more padding. On a CPU, 128 MLPs of widths 8-128
#: (bench/train.py, 1 thread, 2 loaded cores; CPU-time ratios) trained at 0.50-0.58 of the
#: same-shape rate with base 4 (3 groups, 24-40 % padding), 0.47 with base 2 (5 groups), 0.50
#: with base 2.83 (4), 0.38 with base 1.41 (8) and 0.53 in one group (62 % padding).
#: On a GPU a step of a zoo-sized group is bound by kernel launches, not arithmetic, so widths up
#: to 256 share one group (not yet measured: bench/gpu_check.sh, part mixed).
BUCKET_BASE = {"cpu": 4, "cuda": 256}


def bucket(size: int, base: int) -> int:
    """The smallest b with size <= base**b."""
    b = 0
    while base**b < size:
        b += 1
    return b


def pad_key(spec: dict[str, Any]) -> str:
    """What members must share to be padded into one group: the shape apart from padded sizes
    and per-member keys."""
    free = PADDED.get(spec["arch"], ()) + PER_MEMBER.get(spec["arch"], ())
    return shape_key({k: v for k, v in spec.items() if k not in free})


def group_key(spec: dict[str, Any], base: int = BUCKET_BASE["cpu"]) -> str:
    """The group a job member trains in: ``pad_key`` and the bucket of each padded size."""
    buckets = {k: bucket(spec[k], base) for k in PADDED.get(spec["arch"], ())}
    return json.dumps([pad_key(spec), buckets], sort_keys=True)


def padded_spec(specs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A spec of the group's shared shape: the first member's, with the largest padded sizes."""
    if len({pad_key(s) for s in specs}) != 1:
        raise ValueError(
            "a group holds models that differ at most in width, channels and activation; split "
            "the specs by train.padding.group_key"
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
