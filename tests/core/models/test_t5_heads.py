"""The T5 sentiment heads: encoder classifier and text-to-text scorer, their folders, and parity with transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import T5EncoderModel, T5ForConditionalGeneration

from finsent_cli.core.models.t5 import FinT5ForConditionalGeneration, T5LoadError
from finsent_cli.core.models.t5.heads import T5EncoderClassifier, T5TextToText
from tests.core.models.t5_helpers import tiny_cfg

PREFIX = [7, 8, 9]
LABEL_IDS = [[20, 21, 1], [22, 1], [23, 24, 25, 1]]  # label words of different lengths, each + EOS


def _t5(seed: int = 0) -> FinT5ForConditionalGeneration:
    torch.manual_seed(seed)
    return FinT5ForConditionalGeneration(tiny_cfg()).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three right-padded rows of lengths 6, 3 and 5 (the last real token is EOS)."""
    rows = [[30, 31, 32, 33, 34, 1], [40, 41, 1], [50, 51, 52, 53, 1]]
    ids = torch.zeros(3, 6, dtype=torch.long)  # (B, S), pad id 0
    mask = torch.zeros(3, 6, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def test_encoder_classifier_reuses_the_t5_encoder() -> None:
    t5 = _t5()
    clf = T5EncoderClassifier.from_t5(t5, pooling="mean", dropout=0.0)
    assert clf.encoder is t5.encoder and clf.shared is t5.shared and not clf.training
    assert not any(k.startswith(("decoder.", "lm_head.")) for k in clf.state_dict())
    ids, mask = _batch()
    with torch.no_grad():
        assert clf(ids, mask).shape == (3, 3)
        h = t5.encode(ids, mask)  # (B, S, d)
        m = mask[..., None].float()
        want = clf.classifier((h * m).sum(1) / m.sum(1))
        torch.testing.assert_close(clf(ids, mask), want)
        first = T5EncoderClassifier.from_t5(t5, pooling="first").eval()
        first.classifier.load_state_dict(clf.classifier.state_dict())
        torch.testing.assert_close(first(ids, mask), clf.classifier(h[:, 0]))


def test_padding_does_not_change_the_mean_pooled_logits() -> None:
    clf = T5EncoderClassifier.from_t5(_t5()).eval()
    ids, mask = _batch()
    with torch.no_grad():
        batched = clf(ids, mask)
        for i in range(3):
            n = int(mask[i].sum())
            torch.testing.assert_close(
                clf(ids[i : i + 1, :n], mask[i : i + 1, :n]), batched[i : i + 1], atol=1e-5, rtol=0
            )


def test_random_classifier_has_t5_init_and_the_same_shapes() -> None:
    torch.manual_seed(1)
    rand = T5EncoderClassifier.random(tiny_cfg())
    ref = T5EncoderClassifier.from_t5(_t5())
    for k, v in ref.state_dict().items():
        assert rand.state_dict()[k].shape == v.shape
    # T5 init: embedding std 1 (nn.Embedding's default too), attention q std (d_model * d_kv)^-0.5
    q = rand.encoder.block[0].layer[0].SelfAttention.q.weight
    assert abs(q.std().item() - (64 * 16) ** -0.5) < 0.01
    assert not torch.equal(rand.shared.weight, ref.shared.weight)
    with pytest.raises(ValueError, match="unknown pooling"):
        T5EncoderClassifier(tiny_cfg(), pooling="cls")


def test_encoder_classifier_folder_roundtrip_and_transformers_encoder(tmp_path: Path) -> None:
    clf = T5EncoderClassifier.from_t5(_t5(), pooling="first", dropout=0.2).eval()
    folder = clf.save(tmp_path / "cls")
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["T5EncoderModel"] and config["model_type"] == "t5"
    assert (
        config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
        and config["finsent_pooling"] == "first"
    )
    back = T5EncoderClassifier.load(folder)
    assert back.pooling == "first" and back.dropout.p == 0.2 and not back.training
    ids, mask = _batch()
    with torch.no_grad():
        assert torch.equal(back(ids, mask), clf(ids, mask))
        hf = T5EncoderModel.from_pretrained(folder).eval()  # classifier.* are unexpected keys, ignored
        want = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = clf.encoder(clf.shared(ids), mask)
    assert (got - want).abs().max() <= 1e-4
    (folder / "model.safetensors").unlink()
    with pytest.raises(T5LoadError, match="model.safetensors is missing"):
        T5EncoderClassifier.load(folder)


def test_text2text_scores_equal_score_targets_on_prefixed_ids() -> None:
    t5 = _t5()
    model = T5TextToText(t5, PREFIX, LABEL_IDS).eval()
    ids, mask = _batch()
    got = model.class_logits(ids, mask)
    assert got.shape == (3, 3)
    for i in range(3):  # one unpadded row at a time, prefix written out by hand
        n = int(mask[i].sum())
        row = torch.tensor([PREFIX + ids[i, :n].tolist()])  # (1, P + n)
        want = t5.score_targets(row, torch.ones_like(row), LABEL_IDS, cache="full")
        torch.testing.assert_close(got[i : i + 1], want, atol=1e-5, rtol=0)


def test_text2text_loss_is_the_negative_score_of_the_gold_word() -> None:
    model = T5TextToText(_t5(), PREFIX, LABEL_IDS).eval()
    ids, mask = _batch()
    gold = [2, 0, 1]
    T = max(len(t) for t in LABEL_IDS)
    labels = torch.full((3, T), -100)  # (B, T)
    for i, y in enumerate(gold):
        labels[i, : len(LABEL_IDS[y])] = torch.tensor(LABEL_IDS[y])
    with torch.no_grad():
        per_example = model(ids, mask, labels, reduction="none")
        scores = model.class_logits(ids, mask)
        torch.testing.assert_close(per_example, -scores[torch.arange(3), gold], atol=1e-4, rtol=0)
        torch.testing.assert_close(model(ids, mask, labels), per_example.mean())
    with pytest.raises(ValueError, match="one non-empty target per label"):
        T5TextToText(_t5(), PREFIX, LABEL_IDS[:2])


def test_text2text_folder_is_a_transformers_t5(tmp_path: Path) -> None:
    model = T5TextToText(_t5(), PREFIX, LABEL_IDS).eval()
    folder = model.save(tmp_path / "t2t")
    assert "prefix_ids" not in json.dumps(list(model.state_dict()))
    hf = T5ForConditionalGeneration.from_pretrained(folder).eval()
    ids, mask = _batch()
    pre, pre_mask = model.with_prefix(ids, mask)
    assert (
        pre.shape == (3, 3 + 6)
        and torch.equal(pre[:, :3], torch.tensor([PREFIX] * 3))
        and torch.equal(pre_mask.sum(1), mask.sum(1) + 3)
    )
    dec = torch.tensor([[0, 20, 21]] * 3)
    with torch.no_grad():
        want = hf(input_ids=pre, attention_mask=pre_mask, decoder_input_ids=dec).logits
        got = model.t5(pre, pre_mask, decoder_input_ids=dec).logits
    assert (got - want).abs().max() <= 1e-4
    assert json.loads((folder / "config.json").read_text())["id2label"]["2"] == "positive"
