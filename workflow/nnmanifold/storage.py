"""Every on-disk format in one place: atomic writes, JSON/CSV, the probe set, activations,
persistence diagrams, distance matrices and the operator store; the one canonical hash and the one
"is this cached result current?" test; clear errors naming a broken file.

Nothing here imports torch, so the analysis steps that only read files start quickly.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnmanifold import UserError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


class CorruptFileError(UserError):
    """A result file exists but is truncated, corrupt or from a different run."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A reader therefore sees either the old file, no file, or the complete new one. ``durable``
    flushes the file to disk before the rename; a writer of many small files passes False and
    calls ``sync_all`` once before it records them as done (a crash of the machine in between
    can leave a renamed file empty or torn: its readers validate it and redo it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; results are ordinary files
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if durable:
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def sync_all() -> None:
    """Flush every file written so far to disk: the one flush that non-durable writes defer."""
    os.sync()


def canonical_json(value: Any) -> str:
    """The one canonical JSON text of a value: sorted keys, no spaces (hashes and parameters)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def content_hash(value: Any, length: int = 16) -> str:
    """The one canonical hash: SHA-256 of bytes, or of a value's canonical JSON."""
    data = value if isinstance(value, bytes | memoryview) else canonical_json(value).encode()
    return hashlib.sha256(data).hexdigest()[:length]


def file_hash(path: str | os.PathLike) -> str:
    """Content hash of a file (streamed: large files are fine)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def is_current(found: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> bool:
    """The one test of whether a cached result may be reused: what it records it was made from
    (``found``: None when unreadable or absent) equals what it would be made from now."""
    return found is not None and all(found.get(key) == value for key, value in expected.items())


def write_json(path: str | os.PathLike, data: Any, *, durable: bool = True) -> None:
    """Write ``data`` as indented JSON, atomically (NaN is written as null)."""
    with atomic_path(path, durable=durable) as tmp:
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


def read_manifests(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The per-model records of several job manifests as one table (file lists left out)."""
    rows = [row for path in paths for row in read_json(path)]
    return pd.DataFrame(rows).drop(columns=["files"], errors="ignore")


def write_yaml(path: str | os.PathLike, data: Any) -> None:
    """Write plain data as YAML (keys in the given order), atomically."""
    import yaml

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


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
    return dict(_library_versions())


@functools.cache
def _library_versions() -> tuple[tuple[str, str], ...]:
    """Looked up once per process: every file a job writes records them (7 ms each)."""
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
    return tuple(out.items())


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
    durable: bool = True,
) -> None:
    """Write one model's hidden representations: a float32 dataset per layer under ``layers/``."""
    import h5py
    import numpy as np

    with atomic_path(path, durable=durable) as tmp, h5py.File(tmp, "w") as f:
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


def write_diagrams(path: str | os.PathLike, diagrams: Sequence[np.ndarray]) -> None:
    """Write persistence diagrams as ``.npz`` (keys ``h0``, ``h1``, ...), atomically."""
    arrays = {f"h{dim}": np.asarray(d, dtype=np.float64) for dim, d in enumerate(diagrams)}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def read_diagrams(path: str | os.PathLike) -> list[np.ndarray]:
    """Read diagrams written by ``write_diagrams`` (no pickle), naming the file if it is broken."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, EOFError) as err:
        raise CorruptFileError(
            f"{path} is not a diagram .npz ({err}); delete it and rerun"
        ) from err
    expected = [f"h{dim}" for dim in range(len(arrays))]
    if sorted(arrays) != sorted(expected):
        raise CorruptFileError(f"{path} holds {sorted(arrays)}, not h0..hK; delete it and rerun")
    return [arrays[key] for key in expected]


def write_distances(
    path: str | os.PathLike,
    D: np.ndarray,
    model_ids: Sequence[str],
    attrs: Mapping[str, Any],
    digests: Sequence[str] | None = None,
) -> None:
    """Write an N x N distance matrix, its model ids and the settings behind it, atomically.

    ``digests`` (one per model: what its row was computed from) make the file a reusable cache.
    """
    import h5py

    D = np.asarray(D, dtype=np.float64)
    if D.shape != (len(model_ids), len(model_ids)):
        raise ValueError(f"distances are {D.shape} but there are {len(model_ids)} model ids")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("distances", data=D)
        fh.create_dataset("model_ids", data=list(model_ids), dtype=h5py.string_dtype())
        if digests is not None:
            fh.create_dataset("operator_digests", data=list(digests), dtype=h5py.string_dtype())
        fh.attrs.update(dict(attrs))


def read_distances(path: str | os.PathLike) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Read (distances, model ids, attributes) written by :func:`write_distances`."""
    D, ids, attrs, _ = read_distance_cache(path)
    return D, ids, attrs


def read_distance_cache(
    path: str | os.PathLike,
) -> tuple[np.ndarray, list[str], dict[str, Any], list[str] | None]:
    """Like :func:`read_distances`, plus the per-model digests (None if the file has none)."""
    import h5py

    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist; run the distances step first")
    try:
        with h5py.File(path, "r") as fh:
            D = fh["distances"][()]
            ids = list(fh["model_ids"].asstr()[()])
            digests = list(fh["operator_digests"].asstr()[()]) if "operator_digests" in fh else None
            attrs = {k: v.item() if isinstance(v, np.generic) else v for k, v in fh.attrs.items()}
    except (OSError, KeyError) as err:
        raise CorruptFileError(
            f"{path} is not a complete distance file ({err}); delete it and rerun"
        ) from err
    if D.shape != (len(ids), len(ids)) or (digests is not None and len(digests) != len(ids)):
        raise CorruptFileError(
            f"{path} holds {D.shape} distances for {len(ids)} model ids; delete it and rerun"
        )
    return D, ids, attrs, digests


class OperatorStore:
    """HDF5 file of diffusion operators, one float64 dataset per model, for one fingerprint.

    ``fingerprint`` names what every stored operator depends on besides its own representation
    (settings, probe set, layer); opening a store made for another fingerprint starts it afresh,
    so stale operators are never mixed in. Each operator records the digest of the representation
    it came from (``source``) and its kernel diagnostics. The store only stores: ``diffusion``
    builds operators. One writer at a time.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: Mapping[str, Any]) -> None:
        import h5py

        self.path = Path(path)
        self.attrs: dict[str, Any] = dict(fingerprint)
        if self.path.exists():
            try:
                with self._open("r") as fh:
                    found = dict(fh.attrs)
            except CorruptFileError:
                found = None
            if is_current(found, self.attrs):
                return
        with atomic_path(self.path) as tmp, h5py.File(tmp, "w") as fh:
            fh.attrs.update(self.attrs)
            fh.create_group("operators")

    def _open(self, mode: str):
        import h5py

        try:
            return h5py.File(self.path, mode)
        except OSError as err:
            raise CorruptFileError(
                f"operator store {self.path} is unreadable ({err}); delete it and rerun "
                "(operators are recomputed from the representations)"
            ) from err

    def model_ids(self) -> list[str]:
        """Ids of the models whose operators are stored, sorted."""
        with self._open("r") as fh:
            return sorted(fh["operators"])

    def source(self, model_id: str) -> str | None:
        """Digest of the representation a model's stored operator came from (None: not stored)."""
        with self._open("r") as fh:
            stored = fh["operators"].get(model_id)
            if stored is None or "diagnostics" not in stored.attrs:
                return None
            return str(stored.attrs["source"])

    def put(
        self,
        model_id: str,
        operator: np.ndarray,
        source: str = "",
        diagnostics: Mapping[str, float] | None = None,
    ) -> None:
        """Store (or replace) one model's operator; ``source`` identifies what it came from."""
        if not model_id or "/" in model_id or model_id == ".":
            raise ValueError(f"model id {model_id!r} cannot name an HDF5 dataset (no '/')")
        operator = np.ascontiguousarray(operator, dtype=np.float64)
        if operator.ndim != 2 or operator.shape[0] != operator.shape[1]:
            raise ValueError(f"operator of {model_id} must be square, got {operator.shape}")
        with self._open("a") as fh:
            group = fh["operators"]
            n = fh.attrs.get("n_points", operator.shape[0])
            if operator.shape != (n, n):
                raise ValueError(
                    f"operator of {model_id} is {operator.shape} but {self.path} holds ({n}, {n}) "
                    "operators; all models must share one probe set"
                )
            fh.attrs["n_points"] = n
            if model_id in group:
                del group[model_id]
            dataset = group.create_dataset(model_id, data=operator)
            dataset.attrs["source"] = source
            dataset.attrs["digest"] = content_hash(operator.data)
            if diagnostics is not None:
                dataset.attrs["diagnostics"] = json.dumps(dict(diagnostics))

    def diagnostics(self, model_id: str) -> dict[str, float]:
        """Kernel diagnostics recorded with a model's operator."""
        with self._open("r") as fh:
            return json.loads(fh["operators"][self._known(fh, model_id)].attrs["diagnostics"])

    def prune(self, keep: Sequence[str]) -> int:
        """Drop the operators of models not in ``keep``; returns how many were dropped.

        The file is rewritten (HDF5 does not give back the space of deleted datasets).
        """
        import h5py

        keep = set(keep)
        with self._open("r") as fh:
            dropped = [m for m in fh["operators"] if m not in keep]
        if dropped:
            with atomic_path(self.path) as tmp, h5py.File(tmp, "w") as out, self._open("r") as fh:
                out.attrs.update(fh.attrs)
                group = out.create_group("operators")
                for model_id in fh["operators"]:
                    if model_id in keep:
                        fh.copy(fh["operators"][model_id], group, name=model_id)
        return len(dropped)

    def operator(self, model_id: str) -> np.ndarray:
        """One model's stored operator, (n, n) float64."""
        with self._open("r") as fh:
            return fh["operators"][self._known(fh, model_id)][()]

    def digests(self, model_ids: Sequence[str]) -> list[str]:
        """Content hashes of the stored operators, to tell a changed model from a cached one."""
        with self._open("r") as fh:
            return [str(fh["operators"][self._known(fh, i)].attrs["digest"]) for i in model_ids]

    def n_entries(self) -> int:
        """Entries per operator (n^2), 0 while the store is empty."""
        with self._open("r") as fh:
            return int(fh.attrs.get("n_points", 0)) ** 2

    def read_into(self, model_ids: Sequence[str], out: np.ndarray) -> None:
        """Read operators straight into the rows of ``out`` (len(model_ids), n^2), no copies."""
        with self._open("r") as fh:
            for row, model_id in zip(out, model_ids, strict=True):
                dataset = fh["operators"][self._known(fh, model_id)]
                dataset.read_direct(row.reshape(dataset.shape))

    def _known(self, fh, model_id: str) -> str:
        if model_id not in fh["operators"]:
            raise KeyError(f"model {model_id!r} has no operator in {self.path}; add it first")
        return model_id
