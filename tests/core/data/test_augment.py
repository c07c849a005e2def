"""Random deletion and swap (core.data.augment) and the `augment:` recipe section."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from finsent_cli.config.finetune import AugmentCfg, FinetuneRecipe
from finsent_cli.config.loader import load_recipe
from finsent_cli.core.data.augment import augment_rows, delete_words, swap_words
from finsent_cli.core.flows.finetune import AUGMENT_FILE, run_finetune
from finsent_cli.errors import RecipeError
from tests.finetune_helpers import micro_recipe

WORDS = [
    "Operating",
    "profit",
    "rose",
    "to",
    "EUR",
    "13.1",
    "mn",
    "from",
    "EUR",
    "8.7",
    "mn",
    "in",
    "the",
    "corresponding",
    "period",
]


def test_swap_keeps_the_words_and_moves_some() -> None:
    out = swap_words(WORDS, 0.1, random.Random(0))
    assert Counter(out) == Counter(WORDS)
    assert out != WORDS
    assert swap_words(["alone"], 0.5, random.Random(0)) == ["alone"]


def test_swap_count_follows_the_share() -> None:
    # one swap changes exactly two positions (unless it swaps equal words: WORDS has two "EUR" and two "mn")
    words = [f"w{i}" for i in range(20)]
    changed = [
        sum(a != b for a, b in zip(swap_words(words, 0.0, random.Random(s)), words, strict=True)) for s in range(20)
    ]
    assert set(changed) == {2}  # share 0 still swaps once


def test_deletion_rate_protects_target_and_keeps_one_word() -> None:
    rng = random.Random(1)
    kept = [len(delete_words(WORDS, 0.3, rng)) for _ in range(2000)]
    assert abs(sum(kept) / len(kept) / len(WORDS) - 0.7) < 0.02
    assert all(n >= 1 for n in (len(delete_words(["a", "b"], 0.999, random.Random(s))) for s in range(50)))
    for s in range(50):
        assert "profit" in delete_words(WORDS, 0.9, random.Random(s), keep=frozenset({"profit"}))


def test_augment_rows_is_seeded_and_keeps_originals_first() -> None:
    rows = [
        {"text": " ".join(WORDS), "label": "positive", "raw_text": "x"},
        {"text": "Sales fell sharply", "label": "negative"},
    ]
    a = augment_rows(rows, 0.2, 0.2, 3, seed=7)
    assert a == augment_rows(rows, 0.2, 0.2, 3, seed=7)
    assert a != augment_rows(rows, 0.2, 0.2, 3, seed=8)
    assert a[:2] == rows
    copies = a[2:]
    assert 4 <= len(copies) <= 6  # a copy equal to its original is skipped
    assert all(c["augmented"] and "raw_text" not in c for c in copies)
    assert augment_rows(rows, 0.0, 0.0, 3, seed=7) == rows


def test_augment_rows_protects_targets() -> None:
    rows = [{"text": "Nokia shares fell while Ericsson rose on the news", "label": "negative", "target": "Nokia"}]
    for seed in range(30):
        assert all("Nokia" in r["text"] for r in augment_rows(rows, 0.8, 0.0, 2, seed))


def test_augment_section_is_validated(tmp_path, tiny_bert) -> None:
    assert AugmentCfg().copies == 1
    recipe = micro_recipe(tmp_path, tiny_bert, extra="augment: {deletion: 0, swap: 0}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe, FinetuneRecipe)
    assert "augment: deletion and swap are both 0" in str(err.value)
    recipe = micro_recipe(tmp_path, tiny_bert, extra="augment: {delete: 0.1}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe, FinetuneRecipe)
    assert "augment.delete: unknown key (did you mean 'deletion'?)" in str(err.value)


def test_finetune_trains_on_the_copies_and_records_them(tmp_path, tiny_bert) -> None:
    recipe = micro_recipe(
        tmp_path,
        tiny_bert,
        extra="augment: {deletion: 0.2, swap: 0.1, copies: 2}\ntrain: {epochs: 1, batch_size: 8, log_every: 1}\n",
    )
    cfg = load_recipe(recipe, FinetuneRecipe)
    result = run_finetune(cfg)
    record = json.loads((result.run_dir / AUGMENT_FILE).read_text(encoding="utf-8"))
    assert record["originals"] == 48 and 60 <= record["copies_added"] <= 96 and record["seed"] == 13
    assert len(record["examples"]) == 10
    train = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    seen = max(e["samples_seen"] for e in train if e["event"] == "train")
    assert seen == 48 + record["copies_added"]  # one epoch over originals and copies
    # the validation and test data are never augmented; the training hashes hold the originals only
    hashes = json.loads((result.run_dir / "train_hashes.json").read_text(encoding="utf-8"))["hashes"]
    assert len(hashes) <= 48
