"""Fault tolerance: killed writes, corrupt files, bad inputs, broken models, reproducibility."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, planned_jobs, run_killed, snakemake, write_config

from nnmanifold.core import storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import Layout


def test_killed_write_leaves_no_file_at_the_target(tmp_path):
    target = tmp_path / "activations.h5"
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        import h5py
        from nnmanifold.core.errors import UserError
        from nnmanifold.core import storage
        real = h5py.Group.create_dataset
        def dying(self, name, **kw):
            if name == "fc2":
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, name, **kw)
        h5py.Group.create_dataset = dying
        layers = {{"fc1": np.ones((10, 4)), "fc2": np.ones((10, 4))}}
        storage.write_activations({str(target)!r}, layers, model_id="m", probe_hash="h",
                                  status="ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()  # only a hidden .part file may remain, never the result name
    assert all(p.name.startswith(".activations.h5.") for p in tmp_path.iterdir())


def test_truncated_activations_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "activations.h5"
    storage.write_activations(
        path, {"fc1": np.ones((50, 8))}, model_id="m", probe_hash="h", status="ok"
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(storage.CorruptFileError, match="activations.h5.*snakemake verify"):
        storage.read_activations(path)


def test_activations_from_another_probe_set_are_refused(tmp_path):
    path = tmp_path / "activations.h5"
    storage.write_activations(
        path, {"fc1": np.ones((5, 2))}, model_id="m", probe_hash="h1", status="ok"
    )
    with pytest.raises(storage.CorruptFileError, match="probe set"):
        storage.read_activations(path, probe_hash="h2")


def test_a_layer_the_model_lacks_is_named_with_the_fix(tmp_path):
    path = tmp_path / "activations.h5"
    storage.write_activations(
        path, {"fc1": np.ones((5, 2))}, model_id="m1", probe_hash="h", status="ok"
    )
    with pytest.raises(UserError, match="m1 has no hidden layer 'fc2' .*fc1.*geometry.layer"):
        storage.read_activations(path, layer="fc2")


def test_corrupt_json_is_named(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"status": "o')
    with pytest.raises(storage.CorruptFileError, match="metrics.json"):
        storage.read_json(path)


def test_a_checkpoint_with_pickled_code_is_refused_and_set_aside(digits, tmp_path):
    """The project's own resume path loads weights only: a checkpoint that would run code when
    unpickled is set aside unrun, and the model trains afresh."""
    from nnmanifold.core.config import validate
    from nnmanifold.train.job import train_model
    from nnmanifold.zoo.specs import expand

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    out = tmp_path / "model"
    (out / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}, "payload": Exploit()}, out / "checkpoints" / "last.ckpt")
    spec = expand(validate({"zoo": {"seeds": [0], "space": {"epochs": [1], "width": [16]}}}))[0]
    metrics = train_model(spec, *digits, out, accelerator="cpu")
    assert not marker.exists(), "loading a checkpoint ran the code pickled in it"
    assert (out / "checkpoints" / "last.ckpt.failed").is_file()
    assert metrics["status"] == "ok" and not metrics["resumed"]


def test_the_sigkill_harness_runs_this_checkout(digits, tmp_path, monkeypatch):
    """A relative PYTHONPATH, resolved in the killed process's own folder, would import another
    copy of the package (here a decoy); the harness sets its own and checks what was imported."""
    decoy = tmp_path / "workflow" / "nnmanifold"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", "workflow")
    script = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    imported = run_killed(tmp_path, script, {}, *digits)
    assert imported == ROOT / "workflow" / "nnmanifold" / "__init__.py"


def _read_tables(workdir):
    D, ids, attrs = storage.read_distances(workdir / "results" / "geometry" / "distances.h5")
    emb = pd.read_csv(workdir / "results" / "geometry" / "embedding.csv")
    return D, ids, attrs, emb


def test_diverged_model_is_excluded_with_its_reason(mapped_zoo):
    workdir, _ = mapped_zoo
    excluded = pd.read_csv(workdir / "results" / "geometry" / "excluded.csv")
    assert list(excluded["status"]) == ["diverged"]
    assert "non-finite" in excluded["reason"][0]
    D, ids, attrs, emb = _read_tables(workdir)
    assert len(ids) == 4 and excluded["model_id"][0] not in ids
    row = emb[emb["model_id"] == excluded["model_id"][0]].iloc[0]
    assert row["status"] == "diverged" and np.isnan(row["phate_1"])
    assert "torch" in json.loads(attrs["versions"])
    assert (workdir / "results" / "figures" / "summary.png").stat().st_size > 10_000
    summary = pd.read_csv(workdir / "results" / "stats" / "zoo_summary.csv").iloc[0]
    assert (summary["ok"], summary["diverged"]) == (4, 1)
    assert 0.09 < summary["chance_accuracy"] < 0.2  # digits: ten nearly balanced classes
    assert "5 models: 4 ok, 1 diverged, 0 failed" in (workdir / "run.log").read_text()


def test_sigma_from_the_command_line_reruns_geometry_not_training(mapped_zoo):
    workdir, _ = mapped_zoo
    assert planned_jobs(snakemake(workdir, "-n").stdout) == {}
    plan = snakemake(workdir, "-n", "-p", "--config", "geometry={sigma: 0.7}")
    assert "0.7" in plan.stdout and "'0.7' is not of type" not in plan.stdout + plan.stderr
    batches = len(list((workdir / "results" / "train").glob("*.json")))
    assert planned_jobs(plan.stdout) == {
        "features": batches,
        "distances": 1,
        "embedding": 1,
        "wasserstein": 1,
        "wasserstein_embedding": 1,
        "stats": 1,
        "figures": 1,
        "interactive_map": 1,
        "provenance": 1,
        # the baseline maps re-join the (changed) features; their distances are not recomputed
        "baseline_embeddings": 1,
    }  # no train, probe or zoo; no CKA/RSA/Procrustes distance (they do not depend on sigma)


def test_two_clean_runs_give_identical_geometry(mapped_zoo, tmp_path):
    first, config = mapped_zoo
    write_config(tmp_path, config)
    snakemake(tmp_path)
    D1, ids1, _, emb1 = _read_tables(first)
    D2, ids2, _, emb2 = _read_tables(tmp_path)
    assert ids1 == ids2
    np.testing.assert_array_equal(D1, D2)
    cols = ["model_id", "phate_1", "phate_2", "test_accuracy"]
    pd.testing.assert_frame_equal(emb1[cols], emb2[cols], check_exact=True)


def test_corrupted_activations_are_regenerated_on_rerun(mapped_zoo):
    workdir, _ = mapped_zoo
    job = next(
        json.loads(m.read_text())
        for m in sorted((workdir / "results" / "train").glob("*.json"))
        if [r["status"] for r in json.loads(m.read_text())] == ["ok", "ok"]
    )
    victim, mate = (Layout(workdir / "results").model_dir(m["model_id"]) for m in job)
    victim = victim / "activations.h5"
    before, _ = storage.read_activations(victim)
    mate_files = [mate / "activations.h5", mate / "features.json"]
    stamps = [f.stat().st_mtime_ns for f in mate_files]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    plan = snakemake(workdir, "-n")
    assert any(line.split()[:2] == ["train", "1"] for line in plan.stdout.splitlines())
    snakemake(workdir)
    after, _ = storage.read_activations(victim)
    np.testing.assert_array_equal(before, after)
    # the job's other model is kept as it was: neither retrained nor re-characterised
    assert [f.stat().st_mtime_ns for f in mate_files] == stamps
    with h5py.File(victim) as f:
        assert f.attrs["status"] == "ok"


def test_bit_rot_with_an_old_mtime_is_found_by_verify_and_regenerated(mapped_zoo):
    workdir, _ = mapped_zoo
    results = workdir / "results"
    manifest = sorted((results / "train").glob("*.json"))[0]
    victim = Path(json.loads(manifest.read_text())[0]["files"][0]["path"])
    victim = victim if victim.is_absolute() else workdir / victim
    original = victim.read_bytes()
    before, _ = storage.read_activations(victim)
    stamp = victim.stat()
    rotten = bytearray(original)
    rotten[len(rotten) // 2] ^= 0xFF  # one flipped byte: same size
    victim.write_bytes(bytes(rotten))
    os.utime(victim, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # restored from a backup
    assert planned_jobs(snakemake(workdir, "-n").stdout) == {}  # sizes match: a plain run trusts it

    batches = [p.stem for p in sorted((results / "train").glob("*.json"))]
    cli = [sys.executable, "-m", "nnmanifold", "verify", "--results", "results", "--batches"]
    report = subprocess.run(
        [*cli, *batches, "--dry-run"], cwd=workdir, capture_output=True, text=True, check=True
    )
    assert victim.name in report.stdout and manifest.exists()  # a dry run changes nothing
    subprocess.run([*cli, *batches], cwd=workdir, capture_output=True, text=True, check=True)
    assert not victim.exists() and victim.with_name(victim.name + ".failed").exists()
    assert manifest.with_suffix(".rerun").exists()  # the job is marked to run again
    assert planned_jobs(snakemake(workdir, "-n").stdout)["train"] == 1
    snakemake(workdir)
    after, _ = storage.read_activations(victim)  # regenerated exactly (training is deterministic)
    np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"name": "npz", "npz_path": "bad.npz"}}, "y_train"),
        ({"data": {"n_probe": 100000}}, "n_probe"),
        ({"data": {"name": "mnist", "data_dir": "nowhere"}}, "data.download"),
    ],
)
def test_bad_data_stops_before_training(tmp_path, change, message):
    from conftest import TINY

    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "bad.npz",
        x_train=rng.normal(size=(30, 4)),
        y_train=np.zeros(29, int),
        x_test=rng.normal(size=(10, 4)),
        y_test=np.zeros(10, int),
    )
    config = json.loads(json.dumps(TINY))
    config["data"].update(change["data"])
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "trained", check=False)  # 2 models: the map target is refused
    assert proc.returncode != 0
    assert message in (tmp_path / "results" / "logs" / "probe.log").read_text()
    assert not (tmp_path / "results" / "models").exists()


def _restored_from_backup(path, old_stamp) -> None:
    """Give a file an old modification time, as rsync -a or a restore from backup does."""
    os.utime(path, ns=(old_stamp, old_stamp))


def _copy_of(mapped_zoo, tmp_path):
    import shutil

    from nnmanifold.core.config import validate
    from nnmanifold.core.settings import Settings

    workdir, config = mapped_zoo
    shutil.copytree(workdir / "results", tmp_path / "results")
    layout = Layout(tmp_path / "results")
    settings = Settings.of(validate(config))
    batch, entry = next(
        (m.stem, row)
        for m in sorted(layout.root.glob("train/*.json"))
        for row in json.loads(m.read_text())
        if row["status"] == "ok"
    )
    return layout, settings, batch, entry["model_id"]


def test_a_changed_diagrams_file_with_an_old_mtime_is_recomputed(mapped_zoo, tmp_path):
    from nnmanifold.steps import features

    layout, settings, batch, mid = _copy_of(mapped_zoo, tmp_path)
    good = storage.read_diagrams(layout.diagrams(mid))
    stamp = layout.diagrams(mid).stat().st_mtime_ns
    storage.write_diagrams(layout.diagrams(mid), [d + 1.0 for d in good])  # readable, wrong
    _restored_from_backup(layout.diagrams(mid), stamp - 10**12)
    features.features(layout, batch, settings.geometry, settings.features)
    for before, after in zip(good, storage.read_diagrams(layout.diagrams(mid)), strict=True):
        np.testing.assert_array_equal(before, after)


def test_changed_activations_with_an_old_mtime_are_never_read_as_valid(mapped_zoo, tmp_path):
    from nnmanifold.steps import features, geometry

    layout, settings, batch, mid = _copy_of(mapped_zoo, tmp_path)
    path = layout.activations(mid)
    stamp = path.stat().st_mtime_ns
    with h5py.File(path, "r+") as f:  # one value changed, the file still reads
        layer = f["layers"][f.attrs["penultimate"]]
        layer[0, 0] = layer[0, 0] + 1.0
    _restored_from_backup(path, stamp - 10**12)
    batches = [m.stem for m in sorted(layout.root.glob("train/*.json"))]
    with pytest.raises(storage.CorruptFileError, match=f"{mid}.*checksum.*snakemake verify"):
        geometry.distances(layout, batches, settings.geometry)
    with pytest.raises(storage.CorruptFileError, match=f"{mid}.*checksum"):
        features.features(layout, batch, settings.geometry, settings.features)


def test_features_in_two_processes_are_those_of_one(mapped_zoo, tmp_path):
    """The features step's processes give each model its own values (same manifest as one
    process), and a corrupt file found in a worker stops the step with the model named."""
    from nnmanifold.steps import features

    layout, settings, _, _ = _copy_of(mapped_zoo, tmp_path)
    batch, ok = next(
        (m.stem, ids)
        for m in sorted(layout.root.glob("train/*.json"))
        if len(ids := [r["model_id"] for r in json.loads(m.read_text()) if r["status"] == "ok"]) > 1
    )
    manifests = []
    for processes in (1, 2):
        for mid in ok:
            layout.features(mid).unlink()
        features.features(layout, batch, settings.geometry, settings.features, processes)
        manifests.append(json.loads(layout.features_manifest(batch).read_text()))
    assert manifests[0] == manifests[1]
    assert manifests[0][0]["silhouette"] != manifests[0][1]["silhouette"]  # models tell apart

    path = layout.activations(ok[1])
    stamp = path.stat().st_mtime_ns
    with h5py.File(path, "r+") as f:
        layer = f["layers"][f.attrs["penultimate"]]
        layer[0, 0] = layer[0, 0] + 1.0
    _restored_from_backup(path, stamp - 10**12)
    layout.features(ok[1]).unlink()
    with pytest.raises(storage.CorruptFileError, match=f"{ok[1]}.*checksum"):
        features.features(layout, batch, settings.geometry, settings.features, 2)
