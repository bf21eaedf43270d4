"""Give each GPU job its own device on one node: a slot lock per (device, job) pair.

Snakemake's ``--resources gpu=N`` caps how many GPU jobs run but never says which device each
should use; a job claims a free slot here and sets ``CUDA_VISIBLE_DEVICES`` before CUDA starts.
Under SLURM (or whenever ``CUDA_VISIBLE_DEVICES`` is already set) the scheduler has chosen.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)
_held: list[int] = []  # open lock file descriptors: a slot is held for the life of the process


def visible_gpu_count() -> int:
    """GPUs on this node according to nvidia-smi (0 without a driver)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def default_lock_dir() -> Path:
    """Per-user folder of slot locks on this node, shared by every run whatever its results
    folder; fixed, since each job may get its own TMPDIR. ``NNMANIFOLD_GPU_LOCK_DIR`` overrides
    it (e.g. where /tmp is private to each job)."""
    if override := os.environ.get("NNMANIFOLD_GPU_LOCK_DIR"):
        return Path(override)
    return Path("/tmp") / f"nnmanifold-gpu-slots-{os.getuid()}"


def claim_device(
    jobs_per_gpu: int = 1,
    n_devices: int | None = None,
    lock_dir: Path | None = None,
    poll_seconds: float = 1.0,
) -> int | None:
    """Block until a (device, slot) lock is free, hold it, and pin this process to that device.

    Returns the device index, or None when the device is already chosen or there is no GPU.
    Slots fill across devices first, so N jobs on N GPUs get one GPU each.
    """
    if jobs_per_gpu < 1:
        raise ValueError(f"jobs_per_gpu must be at least 1, got {jobs_per_gpu}")
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    n_devices = visible_gpu_count() if n_devices is None else n_devices
    if n_devices == 0:
        return None
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    slots = [(d, k) for k in range(jobs_per_gpu) for d in range(n_devices)]
    waiting = False
    while True:
        for device, k in slots:
            fd = os.open(lock_dir / f"gpu{device}-slot{k}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _held.append(fd)
            os.environ["CUDA_VISIBLE_DEVICES"] = str(device)
            return device
        if not waiting:
            log.info("all %d GPU slots in %s are taken; waiting for one", len(slots), lock_dir)
            waiting = True
        time.sleep(poll_seconds)
