"""Train zoo models with Lightning, resume from checkpoints, record metrics and activations.

``train_model`` trains one model (the reference path); ``train_job`` trains a job's members in
same-shaped groups as one vectorised computation each (``group.GroupClassifier``).
"""

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
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from nnmanifold.core import storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import Layout
from nnmanifold.train import group
from nnmanifold.train.models import Classifier
from nnmanifold.zoo import specs as zoo
from nnmanifold.zoo.data import ArrayDataModule, Dataset

log = logging.getLogger(__name__)
#: A group member's resume state, beside the one-model path's ``last.ckpt``.
GROUP_CHECKPOINT = "group_last.pt"
#: A group member's training log: one line per finished epoch.
EPOCH_LOG = Path("train_log") / "epochs.csv"
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
        resumed = _load_resume_point(last) is not None
        trainer = _trainer(spec, out_dir, accelerator)
        trainer.fit(model, datamodule=data, ckpt_path=last if resumed else None, weights_only=True)
        layers = _hidden(model, probe["x"])
        if model.diverged or not all(np.isfinite(v).all() for v in layers.values()):
            metrics.update(status="diverged", reason="non-finite loss or activations")
            metrics.update(test_accuracy=math.nan, test_loss=math.nan, val_accuracy=math.nan)
        else:
            result = trainer.test(model, datamodule=data, verbose=False)[0]
            metrics.update(status="ok", test_accuracy=result["test_accuracy"])
            metrics["test_loss"] = result["test_loss"]
            metrics["val_accuracy"] = _accuracy(model, dataset.x_val, dataset.y_val)
        metrics.update(epochs=spec["epochs"], epochs_completed=trainer.current_epoch)
        metrics.update(resumed=resumed, n_parameters=sum(p.numel() for p in model.parameters()))
    except Exception as err:  # noqa: BLE001 - one broken model must not stop the zoo
        log.error("model %s failed:\n%s", spec["model_id"], traceback.format_exc())
        metrics.update(status="failed", reason=f"{type(err).__name__}: {err}")
        metrics.update(test_accuracy=math.nan, test_loss=math.nan, val_accuracy=math.nan)
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


def train_job(
    specs: list[dict[str, Any]],
    dataset: Dataset,
    probe: dict[str, Any],
    results: str | Path,
    accelerator: str = "auto",
) -> list[dict[str, Any]]:
    """Train a job's models, in its order: same-shaped ones together in device-sized groups.

    Complete models are kept; a model with a one-model checkpoint resumes on the one-model path.
    Every file is on disk when this returns (groups flush theirs with one ``storage.sync_all``),
    so the job manifest its caller writes next lists only durable files.
    """
    dirs = {s["model_id"]: Layout(results).model_dir(s["model_id"]) for s in specs}
    done: dict[str, dict[str, Any]] = {}
    shapes: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        out = dirs[spec["model_id"]]
        if (finished := _finished(out, probe["hash"])) is not None:
            log.info("model %s: outputs complete for this probe set, kept", spec["model_id"])
            done[spec["model_id"]] = finished
        elif (out / "checkpoints" / "last.ckpt").is_file() or _one_model_only(spec):
            done[spec["model_id"]] = train_model(spec, dataset, probe, out, accelerator)
        else:
            shapes.setdefault(zoo.shape_key(spec), []).append(spec)
    budget = _group_budget(accelerator)
    for members in shapes.values():
        size = group.group_size(members[0], dataset, budget)
        for i in range(0, len(members), size):
            done.update(train_group(members[i : i + size], dataset, probe, dirs, accelerator))
    return [done[s["model_id"]] for s in specs]


def _one_model_only(spec: dict[str, Any]) -> bool:
    """Whether a model trains on the one-model path only: ResNets (BatchNorm) and augmented
    models, until the group trainer has per-member BatchNorm and augmentation."""
    return spec["arch"] == "resnet" or "augment" in spec


def train_group(
    specs: list[dict[str, Any]],
    dataset: Dataset,
    probe: dict[str, Any],
    dirs: dict[str, Path],
    accelerator: str = "auto",
) -> dict[str, dict[str, Any]]:
    """Train same-shaped models as one computation; each resumes from its own checkpoint.

    A model that cannot be built, or a group that fails as a whole, falls back to ``train_model``
    (which records the failure per model).
    """
    started = time.perf_counter()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    results: dict[str, dict[str, Any]] = {}
    loaded = [
        _load_resume_point(dirs[s["model_id"]] / "checkpoints" / GROUP_CHECKPOINT) for s in specs
    ]
    resumed = [state is not None for state in loaded]
    fresh = [spec for spec, state in zip(specs, loaded, strict=True) if state is None]
    try:
        made = iter(
            group.fresh_states(fresh, dataset.input_shape, dataset.n_classes) if fresh else []
        )
    except Exception:  # noqa: BLE001 - e.g. a CNN on flat data: the one-model path records it
        for spec in specs:
            out = dirs[spec["model_id"]]
            results[spec["model_id"]] = train_model(spec, dataset, probe, out, accelerator)
        return results
    members, states = specs, [state if state is not None else next(made) for state in loaded]
    writer = MemberWriter(dataset, probe, [dirs[s["model_id"]] for s in members], resumed)
    writer.started = started
    try:
        module = group.GroupClassifier(members, dataset, states)
        done = (st["epochs_completed"] for st in states)
        remaining = max(s["epochs"] - d for s, d in zip(members, done, strict=True))
        if remaining > 0:
            trainer = pl.Trainer(
                max_epochs=remaining,
                accelerator=accelerator,
                devices=1,
                deterministic=True,
                logger=False,
                callbacks=[writer],
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            trainer.fit(module)
        if unwritten := [k for k in range(module.size) if k not in writer.metrics]:
            writer.write(module, unwritten)
            storage.sync_all()
    except Exception:  # noqa: BLE001 - retry the unfinished members one at a time
        log.error(
            "group of %d failed, training its unfinished models one by one:\n%s",
            len(members),
            traceback.format_exc(),
        )
        for k, spec in enumerate(members):
            if k not in writer.metrics:
                out = dirs[spec["model_id"]]
                results[spec["model_id"]] = train_model(spec, dataset, probe, out, accelerator)
    for k, metrics in writer.metrics.items():
        results[members[k]["model_id"]] = metrics
    return results


class MemberWriter(Checkpoint):
    """Per-member I/O at each epoch's end: a checkpoint for members still training, or
    activations and metrics for members that just finished or diverged; then a log line.

    A ``Checkpoint`` callback, so Lightning runs it after the module's own epoch-end hook.
    Every file is written atomically (temporary file, then rename) but not flushed one by one:
    one ``storage.sync_all`` per epoch flushes them all before the next epoch starts. A killed
    process loses nothing renamed (the kernel holds it); a crashed machine may leave a renamed
    file torn, and its readers (``_load_resume_point``, ``_finished``) then redo that model.
    """

    def __init__(
        self, dataset: Dataset, probe: dict[str, Any], dirs: list[Path], resumed: list[bool]
    ) -> None:
        self.dataset, self.probe, self.dirs, self.resumed = dataset, probe, dirs, resumed
        self.metrics: dict[int, dict[str, Any]] = {}
        self.started = time.perf_counter()
        self.versions = storage.library_versions()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: group.GroupClassifier) -> None:
        stats = module._epoch_stats
        diverged = module.diverged.tolist()
        finished = [
            k
            for k in range(module.size)
            if k not in self.metrics and (diverged[k] or module.done[k] >= module.epochs[k])
        ]
        continuing = [k for k in stats["members"] if k not in finished]

        for k, checkpoint in zip(continuing, module.member_checkpoints(continuing), strict=True):
            path = self.dirs[k] / "checkpoints" / GROUP_CHECKPOINT
            with storage.atomic_path(path, durable=False) as tmp:
                torch.save(checkpoint, tmp)
        self.write(module, finished)
        for k in stats["members"]:
            epoch = module.done[k] - (not diverged[k])
            self._log_epoch(k, epoch, stats["train_loss"][k], diverged[k], module.size)
        storage.sync_all()
        self._log_progress(module, [k for k in stats["members"] if not diverged[k]])

    def _log_progress(self, module: group.GroupClassifier, trained: list[int]) -> None:
        """One line per group epoch in the job's log: how far the group is, its median loss."""
        losses = [module._epoch_stats["train_loss"][k] for k in trained]
        log.info(
            "group of %d: %d trained an epoch (median train loss %.4f); %d of %d finished, "
            "%d diverged, %.1f s",
            module.size,
            len(trained),
            float(np.median(losses)) if losses else math.nan,
            len(self.metrics),
            module.size,
            int(module.diverged.sum()),
            time.perf_counter() - self.started,
        )

    def write(self, module: group.GroupClassifier, members: list[int]) -> None:
        """Record test metrics and probe activations of finished members, as train_model does."""
        if not members:
            return
        x_test = torch.from_numpy(self.dataset.x_test)
        y_test = torch.from_numpy(self.dataset.y_test)
        x_probe = torch.from_numpy(np.asarray(self.probe["x"], np.float32))
        loss, accuracy = module.evaluate(members, x_test, y_test)
        val_accuracy = _group_accuracy(module, members, self.dataset)
        hidden = module.hidden(members, x_probe)
        diverged = module.diverged.tolist()
        share = (time.perf_counter() - self.started) / module.size

        # one after another: h5py serialises its calls, and writer threads measured slower
        for j, k in enumerate(members):
            spec, out = module.specs[k], self.dirs[k]
            layers = {name: v.numpy() for name, v in hidden[j].items()}
            metrics: dict[str, Any] = {"model_id": spec["model_id"], "spec": spec, "reason": None}
            if diverged[k] or not all(np.isfinite(v).all() for v in layers.values()):
                metrics.update(status="diverged", reason="non-finite loss or activations")
                metrics.update(test_accuracy=math.nan, test_loss=math.nan, val_accuracy=math.nan)
            else:
                metrics.update(status="ok", test_accuracy=accuracy[j], test_loss=loss[j])
                metrics["val_accuracy"] = val_accuracy[j]
            metrics.update(epochs=spec["epochs"], epochs_completed=module.done[k])
            metrics.update(resumed=self.resumed[k], n_parameters=module.n_parameters)
            metrics.update(wall_seconds=round(share, 3), group_size=module.size)
            metrics["versions"] = self.versions
            storage.write_activations(
                out / "activations.h5",
                layers,
                model_id=spec["model_id"],
                probe_hash=self.probe["hash"],
                status=metrics["status"],
                durable=False,
            )
            storage.write_json(out / "metrics.json", metrics, durable=False)
            self.metrics[k] = metrics
            log.info(
                "model %s: %s, test accuracy %.4f (group of %d)",
                spec["model_id"],
                metrics["status"],
                metrics["test_accuracy"],
                module.size,
            )

    def _log_epoch(self, k: int, epoch: int, loss: float, diverged: bool, size: int) -> None:
        path = self.dirs[k] / EPOCH_LOG
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with path.open("a") as fh:
            if new:
                fh.write("epoch,train_loss,diverged,pid,group_size\n")
            fh.write(f"{epoch},{loss!r},{int(diverged)},{os.getpid()},{size}\n")


def _load_resume_point(path: Path) -> dict[str, Any] | None:
    """A checkpoint's contents, or None when there is none. One that cannot be loaded (truncated,
    corrupt) is set aside (``<name>.failed``) with a warning, and the model starts afresh."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint means starting afresh
        aside = storage.set_aside(path)
        log.warning("%s cannot be loaded (%s); set aside as %s, training afresh", path, err, aside)
        return None


def _group_budget(accelerator: str) -> int:
    """Bytes a group may take: a quarter of free GPU memory, or half the CPU's last-level cache."""
    if accelerator != "cpu" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return free // 4
    for level in ("index3", "index2"):
        size = Path(f"/sys/devices/system/cpu/cpu0/cache/{level}/size")
        if size.is_file():
            text = size.read_text().strip()
            units = {"K": 2**10, "M": 2**20, "G": 2**30}
            return int(text.rstrip("KMG")) * units.get(text[-1], 1) // 2
    return 16 * 2**20


def _accuracy(model: Classifier, x: np.ndarray | None, y: np.ndarray | None) -> float:
    """Accuracy of one model on (x, y), e.g. the validation split; NaN when there is none."""
    if x is None or y is None or len(y) == 0:
        return math.nan
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x).to(model.device))
    return float((logits.argmax(1).cpu() == torch.from_numpy(y)).float().mean())


def _group_accuracy(module: group.GroupClassifier, members: list[int], ds: Dataset) -> list[float]:
    """Validation accuracy of some group members; NaN for each when the data set has none."""
    if ds.x_val is None or ds.y_val is None or len(ds.y_val) == 0:
        return [math.nan] * len(members)
    return module.evaluate(members, torch.from_numpy(ds.x_val), torch.from_numpy(ds.y_val))[1]
