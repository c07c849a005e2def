"""Run folders and model folders: what a training command writes, how a model is found again.

A run folder (``finsent finetune``'s ``output_dir``) holds ``recipe.yaml``, ``metrics.jsonl``,
``checkpoints/step-N/`` and the model folders ``best/`` and ``last/``. A model folder is a Hugging Face
folder plus ``finsent.json`` (:data:`META_FILE`), which records the model kind (see
``core.models.registry``). A ``latest`` link beside the newest run points at it; ``predict`` and
``explain`` use ``runs/latest`` when no model is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from finsent_cli.core.io import atomic_write_text
from finsent_cli.errors import FinsentError

META_FILE = "finsent.json"
TRAIN_HASHES = "train_hashes.json"
METRICS_FILE = "metrics.jsonl"  # the training log: one JSON event a line (core.training.loop writes it)
DATA_FILE = "data.json"
MODEL_ENV = "FINSENT_MODEL"

# Keys that may change between a run and its resumption (length, logging); anything else is a mismatch.
RESUMABLE_CHANGES = (
    "output_dir",  # the run being resumed is that folder, however it is spelled (relative, absolute)
    "train.epochs", "train.max_steps", "train.patience", "train.log_every", "train.tensorboard", "train.wandb",
    "train.eval_batch_size", "train.keep_checkpoints", "train.save_every", "train.compile",
    "calibration",  # applied after training, to best/
    "tune",  # finsent tune's search space: read by tune, not by the run
)  # fmt: skip


# ---------------------------------------------------------------------------------------- model folders


def is_model_folder(path: Path) -> bool:
    """True for a folder holding a model (``config.json``) or a peft adapter (``adapter_config.json``)."""
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
    if is_model_folder(p):
        return p
    for sub in ("best", "last"):
        if is_model_folder(p / sub):
            return p / sub
    raise FinsentError(
        f"{p}: not a model folder (no config.json or adapter_config.json, and no best/ or last/ inside); "
        "pass a folder written by finsent finetune"
    )


def is_model_path(path: str | Path) -> bool:
    """True when ``path`` is a model, LoRA or run folder (eval tells models from datasets with it)."""
    try:
        resolve_model_folder(path)
    except FinsentError:
        return False
    return True


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The folder's ``finsent.json`` (``{}`` when absent).

    Raises:
        FinsentError: the file exists but is not a JSON object.
    """
    path = Path(folder) / META_FILE
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FinsentError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict):
        raise FinsentError(f"{path}: expected a JSON object")
    return meta


def resolve_model(
    model: str | Path | None, env: Mapping[str, str] | None = None, runs_dir: str | Path = "runs"
) -> tuple[Path, str]:
    """Pick the model: ``--model``, else ``$FINSENT_MODEL``, else ``runs/latest`` (or ``runs/LATEST``).

    Returns:
        The path (not yet checked to be a model) and where it came from, for messages.

    Raises:
        FinsentError: none of the three gives a model, or ``runs/latest`` points nowhere.
    """
    env = os.environ if env is None else env
    if model:
        return Path(model), "--model"
    if env.get(MODEL_ENV):
        return Path(env[MODEL_ENV]), f"${MODEL_ENV}"
    runs = Path(runs_dir)
    latest = runs / "latest"
    if latest.is_symlink() and not latest.exists():
        raise FinsentError(f"{latest} points to {os.readlink(latest)}, which is gone; pass --model")
    if latest.exists():
        return latest, str(latest)
    pointer = runs / "LATEST"
    if pointer.is_file():
        target = Path(pointer.read_text(encoding="utf-8").strip())
        if not target.is_absolute() and not target.exists() and (runs / target).exists():
            target = runs / target
        return target, str(pointer)
    raise NoModel(
        f"no model: pass --model, set ${MODEL_ENV}, or train one with finsent quickstart or finsent finetune "
        f"({latest} not found)"
    )


class NoModel(FinsentError):
    """Neither ``--model``, ``$FINSENT_MODEL`` nor ``runs/latest`` names a model."""


DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "resources" / "default_model"
"""finsent's shipped model: LoRA and a head over the offline MiniLM, trained on Twitter financial news
(``recipes/default_model.yaml``; the README's "Model card")."""

DEFAULT_MODEL_NOTE = (
    "no --model, $FINSENT_MODEL or runs/latest: using finsent's default model "
    "(MiniLM + LoRA trained on Twitter financial news; README \"Model card\")"
)


def model_fingerprint(folder: Path, *, calibration: bool = False) -> str:
    """SHA-256 over the model folder's files that decide its logits (weights, configs, tokenizer, and
    ``finsent.json`` without the fitted temperature unless ``calibration``), by name and content; a LoRA
    folder's base is named in ``finsent.json``. Exported graphs (``onnx/``) are not part of it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode())
        if path.name == META_FILE:
            try:
                meta = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                meta = None
            if isinstance(meta, dict):
                kept = meta if calibration else {k: v for k, v in meta.items() if k not in ("temperature", "calibration")}
                digest.update(json.dumps(kept, sort_keys=True).encode("utf-8"))
                continue
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def find_model(
    model: str | Path | None,
    env: Mapping[str, str] | None = None,
    runs_dir: str | Path = "runs",
    note: Callable[[str], None] | None = None,
) -> Path:
    """The model folder that ``predict``, ``explain`` and ``serve`` use: :func:`resolve_model`, then
    :func:`resolve_model_folder`, with an error that says where the path came from; when nothing names a
    model, finsent's :data:`DEFAULT_MODEL` (said through ``note``).

    Raises:
        FinsentError: no model and no default model, or the chosen path holds none.
    """
    try:
        path, source = resolve_model(model, env, runs_dir)
    except NoModel:
        if not (DEFAULT_MODEL / META_FILE).is_file():
            raise
        if note is not None:
            note(DEFAULT_MODEL_NOTE)
        return DEFAULT_MODEL
    try:
        return resolve_model_folder(path)
    except FinsentError as exc:
        raise FinsentError(f"{exc.message} (model from {source})") from None


# ------------------------------------------------------------------------------------------ run folders


UPGRADE_KEYS = ("model.kind", "model.head")
"""Keys that an upgrade of finsent added (``model.kind``) or removed (``model.head``) without changing what
a run computes: a run started before the upgrade still resumes. Only their presence on one side is
forgiven; a changed value (``t5_cls`` -> ``t5_text2text``) is a change like any other."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def changed_keys(old_yaml: str, new_yaml: str, ignored: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose value differs between two YAML documents (a key on one side only differs too),
    except ``ignored`` keys and the keys below them."""
    old, new = _flatten(yaml.safe_load(old_yaml) or {}), _flatten(yaml.safe_load(new_yaml) or {})
    missing = object()
    return [
        k for k in sorted(set(old) | set(new))
        if not any(k == i or k.startswith(f"{i}.") for i in ignored) and old.get(k, missing) != new.get(k, missing)
    ]  # fmt: skip


def recipe_differences(old_yaml: str, new_yaml: str) -> list[str]:
    """Dotted keys whose value differs between two resolved recipes (a key on one side only differs too),
    ignoring :data:`RESUMABLE_CHANGES` and :data:`UPGRADE_KEYS` present on one side only."""
    old, new = _flatten(yaml.safe_load(old_yaml) or {}), _flatten(yaml.safe_load(new_yaml) or {})
    one_sided = tuple(k for k in UPGRADE_KEYS if (k in old) != (k in new))
    return changed_keys(old_yaml, new_yaml, (*RESUMABLE_CHANGES, *one_sided))


def check_resumable(run_dir: Path, new_yaml: str, upgrade: Callable[[str], str] | None = None) -> None:
    """Refuse to resume a run whose recipe changed.

    Args:
        run_dir: the run folder (its ``recipe.yaml`` is the recipe it started with).
        new_yaml: the resolved recipe of this call.
        upgrade: rewrites the recorded recipe in today's spelling before comparing (renamed keys).

    Raises:
        FinsentError: listing the recipe keys that changed since the run started.
    """
    recipe = run_dir / "recipe.yaml"
    if not recipe.exists():
        return
    old = recipe.read_text(encoding="utf-8")
    diff = recipe_differences(upgrade(old) if upgrade else old, new_yaml)
    if diff:
        raise FinsentError(
            f"{run_dir}: the recipe differs from the one this run started with ({', '.join(diff)}); "
            "restore it, pick another output_dir, or pass --fresh to start over (the old run is kept aside)"
        )


def check_run_dir(run_dir: Path) -> None:
    """Refuse an ``output_dir`` that is a file, or a non-empty folder that is not a finsent run folder.

    Raises:
        FinsentError: naming the folder.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise FinsentError(f"output_dir: {run_dir} is a file")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "recipe.yaml").exists():
        raise FinsentError(f"output_dir: {run_dir} is not empty and is not a finsent run folder; choose another output_dir")


def prepare_run_dir(run_dir: Path, fresh: bool, latest_dir: Path | None = None) -> Path | None:
    """Create ``run_dir``; with ``fresh``, first move an existing run aside (never delete a model).

    Args:
        run_dir: the run folder.
        fresh: start over. The old run folder is renamed to a timestamped sibling
            (``<name>.old-YYYYmmdd-HHMMSS``) and the ``latest`` link in ``latest_dir`` (default: beside
            ``run_dir``), if it pointed at the old run, follows it: ``latest`` never points at a run
            that has no model yet.

    Returns:
        Where the old run was moved, or None.

    Raises:
        FinsentError: ``run_dir`` is a file or a non-empty folder that is not a run folder.
    """
    check_run_dir(run_dir)
    moved = None
    if fresh and run_dir.is_dir() and any(run_dir.iterdir()):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
        n = 1
        while moved.exists():
            n += 1
            moved = run_dir.with_name(f"{run_dir.name}.old-{stamp}-{n}")
        link = (Path(latest_dir) if latest_dir is not None else run_dir.parent) / "latest"
        followed = link.is_symlink() and link.resolve() == run_dir.resolve()
        os.replace(run_dir, moved)
        if followed:
            point_latest(moved, link.parent)
    run_dir.mkdir(parents=True, exist_ok=True)
    return moved


def point_latest(model_dir: Path, link_dir: Path | None = None) -> None:
    """Make ``<link_dir>/latest`` (default: beside ``model_dir``) a relative symlink to ``model_dir``.

    Where symlinks are not available, ``<link_dir>/LATEST`` holds the absolute path instead. A real
    folder named ``latest`` is left alone.
    """
    link_dir = Path(link_dir) if link_dir is not None else model_dir.parent
    link = link_dir / "latest"
    try:
        if link.is_symlink() or link.exists():
            if not link.is_symlink():
                return
            link.unlink()
        os.symlink(os.path.relpath(model_dir.resolve(), link_dir.resolve()), link, target_is_directory=True)
    except OSError:
        atomic_write_text(link_dir / "LATEST", str(model_dir.resolve()) + "\n")


def check_same_data(run_dir: Path, summary: dict[str, Any], keys: tuple[str, ...], key: str = "data.corpus") -> None:
    """Refuse to resume on other data: the saved data position and held-out examples would mean other ones.
    ``data.json`` (:data:`DATA_FILE`) in the run folder records ``summary`` when the run starts.

    Raises:
        FinsentError: ``keys`` of ``summary`` differ from the run's ``data.json`` (naming the recipe ``key``).
    """

    def shown(v: Any) -> Any:
        return v[:12] if isinstance(v, str) and len(v) == 64 else v  # a SHA-256: its start tells them apart

    path = run_dir / DATA_FILE
    if not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    changed = [f"{k} {shown(old.get(k))} -> {shown(summary[k])}" for k in keys if old.get(k) != summary[k]]
    if changed:
        raise FinsentError(f"{key}: the data changed since the run started ({'; '.join(changed)}); restore it or pass --fresh")
