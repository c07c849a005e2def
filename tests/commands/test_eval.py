"""`finsent eval` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finsent_cli.core.eval.run import text_hash
from tests.classifier_fakes import sharpened_copy
from tests.helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def run_dir(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    sharpened_copy(tiny_bert, run / "best")
    (run / "train_hashes.json").write_text(json.dumps({"hashes": [text_hash("Profits rose sharply")]}))
    return run


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    p = tmp_path / "test.csv"
    p.write_text("text,label\nProfits rose sharply,positive\nShares fell,negative\nMeeting on Monday,neutral\n", encoding="utf-8")
    return p


def test_one_model_report(run_dir: Path, data: Path) -> None:
    res = run_cli("eval", str(run_dir), str(data))
    assert res.exit_code == 0, res.stderr
    for needle in ("accuracy", "macro-F1", "weighted-F1", "ECE", "per class", "confusion (counts)", "confusion (row-normalised)"):
        assert needle in res.stdout
    assert "1 of 3 texts in test.csv" in res.stderr and "training data" in res.stderr


def test_two_models_side_by_side_and_output(run_dir: Path, tiny_bert: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    res = run_cli("eval", str(run_dir), str(tiny_bert), str(data), "--output", str(out))
    assert res.exit_code == 0, res.stderr
    assert "models on test.csv" in res.stdout
    payload = json.loads((tmp_path / "report.json").read_text())
    assert len(payload["results"]) == 2
    assert (tmp_path / "report.csv").read_text().count("\n") == 3


def test_bad_inputs(run_dir: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert_one_line_error(run_cli("eval", str(tmp_path / "missing"), str(data)), "no model among the arguments", "not found")
    assert_one_line_error(run_cli("eval", str(run_dir)), "no dataset given")
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nup,positive\nmeh,sideways\n", encoding="utf-8")
    assert_one_line_error(run_cli("eval", str(run_dir), str(bad), "-o", str(out)), "bad.csv:3", "unknown label 'sideways'")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_one_line_error(run_cli("eval", str(run_dir), str(empty), "-o", str(out)), "file is empty")
    assert not list(tmp_path.glob("r.*"))


def test_input_format_for_a_file_without_a_known_suffix(run_dir: Path, data: Path, tmp_path: Path) -> None:
    odd = tmp_path / "labelled.txt"
    odd.write_bytes(data.read_bytes())
    assert_one_line_error(run_cli("eval", str(run_dir), str(odd)), "cannot tell the format", "--input-format")
    res = run_cli("eval", str(run_dir), str(odd), "--input-format", "csv")
    assert res.exit_code == 0, res.stderr
    assert "labelled.txt" in res.stdout
    bad = run_cli("eval", str(run_dir), str(odd), "--input-format", "xml")
    assert_one_line_error(bad, "unknown --input-format 'xml'", "auto, csv, tsv, jsonl, parquet", code=2)


def test_says_what_it_loads_before_loading(run_dir: Path, tiny_bert: Path, data: Path) -> None:
    lines = run_cli("eval", str(run_dir), str(tiny_bert), str(data)).stderr.splitlines()
    assert lines[0] == "eval: 2 models x 1 dataset; loading torch and the models"  # before torch is imported
    assert lines[1] == f"loading model {run_dir}"
    assert any(line.startswith("[") and "eval" in line for line in lines[2:])  # progress comes after
    quiet = run_cli("eval", str(run_dir), str(data), "--quiet").stderr
    assert "eval:" not in quiet and "loading" not in quiet


def test_output_prefix_checks_both_report_files_before_work(run_dir: Path, data: Path, tmp_path: Path) -> None:
    binary = tmp_path / "binary.csv"  # reading it would fail: the output is refused before that
    binary.write_bytes(b"text,label\n\x00\x01,positive\n")
    (tmp_path / "taken.csv").mkdir()
    for prefix in ("taken", "taken.json", "taken.csv"):
        res = run_cli("eval", str(run_dir), str(binary), "-o", str(tmp_path / prefix))
        assert_one_line_error(res, f"{tmp_path / 'taken.csv'}: is a folder", code=2)
    assert not (tmp_path / "taken.json").exists()
    (tmp_path / "report").mkdir()  # a folder named PREFIX is no obstacle: the files are report.json, report.csv
    res = run_cli("eval", str(run_dir), str(data), "-o", str(tmp_path / "report"))
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "report.json").is_file() and (tmp_path / "report.csv").is_file()
