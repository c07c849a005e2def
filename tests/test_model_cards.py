"""The built-in models' cards and manifest are what bench/model_cards.py writes from their eval.json."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from finsent_cli.core.models import builtin
from tests.helpers import REPO


def _cards() -> ModuleType:
    spec = importlib.util.spec_from_file_location("finsent_model_cards", REPO / "bench" / "model_cards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cards = _cards()


def test_shipped_cards_and_manifest_are_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    assert cards.main(["--check"]) == 0, capsys.readouterr().err


def test_the_default_card_states_its_measured_scores_and_licence() -> None:
    text = (builtin.builtin_folder("default") / "README.md").read_text(encoding="utf-8")
    evaluation = json.loads((builtin.builtin_folder("default") / "eval.json").read_text(encoding="utf-8"))
    for r in evaluation["results"]:
        assert f"| {r['accuracy']:.4f} | {r['macro_f1']:.4f} |" in text
    assert "**Licence: MIT**" in text and "sentences/s" in text


@pytest.fixture()
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped models folder, copied and made the built-ins' folder."""
    root = tmp_path / "models"
    shutil.copytree(builtin.MODELS_DIR, root)
    monkeypatch.setattr(builtin, "MODELS_DIR", root)
    readme = tmp_path / "README.md"
    shutil.copy(cards.README, readme)
    monkeypatch.setattr(cards, "README", readme)  # write_all never touches the repository's README
    assert cards.stale() == []
    return root


def test_a_hand_edited_card_is_stale(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = copy / "default" / "README.md"
    card.write_text(card.read_text(encoding="utf-8").replace("0.7348", "0.9348"), encoding="utf-8")
    assert cards.main(["--check"]) == 1
    assert f"{card}: stale" in capsys.readouterr().err
    cards.write_all()
    assert cards.stale() == [] and "0.7348" in card.read_text(encoding="utf-8")


def test_changed_weights_or_scores_make_the_manifest_stale(copy: Path) -> None:
    (copy / "default" / "tokenizer_config.json").write_text("{}\n", encoding="utf-8")
    assert cards.stale() == [f"{copy / 'index.json'}: stale (files, scores or descriptions changed)"]
    cards.write_all()
    assert builtin.verify("default") == copy / "default"
    evaluation = json.loads((copy / "default" / "eval.json").read_text(encoding="utf-8"))
    evaluation["results"][0]["accuracy"] = 0.5
    (copy / "default" / "eval.json").write_text(json.dumps(evaluation), encoding="utf-8")
    assert [line.split(": ", 1)[0] for line in cards.stale()] == [
        str(copy / "index.json"), str(copy / "default" / "README.md"), str(cards.README)
    ]  # the manifest's scores, the card's table and the README's table


def test_a_folder_without_a_template_or_eval_is_reported(copy: Path) -> None:
    (copy / "default" / "eval.json").unlink()
    assert any("no eval.json; run python bench/model_cards.py --eval default" in line for line in cards.stale())
    (copy / "mystery").mkdir()
    with pytest.raises(SystemExit, match="mystery: no entry in MODELS"):
        cards.stale()


def test_the_readme_shows_the_table_and_every_card(copy: Path) -> None:
    readme = cards.README.read_text(encoding="utf-8")
    section = readme[readme.index(cards.README_START) : readme.index(cards.README_END)]
    for name in builtin.builtin_names():
        assert f"| `{name}` |" in section and f"Model card: <code>{name}</code>" in section
    cards.README.write_text(readme.replace("| `default` |", "| `default` | typed |"), encoding="utf-8")
    assert any("built-in models section is stale" in p for p in cards.stale())
