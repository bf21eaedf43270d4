"""Zoo steps: the zoo table, the run's provenance and the probe set."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from nnmanifold.core import jobs, storage, versions
from nnmanifold.core.paths import Layout
from nnmanifold.core.settings import DataSettings

log = logging.getLogger("nnmanifold")


def zoo(layout: Layout, config: dict[str, Any], search: str | None = None) -> None:
    """Expand the zoo spec of a config (the parts models depend on) into the zoo table; the
    models of the recorded rounds of the search named ``search`` join it."""
    from nnmanifold.core.config import validate
    from nnmanifold.zoo import specs as zoo_lib

    specs = zoo_lib.expand(validate(config))
    ids = {s["model_id"] for s in specs}
    for new in jobs.recorded_rounds(layout, search) if search else []:
        specs += [s for s in new if s["model_id"] not in ids]
        ids.update(s["model_id"] for s in new)
    storage.write_csv(layout.zoo, zoo_lib.table(specs))
    log.info("zoo of %d models written to %s", len(specs), layout.zoo)


def provenance(layout: Layout, config: dict[str, Any]) -> None:
    """Record the run's validated config, its hash and the library versions."""
    record = {
        "config_hash": storage.content_hash(config),
        "config": config,
        "versions": versions.library_versions(),
    }
    storage.write_json(layout.provenance, record)


def probe(layout: Layout, data: DataSettings, archs: Sequence[str]) -> None:
    """Draw the class-balanced probe set from ``data.probe_split`` (test or validation) and
    store it with its hash."""
    from nnmanifold.zoo import data as data_lib

    ds = data_lib.load_dataset(data.loader_config())
    data_lib.check_architectures(ds, archs, data.npz_path or ds.name)
    x_pool, y_pool = data_lib.probe_pool(ds, data.probe_split)
    idx = data_lib.probe_indices(y_pool, data.n_probe, data.probe_seed, data.probe_split)
    labels, x = y_pool[idx], x_pool[idx]
    record = {
        "indices": idx,
        "labels": labels,
        "x": x,
        "split": data.probe_split,
        "dataset": ds.name,
        "hash": data_lib.probe_hash(ds.name, idx, labels, x),
        "chance_accuracy": data_lib.chance_accuracy(ds.y_test),
    }
    storage.write_probe(layout.probe, record)
    log.info(
        "probe set of %d %s points (hash %s) written", len(idx), data.probe_split, record["hash"]
    )
