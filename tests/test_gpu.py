"""GPU slot claims between concurrent processes, with a pretend device count (no GPU needed)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nnmanifold.gpu import claim_device

# A training job in miniature: claim, report the device and the pinned CUDA_VISIBLE_DEVICES,
# then hold the slot until stdin closes (the job ends).
CLAIMER = """
import os, sys
from pathlib import Path
from nnmanifold.gpu import claim_device
device = claim_device(int(sys.argv[2]), n_devices=int(sys.argv[1]), lock_dir=Path(sys.argv[3]),
                      poll_seconds=0.02)
print(device, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
sys.stdin.read()
"""
WAIT = 0.5  # seconds a blocked claim is given to (wrongly) succeed


class Job:
    """A subprocess that claims a slot and holds it until released."""

    def __init__(self, n_devices: int, jobs_per_gpu: int, lock_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        args = [str(n_devices), str(jobs_per_gpu), str(lock_dir)]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLAIMER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def device(self, timeout: float = 20.0) -> int | None:
        """The device this job claimed, or None if it is still waiting after ``timeout``."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        device, pinned = self.proc.stdout.readline().split()
        assert pinned == device, "the process must be pinned to the device it claimed"
        return int(device)

    def release(self) -> None:
        """End the job, which frees its slot."""
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Job]]:
    """Start claiming jobs on a shared lock folder; every job is ended after the test."""
    jobs: list[Job] = []

    def _start(n_devices: int, jobs_per_gpu: int = 1) -> Job:
        jobs.append(Job(n_devices, jobs_per_gpu, tmp_path / "locks"))
        return jobs[-1]

    yield _start
    for job in jobs:
        if job.proc.poll() is None:
            job.release()


def test_one_slot_per_gpu_is_never_shared(start) -> None:
    first = start(n_devices=1)
    assert first.device() == 0
    second = start(n_devices=1)
    assert second.device(timeout=WAIT) is None
    first.release()
    assert second.device() == 0


def test_two_gpus_two_jobs_get_one_each_and_a_third_waits(start) -> None:
    a, b = start(n_devices=2), start(n_devices=2)
    devices = {a: a.device(), b: b.device()}
    assert set(devices.values()) == {0, 1}
    third = start(n_devices=2)
    assert third.device(timeout=WAIT) is None
    holder_of_1 = next(job for job, d in devices.items() if d == 1)
    holder_of_1.release()
    assert third.device() == 1


def test_jobs_spread_over_gpus_before_sharing_one(start) -> None:
    a, b = start(n_devices=2, jobs_per_gpu=2), start(n_devices=2, jobs_per_gpu=2)
    assert {a.device(), b.device()} == {0, 1}


def test_two_jobs_per_gpu_share_it_and_a_third_waits(start) -> None:
    a, b = start(n_devices=1, jobs_per_gpu=2), start(n_devices=1, jobs_per_gpu=2)
    assert (a.device(), b.device()) == (0, 0)
    third = start(n_devices=1, jobs_per_gpu=2)
    assert third.device(timeout=WAIT) is None
    a.release()
    assert third.device() == 0


def test_device_chosen_already_means_no_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_device(n_devices=2, lock_dir=tmp_path / "locks") is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert not (tmp_path / "locks").exists()


def test_no_gpu_means_no_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert claim_device(n_devices=0, lock_dir=tmp_path / "locks") is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_jobs_per_gpu_below_one_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jobs_per_gpu"):
        claim_device(jobs_per_gpu=0, n_devices=1, lock_dir=tmp_path)
