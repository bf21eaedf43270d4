"""A group member's state, and the one place it is packed into (and unpacked from) a group.

A member resumes on its own, in whatever group it lands in next, from a small checkpoint of its
own (``MemberState.checkpoint``): its Classifier weights, its optimiser state per parameter
(``momentum_buffer`` for SGD, ``exp_avg`` and ``exp_avg_sq`` for Adam, plus Adam's step count),
whether it diverged, and the epochs it has finished. ``stack`` turns K members into the stacked
weights of a ``stacked.StackedClassifier`` and the state of an ``optim`` optimiser over them,
padded to the widest member (``padding.pad``); ``unstack`` turns them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nnmanifold.train import padding, stacked_resnet
from nnmanifold.train.models import Classifier
from nnmanifold.train.stacked import dropout_keys
from nnmanifold.zoo.data import data_order_seed
from nnmanifold.zoo.specs import shape_key

#: Optimiser state kept per parameter, by optimiser (names as in ``optim``'s state).
SLOTS = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq")}


@dataclass
class MemberState:
    """One member's resume point (tensors on the host)."""

    weights: dict[str, torch.Tensor]  # Classifier state dict
    optim: dict[str, dict[str, torch.Tensor]]  # slot -> parameter name -> tensor
    adam_step: float = 0.0
    diverged: bool = False
    epochs_completed: int = 0

    def checkpoint(self, seed: int) -> dict[str, Any]:
        """What ``torch.save`` writes (``group_last.pt``), with the next epoch's stream positions
        (counter-based: recorded for reference, never needed to resume)."""
        key = int(dropout_keys([seed], [self.epochs_completed])[0])
        return {
            "state_dict": self.weights,
            "optim": self.optim,
            "adam_step": self.adam_step,
            "diverged": self.diverged,
            "epochs_completed": self.epochs_completed,
            "rng": {
                "data_order_seed": data_order_seed(seed, self.epochs_completed),
                "dropout_key": key,
            },
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> MemberState:
        return cls(
            checkpoint["state_dict"],
            checkpoint["optim"],
            float(checkpoint["adam_step"]),
            bool(checkpoint["diverged"]),
            int(checkpoint["epochs_completed"]),
        )


def initial_weights(
    specs: Sequence[dict[str, Any]], input_shape: tuple[int, ...], n_classes: int
) -> list[dict[str, torch.Tensor]]:
    """Members' initial weights, drawn exactly as the one-model path draws them.

    There ``pl.seed_everything(seed)`` seeds torch's CPU generator and the Classifier's layers
    initialise in construction order; re-initialising one template per shape, its layers in that
    order under each seed, gives the same bits without building (and seeding every device for)
    each model.
    """
    if specs[0]["arch"] == "resnet":
        return stacked_resnet.initial_weights(specs, input_shape, n_classes)
    templates: dict[str, Classifier] = {}
    weights = []
    for spec in specs:
        key = shape_key(spec)
        if key not in templates:
            templates[key] = Classifier(spec, input_shape, n_classes)
        model = templates[key]
        torch.default_generator.manual_seed(spec["seed"])
        for layer in model.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        weights.append({n: v.clone() for n, v in model.state_dict().items()})
    return weights


def fresh_states(
    specs: Sequence[dict[str, Any]], input_shape: tuple[int, ...], n_classes: int
) -> list[MemberState]:
    """Members that have not trained yet: initial weights, zero optimiser state (for parameters
    only: BatchNorm's running statistics are no optimiser's)."""
    states = []
    slots = SLOTS[specs[0]["optimizer"]]
    for w in initial_weights(specs, input_shape, n_classes):
        zeros = {n: torch.zeros_like(v) for n, v in w.items() if not stacked_resnet.is_running(n)}
        states.append(MemberState(w, {slot: zeros for slot in slots}))
    return states


def stack(
    states: Sequence[MemberState],
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """K members' weights (name -> (K, ...)) and optimiser state (name -> slot -> (K, ...), with
    Adam's per-member step count as ``steps``), in the optimisers' state layout; members of
    different widths padded to the widest with zeros."""
    weights = {n: padding.pad([s.weights[n] for s in states]) for n in states[0].weights}
    steps = torch.tensor([s.adam_step for s in states])
    names = next(iter(states[0].optim.values()))  # the parameters, running statistics left out
    optim = {
        n: {k: padding.pad([s.optim[k][n] for s in states]) for k in states[0].optim} for n in names
    }
    for slots in optim.values():
        if "exp_avg" in slots:
            slots["steps"] = steps.clone()
    return weights, optim


def unstack(
    weights: dict[str, torch.Tensor],
    optim: dict[str, dict[str, torch.Tensor]],
    diverged: Sequence[bool],
    done: Sequence[int],
    shapes: Sequence[dict[str, tuple[int, ...]]],
) -> list[MemberState]:
    """Members' states from their rows of stacked weights and optimiser state (as ``stack``
    gives them: one row per member here), each cut to its own ``shapes`` and copied, so that it
    saves alone."""
    first = next(iter(optim.values()))
    slots = [k for k in first if k != "steps"]
    return [
        MemberState(
            {n: padding.unpad(w[j], shapes[j][n]).clone() for n, w in weights.items()},
            {
                k: {n: padding.unpad(optim[n][k][j], shapes[j][n]).clone() for n in optim}
                for k in slots
            },
            float(first["steps"][j]) if "steps" in first else 0.0,
            bool(diverged[j]),
            int(done[j]),
        )
        for j in range(len(done))
    ]
