"""Mamba-2 adapters for a frozen text encoder (Dao & Gu 2024, "Transformers are SSMs", arXiv 2405.21060).

Layout: ``ops.py`` the SSD scan and causal convolution (``*_ref``, PyTorch, optional mamba-ssm kernels,
one dispatch point ``select_ops``), ``mixer.py`` the Mamba-2 layer, ``blocks.py`` pre-norm Mamba and
attention blocks, ``fusion.py`` the ``mamba`` adapter kind, ``gamba.py`` the ``gamba`` adapter kind.

Example::

    adapter = MambaAdapter(768, num_layers=2, scan="tokens")
    pooled = adapter(hidden, attention_mask, pooled)   # (B, T, H), (B, T), (B, H) -> (B, H)
    adapter.last_gate                                  # (B, 2) weights of the two blocks' summaries
"""

from __future__ import annotations

from .blocks import MLP, AttentionBlock, MambaBlock, RMSNorm
from .fusion import FusionReadout, MambaAdapter, masked_mean
from .gamba import EXPERTS, Gamba
from .mixer import GatedRMSNorm, Mamba2Mixer
from .ops import (
    DEFAULT_CHUNK_SIZE,
    KERNEL_MODES,
    MambaOps,
    causal_conv1d_kernel,
    causal_conv1d_torch,
    check_kernels,
    kernel_note,
    kernels_available,
    segsum,
    select_ops,
    select_scan,
    ssd_scan_kernel,
    ssd_scan_ref,
    ssd_scan_torch,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "EXPERTS",
    "KERNEL_MODES",
    "MLP",
    "AttentionBlock",
    "FusionReadout",
    "Gamba",
    "GatedRMSNorm",
    "Mamba2Mixer",
    "MambaAdapter",
    "MambaBlock",
    "MambaOps",
    "RMSNorm",
    "causal_conv1d_kernel",
    "causal_conv1d_torch",
    "check_kernels",
    "kernel_note",
    "kernels_available",
    "masked_mean",
    "segsum",
    "select_ops",
    "select_scan",
    "ssd_scan_kernel",
    "ssd_scan_ref",
    "ssd_scan_torch",
]
