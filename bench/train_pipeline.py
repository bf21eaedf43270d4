"""Training phase of a whole Snakemake run: the 32-network MNIST zoo of issue 12.

MLP and CNN x depth 1, 2 x lr 0.01, 0.1 x seeds 0-3; width 64, channels 16, batch 64, 2 epochs,
n_probe 1000. The workflow runs up to the ``trained`` target in a fresh folder; the training phase
is the first train job's start to the last train job's end in Snakemake's log (process start-up
included; one-second resolution). Data: ``--npz`` (MNIST as x_train, y_train, x_test, y_test) or,
without one, a synthetic MNIST-shaped set (uint8 28x28 images, labels from a random linear map).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule train:$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished job(?:id:)? (\d+)")


def synthetic_mnist(path: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """MNIST's shapes and dtypes: uint8 images (N, 28, 28), labels from a random linear map."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n_train + n_test, 28, 28), dtype=np.uint8)
    w = rng.normal(size=(28 * 28, 10))
    y = ((x.reshape(len(x), -1) / 255.0 - 0.5) @ w).argmax(1).astype(np.int64)
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:])


def config(args: argparse.Namespace, npz: Path) -> dict:
    """The zoo of the issue's measurement, trained as the arguments say."""
    return {
        "results": "results",
        "data": {"name": "npz", "npz_path": str(npz), "n_probe": 1000, "max_train": args.max_train},
        "zoo": {
            "mode": "grid",
            "seeds": [0, 1, 2, 3],
            "space": {
                "arch": ["mlp", "cnn"],
                "depth": [1, 2],
                "width": [64],
                "channels": [16],
                "lr": [0.01, 0.1],
                "momentum": [0.9],
                "batch_size": [64],
                "epochs": [args.epochs],
            },
        },
        "train": {
            "models_per_job": args.models_per_job,
            "accelerator": args.accelerator,
            "jobs_per_gpu": args.jobs_per_gpu,
        },
    }


def training_phase(log: str) -> tuple[float, int]:
    """Seconds from the first train job's start to the last one's end, and how many ran."""
    stamp, in_train, starts, ends = None, False, {}, {}
    for line in log.splitlines():
        if m := STAMP.match(line.strip()):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif START.match(line.strip()):
            in_train = True
        elif in_train and (m := JOBID.match(line)):
            starts[m.group(1)], in_train = stamp, False
        elif (m := FINISHED.match(line.strip())) and m.group(1) in starts:
            ends[m.group(1)] = stamp
    if not starts or set(ends) != set(starts):
        raise SystemExit(f"train jobs started {sorted(starts)}, finished {sorted(ends)}:\n{log}")
    return (max(ends.values()) - min(starts.values())).total_seconds(), len(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, help="MNIST as an npz (default: synthetic, same shape)")
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--models-per-job", type=int, default=32, help="train.models_per_job")
    parser.add_argument("--jobs-per-gpu", type=int, default=1, help="train.jobs_per_gpu")
    parser.add_argument("--gpus", type=int, default=1, help="--resources gpu=N")
    parser.add_argument("--cores", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train", type=int, help="data.max_train (quick runs)")
    parser.add_argument("--synthetic-size", type=int, nargs=2, default=(60000, 10000))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    npz = args.npz.resolve() if args.npz else work / "mnist_shaped.npz"
    if not args.npz:
        synthetic_mnist(npz, *args.synthetic_size)
    (work / "config.yaml").write_text(yaml.safe_dump(config(args, npz)))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work)]
    command += ["--configfile", str(work / "config.yaml"), "--cores", str(args.cores)]
    command += ["--resources", f"gpu={args.gpus}", "--", "trained"]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if run.returncode:
        raise SystemExit(f"snakemake failed:\n{run.stderr[-5000:]}")
    seconds, jobs = training_phase(run.stderr)
    metrics = [json.loads(p.read_text()) for p in (work / "results").glob("models/*/metrics.json")]
    ok = [m for m in metrics if m["status"] == "ok"]
    print(f"{len(metrics)} models in {jobs} train jobs; training phase {seconds:.0f} s")
    print(
        json.dumps(
            {
                "accelerator": args.accelerator,
                "data": str(args.npz) if args.npz else "synthetic",
                "models": len(metrics),
                "ok": len(ok),
                "train_jobs": jobs,
                "training_phase_s": seconds,
                "snakemake_wall_s": round(wall, 1),
                "median_test_accuracy": round(float(np.median([m["test_accuracy"] for m in ok])), 4)
                if ok
                else None,
            }
        )
    )


if __name__ == "__main__":
    main()
