"""Figures of features and statistics: features against accuracy, persistence diagrams, the
informativeness and sensitivity tables, and the four-panel summary.

Every figure function takes tables and arrays (no file reading) and returns a figure in the paper
style (``report.style``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MultipleLocator

from nnmanifold.geometry.diffusion import MAX_DIAGONAL_MASS, NORMALIZATIONS
from nnmanifold.report import figures_map, style
from nnmanifold.report.vocabulary import ACCURACY


@style.in_paper_style
def feature_vs_accuracy(
    embedding: pd.DataFrame, feature: str, corr_row: pd.Series | Mapping[str, Any]
) -> Figure:
    """Test accuracy against one feature, titled with its Spearman rho and bootstrap CI."""
    fig = style.figure(style.SINGLE_COLUMN, 2.6)
    _draw_feature_vs_accuracy(fig.add_subplot(), embedding, feature, corr_row)
    return fig


@style.in_paper_style
def features_vs_accuracy(embedding: pd.DataFrame, corr_table: pd.DataFrame) -> Figure:
    """Accuracy against every feature of the correlation table, one panel each (3 per row)."""
    rows = list(corr_table.itertuples(index=False))
    ncols = min(3, len(rows))
    nrows = -(-len(rows) // ncols)
    fig = style.figure(style.DOUBLE_COLUMN, 2.0 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, row in zip(axes, rows, strict=False):
        _draw_feature_vs_accuracy(ax, embedding, row.feature, row._asdict())
        ax.title.set_fontsize(7)
    for ax in axes[len(rows) :]:
        fig.delaxes(ax)
    return fig


def best_and_worst(embedding: pd.DataFrame) -> pd.DataFrame:
    """The most and least accurate networks (model_id, label), best first, for diagram panels."""
    ranked = embedding.sort_values(ACCURACY)
    pair = ranked.iloc[[-1, 0]][["model_id", ACCURACY]].reset_index(drop=True)
    pair["label"] = [
        f"{kind}: {m} ({acc:.0%})"
        for kind, m, acc in zip(("best", "worst"), pair["model_id"], pair[ACCURACY], strict=True)
    ]
    return pair


@style.in_paper_style
def persistence_diagrams(
    best: Sequence[np.ndarray],
    worst: Sequence[np.ndarray],
    labels: Sequence[str] = ("best network", "worst network"),
) -> Figure:
    """Side-by-side persistence diagrams ([H0, H1, ...]) on one scale; infinite bars on top."""
    diagrams = [[np.asarray(d, dtype=float).reshape(-1, 2) for d in dgms] for dgms in (best, worst)]
    finite = np.concatenate([d[np.isfinite(d)] for dgms in diagrams for d in dgms] + [[0.0]])
    infinity = 1.1 * finite.max() if finite.max() > 0 else 1.0
    pad = 0.04 * infinity
    fig = style.figure(style.SINGLE_COLUMN, 1.95)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    palette = sns.color_palette(style.LEVEL_PALETTE)
    for ax, dgms, label in zip(axes, diagrams, labels, strict=True):
        ax.plot([0, infinity], [0, infinity], color="0.6", lw=0.7, zorder=1)
        ax.axhline(infinity, color="0.6", lw=0.7, ls="--", zorder=1)
        for dim, dgm in enumerate(dgms):
            death = np.where(np.isinf(dgm[:, 1]), infinity, dgm[:, 1])
            ax.scatter(
                dgm[:, 0],
                death,
                s=12,
                marker="o^sD"[dim % 4],
                color=palette[dim],
                edgecolor="white",
                linewidth=0.3,
                label=f"H{dim}",
                zorder=2,
            )
        ax.set(xlim=(-pad, infinity + pad), ylim=(-pad, infinity + pad), aspect="equal")
        ax.set_title(label)
        ax.set_xlabel("birth (distance)")
    ticks = [t for t in axes[0].get_yticks() if -pad <= t < 0.9 * infinity]
    axes[0].set_yticks(ticks + [infinity], [f"{t:g}" for t in ticks] + ["∞"])
    axes[0].set_ylabel("death (distance)")
    axes[0].legend(loc="lower right", handletextpad=0.1, borderaxespad=0.2)
    return fig


@style.in_paper_style
def informativeness(table: pd.DataFrame) -> Figure:
    """LOO k-NN R^2 of accuracy per predictor (rows) and stratum (bars), starred by r2_p."""
    style.require(table, ["predictor", "stratum", "r2", "r2_p"], "informativeness table")
    predictors = list(dict.fromkeys(table["predictor"]))
    strata = list(dict.fromkeys(table["stratum"]))
    fig = style.figure(style.SINGLE_COLUMN, 0.8 + 0.24 * len(predictors))
    ax = fig.add_subplot()
    height = 0.8 / len(strata)
    palette = sns.color_palette(style.LEVEL_PALETTE, len(strata))
    rows = {p: i for i, p in enumerate(predictors)}
    r2 = table["r2"].to_numpy(float)
    low = max(np.nanmin(r2, initial=0.0) - 0.05, -1.0)
    high = np.nanmax(r2, initial=0.0) + 0.2
    for j, (stratum, colour) in enumerate(zip(strata, palette, strict=True)):
        part = table[table["stratum"] == stratum]
        y = part["predictor"].map(rows).to_numpy(float) + (j - (len(strata) - 1) / 2) * height
        values = part["r2"].to_numpy(float)
        ax.barh(y, np.clip(values, low, None), height=height, color=colour, label=stratum)
        for yi, value, p in zip(y, values, part["r2_p"].to_numpy(float), strict=True):
            stars = style.stars(p)
            if stars and np.isfinite(value):
                x = max(value, 0.0) + 0.01
                ax.text(x, yi, stars, va="center", ha="left", fontsize=7, linespacing=0.8)
    ax.axvline(0, color="0.15", lw=0.7)
    features = [i for i, p in enumerate(predictors) if p.startswith("feature: ")]
    if features and features[0] > 0:
        ax.axhline(features[0] - 0.5, color="0.6", lw=0.6, ls="--")
    ax.set_yticks(range(len(predictors)), [style.predictor_label(p) for p in predictors])
    ax.set(ylim=(len(predictors) - 0.5, -0.5), xlim=(low, high))
    ax.xaxis.set_major_locator(MultipleLocator(0.5))
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("LOO k-NN $R^2$ of test accuracy")
    fig.legend(
        *ax.get_legend_handles_labels(),
        title="stratum by accuracy\n* p ≤ 0.05, ** p ≤ 0.01, *** p ≤ 0.001 (permutation)",
        loc="outside upper center",
        ncols=len(strata),
        handlelength=1.2,
    )
    return fig


@style.in_paper_style
def summary(
    embedding: pd.DataFrame, D: np.ndarray, model_ids: Sequence[str], corr_table: pd.DataFrame
) -> Figure:
    """Four panels: map by accuracy, map by the feature with the largest |rho|, that feature
    against accuracy, and the clustered distance matrix."""
    style.require(corr_table, ["feature", "rho"], "correlation table")
    usable = corr_table[corr_table["feature"].isin(embedding.columns) & corr_table["rho"].notna()]
    if usable.empty:
        raise ValueError(
            "no feature of the correlation table has a finite rho and a column in the embedding"
        )
    top = usable.loc[usable["rho"].abs().idxmax()]
    accuracy = figures_map.accuracy_of(embedding, model_ids)
    fig = style.figure(style.DOUBLE_COLUMN, 5.6)
    grid = fig.add_gridspec(2, 2)
    by_accuracy, by_feature, scatter = (fig.add_subplot(grid[i]) for i in ((0, 0), (0, 1), (1, 0)))
    figures_map.draw_map(by_accuracy, embedding, ACCURACY)
    by_accuracy.set_title("test accuracy", loc="left")
    figures_map.draw_map(by_feature, embedding, top["feature"])
    by_feature.set_title(f"{style.label(top['feature'], units=False)} (largest |ρ|)", loc="left")
    _draw_feature_vs_accuracy(scatter, embedding, top["feature"], top, title_loc="left")
    _, strip = figures_map.draw_heatmap(fig, grid[1, 1], D, model_ids, accuracy)
    for ax, letter in zip((by_accuracy, by_feature, scatter, strip), "abcd", strict=True):
        ax.annotate(
            letter,
            xy=(0, 1),
            xycoords="axes fraction",
            xytext=(-24, 4),
            textcoords="offset points",
            va="bottom",
            fontsize=10,
            fontweight="bold",
        )
    return fig


@style.in_paper_style
def sensitivity(table: pd.DataFrame) -> Figure:
    """LOO R^2 over kernel sigma (rows) x normalisation (columns), one panel per t and layer."""
    keys = ["sigma", "normalization", "t", "layer"]
    style.require(table, [*keys, "r2", "smoothness_p", "mean_diagonal_mass"], "sensitivity table")
    duplicated = table.duplicated(subset=keys)
    if duplicated.any():
        raise ValueError(
            f"sensitivity table has {duplicated.sum()} repeated (sigma, normalization, t, layer) "
            "rows; keep one row per setting"
        )
    table = table.assign(sigma=table["sigma"].map(_sigma_value))
    sigmas = sorted(table["sigma"].unique(), key=lambda s: (isinstance(s, str), s))
    known = [n for n in NORMALIZATIONS if n in set(table["normalization"])]
    norms = known + sorted(set(table["normalization"]) - set(known))
    ts, layers = sorted(table["t"].unique()), list(dict.fromkeys(table["layer"]))
    r2 = table["r2"].to_numpy(float)
    norm = Normalize(np.nanmin(r2, initial=0.0), max(np.nanmax(r2, initial=0.0), 1e-9))
    cmap = style.cmap(style.CMAP_R2)
    panel_w, panel_h = 0.45 * len(norms) + 0.5, 0.28 * len(sigmas) + 0.6
    fig = style.figure(panel_w * len(ts) + 1.0, panel_h * len(layers) + 0.9)
    axes = fig.subplots(len(layers), len(ts), squeeze=False, sharex=True, sharey=True)
    for (i, layer), (j, t) in itertools.product(enumerate(layers), enumerate(ts)):
        ax = axes[i, j]
        part = table[(table["layer"] == layer) & (table["t"] == t)].set_index(
            ["sigma", "normalization"]
        )
        grid = part.reindex(pd.MultiIndex.from_product([sigmas, norms]))
        shape = (len(sigmas), len(norms))
        values = grid["r2"].to_numpy(float).reshape(shape)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
        degenerate = grid["mean_diagonal_mass"].to_numpy(float).reshape(shape) > MAX_DIAGONAL_MASS
        smooth = grid["smoothness_p"].to_numpy(float).reshape(shape) <= 0.05
        for (r, c), value in np.ndenumerate(values):
            if degenerate[r, c]:
                ax.add_patch(style.hatch_cell(r, c))
            if np.isfinite(value):
                text = f"{value:.2f}" + ("*" if smooth[r, c] else "")
                ax.text(
                    c,
                    r,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=style.ink(cmap, norm(value)),
                )
        title = f"t = {t}" if len(layers) == 1 else f"{layer}, t = {t}"
        ax.set_title(title)
        ax.set_xticks(range(len(norms)), norms, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(len(sigmas)), [_sigma_label(s) for s in sigmas])
        ax.tick_params(length=0)
        ax.spines[:].set_visible(False)
    fig.supxlabel("normalisation", fontsize=8)
    fig.supylabel("kernel σ", fontsize=8)
    fig.colorbar(image, ax=axes, label="LOO k-NN $R^2$ of test accuracy", shrink=0.9, aspect=15)
    fig.legend(
        handles=[
            Patch(
                facecolor="none",
                edgecolor="0.55",
                hatch="////",
                label=f"degenerate kernel (mean self-transition > {MAX_DIAGONAL_MASS:g})",
            ),
            Patch(facecolor="none", edgecolor="none", label="* accuracy smooth (p ≤ 0.05)"),
        ],
        loc="outside upper center",
        ncols=2,
        handlelength=1.2,
    )
    return fig


def _draw_feature_vs_accuracy(
    ax: Axes,
    embedding: pd.DataFrame,
    feature: str,
    corr_row: pd.Series | Mapping[str, Any],
    title_loc: str = "center",
) -> None:
    """Scatter accuracy against ``feature`` on ``ax``; the title carries rho [CI] and n."""
    style.require(embedding, [feature, ACCURACY], "embedding")
    named = corr_row.get("feature", feature)
    if named != feature:
        raise ValueError(f"corr_row is the correlation of {named!r}, not of {feature!r}")
    ax.scatter(
        embedding[feature],
        embedding[ACCURACY],
        s=14,
        alpha=0.85,
        edgecolor="white",
        linewidth=0.3,
    )
    ax.set_xlabel(style.label(feature))
    ax.set_ylabel(style.label(ACCURACY))
    ax.yaxis.set_major_formatter(style.percent())
    rho, low, high = (float(corr_row.get(k, np.nan)) for k in ("rho", "ci_low", "ci_high"))
    title = "Spearman ρ undefined" if np.isnan(rho) else f"Spearman ρ = {rho:.2f}"
    if np.isfinite(low) and np.isfinite(high):
        title += f" [{low:.2f}, {high:.2f}]"
    n = corr_row.get("n")
    ax.set_title(title if n is None else f"{title}, n = {int(n)}", loc=title_loc)


def _sigma_value(sigma: Any) -> float | str:
    """Sigma as a number, or the name of its data-driven rule (``median``)."""
    try:
        return float(sigma)
    except (TypeError, ValueError):
        return str(sigma)


def _sigma_label(sigma: float | str) -> str:
    """Row label of a sigma setting."""
    return f"{sigma:g}" if isinstance(sigma, float) else sigma
