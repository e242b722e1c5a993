"""normalize: statistics of the train split only -> ``data/normalized/``.

``standardize``: per-channel mean/std (``stats.json``); images stay uint8 and are
standardised per batch when it is formed (4x less memory than float32 copies).
``zca``: also the ZCA whitening (``zca.npz``) and the train/val splits whitened once,
as float16 (``train_images.npy``, ``val_images.npy``): whitening per batch would cost
as much as a wide first layer."""

from __future__ import annotations

import numpy as np

from common import project_path, stage_main
from npdl.config import PipelineConfig
from npdl.io import atomic_folder, save_json, save_npz
from npdl.prepared import load_manifest, load_split
from npdl.preprocessing import fit_standardization, fit_zca, whiten


def run(cfg: PipelineConfig) -> dict:
    data = project_path(cfg.paths.data)
    manifest = load_manifest(data / "prepared")
    images, _ = load_split(data / "prepared", "train")
    stats = fit_standardization(images)
    record = {
        "method": cfg.normalize.method,
        "data_hash": manifest["content_hash"],
        **{key: value.tolist() for key, value in stats.items()},
    }
    with atomic_folder(data / "normalized") as staging:
        if cfg.normalize.method == "zca":
            record["zca_eps"] = cfg.normalize.zca_eps
            preprocessing = {**stats, **fit_zca(images, stats, cfg.normalize.zca_eps)}
            save_npz(staging / "zca.npz", {k: preprocessing[k] for k in ("zca_mean", "zca_matrix")})
            for mode in ("train", "val"):
                split, _ = load_split(data / "prepared", mode)
                np.save(staging / f"{mode}_images.npy", whiten(split, preprocessing))
        save_json(staging / "stats.json", record)
    print(
        f"{cfg.normalize.method} fitted on {len(images)} training images: "
        f"mean {record['mean']}, std {record['std']}"
    )
    return record


main = stage_main(run)

if __name__ == "__main__":
    main()
