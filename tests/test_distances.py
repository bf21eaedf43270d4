"""Network distances against a nested-loop reference; streaming, cache and file format."""

from pathlib import Path

import numpy as np
import pytest
import torch

from nnmanifold.core.storage import CorruptFileError, read_distances, write_distances
from nnmanifold.geometry.diffusion import (
    OperatorSettings,
    diffusion_operator,
    kernel_diagnostics,
    transition_matrix,
)
from nnmanifold.geometry.distances import (
    distance_matrix,
    fingerprint,
    pairwise_frobenius,
    plan_blocks,
)

N_POINTS = 20
#: Room for every operator of these tests at once.
BUDGET = 2**26
SETTINGS = OperatorSettings()
ATTRS = fingerprint(SETTINGS, "p1", "fc2")


def representations(n_models: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Related representations of one probe set: a shared structure plus per-model noise."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(N_POINTS, 6))
    return {
        f"m{seed}-{i:02d}": base + 0.4 * rng.normal(size=(N_POINTS, 6)) for i in range(n_models)
    }


def varied_zoo() -> dict[str, np.ndarray]:
    """Eight networks, one wider (zero-padded in batches), and two near-identical copies of
    the first: representations nudged by 1e-6 and 1e-5."""
    reps = representations(8)
    rng = np.random.default_rng(5)
    first = reps["m0-00"]
    reps["m0-07"] = np.hstack([reps["m0-07"], 0.3 * rng.normal(size=(N_POINTS, 3))])
    reps["near-6"] = first + 1e-6 * rng.normal(size=first.shape)
    reps["near-5"] = first + 1e-5 * rng.normal(size=first.shape)
    return reps


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


def reference(reps: dict[str, np.ndarray], settings: OperatorSettings) -> np.ndarray:
    """Naive distances between the NumPy reference operators."""
    ops = np.stack([diffusion_operator(X, settings).ravel() for X in reps.values()])
    return naive(ops, ops)


def max_relative_error(D: np.ndarray, reference: np.ndarray) -> float:
    positive = reference > 0
    return float(np.max(np.abs(D[positive] - reference[positive]) / reference[positive]))


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
    reps = varied_zoo()
    for budget in (BUDGET, budget_for_rows(len(reps), SETTINGS, 3)):
        cuda = distance_matrix(reps, SETTINGS, memory_budget_bytes=budget, device="cuda")
        assert max_relative_error(cuda.distances, reference(reps, SETTINGS)) <= 1e-9


def budget_for_rows(n_models: int, settings: OperatorSettings, rows: int) -> int:
    """The smallest budget (in steps of 500 bytes) whose plan builds ``rows`` rows a block."""
    budget = 500
    while not fits(n_models, settings, budget) or (
        plan_blocks(n_models, N_POINTS, settings, budget).rows < rows
    ):
        budget += 500
    return budget


def fits(n_models: int, settings: OperatorSettings, budget: int) -> bool:
    try:
        plan_blocks(n_models, N_POINTS, settings, budget)
    except ValueError:
        return False
    return True


SETTINGS_CASES = [
    OperatorSettings(),
    OperatorSettings(sigma=2.0, normalization="standardize"),
    OperatorSettings(sigma="median", t=2),
    OperatorSettings(sigma="median", normalization="median", t=3),
]


@pytest.mark.parametrize(
    "settings", SETTINGS_CASES, ids=lambda s: f"{s.sigma}-{s.normalization}-{s.t}"
)
@pytest.mark.parametrize("rows", [N_POINTS, 7, 1])
def test_distances_from_representations_match_naive(settings: OperatorSettings, rows: int) -> None:
    """Operators resident (all rows) or streamed in blocks of 7 or 1 rows, near-identical
    networks and a wider one included; diagnostics of every model's one-step operator."""
    reps = varied_zoo()
    budget = budget_for_rows(len(reps), settings, rows)
    assert plan_blocks(len(reps), N_POINTS, settings, budget).rows == rows
    result = distance_matrix(reps, settings, memory_budget_bytes=budget, device="cpu")
    expected = reference(reps, settings)
    assert 0 < expected[0, -2] < 1e-5
    assert max_relative_error(result.distances, expected) <= 1e-9
    assert np.array_equal(result.distances, result.distances.T)
    assert np.all(np.diag(result.distances) == 0.0)
    assert result.model_ids == list(reps)
    assert result.n_computed == len(reps) * (len(reps) - 1) // 2
    for X, found in zip(reps.values(), result.diagnostics, strict=True):
        assert found == pytest.approx(kernel_diagnostics(transition_matrix(X, settings)), rel=1e-12)


@pytest.mark.parametrize("rows", [N_POINTS, 3])
def test_gram_cancellation_is_recomputed(rows: int) -> None:
    """Networks 1e-10 apart: the Gram identity cancels every digit, the direct recompute (from
    the resident operators, or a second streamed pass) keeps all but the operators' own
    rounding (1e-16 an entry, so 1e-15 absolute: a few percent of this distance)."""
    reps = representations(6)
    first = reps["m0-00"]
    reps["twin"] = first + 1e-10 * np.random.default_rng(3).normal(size=first.shape)
    budget = budget_for_rows(len(reps), SETTINGS, rows)
    D = distance_matrix(reps, SETTINGS, memory_budget_bytes=budget, device="cpu").distances
    expected = reference(reps, SETTINGS)
    assert 0 < expected[0, -1] < 1e-9
    assert abs(D[0, -1] - expected[0, -1]) <= 1e-15
    assert max_relative_error(D[:-1, :-1], expected[:-1, :-1]) <= 1e-9


def test_budget_too_small_names_the_minimum() -> None:
    reps = representations(10)
    with pytest.raises(ValueError, match="at least") as err:
        distance_matrix(reps, SETTINGS, memory_budget_bytes=1000)
    minimum = int(str(err.value).rsplit(" ", 1)[-1])
    assert distance_matrix(reps, SETTINGS, memory_budget_bytes=minimum).n_computed == 45
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        distance_matrix(reps, SETTINGS, memory_budget_bytes=minimum - 1)


def test_mixed_probe_sets_are_refused() -> None:
    reps = representations(3)
    reps["short"] = reps["m0-00"][:-1]
    with pytest.raises(ValueError, match="one probe set"):
        distance_matrix(reps, SETTINGS, memory_budget_bytes=BUDGET)


def test_incremental_computes_only_new_pairs(tmp_path: Path) -> None:
    cache = tmp_path / "distances.h5"
    reps = representations(10)
    cached = dict(memory_budget_bytes=BUDGET, cache_path=cache, attrs=ATTRS)
    before = distance_matrix(reps, SETTINGS, **cached)
    assert before.n_computed == 45
    reps |= representations(3, seed=1)
    tight = budget_for_rows(len(reps), SETTINGS, 2)
    after = distance_matrix(reps, SETTINGS, **(cached | {"memory_budget_bytes": tight}))
    assert after.n_computed == 3 * 10 + 3
    full = distance_matrix(reps, SETTINGS, memory_budget_bytes=BUDGET)
    assert full.n_computed == 13 * 12 // 2
    assert max_relative_error(after.distances, full.distances) <= 1e-10
    assert max_relative_error(after.distances, reference(reps, SETTINGS)) <= 1e-9
    assert np.array_equal(after.distances[:10, :10], before.distances)
    assert np.array_equal(after.distances, after.distances.T)
    again = distance_matrix(reps, SETTINGS, **cached)
    assert again.n_computed == 0
    for found, expected in zip(again.diagnostics, full.diagnostics, strict=True):
        assert found == pytest.approx(expected, rel=1e-12)


def test_cache_follows_requested_order_and_changed_models(tmp_path: Path) -> None:
    cache = tmp_path / "distances.h5"
    reps = representations(10)
    cached = dict(memory_budget_bytes=BUDGET, cache_path=cache, attrs=ATTRS)
    full = distance_matrix(reps, SETTINGS, **cached).distances
    shuffled = dict(reversed(reps.items()))
    again = distance_matrix(shuffled, SETTINGS, **cached)
    assert again.n_computed == 0
    assert np.array_equal(again.distances, full[::-1, ::-1])
    changed = list(reps)[4]
    reps[changed] = reps[changed] + 0.2
    assert distance_matrix(reps, SETTINGS, **cached).n_computed == len(reps) - 1


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
    tmp_path: Path, settings: OperatorSettings, probe_hash: str, layer: str
) -> None:
    cache = tmp_path / "distances.h5"
    reps = representations(10)
    cached = dict(memory_budget_bytes=BUDGET, cache_path=cache)
    distance_matrix(reps, SETTINGS, attrs=ATTRS, **cached)
    assert distance_matrix(reps, SETTINGS, attrs=ATTRS, **cached).n_computed == 0
    attrs = fingerprint(settings, probe_hash, layer)
    assert distance_matrix(reps, settings, attrs=attrs, **cached).n_computed == 45
    _, _, found = read_distances(cache)
    assert found["settings_key"] == settings.key() and found["layer"] == layer


def test_cache_needs_the_fingerprint_of_these_settings(tmp_path: Path) -> None:
    cached = dict(memory_budget_bytes=BUDGET, cache_path=tmp_path / "distances.h5")
    with pytest.raises(ValueError, match="fingerprint"):
        distance_matrix(representations(3), OperatorSettings(sigma=0.9), attrs=ATTRS, **cached)
    with pytest.raises(ValueError, match="fingerprint"):
        distance_matrix(representations(3), SETTINGS, **cached)


def test_round_trip(tmp_path: Path) -> None:
    result = distance_matrix(representations(10), SETTINGS, memory_budget_bytes=BUDGET)
    path = tmp_path / "geometry" / "distances.h5"
    write_distances(path, result.distances, result.model_ids, ATTRS)
    D, ids, attrs = read_distances(path)
    assert np.array_equal(D, result.distances) and D.dtype == np.float64
    assert ids == result.model_ids
    assert attrs == ATTRS
    assert set(attrs) >= {"sigma", "normalization", "t", "settings_key", "probe_hash", "layer"}


def test_truncated_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "distances.h5"
    reps = representations(10)
    cached = dict(memory_budget_bytes=BUDGET, cache_path=path, attrs=ATTRS)
    result = distance_matrix(reps, SETTINGS, **cached)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="distances.h5"):
        read_distances(path)
    assert distance_matrix(reps, SETTINGS, **cached).n_computed == result.n_computed
    assert read_distances(path)[1] == result.model_ids
    with pytest.raises(FileNotFoundError):
        read_distances(tmp_path / "missing.h5")


def test_near_pairs_keep_twelve_digits_across_the_recompute_edge() -> None:
    """Pairs from d^2 / scale = 3e-3 down to 3e-9 (scale = |a - r|^2 + |b - r|^2, r the mean
    operator): the Gram identity alone loses digits as the ratio falls (past 1e-12 below ratio
    1e-5 here); with pairs under RECOMPUTE_RATIO (1e-4) recomputed, every distance keeps 12."""
    ops = [diffusion_operator(X, SETTINGS) for X in representations(8).values()]
    ops += [nudge(ops[0], 10.0 ** -(k / 2), seed=k) for k in range(6, 16)]
    A = np.stack(ops).reshape(len(ops), -1)
    expected = naive(A[:1], A[8:])[0]
    centred = A - A.mean(axis=0)
    sq = np.einsum("ij,ij->i", centred, centred)
    ratio = expected**2 / (sq[0] + sq[8:])
    assert ratio.max() > 1e-3 and ratio.min() < 1e-8
    gram = np.sqrt(np.maximum(sq[0] + sq[8:] - 2 * centred[8:] @ centred[0], 0.0))
    assert np.max(np.abs(gram - expected) / expected) > 1e-10  # the near pairs need the recompute
    D = pairwise_frobenius(A)[0, 8:]
    np.testing.assert_allclose(D, expected, rtol=1e-12, atol=0)
