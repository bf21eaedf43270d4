"""Train zoo models with Lightning, resume from checkpoints, record metrics and activations.

``train_model`` trains one model (the reference path); ``train_job`` trains a job's members in
groups of one shape apart from width, channels and (MLP, CNN) activation function
(``padding.groups``), each one vectorised computation (``group.GroupClassifier``). Both
record a model's result the same way (``record.write``).
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

from nnmanifold.core import forked, storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import Layout, ModelFiles
from nnmanifold.train import group, padding, record
from nnmanifold.train.datamodule import ArrayDataModule
from nnmanifold.train.members import MemberState, fresh_states
from nnmanifold.train.models import Classifier
from nnmanifold.train.stacked import StackedClassifier
from nnmanifold.train.stacked_resnet import is_running
from nnmanifold.zoo.data import Dataset

log = logging.getLogger(__name__)
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
    files = ModelFiles(Path(out_dir))
    if (finished := _finished(files, probe["hash"])) is not None:
        log.info("model %s: outputs complete for this probe set, kept", spec["model_id"])
        return finished
    started = time.perf_counter()
    try:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        pl.seed_everything(spec["seed"], workers=True, verbose=False)
        model = Classifier(spec, dataset.input_shape, dataset.n_classes)
        data = ArrayDataModule(dataset, spec["batch_size"], spec["seed"])
        resumed = _load_resume_point(files.last_checkpoint) is not None
        trainer = _trainer(spec, files, accelerator)
        last = files.last_checkpoint if resumed else None
        trainer.fit(model, datamodule=data, ckpt_path=last, weights_only=True)

        def scores() -> tuple[float, float, float]:
            result = trainer.test(model, datamodule=data, verbose=False)[0]
            val = _accuracy(model, dataset.x_val, dataset.y_val)
            return result["test_loss"], result["test_accuracy"], val

        result = record.trained(
            spec,
            _hidden(model, probe["x"]),
            model.diverged,
            scores,
            epochs_completed=trainer.current_epoch,
            resumed=resumed,
            n_parameters=sum(p.numel() for p in model.parameters()),
        )
    except Exception as err:  # noqa: BLE001 - one broken model must not stop the zoo
        log.error("model %s failed:\n%s", spec["model_id"], traceback.format_exc())
        result = record.ModelResult(spec, "failed", f"{type(err).__name__}: {err}")
    return record.write(files, result, probe["hash"], time.perf_counter() - started)


def _finished(files: ModelFiles, probe_hash: str) -> dict[str, Any] | None:
    """The metrics of a model whose outputs are complete and readable for this probe set.

    Lets a rerun job keep its unchanged members as they are; a failed model is tried again.
    """
    try:
        metrics = storage.read_json(files.metrics)
        if metrics.get("status") not in ("ok", "diverged"):
            return None
        storage.read_activations(files.activations, probe_hash=probe_hash)
    except (OSError, UserError):
        return None
    return metrics


def _trainer(spec: dict[str, Any], files: ModelFiles, accelerator: str) -> pl.Trainer:
    """A deterministic Trainer that checkpoints every epoch to ``files.last_checkpoint``."""
    last = files.last_checkpoint
    return pl.Trainer(
        max_epochs=spec["epochs"],
        accelerator=accelerator,
        devices=1,
        deterministic=True,
        logger=CSVLogger(files.root, name="", version=files.train_log.name),
        callbacks=[ModelCheckpoint(last.parent, filename=last.stem, enable_version_counter=False)],
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
    processes: int = 1,
) -> list[dict[str, Any]]:
    """Train a job's models: those not yet trained in the groups ``padding.groups`` cuts them
    into (each split to fit the device's memory), one vectorised computation each.

    On a CPU the groups train side by side in up to ``processes`` forked processes, which share
    this one's imports (``_train_groups``). Complete models are kept; a model with a one-model
    checkpoint resumes on the one-model path. Every file is on disk when this returns (groups flush
    theirs with one ``storage.sync_all``), so the job manifest its caller writes next lists only
    durable files.
    """
    files = {s["model_id"]: Layout(results).model_files(s["model_id"]) for s in specs}
    done: dict[str, dict[str, Any]] = {}
    grouped: list[dict[str, Any]] = []  # new, or resuming from a group checkpoint
    resuming: list[dict[str, Any]] = []  # from a one-model checkpoint
    for spec in specs:
        own = files[spec["model_id"]]
        if (finished := _finished(own, probe["hash"])) is not None:
            log.info("model %s: outputs complete for this probe set, kept", spec["model_id"])
            done[spec["model_id"]] = finished
        elif own.last_checkpoint.is_file():
            resuming.append(spec)
        else:
            grouped.append(spec)
    device = "cuda" if _on_gpu(accelerator) else "cpu"
    budget = _group_budget(accelerator)
    units = [
        members[i : i + size]
        for members in padding.groups(grouped, dataset.input_shape, dataset.n_classes, device)
        for size in [group.group_size(members, dataset, budget)]
        for i in range(0, len(members), size)
    ]
    cpu_processes = processes if device == "cpu" else 1  # CUDA does not survive a fork
    done.update(_train_groups(units, dataset, probe, files, accelerator, cpu_processes))
    for spec in resuming:  # after the fork: this process runs no torch computation before it
        done[spec["model_id"]] = train_model(
            spec, dataset, probe, files[spec["model_id"]].root, accelerator
        )
    return [done[s["model_id"]] for s in specs]


def _train_groups(
    units: list[list[dict[str, Any]]],
    dataset: Dataset,
    probe: dict[str, Any],
    files: dict[str, ModelFiles],
    accelerator: str,
    processes: int,
) -> dict[str, dict[str, Any]]:
    """Train each group of ``units`` (``train_group``): side by side in up to ``processes``
    forked processes (``core.forked``), the costliest first (``padding.work``), or here.

    A fork shares this process's imports (about 5 s of torch and Lightning, paid once per job),
    its data and the probe set; each group's members write their own files and their records
    come back.
    """
    if workers := forked.side_by_side(processes, len(units)):
        log.info("%d groups train side by side in %d processes", len(units), workers)
    shape, n_train = dataset.input_shape, len(dataset.y_train)
    units = sorted(units, key=lambda u: -padding.work(u, shape, dataset.n_classes, n_train))
    out: dict[str, dict[str, Any]] = {}
    for trained in forked.forked_map(
        lambda unit: train_group(unit, dataset, probe, files, accelerator), units, processes
    ):
        out.update(trained)
    return out


def train_group(
    specs: list[dict[str, Any]],
    dataset: Dataset,
    probe: dict[str, Any],
    files: dict[str, ModelFiles],
    accelerator: str = "auto",
) -> dict[str, dict[str, Any]]:
    """Train a group (``padding.groups``) as one computation; each resumes from its own checkpoint.

    A model that cannot be built, or a group that fails as a whole, falls back to ``train_model``
    (which records the failure per model).
    """
    started = time.perf_counter()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    own = [files[s["model_id"]] for s in specs]
    loaded = [_load_resume_point(f.group_checkpoint) for f in own]
    fresh = [spec for spec, state in zip(specs, loaded, strict=True) if state is None]
    try:
        made = iter(fresh_states(fresh, dataset.input_shape, dataset.n_classes) if fresh else [])
    except Exception:  # noqa: BLE001 - e.g. a CNN on flat data: the one-model path records it
        return {
            s["model_id"]: train_model(s, dataset, probe, f.root, accelerator)
            for s, f in zip(specs, own, strict=True)
        }
    states = [MemberState.from_checkpoint(c) if c is not None else next(made) for c in loaded]
    writer = MemberWriter(dataset, probe, own, [c is not None for c in loaded])
    writer.started = started
    try:
        module = group.GroupClassifier(specs, dataset, states)
        remaining = max(s["epochs"] - d for s, d in zip(specs, module.done, strict=True))
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
            len(specs),
            traceback.format_exc(),
        )
        for k, spec in enumerate(specs):
            if k not in writer.metrics:
                writer.metrics[k] = train_model(spec, dataset, probe, own[k].root, accelerator)
    return {specs[k]["model_id"]: metrics for k, metrics in writer.metrics.items()}


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
        self, dataset: Dataset, probe: dict[str, Any], files: list[ModelFiles], resumed: list[bool]
    ) -> None:
        self.dataset, self.probe, self.files, self.resumed = dataset, probe, files, resumed
        self.metrics: dict[int, dict[str, Any]] = {}
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: group.GroupClassifier) -> None:
        epoch = module.last_epoch
        finished = [k for k in module.finished() if k not in self.metrics]
        continuing = [k for k in epoch.members if k not in finished]
        for k, state in zip(continuing, module.member_states(continuing), strict=True):
            with storage.atomic_path(self.files[k].group_checkpoint, durable=False) as tmp:
                torch.save(state.checkpoint(module.specs[k]["seed"]), tmp)
        self.write(module, finished)
        diverged = module.diverged.tolist()
        for k in epoch.members:
            own = module.done[k] - (not diverged[k])
            self._log_epoch(k, own, epoch.train_loss[k], diverged[k], module.size)
        storage.sync_all()
        self._log_progress(module, [k for k in epoch.members if not diverged[k]])

    def _log_progress(self, module: group.GroupClassifier, trained: list[int]) -> None:
        """One line per group epoch in the job's log: how far the group is, its median loss."""
        losses = [module.last_epoch.train_loss[k] for k in trained]
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
        model = module.model
        x_test = torch.from_numpy(self.dataset.x_test)
        y_test = torch.from_numpy(self.dataset.y_test)
        loss, accuracy = model.evaluate(members, x_test, y_test)
        val_accuracy = _group_accuracy(model, members, self.dataset)
        hidden = model.hidden(members, torch.from_numpy(np.asarray(self.probe["x"], np.float32)))
        diverged = module.diverged.tolist()
        share = (time.perf_counter() - self.started) / module.size
        # one after another: h5py serialises its calls, and writer threads measured slower
        for j, k in enumerate(members):
            result = record.trained(
                module.specs[k],
                {name: v.numpy() for name, v in hidden[j].items()},
                diverged[k],
                lambda j=j: (loss[j], accuracy[j], val_accuracy[j]),
                epochs_completed=module.done[k],
                resumed=self.resumed[k],
                n_parameters=sum(
                    math.prod(s) for n, s in model.shapes[k].items() if not is_running(n)
                ),
                group_size=module.size,
            )
            self.metrics[k] = record.write(
                self.files[k], result, self.probe["hash"], share, durable=False
            )

    def _log_epoch(self, k: int, epoch: int, loss: float, diverged: bool, size: int) -> None:
        path = self.files[k].epoch_log
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


def _on_gpu(accelerator: str) -> bool:
    """Whether groups train on a CUDA device."""
    return accelerator != "cpu" and torch.cuda.is_available()


def _group_budget(accelerator: str) -> int:
    """Bytes a group may take: a quarter of free GPU memory, or half the CPU's last-level cache."""
    if _on_gpu(accelerator):
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


def _group_accuracy(model: StackedClassifier, members: list[int], ds: Dataset) -> list[float]:
    """Validation accuracy of some group members; NaN for each when the data set has none."""
    if ds.x_val is None or ds.y_val is None or len(ds.y_val) == 0:
        return [math.nan] * len(members)
    return model.evaluate(members, torch.from_numpy(ds.x_val), torch.from_numpy(ds.y_val))[1]
