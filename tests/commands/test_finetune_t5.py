"""`finsent finetune` with finsent's T5 (kind t5, heads classification and text2text), then eval, predict and
explain on what it wrote; and the recipe mistakes a T5 fine-tune can make, each one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.finetune_helpers import micro_data
from tests.helpers import assert_one_line_error, run_cli

TEXTS = "Profit rose 20 % to EUR 3 mn\nShares fell after the profit warning\n"


def _t5_recipe(tmp_path: Path, backbone: Path | str, head: str, extra_model: str = "") -> Path:
    """A recipe on 32 training / 16 validation headlines with the tiny T5 run as the backbone."""
    train, valid = micro_data(tmp_path, 32, 16)
    recipe = tmp_path / f"{head}.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / head}\n"
        f"model: {{kind: t5, head: {head}, backbone: {backbone}, max_length: 128{extra_model}}}\n"
        f"data: {{train: {train}, valid: {valid}}}\n"
        "optim: {lr: 1.0e-3}\n"
        "train: {epochs: 1, batch_size: 8, eval_every: epoch, log_every: 2}\n",
        encoding="utf-8",
    )
    return recipe


@pytest.mark.parametrize(("head", "kind"), [("classification", "t5_cls"), ("text2text", "t5_text2text")])
def test_finetune_eval_predict_explain(head: str, kind: str, tmp_path: Path, tiny_t5_folder: Path) -> None:
    run = tmp_path / head
    recipe = _t5_recipe(tmp_path, tiny_t5_folder.parent, head)
    res = run_cli("finetune", "-q", str(recipe))
    assert res.exit_code == 0, res.stderr
    res = run_cli("finetune", "-q", str(recipe), "train.epochs=2")  # resumes from the kind's own checkpoint folder
    assert res.exit_code == 0 and "resumed from step-4" in res.stdout, res.stderr
    meta = json.loads((run / "best" / "finsent.json").read_text())
    assert meta["kind"] == kind and meta["base_model"] == "pretrain_tiny" and meta["run"] == head
    assert "kind: t5_" in (run / "recipe.yaml").read_text()

    report = tmp_path / "report"
    res = run_cli("eval", str(run), str(tmp_path / "data" / "valid.csv"), "--output", str(report), "-q")
    assert res.exit_code == 0, res.stderr
    result = json.loads(report.with_suffix(".json").read_text())["results"][0]
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final = next(e for e in events if e["event"] == "final" and e["split"] == "valid")
    # eval reloads the folder and truncates as finsent.json says: the run's own final numbers come back
    assert result["n"] == 16 and result["overlap"] == 0
    assert np.isclose(result["accuracy"], final["accuracy"]) and np.isclose(result["macro_f1"], final["macro_f1"])

    texts = tmp_path / "texts.txt"
    texts.write_text(TEXTS, encoding="utf-8")
    res = run_cli("predict", str(texts), "-m", str(run), "-f", "jsonl")
    assert res.exit_code == 0, res.stderr
    preds = [json.loads(line) for line in res.stdout.splitlines()]
    assert [p["status"] for p in preds] == ["ok", "ok"]
    for p in preds:
        probs = [p["p_negative"], p["p_neutral"], p["p_positive"]]
        assert np.isclose(sum(probs), 1.0, atol=1e-3) and p["label"] in ("negative", "neutral", "positive")

    res = run_cli("explain", "Shares fell after the profit warning", "-m", str(run), "-f", "json")
    assert res.exit_code == 0, res.stderr
    assert [w["word"] for w in json.loads(res.stdout)["words"]] == [
        "Shares",
        "fell",
        "after",
        "the",
        "profit",
        "warning",
    ]


def test_recipe_mistakes_are_one_line(tmp_path: Path, tiny_t5_folder: Path, minilm_path: str) -> None:
    backbone = tiny_t5_folder.parent
    res = run_cli("finetune", str(_t5_recipe(tmp_path, backbone, "classification", ", adapter: lora")))
    assert_one_line_error(res, "model.adapter: 'lora' is not supported with T5 models (only none)", code=2)
    res = run_cli("finetune", str(_t5_recipe(tmp_path, backbone, "regression")))
    assert_one_line_error(res, "model.head: 'regression' is not a T5 head (classification or text2text)", code=2)
    res = run_cli("finetune", str(_t5_recipe(tmp_path, backbone, "text2text")), "model.init=scratch")
    assert_one_line_error(res, "model.init: ", "'pretrained' or 'random'", code=2)
    res = run_cli("finetune", str(_t5_recipe(tmp_path, minilm_path, "classification")))
    assert_one_line_error(res, "model.backbone: ", "is not a T5 folder", "model_type is 'bert'", code=1)
    assert not (tmp_path / "classification").exists()
