"""`finsent finetune --merge RUN --output DIR`: fold a LoRA adapter into its base model."""

from __future__ import annotations

import shutil
from pathlib import Path

from finsent_cli.core.io import atomic_dir
from finsent_cli.core.models.registry import get_kind, kind_of_folder
from finsent_cli.core.runs import TRAIN_HASHES, read_meta, resolve_model_folder
from finsent_cli.errors import FinsentError


def merge_adapter(source: Path, output: Path) -> Path:
    """Merge a LoRA adapter into its base model and write a plain model folder.

    Args:
        source: a run folder (its ``best/``, else ``last/``) or a LoRA model folder.
        output: the merged model folder to write (replaced atomically).

    Returns:
        ``output``.

    Raises:
        FinsentError: ``source`` is missing or holds no LoRA adapter.
    """
    try:
        folder = resolve_model_folder(source)
    except FinsentError:
        folder = Path(source)
    if not (folder / "adapter_config.json").exists():
        raise FinsentError(f"{folder}: no LoRA adapter here (adapter_config.json missing); nothing to merge")
    meta = read_meta(folder)
    kind = get_kind(kind_of_folder(folder, meta))
    merged, tokenizer = kind.load(folder, meta)
    hashes = folder.parent / TRAIN_HASHES  # the run's training texts, for eval's overlap warning
    with atomic_dir(output) as tmp:
        kind.save(merged, tokenizer, tmp, {**meta, "kind": kind.name, "adapter": "none", "merged_from": f"{folder.parent.name}/{folder.name}"})
        if hashes.is_file():
            shutil.copy2(hashes, tmp / TRAIN_HASHES)
    return output
