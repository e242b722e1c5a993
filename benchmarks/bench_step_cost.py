"""Step cost of the default training run: the input projection's width K against the
batch size.

Run from the repository root::

    python benchmarks/bench_step_cost.py [--pairs 5] [--images 20000]

Four contenders, ``model.input_pca`` 800 or 400 crossed with ``solver.batch_size`` 256
or 512, each the pipeline's default net and training (``PipelineConfig()``: hidden
2048-1024-512, ReLU, batch norm, dropout 0.2, AdamW with decoupled weight decay 0.05,
horizontal flips and crops with padding 4) built exactly as the train stage builds it,
by ``npdl.run.build.build_training(..., whitened=True, pca_components=...)``. The
learning rate does not change the speed and is left at its default.

Data stand-ins, which cost what the real ones cost:

* images: the first ``--images`` of the shared archive's train split, standardised
  (``nets.load_images``) and cast to float16 (N, 32, 32, 3), in place of the normalize
  stage's ZCA-whitened float16 images (same dtype, shape and layout);
* principal components: an orthonormal (3072, 3072) float32 matrix, the Q of a QR of a
  seeded random matrix, in place of the normalize stage's ``pca_components.npy``. A
  matrix product's speed does not depend on the values in it, so the projection
  onto its first K columns costs what the projection onto the top K principal
  components costs;
* ``preprocessing``: empty, since for whitened images ``train_transform`` (and the
  validation loader's ``prepared_transform``) read none of its keys; they only flip,
  crop, convert float16 to float32 and flatten;
* validation: the first ``--val`` images (100 by default), so that the epoch's
  validation pass, which ``Solver.train`` runs after every epoch, costs little.

Each round trains every contender one epoch (``solver.train(epochs=1)``), in the same
order (A B C D, A B C D ...), after one warm-up round that is not counted; samples/s
is the images per epoch over the wall time of that call. Ratios are taken within a
round, to the pipeline's default (K = 800, batch 256).

Work per sample, counted for comparison with the measured speed-up: the FLOPs of the
step's matrix products, as they run: the projection's forward only (2 * 3072 * K; it
is fixed, so it has no weight gradient, and as the first layer no input gradient),
and for every trainable weight matrix of W entries its forward, weight gradient and
input gradient (6 * W), except the first trainable layer's input gradient, which the
network skips (it would flow only into the fixed projection). The batch size does not
change it. Results go to ``benchmarks/results/step_cost.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import numpy as np

from harness import SHARED_ARCHIVE, paired, ratios, summary, write_results
from nets import CLASSES, INPUT, load_images
from npdl.config import PipelineConfig, validate_config
from npdl.run.build import build_training
from npdl.threads import get_num_threads

#: (model.input_pca, solver.batch_size) of each contender, in the order each round runs
#: them; the first is the pipeline's default and the ratios' reference.
CONTENDERS = ((800, 256), (800, 512), (400, 256), (400, 512))


def label(pca: int, batch: int) -> str:
    return f"{pca}/{batch}"


def contender_config(pca: int, batch: int) -> PipelineConfig:
    """The pipeline's default configuration with only K and the batch size changed."""
    cfg = PipelineConfig()
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, input_pca=pca),
        solver=dataclasses.replace(cfg.solver, batch_size=batch),
    )
    return validate_config(cfg)


def flops_per_sample(cfg: PipelineConfig) -> dict[str, float]:
    """FLOPs of one sample's matrix products in a training step (module docstring)."""
    pca = cfg.model.input_pca
    widths = [pca, *cfg.model.hidden_size, CLASSES]
    weights = [a * b for a, b in itertools.pairwise(widths)]
    projection = 2 * INPUT * pca
    trainable = 6 * sum(weights) - 2 * weights[0]
    return {
        "projection": float(projection),
        "trainable": float(trainable),
        "total": float(projection + trainable),
    }


def components(seed: int = 0) -> np.ndarray:
    """An orthonormal (3072, 3072) float32 matrix standing in for the principal
    components (only its shape and dtype matter to the speed)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((INPUT, INPUT), dtype=np.float32))
    return np.ascontiguousarray(q, dtype=np.float32)


def trainer(cfg: PipelineConfig, train, val, classes, pca_components):
    """A callable that trains the contender one epoch and returns samples/s."""
    run = build_training(
        cfg,
        train,
        val,
        classes,
        {},  # whitened images: the transforms read no preprocessing keys
        verbose=False,
        whitened=True,
        pca_components=pca_components,
    )
    n = len(train[0])

    def epoch() -> float:
        start = time.perf_counter()
        run.solver.train(epochs=1)
        return n / (time.perf_counter() - start)

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=str, default=str(SHARED_ARCHIVE))
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--images", type=int, default=20000, help="training images per epoch")
    parser.add_argument("--val", type=int, default=100, help="validation images per epoch")
    args = parser.parse_args()

    flat, labels = load_images(args.images, args.archive)
    images = flat.reshape(len(flat), 32, 32, 3).astype(np.float16)
    del flat
    n = len(images)
    train = (images, labels)
    val = (images[: args.val], labels[: args.val])
    classes = [str(i) for i in range(CLASSES)]
    pca_components = components()
    print(f"{n} images, {len(val[0])} val, {get_num_threads()} threads")

    configs = {label(pca, batch): contender_config(pca, batch) for pca, batch in CONTENDERS}
    contenders = {
        name: trainer(cfg, train, val, classes, pca_components) for name, cfg in configs.items()
    }
    for run in contenders.values():  # warm-up round, not counted
        run()
    rates = paired(contenders, args.pairs)

    reference = label(*CONTENDERS[0])
    reference_flops = flops_per_sample(configs[reference])["total"]
    entries = {}
    for name, cfg in configs.items():
        flops = flops_per_sample(cfg)
        entries[name] = {
            "input_pca": cfg.model.input_pca,
            "batch_size": cfg.solver.batch_size,
            "mflop_per_sample": flops["total"] / 1e6,
            "mflop_per_sample_projection": flops["projection"] / 1e6,
            "flop_ratio_to_reference": reference_flops / flops["total"],
            "samples_per_s": summary(rates[name]),
            "ratio_to_reference": ratios(rates[name], rates[reference]),
        }
        print(
            f"{name}: {entries[name]['mflop_per_sample']:.1f} MFLOP/sample, "
            f"{entries[name]['samples_per_s']['median']:,.0f} samples/s "
            f"({entries[name]['samples_per_s']['min']:,.0f}-"
            f"{entries[name]['samples_per_s']['max']:,.0f}), "
            f"x{entries[name]['ratio_to_reference']['median']:.2f} of {reference} "
            f"(FLOPs x{entries[name]['flop_ratio_to_reference']:.2f})"
        )
    write_results(
        "step_cost",
        {
            "images": n,
            "val_images": len(val[0]),
            "threads": get_num_threads(),
            "pairs": args.pairs,
            "hidden_size": list(configs[reference].model.hidden_size),
            "reference": reference,
            "contenders": entries,
        },
    )


if __name__ == "__main__":
    main()
