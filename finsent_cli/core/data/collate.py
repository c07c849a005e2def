"""Turning tokenised examples into padded batches, for training and for inference."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def pad_collate(features: Sequence[dict[str, Any]], pad_id: int, multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Stack tokenised examples, right-padding to the longest in the batch.

    Args:
        features: dicts with ``input_ids`` (list of ints) and optionally ``label`` (int).
        pad_id: the tokenizer's padding id.
        multiple_of: round the padded length up to a multiple of this (8 helps tensor cores).

    Returns:
        ``input_ids`` and ``attention_mask`` of shape (B, T), and ``labels`` (B,) when given.
    """
    longest = max(len(f["input_ids"]) for f in features)
    width = math.ceil(longest / multiple_of) * multiple_of
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(features), width), dtype=torch.long)  # (B, T)
    for i, f in enumerate(features):
        ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"], dtype=torch.long)
        mask[i, : len(f["input_ids"])] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if "label" in features[0]:
        out["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
    return out
