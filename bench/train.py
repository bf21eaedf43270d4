"""Zoo training throughput: one process per model, the one-model path, and the vectorised path.

CPU (default): 128 MLPs 64-32-10 (synthetic 64-dim inputs, 10 classes), ``--epochs`` (default 2,
so that both paths write their checkpoints) of 4,000 samples, batch 32, SGD + momentum; models/s
of each path, everything written to disk as a training job does. The random-width case: the same
zoo with widths log-uniform in 8-128 (padded groups, ``train.padding``) on the vectorised path,
next to the same-shape figure (goal: at least 0.6 of it). Every path is timed ``--repeats``
times (the first run cold, on both sides) and its median counts. ``--gpu``: MNIST-shaped MLPs
784-64-64-10 at K=1024, model-epochs/s; with ``--random-widths`` the same K again at widths
log-uniform in 8-128, next to the one-shape figure. ``--resnet``: 32 ResNet-8s (16 channels,
SGD + momentum) on the digits, the group path against the one-model path (``--sequential`` of
them), per-model speed-up. ``--resnet --gpu``: 64 ResNet-8s (batch 128) as one group on 10,000
CIFAR-shaped synthetic images against 4 trained one at a time. The last line printed is one
JSON object.

OpenMP threads wait passively here (``OMP_WAIT_POLICY=PASSIVE`` unless set): on a shared machine
with more runnable threads than cores, spinning waits made two-thread training 10-15x slower.
Every path runs with ``--threads`` (default 1, a training job's default); the vectorised path is
also timed with ``--threads-also`` (default 2) for comparison.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP runtime

import argparse
import contextlib
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from nnmanifold.core.config import validate
from nnmanifold.train import job as train
from nnmanifold.train import padding
from nnmanifold.zoo import data
from nnmanifold.zoo import specs as zoo

ONE_MODEL = """
import json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch
from nnmanifold.zoo import data
from nnmanifold.train import job as train
job = json.load(open(sys.argv[1]))
torch.set_num_threads(job["threads"])
f = np.load(job["npz"])
ds = data.Dataset("synthetic", f["x_train"], f["y_train"], f["x_test"], f["y_test"])
probe = {"x": f["px"], "hash": "bench"}
train.train_model(job["spec"], ds, probe, job["out"], accelerator="cpu")
"""


def synthetic(n_train: int, n_test: int, shape: tuple[int, ...], seed: int = 0) -> data.Dataset:
    """A learnable data set: labels from a random linear map of Gaussian inputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_train + n_test, *shape)).astype(np.float32)
    w = rng.normal(size=(int(np.prod(shape)), 10))
    y = (x.reshape(len(x), -1) @ w).argmax(1).astype(np.int64)
    return data.Dataset("synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def load_npz(path: str) -> data.Dataset:
    """An MNIST-like npz (x_train, y_train, x_test, y_test), inputs scaled to [0, 1]."""
    with np.load(path) as f:
        x_tr, x_te = (f[k].astype(np.float32).reshape(len(f[k]), -1) for k in ("x_train", "x_test"))
        scale = 255.0 if x_tr.max() > 1 else 1.0
        y_tr, y_te = f["y_train"].astype(np.int64), f["y_test"].astype(np.int64)
    return data.Dataset("mnist", x_tr / scale, y_tr, x_te / scale, y_te)


def zoo_specs(n: int, width: int, depth: int, batch: int, epochs: int) -> list[dict]:
    """n MLP specs differing in seed and learning rate (SGD + momentum 0.9)."""
    seeds = list(range(n // 8))
    space = {"lr": [0.005 * (i + 1) for i in range(8)], "width": [width], "depth": [depth]}
    space.update(batch_size=[batch], epochs=[epochs], momentum=[0.9], optimizer=["sgd"])
    return zoo.expand(validate({"zoo": {"seeds": seeds, "space": space}}))[:n]


def random_widths(specs: list[dict], low: int, high: int, seed: int = 0) -> list[dict]:
    """The specs with widths drawn log-uniform in [low, high] (new model ids)."""
    rng = np.random.default_rng(seed)
    widths = np.rint(np.exp(rng.uniform(np.log(low), np.log(high), len(specs)))).astype(int)
    out = []
    for spec, width in zip(specs, widths.tolist(), strict=True):
        new = {k: v for k, v in spec.items() if k != "model_id"} | {"width": width}
        out.append({"model_id": zoo.model_id(new), **new})
    return out


def probe_of(ds: data.Dataset, n: int) -> dict:
    return {"x": ds.x_test[:n], "hash": "bench"}


def per_process(specs: list[dict], ds: data.Dataset, work: Path, threads: int) -> float:
    """Seconds per model when each model is its own Python process (the old one-job-per-model),
    into a new folder under ``work``."""
    np.savez(
        work / "d.npz",
        x_train=ds.x_train,
        y_train=ds.y_train,
        x_test=ds.x_test,
        y_test=ds.y_test,
        px=ds.x_test[:100],
    )
    script = work / "one.py"
    script.write_text(ONE_MODEL)
    run = Path(tempfile.mkdtemp(dir=work))
    start = time.perf_counter()
    for spec in specs:
        job = run / f"{spec['model_id']}.json"
        out = str(run / spec["model_id"])
        job.write_text(
            json.dumps({"spec": spec, "npz": str(work / "d.npz"), "out": out, "threads": threads})
        )
        subprocess.run([sys.executable, str(script), str(job)], check=True, capture_output=True)
    return (time.perf_counter() - start) / len(specs)


@contextlib.contextmanager
def timed_writes() -> Iterator[list[float]]:
    """[seconds] that ``MemberWriter.write`` (metrics, activations) takes inside the block."""
    spent, write = [0.0], train.MemberWriter.write

    def timed(self, module, members):
        start = time.perf_counter()
        write(self, module, members)
        spent[0] += time.perf_counter() - start

    train.MemberWriter.write = timed
    try:
        yield spent
    finally:
        train.MemberWriter.write = write


def vectorised(
    specs: list[dict], ds: data.Dataset, probe: dict, work: Path, threads: int, repeats: int
) -> list[tuple[float, float, float]]:
    """(wall s, CPU s of this process, of which writing s) of each run into a new folder under
    ``work``."""
    torch.set_num_threads(threads)
    runs = []
    for run in range(repeats):
        t, cpu_t = time.perf_counter(), time.process_time()
        out = Path(tempfile.mkdtemp(dir=work))
        with timed_writes() as writes:
            metrics = train.train_job(specs, ds, probe, out, accelerator="cpu")
        runs.append((time.perf_counter() - t, time.process_time() - cpu_t, writes[0]))
        assert all(m["status"] == "ok" for m in metrics), [m["status"] for m in metrics]
        print(
            f"vectorised, {threads} thread(s), run {run}: {len(specs)} models in "
            f"{runs[-1][0]:.2f} s, {runs[-1][1]:.2f} s CPU (group sizes "
            f"{sorted({m['group_size'] for m in metrics})}), median test accuracy "
            f"{np.median([m['test_accuracy'] for m in metrics]):.3f}"
        )
    return runs


def sequential(specs: list[dict], ds: data.Dataset, probe: dict, work: Path) -> float:
    """Seconds per model of the one-model path, one model after another in this process, into a
    new folder under ``work``."""
    run = Path(tempfile.mkdtemp(dir=work))
    t = time.perf_counter()
    for spec in specs:
        train.train_model(spec, ds, probe, run / spec["model_id"], accelerator="cpu")
    return (time.perf_counter() - t) / len(specs)


def padded_groups(specs: list[dict], ds: data.Dataset, device: str) -> list[dict]:
    """The groups a job of ``specs`` trains in (``padding.groups``): members, padded width,
    and the padding's share of the group's hidden units."""
    groups = padding.groups(specs, ds.input_shape, ds.n_classes, device)
    return [
        {"members": len(g), "width": max(w), "padding": round(1 - sum(w) / (len(w) * max(w)), 3)}
        for g in groups
        for w in [[s["width"] for s in g]]
    ]


def checkpoints(work: Path) -> int:
    """Checkpoint files written under ``work`` (both paths must write theirs to compare)."""
    return sum(1 for _ in work.rglob("checkpoints/*"))


def cpu(args: argparse.Namespace) -> dict:
    ds = synthetic(4000, 1000, (64,))
    specs = zoo_specs(args.models, 32, 1, 32, args.epochs)
    probe = probe_of(ds, 100)
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    for path in ("vec", "mixed", "also", "seq", "proc"):
        (work / path).mkdir()
    load = os.getloadavg()[0]
    runs = vectorised(specs, ds, probe, work / "vec", args.threads, args.repeats)
    mixed_specs = random_widths(specs, 8, 128)
    mixed = vectorised(mixed_specs, ds, probe, work / "mixed", args.threads, args.repeats)
    also = vectorised(specs, ds, probe, work / "also", args.threads_also, args.repeats)
    torch.set_num_threads(args.threads)
    vec_s, vec_cpu_s, write_s = np.median(np.array(runs), axis=0)
    seq = specs[: args.sequential]
    seq_runs = [sequential(seq, ds, probe, work / "seq") for _ in range(args.repeats)]
    seq_s = float(np.median(seq_runs))
    print(f"sequential one-model path: {len(seq)} models, {args.repeats} runs, {seq_s:.3f} s/model")
    proc = specs[: args.processes]
    proc_runs = [per_process(proc, ds, work / "proc", args.threads) for _ in range(args.repeats)]
    proc_s = float(np.median(proc_runs))
    print(f"one process per model: {len(proc)} models, {args.repeats} runs, {proc_s:.3f} s/model")
    vec = len(specs) / vec_s
    mixed_rate = len(specs) / float(np.median([r[0] for r in mixed]))
    print(f"random widths: {mixed_rate:.1f} models/s, same shape {vec:.1f}")
    return {
        "mode": "cpu",
        "models": len(specs),
        "epochs": args.epochs,
        "runs_per_path": args.repeats,
        "checkpoints_per_model": {
            path: round(checkpoints(work / path) / (n * args.repeats), 2)
            for path, n in (("vec", len(specs)), ("seq", len(seq)), ("proc", len(proc)))
        },
        "threads": args.threads,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "load_average_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
        "vectorised_models_per_s": round(vec, 2),
        "vectorised_models_per_s_runs": [round(len(specs) / r[0], 1) for r in runs],
        f"vectorised_models_per_s_{args.threads_also}_threads": round(
            len(specs) / float(np.median([r[0] for r in also])), 2
        ),
        "random_width_models_per_s": round(mixed_rate, 2),
        "random_width_models_per_s_runs": [round(len(specs) / r[0], 1) for r in mixed],
        "random_width_fraction_of_same_shape": round(mixed_rate / vec, 3),
        "random_width_groups": padded_groups(mixed_specs, ds, "cpu"),
        "vectorised_models_per_cpu_s": round(len(specs) / vec_cpu_s, 2),
        "vectorised_output_writing_s": round(write_s, 3),
        "vectorised_models_per_s_without_writes": round(len(specs) / (vec_s - write_s), 2),
        "sequential_models_per_s": round(1 / seq_s, 3),
        "sequential_models_per_s_runs": [round(1 / r, 3) for r in seq_runs],
        "sequential_models_timed": len(seq),
        "per_process_models_per_s": round(1 / proc_s, 4),
        "per_process_models_per_s_runs": [round(1 / r, 4) for r in proc_runs],
        "per_process_models_timed": args.processes,
        "speedup_vs_sequential": round(vec * seq_s, 1),
        "speedup_vs_per_process": round(vec * proc_s, 1),
    }


def gpu(args: argparse.Namespace) -> dict:
    ds = load_npz(args.npz) if args.npz else synthetic(60000, 10000, (784,))
    specs = zoo_specs(args.models, 64, 2, 64, args.epochs)
    probe = probe_of(ds, 1000)
    work = Path(tempfile.mkdtemp(prefix="bench_train_gpu_"))
    wall, metrics = gpu_run(specs, ds, probe, work / "one_shape", args.epochs)
    acc = [m["test_accuracy"] for m in metrics if m["status"] == "ok"]
    mixed = {}
    if args.random_widths:
        mixed_specs = random_widths(specs, 8, 128)
        mixed_wall, mixed_metrics = gpu_run(mixed_specs, ds, probe, work / "mixed", args.epochs)
        rate = len(specs) * args.epochs / mixed_wall
        mixed = {
            "random_width_model_epochs_per_s": round(rate, 1),
            "random_width_fraction_of_one_shape": round(wall / mixed_wall, 3),
            "random_width_groups": padded_groups(mixed_specs, ds, "cuda"),
            "random_width_ok": sum(m["status"] == "ok" for m in mixed_metrics),
        }
    return {
        "mode": "gpu",
        "data": args.npz or "synthetic",
        "models": len(specs),
        "epochs": args.epochs,
        "seconds": round(wall, 2),
        "model_epochs_per_s": round(len(specs) * args.epochs / wall, 1),
        "median_test_accuracy": round(float(np.median(acc)), 4) if acc else None,
        "ok": len(acc),
        **mixed,
    }


def resnet_specs(n: int, epochs: int, batch: int) -> list[dict]:
    """n ResNet-8s (16 channels) differing in seed and learning rate (SGD + momentum 0.9)."""
    space = {"arch": ["resnet"], "blocks": [1], "lr": [0.01 * (i + 1) for i in range(8)]}
    space.update(epochs=[epochs], batch_size=[batch], momentum=[0.9], optimizer=["sgd"])
    seeds = list(range(math.ceil(n / 8)))
    return zoo.expand(validate({"zoo": {"seeds": seeds, "space": space}}))[:n]


def gpu_resnets(args: argparse.Namespace) -> dict:
    """ResNet-8s on CIFAR-shaped synthetic images on CUDA: one group, then 4 one at a time."""
    ds = synthetic(10000, 1000, (3, 32, 32))
    specs = resnet_specs(args.models, args.epochs, 128)
    probe = probe_of(ds, 500)
    work = Path(tempfile.mkdtemp(prefix="bench_train_resnet_gpu_"))
    t = time.perf_counter()
    metrics = train.train_job(specs, ds, probe, work / "group", accelerator="gpu")
    group_s = time.perf_counter() - t
    sizes = sorted({m.get("group_size") for m in metrics})
    one = specs[: args.sequential]
    t = time.perf_counter()
    alone = [train.train_model(s, ds, probe, work / "one" / s["model_id"], "gpu") for s in one]
    one_s = (time.perf_counter() - t) / len(one)
    images = len(ds.y_train) * args.epochs
    print(
        f"group: {len(specs)} ResNet-8s x {args.epochs} epochs in {group_s:.1f} s (group sizes "
        f"{sizes}); one at a time: {one_s:.2f} s per model ({len(one)} models)"
    )
    return {
        "mode": "resnet-gpu",
        "models": len(specs),
        "epochs": args.epochs,
        "group_sizes": sizes,
        "group_s": round(group_s, 2),
        "group_images_per_s": round(images * len(specs) / group_s),
        "group_model_epochs_per_s": round(len(specs) * args.epochs / group_s, 2),
        "one_model_s_per_model": round(one_s, 2),
        "one_model_images_per_s": round(images / one_s),
        "one_model_model_epochs_per_s": round(args.epochs / one_s, 3),
        "speedup_per_model": round(one_s * len(specs) / group_s, 1),
        "ok": sum(m["status"] == "ok" for m in metrics),
        "one_model_ok": sum(m["status"] == "ok" for m in alone),
        "median_test_accuracy": round(float(np.median([m["test_accuracy"] for m in metrics])), 4),
    }


def resnets(args: argparse.Namespace) -> dict:
    """ResNet-8s of one shape on the digits: one group against the one-model path."""
    ds = data.load_dataset(validate({"data": {}})["data"])
    specs = resnet_specs(args.models, args.epochs, 32)
    probe = probe_of(ds, 100)
    work = Path(tempfile.mkdtemp(prefix="bench_train_resnet_"))
    for path in ("vec", "seq"):
        (work / path).mkdir()
    runs = vectorised(specs, ds, probe, work / "vec", args.threads, args.repeats)
    vec_s = float(np.median([r[0] for r in runs]))
    seq = specs[: args.sequential]
    seq_runs = [sequential(seq, ds, probe, work / "seq") for _ in range(args.repeats)]
    seq_s = float(np.median(seq_runs))
    print(f"one-model path: {len(seq)} ResNets, {args.repeats} runs, {seq_s:.3f} s/model")
    return {
        "mode": "resnet",
        "models": len(specs),
        "epochs": args.epochs,
        "runs_per_path": args.repeats,
        "threads": args.threads,
        "group_models_per_s": round(len(specs) / vec_s, 2),
        "group_models_per_s_runs": [round(len(specs) / r[0], 2) for r in runs],
        "one_model_models_per_s": round(1 / seq_s, 3),
        "one_model_models_per_s_runs": [round(1 / r, 3) for r in seq_runs],
        "one_model_models_timed": len(seq),
        "speedup_per_model": round(seq_s * len(specs) / vec_s, 1),
    }


def gpu_run(
    specs: list[dict], ds: data.Dataset, probe: dict, out: Path, epochs: int
) -> tuple[float, list[dict]]:
    """(wall s, metrics) of one training job of ``specs`` on the GPU, into ``out``."""
    t = time.perf_counter()
    metrics = train.train_job(specs, ds, probe, out, accelerator="gpu")
    wall = time.perf_counter() - t
    print(
        f"{len(specs)} models x {epochs} epochs in {wall:.1f} s, group sizes "
        f"{sorted({m.get('group_size') for m in metrics})}"
    )
    return wall, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="MNIST-shaped MLPs on CUDA")
    parser.add_argument(
        "--resnet", action="store_true", help="ResNet-8s: on the digits, or with --gpu CIFAR-shaped"
    )
    parser.add_argument("--npz", help="--gpu: MNIST as an npz (default: synthetic, same shape)")
    parser.add_argument(
        "--random-widths", action="store_true", help="--gpu: also the zoo at widths 8-128"
    )
    parser.add_argument("--models", type=int, help="zoo size (default 128 on CPU, 1024 on GPU)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per model (>= 2 on CPU)")
    parser.add_argument("--sequential", type=int, default=16, help="models timed one by one")
    parser.add_argument("--processes", type=int, default=8, help="models timed one per process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every path")
    parser.add_argument(
        "--threads-also", type=int, default=2, help="torch threads of a second vectorised timing"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of every path (the first cold); medians count"
    )
    args = parser.parse_args()
    if not args.gpu and args.epochs < 2:
        parser.error("--epochs must be at least 2: the vectorised path checkpoints from epoch 2")
    warnings.filterwarnings("ignore")
    logging.getLogger("nnmanifold").setLevel(logging.WARNING)
    if args.resnet:
        args.models = args.models or (64 if args.gpu else 32)
        args.sequential = min(args.sequential, 4 if args.gpu else 8)
        figures = gpu_resnets(args) if args.gpu else resnets(args)
        print(json.dumps(figures))
        return
    args.models = args.models or (1024 if args.gpu else 128)
    print(json.dumps(gpu(args) if args.gpu else cpu(args)))


if __name__ == "__main__":
    main()
