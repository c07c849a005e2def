"""`finsent export` and `finsent eval --backend` through the real CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.labels import LABELS
from tests.core.inference.test_backends import TEXTS, make_backbone, spread_bert
from tests.helpers import assert_one_line_error, run_cli

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def model(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spread tiny BERT, exported through the CLI with both graphs."""
    tmp = tmp_path_factory.mktemp("export")
    folder = spread_bert(make_backbone(tiny_bert, tmp / "backbone"), tmp / "model")
    res = run_cli("export", str(folder), "--onnx", "--int8")
    assert res.exit_code == 0, res.stderr
    out = " ".join(res.stdout.split())  # rich wraps long lines
    assert f"wrote {folder}/onnx/model.onnx" in out and f"wrote {folder}/onnx/model.int8.onnx" in out
    assert "--backend onnx;" in out and "--backend onnx-int8;" in out and "same label 14/14" in out
    assert f"run it: finsent predict INPUT --model {folder} --backend onnx-int8" in out
    return folder


@pytest.fixture(scope="module")
def data(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TEXTS labelled with the torch model's own answers: accuracy 1 for every backend that agrees with it."""
    labels = load_classifier(model).predict_proba(TEXTS).argmax(1)
    path = tmp_path_factory.mktemp("data") / "test.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows((t, LABELS[i]) for t, i in zip(TEXTS, labels))
    return path


@pytest.mark.parametrize("backend", ["torch", "int8", "onnx", "onnx-int8"])
def test_eval_runs_every_backend(backend: str, model: Path, data: Path, tmp_path: Path) -> None:
    res = run_cli("eval", str(model), str(data), "--backend", backend, "-o", str(tmp_path / "report"))
    assert res.exit_code == 0, res.stderr
    assert (backend == "torch") != (f"(backend {backend})" in res.stderr)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["backend"] == backend and report["results"][0]["accuracy"] == 1.0


def test_export_and_backend_mistakes_are_one_line(model: Path, data: Path, tmp_path: Path) -> None:
    assert_one_line_error(run_cli("export", str(model)), "nothing to export: add --onnx", code=2)
    assert_one_line_error(run_cli("export", str(tmp_path / "missing"), "--onnx"), "missing: model folder not found", code=1)
    assert_one_line_error(run_cli("eval", str(model), str(data), "--backend", "onxx"), "unknown backend 'onxx' (did you mean 'onnx'?)", code=2)
    plain = spread_bert(model, tmp_path / "plain")  # a folder without an export
    assert_one_line_error(
        run_cli("eval", str(plain), str(data), "--backend", "onnx-int8"),
        f"{plain}: no ONNX export for --backend onnx-int8", f"write it first: finsent export {plain} --onnx --int8", code=1,
    )  # fmt: skip


def test_help_names_the_graphs_and_the_backends() -> None:
    out = " ".join(run_cli("export", "--help").stdout.split())
    assert "MODEL/onnx/model.onnx" in out and "MODEL/onnx/model.int8.onnx" in out and "--backend onnx-int8" in out
    out = " ".join(run_cli("eval", "--help").stdout.split())
    assert "--backend" in out and "onnx-int8" in out
