"""Network distances d(i, j) = ||P_i^t - P_j^t||_F: Gram kernel, operators streamed, cached rows.

The distance step never stores operators: it builds them from the (small) representations in
row blocks, so each one is built once per pass and the Gram product splits over its entries
(docs/method.md §4.2).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from nnmanifold.core.storage import content_hash, read_current_cache, write_distances
from nnmanifold.geometry.diffusion import (
    OperatorSettings,
    centred,
    diagnostic_sums,
    diagnostics_from_sums,
    kernel_scales,
    operator_rows,
)

if TYPE_CHECKING:
    import torch

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
    offset = 0 if B is None else None
    D2, suspect = _gram_identity(G, sq_a, sq_b, offset)
    other = A if B is None else B
    for i, j in zip(*suspect, strict=True):
        diff = A[i] - other[j]
        D2[i, j] = diff @ diff
    return _distances(D2, offset)


def _gram_identity(
    G: np.ndarray, sq_rows: np.ndarray, sq_cols: np.ndarray, offset: int | None
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """d^2 = |a|^2 + |b|^2 - 2 a.b, and the (row, column) pairs where it cancelled.

    ``offset`` is the column of row 0 when rows are a tail of the columns (the square block
    from there on is symmetric: only its upper triangle counts); None for unrelated sets.
    """
    scale = sq_rows[:, None] + sq_cols[None, :]
    D2 = scale - 2.0 * G
    suspect = D2 <= RECOMPUTE_RATIO * scale
    if offset is not None:
        suspect = np.triu(suspect, k=offset + 1)
    return D2, np.nonzero(suspect)


def _distances(D2: np.ndarray, offset: int | None) -> np.ndarray:
    """Square roots of clipped d^2; from column ``offset`` on, the upper triangle is mirrored
    (exact symmetry, zero diagonal)."""
    if offset is not None:
        square = np.triu(D2[:, offset:], k=1)
        D2[:, offset:] = square + square.T
    return np.sqrt(np.maximum(D2, 0.0))


def fingerprint(settings: OperatorSettings, probe_hash: str, layer: str) -> dict[str, Any]:
    """What every distance depends on besides the representations (and the settings spelled
    out, for readers of the distance file)."""
    return {
        "settings_key": settings.key(),
        "probe_hash": probe_hash,
        "layer": layer,
        "sigma": settings.sigma,
        "normalization": settings.normalization,
        "t": settings.t,
    }


@dataclass(frozen=True)
class DistanceResult:
    """A distance matrix, its model order, how many pairs (i < j) this call evaluated, and the
    kernel diagnostics of each model's one-step operator (same order)."""

    distances: np.ndarray
    model_ids: list[str]
    n_computed: int
    diagnostics: list[dict[str, float]]


def distance_matrix(
    representations: Mapping[str, np.ndarray],
    settings: OperatorSettings,
    *,
    memory_budget_bytes: int,
    cache_path: str | os.PathLike | None = None,
    attrs: Mapping[str, Any] | None = None,
    device: str = "auto",
) -> DistanceResult:
    """All pairwise network distances of representations {model: (n, d)} of one probe set.

    Operators P^t are built on ``device`` (torch float64) in blocks of rows: a block's rows of
    every operator, plus four N x N matrices, fit ``memory_budget_bytes`` (the representations
    themselves come on top; on CUDA the budget is also capped by the free GPU memory). When all
    rows fit there is one block and the operators stay resident. Each block's rows are centred
    on their mean over networks and added to one Gram matrix; pairs where the Gram identity
    cancels are recomputed directly (from the resident operators, or in a second pass over
    only their networks).

    With ``cache_path`` the previous result is reused: only pairs involving models that are new
    or whose representation changed are computed (every operator is still built, for those
    rows and for the diagnostics), and the cache is rewritten with this result and ``attrs``
    (from :func:`fingerprint`); a cache for other settings, probe set or layer is ignored.
    """
    ids = list(representations)
    if cache_path is not None and (attrs is None or attrs.get("settings_key") != settings.key()):
        raise ValueError("cache_path needs attrs=fingerprint(settings, probe_hash, layer)")
    digests = [
        content_hash(np.ascontiguousarray(representations[m]).data) if cache_path else ""
        for m in ids
    ]
    cached_D, cached = _read_cache(cache_path, attrs)
    old = [m for m, d in zip(ids, digests, strict=True) if m in cached and cached[m][1] == d]
    kept = set(old)
    order = old + [m for m in ids if m not in kept]
    D = np.zeros((len(ids), len(ids)))
    index = [cached[m][0] for m in old]
    D[: len(old), : len(old)] = cached_D[np.ix_(index, index)]
    X = _stack([centred(representations[m], settings.normalization) for m in order])
    n_computed, sums = _fill_new_rows(
        X, settings, len(old), D, memory_budget_bytes, _resolve_device(device)
    )
    position = {m: k for k, m in enumerate(order)}
    back = [position[m] for m in ids]
    D = D[np.ix_(back, back)]
    if cache_path is not None:
        write_distances(cache_path, D, ids, dict(attrs or {}), digests)
    diagnostics = [diagnostics_from_sums(sums[k], X.shape[1]) for k in back]
    return DistanceResult(D, ids, n_computed, diagnostics)


def _stack(representations: list[np.ndarray]) -> np.ndarray:
    """(N, n, d_max) float64 array of representations, narrower ones padded with zero features
    (which change no operator)."""
    shapes = {np.shape(X)[0] for X in representations}
    if len(shapes) > 1:
        raise ValueError(
            f"representations have {sorted(shapes)} probe points; all models must share one "
            "probe set (rerun the models recorded on another)"
        )
    width = max((np.shape(X)[1] for X in representations), default=0)
    out = np.zeros((len(representations), shapes.pop() if shapes else 0, width))
    for row, X in zip(out, representations, strict=True):
        row[:, : np.shape(X)[1]] = X
    return out


def _read_cache(
    path: str | os.PathLike | None, attrs: Mapping[str, Any] | None
) -> tuple[np.ndarray, dict[str, tuple[int, str]]]:
    """Cached distances and {model: (row, representation digest)}; empty unless valid for
    ``attrs``."""
    if path is None or attrs is None:
        return np.zeros((0, 0)), {}
    found = read_current_cache(path, {k: attrs[k] for k in FINGERPRINT_KEYS})
    if found is None:
        return np.zeros((0, 0)), {}
    D, ids, digests = found
    return D, {m: (k, d) for k, (m, d) in enumerate(zip(ids, digests, strict=True))}


@dataclass(frozen=True)
class _Plan:
    """Operator rows per block (all n: operators resident) and networks built per batch."""

    rows: int
    batch: int


def plan_blocks(
    n_models: int,
    n_points: int,
    settings: OperatorSettings,
    budget: int,
    result_entries: int | None = None,
) -> _Plan:
    """Largest row block whose rows of every operator fit 3/4 of what the budget leaves after
    four result matrices (N x N unless ``result_entries`` says how many entries each holds);
    the rest holds the temporaries of the networks built at once."""
    avail = budget - 4 * 8 * (n_models**2 if result_entries is None else result_entries)
    per_row = 8 * n_models * n_points
    whole = settings.t > 1 or "median" in (settings.sigma, settings.normalization)
    # one network's temporaries: its whole operators, or a copy of the rows it builds
    spare, unit = (4 * 8 * n_points**2, 0) if whole else (0, 8 * n_points)
    rows = min(n_points, avail * 3 // 4 // per_row, (avail - spare) // (per_row + unit))
    if rows < 1:
        minimum = budget - avail + max(-(-4 * per_row // 3), per_row + spare + unit)
        raise ValueError(
            f"memory_budget_bytes={budget} cannot hold one row of {n_models} operators of "
            f"{n_points} points and the result matrices; raise it to at least "
            f"{minimum}"
        )
    batch = (avail - rows * per_row) // (spare + unit * rows)
    return _Plan(rows, int(min(n_models, batch)))


def _fill_new_rows(
    Y: np.ndarray,
    settings: OperatorSettings,
    first: int,
    D: np.ndarray,
    budget: int,
    device: str,
) -> tuple[int, np.ndarray]:
    """Fill every D entry involving networks first: of Y (centred representations); return the
    number of pairs evaluated and every network's :func:`diagnostic_sums` (a pass builds every
    operator anyway; with nothing new it builds only one-step rows, for the diagnostics)."""
    import torch

    N, n, _ = Y.shape
    if first == N:
        settings = replace(settings, t=1)
    if device == "cuda":  # the representations go to the GPU first
        budget = min(budget, int(0.9 * torch.cuda.mem_get_info()[0]) - Y.nbytes)
    plan = plan_blocks(N, n, settings, budget)
    dev = torch.device(device)
    reps = _Representations(torch.from_numpy(Y).to(dev), settings, plan.batch)
    buffer = torch.empty(N * plan.rows * n, dtype=torch.float64, device=dev)
    G = torch.zeros((N - first, N), dtype=torch.float64, device=dev)
    sq = torch.zeros(N, dtype=torch.float64, device=dev)
    sums = torch.zeros((N, 2), dtype=torch.float64, device=dev)
    blocks = list(_blocks(0, n, plan.rows))
    for start, stop in blocks:
        C = reps.rows(slice(None), start, stop, buffer, sums)
        if first < N:
            C -= C.mean(dim=0)
            for lo, hi in _blocks(0, N, plan.batch):
                sq[lo:hi] += torch.einsum("ij,ij->i", C[lo:hi], C[lo:hi])
            _add_gram(G, C, first)
    if first == N:
        return 0, sums.cpu().numpy()
    sq_host = sq.cpu().numpy()
    D2, (rows, cols) = _gram_identity(G.cpu().numpy(), sq_host[first:], sq_host, first)
    del G
    if len(rows):
        pairs = torch.as_tensor(np.stack([rows + first, cols], axis=1), device=dev)
        if len(blocks) == 1:
            D2[rows, cols] = _direct(C, pairs, plan.batch)
        else:
            D2[rows, cols] = _direct_streamed(reps, pairs, blocks, buffer)
    D[first:] = _distances(D2, first)
    D[:, first:] = D[first:].T
    n_new = N - first
    return n_new * first + n_new * (n_new - 1) // 2, sums.cpu().numpy()


def cross_distances(
    new: list[np.ndarray],
    reference: list[np.ndarray],
    settings: OperatorSettings,
    *,
    memory_budget_bytes: int,
    device: str = "auto",
) -> np.ndarray:
    """Distances (m, N) from m new representations to N reference ones (a map's networks),
    without the N x N block: operators are built in row blocks as in :func:`distance_matrix`,
    centred on the new networks' mean, and only the m x N Gram block is accumulated."""
    import torch

    m, N = len(new), len(reference)
    dev = torch.device(_resolve_device(device))
    Y = _stack([centred(X, settings.normalization) for X in [*new, *reference]])
    n = Y.shape[1]
    budget = memory_budget_bytes
    if dev.type == "cuda":
        budget = min(budget, int(0.9 * torch.cuda.mem_get_info()[0]) - Y.nbytes)
    plan = plan_blocks(m + N, n, settings, budget, result_entries=m * (m + N))
    reps = _Representations(torch.from_numpy(Y).to(dev), settings, plan.batch)
    buffer = torch.empty((m + N) * plan.rows * n, dtype=torch.float64, device=dev)
    G = torch.zeros((m, N), dtype=torch.float64, device=dev)
    sq = torch.zeros(m + N, dtype=torch.float64, device=dev)
    blocks = list(_blocks(0, n, plan.rows))
    for start, stop in blocks:
        C = reps.rows(slice(None), start, stop, buffer)
        C -= C[:m].mean(dim=0)
        for lo, hi in _blocks(0, m + N, plan.batch):
            sq[lo:hi] += torch.einsum("ij,ij->i", C[lo:hi], C[lo:hi])
        for lo, hi in _blocks(m, m + N, plan.batch):
            G[:, lo - m : hi - m].addmm_(C[:m], C[lo:hi].T)
    sq_host = sq.cpu().numpy()
    D2, (rows, cols) = _gram_identity(G.cpu().numpy(), sq_host[:m], sq_host[m:], None)
    if len(rows):
        pairs = torch.as_tensor(np.stack([rows, cols + m], axis=1), device=dev)
        if len(blocks) == 1:
            D2[rows, cols] = _direct(C, pairs, plan.batch)
        else:
            D2[rows, cols] = _direct_streamed(reps, pairs, blocks, buffer)
    return _distances(D2, None)


class _Representations:
    """Centred representations (N, n, d) on the device and their kernel scales, from which
    blocks of operator rows are built ``batch`` networks at a time."""

    def __init__(self, Y: torch.Tensor, settings: OperatorSettings, batch: int) -> None:
        import torch

        self.Y, self.settings, self.batch = Y, settings, batch
        self.scales = torch.cat(
            [torch.zeros(0, dtype=Y.dtype, device=Y.device)]
            + [kernel_scales(Y[lo:hi], settings) for lo, hi in _blocks(0, len(Y), batch)]
        )

    def rows(
        self,
        models: slice | torch.Tensor,
        start: int,
        stop: int,
        buffer: torch.Tensor,
        sums: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Rows start:stop of the chosen networks' operators, one flat row per network in the
        head of ``buffer``; their diagnostic sums are added to ``sums``."""
        Y, scales = self.Y[models], self.scales[models]
        n = Y.shape[1]
        C = buffer[: len(Y) * (stop - start) * n].view(len(Y), stop - start, n)
        for lo, hi in _blocks(0, len(Y), self.batch):
            one_step = operator_rows(Y[lo:hi], scales[lo:hi], self.settings, start, stop, C[lo:hi])
            if sums is not None:
                sums[lo:hi] += diagnostic_sums(one_step, start)
        return C.view(len(Y), -1)


def _add_gram(G: torch.Tensor, C: torch.Tensor, first: int) -> None:
    """G += C[first:] @ C.T, skipping most of the lower triangle of the new-by-new square
    (never read: it is mirrored from the upper one)."""
    N = len(C)
    step = max(1, -(-(N - first) // 4))
    for lo, hi in _blocks(first, N, step):
        if first:
            G[lo - first : hi - first, :first].addmm_(C[lo:hi], C[:first].T)
        G[lo - first : hi - first, lo:].addmm_(C[lo:hi], C[lo:].T)


def _direct(C: torch.Tensor, pairs: torch.Tensor, batch: int) -> np.ndarray:
    """||C_i - C_j||^2 for each pair (i, j), ``batch`` pairs at a time."""
    import torch

    out = [torch.zeros(0, dtype=C.dtype, device=C.device)]
    for lo, hi in _blocks(0, len(pairs), batch):
        diff = C[pairs[lo:hi, 0]] - C[pairs[lo:hi, 1]]
        out.append(torch.einsum("ij,ij->i", diff, diff))
    return torch.cat(out).cpu().numpy()


def _direct_streamed(
    reps: _Representations,
    pairs: torch.Tensor,
    blocks: list[tuple[int, int]],
    buffer: torch.Tensor,
) -> np.ndarray:
    """:func:`_direct` when operators do not stay resident: a second pass rebuilds the blocks
    of only the networks in these pairs."""
    import torch

    involved, local = torch.unique(pairs, sorted=True, return_inverse=True)
    total = np.zeros(len(pairs))
    for start, stop in blocks:
        C = reps.rows(involved, start, stop, buffer)
        total += _direct(C, local, reps.batch)
    return total


def _blocks(start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    for lo in range(start, stop, size):
        yield lo, min(lo + size, stop)
