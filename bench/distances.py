"""Benchmark network distances: naive loop vs Gram kernel, GEMM efficiency, streaming, incremental.

Run by hand (not in CI): ``python bench/distances.py``. The last printed line is one JSON object.
``--device-rate`` times only the distance step on a device against that device's float64 GEMM
of the same shape (bench/gpu_check.sh): its GEMM fraction is the step's rate on the matrix-product
FLOPs it actually does (counted by torch's FlopCounterMode: the Gram blocks, which skip most of the
lower triangle, and the kernels' batched products) over the GEMM's rate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnmanifold.geometry.diffusion import OperatorSettings, diffusion_operator
from nnmanifold.geometry.distances import (
    distance_matrix,
    fingerprint,
    pairwise_frobenius,
    plan_blocks,
)

SETTINGS = OperatorSettings()
#: What the benchmark's distances depend on (default settings, a made-up probe set).
FINGERPRINT = fingerprint(SETTINGS, "bench", "penultimate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults are the figures quoted in bench/README.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200, help="zoo size N")
    parser.add_argument("--points", type=int, default=500, help="probe points n (P is n x n)")
    parser.add_argument("--features", type=int, default=32, help="representation width")
    parser.add_argument("--add", type=int, default=10, help="models added to a cached zoo")
    parser.add_argument(
        "--naive-pairs", type=int, default=500, help="pairs timed by the naive loop (extrapolated)"
    )
    parser.add_argument(
        "--budget-mb",
        type=float,
        help="memory budget of the streamed run (default: a quarter of the operators' size)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timings keep the best of this")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device-rate",
        action="store_true",
        help="only the distance step on --device (operators resident, and streamed with "
        "--budget-mb) against that device's float64 GEMM of the same shape",
    )
    parser.add_argument("--stream-worker", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.budget_mb is None:
        args.budget_mb = operators_mb(args) / 4
    return args


def operators_mb(args: argparse.Namespace) -> float:
    """Size of the N float64 operators, MB."""
    return args.models * args.points**2 * 8 / 2**20


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def representations(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """A zoo of related float32 representations (model 1 a near-identical copy of model 0),
    N + --add of them."""
    rng = np.random.default_rng(args.seed)
    base = rng.normal(size=(args.points, args.features))
    reps = {
        f"model-{i:05d}": (base + 0.5 * rng.normal(size=base.shape)).astype(np.float32)
        for i in range(args.models + args.add)
    }
    first = reps["model-00000"]
    reps["model-00001"] = first + np.float32(1e-3) * rng.normal(size=base.shape).astype(np.float32)
    return reps


def zoo(reps: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """The first ``count`` models."""
    return dict(list(reps.items())[:count])


def stream_worker(out: str, args: argparse.Namespace) -> None:
    """Child process: distances from the representations within the budget; report the time
    and the RSS growth (torch allocations are invisible to tracemalloc).

    A two-model warm-up first loads the libraries, and the peak-RSS mark is reset, so the RSS
    growth is the computation's own.
    """
    reps = zoo(representations(args), args.models)
    distance_matrix(zoo(reps, 2), SETTINGS, memory_budget_bytes=2**30, device=args.device)
    rss_before_mb = _reset_peak_rss_mb()
    budget = int(args.budget_mb * 2**20)
    start = time.perf_counter()
    result = distance_matrix(reps, SETTINGS, memory_budget_bytes=budget, device=args.device)
    seconds = time.perf_counter() - start
    rss_growth_mb = _proc_status_mb("VmHWM") - rss_before_mb
    np.save(out, result.distances)
    plan = plan_blocks(len(reps), args.points, SETTINGS, budget)
    print(json.dumps({"rss_growth": rss_growth_mb, "s": seconds, "rows": plan.rows}))


def _reset_peak_rss_mb() -> float:
    """Reset the kernel's peak-RSS mark (Linux) and return the current RSS in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _proc_status_mb("VmRSS")


def _proc_status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def kernel_figures(A: np.ndarray, args: argparse.Namespace) -> tuple[dict, np.ndarray]:
    """Our in-memory kernel vs a plain GEMM of the same shape, symmetric and rectangular."""
    N, m = A.shape
    ours_s = best_time(lambda: pairwise_frobenius(A, device=args.device), args.repeats)
    B = A.copy()
    gemm_s = best_time(lambda: A @ B.T, args.repeats)
    half = N // 2
    rect_s = best_time(
        lambda: pairwise_frobenius(A[:half], A[half:], device=args.device), args.repeats
    )
    rect_gemm_s = best_time(lambda: A[:half] @ B[half:].T, args.repeats)
    flops = 2.0 * N * N * m
    print(
        f"ours {ours_s:.3f} s ({flops / ours_s / 1e9:.1f} GFLOP/s nominal 2*N*N*m; symmetric "
        f"product), plain GEMM {gemm_s:.3f} s ({flops / gemm_s / 1e9:.1f} GFLOP/s)"
    )
    print(f"rectangular {half}x{N - half}: ours {rect_s:.3f} s, plain GEMM {rect_gemm_s:.3f} s")
    figures = {
        "ours_s": ours_s,
        "gemm_s": gemm_s,
        "gemm_fraction": gemm_s / ours_s,
        "rect_gemm_fraction": rect_gemm_s / rect_s,
    }
    return figures, pairwise_frobenius(A, device=args.device)


def naive_figures(A: np.ndarray, D: np.ndarray, args: argparse.Namespace) -> dict:
    """Time a sample of naive pairs (the near-identical one first), extrapolate to all pairs."""
    N = len(A)
    rng = np.random.default_rng(args.seed + 1)
    pairs = [(0, 1)] + [
        tuple(rng.choice(N, size=2, replace=False)) for _ in range(args.naive_pairs - 1)
    ]
    reference = [np.linalg.norm(A[i] - A[j]) for i, j in pairs]
    loop_s = best_time(lambda: [np.linalg.norm(A[i] - A[j]) for i, j in pairs], args.repeats)
    per_pair = loop_s / len(pairs)
    naive_s = per_pair * N * (N - 1) / 2
    max_rel_err = max(abs(D[i, j] - r) / r for (i, j), r in zip(pairs, reference, strict=True))
    print(
        f"naive loop: {len(pairs)} pairs timed, {per_pair * 1e3:.3f} ms/pair, extrapolated to "
        f"{N * (N - 1) // 2} pairs = {naive_s:.1f} s; max rel err {max_rel_err:.1e} "
        f"(near-identical pair d={reference[0]:.3e})"
    )
    return {"naive_s": naive_s, "naive_pairs_timed": len(pairs), "max_rel_err": max_rel_err}


def build_figures(reps: dict[str, np.ndarray], args: argparse.Namespace) -> tuple[dict, np.ndarray]:
    """The NumPy reference operators of the zoo (what the store-based step built), in memory."""
    start = time.perf_counter()
    A = np.stack([diffusion_operator(X, SETTINGS).ravel() for X in zoo(reps, args.models).values()])
    numpy_build_s = time.perf_counter() - start
    print(f"NumPy reference operators: {numpy_build_s:.2f} s for {args.models}")
    return {"numpy_build_s": numpy_build_s}, A


def engine_figures(reps: dict[str, np.ndarray], D: np.ndarray, args: argparse.Namespace) -> dict:
    """Distances from representations with every operator resident, and streamed within the
    budget in a fresh process (so its memory is its own); both build the operators."""
    models = zoo(reps, args.models)
    resident_budget = 2 * int(operators_mb(args) * 2**20) + 2**26
    in_memory_s = best_time(
        lambda: distance_matrix(
            models, SETTINGS, memory_budget_bytes=resident_budget, device=args.device
        ),
        args.repeats,
    )
    with tempfile.TemporaryDirectory() as workdir:
        out = Path(workdir) / "streamed.npy"
        worker = subprocess.run(
            [sys.executable, __file__, *_forwarded(args), "--stream-worker", str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
        stream = json.loads(worker.stdout.splitlines()[-1])
        stream_err = float(np.max(np.abs(np.load(out) - D) / np.maximum(D, 1e-300)))
    print(
        f"from representations, operators built on the fly: resident {in_memory_s:.2f} s; "
        f"streamed ({operators_mb(args):.0f} MB of operators, budget {args.budget_mb:.0f} MB, "
        f"{stream['rows']} rows a block) {stream['s']:.2f} s = {stream['s'] / in_memory_s:.2f}x, "
        f"RSS growth {stream['rss_growth']:.0f} MB; max rel diff to the in-memory kernel on "
        f"NumPy operators {stream_err:.1e}"
    )
    return {
        "in_memory_s": in_memory_s,
        "stream_s": stream["s"],
        "stream_ratio": stream["s"] / in_memory_s,
        "stream_rss_growth_mb": stream["rss_growth"],
        "stream_rel_diff": stream_err,
        "operators_mb": operators_mb(args),
        "budget_mb": args.budget_mb,
    }


def incremental_figures(reps: dict[str, np.ndarray], args: argparse.Namespace) -> dict:
    """Adding models to a cached zoo vs recomputing everything, within the same budget."""
    budget = int(args.budget_mb * 2**20)
    with tempfile.TemporaryDirectory() as workdir:
        cached = {
            "memory_budget_bytes": budget,
            "cache_path": Path(workdir) / "distances.h5",
            "attrs": FINGERPRINT,
            "device": args.device,
        }
        distance_matrix(zoo(reps, args.models), SETTINGS, **cached)
        start = time.perf_counter()
        added = distance_matrix(reps, SETTINGS, **cached)
        add_s = time.perf_counter() - start
    start = time.perf_counter()
    full = distance_matrix(reps, SETTINGS, memory_budget_bytes=budget, device=args.device)
    full_s = time.perf_counter() - start
    add_err = float(np.max(np.abs(added.distances - full.distances)))
    print(
        f"add {args.add} to {args.models}: {add_s:.2f} s ({added.n_computed} pairs) vs full "
        f"recompute {full_s:.2f} s ({full.n_computed} pairs); max abs diff {add_err:.1e}"
    )
    return {
        "add_pairs": added.n_computed,
        "add_s": add_s,
        "full_pairs": full.n_computed,
        "full_s": full_s,
    }


def counted_flops(fn: Callable[[], object]) -> float:
    """Matrix-product FLOPs (mm, addmm, bmm, ...) that one call of ``fn`` does in torch; the
    in-place addmm_ of the Gram blocks counts as addmm (torch's table leaves it out)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def addmm_(_: object, a: tuple, b: tuple, *args: object, **kwargs: object) -> int:
        return 2 * a[0] * a[1] * b[1]  # (shapes) bias + a @ b

    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: addmm_}) as counter:
        fn()
    return float(counter.get_total_flops())


def device_rate(args: argparse.Namespace) -> dict:
    """The distance step on --device against that device's float64 GEMM of the same shape
    (N x n^2 times its transpose): operators built and resident, then streamed in blocks. The
    fraction compares FLOP rates, each on the FLOPs its own run does."""
    import torch

    reps = zoo(representations(args), args.models)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else lambda: None
    figures: dict = {"models": args.models, "points": args.points}
    if operators_mb(args) * 2**20 * 2.2 < _free_bytes(dev):
        A = torch.randn(args.models, args.points**2, dtype=torch.float64, device=dev)

        def gemm() -> None:
            A @ A.T
            sync()

        figures["gemm_s"] = best_time(gemm, args.repeats)
        figures["gemm_flops"] = 2.0 * args.models**2 * args.points**2
        del A
    resident = 2 * int(operators_mb(args) * 2**20) + 2**30
    for name, budget in [("resident", resident), ("streamed", int(args.budget_mb * 2**20))]:
        plan = plan_blocks(args.models, args.points, SETTINGS, budget)
        if plan.rows == args.points and name == "streamed":
            continue

        def step(b: int = budget) -> None:
            distance_matrix(reps, SETTINGS, memory_budget_bytes=b, device=args.device)

        seconds = best_time(step, args.repeats)
        flops = counted_flops(step)
        figures |= {f"{name}_s": seconds, f"{name}_rows": plan.rows, f"{name}_flops": flops}
        if "gemm_s" in figures:
            gemm_rate = figures["gemm_flops"] / figures["gemm_s"]
            figures[f"{name}_gemm_fraction"] = flops / seconds / gemm_rate
        print(f"{name}: {seconds:.3f} s ({plan.rows} rows a block) {figures}")
    return figures


def _free_bytes(dev: object) -> float:
    import torch

    if getattr(dev, "type", "cpu") == "cuda":
        return torch.cuda.mem_get_info()[0]
    return _proc_meminfo_bytes("MemAvailable")


def _proc_meminfo_bytes(field: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/meminfo (Linux only)")


def main(argv: list[str] | None = None) -> None:
    """Run every measurement once and print the figures, the last line as JSON."""
    args = parse_args(argv)
    if args.stream_worker:
        stream_worker(args.stream_worker, args)
        return
    if args.device_rate:
        figures = device_rate(args)
    else:
        reps = representations(args)
        print(
            f"zoo: {args.models} operators of {args.points}x{args.points}, "
            f"{operators_mb(args):.0f} MB"
        )
        figures, A = build_figures(reps, args)
        kernel, D = kernel_figures(A, args)
        figures |= kernel
        figures |= naive_figures(A, D, args)
        figures["speedup"] = figures["naive_s"] / figures["ours_s"]
        del A
        figures |= engine_figures(reps, D, args)
        figures |= incremental_figures(reps, args)
    print(
        json.dumps(
            {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in figures.items()}
        )
    )


def _forwarded(args: argparse.Namespace) -> list[str]:
    return [
        f"--models={args.models}",
        f"--points={args.points}",
        f"--features={args.features}",
        f"--add={args.add}",
        f"--seed={args.seed}",
        f"--budget-mb={args.budget_mb}",
        f"--device={args.device}",
    ]


if __name__ == "__main__":
    main()
