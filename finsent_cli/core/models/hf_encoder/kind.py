"""Kind ``hf_encoder``: a pretrained Hugging Face encoder + finsent's classification head, full or LoRA.

The backbone is the offline MiniLM (alias ``minilm``), a local folder or a hub name; the head is
:class:`~finsent_cli.core.models.hf_encoder.model.FinsentClassifier`. With ``adapter: lora`` only the
LoRA matrices and the head train, and the model folder holds the peft adapter; ``finsent.json`` then
names the base model (its alias or hub name, never a path of this machine) so the folder loads anywhere
the same base is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from finsent_cli.config.models import HFEncoderCfg
from finsent_cli.core.models.hf_encoder.model import forget_origin, new_classifier  # registers the Auto classes
from finsent_cli.core.models.hub import resolve_model_path
from finsent_cli.core.models.registry import SequenceClassifierKind, quiet_transformers
from finsent_cli.core.peft.lora import apply_lora, load_lora
from finsent_cli.core.runs import META_FILE
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS


class HFEncoderKind(SequenceClassifierKind):
    """See the module docstring."""

    name = "hf_encoder"
    trainable = True

    def build(self, cfg: HFEncoderCfg, *, resume: Path | None = None) -> tuple[torch.nn.Module, Any]:
        from transformers import AutoTokenizer

        try:
            backbone = resolve_model_path(cfg.backbone)
        except FinsentError as exc:
            raise FinsentError(f"model.backbone: {exc.message}") from None
        if resume is not None:
            return self.load(resume, self.meta(cfg), trainable=True)
        try:
            tokenizer = AutoTokenizer.from_pretrained(backbone)
        except (OSError, ValueError) as exc:
            raise FinsentError(f"model.backbone: cannot load a tokenizer from '{cfg.backbone}': {str(exc).splitlines()[0]}") from None
        model = self._base(backbone, cfg.backbone, cfg.pooling, cfg.dropout, cfg.backbone_dropout)
        if cfg.adapter == "lora":
            model = apply_lora(model, cfg.lora, modules_to_save=["classifier"])
        return model.train(), tokenizer

    def meta(self, cfg: HFEncoderCfg) -> dict[str, Any]:
        return {
            "kind": self.name, "task": "classification", "adapter": cfg.adapter, "base_model": cfg.backbone,
            "max_length": cfg.max_length, "pooling": cfg.pooling, "dropout": cfg.dropout,
            "backbone_dropout": cfg.backbone_dropout, "labels": list(LABELS),
        }  # fmt: skip

    def load(self, folder: Path, meta: dict[str, Any], *, trainable: bool = False) -> tuple[torch.nn.Module, Any]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if meta.get("adapter") == "lora":
            if not meta.get("base_model"):
                raise FinsentError(f"{folder / META_FILE}: a LoRA folder must name its base_model")
            name = str(meta["base_model"])
            base = self._base(resolve_model_path(name), name, meta.get("pooling", "mean"), meta.get("dropout", 0.1), meta.get("backbone_dropout"))
            model = load_lora(base, folder, trainable=trainable)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(folder)
        return model.train(trainable), tokenizer

    def claims(self, config: dict[str, Any], meta: dict[str, Any]) -> bool:
        # finsent 0.1 folders: its own head, or a LoRA adapter over it (no config.json, a base_model)
        return config.get("model_type") == "finsent_classifier" or (meta.get("adapter") == "lora" and bool(meta.get("base_model")))

    @staticmethod
    def _base(path: str, name: str, pooling: str, dropout: float, backbone_dropout: float | None) -> torch.nn.Module:
        model = new_classifier(path, pooling, dropout, backbone_dropout)
        forget_origin(model, name)
        return model


KIND = HFEncoderKind()
