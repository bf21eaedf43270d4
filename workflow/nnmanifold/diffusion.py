"""Per-network diffusion operators: representation (n, d) -> row-stochastic P = Q^-1 W and P^t."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass

import numpy as np

from nnmanifold.storage import content_hash

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
        if self.sigma == "median":
            pass
        elif (
            isinstance(self.sigma, bool)
            or not isinstance(self.sigma, numbers.Real)
            or not np.isfinite(self.sigma)
            or self.sigma <= 0
        ):
            raise ValueError(
                f"sigma={self.sigma!r} must be a finite number > 0 or 'median' (default 0.5)"
            )
        if isinstance(self.t, bool) or not isinstance(self.t, numbers.Integral) or self.t < 1:
            raise ValueError(f"t={self.t!r} must be an integer >= 1 (diffusion steps, default 1)")
        if self.sigma != "median":
            object.__setattr__(self, "sigma", float(self.sigma))
        object.__setattr__(self, "t", int(self.t))

    def key(self) -> str:
        """Short stable hash of the settings; a different key invalidates cached operators."""
        return content_hash(asdict(self), 12)


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


def squared_distances(X: np.ndarray, normalization: str = "l2") -> np.ndarray:
    """Squared Euclidean distances between normalised rows; ``median`` divides D by its median."""
    Y = normalize(X, normalization)
    Y -= Y.mean(axis=0)
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
    if median <= 0:
        raise ValueError(
            "median off-diagonal distance is 0 (most probe points have identical "
            "representations); use normalization 'l2' or 'standardize'"
        )
    return median


def transition_matrix(X: np.ndarray, settings: OperatorSettings) -> np.ndarray:
    """One-step row-stochastic operator P = Q^-1 W (ignores ``settings.t``)."""
    W = kernel(X, settings)
    return W / W.sum(axis=1, keepdims=True)


def diffusion_operator(X: np.ndarray, settings: OperatorSettings) -> np.ndarray:
    """The t-step diffusion operator P^t of a representation, (n, n) float64."""
    return power(transition_matrix(X, settings), settings.t)


def operator_with_diagnostics(
    X: np.ndarray, settings: OperatorSettings
) -> tuple[np.ndarray, dict[str, float]]:
    """P^t and the kernel diagnostics of the one-step P (one kernel for both)."""
    P = transition_matrix(X, settings)
    return power(P, settings.t), kernel_diagnostics(P)


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
