"""`finsent explain` through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.classifier_fakes import sharpened_copy
from tests.helpers import assert_one_line_error, run_cli

TEXT = "Kestrel Mining profit jumped to EUR 42.5 mn"


@pytest.fixture(scope="module")
def model(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharpened_copy(tiny_bert, tmp_path_factory.mktemp("model"))


def test_rich_output(model: Path) -> None:
    res = run_cli("explain", TEXT, "--model", str(model), "--mask-tokens")
    assert res.exit_code == 0, res.stderr
    assert "comprehensiveness" in res.stdout and "sufficiency" in res.stdout and "delta" in res.stdout
    first = res.stdout.splitlines()[0]  # label  (negative p  neutral p  positive p; score +s)
    probs = dict(re.findall(r"(negative|neutral|positive) (\d\.\d{3})", first))
    score = float(re.search(r"; score ([+-]\d\.\d{3})\)", first).group(1))
    assert score == pytest.approx(float(probs["positive"]) - float(probs["negative"]), abs=2e-3)
    assert all(word in res.stdout for word in TEXT.split())


def test_json_and_html(model: Path, tmp_path: Path) -> None:
    res = run_cli("explain", TEXT, "-m", str(model), "--format", "json")
    d = json.loads(res.stdout)
    assert [w["word"] for w in d["words"]] == TEXT.split() and len(d["top_k"]) == 3
    assert d["score"] == pytest.approx(d["probs"]["positive"] - d["probs"]["negative"], abs=1e-9) and -1 <= d["score"] <= 1
    out = tmp_path / "x.html"
    res = run_cli("explain", "a <b>bold</b> claim", "-m", str(model), "-f", "html", "--output", str(out), "--mask-mode", "delete")
    assert res.exit_code == 0 and "&lt;b&gt;bold&lt;/b&gt;" in out.read_text()


def test_bad_inputs(model: Path, tmp_path: Path) -> None:
    assert_one_line_error(run_cli("explain", "", "-m", str(model)), "TEXT is empty")
    assert_one_line_error(run_cli("explain", TEXT, "-m", str(model), "-f", "pdf"), "unknown --format 'pdf'", code=2)
    assert_one_line_error(run_cli("explain", TEXT, "-m", str(tmp_path / "nope")), "model folder not found")
    assert_one_line_error(run_cli("explain", TEXT, "-m", str(model), "--mask-mode", "blur"), "unknown mask mode", code=2)


def test_legend_without_colour_uses_signs(model: Path) -> None:
    res = run_cli("explain", TEXT, "-m", str(model))  # output captured: not a terminal, no colour
    assert res.exit_code == 0, res.stderr
    assert "green" not in res.stdout and "(+) pushes toward the predicted class, (-) against it" in res.stdout
    marked = re.findall(r"(\S+)\(([+-]+)\)", res.stdout.splitlines()[1])
    assert marked and all(word in TEXT.split() for word, _ in marked)
