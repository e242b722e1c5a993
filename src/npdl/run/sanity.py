"""The sanity checks of a configured run (the sanity stage, ``npdl sanity``).

The network as the pipeline builds it (:func:`~npdl.run.build.build_model`, its
weights drawn from ``sanity.seed``), the configured loss, optimizer and learning rate,
on the first images of the train split (in round-robin class order, so the first ten
hold one image of each class): :func:`npdl.sanity.check` with ``sanity``'s settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import PipelineConfig
from ..data.transforms import prepared_transform
from ..losses import CrossEntropyFromLogits
from ..sanity import SanityReport, check, skipped_report
from .build import build_model, optimizer_arguments
from .training import load_run_data


def run_sanity(cfg: PipelineConfig, data_folder: str | Path) -> SanityReport:
    """``cfg``'s checks on the data the prepare-split and normalize stages wrote into
    ``data_folder``; without reading it when ``sanity.enabled`` is false."""
    settings = cfg.sanity
    if not settings.enabled:
        return skipped_report("skipped: sanity.enabled=false")
    data = load_run_data(data_folder, 1.0, cfg.normalize.method)
    count = max(*settings.overfit_sizes, settings.gradient_samples)
    stored, labels = data.train[0][:count], np.asarray(data.train[1][:count])
    images = prepared_transform(data.preprocessing, data.whitened)(np.asarray(stored))
    rng = np.random.default_rng(settings.seed)
    model = build_model(cfg.model, images.shape[1], len(data.classes), rng, data.pca_components)
    return check(
        model,
        images,
        labels,
        loss_func=CrossEntropyFromLogits(label_smoothing=cfg.solver.label_smoothing),
        optimizer=cfg.optimizer.name,
        learning_rate=cfg.optimizer.lr,
        optimizer_kwargs=optimizer_arguments(cfg.optimizer),
        gradient_samples=settings.gradient_samples,
        gradient_entries=settings.gradient_entries,
        gradient_tolerance=settings.gradient_tolerance,
        init_loss_tolerance=settings.init_loss_tolerance,
        overfit_sizes=settings.overfit_sizes,
        overfit_steps=settings.overfit_steps,
        overfit_accuracy=settings.overfit_accuracy,
        seed=settings.seed,
    )
