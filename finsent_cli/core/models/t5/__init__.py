"""finsent's T5 family: a small, HF-compatible T5 encoder-decoder with slim-attention decoding.

Papers: Raffel et al. 2020 (T5, arXiv 1910.10683); Graef & Wasielewski 2025 (slim attention,
arXiv 2503.05840). Layout: ``config.py`` sizes, ``layers.py`` blocks, ``model.py`` stacks and decoding,
``cache.py`` caches and byte accounting, ``checkpoint.py`` Hugging Face folders.

Example::

    model = build_t5("t5_tiny", vocab_size=32128)
    out = model(input_ids, attention_mask, labels=labels)          # out.loss, out.logits
    ids = model.generate(input_ids, attention_mask, max_new_tokens=8, cache="slim")
    logp = model.score_targets(input_ids, attention_mask, [[1465, 1], [2841, 1]])  # (B, 2)
"""

from __future__ import annotations

from typing import Any

from .cache import CACHE_MODES, DecoderCache, cache_bytes
from .checkpoint import T5LoadError, load_t5, save_t5
from .config import (
    T5_SIZES,
    FinT5Config,
    t5_base_config,
    t5_config,
    t5_small_config,
    t5_tiny_config,
    t5_v1_1_small_config,
)
from .layers import (
    attention,
    attention_ref,
    relative_position_bucket,
    slim_self_attention,
    slim_self_attention_ref,
    slim_value_weight,
)
from .model import FinT5ForConditionalGeneration, Seq2SeqOutput


def build_t5(name: str, **overrides: Any) -> FinT5ForConditionalGeneration:
    """Build a freshly initialised model of a named size.

    Args:
        name: ``"t5_tiny"``, ``"t5_small"``, ``"t5_v1_1_small"`` or ``"t5_base"`` (``"tiny"`` etc. also work).
        **overrides: ``variant="original"`` for the 2020 layout, or any ``FinT5Config`` field.

    Returns:
        The model (train mode, float32).

    Raises:
        ValueError: unknown size or field.
    """
    return FinT5ForConditionalGeneration(t5_config(name, **overrides))


__all__ = [
    "CACHE_MODES",
    "DecoderCache",
    "FinT5Config",
    "FinT5ForConditionalGeneration",
    "Seq2SeqOutput",
    "T5LoadError",
    "T5_SIZES",
    "attention",
    "attention_ref",
    "build_t5",
    "cache_bytes",
    "load_t5",
    "relative_position_bucket",
    "save_t5",
    "slim_self_attention",
    "slim_self_attention_ref",
    "slim_value_weight",
    "t5_base_config",
    "t5_config",
    "t5_small_config",
    "t5_tiny_config",
    "t5_v1_1_small_config",
]
