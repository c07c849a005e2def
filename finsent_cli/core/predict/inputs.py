"""Input readers for `finsent predict`: one record per text, each with the line it came from.

Unlike training data, prediction input is never rejected for being untidy: invalid UTF-8 is replaced
(U+FFFD) and counted, and an empty line becomes a record with empty text that the output marks
``empty``, so line ``k`` of the input is always answered by record ``k`` of the output.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from finsent_cli.core.data.readers import (
    BINARY_SNIFF_BYTES,
    check_not_binary,
    format_from_suffix,
    found_list,
    input_suffix,
    parse_json_object,
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


class LineSource:
    """The lines of a file (gunzipped when it ends in .gz) or of stdin, read lazily: constant memory
    whatever the input's size.

    Each line is split on ``\\n`` only (``\\r\\n`` too), so line numbers match ``wc -l`` and editors even
    when a text holds U+2028, and decoded alone: invalid UTF-8 is replaced (U+FFFD) and counted in
    :attr:`replaced`. :attr:`consumed` (bytes) and :meth:`digest` (SHA-256 of those bytes) say exactly how
    much of the input was read, which is what ``--resume`` checks an input against.

    Raises (on creation): FinsentError for a missing, unreadable, empty or binary input.
    """

    def __init__(self, path: str | Path, stdin: BinaryIO | None = None) -> None:
        self.source = "stdin" if str(path) == "-" else str(path)
        self.replaced = 0
        self.consumed = 0
        self._sha = hashlib.sha256()
        if str(path) == "-":
            if stdin is None:
                import sys

                stdin = sys.stdin.buffer
            self._fh: BinaryIO = stdin
        else:
            self._fh = _open_file(Path(path))
        try:
            self._head = self._sniff()
        except BaseException:
            self.close()
            raise

    def _sniff(self) -> bytes:
        """The first bytes, checked: not empty, not binary."""
        try:
            head = self._fh.read(BINARY_SNIFF_BYTES)
            while head and not head.strip():  # only whitespace so far: the input may be empty
                more = self._fh.read(BINARY_SNIFF_BYTES)
                if not more:
                    break
                head += more
        except (OSError, EOFError, zlib.error) as exc:
            raise FinsentError(f"{self.source}: cannot read ({exc.__class__.__name__}: {exc})") from None
        if not head.strip():
            if self.source == "stdin":
                raise FinsentError("stdin: no input (stdin was empty or closed); pipe text in or pass a file")
            raise FinsentError(f"{self.source}: file is empty")
        check_not_binary(head, self.source)
        return head

    def _raw_lines(self) -> Iterator[bytes]:
        buffered = io.BufferedReader(_Prefixed(self._head, self._fh)) if self._head else self._fh
        self._head = b""
        try:
            yield from buffered
        except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt .gz, a disk error
            raise FinsentError(f"{self.source}: cannot read past byte {self.consumed} ({exc.__class__.__name__}: {exc})") from None

    def __iter__(self) -> Iterator[str]:
        """Decoded lines without their line ends (a final newline adds no empty line)."""
        first = True
        for raw in self._raw_lines():
            self.consumed += len(raw)
            self._sha.update(raw)
            if first and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            first = False
            text, bad = _decode(raw)
            self.replaced += bad
            yield text

    def digest(self) -> str:
        """SHA-256 of the bytes read so far."""
        return self._sha.hexdigest()

    def close(self) -> None:
        if self.source != "stdin":
            self._fh.close()


class _Prefixed(io.RawIOBase):
    """Bytes already read (the sniffed head) followed by the rest of a stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _open_file(path: Path) -> BinaryIO:
    if not path.exists():
        raise FinsentError(f"{path}: file not found")
    if path.is_dir():
        raise FinsentError(f"{path}: is a folder, expected a file")
    try:
        return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb")  # type: ignore[return-value]
    except OSError as exc:
        raise FinsentError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None


def _decode(raw: bytes) -> tuple[str, bool]:
    """One line without its line end, and whether invalid UTF-8 was replaced in it."""
    raw = raw[:-1] if raw.endswith(b"\n") else raw
    raw = raw[:-1] if raw.endswith(b"\r") else raw
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), True


def decode_lines(data: bytes) -> tuple[list[str], int]:
    """Split bytes into decoded lines the way :class:`LineSource` reads a file (BOM dropped).

    Returns:
        The lines (a final newline adds no empty line) and how many lines needed replacement.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    decoded = [_decode(raw) for raw in io.BytesIO(data)]
    return [text for text, _ in decoded], sum(bad for _, bad in decoded)


def _delimited(lines: Iterator[str], source: str, delimiter: str, column: str, target_column: str | None = None) -> Iterator[InputRecord]:
    reader = csv.reader((line + "\n" for line in lines), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise FinsentError(f"{source}: file is empty") from None
    except csv.Error as exc:
        raise FinsentError(f"{source}:{reader.line_num}: malformed {'CSV' if delimiter == ',' else 'TSV'} ({exc})") from None
    if column not in header:
        found = found_list(header)
        raise FinsentError(f"{source}: no column '{escape_controls(column)}' (found: {found}); set --text-column")
    idx = header.index(column)
    if target_column is not None and target_column not in header:
        raise FinsentError(f"{source}: no column '{escape_controls(target_column)}' (found: {found_list(header)}); set --target-column")
    tidx = header.index(target_column) if target_column is not None else None
    prev_end, any_row = reader.line_num, False
    try:
        for row in reader:
            start, prev_end = prev_end + 1, reader.line_num
            if not row:  # a blank line is no CSV record
                continue
            any_row = True
            target = (row[tidx] if tidx < len(row) else "") if tidx is not None else None
            yield InputRecord(start, row[idx] if idx < len(row) else "", target)
    except csv.Error as exc:
        raise FinsentError(f"{source}:{reader.line_num}: malformed {'CSV' if delimiter == ',' else 'TSV'} ({exc})") from None
    if not any_row:
        raise FinsentError(f"{source}: no data rows (only a header?)")


def _jsonl(lines: Iterator[str], source: str, field: str, target_field: str | None = None) -> Iterator[InputRecord]:
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            yield InputRecord(n, "")
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
        yield InputRecord(n, "" if value is None else str(value), target)


def check_target_column(fmt: str, source: str, target_column: str | None) -> None:
    """Refuse ``--target-column`` for a .txt input (a line holds only a text)."""
    if target_column is not None and fmt == "txt":
        raise FinsentError(f"{source}: --target-column needs a CSV, TSV or JSONL input (a .txt line holds only a text); use --target NAME", exit_code=2)


def iter_records(
    lines: LineSource, fmt: str, column: str = "text", field: str = "text", target_column: str | None = None
) -> Iterator[InputRecord]:
    """The records of an open input, lazily, in input order (see :func:`read_inputs` for the formats).

    Raises:
        FinsentError: a missing column/field, or malformed CSV/JSON (naming the line), when reached.
    """
    check_target_column(fmt, lines.source, target_column)
    if fmt == "txt":
        return (InputRecord(n, line) for n, line in enumerate(lines, start=1))
    if fmt == "jsonl":
        return _jsonl(iter(lines), lines.source, field, target_column)
    return _delimited(iter(lines), lines.source, "," if fmt == "csv" else "\t", column, target_column)


def read_inputs(
    path: str | Path,
    fmt: str = "auto",
    column: str = "text",
    field: str = "text",
    stdin: BinaryIO | None = None,
    target_column: str | None = None,
) -> Inputs:
    """Read all the texts to classify (and, with ``target_column``, the company each is about) into memory;
    ``predict`` itself streams them through :func:`iter_records`.

    Args:
        path: a file (gzipped when it ends in .gz), or ``-`` for standard input.
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
    check_target_column(fmt, source, target_column)
    lines = LineSource(path, stdin)
    try:
        records = list(iter_records(lines, fmt, column, field, target_column))
    finally:
        lines.close()
    return Inputs(records, lines.replaced, source)
