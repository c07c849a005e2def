"""Mamba-2 operators: the SSD scan and the causal depthwise convolution, reference and fast paths.

Papers:
    Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured
    State Space Duality" (arXiv 2405.21060): the scalar-identity SSM of Mamba-2 and its chunked ("SSD")
    algorithm, section 6 and listing 1.
    Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (arXiv 2312.00752):
    the selective SSM and the short causal convolution before it.

Per head the SSM is ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T`` and ``y_t = h_t C_t + D x_t`` with a
state ``h`` of shape (headdim, d_state). Three implementations share one signature:

* ``ssd_scan_ref``: the recurrence step by step (the reference; slow, T sequential steps);
* ``ssd_scan_torch``: the chunked algorithm in plain PyTorch. Within a chunk of L positions the output is
  a masked "attention" ``(C B^T * decay) (dt x)`` (quadratic in L, matmul-friendly); across chunks only the
  (headdim, d_state) states travel, one decay per chunk;
* ``ssd_scan_kernel``: mamba-ssm's fused Triton kernel (``mamba_chunk_scan_combined``), CUDA only.

The optional kernels are imported once, below, and chosen in one place, :func:`select_ops`
(``kernels``: ``auto`` / ``off`` / ``required``); nothing else in the package looks at them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from finsent_cli.errors import FinsentError, FinsentNote
from finsent_cli.extras import install_hint

try:  # optional CUDA kernels: the gpu extra (install_hint('gpu'))
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    _KERNEL_IMPORT_ERROR: str | None = None
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install (CUDA/triton mismatch) failing at import
    mamba_chunk_scan_combined = None
    _KERNEL_IMPORT_ERROR = f"{type(exc).__name__}: {exc}".splitlines()[0]

try:
    from causal_conv1d import causal_conv1d_fn
except Exception:  # noqa: BLE001 - as above
    causal_conv1d_fn = None

KERNEL_MODES = ("auto", "off", "required")
"""Values of ``model.adapter.kernels``."""

DEFAULT_CHUNK_SIZE = 64
"""Chunk length of the SSD scan: 64 keeps the intra-chunk (L, L) matrices small on CPU and is what the
Mamba-2 paper uses for short sequences (the Triton kernel's default is 256, tuned for long ones)."""

ScanFn = Callable[..., Tensor]
ConvFn = Callable[..., Tensor]


# ------------------------------------------------------------------------------------------ SSD scan
def _heads_of_groups(t: Tensor, nheads: int) -> Tensor:
    """(Bt, T, ngroups, N) -> (Bt, T, nheads, N): head h reads group h // (nheads // ngroups), as mamba-ssm."""
    ngroups = t.shape[2]
    if nheads % ngroups:
        raise ValueError(f"nheads ({nheads}) must be divisible by ngroups ({ngroups})")
    return t.repeat_interleave(nheads // ngroups, dim=2)


def _check_shapes(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None) -> None:
    bt, t, h, _ = x.shape
    if dt.shape != (bt, t, h) or A.shape != (h,) or (D is not None and D.shape != (h,)):
        raise ValueError(
            f"ssd scan: x {tuple(x.shape)} needs dt ({bt}, {t}, {h}), A ({h},), D ({h},); "
            f"got dt {tuple(dt.shape)}, A {tuple(A.shape)}, D {None if D is None else tuple(D.shape)}"
        )
    if B.shape != C.shape or B.shape[:2] != (bt, t):
        shapes = f"B {tuple(B.shape)} and C {tuple(C.shape)}"
        raise ValueError(f"ssd scan: {shapes} must both be ({bt}, {t}, ngroups, d_state)")


def ssd_scan_ref(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Tensor:
    """The Mamba-2 SSM, one time step after another (reference for the chunked and kernel scans).

    Args:
        x: (Bt, T, nheads, headdim) inputs.
        dt: (Bt, T, nheads) step sizes, already positive (softplus applied); 0 makes a step a no-op.
        A: (nheads,) negative decay rates.
        B: (Bt, T, ngroups, d_state) input projections; ngroups divides nheads.
        C: (Bt, T, ngroups, d_state) output projections.
        D: (nheads,) skip connection, or None.
        chunk_size: unused; kept so that the three scans share one signature.

    Returns:
        (Bt, T, nheads, headdim) outputs, in x's dtype (computed in float32, or float64 for float64 inputs).

    Raises:
        ValueError: shapes that do not fit together.
    """
    _check_shapes(x, dt, A, B, C, D)
    dtype = torch.promote_types(x.dtype, torch.float32)
    bt, t, nheads, headdim = x.shape
    xf, dtf, Af = x.to(dtype), dt.to(dtype), A.to(dtype)
    Bh = _heads_of_groups(B.to(dtype), nheads)  # (Bt, T, H, N)
    Ch = _heads_of_groups(C.to(dtype), nheads)  # (Bt, T, H, N)
    h = xf.new_zeros(bt, nheads, headdim, Bh.shape[-1])  # (Bt, H, P, N)
    ys = []
    for i in range(t):
        decay = torch.exp(dtf[:, i] * Af)  # (Bt, H)
        inp = (dtf[:, i, :, None] * xf[:, i]).unsqueeze(-1) * Bh[:, i, :, None, :]  # (Bt, H, P, N)
        h = decay[:, :, None, None] * h + inp
        ys.append((h * Ch[:, i, :, None, :]).sum(-1))  # (Bt, H, P)
    y = torch.stack(ys, dim=1)  # (Bt, T, H, P)
    if D is not None:
        y = y + D.to(dtype)[:, None] * xf
    return y.to(x.dtype)


def segsum(a: Tensor) -> Tensor:
    """Pairwise sums of a log-decay sequence: ``out[..., i, j] = a[j+1] + ... + a[i]`` for i >= j, else -inf.

    ``exp(segsum(a))`` is the lower-triangular decay matrix of the SSD form (the 1-semiseparable mask).
    Summing the masked entries directly (rather than differencing one cumulative sum) keeps every entry
    exact to rounding, however long the sequence.

    Args:
        a: (..., L) log decays (dt * A, <= 0).

    Returns:
        (..., L, L) segment sums, -inf above the diagonal.
    """
    L = a.shape[-1]
    strict = torch.tril(torch.ones(L, L, dtype=torch.bool, device=a.device), diagonal=-1)
    m = a.unsqueeze(-1).expand(*a.shape, L).masked_fill(~strict, 0.0)  # (..., L, L): m[i, j] = a[i] if i > j
    out = m.cumsum(dim=-2)  # out[i, j] = sum over j < k <= i of a[k]
    lower = torch.tril(torch.ones(L, L, dtype=torch.bool, device=a.device))
    return out.masked_fill(~lower, float("-inf"))


def ssd_scan_torch(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Tensor:
    """The Mamba-2 SSM by the chunked SSD algorithm (Dao & Gu 2024, section 6), in plain PyTorch.

    The sequence is cut into chunks of ``min(chunk_size, T)`` positions (zero-padded at the end: a padded
    step has dt = 0, so it neither decays nor writes the state). Then

    1. within each chunk, ``Y_diag = (C B^T * exp(segsum(dt A))) (dt x)``, the quadratic "attention" form;
    2. each chunk's own contribution to the state at its end, ``S_c = sum_s exp(a_s->end) dt_s x_s B_s^T``;
    3. the states entering each chunk, by the same decay-matrix trick over chunks (one decay per chunk);
    4. their read-out within the chunk, ``Y_off = exp(a_start->l) C_l . H_c``.

    Args:
        x: (Bt, T, nheads, headdim) inputs.
        dt: (Bt, T, nheads) step sizes, already positive (softplus applied); 0 makes a step a no-op.
        A: (nheads,) negative decay rates.
        B: (Bt, T, ngroups, d_state) input projections; ngroups divides nheads.
        C: (Bt, T, ngroups, d_state) output projections.
        D: (nheads,) skip connection, or None.
        chunk_size: chunk length L; the result does not depend on it (up to rounding).

    Returns:
        (Bt, T, nheads, headdim) outputs, in x's dtype (computed in float32, or float64 for float64 inputs).

    Raises:
        ValueError: shapes that do not fit together, or chunk_size < 1.
    """
    _check_shapes(x, dt, A, B, C, D)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = torch.promote_types(x.dtype, torch.float32)
    bt, t, nheads, headdim = x.shape
    L = min(chunk_size, t)
    pad = (-t) % L
    nc = (t + pad) // L

    def chunked(v: Tensor) -> Tensor:  # (Bt, T, ...) -> (Bt, nc, L, ...), zero-padded in T
        v = v.to(dtype)
        if pad:
            v = F.pad(v, (0, 0) * (v.dim() - 2) + (0, pad))
        return v.reshape(bt, nc, L, *v.shape[2:])

    xc = chunked(x)  # (Bt, nc, L, H, P)
    dtc = chunked(dt)  # (Bt, nc, L, H)
    Bc = chunked(_heads_of_groups(B, nheads))  # (Bt, nc, L, H, N)
    Cc = chunked(_heads_of_groups(C, nheads))  # (Bt, nc, L, H, N)
    xdt = xc * dtc.unsqueeze(-1)  # (Bt, nc, L, H, P): the input written at each step

    a = (dtc * A.to(dtype)).permute(0, 3, 1, 2)  # (Bt, H, nc, L) log decay per step
    a_cum = a.cumsum(dim=-1)  # (Bt, H, nc, L) log decay from the chunk start through step l

    # 1. intra-chunk: y_l = sum_{s <= l} exp(a_{s+1} + ... + a_l) (C_l . B_s) dt_s x_s
    decay = torch.exp(segsum(a))  # (Bt, H, nc, L, L)
    scores = torch.einsum("bclhn,bcshn->bhcls", Cc, Bc) * decay  # (Bt, H, nc, L, L)
    y = torch.einsum("bhcls,bcshp->bclhp", scores, xdt)  # (Bt, nc, L, H, P)

    # 2. each chunk's contribution to the state at its last step
    to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (Bt, H, nc, L) decay from step s to the chunk end
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bc, to_end, xdt)  # (Bt, nc, H, P, N)

    # 3. states entering each chunk: H_c = sum_{c' < c} exp(total decay of chunks c'+1 .. c-1) S_c'
    if nc > 1:
        chunk_decay = F.pad(a_cum[..., -1], (1, 0))  # (Bt, H, nc + 1): chunk 0 enters with a zero state
        # row c, column c' + 1 of segsum(chunk_decay) is the decay of chunks c' + 1 .. c - 1 (empty sum for c' = c - 1)
        across = torch.exp(segsum(chunk_decay))[..., :-1, 1:]  # (Bt, H, nc, nc): into chunk c from chunk c'
        entering = torch.einsum("bhzc,bchpn->bzhpn", across, states)  # (Bt, nc, H, P, N)

        # 4. read the entering state out within each chunk, decayed from the chunk start
        y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", Cc, entering, torch.exp(a_cum))  # (Bt, nc, L, H, P)

    y = y.reshape(bt, nc * L, nheads, headdim)[:, :t]  # (Bt, T, H, P)
    if D is not None:
        y = y + D.to(dtype)[:, None] * x.to(dtype)
    return y.to(x.dtype)


def ssd_scan_kernel(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Tensor:
    """The Mamba-2 SSM through mamba-ssm's fused Triton kernel (CUDA tensors only).

    Same arguments and result as :func:`ssd_scan_torch`; ``dt`` is passed as given (already positive,
    ``dt_softplus=False``) and A in float32, as the kernel expects.

    Raises:
        RuntimeError: mamba-ssm is not importable (use :func:`select_ops`, which checks first).
    """
    if mamba_chunk_scan_combined is None:
        raise RuntimeError(f"mamba-ssm kernels are not available ({_KERNEL_IMPORT_ERROR})")
    return mamba_chunk_scan_combined(
        x.contiguous(), dt.contiguous(), A.float(), B.contiguous(), C.contiguous(), chunk_size,
        D=None if D is None else D.float(), dt_softplus=False,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ causal conv
def causal_conv1d_torch(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """Depthwise causal convolution: out[:, d, t] depends on x[:, d, t - W + 1 .. t] only.

    Args:
        x: (Bt, dim, T) inputs.
        weight: (dim, W) one filter per channel.
        bias: (dim,) or None.
        activation: None, or ``"silu"`` / ``"swish"`` applied to the result (as ``causal_conv1d_fn``).

    Returns:
        (Bt, dim, T), x's dtype.
    """
    dim, width = weight.shape
    out = F.conv1d(F.pad(x, (width - 1, 0)), weight.unsqueeze(1), bias, groups=dim)  # (Bt, dim, T)
    return F.silu(out) if activation in ("silu", "swish") else out


def causal_conv1d_kernel(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None
) -> Tensor:
    """:func:`causal_conv1d_torch` through the ``causal_conv1d`` CUDA kernel (filter width 2 to 4).

    The filter is cast to x's dtype, as autocast does for ``F.conv1d`` on the PyTorch path.
    """
    if causal_conv1d_fn is None:
        raise RuntimeError("causal-conv1d is not installed")
    bias = None if bias is None else bias.to(x.dtype)
    return causal_conv1d_fn(x, weight.to(x.dtype), bias, activation=activation)


# ------------------------------------------------------------------------------------------ dispatch
@dataclass(frozen=True)
class MambaOps:
    """The operators one forward pass uses (see :func:`select_ops`)."""

    scan: ScanFn
    conv: ConvFn
    name: str
    """``"kernel"`` or ``"torch"``, for logs and benchmarks."""


_TORCH_OPS = MambaOps(scan=ssd_scan_torch, conv=causal_conv1d_torch, name="torch")


def kernels_available() -> bool:
    """Whether mamba-ssm's scan kernel imported and a CUDA device is present."""
    return mamba_chunk_scan_combined is not None and torch.cuda.is_available()


def _missing_reason() -> str:
    if mamba_chunk_scan_combined is None:
        return f"mamba-ssm is not importable: {_KERNEL_IMPORT_ERROR}"
    return "no CUDA device (torch.cuda.is_available() is False)"


def _required_error(reason: str) -> FinsentError:
    return FinsentError(
        f"model.adapter.kernels: required, but the mamba-ssm CUDA kernels are not available ({reason}); "
        "use kernels: auto"
    )


def _check_mode(kernels: str) -> None:
    if kernels not in KERNEL_MODES:
        raise ValueError(f"kernels must be one of {', '.join(KERNEL_MODES)}; got {kernels!r}")


def check_kernels(kernels: str) -> None:
    """Fail early (when the model is built) if ``kernels: required`` cannot be met on this machine.

    Raises:
        FinsentError: ``kernels`` is ``"required"`` and the kernels are not available.
        ValueError: ``kernels`` is not one of :data:`KERNEL_MODES`.
    """
    _check_mode(kernels)
    if kernels == "required" and not kernels_available():
        raise _required_error(_missing_reason())


def check_adapter_kernels(cfg: Any) -> None:
    """What the Mamba adapter kinds check when a model is built: :func:`check_kernels` of ``cfg.kernels``, and
    the :func:`kernel_note` as a :class:`~finsent_cli.errors.FinsentNote` warning (the flow reports it)."""
    check_kernels(cfg.kernels)
    note = kernel_note(cfg.kernels)
    if note:
        warnings.warn(note, FinsentNote, stacklevel=2)


def kernel_note(kernels: str) -> str | None:
    """A one-line note for the user when a CUDA run will use the slower PyTorch scan, else None."""
    if kernels == "auto" and torch.cuda.is_available() and mamba_chunk_scan_combined is None:
        return (
            "mamba-ssm not installed: the Mamba blocks run the PyTorch scan on CUDA "
            f"({install_hint('gpu')} for the kernels)"
        )
    return None


def select_ops(kernels: str, device: torch.device | str, conv_width: int = 4) -> MambaOps:
    """The one dispatch point between mamba-ssm's CUDA kernels and the PyTorch operators.

    Args:
        kernels: ``"auto"`` (kernels when available and the tensors are on CUDA, else PyTorch), ``"off"``
            (always PyTorch) or ``"required"`` (kernels, else an error).
        device: where the tensors are.
        conv_width: the convolution's filter width; the ``causal_conv1d`` kernel takes 2 to 4, wider
            filters run ``causal_conv1d_torch`` even with the kernels on.

    Returns:
        The scan and convolution to use.

    Raises:
        FinsentError: ``"required"`` and the kernels are unavailable, or the tensors are not on CUDA.
        ValueError: unknown ``kernels``.
    """
    _check_mode(kernels)
    on_cuda = torch.device(device).type == "cuda"
    if kernels == "off":
        return _TORCH_OPS
    if not kernels_available() or not on_cuda:
        if kernels == "required":
            raise _required_error(_missing_reason() if not kernels_available() else f"the tensors are on {device}")
        return _TORCH_OPS
    conv = causal_conv1d_kernel if causal_conv1d_fn is not None and 2 <= conv_width <= 4 else causal_conv1d_torch
    return MambaOps(scan=ssd_scan_kernel, conv=conv, name="kernel")


def select_scan(kernels: str, device: torch.device | str) -> ScanFn:
    """The scan :func:`select_ops` picks (same arguments, same errors)."""
    return select_ops(kernels, device).scan
