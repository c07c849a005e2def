"""Kind ``hf_auto``: any Hugging Face sequence classifier that finsent did not train, loaded for inference.

A folder ``AutoModelForSequenceClassification`` reads (FinBERT, say), or a peft adapter over one (its
base from ``finsent.json``'s ``base_model``, else ``adapter_config.json``). Its labels are mapped onto
finsent's by name (``core.inference.classifier.map_labels``). It is not built from recipes: fine-tune
such a checkpoint as the ``backbone`` of kind ``hf_encoder`` instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from finsent_cli.core.models.hub import resolve_model_path
from finsent_cli.core.models.registry import SequenceClassifierKind, quiet_transformers
from finsent_cli.core.peft.lora import load_lora
from finsent_cli.errors import FinsentError
from finsent_cli.labels import ID2LABEL, LABEL2ID


class HFAutoKind(SequenceClassifierKind):
    """See the module docstring."""

    name = "hf_auto"
    trainable = False

    def build(self, cfg: Any, *, resume: Path | None = None) -> tuple[torch.nn.Module, Any]:
        raise FinsentError("model.kind: hf_auto folders are loaded, not trained; use kind hf_encoder with this backbone")

    def meta(self, cfg: Any) -> dict[str, Any]:
        return {"kind": self.name, "task": "classification"}

    def load(
        self, folder: Path, meta: dict[str, Any], *, trainable: bool = False, full_precision: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quiet_transformers()
        adapter = folder / "adapter_config.json"
        base_name = meta.get("base_model")
        if adapter.is_file() and not base_name:
            base_name = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        tok_source = folder if (folder / "tokenizer_config.json").is_file() else resolve_model_path(base_name or folder)
        tokenizer = AutoTokenizer.from_pretrained(str(tok_source))
        if not adapter.is_file():
            return AutoModelForSequenceClassification.from_pretrained(str(folder)).train(trainable), tokenizer
        if not base_name:
            raise FinsentError(f"{folder}: LoRA adapter without a base model (set base_model in finsent.json)")
        base = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(base_name), num_labels=len(ID2LABEL), id2label=ID2LABEL, label2id=LABEL2ID
        )
        return load_lora(base, folder, trainable=trainable).train(trainable), tokenizer

    def claims(self, config: dict[str, Any], meta: dict[str, Any]) -> bool:
        return True  # the fallback: any Hugging Face classifier or adapter folder


KIND = HFAutoKind()
