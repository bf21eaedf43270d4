"""Figures of the map and the distances: PHATE maps by a column, side by side or faceted, and the
clustered distance heatmap.

Every figure function takes tables and arrays (no file reading) and returns a figure in the paper
style (``report.style``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from nnmanifold.report import style
from nnmanifold.report.vocabulary import ACCURACY, PHATE_AXES

#: Heatmaps name each network on the axis only up to this many networks (labels stay >= 7 pt).
MAX_TICK_LABELS = 24
#: Networks drawn in a distance heatmap; larger zoos show a seeded random subsample (labelled).
MAX_HEATMAP_NETWORKS = 1000


@style.in_paper_style
def map_by(embedding: pd.DataFrame, column: str, title: str | None = None) -> Figure:
    """The PHATE map coloured by one column: a colourbar if continuous, a legend if categorical."""
    fig = style.figure(style.SINGLE_COLUMN, 2.7)
    ax = fig.add_subplot()
    draw_map(ax, embedding, column)
    if title is not None:
        ax.set_title(title)
    return fig


@style.in_paper_style
def maps_side_by_side(maps: dict[str, pd.DataFrame], column: str) -> Figure:
    """One PHATE map per distance (title: its name), side by side, each coloured by ``column``;
    networks a map does not place (no coordinates) are left off it."""
    fig = style.figure(style.DOUBLE_COLUMN, 2.6)
    for i, (name, table) in enumerate(maps.items()):
        ax = fig.add_subplot(1, len(maps), i + 1)
        placed = table.dropna(subset=list(PHATE_AXES))
        draw_map(ax, placed, column, key="below", size=12, axis_labels=False)
        ax.set_title(f"{name} (N = {len(placed)})", fontsize=8)
    return fig


@style.in_paper_style
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
    fig = style.figure(1.75 * ncols, 2.1 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, column in zip(axes, varying, strict=False):
        draw_map(ax, embedding, column, key="below", size=14, axis_labels=False)
        ax.set_title(textwrap.fill(style.label(column), 24))
    for ax in axes[len(varying) :]:
        fig.delaxes(ax)
    fig.supxlabel("PHATE 1", fontsize=8)
    fig.supylabel("PHATE 2", fontsize=8)
    return fig


def cluster_order(D: np.ndarray) -> np.ndarray:
    """Leaf order of average-linkage clustering on the precomputed distance (a permutation)."""
    D = np.asarray(D, dtype=float)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"D must be a square N x N distance matrix, got shape {D.shape}")
    if len(D) < 2:
        return np.arange(len(D))
    tree = linkage(squareform((D + D.T) / 2, checks=False), method="average", optimal_ordering=True)
    return leaves_list(tree)


@style.in_paper_style
def distance_heatmap(D: np.ndarray, model_ids: Sequence[str], accuracy: np.ndarray) -> Figure:
    """The network distance matrix in clustered order, with an accuracy strip along the top."""
    fig = style.figure(style.SINGLE_COLUMN, 3.1)
    draw_heatmap(fig, fig.add_gridspec(1, 1)[0], D, model_ids, accuracy)
    return fig


def draw_map(
    ax: Axes,
    embedding: pd.DataFrame,
    column: str,
    key: str = "right",
    size: float = 20,
    axis_labels: bool = True,
) -> None:
    """Scatter the first two PHATE coordinates coloured by ``column``, with its legend or
    colourbar to the ``key`` side ("right" or "below"); ticks are hidden (PHATE has no units)."""
    style.require(embedding, [*PHATE_AXES, column], "embedding")
    values = embedding[column]
    xy = embedding[list(PHATE_AXES)].to_numpy(float)
    missing = values.isna().to_numpy()
    point = {"s": size, "edgecolor": "white", "linewidth": 0.3}
    if missing.any():
        ax.scatter(
            *xy[missing].T, s=size, facecolor="none", edgecolor=style.MISSING, label="no value"
        )
    if style.is_discrete(values, column):
        levels = list(pd.unique(values.dropna()))
        if pd.api.types.is_numeric_dtype(values):
            levels.sort()
            colours = sns.color_palette(style.ORDERED_PALETTE, len(levels))
        else:
            levels.sort(key=str)
            colours = sns.color_palette(
                style.LEVEL_PALETTE if len(levels) <= 10 else "husl", len(levels)
            )
        for level, colour in zip(levels, colours, strict=True):
            chosen = (values == level).to_numpy()
            ax.scatter(*xy[chosen].T, color=colour, label=style.level_label(level), **point)
        legend = {"handletextpad": 0.1, "borderaxespad": 0.2, "columnspacing": 0.8}
        if key == "below":
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncols=3, **legend)
        else:
            ax.legend(
                title=style.label(column), loc="center left", bbox_to_anchor=(1.0, 0.5), **legend
            )
    else:
        present = np.flatnonzero(~missing)
        order = present[np.argsort(values.to_numpy(float)[present], kind="stable")]
        image = ax.scatter(
            *xy[order].T,
            c=values.to_numpy(float)[order],
            cmap=style.cmap(style.CMAP_ACCURACY if column == ACCURACY else style.CMAP_OTHER),
            norm=style.norm(column, values.to_numpy(float)[present]),
            **point,
        )
        below = key == "below"
        cax = ax.inset_axes((0.1, -0.09, 0.8, 0.04) if below else (1.04, 0.08, 0.045, 0.84))
        bar = ax.figure.colorbar(image, cax=cax, orientation="horizontal" if below else "vertical")
        bar.set_label("" if below else style.label(column))
        if column == ACCURACY:
            bar.formatter = style.percent()
        if missing.any():
            ax.legend(loc="best", handletextpad=0.1, borderaxespad=0.2)
    ax.set(xticks=[], yticks=[])
    if axis_labels:
        ax.set(xlabel="PHATE 1", ylabel="PHATE 2")
    ax.set_aspect("equal", adjustable="datalim")


def draw_heatmap(
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
        D[np.ix_(order, order)],
        cmap=style.cmap(style.CMAP_DISTANCE),
        aspect="auto",
        interpolation="nearest",
    )
    acc_image = strip.imshow(
        np.ma.masked_invalid(accuracy[order][None, :]),
        cmap=style.cmap(style.CMAP_ACCURACY),
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
        acc_image, cax=heat.inset_axes((1.05, 0.58, 0.05, 0.495)), label=style.label(ACCURACY)
    )
    acc_bar.formatter = style.percent()
    fig.colorbar(dist_image, cax=heat.inset_axes((1.05, 0, 0.05, 0.46)), label="diffusion distance")
    return heat, strip


def accuracy_of(embedding: pd.DataFrame, model_ids: Sequence[str]) -> np.ndarray:
    """Test accuracy of ``model_ids`` in that order, or a ValueError naming unknown ids."""
    style.require(embedding, ["model_id", ACCURACY], "embedding")
    by_id = embedding.set_index("model_id")[ACCURACY]
    unknown = [m for m in model_ids if m not in by_id.index]
    if unknown:
        raise ValueError(f"model ids of D missing from the embedding: {unknown[:5]}")
    return by_id.loc[list(model_ids)].to_numpy(float)
