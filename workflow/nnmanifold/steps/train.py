"""The training step: one job's models trained, its manifest written."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnmanifold.core import storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import TRAIN_FILES, Layout
from nnmanifold.core.settings import (
    DataSettings,
)

log = logging.getLogger("nnmanifold")


#: What a job manifest records of each model, besides the files it wrote.
MANIFEST_KEYS = ("model_id", "status", "reason", "test_accuracy", "val_accuracy")


def train(
    layout: Layout,
    batch: str,
    specs: list[dict[str, Any]],
    data: DataSettings,
    *,
    accelerator: str = "auto",
    jobs_per_gpu: int = 1,
    threads: int = 1,
) -> None:
    """Train one job's models (same-shaped ones as one vectorised group; on a CPU, groups side by
    side in ``threads`` processes); write the job's manifest at the end."""
    job_device(accelerator, jobs_per_gpu, threads)
    from nnmanifold.train import job as train_lib
    from nnmanifold.zoo import data as data_lib

    if len({s["data"]["name"] for s in specs}) != 1:
        raise UserError("one training job trains on one data set")
    ds = data_lib.load_dataset(data.loader_config())
    probe = storage.read_probe(layout.probe)
    trained = train_lib.train_job(
        specs, ds, probe, layout.root, accelerator=accelerator, processes=threads
    )
    rows = [manifest_row(m, layout.model_dir(m["model_id"]), TRAIN_FILES) for m in trained]
    storage.write_json(layout.train_manifest(batch), rows)


def job_device(accelerator: str, jobs_per_gpu: int, threads: int) -> str:
    """Set up a job that runs networks (training or extraction): claim a GPU slot unless pinned
    to the CPU, start torch with ``threads`` threads that sleep when idle; the device to use."""
    from nnmanifold.core import gpu

    if accelerator != "cpu" and (index := gpu.claim_device(jobs_per_gpu)) is not None:
        log.info("using GPU %s", index)
    # idle OpenMP threads that spin instead of sleeping make tiny-model training on shared
    # cores 10x slower; set before torch starts its thread pool
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(threads)
    return "cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu"


def manifest_row(metrics: dict[str, Any], out: Path, names: Sequence[str]) -> dict[str, Any]:
    """A job manifest's row of one network: its outcome and the files it wrote (checksums)."""
    files = [storage.file_record(out / n) for n in names]
    return {**{k: metrics[k] for k in MANIFEST_KEYS}, "files": files}
