"""Planning and housekeeping for big zoos: what a run will train and store, and what is stale.

No torch here: the estimates come from the specs and the data set's input shape, so the workflow can
print them before any job starts.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import DataSettings
from nnmanifold.zoo import architecture

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


def input_shape(data: DataSettings) -> tuple[tuple[int, ...], int] | None:
    """(input shape per row, number of classes), or None if it cannot be known without loading."""
    if data.name in KNOWN_DATA:
        return KNOWN_DATA[data.name]
    try:  # npz: the header of x_train and the (small) labels
        with zipfile.ZipFile(data.npz_path) as zf:
            shape = _npy_shape(zf, "x_train.npy")[1:]
        with np.load(data.npz_path) as f:
            n_classes = int(f["y_train"].max()) + 1
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, TypeError):
        return None
    return ((1, *shape) if len(shape) == 2 else shape), n_classes


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


def stale_models(layout: Layout, model_ids: Iterable[str]) -> list[Path]:
    """Model folders under the results folder whose model is no longer in the zoo."""
    folder = layout.root / "models"
    if not folder.is_dir():
        return []
    keep = set(model_ids)
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in keep)


def remove(paths: Iterable[Path]) -> None:
    """Delete model folders (checkpoints, activations, features)."""
    for path in paths:
        shutil.rmtree(path)


def _layers(spec: dict[str, Any], shape: tuple[int, ...], n_classes: int) -> tuple[list[int], int]:
    """Each hidden layer's flattened width and the parameter count (``zoo.architecture``)."""
    layers = architecture.layers(spec, shape, n_classes)
    return [layer.width for layer in layers[:-1]], sum(layer.n_parameters for layer in layers)


def _npy_shape(zf: zipfile.ZipFile, name: str) -> tuple[int, ...]:
    with zf.open(name) as fh:
        major, _ = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        return read(fh)[0]


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000:
            return f"{n_bytes:.0f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} TB"
