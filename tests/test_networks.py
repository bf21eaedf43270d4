"""Networks from elsewhere through the real commands: a mixed map (zoo, checkpoints, arrays)
whose distances match a direct computation, and every bad input named before any job."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY, planned_jobs, snakemake, write_config

from nnmanifold.core import storage
from nnmanifold.core.paths import Layout

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "external_networks"
sys.path.insert(0, str(EXAMPLE))
import digits_nets  # noqa: E402 - the example's plain PyTorch networks

#: Networks the bad-input tests name: each misbehaves in one way.
BAD_NETS = """
import torch
from torch import nn


def rgb():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 9))


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU())
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        h = self.body(x)
        return self.head(h), h


def pair():
    return Pair()
"""


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return digits_nets.wide_mlp(16).eval()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Checkpoints of two example MLPs, the misbehaving networks' module, and the example's."""
    (tmp_path / "ckpt").mkdir()
    for seed in (0, 1):
        torch.save(_mlp(seed).state_dict(), tmp_path / "ckpt" / f"mlp{seed}.pt")
    (tmp_path / "badnets.py").write_text(BAD_NETS)
    shutil.copy(EXAMPLE / "digits_nets.py", tmp_path)
    return tmp_path


def _config(**sections) -> dict:
    config = copy.deepcopy(TINY)
    config["sensitivity"] = {"in_default_run": False}
    config["baselines"] = {"distances": []}
    config.update(sections)
    return config


MLPS = {"name": "mlp", "factory": "digits_nets:wide_mlp", "kwargs": {"width": 16}}
BAD = {"name": "bad"}


def _validate(workdir: Path, config: dict, monkeypatch, caplog) -> tuple[int, str]:
    """`nnmanifold validate` on the config (the checks the workflow runs before any job), in
    this process: its exit status and what it logged."""
    from nnmanifold import cli

    write_config(workdir, config)
    monkeypatch.chdir(workdir)
    caplog.clear()
    try:
        cli.main(["validate", "config.yaml"])
    except SystemExit as end:
        return end.code, caplog.text
    return 0, caplog.text


def _write_probe(workdir: Path, digits) -> dict:
    probe = digits[1]
    storage.write_probe(workdir / "results" / "probe.h5", {**probe, "chance_accuracy": 0.1})
    return probe


def test_every_bad_input_is_named_before_any_job(workdir, digits, monkeypatch, caplog):
    probe = _write_probe(workdir, digits)
    rows = np.random.default_rng(0).normal(size=(len(probe["x"]), 4))
    np.savez(workdir / "short.npz", activations=rows[:-1], probe_hash=probe["hash"])
    np.savez(workdir / "other.npz", activations=rows, probe_hash="0000000000000000")
    state = _mlp(0).state_dict()
    torch.save({f"module.{k}": v for k, v in state.items()}, workdir / "prefixed.pt")
    torch.save({"model": state, "args": argparse_namespace()}, workdir / "pickled.pt")
    torch.save(badnets_state("rgb", workdir), workdir / "rgb.pt")
    torch.save(badnets_state("pair", workdir), workdir / "pair.pt")
    cases = [
        ({**MLPS, "factory": "no_such_module:f", "checkpoints": "ckpt/*.pt"}, "cannot import"),
        ({**MLPS, "checkpoints": "pickled.pt", "state_dict_key": "model"}, "trust_pickle: true"),
        ({**MLPS, "checkpoints": "prefixed.pt"}, "set strip_prefix: 'module.'"),
        (
            {**BAD, "factory": "badnets:pair", "checkpoints": "pair.pt", "layer": "hed"},
            "closest: head",
        ),
        ({**MLPS, "checkpoints": "ckpt/*.pt", "layer": "Linear:3"}, "2 modules of type 'Linear'"),
        ({**BAD, "factory": "badnets:rgb", "checkpoints": "rgb.pt"}, "input_transform"),
        ({**BAD, "factory": "badnets:pair", "checkpoints": "pair.pt"}, "set output"),
        ({"name": "arr", "activations": "short.npz"}, "expected (50, d)"),
        ({"name": "arr", "activations": "other.npz"}, "taken on probe set 0000000000000000"),
        ({**MLPS, "checkpoints": "nothing/*.pt"}, "matches no file"),
        ({**MLPS, "kwargs": {"wdth": 3}, "checkpoints": "ckpt/*.pt"}, "fix the group's kwargs"),
    ]
    for group, message in cases:
        status, logged = _validate(workdir, _config(networks=[group]), monkeypatch, caplog)
        assert status == 1 and message in logged, (group, logged)
    fixed = {**MLPS, "checkpoints": "prefixed.pt", "strip_prefix": "module."}
    trusted = {**MLPS, "checkpoints": "pickled.pt", "state_dict_key": "model", "trust_pickle": True}
    for group in (fixed, trusted):
        assert _validate(workdir, _config(networks=[group]), monkeypatch, caplog)[0] == 0


def argparse_namespace():
    """A pickled object that weights_only loading refuses (training scripts save their args)."""
    import argparse

    return argparse.Namespace(lr=0.1)


def badnets_state(name: str, workdir: Path) -> dict:
    sys.path.insert(0, str(workdir))
    try:
        import badnets

        return getattr(badnets, name)().state_dict()
    finally:
        sys.path.remove(str(workdir))
        sys.modules.pop("badnets", None)


def test_workflow_refuses_bad_networks_and_small_maps_before_any_job(workdir):
    write_config(workdir, _config(networks=[{**MLPS, "checkpoints": "ckpt/*.pt", "layer": "fc"}]))
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0 and "no layer 'fc'" in proc.stdout + proc.stderr
    write_config(workdir, _config())  # the 2-model zoo alone
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    assert "the map needs at least 4 networks; this config gives 2" in proc.stdout + proc.stderr
    assert planned_jobs(snakemake(workdir, "-n", "trained").stdout)["train"] == 2


def test_mixed_map_distances_match_a_direct_computation(workdir, digits):
    from nnmanifold.geometry.diffusion import OperatorSettings, transition_matrix

    probe = digits[1]
    (workdir / "arrays").mkdir()
    arrays = np.random.default_rng(3).normal(size=(len(probe["x"]), 6))
    np.savez(workdir / "arrays" / "jax1.npz", activations=arrays, probe_hash=probe["hash"])
    constant = np.ones((len(probe["x"]), 6))
    np.savez(workdir / "arrays" / "flat.npz", activations=constant, probe_hash=probe["hash"])
    networks = [
        {**MLPS, "checkpoints": "ckpt/*.pt"},
        {"name": "arr", "activations": "arrays/*.npz"},
    ]
    write_config(workdir, _config(networks=networks))
    snakemake(workdir, "results/geometry/distances.h5")
    D, ids, _ = storage.read_distances(workdir / "results" / "geometry" / "distances.h5")
    assert len(ids) == 5 and {"mlp-mlp0", "mlp-mlp1", "arr-jax1"} <= set(ids)
    excluded = (workdir / "results" / "geometry" / "excluded.csv").read_text()
    assert "arr-flat" in excluded and "constant activations" in excluded
    x = torch.tensor(probe["x"])
    reps = {}
    for mid in ids:
        if mid.startswith("mlp-"):
            with torch.no_grad():  # the input to the last Linear, by hand
                reps[mid] = _mlp(int(mid[-1]))[:4](x).numpy()
        elif mid == "arr-jax1":
            reps[mid] = arrays
        else:  # a zoo model: its own record
            reps[mid] = storage.read_activations(
                workdir / "results" / "models" / mid / "activations.h5"
            )[0]
    op = OperatorSettings()
    P = {m: transition_matrix(np.asarray(r, np.float32), op) for m, r in reps.items()}
    expected = np.array([[np.linalg.norm(P[a] - P[b]) for b in ids] for a in ids])
    np.testing.assert_allclose(D, expected, rtol=0, atol=1e-9)
    rows = [json.loads(p.read_text()) for p in (workdir / "results" / "train").glob("b*.json")]
    extracted = json.loads(next((workdir / "results" / "extract").glob("*.json")).read_text())
    assert set(extracted[0]) == set(rows[0][0])  # one row format with training manifests
    # a changed checkpoint re-extracts its job only (and in it, only that network)
    torch.save(_mlp(7).state_dict(), workdir / "ckpt" / "mlp1.pt")
    jobs = planned_jobs(snakemake(workdir, "-n", "results/geometry/distances.h5").stdout)
    assert jobs.get("extract") == 1 and "train" not in jobs


def test_example_trains_maps_and_places_its_networks(tmp_path):
    """examples/external_networks as a user runs it, with tiny settings: the plain PyTorch
    script, the map of its networks beside the zoo, then `snakemake place`, which places the
    two networks of the config's `place` section on that map without rewriting it."""
    for name in ("digits_nets.py", "config.yaml"):
        shutil.copy(EXAMPLE / name, tmp_path)
    train = [sys.executable, "digits_nets.py", "--epochs", "1", "--seeds", "1"]
    proc = subprocess.run(train, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["cnn_0.pt", "mlp_0.pt"]
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["zoo"].update(seeds=[0])
    config["zoo"]["space"].update(epochs=[1])
    config["data"]["n_probe"] = 50
    write_config(tmp_path, config)
    jobs = planned_jobs(snakemake(tmp_path, "-n").stdout)
    assert jobs["extract"] == 1 and jobs["train"] >= 1 and jobs["embedding"] == 1
    results, layout = tmp_path / "results", Layout(tmp_path / "results")
    embedding = layout.embedding
    snakemake(tmp_path, str(embedding.relative_to(tmp_path)))
    before = hashlib.sha256(embedding.read_bytes()).hexdigest()
    snakemake(tmp_path, "place")
    assert hashlib.sha256(embedding.read_bytes()).hexdigest() == before  # the map is only read
    manifests = [*results.glob("extract/*.json"), *results.glob("place/*.json")]
    rows = [r for p in manifests for r in json.loads(p.read_text())]
    assert {r["model_id"]: r["status"] for r in rows} == {
        "cnn-cnn_0": "ok",
        "mlp-mlp_0": "ok",
        "new-cnn_100": "ok",
        "newmlp-mlp_100": "ok",
    }
    assert all(0 <= r["test_accuracy"] <= 1 for r in rows)
    on_map = set(pd.read_csv(embedding)["model_id"])
    assert {"cnn-cnn_0", "mlp-mlp_0"} <= on_map and not on_map & {"new-cnn_100", "newmlp-mlp_100"}
    placed = pd.read_csv(layout.placed).set_index("model_id")
    assert sorted(placed.index) == ["new-cnn_100", "newmlp-mlp_100"]
    assert np.isfinite(placed[["phate_1", "phate_2"]].to_numpy()).all()
    nearest = placed.filter(regex=r"^nearest_\d+$")
    assert nearest.shape[1] >= 1 and set(nearest.to_numpy().ravel()) <= on_map
    assert placed["out_of_support"].dtype == bool
    html = layout.interactive_map.read_text()
    assert all(model_id in html for model_id in placed.index)


def test_networks_alone_make_a_map_without_a_zoo(tmp_path, digits):
    """zoo: {mode: none}: four activation arrays, no training job, one PHATE map of them."""
    probe = digits[1]
    (tmp_path / "arrays").mkdir()
    rng = np.random.default_rng(5)
    for i in range(4):
        rows = rng.normal(size=(len(probe["x"]), 3 + i))
        np.savez(tmp_path / "arrays" / f"run{i}.npz", activations=rows, probe_hash=probe["hash"])
    config = _config(zoo={"mode": "none"}, networks=[{"name": "jax", "activations": "arrays/*"}])
    write_config(tmp_path, config)
    assert "train" not in planned_jobs(snakemake(tmp_path, "-n").stdout)
    snakemake(tmp_path, "results/geometry/embedding.csv")
    table = pd.read_csv(tmp_path / "results" / "geometry" / "embedding.csv")
    assert sorted(table["model_id"]) == [f"jax-run{i}" for i in range(4)]
    assert table["phate_1"].notna().all() and table["test_accuracy"].isna().all()
