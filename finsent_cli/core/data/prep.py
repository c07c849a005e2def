"""`finsent prep`: raw labelled files or an unlabelled corpus -> a clean, split, documented folder.

Labelled output: ``train`` / ``valid`` / ``test`` files (Parquet or JSONL) with columns ``text``, ``label``
(``negative|neutral|positive``), ``target`` (entity-level data), ``raw_text``, ``source``; and a
``manifest.json`` with source hashes, counts per split and label, and what was dropped and why.
Corpus output: ``train.txt`` and ``heldout.txt`` (one item a line) and a manifest.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finsent_cli.config.loader import write_resolved_recipe
from finsent_cli.config.prep import LabelledData, PrepRecipe
from finsent_cli.core.data.clean import Cleaner, normalised_key
from finsent_cli.core.data.labels import LabelNormaliser
from finsent_cli.core.data.readers import RawRecord, iter_lines, read_hf_dataset, read_table, replaced_message
from finsent_cli.core.data.store import write_split
from finsent_cli.core.io import atomic_dir, atomic_write_json, sha256_file
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS

SPLITS = ("train", "valid", "test")
_PRIORITY = {"test": 0, "valid": 1, "train": 2}


@dataclass
class PrepResult:
    """What a prep run produced."""

    output_dir: Path
    counts: dict[str, dict[str, int]]
    dropped: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)




def run_prep(recipe: PrepRecipe, reporter: Reporter | None = None) -> PrepResult:
    """Run a prep recipe and write its output folder atomically.

    Raises:
        FinsentError: bad input (file, column, label, encoding, over-long text), naming where.
    """
    reporter = reporter or NullReporter()
    if recipe.corpus is not None:
        return _prep_corpus(recipe, reporter)
    return _prep_labelled(recipe, reporter)


# --- labelled -------------------------------------------------------------------------------------


def _read_sources(data: LabelledData, reporter: Reporter) -> tuple[dict[str, list[RawRecord]], list[dict[str, Any]], int]:
    cols = {"text_column": data.text_column, "label_column": data.label_column, "target_column": data.target_column}
    if data.hf_dataset:
        reporter.log(f"loading Hugging Face dataset {data.hf_dataset}")
        return read_hf_dataset(data.hf_dataset, data.hf_config, cols), [{"hf_dataset": data.hf_dataset}], 0
    files = {"pool": data.source} if data.source else {s: getattr(data, s) for s in SPLITS if getattr(data, s)}
    out: dict[str, list[RawRecord]] = {}
    sources = []
    replaced = 0
    for split, path in files.items():
        records, replaced_here = read_table(path, fmt=data.format, encoding_errors=data.encoding_errors, **cols)
        if replaced_here:
            reporter.warn(replaced_message(str(path), replaced_here.lines, replaced_here.first_line))
        replaced += replaced_here.lines
        out[split] = records
        sources.append({"split": split, "path": str(path), "sha256": sha256_file(path), "rows": len(records)})
        reporter.log(f"read {len(records):,} rows from {path}")
    return out, sources, replaced


def _normalise(
    records: list[RawRecord], norm: LabelNormaliser, cleaner: Cleaner, recipe: PrepRecipe, dropped: Counter[str]
) -> list[dict[str, Any]]:
    cfg, data = recipe.clean, recipe.data
    assert data is not None
    rows = []
    for rec in records:
        label = norm(rec.label)
        if label is None:
            if data.unknown_labels == "drop":
                dropped["unknown_label"] += 1
                continue
            raise FinsentError(f"{rec.where}: {norm.explain_unknown(rec.label)}; or set data.unknown_labels=drop")
        text = cleaner(rec.text)
        if not text:
            dropped["empty_text"] += 1
            continue
        if len(text) > cfg.max_chars:
            if cfg.too_long == "error":
                raise FinsentError(
                    f"{rec.where}: text is {len(text):,} characters, over clean.max_chars={cfg.max_chars}; "
                    "set clean.too_long=drop or clean.too_long=truncate"
                )
            if cfg.too_long == "drop":
                dropped["too_long"] += 1
                continue
            dropped["truncated (kept)"] += 1
            text = text[: cfg.max_chars]
        row: dict[str, Any] = {"text": text, "label": label}
        if data.target_column:
            row["target"] = rec.target or ""
        if cfg.keep_raw:
            row["raw_text"] = rec.text
        row["source"] = rec.where
        rows.append(row)
    return rows


def _dedup(rows: list[dict[str, Any]], recipe: PrepRecipe, dropped: Counter[str], conflicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Remove duplicates and resolve same-text-different-label conflicts within one split."""
    cfg = recipe.dedup
    if not (cfg.exact or cfg.normalised):
        return rows
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        key = normalised_key(row["text"]) if cfg.normalised else row["text"]
        groups[(key, row.get("target", ""))].append(row)
    kept = []
    for group in groups.values():
        labels = Counter(r["label"] for r in group)
        if len(labels) == 1:
            kept.append(group[0])
            for r in group[1:]:
                dropped["duplicate_exact" if r["text"] == group[0]["text"] else "duplicate_normalised"] += 1
            continue
        dropped["_conflicting_texts"] += 1
        if len(conflicts) < 10:
            conflicts.append({"text": group[0]["text"][:200], "labels": dict(labels), "sources": [r["source"] for r in group][:5]})
        first_by_label = {}
        for r in group:
            first_by_label.setdefault(r["label"], r)
        if cfg.conflicts == "keep":
            kept.extend(first_by_label.values())
            dropped["duplicate_in_conflict"] += len(group) - len(first_by_label)
            continue
        top = labels.most_common()
        if cfg.conflicts == "majority" and top[0][1] > top[1][1]:
            kept.append(first_by_label[top[0][0]])
            dropped["conflict_minority"] += len(group) - 1
        else:
            dropped["conflict"] += len(group)
    order = {id(r): i for i, r in enumerate(rows)}
    return sorted(kept, key=lambda r: order[id(r)])


def _drop_cross_split(splits: dict[str, list[dict[str, Any]]], dropped: Counter[str]) -> None:
    """A text in valid/test must not be in a split of lower priority (test > valid > train)."""
    seen: set[tuple[str, str]] = set()
    for name in sorted(splits, key=lambda s: _PRIORITY.get(s, 3)):
        keep = []
        for row in splits[name]:
            key = (normalised_key(row["text"]), row.get("target", ""))
            if key in seen:
                dropped[f"in_{name}_and_a_held_out_split"] += 1
                continue
            keep.append(row)
        splits[name] = keep
        seen.update((normalised_key(r["text"]), r.get("target", "")) for r in keep)


def _split(rows: list[dict[str, Any]], data: LabelledData) -> dict[str, list[dict[str, Any]]]:
    from sklearn.model_selection import train_test_split

    labels = [r["label"] for r in rows]
    idx = list(range(len(rows)))
    out: dict[str, list[int]] = {}
    try:
        rest = idx
        if data.test_size > 0:
            rest, out["test"] = train_test_split(idx, test_size=data.test_size, random_state=data.seed, stratify=labels)
        if data.valid_size > 0:
            rest_labels = [labels[i] for i in rest]
            frac = data.valid_size / (1.0 - data.test_size)
            rest, out["valid"] = train_test_split(rest, test_size=frac, random_state=data.seed, stratify=rest_labels)
        out["train"] = rest
    except ValueError as exc:
        raise FinsentError(f"cannot split {len(rows)} rows with data.test_size={data.test_size}, data.valid_size={data.valid_size}: {exc}") from None
    return {name: [rows[i] for i in sorted(out[name])] for name in SPLITS if name in out}


def _prep_labelled(recipe: PrepRecipe, reporter: Reporter) -> PrepResult:
    data = recipe.data
    assert data is not None
    raw, sources, replaced = _read_sources(data, reporter)
    norm = LabelNormaliser([r.label for recs in raw.values() for r in recs], data.label_map)
    cleaner = Cleaner(recipe.clean)
    dropped: Counter[str] = Counter()
    conflicts: list[dict[str, Any]] = []
    normalised = {name: _dedup(_normalise(recs, norm, cleaner, recipe, dropped), recipe, dropped, conflicts) for name, recs in raw.items()}
    if "pool" in normalised:
        splits = _split(normalised.pop("pool"), data)
    else:
        splits = normalised
        if recipe.dedup.across_splits == "drop_from_train":
            _drop_cross_split(splits, dropped)
    counts = {name: {label: sum(r["label"] == label for r in rows) for label in LABELS} for name, rows in splits.items()}
    for name, c in counts.items():
        if sum(c.values()) == 0:
            raise FinsentError(f"split '{name}' is empty after cleaning and deduplication (dropped: {dict(dropped)})")
    n_conflicts = dropped.pop("_conflicting_texts", 0)
    if n_conflicts:
        reporter.warn(
            f"{n_conflicts} texts appear with different labels; handled by dedup.conflicts={recipe.dedup.conflicts} "
            "(examples in manifest.json)"
        )
    manifest = {
        "kind": "labelled",
        "sources": sources,
        "labels": list(LABELS),
        "counts": counts,
        "dropped": dict(dropped),
        "conflicts": {"policy": recipe.dedup.conflicts, "count": n_conflicts, "examples": conflicts},
        "replaced_utf8": replaced,  # lines in which invalid UTF-8 was replaced with U+FFFD
        "cleaning": cleaner.report(),
        "format": recipe.format,
        "files": {name: f"{name}.{recipe.format}" for name in splits},
    }
    with atomic_dir(recipe.output_dir) as tmp:
        for name, rows in splits.items():
            write_split(tmp / f"{name}.{recipe.format}", rows)
        atomic_write_json(tmp / "manifest.json", manifest)
        write_resolved_recipe(recipe, tmp)
    return PrepResult(recipe.output_dir, counts, dict(dropped), manifest)


# --- corpus ---------------------------------------------------------------------------------------


def _prep_corpus(recipe: PrepRecipe, reporter: Reporter) -> PrepResult:
    corpus = recipe.corpus
    assert corpus is not None
    cleaner = Cleaner(recipe.clean)
    dropped: Counter[str] = Counter()
    seen: set[bytes] = set()
    lines: list[str] = []
    sources = []
    for path in corpus.files:
        n_read, replaced = 0, list[int]()
        with reporter.task(f"reading {path.name}") as task:
            for _, line in iter_lines(path, "replace", replaced.append):
                n_read += 1
                task.advance()
                text = cleaner(line)
                if not text:
                    dropped["empty"] += 1
                    continue
                if len(text) < corpus.min_chars or len(text.split()) < corpus.min_words:
                    dropped["too_short"] += 1
                    continue
                if len(text) > recipe.clean.max_chars:
                    dropped["too_long"] += 1
                    continue
                key = hashlib.blake2b((normalised_key(text) if recipe.dedup.normalised else text).encode(), digest_size=12).digest()
                if key in seen:
                    dropped["duplicate"] += 1
                    continue
                seen.add(key)
                lines.append(text)
                if corpus.max_lines and len(lines) >= corpus.max_lines:
                    break
        if replaced:
            reporter.warn(replaced_message(str(path), len(replaced), replaced[0]))
        sources.append({"path": str(path), "sha256": sha256_file(path), "lines_read": n_read, "replaced_utf8": len(replaced)})
        reporter.log(f"read {n_read:,} lines from {path}")
        if corpus.max_lines and len(lines) >= corpus.max_lines:
            break
    if len(lines) < 2:
        raise FinsentError(f"corpus: only {len(lines)} usable lines in {', '.join(map(str, corpus.files))} (dropped: {dict(dropped)})")
    random.Random(corpus.seed).shuffle(lines)
    n_held = max(1, int(round(len(lines) * corpus.heldout_fraction)))
    splits = {"heldout": lines[:n_held], "train": lines[n_held:]}
    counts = {name: {"lines": len(v), "chars": sum(map(len, v))} for name, v in splits.items()}
    manifest = {
        "kind": "corpus",
        "sources": sources,
        "counts": counts,
        "dropped": dict(dropped),
        "cleaning": cleaner.report(),
        "files": {"train": "train.txt", "heldout": "heldout.txt"},
    }
    with atomic_dir(recipe.output_dir) as tmp:
        for name, rows in splits.items():
            (tmp / f"{name}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
        atomic_write_json(tmp / "manifest.json", manifest)
        write_resolved_recipe(recipe, tmp)
    return PrepResult(recipe.output_dir, counts, dict(dropped), manifest)
