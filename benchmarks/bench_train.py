"""Training throughput: npdl against PyTorch CPU on the same nets, and npdl's step
time against its roofline.

Run from the repository root (PyTorch is a benchmark-only extra:
``pip install torch==2.13.0``; without it only npdl is measured)::

    python benchmarks/bench_train.py [--pairs 5] [--images 40000]

Both frameworks train one epoch at a time on the same standardised float32 images of
the shared archive's train split, shuffled, batch 256, with the same thread count,
architecture and optimizer (``nets.py``): the course's 3072-100-10 sigmoid net,
3072-512-256-10 ReLU, and the default 3072-1024-512-10 ReLU with batch norm and
dropout 0.2, AdamW (weight decay 0.05 on weight matrices only).

The roofline of a step is its matrix products at the sgemm peak plus the optimizer's
memory traffic at the memory bandwidth (``nets.py`` counts both). Each round measures,
in this order: the sgemm peak (4096 x 4096 float32), a STREAM-style triad bandwidth,
the step's matrix products alone at their own shapes, npdl, PyTorch (default
``foreach`` Adam) and PyTorch with ``fused=True`` Adam; shares and ratios are taken
within a round. Results go to ``benchmarks/results/train.json``.
"""

from __future__ import annotations

import argparse

from harness import (
    SHARED_ARCHIVE,
    paired,
    products_seconds,
    ratios,
    sgemm_peak,
    summary,
    triad_bandwidth,
    write_results,
)
from nets import (
    BATCH,
    NETS,
    load_images,
    matmul_shapes,
    npdl_trainer,
    step_bytes,
    step_flops,
    torch_trainer,
)
from npdl.threads import get_num_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=str, default=str(SHARED_ARCHIVE))
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--images", type=int, default=40000, help="training images per epoch")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    args = parser.parse_args()

    try:
        import torch

        torch.set_num_threads(get_num_threads())
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
        print("PyTorch is not installed (pip install torch==2.13.0): measuring npdl only")

    images, labels = load_images(args.images, args.archive)
    n = len(images)
    full, rest = divmod(n, BATCH)
    steps = full + bool(rest)
    print(f"{n} images, batch {BATCH}, {get_num_threads()} threads, torch {torch_version}")

    results = {"images": n, "batch": BATCH, "threads": get_num_threads(), "torch": torch_version}
    for key in args.nets:
        spec = NETS[key]
        flops = full * step_flops(spec) + (step_flops(spec, rest) if rest else 0.0)
        shapes = matmul_shapes(spec)
        contenders = {
            "peak": lambda: sgemm_peak(),
            "bandwidth": lambda: triad_bandwidth(),
            "products": lambda shapes=shapes: products_seconds(shapes),
            "npdl": npdl_trainer(spec, images, labels),
        }
        if torch_version:
            contenders["torch"] = torch_trainer(spec, images, labels, fused=False)
            contenders["torch_fused"] = torch_trainer(spec, images, labels, fused=True)
        for run in contenders.values():  # warm-up round, not counted
            run()
        seconds = paired(contenders, args.pairs)
        peak, bandwidth = seconds.pop("peak"), seconds.pop("bandwidth")
        products = seconds.pop("products")
        rates = {name: [n / s for s in values] for name, values in seconds.items()}
        step_ms = [1e3 * s / steps for s in seconds["npdl"]]
        roofline_ms = [
            1e3 * (flops / p + steps * step_bytes(spec) / b) / steps
            for p, b in zip(peak, bandwidth, strict=True)
        ]
        products_ms = [1e3 * s for s in products]
        blas_floor_ms = [
            q + 1e3 * step_bytes(spec) / b for q, b in zip(products_ms, bandwidth, strict=True)
        ]
        entry = {
            "title": spec["title"],
            "step_gflop": step_flops(spec) / 1e9,
            "optimizer_mb": step_bytes(spec) / 1e6,
            "samples_per_s": {name: summary(values) for name, values in rates.items()},
            "sgemm_peak_gflops": summary([p / 1e9 for p in peak]),
            "bandwidth_gb_s": summary([b / 1e9 for b in bandwidth]),
            "step_ms": summary(step_ms),
            "roofline_ms": summary(roofline_ms),
            "share_of_roofline": ratios(roofline_ms, step_ms),
            "products_alone_ms": summary(products_ms),
            "products_share_of_peak": ratios(
                [1e3 * step_flops(spec) / p for p in peak], products_ms
            ),
            "products_and_optimizer_ms": summary(blas_floor_ms),
            "share_of_products_and_optimizer": ratios(blas_floor_ms, step_ms),
        }
        if torch_version:
            entry["npdl_over_torch"] = ratios(rates["npdl"], rates["torch"])
            entry["npdl_over_torch_fused"] = ratios(rates["npdl"], rates["torch_fused"])
        results[key] = entry
        line = ", ".join(f"{k} {v['median']:,.0f}/s" for k, v in entry["samples_per_s"].items())
        print(
            f"{spec['title']}: {line}; step {entry['step_ms']['median']:.1f} ms, roofline "
            f"{entry['roofline_ms']['median']:.1f} ms "
            f"({entry['share_of_roofline']['median']:.0%}); products alone "
            f"{entry['products_alone_ms']['median']:.1f} ms"
        )
    write_results("train", results)


if __name__ == "__main__":
    main()
