"""The extraction step: one job's networks from elsewhere recorded on the probe set, its
manifest written (the rows of a training manifest, so every later stage reads it unchanged)."""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from nnmanifold.core import storage, versions
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import TRAIN_FILES, Layout
from nnmanifold.core.settings import DataSettings
from nnmanifold.report.vocabulary import METADATA_PREFIX
from nnmanifold.steps.train import job_device, manifest_row

log = logging.getLogger("nnmanifold")


def extract(
    layout: Layout,
    batch: str,
    networks: list[dict[str, Any]],
    data: DataSettings,
    *,
    accelerator: str = "auto",
    jobs_per_gpu: int = 1,
    threads: int = 1,
) -> None:
    """Record each network's layer on the probe set and its accuracy (kept when current); a
    network that fails (unloadable, NaN or constant activations) is recorded failed, with the
    reason, and the job goes on."""
    device = job_device(accelerator, jobs_per_gpu, threads)
    from nnmanifold.zoo import data as data_lib

    probe = storage.read_probe(layout.probe)
    needs_data = any(n["kind"] != "activations" for n in networks)
    dataset = data_lib.load_dataset(data.loader_config()) if needs_data else None
    rows = []
    for spec in networks:
        metrics = _finished(layout, spec, probe["hash"])
        if metrics is None:
            metrics = _extract_one(layout, spec, probe, dataset, device)
        else:
            log.info("network %s: outputs current, kept", spec["model_id"])
        row = manifest_row(metrics, layout.model_dir(spec["model_id"]), TRAIN_FILES)
        metadata = spec.get("metadata") or {}
        rows.append({**row, **{f"{METADATA_PREFIX}{k}": v for k, v in metadata.items()}})
    storage.write_json(layout.network_manifest(batch), rows)


def export_probe(layout: Layout, out: str) -> None:
    """Write the probe inputs, labels and hash (.npz) for networks outside PyTorch: their
    activations on ``x``, row for row, saved with this ``probe_hash``, can be mapped."""
    import numpy as np

    probe = storage.read_probe(layout.probe)
    with storage.atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, x=probe["x"], labels=probe["labels"], probe_hash=np.array(probe["hash"]))
    log.info("probe set %s (%d points) written to %s", probe["hash"], len(probe["x"]), out)


def _extract_one(
    layout: Layout, spec: dict[str, Any], probe: dict[str, Any], dataset: Any, device: str
) -> dict[str, Any]:
    """Extract one network and write its activations and metrics (failures included)."""
    from nnmanifold.extract import run

    started = time.perf_counter()
    metrics: dict[str, Any] = {"model_id": spec["model_id"], "spec": spec, "reason": None}
    try:
        values, accuracy = run.extract_network(spec, probe, dataset, device)
        metrics.update(accuracy)
        reason = run.problem(next(iter(values.values())))
        metrics.update(status="ok" if reason is None else "failed", reason=reason)
    except Exception as err:  # noqa: BLE001 - one broken network must not stop the others
        log.error("network %s failed:\n%s", spec["model_id"], traceback.format_exc())
        reason = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        metrics.update(status="failed", reason=reason, test_accuracy=None, val_accuracy=None)
        values = {}
    if metrics["status"] != "ok":
        values = {}
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    metrics["versions"] = versions.library_versions()
    storage.write_activations(
        layout.activations(spec["model_id"]),
        values,
        model_id=spec["model_id"],
        probe_hash=probe["hash"],
        status=metrics["status"],
        own_layer=True,
    )
    storage.write_json(layout.metrics(spec["model_id"]), metrics)
    log.info(
        "network %s: %s%s, test accuracy %s",
        spec["model_id"],
        metrics["status"],
        f" ({metrics['reason']})" if metrics["reason"] else "",
        metrics["test_accuracy"],
    )
    return metrics


def _finished(layout: Layout, spec: dict[str, Any], probe_hash: str) -> dict[str, Any] | None:
    """The metrics of a network extracted ok from this very spec (file hash included) on this
    probe set; None otherwise (a failed network is tried again)."""
    try:
        metrics = storage.read_json(layout.metrics(spec["model_id"]))
        if metrics.get("status") != "ok" or metrics.get("spec") != spec:
            return None
        storage.read_activations(layout.activations(spec["model_id"]), probe_hash=probe_hash)
    except (OSError, UserError):
        return None
    return metrics
