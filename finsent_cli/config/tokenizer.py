"""Schema of `finsent tokenizer` recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from finsent_cli.config.base import InputFile, InputPath, Schema


class TokenizerRecipe(Schema):
    """Train a SentencePiece model with T5's special-token layout.

    ``input`` is a prepared corpus folder (its ``train.txt`` is used, and its ``heldout.txt`` for the
    report) or text files, one sentence a line.
    """

    input: list[InputPath] = Field(min_length=1)
    output_dir: Path
    model_type: Literal["unigram", "bpe"] = "unigram"
    vocab_size: int = Field(16000, ge=400, le=256000)
    extra_ids: int = Field(100, ge=0, le=1000)
    byte_fallback: bool = True
    character_coverage: float = Field(0.9995, gt=0.9, le=1.0)
    input_sentence_size: int = Field(300000, ge=1000)
    max_sentence_length: int = Field(4192, ge=64)
    model_max_length: int = Field(512, ge=8)
    heldout: InputFile | None = None
    reference: str | None = "minilm"
    seed: int = 13
    num_threads: int = Field(2, ge=1)
