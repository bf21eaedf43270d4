"""Figures of the search: progress per round and the search benchmark's best-so-far curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from nnmanifold.report import style


@style.in_paper_style
def search_curves(
    best: dict[str, np.ndarray],
    picked: dict[str, np.ndarray],
    target: float,
    initial: int,
) -> Figure:
    """Best-so-far validation accuracy and the chosen model's test accuracy per trained model,
    mean and 95 % CI over repeats, one line per search method."""
    from nnmanifold.search.benchmark import mean_ci

    fig = style.figure(style.DOUBLE_COLUMN, 2.8)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    for method, colour in zip(best, sns.color_palette(style.LEVEL_PALETTE, len(best)), strict=True):
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


@style.in_paper_style
def search_progress(progress: pd.DataFrame) -> Figure:
    """Best-so-far validation accuracy per search round (the selection), with the test
    accuracy of the chosen model beside it (reported, never selected on)."""
    style.require(progress, ["round", "best_val_accuracy", "best_test_accuracy"], "search progress")
    fig = style.figure(style.SINGLE_COLUMN, 2.4)
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
    ax.yaxis.set_major_formatter(style.percent())
    ax.legend(frameon=False)
    return fig
