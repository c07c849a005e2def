"""`finsent select` through the real CLI: the CSV, --output, and one-line errors for bad input."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from finsent_cli.core.select.run import COLUMNS
from tests.helpers import CliResult, assert_one_line_error, run_cli

TEXTS = [
    "Profits rose sharply in the third quarter",
    "Shares fell after the profit warning",
    "The company will publish its results on Tuesday",
    "Blorptastic widgets lifted zyxquv revenue",
    "Operating loss widened to EUR 3.1 mn",
    "Net sales were flat year on year",
]


@pytest.fixture()
def pool(tmp_path: Path) -> Path:
    p = tmp_path / "pool.csv"
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "body"])
        w.writerows([i, t] for i, t in enumerate(TEXTS))
    return p


def select(tiny_bert: Path, pool: Path, *args: str) -> CliResult:
    # the random tiny BERT embeds every text alike (cosine near 1): near-duplicates are off unless a test says
    return run_cli("select", str(tiny_bert), str(pool), "--text-column", "body", *args, "dedup.cosine=null")


def test_csv_to_stdout_has_the_columns_and_k_rows(tiny_bert: Path, pool: Path) -> None:
    res = select(tiny_bert, pool, "--budget", "3")
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 3
    assert all(r["text"] == TEXTS[int(r["line"]) - 2] for r in rows)  # line 1 is the header
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)
    assert "picked 3 texts of 6" in res.stderr


def test_output_file_and_overrides(tiny_bert: Path, pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "batch.csv"
    res = select(tiny_bert, pool, "-k", "2", "-o", str(out), "-q", "outlier.weight=0")
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 2 and all(r["outlier"] == "" and r["rarity"] != "" for r in rows)


def test_the_shipped_recipe_runs(tiny_bert: Path, pool: Path) -> None:
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "select.yaml"
    res = select(tiny_bert, pool, "-k", "6", "--recipe", str(recipe), "-q")
    assert res.exit_code == 0, res.stderr
    assert len(res.stdout.splitlines()) == 7


def test_near_duplicates_by_embedding_are_skipped_with_a_warning(tiny_bert: Path, pool: Path) -> None:
    res = run_cli("select", str(tiny_bert), str(pool), "--text-column", "body", "-k", "3", "dedup.cosine=0.0001")
    assert res.exit_code == 0, res.stderr
    assert len(res.stdout.splitlines()) < 4
    assert "warning: only" in res.stderr and "raise dedup.cosine" in res.stderr


def test_dry_run_prints_the_resolved_recipe(tiny_bert: Path, pool: Path) -> None:
    res = select(tiny_bert, pool, "--dry-run", "uncertainty.measure=margin")
    assert res.exit_code == 0, res.stderr
    assert "measure: margin" in res.stdout and "clusters: 8" in res.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--budget", "0"], ["'--budget'", "greater than or equal to 1"]),
        (["--budget", "7"], ["--budget 7 is more than the 6 candidate texts"]),
        ([], ["missing option '--budget'"]),
        (["-k", "2", "uncertainty.measur=margin"], ["uncertainty.measur: unknown key", "did you mean 'measure'"]),
        (["-k", "2", "uncertainty.measure=widest"], ["uncertainty.measure", "'least_confidence'"]),
        (["-k", "2", "uncertainty.weight=0", "rarity.weight=0", "outlier.weight=0"], ["all weigh 0"]),
    ],
)
def test_bad_options_are_one_line(tiny_bert: Path, pool: Path, args: list[str], needles: list[str]) -> None:
    res = select(tiny_bert, pool, *args)
    assert_one_line_error(res, *needles, code=2)


def test_a_missing_column_is_one_line(tiny_bert: Path, pool: Path) -> None:
    res = run_cli("select", str(tiny_bert), str(pool), "-k", "2")
    assert_one_line_error(res, "no column 'text'", "found: id, body", "--text-column")


def test_bad_pools_are_one_line(tiny_bert: Path, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Gewinn gestiegen\nUmsatz f\u00fcr 2024\n".encode("latin-1"))
    assert_one_line_error(run_cli("select", str(tiny_bert), str(bad), "-k", "1"), "not valid UTF-8", "line 2")
    missing = tmp_path / "nope.txt"
    assert_one_line_error(run_cli("select", str(tiny_bert), str(missing), "-k", "1"), "file not found")
    empty = tmp_path / "blank.txt"
    empty.write_text("\n   \nx\n", encoding="utf-8")
    assert_one_line_error(run_cli("select", str(tiny_bert), str(empty), "-k", "2"), "more than the 1 candidate text ")
