"""evaluate: score the trained model on the test split -> ``metrics/evaluate.json``
(accuracy, loss, per-class accuracy; plus ``val_accuracy``, the val split scored the
same way, to compare with test, unless the model was refit on train + val) and
``metrics/confusion.csv``; or on any
labelled folder/archive: ``evaluate.source=PATH evaluate.metrics_path=OUT.json``."""

from __future__ import annotations

from pathlib import Path

from common import project_path, run_dir, stage_main
from npdl import plots
from npdl.config import PipelineConfig
from npdl.data.prepared import load_manifest, load_split
from npdl.data.sources import open_image_source
from npdl.evaluation import classification_metrics, confusion_counts, predict_logits, relabel
from npdl.io import save_csv, save_json
from npdl.network import load_model


def run(cfg: PipelineConfig) -> dict:
    model_path = cfg.evaluate.model_path or project_path(cfg.paths.models) / "model.npz"
    model = load_model(model_path)
    val = None
    if cfg.evaluate.source is None:
        prepared = project_path(cfg.paths.data) / "prepared"
        load_manifest(prepared)
        images, labels = load_split(prepared, "test")
        if not refit(model):  # a refit model trained on val: no estimate there
            val = load_split(prepared, "val")
    else:
        if model.image_shape is None:
            raise ValueError(f"{model_path} records no image size: retrain it with this npdl")
        source = open_image_source(cfg.evaluate.source)
        images = source.read_images(size=model.image_shape[:2])
        labels = relabel(source.labels, source.classes, model.class_names)
    tta = cfg.evaluate.batch_size, cfg.evaluate.tta_flip, cfg.evaluate.tta_shift
    logits = predict_logits(model, images, *tta)
    metrics = classification_metrics(logits, labels, model.class_names)
    metrics["model_trained_on"] = "train+val" if refit(model) else "train"
    if val is not None:
        val_logits = predict_logits(model, val[0], *tta)
        on_val = classification_metrics(val_logits, val[1], model.class_names)
        metrics["val_accuracy"], metrics["val_n"] = on_val["accuracy"], on_val["n"]
    predictions = logits.argmax(axis=1)
    if cfg.evaluate.metrics_path is not None:
        save_json(Path(cfg.evaluate.metrics_path), metrics)
    else:
        out = run_dir() / cfg.paths.metrics
        save_json(out / "evaluate.json", metrics)
        names = model.class_names
        rows = [
            {"actual": names[i], "predicted": names[j]}
            for i, j in zip(labels.tolist(), predictions.tolist(), strict=True)
        ]
        save_csv(out / "confusion.csv", rows, ["actual", "predicted"])
        plots.confusion_matrix(
            confusion_counts(labels, predictions, len(names)),
            names,
            run_dir() / cfg.paths.plots / "confusion_matrix.png",
            f"{cfg.evaluate.source or 'Test split'}: accuracy {metrics['accuracy']:.2%} "
            f"on {metrics['n']} images",
        )
    print(
        f"accuracy {metrics['accuracy']:.4f} on {metrics['n']} images, loss {metrics['loss']:.4f}"
    )
    return metrics


def refit(model) -> bool:
    """Whether ``model`` was trained on train + val (``solver.refit``, as its file says)."""
    solver = (getattr(model, "metadata", None) or {}).get("config", {}).get("solver", {})
    return bool(solver.get("refit", False))


main = stage_main(run)

if __name__ == "__main__":
    main()
