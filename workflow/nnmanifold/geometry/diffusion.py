"""Per-network diffusion operators: representation (n, d) -> row-stochastic P = Q^-1 W and P^t.

The NumPy functions are the reference. ``operator_rows`` is their batched torch twin (float64, on
CPU or CUDA), which the distance step uses to build operators in row blocks on the fly.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from nnmanifold.core.storage import content_hash

if TYPE_CHECKING:
    import torch

NORMALIZATIONS = ("none", "l2", "standardize", "median")

#: Mean self-transition probability of the one-step operator above which the kernel is degenerate
#: (W is almost the identity, so every network looks the same).
MAX_DIAGONAL_MASS = 0.9
#: Effective neighbours per point, as a fraction of n, above which rows are almost uniform.
MAX_NEIGHBOUR_FRACTION = 0.9


@dataclass(frozen=True)
class OperatorSettings:
    """How a representation becomes a diffusion operator (docs/method.md §2-3)."""

    sigma: float | str = 0.5  # or "median": each network's median pairwise distance
    normalization: str = "l2"
    t: int = 1

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization={self.normalization!r} is not one of {', '.join(NORMALIZATIONS)}"
            )
        object.__setattr__(self, "sigma", check_sigma(self.sigma))
        if isinstance(self.t, bool) or not isinstance(self.t, numbers.Integral) or self.t < 1:
            raise ValueError(f"t={self.t!r} must be an integer >= 1 (diffusion steps, default 1)")
        object.__setattr__(self, "t", int(self.t))

    def key(self) -> str:
        """Short stable hash of the settings; a different key invalidates cached operators."""
        return content_hash(asdict(self), 12)


def check_sigma(sigma: float | str) -> float | str:
    """The kernel width as operators use it (a float, or "median"); the one check of its range,
    which the config validation asks too."""
    if sigma == "median":
        return sigma
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, numbers.Real)
        or not np.isfinite(sigma)
        or sigma <= 0
    ):
        raise ValueError(f"sigma={sigma!r} must be a finite number > 0 or 'median'")
    return float(sigma)


def normalize(X: np.ndarray, method: str) -> np.ndarray:
    """Rescale representation rows (``l2``) or features (``standardize``) as float64.

    ``none`` and ``median`` return the data unchanged: ``median`` rescales the distance matrix
    instead (see :func:`squared_distances`).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"representation must be a 2-D (points, features) array, got {X.shape}")
    if method in ("none", "median"):
        return X.copy()
    if method == "l2":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(norms > 0, norms, 1.0)
    if method == "standardize":
        std = X.std(axis=0)
        return (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    raise ValueError(f"normalization={method!r} is not one of {', '.join(NORMALIZATIONS)}")


def centred(X: np.ndarray, normalization: str) -> np.ndarray:
    """Normalised representation with its mean point subtracted (distances are unchanged and
    the Gram identity below keeps its digits)."""
    Y = normalize(X, normalization)
    Y -= Y.mean(axis=0)
    return Y


def squared_distances(X: np.ndarray, normalization: str = "l2") -> np.ndarray:
    """Squared Euclidean distances between normalised rows; ``median`` divides D by its median."""
    Y = centred(X, normalization)
    sq = np.einsum("ij,ij->i", Y, Y)
    D2 = sq[:, None] + sq[None, :] - 2.0 * (Y @ Y.T)
    np.maximum(D2, 0.0, out=D2)
    np.fill_diagonal(D2, 0.0)
    if normalization == "median":
        D2 /= _median_off_diagonal(D2)
    return D2


def kernel(X: np.ndarray, settings: OperatorSettings) -> np.ndarray:
    """Dense Gaussian affinities W = exp(-D^2 / (2 sigma^2)), diagonal kept.

    ``sigma="median"`` uses the network's own median off-diagonal distance as sigma.
    """
    D2 = squared_distances(X, settings.normalization)
    sigma2 = settings.sigma**2 if settings.sigma != "median" else _median_off_diagonal(D2)
    return np.exp(-D2 / (2.0 * sigma2))


def _median_off_diagonal(D2: np.ndarray) -> float:
    median = float(np.median(D2[~np.eye(len(D2), dtype=bool)]))
    _check_median(median)
    return median


def _check_median(median: float) -> None:
    if median <= 0:
        raise ValueError(
            "median off-diagonal distance is 0 (most probe points have identical "
            "representations); use normalization 'l2' or 'standardize'"
        )


def transition_matrix(X: np.ndarray, settings: OperatorSettings) -> np.ndarray:
    """One-step row-stochastic operator P = Q^-1 W (ignores ``settings.t``)."""
    W = kernel(X, settings)
    return W / W.sum(axis=1, keepdims=True)


def diffusion_operator(X: np.ndarray, settings: OperatorSettings) -> np.ndarray:
    """The t-step diffusion operator P^t of a representation, (n, n) float64."""
    return power(transition_matrix(X, settings), settings.t)


def power(P: np.ndarray, t: int) -> np.ndarray:
    """P^t: t diffusion steps of a one-step operator."""
    return np.linalg.matrix_power(P, t)


def kernel_diagnostics(P: np.ndarray) -> dict[str, float]:
    """Summaries of a one-step operator that reveal a degenerate kernel (identity or uniform)."""
    P = np.asarray(P, dtype=np.float64)
    n = len(P)
    return {
        "n_points": n,
        "mean_diagonal_mass": float(np.mean(np.diag(P))),
        "effective_neighbours": float(np.mean(1.0 / np.einsum("ij,ij->i", P, P))),
    }


def degeneracy_warning(diagnostics: dict[str, float], model_id: str) -> str | None:
    """A message naming the model and the fix if its kernel is degenerate, else None."""
    diag = diagnostics["mean_diagonal_mass"]
    neighbours = diagnostics["effective_neighbours"]
    n = diagnostics["n_points"]
    if diag > MAX_DIAGONAL_MASS:
        return (
            f"model {model_id}: degenerate diffusion kernel, mean diagonal mass {diag:.3f} > "
            f"{MAX_DIAGONAL_MASS} (W is almost the identity: distances >> sigma); use "
            "normalization 'l2' or 'median', or a larger sigma"
        )
    if neighbours > MAX_NEIGHBOUR_FRACTION * n:
        return (
            f"model {model_id}: degenerate diffusion kernel, {neighbours:.1f} effective "
            f"neighbours of {n} points (rows are almost uniform: sigma too large for the "
            "distances); use a smaller sigma"
        )
    return None


def kernel_scales(Y: torch.Tensor, settings: OperatorSettings) -> torch.Tensor:
    """Per network (b,) the divisor s of W = exp(-D^2 / s) (2 sigma^2, times the median
    distance for ``median``), from a batch (b, n, d) of :func:`centred` representations."""
    import torch

    if "median" not in (settings.sigma, settings.normalization):
        return torch.full((len(Y),), 2.0 * settings.sigma**2, dtype=Y.dtype, device=Y.device)
    D2 = _squared_rows(Y, 0, Y.shape[1])
    scale = torch.ones(len(Y), dtype=Y.dtype, device=Y.device)
    if settings.normalization == "median":
        scale = _median_off_diagonal_torch(D2)
        D2 /= scale[:, None, None]
    sigma2 = _median_off_diagonal_torch(D2) if settings.sigma == "median" else settings.sigma**2
    return 2.0 * sigma2 * scale


def operator_rows(
    Y: torch.Tensor,
    scales: torch.Tensor,
    settings: OperatorSettings,
    start: int,
    stop: int,
    out: torch.Tensor,
) -> torch.Tensor:
    """Rows start:stop of P^t for a batch (b, n, d) of :func:`centred` representations (float64)
    with their :func:`kernel_scales`, written into ``out`` (b, stop - start, n); returns the same
    rows of the one-step P (``out`` itself when t = 1).

    The torch twin of :func:`diffusion_operator`, on Y's device. Zero feature columns change
    nothing, so networks of different widths can share a zero-padded batch. With t = 1 only the
    asked rows are built, in place, so an operator never has to exist whole; for t > 1 each
    network's whole P is built and the rows are multiplied through it.
    """
    lo, hi = (0, Y.shape[1]) if settings.t > 1 else (start, stop)
    P = _squared_rows(Y, lo, hi, None if settings.t > 1 else out)
    P /= -scales[:, None, None]
    P.exp_()
    P /= P.sum(dim=2, keepdim=True)
    if settings.t == 1:
        return P
    one_step = P[:, start:stop]
    rows = one_step
    for _ in range(settings.t - 1):
        rows = rows @ P
    out.copy_(rows)
    return one_step


def _squared_rows(
    Y: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Rows start:stop of :func:`squared_distances` for a batch of centred representations."""
    import torch

    sq = (Y * Y).sum(dim=2)
    D2 = torch.bmm(Y[:, start:stop], Y.transpose(1, 2), out=out)
    D2.mul_(-2.0).add_(sq[:, start:stop, None]).add_(sq[:, None, :]).clamp_(min=0.0)
    own = torch.arange(start, stop, device=Y.device)
    D2[:, own - start, own] = 0.0
    return D2


def _median_off_diagonal_torch(D2: torch.Tensor) -> torch.Tensor:
    """Per network, the median of the off-diagonal entries of a whole (b, n, n) D2, as NumPy
    takes it (the mean of the two middle values)."""
    import torch

    n = D2.shape[1]
    off = D2[:, ~torch.eye(n, dtype=torch.bool, device=D2.device)].sort(dim=1).values
    half = off.shape[1] // 2
    median = (off[:, half - 1] + off[:, half]) / 2.0
    _check_median(float(median.min()))
    return median


def diagnostic_sums(one_step_rows: torch.Tensor, start: int) -> torch.Tensor:
    """Per network (b, 2): the sums over rows start:start+r of a one-step P of the diagonal
    entry and of 1 / sum_j P_ij^2; summed over all rows and divided by n they are
    :func:`kernel_diagnostics`, so they can be gathered block by block."""
    import torch

    own = torch.arange(one_step_rows.shape[1], device=one_step_rows.device)
    diagonal = one_step_rows[:, own, own + start].sum(dim=1)
    inverse = (1.0 / torch.einsum("bij,bij->bi", one_step_rows, one_step_rows)).sum(dim=1)
    return torch.stack([diagonal, inverse], dim=1)


def diagnostics_from_sums(sums: np.ndarray, n: int) -> dict[str, float]:
    """:func:`kernel_diagnostics` of one network from its :func:`diagnostic_sums` over all rows."""
    return {
        "n_points": n,
        "mean_diagonal_mass": float(sums[0] / n),
        "effective_neighbours": float(sums[1] / n),
    }
