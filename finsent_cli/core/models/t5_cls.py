"""Kind ``t5_cls``: finsent's (pretrained) T5 encoder + a pooled linear classification head, full fine-tune.

A recipe writes ``kind: t5`` with ``head: classification`` (or ``kind: t5_cls``). The decoder of the
backbone is dropped (Raffel et al. 2020, arXiv 1910.10683, for the model; the head after transformers'
``T5ForSequenceClassification``, which uses the encoder alone). Training is plain class-weighted
cross-entropy on the head's logits, as for ``hf_encoder``; the model folder is a ``T5EncoderModel`` folder
plus the head (see ``core.models.t5.heads``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from finsent_cli.config.models import T5ClsCfg
from finsent_cli.core.models.registry import SequenceClassifierKind
from finsent_cli.core.models.t5.backbone import Backbone, T5FinetuneKind
from finsent_cli.core.models.t5.heads import T5EncoderClassifier


class T5ClsKind(T5FinetuneKind, SequenceClassifierKind):
    """See the module docstring. Features, collate, loss and class logits are the sequence classifier's:
    token ids, right padding, ``cross_entropy`` on ``model(input_ids=, attention_mask=)``."""

    name = "t5_cls"

    def wrap(self, backbone: Backbone, cfg: T5ClsCfg) -> torch.nn.Module:
        return T5EncoderClassifier.from_t5(backbone.t5, cfg.pooling, cfg.dropout)

    def head_meta(self, cfg: T5ClsCfg) -> dict[str, Any]:
        return {"pooling": cfg.pooling, "dropout": cfg.dropout}

    def load_model(self, folder: Path, meta: dict[str, Any], tokenizer: Any) -> torch.nn.Module:
        return T5EncoderClassifier.load(folder)


KIND = T5ClsKind()
