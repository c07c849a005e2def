"""Occlusion: word grouping, one batched pass, parity with separate passes, faithfulness by hand, HTML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from finsent_cli.core.explain.occlusion import explain_occlusion, explanation_to_dict, explanation_to_html, word_pieces
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.errors import FinsentError
from tests.classifier_fakes import keyword_classifier, sharpened_copy, softmax

TEXT = "profits good up bad today"


@pytest.fixture()
def keyword(tiny_bert: Path):
    return keyword_classifier(tiny_bert, pos={"good": 2.0, "up": 1.0}, neg={"bad": 1.5})


@pytest.mark.parametrize("mode", ["mask", "delete"])
def test_deltas_and_faithfulness_by_hand(keyword, mode: str) -> None:
    exp = explain_occlusion(keyword, TEXT, top_k=2, mode=mode)
    p = softmax([1.5, 0, 3])[2]  # p(positive | text)
    assert exp.label == "positive" and exp.p_pred == pytest.approx(p)
    assert [w.word for w in exp.words] == TEXT.split()
    expected_without = {
        "profits": p, "good": softmax([1.5, 0, 1])[2], "up": softmax([1.5, 0, 2])[2], "bad": softmax([0, 0, 3])[2], "today": p,
    }  # fmt: skip
    for w in exp.words:
        assert w.p_without == pytest.approx(expected_without[w.word], abs=1e-6)
        assert w.delta == pytest.approx(p - expected_without[w.word], abs=1e-6)
    assert exp.top_k == ["good", "up"]
    assert exp.comprehensiveness == pytest.approx(p - softmax([1.5, 0, 0])[2], abs=1e-6)  # good and up removed
    assert exp.sufficiency == pytest.approx(p - softmax([0, 0, 3])[2], abs=1e-6)  # only good and up kept
    assert exp.sufficiency < 0  # keeping only the supportive words is even more positive


def test_one_forward_pass_for_all_variants(keyword) -> None:
    explain_occlusion(keyword, TEXT, top_k=2)
    # original + 5 single-word variants in one pass; then top-k removed + top-k only
    assert keyword.model.calls == [6, 2]


def test_mask_token_replaces_pieces(keyword) -> None:
    ids, spans, pieces, truncated = word_pieces(keyword, "Profits rose, unexpectedly EBITDA!")
    assert [s for s in spans] == [(0, 7), (8, 13), (14, 26), (27, 34)]
    assert len(pieces[1]) == 2  # "rose" + ","
    assert len(pieces[3]) >= 3  # "ebitda!" is several sub-word pieces merged back into one word
    assert not truncated and ids[0] == keyword.tokenizer.cls_token_id


def test_batched_equals_separate_passes(tiny_bert: Path, tmp_path: Path) -> None:
    clf = load_classifier(sharpened_copy(tiny_bert, tmp_path / "m"))
    text = "Kestrel Mining profit jumped to EUR 42.5 mn from EUR 30.1 mn"
    for mode in ("mask", "delete"):  # delete gives variants of different lengths: padding must not matter
        exp = explain_occlusion(clf, text, mode=mode)
        ids, _, pieces, _ = word_pieces(clf, text)
        mask_id = clf.tokenizer.mask_token_id
        pred = ["negative", "neutral", "positive"].index(exp.label)
        for w, positions in enumerate(pieces):
            if mode == "mask":
                variant = [mask_id if i in positions else t for i, t in enumerate(ids)]
            else:
                variant = [t for i, t in enumerate(ids) if i not in positions]
            alone = clf.probs_from_ids([variant], batch_size=1)[0, pred]
            assert exp.words[w].p_without == pytest.approx(float(alone), abs=1e-5)
        assert np.isclose(sum(exp.probs.values()), 1.0, atol=1e-5)


def test_top_k_capped_and_truncation_reported(keyword) -> None:
    exp = explain_occlusion(keyword, "good", top_k=3)
    assert exp.top_k == ["good"] and exp.sufficiency == pytest.approx(0.0, abs=1e-6)
    keyword.max_length = 5  # [CLS] + 3 words + [SEP]
    exp = explain_occlusion(keyword, "good up bad profits today")
    assert exp.truncated and exp.skipped == ["profits", "today"] and len(exp.words) == 3


@pytest.mark.parametrize("text,match", [("", "TEXT is empty"), ("   \n", "TEXT is empty")])
def test_empty_text(keyword, text: str, match: str) -> None:
    with pytest.raises(FinsentError, match=match):
        explain_occlusion(keyword, text)


def test_bad_mode_and_k(keyword) -> None:
    with pytest.raises(FinsentError, match="unknown mask mode"):
        explain_occlusion(keyword, TEXT, mode="blur")
    with pytest.raises(FinsentError, match="at least 1"):
        explain_occlusion(keyword, TEXT, top_k=0)


def test_html_escapes_text_and_json_is_complete(keyword) -> None:
    text = 'good <script>alert("x")</script> & up'
    exp = explain_occlusion(keyword, text)
    page = explanation_to_html(exp)
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&amp;" in page and page.startswith("<!doctype html>")
    d = explanation_to_dict(exp)
    assert d["method"] == "occlusion" and [w["word"] for w in d["words"]] == text.split()
    assert set(d) >= {"label", "probs", "score", "top_k", "comprehensiveness", "sufficiency"}


def test_the_explanation_carries_the_signed_score(keyword) -> None:
    hand = softmax([1.5, 0, 3])  # "profits good up bad today"
    exp = explain_occlusion(keyword, TEXT)
    assert exp.score == pytest.approx(hand[2] - hand[0], abs=1e-6) and exp.score == pytest.approx(exp.probs["positive"] - exp.probs["negative"])
    d = explanation_to_dict(exp)
    assert list(d)[:4] == ["text", "label", "probs", "score"] and d["score"] == exp.score
    assert f"score {exp.score:+.3f})" in explanation_to_html(exp)
    bad = explain_occlusion(keyword, "bad bad day")
    assert bad.label == "negative" and bad.score < 0
    assert bad.score == pytest.approx(softmax([3, 0, 0])[2] - softmax([3, 0, 0])[0], abs=1e-6)
