"""Network distances d(i, j) = ||P_i^t - P_j^t||_F: operator store, Gram kernel, streamed cache."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnmanifold.diffusion import OperatorSettings, operator_with_diagnostics
from nnmanifold.storage import (
    CorruptFileError,
    OperatorStore,
    content_hash,
    is_current,
    read_distance_cache,
    write_distances,
)

log = logging.getLogger(__name__)

#: Pairs whose Gram-based d^2 is below this fraction of ||a-r||^2 + ||b-r||^2 (r: the block's
#: reference) lost digits to cancellation; they are recomputed by direct subtraction.
RECOMPUTE_RATIO = 1e-4
#: Attributes that must match for cached distances to be reused.
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
    """ "cpu" or "cuda"; torch is imported only when CUDA may be asked for."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={device!r} is not one of auto, cpu, cuda")
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no GPU; use device='auto' or 'cpu'")
    return device


def _gram(A: np.ndarray, B: np.ndarray | None, device: str) -> np.ndarray:
    """Inner products of rows in float64; B None uses the symmetric product (half the work)."""
    if device == "cuda":
        import torch

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


def store_fingerprint(settings: OperatorSettings, probe_hash: str, layer: str) -> dict[str, Any]:
    """What every operator in a store depends on besides its representation (and, for reading,
    the settings spelled out)."""
    return {
        "settings_key": settings.key(),
        "probe_hash": probe_hash,
        "layer": layer,
        "sigma": settings.sigma,
        "normalization": settings.normalization,
        "t": settings.t,
    }


def store_operator(
    store: OperatorStore, model_id: str, X: np.ndarray, settings: OperatorSettings
) -> bool:
    """Build and store the operator of representation X unless the store holds the operator of
    this very X (same content); True if it was (re)built. Its kernel diagnostics go beside it."""
    source = content_hash(np.ascontiguousarray(X).data)
    if store.source(model_id) == source:
        return False
    operator, diagnostics = operator_with_diagnostics(X, settings)
    store.put(model_id, operator, source, diagnostics)
    return True


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
    memory_budget_bytes: int,
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
        D, ids, found, digests = read_distance_cache(path)
    except CorruptFileError as err:
        log.warning("ignoring distance cache: %s", err)
        return empty
    if digests is None or not is_current(found, {k: attrs[k] for k in FINGERPRINT_KEYS}):
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
