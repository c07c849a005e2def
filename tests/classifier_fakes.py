"""Small classifiers for the eval / predict / explain tests: a sharpened tiny BERT and a keyword model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finsent_cli.core.inference.classifier import Classifier


def sharpened_copy(tiny_bert: Path, dst: Path, scale: float = 400.0, meta: dict[str, Any] | None = None) -> Path:
    """Copy the tiny BERT with its classifier weights scaled, so different texts get visibly different
    probabilities (the random model is nearly uniform otherwise); ``meta`` becomes ``finsent.json``."""
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(tiny_bert)
    with torch.no_grad():
        model.classifier.weight.mul_(scale)
    model.save_pretrained(dst)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (tiny_bert / name).exists():
            shutil.copy(tiny_bert / name, dst / name)
    if meta is not None:
        (dst / "finsent.json").write_text(json.dumps(meta), encoding="utf-8")
    return dst


class KeywordModel(nn.Module):
    """logits = (neg, 0, pos) with pos = sum of ``pos_weights`` and neg = sum of ``neg_weights`` over
    the (unpadded) tokens present, so every probability is a closed-form softmax. Records each call's
    batch size."""

    def __init__(self, pos_weights: dict[int, float], neg_weights: dict[int, float]) -> None:
        super().__init__()
        self.pos_weights, self.neg_weights = pos_weights, neg_weights
        self.calls: list[int] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(input_ids.shape[0]))
        logits = torch.zeros(input_ids.shape[0], 3)  # (B, 3)
        for tok, w in self.pos_weights.items():
            logits[:, 2] += w * ((input_ids == tok) & (attention_mask == 1)).sum(dim=1)
        for tok, w in self.neg_weights.items():
            logits[:, 0] += w * ((input_ids == tok) & (attention_mask == 1)).sum(dim=1)
        return logits


def keyword_classifier(tokenizer_path: Path, pos: dict[str, float], neg: dict[str, float], max_length: int = 64) -> Classifier:
    """A :class:`Classifier` around :class:`KeywordModel`, keyed by whole-word tokens of the MiniLM vocab."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path)

    def ids(words: dict[str, float]) -> dict[int, float]:
        return {tok.convert_tokens_to_ids(w): v for w, v in words.items()}

    model = KeywordModel(ids(pos), ids(neg))
    return Classifier(model, tok, {0: "negative", 1: "neutral", 2: "positive"}, max_length)


def softmax(logits: list[float]) -> list[float]:
    """Plain softmax for hand-computed expectations."""
    t = torch.tensor(logits, dtype=torch.float64)
    return torch.softmax(t, dim=0).tolist()
