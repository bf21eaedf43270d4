"""Faults with a real file and a real process: SIGKILL at the write of the distance cache, a
full disk. The kill test uses only ``distances.distance_matrix`` and the cache file it keeps, so
any faster cache inherits it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import CHILD_ENV

from nnmanifold.core import storage
from nnmanifold.geometry.diffusion import OperatorSettings, diffusion_operator
from nnmanifold.geometry.distances import distance_matrix, fingerprint

SETTINGS = OperatorSettings()
ATTRS = fingerprint(SETTINGS, "probe", "penultimate")
N_POINTS = 120
N_MODELS = 12
BUDGET = 64 * 2**20

# Recomputes (incrementally) and rewrites the distance cache forever, one model changed each time.
WRITER = """
import itertools, sys
from nnmanifold.geometry.distances import distance_matrix
from test_kill import ATTRS, BUDGET, SETTINGS, zoo
cache_path, round_ = sys.argv[1:]
for step in itertools.count():
    distance_matrix(zoo(f"{round_}-{step}"), SETTINGS, memory_budget_bytes=BUDGET,
                    cache_path=cache_path, attrs=ATTRS, device="cpu")
    print("cache", flush=True)
"""


def zoo(version: str) -> dict[str, np.ndarray]:
    """Representations of a zoo; ``version`` changes one model's (reproducible from the text)."""
    reps = {}
    for m in range(N_MODELS):
        seed = (
            zlib.crc32(f"{version}-{m}".encode())
            if m == zlib.crc32(version.encode()) % N_MODELS
            else m
        )
        reps[f"m{m:02d}"] = np.random.default_rng(seed).normal(size=(N_POINTS, 6))
    return reps


def test_the_distance_cache_survives_sigkill_at_the_write(tmp_path: Path) -> None:
    cache_path = tmp_path / "distances.h5"
    rng = np.random.default_rng(0)
    for round_ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(cache_path), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
            env=CHILD_ENV,
        )
        for _ in range(int(rng.integers(1, 4))):  # some progress, a different amount each round
            assert writer.stdout.readline(), "the writer died on its own"
        time.sleep(float(rng.uniform(0, 0.05)))  # where the kill lands, not a test of speed
        writer.send_signal(signal.SIGKILL)
        assert writer.wait() == -signal.SIGKILL
        # the cache is the old file or the new one, whole; a write cut short leaves at most a
        # hidden temporary (.distances.h5.*.part) that nothing reads
        names = sorted(p.name for p in tmp_path.iterdir())
        assert [
            n for n in names if not (n.startswith(".distances.h5.") and n.endswith(".part"))
        ] == ["distances.h5"]
        storage.read_distance_cache(cache_path)
        # the next run, on a zoo the cache has not seen in full: cached rows are reused only
        # where they are right, and the result equals a fresh computation and the reference
        reps = zoo(f"next-{round_}")
        cached = distance_matrix(
            reps,
            SETTINGS,
            memory_budget_bytes=BUDGET,
            cache_path=cache_path,
            attrs=ATTRS,
            device="cpu",
        )
        assert cached.n_computed < N_MODELS * (N_MODELS - 1) // 2  # the cache was used
        ops = [diffusion_operator(X, SETTINGS) for X in reps.values()]
        reference = np.array([[np.linalg.norm(a - b) for b in ops] for a in ops])
        np.testing.assert_allclose(cached.distances, reference, rtol=1e-9, atol=1e-12)


FULL_DISK = """
import os, sys
import numpy as np
from nnmanifold.core import storage
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
except storage.DiskFullError as err:
    print(err, file=sys.stderr, flush=True)
    os._exit(3)  # h5py may crash at exit closing the file whose flush failed: not under test
"""


@pytest.mark.parametrize("what", ["json", "activations", "distances"])
def test_a_full_disk_leaves_no_partial_file_and_says_so(tmp_path: Path, what: str) -> None:
    target = tmp_path / f"result.{what}"
    limit_kb = 64
    proc = subprocess.run(
        ["bash", "-c", f'ulimit -f {limit_kb}; exec "$0" -c "$1" "$2" "$3"']
        + [sys.executable, FULL_DISK, what, str(target)],
        env=CHILD_ENV,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3, proc.stderr
    assert str(target) in proc.stderr and "full" in proc.stderr and "free space" in proc.stderr
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == []  # neither the target nor a hidden .part file
