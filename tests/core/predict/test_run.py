"""predict_input: model resolution, one answer per record in order, counts, output formats, atomic writes."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.predict.run import (
    COLUMNS,
    check_output_format,
    predict_input,
    render_rows,
    write_rows,
)
from finsent_cli.core.progress import NullReporter
from finsent_cli.core.runs import resolve_model
from finsent_cli.errors import FinsentError
from tests.classifier_fakes import sharpened_copy

LINES = ["Profits rose sharply", "", "Shares fell after the profit warning was issued on Monday morning", "ok", "   ", "EUR 13.1 mn"]


@pytest.fixture(scope="module")
def sharp(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharpened_copy(tiny_bert, tmp_path_factory.mktemp("sharp"))


def test_resolution_order(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(FinsentError, match=r"no model: pass --model, set \$FINSENT_MODEL"):
        resolve_model(None, {}, runs)
    (runs / "r1").mkdir(parents=True)
    (runs / "r2").mkdir()
    (runs / "LATEST").write_text("r1\n")
    assert resolve_model(None, {}, runs) == (runs / "r1", str(runs / "LATEST"))
    os.symlink(runs / "r2", runs / "latest")
    assert resolve_model(None, {}, runs) == (runs / "latest", str(runs / "latest"))
    assert resolve_model(None, {"FINSENT_MODEL": "env-model"}, runs) == (Path("env-model"), "$FINSENT_MODEL")
    assert resolve_model("cli-model", {"FINSENT_MODEL": "env-model"}, runs) == (Path("cli-model"), "--model")
    shutil.rmtree(runs / "r2")
    with pytest.raises(FinsentError, match="which is gone"):
        resolve_model(None, {}, runs)


def test_every_line_answered_in_order(sharp: Path, tmp_path: Path) -> None:
    p = tmp_path / "in.txt"
    p.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    reporter = NullReporter()
    result = predict_input(p, sharp, batch_size=2, reporter=reporter)
    assert [r["line"] for r in result.rows] == [1, 2, 3, 4, 5, 6]
    assert [r["text"] for r in result.rows] == LINES
    assert [r["status"] for r in result.rows] == ["ok", "empty", "ok", "ok", "empty", "ok"]
    assert result.empty == 2 and sum(result.labels.values()) == 4
    expected = load_classifier(sharp).predict_proba([t for t in LINES if t.strip()])
    got = np.array([[r["p_negative"], r["p_neutral"], r["p_positive"]] for r in result.rows if r["status"] == "ok"])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    np.testing.assert_allclose([r["score"] for r in result.rows if r["status"] == "ok"], expected[:, 2] - expected[:, 0], atol=2e-6)
    for r in result.rows:
        assert list(r) == COLUMNS
        if r["label"]:
            assert r["score"] == round(r["p_positive"] - r["p_negative"], 6) and -1 <= r["score"] <= 1  # exactly, as written
            assert r["confidence"] == max(r["p_negative"], r["p_neutral"], r["p_positive"])
            assert r["label"] == ["negative", "neutral", "positive"][int(np.argmax([r["p_negative"], r["p_neutral"], r["p_positive"]]))]
        else:
            assert r["score"] is None  # no probabilities, no score
    assert any("2 empty records" in w for w in reporter.warnings)


def test_truncation_and_invalid_utf8_counted(sharp: Path, tmp_path: Path) -> None:
    short = tmp_path / "short"
    shutil.copytree(sharp, short)
    (short / "finsent.json").write_text(json.dumps({"task": "classification", "adapter": "none", "max_length": 8}))
    p = tmp_path / "in.txt"
    p.write_bytes(b"one two three four five six seven eight nine ten\nshort \xff\nfine\n")
    reporter = NullReporter()
    result = predict_input(p, short, reporter=reporter)
    assert [r["status"] for r in result.rows] == ["truncated", "ok", "ok"]
    cut = result.rows[0]  # a truncated row is a prediction: it has probabilities, so a score
    assert cut["score"] == round(cut["p_positive"] - cut["p_negative"], 6)
    assert result.truncated == 1 and result.replaced == 1
    assert result.rows[1]["text"] == "short \ufffd"
    assert any("truncated 1 text longer than 8 tokens" in w for w in reporter.warnings)
    assert any("invalid UTF-8" in w for w in reporter.warnings)


def test_a_text_too_long_to_read_whole_says_truncated_even_as_one_unknown_token(sharp: Path, tmp_path: Path) -> None:
    """A 1,000,000-character line without spaces is one [UNK] for WordPiece: it used to come back 'ok'."""
    from finsent_cli.core.predict.rows import CHARS_PER_TOKEN

    short = tmp_path / "short"
    shutil.copytree(sharp, short)
    (short / "finsent.json").write_text(json.dumps({"task": "classification", "adapter": "none", "max_length": 8}))
    most = 8 * CHARS_PER_TOKEN
    p = tmp_path / "in.txt"
    p.write_text("\n".join(["x" * 1_000_000, "y" * (most + 1), "z" * most, "fine"]) + "\n", encoding="utf-8")
    reporter = NullReporter()
    result = predict_input(p, short, reporter=reporter)
    assert [r["status"] for r in result.rows] == ["truncated", "truncated", "ok", "ok"]
    assert len(result.rows[0]["text"]) == 1_000_000  # the row keeps the whole text
    assert result.truncated == 2 and any("truncated 2 texts longer than 8 tokens" in w for w in reporter.warnings)
    docs = predict_input(p, short, per="document")  # documents are read whole, in windows: never truncated
    assert [r["status"] for r in docs.rows] == ["ok"] * 4


def test_csv_cells_carry_no_control_characters() -> None:
    rows = [{**ROWS[0], "text": "a\x00b\x1b[2Jc\td\ne\r\x7f\x85f"}]
    back = next(csv.DictReader(io.StringIO(render_rows(rows, "csv"))))
    assert back["text"] == "a\ufffdb\ufffd[2Jc\td\ne\r\ufffd\ufffdf"  # tab and line breaks kept
    assert json.loads(render_rows(rows, "json"))[0]["text"] == rows[0]["text"]  # JSON escapes them, exactly


def test_stdin_and_env_model(sharp: Path, tmp_path: Path) -> None:
    result = predict_input("-", None, stdin=io.BytesIO(b"up\ndown\n"), env={"FINSENT_MODEL": str(sharp)}, runs_dir=tmp_path)
    assert [r["text"] for r in result.rows] == ["up", "down"]


def test_bad_model_named_with_its_source(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("x\n")
    with pytest.raises(FinsentError, match=r"model folder not found \(model from \$FINSENT_MODEL\)"):
        predict_input(tmp_path / "in.txt", env={"FINSENT_MODEL": str(tmp_path / "gone")})


ROWS = [
    {"line": 1, "text": 'a, "quoted"\ntext', "label": "positive", "confidence": 0.7, "p_negative": 0.1, "p_neutral": 0.2, "p_positive": 0.7, "score": 0.6, "status": "ok"},
    {"line": 2, "text": "", "label": None, "confidence": None, "p_negative": None, "p_neutral": None, "p_positive": None, "score": None, "status": "empty"},
]


def test_formats_parse_back() -> None:
    back = list(csv.DictReader(io.StringIO(render_rows(ROWS, "csv"))))
    assert list(back[0]) == COLUMNS
    assert COLUMNS[COLUMNS.index("p_positive") + 1] == "score"  # right after the probabilities
    assert back[0]["text"] == ROWS[0]["text"] and float(back[0]["p_positive"]) == 0.7 and float(back[0]["score"]) == 0.6
    assert back[1]["label"] == "" and back[1]["score"] == "" and back[1]["status"] == "empty"
    assert json.loads(render_rows(ROWS, "json")) == ROWS
    assert [json.loads(line) for line in render_rows(ROWS, "jsonl").splitlines()] == ROWS


def test_output_format_checked() -> None:
    assert check_output_format("jsonl") == "jsonl"
    with pytest.raises(FinsentError, match="unknown --format 'xml'") as err:
        check_output_format("xml")
    assert err.value.exit_code == 2
    with pytest.raises(FinsentError, match="--format table"):
        check_output_format("table", "out.txt")


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "preds.csv"
    write_rows(ROWS, "csv", out)
    before = out.read_text()

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_rows(ROWS[:1], "jsonl", out)
    with pytest.raises(OSError):
        write_rows(ROWS, "csv", tmp_path / "new.csv")
    assert out.read_text() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv"]  # no new file, no temp left behind


def _load(path: Path, fmt: str) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    return json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_every_format_carries_the_signed_score(sharp: Path, tmp_path: Path, fmt: str) -> None:
    src, out = tmp_path / "in.txt", tmp_path / f"out.{fmt}"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    predict_input(src, sharp, output=out, fmt=fmt)
    rows = _load(out, fmt)
    if fmt == "csv":
        assert out.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    assert all(list(r) == COLUMNS for r in rows)  # score right after p_positive, in json too
    want = load_classifier(sharp).predict_scores([t for t in LINES if t.strip()])
    got = [float(r["score"]) for r in rows if r["status"] == "ok"]
    np.testing.assert_allclose(got, want, atol=2e-6)
    for r in rows:
        if r["status"] == "ok":
            assert float(r["score"]) == round(float(r["p_positive"]) - float(r["p_negative"]), 6) and -1 <= float(r["score"]) <= 1
        else:
            assert r["score"] in ("", None) and r["p_positive"] in ("", None)  # empty like the probabilities


def test_per_document_rows_score_their_aggregated_probabilities(sharp: Path, tmp_path: Path) -> None:
    src, out, details = tmp_path / "in.txt", tmp_path / "docs.jsonl", tmp_path / "sentences.csv"
    src.write_text("Profits rose sharply. Shares fell after the profit warning.\n\nGuidance cut. EUR 13.1 mn. ok\n", encoding="utf-8")
    predict_input(src, sharp, per="document", output=out, fmt="jsonl", details=details)
    rows, pieces = _load(out, "jsonl"), _load(details, "csv")
    from finsent_cli.core.predict.rows import DETAIL_COLUMNS, PredictOptions

    columns = PredictOptions(per="document").columns()
    assert columns[columns.index("p_positive") + 1] == "score" and all(list(r) == columns for r in rows)
    assert list(pieces[0]) == DETAIL_COLUMNS and DETAIL_COLUMNS[-1] == "score"
    assert [r["status"] for r in rows] == ["ok", "empty", "ok"] and rows[1]["score"] is None
    for row in (rows[0], rows[2]):
        mine = [p for p in pieces if int(p["line"]) == row["line"]]
        assert len(mine) == row["sentences"] > 1
        for p in mine:
            assert float(p["score"]) == round(float(p["p_positive"]) - float(p["p_negative"]), 6)
        assert row["score"] == round(row["p_positive"] - row["p_negative"], 6)
        # --aggregate mean: the score of the mean probabilities is the mean of the sentences' scores
        assert row["score"] == pytest.approx(np.mean([float(p["score"]) for p in mine]), abs=3e-6)
