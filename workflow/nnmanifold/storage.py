"""File formats in one place: atomic writes, JSON/CSV helpers and clear errors for broken files."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from nnmanifold import UserError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


class CorruptFileError(UserError):
    """A result file exists but is truncated, corrupt or from a different run."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A reader therefore sees either the old file, no file, or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; results are ordinary files
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def model_dir(results: str | os.PathLike, model_id: str) -> Path:
    """Where one model's checkpoints, metrics, activations and features live."""
    return Path(results) / "models" / model_id


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (NaN is written as null)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_nan_to_none(data), indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file if it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{path} is not valid JSON ({err}); delete it and rerun") from err


def missing_files(manifest: str | os.PathLike) -> list[str]:
    """Per-model files a job manifest lists that no longer exist (stat only: cheap at start-up)."""
    return [
        p for entry in read_json(manifest) for p in entry.get("files", []) if not os.path.exists(p)
    ]


def write_csv(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a table as CSV, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a result, recorded beside it."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "nnmanifold",
        "torch",
        "pytorch-lightning",
        "numpy",
        "scipy",
        "scikit-learn",
        "h5py",
        "phate",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def write_probe(path: str | os.PathLike, probe: dict[str, Any]) -> None:
    """Store the probe set once per zoo: indices into the test split, labels, inputs, hash, and
    the test split's chance accuracy (majority-class rate)."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key in ("indices", "labels", "x"):
            f.create_dataset(key, data=probe[key])
        f.attrs["hash"] = probe["hash"]
        f.attrs["dataset"] = probe["dataset"]
        f.attrs["chance_accuracy"] = probe["chance_accuracy"]


def read_probe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a probe set written by ``write_probe``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            probe = {key: f[key][()] for key in ("indices", "labels", "x")}
            probe.update(hash=str(f.attrs["hash"]), dataset=str(f.attrs["dataset"]))
            probe["chance_accuracy"] = float(f.attrs.get("chance_accuracy", "nan"))
    except (OSError, KeyError) as err:
        raise CorruptFileError(
            f"{path} is not a complete probe file ({err}); delete it and rerun"
        ) from err
    return probe


def write_activations(
    path: str | os.PathLike,
    layers: dict[str, Any],
    *,
    model_id: str,
    probe_hash: str,
    status: str,
) -> None:
    """Write one model's hidden representations: a float32 dataset per layer under ``layers/``."""
    import h5py
    import numpy as np

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("layers")
        for name, values in layers.items():
            values = np.asarray(values, dtype=np.float32)
            chunks = (min(len(values), 256), values.shape[1])
            group.create_dataset(name, data=values, chunks=chunks, compression="gzip", shuffle=True)
        f.attrs["model_id"] = model_id
        f.attrs["probe_hash"] = probe_hash
        f.attrs["status"] = status
        f.attrs["layer_order"] = list(layers)
        f.attrs["penultimate"] = list(layers)[-1] if layers else ""
        f.attrs["versions"] = json.dumps(library_versions())


def read_activations(
    path: str | os.PathLike, layer: str | None = None, probe_hash: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """One layer's representations (default: penultimate) and the file's attributes.

    Raises CorruptFileError for a truncated file or one made with a different probe set.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            name = layer or attrs["penultimate"]
            if name not in f["layers"]:
                raise UserError(
                    f"model {attrs['model_id']} has no hidden layer {name!r} (it has "
                    f"{', '.join(attrs['layer_order'])}); set geometry.layer to a layer every "
                    "model has, or null for each model's penultimate layer"
                )
            values = f["layers"][name][()]
    except (OSError, KeyError) as err:
        raise CorruptFileError(
            f"{path} is not a readable activations file ({err}); delete it and rerun training"
        ) from err
    if probe_hash is not None and attrs["probe_hash"] != probe_hash:
        raise CorruptFileError(
            f"{path} was recorded on probe set {attrs['probe_hash']}, not {probe_hash}; rerun"
        )
    return values, attrs


def _attr(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
