"""Adapter kind ``mamba``: stacked Mamba-2 blocks over a frozen encoder, fused by a softmax gate.

After "Mamba based Adapter Fine-tuning Approach for Financial Sentiment Analysis" (Smart Media Journal
14(10), 2025, doi 10.30693/SMJ.2025.14.10.118): FinBERT frozen, Mamba blocks on its output, a gating
network over the blocks' outputs, residual to the encoder's pooled vector. The study ran the blocks on
the single [CLS] vector, a sequence of length one, where a sequence model has nothing to scan; here
``scan="tokens"`` (the default) runs them over all token states, and ``scan="cls"`` keeps the study's
design for comparison. Mamba-2 blocks: Dao & Gu 2024, "Transformers are SSMs" (arXiv 2405.21060).

Initialisation: the fused vector reaches the output through ``readout`` (RMSNorm, then a Linear whose
weight and bias start at zero), so a fresh adapter returns ``pooled`` exactly and training starts from
the encoder's own features, as LoRA's zero B (Hu et al. 2021, arXiv 2106.09685) and ControlNet's zero
convolutions (Zhang et al. 2023, arXiv 2302.05543). A zero projection rather than zero-initialised
residual branches in every block, because the blocks' identity would still pass the token mean through
and the output would start at pooled + mean(hidden); rather than a small learned scale (LayerScale),
because a per-channel scale grows by about the learning rate per step, which at fine-tuning rates keeps
the adapter muted for thousands of steps. The price: at the very first step only ``readout.proj`` gets a
gradient; from the second step on everything does. The gate starts at zero too (uniform weights).

Padding: the blocks mask padded positions out of the recurrence and zero them on output, and the
summaries are means over real tokens, so extra padding (right or left) does not change the result.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from finsent_cli.core.models.adapters import FusionAdapter

from .blocks import MambaBlock, RMSNorm
from .ops import check_adapter_kernels, check_kernels

SCAN_MODES = ("tokens", "cls")


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over real positions, in float32: x (B, T, H), mask (B, T) -> (B, H) (zeros for no real position)."""
    m = mask.to(torch.float32).unsqueeze(-1)  # (B, T, 1)
    return (x.float() * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class FusionReadout(nn.Module):
    """RMSNorm, then a zero-initialised Linear: the adapter's contribution, zero until it trains."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.norm = RMSNorm(hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, fused: Tensor) -> Tensor:
        """(B, H) -> (B, H)."""
        return self.proj(self.norm(fused))

    def mix(self, summaries: list[Tensor], gate_logits: Tensor, pooled: Tensor) -> tuple[Tensor, Tensor]:
        """The gated fusion both adapter kinds end with: ``pooled + readout(sum_i softmax(gate)_i p_i)``.

        Args:
            summaries: N tensors (B, H), one per block or expert.
            gate_logits: (B, N) the gate's scores for them.
            pooled: (B, H) the encoder's pooled output.

        Returns:
            The adapted pooled vector (B, H) in pooled's dtype, and the gate's weights (B, N), detached.
        """
        p = torch.stack(summaries, dim=1)  # (B, N, H)
        g = torch.softmax(gate_logits.float(), dim=-1)  # (B, N)
        fused = (g.unsqueeze(-1) * p).sum(dim=1)  # (B, H)
        return pooled + self(fused.to(self.proj.weight.dtype)).to(pooled.dtype), g.detach()


class MambaAdapter(nn.Module):
    """N Mamba-2 blocks between a frozen encoder and the head, their summaries mixed by a softmax gate.

    ``forward`` returns ``pooled + readout(sum_i g_i p_i)``, where p_i is the masked mean of the token
    states after block i (``scan="tokens"``) or block i's output for the pooled vector run as a sequence
    of one (``scan="cls"``), and ``g = softmax(Linear(pooled))``.

    Args:
        hidden_size: the encoder's hidden size H.
        num_layers: Mamba blocks N.
        d_state, d_conv, expand, head_dim: the Mamba-2 mixer's sizes (``expand * H`` must divide by head_dim).
        dropout: residual dropout in the blocks.
        mlp_ratio: the blocks' MLP width / H.
        scan: ``"tokens"`` or ``"cls"``.
        kernels: ``"auto"``, ``"off"`` or ``"required"`` (see ``ops.select_ops``).

    Raises:
        ValueError: an unknown scan or kernels value, or head_dim not dividing expand * hidden_size.
        FinsentError: ``kernels="required"`` without the CUDA kernels.

    Attributes:
        last_gate: (B, N) gate weights of the last forward (detached), None before the first.
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        head_dim: int = 32,
        dropout: float = 0.1,
        mlp_ratio: int = 4,
        scan: str = "tokens",
        kernels: str = "auto",
    ) -> None:
        super().__init__()
        if scan not in SCAN_MODES:
            raise ValueError(f"scan must be one of {', '.join(SCAN_MODES)}; got {scan!r}")
        check_kernels(kernels)
        self.scan = scan
        mixer = {"d_state": d_state, "d_conv": d_conv, "expand": expand, "head_dim": head_dim, "kernels": kernels}
        self.blocks = nn.ModuleList(MambaBlock(hidden_size, dropout, mlp_ratio, **mixer) for _ in range(num_layers))
        self.gate = nn.Linear(hidden_size, num_layers)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.readout = FusionReadout(hidden_size)
        self.last_gate: Tensor | None = None

    def forward(self, hidden: Tensor, mask: Tensor, pooled: Tensor) -> Tensor:
        """The adapted pooled vector.

        Args:
            hidden: (B, T, H) the encoder's token states.
            mask: (B, T) 1 for real tokens, 0 for padding.
            pooled: (B, H) the encoder's pooled output.

        Returns:
            (B, H), pooled's dtype.
        """
        dtype = self.gate.weight.dtype
        if self.scan == "cls":
            x = pooled.to(dtype).unsqueeze(1)  # (B, 1, H)
            mask = torch.ones(x.shape[:2], dtype=dtype, device=x.device)  # (B, 1)
        else:
            mask = mask.to(dtype)
            x = hidden.to(dtype) * mask.unsqueeze(-1)  # (B, T, H)
        summaries = []
        for block in self.blocks:
            x = block(x, mask)  # (B, T, H)
            summaries.append(masked_mean(x, mask))  # (B, H)
        out, self.last_gate = self.readout.mix(summaries, self.gate(pooled.to(dtype)), pooled)
        return out


ADAPTER = FusionAdapter("mamba", MambaAdapter, check=check_adapter_kernels)
"""The ``mamba`` adapter kind (``core.models.adapters``)."""
