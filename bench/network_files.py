"""Reading the workflow with many networks from elsewhere: what a parse spends on their files.

Writes ``--files`` checkpoint-sized files of ``--mb`` MB and as many activations arrays (200 x
256) in a temporary folder, then resolves and checks them as a parse does (content hashes; every
array's shape and probe hash) twice with one ``core.storage.FileFacts`` file: the first parse
learns every file, the second reads none. A plain ``hashlib.sha256`` over the checkpoints is the
reference. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from nnmanifold.core import storage
from nnmanifold.extract import checks, sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="checkpoints, and as many arrays")
    parser.add_argument("--mb", type=float, default=1.0, help="size of each checkpoint, MB")
    args = parser.parse_args()
    storage.RACY_NS = 0  # the files are all new; remember them at once
    with tempfile.TemporaryDirectory(prefix="bench_network_files_") as folder:
        figures = run(Path(folder), args.files, args.mb)
    print(json.dumps(figures))


def run(work: Path, n_files: int, mb: float) -> dict:
    """The figures of one run in the folder ``work``."""
    rng = np.random.default_rng(0)
    (work / "ckpt").mkdir(), (work / "arrays").mkdir()
    for i in range(n_files):
        (work / "ckpt" / f"c{i:05d}.pt").write_bytes(os.urandom(int(mb * 2**20)))
        rows = rng.normal(size=(200, 256)).astype(np.float32)
        np.savez(work / "arrays" / f"a{i:05d}.npz", activations=rows, probe_hash="p")
    started = time.perf_counter()
    for path in sorted((work / "ckpt").iterdir()):
        hashlib.sha256(path.read_bytes()).hexdigest()
    reference = time.perf_counter() - started
    groups = [
        {"name": "ck", "factory": "m:f", "checkpoints": str(work / "ckpt" / "*.pt")},
        {"name": "arr", "activations": str(work / "arrays" / "*.npz")},
    ]
    parses = []
    for _ in range(2):
        started = time.perf_counter()
        facts = storage.FileFacts(work / "files.json")
        specs = sources.resolve(groups, "networks", facts)
        checks.check(
            [s for s in specs if s["kind"] == "activations"], "networks", None, 200, None, facts
        )
        facts.save()
        parses.append(time.perf_counter() - started)
        print(f"parse: {len(specs)} files in {parses[-1]:.2f} s")
    print(f"reference: sha256 of the checkpoints, {reference:.2f} s")
    return {
        "files": 2 * n_files,
        "checkpoint_mb": mb,
        "first_parse_s": round(parses[0], 2),
        "later_parse_s": round(parses[1], 3),
        "sha256_reference_s": round(reference, 2),
    }


if __name__ == "__main__":
    main()
