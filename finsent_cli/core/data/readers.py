"""Readers for labelled tables (CSV, TSV, JSONL, Parquet, Hugging Face datasets) and text corpora.

Every record keeps the file and line it came from so that later errors can point at it. Bytes that
are not UTF-8 are replaced with U+FFFD and reported (:func:`replaced_message`: how many lines, the first
one), as ``finsent predict`` does, so the same file gives the same text to training and to prediction;
``encoding_errors="strict"`` (a recipe's ``data.encoding_errors: strict``) refuses them instead, naming the
byte offset and line. A binary file (a NUL byte near the start) is refused as such. Error hints name the setting the way the
calling command spells it (``settings``: recipe keys for prep and finetune, options for eval).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from finsent_cli.errors import FinsentError, escape_controls

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

FORMATS = ("csv", "tsv", "jsonl", "parquet")
"""Formats of labelled tables (prep, finetune, eval)."""

FORMAT_BY_SUFFIX = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
    ".txt": "txt", ".text": "txt", "": "txt",
}  # fmt: skip
"""The one suffix map of every input reader (a final ``.gz`` is looked through); each caller allows its
own formats: tables never ``txt``, prediction input never ``parquet``."""

RECIPE_SETTINGS: Mapping[str, str | None] = {
    "text_column": "data.text_column",
    "label_column": "data.label_column",
    "target_column": "data.target_column",
    "format": "data.format",
    "encoding_errors": "data.encoding_errors=replace",
}
"""How a recipe spells each setting that error hints name. A command passes its own spelling (a
missing key or ``None``: the command has no such setting, and the hint gives only the generic fix)."""

BINARY_SNIFF_BYTES = 8192
"""A NUL byte in this many leading bytes (after gunzip) marks a file as binary."""


@dataclass
class RawRecord:
    """One row as read: text, raw label, optional target, and where it came from."""

    text: str
    label: object
    target: str | None
    where: str


def input_suffix(path: str | Path) -> str:
    """The lower-case suffix that names a file's format, looking through ``.gz`` (``""`` if none)."""
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    return suffixes[-1] if suffixes else ""


def format_from_suffix(path: str | Path, allowed: Collection[str]) -> str | None:
    """The format :data:`FORMAT_BY_SUFFIX` gives ``path``, or ``None`` if it gives none of ``allowed``."""
    fmt = FORMAT_BY_SUFFIX.get(input_suffix(path))
    return fmt if fmt in allowed else None


def check_format(fmt: str, settings: Mapping[str, str | None] = RECIPE_SETTINGS) -> str:
    """``fmt`` when it is ``auto`` or one of :data:`FORMATS`.

    Raises:
        FinsentError: any other format, naming the setting the caller's way and the allowed formats
            (exit code 2).
    """
    if fmt != "auto" and fmt not in FORMATS:
        name = settings.get("format") or "table format"
        shown = escape_controls(str(fmt))
        raise FinsentError(f"unknown {name} '{shown}' (choose auto, {', '.join(FORMATS)})", exit_code=2)
    return fmt


def detect_format(path: Path, fmt: str = "auto", settings: Mapping[str, str | None] = RECIPE_SETTINGS) -> str:
    """The table format given, else from the file suffix.

    Raises:
        FinsentError: an unknown format (exit code 2, see :func:`check_format`), or the suffix is not
            one of a table finsent reads.
    """
    if check_format(fmt, settings) != "auto":
        return fmt
    found = format_from_suffix(path, FORMATS)
    if found is None:
        suffix = input_suffix(path)
        fix = (f"set {settings['format']} to one of {', '.join(FORMATS)}" if settings.get("format")
               else "name the file with one of the suffixes .csv, .tsv, .jsonl, .parquet")  # fmt: skip
        raise FinsentError(f"{path}: cannot tell the format from '{escape_controls(suffix or path.name)}'; {fix}")
    return found


def check_not_binary(data: bytes, where: str) -> None:
    """Refuse bytes that are not text: a NUL byte in the first :data:`BINARY_SNIFF_BYTES`.

    Raises:
        FinsentError: the data looks binary, naming the offset of the first NUL byte (UTF-16 text
            is named as such, with the fix).
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise FinsentError(f"{where}: looks like UTF-16 text (byte-order mark), not UTF-8; re-encode the file as UTF-8")
    nul = data.find(b"\x00", 0, BINARY_SNIFF_BYTES)
    if nul >= 0:
        raise FinsentError(f"{where}: looks like a binary file (NUL byte at offset {nul}), not text")


def read_bytes(path: Path) -> bytes:
    """The bytes of a text file, gunzipped when it ends in .gz.

    Raises:
        FinsentError: missing, a folder, unreadable, empty, or binary (see :func:`check_not_binary`).
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
    check_not_binary(data, str(path))
    return data


@dataclass(frozen=True)
class Replaced:
    """Invalid UTF-8 replaced with U+FFFD in one input: in how many lines, and the first of them."""

    lines: int = 0
    first_line: int | None = None

    def __bool__(self) -> bool:
        return self.lines > 0


def replaced_message(where: str, lines: int, first_line: int | None) -> str:
    """The one warning of every finsent reader (prep, predict) for bytes that are not UTF-8, replaced."""
    first = f" (first: line {first_line})" if first_line is not None else ""
    return (
        f"{where}: replaced invalid UTF-8 with U+FFFD in {lines:,} line{'' if lines == 1 else 's'}{first}; "
        "re-encode the file as UTF-8 to keep the original characters"
    )


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_utf8(
    data: bytes, where: str, errors: str = "strict", settings: Mapping[str, str | None] = RECIPE_SETTINGS
) -> tuple[str, Replaced]:
    """Decode UTF-8 (a BOM is dropped).

    Returns:
        The text and where invalid bytes were replaced (nothing with ``errors="strict"``).

    Raises:
        FinsentError: invalid bytes with ``errors="strict"``, naming byte offset and line.
    """
    try:
        return data.decode("utf-8-sig"), Replaced()
    except UnicodeDecodeError as exc:
        if errors != "replace":
            line = data[: exc.start].count(b"\n") + 1
            fix = "re-encode the file as UTF-8"
            if settings.get("encoding_errors"):
                fix += f" or set {settings['encoding_errors']}"
            raise FinsentError(
                f"{where}: invalid UTF-8 at byte offset {exc.start} (line {line}, byte 0x{data[exc.start]:02x}); {fix}"
            ) from None
    bad = [n for n, raw in enumerate(data.split(b"\n"), start=1) if not _is_utf8(raw)]  # \n is never inside a character
    return data.decode("utf-8-sig", errors="replace"), Replaced(len(bad), bad[0] if bad else None)


def found_list(names: Collection[object]) -> str:
    """Column or field names read from a file, for a message: comma-separated, control characters escaped."""
    return escape_controls(", ".join(str(n) for n in names)) or "none"


def _check_columns(
    path: Path, found: list[str], wanted: dict[str, str | None], settings: Mapping[str, str | None] = RECIPE_SETTINGS
) -> None:
    for option, column in wanted.items():
        if column is not None and column not in found:
            fix = f"; set {settings[option]}" if settings.get(option) else ""
            raise FinsentError(f"{path}: no column '{escape_controls(column)}' (found: {found_list(found)}){fix}")


def _iter_delimited(
    path: Path, text: str, delimiter: str, cols: dict[str, str | None], settings: Mapping[str, str | None]
) -> Iterator[RawRecord]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    found = list(reader.fieldnames or [])
    _check_columns(path, found, cols, settings)
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


def _iter_jsonl(
    path: Path, text: str, cols: dict[str, str | None], settings: Mapping[str, str | None]
) -> Iterator[RawRecord]:
    seen_columns = False
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = parse_json_object(line, f"{path}:{n}")
        if not seen_columns:
            _check_columns(path, list(row), cols, settings)
            seen_columns = True
        yield _record(row, cols, f"{path}:{n}")


def _iter_parquet(path: Path, cols: dict[str, str | None], settings: Mapping[str, str | None]) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise FinsentError(f"{path}: not a readable Parquet file ({exc.__class__.__name__})") from None
    _check_columns(path, table.column_names, cols, settings)
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
    settings: Mapping[str, str | None] = RECIPE_SETTINGS,
) -> tuple[list[RawRecord], Replaced]:
    """Read every record of a labelled file.

    Args:
        encoding_errors: ``strict`` (bytes that are not UTF-8 are an error) or ``replace`` (U+FFFD).
        settings: how the calling command spells each setting its error hints name (see
            :data:`RECIPE_SETTINGS`, the default).

    Returns:
        The records and where invalid UTF-8 was replaced (see :func:`replaced_message`).

    Raises:
        FinsentError: an unknown format (exit code 2), or a missing, empty, unreadable, binary or
            malformed file, or a missing column.
    """
    path = Path(path)
    fmt = detect_format(path, fmt, settings)
    cols = {"text_column": text_column, "label_column": label_column, "target_column": target_column}
    if fmt == "parquet":
        if not path.exists() or path.is_dir():
            read_bytes(path)  # raises the right error
        return list(_iter_parquet(path, cols, settings)), Replaced()
    text, replaced = decode_utf8(read_bytes(path), str(path), encoding_errors, settings)
    if fmt == "jsonl":
        records = list(_iter_jsonl(path, text, cols, settings))
    else:
        records = list(_iter_delimited(path, text, "," if fmt == "csv" else "\t", cols, settings))
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


def iter_lines(
    path: Path, encoding_errors: str = "strict", on_replaced: Callable[[int], None] | None = None
) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` of a ``.txt`` or ``.txt.gz`` file, streaming.

    Args:
        encoding_errors: ``strict`` or ``replace`` (U+FFFD; ``on_replaced`` is called with each such line's number).

    Raises:
        FinsentError: missing, unreadable, binary, or (strict) not UTF-8, naming the line.
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
            check_not_binary(fh.read(BINARY_SNIFF_BYTES), str(path))
            fh.seek(0)
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
                    if on_replaced is not None:
                        on_replaced(n)
                offset += len(raw)
                yield n, line.rstrip("\r\n")
    except (OSError, EOFError) as exc:
        raise FinsentError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
