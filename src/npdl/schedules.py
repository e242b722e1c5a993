"""Learning-rate schedules as pure functions of the training position.

A schedule maps the optimisation step to a learning rate, so a resumed run (whose
step counter is restored from a checkpoint) continues the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class LearningRateSchedule:
    """Learning rate at a given step.

    Parameters
    ----------
    base_lr : float
        Peak learning rate.
    kind : {'constant', 'step', 'cosine'}
        ``constant``: ``base_lr * lr_decay ** epoch`` (the course's per-epoch decay;
        ``lr_decay=1`` keeps it constant). ``step``: multiply by ``gamma`` every
        ``step_size`` epochs. ``cosine``: anneal from ``base_lr`` to ``min_lr`` over
        ``total_epochs`` (after the warm-up).
    steps_per_epoch : int
    total_epochs : int
        Horizon of the cosine schedule.
    warmup_epochs : float
        Linear warm-up from ``base_lr / warmup_steps`` to ``base_lr`` (0 = none).
    lr_decay, step_size, gamma, min_lr
        The ``constant``, ``step`` and ``cosine`` schedules' settings (see ``kind``).
    """

    base_lr: float
    kind: str = "constant"
    steps_per_epoch: int = 1
    total_epochs: int = 1
    warmup_epochs: float = 0.0
    lr_decay: float = 1.0
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; allowed: {', '.join(SCHEDULES)}")
        if self.base_lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {self.base_lr!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}")
        if self.step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {self.step_size!r}")

    def __call__(self, step: int) -> float:
        """Learning rate for optimisation step ``step`` (0-based)."""
        spe = max(self.steps_per_epoch, 1)
        warmup_steps = self.warmup_epochs * spe
        if step < warmup_steps:
            return self.base_lr * (step + 1) / warmup_steps
        epoch = step // spe
        if self.kind == "constant":
            return self.base_lr * self.lr_decay**epoch
        if self.kind == "step":
            return self.base_lr * self.gamma ** (epoch // self.step_size)
        total = max(self.total_epochs * spe - warmup_steps, 1)
        progress = min((step - warmup_steps) / total, 1.0)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress))
