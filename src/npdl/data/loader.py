"""DataLoader: iterating over a dataset in (optionally shuffled) batches."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .splits import SeedLike

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over a dataset in batches.

    Parameters
    ----------
    dataset : object
        Anything with ``__len__`` and ``__getitem__(i) -> dict``. If it also has
        ``get_batch(indices) -> dict`` (like :class:`ImageFolderDataset`), each batch
        is fetched with one vectorised call; otherwise samples are fetched one by one
        and stacked per key (the course's behaviour, for custom datasets).
    batch_size : int, default 1
    shuffle : bool, default False
        Draw a fresh permutation of the samples for every epoch (every ``iter``).
    drop_last : bool, default False
        Drop the last batch if it is smaller than ``batch_size``.
    rng : int or numpy.random.Generator, optional
        Seed or generator for shuffling; the same seed replays the same sequence of
        epochs. None draws fresh OS entropy (not reproducible).
    prefetch : bool, default False
        Assemble the next batch in a background thread while the caller works on
        this one (NumPy releases the GIL in its copies, so the gather and the
        augmentation overlap the caller's compute). Batches, their order and every
        random draw are the same as without; an error in the dataset is raised
        where the batch would have been yielded.

    Yields
    ------
    dict
        ``'image'``: the batch of images (whatever the dataset's transform makes of
        them, e.g. ``float32 (B, D)``); ``'label'``: ``int64 (B,)``; plus any other
        keys a custom dataset returns, stacked.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        rng: SeedLike = None,
        prefetch: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rng = np.random.default_rng(rng)
        self.prefetch = bool(prefetch)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return len(self.dataset) // self.batch_size
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if self.prefetch:
            return prefetched(self._batches())
        return self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        sample_count = len(self.dataset)
        order = self.rng.permutation(sample_count) if self.shuffle else np.arange(sample_count)
        get_batch = getattr(self.dataset, "get_batch", None)
        for batch_number in range(len(self)):
            batch_indices = order[
                batch_number * self.batch_size : (batch_number + 1) * self.batch_size
            ]
            if get_batch is not None:
                yield get_batch(batch_indices)
            else:
                yield self._stack_samples(batch_indices)

    def _stack_samples(self, batch_indices: np.ndarray) -> dict[str, np.ndarray]:
        samples = [self.dataset[int(index)] for index in batch_indices]
        batch = {key: np.stack([sample[key] for sample in samples]) for key in samples[0]}
        if "label" in batch:
            batch["label"] = batch["label"].astype(np.int64)
        return batch


_END = object()


def prefetched(items: Iterator) -> Iterator:
    """Yield the items of ``items`` while a background thread already computes the
    next one. ``items`` is only ever advanced by that one thread, one item at a time,
    so its order (and any random draws inside it) is unchanged; closing this
    iterator early waits for the item in flight and then stops."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="npdl-prefetch") as pool:
        pending = pool.submit(next, items, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = pool.submit(next, items, _END)
            yield item
