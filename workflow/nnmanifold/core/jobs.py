"""A run's training jobs: the zoo's models and those of the recorded search rounds, in buckets.

Plain Python the Snakefile asks while it parses (no Snakemake, no torch), so it is tested alone.
Parsing reads and never writes: a dry run and a run parse alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nnmanifold.core import storage
from nnmanifold.core.paths import FEATURE_FILES, TRAIN_FILES, Layout
from nnmanifold.zoo import specs as zoo_lib

#: The per-job stages and the per-model files each writes (and lists in its manifest).
#: Per-model files each per-job stage writes (extraction, for the map or for placement, writes
#: what training writes).
STAGE_FILES = {
    "train": TRAIN_FILES,
    "features": FEATURE_FILES,
    "extract": TRAIN_FILES,
    "place": TRAIN_FILES,
}


def recorded_rounds(layout: Layout, name: str) -> list[list[dict[str, Any]]]:
    """The specs of search ``name``'s recorded rounds 1, 2, ... (up to the first missing one)."""
    rounds = []
    while (path := layout.search_round(name, len(rounds) + 1)).exists():
        rounds.append(storage.read_json(path)["specs"])
    return rounds


def search_names(layout: Layout) -> list[str]:
    """Every search with a recorded round under ``results/search/`` (whatever the config names)."""
    folder = layout.root / "search"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if layout.search_round(p.name, 1).exists())


def with_rounds(
    zoo_specs: Sequence[dict[str, Any]],
    rounds: Sequence[Sequence[dict[str, Any]]],
    per_job: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Specs by model id and training jobs of the zoo plus the given search rounds: each
    round's new models make their own jobs (``r<k>b...``), so the zoo's jobs keep their names."""
    specs = {s["model_id"]: s for s in zoo_specs}
    batches = zoo_lib.batches(zoo_specs, per_job)
    for k, new in enumerate(rounds, start=1):
        fresh = [s for s in new if s["model_id"] not in specs]
        specs.update({s["model_id"]: s for s in new})
        batches.update(zoo_lib.batches(fresh, per_job, prefix=f"r{k}b"))
    return specs, batches


def write_specs(path: str | Path, log: str | Path, specs_json: str) -> None:
    """A training or extraction job's specs file (its command names it: hundreds of specs do not
    fit one shell argument), written atomically, and a line in the job's log."""
    specs = json.loads(specs_json)
    storage.write_json(path, specs)
    Path(log).write_text(f"{len(specs)} specs written to {path}\n")


def changed_since(paths: Iterable[Path], reference: Path) -> list[Path]:
    """The files among ``paths`` modified after ``reference`` (none when it does not exist).

    A job lists these as inputs so that a per-model file changed since its manifest reruns
    the job: with ``rerun-triggers: [mtime, params]`` an older file never would, and a job
    without its manifest runs anyway, so listing only these decides exactly what listing every
    file would, at one stat per file instead of a DAG node per file.
    """
    try:
        written = reference.stat().st_mtime
    except FileNotFoundError:
        return []
    changed = []
    for path in paths:
        try:
            if path.stat().st_mtime > written:
                changed.append(path)
        except FileNotFoundError:
            continue
    return changed


def changed_outputs(layout: Layout, stage: str, batch: str, model_ids: Iterable[str]) -> list[Path]:
    """The per-model files of a ``stage`` job changed since its manifest (``changed_since``)."""
    paths = (layout.model_dir(m) / name for m in model_ids for name in STAGE_FILES[stage])
    return changed_since(paths, layout.manifest(stage, batch))


def size_warnings(layout: Layout, batches: Iterable[str]) -> list[str]:
    """One line per per-model file a finished job lists that fails its size check, with the fix
    (``snakemake verify`` sets them aside; parsing only tells)."""
    return [
        f"{path} fails its size check (job {stage}/{batch}); run `snakemake verify`"
        " to have it regenerated"
        for stage in STAGE_FILES
        for batch in batches
        for path in storage.failed_files(layout.manifest(stage, batch))
    ]
