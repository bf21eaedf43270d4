"""Build a network from its spec: a factory with a checkpoint's state dict, or TorchScript.

Checkpoints load with ``torch.load(weights_only=True)``: a file holding pickled objects needs the
group's explicit ``trust_pickle: true``. Every refusal names the group and the fix.
"""

from __future__ import annotations

import collections
import importlib
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from nnmanifold.core.errors import UserError

#: How many missing or unexpected state-dict keys a message lists.
_SHOWN = 5


def import_callable(reference: str, what: str) -> Callable[..., Any]:
    """``"package.module:function"`` imported from the working directory or PYTHONPATH."""
    module_name, name = reference.split(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any failure while importing user code
        raise UserError(
            f"{what}: cannot import {module_name!r} ({type(err).__name__}: {err}); the module must "
            f"be importable from the working directory ({os.getcwd()}) or PYTHONPATH"
        ) from err
    if not callable(function := getattr(module, name, None)):
        raise UserError(f"{what}: module {module_name!r} has no function {name!r}")
    return function


def load_network(spec: dict[str, Any]) -> nn.Module:
    """The network a spec names, on the CPU, in eval mode."""
    if spec["kind"] == "torchscript":
        try:
            module = torch.jit.load(spec["path"], map_location="cpu")
        except Exception as err:  # noqa: BLE001 - torch raises several kinds here
            raise UserError(f"{spec['path']} is not a TorchScript archive ({err})") from err
        return module.eval()
    factory = import_callable(spec["factory"], "factory")
    try:
        module = factory(**spec["kwargs"])
    except Exception as err:  # noqa: BLE001 - user code
        raise UserError(
            f"factory {spec['factory']!r} failed with kwargs {spec['kwargs']} "
            f"({type(err).__name__}: {err}); fix the group's kwargs"
        ) from err
    if not isinstance(module, nn.Module):
        raise UserError(f"factory {spec['factory']!r} returned a {type(module).__name__}")
    module.load_state_dict(state_dict(spec, module.state_dict()))
    return module.eval()


def state_dict(spec: dict[str, Any], expected: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's state dict, checked against the keys the factory's network expects."""
    what = spec["path"]
    try:
        loaded = torch.load(spec["path"], map_location="cpu", weights_only=not spec["trust_pickle"])
    except pickle.UnpicklingError as err:
        raise UserError(
            f"{what}: torch.load(weights_only=True) refused it: it holds pickled objects, which "
            "can run code when loaded. If you trust the file, set trust_pickle: true for this group"
        ) from err
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file
        raise UserError(f"{what}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if key := spec["state_dict_key"]:
        if not isinstance(loaded, Mapping) or key not in loaded:
            found = list(loaded) if isinstance(loaded, Mapping) else type(loaded).__name__
            raise UserError(f"{what}: no state_dict_key {key!r} (the file holds {found})")
        loaded = loaded[key]
    if isinstance(loaded, nn.Module):
        loaded = loaded.state_dict()
    if not isinstance(loaded, Mapping):
        raise UserError(
            f"{what}: holds a {type(loaded).__name__}, not a state dict; set state_dict_key to the "
            "entry that holds one"
        )
    if prefix := spec["strip_prefix"]:
        loaded = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in loaded.items()}
    missing = [k for k in expected if k not in loaded]
    unexpected = [k for k in loaded if k not in expected]
    if missing or unexpected:
        raise UserError(f"{what}: {_key_mismatch(missing, unexpected, expected)}")
    return dict(loaded)


def _key_mismatch(missing: list[str], unexpected: list[str], expected: Mapping[str, Any]) -> str:
    """The keys that do not match, and the ``strip_prefix`` that would match them, if one does."""
    shortest = (
        min((k[: -len(e)] for e in expected if k.endswith("." + e)), key=len, default=None)
        for k in unexpected
    )
    prefixes = collections.Counter(p for p in shortest if p)
    message = (
        f"the checkpoint's keys do not match the factory's network: {len(missing)} missing "
        f"({', '.join(missing[:_SHOWN])}), {len(unexpected)} unexpected "
        f"({', '.join(unexpected[:_SHOWN])})"
    )
    if prefixes:
        prefix = prefixes.most_common(1)[0][0]
        return message + f"; set strip_prefix: {prefix!r} for this group"
    return message + (
        "; if every key carries a prefix (module. from DataParallel), set strip_prefix to it, "
        "else check the factory and its kwargs"
    )
