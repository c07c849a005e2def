"""`finsent pretrain` with ``objective: mlm``: the masked-only head against transformers' loss, whole-word
masks, resume, fine-tuning from the result, and recipe errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finsent_cli.config.loader import load_recipe
from finsent_cli.config.pretrain import PretrainRecipe
from finsent_cli.core.flows.pretrain import run_pretrain
from finsent_cli.core.flows.pretrain_mlm import MaskedLines, mlm_loss
from finsent_cli.errors import FinsentError, RecipeError
from tests.finetune_helpers import micro_recipe
from tests.helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> Path:
    """A tiny random BertForMaskedLM (2 layers, width 32) with the MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    out = tmp_path_factory.mktemp("tiny_mlm")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
        BertForMaskedLM(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(out)
    return out


def _recipe(tmp_path: Path, backbone: Path, corpus: Path, name: str = "mlm", extra: str = "") -> Path:
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / name}\n"
        "objective: mlm\n"
        f"model: {{kind: hf_encoder, backbone: {backbone}, max_length: 24}}\n"
        f"data: {{corpus: [{corpus}], heldout_blocks: 16, mlm_probability: 0.3}}\n"
        "optim: {lr: 1.0e-3}\n"
        "sched: {name: constant, warmup_steps: 0}\n"
        "train: {max_steps: 6, batch_size: 8, eval_every: 3, save_every: 3, log_every: 1, mixed_precision: 'no'}\n" + extra,
        encoding="utf-8",
    )
    return recipe


def test_the_masked_only_head_matches_transformers_loss_and_gradients(tiny_mlm: Path) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(tiny_mlm).eval()
    collate = MaskedLines(AutoTokenizer.from_pretrained(tiny_mlm), 24, 0.3, True, seed=1)
    batch = collate(["Shares of Nokia fell after a profit warning", "Revenue rose 8%", "The bank kept its dividend unchanged"])
    assert (batch["labels"] != -100).any()
    fast = mlm_loss(model, batch)
    (g_fast,) = torch.autograd.grad(fast, [model.bert.encoder.layer[0].attention.self.query.weight])
    ref = model(**batch).loss
    (g_ref,) = torch.autograd.grad(ref, [model.bert.encoder.layer[0].attention.self.query.weight])
    assert torch.allclose(fast, ref, atol=1e-5)
    assert torch.allclose(g_fast, g_ref, atol=1e-6)


def test_a_batch_with_nothing_masked_is_a_zero_loss_not_nan(tiny_mlm: Path) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(tiny_mlm)
    batch = MaskedLines(AutoTokenizer.from_pretrained(tiny_mlm), 24, 0.3, True, seed=1)(["Oil", "Banks"])
    batch["labels"][:] = -100
    loss = mlm_loss(model, batch)
    loss.backward()
    assert float(loss.detach()) == 0.0 and all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_whole_word_masks_cover_every_piece_of_a_word(tiny_mlm: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_mlm)
    text = "unbelievable profitability skyrocketed " * 4
    batch = MaskedLines(tok, 64, 0.4, True, seed=3)([text])
    pieces = tok.convert_ids_to_tokens(tok(text, truncation=True, max_length=64)["input_ids"])
    chosen = (batch["labels"][0] != -100).tolist()
    assert any(chosen)
    for i, piece in enumerate(pieces):  # a continuation piece is chosen exactly when the piece before it is
        if piece.startswith("##"):
            assert chosen[i] == chosen[i - 1], pieces
    masked = batch["input_ids"][0][batch["labels"][0] != -100]
    assert (masked == tok.mask_token_id).all()  # transformers' whole-word masking uses [MASK] only


def test_mlm_pretraining_writes_masked_lm_folders_that_finetune_takes(tmp_path: Path, tiny_mlm: Path, small_corpus: Path) -> None:
    from transformers import AutoModelForMaskedLM

    result = run_pretrain(load_recipe(_recipe(tmp_path, tiny_mlm, small_corpus), PretrainRecipe))
    assert result.stop_reason == "complete" and result.steps == 6 and result.best_heldout_loss is not None
    events = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [3, 6] and all(0 < e["heldout_loss"] < 15 for e in evals)
    assert evals[1]["heldout_loss"] < evals[0]["heldout_loss"]  # lr 1e-3 on a 14-word corpus: it learns
    meta = json.loads((result.best_dir / "finsent.json").read_text())
    assert meta["task"] == "pretrain" and meta["objective"] == "mlm" and meta["kind"] == "hf_encoder"
    assert AutoModelForMaskedLM.from_pretrained(result.best_dir) is not None
    data = json.loads((result.run_dir / "data.json").read_text())
    assert data["train_lines"] == 3000 and data["heldout_lines"] == 16

    # the run folder is a backbone: its encoder weights, not fresh ones, start the classifier
    ft = micro_recipe(tmp_path, result.run_dir, "ft")
    from finsent_cli.config.finetune import FinetuneRecipe
    from finsent_cli.core.models.registry import get_kind

    cfg = load_recipe(ft, FinetuneRecipe)
    model, _ = get_kind("hf_encoder").build(cfg.model)
    pretrained = load_file(result.best_dir / "model.safetensors")
    key = "encoder.layer.1.output.dense.weight"
    assert torch.equal(model.backbone.state_dict()[key], pretrained[f"bert.{key}"])


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path: Path, tiny_mlm: Path, small_corpus: Path) -> None:
    whole = run_pretrain(load_recipe(_recipe(tmp_path, tiny_mlm, small_corpus, "whole"), PretrainRecipe))
    part = load_recipe(_recipe(tmp_path, tiny_mlm, small_corpus, "part"), PretrainRecipe, ["train.max_steps=3"])
    run_pretrain(part)
    resumed = run_pretrain(load_recipe(_recipe(tmp_path, tiny_mlm, small_corpus, "part"), PretrainRecipe))
    assert resumed.resumed_from is not None and resumed.steps == 6
    a, b = load_file(whole.last_dir / "model.safetensors"), load_file(resumed.last_dir / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # same masks, same batches, same steps


def test_a_changed_corpus_is_refused_on_resume(tmp_path: Path, tiny_mlm: Path, small_corpus: Path) -> None:
    corpus = tmp_path / "c.txt"
    lines = (small_corpus / "train.txt").read_text().splitlines()
    corpus.write_text("\n".join(lines[:300]) + "\n")
    recipe = _recipe(tmp_path, tiny_mlm, corpus)
    run_pretrain(load_recipe(recipe, PretrainRecipe, ["train.max_steps=3"]))
    corpus.write_text("\n".join(lines[:301]) + "\n")
    with pytest.raises(FinsentError, match=r"data.corpus: the data changed since the run started \(train_lines"):
        run_pretrain(load_recipe(recipe, PretrainRecipe))


def test_recipe_errors_name_the_key(tmp_path: Path, tiny_mlm: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    recipe = _recipe(tmp_path, tiny_mlm, small_corpus)
    cases = {
        "objective=span_corruption": "objective: span_corruption pretrains model.kind t5, and this model is kind hf_encoder (mlm)",
        "data.noise_density=0.2": "data.noise_density: a setting of the span_corruption objective; this recipe pretrains with mlm",
        f"data.tokenizer={small_tokenizer}": "data.tokenizer: a setting of the span_corruption objective",
        "data.mlm_probabilty=0.2": "data.mlm_probabilty: unknown key (from a command-line override) (did you mean 'mlm_probability'?)",
        "model.kind=bert": "model.kind: unknown model kind 'bert'",
    }
    for override, message in cases.items():
        with pytest.raises(RecipeError) as err:
            load_recipe(recipe, PretrainRecipe, [override])
        assert any(message in p for p in err.value.problems), (override, err.value.problems)
    # `objective: mlm` alone picks the encoder schema, and the recorded recipe says both
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"output_dir: {tmp_path / 'p'}\nobjective: mlm\nmodel: {{backbone: {tiny_mlm}}}\ndata: {{corpus: [{small_corpus}]}}\n")
    cfg = load_recipe(plain, PretrainRecipe)
    assert cfg.model.kind == "hf_encoder" and cfg.objective == "mlm"
    with pytest.raises(RecipeError, match=r"data.heldout.0: path not found"):
        load_recipe(recipe, PretrainRecipe, [f"data.heldout=[{tmp_path / 'nope.txt'}]"])
    with pytest.raises(FinsentError, match="data.heldout: .* is not a file"):
        run_pretrain(load_recipe(recipe, PretrainRecipe, [f"data.heldout=[{small_corpus}]"]))
    t5 = tmp_path / "t5.yaml"
    t5.write_text(f"output_dir: {tmp_path / 't5'}\nmodel: {{size: t5_tiny}}\ndata: {{corpus: [{small_corpus}]}}\n")
    with pytest.raises(RecipeError, match="data.tokenizer: span corruption needs a finsent tokenizer"):
        load_recipe(t5, PretrainRecipe)
    with pytest.raises(RecipeError, match="data.whole_word_mask: a setting of the mlm objective"):
        load_recipe(t5, PretrainRecipe, [f"data.tokenizer={small_tokenizer}", "data.whole_word_mask=false"])


def test_a_backbone_without_a_mask_token_or_folder_is_one_line(tmp_path: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    res = run_cli("pretrain", str(_recipe(tmp_path, tmp_path / "missing", small_corpus)), "-q")
    assert_one_line_error(res, "model.backbone", "not found")


def test_a_t5_run_recorded_before_objectives_resumes(tmp_path: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    """A recipe.yaml written before `objective` and `model.kind` existed compares equal after upgrading."""
    import yaml

    from finsent_cli.config.loader import recipe_to_yaml, upgraded_recipe
    from finsent_cli.core.runs import recipe_differences
    from tests.pretrain_helpers import pretrain_recipe

    cfg = load_recipe(pretrain_recipe(tmp_path, small_corpus, small_tokenizer), PretrainRecipe)
    old = yaml.safe_load(recipe_to_yaml(cfg))
    del old["objective"], old["model"]["kind"], old["data"]["mlm_probability"], old["data"]["whole_word_mask"]
    old_text = yaml.safe_dump(old, sort_keys=False)
    assert recipe_differences(old_text, recipe_to_yaml(cfg))  # as written, the new keys differ
    assert recipe_differences(upgraded_recipe(old_text, PretrainRecipe), recipe_to_yaml(cfg)) == []
