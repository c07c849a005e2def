"""The signed sentiment score p_positive - p_negative: one function, every shape it is given, and the
Python API's scores against hand-computed probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from finsent_cli.core.inference.score import signed_score
from tests.classifier_fakes import keyword_classifier, softmax


def test_signed_score_of_a_row_an_array_and_a_mapping() -> None:
    assert signed_score([0.1, 0.2, 0.7]) == pytest.approx(0.6) and isinstance(signed_score([0.1, 0.2, 0.7]), float)
    assert signed_score((0.7, 0.2, 0.1)) == pytest.approx(-0.6)
    assert signed_score({"positive": 0.25, "neutral": 0.5, "negative": 0.25}) == 0.0
    assert signed_score([1.0, 0.0, 0.0]) == -1.0 and signed_score([0.0, 0.0, 1.0]) == 1.0  # the ends of [-1, 1]
    probs = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.0, 1.0, 0.0]], dtype=np.float32)  # (N, 3)
    got = signed_score(probs)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, [0.6, -0.5, 0.0], atol=1e-7)


def test_random_probabilities_stay_in_range() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([0.3, 0.3, 0.3], size=1000)  # many near a corner
    scores = signed_score(probs)
    assert scores.min() >= -1 and scores.max() <= 1 and scores.min() < -0.9 and scores.max() > 0.9


def test_classifier_predict_scores_are_those_of_its_calibrated_probabilities(tiny_bert: Path) -> None:
    clf = keyword_classifier(tiny_bert, pos={"good": 2.0, "up": 1.0}, neg={"bad": 1.5})
    texts = ["profits good up bad today", "bad day", "nothing here"]
    hand = [softmax(logits) for logits in ([1.5, 0, 3], [1.5, 0, 0], [0, 0, 0])]
    np.testing.assert_allclose(clf.predict_scores(texts), [p[2] - p[0] for p in hand], atol=1e-6)
    clf.temperature = 2.0  # the folder's calibration: the scores follow the probabilities predict reports
    hand = [softmax([x / 2 for x in logits]) for logits in ([1.5, 0, 3], [1.5, 0, 0])]
    np.testing.assert_allclose(clf.predict_scores(texts[:2]), [p[2] - p[0] for p in hand], atol=1e-6)
    np.testing.assert_allclose(clf.predict_scores(texts), signed_score(clf.predict_proba(texts)), atol=0)
