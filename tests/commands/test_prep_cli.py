"""`finsent prep` and `finsent tokenizer` through the real CLI, including every bad input of issue 2."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, run_cli


def _recipe(tmp_path: Path, source: Path | str, extra: str = "") -> Path:
    r = tmp_path / "r.yaml"
    r.write_text(f"output_dir: {tmp_path / 'out'}\ndata:\n  source: {source}\n  test_size: 0.2\n  valid_size: 0.1\n{extra}", encoding="utf-8")
    return r


@pytest.fixture()
def good_csv(tmp_path: Path) -> Path:
    p = tmp_path / "good.csv"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(60):
            w.writerow([f"Item {i} for company {i}", ["bearish", "neutral", "bullish"][i % 3]])
    return p


def _no_output(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_prep_happy_path(tmp_path: Path, good_csv: Path) -> None:
    res = run_cli("prep", str(_recipe(tmp_path, good_csv)))
    assert res.exit_code == 0, res.stderr
    assert "class counts" in res.stdout and "train" in res.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "recipe.yaml", "test.parquet", "train.parquet", "valid.parquet"]


def test_dry_run_prints_resolved_recipe_and_writes_nothing(tmp_path: Path, good_csv: Path) -> None:
    r = tmp_path / "r.yaml"
    r.write_text(f"output_dir: {tmp_path / 'out'}\ndata:\n  source: ${{data_dir}}/{good_csv.name}\n", encoding="utf-8")
    res = run_cli("prep", str(r), "data.seed=7", "--dry-run", "--data-dir", str(tmp_path))
    assert res.exit_code == 0, res.stderr
    assert f"source: {good_csv}" in res.stdout and "seed: 7" in res.stdout and "test_size: 0.2" in res.stdout
    _no_output(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    res = run_cli("prep", str(_recipe(tmp_path, tmp_path / "missing.csv")))
    assert_one_line_error(res, "data.source: file not found", "missing.csv", code=2)
    _no_output(tmp_path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    res = run_cli("prep", str(_recipe(tmp_path, tmp_path / "adir")))
    assert_one_line_error(res, "data.source: is a folder, expected a file", code=2)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    res = run_cli("prep", str(_recipe(tmp_path, tmp_path / "empty.csv")))
    assert_one_line_error(res, "empty.csv: file is empty", code=1)
    _no_output(tmp_path)


def test_csv_without_text_column(tmp_path: Path) -> None:
    (tmp_path / "cols.csv").write_text("headline,sentiment\nx,positive\n")
    res = run_cli("prep", str(_recipe(tmp_path, tmp_path / "cols.csv")))
    assert_one_line_error(res, "no column 'text'", "found: headline, sentiment", code=1)


def test_unknown_label(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text("text,label\nfine,positive\nodd one,sideways\n")
    res = run_cli("prep", str(_recipe(tmp_path, tmp_path / "lab.csv")))
    assert_one_line_error(res, "lab.csv:3", "unknown label 'sideways'", code=1)
    _no_output(tmp_path)


def test_non_utf8_bytes_error_then_replace(tmp_path: Path, good_csv: Path) -> None:
    bad = tmp_path / "latin.csv"
    bad.write_bytes(good_csv.read_bytes() + "Nokia Oyj sees caf\xe9 sales up,bullish\n".encode("latin-1"))
    res = run_cli("prep", str(_recipe(tmp_path, bad)))
    assert_one_line_error(res, "invalid UTF-8 at byte offset", "line 62", "data.encoding_errors=replace", code=1)
    _no_output(tmp_path)
    ok = run_cli("prep", str(_recipe(tmp_path, bad)), "data.encoding_errors=replace")
    assert ok.exit_code == 0, ok.stderr
    assert "1 invalid UTF-8 byte sequence replaced" in ok.stderr


def test_one_megabyte_line(tmp_path: Path, good_csv: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_text(good_csv.read_text() + "x" * 1_000_000 + ",bullish\n")
    res = run_cli("prep", str(_recipe(tmp_path, big)))
    assert_one_line_error(res, "big.csv:62: text is 1,000,000 characters", "clean.too_long", code=1)
    _no_output(tmp_path)
    ok = run_cli("prep", str(_recipe(tmp_path, big)), "clean.too_long=drop")
    assert ok.exit_code == 0 and "too_long" in ok.stdout


def test_recipe_typo(tmp_path: Path, good_csv: Path) -> None:
    res = run_cli("prep", str(_recipe(tmp_path, good_csv, "clean:\n  url: replace\n")))
    assert_one_line_error(res, "clean.url: unknown key (did you mean 'urls'?)", code=2)


def test_override_of_missing_key(tmp_path: Path, good_csv: Path) -> None:
    res = run_cli("prep", str(_recipe(tmp_path, good_csv)), "data.tets_size=0.3")
    assert_one_line_error(res, "data.tets_size: unknown key (from a command-line override) (did you mean 'test_size'?)", code=2)


def test_several_problems_are_listed_together(tmp_path: Path) -> None:
    res = run_cli("prep", str(_recipe(tmp_path, tmp_path / "nope.csv", "dedupe: {}\n")), "data.seed=x")
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    assert len(res.error_lines) == 3, res.stderr


def test_tokenizer_cli(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"shares of company {i} rose {i % 17} percent in quarter {i % 4}" for i in range(800)))
    r = tmp_path / "t.yaml"
    r.write_text(f"input: [{corpus}]\noutput_dir: {tmp_path / 'tok'}\nvocab_size: 400\nreference: null\n")
    res = run_cli("tokenizer", str(r), "heldout=" + str(corpus))
    assert res.exit_code == 0, res.stderr
    assert "tokens/sentence" in res.stdout
    bad = run_cli("tokenizer", str(r), "vocab_sise=300")
    assert_one_line_error(bad, "vocab_sise: unknown key", "did you mean 'vocab_size'?", code=2)
