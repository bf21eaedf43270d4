"""SGD and Adam for parameters stacked over K members (leading axis), each member with its own
hyperparameters: ``torch.optim.SGD`` and ``torch.optim.Adam`` member by member.

They follow the ``torch.optim.Optimizer`` contract (param groups, ``state_dict`` and
``load_state_dict``, ``step(closure)``); a param group's hyperparameters are lists with one value
per member. ``step(members=mask)`` updates only the members in the boolean mask (K,): the
others, whose gradient must be zero (a group masks their losses out), keep their weights and
optimiser state bit for bit. That is how a group stops a member that is done or diverged without
copying it out.
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
                params = [p for p in group["params"] if p.grad is not None]
                if not params:
                    continue
                device = params[0].device
                if members is None:
                    live = torch.ones(params[0].shape[0], dtype=torch.bool, device=device)
                else:
                    live = members.to(device)
                self._update(params, group, live)
        return loss

    def _update(self, params: list[torch.Tensor], group: dict[str, Any], live: torch.Tensor):
        """Update the stacked ``params`` of one param group (all on one device)."""
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

    def _update(self, params: list[torch.Tensor], group: dict[str, Any], live: torch.Tensor):
        """A zero buffer is torch's first step (buffer = gradient); momentum 0 is plain SGD.
        A member left out gets lr 0, momentum 1 and no weight decay: with the zero gradient it
        must have, its weights and buffer stay bit for bit (no per-weight masks)."""
        device = live.device
        keep = live.to(params[0].dtype)
        lr = self._column(group["lr"], device) * keep
        momentum = torch.where(live, self._column(group["momentum"], device), 1.0)
        decay, decays = (
            self._column(group["weight_decay"], device) * keep,
            any(group["weight_decay"]),
        )
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            d = p.grad.addcmul(p, _per_member(decay, p)) if decays else p.grad
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

    def _update(self, params: list[torch.Tensor], group: dict[str, Any], live: torch.Tensor):
        """Bias corrections in double precision, as torch.optim computes them."""
        device = live.device

        def column(key: str, double: bool = False) -> torch.Tensor:
            return self._column(group[key], device, double)

        b1, b2 = column("beta1", True), column("beta2", True)
        lr, decay, eps = column("lr").double(), column("weight_decay"), column("eps")
        for p in params:
            state = self.state[p]
            if "steps" not in state:
                state["steps"] = torch.zeros(p.shape[0], device=device)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["steps"] += live.to(state["steps"].dtype)
            m, v = state["exp_avg"], state["exp_avg_sq"]
            d = p.grad + _per_member(decay, p) * p
            new_m = m.lerp(d, _per_member((1 - b1).float(), p))
            new_v = v * _per_member(b2.float(), p) + _per_member((1 - b2).float(), p) * d * d
            step = state["steps"].clamp(min=1).double()
            step_size = _per_member((lr / (1 - b1**step)).float(), p)
            correction2 = _per_member((1 - b2**step).sqrt().float(), p)
            denom = new_v.sqrt() / correction2 + _per_member(eps, p)
            keep = _per_member(live, p)
            m.copy_(torch.where(keep, new_m, m))
            v.copy_(torch.where(keep, new_v, v))
            p.copy_(torch.where(keep, p - step_size * new_m / denom, p))
