"""Read and write Hugging Face T5 folders (``config.json`` + safetensors) without going through transformers.

A folder written by ``save_t5`` loads with ``transformers.T5ForConditionalGeneration.from_pretrained``
and ``load_t5`` reads folders written by transformers (4.x or 5.x; single-file or sharded safetensors,
or a legacy ``pytorch_model.bin``), so users can start from public T5 checkpoints.

Tying: transformers 5.x always writes ``tie_word_embeddings: true`` and keeps the output scaling in
``scale_decoder_outputs``; whether the LM head is tied is decided here by the weights themselves
(a distinct ``lm_head.weight`` in the file means untied), the scaling by ``scale_decoder_outputs``
(falling back to ``tie_word_embeddings``, the 4.x convention).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from finsent_cli.core.io import atomic_write_text

from .config import FinT5Config
from .model import FinT5ForConditionalGeneration

logger = logging.getLogger(__name__)

# Keys that some T5 checkpoints carry and that this layout does not use: copies of the shared
# embedding, and a cross-attention bias that T5 never reads.
_IGNORED_KEYS = (
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
)
_T5_MODEL_TYPES = ("t5", "mt5")


class T5LoadError(ValueError):
    """A folder is not a loadable T5 checkpoint; the message names what is missing or wrong."""


def write_t5_folder(folder: str | Path, config: dict, state: dict[str, Tensor]) -> Path:
    """Write ``config.json`` and ``model.safetensors``, each atomically (temporary file + rename), leaving
    other files in ``folder`` (a tokenizer, say) alone.

    Args:
        folder: destination (created if needed).
        config: the ``config.json`` contents.
        state: tensors by Hugging Face key name (no two sharing storage).

    Returns:
        The folder path.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    tmp = out / ".model.safetensors.tmp"
    try:
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, out / "model.safetensors")
    finally:
        tmp.unlink(missing_ok=True)
    return out


def save_t5(model: FinT5ForConditionalGeneration, folder: str | Path) -> Path:
    """Write ``model`` as a Hugging Face T5 folder (``config.json`` + ``model.safetensors``, see
    :func:`write_t5_folder`).

    Args:
        model: the model to save.
        folder: destination (created if needed).

    Returns:
        The folder path.
    """
    cfg = model.config.to_hf_dict()
    cfg["dtype"] = str(model.dtype).removeprefix("torch.")
    state = dict(model.state_dict())
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")  # same tensor as shared.weight; safetensors refuses shared storage
    return write_t5_folder(folder, cfg, state)


def read_t5_config(folder: Path) -> dict:
    """``config.json`` of a T5 folder.

    Raises:
        T5LoadError: missing, not JSON, or not a T5 (``model_type``).
    """
    path = folder / "config.json"
    if not path.is_file():
        raise T5LoadError(
            f"{folder} is not a T5 folder: config.json is missing "
            "(expected a Hugging Face T5 folder with config.json and model.safetensors)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise T5LoadError(f"{path} is not valid JSON: {err}") from err
    model_type = data.get("model_type")
    if model_type not in _T5_MODEL_TYPES:
        raise T5LoadError(f"{path}: model_type is {model_type!r}, expected one of {list(_T5_MODEL_TYPES)}")
    return data


def _read_weights(folder: Path) -> dict[str, Tensor]:
    single = folder / "model.safetensors"
    if single.is_file():
        return load_file(str(single))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        state: dict[str, Tensor] = {}
        for shard in shards:
            if not (folder / shard).is_file():
                raise T5LoadError(f"{folder}: shard {shard} named in {index.name} is missing")
            state.update(load_file(str(folder / shard)))
        return state
    legacy = folder / "pytorch_model.bin"
    if legacy.is_file():
        return torch.load(legacy, map_location="cpu", weights_only=True)
    raise T5LoadError(
        f"{folder}: no weights found (looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin)"
    )


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_t5(
    folder: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> FinT5ForConditionalGeneration:
    """Load a Hugging Face T5 folder (finsent's own or one written by transformers).

    Args:
        folder: directory with ``config.json`` and weights.
        dtype: convert the weights to this dtype (default: float32).
        device: move the model there (default: CPU).

    Returns:
        The model in eval mode.

    Raises:
        T5LoadError (a ValueError): the folder does not exist, lacks config.json or weights, is not a T5
            (``model_type``), or its weights miss keys, carry unknown keys or have the wrong shapes.
    """
    path = Path(folder)
    if not path.is_dir():
        raise T5LoadError(f"{path} is not a directory (expected a Hugging Face T5 folder)")
    data = read_t5_config(path)
    try:
        cfg = FinT5Config.from_hf_dict(data)
    except ValueError as err:
        raise T5LoadError(f"{path / 'config.json'}: {err}") from err
    state = _read_weights(path)

    if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    head = state.get("lm_head.weight")
    tied = head is None or ("shared.weight" in state and torch.equal(head, state["shared.weight"]))
    if tied != cfg.tie_word_embeddings:
        # keep the output scaling the config asked for; only the sharing follows the weights
        cfg = cfg.replace(tie_word_embeddings=tied, scale_decoder_outputs=cfg.scale_decoder_outputs)
    if tied:
        state.pop("lm_head.weight", None)
    for key in _IGNORED_KEYS:
        state.pop(key, None)

    model = FinT5ForConditionalGeneration(cfg)
    expected = {k: v for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise T5LoadError(f"{path}: weights are missing {len(missing)} T5 key(s): {_names(missing)}")
    if unexpected:
        raise T5LoadError(
            f"{path}: weights hold {len(unexpected)} key(s) this T5 layout does not use: {_names(unexpected)}"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape
    ]
    if wrong:
        raise T5LoadError(f"{path}: shape mismatch with config.json: {_names(wrong)}")
    model.load_state_dict(state, strict=False)  # lm_head.weight is absent when tied; checked above
    model = model.to(dtype=dtype or torch.float32, device=device)
    logger.info("loaded T5 from %s (tied=%s, scale_decoder_outputs=%s)", path, tied, cfg.scale_decoder_outputs)
    return model.eval()
