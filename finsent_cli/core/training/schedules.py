"""Learning-rate schedules with linear warmup, written as multipliers of the base learning rate.

* ``constant``: 1 after warmup.
* ``linear``: linear decay from 1 at the end of warmup to ``min_ratio`` at the last step.
* ``cosine``: half-cosine decay to ``min_ratio`` (Loshchilov & Hutter 2017, "SGDR", without restarts).
* ``inverse_sqrt``: ``sqrt(warmup / step)`` after warmup (Vaswani et al. 2017, "Attention Is All You Need").

Warmup follows the Hugging Face convention: the multiplier at step ``s < warmup`` is ``s / warmup``,
so the first update uses a learning rate of 0 (and results match the ``Trainer`` step for step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SCHEDULES = ("constant", "linear", "cosine", "inverse_sqrt")


def warmup_steps_for(total_steps: int, warmup_steps: int | None, warmup_ratio: float | None) -> int:
    """Warmup length in optimizer steps: explicit steps, else ``ceil(ratio * total)``, else 0."""
    if warmup_steps is not None:
        return warmup_steps
    if warmup_ratio:
        return math.ceil(warmup_ratio * total_steps)
    return 0


def lr_multiplier(name: str, warmup: int, total: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """The function ``step -> multiplier`` for one schedule.

    Args:
        name: one of :data:`SCHEDULES`.
        warmup: warmup steps (linear from 0 to 1).
        total: total optimizer steps (used by ``linear`` and ``cosine``).
        min_ratio: floor of the decaying schedules, as a fraction of the base learning rate.

    Returns:
        A callable suitable for :class:`torch.optim.lr_scheduler.LambdaLR`.

    Raises:
        ValueError: unknown schedule name.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r} (one of {', '.join(SCHEDULES)})")

    def fn(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if name == "constant":
            return 1.0
        if name == "inverse_sqrt":
            return math.sqrt(max(1, warmup) / max(step, 1))
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if name == "linear":
            decay = 1.0 - progress
        else:
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        return min_ratio + (1.0 - min_ratio) * decay

    return fn


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: str, warmup: int, total: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A :class:`~torch.optim.lr_scheduler.LambdaLR` for :func:`lr_multiplier`; step it once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(name, warmup, total, min_ratio))
