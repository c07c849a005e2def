"""The Mamba-2 mixer (Dao & Gu 2024, "Transformers are SSMs", arXiv 2405.21060, section 7).

One input projection makes, per position, the gate ``z``, the SSM input ``x`` with its projections ``B``
and ``C`` (together ``xBC``) and the step sizes ``dt``; ``xBC`` goes through a short causal depthwise
convolution and SiLU; the SSD scan (``ops``) mixes along the sequence; a gated RMSNorm
(``norm(y * silu(z))``) and the output projection close the layer. Parameter names (``in_proj``,
``conv1d``, ``dt_bias``, ``A_log``, ``D``, ``norm``, ``out_proj``) and initialisation follow mamba-ssm's
``Mamba2``, so its checkpoints' tensors line up (no ``d_ssm``/MLP split here: the whole width is SSM).

The layer is causal: position t reads positions <= t only. With a padding ``mask`` it is also exact
for right and left padding: padded positions enter the convolution as zeros and take a step ``dt = 0``,
which neither decays nor writes the state, so real positions see the sequence as if the padding were
not there. (Padding in the middle is not exact: the convolution window of the first real tokens after
it sees zeros where the tokens before the gap would be.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import DEFAULT_CHUNK_SIZE, ScanFn, check_kernels, select_ops

DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 1e-1, 1e-4
"""softplus(dt_bias) starts log-uniform in [DT_MIN, DT_MAX] (not below DT_FLOOR), as mamba-ssm."""

A_INIT_RANGE = (1.0, 16.0)
"""-A starts uniform in this range, as mamba-ssm."""


class GatedRMSNorm(nn.Module):
    """RMSNorm of ``y * silu(z)``, per group of ``group_size`` channels (mamba-ssm's ``RMSNormGated``
    with ``norm_before_gate=False``; Zhang & Sennrich 2019, arXiv 1910.07467).

    Args:
        dim: channels.
        group_size: channels normalised together (``dim / ngroups`` in the mixer).
        eps: added to the mean square.
    """

    def __init__(self, dim: int, group_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.group_size = group_size
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        """``y``, ``z``: (..., dim) -> (..., dim) in y's dtype (computed in float32)."""
        h = y.float() * F.silu(z.float())
        shape = h.shape
        h = h.reshape(*shape[:-1], -1, self.group_size)  # (..., ngroups, group_size)
        h = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (h.reshape(shape) * self.weight.float()).to(y.dtype)


class Mamba2Mixer(nn.Module):
    """The Mamba-2 sequence mixer: (B, T, d_model) -> (B, T, d_model), causal in T.

    Args:
        d_model: input and output width.
        d_state: SSM state size N per head.
        d_conv: causal convolution width.
        expand: d_inner = expand * d_model.
        head_dim: channels per SSM head; nheads = d_inner / head_dim.
        ngroups: groups of heads sharing B and C (must divide nheads).
        kernels: ``auto``, ``off`` or ``required`` (see ``ops.select_ops``).
        chunk_size: the SSD scan's chunk length.

    Raises:
        ValueError: d_inner not divisible by head_dim, nheads not divisible by ngroups, unknown kernels.
        FinsentError: ``kernels="required"`` without the CUDA kernels.

    Attributes:
        scan_fn: None to use the dispatched scan; tests and benchmarks set ``ops.ssd_scan_ref`` here to run
            the same layer through the reference.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        head_dim: int = 32,
        ngroups: int = 1,
        kernels: str = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__()
        d_inner = expand * d_model
        if d_inner % head_dim:
            raise ValueError(
                f"head_dim ({head_dim}) must divide expand * d_model = {expand} * {d_model} = {d_inner}; "
                f"pick a head_dim that divides {d_inner}"
            )
        nheads = d_inner // head_dim
        if nheads % ngroups:
            raise ValueError(f"ngroups ({ngroups}) must divide the number of heads ({nheads} = {d_inner} / {head_dim})")
        check_kernels(kernels)
        self.d_model, self.d_state, self.d_conv, self.d_inner = d_model, d_state, d_conv, d_inner
        self.head_dim, self.nheads, self.ngroups = head_dim, nheads, ngroups
        self.kernels = kernels
        self.chunk_size = chunk_size
        self.scan_fn: ScanFn | None = None

        conv_dim = d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * ngroups * d_state + nheads, bias=False)
        # nn.Conv1d only for mamba-ssm's parameter layout (weight (conv_dim, 1, d_conv)); ops run the conv.
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1, bias=True)

        dt = torch.exp(torch.rand(nheads) * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN))
        dt = dt.clamp(min=DT_FLOOR)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(nheads).uniform_(*A_INIT_RANGE)))
        self.D = nn.Parameter(torch.ones(nheads))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True  # as mamba-ssm: decaying these pulls the SSM towards dt = 0.69, A = -1

        self.norm = GatedRMSNorm(d_inner, group_size=d_inner // ngroups)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, u: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mix along the sequence.

        Args:
            u: (B, T, d_model).
            mask: (B, T), 1 for real positions and 0 for padding, or None (all real). Padded positions
                are skipped by the recurrence (see the module docstring); their outputs are meaningless.

        Returns:
            (B, T, d_model).

        Raises:
            FinsentError: ``kernels="required"`` and ``u`` is not on CUDA.
        """
        bsz, t, _ = u.shape
        ops = select_ops(self.kernels, u.device, self.d_conv)
        gn = self.ngroups * self.d_state
        z, xbc, dt = torch.split(self.in_proj(u), [self.d_inner, self.d_inner + 2 * gn, self.nheads], dim=-1)
        keep = None if mask is None else mask.to(xbc.dtype).unsqueeze(-1)  # (B, T, 1)
        if keep is not None:
            xbc = xbc * keep
        conv_w = self.conv1d.weight.squeeze(1)  # (conv_dim, d_conv)
        xbc = ops.conv(xbc.transpose(1, 2), conv_w, self.conv1d.bias, activation="silu")  # (B, conv_dim, T)
        xbc = xbc.transpose(1, 2)  # (B, T, conv_dim)
        x, B, C = torch.split(xbc, [self.d_inner, gn, gn], dim=-1)
        dt = F.softplus(dt.float() + self.dt_bias.float())  # (B, T, nheads)
        if keep is not None:
            dt = dt * keep.float()
        A = -torch.exp(self.A_log.float())  # (nheads,)
        scan = self.scan_fn or ops.scan
        y = scan(
            x.reshape(bsz, t, self.nheads, self.head_dim),  # (B, T, nheads, head_dim)
            dt,
            A,
            B.reshape(bsz, t, self.ngroups, self.d_state),  # (B, T, ngroups, d_state)
            C.reshape(bsz, t, self.ngroups, self.d_state),  # (B, T, ngroups, d_state)
            self.D,
            chunk_size=self.chunk_size,
        )
        y = self.norm(y.reshape(bsz, t, self.d_inner), z)  # (B, T, d_inner)
        return self.out_proj(y)
