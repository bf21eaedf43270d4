"""Diffusion operators against slow, obviously-correct references on tiny arrays."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from nnmanifold.geometry.diffusion import (
    MAX_DIAGONAL_MASS,
    OperatorSettings,
    centred,
    degeneracy_warning,
    diagnostic_sums,
    diagnostics_from_sums,
    diffusion_operator,
    kernel,
    kernel_diagnostics,
    kernel_scales,
    normalize,
    operator_rows,
    transition_matrix,
)


@pytest.fixture
def X() -> np.ndarray:
    """Three noisy clusters of 30 points in 8 dimensions, at an arbitrary scale."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    return 5.0 * (np.repeat(centres, 10, axis=0) + 0.3 * rng.normal(size=(30, 8)))


def test_settings_validate_and_hash() -> None:
    assert OperatorSettings().key() == OperatorSettings(sigma=0.5, normalization="l2", t=1).key()
    assert OperatorSettings(sigma=1).key() == OperatorSettings(sigma=1.0).key()
    keys = {
        OperatorSettings().key(),
        OperatorSettings(sigma=0.6).key(),
        OperatorSettings(t=2).key(),
        OperatorSettings(normalization="median").key(),
    }
    assert len(keys) == 4
    with pytest.raises(ValueError, match="normalization"):
        OperatorSettings(normalization="L2")
    with pytest.raises(ValueError, match="sigma"):
        OperatorSettings(sigma=0.0)
    with pytest.raises(ValueError, match="t="):
        OperatorSettings(t=1.5)
    with pytest.raises(ValueError, match="t="):
        OperatorSettings(t=0)


def test_normalize() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 5)) * np.arange(1, 6)
    assert np.allclose(np.linalg.norm(normalize(X, "l2"), axis=1), 1.0)
    Z = normalize(X, "standardize")
    assert np.allclose(Z.mean(axis=0), 0.0) and np.allclose(Z.std(axis=0), 1.0)
    assert np.array_equal(normalize(X, "none"), X)


def test_kernel_matches_loop_reference(X: np.ndarray) -> None:
    settings = OperatorSettings(sigma=0.5, normalization="l2")
    Y = X / np.linalg.norm(X, axis=1, keepdims=True)
    expected = np.array(
        [[np.exp(-np.sum((a - b) ** 2) / (2 * 0.5**2)) for b in Y] for a in Y], dtype=np.float64
    )
    assert np.allclose(kernel(X, settings), expected, rtol=1e-10, atol=1e-14)


def test_median_normalization_makes_median_distance_one(X: np.ndarray) -> None:
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    median = np.median(D[~np.eye(len(D), dtype=bool)])
    W = kernel(X, OperatorSettings(sigma=0.5, normalization="median"))
    assert np.allclose(W, np.exp(-((D / median) ** 2) / 0.5), rtol=1e-10, atol=1e-14)


def test_operator_is_row_stochastic(X: np.ndarray) -> None:
    P = diffusion_operator(X, OperatorSettings())
    assert P.shape == (30, 30) and P.dtype == np.float64
    assert np.all(P >= 0)
    assert np.allclose(P.sum(axis=1), 1.0, atol=1e-12)


def test_diffusion_time_is_matrix_power(X: np.ndarray) -> None:
    P1 = transition_matrix(X, OperatorSettings())
    expected = P1 @ P1 @ P1
    assert np.allclose(diffusion_operator(X, OperatorSettings(t=3)), expected, atol=1e-14)
    assert not np.allclose(expected, P1, atol=1e-3)


def test_degenerate_kernel_warns_for_raw_activations(X: np.ndarray) -> None:
    raw = transition_matrix(10.0 * X, OperatorSettings(normalization="none"))
    diagnostics = kernel_diagnostics(raw)
    assert diagnostics["mean_diagonal_mass"] > MAX_DIAGONAL_MASS
    message = degeneracy_warning(diagnostics, "mlp-007")
    assert message is not None and "mlp-007" in message and "l2" in message

    normalised = kernel_diagnostics(transition_matrix(X, OperatorSettings(normalization="l2")))
    assert normalised["mean_diagonal_mass"] < 0.5
    assert degeneracy_warning(normalised, "mlp-007") is None


def test_degenerate_kernel_warns_for_uniform_rows(X: np.ndarray) -> None:
    diagnostics = kernel_diagnostics(transition_matrix(X, OperatorSettings(sigma=100.0)))
    assert diagnostics["effective_neighbours"] > 0.99 * 30
    message = degeneracy_warning(diagnostics, "cnn-3")
    assert message is not None and "cnn-3" in message and "sigma too large" in message


def test_diagnostics_of_extreme_operators() -> None:
    identity = kernel_diagnostics(np.eye(4))
    assert identity["mean_diagonal_mass"] == 1.0 and identity["effective_neighbours"] == 1.0
    uniform = kernel_diagnostics(np.full((4, 4), 0.25))
    assert uniform["mean_diagonal_mass"] == 0.25 and uniform["effective_neighbours"] == 4.0


@pytest.mark.parametrize(
    "settings",
    [
        OperatorSettings(),
        OperatorSettings(sigma=2.0, normalization="standardize", t=2),
        OperatorSettings(sigma="median", normalization="none", t=3),
        OperatorSettings(sigma="median", normalization="median"),
    ],
    ids=lambda s: f"{s.sigma}-{s.normalization}-{s.t}",
)
def test_torch_operator_rows_match_numpy(X: np.ndarray, settings: OperatorSettings) -> None:
    """Rows 7:19 of P^t and P for two networks in one batch, one zero-padded to the other's
    width, against the NumPy reference; diagnostics gathered from row blocks."""
    narrow = X[:, :5]
    padded = np.hstack([centred(narrow, settings.normalization), np.zeros((len(X), 3))])
    Y = torch.from_numpy(np.stack([centred(X, settings.normalization), padded]))
    scales = kernel_scales(Y, settings)
    out = torch.empty((2, 12, len(X)), dtype=torch.float64)
    one_step = operator_rows(Y, scales, settings, 7, 19, out)
    for k, rep in enumerate([X, narrow]):
        np.testing.assert_allclose(out[k], diffusion_operator(rep, settings)[7:19], rtol=1e-12)
        np.testing.assert_allclose(one_step[k], transition_matrix(rep, settings)[7:19], rtol=1e-12)
    sums = sum(
        diagnostic_sums(
            operator_rows(Y, scales, replace(settings, t=1), lo, hi, out[:, : hi - lo]), lo
        )
        for lo, hi in [(0, 12), (12, 24), (24, 30)]
    )
    for k, rep in enumerate([X, narrow]):
        expected = kernel_diagnostics(transition_matrix(rep, settings))
        assert diagnostics_from_sums(sums[k].numpy(), len(X)) == pytest.approx(expected, rel=1e-12)


def test_torch_median_of_identical_points_is_refused() -> None:
    Y = torch.zeros((1, 6, 2), dtype=torch.float64)
    with pytest.raises(ValueError, match="median off-diagonal distance is 0"):
        kernel_scales(Y, OperatorSettings(sigma="median"))


def test_self_transition_is_largest_in_its_row_far_from_the_mean() -> None:
    """A point is at distance 0 from itself exactly, so its self-transition is the largest in its
    row; near-duplicate points far from the mean lose that to Gram cancellation (d^2 = 2|y|^2 -
    2 y.y) unless the diagonal is set to 0, in the torch twin as in the NumPy reference."""
    rng = np.random.default_rng(0)
    settings = OperatorSettings(sigma=1.0, normalization="none")
    far = rng.normal(size=(4, 16)) * 1e6
    X = np.repeat(far, 10, axis=0) + rng.normal(size=(40, 16)) * 1e-3  # 10 near-copies each
    Y = torch.from_numpy(centred(X, "none"))[None]
    out = torch.empty((1, 40, 40), dtype=torch.float64)
    P = operator_rows(Y, kernel_scales(Y, settings), settings, 0, 40, out)[0].numpy()
    reference = transition_matrix(X, settings)
    for name, Q in (("torch", P), ("numpy", reference)):
        assert (np.diag(Q) == Q.max(axis=1)).all(), name
