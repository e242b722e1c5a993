"""Regenerate params.yaml from conf/ exactly as `dvc exp run` does (DVC's own
composition code): `python stages/compose_params.py [override ...]`."""

from __future__ import annotations

import sys

from dvc.utils.hydra import compose_and_dump

from common import CONF_DIR, PROJECT_ROOT


def compose_params(output_file, overrides: list[str]) -> None:
    """Compose ``conf/`` with ``overrides`` into ``output_file`` (YAML)."""
    compose_and_dump(str(output_file), str(CONF_DIR), None, "config", "hydra_plugins", overrides)


if __name__ == "__main__":
    compose_params(PROJECT_ROOT / "params.yaml", sys.argv[1:])
