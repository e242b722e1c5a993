"""normalize: per-channel mean/std of the train split only -> ``data/normalized/``.

Images stay uint8; the statistics are applied per batch when it is formed (4x less
memory than storing float32 copies, and augmentation works on the uint8 pixels)."""

from __future__ import annotations

from common import project_path, stage_main
from npdl.config import PipelineConfig
from npdl.io import save_json
from npdl.prepared import load_manifest, load_split
from npdl.preprocessing import fit_standardization


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
    save_json(data / "normalized" / "stats.json", record)
    print(
        f"normalization fitted on {len(images)} training images: mean {record['mean']}, "
        f"std {record['std']}"
    )
    return record


main = stage_main(run)

if __name__ == "__main__":
    main()
