"""The adapter registry, the ``model.adapter`` schema (and its older spellings), parameter reports."""

from __future__ import annotations

import importlib
from pathlib import Path

import pydantic
import pytest
import torch

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe, recipe_to_yaml
from finsent_cli.config.models import ADAPTER_SCHEMAS, HFEncoderCfg
from finsent_cli.core.models.adapters import ADAPTERS, get_adapter, parameter_report
from finsent_cli.core.runs import recipe_differences
from finsent_cli.errors import FinsentError, RecipeError
from tests.finetune_helpers import micro_recipe


def test_every_adapter_kind_has_a_schema_and_a_module() -> None:
    assert set(ADAPTERS) == set(ADAPTER_SCHEMAS)
    for name, module in ADAPTERS.items():
        assert importlib.import_module(module).ADAPTER.name == name


def test_unknown_adapter_kind_suggests_the_closest() -> None:
    with pytest.raises(FinsentError, match="unknown adapter kind 'qlorra' \\(did you mean 'qlora'\\?\\)"):
        get_adapter("qlorra")


def test_the_older_lora_spelling_still_validates() -> None:
    old = HFEncoderCfg.model_validate({"backbone": "minilm", "adapter": "lora", "lora": {"r": 4, "target_modules": ["query"]}})
    assert old.adapter.kind == "lora" and old.adapter.r == 4 and old.adapter.target_modules == ["query"]
    none = HFEncoderCfg.model_validate({"backbone": "minilm", "adapter": "none", "lora": {"r": 8}})  # dumped by 0.1
    assert none.adapter.kind == "none"
    assert HFEncoderCfg.model_validate({"backbone": "minilm"}).adapter.kind == "none"
    with pytest.raises(pydantic.ValidationError, match="moved into model.adapter"):
        HFEncoderCfg.model_validate({"backbone": "minilm", "adapter": {"kind": "lora"}, "lora": {"r": 4}})


def test_adapter_keys_are_checked_with_did_you_mean(tmp_path: Path, tiny_bert: Path) -> None:
    recipe = micro_recipe(tmp_path, tiny_bert)
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe, FinetuneRecipe, ["model.adapter.kind=mamba", "model.adapter.num_layer=3", "model.adapter.scan=cl"])
    text = "\n".join(err.value.problems)
    assert "model.adapter.num_layer: unknown key" in text and "did you mean 'num_layers'" in text
    assert "model.adapter.scan" in text and "'tokens' or 'cls'" in text
    with pytest.raises(RecipeError, match="model.adapter.kind: unknown adapter kind 'gambaa'.*did you mean 'gamba'"):
        load_recipe(recipe, FinetuneRecipe, ["model.adapter.kind=gambaa"])


def test_a_run_started_with_the_older_spelling_resumes(tmp_path: Path, tiny_bert: Path) -> None:
    from finsent_cli.config.loader import upgraded_recipe

    recipe = micro_recipe(tmp_path, tiny_bert)
    old = recipe_to_yaml(load_recipe(recipe, FinetuneRecipe, ["model.adapter=lora", "model.lora.r=4"]))
    old = old.replace("  adapter:\n    kind: lora\n    r: 4\n", "  adapter: lora\n  lora:\n    r: 4\n")
    assert "adapter: lora" in old  # what a 0.1 run folder recorded
    new = recipe_to_yaml(load_recipe(recipe, FinetuneRecipe, ["model.adapter.kind=lora", "model.adapter.r=4"]))
    assert recipe_differences(old, new)  # compared as written, the keys moved
    assert recipe_differences(upgraded_recipe(old, FinetuneRecipe), new) == []
    changed = recipe_to_yaml(load_recipe(recipe, FinetuneRecipe, ["model.adapter.kind=lora", "model.adapter.r=8"]))
    assert recipe_differences(upgraded_recipe(old, FinetuneRecipe), changed) == ["model.adapter.r"]


def test_parameter_report_counts_trainable_and_frozen_base() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.Linear(10, 3))
    model[0].requires_grad_(False)
    report = parameter_report(model)
    assert report == {"trainable": 33, "total": 143, "base_bytes": 440, "base_fp32_bytes": 440}


def test_parameter_report_counts_4bit_weights_unpacked(tiny_bert: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from finsent_cli.config.models import QLoraCfg
    from finsent_cli.core.models.hf_encoder.model import new_classifier

    adapter = get_adapter("qlora")
    cfg = QLoraCfg(r=2)
    full = new_classifier(str(tiny_bert))
    quantised = adapter.attach(new_classifier(str(tiny_bert), **adapter.base_options(cfg)), cfg)
    a, b = parameter_report(full), parameter_report(quantised)
    lora = 2 * 2 * (32 + 32) * 2  # r=2 A and B on query and value, 2 layers
    assert b["trainable"] == lora + 32 * 3 + 3  # + the full-precision head
    assert b["total"] == a["total"] + lora + 32 * 3 + 3  # peft keeps a copy of the head beside its trained one
    assert b["base_bytes"] < b["base_fp32_bytes"]


def test_a_4bit_base_keeps_its_gradients_after_an_evaluation_pass(tiny_bert: Path) -> None:
    """bitsandbytes repacks 4-bit weights for AVX512-BF16 in eval mode, and the packed matmul has no
    gradient (and fails on layers narrower than a quantisation block). The flag is forced on here, as on
    such a CPU, so the test fails wherever the adapter leaves the repacking on."""
    pytest.importorskip("bitsandbytes")
    from finsent_cli.config.models import QLoraCfg
    from finsent_cli.core.models.hf_encoder.model import new_classifier

    adapter = get_adapter("qlora")
    cfg = QLoraCfg(r=2)
    base = new_classifier(str(tiny_bert), **adapter.base_options(cfg))
    flagged = [m for m in base.modules() if hasattr(m, "support_avx512bf16_for_cpu")]
    assert len(flagged) == 12
    for module in flagged:
        module.support_avx512bf16_for_cpu = True
    model = adapter.attach(base, cfg)
    assert not any(m.support_avx512bf16_for_cpu for m in flagged)
    ids = torch.tensor([[101, 2000, 2001, 102], [101, 2002, 102, 0]])
    mask = (ids != 0).long()
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    model.train()
    model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 2])).loss.backward()
    # B starts at zero (so A has no gradient yet); layer 0's B gets one only through layer 1's 4-bit weights.
    first = [p for n, p in model.named_parameters() if "layer.0." in n and "lora_B" in n]
    assert first and all(p.grad is not None and p.grad.abs().sum() > 0 for p in first)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, before)
