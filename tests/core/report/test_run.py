"""`run_report` on a micro fine-tuning run: files, page, numbers that match the run's log, and bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe
from finsent_cli.core.flows.finetune import run_finetune
from finsent_cli.core.progress import NullReporter
from finsent_cli.core.report import run as report_run
from finsent_cli.core.report.run import project, read_history, run_report
from finsent_cli.errors import FinsentError
from tests.finetune_helpers import micro_recipe

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ["curves.png", "confusion.png", "reliability.png", "per_class.png", "map.png"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A run folder fine-tuned from the tiny BERT on 48 sample headlines (24 for validation)."""
    tmp = tmp_path_factory.mktemp("report_run")
    run_finetune(load_recipe(micro_recipe(tmp, tiny_bert), FinetuneRecipe))
    return tmp / "run"


@pytest.fixture(scope="module")
def report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> report_run.ReportResult:
    return run_report(run_dir, tmp_path_factory.mktemp("out") / "report")


def final_valid(run_dir: Path) -> dict:
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(e for e in events if e["event"] == "final" and e["split"] == "valid")


def test_run_folder_gives_every_figure_and_a_self_contained_page(report: report_run.ReportResult) -> None:
    assert sorted(p.name for p in report.output.iterdir()) == sorted([*FIGURES, "report.html", "report.json"])
    for name in FIGURES:
        assert (report.output / name).read_bytes().startswith(PNG_MAGIC), name
    page = report.page.read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert not re.search(r"https?://", page) and "<link" not in page and "<script" not in page
    assert report.notes == []


def test_summary_numbers_equal_the_runs_final_valid_metrics(run_dir: Path, report: report_run.ReportResult) -> None:
    final, s = final_valid(run_dir), report.summary
    assert s["n"] == 24 and s["best_step"] == final["best_step"]
    assert s["accuracy"] == pytest.approx(final["accuracy"], abs=1e-9)
    assert s["macro_f1"] == pytest.approx(final["macro_f1"], abs=1e-9)
    assert s["ece"] == pytest.approx(final["ece"], abs=1e-5)
    page = report.page.read_text(encoding="utf-8")
    for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("ece", "ECE")):
        assert f"<td>{label}</td><td>{final[key]:.4f}" in page, key
    assert f"<td>best step</td><td>{final['best_step']}</td>" in page
    assert "valid.csv" in s["data"]
    written = json.loads((report.output / "report.json").read_text())
    assert written["accuracy"] == s["accuracy"] and written["figures"] == FIGURES


def test_calibration_is_named_when_the_folder_has_a_temperature(run_dir: Path, report: report_run.ReportResult) -> None:
    meta = json.loads((run_dir / "best" / "finsent.json").read_text())
    page = report.page.read_text(encoding="utf-8")
    if "temperature" in meta:
        assert report.summary["temperature"] == pytest.approx(meta["temperature"])
        assert f"temperature {meta['temperature']:.3f}" in page and "probabilities shown are calibrated" in page
    else:  # nothing fitted on 24 sentences: said as raw
        assert report.summary["temperature"] is None and "raw ones" in page


def test_model_folder_inside_a_run_brings_the_run(run_dir: Path, tmp_path: Path) -> None:
    res = run_report(run_dir / "best", tmp_path / "r", map="pca")
    assert res.summary["run"] == str(run_dir) and (tmp_path / "r" / "curves.png").is_file()
    assert res.summary["map"].startswith("PCA of the sentence embeddings")


def test_bare_model_folder_needs_data_and_gets_no_curves(run_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(run_dir / "best", model)
    with pytest.raises(FinsentError, match="pass --data FILE"):
        run_report(model, tmp_path / "r")
    reporter = NullReporter()
    res = run_report(model, tmp_path / "r", data=run_dir.parent / "data" / "valid.csv", reporter=reporter)
    assert not (tmp_path / "r" / "curves.png").exists() and len(res.figures) == 4
    assert res.summary["best_step"] is None and any("no training curves" in w for w in reporter.warnings)
    page = res.page.read_text(encoding="utf-8")
    assert "no training curves" in page and "a model folder without its run" in page


def test_broken_metrics_line_is_skipped_and_said(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints"))
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    (copy / "metrics.jsonl").write_text("\n".join([lines[0], '{"event": "train", "step"', "[1, 2]", *lines[1:]]) + "\n")
    hist = read_history(copy / "metrics.jsonl")
    assert hist.skipped == [2, 3] and hist.final_valid is not None
    reporter = NullReporter()
    res = run_report(copy, tmp_path / "r", reporter=reporter)
    assert (tmp_path / "r" / "curves.png").is_file()
    assert f"{copy / 'metrics.jsonl'}: skipped 2 broken lines (line 2, 3), not JSON objects" in reporter.warnings
    assert "skipped 2 broken lines" in res.page.read_text(encoding="utf-8")


def test_a_second_report_replaces_the_first_with_equal_pictures(run_dir: Path, report: report_run.ReportResult) -> None:
    before = {name: (report.output / name).read_bytes() for name in FIGURES}
    (report.output / "stale.png").write_bytes(b"x")
    run_report(run_dir, report.output)
    assert not (report.output / "stale.png").exists()
    assert {name: (report.output / name).read_bytes() for name in FIGURES} == before  # deterministic, t-SNE too


def test_target_conditioned_model(run_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(run_dir / "best", model)
    meta = json.loads((model / "finsent.json").read_text())
    (model / "finsent.json").write_text(json.dumps({**meta, "targets": True}))
    data = tmp_path / "t.csv"
    data.write_text("text,label,company\nNokia up,positive,Nokia\nNokia down,negative,Nokia\nA meeting,neutral,Acme\n")
    with pytest.raises(FinsentError, match="target-conditioned model.*--target-column"):
        run_report(model, tmp_path / "r", data=data)
    res = run_report(model, tmp_path / "r", data=data, target_column="company")
    errors = json.loads((tmp_path / "r" / "report.json").read_text())["confident_errors"]
    assert res.summary["n"] == 3 and all(e["target"] in ("Nokia", "Acme") for e in errors)


def test_bad_input(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FinsentError, match="not found"):
        run_report(tmp_path / "missing", tmp_path / "r")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FinsentError, match="neither a run folder .* nor a model folder"):
        run_report(tmp_path / "plain", tmp_path / "r")
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nup,positive\nmeh,sideways\n")
    with pytest.raises(FinsentError, match="bad.csv:3.*sideways"):
        run_report(run_dir, tmp_path / "r", data=bad)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FinsentError, match="is a file"):
        run_report(run_dir, tmp_path / "file")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FinsentError, match="not a finsent output folder"):
        run_report(run_dir, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(FinsentError, match="unknown map"):
        run_report(run_dir, tmp_path / "r", map="umap")
    assert not (tmp_path / "r").exists()


def test_project_falls_back_to_pca_for_many_points(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(0).normal(size=(60, 64))
    pts, title = project(x, "tsne")
    assert pts.shape == (60, 2) and title.startswith("t-SNE") and "PCA to 50 dims" in title
    monkeypatch.setattr(report_run, "TSNE_MAX_POINTS", 30)
    pts, title = project(x, "tsne")
    assert pts.shape == (60, 2) and title.startswith("PCA") and "more than 30 sentences" in title
    assert project(x[:2], "tsne")[0].shape == (2, 2)
