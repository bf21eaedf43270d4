"""SGD and Adam for parameters stacked over K members (leading axis), each member with its own
hyperparameters: ``torch.optim.SGD`` and ``torch.optim.Adam`` member by member.

They follow the ``torch.optim.Optimizer`` contract (param groups, ``state_dict`` and
``load_state_dict``, ``step(closure)``); a param group's hyperparameters are lists with one value
per member. ``step(members=mask)`` updates only the members in the boolean mask (K,): the others
keep their weights and optimiser state bit for bit (given a finite gradient), which is how a group
stops a member that is done or diverged without copying it out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

#: torch.optim.Adam's defaults (the one-model path uses them).
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


class _Stacked(torch.optim.Optimizer):
    """Shared machinery: per-member hyperparameters as (K,) tensors, cached per device."""

    def __init__(self, params: Iterable[torch.Tensor], defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)
        self._columns: dict[tuple, torch.Tensor] = {}

    def _column(self, values: Sequence[float], device: torch.device, double: bool = False):
        """Per-member values as a (K,) float32 tensor (float64 with ``double``), built once."""
        key = (tuple(values), device, double)
        if key not in self._columns:
            column = torch.tensor(values, dtype=torch.float64)
            self._columns[key] = (column if double else column.float()).to(device)
        return self._columns[key]

    def _live(self, members: torch.Tensor | None, p: torch.Tensor) -> torch.Tensor:
        if members is None:
            return torch.ones(p.shape[0], dtype=torch.bool, device=p.device)
        return members.to(p.device)

    def step(
        self, closure: Callable[[], Any] | None = None, members: torch.Tensor | None = None
    ) -> Any:
        """One update of the ``members`` (bool (K,); all when None) from the current gradients."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, group, self._live(members, p))
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any], live: torch.Tensor) -> None:
        raise NotImplementedError


def _per_member(column: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """A (K,) column shaped to broadcast over stacked parameters (K, ...)."""
    return column.view((-1,) + (1,) * (p.dim() - 1))


class GroupSGD(_Stacked):
    """torch.optim.SGD (no dampening, no Nesterov) per member: lr, momentum and weight decay are
    lists of K values. State per parameter: ``momentum_buffer`` (K, ...)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: Sequence[float],
        momentum: Sequence[float],
        weight_decay: Sequence[float],
    ) -> None:
        defaults = {"lr": list(lr), "momentum": list(momentum), "weight_decay": list(weight_decay)}
        super().__init__(params, defaults)

    def _update(self, p: torch.Tensor, group: dict[str, Any], live: torch.Tensor) -> None:
        """A zero buffer is torch's first step (buffer = gradient); momentum 0 is plain SGD.
        A member left out gets lr 0, momentum 1 and a zero gradient: weights and buffer stay."""
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        keep = live.to(p.dtype)
        lr = self._column(group["lr"], p.device) * keep
        momentum = torch.where(live, self._column(group["momentum"], p.device), 1.0)
        d = p.grad * _per_member(keep, p)
        if any(group["weight_decay"]):
            d.addcmul_(p, _per_member(self._column(group["weight_decay"], p.device) * keep, p))
        torch.addcmul(d, buf, _per_member(momentum, p), out=buf)
        p.addcmul_(buf, _per_member(lr, p), value=-1)


class GroupAdam(_Stacked):
    """torch.optim.Adam (L2 weight decay, no amsgrad) per member: lr, betas, eps and weight decay
    are lists of K values. State per parameter: ``steps`` (K,), ``exp_avg``, ``exp_avg_sq``."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: Sequence[float],
        weight_decay: Sequence[float],
        betas: Sequence[tuple[float, float]] | None = None,
        eps: Sequence[float] | None = None,
    ) -> None:
        K = len(lr)
        betas = list(betas) if betas is not None else [ADAM_BETAS] * K
        defaults = {
            "lr": list(lr),
            "weight_decay": list(weight_decay),
            "beta1": [b1 for b1, _ in betas],
            "beta2": [b2 for _, b2 in betas],
            "eps": list(eps) if eps is not None else [ADAM_EPS] * K,
        }
        super().__init__(params, defaults)

    def _update(self, p: torch.Tensor, group: dict[str, Any], live: torch.Tensor) -> None:
        """Bias corrections in double precision, as torch.optim computes them."""
        state = self.state[p]
        if "steps" not in state:
            state["steps"] = torch.zeros(p.shape[0], device=p.device)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["steps"] += live.to(state["steps"].dtype)
        m, v = state["exp_avg"], state["exp_avg_sq"]

        def column(key: str, double: bool = False) -> torch.Tensor:
            return self._column(group[key], p.device, double)

        b1, b2 = column("beta1", True), column("beta2", True)
        d = p.grad + _per_member(column("weight_decay"), p) * p
        new_m = m.lerp(d, _per_member((1 - b1).float(), p))
        new_v = v * _per_member(b2.float(), p) + _per_member((1 - b2).float(), p) * d * d
        step = state["steps"].clamp(min=1).double()
        step_size = _per_member((column("lr").double() / (1 - b1**step)).float(), p)
        correction2 = _per_member((1 - b2**step).sqrt().float(), p)
        denom = new_v.sqrt() / correction2 + _per_member(column("eps"), p)
        keep = _per_member(live, p)
        m.copy_(torch.where(keep, new_m, m))
        v.copy_(torch.where(keep, new_v, v))
        p.copy_(torch.where(keep, p - step_size * new_m / denom, p))
