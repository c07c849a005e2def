"""Sequence-classification head on any Hugging Face encoder, saved as a regular model folder.

``FinsentClassifier`` is a small :class:`~transformers.PreTrainedModel`: an ``AutoModel`` backbone,
first-token or mean pooling, dropout and one linear layer. Importing this module registers it with
``AutoConfig`` / ``AutoModelForSequenceClassification`` (model type ``finsent_classifier``), so a
folder it saved loads with ``AutoModelForSequenceClassification.from_pretrained(folder)`` as long as
finsent is imported. The model kind around it (LoRA, saving, loading) is ``hf_encoder/kind.py``.

Mean pooling follows Reimers & Gurevych 2019 ("Sentence-BERT"), how the MiniLM backbone was trained.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from finsent_cli.core.models.registry import quiet_transformers
from finsent_cli.errors import FinsentError
from finsent_cli.labels import ID2LABEL, LABEL2ID, LABELS


class FinsentClassifierConfig(PreTrainedConfig):
    """Config of :class:`FinsentClassifier`: the backbone's config plus the head.

    Args:
        backbone_config: the encoder's config (object or dict with ``model_type``).
        pooling: ``first`` or ``mean``.
        classifier_dropout: dropout before the linear layer.
    """

    model_type = "finsent_classifier"

    def __init__(
        self, backbone_config: Any = None, pooling: str = "mean", classifier_dropout: float = 0.1, **kwargs: Any
    ) -> None:
        if isinstance(backbone_config, dict):
            backbone_config = AutoConfig.for_model(**backbone_config)
        self.backbone_config = backbone_config
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if isinstance(self.backbone_config, PreTrainedConfig):
            out["backbone_config"] = self.backbone_config.to_dict()
        return out


def _without_pooler(encoder: nn.Module) -> nn.Module:
    # BERT-style encoders carry a [CLS] pooler (dense + tanh) this head never uses; its weights would get
    # no gradient, which DDP treats as an error.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


class FinsentClassifier(PreTrainedModel):
    """Encoder + pooling + dropout + linear layer -> one logit per label."""

    config_class = FinsentClassifierConfig
    base_model_prefix = "backbone"

    def __init__(self, config: FinsentClassifierConfig) -> None:
        super().__init__(config)
        self.backbone = _without_pooler(AutoModel.from_config(config.backbone_config))
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.backbone_config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Only the head is ours; the backbone's weights come from its checkpoint.
        if module is getattr(self, "classifier", None):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        """Logits (B, num_labels); with ``labels`` also the mean cross-entropy as ``loss``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state  # (B, T, H)
        if self.config.pooling == "first":
            pooled = hidden[:, 0]  # (B, H)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(FinsentClassifierConfig.model_type, FinsentClassifierConfig, exist_ok=True)
AutoModelForSequenceClassification.register(FinsentClassifierConfig, FinsentClassifier, exist_ok=True)


def new_classifier(
    backbone: str, pooling: str = "mean", dropout: float = 0.1, backbone_dropout: float | None = None
) -> FinsentClassifier:
    """A classifier with pretrained backbone weights and a freshly initialised head.

    Args:
        backbone: a local model folder or hub name (already resolved, see ``core.models.hub``).
        pooling: ``first`` or ``mean``.
        dropout: head dropout.
        backbone_dropout: if set, replaces the backbone's hidden and attention dropout.

    Raises:
        FinsentError: the backbone cannot be loaded.
    """
    quiet_transformers()
    overrides = {}
    if backbone_dropout is not None:
        overrides = {"hidden_dropout_prob": backbone_dropout, "attention_probs_dropout_prob": backbone_dropout}
    try:
        encoder = AutoModel.from_pretrained(backbone, **overrides)
    except (OSError, ValueError) as exc:
        raise FinsentError(f"model.backbone: cannot load '{backbone}': {str(exc).splitlines()[0]}") from None
    config = FinsentClassifierConfig(
        backbone_config=encoder.config, pooling=pooling, classifier_dropout=dropout,
        num_labels=len(LABELS), id2label=ID2LABEL, label2id=LABEL2ID,
    )  # fmt: skip
    model = FinsentClassifier(config)
    model.backbone = _without_pooler(encoder)
    return model


def forget_origin(model: PreTrainedModel, name: str) -> None:
    """Record ``name`` (an alias or hub name) instead of the folder the weights were read from, so a
    saved config names no path of this machine (a virtual environment's site-packages, say)."""
    for config in (model.config, getattr(model.config, "backbone_config", None)):
        if isinstance(config, PreTrainedConfig):
            config._name_or_path = name
    model.name_or_path = name  # what peft writes as the adapter's base_model_name_or_path
