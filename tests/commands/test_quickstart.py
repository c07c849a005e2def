"""`finsent quickstart`: every step runs and writes its output; predict and explain then find its model."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from finsent_cli.core.flows.quickstart import DEMO_HEADLINES, EXAMPLE_HEADLINE
from tests.helpers import run_cli

N_LINES = len(DEMO_HEADLINES) + 72  # demo headlines, then the 72 test headlines of the sample


def test_quickstart_end_to_end(tmp_path: Path, tiny_bert: Path) -> None:
    out = tmp_path / "qs"
    res = run_cli("quickstart", "--output", str(out), "--backbone", str(tiny_bert), "--epochs", "1", "-q")
    assert res.exit_code == 0, res.stderr
    for name in ("data/manifest.json", "model/best/config.json", "eval.json", "eval.csv", "predictions.csv", "explain.html", "headlines.txt"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader((out / "predictions.csv").open(encoding="utf-8")))
    lines = (out / "headlines.txt").read_text(encoding="utf-8").splitlines()
    assert len(rows) == len(lines) == N_LINES and lines[: len(DEMO_HEADLINES)] == list(DEMO_HEADLINES)
    assert [int(r["line"]) for r in rows] == list(range(1, N_LINES + 1))
    assert all(abs(float(r["p_negative"]) + float(r["p_neutral"]) + float(r["p_positive"]) - 1) < 1e-4 for r in rows)
    report = json.loads((out / "eval.json").read_text())
    assert "accuracy" in json.dumps(report)
    assert "<span" in (out / "explain.html").read_text()
    for step in ("class counts", "accuracy", f"predictions (first 8 of {N_LINES})", "comprehensiveness", "quickstart outputs"):
        assert step in res.stdout, step
    assert (tmp_path / "latest").resolve() == (out / "model").resolve()  # beside the quickstart folder
    assert f"finsent predict {out / 'headlines.txt'} --format table --model {out / 'model'}" in res.stdout
    # only what the next commands need: best/, no step checkpoints (optimizer state) and no last/
    assert sorted(p.name for p in (out / "model").iterdir() if p.is_dir()) == ["best"]


def test_predict_and_explain_find_the_quickstart_model(tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's path: `finsent quickstart`, then `finsent predict`/`explain` with no --model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINSENT_MODEL", raising=False)
    res = run_cli("quickstart", "--backbone", str(tiny_bert), "--epochs", "1", "-q")
    assert res.exit_code == 0, res.stderr
    assert os.readlink("runs/latest") == "quickstart/model"
    assert "finsent predict runs/quickstart/headlines.txt --format table\n" in res.stdout  # no --model needed
    pred = run_cli("predict", "runs/quickstart/headlines.txt", "--format", "jsonl")
    assert pred.exit_code == 0, pred.stderr
    assert len(pred.stdout.splitlines()) == N_LINES
    exp = run_cli("explain", "Shares of Nokia fell 8% after a profit warning", "--mask-tokens", "--format", "json")
    assert exp.exit_code == 0, exp.stderr
    assert [w["word"] for w in json.loads(exp.stdout)["words"]][:3] == ["Shares", "of", "Nokia"]
    (Path("runs/quickstart") / "model.old-20260101-000000").mkdir()  # left by an interrupted quickstart
    again = run_cli("quickstart", "--backbone", str(tiny_bert), "--epochs", "1", "-q")  # replaces its own model
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in Path("runs/quickstart").iterdir() if p.name.startswith("model")) == ["model"]


@pytest.mark.slow
def test_the_real_quickstart_demo_is_one_a_reader_believes(tmp_path: Path, minilm_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MiniLM as the README runs it (about a minute): every demo headline gets the label a reader gives
    it, and the top word of the explained headline moves the probability visibly."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINSENT_MODEL", raising=False)
    res = run_cli("quickstart", "-q")
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader(Path("runs/quickstart/predictions.csv").open(encoding="utf-8")))
    assert {r["text"]: r["label"] for r in rows[: len(DEMO_HEADLINES)]} == DEMO_HEADLINES
    exp = run_cli("explain", EXAMPLE_HEADLINE, "--format", "json")
    assert exp.exit_code == 0, exp.stderr
    body = json.loads(exp.stdout)
    top = max(body["words"], key=lambda w: w["delta"])
    assert body["label"] == "negative" and top["word"] == "fell" and top["delta"] > 0.1, top


def test_quickstart_without_minilm_is_one_line(tmp_path: Path) -> None:
    res = run_cli("quickstart", "--output", str(tmp_path / "qs"), "--backbone", str(tmp_path / "nope"), "-q")
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert res.error_lines and "model folder not found" in res.error_lines[0]
