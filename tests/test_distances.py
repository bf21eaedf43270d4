"""Network distances against a nested-loop reference; store, streaming, cache and file format."""

from pathlib import Path

import numpy as np
import pytest
import torch

from nnmanifold.diffusion import (
    OperatorSettings,
    diffusion_operator,
    kernel_diagnostics,
    transition_matrix,
)
from nnmanifold.distances import (
    distance_matrix,
    pairwise_frobenius,
    store_fingerprint,
    store_operator,
)
from nnmanifold.storage import CorruptFileError, OperatorStore, read_distances, write_distances

N_POINTS = 20
#: Room for every operator of these tests at once.
BUDGET = 2**26
SETTINGS = OperatorSettings()


def representations(n_models: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Related representations of one probe set: a shared structure plus per-model noise."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(N_POINTS, 6))
    return {
        f"m{seed}-{i:02d}": base + 0.4 * rng.normal(size=(N_POINTS, 6)) for i in range(n_models)
    }


def nudge(P: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """P plus tiny positive noise, rows re-normalised: a near-identical operator."""
    Q = P + scale * np.random.default_rng(seed).random(P.shape)
    return Q / Q.sum(axis=1, keepdims=True)


def zoo_operators(n_models: int = 8) -> np.ndarray:
    """Operators of a small zoo, the last two near-identical copies of the first."""
    ops = [diffusion_operator(X, OperatorSettings()) for X in representations(n_models).values()]
    ops += [nudge(ops[0], 1e-7, seed=1), nudge(ops[0], 1e-10, seed=2)]
    return np.stack(ops).reshape(len(ops), -1)


def naive(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Slow, obviously-correct reference: one np.linalg.norm per pair."""
    return np.array([[np.linalg.norm(a - b) for b in B] for a in A])


def max_relative_error(D: np.ndarray, reference: np.ndarray) -> float:
    positive = reference > 0
    return float(np.max(np.abs(D[positive] - reference[positive]) / reference[positive]))


def open_store(
    path: Path, settings: OperatorSettings, probe_hash: str, layer: str
) -> OperatorStore:
    return OperatorStore(path, store_fingerprint(settings, probe_hash, layer))


def add(
    store: OperatorStore, model_id: str, X: np.ndarray, settings: OperatorSettings = SETTINGS
) -> bool:
    return store_operator(store, model_id, X, settings)


@pytest.fixture
def store(tmp_path: Path) -> OperatorStore:
    store = open_store(tmp_path / "ops.h5", OperatorSettings(), "p1", "fc2")
    for model_id, X in representations(10).items():
        add(store, model_id, X)
    return store


def test_matches_naive_including_near_identical_pairs() -> None:
    A = zoo_operators()
    reference = naive(A, A)
    assert 0 < reference[0, -1] < 1e-7 < reference[0, -2] < 1e-4
    D = pairwise_frobenius(A)
    assert max_relative_error(D, reference) <= 1e-6
    assert abs(D[0, -1] - reference[0, -1]) <= 1e-6 * reference[0, -1]


def test_plain_float32_gram_fails_on_the_near_pair() -> None:
    A = zoo_operators().astype(np.float32)
    sq = np.einsum("ij,ij->i", A, A)
    gram = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * A @ A.T, 0))
    assert max_relative_error(gram, naive(A, A).astype(np.float64)) > 1e-2


def test_rectangular_matches_naive() -> None:
    A = zoo_operators()
    D = pairwise_frobenius(A[:3], A[2:])
    assert D.shape == (3, len(A) - 2)
    assert max_relative_error(D, naive(A[:3], A[2:])) <= 1e-6
    assert D[2, 0] == 0.0


def test_symmetric_with_zero_diagonal() -> None:
    D = pairwise_frobenius(zoo_operators())
    assert np.array_equal(D, D.T)
    assert np.all(np.diag(D) == 0.0)
    assert np.all(D[~np.eye(len(D), dtype=bool)] > 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu() -> None:
    A = zoo_operators()
    cpu = pairwise_frobenius(A, device="cpu")
    assert max_relative_error(pairwise_frobenius(A, device="cuda"), cpu) <= 1e-9


def test_store_reuses_and_invalidates(tmp_path: Path, store: OperatorStore) -> None:
    X = representations(10)["m0-03"]
    assert not add(store, "m0-03", X)
    assert add(store, "m0-03", X + 0.1)
    assert np.array_equal(store.operator("m0-03"), diffusion_operator(X + 0.1, SETTINGS))
    assert len(store.model_ids()) == 10
    reopened = open_store(store.path, OperatorSettings(), "p1", "fc2")
    assert len(reopened.model_ids()) == 10
    with pytest.raises(ValueError, match="probe set"):
        store.put("bigger", np.eye(N_POINTS + 1))
    with pytest.raises(ValueError, match="HDF5"):
        store.put("a/b", np.eye(N_POINTS))
    other = open_store(store.path, OperatorSettings(sigma=0.7), "p1", "fc2")
    assert other.model_ids() == []


def test_streamed_with_tiny_budget_equals_in_memory(store: OperatorStore) -> None:
    ids = store.model_ids()
    A = np.stack([store.operator(i) for i in ids]).reshape(len(ids), -1)
    in_memory = pairwise_frobenius(A)
    tiny = distance_matrix(store, ids, memory_budget_bytes=11 * 8 * N_POINTS**2, device="cpu")
    assert tiny.model_ids == ids
    assert tiny.n_computed == len(ids) * (len(ids) - 1) // 2
    assert np.array_equal(tiny.distances, tiny.distances.T)
    assert np.all(np.diag(tiny.distances) == 0.0)
    assert max_relative_error(tiny.distances, in_memory) <= 1e-10
    assert max_relative_error(tiny.distances, naive(A, A)) <= 1e-6
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        distance_matrix(store, ids, memory_budget_bytes=8 * N_POINTS**2)


def test_incremental_computes_only_new_pairs(tmp_path: Path, store: OperatorStore) -> None:
    cache = tmp_path / "distances.h5"
    first = store.model_ids()
    before = distance_matrix(store, first, cache_path=cache, memory_budget_bytes=BUDGET)
    assert before.n_computed == 45
    new = representations(3, seed=1)
    for model_id, X in new.items():
        add(store, model_id, X)
    ids = first + list(new)
    after = distance_matrix(store, ids, cache_path=cache, memory_budget_bytes=10 * 8 * N_POINTS**2)
    assert after.n_computed == 3 * 10 + 3
    full = distance_matrix(store, ids, memory_budget_bytes=BUDGET)
    assert full.n_computed == 13 * 12 // 2
    assert max_relative_error(after.distances, full.distances) <= 1e-10
    assert np.array_equal(after.distances[:10, :10], before.distances)
    assert np.array_equal(after.distances, after.distances.T)
    assert distance_matrix(store, ids, cache_path=cache, memory_budget_bytes=BUDGET).n_computed == 0


def test_cache_follows_requested_order_and_changed_models(
    tmp_path: Path, store: OperatorStore
) -> None:
    cache = tmp_path / "distances.h5"
    ids = store.model_ids()
    full = distance_matrix(store, ids, cache_path=cache, memory_budget_bytes=BUDGET).distances
    shuffled = ids[::-1]
    again = distance_matrix(store, shuffled, cache_path=cache, memory_budget_bytes=BUDGET)
    assert again.n_computed == 0
    assert np.array_equal(again.distances, full[::-1, ::-1])
    add(store, ids[4], representations(10)[ids[4]] + 0.2)
    assert (
        distance_matrix(store, ids, cache_path=cache, memory_budget_bytes=BUDGET).n_computed
        == len(ids) - 1
    )


@pytest.mark.parametrize(
    "settings, probe_hash, layer",
    [
        (OperatorSettings(sigma=0.7), "p1", "fc2"),
        (OperatorSettings(t=2), "p1", "fc2"),
        (OperatorSettings(normalization="median"), "p1", "fc2"),
        (OperatorSettings(), "p2", "fc2"),
        (OperatorSettings(), "p1", "fc1"),
    ],
)
def test_changed_settings_invalidate_cache(
    tmp_path: Path, store: OperatorStore, settings: OperatorSettings, probe_hash: str, layer: str
) -> None:
    cache = tmp_path / "distances.h5"
    distance_matrix(store, cache_path=cache, memory_budget_bytes=BUDGET)
    assert distance_matrix(store, cache_path=cache, memory_budget_bytes=BUDGET).n_computed == 0
    changed = open_store(tmp_path / "other.h5", settings, probe_hash, layer)
    for model_id, X in representations(10).items():
        add(changed, model_id, X, settings)
    result = distance_matrix(changed, cache_path=cache, memory_budget_bytes=BUDGET)
    assert result.n_computed == 45
    _, _, attrs = read_distances(cache)
    assert attrs["settings_key"] == settings.key() and attrs["layer"] == layer


def test_round_trip(tmp_path: Path, store: OperatorStore) -> None:
    result = distance_matrix(store, memory_budget_bytes=BUDGET)
    path = tmp_path / "geometry" / "distances.h5"
    write_distances(path, result.distances, result.model_ids, store.attrs)
    D, ids, attrs = read_distances(path)
    assert np.array_equal(D, result.distances) and D.dtype == np.float64
    assert ids == result.model_ids
    assert attrs == store.attrs
    assert set(attrs) >= {"sigma", "normalization", "t", "settings_key", "probe_hash", "layer"}


def test_truncated_file_is_corrupt(tmp_path: Path, store: OperatorStore) -> None:
    path = tmp_path / "distances.h5"
    result = distance_matrix(store, cache_path=path, memory_budget_bytes=BUDGET)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="distances.h5"):
        read_distances(path)
    assert (
        distance_matrix(store, cache_path=path, memory_budget_bytes=BUDGET).n_computed
        == result.n_computed
    )
    assert read_distances(path)[1] == result.model_ids
    with pytest.raises(FileNotFoundError):
        read_distances(tmp_path / "missing.h5")


def test_truncated_store_is_corrupt(store: OperatorStore) -> None:
    data = store.path.read_bytes()
    store.path.write_bytes(data[:1000])
    with pytest.raises(CorruptFileError, match="delete it"):
        store.model_ids()


def test_prune_drops_models_and_frees_space(store: OperatorStore) -> None:
    keep = store.model_ids()[:4]
    before = store.path.stat().st_size
    kept = {m: store.operator(m) for m in keep}
    assert store.prune(keep) == 6
    assert store.model_ids() == keep
    assert store.path.stat().st_size < 0.6 * before
    for m in keep:
        np.testing.assert_array_equal(store.operator(m), kept[m])
    assert store.prune(keep) == 0


def test_store_keeps_kernel_diagnostics_of_the_one_step_operator(store: OperatorStore) -> None:
    model_id, X = next(iter(representations(10).items()))
    expected = kernel_diagnostics(transition_matrix(X, SETTINGS))
    assert store.diagnostics(model_id) == pytest.approx(expected)
