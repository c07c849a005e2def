"""Label normalisation and cleaning."""

from __future__ import annotations

import pytest

from finsent_cli.config.prep import Clean
from finsent_cli.core.data.clean import Cleaner, normalised_key
from finsent_cli.core.data.labels import LabelNormaliser


@pytest.mark.parametrize(
    ("values", "label_map", "expected"),
    [
        (["negative", "Neutral", " POSITIVE "], None, ["negative", "neutral", "positive"]),
        (["Bearish", "bullish", "neutral"], None, ["negative", "positive", "neutral"]),
        (["-1", "0", "1"], None, ["negative", "neutral", "positive"]),
        ([-1, 0, 1], None, ["negative", "neutral", "positive"]),
        ([0, 1, 2], {"0": "negative", "1": "positive", "2": "neutral"}, ["negative", "positive", "neutral"]),
        (["LABEL_0", "LABEL_2"], {"0": "negative", "2": "positive"}, ["negative", "positive"]),
        (["up"], {"up": "positive"}, ["positive"]),
    ],
)
def test_schemes(values: list[object], label_map: dict[str, str] | None, expected: list[str]) -> None:
    norm = LabelNormaliser(values, label_map)
    assert [norm(v) for v in values] == expected


def test_class_ids_need_a_map() -> None:
    norm = LabelNormaliser([0, 1, 2])
    assert norm(2) is None
    assert "set data.label_map" in norm.explain_unknown(2)
    assert norm(1) is None  # 0/1/2 ids are not signs: 1 is not "positive" without a map


def test_unknown_label_message() -> None:
    norm = LabelNormaliser(["positive", "meh"])
    assert norm("meh") is None
    assert "unknown label 'meh'" in norm.explain_unknown("meh")


def test_cleaner_steps_are_counted_and_tickers_kept() -> None:
    c = Cleaner(Clean(urls="replace", user_handles="replace"))
    out = c("$AAPL  up &amp; away ＡＢＣ @trader https://t.co/xyz  ")
    assert out == "$AAPL up & away ABC @user <url>"
    rep = c.report()
    assert rep["changed"] == {"html_entities": 1, "nfkc": 1, "urls": 1, "user_handles": 1, "whitespace": 1}
    assert rep["examples"]["urls"][0]["before"].endswith("https://t.co/xyz  ")


def test_cleaner_keep_and_remove() -> None:
    assert Cleaner(Clean())("see https://x.y/z now") == "see https://x.y/z now"
    assert Cleaner(Clean(urls="remove", user_handles="remove"))("@a see https://x.y/z now") == "see now"
    assert Cleaner(Clean(user_handles="replace"))("mail me: a@b.com $TSLA") == "mail me: a@b.com $TSLA"


def test_normalised_key() -> None:
    assert normalised_key("Profit rose , 5 % !") == normalised_key("profit ROSE 5%")
