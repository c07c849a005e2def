"""Run folders and model folders: what a training command writes, how a model is found again.

A run folder (``finsent finetune``'s ``output_dir``) holds ``recipe.yaml``, ``metrics.jsonl``,
``checkpoints/step-N/`` and the model folders ``best/`` and ``last/``. A model folder is a Hugging Face
folder plus ``finsent.json`` (:data:`META_FILE`), which records the model kind (see
``core.models.registry``). A ``latest`` link beside the newest run points at it; ``predict`` and
``explain`` use ``runs/latest`` when no model is given.

Wherever a model folder is accepted, a built-in model's name is too (``--model news``,
``core.models.builtin``): :func:`resolve_model_folder` is the one place that turns a name into its folder.
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

from finsent_cli.core import user_config
from finsent_cli.core.io import atomic_write_text
from finsent_cli.core.models import builtin
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
    return any((path / f).is_file() for f in builtin.MODEL_FILES)


def resolve_model_folder(path: str | Path, *, configured: bool = False) -> Path:
    """The model folder behind ``path``: itself, or a run folder's ``best/`` (else ``last/``); a built-in
    model's name, that built-in's folder (its files checked against their recorded hashes).

    Which of the two a bare name is follows :func:`builtin.classify`: a model or run folder of that name
    in the working folder wins; any other path of a built-in's name (a data folder ``news/``) does not
    hide the built-in; a name from the user's settings (``configured``) is always the built-in.

    Raises:
        FinsentError: ``path`` is missing (a bare name: no built-in of that name either, with the closest
            one), a file, or holds no model; or a built-in whose files were changed.
    """
    reading = builtin.classify(path, configured=configured)
    if reading == "builtin":
        return builtin.verify(str(path))
    if reading == "unknown":
        raise FinsentError(builtin.unknown_model_message(path))
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
    """True when ``path`` is a model, LoRA or run folder or a built-in model's name (eval tells models from
    datasets with it; :func:`builtin.classify` decides, so a data folder named like a built-in is the
    built-in, and ``./news`` the folder). A bare name that exists nowhere but is close to a built-in's
    counts too, so that its error is the model's ("did you mean 'news'?"), not a dataset's."""
    reading = builtin.classify(path)
    if reading == "builtin":
        return True
    if reading == "unknown":
        return builtin.close_to_builtin(path)
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
    """Pick the model: ``--model``, else ``$FINSENT_MODEL``, else ``runs/latest`` (or ``runs/LATEST``), else
    the user's settings (``model`` in ``config.json``, written by ``finsent models use NAME``).

    Returns:
        The path or built-in name (not yet checked to be a model) and where it came from, for messages.

    Raises:
        FinsentError: none of the four gives a model (:class:`NoModel`), ``runs/latest`` points nowhere,
            or the settings file cannot be read.
    """
    if model:
        return Path(model), "--model"
    ahead = _ahead(env, runs_dir)
    if ahead:
        path, source, _ = ahead[0]
        if path is None:  # a dangling runs/latest
            raise FinsentError(f"{source} points to {os.readlink(source)}, which is gone; pass --model")
        return path, source
    configured = user_config.configured_model()
    if configured:
        return Path(configured), str(user_config.config_path())
    raise NoModel(
        f"no model: pass --model, set ${MODEL_ENV}, or train one with finsent quickstart or finsent finetune "
        f"({Path(runs_dir) / 'latest'} not found)"
    )


def _ahead(env: Mapping[str, str] | None, runs_dir: str | Path) -> list[tuple[Path | None, str, str]]:
    """``$FINSENT_MODEL`` and ``runs/latest`` (or ``runs/LATEST``), each when present, in the order
    :func:`resolve_model` takes them: (the path, None for a dangling link; where it comes from; how to get
    past it)."""
    env = os.environ if env is None else env
    found: list[tuple[Path | None, str, str]] = []
    if env.get(MODEL_ENV):
        found.append((Path(env[MODEL_ENV]), f"${MODEL_ENV}", "unset it"))
    runs = Path(runs_dir)
    latest = runs / "latest"
    pointer = runs / "LATEST"
    if latest.is_symlink() or latest.exists():
        found.append((latest if latest.exists() else None, str(latest), "pass --model, or work in another folder"))
    elif pointer.is_file():
        target = Path(pointer.read_text(encoding="utf-8").strip())
        if not target.is_absolute() and not target.exists() and (runs / target).exists():
            target = runs / target
        found.append((target, str(pointer), "pass --model, or work in another folder"))
    return found


def ahead_of_settings(env: Mapping[str, str] | None = None, runs_dir: str | Path = "runs") -> list[str]:
    """What ``predict``, ``explain`` and ``serve`` would use, without ``--model``, before the model of the
    user's settings (``finsent models use``): one line each for ``$FINSENT_MODEL`` when set and
    ``runs/latest`` when it exists here, first the one that wins, each with how to get past it."""
    lines = []
    for path, source, advice in _ahead(env, runs_dir):
        what = f"{source} is set ({path})" if source.startswith("$") else f"{source} exists"
        lines.append(f"{what}: predict, explain and serve use it before your default; {advice}")
    return lines


class NoModel(FinsentError):
    """Neither ``--model``, ``$FINSENT_MODEL``, ``runs/latest`` nor the user's settings name a model."""


DEFAULT_MODEL = builtin.MODELS_DIR / builtin.DEFAULT_NAME
"""The installed folder of finsent's shipped model, the built-in ``default``: LoRA and a head over the
offline MiniLM, trained on Twitter financial news (``recipes/default_model.yaml``; its card is the folder's
``README.md``). For tests and benches that want the real files; :func:`find_model` asks the manifest
(``builtin.verify``) instead, so a models folder pointed elsewhere is followed."""

NEWS_PROSE = "phrasebank_50agree"
"""The manifest's score key that stands for formal news prose in the default model's note."""


def default_model_note() -> str:
    """The line ``predict``, ``explain`` and ``serve`` print when they fall back to the built-in ``default``:
    what it is, how well it reads news prose, and which built-ins read it better (all from the manifest)."""
    models = builtin.manifest()

    def prose(item: dict[str, Any]) -> float:
        accuracy = ((item.get("scores") or {}).get(NEWS_PROSE) or {}).get("accuracy")
        return float(accuracy) if isinstance(accuracy, int | float) else 0.0

    own = models.get(builtin.DEFAULT_NAME, {})
    facts = [(own.get("licence") or {}).get("id"), f"trained on {own['trained_on']}" if own.get("trained_on") else None]
    what = ", ".join(f for f in facts if f) + (f": {prose(own):.2f} on news prose" if prose(own) else "")
    better = sorted((n for n in models if prose(models[n]) > prose(own)), key=lambda n: -prose(models[n]))
    switch = f"lists stronger ones (`--model {better[0]}`)" if better else "lists the built-in models"
    return f"using finsent's default model ({what}); `finsent models` {switch}"


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
    :func:`resolve_model_folder`, with an error that says where the path came from (a name from the user's
    settings is always a built-in's); when nothing names a model, the built-in ``default``, its files
    checked like any built-in's (said through ``note``, with how to pick another).

    Raises:
        FinsentError: no model and no default model, the chosen path holds none, a built-in's files were
            changed, or the built-ins' manifest is missing.
    """
    try:
        path, source = resolve_model(model, env, runs_dir)
    except NoModel:
        if builtin.DEFAULT_NAME not in builtin.manifest():  # the manifest itself missing: one line, no model
            raise
        folder = builtin.verify(builtin.DEFAULT_NAME)  # always checked, as any built-in is
        if note is not None:
            note(default_model_note())
        return folder
    try:
        return resolve_model_folder(path, configured=source == str(user_config.config_path()))
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
