"""finsent's sequence classifier as a plain Hugging Face model: config and model in one self-contained file.

``FinsentClassifier`` is a small :class:`~transformers.PreTrainedModel`: an ``AutoModel`` backbone (the
encoder alone for a T5), first-token or mean pooling, an optional fusion module over the token states (the
Mamba adapters of ``finsent_cli.core.models.mamba``), dropout and one linear layer, whose logits are divided
by ``config.logit_temperature`` (the calibration that finsent fitted; 1.0 leaves them as they are).

This file imports only torch and transformers at top level, because finsent copies it into every full model
folder it saves and names its classes in ``config.json``'s ``auto_map``: where finsent is not installed,
``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`` (or a
``transformers.pipeline``) runs this very code. Only a fusion module needs finsent itself (imported when
one is built). Importing this file registers nothing; :func:`register_auto_classes` does, and finsent calls
it (``finsent_cli/__init__.py``, ``hf_encoder/model.py``).

Mean pooling follows Reimers & Gurevych 2019 ("Sentence-BERT"), how the MiniLM backbone was trained;
dividing the logits by one fitted temperature follows Guo et al. 2017 ("On Calibration of Modern Neural
Networks").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

ENCODER_DECODER_TYPES = ("t5", "mt5", "umt5")
"""Encoder-decoder model types whose encoder alone is a backbone (finsent's pretrained T5 among them)."""


class FinsentClassifierConfig(PreTrainedConfig):
    """Config of :class:`FinsentClassifier`: the backbone's config plus the head.

    Args:
        backbone_config: the encoder's config (object or dict with ``model_type``).
        pooling: ``first`` or ``mean``.
        classifier_dropout: dropout before the linear layer.
        fusion: an adapter module between the encoder and the head: ``{"kind": "mamba", ...settings}``
            (finsent's ``core.models.adapters``), or None.
        frozen_backbone: the encoder does not train and stays in eval mode (no dropout) in ``train()``.
        logit_temperature: the logits are divided by it (finsent writes its fitted calibration here, so
            that loaders outside finsent give finsent's probabilities; finsent itself loads with 1.0 and
            applies the temperature of ``finsent.json``). Not generation's ``temperature``.

    Raises:
        ValueError: a temperature that is not a positive number.
    """

    model_type = "finsent_classifier"

    def __init__(
        self,
        backbone_config: Any = None,
        pooling: str = "mean",
        classifier_dropout: float = 0.1,
        fusion: dict[str, Any] | None = None,
        frozen_backbone: bool = False,
        logit_temperature: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if isinstance(backbone_config, dict):
            backbone_config = AutoConfig.for_model(**backbone_config)
        if (
            isinstance(logit_temperature, bool)
            or not isinstance(logit_temperature, int | float)
            or not logit_temperature > 0
        ):
            raise ValueError(f"logit_temperature must be a positive number, got {logit_temperature!r}")
        self.backbone_config = backbone_config
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.fusion = dict(fusion) if fusion else None
        self.frozen_backbone = frozen_backbone
        self.logit_temperature = float(logit_temperature)
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if isinstance(self.backbone_config, PreTrainedConfig):
            out["backbone_config"] = self.backbone_config.to_dict()
        return out


def _encoder_class(config: PreTrainedConfig) -> Any:
    """``AutoModel``, or ``T5EncoderModel`` for a T5 config (AutoModel would build the decoder too).

    Raises:
        ValueError: another encoder-decoder family.
    """
    if not getattr(config, "is_encoder_decoder", False):
        return AutoModel
    if config.model_type not in ENCODER_DECODER_TYPES:
        raise ValueError(
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


def _hidden_size(config: PreTrainedConfig) -> int:
    return int(getattr(config, "hidden_size", None) or config.d_model)  # T5 configs say d_model


def _fusion_module(settings: dict[str, Any], hidden_size: int) -> nn.Module:
    """finsent's fusion module (Mamba adapters): the one part of the model that is not in this file.

    Raises:
        ImportError: finsent is not installed.
    """
    try:  # inside try: transformers' import check of remote code skips it, so plain folders load without finsent
        from finsent_cli.core.models.adapters import fusion_module
    except ImportError as exc:
        raise ImportError(
            f"this finsent model has a '{settings.get('kind')}' fusion adapter between its encoder and head, "
            "which needs finsent's Mamba code: pip install finsent"
        ) from exc
    return fusion_module(settings, hidden_size)


class FinsentClassifier(PreTrainedModel):
    """Encoder + pooling + dropout + linear layer -> one logit per label (divided by ``logit_temperature``)."""

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
        self.fusion = _fusion_module(config.fusion, hidden) if config.fusion else None
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
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, **extra
        ).last_hidden_state  # (B, T, H)
        if self.config.pooling == "first":
            pooled = hidden[:, 0]  # (B, H)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
        if self.fusion is not None:
            pooled = self.fusion(hidden, attention_mask, pooled)  # (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        if self.config.logit_temperature != 1.0:  # a calibrated folder read outside finsent (a pipeline, say)
            logits = logits / self.config.logit_temperature
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModelForSequenceClassification`` (and so ``pipeline``) read model type
    ``finsent_classifier`` without ``trust_remote_code``. Idempotent."""
    AutoConfig.register(FinsentClassifierConfig.model_type, FinsentClassifierConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(FinsentClassifierConfig, FinsentClassifier, exist_ok=True)
