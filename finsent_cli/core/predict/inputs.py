"""Input readers for `finsent predict`: one record per text, each with the line it came from.

Unlike training data, prediction input is never rejected for being untidy: invalid UTF-8 is replaced
(U+FFFD) and counted, and an empty line becomes a record with empty text that the output marks
``empty``, so line ``k`` of the input is always answered by record ``k`` of the output.

A broken record is answered too, not merged into its neighbours nor dropped: a JSONL line that is not a
JSON object, or a CSV/TSV line whose quoted field does not close where a record can end (an unterminated
quote), becomes a record marked ``malformed`` that holds the line as read, and reading goes on at the next
line. A quoted field that closes properly may span lines (one record, numbered by its first line), so
"rows" are physical lines wherever a record is broken: one row per broken line, none lost.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import shlex
import stat
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from finsent_cli.core.data.readers import (
    BINARY_SNIFF_BYTES,
    FORMAT_BY_SUFFIX,
    check_not_binary,
    format_from_suffix,
    found_list,
    input_suffix,
    parse_json_object,
)
from finsent_cli.errors import FinsentError, escape_controls

INPUT_FORMATS = ("txt", "csv", "tsv", "jsonl")


MALFORMED = "malformed"
"""The status of a record that could not be read as its format says (its text is the line as read)."""

MAX_RECORD_LINES = 10_000
"""Most physical lines one quoted CSV/TSV field may span; a quote still open after them is unterminated."""

UNTERMINATED = "unterminated quote: the field opened here never closes"


@dataclass
class InputRecord:
    """One text to classify; ``line`` is its (first) line in the input, counting from 1.

    ``status`` is None for a record read as its format says, or :data:`MALFORMED`; then ``text`` is the
    line as read and ``problem`` says what is wrong with it.
    """

    line: int
    text: str
    target: str | None = None  # the named company, from --target-column
    status: str | None = None
    problem: str | None = None


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
        self.first_replaced: int | None = None  # the first line in which invalid UTF-8 was replaced
        self.consumed = 0
        self.lines = 0
        self._sha = hashlib.sha256()
        if str(path) == "-":
            if stdin is None:
                import sys

                stdin = sys.stdin.buffer
            self._fh: BinaryIO = stdin
        else:
            self._fh = _open_file(Path(path))
        self._stored: Any = getattr(self._fh, "fileobj", None)  # a .gz: the compressed file under it
        self.size = _regular_size(self._stored or self._fh)
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
            self.lines += 1
            if bad:
                self.replaced += 1
                self.first_replaced = self.first_replaced or self.lines
            yield text

    def digest(self) -> str:
        """SHA-256 of the bytes read so far."""
        return self._sha.hexdigest()

    def position(self) -> int:
        """How far into the file as stored reading has come, in bytes, to compare with :attr:`size` (the
        compressed bytes of a .gz; ahead of the lines given out by a read buffer at most)."""
        if self._stored is not None:
            try:
                return int(self._stored.tell())
            except (OSError, ValueError):  # closed
                return self.size or 0
        return self.consumed

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


def check_input_exists(path: str | Path, only_text: bool = False) -> None:
    """Refuse an input file that does not exist.

    ``finsent predict "Profit rose 5%"`` names no file: when the argument reads like text (no folder, and
    no suffix, or spaces and no suffix finsent reads: not ``my news.txt``), the message shows how to
    classify it through stdin.

    Args:
        only_text: refuse only such an argument (checked before its "suffix" is read as a format).

    Raises:
        FinsentError: the file does not exist.
    """
    name = str(path)
    if name == "-" or Path(name).exists():
        return
    suffix = input_suffix(name)
    known = suffix in FORMAT_BY_SUFFIX and suffix != ""
    looks_like_text = "/" not in name and (not suffix or (any(c.isspace() for c in name) and not known))
    if only_text and not looks_like_text:
        return
    shown = escape_controls(name)
    hint = f"; to classify this text, pipe it in: echo {shlex.quote(shown)} | finsent predict -" if looks_like_text else ""
    raise FinsentError(f"{shown}: file not found{hint}")


def _open_file(path: Path) -> BinaryIO:
    if not path.exists():
        check_input_exists(path)
    if path.is_dir():
        raise FinsentError(f"{path}: is a folder, expected a file")
    try:
        return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb")  # type: ignore[return-value]
    except OSError as exc:
        raise FinsentError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None


def _regular_size(fh: Any) -> int | None:
    """The size of a regular file on disk, None for stdin, a pipe or anything else without one."""
    try:
        st = os.fstat(fh.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


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


def _fmt_name(delimiter: str) -> str:
    return "CSV" if delimiter == "," else "TSV"


def _read_record(
    next_line: Callable[[], tuple[int, str] | None], delimiter: str
) -> tuple[list[str] | None, list[tuple[int, str]], str | None]:
    """The next CSV/TSV record, parsed strictly, and the physical lines it took.

    Returns:
        ``(fields, lines, problem)``: ``fields`` None at the end of the input; ``problem`` None for a
        record that is well-formed, else why not (``lines`` then holds every line the parser read).
    """
    taken: list[tuple[int, str]] = []
    ended = False

    def feed() -> Iterator[str]:
        nonlocal ended
        while len(taken) < MAX_RECORD_LINES:
            item = next_line()
            if item is None:
                break
            taken.append(item)
            yield item[1] + "\n"
        ended = True

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    try:
        row = next(reader)
    except StopIteration:
        return None, taken, None
    except csv.Error as exc:
        if ended:  # the input (or MAX_RECORD_LINES) ended inside a quoted field
            return [], taken, UNTERMINATED
        if len(taken) > 1:
            sep = "a comma" if delimiter == "," else "a tab"
            return [], taken, f"the quote opened here closes on line {taken[-1][0]}, where {sep} does not follow it"
        return [], taken, str(exc)
    return row, taken, None


def _delimited(
    lines: Iterator[str], source: str, delimiter: str, column: str, target_column: str | None = None, mark: bool = False
) -> Iterator[InputRecord]:
    """Records of a CSV/TSV, each numbered by its first line; see the module docstring for broken ones.

    A record that fails the strict parse on its own line alone (``"a"b``, a stray quote after a closing
    one) is read leniently, as Python's csv module always did: it breaks no other record. A record that
    fails after reading further lines, or that spans lines but has another number of fields than the
    header, is broken at its first line: that line is answered as :data:`MALFORMED` (or refused, without
    ``mark``), and the lines read past it are parsed again.
    """
    name = _fmt_name(delimiter)
    numbered = enumerate(lines, start=1)
    pending: deque[tuple[int, str]] = deque()  # lines read ahead of a broken record, to parse again

    def next_line() -> tuple[int, str] | None:
        return pending.popleft() if pending else next(numbered, None)

    header, taken, problem = _read_record(next_line, delimiter)
    if header is None:
        raise FinsentError(f"{source}: file is empty")
    if problem is not None:
        raise FinsentError(f"{source}:{taken[0][0]}: malformed {name} header ({problem})")
    if column not in header:
        found = found_list(header)
        raise FinsentError(f"{source}: no column '{escape_controls(column)}' (found: {found}); set --text-column")
    idx = header.index(column)
    if target_column is not None and target_column not in header:
        raise FinsentError(f"{source}: no column '{escape_controls(target_column)}' (found: {found_list(header)}); set --target-column")
    tidx = header.index(target_column) if target_column is not None else None
    any_row = False
    while True:
        row, taken, problem = _read_record(next_line, delimiter)
        if row is None:
            break
        if problem is not None and len(taken) == 1 and problem != UNTERMINATED:
            try:  # lenient, as before; a lone carriage return in an unquoted field fails even so
                row, problem = next(csv.reader([taken[0][1]], delimiter=delimiter)), None
            except csv.Error as exc:
                problem = "a carriage return inside an unquoted field" if "new-line character" in str(exc) else str(exc)
        elif problem is None and len(taken) > 1 and len(row) != len(header):
            problem = f"the quote opened here closes on line {taken[-1][0]}, making a record of {len(row)} fields, not {len(header)}"
        if problem is not None:
            any_row = True
            line, raw = taken[0]
            if not mark:
                raise FinsentError(f"{source}:{line}: malformed {name} ({problem})")
            pending.extendleft(reversed(taken[1:]))
            yield InputRecord(line, raw, status=MALFORMED, problem=problem)
            continue
        if not row:  # a blank line is no CSV record
            continue
        any_row = True
        target = (row[tidx] if tidx < len(row) else "") if tidx is not None else None
        yield InputRecord(taken[0][0], row[idx] if idx < len(row) else "", target)
    if not any_row:
        raise FinsentError(f"{source}: no data rows (only a header?)")


def _jsonl(lines: Iterator[str], source: str, field: str, target_field: str | None = None, mark: bool = False) -> Iterator[InputRecord]:
    """Records of a JSONL input. The first object decides: a first line that is not a JSON object, or
    lacks the field, is refused (the wrong format or --text-column); a later one is :data:`MALFORMED` (or
    refused, without ``mark``)."""
    first = True
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            yield InputRecord(n, "")
            continue
        try:
            obj = parse_json_object(line, f"{source}:{n}")
            missing = [f for f in (field, target_field) if f is not None and f not in obj]
            if missing:
                option = "--text-column" if missing[0] == field else "--target-column"
                raise FinsentError(f"{source}:{n}: no field '{escape_controls(missing[0])}' (found: {found_list(obj)}); set {option}")
        except FinsentError as exc:
            if first or not mark:
                raise
            yield InputRecord(n, line, status=MALFORMED, problem=exc.message.removeprefix(f"{source}:{n}: "))
            continue
        first = False
        value = obj[field]
        target = None
        if target_field is not None:
            target = "" if obj[target_field] is None else str(obj[target_field])
        yield InputRecord(n, "" if value is None else str(value), target)


def check_target_column(fmt: str, source: str, target_column: str | None) -> None:
    """Refuse ``--target-column`` for a .txt input (a line holds only a text)."""
    if target_column is not None and fmt == "txt":
        raise FinsentError(f"{source}: --target-column needs a CSV, TSV or JSONL input (a .txt line holds only a text); use --target NAME", exit_code=2)


def iter_records(
    lines: LineSource,
    fmt: str,
    column: str = "text",
    field: str = "text",
    target_column: str | None = None,
    *,
    malformed: str = "refuse",
) -> Iterator[InputRecord]:
    """The records of an open input, lazily, in input order (see :func:`read_inputs` for the formats).

    Args:
        malformed: ``refuse`` a broken CSV/TSV record or JSONL line (an error naming the line), or
            ``mark`` it: a record with status :data:`MALFORMED` per broken line, and reading goes on.

    Raises:
        FinsentError: a missing column/field, a malformed header or first JSONL line, or (``refuse``) a
            malformed record, naming the line, when reached.
    """
    check_target_column(fmt, lines.source, target_column)
    mark = malformed == "mark"
    if fmt == "txt":
        return (InputRecord(n, line) for n, line in enumerate(lines, start=1))
    if fmt == "jsonl":
        return _jsonl(iter(lines), lines.source, field, target_column, mark)
    return _delimited(iter(lines), lines.source, "," if fmt == "csv" else "\t", column, target_column, mark)


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
        FinsentError: missing, empty or binary input, a missing column/field, or malformed CSV/JSON
            (naming the line).
    """
    path = str(path)
    check_input_exists(path, only_text=True)
    fmt = detect_input_format(path, fmt)
    source = "stdin" if path == "-" else path
    check_target_column(fmt, source, target_column)
    lines = LineSource(path, stdin)
    try:
        records = list(iter_records(lines, fmt, column, field, target_column))
    finally:
        lines.close()
    return Inputs(records, lines.replaced, source)
