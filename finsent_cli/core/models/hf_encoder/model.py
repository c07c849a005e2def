"""Sequence-classification head on any Hugging Face encoder, saved as a regular model folder.

The config and model classes (``FinsentClassifierConfig``, ``FinsentClassifier``: an encoder, pooling, an
optional fusion module, dropout and a linear layer) live in ``modeling_finsent.py``, a self-contained file
that :func:`save_classifier` copies into every full model folder and names in ``config.json``'s
``auto_map``: such a folder loads with ``AutoModelForSequenceClassification.from_pretrained(folder,
trust_remote_code=True)`` where finsent is not installed, and without ``trust_remote_code`` where finsent is
imported (``import finsent_cli`` registers the classes with the Auto classes once transformers' Auto classes
are imported; importing this module registers them at once). This module adds what only finsent needs:
building a classifier over a pretrained backbone, saving it, and recording the fitted temperature. The
model kind around it (LoRA, saving, loading) is ``hf_encoder/kind.py``.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

from transformers import AutoConfig, PreTrainedConfig, PreTrainedModel

from finsent_cli.core.io import atomic_write_text
from finsent_cli.core.models.hf_encoder import modeling_finsent
from finsent_cli.core.models.hf_encoder.modeling_finsent import (
    ENCODER_DECODER_TYPES,
    FinsentClassifier,
    FinsentClassifierConfig,
    _encoder_class,
    _without_pooler,
    register_auto_classes,
)
from finsent_cli.core.models.registry import quiet_transformers
from finsent_cli.errors import FinsentError
from finsent_cli.labels import ID2LABEL, LABEL2ID, LABELS

__all__ = [
    "AUTO_MAP", "ENCODER_DECODER_TYPES", "FinsentClassifier", "FinsentClassifierConfig", "forget_origin",
    "new_classifier", "record_logit_temperature", "save_classifier",
]  # fmt: skip

register_auto_classes()

_MODULE = modeling_finsent.__name__.rpartition(".")[2]
MODELING_FILE = f"{_MODULE}.py"
"""The file of the classes' code in a model folder."""
AUTO_MAP: dict[str, str] = {
    "AutoConfig": f"{_MODULE}.{FinsentClassifierConfig.__name__}",
    "AutoModelForSequenceClassification": f"{_MODULE}.{FinsentClassifier.__name__}",
}
"""``config.json``'s ``auto_map`` of a full model folder: where ``trust_remote_code=True`` finds the classes."""


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
        encoder_class = _encoder_class(backbone_config)
    except ValueError as exc:  # an encoder-decoder other than T5: the message names the recipe key
        raise FinsentError(str(exc)) from None
    try:
        encoder = encoder_class.from_pretrained(backbone, config=backbone_config, **quantized)
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


def save_classifier(model: PreTrainedModel, folder: Path) -> None:
    """``save_pretrained`` of a complete classifier, and for a :class:`FinsentClassifier` its code:
    ``modeling_finsent.py`` beside the weights and :data:`AUTO_MAP` in ``config.json``, so the folder loads in
    transformers without finsent (``trust_remote_code=True``). A fusion module's code is not copied: such a
    folder tells the user to install finsent (see ``modeling_finsent``)."""
    if isinstance(model.config, FinsentClassifierConfig):
        model.config.auto_map = dict(AUTO_MAP)
    model.save_pretrained(folder)
    if isinstance(model.config, FinsentClassifierConfig):
        shutil.copyfile(modeling_finsent.__file__, Path(folder) / MODELING_FILE)


def record_logit_temperature(folder: Path, temperature: float | None) -> None:
    """Write a fitted temperature (None: no calibration, 1.0) into a ``finsent_classifier`` folder's
    ``config.json`` as ``logit_temperature``, so that loaders outside finsent (a transformers pipeline) give
    the probabilities that finsent gives with ``finsent.json``'s ``temperature``. Folders without such a
    ``config.json`` (a LoRA adapter, another model type) are left alone."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict) or config.get("model_type") != FinsentClassifierConfig.model_type:
        return
    config["logit_temperature"] = float(temperature) if temperature is not None else 1.0
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")  # as save_pretrained writes it
