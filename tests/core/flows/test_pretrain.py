"""The pretraining flow in-process: span batches, held-out loss, T5 folders, exact resume, Adafactor, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from finsent_cli.core.data.packing import PackedBlocks
from finsent_cli.core.data.spans import SpanCorruption
from finsent_cli.core.flows.pretrain import SpanBatches, run_pretrain
from finsent_cli.errors import FinsentError
from tests.pretrain_helpers import load_pretrain, pretrain_recipe


def _events(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def test_span_batches_are_fixed_length_and_fresh_each_epoch() -> None:
    stream = np.arange(1000, dtype=np.uint16) % 90 + 3
    blocks = PackedBlocks([stream, stream[:400]], 34, ["a", "b"])  # 34 raw tokens corrupt to 32
    assert len(blocks) == 29 + 11
    i, block = blocks[30]
    assert i == 30 and np.array_equal(block, stream[: 11 * 34].reshape(11, 34)[1])
    corruption = SpanCorruption(32, np.arange(499, 399, -1), 1, seed=5)
    batches = SpanBatches(corruption)
    items = [blocks[i] for i in (0, 5, 30)]
    first = batches(items)
    assert first["input_ids"].shape == (3, 32) and first["labels"].shape == (3, corruption.lengths[1])
    assert torch.equal(batches(items)["input_ids"], first["input_ids"])  # same (seed, epoch, block): same mask
    batches.set_epoch(1)
    assert not torch.equal(batches(items)["input_ids"], first["input_ids"])  # a fresh mask each epoch
    with pytest.raises(IndexError):
        blocks[40]


def test_micro_run_writes_t5_folders_that_transformers_loads(
    tmp_path: Path, small_corpus: Path, small_tokenizer: Path
) -> None:
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    cfg = load_pretrain(pretrain_recipe(tmp_path, small_corpus, small_tokenizer), "train.max_steps=12")
    result = run_pretrain(cfg)
    assert result.steps == 12 and result.stop_reason == "complete" and result.main
    run = tmp_path / "run"
    train = _events(run, "train")
    assert len(train) == 12
    assert all(e["nonpad_fraction"] == 1.0 and e["tokens_per_s"] > 0 and e["grad_norm"] > 0 for e in train)
    evals = _events(run, "eval")
    assert [e["step"] for e in evals] == [3, 6, 9, 12]
    assert evals[-1]["heldout_loss"] < evals[0]["heldout_loss"] < np.log(512)  # learning, from below uniform
    assert result.best_heldout_loss == min(e["heldout_loss"] for e in evals)
    data = json.loads((run / "data.json").read_text())
    assert data["input_length"] == 32 and data["target_length"] == 8 and data["raw_block_length"] == 34
    assert result.tokens_per_step == (32 + 8) * 4

    for sub in ("best", "last"):
        hf = T5ForConditionalGeneration.from_pretrained(run / sub).eval()
        tok = AutoTokenizer.from_pretrained(run / sub)
        meta = json.loads((run / sub / "finsent.json").read_text())
        assert meta["task"] == "pretrain" and meta["size"] == "t5_tiny"
        ids = tok(["profit <extra_id_0> rose"], return_tensors="pt")
        labels = tok(["<extra_id_0> bank"], return_tensors="pt").input_ids
        from finsent_cli.core.models.t5 import load_t5

        ours = load_t5(run / sub)
        torch.testing.assert_close(
            ours(ids.input_ids, ids.attention_mask, labels=labels).logits,
            hf(**ids, labels=labels).logits,
            atol=1e-4,
            rtol=1e-4,
        )
    assert hf.config.vocab_size == 512  # 500 pieces, padded to a multiple of 128


@pytest.mark.parametrize("scaled", [False, True])
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(
    tmp_path: Path, small_corpus: Path, small_tokenizer: Path, scaled: bool
) -> None:
    """Stop at step 6, resume to 12 (epochs of 7 to 11 steps, so the second epoch's order and masks are drawn
    after the resume): the same weights as 12 steps in one go. With ``optim.scale_by_rms`` each weight's rate
    was set from its size at the start, and the resumed optimizer keeps those rates."""
    lines = (small_corpus / "train.txt").read_text().splitlines()[:28]
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    over = ["data.heldout_blocks=4", f"data.heldout=[{small_corpus / 'heldout.txt'}]", f"optim.scale_by_rms={str(scaled).lower()}"]
    whole = load_pretrain(
        pretrain_recipe(tmp_path, tmp_path / "c.txt", small_tokenizer, "whole"), *over, "train.max_steps=12"
    )
    run_pretrain(whole)
    assert 6 < json.loads((tmp_path / "whole" / "data.json").read_text())["train_blocks"] // 4 < 12
    assert [e["epoch"] for e in _events(tmp_path / "whole", "train")][-1] == 1
    part = pretrain_recipe(tmp_path, tmp_path / "c.txt", small_tokenizer, "part")
    run_pretrain(load_pretrain(part, *over, "train.max_steps=6"))
    again = run_pretrain(load_pretrain(part, *over, "train.max_steps=12"))
    assert again.resumed_from is not None and again.resumed_from.name == "step-6"
    a, b = (
        load_file(tmp_path / "whole" / "last" / "model.safetensors"),
        load_file(tmp_path / "part" / "last" / "model.safetensors"),
    )
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_adafactor_with_inverse_sqrt_learns(tmp_path: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    extra = "optim: {name: adafactor, lr: 0.01}\nsched: {name: inverse_sqrt, warmup_ratio: 0.1}\n"
    recipe = pretrain_recipe(tmp_path, small_corpus, small_tokenizer, extra="")
    text = recipe.read_text().replace(
        "optim: {name: adamw, lr: 3.0e-3}\nsched: {name: constant, warmup_steps: 0}\n", extra
    )
    recipe.write_text(text)
    cfg = load_pretrain(recipe, "train.max_steps=9")
    assert cfg.optim.name == "adafactor"
    run_pretrain(cfg)
    evals = _events(tmp_path / "run", "eval")
    assert evals[-1]["heldout_loss"] < evals[0]["heldout_loss"]
    lrs = [e["lr"] for e in _events(tmp_path / "run", "train")]
    assert lrs[0] == 0.01 and lrs[-1] == pytest.approx(0.01 * (1 / 9) ** 0.5)  # warmup 1 step, then 1/sqrt(step)


def test_plain_text_files_hold_out_the_last_blocks(tmp_path: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    recipe = pretrain_recipe(tmp_path, small_corpus / "train.txt", small_tokenizer)
    result = run_pretrain(load_pretrain(recipe, "train.max_steps=3"))
    data = json.loads((result.run_dir / "data.json").read_text())
    assert data["heldout_blocks"] == 8
    (stream,) = [json.loads(p.read_text()) for p in (tmp_path / "tokens").glob("train.txt.*.json")]
    assert data["train_blocks"] + 8 == stream["tokens"] // 34  # the last 8 blocks are held out, not trained on


def test_bf16_on_cpu_runs_and_warns_without_native_support(
    tmp_path: Path, small_corpus: Path, small_tokenizer: Path
) -> None:
    from accelerate.state import AcceleratorState

    from finsent_cli.core.progress import NullReporter
    from finsent_cli.core.training.loop import cpu_has_native_bf16

    AcceleratorState._reset_state(reset_partial_state=True)  # earlier tests in this process chose fp32
    reporter = NullReporter()
    result = run_pretrain(
        load_pretrain(
            pretrain_recipe(tmp_path, small_corpus, small_tokenizer), "train.max_steps=2", "train.mixed_precision=bf16"
        ),
        reporter,
    )
    assert result.steps == 2
    assert any("emulated" in w for w in reporter.warnings) == (not cpu_has_native_bf16())
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.noise_density=0.01"], "data.noise_density: 0.01 hides no token"),
        (["model.max_seq_len=4096"], "data.tokenizer: .* has 100 sentinels .* needs 227"),
    ],
)
def test_settings_that_cannot_work_fail_before_the_run_folder(
    tmp_path: Path, small_corpus: Path, small_tokenizer: Path, overrides: list[str], needle: str
) -> None:
    cfg = load_pretrain(pretrain_recipe(tmp_path, small_corpus, small_tokenizer), *overrides)
    with pytest.raises(FinsentError, match=needle):
        run_pretrain(cfg)
    assert not (tmp_path / "run").exists()


def test_compile_option_traces_the_model_and_saves_plain_weight_names(
    tmp_path: Path, small_corpus: Path, small_tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train.compile: true`` goes through ``torch.compile`` (TorchDynamo tracing; the ``eager`` backend here,
    since inductor's C++ build takes minutes on a CPU) and checkpoints keep the names transformers expects."""
    calls = []
    original = torch.nn.Module.compile

    def traced(self: torch.nn.Module, *args: object, **kwargs: object) -> None:
        calls.append(type(self).__name__)
        original(self, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", traced)
    result = run_pretrain(
        load_pretrain(
            pretrain_recipe(tmp_path, small_corpus, small_tokenizer), "train.max_steps=3", "train.compile=true"
        )
    )
    assert calls == ["FinT5ForConditionalGeneration"] and result.steps == 3
    names = set(load_file(tmp_path / "run" / "last" / "model.safetensors"))
    assert "shared.weight" in names and not any("_orig_mod" in n for n in names)


def test_resuming_on_changed_data_is_refused(tmp_path: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    corpus = tmp_path / "c.txt"
    lines = (small_corpus / "train.txt").read_text().splitlines()
    corpus.write_text("\n".join(lines[:200]) + "\n")
    recipe = pretrain_recipe(tmp_path, corpus, small_tokenizer)
    run_pretrain(load_pretrain(recipe, "train.max_steps=3"))
    corpus.write_text("\n".join(lines[:400]) + "\n")  # `finsent prep` again, say: other blocks at the saved position
    with pytest.raises(FinsentError, match=r"data.corpus: the data changed since the run started \(train_blocks"):
        run_pretrain(load_pretrain(recipe, "train.max_steps=6"))


def test_a_read_only_corpus_folder_keeps_its_tokens_in_the_user_cache(
    tmp_path: Path, small_corpus: Path, small_tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import finsent_cli.core.flows.pretrain as flow

    recipe = pretrain_recipe(tmp_path, small_corpus, small_tokenizer)
    recipe.write_text(recipe.read_text().replace(f", cache_dir: {tmp_path / 'tokens'}", ""))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(flow.os, "access", lambda path, mode: False)  # as for a corpus on a read-only share
    run_pretrain(load_pretrain(recipe, "train.max_steps=1"))
    assert len(list((tmp_path / "xdg" / "finsent" / "tokens").glob("*.tokens"))) == 2  # train + held-out
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best", "checkpoints", "data.json", "last", "metrics.jsonl", "recipe.yaml"]


def test_recipe_sizes_are_the_t5_sizes() -> None:
    from typing import get_args

    from finsent_cli.config.pretrain import T5PretrainModel
    from finsent_cli.core.models.t5 import T5_SIZES

    assert set(get_args(T5PretrainModel.model_fields["size"].annotation)) == set(T5_SIZES)


@pytest.mark.parametrize("scaled", [False, True])
def test_heldout_cosine_is_tracked_and_a_collapse_is_named(
    tmp_path: Path, small_corpus: Path, small_tokenizer: Path, monkeypatch: pytest.MonkeyPatch, scaled: bool
) -> None:
    from finsent_cli.core.flows import pretrain as flow
    from finsent_cli.core.progress import NullReporter

    monkeypatch.setattr(flow, "COLLAPSE_COSINE", -1.0)  # every evaluation counts as collapsed
    reporter = NullReporter()
    recipe = pretrain_recipe(tmp_path, small_corpus, small_tokenizer)
    run_pretrain(load_pretrain(recipe, f"optim.scale_by_rms={str(scaled).lower()}"), reporter)
    evals = _events(tmp_path / "run", "eval")
    assert len(evals) == 2 and all(-1.0 <= e["heldout_cosine"] <= 1.0 for e in evals)
    (warning,) = [w for w in reporter.warnings if "barely depends on the input" in w]  # once, not per evaluation
    assert ("lower optim.lr" if scaled else "optim.scale_by_rms: true") in warning


def test_mean_pairwise_cosine() -> None:
    from finsent_cli.core.flows.pretrain import mean_pairwise_cosine

    assert mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])) == pytest.approx(1 / 3)
    assert mean_pairwise_cosine(torch.tensor([[1.0, 1.0], [2.0, 2.0]])) == pytest.approx(1.0)
