"""Sentiment toward a named company: training on (target, text) pairs, and predict / eval / explain with targets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe
from finsent_cli.core.flows.finetune import run_finetune
from finsent_cli.core.inference.loading import load_classifier
from tests.finetune_helpers import micro_recipe
from tests.helpers import assert_one_line_error, run_cli

# One headline, two companies, opposite sentiment: only the target tells the rows apart.
PAIRS = [
    ("{a} wins contract from {b} after {b} drops its supplier", "{a}", "positive"),
    ("{a} wins contract from {b} after {b} drops its supplier", "{b}", "negative"),
    ("{a} sues {b} over unpaid royalties", "{a}", "neutral"),
    ("{a} sues {b} over unpaid royalties", "{b}", "negative"),
    ("{a} and {b} report results on Monday", "{a}", "neutral"),
    ("{a} shares jump as {b} stake sale ends", "{a}", "positive"),
]
NAMES = [("Acme", "Borg"), ("Nokia", "Ericsson"), ("Volvo", "Scania"), ("Kone", "Wartsila"), ("Fortum", "Neste"), ("Elisa", "Telia")]


def _write(path: Path, names: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label", "target"])
        for a, b in names:
            for text, target, label in PAIRS:
                writer.writerow([text.format(a=a, b=b), label, target.format(a=a, b=b)])
    return path


@pytest.fixture(scope="module")
def target_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("targets")
    train, valid = _write(tmp / "train.csv", NAMES * 2), _write(tmp / "valid.csv", NAMES[:3])
    recipe = micro_recipe(tmp, tiny_bert).read_text().replace(
        f"data: {{train: {tmp / 'data' / 'train.csv'}, valid: {tmp / 'data' / 'valid.csv'}}}",
        f"data: {{train: {train}, valid: {valid}, target_column: target}}",
    )
    (tmp / "t.yaml").write_text(recipe.replace("epochs: 2", "epochs: 6"))
    run_finetune(load_recipe(tmp / "t.yaml", FinetuneRecipe))
    return tmp / "run"


def test_a_target_model_reads_pairs_and_records_it(target_run: Path) -> None:
    assert json.loads((target_run / "best" / "finsent.json").read_text())["targets"] is True
    clf = load_classifier(target_run)
    text = "Acme wins contract from Borg after Borg drops its supplier"
    ids, _ = clf.encode([text], ["Acme"])
    assert clf.tokenizer.decode(ids[0]).startswith("[CLS] acme [SEP] acme wins")
    by_target = clf.predict_proba([text, text], targets=["Acme", "Borg"])
    assert by_target[0].tolist() != by_target[1].tolist()  # the target changes the answer


def test_predict_with_one_target_or_a_target_column(target_run: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in.csv"
    with inputs.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "company"])
        writer.writerows([["Acme wins contract from Borg", "Acme"], ["Acme wins contract from Borg", "Borg"], ["Acme sues Borg", ""]])
    res = run_cli("predict", str(inputs), "--model", str(target_run), "--target-column", "company", "-q")
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert list(rows[0]) == ["line", "text", "target", "label", "confidence", "p_negative", "p_neutral", "p_positive", "score", "status"]
    assert [r["target"] for r in rows] == ["Acme", "Borg", ""] and rows[2]["status"] == "no_target" and rows[2]["score"] == ""
    want = load_classifier(target_run).predict_scores(["Acme wins contract from Borg"] * 2, targets=["Acme", "Borg"])
    assert [float(r["score"]) for r in rows[:2]] == pytest.approx(want.tolist(), abs=2e-6)  # the score toward each target
    assert all(float(r["score"]) == round(float(r["p_positive"]) - float(r["p_negative"]), 6) for r in rows[:2])
    txt = tmp_path / "in.txt"
    txt.write_text("Acme wins contract from Borg\nBorg drops Acme\n")
    res = run_cli("predict", str(txt), "--model", str(target_run), "--target", "Borg", "--format", "jsonl", "-q")
    assert res.exit_code == 0, res.stderr
    assert [json.loads(line)["target"] for line in res.stdout.splitlines()] == ["Borg", "Borg"]


def test_target_mistakes_are_one_line(target_run: Path, tiny_bert: Path, tmp_path: Path) -> None:
    txt = tmp_path / "in.txt"
    txt.write_text("Acme wins contract from Borg\n")
    assert_one_line_error(run_cli("predict", str(txt), "--model", str(target_run)), "target-conditioned model", "--target NAME")
    assert_one_line_error(run_cli("explain", "Acme wins", "--model", str(target_run)), "target-conditioned model")
    assert_one_line_error(run_cli("predict", str(txt), "--model", str(target_run), "--target-column", "c"), "--target-column needs a CSV")
    assert_one_line_error(run_cli("predict", str(txt), "--model", str(target_run), "--target", "A", "--target-column", "c"), "not both")
    sentence_run = tmp_path / "sentence"
    run_finetune(load_recipe(micro_recipe(tmp_path, tiny_bert, name="sentence"), FinetuneRecipe))
    assert_one_line_error(run_cli("predict", str(txt), "--model", str(sentence_run), "--target", "Acme"), "sentence-level model")
    assert_one_line_error(run_cli("explain", "Acme wins", "--model", str(sentence_run), "--target", "Acme"), "sentence-level model")


def test_eval_reads_the_target_column(target_run: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "test.csv", NAMES[3:])
    res = run_cli("eval", str(target_run), str(data), "--target-column", "target", "-o", str(tmp_path / "rep"), "-q")
    assert res.exit_code == 0, res.stderr
    report = json.loads((tmp_path / "rep.json").read_text())
    assert report["results"][0]["n"] == 18
    assert_one_line_error(run_cli("eval", str(target_run), str(data)), "target-conditioned model")
    assert_one_line_error(run_cli("eval", str(target_run), str(data), "--target-column", "firm"), "firm")


def test_explain_scores_the_words_of_the_text_toward_the_target(target_run: Path) -> None:
    res = run_cli("explain", "Acme wins contract from Borg", "--model", str(target_run), "--target", "Borg", "--format", "json")
    assert res.exit_code == 0, res.stderr
    exp = json.loads(res.stdout)
    assert exp["target"] == "Borg" and [w["word"] for w in exp["words"]] == ["Acme", "wins", "contract", "from", "Borg"]


def test_a_text_to_text_t5_refuses_targets(tmp_path: Path, tiny_bert: Path) -> None:
    train = _write(tmp_path / "train.csv", NAMES)
    (tmp_path / "r.yaml").write_text(
        f"output_dir: {tmp_path / 'run'}\nmodel: {{kind: t5_text2text, backbone: {tmp_path}}}\n"
        f"data: {{train: {train}, valid: {train}, target_column: target}}\n"
    )
    res = run_cli("finetune", str(tmp_path / "r.yaml"))
    assert_one_line_error(res, "data.target_column", "t5_text2text")
