"""Several labelled sources in one split: own columns and label maps, weights, unique texts, clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pydantic import ValidationError

from finsent_cli.config.finetune import FinetuneData
from finsent_cli.core.data.examples import load_examples
from finsent_cli.errors import FinsentError


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "pb": _csv(tmp_path / "pb.csv", ["text", "label"], [[f"pb {i}", ["negative", "neutral", "positive"][i % 3]] for i in range(10)]),
        "tw": _csv(tmp_path / "tw.csv", ["tweet", "y"], [[f"tw {i}", i % 3] for i in range(6)]),  # 0 bearish, 1 bullish, 2 neutral
        "sf": _csv(tmp_path / "sf.csv", ["text", "label", "target"], [
            ["A beats B", "positive", "A"], ["A beats B", "negative", "B"],  # disagree: dropped
            ["C rises", "positive", "C"], ["C rises", "positive", "C Corp"], ["D flat", "neutral", "D"],
        ]),
    }  # fmt: skip


def _data(files: dict[str, Path], **train_extra: object) -> FinetuneData:
    tw = {"path": str(files["tw"]), "name": "twitter", "text_column": "tweet", "label_column": "y",
          "label_map": {0: "negative", 1: "positive", 2: "neutral"}, **train_extra}  # fmt: skip
    return FinetuneData.model_validate({
        "train": [str(files["pb"]), tw, {"path": str(files["sf"]), "name": "sentfin", "unique_texts": True}],
        "valid": [{"path": str(files["pb"]), "name": "phrasebank"}, {k: v for k, v in tw.items() if k != "weight"}],
    })  # fmt: skip


def test_sources_keep_their_own_columns_maps_and_names(files) -> None:
    splits = load_examples(_data(files))
    train = splits["train"]
    assert [r["source"] for r in train] == ["pb"] * 10 + ["twitter"] * 6 + ["sentfin"] * 2
    assert [r["label"] for r in train if r["source"] == "twitter"] == ["negative", "positive", "neutral"] * 2
    assert {r["text"]: r["label"] for r in train if r["source"] == "sentfin"} == {
        "C rises": "positive",
        "D flat": "neutral",
    }
    assert {r["source"] for r in splits["valid"]} == {"phrasebank", "twitter"}


def test_weights_repeat_or_subsample_the_same_rows_every_time(files) -> None:
    heavy = load_examples(_data(files, weight=2.5), seed=1)["train"]
    tw = [r["text"] for r in heavy if r["source"] == "twitter"]
    assert len(tw) == 15 and all(tw.count(f"tw {i}") in (2, 3) for i in range(6))
    assert load_examples(_data(files, weight=2.5), seed=1)["train"] == heavy
    light = [r for r in load_examples(_data(files, weight=0.5), seed=1)["train"] if r["source"] == "twitter"]
    assert len(light) == 3 and len({r["text"] for r in light}) == 3
    tiny = [r for r in load_examples(_data(files, weight=0.01), seed=1)["train"] if r["source"] == "twitter"]
    assert len(tiny) == 1  # a small weight thins a source, never drops it


def test_signed_labels_are_recognised_across_a_sources_splits(tmp_path: Path) -> None:
    train = _csv(tmp_path / "t.csv", ["text", "label"], [["a", -1], ["b", 0], ["c", 1]])
    valid = _csv(
        tmp_path / "v.csv", ["text", "label"], [["d", 0], ["e", 1]]
    )  # no -1 here: alone it looks like class ids
    data = FinetuneData.model_validate(
        {"train": [{"path": str(train), "name": "s"}], "valid": [{"path": str(valid), "name": "s"}]}
    )
    assert [r["label"] for r in load_examples(data)["valid"]] == ["neutral", "positive"]


def test_an_unmapped_label_names_the_source_and_every_value(files) -> None:
    data = FinetuneData.model_validate({
        "train": [str(files["pb"]), {"path": str(files["tw"]), "name": "twitter", "text_column": "tweet", "label_column": "y"}],
        "valid": str(files["pb"]),
    })  # fmt: skip
    with pytest.raises(FinsentError) as err:
        load_examples(data)
    msg = err.value.message
    assert (
        msg.startswith("data.train[1] (twitter, first at ")
        and "tw.csv" in msg
        and "labels '0', '1', '2' not mapped" in msg
    )
    assert "data.train[1].label_map" in msg


@pytest.mark.parametrize(
    ("train", "valid", "needle"),
    [
        ([], None, "data.train: an empty list"),
        (["{pb}", "{pb}"], None, "two sources are named 'pb'"),
        (["{pb}"], [{"path": "{pb}", "weight": 2}], "data.valid: weight applies to data.train sources only"),
        ([{"path": "{pb}", "wieght": 2}], None, "wieght"),
        ([{"path": "{pb}", "weight": 0}], None, "weight"),
        (["{pb}", "missing.csv"], None, "file not found: missing.csv"),
    ],
)
def test_bad_source_lists_are_recipe_errors(files, train, valid, needle) -> None:
    def fill(v):
        if isinstance(v, str):
            return v.format(pb=files["pb"])
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        return [fill(x) for x in v] if isinstance(v, list) else v

    with pytest.raises(ValidationError, match=needle):
        FinetuneData.model_validate(
            {"train": fill(train), "valid": fill(valid) if valid is not None else str(files["pb"])}
        )


def test_targets_for_some_sources_only_is_a_recipe_error(files) -> None:
    with pytest.raises(ValidationError, match="source 'pb' has no target_column while others do"):
        FinetuneData.model_validate({"train": [str(files["pb"]), {"path": str(files["sf"]), "target_column": "target"}], "valid": str(files["pb"])})
    data = FinetuneData.model_validate({"train": [{"path": str(files["sf"]), "name": "sf"}], "valid": str(files["sf"]), "target_column": "target"})
    assert [r["target"] for r in load_examples(data)["train"]] == ["A", "B", "C", "C Corp", "D"]
