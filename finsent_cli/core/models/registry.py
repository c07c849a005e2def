"""The one place where a model kind plugs in.

A model kind is everything finsent needs to train and run one family of sentiment models: build it
from the recipe's ``model`` section, compute its training loss and its class logits, save it as a
Hugging Face folder and load it back. Each kind is one module exposing ``KIND`` (a :class:`ModelKind`);
:data:`KINDS` maps the names that recipes (``model.kind``) and ``finsent.json`` (``"kind"``) use to
those modules, imported only when asked for. Nothing outside this registry branches on the kind:
the fine-tuning flow, the inference loader, eval, predict and explain all go through :func:`get_kind`.

Adding a kind: one module here, its recipe schema in ``finsent_cli.config.models``, a line in
:data:`KINDS`, and a recipe.
"""

from __future__ import annotations

import difflib
import importlib
import json
from pathlib import Path
from typing import Any, Protocol

import torch

from finsent_cli.core.quiet import quiet_dependencies
from finsent_cli.errors import FinsentError

KINDS: dict[str, str] = {
    "hf_encoder": "finsent_cli.core.models.hf_encoder.kind",
    "hf_auto": "finsent_cli.core.models.hf_auto",
    "t5_cls": "finsent_cli.core.models.t5_cls",
    "t5_text2text": "finsent_cli.core.models.t5_text2text",
}
"""Kind name -> module holding its ``KIND``."""


class ModelKind(Protocol):
    """What a model kind provides. ``model`` is the kind's own ``nn.Module`` (possibly peft-wrapped)."""

    name: str
    trainable: bool
    """False for kinds that are only loaded (folders that finsent did not train)."""
    pair_inputs: bool
    """Whether :meth:`features` reads (target, text) pairs from rows with a ``target`` (sentiment toward a
    named company)."""

    def build(self, cfg: Any, *, resume: Path | None = None) -> tuple[torch.nn.Module, Any]:
        """``(model in train mode, tokenizer)`` from the recipe's model section, or from a checkpoint
        folder when resuming. Raises FinsentError naming the recipe key that is wrong."""

    def meta(self, cfg: Any) -> dict[str, Any]:
        """What ``finsent.json`` records about a model built from ``cfg`` (portable: names, no paths)."""

    def features(self, tokenizer: Any, rows: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
        """Tokenised examples of labelled rows (``text``, ``label``): at least ``input_ids`` and ``label``
        (the class id), plus whatever :meth:`collate` and :meth:`loss` need (decoder targets, say)."""

    def collate(self, features: list[dict[str, Any]], tokenizer: Any) -> dict[str, torch.Tensor]:
        """A padded training batch of :meth:`features` output."""

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], weights: torch.Tensor | None) -> torch.Tensor:
        """The scalar training loss of a batch from :meth:`collate`."""

    def class_logits(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` class logits, columns in the order of the model's ``id2label``."""

    def save(self, model: torch.nn.Module, tokenizer: Any, folder: Path, meta: dict[str, Any]) -> None:
        """Write a complete model folder (weights or adapter, config, tokenizer, ``finsent.json``)."""

    def load(
        self, folder: Path, meta: dict[str, Any], *, trainable: bool = False, full_precision: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        """``(model, tokenizer)`` from a model folder; LoRA adapters merged unless ``trainable``;
        ``full_precision`` asks for a plain fp32 model (a QLoRA adapter over the unquantised base: ``--merge``)."""

    def claims(self, config: dict[str, Any], meta: dict[str, Any]) -> bool:
        """Whether a folder without a recorded kind (its ``config.json`` and ``finsent.json``) is of this kind."""


class SequenceClassifierKind:
    """The shared half of kinds whose network is a sequence classifier called as ``model(input_ids=,
    attention_mask=)``: token ids and a class id per example, right-padded batches, logits from its
    output, cross-entropy loss, a ``save_pretrained`` folder. Kinds add ``name``, ``trainable``,
    ``build``, ``meta`` and ``load``."""

    pair_inputs = True  # tokenize_rows encodes (target, text) pairs: the encoder reads both

    def features(self, tokenizer: Any, rows: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
        from finsent_cli.core.data.examples import tokenize_rows

        return tokenize_rows(tokenizer, rows, cfg.max_length)

    def collate(self, features: list[dict[str, Any]], tokenizer: Any) -> dict[str, torch.Tensor]:
        from finsent_cli.core.data.collate import pad_collate

        return pad_collate(features, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], weights: torch.Tensor | None) -> torch.Tensor:
        return cross_entropy(self.class_logits(model, batch["input_ids"], batch["attention_mask"]), batch["labels"], weights)

    def class_logits(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return forward_logits(model, input_ids, attention_mask)

    def save(self, model: torch.nn.Module, tokenizer: Any, folder: Path, meta: dict[str, Any]) -> None:
        save_hf_folder(model, tokenizer, folder, meta)


def get_kind(name: str) -> ModelKind:
    """The kind registered under ``name``.

    Raises:
        FinsentError: no such kind (with the closest registered name).
    """
    if name not in KINDS:
        close = difflib.get_close_matches(name, list(KINDS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(KINDS)})"
        raise FinsentError(f"unknown model kind '{name}'{hint}")
    return importlib.import_module(KINDS[name]).KIND


def kind_of_folder(folder: Path, meta: dict[str, Any]) -> str:
    """The kind of a model folder: ``finsent.json``'s ``kind``; for folders written before finsent recorded
    it, the first kind in :data:`KINDS` whose ``claims(folder, meta)`` is true (``hf_auto`` claims any)."""
    if meta.get("kind"):
        return str(meta["kind"])
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        config = {}
    config = config if isinstance(config, dict) else {}
    return next(name for name in KINDS if get_kind(name).claims(config, meta))


def output_logits(out: Any) -> torch.Tensor:
    """The logits of a forward pass that returned an output object, a tuple or a bare tensor."""
    if hasattr(out, "logits"):
        return out.logits
    return out[0] if isinstance(out, (tuple, list)) else out


def forward_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Class logits of a sequence classifier called as ``model(input_ids=, attention_mask=)``."""
    return output_logits(model(input_ids=input_ids, attention_mask=attention_mask))


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean (optionally class-weighted) cross-entropy, computed in fp32 under autocast too."""
    w = weights.to(logits.device) if weights is not None else None
    return torch.nn.functional.cross_entropy(logits.float(), labels, weight=w)


def save_hf_folder(model: Any, tokenizer: Any, folder: Path, meta: dict[str, Any]) -> None:
    """The usual model folder: ``save_pretrained`` of the model (or adapter) and tokenizer, and ``finsent.json``."""
    from finsent_cli.core.io import atomic_write_json
    from finsent_cli.core.runs import META_FILE

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    atomic_write_json(folder / META_FILE, meta)


def quiet_transformers() -> None:
    """No progress bars or library chatter on finsent's output: see :mod:`finsent_cli.core.quiet`."""
    quiet_dependencies()
