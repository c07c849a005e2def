"""Calibration at the end of fine-tuning: ``store_temperature``'s record in ``finsent.json`` and the flow's
path when the validation split is too small to trust a temperature (the quickstart's case)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe
from finsent_cli.core.eval.metrics import apply_temperature
from finsent_cli.core.flows.finetune import describe_calibration, run_finetune, store_temperature
from finsent_cli.core.models.hf_encoder.model import FinsentClassifierConfig
from finsent_cli.core.progress import NullReporter
from finsent_cli.core.runs import read_meta
from tests.core.eval.test_calibration import drawn
from tests.finetune_helpers import micro_recipe


def model_folder(path: Path, **meta: object) -> Path:
    """A folder with the two files calibration writes to: ``finsent.json`` and a finsent_classifier ``config.json``."""
    path.mkdir()
    (path / "finsent.json").write_text(json.dumps({"kind": "hf_encoder", "task": "classification", **meta}))
    (path / "config.json").write_text(json.dumps({"model_type": FinsentClassifierConfig.model_type, "logit_temperature": 1.0}))
    return path


def logit_temperature(folder: Path) -> float:
    return json.loads((folder / "config.json").read_text())["logit_temperature"]


def test_an_applied_temperature_is_stored_with_its_record(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "best")
    probs, gold = drawn(1000, 2.5)
    record = store_temperature(folder, probs, gold)
    meta = read_meta(folder)
    assert record["applied"] is True and 2.2 < record["temperature"] < 2.8
    assert meta["temperature"] == record["temperature"] == record["temperature_fitted"] == logit_temperature(folder)
    assert meta["calibration"] == {k: v for k, v in record.items() if k != "temperature"}
    assert meta["calibration"]["ece_after"] < meta["calibration"]["ece_before"]
    assert meta["calibration"]["nll_after"] < meta["calibration"]["nll_before"]
    assert meta["kind"] == "hf_encoder"  # the rest of finsent.json stays
    line = describe_calibration(record)
    assert line.startswith(f"calibration: temperature {record['temperature']:.3f} fitted on valid (1000 examples) and applied: held-out validation NLL")


def test_a_refused_temperature_removes_an_earlier_one_and_says_why(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "best", temperature=0.677, calibration={"n": 36})
    (folder / "config.json").write_text(json.dumps({"model_type": FinsentClassifierConfig.model_type, "logit_temperature": 0.677}))
    probs, gold = drawn(36, 2.5)
    record = store_temperature(folder, probs, gold)
    meta = read_meta(folder)
    assert record["temperature"] is None and record["applied"] is False
    assert "temperature" not in meta and logit_temperature(folder) == 1.0
    assert meta["calibration"]["reason"] == "validation split too small (36 < 50)" and meta["calibration"]["n"] == 36
    assert meta["calibration"]["temperature_fitted"] is not None and meta["calibration"]["ece_after"] is not None
    assert describe_calibration(record).startswith("calibration: raw probabilities kept: validation split too small (36 < 50) (in-sample, temperature")


def test_a_calibrated_split_keeps_raw_probabilities(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "best")
    record = store_temperature(folder, *drawn(1000, 1.0))
    assert record["temperature"] is None and "temperature" not in read_meta(folder)
    assert read_meta(folder)["calibration"]["reason"].startswith("did not improve held-out validation NLL enough")
    assert describe_calibration(record).startswith("calibration: raw probabilities kept: did not improve held-out validation NLL")


def test_a_small_validation_split_leaves_the_run_uncalibrated(tmp_path: Path, tiny_bert: Path) -> None:
    from finsent_cli.core.eval.run import evaluate
    from finsent_cli.core.inference.loading import load_classifier

    reporter = NullReporter()
    result = run_finetune(load_recipe(micro_recipe(tmp_path, tiny_bert), FinetuneRecipe), reporter)
    meta = json.loads((tmp_path / "run" / "best" / "finsent.json").read_text())
    assert "temperature" not in meta and result.temperature is None
    record = meta["calibration"]
    assert record["applied"] is False and record["reason"] == "validation split too small (24 < 50)"
    assert result.calibration == {**record, "temperature": None}
    assert [m for m in reporter.messages if m.startswith("calibration:")] == [describe_calibration(result.calibration)]
    assert "raw probabilities kept: validation split too small (24 < 50)" in describe_calibration(result.calibration)
    valid = result.final["valid"]
    assert "ece_uncalibrated" not in valid and valid["ece"] == pytest.approx(record["ece_before"], abs=1e-6)

    # eval and predict read the folder as raw
    clf = load_classifier(tmp_path / "run")
    assert clf.temperature == 1.0
    report = evaluate([tmp_path / "run"], [tmp_path / "data" / "valid.csv"])
    scores = report.results[0].metrics
    assert scores["temperature"] == 1.0 and scores["ece"] == scores["ece_uncalibrated"]
    assert scores["ece"] == pytest.approx(record["ece_before"], abs=1e-5)
    texts = ["Profit rose 20 %", "Shares fell after the warning"]
    np.testing.assert_allclose(clf.predict_proba(texts), load_classifier(tmp_path / "run", calibrated=False).predict_proba(texts))
    np.testing.assert_allclose(apply_temperature(clf.predict_proba(texts), 1.0), clf.predict_proba(texts), atol=1e-6)
