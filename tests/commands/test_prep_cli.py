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


def test_non_utf8_bytes_replaced_as_predict_does_or_refused_when_strict(tmp_path: Path, good_csv: Path) -> None:
    bad = tmp_path / "latin.csv"
    bad.write_bytes(good_csv.read_bytes() + "Nokia Oyj sees caf\xe9 sales up,bullish\n".encode("latin-1"))
    ok = run_cli("prep", str(_recipe(tmp_path, bad)))
    assert ok.exit_code == 0, ok.stderr
    assert f"warning: {bad}: replaced invalid UTF-8 with U+FFFD in 1 line (first: line 62)" in ok.stderr  # predict's words
    strict = tmp_path / "strict"
    res = run_cli("prep", str(_recipe(tmp_path, bad)), "data.encoding_errors=strict", f"output_dir={strict}")
    assert_one_line_error(res, "invalid UTF-8 at byte offset", "line 62", "data.encoding_errors=replace", code=1)
    assert not strict.exists()


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


SHIPPED = Path(__file__).resolve().parents[2] / "recipes"


def test_dry_run_without_the_data_folder_says_so_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./data here
    monkeypatch.delenv("FINSENT_DATA_DIR", raising=False)
    res = run_cli("prep", str(SHIPPED / "prep_phrasebank.yaml"), "--dry-run")
    assert res.exit_code == 1, res.stderr
    assert "train: data/phrasebank/splits/50agree_train.csv" in res.stdout  # the recipe is valid and printed
    first, last = res.error_lines
    assert "${data_dir} is data (the default: neither --data-dir nor $FINSENT_DATA_DIR is set)" in first
    assert "--data-dir DIR or FINSENT_DATA_DIR=DIR" in first and "1 of its inputs does not exist yet" in last
    real = run_cli("prep", str(SHIPPED / "prep_phrasebank.yaml"))
    assert real.exit_code == 2 and real.error_lines == [first]


def test_prep_needs_no_data_folder_once_overrides_replace_every_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./data here, no $FINSENT_DATA_DIR
    monkeypatch.delenv("FINSENT_DATA_DIR", raising=False)
    splits = {}
    for split, n in (("train", 12), ("valid", 3), ("test", 3)):
        splits[split] = tmp_path / f"{split}.csv"
        rows = [f"{['Profit rose', 'Shares fell', 'Office opened'][i % 3]} in quarter {split} {i},{['positive', 'negative', 'neutral'][i % 3]}" for i in range(n)]
        splits[split].write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    args = ["prep", str(SHIPPED / "prep_phrasebank.yaml"), *(f"data.{s}={p}" for s, p in splits.items()), f"output_dir={tmp_path / 'out'}"]
    assert run_cli(*args, "--dry-run").exit_code == 0
    res = run_cli(*args, "-q")
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.parquet")) == ["test.parquet", "train.parquet", "valid.parquet"]
    one_left = run_cli(*args[:-2], args[-1])  # data.test still reads ${data_dir}
    assert_one_line_error(one_left, "${data_dir} is data", code=2)


def test_tokenizer_dry_run_names_the_recipe_that_makes_its_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    shutil.copytree(SHIPPED, tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)  # a fresh clone: no runs/ yet
    res = run_cli("tokenizer", "recipes/tokenizer.yaml", "--dry-run")
    assert res.exit_code == 1 and "vocab_size: 16000" in res.stdout
    assert res.error_lines[0] == "error: recipes/tokenizer.yaml: input.0: path not found: runs/data/corpus (make it with: finsent prep recipes/prep_corpus.yaml)"
    res = run_cli("tokenizer", "recipes/tokenizer.yaml", f"input=[{tmp_path / 'mine'}]", "heldout=runs/data/corpus/heldout.txt", "--dry-run")
    assert res.exit_code == 1
    assert res.error_lines[:2] == [
        f"error: recipes/tokenizer.yaml: input.0: path not found: {tmp_path / 'mine'}",  # no recipe makes it
        (
            "error: recipes/tokenizer.yaml: heldout: file not found: runs/data/corpus/heldout.txt (from a command-line override) "
            "(make it with: finsent prep recipes/prep_corpus.yaml)"
        ),
    ]
