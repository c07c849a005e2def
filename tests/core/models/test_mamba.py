"""Mamba-2 adapters: the chunked SSD scan against the step-by-step reference, the mixer's causality and
padding, the adapters' gates, padding invariance, gradients and start-up; the kernel dispatch on CPU; and
(CUDA + mamba-ssm only) the kernels against the PyTorch path."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from finsent_cli.core.models.mamba import (
    Gamba,
    Mamba2Mixer,
    MambaAdapter,
    causal_conv1d_torch,
    check_kernels,
    kernel_note,
    kernels_available,
    select_ops,
    select_scan,
    ssd_scan_ref,
    ssd_scan_torch,
)
from finsent_cli.core.models.mamba import ops as mamba_ops
from finsent_cli.errors import FinsentError
from finsent_cli.extras import install_hint

H = 32  # hidden size of the tiny adapters
SMALL = {"num_layers": 2, "d_state": 8, "d_conv": 4, "expand": 2, "head_dim": 16, "mlp_ratio": 2, "kernels": "off"}


def scan_inputs(T: int, *, bt: int = 2, nheads: int = 4, headdim: int = 3, ngroups: int = 2, d_state: int = 5,
                dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[torch.Tensor, ...]:  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(bt, T, nheads, headdim, generator=g, dtype=dtype)
    dt = F.softplus(torch.randn(bt, T, nheads, generator=g, dtype=dtype) - 1.0)
    A = -(0.5 + 3.0 * torch.rand(nheads, generator=g, dtype=dtype))
    B = torch.randn(bt, T, ngroups, d_state, generator=g, dtype=dtype)
    C = torch.randn(bt, T, ngroups, d_state, generator=g, dtype=dtype)
    D = torch.randn(nheads, generator=g, dtype=dtype)
    return x, dt, A, B, C, D


# ------------------------------------------------------------------------------------------ scan
@pytest.mark.parametrize("T", [1, 5, 16, 37, 100])
def test_ssd_scan_torch_matches_ref_float64(T: int) -> None:
    args = scan_inputs(T)
    ref = ssd_scan_ref(*args)
    out = ssd_scan_torch(*args, chunk_size=16)  # T = 1, 5 < chunk; 37, 100 not multiples of it
    assert out.shape == ref.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_ssd_scan_torch_chunk_size_invariant() -> None:
    args = scan_inputs(45, seed=1)
    outs = [ssd_scan_torch(*args, chunk_size=cs) for cs in (1, 4, 7, 16, 64, 128)]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=1e-10, atol=1e-10)


def test_ssd_scan_without_d_and_single_group() -> None:
    x, dt, A, B, C, _ = scan_inputs(23, ngroups=1, seed=2)
    torch.testing.assert_close(ssd_scan_torch(x, dt, A, B, C, None, chunk_size=8), ssd_scan_ref(x, dt, A, B, C, None))


def test_ssd_scan_torch_low_precision_computes_in_float32() -> None:
    x, dt, A, B, C, D = scan_inputs(40, dtype=torch.float32, seed=3)
    ref = ssd_scan_ref(x, dt, A, B, C, D)
    out = ssd_scan_torch(x.bfloat16(), dt.bfloat16(), A, B.bfloat16(), C.bfloat16(), D, chunk_size=16)
    assert out.dtype == torch.bfloat16
    # Only the inputs' and the output's rounding to bf16 (3 significant digits) remain.
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2 * ref.abs().max().item())


def test_ssd_scan_zero_dt_step_is_a_no_op() -> None:
    x, dt, A, B, C, _ = scan_inputs(12, seed=4)
    keep = torch.ones(12, dtype=torch.bool)
    keep[[3, 4, 9]] = False
    dt0 = dt.clone()
    dt0[:, ~keep] = 0.0
    full = ssd_scan_torch(x, dt0, A, B, C, None, chunk_size=4)[:, keep]
    dropped = ssd_scan_ref(x[:, keep], dt[:, keep], A, B[:, keep], C[:, keep], None)
    torch.testing.assert_close(full, dropped)


def test_ssd_scan_rejects_mismatched_shapes() -> None:
    x, dt, A, B, C, D = scan_inputs(8)
    with pytest.raises(ValueError, match="dt"):
        ssd_scan_torch(x, dt[:, :-1], A, B, C, D)


def test_causal_conv1d_torch_matches_loop() -> None:
    g = torch.Generator().manual_seed(5)
    x, w, b = torch.randn(2, 6, 9, generator=g), torch.randn(6, 4, generator=g), torch.randn(6, generator=g)
    out = causal_conv1d_torch(x, w, b, activation="silu")
    ref = torch.zeros_like(x)
    for t in range(9):
        for k in range(4):  # tap k reads position t - (3 - k)
            if t - 3 + k >= 0:
                ref[:, :, t] += w[:, k] * x[:, :, t - 3 + k]
    torch.testing.assert_close(out, F.silu(ref + b[:, None]))


# ------------------------------------------------------------------------------------------ mixer
def tiny_mixer(**kw) -> Mamba2Mixer:
    torch.manual_seed(0)
    return Mamba2Mixer(H, d_state=8, head_dim=16, ngroups=2, kernels="off", chunk_size=8, **kw).double().eval()


def test_mixer_torch_scan_matches_ref_scan() -> None:
    mixer = tiny_mixer()
    u = torch.randn(2, 21, H, dtype=torch.float64)
    out = mixer(u)
    mixer.scan_fn = ssd_scan_ref
    torch.testing.assert_close(out, mixer(u), rtol=1e-10, atol=1e-10)
    assert out.shape == u.shape


def test_mixer_is_causal() -> None:
    mixer = tiny_mixer()
    u = torch.randn(2, 20, H, dtype=torch.float64)
    v = u.clone()
    v[:, 11:] = torch.randn(2, 9, H, dtype=torch.float64)
    torch.testing.assert_close(mixer(u)[:, :11], mixer(v)[:, :11], rtol=0, atol=1e-12)
    assert not torch.allclose(mixer(u)[:, 11:], mixer(v)[:, 11:])


def test_mixer_mask_makes_left_padding_invisible() -> None:
    mixer = tiny_mixer()
    u = torch.randn(1, 10, H, dtype=torch.float64)
    padded = torch.cat([torch.randn(1, 6, H, dtype=torch.float64), u], dim=1)  # 6 garbage positions first
    mask = torch.cat([torch.zeros(1, 6), torch.ones(1, 10)], dim=1)
    torch.testing.assert_close(mixer(padded, mask)[:, 6:], mixer(u), rtol=1e-10, atol=1e-10)


def test_mixer_parameters_follow_mamba_ssm() -> None:
    torch.manual_seed(0)
    mixer = Mamba2Mixer(64, d_state=16, head_dim=32, kernels="off")
    names = {n for n, _ in mixer.named_parameters()}
    assert {"in_proj.weight", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D", "norm.weight",
            "out_proj.weight"} == names  # fmt: skip
    assert mixer.in_proj.out_features == 2 * 128 + 2 * 16 + 4
    dt = F.softplus(mixer.dt_bias)
    assert (dt >= 1e-3 - 1e-7).all() and (dt <= 1e-1 + 1e-7).all()
    A = -torch.exp(mixer.A_log)
    assert (A <= -1.0).all() and (A >= -16.0).all()


def test_head_dim_must_divide_d_inner() -> None:
    with pytest.raises(ValueError, match="head_dim \\(24\\) must divide expand \\* d_model = 2 \\* 32 = 64"):
        Mamba2Mixer(32, head_dim=24, kernels="off")
    with pytest.raises(ValueError, match="head_dim"):
        MambaAdapter(32, head_dim=24, kernels="off")


# ------------------------------------------------------------------------------------------ adapters
def batch(T: int = 12, lengths: tuple[int, ...] = (12, 7, 3), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(len(lengths), T, H, generator=g)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T) right padding
    pooled = torch.randn(len(lengths), H, generator=g)
    return hidden, mask, pooled


def build(kind: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "gamba":
        return Gamba(H, attention_heads=4, **{**SMALL, **kw})
    return MambaAdapter(H, **{**SMALL, **kw})


def wake(module: torch.nn.Module) -> torch.nn.Module:
    """Give the zero-initialised readout and gate random weights, as after some training."""
    torch.manual_seed(1)
    gate_out = module.gate if isinstance(module.gate, torch.nn.Linear) else module.gate[-1]
    for p in (module.readout.proj.weight, module.readout.proj.bias, gate_out.weight, gate_out.bias):
        torch.nn.init.normal_(p, std=0.3)
    return module


ADAPTERS = [("mamba", {}), ("mamba", {"scan": "cls"}), ("gamba", {})]
IDS = ["mamba-tokens", "mamba-cls", "gamba"]


@pytest.mark.parametrize(("kind", "kw"), ADAPTERS, ids=IDS)
def test_adapter_shapes_and_gates(kind: str, kw: dict) -> None:
    model = wake(build(kind, **kw)).eval()
    hidden, mask, pooled = batch()
    out = model(hidden, mask, pooled)
    assert out.shape == pooled.shape and torch.isfinite(out).all()
    n = 3 if kind == "gamba" else SMALL["num_layers"]
    assert model.last_gate.shape == (3, n) and not model.last_gate.requires_grad
    torch.testing.assert_close(model.last_gate.sum(-1), torch.ones(3))


@pytest.mark.parametrize(("kind", "kw"), ADAPTERS, ids=IDS)
def test_adapter_starts_as_identity(kind: str, kw: dict) -> None:
    model = build(kind, **kw).train()
    hidden, mask, pooled = batch()
    out = model(hidden, mask, pooled)
    torch.testing.assert_close(out, pooled, rtol=0, atol=0)
    n = model.last_gate.shape[1]
    torch.testing.assert_close(model.last_gate, torch.full((3, n), 1.0 / n))  # uniform gate at the start
    out.pow(2).sum().backward()
    assert model.readout.proj.weight.grad.abs().sum() > 0  # the zero projection learns from step one


@pytest.mark.parametrize(("kind", "kw"), ADAPTERS, ids=IDS)
def test_adapter_gradients_reach_every_parameter(kind: str, kw: dict) -> None:
    model = wake(build(kind, dropout=0.0, **kw)).train()
    hidden, mask, pooled = batch()
    model(hidden, mask, pooled).pow(2).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # A sequence of one never decays a state (h_0 = 0), so under scan=cls A has no effect at all: the
    # study's design leaves the SSM with nothing to do.
    expected = [f"blocks.{i}.mixer.A_log" for i in range(SMALL["num_layers"])] if kw.get("scan") == "cls" else []
    assert dead == expected


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("kind", ["mamba", "gamba"])
def test_adapter_padding_invariance(kind: str, side: str) -> None:
    model = wake(build(kind)).eval()
    hidden, mask, pooled = batch()
    extra = 9
    garbage = 5.0 * torch.randn(hidden.shape[0], extra, H)
    if side == "right":
        hidden2, mask2 = torch.cat([hidden, garbage], 1), torch.cat([mask, torch.zeros_like(mask[:, :extra])], 1)
    else:  # left padding also moves the real tokens: (B, extra + T, H)
        hidden2, mask2 = torch.cat([garbage, hidden], 1), torch.cat([torch.zeros_like(mask[:, :extra]), mask], 1)
    out, out2 = model(hidden, mask, pooled), model(hidden2, mask2, pooled)
    torch.testing.assert_close(out2, out, rtol=1e-5, atol=1e-5)


def test_cls_scan_ignores_token_states() -> None:
    model = wake(build("mamba", scan="cls")).eval()
    hidden, mask, pooled = batch()
    torch.testing.assert_close(model(hidden, mask, pooled), model(torch.randn_like(hidden), mask, pooled))


def test_adapter_argument_errors() -> None:
    with pytest.raises(ValueError, match="scan must be one of tokens, cls"):
        MambaAdapter(H, scan="sequence", kernels="off")
    with pytest.raises(ValueError, match="attention_heads \\(5\\) must divide the hidden size \\(32\\)"):
        Gamba(H, attention_heads=5, head_dim=16, kernels="off")
    with pytest.raises(ValueError, match="kernels must be one of"):
        MambaAdapter(H, head_dim=16, kernels="yes")


def test_adapter_kinds_are_registered() -> None:
    from finsent_cli.core.models.adapters import get_adapter

    for kind, cls in (("mamba", MambaAdapter), ("gamba", Gamba)):
        adapter = get_adapter(kind)
        assert isinstance(adapter.module(H, {**SMALL}), cls)
        if not kernels_available():
            with pytest.raises(FinsentError, match="model.adapter.kernels"):
                adapter.check(SimpleNamespace(kernels="required"))


# ------------------------------------------------------------------------------------------ dispatch
def test_dispatch_on_cpu() -> None:
    assert select_scan("off", torch.device("cpu")) is ssd_scan_torch
    assert select_scan("auto", torch.device("cpu")) is ssd_scan_torch
    assert select_ops("auto", "cpu").conv is causal_conv1d_torch
    with pytest.raises(FinsentError, match="^model.adapter.kernels: required, but the mamba-ssm CUDA kernels"):
        select_scan("required", torch.device("cpu"))  # CPU tensors never run the kernels
    with pytest.raises(ValueError, match="kernels must be one of auto, off, required"):
        select_scan("on", torch.device("cpu"))


@pytest.mark.skipif(kernels_available(), reason="the kernels are available here")
def test_required_kernels_fail_at_build_time() -> None:
    with pytest.raises(FinsentError, match="model.adapter.kernels: required.*use kernels: auto") as info:
        check_kernels("required")
    assert info.value.message.count("\n") == 0
    with pytest.raises(FinsentError, match="model.adapter.kernels"):
        MambaAdapter(H, head_dim=16, kernels="required")
    check_kernels("auto")
    check_kernels("off")


def test_kernel_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mamba_ops, "mamba_chunk_scan_combined", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert kernel_note("auto") == (
        "mamba-ssm not installed: the Mamba blocks run the PyTorch scan on CUDA (" + install_hint('gpu') + " for the kernels)"
    )
    assert kernel_note("off") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert kernel_note("auto") is None


# ------------------------------------------------------------------------------------------ CUDA kernels
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernels_match_torch_path(dtype: torch.dtype) -> None:
    pytest.importorskip("mamba_ssm")
    if not kernels_available():
        pytest.skip("mamba-ssm is installed but its kernels did not import")
    # bf16: inputs and outputs rounded to 8 bits of mantissa; fp32: the kernel's tf32 matmuls.
    tol = {"rtol": 3e-2, "atol": 3e-2} if dtype == torch.bfloat16 else {"rtol": 3e-3, "atol": 3e-3}
    x, dt, A, B, C, D = (t.cuda() for t in scan_inputs(200, bt=2, nheads=8, headdim=16, ngroups=2, d_state=16,
                                                         dtype=torch.float32))  # fmt: skip
    args = (x.to(dtype), dt, A, B.to(dtype), C.to(dtype), D)
    ref = ssd_scan_torch(*args, chunk_size=64).float()
    out = select_scan("required", x.device)(*args, chunk_size=64).float()
    torch.testing.assert_close(out, ref, rtol=tol["rtol"], atol=tol["atol"] * ref.abs().max().item())

    ops = select_ops("required", "cuda")
    xc, w, b = torch.randn(2, 64, 50, device="cuda", dtype=dtype), torch.randn(64, 4, device="cuda", dtype=dtype), None
    torch.testing.assert_close(ops.conv(xc, w, b, activation="silu").float(),
                               causal_conv1d_torch(xc, w, b, activation="silu").float(), **tol)  # fmt: skip

    torch.manual_seed(0)
    fast = MambaAdapter(64, head_dim=16, dropout=0.0, kernels="required").cuda().eval()
    slow = MambaAdapter(64, head_dim=16, dropout=0.0, kernels="off").cuda().eval()
    wake(fast)
    slow.load_state_dict(fast.state_dict())
    hidden = torch.randn(4, 70, 64, device="cuda")
    mask = (torch.arange(70, device="cuda")[None] < torch.tensor([70, 50, 20, 3], device="cuda")[:, None]).long()
    pooled = torch.randn(4, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        a, b_ = fast(hidden, mask, pooled).float(), slow(hidden, mask, pooled).float()
    torch.testing.assert_close(a, b_, rtol=tol["rtol"], atol=tol["atol"] * b_.abs().max().item())
