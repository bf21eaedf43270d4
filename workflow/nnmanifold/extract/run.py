"""Extract one network: its chosen layer on the probe set and its accuracy on the test split."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnmanifold.extract import layers, load, sources
from nnmanifold.zoo.data import Dataset


def extract_network(
    spec: dict[str, Any], probe: dict[str, Any], dataset: Dataset | None, device: str = "cpu"
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """{layer name: (n_probe, d) rows} and the test and validation accuracy: measured when the
    network outputs n_classes logits, else the metadata's ``test_accuracy``, else NaN."""
    known = (spec.get("metadata") or {}).get(sources.ACCURACY_KEY)
    accuracy = {
        "test_accuracy": math.nan if known is None else float(known),
        "val_accuracy": math.nan,
    }
    if spec["kind"] == "activations":
        values, found = sources.read_array(spec["path"])
        sources.check_array(spec["path"], values.shape, found, len(probe["x"]), probe["hash"])
        return {"activations": values.astype(np.float32)}, accuracy
    network = load.load_network(spec)
    tap = layers.find_layer(network, spec["layer"])
    options = options_of(spec, device)
    values, logits = layers.record(network, probe["x"], tap, **options)
    if dataset is not None and logits.shape[1] == dataset.n_classes:
        output = layers.Tap("output", None)
        for split, x, y in (
            ("test", dataset.x_test, dataset.y_test),
            ("val", dataset.x_val, dataset.y_val),
        ):
            if x is not None:
                scores = layers.record(network, x, output, **options)[1]
                accuracy[f"{split}_accuracy"] = float((scores.argmax(1) == y).mean())
    return {tap.name: values}, accuracy


def options_of(spec: dict[str, Any], device: str) -> dict[str, Any]:
    transform = spec.get("input_transform")
    return {
        "spatial": spec["spatial"],
        "output": spec["output"],
        "batch_size": spec["batch_size"],
        "device": device,
        "transform": load.import_callable(transform, "input_transform") if transform else None,
    }


def problem(values: np.ndarray) -> str | None:
    """Why a network's activations cannot be mapped (NaN or constant), or None."""
    if not np.isfinite(values).all():
        return "NaN or infinite activations"
    if values.size == 0 or np.ptp(values, axis=0).max() == 0:
        return "constant activations (every probe point gives the same vector)"
    return None
