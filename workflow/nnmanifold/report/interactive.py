"""The interactive map: one self-contained HTML page (plotly.js inlined, works offline).

One WebGL point per network; hovering shows its id, accuracy, status, hyperparameters and
features; a selector colours the points by any of them and another switches between the diffusion
(PHATE) map and the H1 Wasserstein map; clicking a network shows where its files are and its
nearest networks on the current map, with the hyperparameters in which they differ. Excluded
models are listed beside the map; networks placed on the finished map (``geometry/placed.csv``)
are drawn on the diffusion map as crosses.

:func:`map_html` builds the page from tables (no file reading); :func:`write` writes it.
"""

from __future__ import annotations

import html
import json
import math
import os
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from nnmanifold.analysis.features import FEATURE_NAMES
from nnmanifold.core.storage import atomic_path
from nnmanifold.report.vocabulary import ACCURACY, MAX_LEVELS, METADATA_PREFIX, PHATE_AXES
from nnmanifold.zoo.specs import HYPERPARAMETERS

#: Nearest networks shown for a selected network.
N_NEIGHBOURS = 3
#: Positive numeric columns spanning more than this many decades are coloured on a log10 scale.
LOG_DECADES = 2.0
MISSING = "–"
_HERE = Path(__file__).parent
_SCALE = "Viridis"
_LEVEL_COLOURS = (
    "#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc",
    "#ca9161", "#fbafe4", "#949494", "#ece133", "#56b4e9",
)  # fmt: skip
_MISSING_COLOUR = "#c8c8c8"
_MAPS = {
    "phate": "diffusion map (PHATE of operator distances)",
    "wasserstein": "H1 Wasserstein map (PHATE of persistence-diagram distances)",
}


def nearest_on_map(xy: np.ndarray, k: int = N_NEIGHBOURS) -> np.ndarray:
    """Row indices of each point's k nearest other points (Euclidean, on the 2-D map).

    Rows with a non-finite coordinate (networks not on this map) get -1 and are nobody's
    neighbour; with fewer than k + 1 placed points the missing neighbours are -1 too.
    """
    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"map coordinates must be an (n, 2) array, got shape {xy.shape}")
    out = np.full((len(xy), k), -1, dtype=np.int64)
    placed = np.flatnonzero(np.isfinite(xy).all(axis=1))
    m = min(k, len(placed) - 1)
    if m <= 0:
        return out
    _, idx = cKDTree(xy[placed]).query(xy[placed], k=m + 1)
    # the point itself is at distance 0; drop it (or a duplicate of it) wherever it sorted
    rows = [r[r != i][:m] for i, r in enumerate(idx)]
    out[placed, :m] = placed[np.array(rows)]
    return out


def map_html(
    embedding: pd.DataFrame,
    topology: pd.DataFrame | None,
    excluded: pd.DataFrame,
    results_label: str = "results",
    title: str = "nnmanifold: the map of networks",
    placed: pd.DataFrame | None = None,
) -> str:
    """The interactive map page as one HTML string.

    ``embedding`` is ``geometry/embedding.csv`` (one row per zoo model; rows without map
    coordinates are left off the map), ``topology`` is ``geometry/wasserstein_embedding.csv``
    (only its coordinates are used) or None, ``excluded`` is ``geometry/excluded.csv``;
    ``results_label`` is the results folder as the reader knows it (files are shown as
    ``<results_label>/models/<id>/``); ``placed`` is ``geometry/placed.csv`` or None.
    """
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    _require(embedding, ["model_id", *PHATE_AXES, ACCURACY, "status"], "embedding table")
    maps = {"phate": embedding.set_index("model_id")[list(PHATE_AXES)]}
    if topology is not None:
        _require(topology, ["model_id", *PHATE_AXES], "Wasserstein embedding table")
        maps["wasserstein"] = topology.set_index("model_id")[list(PHATE_AXES)]
    placed_ids = set().union(
        *(m.index[np.isfinite(m.to_numpy(float)).all(axis=1)] for m in maps.values())
    )
    table = embedding[embedding["model_id"].isin(placed_ids)].reset_index(drop=True)
    if table.empty:
        raise ValueError(
            "no network has map coordinates in the embedding tables; check that "
            "geometry/embedding.csv has finite phate_1 and phate_2 for the models that trained ok"
        )
    fields = _fields(table)
    rows = table[fields].itertuples(index=False)
    display = [[_display(c, v) for c, v in zip(fields, row, strict=True)] for row in rows]
    coords = {name: m.reindex(table["model_id"]).to_numpy(float) for name, m in maps.items()}
    page_data = {
        "fields": [_label(c) for c in fields],
        # the neighbour table compares the hyperparameters that vary in the zoo
        "varying": [
            fields.index(c) for c in _hyper_columns(table) if table[c].nunique(dropna=False) > 1
        ],
        "results": results_label,
        "maps": {
            name: {
                "label": _MAPS[name],
                "x": _json_floats(xy[:, 0]),
                "y": _json_floats(xy[:, 1]),
                "neighbours": nearest_on_map(xy).tolist(),
            }
            for name, xy in coords.items()
        },
        "colours": {_label(c): _colouring(table[c]) for c in fields if c != "model_id"},
        "initial": _label(ACCURACY),
        "style": {
            "scale": _SCALE,
            "palette": list(_LEVEL_COLOURS),
            "missing": MISSING,
            "missing_colour": _MISSING_COLOUR,
        },
    }
    hover = "<br>".join(
        f"{'<b>' if i == 0 else ''}{_label(c)}: %{{customdata[{i}]}}{'</b>' if i == 0 else ''}"
        for i, c in enumerate(fields)
    )
    # coordinates and colours come from the page data: the script sets them before plotting
    fig = go.Figure(
        [
            go.Scattergl(
                mode="markers",
                customdata=display,
                hovertemplate=hover + "<extra></extra>",
                name="networks",
            ),
            go.Scattergl(
                x=[],
                y=[],
                mode="markers",
                hoverinfo="skip",
                marker={"size": 15, "color": "rgba(0,0,0,0)", "line": {"width": 2}},
                name="selection",
            ),
            *_placed_trace(placed),
        ],
        layout={
            "template": "simple_white",
            "height": 640,
            "margin": {"l": 50, "r": 20, "t": 30, "b": 45},
            "hovermode": "closest",
            "hoverlabel": {"align": "left"},
            "showlegend": False,
            "xaxis": {"title": {"text": "PHATE 1"}, "zeroline": False},
            "yaxis": {"title": {"text": "PHATE 2"}, "zeroline": False},
            "dragmode": "pan",
            "uirevision": "map",
        },
    )
    page = string.Template((_HERE / "interactive.html").read_text(encoding="utf-8"))
    return page.substitute(
        title=html.escape(title),
        results=html.escape(results_label),
        summary=html.escape(
            f"{len(table)} networks on the map, {len(excluded)} excluded from the geometry"
            + (f", {len(placed)} placed on it (crosses)" if placed is not None else "")
        ),
        colour_options=_options(page_data["colours"], page_data["initial"]),
        map_options=_options({name: None for name in coords}, "phate", _MAPS),
        excluded=_excluded_html(excluded),
        plotlyjs=get_plotlyjs(),
        figure=_script_json(fig.to_json()),
        data=_script_json(json.dumps(page_data, allow_nan=False)),
        script=(_HERE / "interactive.js").read_text(encoding="utf-8"),
    )


def _placed_trace(placed: pd.DataFrame | None) -> list[Any]:
    """The placed networks as crosses, hover naming each, its nearest map network and whether it
    lies outside the map's support (none without a placed table)."""
    import plotly.graph_objects as go

    if placed is None:
        return []
    _require(placed, ["model_id", *PHATE_AXES, "nearest_1", "out_of_support"], "placed table")
    return [
        go.Scattergl(
            x=placed[PHATE_AXES[0]],
            y=placed[PHATE_AXES[1]],
            mode="markers",
            marker={"symbol": "x", "size": 11, "color": "#d62728"},
            customdata=placed[["model_id", "nearest_1", "out_of_support"]].astype(str).to_numpy(),
            hovertemplate="<b>placed: %{customdata[0]}</b><br>nearest: %{customdata[1]}"
            "<br>out of support: %{customdata[2]}<extra></extra>",
            name="placed",
        )
    ]


def write(path: str | os.PathLike, page: str) -> None:
    """Write the page atomically (UTF-8)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(page, encoding="utf-8")


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{what} lacks columns {missing}; pass the CSV the workflow writes "
            "(geometry/embedding.csv or geometry/wasserstein_embedding.csv)"
        )


def _hyper_columns(table: pd.DataFrame) -> list[str]:
    """Hyperparameters (and the seed) that the zoo sets for at least one network."""
    return [c for c in (*HYPERPARAMETERS, "seed") if c in table and table[c].notna().any()]


def _fields(table: pd.DataFrame) -> list[str]:
    """What the hover and the side panel show, in order: id, accuracy, status, hypers, the
    metadata of networks from elsewhere, features."""
    features = [c for c in FEATURE_NAMES if c in table]
    metadata = [c for c in table if c.startswith(METADATA_PREFIX)]
    return ["model_id", ACCURACY, "status", *_hyper_columns(table), *metadata, *features]


def _label(column: str) -> str:
    return {"model_id": "model", ACCURACY: "accuracy"}.get(column, column)


def _display(column: str, value: Any) -> str:
    """A table value as text: accuracy to 4 decimals, other numbers to 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and float(value).is_integer()
    ):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}" if column == ACCURACY else f"{value:.4g}"
    return str(value)


def _colouring(values: pd.Series) -> dict[str, Any]:
    """How to colour by one column: a colour scale for continuous numbers, else discrete levels.

    Numbers with at most MAX_LEVELS distinct values (a grid of hyperparameters) are levels;
    positive numbers spanning more than LOG_DECADES decades are coloured by their log10.
    """
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    distinct = values.dropna().unique()
    if numeric and len(distinct) > MAX_LEVELS:
        v = values.to_numpy(float)
        finite = v[np.isfinite(v)]
        log = finite.min() > 0 and np.log10(finite.max() / finite.min()) > LOG_DECADES
        shown = np.log10(v) if log else v
        return {"kind": "numeric", "values": _json_floats(shown), "log": bool(log)}
    levels = sorted(distinct, key=lambda x: (isinstance(x, str), x))
    names = [_display(values.name, x) for x in levels]
    codes = pd.Categorical(values, categories=levels).codes.astype(int)
    if (codes < 0).any():
        names.append(MISSING)
        codes = np.where(codes < 0, len(levels), codes)
    return {"kind": "levels", "values": codes.tolist(), "levels": names}


def _json_floats(values: np.ndarray) -> list[float | None]:
    return [float(x) if np.isfinite(x) else None for x in np.asarray(values, dtype=float)]


def _options(choices: dict[str, Any], selected: str, labels: dict[str, str] | None = None) -> str:
    return "".join(
        f'<option value="{html.escape(c)}"{" selected" if c == selected else ""}>'
        f"{html.escape((labels or {}).get(c, c))}</option>"
        for c in choices
    )


def _excluded_html(excluded: pd.DataFrame) -> str:
    if excluded.empty:
        return "<p>none: every network trained ok</p>"
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_display('', r.get(c)))}</td>" for c in ("model_id", "status"))
        + f'<td class="reason">{html.escape(_display("", r.get("reason")))}</td></tr>'
        for r in excluded.to_dict("records")
    )
    return f"<table><tr><th>model</th><th>status</th><th>reason</th></tr>{rows}</table>"


def _script_json(text: str) -> str:
    """JSON safe inside a <script> element (no closing tag or comment opener in it)."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")
