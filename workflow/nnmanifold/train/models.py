"""The zoo's architectures (MLP, small CNN, ResNet) as one LightningModule exposing its layers."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from nnmanifold.train import resnet
from nnmanifold.zoo import architecture

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class Classifier(pl.LightningModule):
    """A classifier built from a model spec; ``hidden`` returns every hidden layer's output.

    Hidden layers are recorded after their non-linearity; the last one feeds the classifier head.
    """

    def __init__(self, spec: dict[str, Any], input_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.spec = spec
        if spec["arch"] == "resnet":  # train/resnet.py: BatchNorm, no width or dropout
            act = ACTIVATIONS[spec["activation"]]
            self.blocks = nn.ModuleDict(resnet.blocks(spec, input_shape, act))
            features = architecture.recorded_widths(spec, input_shape, n_classes)[-1]
            self.head = nn.Linear(features, n_classes)
            self.drop = nn.Identity()
        else:
            *hidden, head = architecture.layers(spec, input_shape, n_classes)
            self.blocks = nn.ModuleDict(_blocks(hidden, ACTIVATIONS[spec["activation"]]))
            self.head = nn.Linear(head.n_in, head.n_out)
            self.drop = nn.Dropout(spec["dropout"])
        self.diverged = False

    @property
    def layer_names(self) -> list[str]:
        return list(self.blocks)

    def hidden(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every hidden layer's output (flattened per point; a ResNet's 4-D stage outputs
        averaged over space instead), in order."""
        out = {}
        for name, block in self.blocks.items():
            x = block(x)
            out[name] = (
                x.mean((2, 3)) if x.ndim == 4 and self.spec["arch"] == "resnet" else x.flatten(1)
            )
            if name.startswith("fc"):
                x = self.drop(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, block in self.blocks.items():
            x = block(x)
            if name.startswith("fc"):
                x = self.drop(x)
        return self.head(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int):
        x, y = batch
        if self.spec.get("augment", "none") == "standard":
            generator = resnet.augment_generator(self.spec["seed"], self.current_epoch, index)
            x = resnet.augment(x, generator)
        loss = nn.functional.cross_entropy(self(x), y)
        if not torch.isfinite(loss):
            self.diverged = True
            self.trainer.should_stop = True
            return None
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("test_loss", nn.functional.cross_entropy(logits, y), reduce_fx="mean")
        self.log("test_accuracy", (logits.argmax(1) == y).float().mean(), reduce_fx="mean")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        s = self.spec
        if s["optimizer"] == "adam":
            return torch.optim.Adam(self.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
        return torch.optim.SGD(
            self.parameters(), lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"]
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nnmanifold"] = {"diverged": self.diverged, **rng_states()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("nnmanifold", {})
        self.diverged = bool(state.get("diverged", False))
        restore_rng_states(state)


def rng_states() -> dict[str, Any]:
    """Every random state training may use (torch CPU and CUDA, NumPy, Python), in types a
    ``weights_only`` load accepts: a resumed run draws what an uninterrupted one would."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "rng": torch.get_rng_state(),
        "numpy_rng": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos},
        "numpy_gauss": [has_gauss, gauss],
        "python_rng": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        states["cuda_rng"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` saved (keys a checkpoint lacks are left alone)."""
    if "rng" in states:
        torch.set_rng_state(states["rng"])
    if "numpy_rng" in states:
        keys = states["numpy_rng"]["keys"].numpy().astype(np.uint32)
        has_gauss, gauss = states["numpy_gauss"]
        np.random.set_state(("MT19937", keys, states["numpy_rng"]["pos"], has_gauss, gauss))
    if "python_rng" in states:
        random.setstate((3, tuple(states["python_rng"]), None))
    if "cuda_rng" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda_rng"])


def _blocks(layers: list[architecture.Layer], act: type[nn.Module]) -> dict[str, nn.Module]:
    """The hidden layers as modules, built in order (the order that decides initial weights)."""
    blocks: dict[str, nn.Module] = {}
    for layer in layers:
        if layer.kind == "conv":
            parts: list[nn.Module] = [nn.Conv2d(layer.n_in, layer.n_out, 3, padding=1), act()]
            parts += [nn.MaxPool2d(2)] if layer.pool else []
        else:
            parts = [nn.Flatten()] if layer.flatten else []
            parts += [nn.Linear(layer.n_in, layer.n_out), act()]
        blocks[layer.name] = nn.Sequential(*parts)
    return blocks
