"""Shared by the pretraining tests: a micro recipe (t5_tiny, 32-token inputs) on the synthetic corpus."""

from __future__ import annotations

from pathlib import Path

from finsent_cli.config.loader import load_recipe
from finsent_cli.config.pretrain import PretrainRecipe


def pretrain_recipe(tmp_path: Path, corpus: Path, tokenizer: Path, name: str = "run", extra: str = "") -> Path:
    """A recipe of 6 steps (batch 4, inputs of 32 tokens), evaluated and saved every 3; ``extra`` adds YAML."""
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / name}\n"
        "model: {size: t5_tiny, max_seq_len: 32}\n"
        f"data: {{corpus: [{corpus}], tokenizer: {tokenizer}, heldout_blocks: 8, cache_dir: {tmp_path / 'tokens'}}}\n"
        "optim: {name: adamw, lr: 3.0e-3}\n"
        "sched: {name: constant, warmup_steps: 0}\n"
        "train: {max_steps: 6, batch_size: 4, eval_every: 3, save_every: 3, log_every: 1}\n" + extra,
        encoding="utf-8",
    )
    return recipe


def load_pretrain(recipe: Path, *overrides: str) -> PretrainRecipe:
    """The validated recipe with dotted overrides."""
    return load_recipe(recipe, PretrainRecipe, list(overrides))
