"""Every shipped recipe: opens with the command that runs it, validates, and (prep/tokenizer) runs on real data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from finsent_cli.config.loader import load_recipe
from finsent_cli.config.registry import commands, schema_for
from tests.helpers import run_cli

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
# the command, then (for commands with positional inputs: select) its arguments and options, then the recipe
HEADER = re.compile(r"^# finsent (\w+) (?:\S+ )*?recipes/(\S+\.yaml)\s*$")


def test_recipes_exist() -> None:
    names = {p.name for p in RECIPES}
    assert {"prep_phrasebank.yaml", "prep_twitter.yaml", "prep_corpus.yaml", "tokenizer.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_header_and_schema(path: Path, data_dir: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    match = HEADER.match(lines[0])
    assert match, f"{path.name}: first line must be '# finsent <command> recipes/{path.name}'"
    command, name = match.groups()
    assert name == path.name
    assert lines[1].startswith("#   e.g. finsent "), f"{path.name}: second line must show an example override"
    assert command in commands(), f"{path.name}: no schema registered for '{command}'"
    load_recipe(path, schema_for(command), data_dir=data_dir, check_paths=False)


def test_prep_recipes_run_on_real_data(tmp_path: Path, data_dir: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "recipes"
    for name, expect in [("prep_phrasebank.yaml", {"train", "valid", "test"}), ("prep_twitter.yaml", {"train", "valid"})]:
        out = tmp_path / name
        res = run_cli("prep", str(root / name), f"output_dir={out}", "--data-dir", str(data_dir), "-q")
        assert res.exit_code == 0, res.stderr
        assert {p.stem for p in out.glob("*.parquet")} == expect
    import json

    pb = json.loads((tmp_path / "prep_phrasebank.yaml" / "manifest.json").read_text())
    assert pb["counts"]["test"] == {"negative": 121, "neutral": 575, "positive": 273}
    tw = json.loads((tmp_path / "prep_twitter.yaml" / "manifest.json").read_text())
    assert tw["cleaning"]["changed"]["urls"] > 4000


def test_corpus_and_tokenizer_recipes_run_on_real_data(tmp_path: Path, data_dir: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "recipes"
    corpus = tmp_path / "corpus"
    res = run_cli("prep", str(root / "prep_corpus.yaml"), f"output_dir={corpus}", "corpus.max_lines=20000", "--data-dir", str(data_dir), "-q")
    assert res.exit_code == 0, res.stderr
    assert len((corpus / "train.txt").read_text().splitlines()) == 19800
    tok = tmp_path / "tok"
    res = run_cli("tokenizer", str(root / "tokenizer.yaml"), f"input=[{corpus}]", f"output_dir={tok}", "vocab_size=2000", "-q")
    assert res.exit_code == 0, res.stderr
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(str(tok))
    assert len(t) == 2000 and t.convert_tokens_to_ids("<extra_id_0>") == 1999


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_a_resolved_recipe_loads_again_as_itself(path: Path, data_dir: Path, tmp_path: Path) -> None:
    """What a run records as recipe.yaml (every key, defaults included) validates to the same recipe: what
    resuming compares against, and what --dry-run prints for a user to keep."""
    from finsent_cli.config.loader import recipe_to_yaml

    match = HEADER.match(path.read_text(encoding="utf-8").splitlines()[0])
    assert match
    schema = schema_for(match.group(1))
    cfg = load_recipe(path, schema, data_dir=data_dir, check_paths=False)
    again = tmp_path / "recipe.yaml"
    again.write_text(recipe_to_yaml(cfg), encoding="utf-8")
    assert load_recipe(again, schema, check_paths=False).model_dump() == cfg.model_dump()
