"""LoRA adapters through peft (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

Any model kind can wrap its network with :func:`apply_lora` and reload an adapter folder with
:func:`load_lora`; ``core.flows.merge`` folds an adapter into its base and writes a plain model folder.
:data:`ADAPTER` is the adapter kind ``lora`` of ``core.models.adapters``.
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
    except Exception as exc:  # peft raises ValueError, or NoMatchingPeftModuleError in newer releases
        if "Target modules" not in str(exc) and "No modules were targeted" not in str(exc):
            raise
        raise FinsentError(
            f"model.adapter.target_modules: {list(cfg.target_modules)} match no module of the model; "
            f"its linear layers are named {', '.join(linear_module_names(model))}"
        ) from None


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """The distinct last name parts of the model's linear layers (what ``target_modules`` can name), the
    head excluded (it trains in full anyway)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    return sorted(names - {"classifier"})


def load_lora(base: torch.nn.Module, folder: Path, *, trainable: bool) -> torch.nn.Module:
    """``base`` with the adapter of ``folder``: trainable (to resume training) or merged (for inference,
    where merging folds B @ A into the weights so the model costs what the base costs)."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(folder), is_trainable=trainable)
    return model if trainable else model.merge_and_unload()


def save_adapter(model: torch.nn.Module, folder: Path) -> None:
    """``model.save_pretrained(folder)`` for a peft model, without peft's embedding check.

    By default peft looks up the base's ``config.json`` (on the hub, for a name that is not a local folder:
    a network call on every save, and a warning offline) to see whether the embeddings were resized, and
    then saves them whole. finsent never resizes or trains the embeddings in full; LoRA updates on an
    embedding layer named in ``target_modules`` are saved either way.
    """
    model.save_pretrained(folder, save_embedding_layers=False)


class LoraAdapter:
    """Adapter kind ``lora``: low-rank updates on the recipe's target modules, the head trained in full;
    the folder holds the peft adapter (``adapter_config.json``, ``adapter_model.safetensors``) and
    ``--merge`` folds it into a plain model folder."""

    name = "lora"
    mergeable = True

    def base_options(self, cfg: Any) -> dict[str, Any]:
        return {}

    def attach(self, model: torch.nn.Module, cfg: Any) -> torch.nn.Module:
        return apply_lora(model, cfg, modules_to_save=["classifier"])

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        save_adapter(model, folder)

    def load(self, folder: Path, cfg: Any, base: Any, *, trainable: bool, full_precision: bool) -> torch.nn.Module:
        return load_lora(base(), folder, trainable=trainable)


ADAPTER = LoraAdapter()
