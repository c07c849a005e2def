"""`finsent predict` through the real CLI, including every bad input of issue 3."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest

from tests.classifier_fakes import sharpened_copy
from tests.helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def model(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharpened_copy(tiny_bert, tmp_path_factory.mktemp("model"))


@pytest.fixture(autouse=True)
def _no_env_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FINSENT_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)  # no runs/latest unless a test makes one


@pytest.fixture()
def txt(tmp_path: Path) -> Path:
    p = tmp_path / "in.txt"
    p.write_text("Profits rose sharply\n\nShares fell\n", encoding="utf-8")
    return p


def test_csv_to_stdout_one_row_per_line(model: Path, txt: Path) -> None:
    res = run_cli("predict", str(txt), "--model", str(model))
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["line"], r["status"]) for r in rows] == [("1", "ok"), ("2", "empty"), ("3", "ok")]
    assert res.stdout.splitlines()[0] == "line,text,label,confidence,p_negative,p_neutral,p_positive,score,status"
    assert [r["score"] for r in rows if r["status"] == "empty"] == [""]
    for r in (rows[0], rows[2]):
        assert float(r["score"]) == round(float(r["p_positive"]) - float(r["p_negative"]), 6) and -1 <= float(r["score"]) <= 1
    assert "3 records" in res.stderr and "predict" in res.stderr  # summary and progress on stderr only
    assert "warning: 1 empty record not classified" in res.stderr
    assert "3 records (" in res.stderr


def test_json_output_file_and_jsonl_stdin(model: Path, txt: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "preds.json"
    res = run_cli("predict", str(txt), "-m", str(model), "--format", "json", "--output", str(out))
    assert res.exit_code == 0 and res.stdout == ""
    assert [r["line"] for r in json.loads(out.read_text())] == [1, 2, 3]
    res = run_cli("predict", "-", "-m", str(model), "-f", "jsonl", input=b"up\ndown\n")
    assert [json.loads(line)["text"] for line in res.stdout.splitlines()] == ["up", "down"]


def test_table_and_csv_column(model: Path, tmp_path: Path) -> None:
    p = tmp_path / "in.csv"
    p.write_text("id,headline\n1,Profits rose\n", encoding="utf-8")
    res = run_cli("predict", str(p), "-m", str(model), "--column", "headline", "-f", "table", env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "Profits rose" in res.stdout and "p_pos" in res.stdout
    header = next(line for line in res.stdout.splitlines() if "p_pos" in line)
    assert re.search(r"p_pos\s*\W\s*score\s*\W\s*status", header), header  # score between p_pos and status
    row = next(csv.DictReader(io.StringIO(run_cli("predict", str(p), "-m", str(model), "--column", "headline").stdout)))
    assert f"{float(row['p_positive']):.3f} \u2502 {float(row['score']):+.3f} \u2502 ok" in res.stdout  # signed, 3 places


def test_env_then_runs_latest(model: Path, txt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli.core.models import builtin

    (tmp_path / "no_builtins").mkdir()  # an installation whose manifest lists no default model
    (tmp_path / "no_builtins" / builtin.MANIFEST).write_text('{"models": {}}\n', encoding="utf-8")
    monkeypatch.setattr(builtin, "MODELS_DIR", tmp_path / "no_builtins")
    assert_one_line_error(run_cli("predict", str(txt)), "no model", "--model", "$FINSENT_MODEL")
    (tmp_path / "runs").mkdir()
    os.symlink(model, tmp_path / "runs" / "latest")
    assert run_cli("predict", str(txt)).exit_code == 0
    monkeypatch.setenv("FINSENT_MODEL", str(tmp_path / "nope"))
    assert_one_line_error(run_cli("predict", str(txt)), "model folder not found", "$FINSENT_MODEL")


def test_bad_model_folders(model: Path, txt: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    assert_one_line_error(run_cli("predict", str(txt), "-m", str(tmp_path / "missing"), "-o", str(out)), "model folder not found")
    assert_one_line_error(run_cli("predict", str(txt), "-m", str(tmp_path), "-o", str(out)), "not a model folder")
    assert not out.exists()


def test_empty_inputs(model: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    assert_one_line_error(run_cli("predict", str(tmp_path / "empty.txt"), "-m", str(model)), "file is empty")
    assert_one_line_error(run_cli("predict", "-", "-m", str(model), input=b""), "stdin: no input")


def test_unknown_format_fails_before_any_work(txt: Path, tmp_path: Path) -> None:
    res = run_cli("predict", str(txt), "-m", str(tmp_path / "no-model"), "--format", "xml")
    assert_one_line_error(res, "unknown --format 'xml'", "csv, json, jsonl, table", code=2)


def test_missing_column_writes_nothing(model: Path, tmp_path: Path) -> None:
    p = tmp_path / "in.csv"
    p.write_text("headline\nx\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    assert_one_line_error(run_cli("predict", str(p), "-m", str(model), "-o", str(out), "-f", "jsonl"), "no column 'text'")
    assert not out.exists() and not [q for q in tmp_path.iterdir() if q.name.startswith(".o.jsonl")]


def test_text_column_for_csv_and_jsonl_and_the_old_spellings(model: Path, tmp_path: Path) -> None:
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("id,headline\n1,Profits rose\n", encoding="utf-8")
    jsonl_in = tmp_path / "in.jsonl"
    jsonl_in.write_text('{"body": "Shares fell"}\n', encoding="utf-8")
    for src, old, name, text in ((csv_in, "--column", "headline", "Profits rose"), (jsonl_in, "--field", "body", "Shares fell")):
        for flag in ("--text-column", old):  # the old spellings stay, hidden
            res = run_cli("predict", str(src), "-m", str(model), flag, name)
            assert res.exit_code == 0, (flag, res.stderr)
            assert [r["text"] for r in csv.DictReader(io.StringIO(res.stdout))] == [text]
    help_text = run_cli("predict", "--help", env={"COLUMNS": "200"}).stdout
    assert "--text-column" in help_text and "--column" not in help_text and "--field" not in help_text


def test_says_which_model_it_loads_before_loading(model: Path, txt: Path) -> None:
    res = run_cli("predict", str(txt), "-m", str(model))
    lines = res.stderr.splitlines()
    assert lines[0] == f"predict: {txt}; loading torch and the model"  # before torch is imported
    assert lines[1] == f"loading model {model}"
    assert any(line.startswith("[") and "predict:" in line for line in lines[2:])  # progress comes after
    res = run_cli("predict", "-", "-m", str(model), input=b"up\n")
    assert res.stderr.splitlines()[0] == "predict: stdin; loading torch and the model"
    res = run_cli("predict", str(txt), "-m", str(model), "--quiet")
    assert res.exit_code == 0 and "loading" not in res.stderr


def test_one_record_is_singular(model: Path, tmp_path: Path) -> None:
    one = tmp_path / "one.txt"
    one.write_text("Profits rose\n", encoding="utf-8")
    res = run_cli("predict", str(one), "-m", str(model))
    # "(?<![\d.])": a rate such as "131 records/s" is not a plural of one
    assert res.exit_code == 0 and "1 record (" in res.stderr and not re.search(r"(?<![\d.])1 records", res.stderr)


def test_default_model_when_nothing_names_one(tmp_path: Path) -> None:
    # a fresh folder: no --model, no $FINSENT_MODEL, no runs/ (the autouse fixture): the shipped model answers
    p = tmp_path / "news.txt"
    p.write_text("Shares of Nokia fell 8% after a profit warning\nRecord quarterly profit lifts shares to an all-time high\n", encoding="utf-8")
    res = run_cli("predict", str(p), "-f", "jsonl")
    assert res.exit_code == 0, res.stderr
    assert "using finsent's default model" in res.stderr
    assert [json.loads(line)["label"] for line in res.stdout.splitlines()] == ["negative", "positive"]
    res = run_cli("explain", "Shares of Nokia fell 8% after a profit warning")
    assert res.exit_code == 0 and "using finsent's default model" in res.stderr


# --- issue 22 ----------------------------------------------------------------------------------------


def test_text_instead_of_a_file_hints_at_stdin_before_loading_anything(tmp_path: Path) -> None:
    res = run_cli("predict", "Profit rose 5.2% on strong demand", "-m", str(tmp_path / "no-model"))
    line = assert_one_line_error(res, code=1)
    assert line == (
        "error: Profit rose 5.2% on strong demand: file not found; to classify this text, pipe it in: "
        "echo 'Profit rose 5.2% on strong demand' | finsent predict -"
    )
    assert "loading" not in res.stderr  # before torch and the model


def test_a_broken_csv_quote_answers_every_line(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    rows = [f"{i},headline {i}" for i in range(1, 302)]
    rows[250] = '251,"headline 251'  # an opening quote that never closes
    src.write_text("id,text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    res = run_cli("predict", str(src), "-m", str(model))
    assert res.exit_code == 0, res.stderr
    out = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(out) == 301 and [r["line"] for r in out] == [str(n) for n in range(2, 303)]
    assert [(r["line"], r["status"], r["label"], r["score"]) for r in out if r["status"] != "ok"] == [("252", "malformed", "", "")]
    assert "warning: 1 malformed record not classified (status 'malformed'): line 252: unterminated quote" in res.stderr


def test_ctrl_c_prints_one_line_saying_what_was_kept(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli.core.predict.output import PartialOutput

    src, out = tmp_path / "in.txt", tmp_path / "o.csv"
    src.write_text("".join(f"headline {i}\n" for i in range(10)), encoding="utf-8")
    real_write, calls = PartialOutput.write, []

    def write(self: PartialOutput, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second chunk is written
        real_write(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PartialOutput, "write", write)
    res = run_cli("predict", str(src), "-m", str(model), "-o", str(out), "--chunk-size", "3")
    assert res.exit_code == 130
    assert res.error_lines == [f"error: interrupted; the finished chunks are kept in {out}.partial: add --resume to continue"]
    assert res.stderr.count("interrupted") == 1
    monkeypatch.setattr(PartialOutput, "write", real_write)
    done = run_cli("predict", str(src), "-m", str(model), "-o", str(out), "--resume", "--batch-size", "2")  # batching may change
    assert done.exit_code == 0, done.stderr
    assert len(list(csv.DictReader(out.open(encoding="utf-8")))) == 10


def _interrupted_before_the_rename(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Six headlines predicted into ``o.csv`` by a run stopped (Ctrl-C) after its last chunk, before the rename:
    ``o.csv.partial`` and its state are complete. Returns (input, output)."""
    from finsent_cli.core.predict.output import PartialOutput

    src, out = tmp_path / "in.txt", tmp_path / "o.csv"
    src.write_text("".join(f"headline {i}\n" for i in range(6)), encoding="utf-8")
    real_close = PartialOutput.close
    monkeypatch.setattr(PartialOutput, "close", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))  # stop before the rename
    assert run_cli("predict", str(src), "-m", str(model), "-o", str(out)).exit_code == 130
    monkeypatch.setattr(PartialOutput, "close", real_close)
    return src, out


def test_resume_with_another_backend_names_the_option(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = _interrupted_before_the_rename(model, tmp_path, monkeypatch)
    res = run_cli("predict", str(src), "-m", str(model), "-o", str(out), "--resume", "--backend", "int8")
    line = assert_one_line_error(res, code=2)
    assert line == (
        f"error: {out}: --resume with other settings than the interrupted run: --backend (was torch, now int8); "
        "rerun with the same options, or with --fresh to start over"
    )


def test_resuming_an_output_begun_before_the_score_column_is_one_error_line(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = _interrupted_before_the_rename(model, tmp_path, monkeypatch)
    state_path = tmp_path / "o.csv.partial.json"
    state = json.loads(state_path.read_text())
    del state["columns"]
    state_path.write_text(json.dumps({**state, "version": 2}))  # what a finsent without the score column left
    before = (tmp_path / "o.csv.partial").read_bytes()
    line = assert_one_line_error(run_cli("predict", str(src), "-m", str(model), "-o", str(out), "--resume"))
    assert line == f"error: {state_path}: written by another finsent version (state version 2: its rows have no score column), this one reads version 3; use --fresh to start over"
    assert (tmp_path / "o.csv.partial").read_bytes() == before and not out.exists()
    assert run_cli("predict", str(src), "-m", str(model), "-o", str(out), "--fresh").exit_code == 0
    assert out.read_text(encoding="utf-8").splitlines()[0].endswith(",p_positive,score,status")
