"""Statistics that relate the network map to performance (docs/method.md §7): Spearman correlations
with bootstrap intervals, the informativeness table of every distance (k-NN tests of
``analysis.knn_tests``, whose conventions hold here too), the baselines that give those numbers a
scale, and the zoo's summary.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import pdist, squareform

from nnmanifold.analysis.knn_tests import SeedLike, as_vector, check_pair, stratified


def spearman_with_ci(
    x: np.ndarray, y: np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: SeedLike = 0
) -> dict[str, float]:
    """Spearman rho of x and y with its p-value and a percentile bootstrap CI over networks.

    Pairs where either value is NaN are dropped; ``n`` is the number of pairs used.
    """
    x, y = as_vector(x, "x"), as_vector(y, "y")
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
    D, accuracy = check_pair(D, accuracy)
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
    accuracy = as_vector(accuracy, "accuracy")
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


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows of a and b (NaN where a row is constant)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))


def _check_numeric(features: pd.DataFrame) -> None:
    """Raise a ValueError naming any non-numeric feature column."""
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise ValueError(
            f"features must be numeric; drop these columns or make them the index: {bad}"
        )
