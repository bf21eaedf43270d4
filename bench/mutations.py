"""Mutation check: one-line bugs in the code that decides results, and the tests that must fail.

Each mutation replaces one snippet (found exactly once) in one file of a temporary copy of the
repository, runs the tests named for it there under a time cap (``pytest -x``, with that copy's
``workflow`` on PYTHONPATH), and counts the mutation killed when a test fails. The working tree is
never touched. A baseline run of every named test on the unmutated copy comes first: a test that
fails there kills nothing. Mutations that cannot change results are listed with the reason and
not run.

    python bench/mutations.py [--only NAME] [--cap SECONDS] [--no-baseline]
                              [--repo TREE --whole-files]

``--repo`` mutates another tree (an older commit, exported) and ``--whole-files`` runs the whole
test files the named tests live in: together they give the kill table of an older suite.

Prints one row per mutation (killed, survived, timeout, broken), then the equivalent ones; the
last line is JSON {killed, total, rate} over the mutations run (a timeout counts as not killed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = "workflow/nnmanifold"
SEARCH, BENCH = f"{PKG}/search/sampler.py", f"{PKG}/search/benchmark.py"
DIFFUSION, DISTANCES = f"{PKG}/geometry/diffusion.py", f"{PKG}/geometry/distances.py"
SIMILARITY = f"{PKG}/geometry/similarity.py"
FORKED = f"{PKG}/core/forked.py"
GROUP, JOB, MODELS = f"{PKG}/train/group.py", f"{PKG}/train/job.py", f"{PKG}/train/models.py"
STACKED, OPTIM = f"{PKG}/train/stacked.py", f"{PKG}/train/optim.py"
T_SEARCH, T_BENCH = "tests/test_search.py", "tests/test_search_bench.py"
T_DIFF, T_DIST, T_SIM = (
    "tests/test_diffusion.py",
    "tests/test_distances.py",
    "tests/test_similarity.py",
)
T_GROUP, T_STACKED, T_OPTIM = "tests/test_group.py", "tests/test_stacked.py", "tests/test_optim.py"


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` (exactly once in ``path``) by ``new``; ``tests`` must then fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...] = ()
    equivalent: str = ""  # why it cannot change results (then it is not run)


MUTATIONS = (
    # groups, features and figures side by side in forked processes
    Mutation(
        "forked: one piece left out of the forked processes",
        FORKED,
        "yield from pool.map(_call, range(len(items)), chunksize=chunksize)",
        "yield from pool.map(_call, range(1, len(items)), chunksize=chunksize)",
        (
            f"{T_GROUP}::test_groups_in_forked_processes_train_exactly_as_in_one",
            "tests/test_plots.py::test_figures_rendered_in_processes_are_those_rendered_in_one",
        ),
    ),
    # the guided sampler
    Mutation(
        "search: the map replaced by noise of its shape",
        SEARCH,
        "coords = np.asarray(self._map_of(done), float)",
        "coords = np.random.default_rng(len(done)).normal(size=np.shape(self._map_of(done)))",
        (f"{T_SEARCH}::test_the_map_carries_the_guided_samplers_signal",),
    ),
    Mutation(
        "search: raw accuracy instead of the smoothed field",
        SEARCH,
        "field = smooth_accuracy(coords, accuracy, knn_bandwidth(coords, knn))",
        "field = accuracy",
        (f"{T_SEARCH}::test_parents_come_from_a_consistently_good_region_not_a_lucky_network",),
    ),
    Mutation(
        "search: the farthest elite as parents, not the nearest",
        SEARCH,
        'family = elite[np.argsort(near, kind="stable")',
        'family = elite[np.argsort(-near, kind="stable")',
        (f"{T_SEARCH}::test_parents_are_the_anchors_nearest_elite",),
    ),
    Mutation(
        "search: the parents' spread ignored (floor jitter only)",
        SEARCH,
        "sd = max(spread, floor * (high - low))",
        "sd = floor * (high - low)",
        (f"{T_SEARCH}::test_jitter_follows_the_parents_spread",),
    ),
    Mutation(
        "search: log axes blended linearly",
        SEARCH,
        "mean = float(np.exp(w @ np.log(x))) if dist.log else float(w @ x)",
        "mean = float(w @ x)",
        (f"{T_SEARCH}::test_blend_interpolates_on_the_natural_scale_and_votes",),
    ),
    Mutation(
        "search: smoothing bandwidth off by sqrt(2)",
        SEARCH,
        "weights = np.exp(-sq / (2 * bandwidth**2))",
        "weights = np.exp(-sq / bandwidth**2)",
        (f"{T_SEARCH}::test_smooth_accuracy_matches_a_loop",),
    ),
    Mutation(
        "search: the study's direction ignored",
        SEARCH,
        "sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0",
        "sign = 1.0",
        (f"{T_SEARCH}::test_minimising_proposes_as_maximising_the_negative",),
    ),
    Mutation(
        "search: no exploration share",
        SEARCH,
        "if len(done) < self._min_trials or self._rng.random() < self._exploration:",
        "if len(done) < self._min_trials:",
        (f"{T_SEARCH}::test_the_exploration_share_is_drawn_uniformly",),
    ),
    # the search benchmark
    Mutation(
        "benchmark: the reported model chosen by test accuracy",
        BENCH,
        "pick = np.array([int(np.argmax(v[: n + 1]))",
        "pick = np.array([int(np.argmax(test[list(order)][: n + 1]))",
        (f"{T_BENCH}::test_the_reported_test_accuracy_is_the_validation_choices",),
    ),
    Mutation(
        "benchmark: the summary reports the best validation, not the chosen test",
        BENCH,
        '("test_of_chosen", picked[:, -1]),',
        '("test_of_chosen", best[:, -1]),',
        (f"{T_BENCH}::test_summary_of_known_curves",),
    ),
    Mutation(
        "benchmark: snapping may return an evaluated model",
        BENCH,
        "cost[taken] = np.inf",
        "cost[taken] += 0.0",
        (f"{T_BENCH}::test_snap_matches_a_loop_and_skips_taken_configurations",),
    ),
    # the diffusion kernel
    Mutation(
        "kernel: torch diagonal of D^2 not zeroed",
        DIFFUSION,
        "D2[:, own - start, own] = 0.0",
        "D2[:, own - start, own] += 0.0",
        (f"{T_DIFF}::test_self_transition_is_largest_in_its_row_far_from_the_mean",),
    ),
    Mutation(
        "kernel: NumPy diagonal of D^2 not zeroed",
        DIFFUSION,
        "np.fill_diagonal(D2, 0.0)",
        "D2 += 0.0",
        (f"{T_DIFF}::test_self_transition_is_largest_in_its_row_far_from_the_mean",),
    ),
    Mutation(
        "kernel: NumPy exp(-D^2 / sigma^2), the 2 lost",
        DIFFUSION,
        "return np.exp(-D2 / (2.0 * sigma2))",
        "return np.exp(-D2 / sigma2)",
        (f"{T_DIFF}::test_kernel_matches_loop_reference",),
    ),
    Mutation(
        "kernel: torch scale sigma^2, the 2 lost",
        DIFFUSION,
        "torch.full((len(Y),), 2.0 * settings.sigma**2",
        "torch.full((len(Y),), 1.0 * settings.sigma**2",
        (f"{T_DIFF}::test_torch_operator_rows_match_numpy",),
    ),
    Mutation(
        "kernel: torch rows normalised by columns",
        DIFFUSION,
        "P /= P.sum(dim=2, keepdim=True)",
        "P /= P.sum(dim=1, keepdim=True)",
        (f"{T_DIFF}::test_torch_operator_rows_match_numpy",),
    ),
    Mutation(
        "kernel: torch P^t takes t + 1 steps",
        DIFFUSION,
        "for _ in range(settings.t - 1):",
        "for _ in range(settings.t):",
        (f"{T_DIFF}::test_torch_operator_rows_match_numpy",),
    ),
    Mutation(
        "kernel: representations not centred",
        DIFFUSION,
        "Y -= Y.mean(axis=0)",
        "Y -= 0.0",
        equivalent="distances between rows do not depend on where the origin is; centring only "
        "keeps the digits of the Gram identity, whose losses the recompute already catches",
    ),
    # network distances
    Mutation(
        "distances: recompute threshold 10x lower",
        DISTANCES,
        "RECOMPUTE_RATIO = 1e-4",
        "RECOMPUTE_RATIO = 1e-5",
        (
            f"{T_DIST}::test_near_pairs_keep_twelve_digits_across_the_recompute_edge",
            f"{T_SIM}::test_procrustes_near_pairs_keep_twelve_digits_across_the_recompute_edge",
        ),
    ),
    Mutation(
        "distances: recompute threshold 100x lower",
        DISTANCES,
        "RECOMPUTE_RATIO = 1e-4",
        "RECOMPUTE_RATIO = 1e-6",
        (f"{T_DIST}::test_near_pairs_keep_twelve_digits_across_the_recompute_edge",),
    ),
    Mutation(
        "distances: recompute threshold 100x higher",
        DISTANCES,
        "RECOMPUTE_RATIO = 1e-4",
        "RECOMPUTE_RATIO = 1e-2",
        equivalent="more pairs are recomputed by direct subtraction, which is exact to rounding: "
        "the same distances, at more cost",
    ),
    Mutation(
        "distances: Gram identity with a.b, not 2 a.b",
        DISTANCES,
        "D2 = scale - 2.0 * G",
        "D2 = scale - G",
        (f"{T_DIST}::test_matches_naive_including_near_identical_pairs",),
    ),
    Mutation(
        "distances: near pairs flagged but not recomputed",
        DISTANCES,
        "D2[i, j] = diff @ diff",
        "D2[i, j] = D2[i, j] + 0.0 * (diff @ diff)",
        (f"{T_DIST}::test_near_pairs_keep_twelve_digits_across_the_recompute_edge",),
    ),
    Mutation(
        "distances: lower triangle not mirrored",
        DISTANCES,
        "D2[:, offset:] = square + square.T",
        "D2[:, offset:] = square",
        (f"{T_DIST}::test_symmetric_with_zero_diagonal",),
    ),
    Mutation(
        "distances: operators not centred on their mean",
        DISTANCES,
        "return _centred_distances(A - A.mean(axis=0), None, _resolve_device(device))",
        "return _centred_distances(A, None, _resolve_device(device))",
        equivalent="the reference point only sets which pairs count as near; those lose digits "
        "to the Gram identity and are recomputed, so distances agree to rounding",
    ),
    Mutation(
        "similarity: Procrustes near pairs not recomputed",
        SIMILARITY,
        'D2[i, j] = np.einsum("nw,nw->", diff, diff)',
        'D2[i, j] = D2[i, j] + 0.0 * np.einsum("nw,nw->", diff, diff)',
        (f"{T_SIM}::test_procrustes_of_rotation_is_zero_despite_cancellation",),
    ),
    Mutation(
        "similarity: Procrustes with the nuclear norm once, not twice",
        SIMILARITY,
        "D2 = scale - 2.0 * nuclear",
        "D2 = scale - nuclear",
        (f"{T_SIM}::test_matches_slow_reference",),
    ),
    # group training: the stacked model, the stacked optimisers, the group, the one-model path
    Mutation(
        "group: dropout scales kept units by (1 - p), not 1 / (1 - p)",
        STACKED,
        "return h * keep / (1 - p).view(-1, 1, 1)",
        "return h * keep * (1 - p).view(-1, 1, 1)",
        (
            f"{T_STACKED}::test_dropout_keeps_and_scales_as_nn_dropout",
            f"{T_GROUP}::test_dropout_in_training_has_the_one_model_expectation_and_keep_rate",
            f"{T_GROUP}::test_group_with_dropout_matches_the_one_model_path_statistically",
        ),
    ),
    Mutation(
        "group: dropout keeps units with probability p",
        STACKED,
        "keep = (u >= p.view(-1, 1, 1)).to(h.dtype)",
        "keep = (u < p.view(-1, 1, 1)).to(h.dtype)",
        (
            f"{T_STACKED}::test_dropout_keeps_and_scales_as_nn_dropout",
            f"{T_GROUP}::test_dropout_in_training_has_the_one_model_expectation_and_keep_rate",
            f"{T_GROUP}::test_group_with_dropout_matches_the_one_model_path_statistically",
        ),
    ),
    Mutation(
        "group: dropout masks the same in every epoch",
        STACKED,
        "return mix32(mix32(salted) ^ torch.tensor(epochs, dtype=torch.int64))",
        "return mix32(mix32(salted) ^ 0 * torch.tensor(epochs, dtype=torch.int64))",
        (f"{T_STACKED}::test_dropout_stream_is_per_member_uniform_and_keyed",),
    ),
    Mutation(
        "group: cross-entropy gradient not divided by the batch size",
        STACKED,
        "return out.mul_((grad / y.shape[1])[:, None, None]), None",
        "return out.mul_(grad[:, None, None]), None",
        (f"{T_STACKED}::test_member_cross_entropy_equals_torch_per_member",),
    ),
    Mutation(
        "group: Adam bias correction one step ahead",
        OPTIM,
        'step = state["steps"].clamp(min=1).double()',
        'step = (state["steps"] + 1).clamp(min=1).double()',
        (
            f"{T_OPTIM}::test_each_member_follows_torch_optim[adam]",
            f"{T_GROUP}::test_group_matches_the_one_model_path[space0-adam]",
        ),
    ),
    Mutation(
        "group: Adam steps counted for members left out",
        OPTIM,
        'state["steps"] += live.to(state["steps"].dtype)',
        'state["steps"] += 1',
        (f"{T_OPTIM}::test_members_left_out_keep_weights_and_state_bit_for_bit[adam]",),
    ),
    Mutation(
        "group: SGD weight decay dropped",
        OPTIM,
        "d = p.grad.addcmul(p, _per_member(decay, p)) if decays else p.grad",
        "d = p.grad",
        (f"{T_OPTIM}::test_each_member_follows_torch_optim[sgd]",),
    ),
    Mutation(
        "group: weight decay not passed to the group's optimiser",
        GROUP,
        'decay = [s["lr"] for s in specs], [s.get("weight_decay", 0.0) for s in specs]',
        'decay = [s["lr"] for s in specs], [0.0 for s in specs]',
        (
            f"{T_GROUP}::test_group_matches_the_one_model_path[space0-sgd]",
            f"{T_GROUP}::test_group_matches_the_one_model_path[space0-adam]",
        ),
    ),
    Mutation(
        "group: SGD momentum buffer not updated",
        OPTIM,
        "torch.addcmul(d, buf, _per_member(momentum, p), out=buf)",
        "buf = torch.addcmul(d, buf, _per_member(momentum, p))",
        (
            f"{T_OPTIM}::test_each_member_follows_torch_optim[sgd]",
            f"{T_GROUP}::test_group_matches_the_one_model_path[space0-sgd]",
        ),
    ),
    Mutation(
        "group: SGD lr of member 0 for every member",
        OPTIM,
        'lr = self._column(group["lr"], device) * keep',
        'lr = self._column(group["lr"][:1] * len(group["lr"]), device) * keep',
        (f"{T_OPTIM}::test_each_member_follows_torch_optim[sgd]",),
    ),
    Mutation(
        "group: Adam lr of member 0 for every member",
        OPTIM,
        'lr, decay, eps = column("lr").double(), column("weight_decay"), column("eps")',
        'lr, decay, eps = column("lr").double()[0], column("weight_decay"), column("eps")',
        (f"{T_OPTIM}::test_each_member_follows_torch_optim[adam]",),
    ),
    Mutation(
        "group: a member's epoch counted in the epoch it diverged",
        GROUP,
        "if not diverged[k]:  # the epoch a member diverged in did not finish",
        "if True:",
        (f"{T_GROUP}::test_a_diverging_member_does_not_touch_the_others",),
    ),
    Mutation(
        "group: a diverged member's epochs_completed is its planned epochs",
        JOB,
        "epochs_completed=module.done[k],",
        'epochs_completed=module.specs[k]["epochs"],',
        (f"{T_GROUP}::test_a_diverging_member_does_not_touch_the_others",),
    ),
    Mutation(
        "one model: Adam without weight decay",
        MODELS,
        'torch.optim.Adam(self.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])',
        'torch.optim.Adam(self.parameters(), lr=s["lr"])',
        (f"{T_GROUP}::test_group_matches_the_one_model_path[space0-adam]",),
    ),
    # session 5: mixed activation functions, ResNet description, Procrustes near pairs
    Mutation(
        "stacked: every member gets the first activation function",
        STACKED,
        "        if len(self.functions) == 1:\n            return self.functions[0](h)",
        "        if True:\n            return self.functions[0](h)",
        ("tests/test_padding.py::test_members_of_different_activations_train_as_their_own_groups",),
    ),
    Mutation(
        "group: a mixed-activation group sized as if it had one function",
        GROUP,
        "kept = 3 + 2 * (functions - 1)",
        "kept = 3",
        (
            "tests/test_padding.py::"
            "test_a_group_of_several_activation_functions_is_sized_for_their_outputs",
        ),
    ),
    Mutation(
        "architecture: a projection shortcut's outputs not counted",
        f"{PKG}/zoo/architecture.py",
        "return (6 + 2 * self.projection) * self.c_out * self.pixels",
        "return 6 * self.c_out * self.pixels",
        ("tests/test_resnet.py::test_the_architecture_describes_the_built_resnet",),
    ),
    Mutation(
        "procrustes: a near pair across blocks of two widths not padded",
        SIMILARITY,
        "a, b = (np.pad(X, ((0, 0), (0, w - X.shape[1]))) for X in (A[i], B[j]))",
        "a, b = A[i], B[j]",
        ("tests/test_similarity.py::test_a_near_pair_across_blocks_of_two_widths_is_recomputed",),
    ),
    # session 6: groups cut by a cost model
    Mutation(
        "padding: a group's padded size is its last width, not the widest",
        f"{PKG}/train/padding.py",
        "padded = tuple(map(max, padded, distinct[i]))",
        "padded = distinct[i]",
        ("tests/test_padding.py::test_groups_are_the_cheapest_cut_of_the_sorted_widths",),
    ),
    Mutation(
        "padding: the per-group overhead left out of the cost",
        f"{PKG}/train/padding.py",
        "total = best[i] + per_group + members * batch * cost(padded)",
        "total = best[i] + members * batch * cost(padded)",
        ("tests/test_padding.py::test_groups_are_the_cheapest_cut_of_the_sorted_widths",),
    ),
    Mutation(
        "architecture: a convolution's arithmetic counted once, not per pixel",
        f"{PKG}/zoo/architecture.py",
        "return (self.n_parameters - self.n_out) * self.positions",
        "return self.n_parameters - self.n_out",
        ("tests/test_padding.py::test_multiply_adds_count_each_layers_arithmetic",),
    ),
    Mutation(
        "file facts: a rewritten file of the same size and mtime served its old hash",
        f"{PKG}/core/storage.py",
        "identity = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]",
        "identity = [st.st_size, st.st_mtime_ns]",
        ("tests/test_file_facts.py::test_a_fact_is_remembered_until_the_file_changes",),
    ),
    Mutation(
        "file facts: facts of a file changed just now remembered",
        f"{PKG}/core/storage.py",
        "if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_NS:",
        "if True:",
        ("tests/test_file_facts.py::test_facts_of_a_file_changed_just_now_are_not_remembered",),
    ),
    Mutation(
        "one model: checkpoints unpickled with code",
        JOB,
        'return torch.load(path, weights_only=True, map_location="cpu")',
        'return torch.load(path, weights_only=False, map_location="cpu")',
        ("tests/test_faults.py::test_a_checkpoint_with_pickled_code_is_refused_and_set_aside",),
    ),
)

#: What is copied for a run: the package, the tests and what they read (config, rules, docs).
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "results", ".snakemake", "__pycache__", ".pytest_cache", ".ruff_cache"
)
FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def copy_repo(source: Path, destination: Path) -> Path:
    """A copy of the tree ``source`` to mutate (the original is never written)."""
    shutil.copytree(source, destination, ignore=IGNORE)
    return destination


def run_tests(repo: Path, tests: tuple[str, ...], cap: float) -> tuple[str, str, float]:
    """(outcome, first failing test, seconds) of ``pytest -x`` on ``tests`` in ``repo``."""
    env = {**os.environ, "PYTHONPATH": str(repo / "workflow")}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        return "timeout", "", time.perf_counter() - started
    seconds = time.perf_counter() - started
    failed = FAILED.search(proc.stdout)
    if proc.returncode == 0:
        return "passed", "", seconds
    if proc.returncode == 1 and failed:
        return "failed", failed[1], seconds
    return "broken", f"pytest exit {proc.returncode}: {proc.stdout[-300:]}", seconds


def mutate(repo: Path, mutation: Mutation) -> str:
    """Apply ``mutation`` in ``repo``; returns the original text, for :func:`restore`."""
    path = repo / mutation.path
    text = path.read_text()
    if text.count(mutation.old) != 1:
        raise LookupError(
            f"{mutation.path}: the snippet of '{mutation.name}' occurs {text.count(mutation.old)} "
            f"times, not once; update MUTATIONS in bench/mutations.py: {mutation.old!r}"
        )
    path.write_text(text.replace(mutation.old, mutation.new))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the mutations whose name contains this")
    parser.add_argument("--cap", type=float, default=300.0, help="seconds per test run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--repo", type=Path, default=ROOT, help="tree to mutate (a copy of it)")
    parser.add_argument("--whole-files", action="store_true", help="run the named tests' files")
    args = parser.parse_args()
    chosen = [
        m for m in MUTATIONS if not m.equivalent and (args.only is None or args.only in m.name)
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mutations-") as tmp:
        repo = copy_repo(args.repo, Path(tmp) / "repo")
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            outcome, test, seconds = run_tests(repo, _files(tests, args), args.cap * 2)
            print(f"baseline: {len(tests)} tests {outcome} in {seconds:.0f} s {test}", flush=True)
            if outcome != "passed":
                sys.exit("the named tests must pass on the unmutated code first")
        for m in chosen:
            try:
                original = mutate(repo, m)
            except LookupError as err:
                rows.append((m, "missing", str(err), 0.0))
                continue
            try:
                outcome, test, seconds = run_tests(repo, _files(m.tests, args), args.cap)
            finally:
                (repo / m.path).write_text(original)
            status = {"failed": "killed", "passed": "SURVIVED"}.get(outcome, outcome)
            rows.append((m, status, test, seconds))
            print(f"{status:9} {seconds:6.1f} s  {m.name}  {test}", flush=True)
    print("\n| mutation | file | result | killed by | s |\n|---|---|---|---|---|")
    for m, status, test, seconds in rows:
        where = m.path.removeprefix(f"{PKG}/")
        print(f"| {m.name} | {where} | {status} | {test or '-'} | {seconds:.0f} |")
    print("\nEquivalent (not run):")
    for m in MUTATIONS:
        if m.equivalent:
            print(f"- {m.name} ({m.path.removeprefix(f'{PKG}/')}): {m.equivalent}")
    killed = sum(status == "killed" for _, status, _, _ in rows)
    rate = round(killed / len(rows), 3) if rows else 0.0
    print(json.dumps({"killed": killed, "total": len(rows), "rate": rate}))


def _files(tests: tuple[str, ...], args: argparse.Namespace) -> tuple[str, ...]:
    """The tests as named, or with ``--whole-files`` the files that hold them."""
    if not args.whole_files:
        return tests
    return tuple(dict.fromkeys(t.split("::")[0] for t in tests))


if __name__ == "__main__":
    main()
