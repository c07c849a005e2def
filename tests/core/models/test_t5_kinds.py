"""Kinds t5_cls and t5_text2text: built from a pretrain run / T5 folder, trained a few steps, saved and reloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from finsent_cli.config.models import T5ClsCfg, T5Text2TextCfg
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.models.registry import get_kind
from finsent_cli.core.models.t5 import FinT5ForConditionalGeneration, load_t5, save_t5
from finsent_cli.core.models.t5.heads import T5EncoderClassifier, T5TextToText
from finsent_cli.errors import FinsentError
from tests.core.models.t5_helpers import tiny_cfg

ROWS = [
    {"text": "profit rose 12% in the quarter", "label": "positive"},
    {"text": "shares fell after the loss", "label": "negative"},
    {"text": "the bank holds its meeting", "label": "neutral"},
    {"text": "revenue rose and the dividend rose", "label": "positive"},
    {"text": "oil stock fell 40%", "label": "negative"},
    {"text": "market guidance for the quarter", "label": "neutral"},
]
TEXTS = ["profit rose", "shares of the bank fell sharply after the merger guidance", "quarter"]
KINDS = {"t5_cls": T5ClsCfg, "t5_text2text": T5Text2TextCfg}


def _cfg(kind: str, backbone: Path, **kw: Any) -> T5ClsCfg | T5Text2TextCfg:
    return KINDS[kind](backbone=str(backbone), max_length=16, **kw)


def _build(kind: str, backbone: Path, seed: int = 0, **kw: Any) -> tuple[Any, torch.nn.Module, Any]:
    torch.manual_seed(seed)
    cfg = _cfg(kind, backbone, **kw)
    model, tok = get_kind(kind).build(cfg)
    return cfg, model, tok


def _logits(
    kind: str, model: torch.nn.Module, tok: Any, texts: list[str] = TEXTS, max_length: int = 64
) -> torch.Tensor:
    enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    with torch.no_grad():
        return get_kind(kind).class_logits(model.eval(), enc["input_ids"], enc["attention_mask"])


def test_cls_build_copies_the_encoder_and_drops_the_decoder(tiny_t5_folder: Path) -> None:
    # the pretrain run folder itself: its best/ is the backbone
    cfg, model, _ = _build("t5_cls", tiny_t5_folder.parent, pooling="first", backbone_dropout=0.1)
    assert isinstance(model, T5EncoderClassifier) and model.training and model.pooling == "first"
    ref = load_t5(tiny_t5_folder).state_dict()
    state = model.state_dict()
    assert {k for k in state if not k.startswith("classifier.")} == {
        k for k in ref if k.startswith(("shared.", "encoder."))
    }
    for k, v in state.items():
        if not k.startswith("classifier."):
            assert torch.equal(v, ref[k]), k
    assert model.config.dropout_rate == 0.1 and model.encoder.dropout.p == 0.1  # the backbone had 0.0
    meta = get_kind("t5_cls").meta(cfg)
    assert meta["base_model"] == "pretrain_tiny" and meta["pooling"] == "first" and meta["kind"] == "t5_cls"
    assert get_kind("t5_cls").meta(_cfg("t5_cls", tiny_t5_folder))["base_model"] == "pretrain_tiny"  # best/ too


def test_text2text_build_copies_the_whole_t5(tiny_t5_folder: Path) -> None:
    _, model, tok = _build("t5_text2text", tiny_t5_folder)
    assert isinstance(model, T5TextToText) and model.training
    ref = load_t5(tiny_t5_folder).state_dict()
    assert model.t5.state_dict().keys() == ref.keys()
    assert all(torch.equal(v, ref[k]) for k, v in model.t5.state_dict().items())
    assert model.prefix_ids.tolist() == tok("sentiment: ", add_special_tokens=False)["input_ids"]
    assert all(ids[-1] == tok.eos_token_id for ids in model.label_ids) and len({tuple(i) for i in model.label_ids}) == 3


@pytest.mark.parametrize("kind", list(KINDS))
def test_random_init_differs_but_keeps_the_shapes(kind: str, tiny_t5_folder: Path) -> None:
    _, pre, _ = _build(kind, tiny_t5_folder)
    _, rand, _ = _build(kind, tiny_t5_folder, init="random")
    a, b = pre.state_dict(), rand.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert not torch.equal(
        a["shared.weight" if kind == "t5_cls" else "t5.shared.weight"],
        b["shared.weight" if kind == "t5_cls" else "t5.shared.weight"],
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_loss_falls_over_a_few_steps(kind: str, tiny_t5_folder: Path) -> None:
    cfg, model, tok = _build(kind, tiny_t5_folder, class_weights=[1.0, 2.0, 1.0])
    impl = get_kind(kind)
    feats = impl.features(tok, ROWS, cfg)
    assert all(len(f["input_ids"]) <= cfg.max_length for f in feats)
    batch = impl.collate(feats, tok)
    assert batch["labels"].tolist() == [2, 0, 1, 2, 0, 1]
    weights = torch.tensor([1.0, 2.0, 1.0])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = impl.loss(model, batch, weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_text2text_features_leave_room_for_the_prefix_and_weights_count(tiny_t5_folder: Path) -> None:
    cfg, model, tok = _build("t5_text2text", tiny_t5_folder)
    impl = get_kind("t5_text2text")
    long_row = [{"text": " ".join(["profit rose"] * 30), "label": "positive"}]
    feat = impl.features(tok, long_row, cfg)[0]
    assert (
        len(feat["input_ids"]) + len(model.prefix_ids) == cfg.max_length and feat["input_ids"][-1] == tok.eos_token_id
    )
    assert feat["target_ids"] == model.label_ids[2]
    batch = impl.collate(impl.features(tok, ROWS[:3], cfg), tok)
    assert (batch["target_ids"] == -100).any() and batch["input_ids"][batch["attention_mask"] == 0].eq(0).all()
    model.eval()
    with torch.no_grad():
        per = model(batch["input_ids"], batch["attention_mask"], batch["target_ids"], reduction="none")  # (B,)
        w = torch.tensor([1.0, 3.0, 0.5])
        want = (w[batch["labels"]] * per).sum() / w[batch["labels"]].sum()
        torch.testing.assert_close(impl.loss(model, batch, w), want)
        torch.testing.assert_close(impl.loss(model, batch, None), per.mean())


@pytest.mark.parametrize("kind", list(KINDS))
def test_save_load_gives_the_same_logits_from_the_folder_alone(kind: str, tiny_t5_folder: Path, tmp_path: Path) -> None:
    backbone = tmp_path / "backbone"
    shutil.copytree(tiny_t5_folder, backbone)
    cfg, model, tok = _build(kind, backbone)
    impl = get_kind(kind)
    before = _logits(kind, model, tok, max_length=16 - len(getattr(model, "prefix_ids", [])))  # cut as training cuts
    folder = tmp_path / "model"
    folder.mkdir()
    impl.save(model, tok, folder, {**impl.meta(cfg), "run": "r"})
    shutil.rmtree(backbone)  # the model folder must not need the backbone
    meta = json.loads((folder / "finsent.json").read_text())
    assert (
        meta["kind"] == kind
        and meta["task"] == "classification"
        and meta["labels"] == ["negative", "neutral", "positive"]
    )
    assert str(tmp_path) not in (folder / "finsent.json").read_text() and meta["base_model"] == "backbone"
    if kind == "t5_text2text":
        assert meta["prefix"] == "sentiment: " and meta["label_words"] == ["negative", "neutral", "positive"]
        assert meta["max_input_length"] == 16 and meta["max_length"] == 16 - len(model.prefix_ids)
    else:
        assert meta["pooling"] == "mean" and meta["max_length"] == 16
    back, tok2 = impl.load(folder, meta)
    assert not back.training
    assert torch.equal(_logits(kind, back, tok2, max_length=meta["max_length"]), before)
    again, _ = impl.build(cfg, resume=folder)  # resuming reads the checkpoint folder, in train mode
    assert again.training and torch.equal(_logits(kind, again, tok2, max_length=meta["max_length"]), before)
    clf = load_classifier(folder)  # truncates to finsent.json's max_length, as training did
    probs = clf.predict_proba(TEXTS)
    np.testing.assert_allclose(probs, torch.softmax(before, -1).numpy(), atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_text2text_padding_gives_the_scores_of_single_rows(tiny_t5_folder: Path) -> None:
    _, model, tok = _build("t5_text2text", tiny_t5_folder)
    batched = _logits("t5_text2text", model, tok)
    for i, text in enumerate(TEXTS):
        torch.testing.assert_close(
            _logits("t5_text2text", model, tok, [text]), batched[i : i + 1], atol=1e-4, rtol=1e-5
        )


def _folder_with(
    tmp_path: Path, tiny_t5_folder: Path, name: str, vocab_size: int | None = None, no_eos: bool = False
) -> Path:
    from transformers import AutoTokenizer

    out = tmp_path / name
    shutil.copytree(tiny_t5_folder, out)
    if vocab_size is not None:
        save_t5(FinT5ForConditionalGeneration(tiny_cfg(vocab_size=vocab_size)), out)
    if no_eos:
        tok = AutoTokenizer.from_pretrained(str(out))
        tok.eos_token = None
        tok.save_pretrained(str(out))
    return out


@pytest.mark.parametrize("kind", list(KINDS))
def test_bad_backbones_are_one_clear_error(kind: str, tiny_t5_folder: Path, tmp_path: Path, minilm_path: str) -> None:
    cases = [
        (minilm_path, "is not a T5 folder (config.json: model_type is 'bert'"),
        ("minilm", "model.backbone: minilm is not a T5 folder"),
        (tmp_path / "nope", "is not a T5 folder (not found)"),
        (tmp_path, "is not a T5 folder (no config.json, and no best/ or last/ model folder inside)"),
        (
            _folder_with(tmp_path, tiny_t5_folder, "small_vocab", vocab_size=300),
            "the tokenizer has 500 tokens but the model's vocabulary is 300",
        ),
        (_folder_with(tmp_path, tiny_t5_folder, "no_eos", no_eos=True), "has no EOS or pad token"),
    ]
    for backbone, needle in cases:
        with pytest.raises(FinsentError) as err:
            get_kind(kind).build(_cfg(kind, Path(backbone)))
        assert err.value.message.startswith("model.backbone: ") and needle in err.value.message, err.value.message
        assert "\n" not in err.value.message


def test_text2text_prefix_longer_than_max_length(tiny_t5_folder: Path) -> None:
    with pytest.raises(FinsentError, match="model.max_length: 8 leaves no room for the text"):
        get_kind("t5_text2text").build(
            T5Text2TextCfg(backbone=str(tiny_t5_folder), max_length=8, prefix="sentiment of this headline: ")
        )


def test_an_hf_t5_folder_is_a_backbone(tiny_t5_folder: Path, tmp_path: Path) -> None:
    """A folder written by transformers (no finsent.json) works as well."""
    from transformers import T5ForConditionalGeneration

    hf = T5ForConditionalGeneration.from_pretrained(tiny_t5_folder)
    out = tmp_path / "hf_t5"
    hf.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_t5_folder / name, out / name)
    _, model, _ = _build("t5_text2text", out)
    ref = load_t5(tiny_t5_folder).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.t5.state_dict().items())
