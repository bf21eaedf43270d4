"""The statistics step: zoo summary, feature correlations, map informativeness."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from nnmanifold.core import storage
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import (
    StatsSettings,
)
from nnmanifold.report.vocabulary import BASELINE_NAMES, METADATA_PREFIX
from nnmanifold.zoo.specs import HYPERPARAMETERS

log = logging.getLogger("nnmanifold")


def stats(layout: Layout, settings: StatsSettings, baselines: Sequence[str] = ()) -> None:
    """Relate features and the map to accuracy: zoo summary, correlations, informativeness."""
    import pandas as pd

    from nnmanifold.analysis import stats as stats_lib
    from nnmanifold.analysis.features import FEATURE_NAMES

    everyone = pd.read_csv(layout.embedding)
    chance = storage.read_probe(layout.probe)["chance_accuracy"]
    summary = stats_lib.zoo_summary(everyone["status"], everyone["test_accuracy"], chance)
    storage.write_csv(layout.stats("zoo_summary"), summary)
    log.info("%s", stats_lib.summary_line(summary))
    D, ids, _ = storage.read_distances(layout.distances)
    known = everyone.set_index("model_id").loc[ids, "test_accuracy"].notna().to_numpy()
    if not known.all():  # networks from elsewhere without accuracy stay on the map, not in here
        log.info("%d networks without test accuracy left out of the statistics", (~known).sum())
        D, ids = D[np.ix_(known, known)], list(np.asarray(ids)[known])
    table = everyone.set_index("model_id").loc[ids]
    accuracy = table["test_accuracy"].to_numpy()
    feats = table[list(FEATURE_NAMES)]
    corr = stats_lib.feature_correlations(feats, accuracy, settings.n_bootstrap, settings.seed)
    storage.write_csv(layout.stats("feature_correlations"), corr)
    metadata = [c for c in table if c.startswith(METADATA_PREFIX)]  # networks from elsewhere
    described = [*(c for c in HYPERPARAMETERS if c in table), *metadata]
    hyper = table[described].dropna(axis=1, how="all")
    others = {}
    for kind in baselines:
        D_k, ids_k, _ = storage.read_distances(layout.distances_of(kind))
        keep = np.isin(ids, ids_k)
        order = pd.Series(range(len(ids_k)), index=ids_k)[np.asarray(ids)[keep]].to_numpy()
        others[BASELINE_NAMES[kind]] = (D_k[np.ix_(order, order)], keep)
    info = stats_lib.map_informativeness(
        D,
        accuracy,
        feats,
        hyper,
        k=settings.knn,
        n_perm=settings.n_permutations,
        seed=settings.seed,
        others=others,
    )
    storage.write_csv(layout.stats("map_informativeness"), info)
    names = ["diffusion distance", *others]
    storage.write_csv(
        layout.stats("distance_comparison"), stats_lib.distance_comparison(info, names)
    )
    log.info("map informativeness:\n%s", info.to_string(index=False))
    storage.write_yaml(layout.report_metadata, stats_lib.headline(summary, info))
