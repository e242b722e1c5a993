"""Shared by the benchmark scripts: paired timing, the sgemm peak, results files.

Every comparison is measured side by side in one process run, alternating the
contenders (A B A B ...), so that a change in the machine's load hits both alike;
figures are reported as min / median / max over the pairs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
SHARED_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.tar.gz"


def paired(contenders: dict[str, Callable[[], float]], pairs: int) -> dict[str, list[float]]:
    """Run each contender once per round, in the same order, for ``pairs`` rounds.

    Each callable returns its own figure (a rate or a duration). Returns name -> list
    of ``pairs`` figures.
    """
    figures: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(pairs):
        for name, run in contenders.items():
            figures[name].append(float(run()))
    return figures


def summary(values: list[float]) -> dict[str, float]:
    """min / median / max of a list of figures."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
    }


def ratios(a: list[float], b: list[float]) -> dict[str, float]:
    """Summary of the per-pair ratios ``a[i] / b[i]``."""
    return summary([x / y for x, y in zip(a, b, strict=True)])


def sgemm_peak(size: int = 4096, repeats: int = 5) -> float:
    """Best float32 matrix-product rate (FLOP/s) of NumPy's BLAS on square matrices of
    ``size`` with the current thread settings."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def triad_bandwidth(elements: int = 1 << 24, repeats: int = 5) -> float:
    """STREAM-style triad bandwidth (bytes/s): ``a = b + s * c`` on float32 arrays of
    ``elements`` (64 MiB each by default, far beyond the caches), cut into blocks that
    stay in cache and spread over npdl's threads, as the optimizers update. Counts
    STREAM's 12 bytes per element (two reads, one write)."""
    from npdl.threads import blocks, run_blocks

    a = np.empty(elements, dtype=np.float32)
    b = np.full(elements, 1.0, dtype=np.float32)
    c = np.full(elements, 2.0, dtype=np.float32)
    scale = np.float32(3.0)

    def kernel(a_block, b_block, c_block) -> None:
        np.multiply(c_block, scale, out=a_block)
        a_block += b_block

    jobs = blocks(a, b, c, size=1 << 14)
    run_blocks(kernel, jobs)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run_blocks(kernel, jobs)
        best = min(best, time.perf_counter() - start)
    return 12.0 * elements / best


def products_seconds(shapes: list[tuple], repeats: int = 5) -> float:
    """Best time of one pass over a step's matrix products, each
    ``(name, m, k, n, a_transposed, b_transposed)`` (``nets.matmul_shapes``) in float32
    with its output preallocated, in the layouts the layers use."""
    rng = np.random.default_rng(0)

    def operand(rows: int, columns: int, transposed: bool) -> np.ndarray:
        if transposed:
            return rng.standard_normal((columns, rows), dtype=np.float32).T
        return rng.standard_normal((rows, columns), dtype=np.float32)

    operands = [
        (operand(m, k, ta), operand(k, n, tb), np.empty((m, n), dtype=np.float32))
        for _, m, k, n, ta, tb in shapes
    ]

    def once() -> None:
        for a, b, out in operands:
            np.matmul(a, b, out=out)

    once()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    return best


def machine() -> dict:
    """What the figures were measured on."""
    from threadpoolctl import threadpool_info

    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": f"{blas[0]['internal_api']} {blas[0]['version']} ({blas[0]['architecture']}, "
        f"{blas[0]['num_threads']} threads)"
        if blas
        else "unknown",
        "openblas_env": {
            key: os.environ[key]
            for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")
            if key in os.environ
        },
        "date": time.strftime("%Y-%m-%d"),
    }


def write_results(name: str, results: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` (atomically) and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def peak_rss_of(command: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``command`` and report its wall time and the peak resident memory of its
    largest process (the command itself or any process it started and waited for).

    A fresh Python wrapper runs the command, so that the figure covers this command
    only (``RUSAGE_CHILDREN`` is cumulative over a process's life).
    """
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "code = subprocess.call(sys.argv[1:])\n"
        "seconds = time.perf_counter() - start\n"
        "kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print('\\nRSS ' + json.dumps({'code': code, 'seconds': seconds, 'peak_rss_mb': kib / 1024}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RSS ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    record = json.loads(lines[-1][4:])
    if record["code"] != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {record['code']}:\n{result.stderr[-3000:]}"
        )
    return record
