"""The cost model that cuts a job into groups (``train.padding.STEP_OVERHEAD``), fitted.

Trains one group of K same-shaped MLPs (64 inputs, batch 32, 2 epochs of 4,000 synthetic
samples, SGD, 1 thread, outputs written as a job writes them) for K in ``--members`` and widths
in ``--widths``, depth 1 and 2, median of ``--repeats`` runs, and fits by least squares

    seconds = a * layers + K * (b + c * multiply_adds per input of one member)

where a is the group's fixed cost per layer with weights (a step launches a few ops per layer),
b a member's, and c the cost of a multiply-add per input. In the model's unit (a multiply-add of
one member on one input; a step costs members x batch x multiply-adds of them) a step's overhead
per layer is a * batch / c: what ``STEP_OVERHEAD`` holds.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from train import synthetic, zoo_specs

from nnmanifold.core.paths import Layout
from nnmanifold.train import job
from nnmanifold.zoo import architecture

BATCH, EPOCHS = 32, 2


def group_seconds(specs: list[dict], ds, probe: dict, repeats: int) -> float:
    """Median seconds of training ``specs`` as one group, outputs included."""
    runs = []
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="bench_group_cost_"))
        files = {s["model_id"]: Layout(out).model_files(s["model_id"]) for s in specs}
        started = time.perf_counter()
        job.train_group(specs, ds, probe, files, "cpu")
        runs.append(time.perf_counter() - started)
    return float(np.median(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("nnmanifold").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    ds = synthetic(4000, 1000, (64,))
    probe = {"x": ds.x_test[:100], "hash": "bench"}
    group_seconds(zoo_specs(8, 8, 1, BATCH, EPOCHS), ds, probe, 1)  # warm up
    rows = []
    for depth in (1, 2):
        for members in args.members:
            for width in args.widths:
                specs = zoo_specs(members, width, depth, BATCH, EPOCHS)
                layers = architecture.layers(specs[0], ds.input_shape, ds.n_classes)
                macs = sum(layer.multiply_adds for layer in layers)
                seconds = group_seconds(specs, ds, probe, args.repeats)
                rows.append((len(layers), members, macs, seconds))
                print(f"depth {depth}, {members} members of width {width}: {seconds:.3f} s")
    n_layers, k, macs, seconds = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    (a, b, c), *_ = np.linalg.lstsq(np.stack([n_layers, k, k * macs], 1), seconds)
    steps = EPOCHS * len(ds.y_train) // BATCH
    print(
        json.dumps(
            {
                "groups_timed": len(rows),
                "group_s_per_layer": round(float(a), 3),
                "member_ms": round(1e3 * float(b), 2),
                "member_multiply_add_us": round(1e6 * float(c), 4),
                "step_overhead_ms_per_layer": round(1e3 * float(a) / steps, 3),
                "step_overhead_multiply_adds_per_layer": round(float(a * BATCH / c)),
            }
        )
    )


if __name__ == "__main__":
    main()
