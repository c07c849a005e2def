"""A distillation teacher labels texts with its logits, cached on disk and resumable.

After Hinton et al. 2015 ("Distilling the Knowledge in a Neural Network"): the student learns the
teacher's whole distribution, softened by a temperature, not only its argmax. The teacher is any model
folder the inference loader takes (``core.inference.loading``); its raw logits (no calibration temperature)
are kept, so the distillation temperature can change without labelling again.

The cache is a folder per (teacher, texts): chunks of :data:`CHUNK` texts, each written atomically as it
finishes, so an interrupted labelling resumes at the first missing chunk; when all are there they are
joined into ``logits.npy``. The key hashes the teacher's files (weights, config, ``finsent.json``) and
the texts in order.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finsent_cli.core.io import atomic_write_bytes, atomic_write_json, cache_dir
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS

CHUNK = 2048
"""Texts per cache file: an interruption loses at most this many teacher predictions."""
LOGITS_FILE = "logits.npy"


def teacher_fingerprint(folder: Path) -> str:
    """SHA-256 over the model folder's files that decide its outputs (weights, configs, tokenizer,
    ``finsent.json``), by name and content; a LoRA folder's base is named in ``finsent.json``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def texts_fingerprint(texts: Sequence[str]) -> str:
    """SHA-256 of the texts in order (a text per line, newlines inside a text escaped by JSON)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(json.dumps(text, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def load_teacher(path: str | Path, key: str, device: str = "cpu") -> Any:
    """The teacher as a :class:`~finsent_cli.core.inference.classifier.Classifier` with raw (uncalibrated)
    outputs.

    Raises:
        FinsentError: naming ``key``: not a model, not a three-label sentiment classifier (the student
            learns negative/neutral/positive), or a target-conditioned model (a corpus names no targets).
    """
    from finsent_cli.core.inference.loading import load_classifier

    try:
        clf = load_classifier(path, device=device, calibrated=False)
    except FinsentError as exc:
        raise FinsentError(f"{key}: {exc.message}; a teacher must give the student's labels ({', '.join(LABELS)})") from None
    if clf.target_conditioned:
        raise FinsentError(f"{key}: {clf.path} is target-conditioned (sentiment toward a named company); the corpus names no targets, so it cannot teach")
    return clf


def teacher_logits(
    clf: Any,
    texts: Sequence[str],
    cache_root: Path | None = None,
    *,
    batch_size: int = 64,
    reporter: Reporter | None = None,
    label: str = "teacher",
) -> np.ndarray:
    """The teacher's raw logits for ``texts``, from the cache when it has them.

    Args:
        clf: a loaded teacher (:func:`load_teacher`).
        texts: what to label, in order.
        cache_root: where the cache folders go (default ``<finsent cache>/soft_labels``).
        batch_size: texts per forward pass (length-sorted within each chunk).
        reporter: progress.
        label: how progress names the teacher.

    Returns:
        ``(N, 3)`` float32 logits, columns negative/neutral/positive.
    """
    reporter = reporter or NullReporter()
    root = Path(cache_root) if cache_root is not None else cache_dir() / "soft_labels"
    folder = root / f"{teacher_fingerprint(Path(clf.path))[:16]}-{texts_fingerprint(texts)[:16]}"
    done = folder / LOGITS_FILE
    if done.is_file():
        cached = np.load(done)
        if cached.shape == (len(texts), len(LABELS)):
            reporter.log(f"{label}: {len(texts):,} texts already labelled ({folder})")
            return cached
    chunks = [(i, folder / f"chunk-{i // CHUNK:05d}.npy") for i in range(0, len(texts), CHUNK)]
    todo = [(i, path) for i, path in chunks if not _readable(path, min(CHUNK, len(texts) - i))]
    if len(todo) < len(chunks):
        reporter.log(f"{label}: resuming the labelling in {folder} ({len(chunks) - len(todo)} of {len(chunks)} chunks done)")
    else:
        reporter.log(f"{label}: labelling {len(texts):,} texts -> {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "teacher.json", {"model": str(clf.path), "texts": len(texts), "chunk": CHUNK})
    left = sum(min(CHUNK, len(texts) - i) for i, _ in todo)
    with reporter.task(label, total=left) as task:
        for start, path in todo:
            part = texts[start : start + CHUNK]
            ids, _ = clf.encode(part)
            _save(path, clf.logits_from_ids(ids, batch_size, task))
    logits = np.concatenate([np.load(path) for _, path in chunks]) if chunks else np.zeros((0, len(LABELS)), np.float32)
    _save(done, logits)
    for _, path in chunks:
        path.unlink(missing_ok=True)
    return logits


def _readable(path: Path, rows: int) -> bool:
    try:
        return np.load(path).shape == (rows, len(LABELS))
    except (OSError, ValueError, EOFError):
        return False


def _save(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.float32))
    atomic_write_bytes(path, buf.getvalue())


def soft_targets(logits: Sequence[np.ndarray], temperature: float) -> np.ndarray:
    """The teachers' probabilities at ``temperature``, averaged over teachers: ``(N, 3)``."""
    probs = []
    for z in logits:
        z = np.asarray(z, dtype=np.float64) / temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        probs.append(e / e.sum(axis=1, keepdims=True))
    return np.mean(probs, axis=0).astype(np.float32)
