"""Backend ``torch``: the model kind's own network in PyTorch, on CPU or GPU (the reference the other
backends are tested against)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from finsent_cli.core.inference.backends import Network
from finsent_cli.core.models.registry import get_kind, kind_of_folder
from finsent_cli.errors import FinsentError
from finsent_cli.labels import ID2LABEL

DEFAULT_MAX_LENGTH = 512


def load_network(folder: Path, meta: dict[str, Any], device: torch.device) -> Network:
    """The folder's network through its model kind, in eval mode on ``device`` (LoRA adapters merged).

    Raises:
        FinsentError: unknown kind or unloadable weights, naming the folder.
    """
    from safetensors import SafetensorError

    try:
        kind = get_kind(kind_of_folder(folder, meta))
    except FinsentError as exc:
        raise FinsentError(f"{folder}: {exc.message}") from None
    try:
        model, tokenizer = kind.load(folder, meta)
    except FinsentError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise FinsentError(f"{folder}: cannot load the model ({exc.__class__.__name__}: {first[:200]})") from None
    id2label = _id2label(model, folder)
    model.to(device).eval()
    return Network(model, tokenizer, kind.class_logits, id2label, _max_length(meta, model, tokenizer))


def _id2label(model: Any, folder: Path) -> dict[Any, Any]:
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "id2label", None):
        return dict(config.id2label)
    if (folder / "config.json").is_file():
        return dict(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("id2label") or {})
    return dict(ID2LABEL)  # a LoRA folder follows finsent's order


def _max_length(meta: dict[str, Any], model: Any, tokenizer: Any) -> int:
    if meta.get("max_length"):
        return int(meta["max_length"])
    limits = [DEFAULT_MAX_LENGTH]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and tok_max < 1_000_000:  # HF uses a huge sentinel for "no limit"
        limits.append(tok_max)
    pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(pos, int):
        limits.append(pos)
    return min(limits)


class EagerBackend:
    """See the module docstring."""

    name = "torch"
    cpu_only = False

    def load(self, folder: Path, meta: dict[str, Any], device: torch.device) -> Network:
        return load_network(folder, meta, device)


BACKEND = EagerBackend()
