"""Unlabelled corpora: which files a recipe's corpus names, and their lines.

A corpus is a folder written by ``finsent prep`` with a ``corpus`` section (``train.txt`` and, when it held
some out, ``heldout.txt``) or ``.txt`` / ``.txt.gz`` files, one document a line. T5 pretraining, masked
language modelling and distillation read corpora through here.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from finsent_cli.errors import FinsentError


def corpus_files(paths: Sequence[str | Path], key: str = "data.corpus") -> tuple[list[Path], list[Path]]:
    """``(training files, held-out files)`` of a recipe's corpus entries.

    Args:
        paths: prepared corpus folders or ``.txt`` / ``.txt.gz`` files.
        key: the recipe key, for messages.

    Raises:
        FinsentError: a folder that is not a prepared corpus, or a file that is not ``.txt`` / ``.txt.gz``.
    """
    train: list[Path] = []
    heldout: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            if not (path / "train.txt").is_file():
                raise FinsentError(f"{key}: {path} is not a prepared corpus folder (no train.txt); run finsent prep recipes/prep_corpus.yaml")
            train.append(path / "train.txt")
            if (path / "heldout.txt").is_file():
                heldout.append(path / "heldout.txt")
        elif path.name.endswith((".txt", ".txt.gz")):
            train.append(path)
        else:
            raise FinsentError(f"{key}: {path} is neither a prepared corpus folder nor a .txt / .txt.gz file")
    return train, heldout


def corpus_lines(path: Path) -> Iterator[str]:
    """Non-empty stripped lines of a ``.txt`` / ``.txt.gz`` file.

    Raises:
        FinsentError: bytes that are not UTF-8 (naming the line), or a damaged gzip file.
    """
    opener: Any = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rb") as fh:  # bytes, decoded line by line, so an error names its line
            for number, raw in enumerate(fh, start=1):
                line = raw.decode("utf-8").strip()
                if line:
                    yield line
    except UnicodeDecodeError as exc:
        raise FinsentError(f"{path}: line {number} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FinsentError(f"{path}: damaged gzip file after line {number} ({exc})") from None


def sample_corpus(
    files: Sequence[Path], n: int, *, min_words: int = 1, seed: int = 0, exclude: Collection[str] = ()
) -> tuple[list[str], dict[str, int]]:
    """``n`` distinct lines drawn at random from ``files`` (fewer if the corpus has fewer), in file order.

    Args:
        files: ``.txt`` / ``.txt.gz`` files.
        n: how many lines to draw.
        min_words: shorter lines are skipped.
        seed: the draw (the same seed, files and ``n`` give the same lines).
        exclude: :func:`~finsent_cli.core.data.clean.text_hash` values of texts to leave out (labelled
            validation and test data).

    Returns:
        The lines, and counts: ``read``, ``short``, ``duplicate``, ``excluded``, ``kept``.

    Raises:
        FinsentError: as :func:`corpus_lines`.
    """
    import random

    from finsent_cli.core.data.clean import text_hash

    seen: set[str] = set()
    lines: list[str] = []
    counts = {"read": 0, "short": 0, "duplicate": 0, "excluded": 0}
    for path in files:
        for line in corpus_lines(Path(path)):
            counts["read"] += 1
            if len(line.split()) < min_words:
                counts["short"] += 1
                continue
            key = text_hash(line)
            if key in exclude:
                counts["excluded"] += 1
            elif key in seen:
                counts["duplicate"] += 1
            else:
                seen.add(key)
                lines.append(line)
    picked = sorted(random.Random(seed).sample(range(len(lines)), min(n, len(lines))))
    counts["kept"] = len(picked)
    return [lines[i] for i in picked], counts
