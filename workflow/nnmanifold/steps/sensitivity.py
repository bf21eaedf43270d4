"""The sensitivity step: how informative the map stays over sigma, t, normalisation, layer."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nnmanifold.core import storage
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import (
    SensitivitySettings,
    StatsSettings,
)

log = logging.getLogger("nnmanifold")


def sensitivity(
    layout: Layout,
    batches: Sequence[str],
    settings: SensitivitySettings,
    stats_settings: StatsSettings,
) -> None:
    """Sweep sigma, normalisation, t and layer; report how informative the map stays."""
    from nnmanifold.analysis import sensitivity as sweep_lib
    from nnmanifold.report import figures_stats, style

    probe = storage.read_probe(layout.probe)
    table = storage.read_manifests([layout.network_manifest(b) for b in batches])
    ok = table[(table["status"] == "ok") & table["test_accuracy"].notna()]  # accuracy known
    if len(ok) > settings.max_models:
        log.info("sweeping a random %d of %d networks", settings.max_models, len(ok))
        ok = ok.sample(settings.max_models, random_state=stats_settings.seed).sort_index()
    files = [layout.activations(m) for m in ok["model_id"]]
    penultimate = [storage.read_activations(f, None, probe["hash"]) for f in files]
    representations = {"penultimate": [X for X, _ in penultimate]}
    for layer in sweep_lib.shared_layers([attrs["layer_order"] for _, attrs in penultimate]):
        representations[layer] = [storage.read_activations(f, layer)[0] for f in files]
    result = sweep_lib.sweep(
        representations,
        ok["test_accuracy"].to_numpy(),
        settings.sigmas,
        settings.normalizations,
        settings.ts,
        k=stats_settings.knn,
        n_perm=stats_settings.n_permutations,
        seed=stats_settings.seed,
        progress=True,
    )
    storage.write_csv(layout.stats("sensitivity"), result.assign(n_models=len(ok)))
    style.save(figures_stats.sensitivity(result), layout.figure("sensitivity"))
