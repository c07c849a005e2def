"""Kind ``hf_encoder``: a pretrained Hugging Face encoder + finsent's classification head, with an adapter.

The backbone is the offline MiniLM (alias ``minilm``), a local folder (a T5 folder or ``finsent pretrain``
run: its encoder) or a hub name; the head is
:class:`~finsent_cli.core.models.hf_encoder.model.FinsentClassifier`. What trains and what a model folder
holds is the adapter kind's business (``model.adapter.kind``, see ``core.models.adapters``): everything
(``none``), LoRA or QLoRA matrices and the head, or a Mamba fusion module and the head over a frozen
encoder. Adapter folders name the base model in ``finsent.json`` (its alias or hub name, or the folder as
the recipe gave it) and are rebuilt over it when loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from finsent_cli.config.models import HFEncoderCfg
from finsent_cli.core.io import atomic_write_json
from finsent_cli.core.models.adapters import adapter_settings, get_adapter
from finsent_cli.core.models.hf_encoder.model import forget_origin, new_classifier  # registers the Auto classes
from finsent_cli.core.models.hub import resolve_model_path
from finsent_cli.core.models.registry import SequenceClassifierKind, quiet_transformers
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
        adapter = get_adapter(cfg.adapter.kind)
        options = adapter.base_options(cfg.adapter)
        model = self._base(backbone, cfg.backbone, cfg.pooling, cfg.dropout, cfg.backbone_dropout, **options)
        return adapter.attach(model, cfg.adapter).train(), tokenizer

    def meta(self, cfg: HFEncoderCfg) -> dict[str, Any]:
        return {
            "kind": self.name, "task": "classification", "adapter": cfg.adapter.kind,
            "adapter_config": cfg.adapter.model_dump(mode="json"), "base_model": cfg.backbone,
            "max_length": cfg.max_length, "pooling": cfg.pooling, "dropout": cfg.dropout,
            "backbone_dropout": cfg.backbone_dropout, "labels": list(LABELS),
        }  # fmt: skip

    def save(self, model: torch.nn.Module, tokenizer: Any, folder: Path, meta: dict[str, Any]) -> None:
        get_adapter(str(meta.get("adapter", "none"))).save(model, folder)
        tokenizer.save_pretrained(folder)
        atomic_write_json(Path(folder) / META_FILE, meta)

    def load(
        self, folder: Path, meta: dict[str, Any], *, trainable: bool = False, full_precision: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        from transformers import AutoTokenizer

        quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        name = str(meta.get("adapter", "none"))
        adapter = get_adapter(name)

        def base(**options: Any) -> torch.nn.Module:
            if not meta.get("base_model"):
                raise FinsentError(f"{folder / META_FILE}: a {name} adapter folder must name its base_model")
            spec = str(meta["base_model"])
            pooling, dropout = meta.get("pooling", "mean"), meta.get("dropout", 0.1)
            return self._base(resolve_model_path(spec), spec, pooling, dropout, meta.get("backbone_dropout"), **options)

        settings = adapter_settings(name, meta.get("adapter_config"))
        model = adapter.load(Path(folder), settings, base, trainable=trainable, full_precision=full_precision)
        return model.train(trainable), tokenizer

    def claims(self, config: dict[str, Any], meta: dict[str, Any]) -> bool:
        # finsent 0.1 folders: its own head, or a LoRA adapter over it (no config.json, a base_model)
        return config.get("model_type") == "finsent_classifier" or (meta.get("adapter") == "lora" and bool(meta.get("base_model")))

    @staticmethod
    def _base(path: str, name: str, pooling: str, dropout: float, backbone_dropout: float | None, **options: Any) -> torch.nn.Module:
        model = new_classifier(path, pooling, dropout, backbone_dropout, **options)
        forget_origin(model, name)
        return model


KIND = HFEncoderKind()
