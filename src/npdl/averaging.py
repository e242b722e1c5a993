"""An exponential moving average of a network's weights, updated after every step.

``average = d * average + (1 - d) * weights`` after each optimizer step, with the decay
warmed up as TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` does:
``d_t = min(decay, (1 + t) / (10 + t))`` for the ``t``-th update (``t = 0, 1, ...``),
so that a short run is not dominated by its initial weights. The average starts at
the weights it is created from.

Batch-norm running statistics are averaged like the weights (as timm's ``ModelEmaV2``
does), not recomputed: they are themselves moving averages of the batch statistics,
and a pass over the training data to recompute them would cost a third of an epoch.
Buffers that training never changes (the fixed input projection) are not averaged.

The update is element-wise and runs in cache-sized blocks over a few threads
(:mod:`npdl.threads`), like the optimizers: the result does not depend on the threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .threads import blocks, run_blocks

#: TensorFlow's warm-up constant: ``d_t = min(decay, (1 + t) / (WARMUP + t))``.
WARMUP = 10.0


class ExponentialMovingAverage:
    """Moving average of ``model``'s parameters and changing buffers.

    Parameters
    ----------
    model : ClassificationNet
        Averaged through ``model.params`` and ``model.buffers`` (arrays updated in
        place by the optimizer and the layers), less ``model.fixed_buffers``.
    decay : float
        In (0, 1): the weight of the old average after warm-up (0.999: about the last
        1,000 steps).

    Attributes
    ----------
    average : dict of str to numpy.ndarray
        The averaged arrays, keyed as the model's ``state_dict``.
    updates : int
        How many updates were made (``t`` of the next one).
    """

    def __init__(self, model, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight-average decay must be in (0, 1), got {decay!r}")
        self.model = model
        self.decay = float(decay)
        self.updates = 0
        self.average = {name: value.copy() for name, value in self._tracked().items()}
        self._scratch = {name: np.empty_like(value) for name, value in self.average.items()}
        self._jobs: list[tuple] = []
        self._jobs_key: tuple = ()

    def _tracked(self) -> dict[str, np.ndarray]:
        """The model's live arrays that are averaged, keyed as its ``state_dict``."""
        fixed = getattr(self.model, "fixed_buffers", frozenset())
        live = dict(self.model.params.items())
        live.update((k, v) for k, v in self.model.buffers.items() if k not in fixed)
        return live

    def decay_at(self, update: int) -> float:
        """The decay of update number ``update`` (0-based), warm-up included."""
        return min(self.decay, (1.0 + update) / (WARMUP + update))

    def update(self) -> None:
        """Blend the model's current weights into the average (after an optimizer step)."""
        keep = self.decay_at(self.updates)
        take = 1.0 - keep

        def blend(average, live, scratch) -> None:
            np.multiply(live, take, out=scratch)
            average *= keep
            average += scratch

        run_blocks(blend, self._block_jobs())
        self.updates += 1

    def _block_jobs(self) -> list[tuple]:
        """``(average, live, scratch)`` per block, rebuilt only when an array changed."""
        live = self._tracked()
        groups = [(self.average[name], live[name], self._scratch[name]) for name in self.average]
        key = tuple(id(a) for group in groups for a in group)
        if key != self._jobs_key:
            self._jobs = [job for group in groups for job in blocks(*group)]
            self._jobs_key = key
        return self._jobs

    def weights(self) -> dict[str, np.ndarray]:
        """A full ``state_dict`` for the model: averaged arrays, plus the fixed buffers
        as they are (copies, safe to keep)."""
        state = self.model.state_dict()
        state.update((name, value.copy()) for name, value in self.average.items())
        return state

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights; its own come back after."""
        own = self.model.state_dict()
        self.model.load_state_dict({**own, **self.average})
        try:
            yield
        finally:
            self.model.load_state_dict(own)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The average and the update count, for checkpoints."""
        return {"updates": np.asarray(self.updates), **self.average}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict`'s arrays (copied into the average's own)."""
        missing = sorted(set(self.average) - set(state))
        if missing:
            raise ValueError(f"the weight-average state lacks {missing}")
        for name, value in self.average.items():
            np.copyto(value, state[name], casting="same_kind")
        self.updates = int(state["updates"])
