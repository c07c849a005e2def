"""Readers: every format, UTF-8 errors with offsets, columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finsent_cli.core.data.readers import iter_lines, read_table
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
        assert replaced == 0


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
    assert replaced == 1 and recs[1].text == "bad \ufffd byte"


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
