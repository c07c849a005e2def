"""Schema of `finsent prep` recipes (labelled data or an unlabelled pretraining corpus)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from finsent_cli.config.base import InputFile, RawLabel, Schema
from finsent_cli.labels import Label


class LabelledData(Schema):
    """Where labelled examples come from and how to read them.

    Give exactly one of: ``source`` (one file, split here), ``train`` (+ optional ``valid``/``test``:
    keep the split given by separate files), or ``hf_dataset`` (a Hugging Face dataset, online only).
    """

    source: InputFile | None = None
    train: InputFile | None = None
    valid: InputFile | None = None
    test: InputFile | None = None
    hf_dataset: str | None = None
    hf_config: str | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"] = "auto"
    text_column: str = "text"
    label_column: str = "label"
    target_column: str | None = None
    label_map: dict[RawLabel, Label] = Field(default_factory=dict)
    unknown_labels: Literal["error", "drop"] = "error"
    encoding_errors: Literal["strict", "replace"] = "replace"  # as predict: U+FFFD, with a warning naming the lines
    valid_size: float = Field(0.1, ge=0.0, lt=1.0)
    test_size: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 13

    @model_validator(mode="after")
    def _one_source(self) -> LabelledData:
        given = [n for n in ("source", "train", "hf_dataset") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of data.source, data.train (with valid/test) or data.hf_dataset")
        if self.train is None and (self.valid is not None or self.test is not None):
            raise ValueError("data.valid and data.test need data.train")
        if self.valid_size + self.test_size >= 1.0:
            raise ValueError("data.valid_size + data.test_size must be below 1")
        return self


class Corpus(Schema):
    """Unlabelled text for pretraining and tokenizer training: ``.txt`` / ``.txt.gz``, one item a line."""

    files: list[InputFile] = Field(min_length=1)
    min_chars: int = Field(10, ge=1)
    min_words: int = Field(3, ge=1)
    heldout_fraction: float = Field(0.01, gt=0.0, lt=0.5)
    max_lines: int | None = Field(None, ge=1)
    seed: int = 13


class Clean(Schema):
    """Text cleaning; every step is counted with examples in the manifest."""

    nfkc: bool = True
    html_entities: bool = True
    whitespace: bool = True
    urls: Literal["keep", "replace", "remove"] = "keep"
    url_token: str = "<url>"
    user_handles: Literal["keep", "replace", "remove"] = "keep"
    handle_token: str = "@user"
    max_chars: int = Field(5000, ge=1)
    too_long: Literal["error", "drop", "truncate"] = "error"
    keep_raw: bool = True


class Dedup(Schema):
    """Duplicate and conflict handling."""

    exact: bool = True
    normalised: bool = True
    conflicts: Literal["keep", "drop", "majority"] = "majority"
    across_splits: Literal["drop_from_train", "keep"] = "drop_from_train"


class PrepRecipe(Schema):
    """A `finsent prep` recipe: exactly one of ``data`` (labelled) or ``corpus`` (unlabelled)."""

    output_dir: Path
    format: Literal["parquet", "jsonl"] = "parquet"
    data: LabelledData | None = None
    corpus: Corpus | None = None
    clean: Clean = Field(default_factory=Clean)
    dedup: Dedup = Field(default_factory=Dedup)

    @model_validator(mode="after")
    def _one_kind(self) -> PrepRecipe:
        if (self.data is None) == (self.corpus is None):
            raise ValueError("give exactly one of 'data' (labelled examples) or 'corpus' (unlabelled text)")
        return self
