"""`run_select` end to end with finsent's default model on a small pool file."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from finsent_cli.config.select import SelectRecipe
from finsent_cli.core.data.clean import text_hash
from finsent_cli.core.progress import NullReporter
from finsent_cli.core.runs import DEFAULT_MODEL, TRAIN_HASHES
from finsent_cli.core.select.run import COLUMNS, run_select, to_csv
from finsent_cli.errors import FinsentError
from tests.finetune_helpers import SAMPLE

TEXTS = [r["text"] for r in csv.DictReader(SAMPLE.open(encoding="utf-8"))][:40]
TRAINED = TEXTS[:5]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model as ``best/`` of a run folder whose train_hashes.json names the first 5 texts."""
    run = tmp_path_factory.mktemp("select") / "run"
    shutil.copytree(DEFAULT_MODEL, run / "best")
    hashes = {"algorithm": "sha256-normalised", "hashes": [text_hash(t) for t in TRAINED]}
    (run / TRAIN_HASHES).write_text(json.dumps(hashes), encoding="utf-8")
    return run


@pytest.fixture()
def pool(tmp_path: Path) -> Path:
    """The 40 texts, then an empty line, an exact copy of text 10 and a variant of text 11 (case, punctuation)."""
    lines = [*TEXTS, "", TEXTS[10], TEXTS[11].upper().replace(" .", "!")]
    p = tmp_path / "pool.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_picks_k_distinct_untrained_texts_best_first(run_dir: Path, pool: Path) -> None:
    reporter = NullReporter()
    res = run_select(run_dir, pool, 30, SelectRecipe(), reporter)
    assert len(res.rows) == 30
    assert (res.read, res.empty, res.in_training) == (42, 1, 5)
    assert any("5 texts already in the model's training data" in m for m in reporter.messages)
    chosen = [text_hash(r.text) for r in res.rows]
    assert len(set(chosen)) == 30  # no duplicates, not even the upper-cased variant
    assert not set(chosen) & {text_hash(t) for t in TRAINED}
    scores = [r.score for r in res.rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    lines = pool.read_text(encoding="utf-8").splitlines()
    assert all(lines[r.line - 1] == r.text for r in res.rows)  # line: where the text is in the pool
    assert all(set(r.components) == {"uncertainty", "rarity", "outlier"} for r in res.rows)
    table = list(csv.DictReader(io.StringIO(to_csv(res))))
    assert tuple(table[0]) == COLUMNS and len(table) == 30


def test_weight_zero_skips_a_component_and_the_embeddings(
    run_dir: Path, pool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finsent_cli.core.inference import embed

    def no_embeddings(*args: object, **kwargs: object) -> None:
        raise AssertionError("embeddings computed although nothing needs them")

    monkeypatch.setattr(embed, "probs_and_embeddings", no_embeddings)
    cfg = SelectRecipe.model_validate({"outlier": {"weight": 0}, "rarity": {"weight": 0}, "dedup": {"cosine": None}})
    res = run_select(run_dir, pool, 5, cfg)
    assert [set(r.components) for r in res.rows] == [{"uncertainty"}] * 5
    # uncertainty alone: the batch is the five least confident texts (normalised = (1 - max p) * 3/2)
    assert [round(r.components["uncertainty"], 6) for r in res.rows] == [
        round((1 - r.confidence) * 1.5, 6) for r in res.rows
    ]
    assert to_csv(res).splitlines()[1].split(",")[-4:-2] == ["", ""]  # rarity, outlier: empty cells


@pytest.mark.parametrize(
    ("budget", "message"),
    [(0, "at least 1"), (38, "more than the 37 candidate texts")],
)
def test_bad_budgets_are_one_clear_error(run_dir: Path, pool: Path, budget: int, message: str) -> None:
    with pytest.raises(FinsentError, match=message):
        run_select(run_dir, pool, budget)


def test_a_non_utf8_pool_is_refused(run_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Profits rose\nShares fell \xff\xfe sharply\n")
    with pytest.raises(FinsentError, match=r"bad.txt: 1 line not valid UTF-8 \(first: line 2\)"):
        run_select(run_dir, bad, 1)
