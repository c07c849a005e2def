"""Deterministic, resumable batching (padding lives in ``core.data.collate``).

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so a run resumed at
``(epoch, batch_in_epoch)`` sees exactly the batches an uninterrupted run would have seen. With
several processes every step takes one *global* batch of ``batch_size * world`` indices and process
``r`` takes the ``r``-th contiguous slice: the data of a step does not depend on the process count.

With ``lengths`` the batches are grouped by length (after the "group by length" sampler of Hugging Face
``Trainer``): the permutation is cut into chunks of 50 global batches, each chunk is sorted by length
and cut into batches, and the batch order is shuffled. Padding, hence compute, roughly halves on
sentence data, and the result is still a pure function of ``(seed, epoch)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch


class ResumableBatches:
    """Batches of example indices for each epoch, for one process.

    Args:
        n: number of examples.
        batch_size: examples per process per micro-batch.
        seed: the run's seed.
        shuffle: draw a new permutation per epoch (else the natural order).
        world: number of processes.
        rank: this process.
        lengths: token count of each example, to group batches by length (None: plain random batches).
    """

    MEGA = 50  # global batches per length-sorted chunk

    def __init__(
        self, n: int, batch_size: int, seed: int, *, shuffle: bool = True, world: int = 1, rank: int = 0,
        lengths: Sequence[int] | None = None,
    ) -> None:  # fmt: skip
        if n < 1:
            raise ValueError("no examples to batch")
        if lengths is not None and len(lengths) != n:
            raise ValueError("lengths must have one entry per example")
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.world, self.rank, self.lengths = world, rank, lengths

    def order(self, epoch: int) -> list[int]:
        """All indices of ``epoch`` in order, padded (by repeating the start) to a multiple of ``world``."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.n, generator=gen).tolist()
        else:
            order = list(range(self.n))
        pad = (-len(order)) % self.world
        order = order + order[:pad]
        if self.lengths is None:
            return order
        size = self.batch_size * self.world
        batches = []
        for start in range(0, len(order), size * self.MEGA):
            chunk = sorted(order[start : start + size * self.MEGA], key=lambda i: -self.lengths[i])  # type: ignore[index]
            batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
        # A short batch (the epoch's remainder) must stay last so every other batch is full.
        full, short = [b for b in batches if len(b) == size], [b for b in batches if len(b) != size]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 7)
        full = [full[i] for i in torch.randperm(len(full), generator=gen).tolist()]
        return [i for b in full + short for i in b]

    def __len__(self) -> int:
        """Micro-batches per epoch (the same for every epoch and every process)."""
        return math.ceil((self.n + (-self.n) % self.world) / (self.batch_size * self.world))

    def batches(self, epoch: int, skip: int = 0) -> Iterator[list[int]]:
        """This process's micro-batches of ``epoch``, without the first ``skip`` (a resumed position)."""
        order = self.order(epoch)
        global_size = self.batch_size * self.world
        for b in range(skip, len(self)):
            chunk = order[b * global_size : (b + 1) * global_size]
            per_rank = len(chunk) // self.world
            yield chunk[self.rank * per_rank : (self.rank + 1) * per_rank]
