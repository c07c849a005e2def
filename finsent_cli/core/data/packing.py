"""A corpus tokenised once into a memory-mapped token file, then read as packed fixed-length blocks.

Documents (lines) are joined with EOS into one stream, so a block of pretraining data holds no padding.
The file is written in batches (a 35 MB corpus never sits in Python lists), atomically, and named by
the tokenizer's hash, so a different tokenizer gets its own file and an unchanged one is never
re-tokenised. Ids are stored as uint16 when the vocabulary fits (finsent's 16k tokenizer), else uint32.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from finsent_cli.core.data.corpus import corpus_lines
from finsent_cli.core.io import atomic_write_json
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.errors import FinsentError

TOKENIZER_FILES = ("spiece.model", "tokenizer.json")


def tokenizer_hash(folder: str | Path) -> str:
    """SHA-256 over the tokenizer's model files (what decides the ids).

    Raises:
        FinsentError: the folder holds none of :data:`TOKENIZER_FILES`.
    """
    digest = hashlib.sha256()
    found = [Path(folder) / n for n in TOKENIZER_FILES if (Path(folder) / n).is_file()]
    if not found:
        raise FinsentError(f"{folder}: no tokenizer here ({' or '.join(TOKENIZER_FILES)} missing)")
    for path in found:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def token_file(
    source: Path, tokenizer: Any, tokenizer_key: str, cache_dir: Path, *, batch_lines: int = 2048,
    reporter: Reporter | None = None,
) -> np.memmap:  # fmt: skip
    """The token stream of ``source`` (one document per line, ``.txt`` or ``.txt.gz``), building it once.

    Args:
        source: the corpus file.
        tokenizer: a Hugging Face tokenizer with an EOS token.
        tokenizer_key: :func:`tokenizer_hash` of its folder (names the cache file).
        cache_dir: where ``<source name>.<path hash>.<key>.tokens`` and its ``.json`` go.
        batch_lines: lines tokenised at a time.
        reporter: progress.

    Returns:
        A read-only memory map of the ids: each document followed by EOS.

    Raises:
        FinsentError: a missing source, no EOS token, or a corpus without a single token.
    """
    reporter = reporter or NullReporter()
    source = Path(source)
    if not source.is_file():
        raise FinsentError(f"{source}: corpus file not found")
    if tokenizer.eos_token_id is None:
        raise FinsentError("the tokenizer has no EOS token (documents are joined with it)")
    dtype = _dtype(len(tokenizer))
    stat = source.stat()
    # the name holds the source's full path too: two corpora can both have a train.txt
    where = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]
    stem = f"{source.name}.{where}.{tokenizer_key[:16]}"
    data, meta_path = Path(cache_dir) / f"{stem}.tokens", Path(cache_dir) / f"{stem}.json"
    meta = {"source": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "tokenizer": tokenizer_key, "dtype": dtype.name}
    if data.is_file() and meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in meta} == meta:
            return np.memmap(data, dtype=dtype, mode="r")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{data.name}.", suffix=".tmp", dir=cache_dir)
    n_tokens = n_docs = 0
    eos = tokenizer.eos_token_id
    try:
        with os.fdopen(fd, "wb") as fh, reporter.task(f"tokenize {source.name}") as task:
            batch: list[str] = []
            for line in itertools.chain(corpus_lines(source), [None]):  # None: flush the last batch
                if line is not None:
                    batch.append(line)
                if batch and (line is None or len(batch) >= batch_lines):
                    ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
                    docs = [doc for doc in ids if doc]
                    flat = np.fromiter((t for doc in docs for t in (*doc, eos)), dtype=dtype)
                    flat.tofile(fh)
                    n_tokens += len(flat)
                    n_docs += len(docs)
                    task.advance(len(batch))
                    batch = []
        if n_docs == 0:
            raise FinsentError(f"{source}: the corpus holds no text the tokenizer turns into tokens")
        os.replace(tmp, data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_json(meta_path, {**meta, "tokens": n_tokens, "documents": n_docs})
    reporter.log(f"tokenized {source.name}: {n_docs:,} documents, {n_tokens:,} tokens ({dtype.name}) -> {data}")
    return np.memmap(data, dtype=dtype, mode="r")


def packed_blocks(tokens: np.ndarray, block_length: int, *, where: str = "corpus") -> np.ndarray:
    """``(N, block_length)`` view of the stream (the tail shorter than a block is left out).

    Raises:
        FinsentError: the stream is shorter than one block.
    """
    n = len(tokens) // block_length
    if n == 0:
        raise FinsentError(f"{where}: {len(tokens):,} tokens, fewer than one block of {block_length}")
    return tokens[: n * block_length].reshape(n, block_length)


class PackedBlocks:
    """Fixed-length blocks over one or more memory-mapped token streams; item ``i`` is ``(i, block)``."""

    def __init__(self, streams: list[np.ndarray], block_length: int, names: list[str]) -> None:
        self.parts = [packed_blocks(s, block_length, where=n) for s, n in zip(streams, names, strict=True)]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])  # (parts + 1,)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        part = int(np.searchsorted(self.starts, i, side="right")) - 1
        return i, self.parts[part][i - self.starts[part]]
