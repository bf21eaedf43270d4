"""Benchmark network distances: naive loop vs Gram kernel, GEMM efficiency, streaming, incremental.

Run by hand (not in CI): ``python bench/distances.py``. The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnmanifold.diffusion import OperatorSettings, diffusion_operator
from nnmanifold.distances import distance_matrix, pairwise_frobenius, store_fingerprint
from nnmanifold.storage import OperatorStore

#: What the benchmark's operators depend on (default settings, a made-up probe set).
FINGERPRINT = store_fingerprint(OperatorSettings(), "bench", "penultimate")


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
        "--budget-mb", type=float, default=64.0, help="memory budget of the streamed run"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timings keep the best of this")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stream-worker", nargs=2, metavar=("STORE", "OUT"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def build_store(path: Path, args: argparse.Namespace) -> tuple[OperatorStore, list[str]]:
    """A zoo of related operators (model 1 a near-identical copy of model 0) in an HDF5 store."""
    rng = np.random.default_rng(args.seed)
    settings = OperatorSettings()
    store = OperatorStore(path, FINGERPRINT)
    base = rng.normal(size=(args.points, args.features))
    ids = [f"model-{i:04d}" for i in range(args.models + args.add)]
    for model_id in ids:
        X = base + 0.5 * rng.normal(size=base.shape)
        store.put(model_id, diffusion_operator(X, settings))
    near = store.operator(ids[0]) + 1e-7 * rng.random((args.points, args.points))
    store.put(ids[1], near / near.sum(axis=1, keepdims=True))
    return store, ids


def stream_worker(store_path: str, out: str, args: argparse.Namespace) -> None:
    """Child process: streamed distances under the budget; report traced and RSS peaks.

    A two-model warm-up first loads the libraries, and the peak-RSS mark is reset, so the RSS
    growth is the computation's own.
    """
    store = OperatorStore(store_path, FINGERPRINT)
    ids = store.model_ids()[: args.models]
    distance_matrix(store, ids[:2], memory_budget_bytes=2**30, device=args.device)
    rss_before_mb = _reset_peak_rss_mb()
    tracemalloc.start()
    start = time.perf_counter()
    result = distance_matrix(
        store, ids, memory_budget_bytes=int(args.budget_mb * 2**20), device=args.device
    )
    seconds = time.perf_counter() - start
    traced_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss_growth_mb = _proc_status_mb("VmHWM") - rss_before_mb
    np.save(out, result.distances)
    print(json.dumps({"traced": traced_peak_mb, "rss_growth": rss_growth_mb, "s": seconds}))


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


def stream_figures(store: OperatorStore, D: np.ndarray, args: argparse.Namespace) -> dict:
    """Streamed distances in a fresh process, so its peak memory is its own."""
    out = store.path.with_name("streamed.npy")
    worker = subprocess.run(
        [sys.executable, __file__, *_forwarded(args), "--stream-worker", str(store.path), out],
        check=True,
        capture_output=True,
        text=True,
    )
    stream = json.loads(worker.stdout.splitlines()[-1])
    stream_err = float(np.max(np.abs(np.load(out) - D)))
    operators_mb = D.size * args.points**2 * 8 / len(D) / 2**20
    print(
        f"streamed from HDF5 ({operators_mb:.0f} MB of operators, budget {args.budget_mb:.0f} "
        f"MB): {stream['s']:.2f} s, traced peak {stream['traced']:.1f} MB, RSS growth "
        f"{stream['rss_growth']:.1f} MB, max abs diff to in-memory {stream_err:.1e}"
    )
    return {
        "stream_s": stream["s"],
        "stream_peak_mb": stream["traced"],
        "stream_rss_growth_mb": stream["rss_growth"],
        "operators_mb": operators_mb,
        "budget_mb": args.budget_mb,
    }


def incremental_figures(store: OperatorStore, ids: list[str], args: argparse.Namespace) -> dict:
    """Adding models to a cached zoo vs recomputing everything, both read from the store."""
    cache = store.path.with_name("distances.h5")
    distance_matrix(
        store, ids[: args.models], cache_path=cache, memory_budget_bytes=2**30, device=args.device
    )
    start = time.perf_counter()
    added = distance_matrix(
        store, ids, cache_path=cache, memory_budget_bytes=2**30, device=args.device
    )
    add_s = time.perf_counter() - start
    start = time.perf_counter()
    full = distance_matrix(store, ids, memory_budget_bytes=2**30, device=args.device)
    full_s = time.perf_counter() - start
    add_err = float(np.max(np.abs(added.distances - full.distances)))
    print(
        f"add {args.add} to {args.models}: {add_s:.2f} s ({added.n_computed} pairs) vs full "
        f"recompute {full_s:.2f} s ({full.n_computed} pairs); max abs diff {add_err:.1e}"
    )
    return {
        "add_pairs": added.n_computed,
        "add10_s": add_s,
        "full_pairs": full.n_computed,
        "full_s": full_s,
    }


def main(argv: list[str] | None = None) -> None:
    """Run every measurement once and print the figures, the last line as JSON."""
    args = parse_args(argv)
    if args.stream_worker:
        stream_worker(*args.stream_worker, args)
        return
    with tempfile.TemporaryDirectory() as workdir:
        store, ids = build_store(Path(workdir) / "operators.h5", args)
        A = np.empty((args.models, args.points**2))
        store.read_into(ids[: args.models], A)
        print(f"zoo: {args.models} operators of {args.points}x{args.points}, {A.nbytes >> 20} MB")
        figures, D = kernel_figures(A, args)
        figures |= naive_figures(A, D, args)
        figures["speedup"] = figures["naive_s"] / figures["ours_s"]
        del A
        figures |= stream_figures(store, D, args)
        figures |= incremental_figures(store, ids, args)
    print(
        json.dumps(
            {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in figures.items()}
        )
    )


def _forwarded(args: argparse.Namespace) -> list[str]:
    return [
        f"--models={args.models}",
        f"--budget-mb={args.budget_mb}",
        f"--device={args.device}",
    ]


if __name__ == "__main__":
    main()
