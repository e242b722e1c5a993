"""normalize: statistics of the train split only -> ``data/normalized/``.

``standardize``: per-channel mean/std (``stats.json``); images stay uint8 and are
standardised per batch when it is formed (4x less memory than float32 copies).
``zca``: also the ZCA whitening (``zca.npz``), the basis it whitens in
(``pca_components.npy``, for ``model.input_pca``) and the train/val splits whitened once,
as float16 (``train_images.npy``, ``val_images.npy``): whitening per batch would cost
as much as a wide first layer. The folder's format is :mod:`npdl.data.normalization`'s."""

from __future__ import annotations

from common import project_path, stage_main
from npdl.config import PipelineConfig
from npdl.data.normalization import fit_standardization, fit_zca, whiten, write_normalization
from npdl.data.prepared import load_manifest, load_split


def run(cfg: PipelineConfig) -> dict:
    data = project_path(cfg.paths.data)
    manifest = load_manifest(data / "prepared")
    images, _ = load_split(data / "prepared", "train")
    preprocessing = fit_standardization(images)
    whitened, zca_eps = None, None
    if cfg.normalize.method == "zca":
        zca_eps = cfg.normalize.zca_eps
        preprocessing = {**preprocessing, **fit_zca(images, preprocessing, zca_eps)}
        whitened = {
            mode: whiten(load_split(data / "prepared", mode)[0], preprocessing)
            for mode in ("train", "val")
        }
    record = write_normalization(
        data / "normalized",
        cfg.normalize.method,
        preprocessing,
        whitened,
        data_hash=manifest["content_hash"],
        zca_eps=zca_eps,
    )
    print(
        f"{cfg.normalize.method} fitted on {len(images)} training images: "
        f"mean {record['mean']}, std {record['std']}"
    )
    return record


main = stage_main(run)

if __name__ == "__main__":
    main()
