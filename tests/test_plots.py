"""Tests for nnmanifold.plots on a synthetic zoo: figure structure, colouring rules and saving."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from scipy import stats
from scipy.spatial.distance import pdist, squareform

from nnmanifold.analysis.features import FEATURE_NAMES
from nnmanifold.report import figures_map, figures_stats, style

HYPERPARAMETERS = [
    "arch",
    "depth",
    "width",
    "activation",
    "lr",
    "weight_decay",
    "momentum",
    "epochs",
]
VARYING = ["depth", "width", "lr", "epochs"]


def synthetic_zoo(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """48 networks on the default grid with a smooth accuracy field; embedding table and D."""
    rng = np.random.default_rng(seed)
    grid = itertools.product([1, 2], [8, 64], [1e-3, 1e-2, 1e-1], [1, 10], [0, 1])
    hp = pd.DataFrame(grid, columns=["depth", "width", "lr", "epochs", "seed"])
    quality = 1 / (1 + np.exp(-(np.log10(hp["lr"]) + 2 + np.log10(hp["epochs"]))))
    quality = (quality + 0.1 * np.log2(hp["width"]) / 6).to_numpy()
    latent = np.column_stack(
        [3 * quality, np.log10(hp["lr"]), hp["epochs"] / 10, 0.3 * hp["depth"]]
    ) + rng.normal(0, 0.05, (len(hp), 4))
    D = squareform(pdist(latent))
    centred = latent - latent.mean(axis=0)
    coords = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    n = len(hp)
    table = hp.assign(
        model_id=[f"m{i:02d}" for i in range(n)],
        phate_1=coords[:, 0],
        phate_2=coords[:, 1],
        test_accuracy=np.clip(0.1 + 0.85 * quality + rng.normal(0, 0.02, n), 0, 1),
        status="ok",
        arch="mlp",
        activation="relu",
        momentum=0.9,
    )
    for k, name in enumerate(FEATURE_NAMES):
        table[name] = (k % 3 - 1) * quality + rng.normal(0, 0.1 * (k + 1), n)
    table.loc[3, "h1_total_persistence"] = np.nan
    return table, D


def correlation_table(embedding: pd.DataFrame) -> pd.DataFrame:
    """A correlation table shaped like stats.feature_correlations (CI faked as rho +- 0.1)."""
    rows = []
    for name in FEATURE_NAMES:
        keep = embedding[name].notna()
        rho = stats.spearmanr(embedding.loc[keep, name], embedding.loc[keep, "test_accuracy"])[0]
        ci = {"ci_low": rho - 0.1, "ci_high": rho + 0.1}
        rows.append({"feature": name, "rho": rho, **ci, "p": 0.01, "n": int(keep.sum())})
    return pd.DataFrame(rows)


def informativeness_table() -> pd.DataFrame:
    """A table shaped like stats.map_informativeness for 3 baselines and 2 features."""
    predictors = ["diffusion distance", "hyperparameters", "random distance"]
    predictors += ["feature: silhouette", "feature: spectral_entropy"]
    strata = ["all", "top 50%", "top 25%"]
    rng = np.random.default_rng(1)
    rows = [
        {"predictor": p, "stratum": s, "r2": rng.uniform(-0.3, 0.9), "r2_p": rng.uniform(0, 0.2)}
        for p, s in itertools.product(predictors, strata)
    ]
    return pd.DataFrame(rows).assign(smoothness_energy=0.5, smoothness_p=0.01, n=48, k=5)


def sensitivity_table(layers: tuple[str, ...] = ("fc2",)) -> pd.DataFrame:
    """A sensitivity sweep: 6 sigmas (one 'median') x 3 normalisations x 3 t x layers."""
    sigmas = [0.1, 0.25, 0.5, 1.0, 2.0, "median"]
    grid = itertools.product(sigmas, ["none", "l2", "standardize"], [1, 2, 4], layers)
    table = pd.DataFrame(grid, columns=["sigma", "normalization", "t", "layer"])
    rng = np.random.default_rng(2)
    degenerate = (table["normalization"] == "none") & (table["sigma"].isin([0.1, 0.25]))
    return table.assign(
        r2=np.where(degenerate, 0.0, rng.uniform(0.2, 0.9, len(table))),
        smoothness_p=rng.uniform(0, 0.1, len(table)),
        mean_diagonal_mass=np.where(degenerate, 0.99, 0.2),
        effective_neighbours=20.0,
    )


@pytest.fixture(scope="module")
def zoo() -> tuple[pd.DataFrame, np.ndarray]:
    return synthetic_zoo()


def test_map_by_continuous_column_gets_a_colourbar(zoo: tuple[pd.DataFrame, np.ndarray]) -> None:
    fig = figures_map.map_by(zoo[0], "test_accuracy", title="accuracy")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    (bar,) = ax.child_axes
    assert ax.get_legend() is None
    assert bar.get_ylabel() == "test accuracy (%)"
    assert ax.get_title() == "accuracy"
    assert len(ax.get_xticks()) == len(ax.get_yticks()) == 0


def test_map_by_categorical_column_gets_a_legend(zoo: tuple[pd.DataFrame, np.ndarray]) -> None:
    embedding = zoo[0].assign(
        optimizer=np.where(zoo[0]["seed"] == 0, "sgd", "adam"), bn=zoo[0]["depth"] == 2
    )
    for column, expected in (
        ("optimizer", {"sgd", "adam"}),
        ("lr", {"0.001", "0.01", "0.1"}),
        ("bn", {"False", "True"}),
    ):
        fig = figures_map.map_by(embedding, column)
        assert len(fig.axes) == 1
        assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} == expected


def test_map_by_marks_missing_feature_values(zoo: tuple[pd.DataFrame, np.ndarray]) -> None:
    fig = figures_map.map_by(zoo[0], "h1_total_persistence")
    (ax,) = fig.axes
    assert len(ax.child_axes) == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no value"]


def test_map_by_names_a_missing_column(zoo: tuple[pd.DataFrame, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="lacks columns \\['nope'\\]"):
        figures_map.map_by(zoo[0], "nope")


def test_map_facets_skips_constant_and_absent_hyperparameters(
    zoo: tuple[pd.DataFrame, np.ndarray],
) -> None:
    fig = figures_map.map_facets(zoo[0], HYPERPARAMETERS)
    assert len(fig.axes) == len(VARYING)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["depth (hidden layers)", "width (units)", "learning rate", "epochs"]
    with pytest.raises(ValueError, match="varies"):
        figures_map.map_facets(zoo[0], ["arch", "activation", "momentum", "weight_decay"])


def test_map_facets_colours_continuous_lr_on_a_log_scale(
    zoo: tuple[pd.DataFrame, np.ndarray],
) -> None:
    embedding = zoo[0].assign(lr=np.logspace(-4, -1, len(zoo[0])))
    fig = figures_map.map_facets(embedding, ["lr", "depth"])
    lr_map, depth_map = fig.axes
    assert isinstance(lr_map.collections[0].norm, LogNorm)
    assert lr_map.get_legend() is None and len(lr_map.child_axes) == 1
    assert depth_map.get_legend() is not None and not depth_map.child_axes


def test_feature_vs_accuracy_titles_rho_and_interval(zoo: tuple[pd.DataFrame, np.ndarray]) -> None:
    corr = correlation_table(zoo[0]).set_index("feature", drop=False)
    row = corr.loc["silhouette"]
    fig = figures_stats.feature_vs_accuracy(zoo[0], "silhouette", row)
    (ax,) = fig.axes
    assert f"ρ = {row['rho']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" in ax.get_title()
    with pytest.raises(ValueError, match="not of 'ward_ari'"):
        figures_stats.feature_vs_accuracy(zoo[0], "ward_ari", row)


def test_cluster_order_is_a_permutation_that_groups_blocks() -> None:
    labels = np.array([0, 1, 2] * 5)
    D = np.abs(labels[:, None] - labels[None, :]) * 10.0 + 1.0
    np.fill_diagonal(D, 0.0)
    order = figures_map.cluster_order(D)
    assert sorted(order) == list(range(len(labels)))
    assert (np.diff(labels[order]) != 0).sum() == 2


def test_distance_heatmap_shows_the_reordered_matrix(zoo: tuple[pd.DataFrame, np.ndarray]) -> None:
    embedding, D = zoo
    fig = figures_map.distance_heatmap(
        D, embedding["model_id"], embedding["test_accuracy"].to_numpy()
    )
    (heat,) = fig.axes
    strip, acc_bar, dist_bar = heat.child_axes
    assert [acc_bar.get_ylabel(), dist_bar.get_ylabel()] == [
        "test accuracy (%)",
        "diffusion distance",
    ]
    order = figures_map.cluster_order(D)
    np.testing.assert_array_equal(heat.images[0].get_array(), D[np.ix_(order, order)])
    np.testing.assert_array_equal(
        strip.images[0].get_array()[0], embedding["test_accuracy"].to_numpy()[order]
    )
    with pytest.raises(ValueError, match="same networks"):
        figures_map.distance_heatmap(D, embedding["model_id"][:-1], embedding["test_accuracy"])


def test_distance_heatmap_names_few_networks_in_clustered_order(
    zoo: tuple[pd.DataFrame, np.ndarray],
) -> None:
    embedding, D = zoo
    few = embedding.iloc[:12].sample(frac=1, random_state=0)
    D_few = D[np.ix_(few.index, few.index)]
    fig = figures_map.distance_heatmap(D_few, few["model_id"], few["test_accuracy"])
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert names == list(few["model_id"].to_numpy()[figures_map.cluster_order(D_few)])


def test_persistence_diagrams_put_infinite_bars_on_top() -> None:
    best = [np.array([[0, 0.2], [0, 0.5], [0, np.inf]]), np.array([[0.3, 0.9]])]
    worst = [np.array([[0, 0.1], [0, np.inf]]), np.empty((0, 2))]
    fig = figures_stats.persistence_diagrams(best, worst, ["best", "worst"])
    left, right = fig.axes
    assert [left.get_title(), right.get_title()] == ["best", "worst"]
    top = left.get_ylim()[1]
    assert left.get_yticklabels()[-1].get_text() == "∞"
    h0_deaths = left.collections[0].get_offsets()[:, 1]
    assert h0_deaths.max() == pytest.approx(1.1 * 0.9) and h0_deaths.max() < top


def test_informativeness_draws_a_bar_per_row_and_stars_by_p() -> None:
    table = informativeness_table()
    fig = figures_stats.informativeness(table)
    (ax,) = fig.axes
    assert len(ax.patches) == len(table)
    stars = [t.get_text() for t in ax.texts]
    assert len(stars) == int((table["r2_p"] <= 0.05).sum())
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "spectral entropy"


def test_summary_has_four_panels_around_the_strongest_feature(
    zoo: tuple[pd.DataFrame, np.ndarray],
) -> None:
    embedding, D = zoo
    corr = correlation_table(embedding)
    strongest = corr.loc[corr["rho"].abs().idxmax()]
    fig = figures_stats.summary(embedding, D, embedding["model_id"][::-1].tolist(), corr)
    by_accuracy, by_feature, scatter, heat = fig.axes
    letters = [t.get_text() for ax in fig.axes for a in (ax, *ax.child_axes) for t in a.texts]
    assert letters == ["a", "b", "c", "d"]
    assert by_accuracy.child_axes[0].get_ylabel() == "test accuracy (%)"
    assert scatter.get_xlabel() == by_feature.child_axes[0].get_ylabel()
    assert f"ρ = {strongest['rho']:.2f}" in scatter.get_title(loc="left")
    assert len(heat.child_axes) == 3
    with pytest.raises(ValueError, match="missing from the embedding"):
        figures_stats.summary(embedding.iloc[1:], D, embedding["model_id"], corr)


def test_sensitivity_has_a_panel_per_t_and_layer() -> None:
    fig = figures_stats.sensitivity(sensitivity_table())
    assert len(fig.axes) == 3 + 1
    first = fig.axes[0]
    assert [t.get_text() for t in first.get_yticklabels()] == [
        "0.1",
        "0.25",
        "0.5",
        "1",
        "2",
        "median",
    ]
    assert [t.get_text() for t in first.get_xticklabels()] == ["none", "l2", "standardize"]
    assert len(first.patches) == 2
    assert len(figures_stats.sensitivity(sensitivity_table(("fc1", "fc2"))).axes) == 6 + 1


def test_save_writes_png_and_pdf_atomically(
    zoo: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    fig = figures_map.map_by(zoo[0], "depth")
    style.save(fig, tmp_path / "figures" / "map.png")
    files = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert files == ["map.pdf", "map.png"]
    assert (tmp_path / "figures" / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "figures" / "map.pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match=".png"):
        style.save(fig, tmp_path / "map.pdf")


def test_figures_rendered_in_processes_are_those_rendered_in_one(
    zoo: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    """``save_all`` in 2 forked processes writes every figure: each PNG byte for byte as one
    process does (a PDF names its images by a per-process counter, so only its start is
    compared), and a figure that cannot be saved fails the call."""
    table = zoo[0]

    def drawn() -> dict[str, Figure]:  # fresh each time: a figure's first draw sets its layout
        return {
            "depth": figures_map.map_by(table, "depth"),
            "accuracy": figures_map.map_by(table, "test_accuracy"),
            "features": figures_map.map_facets(table, list(FEATURE_NAMES)),
        }

    for processes in (1, 2):
        figs = drawn()
        style.save_all(
            {tmp_path / f"{processes}" / f"{k}.png": f for k, f in figs.items()}, processes
        )
    written = sorted(p.name for p in (tmp_path / "2").iterdir())
    assert written == sorted(f"{k}.{x}" for k in figs for x in ("pdf", "png"))
    for name in written:
        ours, one = ((tmp_path / d / name).read_bytes() for d in ("2", "1"))
        assert ours == one if name.endswith(".png") else ours[:5] == one[:5] == b"%PDF-", name
    with pytest.raises(ValueError, match=".png"):
        style.save_all({tmp_path / "a.png": figs["depth"], tmp_path / "b.pdf": figs["depth"]}, 2)


def test_figures_leave_global_style_alone(zoo: tuple[pd.DataFrame, np.ndarray]) -> None:
    before = dict(mpl.rcParams)
    figures_map.map_by(zoo[0], "test_accuracy")
    assert dict(mpl.rcParams) == before


def test_heatmap_of_a_large_zoo_shows_a_labelled_subsample(monkeypatch) -> None:
    monkeypatch.setattr(figures_map, "MAX_HEATMAP_NETWORKS", 30)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    D = np.linalg.norm(X[:, None] - X[None], axis=2)
    fig = figures_map.distance_heatmap(D, [f"m{i}" for i in range(80)], rng.random(80))
    heat = fig.axes[0]
    assert heat.images[0].get_array().shape == (30, 30)
    assert "random 30 of N = 80" in heat.get_xlabel()


def test_maps_side_by_side_draw_one_panel_per_distance(
    zoo: tuple[pd.DataFrame, np.ndarray],
) -> None:
    table, _ = zoo
    unplaced = table.copy()
    unplaced.loc[unplaced.index[:3], ["phate_1", "phate_2"]] = np.nan
    fig = figures_map.maps_side_by_side({"diffusion": table, "CKA": unplaced}, "test_accuracy")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        f"diffusion (N = {len(table)})",
        f"CKA (N = {len(table) - 3})",
    ]
    assert len(panels[1].collections[0].get_offsets()) == len(table) - 3
