"""The token file: built once per tokenizer, documents joined with EOS, packed blocks, clear errors."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from finsent_cli.config.tokenizer import TokenizerRecipe
from finsent_cli.core.data.packing import packed_blocks, token_file, tokenizer_hash
from finsent_cli.core.data.spans import SpanCorruption, sentinel_ids
from finsent_cli.core.tokenizer import train_tokenizer
from finsent_cli.errors import FinsentError
from tests.helpers import CORPUS_WORDS as WORDS


@pytest.fixture(scope="module")
def tok_dir(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tok"
    train_tokenizer(TokenizerRecipe(input=[small_corpus], output_dir=out, vocab_size=500, reference=None))
    return out


@pytest.fixture(scope="module")
def tokenizer(tok_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir))


def test_documents_joined_with_eos_uint16_and_built_once(tmp_path: Path, tok_dir: Path, tokenizer) -> None:
    texts = ["profit rose", "", "shares fell sharply", "bank dividend"]
    src = tmp_path / "train.txt.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(texts) + "\n")
    key = tokenizer_hash(tok_dir)
    tokens = token_file(src, tokenizer, key, tmp_path / "cache", batch_lines=2)
    assert tokens.dtype == np.uint16
    expected = [t for text in texts if text for t in (*tokenizer(text, add_special_tokens=False)["input_ids"], 1)]
    assert tokens.tolist() == expected and tokens[-1] == tokenizer.eos_token_id
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    where = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:8]
    assert files == [f"train.txt.gz.{where}.{key[:16]}.json", f"train.txt.gz.{where}.{key[:16]}.tokens"]
    stamp = (tmp_path / "cache" / files[1]).stat().st_mtime_ns
    again = token_file(src, tokenizer, key, tmp_path / "cache")  # cached: not rebuilt
    assert again.tolist() == expected and (tmp_path / "cache" / files[1]).stat().st_mtime_ns == stamp
    other = token_file(src, tokenizer, "f" * 64, tmp_path / "cache")  # another tokenizer: its own file
    assert other.tolist() == expected and len(list((tmp_path / "cache").iterdir())) == 4
    (tmp_path / "b").mkdir()
    twin = tmp_path / "b" / "train.txt.gz"  # another corpus of the same name: its own file, the first kept
    with gzip.open(twin, "wt", encoding="utf-8") as fh:
        fh.write("bank dividend\n")
    bank = [*tokenizer("bank dividend", add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    assert token_file(twin, tokenizer, key, tmp_path / "cache").tolist() == bank
    assert token_file(src, tokenizer, key, tmp_path / "cache").tolist() == expected
    assert (tmp_path / "cache" / files[1]).stat().st_mtime_ns == stamp and len(list((tmp_path / "cache").iterdir())) == 6


def test_packed_blocks_feed_span_corruption(tmp_path: Path, tok_dir: Path, tokenizer) -> None:
    src = tmp_path / "c.txt"
    src.write_text("\n".join(" ".join(WORDS[i % 14 :] + WORDS[: i % 14]) for i in range(200)) + "\n", encoding="utf-8")
    tokens = token_file(src, tokenizer, tokenizer_hash(tok_dir), tmp_path)
    sc = SpanCorruption(32, sentinel_ids(tokenizer, 10), tokenizer.eos_token_id, seed=1)
    raw, target_length = sc.lengths
    blocks = packed_blocks(tokens, raw)
    assert blocks.shape == (len(tokens) // raw, raw) and np.shares_memory(blocks, tokens)  # a view, no copy
    inputs, targets = sc(blocks[3], epoch=0, index=3)
    assert len(inputs) == 32 and len(targets) == target_length
    assert targets[0] == tokenizer.convert_tokens_to_ids("<extra_id_0>")


def test_corpus_errors(tmp_path: Path, tok_dir: Path, tokenizer) -> None:
    key = tokenizer_hash(tok_dir)
    with pytest.raises(FinsentError, match="corpus file not found"):
        token_file(tmp_path / "nope.txt", tokenizer, key, tmp_path)
    (tmp_path / "blank.txt").write_text("\n  \n\n", encoding="utf-8")
    with pytest.raises(FinsentError, match="no text the tokenizer turns into tokens"):
        token_file(tmp_path / "blank.txt", tokenizer, key, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing half-written
    (tmp_path / "latin1.txt").write_bytes("profit rose\nGewinn gestiegen \u00fcber Plan\n".encode("latin-1"))
    with pytest.raises(FinsentError, match=r"latin1.txt: line 2 is not UTF-8 text"):
        token_file(tmp_path / "latin1.txt", tokenizer, key, tmp_path / "cache")
    text = "".join(f"profit rose {i * 7919 % 100003}\n" for i in range(3000)).encode()
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(text)[:2000])
    with pytest.raises(FinsentError, match=r"cut.txt.gz: damaged gzip file"):
        token_file(tmp_path / "cut.txt.gz", tokenizer, key, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.tokens"))  # nothing half-written
    (tmp_path / "short.txt").write_text("profit\n", encoding="utf-8")
    with pytest.raises(FinsentError, match="fewer than one block of 568"):
        packed_blocks(token_file(tmp_path / "short.txt", tokenizer, key, tmp_path), 568, where="short.txt")
    with pytest.raises(FinsentError, match="no tokenizer here"):
        tokenizer_hash(tmp_path)
