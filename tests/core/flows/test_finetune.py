"""The fine-tuning flow called directly: run folder contract, refusal of a changed recipe."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe, recipe_to_yaml, write_resolved_recipe
from finsent_cli.core.flows.finetune import run_finetune
from finsent_cli.core.runs import recipe_differences
from finsent_cli.core.training.checkpoint import list_checkpoints
from finsent_cli.errors import FinsentError
from tests.finetune_helpers import load_hf_encoder, micro_recipe


def test_run_folder_follows_the_contract(tmp_path: Path, tiny_bert: Path) -> None:
    cfg = load_recipe(micro_recipe(tmp_path, tiny_bert), FinetuneRecipe, ["model.class_weights=balanced"])
    result = run_finetune(cfg)
    run = tmp_path / "run"
    assert result.stop_reason == "complete" and result.steps == 12
    for name in ("recipe.yaml", "metrics.jsonl", "misclassified_valid.csv", "train_hashes.json", "best/config.json", "last/model.safetensors"):
        assert (run / name).exists(), name
    assert (tmp_path / "latest").resolve() == run.resolve()
    mask = os.umask(0o022)
    os.umask(mask)
    for sub in ("best", "last"):  # the weights as readable as the config: the modes of a plain open()
        assert {(f.stat().st_mode & 0o777) for f in (run / sub).iterdir()} == {0o666 & ~mask}, sub
    meta = json.loads((run / "best" / "finsent.json").read_text())
    assert meta["task"] == "classification" and meta["adapter"] == "none" and meta["max_length"] == 24 and meta["pooling"] == "mean"
    hashes = json.loads((run / "train_hashes.json").read_text())
    assert hashes["algorithm"] == "sha256-normalised" and len(hashes["hashes"]) == 48
    assert [s for s, _ in list_checkpoints(run)] == sorted({result.best_step, 12})

    with (run / "misclassified_valid.csv").open(encoding="utf-8") as fh:
        wrong = list(csv.DictReader(fh))
    assert len(wrong) == result.misclassified == round(24 * (1 - result.final["valid"]["accuracy"]))
    assert wrong and set(wrong[0]) == {"text", "gold", "predicted", "confidence"}
    assert all(r["gold"] != r["predicted"] for r in wrong)

    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "eval"] == [6, 12]
    assert any(e["event"] == "final" and e["split"] == "valid" for e in events)

    # The model folder loads through the Auto classes (the head registers itself) and through our loader.
    from transformers import AutoConfig, AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(run / "best").eval()
    assert AutoConfig.from_pretrained(run / "best").id2label == {0: "negative", 1: "neutral", 2: "positive"}
    same, tok = load_hf_encoder(run / "best")
    batch = tok(["Profit rose 20 %", "Shares fell"], return_tensors="pt", padding=True)
    batch.pop("token_type_ids", None)
    torch.testing.assert_close(model(**batch).logits, same(**batch).logits)


def test_resume_refuses_a_changed_recipe(tmp_path: Path, tiny_bert: Path) -> None:
    path = micro_recipe(tmp_path, tiny_bert)
    old = load_recipe(path, FinetuneRecipe)
    run = tmp_path / "run"
    write_resolved_recipe(old, run)
    (run / "checkpoints" / "step-3").mkdir(parents=True)
    (run / "checkpoints" / "step-3" / "training_state.pt").write_bytes(b"")
    new = load_recipe(path, FinetuneRecipe, ["optim.lr=0.5", "model.pooling=first", "train.epochs=9"])
    assert recipe_differences((run / "recipe.yaml").read_text(), recipe_to_yaml(new)) == ["model.pooling", "optim.lr"]
    with pytest.raises(FinsentError, match=r"model.pooling, optim.lr\).*--fresh"):
        run_finetune(new)


def test_temperature_is_fitted_on_valid_stored_and_applied(tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli.core.eval import metrics
    from finsent_cli.core.eval.metrics import apply_temperature, fit_temperature
    from finsent_cli.core.inference.loading import load_classifier

    # 24 validation headlines are too few for the shipped rule (tests/core/flows/test_finetune_calibration.py):
    # relaxed, the flow's applied path shows
    monkeypatch.setattr(metrics, "CALIBRATION_RULE", metrics.CalibrationRule(min_examples=1, min_z=None))
    result = run_finetune(load_recipe(micro_recipe(tmp_path, tiny_bert), FinetuneRecipe))
    meta = json.loads((tmp_path / "run" / "best" / "finsent.json").read_text())
    assert meta["temperature"] == result.temperature and meta["temperature"] != 1.0
    assert meta["calibration"]["split"] == "valid" and meta["calibration"]["n"] == 24
    assert meta["calibration"]["ece_after"] <= meta["calibration"]["ece_before"] + 1e-9
    assert result.final["valid"]["ece"] == pytest.approx(meta["calibration"]["ece_after"], abs=1e-6)
    assert result.final["valid"]["ece_uncalibrated"] == pytest.approx(meta["calibration"]["ece_before"], abs=1e-6)

    with (tmp_path / "data" / "valid.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    texts = [r["text"] for r in rows]
    clf, raw_clf = load_classifier(tmp_path / "run"), load_classifier(tmp_path / "run", calibrated=False)
    assert clf.temperature == meta["temperature"] and raw_clf.temperature == 1.0
    raw = raw_clf.predict_proba(texts)
    np.testing.assert_allclose(clf.predict_proba(texts), apply_temperature(raw, meta["temperature"]), atol=1e-5)
    gold = np.array([["negative", "neutral", "positive"].index(r["label"]) for r in rows])
    assert fit_temperature(raw, gold) == pytest.approx(meta["temperature"], rel=1e-3)


def test_calibration_none_leaves_the_probabilities_raw(tmp_path: Path, tiny_bert: Path) -> None:
    result = run_finetune(load_recipe(micro_recipe(tmp_path, tiny_bert), FinetuneRecipe, ["calibration=none"]))
    meta = json.loads((tmp_path / "run" / "best" / "finsent.json").read_text())
    assert result.temperature is None and "temperature" not in meta and "ece_uncalibrated" not in result.final["valid"]


def test_several_sources_train_together_and_report_apart(tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli.core.eval import metrics
    from tests.finetune_helpers import micro_data

    monkeypatch.setattr(metrics, "CALIBRATION_RULE", metrics.CalibrationRule(min_examples=1, min_z=None))  # 36 headlines: relaxed

    train, valid = micro_data(tmp_path)
    with valid.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    signed = tmp_path / "data" / "signed.csv"
    with signed.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["headline", "score"])
        writer.writerows([[r["text"], {"negative": -1, "neutral": 0, "positive": 1}[r["label"]]] for r in rows[:12]])
    signed_src = f"{{path: {signed}, name: signed, text_column: headline, label_column: score}}"
    recipe = micro_recipe(tmp_path, tiny_bert).read_text().replace(
        f"data: {{train: {train}, valid: {valid}}}",
        f"data: {{train: [{train}, {signed_src}], valid: [{{path: {valid}, name: news}}, {signed_src}]}}",
    )
    (tmp_path / "multi.yaml").write_text(recipe)
    result = run_finetune(load_recipe(tmp_path / "multi.yaml", FinetuneRecipe))
    assert set(result.final) == {"valid", "valid:news", "valid:signed"}
    n = {"valid": 36, "valid:news": 24, "valid:signed": 12}
    assert all("ece_uncalibrated" in result.final[k] for k in n)
    pooled = (result.final["valid:news"]["accuracy"] * 24 + result.final["valid:signed"]["accuracy"] * 12) / 36
    assert result.final["valid"]["accuracy"] == pytest.approx(pooled)
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {e["split"] for e in events if e["event"] == "final"} == set(n)
    from finsent_cli.core.eval.metrics import classification_metrics
    from finsent_cli.core.inference.loading import load_classifier

    clf = load_classifier(tmp_path / "run")  # the per-source numbers are the model's on each file alone
    for key, path, column, mapping in (("valid:news", valid, "label", None), ("valid:signed", signed, "score", {"-1": 0, "0": 1, "1": 2})):
        with path.open(encoding="utf-8") as fh:
            src = list(csv.DictReader(fh))
        gold = np.array([mapping[r[column]] if mapping else ["negative", "neutral", "positive"].index(r[column]) for r in src])
        texts = [r["text" if column == "label" else "headline"] for r in src]
        assert len(texts) == n[key]
        assert classification_metrics(gold, clf.predict_proba(texts))["accuracy"] == pytest.approx(result.final[key]["accuracy"])
