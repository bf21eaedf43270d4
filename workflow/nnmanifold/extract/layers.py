"""Choose a network's layer by name and record it on a set of inputs, in eval mode.

A layer is named by a module path from ``named_modules()`` (``layer4``, ``blocks.3``), by
``penultimate`` (the input to the last ``nn.Linear``), by ``Type:k`` (the k-th module of that
type, 1-based, negative from the end: ``Conv2d:3``, ``Linear:-1``; robust to the index shifts
that dropout layers cause), or by ``output`` (what the network returns). Maps of more than two
axes (N, C, ...) are reduced per network: ``gap`` averages the axes after the channels, ``flatten``
keeps every value. A TorchScript archive takes no hooks: only ``output`` and, for an
``nn.Sequential``, its top-level children.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nnmanifold.core.errors import UserError


@dataclass(frozen=True)
class Tap:
    """Where a layer is read: a module's output, or its input (``penultimate``)."""

    name: str
    module: nn.Module | None  # None: the network's output
    reads_input: bool = False


def find_layer(network: nn.Module, selector: str) -> Tap:
    """The layer a selector names; an unknown name lists the closest valid ones."""
    modules = _modules(network)
    if selector == "output":
        return Tap("output", None)
    if selector == "penultimate":
        linear = [(n, m) for n, m in modules.items() if _type_name(m) == "Linear"]
        if not linear:
            raise UserError(
                "layer 'penultimate' is the input to the last nn.Linear, and this network has "
                "none; name a module path, a Type:k selector, or output"
            )
        return Tap(f"{linear[-1][0]}.input", linear[-1][1], reads_input=True)
    if ":" in selector:
        return _by_type(modules, selector)
    if selector not in modules:
        close = difflib.get_close_matches(selector, list(modules), n=5, cutoff=0.4)
        hint = ", ".join(close or list(modules)[:5])
        raise UserError(
            f"the network has no layer {selector!r}; closest: {hint} (any module path of "
            "named_modules(), penultimate, Type:k such as Conv2d:2, or output)"
        )
    return Tap(selector, modules[selector])


def _modules(network: nn.Module) -> dict[str, nn.Module]:
    """Named modules that can be tapped (a TorchScript Sequential: its top-level children)."""
    if isinstance(network, torch.jit.ScriptModule):
        if network.original_name != "Sequential":
            return {}
        return dict(network.named_children())
    return {name: m for name, m in network.named_modules() if name}


def _type_name(module: nn.Module) -> str:
    return getattr(module, "original_name", None) or type(module).__name__


def _by_type(modules: dict[str, nn.Module], selector: str) -> Tap:
    kind, _, ordinal = selector.partition(":")
    of_kind = [(n, m) for n, m in modules.items() if _type_name(m) == kind]
    try:
        k = int(ordinal)
        name, module = of_kind[k - 1 if k > 0 else k]
        if k == 0:
            raise IndexError
    except (ValueError, IndexError):
        types = sorted({_type_name(m) for m in modules.values()})
        raise UserError(
            f"layer {selector!r}: the network has {len(of_kind)} modules of type {kind!r}; "
            f"Type:k takes k from 1 (or -1 for the last); types here: {', '.join(types)}"
        ) from None
    return Tap(name, module)


def reduce(values: torch.Tensor, spatial: str) -> torch.Tensor:
    """(N, d) rows of a layer: maps of more than two axes averaged (gap) or flattened."""
    if values.ndim <= 2:
        return values.reshape(len(values), -1)
    if spatial == "gap":
        return values.mean(dim=tuple(range(2, values.ndim)))
    return values.reshape(len(values), -1)


def select_output(output: Any, key: int | str | None) -> torch.Tensor:
    """The tensor of a network's output that holds its logits (``output``: index or key)."""
    if isinstance(output, torch.Tensor):
        return output
    if key is None:
        what = (
            f"a dict with keys {list(output)}"
            if isinstance(output, dict)
            else (f"a {type(output).__name__} of {len(output)}")
        )
        raise UserError(f"the network returns {what}; set output to the index or key of the logits")
    try:
        return output[key]
    except (KeyError, IndexError, TypeError) as err:
        raise UserError(f"output {key!r} is not in the network's output ({err})") from err


def record(
    network: nn.Module,
    x: np.ndarray,
    tap: Tap,
    *,
    spatial: str,
    output: int | str | None,
    batch_size: int,
    device: str = "cpu",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(layer rows, output rows) of ``x``, in batches, under ``inference_mode`` in eval mode
    (a train-mode forward would change BatchNorm statistics)."""
    network = network.to(device).eval()
    layers, outputs = [], []
    for start in range(0, len(x), batch_size):
        batch = torch.from_numpy(np.asarray(x[start : start + batch_size], np.float32))
        with torch.inference_mode():
            batch = batch.to(device)
            if transform is not None:
                batch = transform(batch)
            layer, out = _forward(network, batch, tap)
            logits = select_output(out, output)
            layer = logits if tap.module is None else layer
            layers.append(reduce(layer, spatial).float().cpu().numpy())
            outputs.append(logits.reshape(len(logits), -1).float().cpu().numpy())
    return np.concatenate(layers), np.concatenate(outputs)


def _forward(network: nn.Module, batch: torch.Tensor, tap: Tap) -> tuple[Any, Any]:
    """The tapped layer's values and the network's output on one batch."""
    if tap.module is None:
        return None, network(batch)
    if isinstance(network, torch.jit.ScriptModule):
        return _sequential(network, batch, tap)
    seen: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple, out: Any) -> None:
        seen.append(inputs[0] if tap.reads_input else _first_tensor(out))

    handle = tap.module.register_forward_hook(hook)
    try:
        out = network(batch)
    finally:
        handle.remove()
    return seen[-1], out


def _sequential(network: torch.jit.ScriptModule, batch: torch.Tensor, tap: Tap) -> tuple:
    """Run a TorchScript Sequential's children one by one, keeping the tapped one's values."""
    layer, h = None, batch
    for child in network.children():
        if child is tap.module and tap.reads_input:
            layer = h
        h = child(h)
        if child is tap.module and not tap.reads_input:
            layer = h
    return layer, h


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    raise UserError(
        f"the chosen layer returns a {type(out).__name__}, not a tensor; choose a module that "
        "returns one"
    )
