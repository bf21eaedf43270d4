"""Faults with a real file and a real process: SIGKILL at the write, a full disk, bit rot.

The kill test uses only the operator-store interface (open, put, source, operator, model_ids,
digests) and ``distances.distance_matrix``, so any faster store inherits it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from nnmanifold import storage
from nnmanifold.distances import distance_matrix

FINGERPRINT = {"settings_key": "k", "probe_hash": "p", "layer": "penultimate"}
N_POINTS = 120  # 115 kB per operator: a write takes long enough to be hit
N_MODELS = 12
BUDGET = 64 * 2**20
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "workflow"), str(ROOT / "tests")])}

# Writes operators (each a function of its source text) and the distance cache, forever.
WRITER = """
import itertools, sys
from nnmanifold import storage
from nnmanifold.distances import distance_matrix
from test_kill import BUDGET, FINGERPRINT, N_MODELS, operator_of
store_path, cache_path, round_ = sys.argv[1:]
store = storage.OperatorStore(store_path, FINGERPRINT)
for step in itertools.count():
    for m in range(N_MODELS):
        source = f"{round_}-{step}-{m}"
        store.put(f"m{m:02d}", operator_of(source), source, {"n_points": 1.0})
        print("put", flush=True)
    distance_matrix(store, memory_budget_bytes=BUDGET, cache_path=cache_path, device="cpu")
    print("cache", flush=True)
"""


def operator_of(source: str) -> np.ndarray:
    """The operator a writer stores for ``source`` (row-stochastic, reproducible from the text)."""
    rng = np.random.default_rng(zlib.crc32(source.encode()))
    P = rng.random((N_POINTS, N_POINTS))
    return P / P.sum(axis=1, keepdims=True)


def _reference(operators: list[np.ndarray]) -> np.ndarray:
    """Slow obviously-correct distances: the Frobenius norm of every difference."""
    return np.array([[np.linalg.norm(a - b) for b in operators] for a in operators])


def _check_consistent(store_path: Path, cache_path: Path) -> int:
    """Open the store as the next run would; every operator it offers is exactly the one written
    for its source, and cached distances equal fresh ones. Returns how many it kept."""
    store = storage.OperatorStore(store_path, FINGERPRINT)
    ids = [m for m in store.model_ids() if store.source(m) is not None]
    operators = [store.operator(m) for m in ids]
    for model_id, operator in zip(ids, operators, strict=True):
        np.testing.assert_array_equal(operator, operator_of(store.source(model_id)), model_id)
    if ids:
        cached = distance_matrix(
            store, ids, memory_budget_bytes=BUDGET, cache_path=cache_path, device="cpu"
        )
        fresh = distance_matrix(store, ids, memory_budget_bytes=BUDGET, device="cpu")
        np.testing.assert_allclose(cached.distances, fresh.distances, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fresh.distances, _reference(operators), rtol=1e-9, atol=1e-12)
    return len(ids)


def test_store_and_cache_survive_sigkill_at_the_write(tmp_path: Path) -> None:
    store_path, cache_path = tmp_path / "operators.h5", tmp_path / "distances.h5"
    rng = np.random.default_rng(0)
    kept = []
    for round_ in range(12):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store_path), str(cache_path), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        # let it make some progress (a different amount each round), then kill it wherever it is
        for _ in range(int(rng.integers(1, 3 * N_MODELS))):
            assert writer.stdout.readline(), "the writer died on its own"
        time.sleep(float(rng.uniform(0, 0.003)))  # where the kill lands, not a test of speed
        writer.send_signal(signal.SIGKILL)
        assert writer.wait() == -signal.SIGKILL
        kept.append(_check_consistent(store_path, cache_path))
    assert max(kept) > 0  # the store was not simply thrown away each time


def test_a_write_killed_before_its_commit_is_dropped_with_a_warning(tmp_path, caplog) -> None:
    """HDF5 store: the kill lands after the operator's data and before its commit mark."""
    store_path = tmp_path / "operators.h5"
    store = storage.OperatorStore(store_path, FINGERPRINT)
    store.put("m00", operator_of("a"), "a", {"n_points": 1.0})
    script = textwrap.dedent(
        f"""
        import os, signal, h5py
        from nnmanifold import storage
        from test_kill import FINGERPRINT, operator_of
        real = h5py.AttributeManager.__setitem__
        def dying(self, name, value):
            if name == "diagnostics":
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, name, value)
        h5py.AttributeManager.__setitem__ = dying
        store = storage.OperatorStore({str(store_path)!r}, FINGERPRINT)
        store.put("m01", operator_of("b"), "b", {{"n_points": 1.0}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    with caplog.at_level(logging.WARNING):
        reopened = storage.OperatorStore(store_path, FINGERPRINT)
    assert "kept 1 operators that check out, dropped 1" in caplog.text
    assert reopened.model_ids() == ["m00"]
    np.testing.assert_array_equal(reopened.operator("m00"), operator_of("a"))


@pytest.mark.parametrize("marked", [True, False])
def test_a_torn_store_file_starts_afresh_with_a_warning(tmp_path, caplog, marked) -> None:
    store_path = tmp_path / "operators.h5"
    store = storage.OperatorStore(store_path, FINGERPRINT)
    for m in range(3):
        store.put(f"m{m}", operator_of(str(m)), str(m), {"n_points": 1.0})
    data = store_path.read_bytes()
    store_path.write_bytes(data[: len(data) // 3])
    if marked:  # its writer died mid-write; else bit rot or a bad copy
        (tmp_path / ".operators.h5.writing").touch()
    with caplog.at_level(logging.WARNING):
        reopened = storage.OperatorStore(store_path, FINGERPRINT)
    assert "starting it afresh" in caplog.text
    assert reopened.model_ids() == []
    reopened.put("m0", operator_of("0"), "0", {"n_points": 1.0})
    assert reopened.source("m0") == "0"


FULL_DISK = """
import os, sys
import numpy as np
from nnmanifold import storage
from test_kill import FINGERPRINT, operator_of
what, target = sys.argv[1:]
try:
    if what == "json":
        storage.write_json(target, {"values": list(range(100_000))})
    elif what == "activations":
        layers = {"fc1": np.random.default_rng(0).random((2000, 64))}
        storage.write_activations(target, layers, model_id="m", probe_hash="h", status="ok")
    elif what == "distances":
        D = np.random.default_rng(0).random((300, 300))
        storage.write_distances(target, D, [f"m{i}" for i in range(300)], {"a": 1})
    else:
        store = storage.OperatorStore(target, FINGERPRINT)
        for m in range(20):
            store.put(f"m{m}", operator_of(str(m)), str(m), {"n_points": 1.0})
except storage.DiskFullError as err:
    print(err, file=sys.stderr, flush=True)
    os._exit(3)  # h5py may crash at exit closing the file whose flush failed: not under test
"""


@pytest.mark.parametrize("what", ["json", "activations", "distances", "store"])
def test_a_full_disk_leaves_no_partial_file_and_says_so(tmp_path: Path, caplog, what: str) -> None:
    target = tmp_path / f"result.{what}"
    limit_kb = 200 if what == "store" else 64  # the store itself fits; its operators do not
    proc = subprocess.run(
        ["bash", "-c", f'ulimit -f {limit_kb}; exec "$0" -c "$1" "$2" "$3"']
        + [sys.executable, FULL_DISK, what, str(target)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3, proc.stderr
    assert str(target) in proc.stderr and "full" in proc.stderr and "free space" in proc.stderr
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    if what == "store":  # written in place: the next open keeps what checks out, or starts
        with caplog.at_level(logging.WARNING):  # afresh when HDF5 left the file unreadable
            store = storage.OperatorStore(target, FINGERPRINT)
        assert "operator store" in caplog.text and "writer died" in caplog.text
        assert len(store.model_ids()) < 20
        for m in store.model_ids():
            np.testing.assert_array_equal(store.operator(m), operator_of(m[1:]))
        assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    else:
        assert leftovers == []  # neither the target nor a hidden .part file
