"""T5 building blocks: RMSNorm, feed-forward, relative position bias, attention.

Papers:
    Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
    Transformer" (arXiv 1910.10683): pre-norm blocks, no biases, bucketed relative position bias.
    Zhang & Sennrich 2019, "Root Mean Square Layer Normalization" (arXiv 1910.07467).
    Shazeer 2020, "GLU Variants Improve Transformer" (arXiv 2002.05202): the gated feed-forward of v1.1.
    Graef & Wasielewski 2025, "Slim attention: cut your context memory in half without loss of
    accuracy" (arXiv 2503.05840): K-only self-attention cache, query-side projection for cross-attention.

Attribute names (``SelfAttention``, ``EncDecAttention``, ``DenseReluDense``, ``layer[i]``) are the
Hugging Face T5 names on purpose: the state dict then loads and saves without a key map.

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (``attention``) with the
position bias, causal mask and padding mask folded into one additive mask; ``attention_ref`` is the
plain softmax reference with the same signature; slim self-attention has its own einsum kernel
``slim_self_attention`` with ``slim_self_attention_ref`` beside it. T5 does not scale q.k by Dh^-0.5 (the
scale is folded into the initialisation), hence ``scale=1.0``.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FinT5Config

logger = logging.getLogger(__name__)

# Slim attention recovers V from the cached K through W_K^{-1}, so rounding in K (the cache dtype) is
# amplified by up to cond(W_K). On random weights the logit error measured about cond * eps / 10
# (within a factor of 4), so a note is logged when cond(W_K) * eps(dtype) exceeds 0.1 (about 1%).
SLIM_ERROR_NOTE = 0.1


# ---------------------------------------------------------------------- attention kernels
def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float = 0.0) -> Tensor:
    """Unscaled attention through PyTorch SDPA.

    Args:
        q: (B, H, Tq, E) queries.
        k: (B, H, Tk, E) keys (heads may broadcast: size 1).
        v: (B, H, Tk, Ev) values; Ev may differ from E (slim cross-attention uses E = Ev = d_model).
        mask: additive float mask broadcastable to (B, H, Tq, Tk), or None.
        dropout_p: attention dropout (training only).

    Returns:
        (B, H, Tq, Ev) attention output.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=1.0)


def attention_ref(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float = 0.0) -> Tensor:
    """Reference for ``attention``: softmax(q k^T + mask) v, computed in float32 for the softmax."""
    scores = torch.matmul(q, k.transpose(-1, -2))  # (B, H, Tq, Tk)
    if mask is not None:
        scores = scores + mask
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return torch.matmul(weights, v)  # (B, H, Tq, Ev)


def slim_self_attention(q: Tensor, k_flat: Tensor, w_kv: Tensor, mask: Tensor | None) -> Tensor:
    """Self-attention from a K-only cache (slim attention), without forming V.

    softmax(q k^T) V = (softmax(q k^T) K) W_KV: each head's weights mix the *full* key rows (all heads,
    width H*Dh) and the result goes through that head's W_KV block. Written with einsum rather than
    SDPA because V is shared by all heads here: SDPA would need it expanded per head and materialises
    that copy (measured 5-10x slower on CPU at batch 64).

    Args:
        q: (B, H, Tq, Dh) queries.
        k_flat: (B, T, H*Dh) cached keys, heads side by side.
        w_kv: (H, H*Dh, Dh) per-head W_KV (see ``slim_value_weight``).
        mask: additive mask broadcastable to (B, H, Tq, T), or None.

    Returns:
        (B, H, Tq, Dh) attention output, equal to attention with V = K W_KV.
    """
    B, H, Tq, Dh = q.shape
    T = k_flat.shape[1]
    scores = torch.einsum("bhqd,bthd->bhqt", q, k_flat.view(B, T, H, Dh))  # (B, H, Tq, T)
    if mask is not None:
        scores = scores + mask
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    mixed = torch.einsum("bhqt,bte->bhqe", weights, k_flat)  # (B, H, Tq, H*Dh)
    return torch.einsum("bhqe,hed->bhqd", mixed, w_kv)  # (B, H, Tq, Dh)


def slim_self_attention_ref(q: Tensor, k_flat: Tensor, w_kv: Tensor, mask: Tensor | None) -> Tensor:
    """Reference for ``slim_self_attention``: rebuild V = K W_KV explicitly, then plain attention."""
    B, H, Tq, Dh = q.shape
    T = k_flat.shape[1]
    k = k_flat.view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
    v = torch.einsum("bte,hed->bhtd", k_flat, w_kv)  # (B, H, T, Dh)
    return attention_ref(q, k, v, mask)


ATTENTION_IMPLS: dict[str, Callable[..., Tensor]] = {"sdpa": attention, "ref": attention_ref}
SLIM_SELF_IMPLS: dict[str, Callable[..., Tensor]] = {"sdpa": slim_self_attention, "ref": slim_self_attention_ref}


# ---------------------------------------------------------------------- norm and feed-forward
class RMSNorm(nn.Module):
    """Scale-only layer norm (no mean subtraction, no bias); statistics in float32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(self.weight.dtype)


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name == "gelu_new":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "silu":
        return F.silu
    raise ValueError(f"unknown activation {name!r}")


class FeedForward(nn.Module):
    """Position-wise feed-forward without biases: ``wo(act(wi x))`` or, gated, ``wo(act(wi_0 x) * wi_1 x)``."""

    def __init__(self, cfg: FinT5Config) -> None:
        super().__init__()
        self.gated = cfg.is_gated
        if self.gated:
            self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
            self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        else:
            self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.act = _activation(cfg.activation)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x: Tensor) -> Tensor:
        if self.gated and self.training:  # one matmul for both input projections while training
            gate, lin = F.linear(x, torch.cat([self.wi_0.weight, self.wi_1.weight])).chunk(2, dim=-1)  # (B, T, d_ff) each
            h = self.act(gate) * lin
        elif self.gated:
            h = self.act(self.wi_0(x)) * self.wi_1(x)  # (B, T, d_ff)
        else:
            h = self.act(self.wi(x))  # (B, T, d_ff)
        return self.wo(self.dropout(h))


# ---------------------------------------------------------------------- relative position bias
def relative_position_bucket(
    relative_position: Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> Tensor:
    """Map key-minus-query offsets to T5 buckets.

    Half of the buckets (per direction when bidirectional) are exact offsets 0..max_exact-1; the rest
    are log-spaced up to ``max_distance``, and every larger offset falls in the last bucket. A causal
    decoder only ever looks back, so positive offsets share bucket 0 there. After Raffel et al. 2020
    (the Mesh TensorFlow bucketing).

    Args:
        relative_position: integer tensor of ``key_pos - query_pos``.
        bidirectional: encoder (True) or causal decoder (False).
        num_buckets: total buckets.
        max_distance: offsets with ``|offset| >= max_distance`` share the last bucket.

    Returns:
        Long tensor of buckets in ``[0, num_buckets)``, same shape as the input.
    """
    buckets = torch.zeros_like(relative_position, dtype=torch.long)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        n = relative_position.abs()
    else:
        n = (-relative_position).clamp(min=0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    # clamp(min=max_exact) keeps log() finite; those entries take the is_small branch anyway
    log_ratio = torch.log(n.clamp(min=max_exact).float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, n, large)


# ---------------------------------------------------------------------- attention module
class T5Attention(nn.Module):
    """Multi-head attention without biases or q.k scaling; block 0 of a stack also owns the position bias.

    Args:
        cfg: model config.
        has_relative_bias: create ``relative_attention_bias`` (only block 0's self-attention does).
        bidirectional: bucket positive offsets separately (encoder) or not (decoder).
    """

    def __init__(self, cfg: FinT5Config, has_relative_bias: bool = False, bidirectional: bool = True) -> None:
        super().__init__()
        self.n_heads, self.d_kv, self.d_model = cfg.num_heads, cfg.d_kv, cfg.d_model
        inner = cfg.inner_dim
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.dropout_p = cfg.dropout_rate
        self.impl = "sdpa"  # set for the whole model by FinT5ForConditionalGeneration.set_attention_impl
        self.has_relative_bias = has_relative_bias
        if has_relative_bias:
            self.relative_attention_bias = nn.Embedding(cfg.relative_attention_num_buckets, cfg.num_heads)
            # Buckets depend only on the offset and saturate at +-max_distance, so one table of
            # 2*max_distance+1 entries serves every length (offsets beyond it are clamped).
            self.max_distance = cfg.relative_attention_max_distance
            offsets = torch.arange(-self.max_distance, self.max_distance + 1)
            table = relative_position_bucket(
                offsets, bidirectional, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
            )
            self.register_buffer("bucket_table", table, persistent=False)
        self._w_kv: Tensor | None = None
        self._w_kv_key: tuple | None = None

    # -------------------------------------------------------------- helpers
    def _heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_kv).transpose(1, 2)  # (B, H, T, Dh)

    def _merge(self, x: Tensor) -> Tensor:
        B, H, T, Dh = x.shape
        return x.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, H*Dh)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        p = self.dropout_p if self.training else 0.0
        return ATTENTION_IMPLS[self.impl](q, k, v, mask, p)

    def compute_bias(self, q_len: int, k_len: int, q_offset: int = 0) -> Tensor:
        """Relative position bias for queries at ``q_offset..q_offset+q_len-1`` and keys ``0..k_len-1``.

        Returns:
            (1, H, Tq, Tk) additive bias in the embedding dtype.
        """
        device = self.bucket_table.device
        q_pos = torch.arange(q_offset, q_offset + q_len, device=device)[:, None]  # (Tq, 1)
        k_pos = torch.arange(k_len, device=device)[None, :]  # (1, Tk)
        idx = (k_pos - q_pos).clamp(-self.max_distance, self.max_distance) + self.max_distance  # (Tq, Tk)
        bias = self.relative_attention_bias(self.bucket_table[idx])  # (Tq, Tk, H)
        return bias.permute(2, 0, 1).unsqueeze(0)  # (1, H, Tq, Tk)

    # -------------------------------------------------------------- no-cache path (training, encoder)
    def forward(self, x: Tensor, mask: Tensor | None, source: Tensor | None = None) -> Tensor:
        """Attention of ``x`` over itself (``source=None``) or over ``source`` (cross-attention).

        Args:
            x: (B, Tq, d_model) normalized hidden states.
            mask: additive mask broadcastable to (B, H, Tq, Tk), bias already folded in.
            source: (B, Tk, d_model) encoder output for cross-attention.

        Returns:
            (B, Tq, d_model).
        """
        inner = self.n_heads * self.d_kv
        if not self.training:
            src = x if source is None else source
            q, k, v = self.q(x), self.k(src), self.v(src)  # (B, T, H*Dh) each
        elif source is None:
            # Training: one matmul for q, k and v (fewer, larger GEMMs; the weight copy is small next to B*T rows)
            q, k, v = F.linear(x, torch.cat([self.q.weight, self.k.weight, self.v.weight])).split(inner, dim=-1)
        else:
            q = self.q(x)
            k, v = F.linear(source, torch.cat([self.k.weight, self.v.weight])).split(inner, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, H, T, Dh)
        return self.o(self._merge(self._attend(q, k, v, mask)))

    # -------------------------------------------------------------- cached decoding
    def self_attention_full(self, x: Tensor, mask: Tensor, k_cache: Tensor, v_cache: Tensor, start: int) -> Tensor:
        """Decoder self-attention with a full K/V cache.

        Args:
            x: (B, Tq, d_model) normalized new positions.
            mask: (B, H, Tq, start+Tq) additive mask.
            k_cache, v_cache: (B, Tmax, H*Dh) buffers; positions ``start..start+Tq-1`` are written.
            start: number of positions already cached.

        Returns:
            (B, Tq, d_model).
        """
        end = start + x.shape[1]
        k_cache[:, start:end] = self.k(x)
        v_cache[:, start:end] = self.v(x)
        k = self._heads(k_cache[:, :end])  # (B, H, T, Dh)
        v = self._heads(v_cache[:, :end])  # (B, H, T, Dh)
        return self.o(self._merge(self._attend(self._heads(self.q(x)), k, v, mask)))

    def self_attention_slim(self, x: Tensor, mask: Tensor, k_cache: Tensor, start: int) -> Tensor:
        """Decoder self-attention with a K-only cache (slim attention, see ``slim_self_attention``).

        Only K is stored and read; the price is an (H*Dh x Dh) matmul per head per new position, and
        each head's weighted sum runs over H*Dh instead of Dh columns.

        Args:
            x: (B, Tq, d_model) normalized new positions.
            mask: (B, H, Tq, start+Tq) additive mask.
            k_cache: (B, Tmax, H*Dh) buffer; positions ``start..start+Tq-1`` are written.
            start: number of positions already cached.

        Returns:
            (B, Tq, d_model).
        """
        end = start + x.shape[1]
        k_cache[:, start:end] = self.k(x)
        kernel = SLIM_SELF_IMPLS[self.impl]
        out = kernel(self._heads(self.q(x)), k_cache[:, :end], self.slim_value_weight(), mask)  # (B, H, Tq, Dh)
        return self.o(self._merge(out))

    def cross_attention_full(self, x: Tensor, mask: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Cross-attention over precomputed encoder keys/values ``k``, ``v`` of shape (B, H, S, Dh)."""
        return self.o(self._merge(self._attend(self._heads(self.q(x)), k, v, mask)))

    def cross_attention_slim(self, x: Tensor, mask: Tensor, enc: Tensor) -> Tensor:
        """Cross-attention that reads only the encoder output E (slim attention, option 2).

        q_h . (W_K,h e) = (W_K,h^T q_h) . e, and P_h (E W_V,h^T) = (P_h E) W_V,h^T: the query moves into
        the encoder's space and the value projection is applied after the weighted sum. E is shared by
        every head and every decoder layer, so all heads (and ``g`` decoder rows per encoder row, used
        when scoring several targets per input) are folded into query rows of one attention call.

        Args:
            x: (Be*g, Tq, d_model) normalized decoder states.
            mask: (Be, 1, 1, S) additive padding mask.
            enc: (Be, S, d_model) encoder output.

        Returns:
            (Be*g, Tq, d_model).
        """
        Bq, Tq, _ = x.shape
        Be, S, D = enc.shape
        H, Dh = self.n_heads, self.d_kv
        g = Bq // Be
        q = self._heads(self.q(x))  # (Bq, H, Tq, Dh)
        q_e = torch.einsum("bhqd,hde->bhqe", q, self.k.weight.view(H, Dh, D))  # (Bq, H, Tq, D)
        q_e = q_e.reshape(Be, 1, g * H * Tq, D)  # (Be, 1, g*H*Tq, D)
        e = enc.unsqueeze(1)  # (Be, 1, S, D)
        mixed = self._attend(q_e, e, e, mask)  # (Be, 1, g*H*Tq, D)
        mixed = mixed.view(Bq, H, Tq, D)  # (Bq, H, Tq, D)
        out = torch.einsum("bhqe,hde->bhqd", mixed, self.v.weight.view(H, Dh, D))  # (Bq, H, Tq, Dh)
        return self.o(self._merge(out))

    def slim_value_weight(self) -> Tensor:
        """W_KV per head, (H, H*Dh, Dh), with V[..., h, :] = K_flat @ W_KV[h].

        With nn.Linear's (out, in) layout, K = X W_K^T and V = X W_V^T; for square W_K,
        X = K W_K^{-T}, so V = K (W_K^{-T} W_V^T). The product is solved in float64 and stored in the
        weight dtype; it is recomputed only when W_K or W_V change (tracked by tensor version).

        Raises:
            ValueError: when W_K is not square (d_model != num_heads * d_kv).
        """
        wk, wv = self.k.weight, self.v.weight
        key = (wk.data_ptr(), wk._version, wv.data_ptr(), wv._version, wk.dtype, wk.device)
        if self._w_kv is None or self._w_kv_key != key:
            self._w_kv = slim_value_weight(wk, wv, self.n_heads)
            self._w_kv_key = key
            cond = torch.linalg.cond(wk.detach().double()).item()
            estimate = cond * torch.finfo(wk.dtype).eps
            if estimate > SLIM_ERROR_NOTE:
                logger.warning(
                    "slim attention: cond(W_K) = %.3g amplifies the rounding of %s keys (cond * eps = %.2g); "
                    "values recomputed as K W_KV may lose accuracy, use cache='full' where exact logits matter",
                    cond,
                    str(wk.dtype).removeprefix("torch."),
                    estimate,
                )
        return self._w_kv


def slim_value_weight(w_k: Tensor, w_v: Tensor, n_heads: int) -> Tensor:
    """Per-head W_KV = W_K^{-1} W_V (paper notation, row vectors) from nn.Linear weights.

    Args:
        w_k: (H*Dh, d_model) key projection weight, must be square.
        w_v: (H*Dh, d_model) value projection weight.
        n_heads: H.

    Returns:
        (H, H*Dh, Dh) in ``w_k.dtype``: block h maps the full key row to head h's value.

    Raises:
        ValueError: when ``w_k`` is not square.
    """
    inner, d_model = w_k.shape
    if inner != d_model:
        raise ValueError(
            f"slim attention needs a square W_K (d_model == num_heads * d_kv), got {inner} x {d_model}"
        )
    # Solve W_K^T M = W_V^T rather than forming the inverse: M = W_K^{-T} W_V^T maps K rows to V rows.
    m = torch.linalg.solve(w_k.detach().double().T, w_v.detach().double().T)  # (H*Dh, H*Dh)
    dh = inner // n_heads
    return m.view(inner, n_heads, dh).permute(1, 0, 2).contiguous().to(w_k.dtype)  # (H, H*Dh, Dh)


# ---------------------------------------------------------------------- sublayers and block
class SelfAttentionLayer(nn.Module):
    """Pre-norm self-attention sublayer (HF name ``layer.0``); returns the residual branch."""

    def __init__(self, cfg: FinT5Config, has_relative_bias: bool, bidirectional: bool) -> None:
        super().__init__()
        self.SelfAttention = T5Attention(cfg, has_relative_bias, bidirectional)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)


class CrossAttentionLayer(nn.Module):
    """Pre-norm cross-attention sublayer (HF name ``layer.1`` in decoder blocks)."""

    def __init__(self, cfg: FinT5Config) -> None:
        super().__init__()
        self.EncDecAttention = T5Attention(cfg)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)


class FeedForwardLayer(nn.Module):
    """Pre-norm feed-forward sublayer (HF name ``layer.1`` / ``layer.2``)."""

    def __init__(self, cfg: FinT5Config) -> None:
        super().__init__()
        self.DenseReluDense = FeedForward(cfg)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, x: Tensor) -> Tensor:
        return self.DenseReluDense(self.layer_norm(x))


class T5Block(nn.Module):
    """One encoder or decoder block: ``layer`` = [self-attention, (cross-attention), feed-forward].

    The cache-free path is ``forward``; cached decoding goes through ``T5Stack`` which calls the
    attention methods directly, so the block keeps only the sublayers.
    """

    def __init__(self, cfg: FinT5Config, is_decoder: bool, has_relative_bias: bool) -> None:
        super().__init__()
        self.is_decoder = is_decoder
        layers: list[nn.Module] = [SelfAttentionLayer(cfg, has_relative_bias, bidirectional=not is_decoder)]
        if is_decoder:
            layers.append(CrossAttentionLayer(cfg))
        layers.append(FeedForwardLayer(cfg))
        self.layer = nn.ModuleList(layers)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    @property
    def self_attn(self) -> T5Attention:
        return self.layer[0].SelfAttention

    @property
    def cross_attn(self) -> T5Attention:
        return self.layer[1].EncDecAttention

    def forward(self, x: Tensor, mask: Tensor, enc: Tensor | None = None, enc_mask: Tensor | None = None) -> Tensor:
        """Cache-free block: (B, T, d_model) -> (B, T, d_model)."""
        x = x + self.dropout(self.self_attn(self.layer[0].layer_norm(x), mask))
        if self.is_decoder:
            x = x + self.dropout(self.cross_attn(self.layer[1].layer_norm(x), enc_mask, source=enc))
        return x + self.dropout(self.layer[-1](x))
