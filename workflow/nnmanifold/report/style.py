"""The paper style every figure shares: sizes, colours, labels, the style decorator and ``save``.

Figures are built without pyplot on a fresh Agg figure (``figure``), so nothing is shown and nothing
piles up in pyplot's figure registry; ``save`` writes PNG and PDF, ``save_all`` many figures in
several processes.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

from nnmanifold.analysis.features import FEATURE_NAMES
from nnmanifold.core import forked
from nnmanifold.core.storage import atomic_path
from nnmanifold.report.vocabulary import ACCURACY, MAX_LEVELS

SINGLE_COLUMN = 3.4
DOUBLE_COLUMN = 7.0
DPI = 200
SIGNIFICANCE = ((0.001, "***"), (0.01, "**"), (0.05, "*"))

CONTINUOUS = frozenset({ACCURACY, *FEATURE_NAMES})
LOG_SCALE = frozenset({"lr", "weight_decay"})
CMAP_ACCURACY = "viridis"
CMAP_OTHER = "plasma"
CMAP_DISTANCE = "rocket"
CMAP_R2 = "mako"
LEVEL_PALETTE = "colorblind"
ORDERED_PALETTE = "flare"
MISSING = "0.7"
LABELS: dict[str, tuple[str, str]] = {
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
        "axes.prop_cycle": cycler(color=sns.color_palette(LEVEL_PALETTE)),
        "image.cmap": CMAP_ACCURACY,
        "legend.frameon": False,
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "savefig.dpi": DPI,
    }


def in_paper_style(draw: Callable[_P, Figure]) -> Callable[_P, Figure]:
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


def save_all(figures: Mapping[Path, Figure], processes: int = 1) -> None:
    """``save`` every figure (PNG path -> figure), in up to ``processes`` forked processes that
    each render whole figures (``core.forked``): rendering, not drawing, is most of a figure
    step's time (at 1,000 networks 16 of 19 s)."""
    list(forked.forked_map(lambda item: save(item[1], item[0]), list(figures.items()), processes))


def figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on an Agg canvas, outside pyplot."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def percent() -> FuncFormatter:
    """Tick labels of a fraction in percent, without the sign (the axis label carries it)."""
    return FuncFormatter(lambda x, _: f"{100 * x:g}")


def is_discrete(values: pd.Series, column: str) -> bool:
    """Categorical, boolean, or a numeric setting with few values (never accuracy or a feature)."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return True
    return column not in CONTINUOUS and values.nunique() <= MAX_LEVELS


def norm(column: str, values: np.ndarray) -> Normalize:
    """Log colour scale for learning rate and weight decay when positive, linear otherwise."""
    if column in LOG_SCALE and values.size and (values > 0).all():
        return LogNorm()
    return Normalize()


def cmap(name: str) -> Colormap:
    """A registered colormap with missing values drawn light grey."""
    cmap = mpl.colormaps[name] if name in mpl.colormaps else sns.color_palette(name, as_cmap=True)
    return cmap.with_extremes(bad=MISSING)


def ink(cmap: Colormap, position: float) -> str:
    """Black or white text, whichever reads better on ``cmap`` at ``position``."""
    r, g, b, _ = cmap(position)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def hatch_cell(row: int, col: int) -> Rectangle:
    """A hatched square over one heatmap cell."""
    return Rectangle(
        (col - 0.5, row - 0.5), 1, 1, facecolor="none", edgecolor="0.55", hatch="////", lw=0
    )


def label(column: str, units: bool = True) -> str:
    """Axis label of a column, with its unit in parentheses where it has one."""
    name, unit = LABELS.get(column, (column.replace("_", " "), ""))
    return f"{name} ({unit})" if units and unit else name


def predictor_label(predictor: str) -> str:
    """Readable name of an informativeness predictor (``feature: x`` becomes the name of x)."""
    prefix = "feature: "
    if predictor.startswith(prefix):
        return label(predictor[len(prefix) :], units=False)
    return predictor


def level_label(level: Any) -> str:
    """Legend text of one categorical value (numbers without trailing zeros)."""
    if isinstance(level, int | float | np.number) and not isinstance(level, bool):
        return f"{level:g}"
    return str(level)


def stars(p: float) -> str:
    """Significance stars of a p-value (empty if not significant or NaN)."""
    return next((stars for threshold, stars in SIGNIFICANCE if p <= threshold), "")


def require(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Raise a ValueError if ``table`` is empty or lacks some of ``columns`` (named)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{name} has no rows")
