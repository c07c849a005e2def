"""Labelled training examples: read per split, tokenised, and class weights from their counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch

from finsent_cli.config.finetune import DataSource, FinetuneData
from finsent_cli.core.data.labels import LabelNormaliser, normalise_or_raise
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABEL2ID, LABELS


def load_examples(data: FinetuneData, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Labelled rows ``{"text", "label"}`` per split (``train``, ``valid``, maybe ``test``).

    Rows of a prepared folder also keep ``raw_text`` (the uncleaned form, hashed for eval's overlap check).
    A split given as a list of sources gives rows that also name their ``source``; ``seed`` picks the
    subset of a training source whose weight is not a whole number.

    Raises:
        FinsentError: unreadable files, unknown labels (naming file and line), a missing split.
    """
    from finsent_cli.core.data.readers import read_table
    from finsent_cli.core.data.store import load_prepared

    if data.dir is not None:
        splits = load_prepared(data.dir)
        for name in ("train", "valid"):
            if not splits.get(name):
                raise FinsentError(f"{data.dir}: has no '{name}' split (re-run finsent prep with a validation split)")
        for rows in splits.values():
            for row in rows:
                if row["label"] not in LABEL2ID:
                    raise FinsentError(f"{data.dir}: unknown label {row['label']!r}")
        keep = ("text", "label", "raw_text") + (("target",) if data.target_column else ())
        if data.target_column:
            for name, rows in splits.items():
                missing = next((i for i, r in enumerate(rows) if not str(r.get("target") or "").strip()), None)
                if missing is not None:
                    raise FinsentError(f"{data.dir}: {name} row {missing + 1} has no target; prepare the folder with data.target_column")
        return {k: [{f: r[f] for f in keep if r.get(f) is not None} for r in v] for k, v in splits.items()}
    if not any(data.multi_source(name) for name in ("train", "valid", "test")):
        files = {name: getattr(data, name) for name in ("train", "valid", "test") if getattr(data, name) is not None}
        raw = {
            name: read_table(path, fmt=data.format, text_column=data.text_column, label_column=data.label_column, target_column=data.target_column)[0]
            for name, path in files.items()
        }  # fmt: skip
        norm = LabelNormaliser([r.label for recs in raw.values() for r in recs], data.label_map)
        return {
            name: [{"text": r.text, "label": normalise_or_raise(norm, r.label, r.where), **record_target(r, data.target_column)} for r in recs]
            for name, recs in raw.items()
        }
    read = {
        (name, i): (src, read_table(src.path, fmt=src.format, text_column=src.text_column, label_column=src.label_column, target_column=src.target_column)[0])
        for name in ("train", "valid", "test") for i, src in enumerate(data.sources(name))
    }  # fmt: skip
    values: dict[str, list[object]] = {}  # a source's labels over every split it appears in (-1/0/1 vs class ids)
    for src, recs in read.values():
        values.setdefault(src.label, []).extend(r.label for r in recs)
    out: dict[str, list[dict[str, Any]]] = {}
    for (name, i), (src, recs) in read.items():
        norm = LabelNormaliser(values[src.label], src.label_map)
        out.setdefault(name, []).extend(_source_rows(src, recs, norm, f"data.{name}[{i}]", name == "train", seed))
    return out


def agreeing_texts(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each distinct text once with its label, kept only when every (text, label) pair of it agrees; first-seen
    order. An entity-level file (SEntFiN) read at sentence level: a recipe's ``unique_texts: true``."""
    labels: dict[str, set[str]] = {}
    for text, label in pairs:
        labels.setdefault(text, set()).add(label)
    return [(text, next(iter(ls))) for text, ls in labels.items() if len(ls) == 1]


def _source_rows(src: DataSource, recs: list[Any], norm: LabelNormaliser, key: str, weighted: bool, seed: int) -> list[dict[str, Any]]:
    """One source's rows ``{"text", "label", "source"}``: labels normalised with the source's own map, texts
    made unique when asked, and (for training) repeated or subsampled by its weight (at least one row).

    Raises:
        FinsentError: a label the source's map leaves unmapped (naming the source, every such value and
            the first line).
    """
    import random

    unknown = sorted({str(r.label) for r in recs if norm(r.label) is None})
    if unknown:
        first = next(r.where for r in recs if norm(r.label) is None)
        shown = ", ".join(repr(v) for v in unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        raise FinsentError(
            f"{key} ({src.label}, first at {first}): label{'s' if len(unknown) > 1 else ''} {shown} not mapped; "
            f"{norm.explain_unknown(unknown[0], f'{key}.label_map')}"
        )
    rows = [{"text": r.text, "label": norm(r.label), "source": src.label, **record_target(r, src.target_column)} for r in recs]
    if src.unique_texts:
        rows = [{"text": t, "label": label, "source": src.label} for t, label in agreeing_texts((r["text"], r["label"]) for r in rows)]
    if not weighted or src.weight == 1.0 or not rows:
        return rows
    whole, part = divmod(src.weight * len(rows), len(rows))
    n_extra = max(round(part), 1 if whole == 0 else 0)
    extra = random.Random(f"{seed}:{src.label}").sample(rows, n_extra)  # the same subset on every resume
    return rows * int(whole) + extra


def record_target(rec: Any, column: str | None) -> dict[str, str]:
    """``{"target": ...}`` when the data names targets (an empty one is an error naming file and line)."""
    if column is None:
        return {}
    if not (rec.target or "").strip():
        raise FinsentError(f"{rec.where}: empty target in column '{column}'")
    return {"target": rec.target}


def tokenize_rows(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
    """``{"input_ids", "label"}`` per row, truncated to ``max_length`` tokens; rows with a ``target`` become
    the pair (target, text), of which only the text is cut."""
    if rows and "target" in rows[0]:
        enc = tokenizer([r["target"] for r in rows], [r["text"] for r in rows], truncation="only_second", max_length=max_length)
        return [{"input_ids": x, "label": LABEL2ID[r["label"]]} for x, r in zip(enc["input_ids"], rows, strict=True)]
    ids = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": x, "label": LABEL2ID[r["label"]]} for x, r in zip(ids, rows, strict=True)]


def class_weights(spec: str | list[float], labels: list[int]) -> torch.Tensor | None:
    """Cross-entropy weights: None, ``balanced`` (n / (3 * count), after King & Zeng 2001 / scikit-learn) or given."""
    if spec == "none":
        return None
    if spec == "balanced":
        counts = Counter(labels)
        return torch.tensor([len(labels) / (len(LABELS) * max(counts[i], 1)) for i in range(len(LABELS))])
    return torch.tensor(spec, dtype=torch.float)
