"""finsent's built-in models: model folders shipped in ``finsent_cli/resources/models/``, named on the
command line (``--model news``) and described by one manifest, ``resources/models/index.json``.

The manifest is written by ``bench/model_cards.py`` (never by hand): per name, the folder, a one-line
description, backbone, adapter, training data, licence, the SHA-256 of every file that decides the model's
outputs (``files``), and the scores and speed measured by ``finsent eval`` (``scores``, ``speed``). The same
script writes each folder's ``README.md`` card from that manifest and the folder's ``eval.json``.

:func:`classify` is the one rule that tells a built-in's name from a path: ``core.runs`` (and so every
command that takes a model), the recipes' model paths and ``finsent report`` all follow it. Each load
checks the folder's files against the manifest (:func:`verify`), once per process and file state (mtime
and size), and refuses a folder that holds a file the manifest does not list.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, Literal

from finsent_cli.core import user_config
from finsent_cli.core.io import sha256_file
from finsent_cli.errors import FinsentError

MODELS_DIR = Path(__file__).resolve().parents[2] / "resources" / "models"
"""Where the built-in model folders and the manifest live (tests point it elsewhere)."""

MANIFEST = "index.json"
DEFAULT_NAME = "default"
"""The built-in used when nothing names a model (see ``core.runs.find_model``)."""

NOT_HASHED = frozenset({"README.md", "eval.json", "eval.csv", "LICENSE"})
"""Files of a model folder that say things about the model without deciding its outputs: the card, its
evaluation, its licence text. Subfolders (an ``onnx/`` export) are not hashed either."""

MODEL_FILES = ("config.json", "adapter_config.json")
"""A folder holding one of these is a model folder (a model, or a peft adapter): see ``core.runs``."""

_verified: dict[Path, tuple[int, int, str]] = {}  # file -> (mtime_ns, size, sha256) last checked good


def manifest_path() -> Path:
    """The manifest file, ``resources/models/index.json``."""
    return MODELS_DIR / MANIFEST


def manifest() -> dict[str, dict[str, Any]]:
    """Every built-in's manifest entry, by name, in the manifest's order.

    Raises:
        FinsentError: the manifest is missing, unreadable, or an entry has a key of the wrong shape (naming
            ``index.json`` and the key): an installation of finsent always ships a whole one.
    """
    path = manifest_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FinsentError(f"{path} missing: reinstall finsent") from None
    except OSError as exc:
        raise FinsentError(f"{path}: cannot be read ({exc.strerror}); reinstall finsent") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FinsentError(f"{path}: not valid JSON ({exc.__class__.__name__}); reinstall finsent") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise FinsentError(f"{path}: expected {{'models': {{NAME: {{...}}}}}}; reinstall finsent")
    for name, item in models.items():
        problem = _entry_problem(item)
        if problem is not None:
            raise FinsentError(f"{path}: models.{name}.{problem}; reinstall finsent")
    return models


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _entry_problem(item: dict[str, Any]) -> str | None:
    """``KEY: what is wrong`` for the first key of a manifest entry that the code reads but has the wrong
    shape, or None. Only the keys read by index (scores' numbers, files' hashes) or iterated are checked:
    the one-line texts are shown as they are."""

    def mapping(key: str) -> bool:
        return key not in item or isinstance(item[key], dict)

    for key in ("files", "licence", "scores", "speed", "capabilities"):
        if not mapping(key):
            return f"{key}: expected an object"
    if "folder" in item and not (isinstance(item["folder"], str) and item["folder"]):
        return "folder: expected a folder name"
    for rel, digest in (item.get("files") or {}).items():
        if not isinstance(digest, str) or len(digest) != 64:
            return f"files.{rel}: expected a SHA-256 (64 hex digits)"
    for key, score in (item.get("scores") or {}).items():
        if not isinstance(score, dict):
            return f"scores.{key}: expected an object"
        for number in ("accuracy", "macro_f1"):
            if not _is_number(score.get(number)):
                return f"scores.{key}.{number}: expected a number"
    speed = (item.get("speed") or {}).get("sentences_per_s")
    if speed is not None and not _is_number(speed):
        return "speed.sentences_per_s: expected a number"
    for key, rate in (item.get("capabilities") or {}).items():
        if not _is_number(rate):
            return f"capabilities.{key}: expected a number"
    return None


def builtin_names() -> list[str]:
    """The names of the built-in models, in the manifest's order."""
    return list(manifest())


def entry(name: str) -> dict[str, Any]:
    """One built-in's manifest entry.

    Raises:
        FinsentError: no built-in of that name (with the closest name and the list).
    """
    models = manifest()
    if name not in models:
        raise FinsentError(f"{name}: no built-in model of that name{suggestion(name, list(models))}")
    return models[name]


def builtin_folder(name: str) -> Path:
    """The folder of the built-in ``name`` (not checked; :func:`verify` checks it).

    Raises:
        FinsentError: no built-in of that name.
    """
    return MODELS_DIR / str(entry(name).get("folder", name))


def suggestion(name: str, names: list[str]) -> str:
    """``; did you mean 'news'? built-ins: default, news`` (the first part only with a close name)."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint}{';' if not close else ''} built-ins: {', '.join(names) or 'none'}"


def looks_like_name(arg: str | Path) -> bool:
    """True for a bare word such as ``news``: no folder separator, no leading ``.`` or ``~``, no suffix.

    A path that does not exist gets the plain "not found" message; a bare word that does not exist is
    checked against the built-in names.
    """
    text = str(arg)
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return bool(text) and not any(s in text for s in seps) and text[0] not in ".~" and "." not in text


def is_builtin(arg: str | Path) -> bool:
    """True when ``arg`` is a bare name listed in the manifest (whether a path of that name exists or not)."""
    return looks_like_name(arg) and str(arg) in manifest()


def holds_model(path: Path) -> bool:
    """True for a model folder (:data:`MODEL_FILES`) or a run folder with one in ``best/`` or ``last/``."""
    return any((d / f).is_file() for d in (path, path / "best", path / "last") for f in MODEL_FILES)


Reading = Literal["builtin", "path", "unknown"]


def classify(arg: str | Path, *, configured: bool = False) -> Reading:
    """How a model argument is read: the one rule every command, recipe and report follows.

    - ``path``: anything but a bare word (``./news``, ``runs/x``, ``model.bin``); a bare word naming an
      existing model or run folder (a folder you trained wins over a built-in of its name); a bare word
      that is no built-in's name and exists.
    - ``builtin``: a built-in's name, unless a model folder of that name is here: a data folder ``news/``
      in the working folder does not hide the built-in ``news`` (write ``./news`` for the folder). A name
      from the user's settings (``configured``) is always the built-in, whatever is in the working folder.
    - ``unknown``: a bare word that is neither a built-in's name nor an existing path (its error is
      :func:`unknown_model_message`).

    Raises:
        FinsentError: the manifest is missing or broken (only for a bare word that is no model folder).
    """
    if not looks_like_name(arg):
        return "path"
    here = Path(str(arg))
    if not configured and holds_model(here):
        return "path"
    if str(arg) in manifest():
        return "builtin"
    return "path" if here.exists() else "unknown"


def close_to_builtin(arg: str | Path) -> bool:
    """True when ``arg`` is a bare name close to a built-in's (a likely typo of one)."""
    return looks_like_name(arg) and bool(difflib.get_close_matches(str(arg), builtin_names(), n=1, cutoff=0.6))


def unknown_model_message(arg: str | Path) -> str:
    """The one line for a bare name that is neither a folder nor a built-in."""
    return f"{arg}: no such folder and no built-in model of that name{suggestion(str(arg), builtin_names())}"




def hashed_files(folder: Path) -> list[str]:
    """The files of a model folder that :func:`verify` checks: every top-level file but :data:`NOT_HASHED`
    and hidden ones, sorted."""
    return sorted(
        p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in NOT_HASHED
    )


def verify(name: str) -> Path:
    """Check the built-in ``name`` against the SHA-256 its manifest records for each file.

    A file already checked in this process, and unchanged since (same mtime and size), is not read again.

    Returns:
        The model folder.

    Raises:
        FinsentError: unknown name, a listed file missing or changed, a file the manifest does not list (a
            weight or config file added to the folder changes the model as surely as a changed one), or a
            manifest that lists no files.
    """
    folder = builtin_folder(name)
    problem = _files_problem(name, folder)
    if problem is not None:
        raise FinsentError(f"built-in model '{name}': {problem}; reinstall finsent")
    return folder


def same_files(folder: Path, name: str) -> bool:
    """True when ``folder`` holds exactly the built-in ``name``'s model files, unchanged (a copy of it).

    Raises:
        FinsentError: no built-in of that name.
    """
    return folder.is_dir() and _files_problem(name, folder) is None


def _files_problem(name: str, folder: Path) -> str | None:
    """What is wrong with ``folder`` as the built-in ``name``'s files (checked against the manifest:
    the same set of :func:`hashed_files`, each with its recorded SHA-256), or None."""
    files = entry(name).get("files")
    if not files:
        return f"its manifest entry lists no files ({manifest_path()})"
    try:
        extra = sorted(set(hashed_files(folder)) - set(files))
    except (FileNotFoundError, NotADirectoryError):
        return f"its folder {folder} is missing"
    if extra:
        return f"{extra[0]} in {folder} is not one of its recorded files (a file was added)"
    for rel, expected in files.items():
        path = folder / rel
        try:
            st = path.stat()
        except FileNotFoundError:
            return f"{rel} is missing from {folder}"
        if _verified.get(path) == (st.st_mtime_ns, st.st_size, expected):
            continue
        if sha256_file(path) != expected:
            _verified.pop(path, None)
            return f"{rel} does not match its recorded hash (the file was changed)"
        _verified[path] = (st.st_mtime_ns, st.st_size, expected)
    return None


def model_bytes(name: str) -> int:
    """Bytes of the built-in's model files (those its manifest hashes; the size its card states), without
    its card, evaluation or an ``onnx/`` export; a missing file counts 0 (:func:`verify` names it)."""
    folder = builtin_folder(name)
    return sum((folder / rel).stat().st_size for rel in entry(name).get("files") or {} if (folder / rel).is_file())


def installed_name(folder: Path) -> str | None:
    """The name of the built-in whose installed folder ``folder`` is (by resolved path), or None."""
    try:
        target = Path(folder).resolve()
        return next((n for n in manifest() if builtin_folder(n).resolve() == target), None)
    except FinsentError:
        return None


def licence_line(name: str) -> str:
    """``news is licensed CC BY-NC-SA 3.0: non-commercial use only, share-alike; see FOLDER/LICENSE``."""
    item = entry(name)
    lic = item.get("licence") or {}
    where = builtin_folder(name) / str(lic.get("file") or "README.md")
    return f"{name} is licensed {lic.get('id', 'unknown')}: {lic.get('summary', 'see its card')}; see {where}"


# ------------------------------------------------------------------------------ finsent models (its core)


def current_default() -> str | None:
    """The name of the built-in used when nothing else names a model: the one the user's settings name,
    else ``default``; None when the settings name a folder rather than a built-in."""
    configured = user_config.configured_model()
    if configured is None:
        return DEFAULT_NAME
    return configured if is_builtin(configured) else None


def describe() -> list[dict[str, Any]]:
    """One row per built-in for ``finsent models``: name, what it is, data, licence, scores (short dataset
    name -> (accuracy, macro-F1)), capability pass rates (``finsent check``), speed, and whether it is the
    current default (:func:`current_default`; whether ``$FINSENT_MODEL`` or ``runs/latest`` come first is
    ``core.runs.ahead_of_settings``)."""
    chosen = current_default()
    rows = []
    for name, item in manifest().items():
        folder = builtin_folder(name)
        lic = item.get("licence") or {}
        speed = (item.get("speed") or {}).get("sentences_per_s")
        scores = item.get("scores") or {}
        rows.append({
            "name": name, "default": name == chosen, "description": item.get("description", ""),
            "backbone": item.get("backbone", ""), "adapter": item.get("adapter", ""),
            "size": model_bytes(name), "training_data": item.get("training_data", ""),
            "licence": lic.get("id", "unknown"), "non_commercial": bool(lic.get("non_commercial")),
            "scores": {s.get("short", key): (s["accuracy"], s["macro_f1"]) for key, s in scores.items()},
            "sentences_per_s": speed, "folder": folder, "capabilities": dict(item.get("capabilities") or {}),
        })  # fmt: skip
    return rows


def use(name: str) -> user_config.Written:
    """Make the built-in ``name`` the user's default model (``model`` in the settings file), after
    checking its files.

    Returns:
        The settings file written, and where an unreadable earlier one was kept.

    Raises:
        FinsentError: no built-in of that name (with the closest), or changed files.
    """
    verify(name)
    return user_config.write_setting("model", name)


def card_text(name: str) -> str:
    """The built-in's card (its folder's ``README.md``).

    Raises:
        FinsentError: no built-in of that name, or no card in its folder.
    """
    path = builtin_folder(name) / "README.md"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FinsentError(f"built-in model '{name}': no card ({path}); reinstall finsent") from None
