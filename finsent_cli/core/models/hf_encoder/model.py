"""Sequence-classification head on any Hugging Face encoder, saved as a regular model folder.

``FinsentClassifier`` is a small :class:`~transformers.PreTrainedModel`: an ``AutoModel`` backbone (the
encoder alone for a T5), first-token or mean pooling, an optional fusion module over the token states (the
Mamba adapters of ``core.models.mamba``, built through ``core.models.adapters``), dropout and one linear
layer. Importing this module registers it with
``AutoConfig`` / ``AutoModelForSequenceClassification`` (model type ``finsent_classifier``), so a
folder it saved loads with ``AutoModelForSequenceClassification.from_pretrained(folder)`` as long as
finsent is imported. The model kind around it (LoRA, saving, loading) is ``hf_encoder/kind.py``.

Mean pooling follows Reimers & Gurevych 2019 ("Sentence-BERT"), how the MiniLM backbone was trained.
"""

from __future__ import annotations

import copy
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
        fusion: an adapter module between the encoder and the head: ``{"kind": "mamba", ...settings}``
            (``core.models.adapters``), or None.
        frozen_backbone: the encoder does not train and stays in eval mode (no dropout) in ``train()``.
    """

    model_type = "finsent_classifier"

    def __init__(
        self,
        backbone_config: Any = None,
        pooling: str = "mean",
        classifier_dropout: float = 0.1,
        fusion: dict[str, Any] | None = None,
        frozen_backbone: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(backbone_config, dict):
            backbone_config = AutoConfig.for_model(**backbone_config)
        self.backbone_config = backbone_config
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.fusion = dict(fusion) if fusion else None
        self.frozen_backbone = frozen_backbone
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if isinstance(self.backbone_config, PreTrainedConfig):
            out["backbone_config"] = self.backbone_config.to_dict()
        return out


ENCODER_DECODER_TYPES = ("t5", "mt5", "umt5")
"""Encoder-decoder model types whose encoder alone is a backbone (finsent's pretrained T5 among them)."""


def _encoder_class(config: PreTrainedConfig) -> Any:
    """``AutoModel``, or ``T5EncoderModel`` for a T5 config (AutoModel would build the decoder too).

    Raises:
        FinsentError: another encoder-decoder family.
    """
    if not getattr(config, "is_encoder_decoder", False):
        return AutoModel
    if config.model_type not in ENCODER_DECODER_TYPES:
        raise FinsentError(
            f"model.backbone: {config.model_type} is an encoder-decoder model; only the T5 family's encoder "
            f"({', '.join(ENCODER_DECODER_TYPES)}) can be a classification backbone"
        )
    from transformers import T5EncoderModel

    return T5EncoderModel


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
        hidden = _hidden_size(config.backbone_config)
        encoder_class = _encoder_class(config.backbone_config)
        if encoder_class is AutoModel:
            encoder = AutoModel.from_config(config.backbone_config)
        else:  # concrete classes are built from their config directly
            encoder = encoder_class(config.backbone_config)
        self.backbone = _without_pooler(encoder)
        self.fusion = None
        if config.fusion:
            from finsent_cli.core.models.adapters import fusion_module

            self.fusion = fusion_module(config.fusion, hidden)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(hidden, config.num_labels)
        self.post_init()

    def train(self, mode: bool = True) -> FinsentClassifier:
        """Train mode, except for a frozen backbone, which stays in eval mode (no dropout on features)."""
        super().train(mode)
        if self.config.frozen_backbone:
            self.backbone.eval()
        return self

    def _init_weights(self, module: nn.Module) -> None:
        # Only the head is ours; the backbone's weights come from its checkpoint, the fusion module inits itself.
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
        if self.fusion is not None:
            pooled = self.fusion(hidden, attention_mask, pooled)  # (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(FinsentClassifierConfig.model_type, FinsentClassifierConfig, exist_ok=True)
AutoModelForSequenceClassification.register(FinsentClassifierConfig, FinsentClassifier, exist_ok=True)


def _hidden_size(config: PreTrainedConfig) -> int:
    return int(getattr(config, "hidden_size", None) or config.d_model)  # T5 configs say d_model


def new_classifier(
    backbone: str,
    pooling: str = "mean",
    dropout: float = 0.1,
    backbone_dropout: float | None = None,
    *,
    quantization: Any = None,
    fusion: dict[str, Any] | None = None,
) -> FinsentClassifier:
    """A classifier with pretrained backbone weights and a freshly initialised head.

    Args:
        backbone: a local model folder or hub name (already resolved, see ``core.models.hub``).
        pooling: ``first`` or ``mean``.
        dropout: head dropout.
        backbone_dropout: if set, replaces the backbone's hidden and attention dropout.
        quantization: a ``BitsAndBytesConfig`` to load the backbone's linear layers quantised (QLoRA), and
            the ``device_map`` to place it with, as ``(config, device_map)``; None loads full precision.
        fusion: the fusion module's settings (see :class:`FinsentClassifierConfig`).

    Raises:
        FinsentError: the backbone cannot be loaded.
    """
    quiet_transformers()
    try:
        backbone_config = AutoConfig.from_pretrained(backbone)
    except (OSError, ValueError) as exc:
        raise FinsentError(f"model.backbone: cannot load '{backbone}': {str(exc).splitlines()[0]}") from None
    if backbone_dropout is not None:
        keys = ("dropout_rate",) if hasattr(backbone_config, "dropout_rate") else ("hidden_dropout_prob", "attention_probs_dropout_prob")
        for key in keys:
            setattr(backbone_config, key, backbone_dropout)
    head_config = FinsentClassifierConfig(
        backbone_config=copy.deepcopy(backbone_config), pooling=pooling, classifier_dropout=dropout, fusion=fusion,
        num_labels=len(LABELS), id2label=ID2LABEL, label2id=LABEL2ID,
    )  # fmt: skip
    quantized = {} if quantization is None else {"quantization_config": quantization[0], "device_map": quantization[1]}
    try:
        encoder = _encoder_class(backbone_config).from_pretrained(backbone, config=backbone_config, **quantized)
    except (OSError, ValueError) as exc:
        raise FinsentError(f"model.backbone: cannot load '{backbone}': {str(exc).splitlines()[0]}") from None
    model = FinsentClassifier(head_config)
    model.backbone = _without_pooler(encoder)
    return model


def forget_origin(model: PreTrainedModel, name: str) -> None:
    """Record ``name`` (an alias or hub name) instead of the folder the weights were read from, so a
    saved config names no path of this machine (a virtual environment's site-packages, say)."""
    for config in (model.config, getattr(model.config, "backbone_config", None)):
        if isinstance(config, PreTrainedConfig):
            config._name_or_path = name
    model.name_or_path = name  # what peft writes as the adapter's base_model_name_or_path
