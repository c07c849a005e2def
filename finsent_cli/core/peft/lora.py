"""LoRA adapters through peft (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

Any model kind can wrap its network with :func:`apply_lora` and reload an adapter folder with
:func:`load_lora`; ``core.flows.merge`` folds an adapter into its base and writes a plain model folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from finsent_cli.errors import FinsentError


def apply_lora(model: torch.nn.Module, cfg: Any, modules_to_save: list[str]) -> torch.nn.Module:
    """Wrap ``model`` with fresh LoRA adapters.

    Args:
        model: the base network.
        cfg: ``r``, ``alpha``, ``dropout``, ``target_modules`` (``config.models.LoraCfg``).
        modules_to_save: modules trained in full and saved with the adapter (a new head).

    Raises:
        FinsentError: ``target_modules`` names no module of the model.
    """
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules),
        modules_to_save=modules_to_save,
    )  # fmt: skip
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise FinsentError(f"model.lora.target_modules: {str(exc).splitlines()[0]}") from None


def load_lora(base: torch.nn.Module, folder: Path, *, trainable: bool) -> torch.nn.Module:
    """``base`` with the adapter of ``folder``: trainable (to resume training) or merged (for inference,
    where merging folds B @ A into the weights so the model costs what the base costs)."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(folder), is_trainable=trainable)
    return model if trainable else model.merge_and_unload()
