"""Loading Hugging Face T5 folders: every supported weights layout, and clear errors for everything else."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import T5Config, T5ForConditionalGeneration

from finsent_cli.core.models.t5 import FinT5ForConditionalGeneration, T5LoadError, load_t5, save_t5
from tests.core.models.t5_helpers import tiny_cfg


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    m = FinT5ForConditionalGeneration(tiny_cfg()).eval()
    folder = save_t5(m, tmp_path / "t5")
    return m, folder


def test_roundtrip_and_config_json(saved):
    m, folder = saved
    data = json.loads((folder / "config.json").read_text())
    assert data["model_type"] == "t5" and data["architectures"] == ["T5ForConditionalGeneration"]
    assert data["tie_word_embeddings"] is False and data["feed_forward_proj"] == "gated-gelu"
    back = load_t5(folder)
    assert back.config == m.config and not back.training
    for k, v in m.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])


def test_load_in_bf16(saved):
    _, folder = saved
    m = load_t5(folder, dtype=torch.bfloat16)
    assert m.dtype == torch.bfloat16


def test_hf_sharded_and_legacy_bin(tmp_path):
    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(
        T5Config(vocab_size=128, d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, decoder_start_token_id=0)
    ).eval()
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    a = load_t5(tmp_path / "sharded")
    # legacy: pytorch_model.bin with the embed_tokens copies that old checkpoints carry
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text((tmp_path / "sharded" / "config.json").read_text())
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    torch.save(state, legacy / "pytorch_model.bin")
    b = load_t5(legacy)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    ids = torch.randint(2, 128, (2, 9))
    with torch.no_grad():
        want = hf(input_ids=ids, decoder_input_ids=ids[:, :4]).logits
    assert (b(ids, decoder_input_ids=ids[:, :4]).logits - want).abs().max() <= 1e-4


def test_not_a_directory(tmp_path):
    with pytest.raises(T5LoadError, match="not a directory"):
        load_t5(tmp_path / "nope")


def test_missing_config(tmp_path):
    with pytest.raises(T5LoadError, match="config.json is missing"):
        load_t5(tmp_path)


def test_wrong_model_type(saved):
    _, folder = saved
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 64}))
    with pytest.raises(T5LoadError, match="model_type is 'bert'"):
        load_t5(folder)


def test_config_missing_t5_fields(saved):
    _, folder = saved
    (folder / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 64}))
    with pytest.raises(T5LoadError, match="lacks T5 field"):
        load_t5(folder)


def test_missing_weights_file(saved):
    _, folder = saved
    (folder / "model.safetensors").unlink()
    with pytest.raises(T5LoadError, match="no weights found"):
        load_t5(folder)


def test_missing_and_unexpected_keys_are_named(saved):
    _, folder = saved
    path = folder / "model.safetensors"
    state = load_file(str(path))
    key = "decoder.block.1.layer.1.EncDecAttention.q.weight"
    state.pop(key)
    save_file(state, str(path))
    with pytest.raises(T5LoadError, match=f"missing 1 T5 key.*{key}"):
        load_t5(folder)
    state[key] = torch.zeros(64, 64)
    state["encoder.block.0.layer.0.SelfAttention.gate.weight"] = torch.zeros(3)
    save_file(state, str(path))
    with pytest.raises(T5LoadError, match="does not use: encoder.block.0.layer.0.SelfAttention.gate.weight"):
        load_t5(folder)


def test_shape_mismatch_is_named(saved):
    _, folder = saved
    data = json.loads((folder / "config.json").read_text())
    data["d_ff"] = 96
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(T5LoadError, match="shape mismatch.*DenseReluDense"):
        load_t5(folder)


def test_load_error_is_a_value_error():
    assert issubclass(T5LoadError, ValueError)
