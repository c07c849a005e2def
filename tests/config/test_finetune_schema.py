"""The finetune recipe schema: shipped recipes validate, mistakes are named with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from finsent_cli.config.finetune import FinetuneRecipe, TrainCfg
from finsent_cli.config.loader import load_recipe
from finsent_cli.errors import RecipeError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("name", ["finetune_phrasebank.yaml", "finetune_twitter.yaml", "finetune_lora.yaml"])
def test_shipped_recipes_validate(name: str, data_dir: Path) -> None:
    cfg = load_recipe(RECIPES / name, FinetuneRecipe, data_dir=data_dir)
    assert cfg.model.backbone == "minilm" and cfg.train.metric == "macro_f1" and cfg.metric_mode == "max"
    assert cfg.data.train is not None and cfg.data.train.exists()
    assert (cfg.model.adapter.kind == "lora") == (name == "finetune_lora.yaml")
    first = (RECIPES / name).read_text().splitlines()[0]
    assert first == f"# finsent finetune recipes/{name}"


def test_prepared_folder_alternative(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "prepared").mkdir()
    over = [f"data.dir={tmp_path / 'prepared'}", "data.train=null", "data.valid=null", "data.test=null"]
    cfg = load_recipe(RECIPES / "finetune_phrasebank.yaml", FinetuneRecipe, over, data_dir=data_dir)
    assert cfg.data.dir == tmp_path / "prepared"


def _problems(tmp_path: Path, text: str, overrides: list[str] | None = None) -> list[str]:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, FinetuneRecipe, overrides)
    return info.value.problems


BASE = "output_dir: out\nmodel: {backbone: minilm}\ndata: {dir: .}\n"


def test_every_problem_at_once(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path, BASE + "optim: {lrr: 1e-3}\ntrain: {epochz: 3, mixed_precision: fp8}\nsched: {name: step}\n"
    )
    text = "\n".join(problems)
    assert "optim.lrr: unknown key (did you mean 'lr'?)" in text
    assert "train.epochz: unknown key (did you mean 'epochs'?)" in text
    assert "train.mixed_precision" in text and "sched.name" in text
    assert len(problems) == 4


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("data: {dir: ., train: x.csv}\n", "data.train"),
        ("sched: {warmup_steps: 10, warmup_ratio: 0.1}\n", "not both"),
        ("model: {backbone: minilm, class_weights: [1, 2]}\n", "3 positive weights"),
        ("train: {metric: auc}\n", "unknown metric 'auc'"),
        ("train: {eval_every: 0}\n", "positive number of steps"),
    ],
)
def test_bad_values(tmp_path: Path, extra: str, needle: str) -> None:
    text = BASE
    key = extra.split(":")[0]
    text = "\n".join(line for line in text.splitlines() if not line.startswith(key + ":")) + "\n" + extra
    assert needle in "\n".join(_problems(tmp_path, text))


def test_train_cfg_is_reusable_on_its_own() -> None:
    cfg = TrainCfg(max_steps=100, eval_every=50)
    assert cfg.epochs == 3 and cfg.grad_accum == 1 and cfg.mixed_precision == "auto"
