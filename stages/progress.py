"""A live bar over epochs for a single training run on a terminal."""

from __future__ import annotations

import sys

from tqdm import tqdm


class EpochBar:
    """A tqdm bar over epochs, updated by a Solver callback with the epoch's figures."""

    def __init__(self, epochs: int):
        self.bar = tqdm(total=epochs, desc="training", unit="epoch")

    def callback(self, solver, stats: dict) -> bool:
        self.bar.n = solver.epoch  # a resumed run starts where its checkpoint ended
        self.bar.set_postfix(
            {k: f"{stats[k]:.4f}" for k in ("train_loss", "val_loss", "val_acc") if k in stats},
            refresh=True,
        )
        return False  # never asks the Solver to stop

    def close(self) -> None:
        self.bar.close()


def epoch_bar(epochs: int) -> EpochBar | None:
    """A bar on a terminal; None elsewhere (CI, logs), where the Solver prints lines."""
    return EpochBar(epochs) if sys.stderr.isatty() else None
