"""Everything about a run that changes while it trains, checkpointed beside the weights.

The recipe is read-only; step counters, the data position, early-stopping bookkeeping and the random
number generators live here, so a resumed run continues exactly where the checkpoint was written.
"""

from __future__ import annotations

import dataclasses
import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finsent_cli.core.io import atomic_write_bytes

STATE_FILE = "training_state.pt"


@dataclasses.dataclass
class TrainingState:
    """Counters of one run.

    Attributes:
        step: optimizer steps done.
        epoch: the epoch in progress (0-based).
        batch_in_epoch: micro-batches of ``epoch`` already consumed (the data position).
        samples_seen: training examples consumed, over all processes.
        best_metric: best value of the recipe's metric so far.
        best_step: step of the checkpoint that holds ``best_metric``.
        bad_evals: evaluations since the metric last improved (early stopping).
        stop_reason: why training stopped: ``complete`` or ``early_stop``; None while running.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stop_reason: str | None = None

    def improved(self, value: float, mode: str) -> bool:
        """Whether ``value`` beats ``best_metric`` (``mode`` is ``max`` or ``min``)."""
        if self.best_metric is None:
            return True
        return value > self.best_metric if mode == "max" else value < self.best_metric


def capture_rng() -> dict[str, Any]:
    """The state of every random generator training touches (Python, NumPy, torch CPU and CUDA)."""
    out: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(rng: dict[str, Any]) -> None:
    """Put back generator states captured by :func:`capture_rng`."""
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_state_file(path: str | Path, blob: dict[str, Any]) -> None:
    """Write a training-state blob (``state``, ``optimizer``, ``scheduler``, ``rng``, ...) atomically."""
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state_file(path: str | Path) -> dict[str, Any]:
    """Read a blob written by :func:`save_state_file`, every tensor on the CPU.

    The file holds NumPy generator state, so it is unpickled in full: load only checkpoints you wrote.
    """
    return torch.load(Path(path), map_location="cpu", weights_only=False)


def state_to_dict(state: TrainingState) -> dict[str, Any]:
    """Plain-dict form of ``state`` for the blob and for logs."""
    return dataclasses.asdict(state)


def state_from_dict(d: dict[str, Any]) -> TrainingState:
    """Inverse of :func:`state_to_dict`; unknown keys (from a newer version) are ignored."""
    names = {f.name for f in dataclasses.fields(TrainingState)}
    return TrainingState(**{k: v for k, v in d.items() if k in names})
