"""Pre-norm residual blocks for the Mamba adapters: a Mamba-2 block and a self-attention block.

Papers:
    Dao & Gu 2024, "Transformers are SSMs" (arXiv 2405.21060): the Mamba-2 mixer (``mixer.py``).
    Vaswani et al. 2017, "Attention Is All You Need" (arXiv 1706.03762): multi-head self-attention.
    Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture" (arXiv 2002.04745): pre-norm.
    Zhang & Sennrich 2019, "Root Mean Square Layer Normalization" (arXiv 1910.07467).

Both blocks are ``x = x + drop(mixer(norm(x))); x = x + drop(mlp(norm(x)))`` with the mixer a Mamba-2
layer or self-attention, take ``forward(x, mask)`` with mask (B, T) = 1 for real tokens, and return
zeros at padded positions, so nothing from padding reaches the next block or a pooled summary.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mixer import Mamba2Mixer


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned scale (computed in float32).

    Args:
        dim: channels (the last axis).
        eps: added to the mean square.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """(..., dim) -> (..., dim), x's dtype."""
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (h * self.weight.float()).to(x.dtype)


class MLP(nn.Module):
    """Linear -> GELU -> Linear, hidden width ``ratio * dim``."""

    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.fc2 = nn.Linear(ratio * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _keep(mask: Tensor | None, x: Tensor) -> Tensor | None:
    return None if mask is None else mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)


class MambaBlock(nn.Module):
    """Pre-norm Mamba-2 block: the mixer and an MLP, each on a residual branch.

    Args:
        d_model: width.
        dropout: dropout on both residual branches.
        mlp_ratio: MLP hidden width / d_model.
        **mixer_kwargs: for :class:`Mamba2Mixer` (``d_state``, ``d_conv``, ``expand``, ``head_dim``,
            ``ngroups``, ``kernels``).

    Raises:
        ValueError: the mixer's shapes do not fit (see :class:`Mamba2Mixer`).
    """

    def __init__(self, d_model: int, dropout: float = 0.0, mlp_ratio: int = 4, **mixer_kwargs: Any) -> None:
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.mixer = Mamba2Mixer(d_model, **mixer_kwargs)
        self.norm2 = RMSNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, T, d_model), mask (B, T) or None -> (B, T, d_model), zero at padded positions.

        The mixer is causal and skips padded steps, so real positions never read padding (right, left or
        in between).
        """
        keep = _keep(mask, x)
        x = x + self.drop(self.mixer(self.norm1(x), mask))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x if keep is None else x * keep


class AttentionBlock(nn.Module):
    """Pre-norm bidirectional self-attention block with a key padding mask, then the MLP.

    Args:
        d_model: width.
        num_heads: attention heads (must divide d_model).
        dropout: dropout on both residual branches.
        mlp_ratio: MLP hidden width / d_model.

    Raises:
        ValueError: num_heads does not divide d_model.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, mlp_ratio: int = 4) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"attention_heads ({num_heads}) must divide the hidden size ({d_model})")
        self.num_heads = num_heads
        self.norm1 = RMSNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = RMSNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio)
        self.drop = nn.Dropout(dropout)

    def attend(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """Multi-head self-attention over real keys only: (B, T, d_model) -> (B, T, d_model)."""
        bsz, t, d = x.shape
        qkv = self.qkv(x).view(bsz, t, 3, self.num_heads, d // self.num_heads)  # (B, T, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
        bias = None
        if mask is not None:
            # Additive rather than boolean: a row with no real key (an all-padding sequence) then averages
            # instead of turning into NaN.
            bias = torch.zeros(bsz, 1, 1, t, dtype=q.dtype, device=q.device)  # (B, 1, 1, T)
            bias = bias.masked_fill(mask[:, None, None, :] == 0, torch.finfo(q.dtype).min)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, T, Dh)
        return self.proj(out.transpose(1, 2).reshape(bsz, t, d))  # (B, T, d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, T, d_model), mask (B, T) or None -> (B, T, d_model), zero at padded positions."""
        keep = _keep(mask, x)
        x = x + self.drop(self.attend(self.norm1(x), mask))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x if keep is None else x * keep
