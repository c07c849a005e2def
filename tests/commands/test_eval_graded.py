"""`finsent eval --score-column` through the real CLI: graded numbers from the model's own probabilities."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from finsent_cli.core.inference.loading import load_classifier
from tests.classifier_fakes import sharpened_copy
from tests.helpers import assert_one_line_error, run_cli

TEXTS = ["Profits rose sharply", "Shares fell after the warning", "The meeting is on Monday", "Sales grew 5 %"]
LABELS = ["positive", "negative", "neutral", "positive"]
GOLD = [0.8, -0.6, 0.0, 0.4]


@pytest.fixture(scope="module")
def model(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharpened_copy(tiny_bert, tmp_path_factory.mktemp("graded") / "model")


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def expected(model: Path, gold: list[float]) -> dict[str, float]:
    """The graded numbers from first principles: the model's probabilities, p(positive) - p(negative)."""
    probs = load_classifier(model).predict_proba(TEXTS)  # (N, 3) negative, neutral, positive
    pred, g = probs[:, 2].astype(np.float64) - probs[:, 0], np.array(gold)
    dp, dg = pred - pred.mean(), g - g.mean()
    return {
        "cosine": float(pred @ g / math.sqrt((pred @ pred) * (g @ g))),
        "pearson": float(dp @ dg / math.sqrt((dp @ dp) * (dg @ dg))),
        "mse": float(((pred - g) ** 2).mean()),
        "mae": float(np.abs(pred - g).mean()),
    }


def test_labels_and_scores_give_both_reports(model: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "graded.csv", ["text", "label", "score"], [list(r) for r in zip(TEXTS, LABELS, GOLD)])
    res = run_cli(
        "eval",
        str(model),
        str(data),
        "--score-column",
        "score",
        "--output",
        str(tmp_path / "r"),
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.stderr
    want = expected(model, GOLD)
    assert "accuracy" in res.stdout and "per class" in res.stdout
    assert (
        f"cosine {want['cosine']:.4f}  Pearson r {want['pearson']:.4f}  MSE {want['mse']:.4f}  MAE {want['mae']:.4f}"
        in res.stdout
    )
    result = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert result["n"] == 4 and "accuracy" in result
    graded = result["graded"]
    assert graded["score_column"] == "score" and graded["n"] == 4 and graded["notes"] == []
    for key, value in want.items():
        assert graded[key] == pytest.approx(value, abs=1e-6), key
    row = next(csv.DictReader((tmp_path / "r.csv").open()))
    assert float(row["score_cosine"]) == pytest.approx(want["cosine"], abs=1e-6)
    assert float(row["score_pearson"]) == pytest.approx(want["pearson"], abs=1e-6)


def test_scores_alone_give_graded_metrics_only_and_say_so(model: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "scores.csv", ["text", "score"], [list(r) for r in zip(TEXTS, GOLD)])
    res = run_cli(
        "eval", str(model), str(data), "--score-column", "score", "-o", str(tmp_path / "r"), env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.stderr
    assert "no label column 'label' in scores.csv: graded metrics only" in res.stdout
    assert "accuracy" not in res.stdout and "per class" not in res.stdout
    assert f"cosine {expected(model, GOLD)['cosine']:.4f}" in res.stdout
    result = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert "accuracy" not in result and result["notes"] == [
        "no label column 'label' in scores.csv: graded metrics only, no class metrics"
    ]
    row = next(csv.DictReader((tmp_path / "r.csv").open()))
    assert row["accuracy"] == "" and row["n"] == "4" and row["score_mae"] != ""
    # without --score-column the label column is required, as before
    assert_one_line_error(run_cli("eval", str(model), str(data)), "scores.csv: no column 'label'", "set --label-column")


def test_constant_gold_scores_print_n_a_and_write_null(model: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "flat.csv", ["text", "score"], [[t, 0.5] for t in TEXTS])
    res = run_cli(
        "eval", str(model), str(data), "--score-column", "score", "-o", str(tmp_path / "r"), env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.stderr
    assert "Pearson r n/a" in res.stdout and "Pearson's r undefined: every gold score is the same" in res.stdout
    graded = json.loads((tmp_path / "r.json").read_text())["results"][0]["graded"]
    assert graded["pearson"] is None and graded["cosine"] is not None


def test_two_models_compare_graded_metrics(model: Path, tiny_bert: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "scores.csv", ["text", "score"], [list(r) for r in zip(TEXTS, GOLD)])
    res = run_cli("eval", str(model), str(tiny_bert), str(data), "--score-column", "score", env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.stderr
    table = res.stdout[res.stdout.index("models on scores.csv") :]
    for name in ("score cosine", "score Pearson r", "score MSE", "score MAE"):
        assert name in table
    assert "accuracy" not in table
    cosine_row = next(line for line in table.splitlines() if "score cosine" in line)
    want = [f"{expected(m, GOLD)['cosine']:.4f}" for m in (model, tiny_bert)]
    assert all(w in cosine_row for w in want), (cosine_row, want)


@pytest.mark.parametrize(
    ("cell", "needles"),
    [
        ("high", ["bad.csv:3", "score 'high' in column 'score' is not a number"]),
        ("1.2", ["bad.csv:3", "score '1.2' in column 'score' is outside [-1, 1]"]),
        ("", ["bad.csv:3", "empty score in column 'score'"]),
        ("NaN", ["bad.csv:3", "score 'NaN' in column 'score' is not a finite number"]),
        ("inf", ["bad.csv:3", "score 'inf' in column 'score' is not a finite number"]),
    ],
)
def test_a_bad_score_is_one_error_line_and_nothing_written(
    model: Path, tmp_path: Path, cell: str, needles: list[str]
) -> None:
    data = write_csv(
        tmp_path / "bad.csv", ["text", "label", "score"], [[TEXTS[0], "positive", 0.5], [TEXTS[1], "negative", cell]]
    )
    res = run_cli("eval", str(model), str(data), "--score-column", "score", "-o", str(tmp_path / "r"))
    assert_one_line_error(res, *needles)
    assert not list(tmp_path.glob("r.*"))


def test_a_missing_score_column_lists_columns_with_a_guess(model: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", ["text", "label", "Score"], [[TEXTS[0], "positive", 0.5]])
    res = run_cli("eval", str(model), str(data), "--score-column", "score", "-o", str(tmp_path / "r"))
    assert_one_line_error(
        res, "d.csv: no column 'score' for --score-column", "(found: text, label, Score)", "did you mean 'Score'?"
    )
    assert not list(tmp_path.glob("r.*"))
