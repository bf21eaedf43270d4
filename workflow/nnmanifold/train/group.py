"""Train a group of zoo models as one vectorised computation inside Lightning.

K models of one ``padding.pad_key`` (architecture, depth, batch size, optimiser type and data
set shared; widths and channels padded to the widest; MLP and CNN members each with its own
activation function, ResNets with one) train together: a ``stacked.StackedClassifier`` holds their
weights, a ``optim.GroupSGD`` or ``optim.GroupAdam`` updates them with each member's own
hyperparameters, and ``GroupClassifier`` (this module) runs the schedule. Each model keeps its
own identity: initial weights are its ``Classifier``'s under its seed
(``members.initial_weights``), its data order is ``EpochShuffleSampler``'s, its dropout masks
come from a stream keyed by its seed, and its lr, momentum, weight decay, dropout and number of
epochs are its own. A model whose loss goes non-finite is frozen and recorded ``diverged``;
nothing in the computation mixes models, so a model's result does not depend on the group it
trained in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch

from nnmanifold.train import members as member_state
from nnmanifold.train import stacked_resnet
from nnmanifold.train.members import MemberState
from nnmanifold.train.optim import GroupAdam, GroupSGD
from nnmanifold.train.padding import padded_spec
from nnmanifold.train.stacked import StackedClassifier, dropout_keys, member_cross_entropy
from nnmanifold.train.stacked_resnet import StackedResNet
from nnmanifold.zoo import architecture
from nnmanifold.zoo.data import Dataset, data_order_seed

#: An epoch's mini-batches reach Lightning in at most this many training steps (chunks), so
#: Lightning's per-step cost (~2 ms on a CPU) is paid a few times an epoch, not per mini-batch.
STEPS_PER_EPOCH = 16


def epoch_order(seeds: Sequence[int], epochs: Sequence[int], n: int) -> torch.Tensor:
    """Row k: the order ``EpochShuffleSampler(n, seeds[k])`` gives in epoch ``epochs[k]``."""
    rows = []
    for seed, epoch in zip(seeds, epochs, strict=True):
        g = torch.Generator().manual_seed(data_order_seed(seed, epoch))
        rows.append(torch.randperm(n, generator=g))
    return torch.stack(rows)


def optimizer(specs: Sequence[dict[str, Any]], params: Any) -> torch.optim.Optimizer:
    """The group's optimiser over stacked ``params``, with each member's hyperparameters."""
    lr, decay = [s["lr"] for s in specs], [s.get("weight_decay", 0.0) for s in specs]
    if specs[0]["optimizer"] == "adam":
        return GroupAdam(params, lr=lr, weight_decay=decay)
    return GroupSGD(params, lr=lr, momentum=[s["momentum"] for s in specs], weight_decay=decay)


@dataclass(frozen=True)
class Epoch:
    """What one group epoch did: the members that trained it, and their mean training loss."""

    members: list[int]
    train_loss: list[float]


class GroupClassifier(pl.LightningModule):
    """K Classifiers of one ``padding.pad_key`` trained as one computation (manual
    optimisation).

    ``states`` are the members' starting points (``members.fresh_states`` or their checkpoints).
    Each Lightning epoch trains every member that is not done or diverged on its own next epoch;
    a finished member's weights stop changing. ``last_epoch`` says what the latest epoch did.
    """

    def __init__(
        self, specs: Sequence[dict[str, Any]], dataset: Dataset, states: Sequence[MemberState]
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.specs = list(specs)
        weights, self._optim_state = member_state.stack(states)
        stacked = StackedResNet if self.specs[0]["arch"] == "resnet" else StackedClassifier
        self.model = stacked(self.specs, dataset.input_shape, dataset.n_classes, weights)
        self.augmented = any(s.get("augment", "none") != "none" for s in self.specs)
        self.register_buffer("diverged", torch.tensor([s.diverged for s in states]))
        self.register_buffer("x_train", torch.from_numpy(dataset.x_train), persistent=False)
        self.register_buffer("y_train", torch.from_numpy(dataset.y_train), persistent=False)
        self.batch_size = self.specs[0]["batch_size"]
        self.seeds = [s["seed"] for s in self.specs]
        self.epochs = [s["epochs"] for s in self.specs]
        #: Epochs each member has finished (its own count, not the Trainer's).
        self.done = [s.epochs_completed for s in states]
        self.n_train = len(dataset.y_train)
        self.last_epoch = Epoch([], [])
        self._running: dict[str, Any] = {}

    @property
    def size(self) -> int:
        return len(self.specs)

    def training_members(self) -> list[int]:
        """Members that train in the current epoch: not done and not diverged (host view)."""
        diverged = self.diverged.tolist()
        return [k for k in range(self.size) if self.done[k] < self.epochs[k] and not diverged[k]]

    def finished(self) -> list[int]:
        """Members that will train no more: done or diverged."""
        diverged = self.diverged.tolist()
        return [k for k in range(self.size) if diverged[k] or self.done[k] >= self.epochs[k]]

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """Each item: the indices of a chunk of an epoch's mini-batches (see STEPS_PER_EPOCH)."""
        steps = math.ceil(self.n_train / self.batch_size)
        chunk = math.ceil(steps / STEPS_PER_EPOCH)
        return torch.utils.data.DataLoader(range(steps), batch_size=chunk)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The members' optimiser, holding the optimiser state they arrived with."""
        opt = optimizer(self.specs, self.model.parameters())
        state = {i: self._optim_state[n] for i, n in enumerate(self.model.names)}
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
        return opt

    def on_train_epoch_start(self) -> None:
        members = self.training_members()
        own = self.done  # each member's own epoch index is the count it has finished
        active = torch.zeros(self.size, dtype=torch.bool)
        active[members] = True
        self._running = {
            "members": members,
            "order": epoch_order(self.seeds, own, self.n_train).to(self.device),
            "keys": dropout_keys(self.seeds, own).to(self.device),
            "active": active.to(self.device),
            "loss_sum": torch.zeros(self.size, device=self.device),
            "seen": 0,
        }

    def training_step(self, steps: torch.Tensor, _: int) -> None:
        """One optimiser step per mini-batch in the chunk ``steps``."""
        for step in steps.tolist():
            self._train_step(step)

    def _train_step(self, step: int) -> None:
        run = self._running
        idx = run["order"][:, step * self.batch_size : (step + 1) * self.batch_size]
        n = idx.shape[1]
        flat = idx.flatten()
        x = self.x_train.index_select(0, flat).view(self.size, n, *self.x_train.shape[1:])
        y = self.y_train.index_select(0, flat).view(self.size, n)
        if self.augmented:  # each member's own crops and flips, as its one-model run draws them
            x = stacked_resnet.augment_members(x, self.specs, self.done, step)
        logits, _ = self.model(x, (run["keys"], step))
        losses = member_cross_entropy(logits, y)
        finite = torch.isfinite(losses)
        live = run["active"] & finite & ~self.diverged
        self.diverged |= run["active"] & ~finite
        opt = self.optimizers()
        opt.zero_grad()
        # members left out get a zero gradient: the optimiser then keeps them bit for bit
        self.manual_backward(torch.where(live, losses, 0.0).sum())
        opt.step(members=live)
        if isinstance(self.model, StackedResNet):  # BatchNorm statistics of live members only
            self.model.keep_running(live)
        run["loss_sum"] += torch.where(live, losses.detach(), 0.0) * n
        run["seen"] += n

    def on_train_epoch_end(self) -> None:
        run = self._running
        diverged = self.diverged.tolist()
        for k in run["members"]:
            if not diverged[k]:  # the epoch a member diverged in did not finish
                self.done[k] += 1
        loss = (run["loss_sum"] / max(run["seen"], 1)).tolist()
        self.last_epoch = Epoch(run["members"], loss)

    def member_states(self, members: Sequence[int]) -> list[MemberState]:
        """Members' resume states, gathered for all at once (one copy to the host per tensor)."""
        idx = torch.as_tensor(list(members), dtype=torch.long, device=self.device)
        names = self.model.names
        weights = {n: w.detach()[idx].cpu() for n, w in zip(names, self.model.weights, strict=True)}
        if isinstance(self.model, StackedResNet):  # running statistics, per member
            weights |= {n: b[idx].cpu() for n, b in self.model.running.items()}
        state = self.optimizers(use_pl_optimizer=False).state_dict()["state"]
        optim = {names[i]: {k: v[idx].cpu() for k, v in st.items()} for i, st in state.items()}
        diverged = self.diverged[idx].tolist()
        done, shapes = [self.done[k] for k in members], [self.model.shapes[k] for k in members]
        return member_state.unstack(weights, optim, diverged, done, shapes)


def member_bytes(spec: dict[str, Any], dataset: Dataset, functions: int = 1) -> int:
    """Rough memory one member (padded to ``spec``) takes in a training step: weights,
    gradients, optimiser state, a batch's activations (forward and backward; each of a group's
    ``functions`` activation functions beyond the first keeps its output and a selection more,
    ``stacked.MemberActivation``) and its epoch's data order."""
    if spec["arch"] == "resnet":
        shape = (dataset.input_shape, dataset.n_classes)
        return stacked_resnet.member_bytes(spec, *shape) + 8 * len(dataset.y_train)
    layers = architecture.layers(spec, dataset.input_shape, dataset.n_classes)
    n_params = sum(layer.n_parameters for layer in layers)
    per_point = math.prod(dataset.input_shape) + sum(layer.width for layer in layers)
    slots = 2 if spec["optimizer"] == "adam" else 1
    kept = 3 + 2 * (functions - 1)
    floats = n_params * (3 + slots) + per_point * kept * spec["batch_size"]
    return 4 * floats + 8 * len(dataset.y_train)


def group_size(specs: Sequence[dict[str, Any]], dataset: Dataset, budget_bytes: int) -> int:
    """How many members like ``specs`` (one ``padding.pad_key``; padded to the widest) fit in
    ``budget_bytes`` (at least one)."""
    functions = len({s["activation"] for s in specs})
    return max(1, budget_bytes // member_bytes(padded_spec(specs), dataset, functions))
