"""A distillation teacher labels texts with its logits, cached on disk and resumable.

After Hinton et al. 2015 ("Distilling the Knowledge in a Neural Network"): the student learns the
teacher's whole distribution, softened by a temperature, not only its argmax. The teacher is any model
folder the inference loader takes (``core.inference.loading``); its raw logits (no calibration temperature)
are kept, so the distillation temperature can change without labelling again.

The cache is a folder per (teacher, texts) holding chunks of :data:`CHUNK` texts, each written atomically as
it finishes, so an interrupted labelling resumes at the first missing chunk, two runs that share the
cache write the same bytes, and several processes split the chunks between them. The key hashes the
teacher's files (weights, config, tokenizer; ``finsent.json`` less the calibration, which does not touch
the logits) and the texts in order.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finsent_cli.core.io import atomic_write_bytes, atomic_write_json, cache_dir
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import model_fingerprint
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS

CHUNK = 2048
"""Texts per cache file: an interruption loses at most this many teacher predictions."""


def texts_fingerprint(texts: Sequence[str]) -> str:
    """SHA-256 of the texts in order (a text per line, newlines inside a text escaped by JSON)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(json.dumps(text, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def load_teacher(path: str | Path, key: str, device: str = "cpu") -> Any:
    """The teacher as a :class:`~finsent_cli.core.inference.classifier.Classifier` with raw (uncalibrated)
    outputs (``core.flows.distill.check_teachers`` refuses unfit folders before this runs).

    Raises:
        FinsentError: naming ``key``: the folder does not load as a three-label sentiment classifier.
    """
    from finsent_cli.core.inference.loading import load_classifier

    try:
        clf = load_classifier(path, device=device, calibrated=False)
    except FinsentError as exc:
        raise FinsentError(f"{key}: {exc.message}; a teacher must give the student's labels ({', '.join(LABELS)})") from None
    return clf


def teacher_logits(
    folder: Path,
    texts: Sequence[str],
    load: Callable[[], Any],
    cache_root: Path | None = None,
    *,
    batch_size: int = 64,
    reporter: Reporter | None = None,
    label: str = "teacher",
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] = lambda: None,
    fingerprint: str | None = None,
) -> np.ndarray:
    """The teacher's raw logits for ``texts``, from the cache when it has them.

    Args:
        folder: the teacher's model folder (what the cache key hashes).
        texts: what to label, in order.
        load: returns the loaded teacher (:func:`load_teacher`); called only when something is left to label.
        cache_root: where the cache folders go (default ``<finsent cache>/soft_labels``).
        batch_size: texts per forward pass (length-sorted within each chunk).
        reporter: progress.
        label: how progress names the teacher.
        rank, world: this process and how many share the labelling (chunk ``j`` is labelled by ``j % world``).
        barrier: waits for every process (after each labelled its chunks, before any reads them all).
        fingerprint: :func:`~finsent_cli.core.runs.model_fingerprint` of ``folder``, when the caller has it already.

    Returns:
        ``(N, 3)`` float32 logits, columns negative/neutral/positive.

    Raises:
        FinsentError: a chunk is still missing after every process labelled its share.
    """
    reporter = reporter or NullReporter()
    root = Path(cache_root) if cache_root is not None else cache_dir() / "soft_labels"
    where = root / f"{(fingerprint or model_fingerprint(Path(folder)))[:16]}-{texts_fingerprint(texts)[:16]}"
    chunks = [(i, where / f"chunk-{i // CHUNK:05d}.npy", min(CHUNK, len(texts) - i)) for i in range(0, len(texts), CHUNK)]
    loaded = [_load(path, rows) for _, path, rows in chunks]
    missing = [j for j, part in enumerate(loaded) if part is None]
    if not missing:
        reporter.log(f"{label}: {len(texts):,} texts already labelled ({where})")
    elif len(missing) < len(chunks):
        reporter.log(f"{label}: resuming the labelling in {where} ({len(chunks) - len(missing)} of {len(chunks)} chunks done)")
    else:
        reporter.log(f"{label}: labelling {len(texts):,} texts -> {where}")
    mine = [j for j in missing if j % world == rank]
    if mine:
        clf = load()
        where.mkdir(parents=True, exist_ok=True)
        atomic_write_json(where / "teacher.json", {"model": str(folder), "texts": len(texts), "chunk": CHUNK})
        with reporter.task(label, total=sum(chunks[j][2] for j in mine)) as task:
            for j in mine:
                start, path, rows = chunks[j]
                ids, _ = clf.encode(texts[start : start + rows])
                loaded[j] = clf.logits_from_ids(ids, batch_size, task)
                _save(path, loaded[j])
    barrier()
    for j in missing:  # what the other processes labelled
        start, path, rows = chunks[j]
        loaded[j] = loaded[j] if loaded[j] is not None else _load(path, rows)
        if loaded[j] is None:
            raise FinsentError(f"{path}: a chunk of the teacher's labels is missing or damaged; run again to label it")
    return np.concatenate(loaded).astype(np.float32) if loaded else np.zeros((0, len(LABELS)), np.float32)


def _load(path: Path, rows: int) -> np.ndarray | None:
    """A cached chunk of ``rows`` logits, or None when it is missing or damaged."""
    try:
        part = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    return part if part.shape == (rows, len(LABELS)) else None


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
