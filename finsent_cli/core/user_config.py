"""The user's finsent settings: one small JSON file, ``config.json``, in finsent's config folder.

Today it holds one key, ``model``: the model ``predict``, ``explain`` and ``serve`` use when no
``--model``, ``$FINSENT_MODEL`` or ``runs/latest`` names one (``finsent models use NAME`` writes it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from finsent_cli.core.io import atomic_write_bytes, atomic_write_json
from finsent_cli.errors import FinsentError

CONFIG_ENV = "FINSENT_CONFIG_DIR"
CONFIG_FILE = "config.json"
BACKUP_SUFFIX = ".bak"


def config_dir() -> Path:
    """finsent's config folder: ``$FINSENT_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/finsent``, else
    ``~/.config/finsent``."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "finsent"


def config_path() -> Path:
    """The settings file, ``config.json`` in :func:`config_dir`."""
    return config_dir() / CONFIG_FILE


REWRITE = "fix or delete it (finsent models use NAME rewrites it, keeping it as config.json.bak)"


def read_config() -> dict[str, Any]:
    """The settings (``{}`` when the file does not exist).

    Raises:
        FinsentError: naming the file: not a JSON object, or a ``model`` that is not a non-empty string.
    """
    path = config_path()
    data, problem = _load(path)
    if problem is not None:
        raise FinsentError(f"{path}: {problem}; {REWRITE}")
    return data


def _load(path: Path) -> tuple[dict[str, Any], str | None]:
    """The settings in ``path`` (``{}`` when it does not exist), or ``{}`` and what is wrong with them."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, None
    except UnicodeDecodeError:
        return {}, "not UTF-8 text"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"not valid JSON ({exc})"
    if not isinstance(data, dict):
        return {}, 'expected a JSON object such as {"model": "news"}'
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        return {}, '"model" must be a model name or folder, e.g. {"model": "news"}'
    return data, None


def configured_model() -> str | None:
    """The ``model`` the settings name, or None."""
    model = read_config().get("model")
    return model.strip() if isinstance(model, str) else None


class Written(NamedTuple):
    """What :func:`write_setting` did."""

    path: Path
    """The settings file."""
    backup: Path | None = None
    """Where the earlier file was kept because it could not be read (``config.json.bak``), else None."""
    problem: str | None = None
    """Why the earlier file could not be read (``not valid JSON (...)``), else None."""


def write_setting(key: str, value: str) -> Written:
    """Set one setting, keeping the others, and write the file atomically.

    A settings file that cannot be read (not JSON, not an object, a bad ``model``) is what the error of
    :func:`read_config` tells the user to rewrite with ``finsent models use NAME``: it is replaced by one
    holding only this setting, and the old one is kept beside it as ``config.json.bak`` (replacing an
    earlier backup).

    Returns:
        The settings file, and the backup and the problem when the old file could not be read.
    """
    path = config_path()
    current, problem = _load(path)
    if problem is not None:
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        atomic_write_bytes(backup, path.read_bytes())  # kept before the file is replaced: never neither
        atomic_write_json(path, {key: value})
        return Written(path, backup, problem)
    atomic_write_json(path, {**current, key: value})
    return Written(path)
