"""Checkpoint folders: ``checkpoints/step-N/`` (model folder + training state), ``best/`` and ``last/``.

Every folder is built under a temporary name and renamed into place (``atomic_dir``), so a run killed
at any moment leaves only complete checkpoints. ``best/`` and ``last/`` are copies of model folders
without the training state; older checkpoints are pruned.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finsent_cli.core.io import atomic_dir
from finsent_cli.core.training.state import STATE_FILE, save_state_file

_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_root(run_dir: Path) -> Path:
    """Where step checkpoints live."""
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those holding a training state), oldest first, as ``(step, folder)``."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and (child / STATE_FILE).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(run_dir: Path, step: int, write_model: Callable[[Path], None], blob: dict[str, Any]) -> Path:
    """Write ``checkpoints/step-<step>/`` atomically: the model folder, then the training state.

    Args:
        run_dir: the run folder.
        step: optimizer step (names the folder).
        write_model: writes the model folder (weights, config, tokenizer) into the given folder.
        blob: the training state (see :mod:`finsent_cli.core.training.state`).

    Returns:
        The checkpoint folder.
    """
    target = checkpoint_root(run_dir) / f"step-{step}"
    with atomic_dir(target, only_outputs=False) as tmp:
        write_model(tmp)
        save_state_file(tmp / STATE_FILE, blob)
    return target


def publish(checkpoint: Path, dest: Path) -> None:
    """Copy the model folder of ``checkpoint`` (everything but the training state) to ``dest`` atomically."""
    with atomic_dir(dest, only_outputs=False) as tmp:
        for item in Path(checkpoint).iterdir():
            if item.name == STATE_FILE:
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)


def prune(run_dir: Path, keep_steps: set[int], keep_last: int = 1) -> list[int]:
    """Delete step checkpoints except ``keep_steps`` and the newest ``keep_last``; return deleted steps."""
    found = list_checkpoints(run_dir)
    newest = {step for step, _ in found[-keep_last:]} if keep_last > 0 else set()
    deleted = []
    for step, folder in found:
        if step not in keep_steps and step not in newest:
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(step)
    return deleted
