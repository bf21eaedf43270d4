"""Verification: per-model files checked against their job manifests, failed ones set aside."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from nnmanifold.core import jobs, storage
from nnmanifold.core.paths import Layout

log = logging.getLogger("nnmanifold")


def verify(
    layout: Layout, batches: Sequence[str], hashes: bool = True, dry_run: bool = False
) -> list[str]:
    """Check every per-model file the jobs' manifests list (size, and with ``hashes`` content).

    A job with a failed file (deleted, truncated, corrupted) is marked to run again: its failed
    files are set aside and its rerun mark renewed (a parameter of the job, so the next run
    reruns it and what depends on it), and the job regenerates exactly those files; its other
    members are kept. (Neither a removed nor a back-dated manifest would do: Snakemake neither
    rebuilds a missing intermediate file whose consumers are up to date nor takes an input
    whose content it has recorded as updated.) Returns one line per failed file; ``dry_run``
    changes nothing.
    """
    lines = []
    for stage in jobs.STAGE_FILES:
        for batch in batches:
            failed = storage.failed_files(layout.manifest(stage, batch), hashes)
            lines += [f"{path} fails its check (job {stage}/{batch})" for path in failed]
            if failed and not dry_run:
                _set_aside(layout, stage, batch, failed)
                storage.write_json(layout.rerun_mark(stage, batch), {"marked": time.time()})
    return lines


def _set_aside(layout: Layout, stage: str, batch: str, failed: Sequence[str]) -> None:
    for path in failed:
        if Path(path).exists() and Path(path) != layout.manifest(stage, batch):
            log.warning("%s fails its check: set aside as %s", path, storage.set_aside(path))
