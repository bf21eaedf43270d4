"""The CIFAR-style residual network of He et al. (2016, section 4.2), and image augmentation.

Three stages of ``blocks`` basic blocks (two 3x3 convolutions, each followed by BatchNorm), with
``channels``, 2x and 4x channels; the first block of stages 2 and 3 halves the resolution and
reaches the wider stage through a projection shortcut (a 1x1 convolution and BatchNorm), every
other block through the identity. Depth is 6 * blocks + 2: 8, 14, 20, 32 for 1, 2, 3, 5 blocks.
There is no pooling in the stem, so 8x8 digits work (8 -> 4 -> 2).

The mappable layers are ``stage1``, ``stage2``, ``stage3`` (4-D, reduced per image by global
average pooling when recorded) and ``penultimate``, the pooled features the classifier head reads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnmanifold.zoo import architecture

#: The layers a ResNet records, in order (described, without torch, in ``zoo.architecture``).
LAYERS = architecture.RESNET_LAYERS
#: Random-crop padding: an eighth of the image side, as He et al. pad 32x32 CIFAR images by 4.
PAD_FRACTION = 8


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm, added to an identity or projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act1, self.act2 = act(), act()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))


def blocks(
    spec: dict[str, Any], input_shape: tuple[int, ...], act: type[nn.Module]
) -> dict[str, nn.Module]:
    """The network before its classifier head, as named layers (``LAYERS``) built from
    ``zoo.architecture.resnet_blocks``, initialised as He et al. do (Kaiming-normal convolutions,
    BatchNorm scale 1 and shift 0)."""
    described = architecture.resnet_blocks(spec, input_shape)
    c = spec["channels"]
    stem = [nn.Conv2d(input_shape[0], c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), act()]
    layers: dict[str, nn.Module] = {}
    for stage, name in enumerate(LAYERS[:3], 1):
        stack = [BasicBlock(b.c_in, b.c_out, b.stride, act) for b in described if b.stage == stage]
        layers[name] = nn.Sequential(*(stem if stage == 1 else []), *stack)
    layers["penultimate"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    for module in nn.ModuleDict(layers).modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return layers


def augment_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The generator of one mini-batch's augmentation: a counter stream keyed by the model's seed,
    the epoch and the batch index, so any path (one model or a group) draws the same crops."""
    return torch.Generator().manual_seed((seed * 100_003 + epoch) * 100_003 + batch)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard augmentation of a batch of images (N, C, H, W): a random crop of the image
    zero-padded by an eighth of its side, then a horizontal flip with probability one half."""
    n, _, h, w = x.shape
    pad = max(1, h // PAD_FRACTION)
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    flip = torch.rand(n, 1, generator=generator) < 0.5
    rows = dy + torch.arange(h)
    cols = dx + torch.arange(w)
    cols = torch.where(flip, cols.flip(1), cols)
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    index = torch.arange(n)[:, None, None]
    rows, cols = rows.to(x.device), cols.to(x.device)
    return padded.permute(0, 2, 3, 1)[
        index.to(x.device), rows[:, :, None], cols[:, None, :]
    ].permute(0, 3, 1, 2)
