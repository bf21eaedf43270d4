"""Network distances d(i, j) = ||P_i^t - P_j^t||_F: operator store, Gram kernel, streamed cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from nnmanifold.diffusion import OperatorSettings, kernel_diagnostics, transition_matrix
from nnmanifold.storage import CorruptFileError, atomic_path

log = logging.getLogger(__name__)

#: Pairs whose Gram-based d^2 is below this fraction of ||a-r||^2 + ||b-r||^2 (r: the block's
#: reference) lost digits to cancellation; they are recomputed by direct subtraction.
RECOMPUTE_RATIO = 1e-4
#: Memory for operator blocks in :func:`distance_matrix` unless told otherwise.
DEFAULT_MEMORY_BUDGET = 2**30
#: Attributes that must match for stored operators or cached distances to be reused.
FINGERPRINT_KEYS = ("settings_key", "probe_hash", "layer")


def pairwise_frobenius(
    A: np.ndarray, B: np.ndarray | None = None, device: str = "auto"
) -> np.ndarray:
    """Frobenius distances between every operator in A and every one in B (A itself if None).

    A is (N, ...) and B is (M, ...), each operator flattened to one row. The Gram matrix is
    accumulated in float64 around the mean operator, and near-identical pairs, where the Gram
    identity cancels, are recomputed by direct subtraction.
    """
    A = np.asarray(A, dtype=np.float64).reshape(len(A), -1)
    if B is None:
        return _centred_distances(A - A.mean(axis=0), None, _resolve_device(device))
    B = np.asarray(B, dtype=np.float64).reshape(len(B), -1)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"operators differ in size: {A.shape[1]} vs {B.shape[1]} entries")
    reference = (A.sum(axis=0) + B.sum(axis=0)) / (len(A) + len(B))
    return _centred_distances(A - reference, B - reference, _resolve_device(device))


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no GPU; use device='auto' or 'cpu'")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not one of auto, cpu, cuda")
    return device


def _gram(A: np.ndarray, B: np.ndarray | None, device: str) -> np.ndarray:
    """Inner products of rows in float64; B None uses the symmetric product (half the work)."""
    if device == "cuda":
        a = torch.from_numpy(A).to(device)
        b = a if B is None else torch.from_numpy(B).to(device)
        return (a @ b.T).cpu().numpy()
    return A @ (A if B is None else B).T


def _centred_distances(A: np.ndarray, B: np.ndarray | None, device: str) -> np.ndarray:
    """Distances between rows already centred on one reference; B None means A with itself."""
    G = _gram(A, B, device)
    sq_a = np.diag(G).copy() if B is None else np.einsum("ij,ij->i", A, A)
    sq_b = sq_a if B is None else np.einsum("ij,ij->i", B, B)
    scale = sq_a[:, None] + sq_b[None, :]
    D2 = scale - 2.0 * G
    suspect = D2 <= RECOMPUTE_RATIO * scale
    if B is None:
        suspect = np.triu(suspect, k=1)
    other = A if B is None else B
    for i, j in zip(*np.nonzero(suspect), strict=True):
        diff = A[i] - other[j]
        D2[i, j] = diff @ diff
    if B is None:
        D2 = np.triu(D2, k=1)
        D2 += D2.T
    return np.sqrt(np.maximum(D2, 0.0))


class OperatorStore:
    """HDF5 file of diffusion operators, one dataset per model, for one settings/probe/layer.

    Opening a store built for other settings, probe set or layer starts it afresh, so stale
    operators are never mixed in. One writer at a time.
    """

    def __init__(
        self, path: str | os.PathLike, settings: OperatorSettings, probe_hash: str, layer: str
    ) -> None:
        self.path = Path(path)
        self.settings = settings
        self.attrs: dict[str, Any] = {
            "settings_key": settings.key(),
            "probe_hash": probe_hash,
            "layer": layer,
            "sigma": settings.sigma,
            "normalization": settings.normalization,
            "t": settings.t,
        }
        if self.path.exists():
            try:
                with self._open("r") as fh:
                    found = {key: fh.attrs.get(key) for key in FINGERPRINT_KEYS}
            except CorruptFileError as err:
                found = {"unreadable": str(err)}
            if _matches(found, self.attrs):
                return
            log.warning("%s holds operators for %s; starting it afresh", self.path, found)
        with atomic_path(self.path) as tmp, h5py.File(tmp, "w") as fh:
            fh.attrs.update(self.attrs)
            fh.create_group("operators")

    def _open(self, mode: str) -> h5py.File:
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

    def add(self, model_id: str, X: np.ndarray) -> bool:
        """Store the operator of representation X unless an identical X was stored; True if new.

        The one-step operator's kernel diagnostics are kept beside it (see ``diagnostics``).
        """
        source = _digest(np.ascontiguousarray(X))
        with self._open("r") as fh:
            stored = fh["operators"].get(model_id)
            if stored is not None and stored.attrs["source"] == source:
                if "diagnostics" in stored.attrs:
                    return False
        one_step = transition_matrix(X, self.settings)
        operator = np.linalg.matrix_power(one_step, self.settings.t)
        self.put(model_id, operator, source, kernel_diagnostics(one_step))
        return True

    def diagnostics(self, model_id: str) -> dict[str, float]:
        """Kernel diagnostics of a model's one-step operator, recorded when it was added."""
        with self._open("r") as fh:
            return json.loads(fh["operators"][self._known(fh, model_id)].attrs["diagnostics"])

    def put(
        self,
        model_id: str,
        operator: np.ndarray,
        source: str = "",
        diagnostics: dict[str, float] | None = None,
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
            dataset.attrs["digest"] = _digest(operator)
            if diagnostics is not None:
                dataset.attrs["diagnostics"] = json.dumps(diagnostics)

    def prune(self, keep: Sequence[str]) -> int:
        """Drop the operators of models not in ``keep``; returns how many were dropped.

        The file is rewritten (HDF5 does not give back the space of deleted datasets).
        """
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

    def _known(self, fh: h5py.File, model_id: str) -> str:
        if model_id not in fh["operators"]:
            raise KeyError(f"model {model_id!r} has no operator in {self.path}; add it first")
        return model_id


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.data).hexdigest()[:16]


def _matches(found: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(found.get(key) == expected[key] for key in FINGERPRINT_KEYS)


@dataclass(frozen=True)
class DistanceResult:
    """A distance matrix, its model order, and how many pairs (i < j) this call evaluated."""

    distances: np.ndarray
    model_ids: list[str]
    n_computed: int


def distance_matrix(
    store: OperatorStore,
    model_ids: Sequence[str] | None = None,
    *,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    cache_path: str | os.PathLike | None = None,
    device: str = "auto",
) -> DistanceResult:
    """All pairwise network distances, streamed from the store in blocks that fit the budget.

    ``memory_budget_bytes`` bounds the working memory: two blocks of operators, room for four
    more operators (temporaries, HDF5 buffers) and the N x N matrices.

    With ``cache_path`` the previous result is reused: only pairs involving models that are new
    or whose operator changed are computed, and the cache is rewritten with this result. A cache
    for other settings, probe set or layer is ignored.
    """
    ids = list(store.model_ids() if model_ids is None else model_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("model_ids contains duplicates; each model may appear once")
    digests = store.digests(ids)
    cached_D, cached = _read_cache(cache_path, store.attrs)
    old = [m for m, d in zip(ids, digests, strict=True) if m in cached and cached[m][1] == d]
    kept = set(old)
    order = old + [m for m in ids if m not in kept]
    D = np.zeros((len(ids), len(ids)))
    index = [cached[m][0] for m in old]
    D[: len(old), : len(old)] = cached_D[np.ix_(index, index)]
    n_computed = _fill_new_rows(
        store, order, len(old), D, memory_budget_bytes, _resolve_device(device)
    )
    position = {m: k for k, m in enumerate(order)}
    back = [position[m] for m in ids]
    D = D[np.ix_(back, back)]
    if cache_path is not None:
        write_distances(cache_path, D, ids, store.attrs, digests)
    return DistanceResult(D, ids, n_computed)


def _read_cache(
    path: str | os.PathLike | None, attrs: dict[str, Any]
) -> tuple[np.ndarray, dict[str, tuple[int, str]]]:
    """Cached distances and {model: (row, operator digest)}; empty unless valid for ``attrs``."""
    empty: tuple[np.ndarray, dict[str, tuple[int, str]]] = (np.zeros((0, 0)), {})
    if path is None or not Path(path).exists():
        return empty
    try:
        D, ids, found, digests = _read_distance_file(path)
    except CorruptFileError as err:
        log.warning("ignoring distance cache: %s", err)
        return empty
    if digests is None or not _matches(found, attrs):
        log.info("distance cache %s was built for other settings; recomputing", path)
        return empty
    return D, {m: (k, d) for k, (m, d) in enumerate(zip(ids, digests, strict=True))}


def _fill_new_rows(
    store: OperatorStore, ids: list[str], n_old: int, D: np.ndarray, budget: int, device: str
) -> int:
    """Fill every D entry involving ids[n_old:]; return the number of pairs evaluated."""
    if n_old == len(ids):
        return 0
    m = store.n_entries()
    fixed = 3 * D.nbytes + 4 * 8 * m
    rows = min(len(ids) - n_old, (budget - fixed) // (2 * 8 * m))
    if rows < 1:
        raise ValueError(
            f"memory_budget_bytes={budget} cannot hold two operators of {m} entries and the "
            f"{len(ids)}x{len(ids)} result; raise it to at least {fixed + 2 * 8 * m}"
        )
    buffer_a = np.empty((rows, m))
    buffer_b = np.empty((rows, m))
    n_computed = 0
    for start, stop in _blocks(n_old, len(ids), rows):
        A = buffer_a[: stop - start]
        store.read_into(ids[start:stop], A)
        reference = A.mean(axis=0)
        A -= reference
        D[start:stop, start:stop] = _centred_distances(A, None, device)
        n_computed += len(A) * (len(A) - 1) // 2
        for col_start, col_stop in [*_blocks(0, n_old, rows), *_blocks(stop, len(ids), rows)]:
            B = buffer_b[: col_stop - col_start]
            store.read_into(ids[col_start:col_stop], B)
            B -= reference
            block = _centred_distances(A, B, device)
            D[start:stop, col_start:col_stop] = block
            D[col_start:col_stop, start:stop] = block.T
            n_computed += block.size
    return n_computed


def _blocks(start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    for lo in range(start, stop, size):
        yield lo, min(lo + size, stop)


def write_distances(
    path: str | os.PathLike,
    D: np.ndarray,
    model_ids: Sequence[str],
    attrs: dict[str, Any],
    digests: Sequence[str] | None = None,
) -> None:
    """Write a distance matrix, its model ids and the settings behind it, atomically."""
    D = np.asarray(D, dtype=np.float64)
    if D.shape != (len(model_ids), len(model_ids)):
        raise ValueError(f"distances are {D.shape} but there are {len(model_ids)} model ids")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("distances", data=D)
        fh.create_dataset("model_ids", data=list(model_ids), dtype=h5py.string_dtype())
        if digests is not None:
            fh.create_dataset("operator_digests", data=list(digests), dtype=h5py.string_dtype())
        fh.attrs.update(attrs)


def read_distances(path: str | os.PathLike) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Read (distances, model ids, attributes) written by :func:`write_distances`."""
    D, ids, attrs, _ = _read_distance_file(path)
    return D, ids, attrs


def _read_distance_file(
    path: str | os.PathLike,
) -> tuple[np.ndarray, list[str], dict[str, Any], list[str] | None]:
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
