"""A trained model's result, one record type for the one-model and the group path, and the one
function that writes it (``activations.h5``, then ``metrics.json``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnmanifold.core import storage, versions
from nnmanifold.core.paths import ModelFiles

log = logging.getLogger(__name__)


@dataclass
class ModelResult:
    """What ``metrics.json`` records of one model, and its probe activations (``layers``).

    ``status`` is ``ok``, ``diverged`` (non-finite loss or activations: scores NaN) or ``failed``
    (an exception: ``reason`` says which; the fields after ``val_accuracy`` stay None).
    Fields that are None are not written.
    """

    spec: dict[str, Any]
    status: str
    reason: str | None = None
    test_accuracy: float = math.nan
    test_loss: float = math.nan
    val_accuracy: float = math.nan
    epochs_completed: int | None = None
    resumed: bool | None = None
    n_parameters: int | None = None
    group_size: int | None = None
    layers: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def metrics(self, wall_seconds: float) -> dict[str, Any]:
        """The JSON record (``metrics.json``)."""
        out: dict[str, Any] = {
            "model_id": self.spec["model_id"],
            "spec": self.spec,
            "status": self.status,
            "reason": self.reason,
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "val_accuracy": self.val_accuracy,
            "wall_seconds": round(wall_seconds, 3),
            "versions": versions.library_versions(),
        }
        if self.epochs_completed is not None:
            out.update(epochs=self.spec["epochs"], epochs_completed=self.epochs_completed)
        for key in ("resumed", "n_parameters", "group_size"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        return out


def trained(
    spec: dict[str, Any],
    layers: dict[str, np.ndarray],
    diverged: bool,
    scores: Callable[[], tuple[float, float, float]],
    **fields: Any,
) -> ModelResult:
    """The result of a model that trained: ``diverged`` when its loss (``diverged``) or its
    activations went non-finite, else ``ok`` with ``scores()`` = (test loss, test accuracy,
    validation accuracy). ``fields``: epochs_completed, resumed, n_parameters, group_size."""
    if diverged or not all(np.isfinite(v).all() for v in layers.values()):
        reason = "non-finite loss or activations"
        return ModelResult(spec, "diverged", reason, layers=layers, **fields)
    loss, accuracy, val_accuracy = scores()
    return ModelResult(spec, "ok", None, accuracy, loss, val_accuracy, layers=layers, **fields)


def write(
    files: ModelFiles,
    result: ModelResult,
    probe_hash: str,
    wall_seconds: float,
    durable: bool = True,
) -> dict[str, Any]:
    """Write a model's activations and metrics (atomically; ``durable=False`` leaves the flush
    to one ``storage.sync_all``), log one line, and return the metrics."""
    metrics = result.metrics(wall_seconds)
    storage.write_activations(
        files.activations,
        result.layers,
        model_id=metrics["model_id"],
        probe_hash=probe_hash,
        status=result.status,
        durable=durable,
    )
    storage.write_json(files.metrics, metrics, durable=durable)
    where = f" (group of {result.group_size})" if result.group_size else ""
    log.info(
        "model %s: %s, test accuracy %.4f, %.1f s%s",
        metrics["model_id"],
        result.status,
        result.test_accuracy,
        wall_seconds,
        where,
    )
    return metrics
