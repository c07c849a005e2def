"""finsent T5 vs transformers.T5ForConditionalGeneration: same weights, same numbers (fp32, padded batches)."""

from __future__ import annotations

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration
from transformers.models.t5.modeling_t5 import T5Attention as HFT5Attention

from finsent_cli.core.models.t5 import (
    FinT5Config,
    FinT5ForConditionalGeneration,
    attention,
    attention_ref,
    build_t5,
    load_t5,
    relative_position_bucket,
    save_t5,
    t5_base_config,
    t5_config,
    t5_small_config,
    t5_tiny_config,
)
from tests.core.models.t5_helpers import tiny_cfg

TOL = 1e-4


def padded_batch(seed: int = 0, B: int = 3, S: int = 13, T: int = 7, vocab: int = 128):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, S - 5 :] = 0  # right padding
    mask[2, :3] = 0  # left padding: T5's relative bias allows both
    ids = ids.masked_fill(mask == 0, 0)
    labels = torch.randint(2, vocab, (B, T), generator=g)
    labels[0, T - 2 :] = -100
    return ids, mask, labels


def ours(cfg: FinT5Config, seed: int = 0) -> FinT5ForConditionalGeneration:
    torch.manual_seed(seed)
    return FinT5ForConditionalGeneration(cfg).eval()


# ---------------------------------------------------------------------- layers
@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_matches_hf(bidirectional):
    rel = torch.arange(-600, 601)[None, :]
    for nb, md in [(32, 128), (8, 16)]:
        ref = HFT5Attention._relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=nb, max_distance=md)
        got = relative_position_bucket(rel, bidirectional, nb, md)
        assert torch.equal(got, ref)


def test_bucket_table_serves_any_length():
    """The precomputed table (+-max_distance) gives the same bias as bucketing offsets directly, far beyond it."""
    m = ours(tiny_cfg(relative_attention_max_distance=16, relative_attention_num_buckets=8))
    for stack, bidi in [(m.encoder, True), (m.decoder, False)]:
        attn = stack.block[0].self_attn
        bias = attn.compute_bias(300, 310, q_offset=5)  # (1, H, Tq, Tk)
        rel = torch.arange(310)[None, :] - torch.arange(5, 305)[:, None]
        direct = attn.relative_attention_bias(relative_position_bucket(rel, bidi, 8, 16)).permute(2, 0, 1)[None]
        assert bias.shape == (1, 4, 300, 310)
        assert torch.equal(bias, direct)


def test_sdpa_matches_reference_kernel():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 5, 16, generator=g), torch.randn(2, 4, 9, 16, generator=g)
    v = torch.randn(2, 4, 9, 64, generator=g)  # Ev != E, as slim attention uses
    mask = torch.randn(2, 4, 5, 9, generator=g)
    mask[0, :, :, 6:] = torch.finfo(torch.float32).min
    assert (attention(q, k, v, mask) - attention_ref(q, k, v, mask)).abs().max() < 1e-5


def test_model_sdpa_matches_reference_path():
    m = ours(tiny_cfg())
    ids, mask, labels = padded_batch()
    fast = m(ids, mask, labels=labels).logits
    m.set_attention_impl("ref")
    ref = m(ids, mask, labels=labels).logits
    assert (fast - ref).abs().max() < 1e-5
    with pytest.raises(ValueError, match="unknown attention impl"):
        m.set_attention_impl("flash")


# ---------------------------------------------------------------------- parity with transformers
@pytest.mark.parametrize("variant", ["v1.1", "original"])
def test_parity_ours_saved_loaded_by_hf(tmp_path, variant):
    cfg = tiny_cfg(**({"feed_forward_proj": "relu", "tie_word_embeddings": True} if variant == "original" else {}))
    m = ours(cfg)
    save_t5(m, tmp_path)
    hf = T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    ids, mask, labels = padded_batch()
    a = m(ids, mask, labels=labels)
    with torch.no_grad():
        b = hf(input_ids=ids, attention_mask=mask, labels=labels)
    assert (a.encoder_hidden_states - b.encoder_last_hidden_state).abs().max() <= TOL
    assert (a.logits - b.logits).abs().max() <= TOL
    assert abs(a.loss.item() - b.loss.item()) <= TOL
    tied = hf.lm_head.weight.data_ptr() == hf.shared.weight.data_ptr()
    assert tied == (variant == "original")


@pytest.mark.parametrize("variant", ["v1.1", "original"])
def test_training_mode_fused_projections_match_hf_loss_and_gradients(tmp_path, variant):
    """In training mode q/k/v (and the gated wi_0/wi_1) run as one matmul: same loss and gradients as HF."""
    cfg = tiny_cfg(**({"feed_forward_proj": "relu", "tie_word_embeddings": True} if variant == "original" else {}))
    m = ours(cfg).train()
    save_t5(m, tmp_path)
    hf = T5ForConditionalGeneration.from_pretrained(tmp_path).train()  # dropout_rate 0: deterministic
    ids, mask, labels = padded_batch()
    a = m(ids, mask, labels=labels).loss
    b = hf(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert abs(a.item() - b.item()) <= TOL
    a.backward()
    b.backward()
    theirs = dict(hf.named_parameters())
    for name, p in m.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, atol=1e-5, rtol=1e-4, msg=name)
    m.eval()
    with torch.no_grad():
        assert abs(m(ids, mask, labels=labels).loss.item() - a.item()) <= TOL  # the unfused eval path agrees


@pytest.mark.parametrize("hf_kwargs", [{}, {"tie_word_embeddings": False}, {"feed_forward_proj": "gated-gelu"}])
def test_parity_hf_saved_loaded_by_ours(tmp_path, hf_kwargs):
    hf_cfg = T5Config(
        vocab_size=128, d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, dropout_rate=0.0,
        decoder_start_token_id=0, **hf_kwargs,
    )
    torch.manual_seed(1)
    hf = T5ForConditionalGeneration(hf_cfg).eval()
    hf.save_pretrained(tmp_path)
    m = load_t5(tmp_path)
    ids, mask, labels = padded_batch(seed=1)
    with torch.no_grad():
        b = hf(input_ids=ids, attention_mask=mask, labels=labels)
        a = m(ids, mask, labels=labels)
    assert (a.encoder_hidden_states - b.encoder_last_hidden_state).abs().max() <= TOL
    assert (a.logits - b.logits).abs().max() <= TOL


def test_untied_roundtrip_ours_hf_ours(tmp_path):
    m = ours(tiny_cfg())
    save_t5(m, tmp_path / "a")
    T5ForConditionalGeneration.from_pretrained(tmp_path / "a").save_pretrained(tmp_path / "b")
    back = load_t5(tmp_path / "b")
    assert back.config.tie_word_embeddings is False and back.config.scale_decoder_outputs is False
    for (k, v), (k2, v2) in zip(m.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


def test_state_dict_uses_hf_key_names():
    keys = set(ours(tiny_cfg()).state_dict())
    for k in [
        "shared.weight",
        "lm_head.weight",
        "encoder.block.0.layer.0.SelfAttention.q.weight",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "decoder.block.1.layer.1.EncDecAttention.v.weight",
        "decoder.block.1.layer.2.DenseReluDense.wi_0.weight",
        "encoder.final_layer_norm.weight",
    ]:
        assert k in keys
    assert "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" not in keys
    assert not any("bucket_table" in k for k in keys)  # the table is a non-persistent buffer


def test_greedy_matches_hf_generate_with_eos(tmp_path):
    m = ours(tiny_cfg())
    ids, mask, _ = padded_batch(B=4)
    free = m.generate(ids, mask, max_new_tokens=12, stop_on_eos=False)
    eos = int(free[0, 4])  # make a token that row 0 emits at step 4 the EOS, so EOS stopping is exercised
    m = ours(tiny_cfg(eos_token_id=eos))
    save_t5(m, tmp_path)
    hf = T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    want = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False, num_beams=1)
    for mode in ("slim", "full"):
        got = m.generate(ids, mask, max_new_tokens=12, cache=mode)
        assert torch.equal(got, want), mode
    assert (want[0, 4:] == eos).sum() == 1 and (want[0, 5:] == 0).all()  # padded after EOS


# ---------------------------------------------------------------------- training forward
def test_loss_ignores_minus_100_and_trains():
    m = ours(tiny_cfg(dropout_rate=0.1)).train()
    ids, mask, labels = padded_batch()
    out = m(ids, mask, labels=labels)
    keep = labels != -100
    manual = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    assert abs(out.loss.item() - manual.item()) < 1e-5
    out.loss.backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_shift_right():
    m = ours(tiny_cfg(decoder_start_token_id=0, pad_token_id=0))
    got = m.shift_right(torch.tensor([[5, 6, -100, -100]]))
    assert got.tolist() == [[0, 5, 6, 0]]


# ---------------------------------------------------------------------- sizes and builders
def test_named_sizes():
    small = t5_small_config()
    assert (small.d_model, small.d_ff, small.num_heads, small.d_kv, small.num_layers, small.num_decoder_layers) == (
        512, 1024, 8, 64, 6, 6,
    )
    assert small.is_gated and not small.tie_word_embeddings and not small.scale_decoder_outputs
    tiny = t5_tiny_config()
    assert (tiny.d_model, tiny.num_layers, tiny.num_heads, tiny.d_kv) == (256, 4, 4, 64)
    base = t5_base_config()
    assert (base.d_model, base.num_layers, base.num_heads, base.d_ff) == (768, 12, 12, 2048)
    assert all(c.slim_self_attention_ok for c in (tiny, small, base))
    google = t5_config("t5_v1_1_small")  # Google's v1.1 small: 6 heads of 64 in a 512-wide model
    assert (google.d_model, google.num_heads, google.d_kv, google.num_layers, google.d_ff) == (512, 6, 64, 8, 1024)
    assert not google.slim_self_attention_ok
    assert t5_config("tiny") == t5_config("t5_tiny")


def test_original_variant_and_overrides():
    cfg = t5_config("t5_tiny", variant="original", vocab_size=100, num_decoder_layers=2)
    assert cfg.feed_forward_proj == "relu" and cfg.tie_word_embeddings and cfg.scale_decoder_outputs
    m = build_t5("t5_tiny", variant="original", vocab_size=100, num_layers=1, num_decoder_layers=1)
    assert m.lm_head.weight is m.shared.weight
    assert len(m.decoder.block) == 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: t5_config("t5_huge"), "unknown T5 size"),
        (lambda: t5_config("t5_tiny", d_modle=3), "unknown T5 config field"),
        (lambda: t5_config("t5_tiny", variant="v2"), "unknown T5 variant"),
        (lambda: t5_config("t5_tiny", feed_forward_proj="gated-tanh"), "feed_forward_proj"),
        (lambda: t5_config("t5_tiny", num_heads=0), "positive"),
        (lambda: t5_config("t5_tiny", relative_attention_max_distance=16), "max_distance"),
    ],
)
def test_bad_config_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_t5_small_parameter_count():
    m = build_t5("t5_small")
    n = sum(p.numel() for p in m.parameters())
    # 2 * 32128 * 512 embeddings + 6 enc blocks * (4*512^2 + 3*512*1024) + 6 dec blocks * (8*512^2 + 3*512*1024)
    # + norms and two bias tables
    expected = 2 * 32128 * 512 + 6 * (4 * 512**2 + 3 * 512 * 1024) + 6 * (8 * 512**2 + 3 * 512 * 1024)
    expected += (6 * 2 + 6 * 3 + 2) * 512 + 2 * 32 * 8
    assert n == expected


# ---------------------------------------------------------------------- long inputs
def test_inputs_longer_than_bias_distance_match_hf(tmp_path):
    """Relative bias has no length limit: 300 source tokens with max_distance 16 still match transformers."""
    m = ours(tiny_cfg(relative_attention_max_distance=16, relative_attention_num_buckets=8))
    save_t5(m, tmp_path)
    hf = T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(2, 128, (2, 300), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 250:] = 0
    dec = torch.randint(2, 128, (2, 40), generator=g)
    with torch.no_grad():
        b = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    a = m(ids, mask, decoder_input_ids=dec).logits
    assert (a - b).abs().max() <= TOL
    out = m.generate(ids, mask, max_new_tokens=40, stop_on_eos=False)
    assert out.shape == (2, 41)
