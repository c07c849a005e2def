"""finsent's model folders load in the Hugging Face ecosystem as FinBERT's do: ``transformers.pipeline`` and
``AutoModelForSequenceClassification`` on a saved folder, with finsent imported (its classes registered by
``import finsent_cli``) and without finsent installed (``trust_remote_code=True`` runs the folder's
``modeling_finsent.py``), each giving the labels and the calibrated probabilities that ``finsent predict`` gives.

The transformers runs happen in fresh interpreters: what matters is what a new user's process imports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from finsent_cli.config.models import HFEncoderCfg
from finsent_cli.core.flows.finetune import store_temperature
from finsent_cli.core.flows.merge import merge_adapter
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.models.hf_encoder.model import AUTO_MAP, MODELING_FILE
from finsent_cli.core.models.registry import get_kind
from finsent_cli.core.runs import read_meta
from finsent_cli.labels import LABELS
from tests.helpers import HANG_GUARD_S, run_cli

TEXTS = ["Profit rose 20 % to EUR 3 mn", "Sales fell after the profit warning", "The company is based in Helsinki"]
OVERCONFIDENT = np.array([[0.9, 0.05, 0.05]] * 100 + [[0.05, 0.9, 0.05]] * 100)  # (200, 3), right 140 times of 200
GOLD = np.array([0] * 70 + [1] * 30 + [1] * 70 + [2] * 30)  # enough examples for a temperature to be kept

NO_FINSENT = """
import sys

class NoFinsent:  # finsent is installed editable here: hide it, as on a machine without it
    def find_spec(self, name, path, target=None):
        if name == "finsent_cli" or name.startswith("finsent_cli."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoFinsent())
"""

PIPELINE = """
import json, sys
from transformers import pipeline
folder, texts = sys.argv[1], json.loads(sys.argv[2])
pipe = pipeline("text-classification", model=folder, top_k=None, **json.loads(sys.argv[3]))
rows = [{d["label"]: d["score"] for d in row} for row in pipe(texts)]
report = {"rows": rows, "model": type(pipe.model).__module__, "finsent": "finsent_cli" in sys.modules}
"""


def _python(code: str, *args: str, cwd: Path) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (offline, in ``cwd``); it leaves its answer in ``report``."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_MODULES_CACHE": str(cwd / "hf_modules"),
    }
    code += "\nimport json as _json\nprint(_json.dumps(report))\n"
    res = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _in_finsent_order(rows: list[dict[str, float]]) -> np.ndarray:
    return np.array([[row[label] for label in LABELS] for row in rows])  # (N, 3)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A full hf_encoder model folder saved as finetune saves it, with a fitted temperature (not 1)."""
    kind = get_kind("hf_encoder")
    cfg = HFEncoderCfg(backbone=str(tiny_bert), max_length=32)
    model, tokenizer = kind.build(cfg)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.classifier.weight, std=3.0)  # decisive logits, so the temperature shows
    folder = tmp_path_factory.mktemp("calibrated") / "best"
    kind.save(model.eval(), tokenizer, folder, kind.meta(cfg))
    assert store_temperature(folder, OVERCONFIDENT, GOLD)["applied"]
    return folder


@pytest.fixture(scope="module")
def finsent_probs(calibrated: Path) -> np.ndarray:
    return load_classifier(calibrated).predict(TEXTS)[0]


def test_the_folder_carries_its_code_auto_map_and_temperature(calibrated: Path) -> None:
    from transformers.dynamic_module_utils import get_imports

    config = json.loads((calibrated / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP
    assert config["logit_temperature"] == read_meta(calibrated)["temperature"] != 1.0
    # what transformers' remote-code check will ask for (it skips imports inside try: finsent's fusion module)
    assert set(get_imports(calibrated / MODELING_FILE)) <= {"__future__", "typing", "torch", "transformers"}


def test_finsent_applies_its_temperature_once(calibrated: Path, finsent_probs: np.ndarray) -> None:
    clf = load_classifier(calibrated, calibrated=False)
    assert clf.model.config.logit_temperature == 1.0  # finsent's network gives raw logits
    ids = clf.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = clf.model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
    np.testing.assert_allclose(clf.predict(TEXTS)[0], torch.softmax(logits, -1).numpy(), atol=1e-6)
    temperature = read_meta(calibrated)["temperature"]
    np.testing.assert_allclose(finsent_probs, torch.softmax(logits / temperature, -1).numpy(), atol=1e-6)
    assert np.abs(finsent_probs - clf.predict(TEXTS)[0]).max() > 1e-3


def test_pipeline_after_import_finsent_cli_gives_finsent_predictions(
    calibrated: Path, finsent_probs: np.ndarray, tmp_path: Path
) -> None:
    report = _python("import finsent_cli\n" + PIPELINE, str(calibrated), json.dumps(TEXTS), "{}", cwd=tmp_path)
    assert report["model"] == "finsent_cli.core.models.hf_encoder.modeling_finsent"  # registered, not remote code
    np.testing.assert_allclose(_in_finsent_order(report["rows"]), finsent_probs, atol=1e-5)


def test_pipeline_without_finsent_runs_the_folder_code(
    calibrated: Path, finsent_probs: np.ndarray, tmp_path: Path
) -> None:
    fusion = """
config = type(pipe.model.config)(backbone_config=pipe.model.config.backbone_config.to_dict(), fusion={"kind": "mamba"})
try:
    type(pipe.model)(config)
except ImportError as exc:
    report["fusion_error"] = str(exc)
"""
    trust = json.dumps({"trust_remote_code": True})
    report = _python(NO_FINSENT + PIPELINE + fusion, str(calibrated), json.dumps(TEXTS), trust, cwd=tmp_path)
    assert not report["finsent"]
    assert report["model"].startswith("transformers_modules.") and report["model"].endswith(".modeling_finsent")
    np.testing.assert_allclose(_in_finsent_order(report["rows"]), finsent_probs, atol=1e-5)
    assert "'mamba' fusion adapter" in report["fusion_error"] and "pip install finsent" in report["fusion_error"]


def test_auto_model_after_import_finsent_cli(calibrated: Path, finsent_probs: np.ndarray, tmp_path: Path) -> None:
    code = """
import json, sys
import finsent_cli
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
with torch.no_grad():
    logits = model(**tokenizer(json.loads(sys.argv[2]), padding=True, return_tensors="pt")).logits
report = {"probs": torch.softmax(logits, -1).tolist(), "labels": model.config.id2label}
"""
    report = _python(code, str(calibrated), json.dumps(TEXTS), cwd=tmp_path)
    assert list(report["labels"].values()) == list(LABELS)
    np.testing.assert_allclose(np.array(report["probs"]), finsent_probs, atol=1e-5)


def test_finsent_predict_cli_gives_the_same_probabilities(
    calibrated: Path, finsent_probs: np.ndarray, tmp_path: Path
) -> None:
    inputs = tmp_path / "headlines.txt"
    inputs.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    res = run_cli("predict", str(inputs), "--model", str(calibrated), "--format", "jsonl", "-q")
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    probs = np.array([[row[f"p_{label}"] for label in LABELS] for row in rows])
    np.testing.assert_allclose(probs, finsent_probs, atol=1e-5)
    assert [row["label"] for row in rows] == [LABELS[i] for i in finsent_probs.argmax(axis=1)]


def test_import_finsent_cli_registers_when_the_auto_classes_are_imported(tmp_path: Path) -> None:
    code = """
import sys
hooked = lambda: [type(f).__name__ for f in sys.meta_path if type(f).__name__ == "_RegisterWithAutoClasses"]
import finsent_cli
report = {"heavy": sorted({"torch", "transformers", "numpy"} & set(sys.modules)), "hooked": hooked()}
import transformers
report["hooked_after_import_transformers"] = hooked()
from transformers import AutoConfig, AutoModelForSequenceClassification
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
config = CONFIG_MAPPING["finsent_classifier"]
model = AutoModelForSequenceClassification._model_mapping[config]
report.update(config=f"{config.__module__}.{config.__name__}", model=model.__name__, hooked_at_end=hooked())
"""
    report = _python(code, cwd=tmp_path)
    assert report["heavy"] == [] and report["hooked"] == ["_RegisterWithAutoClasses"]
    assert report["hooked_after_import_transformers"] == ["_RegisterWithAutoClasses"]  # bare transformers: nothing yet
    assert report["config"] == "finsent_cli.core.models.hf_encoder.modeling_finsent.FinsentClassifierConfig"
    assert report["model"] == "FinsentClassifier" and report["hooked_at_end"] == []


def test_import_finsent_cli_after_transformers_registers_at_once(tmp_path: Path) -> None:
    code = """
import sys
from transformers import pipeline
import finsent_cli
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
report = {"registered": "finsent_classifier" in CONFIG_MAPPING,
          "hooked": [f for f in sys.meta_path if type(f).__name__ == "_RegisterWithAutoClasses"] != []}
"""
    assert _python(code, cwd=tmp_path) == {"registered": True, "hooked": False}


def test_a_folder_from_before_auto_map_still_loads(calibrated: Path, finsent_probs: np.ndarray, tmp_path: Path) -> None:
    old = shutil.copytree(calibrated, tmp_path / "old")
    config = json.loads((old / "config.json").read_text())
    for key in ("auto_map", "logit_temperature"):
        del config[key]
    (old / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (old / MODELING_FILE).unlink()
    np.testing.assert_allclose(load_classifier(old).predict(TEXTS)[0], finsent_probs, atol=1e-6)


def test_no_fitted_temperature_resets_the_config_to_raw(calibrated: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(calibrated, tmp_path / "copy")
    assert store_temperature(folder, np.zeros((0, 3)), np.zeros(0, dtype=int))["temperature"] is None  # nothing to fit
    assert "temperature" not in read_meta(folder)
    assert json.loads((folder / "config.json").read_text())["logit_temperature"] == 1.0


def test_merge_writes_code_and_temperature(tiny_bert: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    kind = get_kind("hf_encoder")
    cfg = HFEncoderCfg(backbone=str(tiny_bert), max_length=32, adapter={"kind": "lora", "r": 2})
    model, tokenizer = kind.build(cfg)
    adapter = tmp_path / "run" / "best"
    kind.save(model.eval(), tokenizer, adapter, kind.meta(cfg))
    assert not (adapter / "config.json").exists() and not (adapter / MODELING_FILE).exists()
    temperature = store_temperature(adapter, OVERCONFIDENT, GOLD)["temperature"]
    merged = merge_adapter(adapter, tmp_path / "merged")
    config = json.loads((merged / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and config["logit_temperature"] == temperature
    assert (merged / MODELING_FILE).is_file()
    clf = load_classifier(merged)
    ids = clf.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = AutoModelForSequenceClassification.from_pretrained(merged)(**ids).logits
    np.testing.assert_allclose(clf.predict(TEXTS)[0], torch.softmax(logits, -1).numpy(), atol=1e-5)
