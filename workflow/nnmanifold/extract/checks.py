"""Bad input of the networks named before any job: every activations file (rows, probe hash)
and each group's first network (import, checkpoint, layer, input shape, tuple output)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnmanifold.core import plan, storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import DataSettings
from nnmanifold.extract import sources

#: Rows of zeros the check passes through each group's first network.
_CHECK_ROWS = 2


def resolve_and_check(config: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The specs of the ``networks`` and ``place`` sections of a validated config, checked
    (against the probe set's hash once the probe job has written it). What is learnt of each
    file is remembered under the results folder (``Layout.file_facts``), so that a parse reads
    only files that changed."""
    layout = Layout(config["results"])
    facts = storage.FileFacts(layout.file_facts)
    try:  # what was learnt is kept even when a check fails
        resolved = {s: sources.resolve(config[s], s, facts) for s in ("networks", "place")}
        if not any(resolved.values()):
            return resolved
        data = DataSettings.of(config["data"])
        probe = storage.read_probe(layout.probe) if layout.probe.exists() else None
        known = plan.input_shape(data)
        for section, specs in resolved.items():
            check(
                specs,
                section,
                known[0] if known else None,
                len(probe["x"]) if probe else data.n_probe,
                probe["hash"] if probe else None,
                facts,
            )
        return resolved
    finally:
        facts.save()


def check(
    specs: Sequence[dict[str, Any]],
    section: str,
    input_shape: tuple[int, ...] | None,
    n_probe: int,
    probe_hash: str | None,
    facts: storage.FileFacts | None = None,
) -> None:
    """Name bad input before any job: every activations file (rows, probe hash; read again
    only when changed, with ``facts``), and each group's first network (import, checkpoint,
    layer, input shape, tuple output)."""
    facts = storage.FileFacts() if facts is None else facts
    first: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if spec["kind"] == "activations":
            path = spec["path"]
            shape, found = facts.get(path, "array", lambda p=path: sources.array_facts(p))
            sources.check_array(path, shape, found, n_probe, probe_hash)
        else:
            first.setdefault(spec["group"], spec)
    for spec in first.values():
        try:
            _check_network(spec, input_shape)
        except UserError as err:
            raise UserError(
                f"config key '{section}', group {spec['group']!r} ({spec['path']}): {err}"
            ) from None


def _check_network(spec: dict[str, Any], input_shape: tuple[int, ...] | None) -> None:
    from nnmanifold.extract import layers, load, run

    network = load.load_network(spec)
    tap = layers.find_layer(network, spec["layer"])
    if input_shape is None:
        return
    x = np.zeros((_CHECK_ROWS, *input_shape), np.float32)
    try:
        layers.record(network, x, tap, **run.options_of(spec, "cpu"))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the forward raises on a wrong shape
        raise UserError(
            f"the network does not take the data set's inputs, of shape (N, "
            f"{', '.join(map(str, input_shape))}) ({type(err).__name__}: {err}); give the group an "
            "input_transform that maps them to what it takes"
        ) from err
