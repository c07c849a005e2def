"""Which schema validates which command's recipes (used by tests and `--dry-run` tooling)."""

from __future__ import annotations

import importlib

import pydantic

_SCHEMAS = {
    "prep": "finsent_cli.config.prep:PrepRecipe",
    "tokenizer": "finsent_cli.config.tokenizer:TokenizerRecipe",
    "finetune": "finsent_cli.config.finetune:FinetuneRecipe",
    "qlora": "finsent_cli.config.finetune:FinetuneRecipe",  # a finetune recipe with model.adapter.kind qlora
    "pretrain": "finsent_cli.config.pretrain:PretrainRecipe",
    "distill": "finsent_cli.config.distill:DistillRecipe",
    "tune": "finsent_cli.config.finetune:FinetuneRecipe",  # a finetune recipe with a tune: section (distill's work too)
    "select": "finsent_cli.config.select:SelectRecipe",
}


def commands() -> list[str]:
    """Commands that read recipes."""
    return sorted(_SCHEMAS)


def schema_for(command: str) -> type[pydantic.BaseModel]:
    """The recipe schema of ``command``.

    Raises:
        KeyError: ``command`` reads no recipe.
    """
    module, _, name = _SCHEMAS[command].partition(":")
    return getattr(importlib.import_module(module), name)
