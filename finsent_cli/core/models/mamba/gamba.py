"""Adapter kind ``gamba``: three expert stacks over a frozen encoder's token states, mixed by a gate.

The experts, ``num_layers`` pre-norm blocks each: a Mamba-2 stack (Dao & Gu 2024, arXiv 2405.21060), a
self-attention stack (Vaswani et al. 2017, arXiv 1706.03762) and a mixed stack alternating the two
(Mamba first), after the interleaved hybrids of Jamba (Lieber et al. 2024, arXiv 2403.19887). Each
expert's output is mean-pooled over real tokens; a softmax gating network on the encoder's pooled vector
weights the three, as a dense mixture of experts (Jacobs et al. 1991, "Adaptive Mixtures of Local
Experts"); the result is added to the pooled vector through the same zero-initialised readout as the
``mamba`` kind (``fusion.py``), so a fresh adapter returns ``pooled`` exactly and starts with a uniform gate.

The Mamba blocks are causal (left to right), the attention blocks bidirectional; both keep padding out
(mask-aware recurrence, key padding mask) and zero padded positions on output. With ``num_layers=1``
the mixed expert is a single Mamba block, the same shape as the Mamba expert (its own weights).
"""

from __future__ import annotations

from torch import Tensor, nn

from finsent_cli.core.models.adapters import FusionAdapter

from .blocks import AttentionBlock, MambaBlock
from .fusion import FusionReadout, masked_mean
from .ops import check_adapter_kernels, check_kernels

EXPERTS = ("mamba", "attention", "mixed")
"""Expert names, in the order of the gate's outputs (``Gamba.last_gate[:, i]``)."""


class Gamba(nn.Module):
    """Mamba, attention and mixed expert stacks, mixed by a softmax gating network, residual to pooled.

    ``forward`` returns ``pooled + readout(sum_e g_e p_e)`` with p_e the masked mean of expert e's token
    states and ``g = softmax(gate(pooled))``, gate = Linear(H, H/4) -> GELU -> Linear(H/4, 3).

    Args:
        hidden_size: the encoder's hidden size H (attention_heads must divide it).
        num_layers: blocks per expert.
        d_state, d_conv, expand, head_dim: the Mamba-2 mixer's sizes (``expand * H`` must divide by head_dim).
        dropout: residual dropout in the blocks.
        mlp_ratio: the blocks' MLP width / H.
        attention_heads: heads of the attention blocks.
        kernels: ``"auto"``, ``"off"`` or ``"required"`` (see ``ops.select_ops``).

    Raises:
        ValueError: attention_heads not dividing H, head_dim not dividing expand * H, unknown kernels.
        FinsentError: ``kernels="required"`` without the CUDA kernels.

    Attributes:
        last_gate: (B, 3) gate weights of the last forward (detached; order :data:`EXPERTS`), None before.
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
        attention_heads: int = 4,
        kernels: str = "auto",
    ) -> None:
        super().__init__()
        if hidden_size % attention_heads:
            raise ValueError(f"attention_heads ({attention_heads}) must divide the hidden size ({hidden_size})")
        check_kernels(kernels)
        mixer = {"d_state": d_state, "d_conv": d_conv, "expand": expand, "head_dim": head_dim, "kernels": kernels}

        def mamba() -> MambaBlock:
            return MambaBlock(hidden_size, dropout, mlp_ratio, **mixer)

        def attention() -> AttentionBlock:
            return AttentionBlock(hidden_size, attention_heads, dropout, mlp_ratio)

        self.experts = nn.ModuleDict(
            {
                "mamba": nn.ModuleList(mamba() for _ in range(num_layers)),
                "attention": nn.ModuleList(attention() for _ in range(num_layers)),
                "mixed": nn.ModuleList(mamba() if i % 2 == 0 else attention() for i in range(num_layers)),
            }
        )
        gate_hidden = max(1, hidden_size // 4)
        self.gate = nn.Sequential(nn.Linear(hidden_size, gate_hidden), nn.GELU(), nn.Linear(gate_hidden, len(EXPERTS)))
        nn.init.zeros_(self.gate[-1].weight)
        nn.init.zeros_(self.gate[-1].bias)
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
        dtype = self.readout.proj.weight.dtype
        mask = mask.to(dtype)
        x0 = hidden.to(dtype) * mask.unsqueeze(-1)  # (B, T, H)
        summaries = []
        for name in EXPERTS:
            x = x0
            for block in self.experts[name]:
                x = block(x, mask)  # (B, T, H)
            summaries.append(masked_mean(x, mask))  # (B, H)
        out, self.last_gate = self.readout.mix(summaries, self.gate(pooled.to(dtype)), pooled)  # gate (B, 3)
        return out


ADAPTER = FusionAdapter("gamba", Gamba, check=check_adapter_kernels)
"""The ``gamba`` adapter kind (``core.models.adapters``)."""
