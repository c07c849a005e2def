"""SentencePiece tokenizer in T5's layout, loadable by AutoTokenizer with identical ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finsent_cli.config.tokenizer import TokenizerRecipe
from finsent_cli.core.tokenizer import train_tokenizer

SPECIAL = ["Société Générale beats — €5bn 北京 $AAPL", "  spaced\tout  ", "ｆｕｌｌ ｗｉｄｔｈ", "", "emoji 📈 up"]


@pytest.fixture(scope="module")
def corpus(small_corpus: Path) -> Path:
    return small_corpus


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_layout_and_ids_match_sentencepiece(corpus: Path, tmp_path: Path, model_type: str) -> None:
    import sentencepiece as spm
    from transformers import AutoTokenizer

    recipe = TokenizerRecipe(input=[corpus], output_dir=tmp_path / "tok", vocab_size=500, model_type=model_type, reference=None)
    res = train_tokenizer(recipe)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tok" / "spiece.model"))
    assert len(tok) == 500
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == 499
    assert tok.convert_tokens_to_ids("<extra_id_99>") == 400
    assert sp.get_piece_size() == 400
    lines = (corpus / "heldout.txt").read_text().splitlines()[:100] + SPECIAL
    for line in lines:
        assert tok(line)["input_ids"] == sp.encode(line) + [1], line
    # byte fallback: characters never seen in training become byte pieces, not <unk>
    assert 2 not in tok("北京 📈")["input_ids"]
    assert tok.decode(tok("北京 📈 profit")["input_ids"], skip_special_tokens=True) == "北京 📈 profit"
    assert res.report["finsent"]["vocab_size"] == 500 and res.report["finsent"]["unk_rate"] == 0.0
    assert json.loads((tmp_path / "tok" / "report.json").read_text())["model_type"] == model_type


def test_reference_report(corpus: Path, tmp_path: Path) -> None:
    recipe = TokenizerRecipe(input=[corpus], output_dir=tmp_path / "tok", vocab_size=500, reference="minilm")
    rep = train_tokenizer(recipe).report
    assert rep["reference"]["vocab_size"] == 30522
    assert rep["finsent"]["sentences"] == rep["reference"]["sentences"] == 200
    assert rep["finsent"]["mean_tokens"] > 0 and rep["reference"]["mean_tokens"] > 0


def test_vocab_too_large_is_a_clear_error(tmp_path: Path) -> None:
    from finsent_cli.errors import FinsentError

    (tmp_path / "t.txt").write_text("a b c\n" * 50, encoding="utf-8")
    recipe = TokenizerRecipe(input=[tmp_path / "t.txt"], output_dir=tmp_path / "tok", vocab_size=5000, reference=None)
    with pytest.raises(FinsentError, match="sentencepiece: .*lower vocab_size"):
        train_tokenizer(recipe)
    assert not (tmp_path / "tok").exists()
