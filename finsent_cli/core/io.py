"""Atomic file and folder writes: a crash never leaves a half-written output behind.

Every output finsent writes goes to a temporary sibling first and is renamed into place, so readers
see either the old complete file or the new complete one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finsent_cli.errors import FinsentError, os_error_message

OUTPUT_MARKERS = ("manifest.json", "recipe.yaml", "config.json", "adapter_config.json", "report.json", "finsent.json")
"""Files by which finsent recognises a folder it wrote (and may therefore replace)."""


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    """The process umask.

    Read from ``/proc/self/status`` (Linux 4.7+): setting it and putting it back, the only portable
    way, races with other threads that create files meanwhile (a TensorBoard writer, a data loader).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_modes(folder: Path) -> None:
    """Give what a library wrote into ``folder`` through its own temporary files (transformers writes
    ``model.safetensors`` that way, as 0600) the modes a plain ``open()``/``mkdir()`` would give."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def cache_dir() -> Path:
    """finsent's cache folder: ``$FINSENT_CACHE``, else ``$XDG_CACHE_HOME/finsent``, else ``~/.cache/finsent``.

    What lives there can always be rebuilt (extracted model folders, token files of read-only corpora);
    nothing a run needs to resume is kept only there.
    """
    if os.environ.get("FINSENT_CACHE"):
        return Path(os.environ["FINSENT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "finsent"


def check_writable(path: str | Path, *, folder: bool) -> Path:
    """Fail before any work when an output file or folder could not be written.

    The atomic writers create a temporary sibling of ``path`` and rename it, so what must be writable
    is the nearest existing ancestor of ``path.parent`` (missing folders are created there); an
    existing output folder (a run to resume, an output to replace) is written into as well. This
    really creates and removes a temporary file in each rather than trust ``os.access``, which answers
    from permission bits (root passes them) and misses refusals such as immutable folders on some
    kernels and file systems, or network mounts.

    Args:
        path: the output file or folder.
        folder: ``path`` is an output folder (else an output file).

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        FinsentError: ``path`` is a folder where a file is wanted or the reverse, or a path through a
            file (exit code 2); or the file system refuses to create a file there (exit code 1).
    """
    path = Path(path)
    try:
        if not folder and path.is_dir():
            raise FinsentError(f"{path}: is a folder; give a file path for the output", exit_code=2)
        if folder and path.exists() and not path.is_dir():
            raise FinsentError(f"{path}: is a file, expected an output folder", exit_code=2)
        base = path.parent
        while not base.is_dir():  # the nearest existing ancestor: there the missing folders are made
            if base.exists():
                raise FinsentError(f"{path}: a path through a file ({base} is a file, not a folder)", exit_code=2)
            if base.is_symlink():
                raise FinsentError(f"{path}: a path through a broken symbolic link ({base})", exit_code=2)
            base = base.parent
    except OSError as exc:  # e.g. a folder on the way that may not be searched
        raise FinsentError(f"{path}: cannot write there ({os_error_message(exc)})") from None
    probes = [base, path] if folder and path.is_dir() else [base]
    for where in probes:
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=where)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            raise FinsentError(f"{path}: cannot write in {where} ({reason})") from None
    return path


def check_file_target(path: str | Path) -> Path:
    """Fail early when an output file could not be written: see :func:`check_writable`.

    Raises:
        FinsentError: ``path`` is a folder or a path through a file (exit code 2), or its folder is not
            writable (exit code 1).
    """
    return check_writable(path, folder=False)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the mode a plain ``open()`` would give it (``0o666`` less the umask), not the
    ``0o600`` of the temporary file.

    Raises:
        FinsentError: ``path`` is an existing folder.
        OSError: the write fails (no space left, ...); it names ``path``, and no file is left behind.
    """
    path = Path(path)
    if path.is_dir():
        raise FinsentError(f"{path}: is a folder; give a file path for the output", exit_code=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write() names no file; the user wants the output's name
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_table(path: str | Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as a CSV table with a header atomically: a missing value is an empty cell, a boolean,
    list or mapping its JSON text (a sweep's or a study's results table)."""
    import csv
    import io

    def cell(value: Any) -> str:
        if value is None:
            return ""
        return json.dumps(value) if isinstance(value, bool | list | dict) else str(value)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[cell(row.get(c)) for c in columns] for row in rows])
    atomic_write_text(path, buf.getvalue())


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
        os.chmod(tmp, 0o777 & ~_umask())  # as mkdir() would; mkdtemp makes it 0o700
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    plain_modes(tmp)
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
