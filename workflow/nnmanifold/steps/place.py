"""Place step: new networks on the finished map, which is read and never refitted or rewritten."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnmanifold.core import storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import EmbeddingSettings, GeometrySettings

log = logging.getLogger("nnmanifold")

#: Nearest map networks listed per placed network.
N_NEAREST = 5


def place(
    layout: Layout,
    map_manifests: Sequence[Path],
    place_manifests: Sequence[Path],
    geometry: GeometrySettings,
    embedding: EmbeddingSettings,
) -> None:
    """Place the networks of the place manifests on the map (geometry/placed.csv): distances to
    the map's networks, kernel rows as PHATE's graph built its own, PHATE-potential position."""
    import pandas as pd
    from tqdm import tqdm

    from nnmanifold.geometry import placement
    from nnmanifold.geometry.distances import cross_distances

    D, ids, attrs = storage.read_distances(layout.distances)
    _check_map(ids, attrs, map_manifests, geometry)
    table = pd.read_csv(layout.embedding).set_index("model_id")
    axes = [c for c in table.columns if c.startswith("phate_")]
    Y = table.loc[ids, axes].to_numpy(float)
    placed = storage.read_manifests(list(place_manifests))
    ok = placed["status"] == "ok"
    if (~ok).any():
        log.warning(
            "%d networks not placed (status not ok): %s",
            (~ok).sum(),
            ", ".join(placed.loc[~ok, "model_id"]),
        )
    new_ids = list(placed.loc[ok, "model_id"])
    if not new_ids:
        raise UserError("no network to place: every row of the place manifests failed")
    probe = storage.read_probe(layout.probe)

    def read(models: list[str], what: str) -> list[np.ndarray]:
        return [
            storage.read_activations(layout.activations(m), geometry.layer, probe["hash"])[0]
            for m in tqdm(models, desc=what, unit="model", file=sys.stderr)
        ]

    d = cross_distances(
        read(new_ids, "placed"),
        read(ids, "map"),
        geometry.operator,
        memory_budget_bytes=geometry.memory_budget_mb * 2**20,
        device=geometry.device,
    )
    graph = placement.map_graph(D, Y, embedding.knn, embedding.decay, embedding.seed)
    result = placement.place(graph, d, N_NEAREST)
    out = pd.DataFrame(result.coords, columns=axes).assign(model_id=new_ids)
    for k in range(result.nearest.shape[1]):
        out[f"nearest_{k + 1}"] = [ids[j] for j in result.nearest[:, k]]
    out["nearest_distance"] = result.nearest_distances[:, 0]
    out["out_of_support"] = result.out_of_support
    storage.write_csv(layout.placed, out[["model_id", *out.columns.drop("model_id")]])
    log.info(
        "%d networks placed on a map of %d (%d out of its support)",
        len(new_ids),
        len(ids),
        int(result.out_of_support.sum()),
    )


def _check_map(
    ids: list[str], attrs: dict, map_manifests: Sequence[Path], geometry: GeometrySettings
) -> None:
    """The map must be current: built with these operator settings and layer, of networks
    its manifests still list as ok."""
    if attrs.get("settings_key") != geometry.operator.key() or attrs.get("layer") != (
        geometry.layer_name
    ):
        raise UserError(
            "the map's distances were computed with other geometry settings or layer than the "
            "config's; run `snakemake` to bring the map up to date before placing networks"
        )
    table = storage.read_manifests(list(map_manifests))
    missing = sorted(set(ids) - set(table.loc[table["status"] == "ok", "model_id"]))
    if missing:
        raise UserError(
            f"{len(missing)} map networks (first: {missing[0]}) are not ok in the map's "
            "manifests: the map is stale; run `snakemake` to refit it before placing networks"
        )
