"""Independent pieces of one job mapped over forked processes that inherit this one's state.

A fork shares what this process has loaded: its imports (torch and Lightning: about 5 s), its
data, its figures. Only the results travel back; the function and its items are never pickled.
A training job's groups, the features of a job's networks and the figures run side by side this
way. Each process computes in its share of the job's threads: torch's and the BLAS and OpenMP
libraries loaded before the fork (``threadpoolctl``), since Snakemake sets ``OMP_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` to the job's threads and every fork inherits them (4 spinning threads on
2 cores made the features step 3x slower). With one process, or off Linux (fork is unsafe on
macOS), the pieces run here, one after another. A process that dies fails the map
(``BrokenProcessPool``): the job fails and resumes from what its pieces wrote.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

#: The function and items of the running map: set before the fork, inherited by it.
_work: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def side_by_side(processes: int, n_items: int) -> int:
    """How many processes ``forked_map`` forks for ``n_items`` items (0: it runs them here)."""
    workers = min(processes, n_items)
    return workers if workers > 1 and sys.platform.startswith("linux") else 0


def forked_map(
    fn: Callable[[Any], Any], items: Sequence[Any], processes: int, chunksize: int = 1
) -> Iterator[Any]:
    """``fn(item)`` for each of ``items``, in order, in up to ``processes`` forked processes of
    ``processes // workers`` threads each (see the module docstring)."""
    workers = side_by_side(processes, len(items))
    if not workers:
        yield from map(fn, items)
        return
    global _work
    _work = (fn, items)
    try:
        with ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_limit_threads,
            initargs=(processes // workers,),
        ) as pool:
            yield from pool.map(_call, range(len(items)), chunksize=chunksize)
    finally:
        _work = None


def _limit_threads(threads: int) -> None:
    """A forked process computes in ``threads`` threads."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _call(k: int) -> Any:
    fn, items = _work
    return fn(items[k])
