"""evaluate(): datasets (prepared folders and raw files), overlap with training data, the written report."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from finsent_cli.core.data.store import write_split
from finsent_cli.core.eval.run import (
    evaluate,
    find_train_hashes,
    load_eval_data,
    parse_label_map,
    report_paths,
    text_hash,
    write_report,
)
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.progress import NullReporter
from finsent_cli.errors import FinsentError
from tests.classifier_fakes import sharpened_copy

ROWS = [
    {"text": "Profits rose sharply", "label": "positive"},
    {"text": "Shares fell after the warning", "label": "negative"},
    {"text": "The meeting is on Monday", "label": "neutral"},
    {"text": "Sales grew 5 %", "label": "positive"},
]


def make_prepared(folder: Path, splits: dict[str, list[dict]]) -> Path:
    folder.mkdir(parents=True)
    for name, rows in splits.items():
        write_split(folder / f"{name}.jsonl", rows)
    manifest = {"kind": "labelled", "labels": ["negative", "neutral", "positive"], "files": {n: f"{n}.jsonl" for n in splits}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def run_dir(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: best/ model, train_hashes.json naming the first ROWS text (with other spacing and case)."""
    run = tmp_path_factory.mktemp("run")
    sharpened_copy(tiny_bert, run / "best")
    (run / "train_hashes.json").write_text(json.dumps({"algorithm": "sha256-normalised", "hashes": [text_hash("PROFITS rose, sharply!")]}))
    return run


def test_prepared_folder_uses_test_then_valid_then_split(tmp_path: Path) -> None:
    both = make_prepared(tmp_path / "both", {"train": ROWS, "valid": ROWS[:2], "test": ROWS[:3]})
    assert len(load_eval_data(both).texts) == 3
    assert len(load_eval_data(both, split="valid").texts) == 2
    only_valid = make_prepared(tmp_path / "v", {"train": ROWS, "valid": ROWS[:2]})
    data = load_eval_data(only_valid)
    assert data.name == "v/valid" and data.labels.tolist() == [2, 0]
    with pytest.raises(FinsentError, match="no split 'dev'"):
        load_eval_data(both, split="dev")


def test_raw_file_labels_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("sentence,sentiment\nup,bullish\ndown,Bearish\nflat,neutral\n")
    data = load_eval_data(path, text_column="sentence", label_column="sentiment")
    assert data.texts == ["up", "down", "flat"] and data.labels.tolist() == [2, 0, 1]


def test_unknown_label_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nup,positive\nmeh,mixed\n")
    with pytest.raises(FinsentError, match=r"d\.csv:3: unknown label 'mixed'"):
        load_eval_data(path)


def test_class_ids_need_label_map(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "up", "label": 1}\n{"text": "down", "label": 0}\n{"text": "x", "label": 2}\n')
    with pytest.raises(FinsentError, match="label_map"):
        load_eval_data(path)
    data = load_eval_data(path, label_map=parse_label_map("0=negative,1=positive,2=neutral"))
    assert data.labels.tolist() == [2, 0, 1]
    with pytest.raises(FinsentError, match="bad pair"):
        parse_label_map("0=bearish")


def test_train_hashes_found_from_run_best_and_finsent_json(run_dir: Path, tmp_path: Path) -> None:
    assert find_train_hashes(run_dir) is not None
    assert find_train_hashes(run_dir) == find_train_hashes(run_dir / "best")
    elsewhere = tmp_path / "exported"
    shutil.copytree(run_dir / "best", elsewhere)
    assert find_train_hashes(elsewhere) is None
    (elsewhere / "finsent.json").write_text(json.dumps({"task": "classification", "run": str(run_dir)}))
    assert find_train_hashes(elsewhere) == find_train_hashes(run_dir)


def test_evaluate_matches_predictions_and_warns_on_overlap(run_dir: Path, tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep", {"train": ROWS, "test": ROWS})
    reporter = NullReporter()
    report = evaluate([run_dir], [data], reporter=reporter)
    result = report.get(str(run_dir), "prep/test")
    assert result.overlap == 1 and result.metrics["n"] == 4
    assert any("1 of 4 texts" in w and "training data" in w for w in reporter.warnings)
    probs = load_classifier(run_dir).predict_proba([r["text"] for r in ROWS])
    truth = np.array([2, 0, 1, 2])
    assert result.metrics["accuracy"] == pytest.approx(float((probs.argmax(1) == truth).mean()))


def test_several_models_and_datasets_and_report_files(run_dir: Path, tiny_bert: Path, tmp_path: Path) -> None:
    d1 = make_prepared(tmp_path / "a", {"train": ROWS, "test": ROWS})
    d2 = tmp_path / "b.csv"
    d2.write_text("text,label\nup,positive\ndown,negative\n")
    report = evaluate([run_dir, tiny_bert], [d1, d2])
    assert len(report.results) == 4 and report.datasets == ["a/test", "b.csv"]
    assert report.get(str(tiny_bert), "b.csv").overlap is None  # no run, no hashes: unknown, not zero
    json_path, csv_path = write_report(report, tmp_path / "out" / "scores.json")
    assert json_path.name == "scores.json" and csv_path.name == "scores.csv"
    payload = json.loads(json_path.read_text())
    assert len(payload["results"]) == 4 and payload["results"][0]["confusion"]
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["model"], r["dataset"]) for r in rows] == [(str(m), d) for m in (run_dir, tiny_bert) for d in ("a/test", "b.csv")]
    assert float(rows[0]["accuracy"]) == pytest.approx(report.results[0].metrics["accuracy"])
    assert rows[0]["positive_support"] == "2"


def test_bad_model_fails_before_reading_data(tmp_path: Path) -> None:
    with pytest.raises(FinsentError, match="model folder not found"):
        evaluate([tmp_path / "nope"], [tmp_path / "also-nope.csv"])


def test_report_paths_drop_a_json_or_csv_suffix(tmp_path: Path) -> None:
    for given in ("scores", "scores.json", "scores.CSV"):
        assert report_paths(tmp_path / given) == (tmp_path / "scores.json", tmp_path / "scores.csv")
    assert report_paths("out/v1.2") == (Path("out/v1.2.json"), Path("out/v1.2.csv"))  # other suffixes are kept


def test_unknown_input_format_is_refused_even_for_a_prepared_folder(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep", {"test": ROWS})
    raw = tmp_path / "d.csv"
    raw.write_text("text,label\nup,positive\n")
    for path in (data, raw):
        with pytest.raises(FinsentError, match=r"unknown --input-format 'xml' \(choose auto, csv, tsv, jsonl, parquet\)") as info:
            load_eval_data(path, fmt="xml")
        assert info.value.exit_code == 2


def test_a_calibrated_folder_reports_ece_before_and_after(run_dir: Path, tmp_path: Path) -> None:
    from finsent_cli.core.eval.metrics import apply_temperature, expected_calibration_error

    data = tmp_path / "d.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["text", "label"])
        writer.writeheader()
        writer.writerows(ROWS * 3)
    calibrated = tmp_path / "calibrated"
    shutil.copytree(run_dir / "best", calibrated)
    meta = json.loads((calibrated / "finsent.json").read_text()) if (calibrated / "finsent.json").exists() else {}
    (calibrated / "finsent.json").write_text(json.dumps({**meta, "temperature": 2.0}))
    report = evaluate([run_dir / "best", calibrated], [data])
    plain, scaled = (r.metrics for r in report.results)
    assert plain["temperature"] == 1.0 and plain["ece_uncalibrated"] == plain["ece"]
    assert scaled["temperature"] == 2.0 and scaled["accuracy"] == plain["accuracy"]
    assert scaled["ece_uncalibrated"] == pytest.approx(plain["ece"], abs=1e-5)
    raw = load_classifier(run_dir / "best").predict_proba([r["text"] for r in ROWS * 3])
    gold = np.array([["negative", "neutral", "positive"].index(r["label"]) for r in ROWS * 3])
    assert scaled["ece"] == pytest.approx(expected_calibration_error(apply_temperature(raw, 2.0), gold), abs=1e-5)
    csv_path = write_report(report, tmp_path / "report")[1]
    with csv_path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["temperature"]) for r in rows] == [1.0, 2.0]

    (calibrated / "finsent.json").write_text(json.dumps({**meta, "temperature": "hot"}))
    with pytest.raises(FinsentError, match=r"finsent.json: temperature must be a positive number, got 'hot'"):
        load_classifier(calibrated)
