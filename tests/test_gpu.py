"""GPU slot claims between concurrent processes, with a pretend device count (no GPU needed)."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nnmanifold.core.gpu import claim_device

# A training job in miniature: claim, report the device and the pinned CUDA_VISIBLE_DEVICES,
# then hold the slot until stdin closes (the job ends). claim_device says on stderr when every
# slot is taken: that line, not a timing window, tells the test the job is blocked.
CLAIMER = """
import logging, os, sys
from pathlib import Path
from nnmanifold.core.gpu import claim_device
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
lock_dir = Path(sys.argv[3]) if sys.argv[3] != "default" else None
device = claim_device(int(sys.argv[2]), n_devices=int(sys.argv[1]), lock_dir=lock_dir,
                      poll_seconds=0.02)
print(device, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
sys.stdin.read()
"""
LIVENESS = 60.0  # seconds before a job that should have answered is declared hung (never met)


class Job:
    """A subprocess that claims a slot and holds it until released."""

    def __init__(
        self, n_devices: int, jobs_per_gpu: int, lock_dir: Path | None, cwd: Path | None = None
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        if lock_dir is None:  # a run as a user starts it: its own folder and TMPDIR
            env["TMPDIR"] = str(cwd)
        args = [str(n_devices), str(jobs_per_gpu), str(lock_dir or "default")]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLAIMER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )

    def device(self) -> int:
        """The device this job claimed (it must claim one)."""
        outcome = self.outcome()
        assert isinstance(outcome, int), f"expected a device, the job is {outcome}"
        return outcome

    def outcome(self) -> int | str:
        """What the job does first: claims a device (its index) or reports it is "waiting"."""
        while True:
            ready, _, _ = select.select([self.proc.stdout, self.proc.stderr], [], [], LIVENESS)
            assert ready, "the claiming job neither claimed a slot nor said it waits"
            if self.proc.stdout in ready:
                device, pinned = self.proc.stdout.readline().split()
                assert pinned == device, "the process must be pinned to the device it claimed"
                return int(device)
            line = self.proc.stderr.readline()
            assert line, "the claiming job died"
            if "waiting" in line:
                return "waiting"

    def release(self) -> None:
        """End the job, which frees its slot."""
        self.proc.stdin.close()
        self.proc.wait(timeout=LIVENESS)

    def kill(self) -> None:
        """SIGKILL the job while it holds its slot."""
        self.proc.kill()
        self.proc.wait(timeout=LIVENESS)


def _held(lock_dir: Path, device: int, slot: int = 0) -> bool:
    """Whether some process holds a slot, asked the way claim_device asks (non-blocking flock)."""
    fd = os.open(lock_dir / f"gpu{device}-slot{slot}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if this test got it
    return False


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Job]]:
    """Start claiming jobs on a shared lock folder; every job is ended after the test."""
    jobs: list[Job] = []

    def _start(n_devices: int, jobs_per_gpu: int = 1, run: str | None = None) -> Job:
        if run is None:
            jobs.append(Job(n_devices, jobs_per_gpu, tmp_path / "locks"))
        else:  # a separate run: its own results folder, the default (machine-wide) lock folder
            (tmp_path / run).mkdir(exist_ok=True)
            jobs.append(Job(n_devices, jobs_per_gpu, None, cwd=tmp_path / run))
        return jobs[-1]

    yield _start
    for job in jobs:
        if job.proc.poll() is None:
            job.release()


def test_one_slot_per_gpu_is_never_shared(start, tmp_path) -> None:
    first = start(n_devices=1)
    assert first.device() == 0
    assert _held(tmp_path / "locks", 0)
    second = start(n_devices=1)
    assert second.outcome() == "waiting"
    first.release()
    assert second.device() == 0


def test_two_gpus_two_jobs_get_one_each_and_a_third_waits(start, tmp_path) -> None:
    a, b = start(n_devices=2), start(n_devices=2)
    devices = {a: a.device(), b: b.device()}
    assert set(devices.values()) == {0, 1}
    assert _held(tmp_path / "locks", 0) and _held(tmp_path / "locks", 1)
    third = start(n_devices=2)
    assert third.outcome() == "waiting"
    holder_of_1 = next(job for job, d in devices.items() if d == 1)
    holder_of_1.release()
    assert third.device() == 1


def test_jobs_spread_over_gpus_before_sharing_one(start) -> None:
    a, b = start(n_devices=2, jobs_per_gpu=2), start(n_devices=2, jobs_per_gpu=2)
    assert {a.device(), b.device()} == {0, 1}


def test_two_jobs_per_gpu_share_it_and_a_third_waits(start, tmp_path) -> None:
    a, b = start(n_devices=1, jobs_per_gpu=2), start(n_devices=1, jobs_per_gpu=2)
    assert (a.device(), b.device()) == (0, 0)
    assert _held(tmp_path / "locks", 0, 0) and _held(tmp_path / "locks", 0, 1)
    third = start(n_devices=1, jobs_per_gpu=2)
    assert third.outcome() == "waiting"
    a.release()
    assert third.device() == 0


def test_two_runs_on_one_machine_respect_each_others_slots(
    start, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NNMANIFOLD_GPU_LOCK_DIR", str(tmp_path / "machine-locks"))
    first = start(n_devices=1, run="run-a")
    assert first.device() == 0
    other = start(n_devices=1, run="run-b")  # other results folder, other TMPDIR
    assert other.outcome() == "waiting"
    first.release()
    assert other.device() == 0


def test_a_job_killed_while_holding_a_slot_frees_it(start, tmp_path) -> None:
    holder = start(n_devices=1)
    assert holder.device() == 0
    waiter = start(n_devices=1)
    assert waiter.outcome() == "waiting"
    holder.kill()
    assert waiter.device() == 0
    waiter.release()
    assert not _held(tmp_path / "locks", 0)
    assert start(n_devices=1).device() == 0  # no stale lock file blocks a later job


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
