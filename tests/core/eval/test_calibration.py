"""The calibration rule: a temperature is kept only when the validation split is large enough and the
temperature, fitted on some folds, lowers the NLL of the others; otherwise the raw probabilities stay."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finsent_cli.core.eval.metrics import (
    CALIBRATION_RULE,
    TEMPERATURE_BOUNDS,
    CalibrationRule,
    apply_temperature,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)


def drawn(n: int, sharpen: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples whose labels are drawn from honest probabilities, given as those probabilities with
    the logits multiplied by ``sharpen`` (> 1: overconfident, < 1: underconfident, 1: calibrated)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3)) * 2.0  # (N, 3)
    honest = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    gold = np.array([rng.choice(3, p=p) for p in honest])
    return apply_temperature(honest, 1.0 / sharpen), gold


def test_the_shipped_rule_is_the_one_the_study_chose() -> None:
    assert CALIBRATION_RULE == CalibrationRule(min_examples=50, folds=5, min_z=1.645, bounds=(0.25, 4.0), seed=0)
    assert TEMPERATURE_BOUNDS == (0.25, 4.0)


def test_a_small_split_keeps_the_raw_probabilities_but_says_what_a_fit_would_do() -> None:
    probs, gold = drawn(36, 2.5)  # as miscalibrated as it gets, yet 36 examples are too few to trust
    c = calibrate(probs, gold)
    assert not c.applied and c.temperature is None
    assert c.reason == "validation split too small (36 < 50)"
    assert c.fitted is not None and c.ece_after < c.ece_before and c.nll_after < c.nll_before  # in-sample only
    assert c.heldout_z is None and c.record()["heldout"] is None
    assert c.ece_before == pytest.approx(expected_calibration_error(probs, gold))


def test_a_large_overconfident_split_gets_its_temperature_within_bounds() -> None:
    probs, gold = drawn(1000, 2.5)
    c = calibrate(probs, gold)
    assert c.applied and c.temperature == c.fitted and 2.2 < c.temperature < 2.8
    assert c.heldout_nll_after < c.heldout_nll_before and c.heldout_z >= 1.645
    assert c.reason.startswith("held-out validation NLL") and "5-fold" in c.reason
    assert c.ece_after < 0.5 * c.ece_before
    assert c.nll_after == pytest.approx(negative_log_likelihood(probs, gold, c.fitted))


def test_an_optimum_beyond_the_bounds_is_clamped_to_them() -> None:
    over, gold = drawn(1000, 12.0)  # wants about 12: gets 4, still better than raw
    assert fit_temperature(over, gold) == 4.0 and fit_temperature(over, gold, (0.05, 20.0)) > 10
    c = calibrate(over, gold)
    assert c.applied and c.temperature == 4.0
    under, gold = drawn(1000, 0.1)  # wants about 0.1: gets 0.25
    assert fit_temperature(under, gold) == 0.25
    assert calibrate(under, gold).temperature == 0.25


def test_a_split_the_fit_does_not_help_keeps_the_raw_probabilities() -> None:
    probs, gold = drawn(1000, 1.0)  # already calibrated: the fitted temperature is noise
    c = calibrate(probs, gold)
    assert 0.9 < c.fitted < 1.1
    assert not c.applied and c.temperature is None
    assert c.reason.startswith("did not improve held-out validation NLL enough") and c.heldout_z < 1.645


def test_nothing_to_fit_keeps_the_raw_probabilities() -> None:
    empty = calibrate(np.zeros((0, 3)), np.zeros(0, dtype=int))
    assert not empty.applied and empty.reason == "no validation examples"
    right = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]] * 50)  # (150, 3), every prediction right
    c = calibrate(right, np.array([0, 1, 2] * 50))
    assert not c.applied and c.fitted is None and c.ece_after is None
    assert c.reason == "every validation prediction is right: no temperature to fit"


def test_the_decision_is_deterministic_and_the_rule_can_be_relaxed() -> None:
    probs, gold = drawn(300, 1.5, seed=3)
    assert calibrate(probs, gold) == calibrate(probs, gold)
    small, small_gold = drawn(36, 2.5)
    always = calibrate(small, small_gold, CalibrationRule(min_examples=1, min_z=None))
    assert always.applied and always.reason == "fitted on the validation split (no held-out check)"


def test_the_record_is_json_ready_and_complete() -> None:
    probs, gold = drawn(1000, 2.5)
    record = json.loads(json.dumps(calibrate(probs, gold).record()))
    assert set(record) == {
        "method", "split", "n", "applied", "reason", "temperature_fitted", "bounds",
        "ece_before", "ece_after", "nll_before", "nll_after", "heldout",
    }  # fmt: skip
    assert record["applied"] is True and record["n"] == 1000 and record["bounds"] == [0.25, 4.0]
    assert record["heldout"]["folds"] == 5 and record["heldout"]["min_z"] == 1.645
    assert record["heldout"]["nll_after"] < record["heldout"]["nll_before"]
    assert record["nll_after"] < record["nll_before"] and record["ece_after"] < record["ece_before"]
