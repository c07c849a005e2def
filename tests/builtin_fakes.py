"""Fake built-in models for tests: a models folder with a manifest, pointed at by ``builtin.MODELS_DIR``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from finsent_cli.core.models import builtin

NEWS_LICENCE = {
    "id": "CC BY-NC-SA 3.0",
    "summary": "non-commercial use only, share-alike",
    "non_commercial": True,
    "file": "LICENSE",
}
MIT = {"id": "MIT", "summary": "free for any use", "non_commercial": False, "file": "README.md"}


def stub_model(folder: Path) -> Path:
    """A folder that passes for a model folder (``config.json``, weights, ``finsent.json``) without loading."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "bert"}\n', encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"not really weights")
    (folder / "finsent.json").write_text('{"kind": "hf_encoder", "task": "classification"}\n', encoding="utf-8")
    return folder


def install(
    monkeypatch: pytest.MonkeyPatch,
    root: Path,
    sources: dict[str, Path | None],
    extra: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Make ``root`` the built-in models folder: each name's folder copied from its source (a stub model
    for None), a card, and a manifest recording every file's hash. Returns ``root``."""
    models = {}
    for name, src in sources.items():
        folder = root / name
        if src is None:
            stub_model(folder)
        else:
            shutil.copytree(src, folder)
        (folder / "README.md").write_text(
            f"# the {name} model card\n\nscores and licence of {name}\n", encoding="utf-8"
        )
        models[name] = {
            "folder": name, "description": f"{name}: a test model", "backbone": "tiny BERT", "adapter": "none",
            "training_data": f"{name} data", "trained_on": f"{name} texts",
            "licence": NEWS_LICENCE if name == "news" else MIT,
            "files": {rel: builtin.sha256_file(folder / rel) for rel in builtin.hashed_files(folder)},
            **(extra or {}).get(name, {}),
        }  # fmt: skip
    write_manifest(root, models)
    monkeypatch.setattr(builtin, "MODELS_DIR", root)
    return root


def write_manifest(root: Path, models: dict[str, dict[str, Any]]) -> None:
    """Write ``root/index.json`` listing ``models`` (name -> entry)."""
    (root / builtin.MANIFEST).write_text(json.dumps({"models": models}, indent=2), encoding="utf-8")
