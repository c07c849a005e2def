"""Readers: every format, UTF-8 errors with offsets, binary files, columns, hints in the caller's spelling."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from finsent_cli.core.data.readers import (
    FORMATS,
    Replaced,
    check_format,
    detect_format,
    format_from_suffix,
    iter_lines,
    read_table,
    replaced_message,
)
from finsent_cli.core.predict.inputs import INPUT_FORMATS, detect_input_format
from finsent_cli.errors import FinsentError

ROWS = [("Profit, up \"a lot\"", "positive"), ("Loss\nwidened", "negative")]


def _csv(tmp_path: Path, delimiter: str = ",", name: str = "x.csv") -> Path:
    import csv

    p = tmp_path / name
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(["text", "label"])
        w.writerows(ROWS)
    return p


def test_csv_tsv_jsonl_parquet_agree(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    jl = tmp_path / "x.jsonl"
    jl.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in ROWS) + "\n", encoding="utf-8")
    pqf = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": t, "label": lab} for t, lab in ROWS]), pqf)
    for path in (_csv(tmp_path), _csv(tmp_path, "\t", "x.tsv"), jl, pqf):
        recs, replaced = read_table(path)
        assert [(r.text, r.label) for r in recs] == ROWS, path
        assert not replaced and replaced == Replaced()


def test_csv_line_numbers_follow_embedded_newlines(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text('text,label\n"a\nb",positive\nc,negative\n', encoding="utf-8")
    recs, _ = read_table(p)
    assert [r.where for r in recs] == [f"{p}:2", f"{p}:4"]


def test_missing_column_lists_found(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("sentence,sentiment\na,positive\n", encoding="utf-8")
    with pytest.raises(FinsentError, match=r"no column 'text' \(found: sentence, sentiment\); set data.text_column"):
        read_table(p)


def test_invalid_utf8_strict_and_replace(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_bytes(b"text,label\nok,positive\nbad \xff byte,negative\n")
    with pytest.raises(FinsentError, match=r"invalid UTF-8 at byte offset 27 \(line 3, byte 0xff\)"):
        read_table(p)
    recs, replaced = read_table(p, encoding_errors="replace")
    assert replaced == Replaced(lines=1, first_line=3) and recs[1].text == "bad \ufffd byte"


def test_replaced_bytes_are_counted_by_line_with_the_first_named(tmp_path: Path) -> None:
    """prep and predict report replaced bytes the same way: lines, the first line, the fix."""
    p = tmp_path / "x.csv"
    p.write_bytes(b"text,label\nok \xef\xbf\xbd already,positive\nbad \xff\xfe twice,negative\nfine,neutral\nalso \xc3,negative\n")
    recs, replaced = read_table(p, encoding_errors="replace")
    assert replaced == Replaced(lines=2, first_line=3)  # a U+FFFD already in the file is no replacement
    assert [r.text for r in recs][1:] == ["bad \ufffd\ufffd twice", "fine", "also \ufffd"]
    assert replaced_message(str(p), 2, 3) == (
        f"{p}: replaced invalid UTF-8 with U+FFFD in 2 lines (first: line 3); re-encode the file as UTF-8 to keep the original characters"
    )
    assert "in 1 line (first: line 9)" in replaced_message("x", 1, 9)
    t = tmp_path / "c.txt"
    t.write_bytes(b"one\ntwo \xff\nthree\n\xfe\n")
    bad: list[int] = []
    assert [line for _, line in iter_lines(t, "replace", bad.append)] == ["one", "two \ufffd", "three", "\ufffd"]
    assert bad == [2, 4]


def test_empty_and_header_only(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("", encoding="utf-8")
    with pytest.raises(FinsentError, match="file is empty"):
        read_table(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("text,label\n", encoding="utf-8")
    with pytest.raises(FinsentError, match="no data rows"):
        read_table(tmp_path / "h.csv")


def test_unknown_suffix_and_bad_json(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_text("x", encoding="utf-8")
    with pytest.raises(FinsentError, match="set data.format"):
        read_table(tmp_path / "x.xlsx")
    (tmp_path / "b.jsonl").write_text('{"text": "a", "label": "positive"}\n{oops\n', encoding="utf-8")
    with pytest.raises(FinsentError, match=r"b.jsonl:2: invalid JSON"):
        read_table(tmp_path / "b.jsonl")


def test_iter_lines_gz_and_bad_bytes(tmp_path: Path) -> None:
    import gzip

    g = tmp_path / "c.txt.gz"
    with gzip.open(g, "wt", encoding="utf-8") as fh:
        fh.write("one line here\ntwo\r\n")
    assert list(iter_lines(g)) == [(1, "one line here"), (2, "two")]
    b = tmp_path / "b.txt"
    b.write_bytes(b"fine\nbroken \xc3\x28\n")
    with pytest.raises(FinsentError, match=r"b.txt:2: invalid UTF-8 at byte offset 12"):
        list(iter_lines(b))


# --- binary files, control characters, one format detector, hints in the caller's spelling ---------


def test_binary_file_is_refused_with_the_offset(tmp_path: Path) -> None:
    import gzip

    data = b"text,label\nok,positive\n\x89PNG\x00\x01,negative\n"
    offset = data.index(b"\x00")
    (tmp_path / "b.csv").write_bytes(data)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(data))  # the offset counts gunzipped bytes
    for name in ("b.csv", "b.jsonl.gz"):
        with pytest.raises(FinsentError) as info:
            read_table(tmp_path / name)
        assert info.value.message == f"{tmp_path / name}: looks like a binary file (NUL byte at offset {offset}), not text"


def test_parquet_is_binary_by_nature(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "a", "label": "positive"}]), p)
    assert b"\x00" in p.read_bytes()[:8192]
    assert [r.text for r in read_table(p)[0]] == ["a"]


def test_utf16_is_named_as_such(tmp_path: Path) -> None:
    p = tmp_path / "u.csv"
    p.write_text("text,label\na,positive\n", encoding="utf-16")
    with pytest.raises(FinsentError, match=r"u\.csv: looks like UTF-16 text .*re-encode the file as UTF-8"):
        read_table(p)


def test_iter_lines_refuses_binary_gz(tmp_path: Path) -> None:
    import gzip

    g = tmp_path / "c.txt.gz"
    g.write_bytes(gzip.compress(b"fine line\n\x7fELF\x02\x01\x01\x00\n"))
    with pytest.raises(FinsentError, match=r"c\.txt\.gz: looks like a binary file \(NUL byte at offset 17\), not text"):
        list(iter_lines(g))


def test_control_characters_in_found_columns_are_escaped(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_bytes("sen\x1b[2Jtence,lab\x85el\r\nup,positive\n".encode())
    with pytest.raises(FinsentError) as info:
        read_table(p)
    msg = info.value.message
    assert "found: sen\\x1b[2Jtence, lab\\x85el" in msg
    assert not re.search("[\x00-\x1f\x7f-\x9f]", msg)


def test_one_suffix_map_each_caller_its_formats() -> None:
    assert format_from_suffix("a.TSV.gz", FORMATS) == "tsv"
    assert format_from_suffix("a.tab", FORMATS) == format_from_suffix("a.tab", INPUT_FORMATS) == "tsv"
    assert format_from_suffix("a.txt", FORMATS) is None and format_from_suffix("a.txt", INPUT_FORMATS) == "txt"
    assert format_from_suffix("a.parquet", FORMATS) == "parquet" and format_from_suffix("a.parquet", INPUT_FORMATS) is None
    with pytest.raises(FinsentError, match=r"cannot tell the format from '\.txt'; set data\.format to one of csv"):
        detect_format(Path("a.txt"))
    with pytest.raises(FinsentError, match=r"cannot tell the input format from '\.parquet'; set --input-format"):
        detect_input_format("a.parquet")


EVAL_SETTINGS = {"text_column": "--text-column", "label_column": "--label-column", "format": "--input-format"}


def test_hints_use_the_callers_spelling(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("sentence,label\na,positive\n", encoding="utf-8")
    with pytest.raises(FinsentError, match=r"no column 'text' \(found: sentence, label\); set --text-column$"):
        read_table(p, settings=EVAL_SETTINGS)
    with pytest.raises(FinsentError, match=r"no column 'text' \(found: sentence, label\)$"):
        read_table(p, settings={})  # no such setting: no hint naming one
    (tmp_path / "x.xlsx").write_text("x", encoding="utf-8")
    with pytest.raises(FinsentError, match=r"set --input-format to one of"):
        read_table(tmp_path / "x.xlsx", settings=EVAL_SETTINGS)
    with pytest.raises(FinsentError, match=r"name the file with one of the suffixes \.csv, \.tsv, \.jsonl, \.parquet$"):
        read_table(tmp_path / "x.xlsx", settings={})
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,label\n\xff,positive\n")
    with pytest.raises(FinsentError) as info:
        read_table(bad, settings=EVAL_SETTINGS)
    assert info.value.message.endswith("; re-encode the file as UTF-8") and "data." not in info.value.message


def test_unknown_table_format_is_refused_not_read_as_tsv(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("text\tlabel\na\tpositive\n", encoding="utf-8")
    for settings, name in ((EVAL_SETTINGS, "--input-format"), ({}, "table format")):
        with pytest.raises(FinsentError) as info:
            read_table(p, fmt="xml", settings=settings)
        assert info.value.message == f"unknown {name} 'xml' (choose auto, csv, tsv, jsonl, parquet)"
        assert info.value.exit_code == 2
    with pytest.raises(FinsentError, match=r"unknown data\.format 'txt'"):
        detect_format(p, "txt")
    assert [check_format(f) for f in ("auto", *FORMATS)] == ["auto", *FORMATS]
