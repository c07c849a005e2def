"""The scores of ``finsent select`` on hand-made arrays, with exact expected numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from finsent_cli.core.select.scores import combine, outliers, pick_diverse, rank_percentile, rarity, uncertainty

# a sure row, a tie between the top two, a uniform row, and a graded one
PROBS = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1]])
GRADED_ENTROPY = -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)) / math.log(3)


@pytest.mark.parametrize(
    ("measure", "expected"),
    [
        ("least_confidence", [0.0, 0.5, 2 / 3, 0.4]),
        ("normalised", [0.0, 0.75, 1.0, 0.6]),
        ("margin", [0.0, 1.0, 1.0, 0.7]),
        ("entropy", [0.0, math.log(2) / math.log(3), 1.0, GRADED_ENTROPY]),
    ],
)
def test_uncertainty_measures_on_known_rows(measure: str, expected: list[float]) -> None:
    np.testing.assert_allclose(uncertainty(PROBS, measure), expected, atol=1e-12)


def test_uncertainty_refuses_an_unknown_measure() -> None:
    with pytest.raises(ValueError, match="choose least_confidence"):
        uncertainty(PROBS, "smallest_margin")


def test_rank_percentile_spans_zero_to_one_and_ties_share_their_average_rank() -> None:
    np.testing.assert_allclose(rank_percentile(np.array([3.0, 1.0, 2.0, 2.0])), [1.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(rank_percentile(np.array([7.0, 7.0, 7.0])), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(rank_percentile(np.array([4.2])), [0.5])
    assert rank_percentile(np.array([])).shape == (0,)


def test_combine_is_the_weighted_mean_of_percentiles_and_skips_weight_zero() -> None:
    comps = {"a": np.array([3.0, 1.0, 2.0]), "b": np.array([0.0, 10.0, 200.0]), "c": np.array([1.0])}
    # percentiles a = [1, 0, .5], b = [0, .5, 1]; (1 * a + 3 * b) / 4; c weighs 0, so its length does not matter
    np.testing.assert_allclose(combine(comps, {"a": 1.0, "b": 3.0, "c": 0.0}), [0.25, 0.375, 0.875])
    with pytest.raises(ValueError, match="weight above 0"):
        combine(comps, {"a": 0.0})


def test_pick_diverse_skips_a_duplicate_and_a_near_duplicate() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    keys = ["a", "a", "b", "c", "d"]  # 1 repeats 0's text
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.02], [0.0, -1.0], [-1.0, 0.0]])  # 2 points where 0 does
    picked, skipped = pick_diverse(scores, 3, keys, emb, cosine=0.95)
    assert (picked, skipped) == ([0, 3, 4], 2)
    assert pick_diverse(scores, 3) == ([0, 1, 2], 0)  # no checks: plain top-k
    assert pick_diverse(scores, 3, keys) == ([0, 2, 3], 1)  # text only: the near-duplicate stays
    assert pick_diverse(scores, 9, keys, emb, cosine=0.95) == ([0, 3, 4], 2)  # the pool runs out


def test_pick_diverse_keeps_input_order_among_equal_scores() -> None:
    assert pick_diverse(np.array([0.5, 0.7, 0.5, 0.5]), 3) == ([1, 0, 2], 0)


def test_rarity_counts_split_and_unknown_words_among_alphabetic_words(minilm_path: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path)
    texts = [
        "Profits rose in the quarter",  # all whole words
        "Blorptastic zyxquv shares rose",  # two made-up words split into pieces: 2 of 4
        "ᚠᚢᚦ shares",  # runic letters: the unk token, 1 of 2
        "Nokia's Q3 loss",  # nokia ' s q ##3 loss: Q3 is no alphabetic word, so 0 of 3
        "10 % 2024 !",  # no alphabetic word at all
        "",
    ]
    np.testing.assert_allclose(rarity(texts, tok), [0.0, 0.5, 0.5, 0.0, 0.0, 0.0])


def test_outliers_rank_a_far_point_first() -> None:
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0.0, 0.0]) + 0.01 * rng.standard_normal((10, 3))
    b = np.array([0.0, 1.0, 0.0]) + 0.01 * rng.standard_normal((10, 3))
    far = np.array([[0.0, 0.3, 1.0]])
    x = np.vstack([a, far, b])
    dist = outliers(x, clusters=2, seed=0)
    assert int(np.argmax(dist)) == 10
    assert dist[10] > 5 * np.delete(dist, 10).max()
    np.testing.assert_array_equal(outliers(x, clusters=2, seed=0), dist)  # seeded
    np.testing.assert_allclose(outliers(np.ones((3, 2)), clusters=4), [0.0, 0.0, 0.0])  # one distinct row
