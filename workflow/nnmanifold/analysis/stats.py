"""Statistics that relate the network map to performance (docs/method.md §7).

Pure functions on arrays: Spearman correlations with bootstrap intervals, smoothness of accuracy on
the k-NN graph of a network distance (Dirichlet energy with a permutation p-value), leave-one-out
k-NN prediction of accuracy from a distance, and the baselines that give those numbers a scale.

Conventions shared by every function:
- ``D`` is an N x N precomputed distance (square, finite, non-negative, symmetric); ``f`` is a
  length-N signal on the same networks in the same order. Shape mismatches raise ``ValueError``.
- k-NN neighbourhoods exclude the network itself and share ties: when several networks tie at the
  k-th distance they split the remaining weight equally, so results never depend on network order.
- ``k`` shrinks to ``N - 2`` for tiny zoos; with fewer than 3 networks (or a constant signal) the
  statistics are undefined and returned as NaN instead of raising.
- Randomness comes only from ``seed`` (an int or a ``numpy.random.Generator``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from scipy.spatial.distance import pdist, squareform

SeedLike = int | np.random.Generator

_PERM_CHUNK = 256
#: Rows of an N x N distance handled at once where a whole-matrix temporary would not fit
#: (N = 10,000: 80 MB a block instead of several 800 MB copies).
_ROW_BLOCK = 1024
#: Edge-by-signal differences computed at once in the smoothness test (64 MB of float64).
_EDGE_ELEMENTS = 1 << 23


def spearman_with_ci(
    x: np.ndarray, y: np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: SeedLike = 0
) -> dict[str, float]:
    """Spearman rho of x and y with its p-value and a percentile bootstrap CI over networks.

    Pairs where either value is NaN are dropped; ``n`` is the number of pairs used.
    """
    x, y = _as_vector(x, "x"), _as_vector(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.size)
    out = {"rho": np.nan, "p": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": n}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    res = stats.spearmanr(x, y)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boot = _row_pearson(stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1))
    alpha = (1 - ci) / 2
    if np.isfinite(boot).any():
        out["ci_low"], out["ci_high"] = np.nanquantile(boot, [alpha, 1 - alpha])
    out["rho"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def knn_graph(D: np.ndarray, k: int) -> sp.csr_array:
    """Symmetric k-NN adjacency of a precomputed distance (i~j if either is among the other's k).

    Edges have weight 1; networks tied at the k-th distance share the last places fractionally.
    """
    D = _check_distance(D)
    k_eff = _effective_k(D.shape[0], k)
    if k_eff == 0:
        raise ValueError(f"a k-NN graph needs at least 3 networks, got {D.shape[0]}")
    return _graph(_knn_weights(D, k_eff), k_eff)


def dirichlet_energy(f: np.ndarray, A: np.ndarray | sp.sparray) -> float:
    """Roughness of f on graph A: sum_ij A_ij (f_i - f_j)^2 / 2, divided by (edge weight x 2 var f).

    The normalisation makes it free of the scale of f and of the graph's size: the expected value
    under a random shuffle of f is exactly 1, a constant-on-edges signal scores 0. NaN if f is
    constant or the graph has no edges.
    """
    f = _as_vector(f, "f")
    A = sp.coo_array(A)
    if A.shape != (f.size, f.size):
        raise ValueError(f"A must be {f.size} x {f.size} to match f, got {A.shape}")
    return float(_edge_energies(f[None, :], A.row, A.col, A.data)[0])


def smoothness_test(
    D: np.ndarray, f: np.ndarray, k: int = 5, n_perm: int = 999, seed: SeedLike = 0
) -> dict[str, float]:
    """Dirichlet energy of f on the k-NN graph of D and its permutation p-value (small = smooth).

    p = (1 + #{shuffles with energy <= observed}) / (n_perm + 1); ``null_mean`` is the mean
    shuffled energy (close to 1 by construction).
    """
    D, f = _check_pair(D, f)
    k_eff = _effective_k(f.size, k)
    return _smoothness(_neighbours(D, f, k_eff), k_eff, f, n_perm, seed)


def _smoothness(
    W: sp.csr_array | None, k_eff: int, f: np.ndarray, n_perm: int, seed: SeedLike
) -> dict[str, float]:
    """``smoothness_test`` on checked inputs, from the k-NN weights (None: undefined)."""
    out = {"energy": np.nan, "p_value": np.nan, "null_mean": np.nan, "k": k_eff, "n": f.size}
    if W is None:
        return out
    A = sp.triu(_graph(W, k_eff), format="coo")  # each edge once: raw and total both halve
    energy = _edge_energies(f[None, :], A.row, A.col, A.data)[0]
    null = np.concatenate(
        [
            _edge_energies(f[perm], A.row, A.col, A.data)
            for perm in _permutation_chunks(f.size, n_perm, seed)
        ]
    )
    out["energy"], out["null_mean"] = float(energy), float(null.mean())
    out["p_value"] = _perm_p(null <= energy, n_perm)
    return out


def loo_knn_r2(D: np.ndarray, f: np.ndarray, k: int = 5) -> float:
    """Leave-one-out R^2 = 1 - SSE/SST of predicting f_i by the mean f of its k nearest others in D.

    The mean is unweighted: distances from different predictors live on different scales and exact
    zeros (duplicate configurations) would make inverse-distance weights infinite.
    """
    D, f = _check_pair(D, f)
    k_eff = _effective_k(f.size, k)
    if k_eff == 0 or np.ptp(f) == 0:
        return np.nan
    return float(_loo_r2(f[None, :], _knn_weights(D, k_eff))[0])


def loo_knn_r2_permutation(
    D: np.ndarray, f: np.ndarray, k: int = 5, n_perm: int = 999, seed: SeedLike = 0
) -> dict[str, float]:
    """LOO k-NN R^2 of f from D and the permutation p-value that it beats chance.

    p = (1 + #{shuffles of f with R^2 >= observed}) / (n_perm + 1).
    """
    D, f = _check_pair(D, f)
    k_eff = _effective_k(f.size, k)
    return _loo_test(_neighbours(D, f, k_eff), k_eff, f, n_perm, seed)


def _loo_test(
    W: sp.csr_array | None, k_eff: int, f: np.ndarray, n_perm: int, seed: SeedLike
) -> dict[str, float]:
    """``loo_knn_r2_permutation`` on checked inputs, from the k-NN weights (None: undefined)."""
    out = {"r2": np.nan, "p_value": np.nan, "k": k_eff, "n": f.size}
    if W is None:
        return out
    r2 = _loo_r2(f[None, :], W)[0]
    null = np.concatenate(
        [_loo_r2(f[perm], W) for perm in _permutation_chunks(f.size, n_perm, seed)]
    )
    out["r2"], out["p_value"] = float(r2), _perm_p(null >= r2, n_perm)
    return out


def euclidean_distances_of(table: pd.DataFrame | pd.Series | np.ndarray) -> np.ndarray:
    """Euclidean distance between rows after z-scoring numeric and one-hot encoding other columns.

    The baseline distance for hyperparameters (a table) or for a single feature (a Series or 1-D
    array). Missing numeric values sit at the column mean, missing categories get their own level;
    constant columns contribute nothing. Booleans count as categorical.
    """
    frame = pd.DataFrame(table).reset_index(drop=True)
    numeric = [
        c
        for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]
    num = frame[numeric].astype(float)
    std = num.std(ddof=0).replace(0.0, np.nan)
    z = ((num - num.mean()) / std).fillna(0.0)
    blocks = [z.to_numpy(float)]
    other = frame.drop(columns=numeric)
    if other.shape[1]:
        blocks.append(pd.get_dummies(other.astype(object), dummy_na=True, dtype=float).to_numpy())
    X = np.hstack(blocks)
    if X.shape[1] == 0:
        return np.zeros((len(frame), len(frame)))
    return squareform(pdist(X))


def random_distance(n: int, seed: SeedLike = 0) -> np.ndarray:
    """Random symmetric distance (uniform off-diagonal, zero diagonal): the chance baseline.

    The upper triangle of one n x n uniform draw, mirrored in place (no n x n temporaries).
    """
    out = np.random.default_rng(seed).uniform(size=(n, n))
    for i in range(n):
        out[i, i] = 0.0
        out[i, :i] = out[:i, i]
    return out


def stratified(
    D: np.ndarray,
    f: np.ndarray,
    quantiles: tuple[float, ...] = (0.5, 0.75),
    k: int = 5,
    n_perm: int = 999,
    seed: SeedLike = 0,
) -> list[dict[str, float | str]]:
    """R^2 and smoothness (with p-values) on the whole zoo, then within each top stratum by f.

    The stratum for quantile q keeps networks with f >= the q-quantile of f ("top 50%" for 0.5),
    analysed on the submatrix of D with k shrunk to fit. Rows: stratum, n, k, r2, r2_p,
    smoothness_energy, smoothness_p.
    """
    D, f = _check_pair(D, f)
    rng = np.random.default_rng(seed)
    strata = [("all", np.ones(f.size, dtype=bool))]
    strata += [(f"top {100 * (1 - q):g}%", f >= np.quantile(f, q)) for q in quantiles]
    rows = []
    for name, keep in strata:  # submatrices of a checked D need no check; one k-NN each
        sub_D, sub_f = (D, f) if keep.all() else (D[np.ix_(keep, keep)], f[keep])
        k_eff = _effective_k(sub_f.size, k)
        W = _neighbours(sub_D, sub_f, k_eff)
        fit = _loo_test(W, k_eff, sub_f, n_perm, rng)
        smooth = _smoothness(W, k_eff, sub_f, n_perm, rng)
        rows.append(
            {
                "stratum": name,
                "n": int(keep.sum()),
                "k": fit["k"],
                "r2": fit["r2"],
                "r2_p": fit["p_value"],
                "smoothness_energy": smooth["energy"],
                "smoothness_p": smooth["p_value"],
            }
        )
    return rows


def map_informativeness(
    D: np.ndarray,
    accuracy: np.ndarray,
    features: pd.DataFrame,
    hyperparameters: pd.DataFrame,
    k: int = 5,
    n_perm: int = 999,
    seed: int = 0,
    others: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """How well each distance predicts accuracy: the network map against its baselines, by stratum.

    Predictors: "diffusion distance" (D), each of ``others`` (name -> (distance, boolean mask of
    the networks of D it covers), e.g. CKA), "hyperparameters" (standardised), "random distance"
    and "feature: <name>" (distance on that one feature; networks where it is NaN are left out).
    Every predictor sees the same permutations. Rows in the order of D.
    """
    D, accuracy = _check_pair(D, accuracy)
    n = accuracy.size
    for name, table in (("features", features), ("hyperparameters", hyperparameters)):
        if len(table) != n:
            raise ValueError(f"{name} has {len(table)} rows but D has {n} networks; align them")
    _check_numeric(features)
    perm_seed, random_seed = np.random.SeedSequence(seed).spawn(2)
    everyone = np.ones(n, dtype=bool)

    def predictors() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Each predictor's distance, made only when its turn comes (not all at once)."""
        yield "diffusion distance", D, everyone
        for name, (dist, keep) in (others or {}).items():
            yield name, dist, keep
        yield "hyperparameters", euclidean_distances_of(hyperparameters), everyone
        yield "random distance", random_distance(n, np.random.default_rng(random_seed)), everyone
        for col in features.columns:
            values = features[col].to_numpy(float)
            keep = ~np.isnan(values)
            yield f"feature: {col}", euclidean_distances_of(values[keep]), keep

    rows = []
    for name, dist, keep in predictors():
        strata = stratified(
            dist, accuracy[keep], k=k, n_perm=n_perm, seed=np.random.default_rng(perm_seed)
        )
        rows += [{"predictor": name, **row} for row in strata]
        del dist  # before the next one is made
    columns = ["predictor", "stratum", "r2", "r2_p", "smoothness_energy", "smoothness_p", "n", "k"]
    return pd.DataFrame(rows, columns=columns)


#: A model within this many accuracy points of the majority-class rate counts as near chance.
CHANCE_MARGIN = 0.02


def zoo_summary(status: pd.Series, accuracy: pd.Series, chance_accuracy: float) -> pd.DataFrame:
    """One row: how many models trained ok, diverged or failed, and how many of the ok ones ended
    near chance (test accuracy at most the majority-class rate + ``CHANCE_MARGIN``)."""
    ok = accuracy[status == "ok"]
    threshold = chance_accuracy + CHANCE_MARGIN
    row = {
        "models": len(status),
        **{s: int((status == s).sum()) for s in ("ok", "diverged", "failed")},
        "near_chance": int((ok <= threshold).sum()),
        "chance_accuracy": chance_accuracy,
        "near_chance_threshold": threshold,
        "median_accuracy": float(ok.median()),
        "best_accuracy": float(ok.max()),
    }
    return pd.DataFrame([row])


def summary_line(summary: pd.DataFrame) -> str:
    """The zoo summary as one sentence for logs and the end of a run."""
    r = summary.to_dict("records")[0]
    line = (
        f"{r['models']} models: {r['ok']} ok, {r['diverged']} diverged, {r['failed']} failed; "
        f"test accuracy median {r['median_accuracy']:.3f}, best {r['best_accuracy']:.3f}"
    )
    if r["near_chance"]:
        line += (
            f"; {r['near_chance']} ended near chance (accuracy <= {r['near_chance_threshold']:.3f},"
            f" the majority-class rate {r['chance_accuracy']:.3f} + {CHANCE_MARGIN * 100:g} points;"
            " they stay on the map)"
        )
    return line


def headline(summary: pd.DataFrame, informativeness: pd.DataFrame) -> dict[str, float]:
    """The run's headline numbers: zoo outcome, accuracy, and how well the map, the
    hyperparameters and a random distance predict accuracy (leave-one-out k-NN R², whole zoo)."""
    r = summary.to_dict("records")[0]
    r2 = informativeness[informativeness["stratum"] == "all"].set_index("predictor")["r2"]
    return {
        "networks": int(r["models"]),
        "trained ok": int(r["ok"]),
        "diverged or failed": int(r["diverged"] + r["failed"]),
        "near chance": int(r["near_chance"]),
        "median test accuracy": round(float(r["median_accuracy"]), 3),
        "best test accuracy": round(float(r["best_accuracy"]), 3),
        "R² of accuracy from the map": round(float(r2["diffusion distance"]), 3),
        **{
            f"... from the {name}": round(float(r2[name]), 3)
            for name in r2.index
            if name.endswith(" distance") and name not in ("diffusion distance", "random distance")
        },
        "... from the hyperparameters": round(float(r2["hyperparameters"]), 3),
        "... from a random distance": round(float(r2["random distance"]), 3),
    }


def distance_comparison(informativeness: pd.DataFrame, distances: list[str]) -> pd.DataFrame:
    """Which network distance predicts accuracy best in each stratum: one row per stratum with
    every distance's R² and p, the winner, and whether it beats the hyperparameters."""
    table = informativeness.set_index(["predictor", "stratum"])
    rows = []
    for stratum in dict.fromkeys(informativeness["stratum"]):
        r2 = {d: table.loc[(d, stratum), "r2"] for d in distances}
        best = max(r2, key=lambda d: -np.inf if np.isnan(r2[d]) else r2[d])
        row = {"stratum": stratum, "best distance": best}
        for d in [*distances, "hyperparameters", "random distance"]:
            row[f"{d} R²"] = table.loc[(d, stratum), "r2"]
            row[f"{d} p"] = table.loc[(d, stratum), "r2_p"]
        row["best beats hyperparameters"] = bool(r2[best] > row["hyperparameters R²"])
        rows.append(row)
    return pd.DataFrame(rows)


def feature_correlations(
    features: pd.DataFrame, accuracy: np.ndarray, n_boot: int = 1000, seed: SeedLike = 0
) -> pd.DataFrame:
    """Spearman rho of each feature column with accuracy, with bootstrap CI, p-value and n."""
    accuracy = _as_vector(accuracy, "accuracy")
    if len(features) != accuracy.size:
        raise ValueError(
            f"features has {len(features)} rows but accuracy has {accuracy.size}; align them"
        )
    _check_numeric(features)
    rows = [
        {
            "feature": col,
            **spearman_with_ci(features[col].to_numpy(float), accuracy, n_boot, seed=seed),
        }
        for col in features.columns
    ]
    return pd.DataFrame(rows, columns=["feature", "rho", "ci_low", "ci_high", "p", "n"])


def _effective_k(n: int, k: int) -> int:
    """k shrunk so that each network keeps at least one non-neighbour; 0 means too few networks."""
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    return int(min(k, max(n - 2, 0)))


def _knn_weights(D: np.ndarray, k: int) -> sp.csr_array:
    """Row-stochastic weights: 1/k on each of the k nearest others; ties at the k-th share.

    Sparse (k entries a row, more where networks tie at the k-th distance), built a block of
    rows at a time: the temporaries are O(block x N), never N x N.
    """
    n = D.shape[0]
    rows, cols, weights = [], [], []
    for start in range(0, n, _ROW_BLOCK):
        block = np.array(D[start : start + _ROW_BLOCK], dtype=float)
        own = np.arange(block.shape[0])
        block[own, start + own] = np.inf
        kth = np.partition(block, k - 1, axis=1)[:, k - 1 : k]
        closer, tied = block < kth, block == kth
        share = (k - closer.sum(axis=1, keepdims=True)) / tied.sum(axis=1, keepdims=True)
        r, c = np.nonzero(closer | tied)
        weights.append(np.where(closer[r, c], 1.0, share[r, 0]) / k)
        rows.append(r + start)
        cols.append(c)
    ij = (np.concatenate(rows), np.concatenate(cols))
    return sp.csr_array((np.concatenate(weights), ij), shape=(n, n))


def _neighbours(D: np.ndarray, f: np.ndarray, k_eff: int) -> sp.csr_array | None:
    """The k-NN weights of checked D, or None where the tests are undefined (too few networks,
    constant signal)."""
    return None if k_eff == 0 or np.ptp(f) == 0 else _knn_weights(D, k_eff)


def _graph(W: sp.csr_array, k: int) -> sp.csr_array:
    """The symmetric k-NN adjacency (weight 1 per neighbour) of k-NN weights W."""
    A = W * k
    return sp.csr_array(A.maximum(A.T))


def _loo_r2(F: np.ndarray, W: sp.csr_array) -> np.ndarray:
    """LOO R^2 of each row of F (signals, one per row) predicted by W @ f (W sparse: k per row)."""
    resid = F - (W @ F.T).T
    centred = F - F.mean(axis=1, keepdims=True)
    return 1 - (resid**2).sum(axis=1) / (centred**2).sum(axis=1)


def _edge_energies(
    F: np.ndarray, row: np.ndarray, col: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Normalised Dirichlet energy of each row of F on the graph given as weighted edges.

    Signals are gathered as rows of F's transpose (contiguous), far faster than F's columns, a
    few signals at a time: a distance with many ties (hyperparameters repeated over seeds) has a
    k-NN graph of up to N^2 / 4 edges, and all 256 signals of a chunk at once took 3 GB at N=2500.
    """
    total = weight.sum()
    var = F.var(axis=1, ddof=1) if F.shape[1] > 1 else np.zeros(F.shape[0])
    by_node = np.ascontiguousarray(F.T)
    raw = np.empty(F.shape[0])
    step = max(1, _EDGE_ELEMENTS // max(row.size, 1))
    for start in range(0, F.shape[0], step):
        diff = by_node[row, start : start + step] - by_node[col, start : start + step]
        raw[start : start + step] = weight @ (diff * diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((var > 0) & (total > 0), raw / (2 * total * var), np.nan)


def _permutation_chunks(n: int, n_perm: int, seed: SeedLike) -> Iterator[np.ndarray]:
    """Yield index arrays of shape (chunk, n), n_perm random permutations of range(n) in all."""
    if n_perm < 1:
        raise ValueError(f"n_perm must be a positive integer, got {n_perm}")
    rng = np.random.default_rng(seed)
    for start in range(0, n_perm, _PERM_CHUNK):
        yield rng.permuted(np.tile(np.arange(n), (min(_PERM_CHUNK, n_perm - start), 1)), axis=1)


def _perm_p(as_extreme: np.ndarray, n_perm: int) -> float:
    """Permutation p-value with the +1 correction, so it is never 0."""
    return float((1 + np.count_nonzero(as_extreme)) / (n_perm + 1))


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows of a and b (NaN where a row is constant)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))


def _as_vector(values: np.ndarray, name: str) -> np.ndarray:
    """values as a 1-D float array, or a ValueError naming the argument."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per network), got shape {arr.shape}")
    return arr


def _check_distance(D: np.ndarray) -> np.ndarray:
    """D as floats if it is a valid distance matrix, else a ValueError saying what is wrong.

    Checked a block of rows at a time (symmetry against the matching columns, once every entry
    is known to be finite and non-negative): no N x N temporaries.
    """
    D = np.asarray(D, dtype=float)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"D must be a square N x N distance matrix, got shape {D.shape}")
    blocks = [slice(start, start + _ROW_BLOCK) for start in range(0, D.shape[0], _ROW_BLOCK)]
    for rows in blocks:
        if not np.isfinite(D[rows]).all():
            raise ValueError("D contains NaN or inf; drop those networks' rows and columns")
        if (D[rows] < 0).any():
            raise ValueError("D has negative entries; a distance is non-negative")
    for rows in blocks:
        if not np.allclose(D[rows], D[:, rows].T, rtol=1e-6, atol=1e-9):
            raise ValueError("D is not symmetric; symmetrise it with (D + D.T) / 2")
    return D


def _check_pair(D: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated (D, f): a distance matrix and a finite signal on the same networks."""
    D, f = _check_distance(D), _as_vector(f, "f")
    if D.shape[0] != f.size:
        raise ValueError(f"D is {D.shape[0]} x {D.shape[0]} but the signal has {f.size} values")
    if not np.isfinite(f).all():
        raise ValueError(
            "the signal contains NaN or inf (diverged networks?); drop them from f and D first"
        )
    return D, f


def _check_numeric(features: pd.DataFrame) -> None:
    """Raise a ValueError naming any non-numeric feature column."""
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise ValueError(
            f"features must be numeric; drop these columns or make them the index: {bad}"
        )
