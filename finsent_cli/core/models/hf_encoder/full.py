"""Adapter kind ``none`` (``model.adapter.kind: none``): a full fine-tune, every weight of the classifier trains.

The folder is a complete ``save_pretrained`` folder with the classifier's code and ``auto_map``
(:func:`~finsent_cli.core.models.hf_encoder.model.save_classifier`), so transformers loads it without
finsent. It lives beside the classifier it saves, not in the adapter registry (``core.models.adapters``),
which the classifier's own module imports for its fusion modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from finsent_cli.core.models.adapters import BaseBuilder
from finsent_cli.core.models.hf_encoder.model import save_classifier  # registers the Auto classes that load() uses


class FullFinetune:
    """See the module docstring."""

    name = "none"
    mergeable = False

    def base_options(self, cfg: Any) -> dict[str, Any]:
        return {}

    def attach(self, model: torch.nn.Module, cfg: Any) -> torch.nn.Module:
        return model

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        save_classifier(model, folder)  # with its code, so transformers loads it without finsent

    def load(
        self, folder: Path, cfg: Any, base: BaseBuilder, *, trainable: bool, full_precision: bool
    ) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        # config.json's logit_temperature is the calibration for loaders outside finsent; finsent applies
        # finsent.json's temperature itself (or not: calibrated=False), so its network gives raw logits
        return AutoModelForSequenceClassification.from_pretrained(folder, logit_temperature=1.0)


ADAPTER = FullFinetune()
