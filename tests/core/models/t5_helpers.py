"""Shared pieces of the T5 tests."""

from __future__ import annotations

from finsent_cli.core.models.t5 import FinT5Config


def tiny_cfg(**kw: object) -> FinT5Config:
    """A 2+2-layer T5 of width 64 (4 heads of 16: square W_K), fast on CPU; ``kw`` overrides fields."""
    base: dict[str, object] = dict(vocab_size=128, d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, num_decoder_layers=2)
    base.update(kw)
    return FinT5Config(**base)
