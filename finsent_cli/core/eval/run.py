"""`finsent eval`: score one or more models on one or more labelled datasets.

A dataset is a folder written by ``finsent prep`` (its ``test`` split, else ``valid``) or a raw labelled
table (CSV, TSV, JSONL, Parquet) whose labels go through the same normaliser as ``prep``. When a model's
run folder records hashes of its training texts, evaluation texts that also occur there are counted and
reported: an overlap inflates every number in the report.

With a gold score column (``score_column``: a sentiment score in [-1, 1] per text, as SemEval-2017 task 5 and
FiQA 2018 task 1 give) the signed predicted score p(positive) - p(negative) is also compared with it
(:func:`~finsent_cli.core.eval.metrics.graded_metrics`). The label column is then optional: without it only the
graded metrics are reported. No class is ever derived from a score: any threshold would be invented.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finsent_cli.core.data.clean import text_hash
from finsent_cli.core.data.examples import record_target
from finsent_cli.core.data.labels import LabelNormaliser, normalise_or_raise
from finsent_cli.core.data.readers import (
    check_format,
    decode_utf8,
    detect_format,
    found_list,
    parse_json_object,
    read_bytes,
    read_table,
)
from finsent_cli.core.data.store import load_prepared
from finsent_cli.core.eval.metrics import (
    apply_temperature,
    classification_metrics,
    expected_calibration_error,
    graded_metrics,
)
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.inference.score import signed_score
from finsent_cli.core.io import atomic_write_json, atomic_write_text
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import TRAIN_HASHES, read_meta, resolve_model_folder
from finsent_cli.errors import FinsentError, escape_controls
from finsent_cli.labels import LABEL2ID, LABELS


@dataclass
class EvalData:
    """One evaluation set: class labels, gold scores, or both."""

    name: str
    texts: list[str]
    labels: np.ndarray | None  # (N,) class ids; None: graded only (a score column and no label column)
    targets: list[str] | None = None  # the company each text is judged toward (--target-column)
    scores: np.ndarray | None = None  # (N,) gold sentiment scores in [-1, 1] (--score-column)
    score_column: str | None = None
    notes: list[str] = field(default_factory=list)  # what the report leaves out and why


@dataclass
class EvalResult:
    """The scores of one model on one dataset."""

    model: str
    dataset: str
    metrics: dict[str, Any]
    overlap: int | None  # eval texts also in the model's training data; None when the run has no hashes
    truncated: int


@dataclass
class EvalReport:
    """Every (model, dataset) result, models in the order given."""

    models: list[str]
    datasets: list[str]
    results: list[EvalResult] = field(default_factory=list)
    backend: str = "torch"
    """What ran the models (``core.inference.backends``)."""

    def get(self, model: str, dataset: str) -> EvalResult:
        """The result for one pair."""
        return next(r for r in self.results if r.model == model and r.dataset == dataset)


EVAL_SETTINGS = {"text_column": "--text-column", "label_column": "--label-column", "target_column": "--target-column", "format": "--input-format"}
"""How ``finsent eval`` spells the settings that error hints name."""

_SCORE_SETTINGS = {**EVAL_SETTINGS, "label_column": "--score-column"}
"""The same, for the read that takes the gold scores through the reader's label slot."""


def did_you_mean(name: str, found: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``found`` (case ignored first), else ``""``."""
    same = [f for f in found if f.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, list(found), n=1, cutoff=0.6)
    return f" (did you mean '{escape_controls(close[0])}'?)" if close else ""


def table_columns(path: Path, fmt: str = "auto") -> list[str]:
    """The column names of a raw table: a CSV/TSV header, the fields of a JSONL file's first object, a
    Parquet schema.

    Raises:
        FinsentError: the file cannot be read as that format (as :func:`read_table` would say).
    """
    fmt = detect_format(path, fmt, EVAL_SETTINGS)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not path.is_file():
            read_bytes(path)  # raises the right error
        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise FinsentError(f"{path}: not a readable Parquet file ({exc.__class__.__name__})") from None
    text, _ = decode_utf8(read_bytes(path), str(path), "strict", EVAL_SETTINGS)
    if fmt == "jsonl":
        first = next(((n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()), None)
        return [] if first is None else list(parse_json_object(first[1], f"{path}:{first[0]}"))
    try:
        return next(csv.reader(io.StringIO(text, newline=""), delimiter="," if fmt == "csv" else "\t"), [])
    except csv.Error as exc:
        raise FinsentError(f"{path}:1: malformed {fmt.upper()} header ({exc})") from None


def parse_score(value: object, where: str, column: str) -> float:
    """One gold score: a finite number in [-1, 1].

    Raises:
        FinsentError: an empty cell, a value that is not a number, NaN or infinity, or a number outside
            [-1, 1], naming ``where`` (file and line or row), the column and the value.
    """
    col = escape_controls(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FinsentError(f"{where}: empty score in column '{col}' (every row needs a number in [-1, 1])")
    shown = escape_controls(repr(value))
    if isinstance(value, bool):
        raise FinsentError(f"{where}: score {shown} in column '{col}' is not a number")
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FinsentError(f"{where}: score {shown} in column '{col}' is not a number") from None
    if not math.isfinite(score):
        raise FinsentError(f"{where}: score {shown} in column '{col}' is not a finite number (expected [-1, 1])")
    if not -1.0 <= score <= 1.0:
        raise FinsentError(f"{where}: score {shown} in column '{col}' is outside [-1, 1]")
    return score


def load_eval_data(
    path: str | Path,
    split: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    label_map: dict[str, str] | None = None,
    fmt: str = "auto",
    target_column: str | None = None,
    score_column: str | None = None,
) -> EvalData:
    """Read one labelled dataset for evaluation.

    Args:
        path: a prepared folder or a raw CSV/TSV/JSONL/Parquet file.
        split: the prepared split to use (default ``test``, else ``valid``); ignored for files.
        text_column: text column of a raw file.
        label_column: label column of a raw file.
        label_map: explicit raw label -> finsent label map for a raw file (needed for class ids).
        fmt: format of a raw file: ``auto`` (from the suffix), ``csv``, ``tsv``, ``jsonl`` or ``parquet``.
        target_column: the column naming each row's target (prepared folders keep theirs as ``target``).
        score_column: the column of gold sentiment scores in [-1, 1]; with it the label column may be
            missing (graded metrics only, said in ``notes``).

    Returns:
        The texts, their class ids and gold scores.

    Raises:
        FinsentError: an unknown ``fmt`` (exit code 2, even for a prepared folder), missing or empty
            data, an unknown split, a label the model does not know (naming file and line), a missing
            score column (with the columns found), or a gold score that is empty, not a number, not
            finite or outside [-1, 1] (naming file, line or row, and the value).
    """
    path = Path(path)
    check_format(fmt, EVAL_SETTINGS)
    if path.is_dir():
        splits = load_prepared(path)
        name = split or ("test" if "test" in splits else "valid")
        if name not in splits:
            raise FinsentError(f"{path}: no split '{name}' (found: {', '.join(splits)}); set --split")
        rows = splits[name]
        if not rows:
            raise FinsentError(f"{path}: split '{name}' is empty")
        bad = next((r for r in rows if r["label"] not in LABEL2ID), None)
        if bad is not None:
            raise FinsentError(f"{path}/{name}: label {bad['label']!r} is not one of {', '.join(LABELS)}")
        targets = None
        if target_column is not None:
            missing = next((i for i, r in enumerate(rows) if not str(r.get("target") or "").strip()), None)
            if missing is not None:
                raise FinsentError(f"{path}/{name}: row {missing + 1} has no target (prepare it with data.target_column)")
            targets = [str(r["target"]) for r in rows]
        scores = None
        if score_column is not None:
            if score_column not in rows[0]:
                raise FinsentError(
                    f"{path}/{name}: no field '{escape_controls(score_column)}' for --score-column (found: "
                    f"{found_list(rows[0])}); finsent prep keeps no score: evaluate the raw file instead"
                )
            where = [f"{path}/{name}: row {i}" for i in range(1, len(rows) + 1)]
            scores = np.array([parse_score(r.get(score_column), at, score_column) for r, at in zip(rows, where)])
        labels = np.array([LABEL2ID[r["label"]] for r in rows])
        return EvalData(f"{path.name}/{name}", [r["text"] for r in rows], labels, targets, scores, score_column)
    labelled, notes = True, []
    if score_column is not None:
        found = table_columns(path, fmt)
        if score_column not in found:
            raise FinsentError(
                f"{path}: no column '{escape_controls(score_column)}' for --score-column (found: {found_list(found)})"
                + did_you_mean(score_column, found)
            )
        labelled = label_column in found
        if not labelled:
            notes.append(
                f"no label column '{escape_controls(label_column)}'{did_you_mean(label_column, found)} in {path.name}: "
                "graded metrics only, no class metrics"
            )
    records, _ = read_table(
        path, fmt=fmt, text_column=text_column, label_column=label_column if labelled else None,
        target_column=target_column, settings=EVAL_SETTINGS,
    )  # fmt: skip
    labels = None
    if labelled:
        norm = LabelNormaliser([r.label for r in records], label_map)
        labels = np.array([LABEL2ID[normalise_or_raise(norm, r.label, r.where, "--label-map")] for r in records])
    targets = [record_target(r, target_column)["target"] for r in records] if target_column is not None else None
    scores = None
    if score_column is not None:  # read again, the score column in the reader's label slot
        graded, _ = read_table(
            path, fmt=fmt, text_column=text_column, label_column=score_column, settings=_SCORE_SETTINGS
        )
        scores = np.array([parse_score(r.label, r.where, score_column) for r in graded])
    return EvalData(path.name, [r.text for r in records], labels, targets, scores, score_column, notes)


def find_train_hashes(model_path: str | Path) -> set[str] | None:
    """Hashes of the training texts of a model, from ``train_hashes.json`` of its run folder.

    Looks in the given folder, the resolved model folder, its parent (a run's ``best/``), and the run
    named in ``finsent.json``.

    Returns:
        The set of hashes, or None when no run records them.
    """
    given = Path(model_path)
    folder = resolve_model_folder(given)
    candidates = [given, folder, folder.parent]
    try:
        run = read_meta(folder).get("run")
    except FinsentError:
        run = None
    if run:
        candidates.append(Path(run))
    for cand in candidates:
        hashes = cand / TRAIN_HASHES
        if hashes.is_file():
            try:
                return set(json.loads(hashes.read_text(encoding="utf-8"))["hashes"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise FinsentError(f"{hashes}: not a train_hashes.json (expected {{'hashes': [...]}})") from None
    return None


def evaluate(
    model_paths: Sequence[str | Path],
    data_paths: Sequence[str | Path],
    *,
    split: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    label_map: dict[str, str] | None = None,
    input_format: str = "auto",
    batch_size: int = 32,
    device: str = "cpu",
    reporter: Reporter | None = None,
    target_column: str | None = None,
    backend: str = "torch",
    score_column: str | None = None,
) -> EvalReport:
    """Score every model on every dataset.

    Args:
        model_paths: model, LoRA or run folders.
        data_paths: prepared folders or raw labelled files.
        split: prepared split to evaluate (default test, else valid).
        text_column: text column of raw files.
        label_column: label column of raw files.
        label_map: raw label -> finsent label for raw files.
        input_format: format of raw files (``auto``: from the suffix).
        batch_size: texts per forward pass.
        device: inference device.
        reporter: progress and warnings (overlap, truncation).
        target_column: the column of each dataset naming the company each text is judged toward (for
            target-conditioned models).
        backend: what runs the models: ``torch``, ``int8``, ``onnx`` or ``onnx-int8`` (see
            :func:`load_classifier`).
        score_column: the column of gold sentiment scores in [-1, 1] of each dataset: adds the graded
            metrics of p(positive) - p(negative) (``metrics["graded"]``), and makes the label column optional.

    Returns:
        The report.

    Raises:
        FinsentError: bad model or data (see :func:`load_classifier`, :func:`load_eval_data`).
    """
    from finsent_cli.core.inference.backends import get_backend

    reporter = reporter or NullReporter()
    if not model_paths:
        raise FinsentError("no model given")
    if not data_paths:
        raise FinsentError("no dataset given")
    get_backend(backend)  # a typo in --backend fails before any data is read
    for model_path in model_paths:
        resolve_model_folder(model_path)  # a typo in a model path fails before any data is read
    datasets = [
        load_eval_data(p, split, text_column, label_column, label_map, input_format, target_column, score_column)
        for p in data_paths
    ]
    names = [d.name if [x.name for x in datasets].count(d.name) == 1 else str(p) for d, p in zip(datasets, data_paths)]
    models = [str(m) for m in model_paths]
    report = EvalReport(models, names, backend=backend)
    for model_path in models:
        # loading takes seconds: say so before it starts
        reporter.log(f"loading model {model_path}" + (f" (backend {backend})" if backend != "torch" else ""))
        clf = load_classifier(model_path, device=device, backend=backend)
        hashes = find_train_hashes(model_path)
        for data, name in zip(datasets, names):
            with reporter.task(f"eval {Path(model_path).name} on {name}", total=len(data.texts)) as task:
                temperature, clf.temperature = clf.temperature, 1.0  # raw first, then the folder's calibration
                try:
                    raw, truncated = clf.predict(data.texts, batch_size, task, data.targets)
                finally:
                    clf.temperature = temperature
                probs = apply_temperature(raw, temperature) if temperature != 1.0 else raw
            overlap = None
            if hashes is not None:
                overlap = sum(text_hash(t) in hashes for t in data.texts)
                if overlap:
                    reporter.warn(
                        f"{overlap} of {len(data.texts)} texts in {name} ({overlap / len(data.texts):.1%}) also "
                        f"appear in the training data of {model_path}: scores are optimistic"
                    )
            if any(truncated):
                reporter.warn(f"{sum(truncated)} texts in {name} were cut to {clf.max_length} tokens")
            metrics: dict[str, Any] = {"n": len(data.texts)}
            if data.labels is not None:
                metrics = classification_metrics(data.labels, probs)
            metrics["temperature"] = temperature
            if data.labels is not None:
                metrics["ece_uncalibrated"] = expected_calibration_error(raw, np.asarray(data.labels))
            if data.scores is not None:
                graded = graded_metrics(data.scores, signed_score(probs))
                metrics["graded"] = {"score_column": data.score_column, **graded}
            if data.notes:
                metrics["notes"] = list(data.notes)
            report.results.append(EvalResult(model_path, name, metrics, overlap, sum(truncated)))
    return report


CSV_COLUMNS = ["model", "dataset", "n", "accuracy", "macro_f1", "weighted_f1", "ece", "ece_uncalibrated", "temperature", "overlap", "truncated"] + [
    f"{label}_{m}" for label in LABELS for m in ("precision", "recall", "f1", "support")
]

GRADED_COLUMNS = ["score_cosine", "score_pearson", "score_mse", "score_mae"]
"""The CSV columns :func:`report_rows` adds when a dataset has gold scores (empty where a metric is undefined)."""


def csv_columns(report: EvalReport) -> list[str]:
    """:data:`CSV_COLUMNS`, then :data:`GRADED_COLUMNS` when any result has graded metrics."""
    return CSV_COLUMNS + (GRADED_COLUMNS if any("graded" in r.metrics for r in report.results) else [])


def report_rows(report: EvalReport) -> list[dict[str, Any]]:
    """One flat row per (model, dataset), columns :func:`csv_columns`; class metrics are empty for a dataset
    without labels, graded ones for a dataset without scores."""
    rows = []
    for r in report.results:
        m = r.metrics
        row = {"model": r.model, "dataset": r.dataset, "n": m["n"], "accuracy": m.get("accuracy", ""),
               "macro_f1": m.get("macro_f1", ""), "weighted_f1": m.get("weighted_f1", ""), "ece": m.get("ece", ""),
               "ece_uncalibrated": m.get("ece_uncalibrated", ""), "temperature": m["temperature"],
               "overlap": "" if r.overlap is None else r.overlap, "truncated": r.truncated}  # fmt: skip
        for label in LABELS:
            for key in ("precision", "recall", "f1", "support"):
                row[f"{label}_{key}"] = m["per_class"][label][key] if "per_class" in m else ""
        if "graded" in m:
            for col in GRADED_COLUMNS:
                value = m["graded"][col.removeprefix("score_")]
                row[col] = "" if value is None else value
        rows.append(row)
    return rows


def report_paths(output: str | Path) -> tuple[Path, Path]:
    """The two files :func:`write_report` writes for ``output``: ``<output>.json`` and ``<output>.csv``.

    Args:
        output: path without suffix; a ``.json`` or ``.csv`` suffix is dropped (``eval.json`` and
            ``eval`` both give ``eval.json`` and ``eval.csv``).

    Returns:
        The JSON path and the CSV path.
    """
    base = Path(output)
    if base.suffix.lower() in (".json", ".csv"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".csv")


def write_report(report: EvalReport, output: str | Path) -> tuple[Path, Path]:
    """Write ``<output>.json`` (everything) and ``<output>.csv`` (one row per model and dataset), atomically.

    Args:
        output: path without suffix; a ``.json`` or ``.csv`` suffix is dropped (see :func:`report_paths`).

    Returns:
        The two paths written.
    """
    json_path, csv_path = report_paths(output)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_columns(report), lineterminator="\n")
    writer.writeheader()
    writer.writerows(report_rows(report))
    payload = {"labels": list(LABELS), "models": report.models, "datasets": report.datasets, "backend": report.backend,
               "results": [{"model": r.model, "dataset": r.dataset, "overlap": r.overlap, "truncated": r.truncated,
                            **r.metrics} for r in report.results]}  # fmt: skip
    atomic_write_json(json_path, payload)
    atomic_write_text(csv_path, buf.getvalue())
    return json_path, csv_path


def parse_label_map(spec: str | None) -> dict[str, str] | None:
    """Parse ``--label-map`` text such as ``0=negative,1=positive,2=neutral``.

    Raises:
        FinsentError: a pair without ``=`` or a target that is not a finsent label (exit code 2).
    """
    if not spec:
        return None
    out = {}
    for pair in spec.split(","):
        raw, sep, label = pair.partition("=")
        if not sep or label.strip().lower() not in LABELS:
            raise FinsentError(f"--label-map: bad pair '{pair}' (expected RAW=LABEL with LABEL one of {', '.join(LABELS)})", exit_code=2)
        out[raw.strip()] = label.strip().lower()
    return out
