"""Run folders: --fresh moves a run aside (never deletes a model), `latest` always points at a model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from finsent_cli.core.runs import point_latest, prepare_run_dir, recipe_differences, resolve_model
from finsent_cli.errors import FinsentError


def _finished_run(path: Path) -> Path:
    (path / "best").mkdir(parents=True)
    (path / "best" / "config.json").write_text("{}")
    (path / "recipe.yaml").write_text("train: {epochs: 1}\n")
    return path


def test_fresh_moves_the_old_run_aside_and_latest_follows(tmp_path: Path) -> None:
    run = _finished_run(tmp_path / "run")
    point_latest(run)
    assert os.readlink(tmp_path / "latest") == "run"
    moved = prepare_run_dir(run, fresh=True)
    assert moved is not None and moved.name.startswith("run.old-") and (moved / "best" / "config.json").exists()
    assert run.is_dir() and not any(run.iterdir())
    # latest never points at a run without a model: it follows the moved run until the new one is done
    assert (tmp_path / "latest").resolve() == moved.resolve()
    again = prepare_run_dir(run, fresh=True)
    assert again is None  # an empty run folder: nothing to move


def test_two_fresh_starts_in_one_second_do_not_collide(tmp_path: Path) -> None:
    first = prepare_run_dir(_finished_run(tmp_path / "r"), fresh=True)
    _finished_run(tmp_path / "r2")
    os.replace(tmp_path / "r2", tmp_path / "r")  # a second finished run in the same folder
    second = prepare_run_dir(tmp_path / "r", fresh=True)
    assert first is not None and second is not None and first != second and first.exists() and second.exists()


def test_latest_elsewhere_follows_too(tmp_path: Path) -> None:
    run = _finished_run(tmp_path / "qs" / "model")
    point_latest(run, tmp_path)
    assert os.readlink(tmp_path / "latest") == "qs/model"
    moved = prepare_run_dir(run, fresh=True, latest_dir=tmp_path)
    assert moved is not None and (tmp_path / "latest").resolve() == moved.resolve()
    assert resolve_model(None, {}, tmp_path)[0] == tmp_path / "latest"


def test_without_fresh_nothing_moves_and_foreign_folders_are_refused(tmp_path: Path) -> None:
    run = _finished_run(tmp_path / "run")
    assert prepare_run_dir(run, fresh=False) is None and (run / "best").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(FinsentError, match="not a finsent run folder"):
        prepare_run_dir(tmp_path / "mine", fresh=True)
    assert (tmp_path / "mine" / "notes.txt").exists()


def test_recipe_differences_ignore_resumable_and_upgrade_keys_only() -> None:
    old = "model: {backbone: minilm, head: classification, pooling: mean}\ntrain: {epochs: 3}\noptim: {lr: 0.1}\n"
    new = "model: {kind: hf_encoder, backbone: minilm, pooling: first}\ntrain: {epochs: 5}\noptim: {lr: 0.2}\n"
    assert recipe_differences(old, new) == ["model.pooling", "optim.lr"]
    # a label map added, emptied or extended changes the data: never resumable
    no_map, a_map = "data: {label_map: {}}\n", "data: {label_map: {'0': negative, '1': positive}}\n"
    assert recipe_differences(no_map, a_map) == ["data.label_map", "data.label_map.0", "data.label_map.1"]
    assert recipe_differences(a_map, "data: {label_map: {'0': negative, '1': positive, '2': neutral}}\n") == ["data.label_map.2"]
    # the folder being resumed, spelled relative or absolute: not a change; a kind or head that changed is
    assert recipe_differences("output_dir: runs/a\n", "output_dir: /work/runs/a\n") == []
    t5 = "model: {kind: t5_cls, head: classification}\n"
    assert recipe_differences(t5, "model: {kind: t5_text2text, head: text2text}\n") == ["model.head", "model.kind"]
