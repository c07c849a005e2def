"""Checkpoint folders: completeness, publishing, pruning."""

from __future__ import annotations

from pathlib import Path

from finsent_cli.core.training import checkpoint as ckpt
from finsent_cli.core.training.state import STATE_FILE


def _write(folder: Path, text: str) -> None:
    (folder / "model.bin").write_text(text)


def test_save_list_publish_prune(tmp_path: Path) -> None:
    for step in (5, 10, 15, 20):
        ckpt.save_checkpoint(tmp_path, step, lambda d, s=step: _write(d, f"w{s}"), {"state": {"step": step}})
    (tmp_path / "checkpoints" / "step-25").mkdir()  # a folder without a training state is not a checkpoint
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [5, 10, 15, 20]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-20"

    ckpt.publish(tmp_path / "checkpoints" / "step-10", tmp_path / "best")
    assert (tmp_path / "best" / "model.bin").read_text() == "w10"
    assert not (tmp_path / "best" / STATE_FILE).exists()

    assert ckpt.prune(tmp_path, keep_steps={10}, keep_last=1) == [5, 15]
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [10, 20]
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary folders left behind
