"""Prediction input readers: every record kept, in order, with its line; untidy input tolerated."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from finsent_cli.core.predict import inputs as inputs_mod
from finsent_cli.core.predict.inputs import (
    LineSource,
    check_input_exists,
    decode_lines,
    detect_input_format,
    iter_records,
    read_inputs,
)
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


def _marked(data: bytes, fmt: str = "csv") -> list[tuple[int, str, str | None]]:
    return [(r.line, r.text, r.status) for r in iter_records(LineSource("-", io.BytesIO(data)), fmt, malformed="mark")]


def test_broken_quotes_are_malformed_lines_and_reading_goes_on() -> None:
    data = b'id,text\n1,"two\nlines"\n2,"never closed\n3,plain\n4,"a ""quote"" inside"\n5,"closes, here" then junk\n6,last\n'
    assert _marked(data) == [
        (2, "two\nlines", None),  # a quoted field that closes where a record may end: one record
        (4, '2,"never closed', "malformed"),  # opened here, closed on line 6 before junk: this line is broken
        (5, "plain", None),
        (6, 'a "quote" inside', None),
        (7, "closes, here then junk", None),  # junk after a quote on one line breaks no other record: as before
        (8, "last", None),
    ]
    with pytest.raises(FinsentError, match=r"^stdin:4: malformed CSV \(the quote opened here closes on line 6, where a comma does not follow it\)$"):
        list(iter_records(LineSource("-", io.BytesIO(data)), "csv"))  # refused where a caller cannot answer it
    assert _marked(b'text\tn\nok\t1\n"open\t2\nnext\t3\n', "tsv") == [(2, "ok", None), (3, '"open\t2', "malformed"), (4, "next", None)]


def test_a_quote_open_at_the_end_or_for_too_many_lines_is_unterminated(monkeypatch: pytest.MonkeyPatch) -> None:
    recs = list(iter_records(LineSource("-", io.BytesIO(b'id,text\n1,fine\n2,"open\n3,more\n')), "csv", malformed="mark"))
    assert [(r.line, r.status) for r in recs] == [(2, None), (3, "malformed"), (4, None)]
    assert recs[1].problem == "unterminated quote: the field opened here never closes"
    monkeypatch.setattr(inputs_mod, "MAX_RECORD_LINES", 3)  # a quoted field may span this many lines at most
    assert _marked(b'id,text\n1,"a\nb\nc"\n2,"w\n3,x\n4,y\n5,z"\n') == [
        (2, "a\nb\nc", None), (5, '2,"w', "malformed"), (6, "x", None), (7, "y", None), (8, 'z"', None),
    ]  # fmt: skip


def test_a_multiline_record_with_other_fields_than_the_header_is_broken() -> None:
    assert _marked(b'id,text\n1,"open\n2,b\n3,x" tail,y\n4,ok\n') == [(2, '1,"open', "malformed"), (3, "b", None), (4, 'x" tail', None), (5, "ok", None)]


def test_read_inputs_still_refuses_what_it_cannot_answer(tmp_path: Path) -> None:
    p = tmp_path / "in.csv"
    p.write_text('text\n"open\nnext\n', encoding="utf-8")
    with pytest.raises(FinsentError, match=r"in\.csv:2: malformed CSV \(unterminated quote"):
        read_inputs(p)
    p.write_text('"bad header\n', encoding="utf-8")
    with pytest.raises(FinsentError, match=r"in\.csv:1: malformed CSV header"):
        list(iter_records(LineSource(p), "csv", malformed="mark"))


def test_text_given_as_the_input_file_hints_at_stdin(tmp_path: Path) -> None:
    with pytest.raises(FinsentError) as info:
        read_inputs("Profit rose 5.2% on strong demand")
    assert info.value.message == (
        "Profit rose 5.2% on strong demand: file not found; to classify this text, pipe it in: "
        "echo 'Profit rose 5.2% on strong demand' | finsent predict -"
    )
    with pytest.raises(FinsentError, match=r"^news: file not found; to classify this text, pipe it in: echo news \| finsent predict -$"):
        check_input_exists("news")
    for name in (tmp_path / "missing.txt", "my news.txt", "report.pdf"):  # file names: no hint
        with pytest.raises(FinsentError, match=r"^\S.*: file not found$"):
            check_input_exists(name)
    check_input_exists("-")


def test_line_source_size_position_and_first_replaced_line(tmp_path: Path) -> None:
    import gzip

    data = b"".join(b"line %d\n" % i for i in range(2000)) + b"bad \xff\nend\n"
    p, g = tmp_path / "in.txt", tmp_path / "in.txt.gz"
    p.write_bytes(data)
    g.write_bytes(gzip.compress(data))
    for path in (p, g):
        src = LineSource(path)
        assert src.size == path.stat().st_size and src.position() <= src.size
        assert len(list(src)) == 2002 and src.position() == src.size  # on disk: .gz in compressed bytes
        assert (src.replaced, src.first_replaced) == (1, 2001)
        src.close()
    assert LineSource("-", io.BytesIO(data)).size is None  # a stream has no size


def test_a_lone_carriage_return_in_an_unquoted_field_is_one_malformed_line(tmp_path: Path) -> None:
    """Scraped TSV often carries a bare \\r; Python's csv refuses it even leniently: one malformed line, no traceback."""
    data = b"id\ttext\n1\tProfit rose\rsharply\n2\tok\n"
    assert [(line, status) for line, _, status in _marked(data, "tsv")] == [(2, "malformed"), (3, None)]
    p = tmp_path / "in.tsv"
    p.write_bytes(data)
    with pytest.raises(FinsentError, match=r"in\.tsv:2: malformed TSV \(a carriage return inside an unquoted field\)"):
        read_inputs(p, "tsv")
