"""Input readers for `finsent predict`: one record per text, each with the line it came from.

Unlike training data, prediction input is never rejected for being untidy: invalid UTF-8 is replaced
(U+FFFD) and counted, and an empty line becomes a record with empty text that the output marks
``empty``, so line ``k`` of the input is always answered by record ``k`` of the output.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from finsent_cli.core.data.readers import (
    check_not_binary,
    format_from_suffix,
    found_list,
    input_suffix,
    parse_json_object,
    read_bytes,
)
from finsent_cli.errors import FinsentError, escape_controls

INPUT_FORMATS = ("txt", "csv", "tsv", "jsonl")


@dataclass
class InputRecord:
    """One text to classify; ``line`` is its (first) line in the input, counting from 1."""

    line: int
    text: str
    target: str | None = None  # the named company, from --target-column


@dataclass
class Inputs:
    """Everything read from one input."""

    records: list[InputRecord]
    replaced_lines: int  # lines in which invalid UTF-8 was replaced
    source: str


def detect_input_format(path: str, fmt: str = "auto") -> str:
    """The input format: given, or from the suffix (``-`` and no suffix mean one text per line).

    Raises:
        FinsentError: an unknown format or suffix (exit code 2).
    """
    if fmt != "auto":
        if fmt not in INPUT_FORMATS:
            raise FinsentError(f"unknown input format '{fmt}' (choose {', '.join(INPUT_FORMATS)})", exit_code=2)
        return fmt
    if path == "-":
        return "txt"
    found = format_from_suffix(path, INPUT_FORMATS)
    if found is None:
        raise FinsentError(
            f"{path}: cannot tell the input format from '{escape_controls(input_suffix(path))}'; "
            f"set --input-format ({', '.join(INPUT_FORMATS)})",
            exit_code=2,
        )
    return found


def _read_source(path: str, stdin: BinaryIO | None) -> bytes:
    if path == "-":
        if stdin is None:
            import sys

            stdin = sys.stdin.buffer
        data = stdin.read()
        if not data.strip():
            raise FinsentError("stdin: no input (stdin was empty or closed); pipe text in or pass a file")
        check_not_binary(data, "stdin")
        return data
    return read_bytes(Path(path))  # refuses binary files too


def decode_lines(data: bytes) -> tuple[list[str], int]:
    """Split on ``\\n`` (``\\r\\n`` too) and decode each line, replacing invalid UTF-8.

    Only ``\\n`` ends a line, so line numbers match ``wc -l`` and editors even when a text holds U+2028.

    Returns:
        The lines (a final newline adds no empty line) and how many lines needed replacement.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines, replaced = [], 0
    for raw in raw_lines:
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.decode("utf-8", errors="replace"))
            replaced += 1
    return lines, replaced


def _read_delimited(lines: list[str], source: str, delimiter: str, column: str, target_column: str | None = None) -> list[InputRecord]:
    reader = csv.reader(io.StringIO("\n".join(lines) + "\n", newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise FinsentError(f"{source}: file is empty") from None
    if column not in header:
        found = found_list(header)
        raise FinsentError(f"{source}: no column '{escape_controls(column)}' (found: {found}); set --text-column")
    idx = header.index(column)
    if target_column is not None and target_column not in header:
        raise FinsentError(f"{source}: no column '{escape_controls(target_column)}' (found: {found_list(header)}); set --target-column")
    tidx = header.index(target_column) if target_column is not None else None
    records: list[InputRecord] = []
    prev_end = reader.line_num
    try:
        for row in reader:
            start, prev_end = prev_end + 1, reader.line_num
            if not row:  # a blank line is no CSV record
                continue
            target = (row[tidx] if tidx < len(row) else "") if tidx is not None else None
            records.append(InputRecord(start, row[idx] if idx < len(row) else "", target))
    except csv.Error as exc:
        raise FinsentError(f"{source}:{reader.line_num}: malformed {'CSV' if delimiter == ',' else 'TSV'} ({exc})") from None
    if not records:
        raise FinsentError(f"{source}: no data rows (only a header?)")
    return records


def _read_jsonl(lines: list[str], source: str, field: str, target_field: str | None = None) -> list[InputRecord]:
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            records.append(InputRecord(n, ""))
            continue
        obj = parse_json_object(line, f"{source}:{n}")
        if field not in obj:
            found = found_list(obj)
            raise FinsentError(f"{source}:{n}: no field '{escape_controls(field)}' (found: {found}); set --text-column")
        value = obj[field]
        target = None
        if target_field is not None:
            if target_field not in obj:
                raise FinsentError(f"{source}:{n}: no field '{escape_controls(target_field)}' (found: {found_list(obj)}); set --target-column")
            target = "" if obj[target_field] is None else str(obj[target_field])
        records.append(InputRecord(n, "" if value is None else str(value), target))
    return records


def read_inputs(
    path: str | Path,
    fmt: str = "auto",
    column: str = "text",
    field: str = "text",
    stdin: BinaryIO | None = None,
    target_column: str | None = None,
) -> Inputs:
    """Read the texts to classify (and, with ``target_column``, the company each is about).

    Args:
        path: a file, or ``-`` for standard input.
        fmt: ``auto`` (from the suffix), ``txt``, ``csv``, ``tsv`` or ``jsonl``.
        column: text column of a CSV/TSV.
        field: text field of JSONL objects.
        stdin: binary stream read for ``-`` (default ``sys.stdin.buffer``).
        target_column: CSV/TSV column or JSONL field naming each record's target.

    Returns:
        The records in input order and the count of lines with replaced bytes.

    Raises:
        FinsentError: missing, empty or binary input, a missing column/field, or malformed CSV/JSON.
    """
    path = str(path)
    fmt = detect_input_format(path, fmt)
    source = "stdin" if path == "-" else path
    if target_column is not None and fmt == "txt":
        raise FinsentError(f"{source}: --target-column needs a CSV, TSV or JSONL input (a .txt line holds only a text); use --target NAME", exit_code=2)
    lines, replaced = decode_lines(_read_source(path, stdin))
    if fmt == "txt":
        records = [InputRecord(n, line) for n, line in enumerate(lines, start=1)]
    elif fmt == "jsonl":
        records = _read_jsonl(lines, source, field, target_column)
    else:
        records = _read_delimited(lines, source, "," if fmt == "csv" else "\t", column, target_column)
    return Inputs(records, replaced, source)
