"""K same-shaped ResNets (``train.resnet``) as one ``nn.Module``: grouped convolutions over K*C
channels and one BatchNorm over K*C channels, so each member's channels keep their own batch and
running statistics, and a batched matmul for the heads.

Member k computes what its own ``models.Classifier`` computes, under the same state-dict names
(running statistics included). A template ResNet of one member gives the layers, strides and
paddings; the stacked tensors (K, ...) give the numbers. Nothing in the computation mixes members.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nnmanifold.train import resnet
from nnmanifold.train.models import ACTIVATIONS, Classifier
from nnmanifold.train.stacked import Stream, evaluate_in_chunks
from nnmanifold.zoo import architecture
from nnmanifold.zoo.specs import shape_key

#: BatchNorm buffers: kept per member, saved in its checkpoint, never touched by the optimiser.
RUNNING = ("running_mean", "running_var", "num_batches_tracked")


def is_running(name: str) -> bool:
    """Whether a state-dict name is a BatchNorm buffer rather than a trained parameter."""
    return name.rsplit(".", 1)[-1] in RUNNING


def initial_weights(
    specs: Sequence[dict[str, Any]], input_shape: tuple[int, ...], n_classes: int
) -> list[dict[str, torch.Tensor]]:
    """Members' initial state dicts, each built as ``train_model`` builds it under its seed (the
    ResNet's Kaiming re-initialisation follows construction, so a template's reset would not)."""
    weights = []
    for spec in specs:
        torch.default_generator.manual_seed(spec["seed"])
        weights.append(Classifier(spec, input_shape, n_classes).state_dict())
    return weights


def augment_members(
    x: torch.Tensor, specs: Sequence[dict[str, Any]], epochs: Sequence[int], batch: int
) -> torch.Tensor:
    """Members' batches x (K, n, C, H, W), each augmented as its one-model run augments it in
    its epoch ``epochs[k]`` and mini-batch ``batch`` (members without augmentation unchanged)."""
    rows = []
    for k, spec in enumerate(specs):
        if spec.get("augment", "none") == "standard":
            generator = resnet.augment_generator(spec["seed"], epochs[k], batch)
            rows.append(resnet.augment(x[k], generator))
        else:
            rows.append(x[k])
    return torch.stack(rows)


class StackedResNet(nn.Module):
    """K ResNets of one shape (``specs``) with their parameters and running statistics stacked
    on a leading axis; the same interface as ``stacked.StackedClassifier``."""

    def __init__(
        self,
        specs: Sequence[dict[str, Any]],
        input_shape: tuple[int, ...],
        n_classes: int,
        weights: dict[str, torch.Tensor],
    ) -> None:
        super().__init__()
        if len({shape_key(s) for s in specs}) != 1:
            raise ValueError("a group holds models of one shape; split the specs by shape_key")
        self.activation = ACTIVATIONS[specs[0]["activation"]]()
        # a plain dict, not a ModuleDict: the template's own weights are no parameters here;
        # building it must not move the RNG
        with torch.random.fork_rng(devices=[]):
            self._template = resnet.blocks(specs[0], input_shape, type(self.activation))
        self.names = [n for n in weights if not is_running(n)]
        self.weights = nn.ParameterList([nn.Parameter(weights[n]) for n in self.names])
        self._running_names = [n for n in weights if is_running(n)]
        for i, n in enumerate(self._running_names):
            self.register_buffer(f"running_{i}", weights[n].clone())
        self.register_buffer("anchor", torch.zeros(len(specs)))
        self._before: list[torch.Tensor] = []

    @property
    def size(self) -> int:
        return len(self.anchor)

    @property
    def shapes(self) -> list[dict[str, tuple[int, ...]]]:
        """Each member's own tensor shapes: the same for all (ResNet groups keep exact shapes)."""
        own = {n: tuple(v.shape[1:]) for n, v in self.params().items()}
        return [own] * self.size

    @property
    def running(self) -> dict[str, torch.Tensor]:
        """The stacked running statistics by Classifier state-dict name (live buffers)."""
        return {n: getattr(self, f"running_{i}") for i, n in enumerate(self._running_names)}

    def params(self, members: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Parameters and running statistics by state-dict name (some members: detached copies)."""
        tensors = {**dict(zip(self.names, self.weights, strict=True)), **self.running}
        if members is None:
            return tensors
        idx = torch.as_tensor(list(members), dtype=torch.long, device=self.anchor.device)
        return {n: t.detach()[idx] for n, t in tensors.items()}

    def forward(
        self, x: torch.Tensor, stream: Stream | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and pooled hidden layers of every member on its own batch x (K, n, C, H, W).
        In training mode BatchNorm uses batch statistics and updates every member's running
        statistics; ``keep_running`` then undoes that for members that did not train."""
        if self.training:
            self._before = [b.clone() for b in self.running.values()]
        return self._forward(self.params(), x, False, self.training)

    @torch.no_grad()
    def keep_running(self, live: torch.Tensor) -> None:
        """Restore the running statistics of members not ``live`` (K,) in the last training
        step, and count the step for the live ones (``num_batches_tracked``, per member)."""
        for (name, now), before in zip(self.running.items(), self._before, strict=True):
            if name.endswith("num_batches_tracked"):
                now.copy_(before + live.to(before.dtype))
            else:
                now.copy_(torch.where(live.view(-1, 1), now, before))
        self._before = []

    def _forward(
        self, tensors: dict[str, torch.Tensor], x: torch.Tensor, shared: bool, training: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (K, n, classes) and each layer (K, n, features) of the members in ``tensors``
        on one batch for all (``shared``, (n, C, H, W)) or one per member (K, n, C, H, W)."""
        K = len(tensors["head.weight"])
        h = x.repeat(1, K, 1, 1) if shared else x.transpose(0, 1).flatten(1, 2)

        def run(module: nn.Module, prefix: str, h: torch.Tensor) -> torch.Tensor:
            if isinstance(module, nn.Conv2d):
                w = tensors[f"{prefix}.weight"].flatten(0, 1)
                return F.conv2d(h, w, None, module.stride, module.padding, groups=K)
            if isinstance(module, nn.BatchNorm2d):
                return F.batch_norm(
                    h,
                    tensors[f"{prefix}.running_mean"].view(-1),
                    tensors[f"{prefix}.running_var"].view(-1),
                    tensors[f"{prefix}.weight"].flatten(),
                    tensors[f"{prefix}.bias"].flatten(),
                    training,
                    module.momentum,
                    module.eps,
                )
            if isinstance(module, resnet.BasicBlock):
                out = module.act1(
                    run(module.bn1, f"{prefix}.bn1", run(module.conv1, f"{prefix}.conv1", h))
                )
                out = run(module.bn2, f"{prefix}.bn2", run(module.conv2, f"{prefix}.conv2", out))
                return module.act2(out + run(module.shortcut, f"{prefix}.shortcut", h))
            if isinstance(module, nn.Sequential):
                for i, child in enumerate(module):
                    h = run(child, f"{prefix}.{i}", h)
                return h
            return module(h)  # activations, identity shortcuts

        hidden: dict[str, torch.Tensor] = {}
        for name in resnet.LAYERS[:-1]:
            h = run(self._template[name], f"blocks.{name}", h)
            hidden[name] = h.mean((2, 3)).view(h.shape[0], K, -1).transpose(0, 1)
        features = hidden[resnet.LAYERS[-2]]  # (K, n, C): the global average pool
        hidden[resnet.LAYERS[-1]] = features
        w, b = tensors["head.weight"], tensors["head.bias"]
        return torch.baddbmm(b[:, None, :], features, w.transpose(1, 2)), hidden

    @torch.no_grad()
    def evaluate(
        self, members: Sequence[int], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[list[float], list[float]]:
        """Mean loss and accuracy of some members on (x, y) in eval mode, in chunks of inputs."""
        tensors = self.params(members)
        return evaluate_in_chunks(
            lambda xs: self._forward(tensors, xs, True, False)[0],
            len(members),
            x,
            y,
            self.anchor.device,
        )

    @torch.no_grad()
    def hidden(self, members: Sequence[int], x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Each member's pooled layers on the inputs x in eval mode (running statistics)."""
        x = x.to(self.anchor.device)
        _, hidden = self._forward(self.params(members), x, True, False)
        return [{n: h[j].cpu() for n, h in hidden.items()} for j in range(len(members))]


def member_bytes(spec: dict[str, Any], input_shape: tuple[int, ...], n_classes: int) -> int:
    """Rough memory one ResNet member takes in a training step: weights, gradients, optimiser
    state, and a batch's activations (every convolution, BatchNorm and activation output: what
    autograd keeps for the backward pass; ``zoo.architecture.resnet_summary``)."""
    _, n_params, per_point = architecture.resnet_summary(spec, input_shape, n_classes)
    slots = 2 if spec["optimizer"] == "adam" else 1
    return 4 * (n_params * (3 + slots) + per_point * spec["batch_size"])
