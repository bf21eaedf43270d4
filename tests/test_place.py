"""Placing new networks on a finished map: graph rows as PHATE's own, positions, the support
flag, the place step's table (the map's files untouched) and the interactive map's marks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from test_interactive import page_json

from nnmanifold import cli
from nnmanifold.core import storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import EmbeddingSettings, GeometrySettings
from nnmanifold.geometry import placement
from nnmanifold.geometry.diffusion import OperatorSettings
from nnmanifold.geometry.distances import cross_distances, distance_matrix
from nnmanifold.geometry.embedding import phate_embedding
from nnmanifold.report import interactive
from nnmanifold.steps import geometry as geometry_steps
from nnmanifold.steps import place as place_steps

KNN, DECAY, SEED = 5, 40.0, 0


def representations(n_networks: int, seed: int = 0) -> list[np.ndarray]:
    """Hidden layers of random tanh networks on 60 digits, at a continuum of input scales."""
    X = load_digits().data[:60] / 16.0
    rng = np.random.default_rng(seed)
    return [
        np.tanh(rng.uniform(0.2, 3.0) * X @ rng.normal(size=(64, 12)) / 8.0)
        for _ in range(n_networks)
    ]


@pytest.fixture(scope="module")
def fitted_map() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Distances and PHATE map of 40 networks, with their representations."""
    reps = representations(40)
    D = distance_matrix(
        dict(enumerate(reps)), OperatorSettings(), memory_budget_bytes=2**26, device="cpu"
    ).distances
    return D, phate_embedding(D, 2, KNN, DECAY, SEED), reps


def test_kernel_and_transition_rows_of_an_in_sample_network_equal_phates_own(fitted_map):
    D, Y, _ = fitted_map
    graph = placement.map_graph(D, Y, KNN, DECAY, SEED)
    import graphtools

    own = graphtools.Graph(D, precomputed="distance", knn=KNN, decay=DECAY, thresh=1e-4)
    K = own.kernel.toarray() if hasattr(own.kernel, "toarray") else np.asarray(own.kernel)
    for i in (0, 17, 39):
        others = np.delete(np.arange(len(D)), i)
        row = placement.kernel_rows(D[i, others], graph.bandwidths[others], KNN, DECAY)[0]
        np.testing.assert_allclose(row, K[i, others], rtol=1e-12, atol=1e-15)
        # PHATE's transition row of i, without the step to itself, renormalised
        step = graph.operator[i, others] / graph.operator[i, others].sum()
        np.testing.assert_allclose(placement.transition_rows(row[None])[0], step, rtol=1e-12)


def test_a_network_already_on_the_map_is_placed_at_its_own_position(fitted_map):
    D, Y, _ = fitted_map
    graph = placement.map_graph(D, Y, KNN, DECAY, SEED)
    diameter = np.ptp(Y, axis=0).max()
    result = placement.place(graph, D[[3, 21, 30]])
    error = np.linalg.norm(result.coords - Y[[3, 21, 30]], axis=1)
    # its own row counts itself among its k nearest, so its bandwidth is a little narrower
    assert error.max() < 0.06 * diameter and np.median(error) < 0.01 * diameter, error / diameter
    assert list(result.nearest[:, 0]) == [3, 21, 30]
    assert not result.out_of_support.any()


def test_the_maps_own_potential_rows_give_back_the_maps_coordinates(fitted_map):
    D, Y, _ = fitted_map
    graph = placement.map_graph(D, Y, KNN, DECAY, SEED)
    rows = [0, 9, 33]
    start = Y[rows] + 0.1 * np.ptp(Y, axis=0).max()
    y = placement.stress_position(graph, graph.potentials[rows], start)
    # to 0.5 % of the map: SMACOF stopped drawing the map at its own tolerance
    np.testing.assert_allclose(y, Y[rows], atol=0.005 * np.ptp(Y, axis=0).max())


def test_a_left_out_network_lands_nearer_its_place_than_the_map_is_wide(fitted_map):
    D, Y, _ = fitted_map
    i, others = 11, np.delete(np.arange(len(D)), 11)
    Y_rest = phate_embedding(D[np.ix_(others, others)], 2, KNN, DECAY, SEED)
    graph = placement.map_graph(D[np.ix_(others, others)], Y_rest, KNN, DECAY, SEED)
    placed = placement.place(graph, D[i, others]).coords[0]
    from scipy.spatial import procrustes

    # align the map without i to the full map, i included as its last row
    _, aligned, _ = procrustes(Y[np.r_[others, i]], np.vstack([Y_rest, placed]))
    full, _, _ = procrustes(Y[np.r_[others, i]], np.vstack([Y_rest, placed]))
    assert np.linalg.norm(aligned[-1] - full[-1]) < 0.1 * np.ptp(full, axis=0).max()


def test_a_far_network_is_out_of_support_and_a_near_one_is_not(fitted_map):
    D, Y, _ = fitted_map
    graph = placement.map_graph(D, Y, KNN, DECAY, SEED)
    near = D[5] + 0.5 * graph.support_radius
    far = D[5] + 2.0 * graph.support_radius
    assert list(placement.place(graph, np.vstack([near, far])).out_of_support) == [False, True]


@pytest.mark.parametrize("budget", [2**26, 200_000])  # operators resident; in row blocks
def test_distances_to_the_map_equal_the_map_matrix_rows(fitted_map, budget):
    D, _, reps = fitted_map
    block = cross_distances(
        reps[:4], reps, OperatorSettings(), memory_budget_bytes=budget, device="cpu"
    )
    np.testing.assert_allclose(block, D[:4], atol=1e-9 * D.max())


def write_results(root: Path, reps: list[np.ndarray], n_map: int) -> tuple[Layout, list[Path]]:
    """A results folder: probe, activations, the map's manifest, distances and embedding.csv
    (as the workflow writes them) for the first n_map networks; a place manifest for the rest."""
    layout = Layout(root)
    n = len(reps[0])
    probe = {"indices": np.arange(n), "labels": np.arange(n) % 10, "x": np.zeros((n, 1))}
    storage.write_probe(layout.probe, {**probe, "hash": "p1", "dataset": "digits",
                                       "chance_accuracy": 0.1})  # fmt: skip
    ids = [f"net{i:02d}" for i in range(len(reps))]
    for mid, X in zip(ids, reps, strict=True):
        layout.activations(mid).parent.mkdir(parents=True)
        storage.write_activations(
            layout.activations(mid), {"fc1": X}, model_id=mid, probe_hash="p1", status="ok"
        )
    layout.train_manifest("b0").parent.mkdir(parents=True, exist_ok=True)
    storage.write_json(
        layout.train_manifest("b0"), [{"model_id": m, "status": "ok"} for m in ids[:n_map]]
    )
    geometry_steps.distances(layout, ["b0"], geometry())
    D, map_ids, _ = storage.read_distances(layout.distances)
    Y = phate_embedding(D, 2, KNN, DECAY, SEED)
    storage.write_csv(layout.embedding, pd.DataFrame(Y, columns=["phate_1", "phate_2"]).assign(
        model_id=map_ids))  # fmt: skip
    place_manifest = root / "place.json"
    storage.write_json(place_manifest, [{"model_id": m, "status": "ok"} for m in ids[n_map:]])
    return layout, [place_manifest]


def geometry() -> GeometrySettings:
    return GeometrySettings(
        layer=None, sigma=0.5, normalization="l2", t=1, memory_budget_mb=64, device="cpu"
    )


def test_place_command_writes_placed_csv_and_leaves_the_map_byte_identical(tmp_path: Path):
    reps = representations(26, seed=1)
    layout, place_manifests = write_results(tmp_path, reps, 24)
    before = {p: p.read_bytes() for p in (layout.embedding, layout.distances)}
    cli.main(
        [
            "place", "--results", str(tmp_path), "--memory-budget-mb", "64", "--device", "cpu",
            "--geometry", json.dumps({"layer": None, "normalization": "l2", "sigma": 0.5, "t": 1}),
            "--embedding", json.dumps({"decay": DECAY, "knn": KNN, "n_components": 2, "seed": 0}),
            "--map-manifests", str(layout.train_manifest("b0")),
            "--place-manifests", *map(str, place_manifests),
        ]
    )  # fmt: skip
    assert {p: p.read_bytes() for p in before} == before
    table = pd.read_csv(layout.placed)
    assert list(table["model_id"]) == ["net24", "net25"]
    assert {"phate_1", "phate_2", "nearest_1", "nearest_5", "nearest_distance"} <= set(table)
    assert np.isfinite(table[["phate_1", "phate_2"]].to_numpy()).all()
    stored = {i: X.astype(np.float32) for i, X in enumerate(reps)}  # as activations.h5 holds them
    D = distance_matrix(
        stored, OperatorSettings(), memory_budget_bytes=2**26, device="cpu"
    ).distances
    assert table.loc[0, "nearest_1"] == f"net{int(np.argmin(D[24, :24])):02d}"
    np.testing.assert_allclose(table["nearest_distance"], D[24:, :24].min(axis=1), rtol=1e-9)
    assert not table["out_of_support"].any()


def test_place_step_refuses_a_map_made_with_other_settings(tmp_path: Path):
    layout, place_manifests = write_results(tmp_path, representations(8, seed=2), 7)
    other = GeometrySettings(
        layer=None, sigma=0.7, normalization="l2", t=1, memory_budget_mb=64, device="cpu"
    )
    settings = EmbeddingSettings(n_components=2, knn=KNN, decay=DECAY, seed=SEED)
    with pytest.raises(UserError, match="other geometry settings"):
        place_steps.place(layout, [layout.train_manifest("b0")], place_manifests, other, settings)


def test_interactive_map_marks_placed_networks_apart_from_the_map():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {"model_id": ["a", "b", "c"], "phate_1": rng.normal(size=3),
         "phate_2": rng.normal(size=3), "test_accuracy": 0.5, "status": "ok"}
    )  # fmt: skip
    placed = pd.DataFrame(
        {"model_id": ["new1"], "phate_1": [0.25], "phate_2": [-0.5], "nearest_1": ["a"],
         "out_of_support": [False]}
    )  # fmt: skip
    excluded = table.iloc[:0]
    page = interactive.map_html(table, None, excluded, placed=placed)
    marks = [t for t in page_json(page, "nnm-figure")["data"] if t.get("name") == "placed"]
    assert len(marks) == 1 and marks[0]["marker"]["symbol"] == "x"
    assert plotted(marks[0]["x"]) == [0.25] and plotted(marks[0]["y"]) == [-0.5]
    assert "new1" in json.dumps(marks[0]["customdata"])
    assert "1 placed on it" in page
    plain = interactive.map_html(table, None, excluded)
    assert all(t.get("name") != "placed" for t in page_json(plain, "nnm-figure")["data"])


def plotted(values: list | dict) -> list[float]:
    """Plotly figure JSON values as a list (plotly 6 writes arrays as base64 typed arrays)."""
    if isinstance(values, dict):
        import base64

        return np.frombuffer(base64.b64decode(values["bdata"]), values["dtype"]).tolist()
    return list(values)


def test_on_a_landmark_map_networks_are_placed_through_the_landmarks(fitted_map, monkeypatch):
    import phate

    D, _, _ = fitted_map
    monkeypatch.setattr(placement, "N_LANDMARK", 12)
    Y = phate.PHATE(
        knn_dist="precomputed_distance", knn=KNN, decay=DECAY, n_landmark=12,
        mds_solver="smacof", random_state=SEED, verbose=0,
    ).fit_transform(D)  # fmt: skip
    graph = placement.map_graph(D, Y, KNN, DECAY, SEED)
    assert graph.clusters is not None and len(graph.node_coords) == 12
    # the map is each network's transitions onto the landmarks times their coordinates
    result = placement.place(graph, D[[4, 25]])
    error = np.linalg.norm(result.coords - Y[[4, 25]], axis=1)
    assert error.max() < 0.02 * np.ptp(Y, axis=0).max(), error  # plain interpolation: 4-7 %
