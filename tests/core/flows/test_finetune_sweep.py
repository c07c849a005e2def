"""``finetune_sweep``: the one function that owns ``--sweep`` (plan, check the folder, run every point)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from finsent_cli.core.flows.sweep import SweepPlan, SweepResult, finetune_sweep
from finsent_cli.errors import FinsentError, RecipeError
from tests.finetune_helpers import sweep_recipe, two_line_splits


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.lines.append(f"warning: {message}")


def _trainer(seen: list[tuple[str, bool]]) -> Any:
    def run_point(cfg: Any, fresh: bool) -> Any:
        run = Path(cfg.output_dir)
        seen.append((run.name, fresh))
        run.mkdir(parents=True, exist_ok=True)
        (run / "recipe.yaml").write_text("x: 1\n", encoding="utf-8")
        f1 = cfg.train.seed / 10
        return SimpleNamespace(final={"valid": {"accuracy": f1, "macro_f1": f1}}, seconds=1.0, params={"trainable": 5}, best_step=2, run_dir=run)

    return run_point


def test_a_sweep_runs_every_point_with_the_command_s_report(tmp_path: Path) -> None:
    recipe = sweep_recipe(tmp_path, "${data_dir}")
    two_line_splits(tmp_path)
    seen: list[tuple[str, bool]] = []
    reporter = Lines()
    result = finetune_sweep(recipe, ["train.seed=1,2"], ["optim.lr=1e-3"], tmp_path / "data", command="qlora", reporter=reporter, run_point=_trainer(seen))
    assert isinstance(result, SweepResult)
    assert seen == [("seed=1", False), ("seed=2", False)]
    assert [row["valid_macro_f1"] for row in result.rows] == [0.1, 0.2]
    assert reporter.lines[0] == f"qlora sweep: 2 runs -> {tmp_path / 'sweep'} (loading torch)"
    assert (tmp_path / "sweep" / "sweep.csv").is_file()
    again: list[tuple[str, bool]] = []
    finetune_sweep(recipe, ["train.seed=1,2"], ["optim.lr=1e-3"], tmp_path / "data", fresh=True, run_point=_trainer(again))
    assert again == [("seed=1", True), ("seed=2", True)]


def test_a_dry_run_returns_the_plan_with_the_missing_inputs_and_writes_nothing(tmp_path: Path) -> None:
    recipe = sweep_recipe(tmp_path, str(tmp_path / "data"))
    plan = finetune_sweep(recipe, ["train.seed=1,2,3"], dry_run=True, run_point=_trainer([]))
    assert isinstance(plan, SweepPlan)
    assert [name for name, _, _ in plan.points] == ["seed=1", "seed=2", "seed=3"]
    assert [(m.key, m.path) for m in plan.missing] == [
        ("data.train", tmp_path / "data" / "train.csv"), ("data.valid", tmp_path / "data" / "valid.csv"),
    ]  # fmt: skip
    assert not (tmp_path / "sweep").exists()
    with pytest.raises(RecipeError, match="data.train: file not found"):  # without --dry-run: an error, nothing runs
        finetune_sweep(recipe, ["train.seed=1,2,3"], run_point=_trainer([]))


def test_the_sweep_folder_is_checked_before_any_point_runs(tmp_path: Path) -> None:
    two_line_splits(tmp_path)
    recipe = sweep_recipe(tmp_path, str(tmp_path / "data"))
    (tmp_path / "sweep").write_text("a file", encoding="utf-8")
    seen: list[tuple[str, bool]] = []
    with pytest.raises(FinsentError, match="is a file"):
        finetune_sweep(recipe, ["train.seed=1,2"], run_point=_trainer(seen))
    assert seen == []
