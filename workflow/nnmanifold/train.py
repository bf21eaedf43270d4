"""Train zoo models with Lightning, resume from checkpoints, record metrics and activations."""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from nnmanifold import UserError, storage
from nnmanifold.data import ArrayDataModule, Dataset
from nnmanifold.models import Classifier

log = logging.getLogger(__name__)
#: Per-model files a training job writes (checkpoints aside), listed in its manifest.
OUTPUTS = ("activations.h5", "metrics.json")
# Lightning's start-up banners (devices, tips) repeat for every model and bury the useful lines.
for _name in ("pytorch_lightning", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def train_model(
    spec: dict[str, Any],
    dataset: Dataset,
    probe: dict[str, Any],
    out_dir: str | Path,
    accelerator: str = "auto",
) -> dict[str, Any]:
    """Train one model (resuming from its last checkpoint), then write activations and metrics.

    A non-finite loss marks the model ``diverged``; any other exception marks it ``failed``. Either
    way both output files are written, so the rest of the zoo carries on. A model whose outputs are
    already complete for this probe set is left as it is.
    """
    out_dir = Path(out_dir)
    if (finished := _finished(out_dir, probe["hash"])) is not None:
        log.info("model %s: outputs complete for this probe set, kept", spec["model_id"])
        return finished
    started = time.perf_counter()
    metrics: dict[str, Any] = {"model_id": spec["model_id"], "spec": spec, "reason": None}
    layers: dict[str, np.ndarray] = {}
    try:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        pl.seed_everything(spec["seed"], workers=True, verbose=False)
        model = Classifier(spec, dataset.input_shape, dataset.n_classes)
        data = ArrayDataModule(dataset, spec["batch_size"], spec["seed"])
        last = out_dir / "checkpoints" / "last.ckpt"
        resumed = last.is_file()
        trainer = _trainer(spec, out_dir, accelerator)
        trainer.fit(model, datamodule=data, ckpt_path=last if resumed else None, weights_only=True)
        layers = _hidden(model, probe["x"])
        if model.diverged or not all(np.isfinite(v).all() for v in layers.values()):
            metrics.update(status="diverged", reason="non-finite loss or activations")
            metrics.update(test_accuracy=math.nan, test_loss=math.nan)
        else:
            result = trainer.test(model, datamodule=data, verbose=False)[0]
            metrics.update(status="ok", test_accuracy=result["test_accuracy"])
            metrics["test_loss"] = result["test_loss"]
        metrics.update(epochs=spec["epochs"], epochs_completed=trainer.current_epoch)
        metrics.update(resumed=resumed, n_parameters=sum(p.numel() for p in model.parameters()))
    except Exception as err:  # noqa: BLE001 - one broken model must not stop the zoo
        log.error("model %s failed:\n%s", spec["model_id"], traceback.format_exc())
        metrics.update(status="failed", reason=f"{type(err).__name__}: {err}")
        metrics.update(test_accuracy=math.nan, test_loss=math.nan)
        layers = {}
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    metrics["versions"] = storage.library_versions()
    storage.write_activations(
        out_dir / "activations.h5",
        layers,
        model_id=spec["model_id"],
        probe_hash=probe["hash"],
        status=metrics["status"],
    )
    storage.write_json(out_dir / "metrics.json", metrics)
    log.info(
        "model %s: %s, test accuracy %.4f, %.1f s",
        spec["model_id"],
        metrics["status"],
        metrics["test_accuracy"],
        metrics["wall_seconds"],
    )
    return metrics


def _finished(out_dir: Path, probe_hash: str) -> dict[str, Any] | None:
    """The metrics of a model whose outputs are complete and readable for this probe set.

    Lets a rerun job keep its unchanged members as they are; a failed model is tried again.
    """
    try:
        metrics = storage.read_json(out_dir / "metrics.json")
        if metrics.get("status") not in ("ok", "diverged"):
            return None
        storage.read_activations(out_dir / "activations.h5", probe_hash=probe_hash)
    except (OSError, UserError):
        return None
    return metrics


def _trainer(spec: dict[str, Any], out_dir: Path, accelerator: str) -> pl.Trainer:
    """A deterministic Trainer that checkpoints every epoch to ``out_dir/checkpoints/last.ckpt``."""
    return pl.Trainer(
        max_epochs=spec["epochs"],
        accelerator=accelerator,
        devices=1,
        deterministic=True,
        logger=CSVLogger(out_dir, name="", version="train_log"),
        callbacks=[
            ModelCheckpoint(out_dir / "checkpoints", filename="last", enable_version_counter=False)
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )


def _hidden(model: Classifier, x: np.ndarray) -> dict[str, np.ndarray]:
    model.eval()
    with torch.no_grad():
        hidden = model.hidden(torch.from_numpy(np.asarray(x, np.float32)).to(model.device))
    return {name: v.cpu().numpy() for name, v in hidden.items()}
