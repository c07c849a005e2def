"""Readers for labelled tables (CSV, TSV, JSONL, Parquet, Hugging Face datasets) and text corpora.

Every record keeps the file and line it came from so that later errors can point at it. Bytes that
are not UTF-8 are an error naming the byte offset and line, unless the recipe asks to replace them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from finsent_cli.errors import FinsentError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

FORMATS = ("csv", "tsv", "jsonl", "parquet")


@dataclass
class RawRecord:
    """One row as read: text, raw label, optional target, and where it came from."""

    text: str
    label: object
    target: str | None
    where: str
    extra: dict[str, object] = field(default_factory=dict)


def detect_format(path: Path, fmt: str = "auto") -> str:
    """The table format from the recipe, else from the file suffix.

    Raises:
        FinsentError: the suffix is not one finsent reads.
    """
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    by_suffix = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
    if suffix not in by_suffix:
        raise FinsentError(f"{path}: cannot tell the format from '{suffix or path.name}'; set data.format to one of {', '.join(FORMATS)}")
    return by_suffix[suffix]


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it ends in .gz.

    Raises:
        FinsentError: missing, a folder, unreadable, or empty.
    """
    if not path.exists():
        raise FinsentError(f"{path}: file not found")
    if path.is_dir():
        raise FinsentError(f"{path}: is a folder, expected a file")
    try:
        data = path.read_bytes()
        if path.suffix.lower() == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise FinsentError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    if not data.strip():
        raise FinsentError(f"{path}: file is empty")
    return data


def decode_utf8(data: bytes, where: str, errors: str = "strict") -> tuple[str, int]:
    """Decode UTF-8 (a BOM is dropped).

    Returns:
        The text and the number of replacement characters inserted (0 with ``errors="strict"``).

    Raises:
        FinsentError: invalid bytes with ``errors="strict"``, naming byte offset and line.
    """
    try:
        return data.decode("utf-8-sig"), 0
    except UnicodeDecodeError as exc:
        if errors != "replace":
            line = data[: exc.start].count(b"\n") + 1
            raise FinsentError(
                f"{where}: invalid UTF-8 at byte offset {exc.start} (line {line}, byte 0x{data[exc.start]:02x}); "
                "re-encode the file as UTF-8 or set data.encoding_errors=replace"
            ) from None
    text = data.decode("utf-8-sig", errors="replace")
    return text, text.count("\ufffd") - data.decode("utf-8-sig", errors="ignore").count("\ufffd")


def _check_columns(path: Path, found: list[str], wanted: dict[str, str | None]) -> None:
    for option, column in wanted.items():
        if column is not None and column not in found:
            raise FinsentError(
                f"{path}: no column '{column}' (found: {', '.join(found) or 'none'}); set data.{option}"
            )


def _iter_delimited(path: Path, text: str, delimiter: str, cols: dict[str, str | None]) -> Iterator[RawRecord]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    found = list(reader.fieldnames or [])
    _check_columns(path, found, cols)
    start = 2
    try:
        for row in reader:
            where = f"{path}:{start}"
            start = reader.line_num + 1
            if None in row:
                raise FinsentError(f"{where}: row has more fields than the header ({len(found)} columns)")
            yield _record(row, cols, where)
    except csv.Error as exc:
        raise FinsentError(f"{path}:{reader.line_num}: malformed {('CSV' if delimiter == ',' else 'TSV')} ({exc})") from None


def _record(row: dict, cols: dict[str, str | None], where: str) -> RawRecord:
    text = row.get(cols["text_column"])  # type: ignore[index]
    target_col = cols.get("target_column")
    return RawRecord(
        text="" if text is None else str(text),
        label=row.get(cols["label_column"]),  # type: ignore[index]
        target=None if not target_col or row.get(target_col) is None else str(row.get(target_col)),
        where=where,
    )


def parse_json_object(line: str, where: str) -> dict:
    """One JSONL line as a JSON object.

    Raises:
        FinsentError: invalid JSON or not an object, naming ``where`` (file:line).
    """
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FinsentError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise FinsentError(f"{where}: expected a JSON object per line, got {type(obj).__name__}")
    return obj


def _iter_jsonl(path: Path, text: str, cols: dict[str, str | None]) -> Iterator[RawRecord]:
    seen_columns = False
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = parse_json_object(line, f"{path}:{n}")
        if not seen_columns:
            _check_columns(path, list(row), cols)
            seen_columns = True
        yield _record(row, cols, f"{path}:{n}")


def _iter_parquet(path: Path, cols: dict[str, str | None]) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise FinsentError(f"{path}: not a readable Parquet file ({exc.__class__.__name__})") from None
    _check_columns(path, table.column_names, cols)
    if table.num_rows == 0:
        raise FinsentError(f"{path}: file is empty")
    for n, row in enumerate(table.to_pylist(), start=1):
        yield _record(row, cols, f"{path}:row {n}")


def read_table(
    path: Path,
    *,
    fmt: str = "auto",
    text_column: str = "text",
    label_column: str = "label",
    target_column: str | None = None,
    encoding_errors: str = "strict",
) -> tuple[list[RawRecord], int]:
    """Read every record of a labelled file.

    Returns:
        The records and the number of invalid UTF-8 bytes replaced.

    Raises:
        FinsentError: missing, empty, unreadable or malformed file, or a missing column.
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    cols = {"text_column": text_column, "label_column": label_column, "target_column": target_column}
    if fmt == "parquet":
        if not path.exists() or path.is_dir():
            read_bytes(path)  # raises the right error
        return list(_iter_parquet(path, cols)), 0
    text, replaced = decode_utf8(read_bytes(path), str(path), encoding_errors)
    if fmt == "jsonl":
        records = list(_iter_jsonl(path, text, cols))
    else:
        records = list(_iter_delimited(path, text, "," if fmt == "csv" else "\t", cols))
    if not records:
        raise FinsentError(f"{path}: no data rows (only a header?)")
    return records, replaced


def read_hf_dataset(name: str, config: str | None, cols: dict[str, str | None]) -> dict[str, list[RawRecord]]:
    """Read a Hugging Face dataset (needs the Hub or a local cache).

    Returns:
        Records per split, with split names normalised to train / valid / test.

    Raises:
        FinsentError: the dataset cannot be loaded (offline, unknown name) or lacks a column.
    """
    try:
        import datasets

        dsd = datasets.load_dataset(name, config)
    except Exception as exc:  # datasets raises many types for network and name errors
        raise FinsentError(f"hf dataset '{name}': cannot load ({exc.__class__.__name__}); offline? use a local file in data.source") from None
    rename = {"validation": "valid", "dev": "valid"}
    out: dict[str, list[RawRecord]] = {}
    for split, ds in dsd.items():
        where = f"{name}[{split}]"
        _check_columns(Path(where), list(ds.column_names), cols)
        out[rename.get(split, split)] = [_record(row, cols, f"{where}:row {i + 1}") for i, row in enumerate(ds)]
    return out


def iter_lines(path: Path, encoding_errors: str = "strict") -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` of a ``.txt`` or ``.txt.gz`` file, streaming.

    Raises:
        FinsentError: missing, unreadable, or (strict) not UTF-8, naming the line.
    """
    path = Path(path)
    if not path.exists():
        raise FinsentError(f"{path}: file not found")
    if path.is_dir():
        raise FinsentError(f"{path}: is a folder, expected a file")
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    offset = 0
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            for n, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if encoding_errors != "replace":
                        raise FinsentError(
                            f"{path}:{n}: invalid UTF-8 at byte offset {offset + exc.start} "
                            "(re-encode the file as UTF-8)"
                        ) from None
                    line = raw.decode("utf-8", errors="replace")
                offset += len(raw)
                yield n, line.rstrip("\r\n")
    except (OSError, EOFError) as exc:
        raise FinsentError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
