"""The one loader of sentiment models: any run, model or adapter folder -> a :class:`Classifier`.

It accepts what ``finsent finetune`` writes (see "Run folders and model folders" in the README): a model
folder, a LoRA adapter folder, or a run folder (its ``best/``, else ``last/``), and any Hugging Face
sequence classifier. The folder's model kind (``finsent.json``, or inferred for older folders, see
``core.models.registry.kind_of_folder``) does the loading; this module only dispatches and turns
failures into one readable error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finsent_cli.core.inference.classifier import Classifier, map_labels, pick_device
from finsent_cli.core.models.registry import get_kind, kind_of_folder
from finsent_cli.core.runs import read_meta, resolve_model_folder
from finsent_cli.errors import FinsentError
from finsent_cli.labels import ID2LABEL

DEFAULT_MAX_LENGTH = 512


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


def load_classifier(
    path: str | Path, device: str = "cpu", label_map: dict[str, str] | None = None, *, calibrated: bool = True
) -> Classifier:
    """Load a model folder, LoRA adapter folder, or run folder for inference.

    Args:
        path: the folder.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (CUDA when available).
        label_map: maps generic model label names (``LABEL_0``) to finsent labels; ``finsent.json`` may
            hold one under ``label_map`` too.
        calibrated: apply the temperature that fine-tuning fitted on its validation split
            (``temperature`` in ``finsent.json``); off gives the network's raw probabilities.

    Returns:
        The classifier in eval mode on ``device``.

    Raises:
        FinsentError: missing folder, not a model, not a classifier, unknown kind, unloadable weights,
            or labels that are not negative/neutral/positive.
    """
    from safetensors import SafetensorError

    folder = resolve_model_folder(path)
    meta = read_meta(folder)
    task = meta.get("task", "classification")
    if task != "classification":
        raise FinsentError(f"{folder}: a '{task}' model, not a sentiment classifier; fine-tune it first")
    dev = pick_device(device)
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
    id2label = map_labels(_id2label(model, folder), label_map or meta.get("label_map"))
    model.to(dev).eval()
    return Classifier(
        model, tokenizer, id2label, _max_length(meta, model, tokenizer), meta, folder, dev,
        logits_fn=kind.class_logits, temperature=_temperature(meta, folder) if calibrated else 1.0,
    )  # fmt: skip


def _temperature(meta: dict[str, Any], folder: Path) -> float:
    value = meta.get("temperature", 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1000:
        raise FinsentError(f"{folder}/finsent.json: temperature must be a positive number, got {value!r}")
    return float(value)
