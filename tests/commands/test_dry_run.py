"""``--dry-run`` of every recipe command: what its help promises, missing inputs (exit 1) apart from recipe
errors (exit 2), and ``finetune --sweep`` driven through the one flow function that owns sweeps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from finsent_cli.core.flows import sweep as sweep_flow
from tests.finetune_helpers import sweep_recipe, two_line_splits

LORA = "{backbone: minilm, max_length: 24, adapter: {kind: lora, r: 4}}"
from tests.helpers import run_cli

RECIPE_COMMANDS = ("prep", "tokenizer", "finetune", "qlora", "pretrain", "distill", "tune")


def _help_of_dry_run(command: str) -> str:
    """The help of ``--dry-run`` in ``finsent COMMAND --help``, its wrapped lines joined."""
    out = run_cli(command, "--help", env={"COLUMNS": "200"}).stdout
    cells = [line.strip("│ ").strip() for line in out.splitlines()]
    start = next(i for i, c in enumerate(cells) if c.startswith("--dry-run"))
    text = [cells[start]]
    for cell in cells[start + 1 :]:
        if not cell or cell.startswith(("-", "╰")):
            break
        text.append(cell)
    return " ".join(" ".join(text).split())


@pytest.mark.parametrize("command", RECIPE_COMMANDS)
def test_the_help_of_dry_run_says_what_it_exits_with(command: str) -> None:
    text = _help_of_dry_run(command)
    if command == "tune":  # its recipe is loaded by the study's plan: a missing input is a recipe error there
        assert "Exit code 0: ready to run; 2: recipe errors or inputs that do not exist yet." in text, text
    else:
        assert "list the inputs that do not exist yet, each with the command that makes it" in text, text
        assert "Exit code 0: ready to run; 1: inputs missing; 2: recipe errors." in text, text


def test_finetune_dry_run_exits_1_for_a_missing_input_and_0_once_it_exists(tmp_path: Path) -> None:
    recipe = sweep_recipe(tmp_path, tmp_path / "data", model=LORA)
    res = run_cli("finetune", str(recipe), "--dry-run")
    assert res.exit_code == 1 and "backbone: minilm" in res.stdout, res.stderr
    assert [re.sub(r"^error: \S+: ", "", line) for line in res.error_lines] == [
        f"data.train: file not found: {tmp_path / 'data' / 'train.csv'}",
        f"data.valid: file not found: {tmp_path / 'data' / 'valid.csv'}",
        "the recipe is valid, but 2 of its inputs do not exist yet (above)",
    ]
    two_line_splits(tmp_path)
    ok = run_cli("finetune", str(recipe), "--dry-run")
    assert ok.exit_code == 0 and ok.stderr == "" and ok.stdout == res.stdout
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_dry_run_lists_its_points_and_each_missing_input_once(tmp_path: Path) -> None:
    recipe = sweep_recipe(tmp_path, tmp_path / "data", model=LORA)
    args = ["finetune", str(recipe), "--sweep", "train.seed=1,2", "--sweep", "optim.lr=1.0e-4,3.0e-4", "--dry-run"]
    res = run_cli(*args)
    assert res.exit_code == 1, res.stderr
    assert res.stdout.splitlines() == [
        f"seed={s},lr={lr}: {tmp_path / 'sweep' / f'seed={s},lr={lr}'}" for s in (1, 2) for lr in ("1.0e-4", "3.0e-4")
    ]
    assert len(res.error_lines) == 3 and "data.train: file not found" in res.error_lines[0], res.stderr  # not once per point
    two_line_splits(tmp_path)
    ok = run_cli(*args)
    assert ok.exit_code == 0 and ok.stdout == res.stdout and ok.stderr == ""
    bad = run_cli(*args, "train.epochs=two")  # a recipe error is exit 2, with or without --dry-run
    assert bad.exit_code == 2 and bad.stdout == "" and "train.epochs" in bad.error_lines[0]
    assert not (tmp_path / "sweep").exists()


def test_the_commands_hand_a_sweep_to_one_flow_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = sweep_recipe(tmp_path, two_line_splits(tmp_path), model=LORA)
    calls: list[dict[str, Any]] = []

    def fake(recipe: Path, items: list[str], overrides: list[str], data_dir: Path | None, **options: Any) -> Any:
        calls.append({"recipe": recipe, "items": items, "overrides": overrides, "data_dir": data_dir, **options})
        row = {"train.seed": 1, "point": "seed=1", "valid_macro_f1": 0.5, "trainable_params": 123_456, "train_seconds": 12.3}
        return sweep_flow.SweepResult(tmp_path / "sweep", [sweep_flow.SweepAxis("train.seed", [1], ["1"])], [row], ["train.seed"])

    monkeypatch.setattr(sweep_flow, "finetune_sweep", fake)
    res = run_cli("finetune", str(recipe), "optim.lr=1e-3", "--sweep", "train.seed=1", "--fresh", "-q", "--data-dir", str(tmp_path))
    assert res.exit_code == 0, res.stderr
    assert "sweep: 1 runs in" in res.stdout and "0.12M" in res.stdout and "sweep.csv" in res.stdout
    res = run_cli("qlora", str(recipe), "--sweep", "train.seed=1")
    assert res.exit_code == 0, res.stderr
    first, second = calls
    assert {k: v for k, v in first.items() if k != "reporter"} == {
        "recipe": recipe, "items": ["train.seed=1"], "overrides": ["optim.lr=1e-3"], "data_dir": tmp_path,
        "command": "finetune", "dry_run": False, "fresh": True,
    }  # fmt: skip
    assert second["command"] == "qlora" and second["overrides"] == ["model.adapter.kind=qlora"] and second["fresh"] is False
