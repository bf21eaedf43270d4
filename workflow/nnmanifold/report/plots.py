"""Paper figures of the network map: PHATE maps, features against accuracy, the distance matrix,
persistence diagrams and the statistics tables.

Every figure function takes tables and arrays (no file reading), draws on a fresh Agg figure in
the paper style and returns it; :func:`save` writes it as PNG and PDF. Figures are built without
pyplot, so nothing is shown and nothing piles up in pyplot's figure registry.
"""

from __future__ import annotations

import functools
import itertools
import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MultipleLocator
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from nnmanifold.analysis.features import FEATURE_NAMES
from nnmanifold.core.storage import atomic_path
from nnmanifold.geometry.diffusion import MAX_DIAGONAL_MASS, NORMALIZATIONS
from nnmanifold.report.vocabulary import ACCURACY, MAX_LEVELS, PHATE_AXES

SINGLE_COLUMN = 3.4
DOUBLE_COLUMN = 7.0
DPI = 200
#: Heatmaps name each network on the axis only up to this many networks (labels stay >= 7 pt).
MAX_TICK_LABELS = 24
#: Networks drawn in a distance heatmap; larger zoos show a seeded random subsample (labelled).
MAX_HEATMAP_NETWORKS = 1000
SIGNIFICANCE = ((0.001, "***"), (0.01, "**"), (0.05, "*"))

_CONTINUOUS = frozenset({ACCURACY, *FEATURE_NAMES})
_LOG_SCALE = frozenset({"lr", "weight_decay"})
_CMAP_ACCURACY = "viridis"
_CMAP_OTHER = "plasma"
_CMAP_DISTANCE = "rocket"
_CMAP_R2 = "mako"
_LEVEL_PALETTE = "colorblind"
_ORDERED_PALETTE = "flare"
_MISSING = "0.7"
_LABELS: dict[str, tuple[str, str]] = {
    ACCURACY: ("test accuracy", "%"),
    "separation_ratio": ("class separation", "between / within"),
    "diffusion_retention": ("diffusion class retention", "probability"),
    "silhouette": ("silhouette", ""),
    "ward_ari": ("Ward cut agreement", "ARI"),
    "cophenetic_corr": ("cophenetic correlation", ""),
    "spectral_entropy": ("spectral entropy", "nats"),
    "h0_total_persistence": ("H0 total persistence", "a.u."),
    "h1_total_persistence": ("H1 total persistence", "a.u."),
    "h1_n_bars": ("long H1 bars", "count"),
    "arch": ("architecture", ""),
    "depth": ("depth", "hidden layers"),
    "width": ("width", "units"),
    "lr": ("learning rate", ""),
    "weight_decay": ("weight decay", ""),
    "batch_size": ("batch size", ""),
}

_P = ParamSpec("_P")


def paper_rc() -> dict[str, Any]:
    """Matplotlib settings of the paper style: seaborn ticks/paper, fonts 7-8 pt, no top/right."""
    return {
        **sns.axes_style("ticks"),
        **sns.plotting_context("paper", font_scale=0.85),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 8,
        "axes.prop_cycle": cycler(color=sns.color_palette(_LEVEL_PALETTE)),
        "image.cmap": _CMAP_ACCURACY,
        "legend.frameon": False,
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "savefig.dpi": DPI,
    }


def _styled(draw: Callable[_P, Figure]) -> Callable[_P, Figure]:
    """Build the figure under the paper style whatever the caller's rcParams are."""

    @functools.wraps(draw)
    def styled(*args: _P.args, **kwargs: _P.kwargs) -> Figure:
        with mpl.rc_context(paper_rc()):
            return draw(*args, **kwargs)

    return styled


def save(fig: Figure, path_png: str | os.PathLike) -> None:
    """Write ``fig`` as PNG (200 dpi) at ``path_png`` and as PDF beside it, each atomically."""
    path_png = Path(path_png)
    if path_png.suffix.lower() != ".png":
        raise ValueError(f"save needs a .png path (the PDF goes beside it), got {path_png}")
    with mpl.rc_context(paper_rc()):
        for path, fmt, metadata in (
            (path_png.with_suffix(".pdf"), "pdf", {"CreationDate": None}),
            (path_png, "png", {}),
        ):
            with atomic_path(path) as tmp:
                fig.savefig(
                    tmp,
                    format=fmt,
                    dpi=DPI,
                    bbox_inches="tight",
                    pad_inches=0.02,
                    metadata=metadata,
                )


@_styled
def map_by(embedding: pd.DataFrame, column: str, title: str | None = None) -> Figure:
    """The PHATE map coloured by one column: a colourbar if continuous, a legend if categorical."""
    fig = _figure(SINGLE_COLUMN, 2.7)
    ax = fig.add_subplot()
    _draw_map(ax, embedding, column)
    if title is not None:
        ax.set_title(title)
    return fig


@_styled
def maps_side_by_side(maps: dict[str, pd.DataFrame], column: str) -> Figure:
    """One PHATE map per distance (title: its name), side by side, each coloured by ``column``;
    networks a map does not place (no coordinates) are left off it."""
    fig = _figure(DOUBLE_COLUMN, 2.6)
    for i, (name, table) in enumerate(maps.items()):
        ax = fig.add_subplot(1, len(maps), i + 1)
        placed = table.dropna(subset=list(PHATE_AXES))
        _draw_map(ax, placed, column, key="below", size=12, axis_labels=False)
        ax.set_title(f"{name} (N = {len(placed)})", fontsize=8)
    return fig


@_styled
def search_curves(
    best: dict[str, np.ndarray],
    picked: dict[str, np.ndarray],
    target: float,
    initial: int,
) -> Figure:
    """Best-so-far validation accuracy and the chosen model's test accuracy per trained model,
    mean and 95 % CI over repeats, one line per search method."""
    from nnmanifold.search.benchmark import mean_ci

    fig = _figure(DOUBLE_COLUMN, 2.8)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    for method, colour in zip(best, sns.color_palette(_LEVEL_PALETTE, len(best)), strict=True):
        n = np.arange(1, best[method].shape[1] + 1)
        for ax, data in zip(axes, (best[method], picked[method]), strict=True):
            mean, half = mean_ci(data)
            ax.plot(n, mean, color=colour, label=method)
            ax.fill_between(n, mean - half, mean + half, color=colour, alpha=0.2, lw=0)
    axes[0].axhline(target, color="0.5", ls=":", lw=0.8, label="95th percentile of the zoo")
    axes[0].set(xlabel="trained models", ylabel="best validation accuracy so far")
    axes[1].set(xlabel="trained models", ylabel="test accuracy of the chosen model")
    for ax in axes:
        ax.axvline(initial, color="0.6", lw=0.6)
    axes[0].legend(loc="lower right")
    return fig


@_styled
def map_facets(embedding: pd.DataFrame, hyperparameters: Sequence[str]) -> Figure:
    """One map per hyperparameter that varies in the zoo; absent or constant columns are skipped."""
    varying = [
        c for c in hyperparameters if c in embedding and embedding[c].nunique(dropna=False) > 1
    ]
    if not varying:
        raise ValueError(
            f"none of the hyperparameters {list(hyperparameters)} varies in this zoo (or they are "
            "not columns of the embedding); there is nothing to facet"
        )
    ncols = len(varying) if len(varying) <= 4 else 3
    nrows = -(-len(varying) // ncols)
    fig = _figure(1.75 * ncols, 2.1 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, column in zip(axes, varying, strict=False):
        _draw_map(ax, embedding, column, key="below", size=14, axis_labels=False)
        ax.set_title(textwrap.fill(_label(column), 24))
    for ax in axes[len(varying) :]:
        fig.delaxes(ax)
    fig.supxlabel("PHATE 1", fontsize=8)
    fig.supylabel("PHATE 2", fontsize=8)
    return fig


@_styled
def feature_vs_accuracy(
    embedding: pd.DataFrame, feature: str, corr_row: pd.Series | Mapping[str, Any]
) -> Figure:
    """Test accuracy against one feature, titled with its Spearman rho and bootstrap CI."""
    fig = _figure(SINGLE_COLUMN, 2.6)
    _draw_feature_vs_accuracy(fig.add_subplot(), embedding, feature, corr_row)
    return fig


@_styled
def features_vs_accuracy(embedding: pd.DataFrame, corr_table: pd.DataFrame) -> Figure:
    """Accuracy against every feature of the correlation table, one panel each (3 per row)."""
    rows = list(corr_table.itertuples(index=False))
    ncols = min(3, len(rows))
    nrows = -(-len(rows) // ncols)
    fig = _figure(DOUBLE_COLUMN, 2.0 * nrows)
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


def cluster_order(D: np.ndarray) -> np.ndarray:
    """Leaf order of average-linkage clustering on the precomputed distance (a permutation)."""
    D = np.asarray(D, dtype=float)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"D must be a square N x N distance matrix, got shape {D.shape}")
    if len(D) < 2:
        return np.arange(len(D))
    tree = linkage(squareform((D + D.T) / 2, checks=False), method="average", optimal_ordering=True)
    return leaves_list(tree)


@_styled
def distance_heatmap(D: np.ndarray, model_ids: Sequence[str], accuracy: np.ndarray) -> Figure:
    """The network distance matrix in clustered order, with an accuracy strip along the top."""
    fig = _figure(SINGLE_COLUMN, 3.1)
    _draw_heatmap(fig, fig.add_gridspec(1, 1)[0], D, model_ids, accuracy)
    return fig


@_styled
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
    fig = _figure(SINGLE_COLUMN, 1.95)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    palette = sns.color_palette(_LEVEL_PALETTE)
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


@_styled
def informativeness(table: pd.DataFrame) -> Figure:
    """LOO k-NN R^2 of accuracy per predictor (rows) and stratum (bars), starred by r2_p."""
    _require(table, ["predictor", "stratum", "r2", "r2_p"], "informativeness table")
    predictors = list(dict.fromkeys(table["predictor"]))
    strata = list(dict.fromkeys(table["stratum"]))
    fig = _figure(SINGLE_COLUMN, 0.8 + 0.24 * len(predictors))
    ax = fig.add_subplot()
    height = 0.8 / len(strata)
    palette = sns.color_palette(_LEVEL_PALETTE, len(strata))
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
            stars = _stars(p)
            if stars and np.isfinite(value):
                x = max(value, 0.0) + 0.01
                ax.text(x, yi, stars, va="center", ha="left", fontsize=7, linespacing=0.8)
    ax.axvline(0, color="0.15", lw=0.7)
    features = [i for i, p in enumerate(predictors) if p.startswith("feature: ")]
    if features and features[0] > 0:
        ax.axhline(features[0] - 0.5, color="0.6", lw=0.6, ls="--")
    ax.set_yticks(range(len(predictors)), [_predictor_label(p) for p in predictors])
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


@_styled
def summary(
    embedding: pd.DataFrame, D: np.ndarray, model_ids: Sequence[str], corr_table: pd.DataFrame
) -> Figure:
    """Four panels: map by accuracy, map by the feature with the largest |rho|, that feature
    against accuracy, and the clustered distance matrix."""
    _require(corr_table, ["feature", "rho"], "correlation table")
    usable = corr_table[corr_table["feature"].isin(embedding.columns) & corr_table["rho"].notna()]
    if usable.empty:
        raise ValueError(
            "no feature of the correlation table has a finite rho and a column in the embedding"
        )
    top = usable.loc[usable["rho"].abs().idxmax()]
    accuracy = _accuracy_of(embedding, model_ids)
    fig = _figure(DOUBLE_COLUMN, 5.6)
    grid = fig.add_gridspec(2, 2)
    by_accuracy, by_feature, scatter = (fig.add_subplot(grid[i]) for i in ((0, 0), (0, 1), (1, 0)))
    _draw_map(by_accuracy, embedding, ACCURACY)
    by_accuracy.set_title("test accuracy", loc="left")
    _draw_map(by_feature, embedding, top["feature"])
    by_feature.set_title(f"{_label(top['feature'], units=False)} (largest |ρ|)", loc="left")
    _draw_feature_vs_accuracy(scatter, embedding, top["feature"], top, title_loc="left")
    _, strip = _draw_heatmap(fig, grid[1, 1], D, model_ids, accuracy)
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


@_styled
def search_progress(progress: pd.DataFrame) -> Figure:
    """Best-so-far validation accuracy per search round (the selection), with the test
    accuracy of the chosen model beside it (reported, never selected on)."""
    _require(progress, ["round", "best_val_accuracy", "best_test_accuracy"], "search progress")
    fig = _figure(SINGLE_COLUMN, 2.4)
    ax = fig.add_subplot()
    ax.plot(progress["round"], progress["best_val_accuracy"], marker="o", label="validation")
    ax.plot(
        progress["round"],
        progress["best_test_accuracy"],
        marker="s",
        linestyle="--",
        label="test (of the chosen model)",
    )
    ax.set_xticks(progress["round"])
    ax.set_xlabel("round (0: initial zoo)")
    ax.set_ylabel("best accuracy so far (%)")
    ax.yaxis.set_major_formatter(_percent())
    ax.legend(frameon=False)
    return fig


@_styled
def sensitivity(table: pd.DataFrame) -> Figure:
    """LOO R^2 over kernel sigma (rows) x normalisation (columns), one panel per t and layer."""
    keys = ["sigma", "normalization", "t", "layer"]
    _require(table, [*keys, "r2", "smoothness_p", "mean_diagonal_mass"], "sensitivity table")
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
    cmap = _cmap(_CMAP_R2)
    panel_w, panel_h = 0.45 * len(norms) + 0.5, 0.28 * len(sigmas) + 0.6
    fig = _figure(panel_w * len(ts) + 1.0, panel_h * len(layers) + 0.9)
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
                ax.add_patch(_hatch_cell(r, c))
            if np.isfinite(value):
                text = f"{value:.2f}" + ("*" if smooth[r, c] else "")
                ax.text(
                    c, r, text, ha="center", va="center", fontsize=7, color=_ink(cmap, norm(value))
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


def _figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on an Agg canvas, outside pyplot."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _draw_map(
    ax: Axes,
    embedding: pd.DataFrame,
    column: str,
    key: str = "right",
    size: float = 20,
    axis_labels: bool = True,
) -> None:
    """Scatter the first two PHATE coordinates coloured by ``column``, with its legend or
    colourbar to the ``key`` side ("right" or "below"); ticks are hidden (PHATE has no units)."""
    _require(embedding, [*PHATE_AXES, column], "embedding")
    values = embedding[column]
    xy = embedding[list(PHATE_AXES)].to_numpy(float)
    missing = values.isna().to_numpy()
    point = {"s": size, "edgecolor": "white", "linewidth": 0.3}
    if missing.any():
        ax.scatter(*xy[missing].T, s=size, facecolor="none", edgecolor=_MISSING, label="no value")
    if _is_discrete(values, column):
        levels = list(pd.unique(values.dropna()))
        if pd.api.types.is_numeric_dtype(values):
            levels.sort()
            colours = sns.color_palette(_ORDERED_PALETTE, len(levels))
        else:
            levels.sort(key=str)
            colours = sns.color_palette(
                _LEVEL_PALETTE if len(levels) <= 10 else "husl", len(levels)
            )
        for level, colour in zip(levels, colours, strict=True):
            chosen = (values == level).to_numpy()
            ax.scatter(*xy[chosen].T, color=colour, label=_level_label(level), **point)
        legend = {"handletextpad": 0.1, "borderaxespad": 0.2, "columnspacing": 0.8}
        if key == "below":
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncols=3, **legend)
        else:
            ax.legend(title=_label(column), loc="center left", bbox_to_anchor=(1.0, 0.5), **legend)
    else:
        present = np.flatnonzero(~missing)
        order = present[np.argsort(values.to_numpy(float)[present], kind="stable")]
        image = ax.scatter(
            *xy[order].T,
            c=values.to_numpy(float)[order],
            cmap=_cmap(_CMAP_ACCURACY if column == ACCURACY else _CMAP_OTHER),
            norm=_norm(column, values.to_numpy(float)[present]),
            **point,
        )
        below = key == "below"
        cax = ax.inset_axes((0.1, -0.09, 0.8, 0.04) if below else (1.04, 0.08, 0.045, 0.84))
        bar = ax.figure.colorbar(image, cax=cax, orientation="horizontal" if below else "vertical")
        bar.set_label("" if below else _label(column))
        if column == ACCURACY:
            bar.formatter = _percent()
        if missing.any():
            ax.legend(loc="best", handletextpad=0.1, borderaxespad=0.2)
    ax.set(xticks=[], yticks=[])
    if axis_labels:
        ax.set(xlabel="PHATE 1", ylabel="PHATE 2")
    ax.set_aspect("equal", adjustable="datalim")


def _draw_feature_vs_accuracy(
    ax: Axes,
    embedding: pd.DataFrame,
    feature: str,
    corr_row: pd.Series | Mapping[str, Any],
    title_loc: str = "center",
) -> None:
    """Scatter accuracy against ``feature`` on ``ax``; the title carries rho [CI] and n."""
    _require(embedding, [feature, ACCURACY], "embedding")
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
    ax.set_xlabel(_label(feature))
    ax.set_ylabel(_label(ACCURACY))
    ax.yaxis.set_major_formatter(_percent())
    rho, low, high = (float(corr_row.get(k, np.nan)) for k in ("rho", "ci_low", "ci_high"))
    title = "Spearman ρ undefined" if np.isnan(rho) else f"Spearman ρ = {rho:.2f}"
    if np.isfinite(low) and np.isfinite(high):
        title += f" [{low:.2f}, {high:.2f}]"
    n = corr_row.get("n")
    ax.set_title(title if n is None else f"{title}, n = {int(n)}", loc=title_loc)


def _draw_heatmap(
    fig: Figure, spec: SubplotSpec, D: np.ndarray, model_ids: Sequence[str], accuracy: np.ndarray
) -> tuple[Axes, Axes]:
    """Clustered distance heatmap in ``spec`` and its accuracy strip (returned); the strip and
    both colourbars are inset axes of the heatmap."""
    D, ids, accuracy = (
        np.asarray(D, dtype=float),
        np.asarray(model_ids),
        np.asarray(accuracy, float),
    )
    if D.shape != (ids.size, ids.size) or accuracy.shape != (ids.size,):
        raise ValueError(
            f"D is {D.shape}, with {ids.size} model ids and {accuracy.size} accuracies; "
            "they must describe the same networks in the same order"
        )
    n_total = ids.size
    if n_total > MAX_HEATMAP_NETWORKS:  # a readable, fast heatmap: a seeded random subsample
        keep = np.sort(np.random.default_rng(0).choice(n_total, MAX_HEATMAP_NETWORKS, False))
        D, ids, accuracy = D[np.ix_(keep, keep)], ids[keep], accuracy[keep]
    order = cluster_order(D)
    heat = fig.add_subplot(spec)
    strip = heat.inset_axes((0, 1.015, 1, 0.06), sharex=heat)
    dist_image = heat.imshow(
        D[np.ix_(order, order)], cmap=_cmap(_CMAP_DISTANCE), aspect="auto", interpolation="nearest"
    )
    acc_image = strip.imshow(
        np.ma.masked_invalid(accuracy[order][None, :]),
        cmap=_cmap(_CMAP_ACCURACY),
        aspect="auto",
        interpolation="nearest",
    )
    strip.set_axis_off()
    heat.set_xticks([])
    heat.set_yticks(range(ids.size), ids[order].astype(str) if ids.size <= MAX_TICK_LABELS else [])
    shown = f"N = {n_total}" if ids.size == n_total else f"random {ids.size} of N = {n_total}"
    heat.set_xlabel(f"networks, clustered order ({shown})")
    heat.spines[:].set_visible(False)
    heat.tick_params(length=0)
    acc_bar = fig.colorbar(
        acc_image, cax=heat.inset_axes((1.05, 0.58, 0.05, 0.495)), label=_label(ACCURACY)
    )
    acc_bar.formatter = _percent()
    fig.colorbar(dist_image, cax=heat.inset_axes((1.05, 0, 0.05, 0.46)), label="diffusion distance")
    return heat, strip


def _accuracy_of(embedding: pd.DataFrame, model_ids: Sequence[str]) -> np.ndarray:
    """Test accuracy of ``model_ids`` in that order, or a ValueError naming unknown ids."""
    _require(embedding, ["model_id", ACCURACY], "embedding")
    by_id = embedding.set_index("model_id")[ACCURACY]
    unknown = [m for m in model_ids if m not in by_id.index]
    if unknown:
        raise ValueError(f"model ids of D missing from the embedding: {unknown[:5]}")
    return by_id.loc[list(model_ids)].to_numpy(float)


def _percent() -> FuncFormatter:
    """Tick labels of a fraction in percent, without the sign (the axis label carries it)."""
    return FuncFormatter(lambda x, _: f"{100 * x:g}")


def _is_discrete(values: pd.Series, column: str) -> bool:
    """Categorical, boolean, or a numeric setting with few values (never accuracy or a feature)."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return True
    return column not in _CONTINUOUS and values.nunique() <= MAX_LEVELS


def _norm(column: str, values: np.ndarray) -> Normalize:
    """Log colour scale for learning rate and weight decay when positive, linear otherwise."""
    if column in _LOG_SCALE and values.size and (values > 0).all():
        return LogNorm()
    return Normalize()


def _cmap(name: str) -> Colormap:
    """A registered colormap with missing values drawn light grey."""
    cmap = mpl.colormaps[name] if name in mpl.colormaps else sns.color_palette(name, as_cmap=True)
    return cmap.with_extremes(bad=_MISSING)


def _ink(cmap: Colormap, position: float) -> str:
    """Black or white text, whichever reads better on ``cmap`` at ``position``."""
    r, g, b, _ = cmap(position)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _hatch_cell(row: int, col: int) -> Rectangle:
    """A hatched square over one heatmap cell."""
    return Rectangle(
        (col - 0.5, row - 0.5), 1, 1, facecolor="none", edgecolor="0.55", hatch="////", lw=0
    )


def _label(column: str, units: bool = True) -> str:
    """Axis label of a column, with its unit in parentheses where it has one."""
    name, unit = _LABELS.get(column, (column.replace("_", " "), ""))
    return f"{name} ({unit})" if units and unit else name


def _predictor_label(predictor: str) -> str:
    """Readable name of an informativeness predictor (``feature: x`` becomes the name of x)."""
    prefix = "feature: "
    if predictor.startswith(prefix):
        return _label(predictor[len(prefix) :], units=False)
    return predictor


def _level_label(level: Any) -> str:
    """Legend text of one categorical value (numbers without trailing zeros)."""
    if isinstance(level, int | float | np.number) and not isinstance(level, bool):
        return f"{level:g}"
    return str(level)


def _stars(p: float) -> str:
    """Significance stars of a p-value (empty if not significant or NaN)."""
    return next((stars for threshold, stars in SIGNIFICANCE if p <= threshold), "")


def _sigma_value(sigma: Any) -> float | str:
    """Sigma as a number, or the name of its data-driven rule (``median``)."""
    try:
        return float(sigma)
    except (TypeError, ValueError):
        return str(sigma)


def _sigma_label(sigma: float | str) -> str:
    """Row label of a sigma setting."""
    return f"{sigma:g}" if isinstance(sigma, float) else sigma


def _require(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Raise a ValueError if ``table`` is empty or lacks some of ``columns`` (named)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{name} has no rows")
