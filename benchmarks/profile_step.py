"""Where one training step's time goes: per layer and per operation.

Run from the repository root::

    python benchmarks/profile_step.py [--steps 150] [--images 40000]

For each benchmark net (``nets.py``) it trains through ``Solver`` and ``DataLoader`` as
``bench_train.py`` does, with a timer around every layer's forward and backward, the
loss, the optimizer step and the loader's batch assembly (``get_batch``). The matrix
products of each affine layer are then timed alone, at the step's own shapes and on
the step's own arrays, so that an affine layer's time splits into its products and
the element-wise rest (bias, copies). What no timer covers is the Solver's own
Python: the per-step bookkeeping.

Results go to ``benchmarks/results/profile.json`` (milliseconds per step).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import defaultdict

import numpy as np

from harness import write_results
from nets import BATCH, NETS, load_images, npdl_solver, step_bytes, step_flops
from npdl.threads import get_num_threads


class Timers:
    """Accumulated seconds per named section."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner, attribute: str, name: str) -> None:
        """Time every call of ``owner.attribute`` under ``name``."""
        inner = getattr(owner, attribute)

        @functools.wraps(inner)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        setattr(owner, attribute, timed)


class TimedLoss:
    """The Solver calls ``loss_func(logits, labels)``; a special method cannot be
    wrapped on the instance, so the loss is wrapped whole."""

    def __init__(self, loss, timers: Timers) -> None:
        self.loss, self.timers = loss, timers

    def __call__(self, *args):
        start = time.perf_counter()
        try:
            return self.loss(*args)
        finally:
            self.timers.seconds["loss"] += time.perf_counter() - start

    def __getattr__(self, name):
        return getattr(self.loss, name)


def has_weights(layer) -> bool:
    """An affine layer, or a hidden layer holding its own affine map."""
    return "W" in layer.params


def layer_names(model) -> list[str]:
    """``'<position> <class>'`` per layer; a position per weight matrix, as in ``W1``."""
    names, position = [], 0
    for layer in model.layers:
        position += has_weights(layer)
        names.append(f"{position} {type(layer).__name__}")
    return names


def product_seconds(layer, batch: int, repeats: int) -> dict[str, float]:
    """Best time of the layer's matrix products alone, on arrays of the step's shapes."""
    weight = layer.params["W"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, weight.shape[0]), dtype=np.float32)
    dout = rng.standard_normal((batch, weight.shape[1]), dtype=np.float32)
    out = np.empty((batch, weight.shape[1]), np.float32)
    dw = np.empty_like(weight)
    dx = np.empty_like(x)
    products = {
        "forward": lambda: np.matmul(x, weight, out=out),
        "weight grad": lambda: np.matmul(x.T, dout, out=dw),
    }
    if layer.input_grad:
        products["input grad"] = lambda: np.matmul(dout, weight.T, out=dx)
    best = {}
    for name, product in products.items():
        product()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    return best


def profile(spec: dict, images: np.ndarray, labels: np.ndarray, steps: int) -> dict:
    solver = npdl_solver(spec, images[: steps * BATCH], labels[: steps * BATCH])
    solver.train(epochs=1)  # warm-up: buffers, thread pools, page faults
    timers = Timers()
    model = solver.model
    names = layer_names(model)
    for layer, name in zip(model.layers, names, strict=True):
        timers.wrap(layer, "forward", f"{name} forward")
        timers.wrap(layer, "backward", f"{name} backward")
    timers.wrap(solver.opt, "step", "optimizer")
    timers.wrap(solver.train_dataloader.dataset, "get_batch", "loader")
    solver.loss_func = TimedLoss(solver.loss_func, timers)
    start = time.perf_counter()
    solver.train(epochs=1)
    total = time.perf_counter() - start
    count = len(solver.train_dataloader)
    per_step = {name: 1e3 * s / count for name, s in timers.seconds.items()}
    products = {}
    for layer, name in zip(model.layers, names, strict=True):
        if has_weights(layer):
            for kind, seconds in product_seconds(layer, BATCH, 20).items():
                products[f"{name.split()[0]} {kind}"] = 1e3 * seconds
    step_ms = 1e3 * total / count
    return {
        "title": spec["title"],
        "steps": count,
        "step_ms": step_ms,
        "sections_ms": per_step,
        "products_alone_ms": products,
        "python_ms": step_ms - sum(per_step.values()),
        "step_gflop": step_flops(spec) / 1e9,
        "optimizer_mb": step_bytes(spec) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="steps profiled per net")
    parser.add_argument("--nets", nargs="+", default=["default", "plain"], choices=list(NETS))
    args = parser.parse_args()
    images, labels = load_images(args.steps * BATCH)
    results = {"batch": BATCH, "threads": get_num_threads()}
    for key in args.nets:
        entry = profile(NETS[key], images, labels, args.steps)
        results[key] = entry
        print(f"{entry['title']}: {entry['step_ms']:.1f} ms per step")
        for name, ms in sorted(entry["sections_ms"].items(), key=lambda item: -item[1]):
            print(f"  {name:28s} {ms:7.2f} ms")
        print(f"  {'(python)':28s} {entry['python_ms']:7.2f} ms")
        for name, ms in entry["products_alone_ms"].items():
            print(f"  product {name:20s} {ms:7.2f} ms")
    write_results("profile", results)


if __name__ == "__main__":
    main()
