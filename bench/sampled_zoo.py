"""The random digits zoo of issue 24 end to end: 1,000 MLPs through `snakemake --cores 2`.

500 samples x seeds 0, 1 over depth 1-3, widths log-uniform 8-128, relu/tanh, lr log-uniform
0.0005-0.3, 1-3 epochs (``bench/sampled_zoo.yaml``), run in a fresh results folder. Per-rule job
times come from the Snakemake ``benchmark:`` files (wall seconds, millisecond resolution, summed
over a rule's jobs), beside the run's wall time. Goals: training <= 30 job-s, the three baselines
<= 25 job-s, the whole run <= 110 s. Machines of this kind differ by ~30 % in speed, so a plain
NumPy reference (``reference``: a fixed mix of small SVDs and matrix products, one thread) is timed
before and after the run, and the run's wall time is also given in units of it. A rule's CPU
seconds are a lower bound: Snakemake samples a job's CPU time every 0.5 s for its first 15 s and
every 30 s after. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "bench" / "sampled_zoo.yaml"


def reference() -> float:
    """Seconds of a fixed plain-NumPy workload (3,000 SVDs of 64 x 64, 300 products of 256 x
    256 matrices) on one thread: the machine's speed, for ratios."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(64, 64)), rng.normal(size=(256, 256))
    with threadpool_limits(1):
        started = time.perf_counter()
        for _ in range(3000):
            np.linalg.svd(a)
        for _ in range(300):
            b = b @ b.T / 256
    return time.perf_counter() - started


def rule_times(benchmarks: Path) -> dict[str, dict[str, float]]:
    """Per rule: jobs, summed wall seconds and summed CPU seconds of its benchmark files."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"jobs": 0, "s": 0.0, "cpu_s": 0.0})
    for path in sorted(benchmarks.rglob("*.tsv")):
        rule = path.relative_to(benchmarks).parts[0].removesuffix(".tsv")
        with path.open() as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        out[rule]["jobs"] += 1
        out[rule]["s"] += float(row["s"])
        out[rule]["cpu_s"] += float(row["cpu_time"]) if row["cpu_time"] != "NA" else 0.0
    return {k: {n: round(v, 2) for n, v in d.items()} for k, d in sorted(out.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument(
        "--keep",
        help="folder to run in and keep (results in <keep>/results; default: a temporary one)",
    )
    args = parser.parse_args()
    results = Path(args.keep or tempfile.mkdtemp(prefix="sampled_zoo_")) / "results"
    if results.exists():
        parser.error(f"{results} exists: the run must start from nothing")
    results.parent.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(CONFIG.read_text()) | {"results": str(results)}
    config_path = results.parent / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--cores", str(args.cores)]
    command += ["--snakefile", str(ROOT / "Snakefile"), "--configfile", str(config_path)]
    before = reference()
    started = time.perf_counter()
    run = subprocess.run(command, cwd=results.parent, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"snakemake failed ({run.returncode}):\n{run.stderr[-4000:]}")
    wall = time.perf_counter() - started
    ref = float(np.median([before, reference(), reference()]))
    rules = rule_times(results / "benchmarks")
    for rule, f in rules.items():
        print(f"{rule:24s} {f['jobs']:3.0f} jobs {f['s']:7.2f} s {f['cpu_s']:7.2f} CPU s")
    baselines = rules.get("baselines", {}).get("s", 0.0)
    print(
        json.dumps(
            {
                "models": 1000,
                "cores": args.cores,
                "wall_s": round(wall, 1),
                "reference_s": round(ref, 3),
                "wall_in_references": round(wall / ref, 1),
                "train_job_s": rules["train"]["s"],
                "train_jobs": rules["train"]["jobs"],
                "baselines_job_s": baselines,
                "rules": rules,
            }
        )
    )


if __name__ == "__main__":
    main()
