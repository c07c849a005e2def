"""Prediction input readers: every record kept, in order, with its line; untidy input tolerated."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from finsent_cli.core.predict.inputs import decode_lines, detect_input_format, read_inputs
from finsent_cli.errors import FinsentError


def _records(inputs) -> list[tuple[int, str]]:
    return [(r.line, r.text) for r in inputs.records]


def test_txt_keeps_empty_lines_and_numbers(tmp_path: Path) -> None:
    p = tmp_path / "in.txt"
    p.write_bytes(b"first\r\n\n  \nlast line\n")
    got = read_inputs(p)
    assert _records(got) == [(1, "first"), (2, ""), (3, "  "), (4, "last line")]
    assert got.replaced_lines == 0


def test_no_final_newline_and_unicode_line_separator(tmp_path: Path) -> None:
    p = tmp_path / "in.txt"
    p.write_text("a\u2028b\nc", encoding="utf-8")
    assert _records(read_inputs(p)) == [(1, "a\u2028b"), (2, "c")]


def test_invalid_utf8_replaced_and_counted() -> None:
    lines, replaced = decode_lines(b"\xef\xbb\xbfok\nbad \xff\xfe byte\nalso \xc3\n")
    assert lines == ["ok", "bad \ufffd\ufffd byte", "also \ufffd"]
    assert replaced == 2


def test_stdin() -> None:
    got = read_inputs("-", stdin=io.BytesIO(b"one\n\ntwo\n"))
    assert _records(got) == [(1, "one"), (2, ""), (3, "two")] and got.source == "stdin"


@pytest.mark.parametrize("data", [b"", b"\n  \n"])
def test_empty_stdin_is_an_error(data: bytes) -> None:
    with pytest.raises(FinsentError, match="stdin: no input"):
        read_inputs("-", stdin=io.BytesIO(data))


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "e.txt").write_bytes(b"")
    with pytest.raises(FinsentError, match="file is empty"):
        read_inputs(tmp_path / "e.txt")
    with pytest.raises(FinsentError, match="file not found"):
        read_inputs(tmp_path / "missing.txt")


def test_csv_column_multiline_and_blank_rows(tmp_path: Path) -> None:
    p = tmp_path / "in.csv"
    p.write_text('id,headline\n1,"two\nlines"\n\n2,\n3,plain\n', encoding="utf-8")
    assert _records(read_inputs(p, column="headline")) == [(2, "two\nlines"), (5, ""), (6, "plain")]
    with pytest.raises(FinsentError, match="no column 'text' \\(found: id, headline\\); set --text-column"):
        read_inputs(p)


def test_tsv(tmp_path: Path) -> None:
    p = tmp_path / "in.tsv"
    p.write_text("text\tx\nhello, world\t1\n", encoding="utf-8")
    assert _records(read_inputs(p)) == [(2, "hello, world")]


def test_jsonl_field_blank_and_null(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_text('{"body": "a"}\n\n{"body": null}\n{"body": 42}\n', encoding="utf-8")
    assert _records(read_inputs(p, field="body")) == [(1, "a"), (2, ""), (3, ""), (4, "42")]
    with pytest.raises(FinsentError, match=r"in\.jsonl:1: no field 'text'"):
        read_inputs(p)
    p.write_text('{"text": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(FinsentError, match=r"in\.jsonl:2: invalid JSON"):
        read_inputs(p)


def test_format_detection() -> None:
    assert detect_input_format("-") == "txt"
    assert detect_input_format("news") == "txt"
    assert detect_input_format("a.csv.gz") == "csv"
    assert detect_input_format("a.ndjson") == "jsonl"
    assert detect_input_format("a.json", "txt") == "txt"
    with pytest.raises(FinsentError, match="--input-format"):
        detect_input_format("a.json")
    with pytest.raises(FinsentError, match="unknown input format"):
        detect_input_format("a.txt", "xml")


def test_binary_file_and_binary_stdin_are_refused(tmp_path: Path) -> None:
    import gzip

    p = tmp_path / "in.txt"
    p.write_bytes(b"Profit rose\n\x00\x00\x00\x01binary\n")
    with pytest.raises(FinsentError) as info:
        read_inputs(p)
    assert info.value.message == f"{p}: looks like a binary file (NUL byte at offset 12), not text"
    g = tmp_path / "in.csv.gz"
    g.write_bytes(gzip.compress(b"text\nok\n\x00\n"))
    with pytest.raises(FinsentError, match=r"in\.csv\.gz: looks like a binary file \(NUL byte at offset 8\), not text"):
        read_inputs(g)
    with pytest.raises(FinsentError, match=r"^stdin: looks like a binary file \(NUL byte at offset 3\), not text$"):
        read_inputs("-", stdin=io.BytesIO(b"abc\x00def\n"))


def test_parquet_is_no_prediction_input(tmp_path: Path) -> None:
    with pytest.raises(FinsentError, match=r"cannot tell the input format from '\.parquet'; set --input-format") as info:
        read_inputs(tmp_path / "x.parquet")
    assert info.value.exit_code == 2


def test_control_characters_in_found_fields_are_escaped(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_text('{"bo\\u001bdy": "a", "x\\u0007": 1}\n', encoding="utf-8")
    with pytest.raises(FinsentError) as info:
        read_inputs(p)
    assert "(found: bo\\x1bdy, x\\x07); set --text-column" in info.value.message
    assert "\x1b" not in info.value.message and "\x07" not in info.value.message
