"""Atomic file and folder writes: a crash never leaves a half-written output behind.

Every output finsent writes goes to a temporary sibling first and is renamed into place, so readers
see either the old complete file or the new complete one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finsent_cli.errors import FinsentError

OUTPUT_MARKERS = ("manifest.json", "recipe.yaml", "config.json", "adapter_config.json", "report.json", "finsent.json")
"""Files by which finsent recognises a folder it wrote (and may therefore replace)."""


def check_file_target(path: str | Path) -> Path:
    """Fail early when an output file path names an existing folder.

    Raises:
        FinsentError: ``path`` is a folder (exit code 2).
    """
    path = Path(path)
    if path.is_dir():
        raise FinsentError(f"{path}: is a folder; give a file path for the output", exit_code=2)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Raises:
        FinsentError: ``path`` is an existing folder.
    """
    path = check_file_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = True, only_outputs: bool = True) -> Iterator[Path]:
    """Build a folder under a temporary name and move it to ``path`` only when the block succeeds.

    Args:
        path: the final folder.
        overwrite: replace an existing folder at ``path`` (the old one is removed only after the new
            one is complete).
        only_outputs: replace only folders finsent wrote (see :data:`OUTPUT_MARKERS`); off for
            folders inside a run folder that finsent owns (checkpoints, ``best/``, ``last/``).

    Yields:
        The temporary folder to write into.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        FinsentError: ``path`` is a file, or a non-empty folder that finsent did not write (no
            :data:`OUTPUT_MARKERS` file in it): replacing it could delete a user's work.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(path)
    if path.exists() and not path.is_dir():
        raise FinsentError(f"{path}: is a file, expected an output folder", exit_code=2)
    if only_outputs and path.is_dir() and any(path.iterdir()) and not any((path / m).exists() for m in OUTPUT_MARKERS):
        raise FinsentError(f"{path}: exists and is not a finsent output folder; remove it or choose another output path", exit_code=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
