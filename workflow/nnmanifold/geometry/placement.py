"""Place new networks on a finished PHATE map without refitting it (docs/method.md §5.1).

PHATE refuses ``transform`` on a map fitted from precomputed distances, so the new network's
graph row is built here the way graphtools built the map's own: an alpha-decay kernel whose
bandwidth is the distance to the k-th nearest neighbour, cut at ``THRESH`` and symmetrised by
averaging the two one-sided kernels. The map's diffusion operator, its automatic ``t`` and its
potentials come from PHATE itself, rebuilt from the same distances and settings.

Position: on a map of up to ``n_landmark`` networks, the new network's t-step diffusion row gives
its PHATE potential; its potential distances to the map's networks are the targets of a
metric-MDS stress minimised over its two coordinates with the map's coordinates held fixed (the
same stress SMACOF minimised to draw the map), starting from the transition-weighted average of
its neighbours' coordinates. A landmark map (more networks) placed each of its own networks as
the transition-weighted average of landmark coordinates; a new network is placed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: graphtools' affinity cutoff, as PHATE passes it: kernel entries below it are set to 0.
THRESH = 1e-4
#: PHATE's offset before the log of the diffused operator (its potential with gamma = 1).
POTENTIAL_EPS = 1e-7
#: PHATE's default: maps of more networks diffuse between this many landmarks.
N_LANDMARK = 2000
#: Stress iterations stop when no placed point moves more than this fraction of the map's size.
TOLERANCE = 1e-7
MAX_ITERATIONS = 1000


@dataclass(frozen=True)
class MapGraph:
    """The map's PHATE graph: per-network bandwidths, the coordinates of the nodes MDS placed
    and the support radius; for a map without landmarks its operator, t, potentials and the
    scale from potential distances to map units; for a landmark map each network's cluster."""

    bandwidths: np.ndarray
    knn: int
    decay: float
    node_coords: np.ndarray
    support_radius: float
    operator: np.ndarray | None = None
    t: int = 0
    potentials: np.ndarray | None = None
    scale: float = float("nan")
    clusters: np.ndarray | None = None


@dataclass(frozen=True)
class Placement:
    """Coordinates (m, 2) of the placed networks, their nearest map networks (indices, nearest
    first) with distances, and whether each lies outside the map's support."""

    coords: np.ndarray
    nearest: np.ndarray
    nearest_distances: np.ndarray
    out_of_support: np.ndarray


def effective_knn(n: int, knn: int) -> int:
    """The knn a map of n networks was fitted with (PHATE's graph needs n - 2 >= knn)."""
    return min(knn, n - 2)


def bandwidths(D: np.ndarray, knn: int) -> np.ndarray:
    """Each map network's kernel bandwidth: its distance to its knn-th nearest other network
    (graphtools takes the largest of the knn + 1 smallest distances, itself included)."""
    return np.partition(D, knn, axis=1)[:, knn]


def one_sided_kernel(d: np.ndarray, bandwidth: np.ndarray, decay: float) -> np.ndarray:
    """exp(-(d / bandwidth)^decay), entries below THRESH set to 0 (bandwidth broadcasts)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        K = np.exp(-np.power(d / bandwidth, decay))
    K = np.where(np.isnan(K), 1.0, K)
    K[K < THRESH] = 0.0
    return K


def kernel_rows(d: np.ndarray, map_bandwidths: np.ndarray, knn: int, decay: float) -> np.ndarray:
    """Kernel rows (m, N) of new networks at distances d (m, N) to the map's networks: the mean
    of the new network's one-sided kernel (its own bandwidth: the distance to its knn-th nearest
    map network) and each map network's (its own bandwidth), as the map's symmetric kernel."""
    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    own = np.partition(d, knn - 1, axis=1)[:, knn - 1 : knn]
    return (one_sided_kernel(d, own, decay) + one_sided_kernel(d, map_bandwidths, decay)) / 2.0


def transition_rows(K: np.ndarray) -> np.ndarray:
    """Row-normalised kernel rows: one random-walk step from each new network onto the map."""
    return K / K.sum(axis=1, keepdims=True)


def map_graph(D: np.ndarray, Y: np.ndarray, knn: int, decay: float, seed: int) -> MapGraph:
    """Rebuild the map's PHATE graph, automatic t and potentials from its distances D (N, N),
    with the settings the map was fitted with (no MDS: the coordinates Y (N, 2) are kept)."""
    import phate
    from scipy.spatial.distance import pdist

    D = np.asarray(D, dtype=np.float64)
    k = effective_knn(len(D), knn)
    op = phate.PHATE(
        knn_dist="precomputed_distance",
        knn=k,
        decay=decay,
        t="auto",
        n_landmark=N_LANDMARK,
        random_state=seed,
        n_jobs=1,
        verbose=0,
    ).fit(D)
    bw = bandwidths(D, k)
    common = {"bandwidths": bw, "knn": k, "decay": decay, "support_radius": float(bw.max())}
    Y = np.asarray(Y, dtype=np.float64)
    if len(op.diff_op) < len(D):  # landmarks: the map is transitions @ landmark coordinates
        return MapGraph(
            **common,
            node_coords=_landmark_coords(op.graph.transitions, Y),
            # landmarks are the clusters in sorted order (graphtools skips empty ones)
            clusters=np.unique(op.graph.clusters, return_inverse=True)[1],
        )
    potentials = op.diff_potential
    dp, dy = pdist(potentials), pdist(Y)
    return MapGraph(
        **common,
        node_coords=Y,
        operator=np.asarray(op.diff_op),
        t=int(op.optimal_t),
        potentials=potentials,
        scale=float(dp @ dy / (dp @ dp)),
    )


def _landmark_coords(transitions: Any, Y: np.ndarray) -> np.ndarray:
    """Landmark coordinates Y_L with Y = T Y_L (T: networks to landmarks, sparse: each network
    steps to few landmarks), by least squares through the normal equations."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    T = sparse.csr_matrix(transitions)
    return np.asarray(spsolve((T.T @ T).tocsc(), T.T @ Y)).reshape(T.shape[1], -1)


def place(graph: MapGraph, d: np.ndarray, n_nearest: int = 5) -> Placement:
    """Place m new networks at distances d (m, N) from the map's networks, in the map's order."""
    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    if d.shape[1] != len(graph.bandwidths):
        raise ValueError(
            f"distances have {d.shape[1]} columns but the map has {len(graph.bandwidths)} "
            "networks; compute them against every map network, in the map's order"
        )
    P = transition_rows(kernel_rows(d, graph.bandwidths, graph.knn, graph.decay))
    if graph.clusters is None:
        coords = stress_position(graph, new_potentials(graph, P), P @ graph.node_coords)
    else:
        coords = _to_landmarks(P, np.asarray(graph.clusters)) @ graph.node_coords
    order = np.argsort(d, axis=1, kind="stable")[:, :n_nearest]
    nearest_d = np.take_along_axis(d, order, axis=1)
    return Placement(coords, order, nearest_d, nearest_d[:, 0] > graph.support_radius)


def interpolate(d: np.ndarray, graph: MapGraph, Y: np.ndarray) -> np.ndarray:
    """The fast alternative: each new network at the transition-weighted mean of Y."""
    return transition_rows(kernel_rows(d, graph.bandwidths, graph.knn, graph.decay)) @ Y


def _to_landmarks(P: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Transitions onto landmarks: each row summed per landmark cluster (graphtools' rule)."""
    out = np.zeros((len(P), clusters.max() + 1))
    np.add.at(out.T, clusters, P.T)
    return out / out.sum(axis=1, keepdims=True)


def new_potentials(graph: MapGraph, P: np.ndarray) -> np.ndarray:
    """PHATE potentials of new networks: -log of their t-step rows (one step onto the map,
    then t - 1 steps of the map's operator)."""
    rows = P
    for _ in range(graph.t - 1):
        rows = rows @ graph.operator
    return -np.log(rows + POTENTIAL_EPS)


def stress_position(graph: MapGraph, potentials: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Minimise sum_j (||y - Y_j|| - s * ||pot - pot_j||)^2 per new network (potential rows
    (m, N)), the map's coordinates Y fixed, by the SMACOF (Guttman) update for one free point
    from ``start`` (m, 2): the map's own stress, which SMACOF minimised to draw it."""
    from scipy.spatial.distance import cdist

    Y = graph.node_coords
    target = graph.scale * cdist(potentials, graph.potentials)
    y = np.array(start, dtype=np.float64)
    size = np.ptp(Y, axis=0).max()
    for _ in range(MAX_ITERATIONS):
        diff = y[:, None, :] - Y[None, :, :]
        norm = np.linalg.norm(diff, axis=2)
        ratio = np.divide(target, norm, out=np.zeros_like(norm), where=norm > 0)
        new = (Y[None, :, :] + ratio[:, :, None] * diff).mean(axis=1)
        moved = np.abs(new - y).max()
        y = new
        if moved <= TOLERANCE * size:
            break
    return y
