"""Decoder caches for T5 generation: full K/V and slim attention, with byte accounting.

Slim attention (Graef & Wasielewski 2025, arXiv 2503.05840) stores, per decoder layer, only the
self-attention keys (values are recomputed as K W_KV) and, for cross-attention, only the encoder
output E once for all layers (keys and values are derived from it on the fly). For T5 this halves
the self-attention cache and shrinks the cross-attention cache by a factor of 2 * num_decoder_layers
when d_model == num_heads * d_kv.

Layout: self-attention buffers are preallocated as (L, B, Tmax, H*Dh) so each step writes in place;
full cross-attention keys/values are (L, B, H, S, Dh), computed once from E.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from .config import FinT5Config

logger = logging.getLogger(__name__)

CACHE_MODES = ("auto", "slim", "full")

SLIM_MAX_FULL_POSITIONS = 4
"""A call that decodes at most this many positions (text-to-text scoring: the label words in one
teacher-forced pass) uses the slim cache: the full cache would first compute every layer's cross-attention
K/V for every row, work that a few positions never pay back. Measured 1.11x-1.55x for slim at every batch
size and source length (``bench/bench_t5_slim.py --task score``, docs/benchmarks.md "Slim or full")."""

SLIM_FROM_SOURCE_TOKENS = 8192
"""Longer decoding uses the slim cache when decoder rows x source length reach this many tokens, and the
full cache below: slim attention trades memory traffic for work per head (scores over d_model columns
instead of d_kv), so it pays once the full cache is large. Measured with 32 new tokens: at 2,048 source
tokens (batch 4 x 512, 16 x 128, 64 x 32) slim ran at 0.87x-1.02x of the full cache, at 8,192 and above
(16 x 512, 64 x 128, 64 x 512) at 1.05x-1.67x, for ``t5_tiny`` and ``t5_small`` alike."""


def choose_mode(batch: int, src_len: int, tgt_len: int) -> str:
    """``"slim"`` or ``"full"`` for one decoding call: the one place ``"auto"`` is decided (for any model
    size; with a non-square W_K, "slim" keeps a slim cross-attention and full self-attention K/V).

    Args:
        batch: decoder rows (inputs x targets per input when scoring).
        src_len: encoder length S.
        tgt_len: decoder positions the call holds.

    Returns:
        ``"slim"`` for short calls (:data:`SLIM_MAX_FULL_POSITIONS`) and large ones
        (:data:`SLIM_FROM_SOURCE_TOKENS`), else ``"full"``.
    """
    if tgt_len <= SLIM_MAX_FULL_POSITIONS or batch * src_len >= SLIM_FROM_SOURCE_TOKENS:
        return "slim"
    return "full"


def resolve_mode(cfg: FinT5Config, mode: str, *, quiet: bool = False) -> tuple[bool, bool]:
    """Which caches are slim for a requested mode (``"auto"`` is resolved by :func:`choose_mode` first).

    Args:
        cfg: model config.
        mode: ``"slim"`` or ``"full"``.
        quiet: no note about the fallback (``"auto"`` picked slim: the caller did not ask for it).

    Returns:
        ``(slim_self, slim_cross)``. Cross-attention can always be slim (no inverse needed); slim
        self-attention needs a square W_K and falls back to full K/V otherwise (with a logged note).

    Raises:
        ValueError: unknown mode.
    """
    if mode not in ("slim", "full"):
        if mode == "auto":
            raise ValueError("cache mode 'auto' is resolved by choose_mode first")
        raise ValueError(f"unknown cache mode {mode!r}; choose one of {CACHE_MODES}")
    if mode == "full":
        return False, False
    if not cfg.slim_self_attention_ok:
        if quiet:
            return False, True
        logger.warning(
            "slim attention: W_K is %d x %d (num_heads * d_kv != d_model), so it has no inverse; "
            "the decoder self-attention falls back to the full K/V cache (cross-attention stays slim)",
            cfg.inner_dim,
            cfg.d_model,
        )
        return False, True
    return True, True


def cache_bytes(
    cfg: FinT5Config,
    batch: int,
    src_len: int,
    tgt_len: int,
    mode: str = "slim",
    dtype: torch.dtype = torch.float32,
) -> dict[str, int]:
    """Bytes held by the decoder cache for one generation call.

    Args:
        cfg: model config.
        batch: number of sequences.
        src_len: encoder length S.
        tgt_len: decoder positions cached T (new tokens, including the start token's position).
        mode: ``"auto"``, ``"slim"`` or ``"full"`` (slim self-attention falls back to full on non-square W_K).
        dtype: cache dtype.

    Returns:
        ``{"self_attention": ..., "cross_attention": ..., "total": ...}`` in bytes. Full:
        self = 2*L*B*T*H*Dh, cross = 2*L*B*S*H*Dh elements. Slim: self = L*B*T*H*Dh, cross = B*S*d_model.

    Raises:
        ValueError: unknown mode.
    """
    auto = mode == "auto"
    if auto:
        mode = choose_mode(batch, src_len, tgt_len)
    slim_self, slim_cross = resolve_mode(cfg, mode, quiet=auto)
    item = torch.empty((), dtype=dtype).element_size()
    L, inner = cfg.num_decoder_layers, cfg.inner_dim
    self_elems = (1 if slim_self else 2) * L * batch * tgt_len * inner
    cross_elems = batch * src_len * cfg.d_model if slim_cross else 2 * L * batch * src_len * inner
    out = {"self_attention": self_elems * item, "cross_attention": cross_elems * item}
    out["total"] = out["self_attention"] + out["cross_attention"]
    return out


@dataclass
class DecoderCache:
    """Mutable decoding state of one generation call (not a module, never saved).

    Attributes:
        keys: (L, B, Tmax, H*Dh) self-attention keys.
        values: (L, B, Tmax, H*Dh) self-attention values, or None when slim.
        enc: (Be, S, d_model) encoder output, kept when cross-attention is slim.
        cross_keys, cross_values: (L, B, H, S, Dh) cross-attention keys/values when full.
        cross_mask: (Be, 1, 1, S) additive padding mask of the encoder output.
        length: positions already cached.
    """

    keys: Tensor
    values: Tensor | None
    enc: Tensor | None
    cross_keys: Tensor | None
    cross_values: Tensor | None
    cross_mask: Tensor
    length: int = 0

    @property
    def slim_self(self) -> bool:
        return self.values is None

    @property
    def slim_cross(self) -> bool:
        return self.enc is not None

    @property
    def max_len(self) -> int:
        return self.keys.shape[2]

    def nbytes(self) -> dict[str, int]:
        """Bytes actually allocated, in the same form as ``cache_bytes``."""
        size = lambda t: 0 if t is None else t.numel() * t.element_size()  # noqa: E731
        out = {
            "self_attention": size(self.keys) + size(self.values),
            "cross_attention": size(self.enc) + size(self.cross_keys) + size(self.cross_values),
        }
        out["total"] = out["self_attention"] + out["cross_attention"]
        return out
