"""Loading a fine-tuned sentiment classifier and running it fast on CPU or GPU.

:func:`load_classifier` accepts the three things ``finsent finetune`` writes (see "Run folders and model folders" in
the README): a plain model folder, a LoRA adapter folder (applied with peft on top of its ``base_model``
and merged for inference), or a run folder (its ``best/``, else ``last/``). The model's own label names
are mapped onto finsent's ``negative | neutral | positive`` order, so a model that stores them in a
different order (``0 = positive``) still yields probabilities in finsent order.

Inference sorts texts by token length and pads each batch only to its longest member (dynamic padding),
which on short headlines is several times faster than padding everything to ``max_length``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from finsent_cli.config.base import LABELS
from finsent_cli.core.models.heads import read_meta
from finsent_cli.core.models.hub import resolve_model_path
from finsent_cli.core.progress import Task
from finsent_cli.errors import FinsentError

DEFAULT_MAX_LENGTH = 512


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def resolve_model_folder(path: str | Path) -> Path:
    """The model folder behind ``path``: itself, or a run folder's ``best/`` (else ``last/``).

    Raises:
        FinsentError: ``path`` is missing, a file, or holds no model.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FinsentError(f"{p}: model folder not found")
    if not p.is_dir():
        raise FinsentError(f"{p}: expected a model folder, found a file")
    if _is_model_folder(p):
        return p
    for sub in ("best", "last"):
        if _is_model_folder(p / sub):
            return p / sub
    raise FinsentError(
        f"{p}: not a model folder (no config.json or adapter_config.json, and no best/ or last/ inside); "
        "pass a folder written by finsent finetune"
    )




def map_labels(id2label: dict[Any, Any], label_map: dict[str, str] | None = None) -> dict[int, str]:
    """Map a model's ``id2label`` onto finsent labels.

    Names are matched case-insensitively. Generic names (``LABEL_0``) say nothing about sentiment, so
    they are accepted only through an explicit ``label_map`` keyed by name or by id.

    Args:
        id2label: the model config's mapping from output index to label name.
        label_map: optional ``{model name or id: finsent label}``.

    Returns:
        ``{output index: finsent label}`` covering all three labels.

    Raises:
        FinsentError: not three labels, or names that do not map onto negative/neutral/positive.
    """
    lm = {str(k).strip().lower(): str(v).strip().lower() for k, v in (label_map or {}).items()}
    names = ", ".join(str(v) for _, v in sorted((int(k), v) for k, v in id2label.items()))
    out: dict[int, str] = {}
    for idx, name in id2label.items():
        key = str(name).strip().lower()
        out[int(idx)] = lm.get(key) or lm.get(str(idx)) or key
    if len(out) != 3 or sorted(out.values()) != sorted(LABELS):
        hint = "" if lm else ' (map them in finsent.json: "label_map": {"LABEL_0": "negative", ...})'
        raise FinsentError(f"model labels {names} are not negative/neutral/positive{hint}")
    return out


@dataclass
class Classifier:
    """A loaded sentiment classifier.

    Attributes:
        model: the network in eval mode; ``model(input_ids=, attention_mask=)`` returns logits (or an
            output with ``.logits``) of shape ``(B, 3)``.
        tokenizer: its tokenizer (a fast one: explain needs offsets).
        id2label: model output index -> finsent label.
        max_length: longest input in tokens, special tokens included; longer texts are truncated.
        meta: the folder's ``finsent.json``.
        path: the model folder.
        device: where the model runs.
    """

    model: Any
    tokenizer: Any
    id2label: dict[int, str]
    max_length: int
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        label2idx = {label: idx for idx, label in self.id2label.items()}
        self._order = [label2idx[label] for label in LABELS]  # model column for each finsent label
        pad = self.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids with special tokens, cut to ``max_length``.

        Returns:
            The ids per text and whether each text was truncated.
        """
        if not texts:
            return [], []
        # One token of headroom shows which texts overflow without a second tokenisation pass.
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length + 1, return_special_tokens_mask=True
        )
        ids_out, truncated = [], []
        for ids, special in zip(enc["input_ids"], enc["special_tokens_mask"]):
            cut = len(ids) > self.max_length
            if cut:
                last_content = max(i for i, s in enumerate(special) if not s)
                ids = ids[:last_content] + ids[last_content + 1 :]
            ids_out.append(list(ids))
            truncated.append(cut)
        return ids_out, truncated

    @torch.inference_mode()
    def _forward(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        from finsent_cli.core.training.data import pad_collate

        padded = pad_collate([{"input_ids": ids} for ids in batch], self._pad_id)  # (B, T) each
        out = self.model(input_ids=padded["input_ids"].to(self.device), attention_mask=padded["attention_mask"].to(self.device))
        logits = out.logits if hasattr(out, "logits") else (out[0] if isinstance(out, (tuple, list)) else out)
        probs = torch.softmax(logits.float(), dim=-1)  # (B, 3) in model order
        return probs[:, self._order].cpu().numpy()  # (B, 3) in finsent order

    def probs_from_ids(
        self, ids: Sequence[Sequence[int]], batch_size: int | None = 32, task: Task | None = None
    ) -> np.ndarray:
        """Class probabilities for already-encoded inputs.

        Args:
            ids: token ids per input (special tokens included).
            batch_size: inputs per forward pass; ``None`` runs everything in one pass.
            task: progress task advanced by the number of inputs done.

        Returns:
            ``(N, 3)`` float array, columns negative/neutral/positive, rows in input order.
        """
        n = len(ids)
        probs = np.zeros((n, len(LABELS)), dtype=np.float32)
        if n == 0:
            return probs
        order = sorted(range(n), key=lambda i: len(ids[i]), reverse=True)  # longest first: OOM shows up at once
        step = batch_size or n
        for start in range(0, n, step):
            chunk = order[start : start + step]
            probs[chunk] = self._forward([ids[i] for i in chunk])
            if task is not None:
                task.advance(len(chunk))
        return probs

    def predict(
        self, texts: Sequence[str], batch_size: int = 32, task: Task | None = None
    ) -> tuple[np.ndarray, list[bool]]:
        """Probabilities and truncation flags for raw texts.

        Returns:
            ``(N, 3)`` probabilities in finsent label order and a truncated flag per text.
        """
        ids, truncated = self.encode(texts)
        return self.probs_from_ids(ids, batch_size, task), truncated

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32, task: Task | None = None) -> np.ndarray:
        """``(N, 3)`` class probabilities (negative, neutral, positive) for ``texts``, in input order."""
        return self.predict(texts, batch_size, task)[0]


def pick_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is checked.

    Raises:
        FinsentError: an unknown device name, or CUDA asked for but unavailable.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise FinsentError(f"unknown device '{device}' (use cpu, cuda, cuda:N or auto)", exit_code=2) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FinsentError(f"device '{device}' asked for, but no CUDA GPU is available; use --device cpu", exit_code=2)
    return dev


def _load_network(folder: Path, meta: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = json.loads((folder / "config.json").read_text(encoding="utf-8")) if (folder / "config.json").is_file() else {}
    if meta or config.get("model_type") == "finsent_classifier":
        # Folders written by finsent finetune: the training engine knows their head and LoRA base.
        from finsent_cli.core.models.heads import build_classifier_from_folder

        model, tokenizer, _ = build_classifier_from_folder(folder)
        return (model.merge_and_unload() if hasattr(model, "merge_and_unload") else model), tokenizer
    tok_source = folder if (folder / "tokenizer_config.json").is_file() else resolve_model_path(meta.get("base_model", folder))
    tokenizer = AutoTokenizer.from_pretrained(str(tok_source))
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        adapter_cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        base_name = meta.get("base_model") or adapter_cfg.get("base_model_name_or_path")
        if not base_name:
            raise FinsentError(f"{folder}: LoRA adapter without a base model (set base_model in finsent.json)")
        finsent_order = dict(enumerate(LABELS))
        base = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(base_name), num_labels=3, id2label=finsent_order,
            label2id={v: k for k, v in finsent_order.items()},
        )  # fmt: skip
        # Merging folds B @ A into the base weights: inference then costs what the plain model costs.
        return PeftModel.from_pretrained(base, str(folder)).merge_and_unload(), tokenizer
    return AutoModelForSequenceClassification.from_pretrained(str(folder)), tokenizer


def _id2label(model: Any, folder: Path) -> dict[Any, Any]:
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "id2label", None):
        return dict(config.id2label)
    if (folder / "config.json").is_file():
        return dict(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("id2label") or {})
    return {i: label for i, label in enumerate(LABELS)}  # a LoRA folder follows the contract's order


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


def load_classifier(path: str | Path, device: str = "cpu", label_map: dict[str, str] | None = None) -> Classifier:
    """Load a model folder, LoRA adapter folder, or run folder for inference.

    Args:
        path: the folder.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (CUDA when available).
        label_map: maps generic model label names (``LABEL_0``) to finsent labels; ``finsent.json`` may
            hold one under ``label_map`` too.

    Returns:
        The classifier in eval mode on ``device``.

    Raises:
        FinsentError: missing folder, not a model, not a classifier, unloadable weights, or labels that
            are not negative/neutral/positive.
    """
    folder = resolve_model_folder(path)
    meta = read_meta(folder)
    task = meta.get("task", "classification")
    if task != "classification":
        raise FinsentError(f"{folder}: a '{task}' model, not a sentiment classifier; fine-tune it first")
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars would garble predict's stdout-only contract
    try:
        model, tokenizer = _load_network(folder, meta)
    except FinsentError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise FinsentError(f"{folder}: cannot load the model ({exc.__class__.__name__}: {first[:200]})") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    id2label = map_labels(_id2label(model, folder), label_map or meta.get("label_map"))
    dev = pick_device(device)
    model.to(dev).eval()
    return Classifier(model, tokenizer, id2label, _max_length(meta, model, tokenizer), meta, folder, dev)
