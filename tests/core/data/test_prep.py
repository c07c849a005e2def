"""`run_prep`: labels, dedup and conflicts, splits, manifest, atomic output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from finsent_cli.config.prep import PrepRecipe
from finsent_cli.core.data.prep import run_prep
from finsent_cli.core.data.store import load_prepared
from finsent_cli.errors import FinsentError


def _csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _recipe(out: Path, **data: object) -> PrepRecipe:
    return PrepRecipe.model_validate({"output_dir": out, "format": "jsonl", "data": data})


def _rows(n: int) -> list[tuple[str, str]]:
    labels = ["negative", "neutral", "positive"]
    return [(f"Company {i} reports item number {i}", labels[i % 3]) for i in range(n)]


def test_stratified_split_is_seeded(tmp_path: Path) -> None:
    src = _csv(tmp_path / "all.csv", _rows(300))
    a = run_prep(_recipe(tmp_path / "a", source=src, test_size=0.2, valid_size=0.1, seed=1))
    run_prep(_recipe(tmp_path / "b", source=src, test_size=0.2, valid_size=0.1, seed=1))
    assert a.counts == {
        "test": {"negative": 20, "neutral": 20, "positive": 20},
        "valid": {"negative": 10, "neutral": 10, "positive": 10},
        "train": {"negative": 70, "neutral": 70, "positive": 70},
    }
    assert load_prepared(tmp_path / "a") == load_prepared(tmp_path / "b")
    texts = [r["text"] for split in load_prepared(tmp_path / "a").values() for r in split]
    assert len(texts) == len(set(texts)) == 300


def test_duplicates_and_conflict_policies(tmp_path: Path) -> None:
    rows = _rows(30) + [
        ("Company 1 reports item number 1", "neutral"),  # exact duplicate of row 1
        ("company 1 reports ITEM number 1 !", "neutral"),  # normalised duplicate
        ("Shares jump", "positive"), ("shares jump", "positive"), ("Shares jump.", "negative"),  # conflict 2:1
        ("Tie case", "positive"), ("tie case", "negative"),  # conflict 1:1
    ]  # fmt: skip
    src = _csv(tmp_path / "all.csv", rows)
    res = run_prep(_recipe(tmp_path / "maj", source=src, test_size=0.0, valid_size=0.0))
    assert res.dropped == {"duplicate_exact": 1, "duplicate_normalised": 1, "conflict_minority": 2, "conflict": 2}
    kept = {r["text"]: r["label"] for r in load_prepared(tmp_path / "maj")["train"]}
    assert kept["Shares jump"] == "positive" and "Tie case" not in kept
    assert res.manifest["conflicts"]["count"] == 2

    drop = PrepRecipe.model_validate({"output_dir": tmp_path / "drop", "data": {"source": src, "test_size": 0, "valid_size": 0}, "dedup": {"conflicts": "drop"}})
    assert run_prep(drop).dropped["conflict"] == 5
    keep = PrepRecipe.model_validate({"output_dir": tmp_path / "keep", "data": {"source": src, "test_size": 0, "valid_size": 0}, "dedup": {"conflicts": "keep"}})
    res_keep = run_prep(keep)
    assert sum(res_keep.counts["train"].values()) == 30 + 4  # both labels of both conflicts


def test_given_splits_drop_leaks_from_train(tmp_path: Path) -> None:
    train = _csv(tmp_path / "tr.csv", _rows(12) + [("Held out text", "positive")])
    test = _csv(tmp_path / "te.csv", [("held-out text", "positive"), ("Other one", "negative")])
    res = run_prep(_recipe(tmp_path / "o", train=train, test=test))
    assert res.dropped == {"in_train_and_a_held_out_split": 1}
    assert set(res.counts) == {"train", "test"}
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["sources"][0]["sha256"] and manifest["files"] == {"train": "train.jsonl", "test": "test.jsonl"}
    assert (tmp_path / "o" / "recipe.yaml").exists()


def test_label_map_and_unknown_labels(tmp_path: Path) -> None:
    src = _csv(tmp_path / "t.csv", [("a b c", "0"), ("d e f", "1"), ("g h i", "2"), ("j k l", "7")] * 1)
    with pytest.raises(FinsentError, match=r"t.csv:2: label '0' looks like a class id"):
        run_prep(_recipe(tmp_path / "o", source=src, test_size=0, valid_size=0))
    with pytest.raises(FinsentError, match=r"t.csv:5: unknown label '7'.*data.unknown_labels=drop"):
        run_prep(_recipe(tmp_path / "o", source=src, test_size=0, valid_size=0, label_map={"0": "negative", "1": "positive", "2": "neutral"}))
    res = run_prep(_recipe(tmp_path / "o", source=src, test_size=0, valid_size=0, unknown_labels="drop", label_map={"0": "negative", "1": "positive", "2": "neutral"}))
    assert res.dropped == {"unknown_label": 1}
    assert res.counts["train"] == {"negative": 1, "neutral": 1, "positive": 1}
    assert not (tmp_path / "o").with_name("o.tmp").exists()


def test_failure_leaves_no_output(tmp_path: Path) -> None:
    src = _csv(tmp_path / "t.csv", [("fine", "positive"), ("x" * 6000, "negative")])
    with pytest.raises(FinsentError, match=r"t.csv:3: text is 6,000 characters, over clean.max_chars=5000"):
        run_prep(_recipe(tmp_path / "out", source=src, test_size=0, valid_size=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_rerun_replaces_output_atomically(tmp_path: Path) -> None:
    src = _csv(tmp_path / "t.csv", _rows(30))
    run_prep(_recipe(tmp_path / "o", source=src, test_size=0, valid_size=0))
    (tmp_path / "o" / "stale.txt").write_text("old")
    run_prep(_recipe(tmp_path / "o", source=src, test_size=0, valid_size=0))
    assert not (tmp_path / "o" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "t.csv"]


def test_corpus(tmp_path: Path) -> None:
    import gzip

    src = tmp_path / "c.txt.gz"
    lines = [f"Headline number {i} about markets" for i in range(200)] + ["short", "", "Headline number 5 about markets"]
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    recipe = PrepRecipe.model_validate({"output_dir": tmp_path / "corpus", "corpus": {"files": [src], "heldout_fraction": 0.05}})
    res = run_prep(recipe)
    assert res.dropped == {"empty": 1, "too_short": 1, "duplicate": 1}
    train = (tmp_path / "corpus" / "train.txt").read_text().splitlines()
    held = (tmp_path / "corpus" / "heldout.txt").read_text().splitlines()
    assert len(held) == 10 and len(train) == 190 and not set(train) & set(held)
