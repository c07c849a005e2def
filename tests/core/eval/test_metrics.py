"""Metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from finsent_cli.core.eval.metrics import classification_metrics, expected_calibration_error

# true: neg, neg, neu, pos; predicted: neg (0.70), neu (0.62, wrong), neu (0.50), pos (0.85)
Y = np.array([0, 0, 1, 2])
P = np.array([[0.70, 0.20, 0.10], [0.30, 0.62, 0.08], [0.20, 0.50, 0.30], [0.05, 0.10, 0.85]])


def test_ece_one_prediction_per_bin() -> None:
    # each confidence falls in its own 1/15-wide bin: mean of |correct - confidence|
    expected = (abs(1 - 0.70) + abs(0 - 0.62) + abs(1 - 0.50) + abs(1 - 0.85)) / 4
    assert expected_calibration_error(P, Y) == pytest.approx(expected) == pytest.approx(0.3925)


def test_ece_shared_bin_uses_bin_means() -> None:
    # 0.70 (right) and 0.72 (wrong) share the bin (0.667, 0.733]: |0.5 - 0.71| = 0.21
    probs = np.array([[0.70, 0.20, 0.10], [0.72, 0.18, 0.10]])
    assert expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(0.21)
    assert expected_calibration_error(probs[:0], np.array([], dtype=int)) == 0.0


def test_ece_perfectly_calibrated_is_zero() -> None:
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert expected_calibration_error(probs, np.array([0, 2])) == 0.0


def test_classification_metrics_by_hand() -> None:
    m = classification_metrics(Y, P)
    assert m["n"] == 4 and m["accuracy"] == pytest.approx(0.75)
    assert m["per_class"]["negative"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_class"]["neutral"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["per_class"]["positive"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1})
    assert m["macro_f1"] == pytest.approx(7 / 9)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 / 3 + 1) / 4)
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert m["confusion_normalised"] == [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert m["ece"] == pytest.approx(0.3925)


def test_missing_class_gives_zero_row_not_nan() -> None:
    m = classification_metrics(np.array([0, 2]), np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]]))
    assert m["confusion_normalised"][1] == [0.0, 0.0, 0.0]
    assert m["per_class"]["neutral"]["support"] == 0 and m["accuracy"] == 1.0


def test_temperature_recovers_the_one_that_made_the_data_overconfident() -> None:
    from finsent_cli.core.eval.metrics import apply_temperature, expected_calibration_error, fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 3)) * 2.0  # (N, 3)
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    gold = np.array([rng.choice(3, p=p) for p in calibrated])  # labels drawn from the true probabilities
    overconfident = apply_temperature(calibrated, 1 / 2.5)  # logits x 2.5
    t = fit_temperature(overconfident, gold)
    assert 2.3 < t < 2.7
    assert expected_calibration_error(apply_temperature(overconfident, t), gold) < 0.3 * expected_calibration_error(overconfident, gold)
    np.testing.assert_allclose(apply_temperature(overconfident, 2.5), calibrated, atol=1e-9)
    np.testing.assert_array_equal(apply_temperature(overconfident, t).argmax(1), overconfident.argmax(1))
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0)) is None
    right = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]] * 12)  # every prediction right:
    assert fit_temperature(right, np.array([0, 1, 2] * 12)) is None  # the likelihood has no interior optimum
