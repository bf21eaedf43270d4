"""The features step: each model's representation characterised (cached per model)."""

from __future__ import annotations

import functools
import logging
from typing import Any

from nnmanifold.core import storage
from nnmanifold.core.errors import UserError
from nnmanifold.core.paths import FEATURE_FILES, Layout
from nnmanifold.core.settings import (
    FeatureSettings,
    GeometrySettings,
)

log = logging.getLogger("nnmanifold")


def features(
    layout: Layout,
    batch: str,
    geometry: GeometrySettings,
    settings: FeatureSettings,
    processes: int = 1,
) -> None:
    """Characterise each model of one training job, in ``processes`` processes; write features
    and diagrams (cached per model) and the job's manifest of feature values."""
    from tqdm import tqdm

    # loaded before the fork, so that the processes share them and their threads are limited
    from nnmanifold.analysis import features as _  # noqa: F401
    from nnmanifold.core import forked

    probe = storage.read_probe(layout.probe)
    entries = storage.read_json(layout.network_manifest(batch))
    ok = [e["model_id"] for e in entries if e["status"] == "ok"]
    task = functools.partial(
        _model_features, layout, probe=probe, geometry=geometry, settings=settings
    )
    chunk = max(1, min(16, len(ok) // (4 * processes)))
    computed = forked.forked_map(task, ok, processes, chunksize=chunk)
    values = dict(zip(ok, tqdm(computed, total=len(ok), desc="features"), strict=True))
    rows = []
    for entry in entries:
        mid = entry["model_id"]
        row = {"model_id": mid, "status": entry["status"]}
        if mid in values:
            row.update(values[mid])
            row["files"] = [storage.file_record(layout.model_dir(mid) / n) for n in FEATURE_FILES]
        rows.append(row)
    storage.write_json(layout.features_manifest(batch), rows)


def _model_features(
    layout: Layout,
    model_id: str,
    *,
    probe: dict[str, Any],
    geometry: GeometrySettings,
    settings: FeatureSettings,
) -> dict[str, float]:
    """One model's feature values: from its features.json if current, else computed and saved.

    Current means made with these settings from these very activations, and its diagrams file
    is the one written with it (content, not mtime: a restored or rotted file is recomputed).
    """
    from nnmanifold.analysis import features as features_lib
    from nnmanifold.geometry.diffusion import normalize, transition_matrix

    made_from = {
        "settings": {"geometry": geometry.identity(), "features": settings.identity()},
        "activations": storage.file_hash(layout.activations(model_id)),
    }
    found = _read_record(layout.features(model_id))
    if storage.is_current(found, made_from) and _file_hash(layout.diagrams(model_id)) == found.get(
        "diagrams"
    ):
        return found["values"]
    op = geometry.operator
    X, _ = storage.read_activations(layout.activations(model_id), geometry.layer, probe["hash"])
    values, diagrams = features_lib.compute_features(
        normalize(X, op.normalization),
        probe["labels"],
        transition_matrix(X, op),
        t=op.t,
        max_points=settings.max_points,
        h1_threshold=settings.h1_threshold,
        seed=settings.seed,
    )
    storage.write_diagrams(layout.diagrams(model_id), diagrams)
    record = {**made_from, "diagrams": storage.file_hash(layout.diagrams(model_id))}
    storage.write_json(layout.features(model_id), {**record, "values": values})
    return values


def _file_hash(path) -> str | None:
    """A file's content hash, None if it is missing or unreadable."""
    try:
        return storage.file_hash(path)
    except OSError:
        return None


def _read_record(path) -> dict[str, Any] | None:
    try:
        return storage.read_json(path)
    except (OSError, UserError):
        return None
