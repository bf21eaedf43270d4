"""The zoo's architectures, described once: each layer's name, kind, sizes and parameters.

``train.models.Classifier`` builds its modules from this description, ``train.stacked`` stacks
them for a group, and ``core.plan`` estimates disk from it; no torch here, so planning stays light.

An MLP is ``fc1..fc<depth>`` (each Linear then the activation, dropout after it); a CNN is
``conv1..conv<depth>`` (3x3 convolution, padding 1, the activation, then a 2x2 max-pool while the
image is at least 2 pixels high) followed by one dense layer ``fc``. Every model ends in a dense
``head`` to the classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


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


def layer_names(spec: dict[str, Any]) -> list[str]:
    """The hidden layers a model of this spec records, in order (no input shape needed); a
    ResNet (``train.resnet``) records its three stages, pooled, and the pooled features."""
    if spec["arch"] == "resnet":
        return ["stage1", "stage2", "stage3", "penultimate"]
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
            pool = height >= 2
            if pool:
                height, width = height // 2, width // 2
            n_out = spec["channels"]
            out.append(Layer(name, "conv", channels, n_out, n_out * height * width, pool=pool))
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
    return sum(layer.n_parameters for layer in layers(spec, input_shape, n_classes))
