"""Slim attention (Graef & Wasielewski 2025): same logits and tokens as the full K/V cache, less memory.

Slim self-attention recovers V = K W_KV through W_K^{-1}, so its rounding error grows with cond(W_K).
The fp32 bound (1e-4) and the bf16 bound (0.25 on logits of magnitude ~4) are asserted on random weights
whose W_K has cond <= 1e3; ``test_ill_conditioned_w_k_is_reported`` covers the other side.
"""

from __future__ import annotations

import logging

import pytest
import torch

from finsent_cli.core.models.t5 import (
    FinT5Config,
    FinT5ForConditionalGeneration,
    cache_bytes,
    slim_self_attention,
    slim_self_attention_ref,
    slim_value_weight,
    t5_small_config,
)
from finsent_cli.core.models.t5 import cache as cache_mod
from finsent_cli.core.models.t5.cache import choose_mode
from tests.core.models.t5_helpers import tiny_cfg

BF16_TOL = 0.25  # max |logit| difference, slim vs full cache, both bf16 (measured 0.11; full bf16 vs fp32: 0.04)


def model(cfg: FinT5Config | None = None, seed: int = 0) -> FinT5ForConditionalGeneration:
    torch.manual_seed(seed)
    return FinT5ForConditionalGeneration(cfg or tiny_cfg()).eval()


def batch(seed: int = 0, B: int = 4, S: int = 20, T: int = 12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 128, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 12:] = 0
    mask[B - 1, :4] = 0
    dec = torch.randint(2, 128, (B, T), generator=g)
    return ids, mask, dec


@torch.no_grad()
def stepwise_logits(m, ids, mask, dec, mode: str, chunk: int = 1) -> torch.Tensor:
    enc = m.encode(ids, mask)
    cache = m.new_cache(enc, mask, dec.shape[1], mode)
    steps = [m.decode(dec[:, i : i + chunk], cache) for i in range(0, dec.shape[1], chunk)]
    return torch.cat(steps, dim=1).float()  # (B, T, vocab)


def max_cond(m) -> float:
    return max(torch.linalg.cond(b.self_attn.k.weight.double()).item() for b in m.decoder.block)


# ---------------------------------------------------------------------- the algebra
def test_w_kv_recovers_values_from_keys_float64():
    g = torch.Generator().manual_seed(0)
    H, Dh, d = 4, 16, 64
    wk = torch.randn(H * Dh, d, generator=g, dtype=torch.float64)
    wv = torch.randn(H * Dh, d, generator=g, dtype=torch.float64)
    x = torch.randn(5, d, generator=g, dtype=torch.float64)
    k, v = x @ wk.T, x @ wv.T  # nn.Linear: (out, in) weights
    w_kv = slim_value_weight(wk, wv, H)  # (H, H*Dh, Dh)
    assert w_kv.shape == (H, H * Dh, Dh)
    v_heads = torch.einsum("te,hed->htd", k, w_kv)  # (H, T, Dh)
    assert (v_heads - v.view(5, H, Dh).transpose(0, 1)).abs().max() < 1e-10


def test_w_kv_needs_square_w_k():
    with pytest.raises(ValueError, match="square"):
        slim_value_weight(torch.randn(32, 64), torch.randn(32, 64), 4)


def test_w_kv_stored_in_model_dtype_and_refreshed_after_update():
    m = model()
    attn = m.decoder.block[0].self_attn
    w1 = attn.slim_value_weight()
    assert w1.dtype == torch.float32 and attn.slim_value_weight() is w1  # cached
    with torch.no_grad():
        attn.k.weight.mul_(2.0)  # an optimizer step is an in-place update too
    assert torch.allclose(attn.slim_value_weight(), w1 / 2, atol=1e-5)


def test_slim_kernel_matches_reference():
    g = torch.Generator().manual_seed(0)
    B, H, Tq, T, Dh = 2, 4, 3, 7, 16
    q, k_flat = torch.randn(B, H, Tq, Dh, generator=g), torch.randn(B, T, H * Dh, generator=g)
    w_kv, mask = torch.randn(H, H * Dh, Dh, generator=g), torch.randn(1, H, Tq, T, generator=g)
    fast, ref = slim_self_attention(q, k_flat, w_kv, mask), slim_self_attention_ref(q, k_flat, w_kv, mask)
    assert fast.shape == (B, H, Tq, Dh)
    assert (fast - ref).abs().max() < 1e-5


def test_slim_decoding_same_with_reference_kernels():
    m = model()
    ids, mask, dec = batch()
    fast = stepwise_logits(m, ids, mask, dec, "slim")
    m.set_attention_impl("ref")
    assert (stepwise_logits(m, ids, mask, dec, "slim") - fast).abs().max() <= 1e-5


# ---------------------------------------------------------------------- slim vs full
@pytest.mark.parametrize("seed", [0, 2])
def test_slim_logits_equal_full_fp32(seed):
    m = model(seed=seed)
    assert max_cond(m) < 1e3
    ids, mask, dec = batch(seed)
    full = stepwise_logits(m, ids, mask, dec, "full")
    slim = stepwise_logits(m, ids, mask, dec, "slim")
    teacher = m(ids, mask, decoder_input_ids=dec).logits  # cache-free
    assert (full - teacher).abs().max() <= 1e-4
    assert (slim - full).abs().max() <= 1e-4


def test_multi_token_prefill_equals_one_by_one():
    m = model()
    ids, mask, dec = batch()
    one = stepwise_logits(m, ids, mask, dec, "slim")
    for mode in ("slim", "full"):
        assert (stepwise_logits(m, ids, mask, dec, mode, chunk=4) - one).abs().max() <= 1e-4


def test_slim_logits_bf16_within_stated_tolerance():
    m = model()
    assert max_cond(m) < 1e3
    ids, mask, dec = batch()
    ref = stepwise_logits(m, ids, mask, dec, "full")
    m = m.to(torch.bfloat16)
    full = stepwise_logits(m, ids, mask, dec, "full")
    slim = stepwise_logits(m, ids, mask, dec, "slim")
    assert m.decoder.block[0].self_attn.slim_value_weight().dtype == torch.bfloat16
    assert (full - ref).abs().max() < 0.1  # bf16 itself
    assert (slim - full).abs().max() <= BF16_TOL


def test_ill_conditioned_w_k_is_reported(caplog):
    ids, mask, _ = batch()
    m = model()
    with caplog.at_level(logging.WARNING, logger="finsent_cli.core.models.t5"):
        m.generate(ids, mask, max_new_tokens=2, cache="slim")
    assert not any("cond(W_K)" in r.getMessage() for r in caplog.records)  # fp32, cond ~ 1e2: quiet
    attn = m.decoder.block[1].self_attn
    with torch.no_grad():
        u, s, vh = torch.linalg.svd(attn.k.weight.double())
        s[-1] = s[0] * 1e-7  # cond(W_K) = 1e7, cond * eps(fp32) ~ 1.2
        attn.k.weight.copy_((u @ torch.diag(s) @ vh).float())
    with caplog.at_level(logging.WARNING, logger="finsent_cli.core.models.t5"):
        m.generate(ids, mask, max_new_tokens=2, cache="slim")
    assert any("cond(W_K)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_slim_equals_full_token_for_token(seed):
    m = model(seed=seed)
    ids, mask, _ = batch(seed)
    slim = m.generate(ids, mask, max_new_tokens=20, cache="slim", stop_on_eos=False)
    full = m.generate(ids, mask, max_new_tokens=20, cache="full", stop_on_eos=False)
    assert slim.shape == (4, 21)
    assert torch.equal(slim, full)


def test_generate_stops_at_eos_per_row():
    m = model()
    ids, mask, _ = batch()
    free = m.generate(ids, mask, max_new_tokens=10, stop_on_eos=False)
    eos = int(free[1, 3])
    m2 = model(tiny_cfg(eos_token_id=eos))
    out = m2.generate(ids, mask, max_new_tokens=10)
    first = (out[1] == eos).nonzero()[0].item()
    assert first <= 3 and (out[1, first + 1 :] == m2.config.pad_token_id).all()


def test_generate_validates():
    m = model()
    ids, mask, _ = batch()
    with pytest.raises(ValueError, match="max_new_tokens"):
        m.generate(ids, mask, max_new_tokens=0)
    with pytest.raises(ValueError, match="cache mode"):
        m.generate(ids, mask, cache="half")


# ---------------------------------------------------------------------- constrained scoring
def test_score_targets_equals_teacher_forcing_in_both_modes():
    m = model()
    ids, mask, _ = batch()
    targets = [[5, 1], [7, 8, 9, 1], [11]]
    slim = m.score_targets(ids, mask, targets, cache="slim")
    full = m.score_targets(ids, mask, targets, cache="full")
    assert slim.shape == (4, 3) and slim.dtype == torch.float32
    assert (slim - full).abs().max() <= 1e-4
    for j, t in enumerate(targets):
        labels = torch.tensor([t] * 4)
        logp = torch.log_softmax(m(ids, mask, labels=labels).logits, -1)
        want = logp.gather(-1, labels[..., None])[..., 0].sum(-1)
        assert (slim[:, j] - want).abs().max() <= 1e-4
    norm = m.score_targets(ids, mask, targets, length_normalize=True)
    assert torch.allclose(norm, slim / torch.tensor([2.0, 4.0, 1.0]), atol=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        m.score_targets(ids, mask, [[5], []])


# ---------------------------------------------------------------------- cache accounting
def test_cache_bytes_formula_and_allocation():
    cfg = tiny_cfg()
    B, S, T = 3, 20, 9
    full, slim = cache_bytes(cfg, B, S, T, "full"), cache_bytes(cfg, B, S, T, "slim")
    assert slim["self_attention"] * 2 == full["self_attention"]
    assert slim["cross_attention"] == B * S * cfg.d_model * 4  # E only, fp32
    assert full["cross_attention"] == 2 * cfg.num_decoder_layers * B * S * cfg.inner_dim * 4
    m = model(cfg)
    ids, mask, _ = batch(B=B, S=S)
    enc = m.encode(ids, mask)
    for mode, want in (("full", full), ("slim", slim)):
        cache = m.new_cache(enc, mask, T, mode)
        assert cache.nbytes() == want
    assert cache.enc is enc  # slim cross-attention holds the encoder output itself, once for all layers
    bf16 = cache_bytes(cfg, B, S, T, "slim", dtype=torch.bfloat16)
    assert bf16["total"] * 2 == slim["total"]


def test_cache_bytes_t5_small_numbers():
    cfg = t5_small_config()
    full = cache_bytes(cfg, 64, 512, 33, "full")
    slim = cache_bytes(cfg, 64, 512, 33, "slim")
    assert full["cross_attention"] == 2 * 6 * 64 * 512 * 512 * 4  # 805 MB
    assert slim["cross_attention"] == 64 * 512 * 512 * 4  # 67 MB: 12x less
    assert slim["self_attention"] == 6 * 64 * 33 * 512 * 4


# ---------------------------------------------------------------------- non-square fallback
def test_non_square_falls_back_with_note(caplog):
    cfg = tiny_cfg(num_heads=4, d_kv=8)  # inner 32 != d_model 64
    assert not cfg.slim_self_attention_ok
    m = model(cfg)
    ids, mask, dec = batch()
    with caplog.at_level(logging.WARNING, logger="finsent_cli.core.models.t5"):
        slim = m.generate(ids, mask, max_new_tokens=12, cache="slim", stop_on_eos=False)
    assert any("falls back to the full K/V cache" in r.getMessage() for r in caplog.records)
    assert torch.equal(slim, m.generate(ids, mask, max_new_tokens=12, cache="full", stop_on_eos=False))
    assert (stepwise_logits(m, ids, mask, dec, "slim") - stepwise_logits(m, ids, mask, dec, "full")).abs().max() <= 1e-4
    b = cache_bytes(cfg, 2, 10, 5, "slim")
    assert b["self_attention"] == cache_bytes(cfg, 2, 10, 5, "full")["self_attention"]  # fell back
    assert b["cross_attention"] == 2 * 10 * 64 * 4  # cross-attention stays slim (no inverse needed)


def test_long_decoding_past_bias_distance():
    m = model(tiny_cfg(relative_attention_max_distance=16, relative_attention_num_buckets=8))
    ids, mask, dec = batch(T=40)
    full = stepwise_logits(m, ids, mask, dec, "full")
    slim = stepwise_logits(m, ids, mask, dec, "slim")
    teacher = m(ids, mask, decoder_input_ids=dec).logits
    assert (full - teacher).abs().max() <= 1e-4 and (slim - full).abs().max() <= 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_slim_equals_full_on_cuda():
    m = model().cuda()
    ids, mask, dec = (t.cuda() for t in batch())
    full = stepwise_logits(m, ids, mask, dec, "full")
    slim = stepwise_logits(m, ids, mask, dec, "slim")
    assert (slim - full).abs().max() <= 1e-3  # TF32 matmuls may be on


# ---------------------------------------------------------------------- slim or full: "auto"
def test_auto_picks_by_batch_source_length_and_positions():
    cfg = t5_small_config()
    edge = cache_mod.SLIM_FROM_SOURCE_TOKENS
    assert choose_mode(16, 512, 33) == "slim" and choose_mode(64, 128, 33) == "slim"  # measured 1.05x-1.27x
    assert choose_mode(4, 512, 33) == "full" and choose_mode(64, 32, 33) == "full"  # measured 0.87x-0.99x
    assert choose_mode(1, edge, 33) == "slim" and choose_mode(1, edge - 1, 33) == "full"
    assert choose_mode(3, 20, 2) == "slim"  # text2text scoring: 3 label words in one pass (1.11x-1.55x)
    assert choose_mode(1, 32, cache_mod.SLIM_MAX_FULL_POSITIONS + 1) == "full"
    assert cache_bytes(cfg, 64, 512, 33, "auto") == cache_bytes(cfg, 64, 512, 33, "slim")
    assert cache_bytes(cfg, 1, 32, 33, "auto") == cache_bytes(cfg, 1, 32, 33, "full")
    with pytest.raises(ValueError, match="resolved by choose_mode"):
        cache_mod.resolve_mode(cfg, "auto")


@pytest.mark.parametrize("picked", ["slim", "full"])
def test_auto_is_the_cache_it_picks(monkeypatch, picked):
    # auto choosing slim for every call, then full for every call (scoring included)
    monkeypatch.setattr(cache_mod, "SLIM_FROM_SOURCE_TOKENS", 0 if picked == "slim" else 10**9)
    monkeypatch.setattr(cache_mod, "SLIM_MAX_FULL_POSITIONS", 10**9 if picked == "slim" else 0)
    m = model()
    ids, mask, dec = batch()
    enc = m.encode(ids, mask)
    assert m.new_cache(enc, mask, 12).slim_cross == (picked == "slim")  # "auto" is the default
    auto = m.generate(ids, mask, max_new_tokens=20, stop_on_eos=False)
    assert torch.equal(auto, m.generate(ids, mask, max_new_tokens=20, cache=picked, stop_on_eos=False))
    targets = [[5, 1], [7, 8, 1], [11]]
    assert torch.equal(m.score_targets(ids, mask, targets), m.score_targets(ids, mask, targets, cache=picked))
    assert torch.equal(stepwise_logits(m, ids, mask, dec, "auto"), stepwise_logits(m, ids, mask, dec, picked))
    assert (stepwise_logits(m, ids, mask, dec, "auto") - stepwise_logits(m, ids, mask, dec, "full")).abs().max() <= 1e-4


def test_auto_on_non_square_w_k_is_quiet(caplog):
    m = model(tiny_cfg(num_heads=4, d_kv=8))  # inner 32 != d_model 64: slim self-attention cannot apply
    ids, mask, _ = batch()
    with caplog.at_level(logging.WARNING, logger="finsent_cli.core.models.t5"):
        scores = m.score_targets(ids, mask, [[5, 1], [7, 1]])  # auto picks slim: cross slim, self full
    assert not caplog.records
    assert (scores - m.score_targets(ids, mask, [[5, 1], [7, 1]], cache="full")).abs().max() <= 1e-4
