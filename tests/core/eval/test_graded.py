"""Graded evaluation: the score metrics by hand, gold scores read from every format, and their errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from finsent_cli.core.eval.metrics import cosine_similarity, graded_metrics, pearson_r
from finsent_cli.core.eval.run import CSV_COLUMNS, GRADED_COLUMNS, EvalReport, EvalResult, load_eval_data, write_report
from finsent_cli.core.inference.score import signed_score as signed_scores
from finsent_cli.errors import FinsentError
from tests.core.eval.test_run import make_prepared


def test_signed_score_is_p_positive_minus_p_negative() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
    assert signed_scores(probs).tolist() == pytest.approx([-0.6, 0.5, 0.0])


def test_cosine_by_hand() -> None:
    # dot = 0.5 + 0.5 + 0 = 1; |pred| = sqrt(0.54), |gold| = sqrt(2); 1 / sqrt(1.08) = 0.9622504...
    assert cosine_similarity(np.array([0.5, -0.5, 0.2]), np.array([1.0, -1.0, 0.0])) == pytest.approx(
        1 / math.sqrt(1.08)
    )
    assert cosine_similarity(np.array([0.3, -0.6]), np.array([-0.1, 0.2])) == pytest.approx(-1.0)  # opposite directions
    assert cosine_similarity(np.array([0.3, -0.6]), np.zeros(2)) is None


def test_pearson_by_hand_and_against_scipy() -> None:
    from scipy.stats import pearsonr

    # deviations (-3, -1, 1, 3) and (-3, 1, -1, 3) tenths: sum of products 16, each sum of squares 20: r = 0.8
    pred, gold = np.array([-0.3, -0.1, 0.1, 0.3]), np.array([-0.3, 0.1, -0.1, 0.3])
    assert pearson_r(pred, gold) == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50)
    assert pearson_r(a, b) == pytest.approx(pearsonr(a, b).statistic, abs=1e-12)


def test_a_constant_vector_leaves_pearson_undefined_with_a_note() -> None:
    assert pearson_r(np.array([0.1, 0.5, -0.2]), np.full(3, 0.4)) is None
    assert pearson_r(np.array([0.1]), np.array([0.3])) is None
    gold = graded_metrics(np.full(3, 0.4), np.array([0.1, 0.5, -0.2]))
    assert gold["pearson"] is None and gold["notes"] == ["Pearson's r undefined: every gold score is the same"]
    # cosine is still defined: (0.04 + 0.2 - 0.08) / (sqrt(0.3) * sqrt(0.48))
    assert gold["cosine"] == pytest.approx(0.16 / math.sqrt(0.3 * 0.48))
    pred = graded_metrics(np.array([0.1, 0.5, -0.2]), np.full(3, 0.2))
    assert pred["pearson"] is None and pred["notes"] == ["Pearson's r undefined: every predicted score is the same"]
    zeros = graded_metrics(np.zeros(3), np.array([0.1, 0.5, -0.2]))
    assert zeros["cosine"] is None and zeros["pearson"] is None
    assert zeros["notes"] == [
        "cosine undefined: every gold score is 0",
        "Pearson's r undefined: every gold score is the same",
    ]
    json.dumps(zeros)  # JSON-ready: None, not NaN


def test_graded_metrics_by_hand() -> None:
    gold, pred = np.array([1.0, -1.0, 0.0]), np.array([0.5, -0.5, 0.2])
    m = graded_metrics(gold, pred)
    assert m["n"] == 3 and m["notes"] == []
    assert m["mse"] == pytest.approx((0.25 + 0.25 + 0.04) / 3)
    assert m["mae"] == pytest.approx((0.5 + 0.5 + 0.2) / 3)
    assert m["cosine"] == pytest.approx(1 / math.sqrt(1.08))
    # gold has mean 0, so sum of products = pred . gold = 1; pred's sum of squares about its mean 0.2 / 3 is
    # 0.54 - 0.04 / 3, gold's is 2: r = 1 / sqrt(2 * (0.54 - 0.04 / 3)) = 0.97435...
    assert m["pearson"] == pytest.approx(1 / math.sqrt(2 * (0.54 - 0.04 / 3)))


ROWS = [("Profits rose", "positive", "0.8"), ("Shares fell", "negative", "-0.6"), ("Meeting on Monday", "neutral", "0")]


def write_rows(path: Path, header: list[str], rows: list[tuple], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_scores_read_from_csv_tsv_jsonl_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [
        write_rows(tmp_path / "d.csv", ["text", "label", "score"], ROWS),
        write_rows(tmp_path / "d.tsv", ["text", "label", "score"], ROWS, "\t"),
    ]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": lab, "score": float(s)}) + "\n" for t, lab, s in ROWS))
    files.append(jsonl)
    pq.write_table(
        pa.table({"text": [r[0] for r in ROWS], "label": [r[1] for r in ROWS], "score": [float(r[2]) for r in ROWS]}),
        tmp_path / "d.parquet",
    )
    files.append(tmp_path / "d.parquet")
    for path in files:
        data = load_eval_data(path, score_column="score")
        assert data.texts == [r[0] for r in ROWS], path
        assert data.labels.tolist() == [2, 0, 1] and data.scores.tolist() == [0.8, -0.6, 0.0] and data.notes == []


def test_without_a_label_column_only_scores_and_a_note(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "d.csv", ["text", "sentiment_score"], [(t, s) for t, _, s in ROWS])
    data = load_eval_data(path, score_column="sentiment_score")
    assert data.labels is None and data.scores.tolist() == [0.8, -0.6, 0.0]
    assert data.notes == ["no label column 'label' in d.csv: graded metrics only, no class metrics"]
    typo = write_rows(tmp_path / "t.csv", ["text", "Label", "score"], ROWS)  # a near miss is named
    assert "did you mean 'Label'?" in load_eval_data(typo, score_column="score").notes[0]
    with pytest.raises(
        FinsentError, match=r"d\.csv: no column 'label' \(found: text, sentiment_score\); set --label-column"
    ):
        load_eval_data(path)  # without --score-column a label column is required, as before


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("abc", r"d\.csv:3: score 'abc' in column 'score' is not a number"),
        ("1.5", r"d\.csv:3: score '1.5' in column 'score' is outside \[-1, 1\]"),
        ("-1.01", r"d\.csv:3: score '-1.01' in column 'score' is outside \[-1, 1\]"),
        ("", r"d\.csv:3: empty score in column 'score'"),
        ("  ", r"d\.csv:3: empty score in column 'score'"),
        ("nan", r"d\.csv:3: score 'nan' in column 'score' is not a finite number"),
        ("-inf", r"d\.csv:3: score '-inf' in column 'score' is not a finite number"),
    ],
)
def test_a_bad_score_names_file_line_and_value(tmp_path: Path, cell: str, message: str) -> None:
    path = write_rows(
        tmp_path / "d.csv", ["text", "label", "score"], [ROWS[0], ("Shares fell", "negative", cell), ROWS[2]]
    )
    with pytest.raises(FinsentError, match=message):
        load_eval_data(path, score_column="score")


def test_bad_scores_in_jsonl_and_parquet_name_the_line_or_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a", "score": 0.5}\n\n{"text": "b", "score": true}\n')
    with pytest.raises(FinsentError, match=r"d\.jsonl:3: score True in column 'score' is not a number"):
        load_eval_data(jsonl, score_column="score")
    jsonl.write_text('{"text": "a", "score": 0.5}\n{"text": "b"}\n')
    with pytest.raises(FinsentError, match=r"d\.jsonl:2: empty score in column 'score'"):
        load_eval_data(jsonl, score_column="score")
    pq.write_table(pa.table({"text": ["a", "b"], "score": [0.5, float("nan")]}), tmp_path / "d.parquet")
    with pytest.raises(FinsentError, match=r"d\.parquet:row 2: score nan in column 'score' is not a finite number"):
        load_eval_data(tmp_path / "d.parquet", score_column="score")
    pq.write_table(pa.table({"text": ["a", "b"], "score": [0.5, None]}), tmp_path / "d.parquet")
    with pytest.raises(FinsentError, match=r"d\.parquet:row 2: empty score"):
        load_eval_data(tmp_path / "d.parquet", score_column="score")


def test_a_missing_score_column_lists_the_columns_and_the_closest(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "d.csv", ["text", "label", "gold_score"], ROWS)
    with pytest.raises(
        FinsentError,
        match=r"d\.csv: no column 'score' for --score-column \(found: text, label, gold_score\) \(did you mean 'gold_score'\?\)",
    ):
        load_eval_data(path, score_column="score")
    with pytest.raises(FinsentError, match=r"\(found: text, label, gold_score\)$"):
        load_eval_data(path, score_column="zzz")  # nothing close: no guess


def test_prepared_folder_scores_a_field_it_has_and_names_one_it_lacks(tmp_path: Path) -> None:
    rows = [{"text": t, "label": lab, "score": float(s)} for t, lab, s in ROWS]
    data = load_eval_data(make_prepared(tmp_path / "p", {"test": rows}), score_column="score")
    assert data.scores.tolist() == [0.8, -0.6, 0.0] and data.labels.tolist() == [2, 0, 1]
    plain = make_prepared(tmp_path / "q", {"test": [{"text": t, "label": lab} for t, lab, _ in ROWS]})
    with pytest.raises(
        FinsentError,
        match=r"q/test: no field 'score' for --score-column \(found: text, label\); finsent prep keeps no score",
    ):
        load_eval_data(plain, score_column="score")


def test_report_files_carry_graded_columns_only_when_scored(tmp_path: Path) -> None:
    graded = {
        "n": 2,
        "temperature": 1.0,
        "graded": {"score_column": "s", "n": 2, "cosine": 0.5, "pearson": None, "mse": 0.1, "mae": 0.2, "notes": ["x"]},
    }
    report = EvalReport(["m"], ["d"], [EvalResult("m", "d", graded, None, 0)])
    json_path, csv_path = write_report(report, tmp_path / "r")
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == CSV_COLUMNS + GRADED_COLUMNS
    assert rows[0]["accuracy"] == "" and rows[0]["positive_f1"] == ""
    assert (rows[0]["score_cosine"], rows[0]["score_pearson"], rows[0]["score_mse"]) == ("0.5", "", "0.1")
    assert json.loads(json_path.read_text())["results"][0]["graded"]["pearson"] is None
