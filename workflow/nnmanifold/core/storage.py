"""Every on-disk format in one place: atomic writes, JSON/CSV, the probe set, activations,
persistence diagrams and distance matrices (the distance cache included); the one canonical hash
and the one "is this cached result current?" test; clear errors naming a broken file.

Nothing here imports torch, so the analysis steps that only read files start quickly.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnmanifold.core import versions
from nnmanifold.core.errors import UserError

if TYPE_CHECKING:  # pandas is imported where a table is read: most jobs never need it
    import pandas as pd

_UMASK = os.umask(0o022)
os.umask(_UMASK)
log = logging.getLogger(__name__)
#: Errors that mean the disk (or quota, or file-size limit) is full.
_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class CorruptFileError(UserError):
    """A result file exists but is truncated, corrupt or from a different run."""


class DiskFullError(UserError):
    """A write failed for lack of space; the target was left as it was."""


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
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes files private; results are ordinary files
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if durable:
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException as err:
        tmp_path.unlink(missing_ok=True)
        if isinstance(err, OSError | RuntimeError) and _is_full(err):  # h5py reports either
            raise DiskFullError(
                f"could not write {path}: the disk, quota or file-size limit is full ({err}); "
                "free space and rerun (the file was left as it was)"
            ) from err
        raise


def _is_full(err: Exception) -> bool:
    """Whether an error (from Python or, with the errno only in its text, HDF5) means full."""
    text = str(err).lower()
    return getattr(err, "errno", None) in _FULL or any(
        os.strerror(code).lower() in text for code in _FULL
    )


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


#: A file changed this recently (nanoseconds) may change again within the same timestamp tick,
#: unseen by its identity: what is learnt of it is not remembered (git's "racy" entries).
RACY_NS = 2_000_000_000


class FileFacts:
    """What was learnt about input files (a content hash, an array's shape), remembered in one
    JSON file by each file's identity: size, modification and change times, inode. A workflow
    parse then reads a file again only when it has changed, not all 10,000 checkpoints every
    time. Facts of a file changed within ``RACY_NS`` are not remembered; a missing, unreadable
    or corrupt facts file starts afresh; ``save`` rewrites it atomically when something changed
    (concurrent writers lose only each other's additions) and forgets files that are gone.
    Without a path, nothing is remembered beyond this object."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._facts = self._read(self.path) if self.path is not None and self.path.exists() else {}
        self._changed = False
        self._seen: set[str] = set()

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        """The facts a file holds; none, with a warning, when it is unreadable or corrupt."""
        try:
            facts = json.loads(path.read_text())
            if not isinstance(facts, dict):
                raise ValueError("not a mapping")
        except (OSError, ValueError) as err:
            log.warning("%s unreadable (%s): file facts learnt afresh", path, err)
            return {}
        return facts

    def get(self, file: str | os.PathLike, name: str, learn: Callable[[], Any]) -> Any:
        """The fact ``name`` of ``file``: remembered while the file is unchanged, else
        ``learn()`` (JSON-serialisable)."""
        st = os.stat(file)
        identity = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        key = os.path.abspath(file)
        self._seen.add(key)
        entry = self._facts.get(key)
        if isinstance(entry, dict) and entry.get("id") == identity and name in entry:
            return entry[name]
        value = learn()
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_NS:
            if not (isinstance(entry, dict) and entry.get("id") == identity):
                entry = self._facts[key] = {"id": identity}
            entry[name] = value
            self._changed = True
        return value

    def save(self) -> None:
        """Write the facts if something changed, without the files that are gone. A facts file
        that cannot be written (a read-only results folder, a full disk) is a warning: the next
        parse learns again."""
        if self.path is None:
            return
        gone = [k for k in self._facts if k not in self._seen and not os.path.exists(k)]
        for key in gone:
            del self._facts[key]
        if self._changed or gone:
            try:
                write_json(self.path, self._facts, durable=False)
            except (OSError, DiskFullError) as err:
                log.warning("%s not written (%s): file facts not remembered", self.path, err)
            self._changed = False


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


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """What a job manifest records of a file it wrote: path, size and content hash."""
    return {"path": str(path), "size": os.path.getsize(path), "hash": file_hash(path)}


def failed_files(manifest: str | os.PathLike, hashes: bool = False) -> list[str]:
    """Files a finished job's manifest lists that are missing or changed in size (one stat each:
    cheap at start-up) or, with ``hashes``, in content. None if the job has not run; an
    unreadable manifest is itself the failed file."""
    try:
        entries = read_json(manifest)
    except FileNotFoundError:
        return []
    except CorruptFileError:
        return [str(manifest)]
    failed = []
    for entry in entries:
        for record in entry.get("files", []):
            record = record if isinstance(record, dict) else {"path": record}
            path = record["path"]
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                failed.append(path)
                continue
            if record.get("size", size) != size or (
                hashes and record.get("hash", file_hash(path)) != file_hash(path)
            ):
                failed.append(path)
    return failed


def set_aside(path: str | os.PathLike) -> Path:
    """Move a failed file out of the way (``<name>.failed``, kept for inspection) so that no
    step reads it and the job that wrote it writes it again."""
    path = Path(path)
    aside = path.with_name(path.name + ".failed")
    os.replace(path, aside)
    return aside


def read_manifests(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The per-model records of several job manifests as one table (file lists left out)."""
    import pandas as pd

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


def write_probe(path: str | os.PathLike, probe: dict[str, Any]) -> None:
    """Store the probe set once per zoo: indices into the split it was drawn from (``split``:
    test or validation), labels, inputs, hash, and the test split's chance accuracy."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key in ("indices", "labels", "x"):
            f.create_dataset(key, data=probe[key])
        f.attrs["hash"] = probe["hash"]
        f.attrs["dataset"] = probe["dataset"]
        f.attrs["split"] = probe.get("split", "test")  # as read back from files without it
        f.attrs["chance_accuracy"] = probe["chance_accuracy"]


def read_probe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a probe set written by ``write_probe``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            probe = {key: f[key][()] for key in ("indices", "labels", "x")}
            probe.update(hash=str(f.attrs["hash"]), dataset=str(f.attrs["dataset"]))
            probe["split"] = str(f.attrs.get("split", "test"))  # files from before probe_split
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
    own_layer: bool = False,
) -> None:
    """Write one model's hidden representations: a float32 dataset per layer under ``layers/``.

    ``own_layer``: the file holds the one layer a network from elsewhere chose (its group's
    ``layer``), which is read whatever ``geometry.layer`` names for the zoo."""
    import h5py
    import numpy as np

    with atomic_path(path, durable=durable) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("layers")
        for name, values in layers.items():
            values = np.ascontiguousarray(values, dtype=np.float32)
            dataset = group.create_dataset(name, data=values, **_compression(values))
            _new_attr(dataset, "digest", content_hash(values.data))
        _new_attr(f, "model_id", model_id)
        _new_attr(f, "probe_hash", probe_hash)
        _new_attr(f, "status", status)
        _new_attr(f, "layer_order", list(layers))
        _new_attr(f, "penultimate", list(layers)[-1] if layers else "")
        _new_attr(f, "versions", json.dumps(versions.library_versions()))
        if own_layer and layers:
            _new_attr(f, "own_layer", list(layers)[0])


def _new_attr(obj: Any, name: str, value: str | list[str]) -> None:
    """Add a text attribute (a string, or an array of strings) to a new HDF5 file, group or
    dataset: variable-length UTF-8, as ``obj.attrs[name] = value`` stores text (an empty list
    becomes an empty array of strings, where h5py would store floats). Through the low-level
    API: h5py's own path guards against overwriting (a temporary attribute, then a rename),
    which made attributes most of the cost of a small file."""
    import h5py

    values = np.array(value, dtype=h5py.string_dtype())
    stored = h5py.h5t.py_create(values.dtype, logical=True)  # variable-length UTF-8 text
    space = (
        h5py.h5s.create_simple(values.shape) if values.shape else h5py.h5s.create(h5py.h5s.SCALAR)
    )
    attr = h5py.h5a.create(obj.id, name.encode(), stored, space)
    attr.write(values, mtype=h5py.h5t.py_create(values.dtype))  # from Python str objects


#: Layers smaller than this are stored plain: compressing a few kB costs more than it saves.
_COMPRESS_ABOVE_BYTES = 1 << 20


def _compression(values: np.ndarray) -> dict[str, Any]:
    """HDF5 storage options of one layer: chunked, shuffled gzip for large ones."""
    if values.nbytes < _COMPRESS_ABOVE_BYTES:
        return {}
    return {
        "chunks": (min(len(values), 256), values.shape[1]),
        "compression": "gzip",
        "shuffle": True,
    }


def read_activations(
    path: str | os.PathLike, layer: str | None = None, probe_hash: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """One layer's representations (default: penultimate) and the file's attributes.

    Raises CorruptFileError for a truncated file, a layer whose content no longer matches the
    checksum written with it (bit rot, a bad copy or restore, whatever its modification time),
    or one made with a different probe set.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            name = attrs.get("own_layer") or layer or attrs["penultimate"]
            if name not in f["layers"]:
                raise UserError(
                    f"model {attrs['model_id']} has no hidden layer {name!r} (it has "
                    f"{', '.join(attrs['layer_order'])}); set geometry.layer to a layer every "
                    "model has, or null for each model's penultimate layer"
                )
            values = f["layers"][name][()]
            digest = f["layers"][name].attrs.get("digest")
    except (OSError, KeyError) as err:
        raise CorruptFileError(
            f"{path} is not a readable activations file ({err}); run `snakemake verify`, which "
            "sets it aside so that the next run retrains its model"
        ) from err
    if digest is not None and _attr(digest) != content_hash(np.ascontiguousarray(values).data):
        raise CorruptFileError(
            f"{path}: layer {name} does not match the checksum written with it (changed since "
            "training: bit rot, or a bad copy or restore); run `snakemake verify`, which sets it "
            "aside so that the next run retrains its model"
        )
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


def read_current_cache(
    path: str | os.PathLike, expected: Mapping[str, Any]
) -> tuple[np.ndarray, list[str], list[str]] | None:
    """A distance cache's (distances, model ids, per-model digests) if it exists, is readable,
    has digests and was made with the ``expected`` attributes (:func:`is_current`); else None."""
    if not Path(path).exists():
        return None
    try:
        D, ids, found, digests = read_distance_cache(path)
    except CorruptFileError as err:
        log.warning("ignoring cache: %s", err)
        return None
    if digests is None or not is_current(found, expected):
        log.info("cache %s was built for other settings; recomputing", path)
        return None
    return D, ids, digests
