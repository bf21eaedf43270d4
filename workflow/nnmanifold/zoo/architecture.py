"""The zoo's architectures, described once: each layer's name, kind, sizes and parameters.

``train.models.Classifier`` builds its modules from this description, ``train.stacked`` stacks
them for a group, and ``core.plan`` estimates disk from it; no torch here, so planning stays light.

An MLP is ``fc1..fc<depth>`` (each Linear then the activation, dropout after it); a CNN is
``conv1..conv<depth>`` (3x3 convolution, padding 1, the activation, then a 2x2 max-pool while the
image is at least 2 pixels high) followed by one dense layer ``fc``. Every model ends in a dense
``head`` to the classes. A ResNet (He et al. 2016) is a stem convolution and three stages of
``blocks`` basic blocks (``resnet_blocks``), recorded per stage and as the pooled features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The layers a ResNet records, in order: its three stages (pooled) and the pooled features.
RESNET_LAYERS = ("stage1", "stage2", "stage3", "penultimate")


@dataclass(frozen=True)
class Layer:
    """One layer with weights: a hidden layer (recorded after its activation) or the head."""

    name: str
    kind: str  # "conv" (3x3, padding 1) or "fc"
    n_in: int  # input channels (conv) or input features (fc)
    n_out: int  # output channels (conv) or output features (fc)
    #: Flattened width of its recorded output per point (channels x height x width for a conv).
    width: int
    pool: bool = False  # a 2x2 max-pool follows the activation (conv only)
    flatten: bool = False  # its input is flattened first (the first dense layer)
    positions: int = 1  # where it applies its weights: a conv's input height x width

    @property
    def key(self) -> str:
        """Where its weights live in a Classifier's state dict (``<key>.weight``, ``.bias``)."""
        if self.name == "head":
            return "head"
        return f"blocks.{self.name}.{int(self.flatten)}"

    @property
    def n_parameters(self) -> int:
        kernel = 9 if self.kind == "conv" else 1
        return self.n_in * self.n_out * kernel + self.n_out

    @property
    def multiply_adds(self) -> int:
        """Multiply-adds of its weights for one input (its forward arithmetic, bias aside)."""
        return (self.n_parameters - self.n_out) * self.positions


@dataclass(frozen=True)
class Block:
    """One ResNet basic block: two 3x3 convolutions ``c_in`` -> ``c_out`` (the first with
    ``stride``), each followed by BatchNorm, added to the identity or, where the shape changes,
    to a projection (a 1x1 convolution with ``stride`` and BatchNorm). No convolution has a bias.
    """

    stage: int  # 1, 2 or 3: the recorded layer ``stage<k>`` it ends in
    c_in: int
    c_out: int
    stride: int
    pixels: int  # its output's height x width

    @property
    def projection(self) -> bool:
        return self.stride != 1 or self.c_in != self.c_out

    @property
    def n_parameters(self) -> int:
        convs = (self.c_in + self.c_out) * self.c_out * 9 + 4 * self.c_out  # and 2 BatchNorms
        return convs + (self.c_in * self.c_out + 2 * self.c_out if self.projection else 0)

    @property
    def outputs_per_point(self) -> int:
        """Values its modules output for one input (convolutions, BatchNorms, activations)."""
        return (6 + 2 * self.projection) * self.c_out * self.pixels


def resnet_blocks(spec: dict[str, Any], input_shape: tuple[int, ...]) -> list[Block]:
    """A ResNet's blocks in order: stage k has ``spec["blocks"]`` of them at ``channels`` x
    2^(k-1) channels; the first block of stages 2 and 3 halves the resolution."""
    if len(input_shape) != 3:
        raise ValueError(
            f"arch resnet needs image data (C, H, W); this data has shape {input_shape}"
        )
    out: list[Block] = []
    c_in, (h, w) = spec["channels"], input_shape[1:]
    for stage in (1, 2, 3):
        c_out, stride = spec["channels"] * 2 ** (stage - 1), 1 if stage == 1 else 2
        h, w = (h - 1) // stride + 1, (w - 1) // stride + 1  # 3x3 convolution, padding 1
        for block in range(spec["blocks"]):
            first = block == 0
            out.append(Block(stage, c_in if first else c_out, c_out, stride if first else 1, h * w))
        c_in = c_out
    return out


def resnet_summary(
    spec: dict[str, Any], input_shape: tuple[int, ...], n_classes: int
) -> tuple[list[int], int, int]:
    """A ResNet's recorded widths (``layer_names`` order), trainable parameters, and values its
    modules output per input (what training keeps for the backward pass)."""
    blocks, c = resnet_blocks(spec, input_shape), spec["channels"]
    stages = [[b.c_out for b in blocks if b.stage == k][-1] for k in (1, 2, 3)]
    stem = input_shape[0] * c * 9 + 2 * c  # convolution and BatchNorm
    head = stages[-1] * n_classes + n_classes
    params = stem + sum(b.n_parameters for b in blocks) + head
    outputs = 3 * c * input_shape[1] * input_shape[2] + sum(b.outputs_per_point for b in blocks)
    return [*stages, stages[-1]], params, outputs


def layer_names(spec: dict[str, Any]) -> list[str]:
    """The hidden layers a model of this spec records, in order (no input shape needed); a
    ResNet (``train.resnet``) records its three stages, pooled, and the pooled features."""
    if spec["arch"] == "resnet":
        return list(RESNET_LAYERS)
    if spec["arch"] == "cnn":
        return [*(f"conv{i + 1}" for i in range(spec["depth"])), "fc"]
    return [f"fc{i + 1}" for i in range(spec["depth"])]


def layers(spec: dict[str, Any], input_shape: tuple[int, ...], n_classes: int) -> list[Layer]:
    """Every layer with weights of a model of ``spec`` on inputs of ``input_shape``, in order:
    the hidden layers, then the head."""
    names = layer_names(spec)
    out: list[Layer] = []
    if spec["arch"] == "cnn":
        if len(input_shape) != 3:
            raise ValueError(
                f"arch cnn needs image data (C, H, W); this data has shape {input_shape}"
            )
        channels, (height, width) = input_shape[0], input_shape[1:]
        for name in names[:-1]:
            pool, positions = height >= 2, height * width
            if pool:
                height, width = height // 2, width // 2
            n_out = spec["channels"]
            recorded = n_out * height * width
            out.append(Layer(name, "conv", channels, n_out, recorded, pool, positions=positions))
            channels = n_out
        n_in, names = out[-1].width, names[-1:]
    else:
        n_in = math.prod(input_shape)
    for i, name in enumerate(names):
        out.append(Layer(name, "fc", n_in, spec["width"], spec["width"], flatten=i == 0))
        n_in = spec["width"]
    return [*out, Layer("head", "fc", n_in, n_classes, n_classes)]


def n_parameters(spec: dict[str, Any], input_shape: tuple[int, ...], n_classes: int) -> int:
    """Trainable parameters of one model of ``spec``."""
    if spec["arch"] == "resnet":
        return resnet_summary(spec, input_shape, n_classes)[1]
    return sum(layer.n_parameters for layer in layers(spec, input_shape, n_classes))


def recorded_widths(
    spec: dict[str, Any], input_shape: tuple[int, ...], n_classes: int
) -> list[int]:
    """Each recorded hidden layer's flattened width per point (``layer_names`` order)."""
    if spec["arch"] == "resnet":
        return resnet_summary(spec, input_shape, n_classes)[0]
    return [layer.width for layer in layers(spec, input_shape, n_classes)[:-1]]
