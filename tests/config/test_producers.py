"""Which recipe makes a path: read from the recipes' headers and output_dir, for the hint of a missing input."""

from __future__ import annotations

from pathlib import Path

import pytest

from finsent_cli.config.producers import Producers, recipe_folders, recipe_outputs

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _recipe(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def test_the_shipped_recipes_make_the_inputs_of_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(RECIPES.parent)
    make = Producers([Path("recipes")])
    assert make("runs/data/corpus") == "finsent prep recipes/prep_corpus.yaml"
    assert make("runs/tokenizer") == "finsent tokenizer recipes/tokenizer.yaml"
    assert make("runs/data/phrasebank_50agree") == "finsent prep recipes/prep_phrasebank.yaml"
    assert make("runs/finetune_phrasebank_mpnet") == "finsent finetune recipes/finetune_phrasebank_mpnet.yaml"
    assert make("runs/pretrain_t5_tiny/best") == "finsent pretrain recipes/t5_tiny.yaml"  # inside an output folder
    assert make("./runs/data/corpus/") == make(RECIPES.parent / "runs" / "data" / "corpus")  # however spelled
    assert make("runs/data") is None and make("runs/nothing") is None
    # every shipped recipe with an output_dir is known, by the command on its first line
    outputs = recipe_outputs(Path("recipes"))
    assert len(outputs) == len([p for p in RECIPES.glob("*.yaml") if "\noutput_dir:" in p.read_text(encoding="utf-8")])


def test_the_closest_output_folder_wins_and_odd_files_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "my recipes"
    _recipe(folder, "outer.yaml", "# finsent prep recipes/outer.yaml\noutput_dir: out\n")
    _recipe(folder, "inner.yaml", "# finsent finetune recipes/inner.yaml\noutput_dir: out/inner\n")
    _recipe(folder, "args.yaml", "# finsent select POOL --model M recipes/args.yaml\noutput_dir: picked\n")
    _recipe(folder, "noheader.yaml", "output_dir: plain\n")
    _recipe(folder, "variable.yaml", "# finsent prep recipes/variable.yaml\noutput_dir: ${data_dir}/x\n")
    _recipe(folder, "broken.yaml", "# finsent prep recipes/broken.yaml\noutput_dir: [unclosed\n")
    _recipe(folder, "other.yaml", "# finsent prep recipes/another_name.yaml\noutput_dir: elsewhere\n")
    make = Producers([Path("my recipes")])  # as a recipe path the user typed names its folder
    assert make("out/inner/best") == "finsent finetune 'my recipes/inner.yaml'"  # the path as the user runs it
    assert make("out/x") == "finsent prep 'my recipes/outer.yaml'"
    assert make("picked") == "finsent select POOL --model M 'my recipes/args.yaml'"
    assert [make(p) for p in ("plain", "elsewhere", tmp_path / "data" / "x")] == [None, None, None]


def test_a_recipe_s_own_folder_comes_before_the_working_folder_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _recipe(tmp_path / "recipes", "a.yaml", "# finsent prep recipes/a.yaml\noutput_dir: runs/x\n")
    _recipe(tmp_path / "mine", "b.yaml", "# finsent tokenizer recipes/b.yaml\noutput_dir: runs/x\n")
    assert recipe_folders("mine/run.yaml") == [Path("mine"), Path("recipes")]
    assert recipe_folders("recipes/run.yaml") == [Path("recipes")]
    assert recipe_folders(None) == [Path("recipes")]
    assert Producers(recipe_folders("mine/run.yaml"))("runs/x") == "finsent tokenizer mine/b.yaml"
    assert recipe_folders(tmp_path / "nowhere" / "r.yaml") == [Path("recipes")]
