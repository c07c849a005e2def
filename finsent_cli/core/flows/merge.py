"""`finsent finetune --merge RUN --output DIR`: fold an adapter (LoRA, QLoRA, a Mamba fusion module) and its
base model into one plain full-precision model folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from finsent_cli.core.io import atomic_dir
from finsent_cli.core.models.adapters import get_adapter
from finsent_cli.core.models.hf_encoder.model import record_logit_temperature
from finsent_cli.core.models.registry import get_kind, kind_of_folder
from finsent_cli.core.runs import TRAIN_HASHES, read_meta, resolve_model_folder
from finsent_cli.errors import FinsentError


def merge_adapter(source: Path, output: Path) -> Path:
    """Merge an adapter into its base model and write a plain model folder (loadable without the base).

    Args:
        source: a run folder (its ``best/``, else ``last/``) or an adapter model folder.
        output: the merged model folder to write (replaced atomically).

    Returns:
        ``output``.

    Raises:
        FinsentError: ``source`` is missing or holds no adapter to merge.
    """
    try:
        folder = resolve_model_folder(source)
    except FinsentError:
        folder = Path(source)
    meta = read_meta(folder)
    name = str(meta.get("adapter") or ("lora" if (folder / "adapter_config.json").exists() else "none"))
    if name == "none" or not folder.is_dir():
        raise FinsentError(f"{folder}: no adapter here (a complete model folder, or not a model); nothing to merge")
    if not get_adapter(name).mergeable:
        raise FinsentError(f"{folder}: a {name} adapter cannot be merged into its base")
    kind = get_kind(kind_of_folder(folder, meta))
    merged, tokenizer = kind.load(folder, meta, full_precision=True)
    hashes = folder.parent / TRAIN_HASHES  # the run's training texts, for eval's overlap warning
    with atomic_dir(output) as tmp:
        kind.save(merged, tokenizer, tmp, {**meta, "kind": kind.name, "adapter": "none", "adapter_config": None, "merged_from": f"{folder.parent.name}/{folder.name}"})
        record_logit_temperature(tmp, meta.get("temperature"))  # the calibration, for loaders outside finsent
        if hashes.is_file():
            shutil.copy2(hashes, tmp / TRAIN_HASHES)
    return output
