"""`finsent predict`: which model, the prediction of every input record, and the output formats.

The model comes from ``--model``, else ``$FINSENT_MODEL``, else the newest trained model
(``runs/latest``, a symlink written by ``finsent finetune`` and ``finsent quickstart``, or the text file
``runs/LATEST`` holding a path where symlinks are unavailable; see ``core.runs.resolve_model``). Output is rendered in memory and written only once every record
is predicted, so a failure never leaves half a file (``--output``) or half a stream (stdout).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from finsent_cli.core.io import atomic_write_text, check_file_target
from finsent_cli.core.predict.inputs import read_inputs
from finsent_cli.core.progress import NullReporter, Reporter, counted
from finsent_cli.core.runs import find_model
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS

COLUMNS = ["line", "text", "label", "confidence", "p_negative", "p_neutral", "p_positive", "status"]
OUTPUT_FORMATS = ("csv", "json", "jsonl", "table")


def check_output_format(
    fmt: str, output: str | Path | None = None, formats: tuple[str, ...] = OUTPUT_FORMATS, terminal: str = "table"
) -> str:
    """Validate ``--format`` and ``--output`` before any work is done.

    Args:
        fmt: the format asked for.
        output: the output file, if any.
        formats: the formats the command knows.
        terminal: the format that only draws on the terminal (cannot go to a file).

    Raises:
        FinsentError: unknown format, the terminal format with an output file, or an output path
            that is a folder (exit code 2).
    """
    if fmt not in formats:
        raise FinsentError(f"unknown --format '{fmt}' (choose {', '.join(formats)})", exit_code=2)
    if fmt == terminal and output is not None:
        others = ", ".join(f for f in formats if f != terminal)
        raise FinsentError(f"--format {terminal} draws on the terminal; use {others} with --output", exit_code=2)
    if output is not None:
        check_file_target(output)
    return fmt


@dataclass
class PredictResult:
    """Every output record plus counts for the summary."""

    rows: list[dict[str, Any]]
    model: Path
    labels: Counter[str] = field(default_factory=Counter)
    empty: int = 0
    truncated: int = 0
    replaced: int = 0


def predict_input(
    path: str | Path,
    model: str | Path | None = None,
    *,
    input_format: str = "auto",
    column: str = "text",
    field_name: str = "text",
    batch_size: int = 32,
    device: str = "cpu",
    stdin: BinaryIO | None = None,
    env: Mapping[str, str] | None = None,
    runs_dir: str | Path = "runs",
    reporter: Reporter | None = None,
    target: str | None = None,
    target_column: str | None = None,
) -> PredictResult:
    """Classify every record of an input, in input order (toward a target, for a target-conditioned model).

    Args:
        path: input file or ``-`` (stdin).
        model: model/run folder; see ``core.runs.resolve_model`` for the fallbacks.
        input_format: ``auto``, ``txt``, ``csv``, ``tsv`` or ``jsonl``.
        column: CSV/TSV text column.
        field_name: JSONL text field.
        batch_size: texts per forward pass.
        device: inference device.
        stdin: stream read for ``-``.
        env: environment for ``$FINSENT_MODEL`` (default ``os.environ``).
        runs_dir: where ``latest`` is looked for.
        reporter: progress (stderr) and warnings.
        target: the company every record is judged toward.
        target_column: the CSV/TSV column or JSONL field that names each record's target.

    Returns:
        One row per input record with :data:`COLUMNS` (and ``target`` after ``text`` with targets); empty
        records have ``status`` ``empty``, records with an empty target ``no_target``, and no label.

    Raises:
        FinsentError: no or bad model, missing/empty input, malformed input.
    """
    from finsent_cli.core.inference.loading import load_classifier  # torch: only when there is work

    reporter = reporter or NullReporter()
    if target is not None and target_column is not None:
        raise FinsentError("give --target NAME (one target for every record) or --target-column COL, not both", exit_code=2)
    if target is not None and not target.strip():
        raise FinsentError("--target is empty; name the company", exit_code=2)
    model_path = find_model(model, env, runs_dir)
    inputs = read_inputs(path, input_format, column, field_name, stdin, target_column)
    if target is not None:
        for rec in inputs.records:
            rec.target = target
    with_targets = target is not None or target_column is not None
    reporter.log(f"loading model {model_path}")  # loading takes seconds: say so before it starts
    clf = load_classifier(model_path, device=device)
    clf.check_targets(with_targets)  # before any work
    todo = [i for i, r in enumerate(inputs.records) if r.text.strip() and (not with_targets or (r.target or "").strip())]
    targets = [str(inputs.records[i].target) for i in todo] if with_targets else None
    with reporter.task("predict", total=len(todo)) as task:
        probs, truncated = clf.predict([inputs.records[i].text for i in todo], batch_size, task, targets)
    result = PredictResult([], clf.path or model_path, replaced=inputs.replaced_lines)
    by_record = {i: (p, t) for i, p, t in zip(todo, probs, truncated)}
    no_target = 0
    for i, rec in enumerate(inputs.records):
        row: dict[str, Any] = {"line": rec.line, "text": rec.text}
        if with_targets:
            row["target"] = rec.target
        if i not in by_record:
            status = "empty" if not rec.text.strip() else "no_target"
            row.update({"label": None, "confidence": None, "p_negative": None, "p_neutral": None, "p_positive": None, "status": status})
            result.empty += status == "empty"
            no_target += status == "no_target"
        else:
            p, cut = by_record[i]
            label = LABELS[int(p.argmax())]
            row.update({"label": label, "confidence": round(float(p.max()), 6)})
            row.update({f"p_{name}": round(float(p[k]), 6) for k, name in enumerate(LABELS)})
            row["status"] = "truncated" if cut else "ok"
            result.labels[label] += 1
            result.truncated += cut
        result.rows.append(row)
    if result.truncated:
        reporter.warn(f"truncated {counted(result.truncated, 'text')} longer than {clf.max_length} tokens (status 'truncated')")
    if result.replaced:
        reporter.warn(f"replaced invalid UTF-8 bytes with U+FFFD in {counted(result.replaced, 'line')}")
    if result.empty:
        reporter.warn(f"{counted(result.empty, 'empty record')} not classified (status 'empty')")
    if no_target:
        reporter.warn(f"{counted(no_target, 'record')} with an empty target not classified (status 'no_target')")
    return result


def render_rows(rows: list[dict[str, Any]], fmt: str) -> str:
    """Serialise rows as ``csv`` (header + one line per record), ``json`` (an array) or ``jsonl``.

    Raises:
        FinsentError: ``fmt`` is not a text format.
    """
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        return buf.getvalue()
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    raise FinsentError(f"cannot serialise rows as '{fmt}' (choose csv, json, jsonl)", exit_code=2)


def write_rows(rows: list[dict[str, Any]], fmt: str, output: str | Path) -> Path:
    """Write rendered rows to ``output`` atomically (a crash leaves no partial file)."""
    text = render_rows(rows, fmt)
    atomic_write_text(output, text)
    return Path(output)
