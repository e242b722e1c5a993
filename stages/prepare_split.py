"""prepare-split: resolve the source, decode every image once, split it stratified,
and write ``data/prepared/`` (uint8 arrays, labels, manifest with a content hash)."""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from common import project_path, stage_main
from npdl.config import CIFAR10_MD5, CIFAR10_URL, PipelineConfig
from npdl.data.download import resolve_source
from npdl.data.prepared import prepare_dataset, write_prepared


class DecodeBar:
    """A tqdm bar over decoded images (silent off a terminal)."""

    def __init__(self):
        self.bar = tqdm(desc="decoding", unit="image", disable=None)

    def show(self, decoded: int, total: int) -> None:
        self.bar.total = total
        self.bar.n = decoded
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def effective_source(cfg: PipelineConfig) -> tuple[str, str | None]:
    """The source and the md5 to check: ``data.source_md5`` where given, else the
    published one for the official URL only. CIFAR10_SOURCE replaces the default source."""
    source, md5, override = cfg.data.source, cfg.data.source_md5, os.environ.get("CIFAR10_SOURCE")
    if source != CIFAR10_URL:
        return source, md5
    return (override, md5) if override else (source, md5 or CIFAR10_MD5)


def run(cfg: PipelineConfig) -> dict:
    source, md5 = effective_source(cfg)
    path = resolve_source(
        source, project_path(cfg.paths.cache) / "downloads", md5, timeout=cfg.data.download_timeout
    )
    bar = DecodeBar()
    data = prepare_dataset(
        path,
        cfg.data.split,
        cfg.data.seed,
        cfg.data.limit_files,
        cfg.data.image_size,
        workers="auto",  # parallel decoding; this script has its __main__ guard
        progress=bar.show,
    )
    bar.close()
    manifest = write_prepared(
        project_path(cfg.paths.data) / "prepared",
        data,
        {
            "source": Path(source).name,
            "split": cfg.data.split,
            "seed": cfg.data.seed,
            "limit_files": cfg.data.limit_files,
        },
    )
    print(
        f"prepared {manifest['counts']} images of {len(manifest['classes'])} classes "
        f"from {source} (hash {manifest['content_hash'][:12]})"
    )
    return manifest


main = stage_main(run)

if __name__ == "__main__":
    main()
