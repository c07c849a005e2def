"""`finsent quickstart`: every step runs and writes its output (tiny backbone, one epoch)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.helpers import run_cli


def test_quickstart_end_to_end(tmp_path: Path, tiny_bert: Path) -> None:
    out = tmp_path / "qs"
    res = run_cli("quickstart", "--output", str(out), "--backbone", str(tiny_bert), "--epochs", "1", "-q")
    assert res.exit_code == 0, res.stderr
    for name in ("data/manifest.json", "model/best/config.json", "eval.json", "eval.csv", "predictions.csv", "explain.html", "headlines.txt"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader((out / "predictions.csv").open(encoding="utf-8")))
    lines = (out / "headlines.txt").read_text(encoding="utf-8").splitlines()
    assert len(rows) == len(lines) == 73
    assert [int(r["line"]) for r in rows] == list(range(1, 74))
    assert all(abs(float(r["p_negative"]) + float(r["p_neutral"]) + float(r["p_positive"]) - 1) < 1e-4 for r in rows)
    report = json.loads((out / "eval.json").read_text())
    assert "accuracy" in json.dumps(report)
    assert "<span" in (out / "explain.html").read_text()
    for step in ("class counts", "accuracy", "predictions (first 8 of 73)", "comprehensiveness", "quickstart outputs"):
        assert step in res.stdout, step


def test_quickstart_without_minilm_is_one_line(tmp_path: Path) -> None:
    res = run_cli("quickstart", "--output", str(tmp_path / "qs"), "--backbone", str(tmp_path / "nope"), "-q")
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert res.error_lines and "model folder not found" in res.error_lines[0]
