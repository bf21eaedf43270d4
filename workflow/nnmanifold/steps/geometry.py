"""Geometry steps: network distances (diffusion, baselines, Wasserstein) and their PHATE maps."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from nnmanifold.core import storage, versions
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import (
    BaselineSettings,
    EmbeddingSettings,
    GeometrySettings,
    WassersteinSettings,
)

log = logging.getLogger("nnmanifold")


def distances(layout: Layout, batches: Sequence[str], geometry: GeometrySettings) -> None:
    """Network distance matrix ||P_i^t - P_j^t||_F over the models that trained ok (cached
    rows); operators are built from the representations on the fly and never stored."""
    import pandas as pd
    from tqdm import tqdm

    from nnmanifold.geometry import distances as dist
    from nnmanifold.geometry.diffusion import degeneracy_warning

    probe = storage.read_probe(layout.probe)
    ok = _ok_models(layout, batches)
    representations = {
        mid: storage.read_activations(layout.activations(mid), geometry.layer, probe["hash"])[0]
        for mid in tqdm(ok, desc="representations", unit="model", file=sys.stderr)
    }
    attrs = dist.fingerprint(geometry.operator, probe["hash"], geometry.layer_name)
    result = dist.distance_matrix(
        representations,
        geometry.operator,
        memory_budget_bytes=geometry.memory_budget_mb * 2**20,
        cache_path=layout.distance_cache,
        attrs=attrs,
        device=geometry.device,
    )
    for mid, diag in zip(result.model_ids, result.diagnostics, strict=True):
        if message := degeneracy_warning(diag, mid):
            log.warning("%s", message)
    diagnostics = [{"model_id": m, **d} for m, d in zip(ok, result.diagnostics, strict=True)]
    storage.write_csv(layout.kernel_diagnostics, pd.DataFrame(diagnostics))
    log.info("%d x %d distances, %d pairs computed", len(ok), len(ok), result.n_computed)
    attrs = {**attrs, "versions": storage.canonical_json(versions.library_versions())}
    storage.write_distances(layout.distances, result.distances, result.model_ids, attrs)


def baselines(
    layout: Layout,
    batches: Sequence[str],
    geometry: GeometrySettings,
    settings: BaselineSettings,
) -> None:
    """The standard representation-similarity distances of ``settings.distances`` (cka, rsa,
    procrustes) between the models that trained ok, from the same representations and
    normalisation as the diffusion distance; each network's representations are read once."""
    from nnmanifold.geometry import similarity

    probe = storage.read_probe(layout.probe)
    ok = _ok_models(layout, batches, record_excluded=False)
    compared = {
        kind: similarity.networks_compared(len(ok), kind, settings.max_networks)
        for kind in settings.distances
    }
    reps = {
        i: storage.read_activations(layout.activations(ok[i]), geometry.layer, probe["hash"])[0]
        for i in sorted({int(i) for indices in compared.values() for i in indices})
    }
    for kind, indices in compared.items():
        result = similarity.distance_matrix(
            [reps[i] for i in indices],
            kind,
            geometry.normalization,
            geometry.memory_budget_mb * 2**20,
            max_networks=settings.max_networks,
        )
        attrs = {
            "kind": kind,
            "normalization": geometry.normalization,
            "layer": geometry.layer_name,
            "probe_hash": probe["hash"],
            "networks_of_zoo": len(ok),
        }
        ids = [ok[indices[i]] for i in result.networks]
        storage.write_distances(layout.distances_of(kind), result.distances, ids, attrs)
        del result  # one N x N matrix at a time


def embed(
    layout: Layout, batches: Sequence[str], settings: EmbeddingSettings, distances: Sequence[str]
) -> None:
    """PHATE map of each network distance of ``distances`` (diffusion, wasserstein or a
    baseline), joined with accuracy, hyperparameters and features (one import of PHATE for
    all)."""
    import pandas as pd

    from nnmanifold.geometry import embedding

    metrics = storage.read_manifests([layout.network_manifest(b) for b in batches])
    feats = storage.read_manifests([layout.features_manifest(b) for b in batches])
    zoo = pd.read_csv(layout.zoo)
    for distance in distances:
        D, ids, _ = storage.read_distances(layout.distances_of(distance))
        coords = embedding.phate_embedding(
            D, settings.n_components, settings.knn, settings.decay, settings.seed
        )
        table = embedding.embedding_table(coords, ids, zoo, metrics)
        table = table.merge(feats.drop(columns=["status"]), on="model_id", how="left")
        storage.write_csv(layout.embedding_of(distance), table)


def wasserstein(
    layout: Layout, batches: Sequence[str], settings: WassersteinSettings, threads: int = 1
) -> None:
    """Wasserstein distances between the models' H1 persistence diagrams (a second distance;
    cached rows: only models whose diagrams file is new or changed are computed)."""
    from nnmanifold.geometry import wasserstein as wasserstein_lib

    table = storage.read_manifests([layout.features_manifest(b) for b in batches])
    ok = list(table.loc[table["status"] == "ok", "model_id"])
    ids = [ok[k] for k in wasserstein_lib.covered(ok, settings.max_networks)]
    if len(ids) < len(ok):
        log.warning(
            "Wasserstein map of %d of %d models (wasserstein.max_networks=%d); raise it for all "
            "of them (cost grows as N^2 pairs)",
            len(ids),
            len(ok),
            settings.max_networks,
        )
    digests = [storage.file_hash(layout.diagrams(m)) for m in ids]
    diagrams = [
        wasserstein_lib.finite_bars(storage.read_diagrams(layout.diagrams(m))[1]) for m in ids
    ]
    attrs = {"diagram_dimension": 1}
    cached = storage.read_current_cache(layout.wasserstein_cache, attrs)
    W, evaluated = wasserstein_lib.incremental_matrix(ids, digests, diagrams, cached, threads)
    log.info("%d x %d Wasserstein distances, %d pairs computed", len(ids), len(ids), evaluated)
    storage.write_distances(layout.wasserstein_cache, W, ids, attrs, digests)
    storage.write_distances(layout.wasserstein, W, ids, {**attrs, "networks_of_zoo": len(ok)})


def _ok_models(layout: Layout, batches: Sequence[str], record_excluded: bool = True) -> list[str]:
    """Models that trained ok; the others are listed in ``geometry/excluded.csv``."""
    table = storage.read_manifests([layout.network_manifest(b) for b in batches])
    ok = table["status"] == "ok"
    if not record_excluded:
        return list(table.loc[ok, "model_id"])
    storage.write_csv(layout.excluded, table[~ok])
    if (~ok).any():
        log.warning("%d models excluded from the geometry (see %s)", (~ok).sum(), layout.excluded)
    return list(table.loc[ok, "model_id"])
