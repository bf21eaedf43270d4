"""Planning and housekeeping for big zoos: what a run will train and store, and what is stale.

No torch here: the estimates come from the specs and the data set's input shape, so the workflow can
print them before any job starts.
"""

from __future__ import annotations

import math
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnmanifold.core import jobs
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import DataSettings
from nnmanifold.zoo import architecture, layout
from nnmanifold.zoo import specs as zoo_lib

#: Input shape per row and number of classes of the built-in data sets.
KNOWN_DATA = {
    "digits": ((1, 8, 8), 10),
    "mnist1d": ((40,), 10),
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}
#: Optimiser state kept per parameter in a checkpoint, besides the parameter itself.
_OPTIMIZER_SLOTS = {"sgd": 1, "adam": 2}
#: Fixed bytes per checkpoint and per activations file (headers, metadata).
_OVERHEAD = 20_000
#: Least and most models a training job holds when ``train.models_per_job`` is unset: the most
#: keeps a job's run short enough to lose little when it is interrupted, and its memory small.
AUTO_MODELS_PER_JOB = (8, 1024)
#: When ``train.models_per_job`` is unset a job holds the whole zoo this much over, up to the most
#: above: a job's start-up (about 5 s of imports on a CPU) is paid once, its models train as a few
#: vectorised groups and the groups side by side on its cores (``JOB_THREADS``), so one large job
#: beats several small ones; the headroom lets the zoo grow by a quarter in the same job.
AUTO_HEADROOM = 1.25
#: Most cores a training, extraction or features job takes when ``train.threads`` is unset: its
#: groups or networks run side by side in that many processes, so a job on a laptop uses every
#: core; on a workstation, set ``train.models_per_job`` for several jobs at once.
JOB_THREADS = 4


def input_shape(data: DataSettings) -> tuple[tuple[int, ...], int] | None:
    """(input shape per row, number of classes), or None if it cannot be known without loading."""
    if data.name in KNOWN_DATA:
        return KNOWN_DATA[data.name]
    try:  # npz: the header of x_train and the (small) labels
        shape = layout.row_shape(layout.npz_shape(data.npz_path), data.layout, data.npz_path)
        with np.load(data.npz_path) as f:
            n_classes = int(f["y_train"].max()) + 1
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, TypeError):
        return None
    return shape, n_classes


def model_bytes(
    spec: dict[str, Any], shape: tuple[int, ...], n_classes: int, n_probe: int
) -> tuple[int, int]:
    """Estimated (checkpoint, activations) bytes of one model: parameters with their optimiser
    state, and float32 hidden layers of the probe set (uncompressed: an upper bound)."""
    widths, params = _layers(spec, shape, n_classes)
    slots = 1 + _OPTIMIZER_SLOTS[spec["optimizer"]]
    return params * 4 * slots + _OVERHEAD, n_probe * sum(widths) * 4 + _OVERHEAD


def plan_line(specs: Sequence[dict[str, Any]], layout: Layout, data: DataSettings) -> str:
    """One line before a run: models in the zoo, how many still train, estimated disk."""
    todo = [s for s in specs if not layout.metrics(s["model_id"]).exists()]
    line = f"zoo of {len(specs)} models, {len(todo)} to train"
    known = input_shape(data)
    if known is None:
        return line + " (disk estimate after the probe job has read the data)"
    sizes = [model_bytes(s, *known, data.n_probe) for s in specs]
    ckpt, acts = sum(c for c, _ in sizes), sum(a for _, a in sizes)
    return (
        f"{line}; estimated disk for the whole zoo: checkpoints {_size(ckpt)}, activations "
        f"{_size(acts)} under {layout.root}/models/"
    )


def models_per_job(cap: int | None, n_models: int) -> tuple[int, str]:
    """Most models a training job holds, and why (for the plan line): the user's cap, or when
    unset the zoo's size times :data:`AUTO_HEADROOM`, rounded up to a power of the square root
    of two (within :data:`AUTO_MODELS_PER_JOB`), so that a job's start-up is paid for many models
    and the size changes only when the zoo grows by 41 % (adding a model reruns only its job). It
    depends on the zoo alone, never on ``--cores``: a run-time choice must not rename jobs, and a
    cluster job re-reads the workflow with cores of its own."""
    if cap is not None:
        return cap, f"train.models_per_job = {cap}"
    low, high = AUTO_MODELS_PER_JOB
    rounded = round(2 ** (math.ceil(2 * math.log2(AUTO_HEADROOM * max(1, n_models))) / 2))
    size = min(max(rounded, low), high)
    bound = f", held to {size} (jobs of {low}-{high} models)" if size != rounded else ""
    return size, (
        f"train.models_per_job unset: {n_models} models x {AUTO_HEADROOM} rounded up to a power "
        f"of sqrt(2): {rounded}{bound}, so that each job pays its start-up for many models"
    )


def job_threads(
    setting: int | None, cores: int, specs: Sequence[dict[str, Any]] | None = None
) -> int:
    """Cores of a training, extraction or features job: ``train.threads`` when set, else
    those Snakemake has, at most :data:`JOB_THREADS`; for a training job (its ``specs``) at most
    one per shape its groups can have (``zoo.specs.pad_key``), the most that train side by side."""
    if setting is not None:
        return setting
    most = max(1, min(cores, JOB_THREADS))
    return most if specs is None else max(1, min(most, len({zoo_lib.pad_key(s) for s in specs})))


def zoo_resources(
    n_models: int, matrices: float, base_mb: float, minutes: float, pair_us: float
) -> dict[str, int]:
    """Memory (MB) and runtime (minutes) of a zoo-level job, grown with the zoo: a base plus
    ``matrices`` N x N float64 matrices, and a base plus ``pair_us`` microseconds per pair of
    networks. First guesses for a cluster (docs/cluster.md); a profile may override them."""
    return {
        "mem_mb": int(base_mb + matrices * 8 * n_models**2 / 2**20),
        "runtime": int(minutes + n_models**2 * pair_us / 60e6),
    }


def kept_models(layout: Layout, config: dict[str, Any]) -> set[str]:
    """Every model a results folder holds on purpose: the config's zoo, the recorded rounds of
    every search under ``results/search/`` (whatever search the config names), and the networks
    from elsewhere the config maps or places. The one list ``clean`` keeps."""
    from nnmanifold.extract import sources

    kept = {s["model_id"] for s in zoo_lib.expand(config)}
    kept |= sources.network_ids([*config.get("networks", []), *config.get("place", [])])
    for name in jobs.search_names(layout):
        kept.update(s["model_id"] for specs in jobs.recorded_rounds(layout, name) for s in specs)
    return kept


def stale_models(layout: Layout, config: dict[str, Any]) -> list[Path]:
    """Model folders under the results folder that it no longer holds on purpose
    (``kept_models``)."""
    folder = layout.root / "models"
    if not folder.is_dir():
        return []
    keep = kept_models(layout, config)
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in keep)


def remove(paths: Iterable[Path]) -> None:
    """Delete model folders (checkpoints, activations, features)."""
    for path in paths:
        shutil.rmtree(path)


def _layers(spec: dict[str, Any], shape: tuple[int, ...], n_classes: int) -> tuple[list[int], int]:
    """Each hidden layer's flattened width and the parameter count (``zoo.architecture``)."""
    widths = architecture.recorded_widths(spec, shape, n_classes)
    return widths, architecture.n_parameters(spec, shape, n_classes)


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000:
            return f"{n_bytes:.0f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} TB"
