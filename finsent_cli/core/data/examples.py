"""Labelled training examples: read per split, tokenised, and class weights from their counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from finsent_cli.config.finetune import FinetuneData
from finsent_cli.core.data.labels import LabelNormaliser, normalise_or_raise
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABEL2ID, LABELS


def load_examples(data: FinetuneData) -> dict[str, list[dict[str, Any]]]:
    """Labelled rows ``{"text", "label"}`` per split (``train``, ``valid``, maybe ``test``).

    Rows of a prepared folder also keep ``raw_text`` (the uncleaned form, hashed for eval's overlap check).

    Raises:
        FinsentError: unreadable files, unknown labels (naming file and line), a missing split.
    """
    from finsent_cli.core.data.readers import read_table
    from finsent_cli.core.data.store import load_prepared

    if data.dir is not None:
        splits = load_prepared(data.dir)
        for name in ("train", "valid"):
            if not splits.get(name):
                raise FinsentError(f"{data.dir}: has no '{name}' split (re-run finsent prep with a validation split)")
        for rows in splits.values():
            for row in rows:
                if row["label"] not in LABEL2ID:
                    raise FinsentError(f"{data.dir}: unknown label {row['label']!r}")
        keep = ("text", "label", "raw_text")
        return {k: [{f: r[f] for f in keep if r.get(f) is not None} for r in v] for k, v in splits.items()}
    files = {name: getattr(data, name) for name in ("train", "valid", "test") if getattr(data, name) is not None}
    raw = {
        name: read_table(path, fmt=data.format, text_column=data.text_column, label_column=data.label_column)[0]
        for name, path in files.items()
    }  # fmt: skip
    norm = LabelNormaliser([r.label for recs in raw.values() for r in recs], data.label_map)
    return {
        name: [{"text": r.text, "label": normalise_or_raise(norm, r.label, r.where)} for r in recs]
        for name, recs in raw.items()
    }


def tokenize_rows(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
    """``{"input_ids", "label"}`` per row, truncated to ``max_length`` tokens."""
    ids = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": x, "label": LABEL2ID[r["label"]]} for x, r in zip(ids, rows, strict=True)]


def class_weights(spec: str | list[float], labels: list[int]) -> torch.Tensor | None:
    """Cross-entropy weights: None, ``balanced`` (n / (3 * count), after King & Zeng 2001 / scikit-learn) or given."""
    if spec == "none":
        return None
    if spec == "balanced":
        counts = Counter(labels)
        return torch.tensor([len(labels) / (len(LABELS) * max(counts[i], 1)) for i in range(len(LABELS))])
    return torch.tensor(spec, dtype=torch.float)
