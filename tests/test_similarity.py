"""CKA, RSA and Procrustes distances: known answers, slow references, blocks, rsatoolbox."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import pdist
from scipy.stats import ortho_group, spearmanr

from nnmanifold.geometry import similarity
from nnmanifold.geometry.diffusion import normalize
from nnmanifold.geometry.similarity import KINDS, distance_matrix

N_PROBE = 12
#: Ample memory: every network's features in one block.
BUDGET = 2**30


def zoo(widths: tuple[int, ...] = (3, 5, 8, 16, 5, 2, 9), seed: int = 0) -> list[np.ndarray]:
    """Related representations of one probe set with different widths (16 > N_PROBE)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(N_PROBE, 4))
    return [
        np.maximum(base @ rng.normal(size=(4, w)) + 0.7 * rng.normal(size=(N_PROBE, w)), 0)
        for w in widths
    ]


def cka_slow(X: np.ndarray, Y: np.ndarray, normalization: str) -> float:
    """1 - ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on centred normalised representations."""
    X = normalize(X, normalization)
    Y = normalize(Y, normalization)
    X, Y = X - X.mean(0), Y - Y.mean(0)
    return 1 - np.linalg.norm(Y.T @ X) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


def rsa_slow(X: np.ndarray, Y: np.ndarray, normalization: str) -> float:
    """1 - Spearman rho of the Euclidean RDMs' upper triangles (scipy)."""
    rdm_x, rdm_y = (pdist(normalize(Z, normalization)) for Z in (X, Y))
    if normalization == "median":
        rdm_x, rdm_y = rdm_x / np.median(rdm_x), rdm_y / np.median(rdm_y)
    return 1 - spearmanr(rdm_x, rdm_y).statistic


def procrustes_slow(X: np.ndarray, Y: np.ndarray, normalization: str) -> float:
    """||A Q - B||_F with scipy's optimal rotation Q, centred, unit-norm, zero-padded."""
    A, B = (normalize(Z, normalization) for Z in (X, Y))
    A, B = A - A.mean(0), B - B.mean(0)
    A, B = A / np.linalg.norm(A), B / np.linalg.norm(B)
    width = max(A.shape[1], B.shape[1])
    A = np.pad(A, ((0, 0), (0, width - A.shape[1])))
    B = np.pad(B, ((0, 0), (0, width - B.shape[1])))
    Q, _ = orthogonal_procrustes(A, B)
    return float(np.linalg.norm(A @ Q - B))


SLOW = {"cka": cka_slow, "rsa": rsa_slow, "procrustes": procrustes_slow}


def slow_matrix(reps: list[np.ndarray], kind: str, normalization: str) -> np.ndarray:
    N = len(reps)
    D = np.zeros((N, N))
    for i in range(N):
        for j in range(N):
            if i != j:
                D[i, j] = SLOW[kind](reps[i], reps[j], normalization)
    return D


def rotated_scaled(X: np.ndarray, scale: float, seed: int) -> np.ndarray:
    return scale * X @ ortho_group.rvs(X.shape[1], random_state=seed)


@pytest.mark.parametrize("normalization", ["none", "l2"])
def test_cka_of_rotated_scaled_copy_is_one(normalization: str) -> None:
    X = zoo()[3]
    D = distance_matrix([X, rotated_scaled(X, 3.7, seed=1), zoo()[2]], "cka", normalization, BUDGET)
    assert D.distances[0, 1] == pytest.approx(0.0, abs=1e-12)
    assert D.distances[0, 2] > 0.01


def test_procrustes_of_rotation_is_zero_despite_cancellation() -> None:
    X = zoo()[3]
    R = rotated_scaled(X, 1.0, seed=2)
    nudged = R + 1e-9 * np.random.default_rng(3).normal(size=R.shape)
    D = distance_matrix([X, R, nudged], "procrustes", "none", BUDGET).distances
    assert D[0, 1] == pytest.approx(0.0, abs=1e-13)
    # sqrt(2 - 2 nuclear) alone would be ~1e-8 here: the near pair is recomputed directly.
    assert D[0, 2] == pytest.approx(procrustes_slow(X, nudged, "none"), rel=1e-6)


def test_rsa_of_identical_rdms_is_one() -> None:
    X = zoo()[4]
    shifted = X @ ortho_group.rvs(X.shape[1], random_state=4) + 5.0
    D = distance_matrix([X, shifted, zoo()[0]], "rsa", "none", BUDGET).distances
    assert D[0, 1] == pytest.approx(0.0, abs=1e-12)
    assert D[0, 2] > 0.01


@pytest.mark.parametrize("normalization", ["none", "l2", "standardize", "median"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_slow_reference(kind: str, normalization: str) -> None:
    reps = zoo()
    D = distance_matrix(reps, kind, normalization, BUDGET).distances
    assert np.abs(D - slow_matrix(reps, kind, normalization)).max() <= 1e-10
    assert np.array_equal(D, D.T)
    assert np.all(np.diag(D) == 0.0)
    assert np.all(D[~np.eye(len(D), dtype=bool)] > 0)


def test_cka_cross_product_route_matches_slow_reference() -> None:
    # Narrow representations of many probe points take the d x d route (n w^2 < n(n+1)/2).
    rng = np.random.default_rng(5)
    reps = [rng.normal(size=(40, w)) for w in (2, 3, 4, 3)]
    D = distance_matrix(reps, "cka", "l2", BUDGET).distances
    assert np.abs(D - slow_matrix(reps, "cka", "l2")).max() <= 1e-10


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_budget_forces_blocks_and_agrees(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reps = zoo(widths=(3, 5, 8, 16, 5, 2, 9, 4, 7))
    whole = distance_matrix(reps, kind, "l2", BUDGET).distances
    sizes: list[int] = []

    def recording_blocks(start: int, stop: int, size: int):
        sizes.append(size)
        return similarity_blocks(start, stop, size)

    similarity_blocks = similarity._blocks
    monkeypatch.setattr(similarity, "_blocks", recording_blocks)
    budget = 2 * len(reps) ** 2 * 8 + 7_000
    blocked = distance_matrix(reps, kind, "l2", budget).distances
    assert 1 <= max(sizes) < len(reps) // 2
    assert np.abs(blocked - whole).max() <= 1e-12
    assert np.abs(blocked - slow_matrix(reps, kind, "l2")).max() <= 1e-10
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        distance_matrix(reps, kind, "l2", 2 * len(reps) ** 2 * 8)


def test_procrustes_above_the_cap_uses_a_seeded_subset() -> None:
    reps = zoo()
    capped = distance_matrix(reps, "procrustes", "l2", BUDGET, max_networks=4, seed=7)
    again = distance_matrix(reps, "procrustes", "l2", BUDGET, max_networks=4, seed=7)
    assert len(capped.networks) == 4
    assert np.array_equal(capped.networks, np.sort(capped.networks))
    assert np.array_equal(capped.networks, again.networks)
    full = slow_matrix(reps, "procrustes", "l2")
    assert np.abs(capped.distances - full[np.ix_(capped.networks, capped.networks)]).max() <= 1e-10
    assert len(distance_matrix(reps, "cka", "l2", BUDGET, max_networks=4).networks) == len(reps)


@pytest.mark.parametrize("kind", KINDS)
def test_constant_representation_is_at_distance_one(kind: str) -> None:
    reps = [*zoo()[:3], np.ones((N_PROBE, 5))]
    D = distance_matrix(reps, kind, "none", BUDGET).distances
    assert np.isfinite(D).all()
    assert np.allclose(D[3, :3], 1.0, atol=1e-12)


def test_rejects_bad_input() -> None:
    reps = zoo()
    with pytest.raises(ValueError, match="kind"):
        distance_matrix(reps, "cca", "l2", BUDGET)
    with pytest.raises(ValueError, match="n_probe"):
        distance_matrix([reps[0], reps[1][:-1]], "cka", "l2", BUDGET)
    with pytest.raises(ValueError, match="NaN"):
        distance_matrix([reps[0], np.full_like(reps[1], np.nan)], "rsa", "l2", BUDGET)
    with pytest.raises(ValueError, match="normalization"):
        distance_matrix(reps, "procrustes", "zscore", BUDGET)
    with pytest.raises(ValueError, match="max_networks"):
        distance_matrix(reps, "procrustes", "l2", BUDGET, max_networks=1)


def test_agrees_with_rsatoolbox() -> None:
    """RSA equals 1 - rsatoolbox's Spearman RDM comparison; Procrustes^2 = 2 - 2 Bures similarity.

    rsatoolbox's Bures similarity of the double-centred kernels -RDM/2 is the nuclear norm of
    A^T B over the norms, the Procrustes similarity (Harvey et al., 2023). Its RDMs come from the
    Gram identity, which breaks exact ties, so the data here have no duplicate probe points.
    """
    rsatoolbox = pytest.importorskip("rsatoolbox")
    rng = np.random.default_rng(6)
    reps = [normalize(rng.normal(size=(N_PROBE, w)), "l2") for w in (3, 5, 16, 8)]
    rdms = rsatoolbox.rdm.concat(
        [rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(X), method="euclidean") for X in reps]
    )
    upper = np.triu_indices(len(reps), k=1)
    spearman = rsatoolbox.rdm.compare(rdms, rdms, method="spearman")
    rsa = distance_matrix(reps, "rsa", "none", BUDGET).distances
    assert np.abs(rsa[upper] - (1 - spearman[upper])).max() <= 1e-10
    bures = rsatoolbox.rdm.compare(rdms, rdms, method="bures")
    procrustes = distance_matrix(reps, "procrustes", "none", BUDGET).distances
    # rsatoolbox sums square roots of eigenvalues of A^1/2 B A^1/2: accurate to ~sqrt(eps).
    assert np.abs(procrustes[upper] ** 2 - (2 - 2 * bures[upper])).max() <= 1e-6


def test_average_ranks_are_scipys_rankdata_with_ties() -> None:
    from scipy.stats import rankdata

    rng = np.random.default_rng(4)
    for values in (rng.integers(0, 5, 40).astype(float), rng.normal(size=33), np.zeros(7)):
        assert np.array_equal(similarity.average_ranks(values), rankdata(values))


def test_a_near_pair_across_blocks_of_two_widths_is_recomputed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A network and a rotated copy of it one unit wider (a unit of almost no variance), in
    blocks of different widths: the near pair is recomputed directly in the wider width."""
    monkeypatch.setattr(similarity, "TILE_BLOCK", 1)
    X = zoo()[2]  # 8 units on 12 inputs
    quiet = 1e-9 * np.random.default_rng(3).normal(size=(len(X), 1))
    nudged = rotated_scaled(np.hstack([X, quiet]), 1.0, seed=4)
    D = distance_matrix([X, nudged, zoo()[3]], "procrustes", "none", BUDGET).distances
    assert D[0, 1] == pytest.approx(procrustes_slow(X, nudged, "none"), rel=1e-6)
    assert D[0, 1] == D[1, 0] and D[0, 1] < 1e-8 < D[0, 2]


def test_blocks_by_width_agree_with_the_slow_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks of two or three networks in order of width, each padded to its own widest.
    monkeypatch.setattr(similarity, "TILE_BLOCK", 3)
    reps = zoo(widths=(3, 16, 5, 9, 2, 12, 7, 4))
    D = distance_matrix(reps, "procrustes", "l2", BUDGET).distances
    assert np.abs(D - slow_matrix(reps, "procrustes", "l2")).max() <= 1e-10
    monkeypatch.setattr(similarity, "TILE_BLOCK", 2)
    rng = np.random.default_rng(5)
    narrow = [rng.normal(size=(40, w)) for w in (2, 5, 4, 3, 1)]  # the CKA cross-product route
    D = distance_matrix(narrow, "cka", "l2", BUDGET).distances
    assert np.abs(D - slow_matrix(narrow, "cka", "l2")).max() <= 1e-10


def test_the_baselines_step_reads_each_network_it_compares_once(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Procrustes alone reads only its subset; all three kinds read every network once and
    write each kind's distances as ``distance_matrix`` computes them."""
    from nnmanifold.core import storage
    from nnmanifold.core.paths import Layout
    from nnmanifold.core.settings import BaselineSettings, GeometrySettings
    from nnmanifold.steps import geometry as geometry_steps

    layout, reps = Layout(tmp_path), zoo(widths=(3, 5, 8, 16, 5, 2, 9, 4, 7, 6, 3, 8))
    ids = [f"m{k:02d}" for k in range(len(reps))]
    probe = {
        "indices": np.arange(N_PROBE),
        "labels": np.zeros(N_PROBE),
        "x": np.zeros((N_PROBE, 2)),
    }
    storage.write_probe(layout.probe, {**probe, "hash": "p", "dataset": "d", "chance_accuracy": 1})
    for m, X in zip(ids, reps, strict=True):
        storage.write_activations(
            layout.activations(m), {"fc1": X}, model_id=m, probe_hash="p", status="ok"
        )
    storage.write_json(layout.train_manifest("b0"), [{"model_id": m, "status": "ok"} for m in ids])
    read = storage.read_activations
    opened: list[str] = []
    monkeypatch.setattr(storage, "read_activations", lambda p, *a: opened.append(p) or read(p, *a))
    geometry = GeometrySettings(None, 0.5, "l2", 1, 64, "cpu")
    as32 = [X.astype(np.float32) for X in reps]  # activations are stored as float32

    geometry_steps.baselines(layout, ["b0"], geometry, BaselineSettings(("procrustes",), 5))
    D, written, _ = storage.read_distances(layout.distances_of("procrustes"))
    expected = distance_matrix(as32, "procrustes", "l2", BUDGET, max_networks=5)
    assert len(opened) == 5 and written == [ids[i] for i in expected.networks]
    assert np.abs(D - expected.distances).max() <= 1e-12

    opened.clear()
    kinds = ("cka", "rsa", "procrustes")
    geometry_steps.baselines(layout, ["b0"], geometry, BaselineSettings(kinds, 5))
    assert sorted(map(str, opened)) == sorted(str(layout.activations(m)) for m in ids)
    for kind in kinds:
        D, written, attrs = storage.read_distances(layout.distances_of(kind))
        expected = distance_matrix(as32, kind, "l2", BUDGET, max_networks=5)
        assert attrs["kind"] == kind and written == [ids[i] for i in expected.networks]
        assert np.abs(D - expected.distances).max() <= 1e-12


def test_procrustes_near_pairs_keep_twelve_digits_across_the_recompute_edge() -> None:
    """Near-rotations from d^2 / 2 = 2e-3 down to 2e-8 (both unit norm): sqrt(2 - 2 |A^T B|_*)
    alone loses digits as about 5e-17 / ratio (past 1e-12 below ratio ~5e-5); with pairs under
    RECOMPUTE_RATIO (1e-4) recomputed as ||A Q - B||, every distance keeps 12."""
    X = zoo()[3]
    R = rotated_scaled(X, 1.0, seed=2)
    noise = np.random.default_rng(3).normal(size=R.shape)
    noise *= np.linalg.norm(X - X.mean(0)) / np.linalg.norm(noise)
    reps = [X] + [R + 10.0 ** -(k / 2) * noise for k in range(2, 9)]
    D = distance_matrix(reps, "procrustes", "none", BUDGET).distances[0, 1:]
    expected = np.array([procrustes_slow(X, Y, "none") for Y in reps[1:]])
    assert (expected**2 / 2).max() > 1e-3 and (expected**2 / 2).min() < 1e-7
    np.testing.assert_allclose(D, expected, rtol=1e-12, atol=0)
