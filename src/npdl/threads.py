"""How many threads npdl's NumPy work uses, and the pool for element-wise updates.

Matrix products run in the BLAS library's own threads; NumPy's element-wise ufuncs run
in one thread. The optimizers' updates are element-wise and memory-bound, so they are
cut into blocks small enough to stay in cache (every pass of a fused update
then reads the cache, not main memory) and the blocks are spread over a small thread
pool (NumPy releases the GIL inside ufunc loops).

One number governs both: :func:`set_num_threads` limits the BLAS threads (through
threadpoolctl) and the update pool together. Parallel trials set it to
``cores // workers`` so that two workers on two cores do not run four threads.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

#: Elements per block of an element-wise update: five float32 blocks (parameter,
#: gradient, two moments, scratch) take 2.5 MiB, which the passes after the first read
#: from the L3 cache (32 MiB here). Smaller blocks fit L2 but cost more Python calls
#: than they save: 1 << 17 was fastest in training steps of both benchmark nets
#: (1 << 15 to 1 << 18 measured, paired, through Solver).
BLOCK_ELEMENTS = 1 << 17

_num_threads: int | None = None
_pool: ThreadPoolExecutor | None = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return max(1, os.cpu_count() or 1)


def get_num_threads() -> int:
    """Threads npdl uses for element-wise updates.

    Default: the BLAS library's thread count (which honours ``OPENBLAS_NUM_THREADS``
    and the limits joblib sets in its workers), at most the available cores.
    """
    global _num_threads
    if _num_threads is None:
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        _num_threads = max(1, min([available_cores(), *blas]))
    return _num_threads


#: Float32 product shapes (M, K, N) of a training step, at which
#: :func:`products_depend_on_threads` compares thread counts.
_PROBE_SHAPES = ((250, 256, 10), (250, 512, 256), (512, 250, 256), (256, 250, 10))


@functools.cache
def products_depend_on_threads(threads: int) -> bool:
    """Whether this BLAS's float32 matrix products change in their last bits between one
    thread and ``threads``.

    Some do (OpenBLAS 0.3.31's Haswell kernels on AMD EPYC sum in another order when
    they split a product between threads), others do not (its SkylakeX kernels). Where
    they do, a training's numbers depend on the thread count, and a run's identity has
    to include it (:func:`npdl.run.training.lineage_identity`). Measured once per
    process and thread count, on a few products of training-step shapes (about 0.1 s).
    """
    if threads <= 1:
        return False
    rng = np.random.default_rng(0)
    pairs = [
        (
            rng.standard_normal((m, k), dtype=np.float32),
            rng.standard_normal((k, n), dtype=np.float32),
        )
        for m, k, n in _PROBE_SHAPES
    ]
    results = []
    for count in (1, threads):
        with threadpool_limits(count, user_api="blas"):
            results.append([a @ b for a, b in pairs])
    return any(one.tobytes() != many.tobytes() for one, many in zip(*results, strict=True))


def set_num_threads(threads: int) -> None:
    """Use ``threads`` threads for BLAS and for npdl's element-wise updates in this
    process.

    Raises
    ------
    ValueError
        ``threads`` is not a positive integer.
    """
    global _num_threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    threadpool_limits(threads, user_api="blas")
    _num_threads = threads
    _shutdown_pool()


def threads_per_worker(workers: int) -> int:
    """Threads each of ``workers`` parallel processes should use so that together they
    fill the available cores without oversubscribing them (at least 1)."""
    return max(1, available_cores() // max(1, int(workers)))


def blocks(*arrays: np.ndarray, size: int | None = None) -> list[tuple[np.ndarray, ...]]:
    """Cut same-shaped arrays into aligned blocks of flat views.

    Parameters
    ----------
    *arrays : ndarray, all of one shape (S...), C-contiguous
    size : int, optional
        Elements per block; default :data:`BLOCK_ELEMENTS`.

    Returns
    -------
    list of tuples, one per block, of 1-D views (n,) with n <= size, one per array.
    Arrays that are not all C-contiguous give a single block of the arrays themselves
    (flat views of them would be copies, and updates to copies would be lost).
    """
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise ValueError(f"blocks need arrays of one shape, got {[a.shape for a in arrays]}")
    if not all(a.flags.c_contiguous for a in arrays):
        return [tuple(arrays)]
    size = size or BLOCK_ELEMENTS
    flat = [a.reshape(-1) for a in arrays]
    total = flat[0].size
    return [tuple(f[i : i + size] for f in flat) for i in range(0, max(total, 1), size)]


def run_blocks(update: Callable[..., None], jobs: Sequence[tuple]) -> None:
    """Call ``update(*job)`` for every job, spread over :func:`get_num_threads` threads.

    The jobs must touch disjoint memory (blocks of element-wise updates do), so the
    result does not depend on the number of threads or their order.
    """
    threads = min(get_num_threads(), len(jobs))
    if threads <= 1:
        for job in jobs:
            update(*job)
        return
    # Contiguous spans keep each thread walking memory forward (hardware prefetch).
    bounds = [len(jobs) * i // threads for i in range(threads + 1)]
    spans = [jobs[bounds[i] : bounds[i + 1]] for i in range(threads)]
    pool = _get_pool(threads - 1)
    futures = [pool.submit(_run_span, update, span) for span in spans[1:]]
    _run_span(update, spans[0])
    for future in futures:
        future.result()


def _run_span(update: Callable[..., None], span: Sequence[tuple]) -> None:
    for job in span:
        update(*job)


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool._max_workers < workers:
        _shutdown_pool()
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="npdl-update")
    return _pool


def _shutdown_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True)
    _pool = None


def _forget_pool_after_fork() -> None:
    # A forked child inherits the pool object but not its threads.
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)
