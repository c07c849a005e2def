"""`finsent report` through the real CLI: a micro run's pictures, a model folder with --data, one-line errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.finetune_helpers import micro_recipe
from tests.helpers import assert_one_line_error, run_cli

FIGURES = ("curves.png", "confusion.png", "reliability.png", "per_class.png", "map.png")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A run folder fine-tuned from the tiny BERT on 48 sample headlines (24 for validation)."""
    tmp = tmp_path_factory.mktemp("report_cli")
    res = run_cli("finetune", str(micro_recipe(tmp, tiny_bert)), "-q")
    assert res.exit_code == 0, res.stderr
    return tmp / "run"


def test_report_of_a_run(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pics"
    res = run_cli("report", str(run_dir), "--output", str(out), "-q")
    assert res.exit_code == 0, res.stderr
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    final = next(e for e in events if e["event"] == "final" and e["split"] == "valid")
    assert f"24 sentences of {run_dir.parent / 'data' / 'valid.csv'}" in res.stdout
    assert f"accuracy {final['accuracy']:.4f}, macro-F1 {final['macro_f1']:.4f}, ECE {final['ece']:.4f}" in res.stdout
    assert (
        f"best step {final['best_step']}" in res.stdout and f"wrote {out / 'report.html'} and 5 figures" in res.stdout
    )
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 5 and not re.search(r"https?://", page)
    assert f"<td>macro-F1</td><td>{final['macro_f1']:.4f}</td>" in page


def test_model_folder_with_data(run_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(run_dir / "best", model)
    out = tmp_path / "pics"
    assert_one_line_error(
        run_cli("report", str(model), "-o", str(out)), "a model folder without a run around it", "--data FILE"
    )
    res = run_cli(
        "report", str(model), "-o", str(out), "--data", str(run_dir.parent / "data" / "valid.csv"), "--map", "pca"
    )
    assert res.exit_code == 0, res.stderr
    assert "no training curves" in res.stderr and "wrote" in res.stdout and "best step" not in res.stdout
    assert sorted(p.name for p in out.glob("*.png")) == sorted(set(FIGURES) - {"curves.png"})


def test_bad_input(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert_one_line_error(run_cli("report", str(tmp_path / "missing"), "-o", str(out)), "missing: not found")
    (tmp_path / "plain").mkdir()
    assert_one_line_error(
        run_cli("report", str(tmp_path / "plain"), "-o", str(out)), "neither a run folder", "nor a model folder"
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "up", "label": "positive"}\n{"text": "meh", "label": "sideways"}\n')
    assert_one_line_error(
        run_cli("report", str(run_dir), "-o", str(out), "--data", str(bad)), "bad.jsonl:2", "sideways"
    )
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run_cli("report", str(run_dir), "-o", str(tmp_path / "file")), "is a file", code=2)
    assert_one_line_error(
        run_cli("report", str(run_dir), "-o", str(out), "--map", "umap"), "unknown map 'umap'", code=2
    )
    assert_one_line_error(run_cli("report", str(run_dir)), "--output", code=2)
    assert not out.exists()


def test_broken_metrics_line_is_a_warning(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints"))
    with (copy / "metrics.jsonl").open("a") as fh:
        fh.write("{not json\n")
    res = run_cli("report", str(copy), "-o", str(tmp_path / "r"), "-q")
    assert res.exit_code == 0 and "Traceback" not in res.stderr
    assert "warning:" in res.stderr and "skipped 1 broken line" in res.stderr
