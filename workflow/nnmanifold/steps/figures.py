"""Figure steps: the paper figures and the interactive map."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nnmanifold.core import storage
from nnmanifold.core.paths import FIGURES, Layout
from nnmanifold.report.vocabulary import BASELINE_NAMES
from nnmanifold.zoo.specs import HYPERPARAMETERS

log = logging.getLogger("nnmanifold")


def figures(layout: Layout, baselines: Sequence[str] = (), processes: int = 1) -> None:
    """Paper figures (PNG + PDF) of the map, the features and the statistics, rendered in
    ``processes`` processes."""
    import pandas as pd

    from nnmanifold.analysis import features as features_lib
    from nnmanifold.report import figures_map, figures_stats, style

    table = pd.read_csv(layout.embedding)
    ok = table[table["status"] == "ok"]
    topology = pd.read_csv(layout.wasserstein_embedding)
    D, ids, _ = storage.read_distances(layout.distances)
    corr = pd.read_csv(layout.stats("feature_correlations"))
    accuracy = ok.set_index("model_id").loc[ids, "test_accuracy"].to_numpy()
    extremes = figures_stats.best_and_worst(ok)
    diagrams = [storage.read_diagrams(layout.diagrams(m)) for m in extremes["model_id"]]
    drawn = {
        "map_accuracy": figures_map.map_by(ok, "test_accuracy"),
        "map_features": figures_map.map_facets(ok, list(features_lib.FEATURE_NAMES)),
        "map_hyperparameters": figures_map.map_facets(ok, [*HYPERPARAMETERS, "seed"]),
        "features_vs_accuracy": figures_stats.features_vs_accuracy(ok, corr),
        "distance_heatmap": figures_map.distance_heatmap(D, ids, accuracy),
        "persistence": figures_stats.persistence_diagrams(
            *diagrams, labels=list(extremes["label"])
        ),
        "informativeness": figures_stats.informativeness(
            pd.read_csv(layout.stats("map_informativeness"))
        ),
        "map_topology": figures_map.map_by(
            topology[topology["status"] == "ok"],
            "test_accuracy",
            title="map of H1 Wasserstein distances",
        ),
        "summary": figures_stats.summary(ok, D, ids, corr),
        "map_baselines": figures_map.maps_side_by_side(
            {
                "diffusion distance": ok,
                **{
                    BASELINE_NAMES[k]: pd.read_csv(layout.embedding_of(k)).query("status == 'ok'")
                    for k in baselines
                },
            },
            "test_accuracy",
        ),
    }
    assert set(drawn) == set(FIGURES), "paths.FIGURES lists the figures this step draws"
    style.save_all({layout.figure(name): fig for name, fig in drawn.items()}, processes)


def interactive_map(layout: Layout) -> None:
    """The interactive map (one offline HTML page): hover, colour by anything, nearest networks;
    networks placed on it (geometry/placed.csv), if any, marked."""
    import pandas as pd

    from nnmanifold.report import interactive

    page = interactive.map_html(
        pd.read_csv(layout.embedding),
        pd.read_csv(layout.wasserstein_embedding),
        pd.read_csv(layout.excluded),
        results_label=str(layout.root),
        placed=pd.read_csv(layout.placed) if layout.placed.exists() else None,
    )
    interactive.write(layout.interactive_map, page)
