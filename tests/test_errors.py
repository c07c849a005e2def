"""Error messages: control characters escaped, OSErrors named, binary inputs refused, hints in each
command's own spelling, through the real CLI."""

from __future__ import annotations

import csv
import errno
import re
from pathlib import Path

import pytest

from finsent_cli.errors import escape_controls, os_error_message
from tests.helpers import assert_one_line_error, run_cli

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # every C0/C1 control but \t and \n
BINARY = b"text,label\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR,positive\n"
NUL_AT = BINARY.index(b"\x00")


def test_escape_controls() -> None:
    assert escape_controls("a\x00b\x1b[31mc\x7fd\x85e\x9f\tf") == "a\\x00b\\x1b[31mc\\x7fd\\x85e\\x9f\\x09f"
    assert escape_controls("Société 北京 📈 \u2028") == "Société 北京 📈 \u2028"  # printable text untouched


def test_os_error_message() -> None:
    assert os_error_message(PermissionError(errno.EACCES, "Permission denied", "/x")) == "/x: Permission denied"
    assert os_error_message(OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")) == "a -> b: Invalid cross-device link"
    assert os_error_message(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"


@pytest.fixture()
def binary(tmp_path: Path) -> Path:
    p = tmp_path / "binary.csv"
    p.write_bytes(BINARY)
    return p


def _assert_binary_error(res: object, path: Path) -> None:
    line = assert_one_line_error(res, f"{path}: looks like a binary file (NUL byte at offset {NUL_AT}), not text", code=1)  # type: ignore[arg-type]
    assert not CONTROL.search(line)


def test_prep_refuses_a_binary_file(tmp_path: Path, binary: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\ndata:\n  source: {binary}\n", encoding="utf-8")
    _assert_binary_error(run_cli("prep", str(recipe)), binary)
    assert not (tmp_path / "out").exists()


def test_predict_and_eval_refuse_a_binary_file(tmp_path: Path, binary: Path, tiny_bert: Path) -> None:
    txt = tmp_path / "binary.txt"
    txt.write_bytes(BINARY)
    _assert_binary_error(run_cli("predict", str(txt), "-m", str(tiny_bert)), txt)
    _assert_binary_error(run_cli("eval", str(tiny_bert), str(binary)), binary)


def test_control_characters_from_a_file_never_reach_the_terminal(tmp_path: Path) -> None:
    src = tmp_path / "x.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sen\x1b]0;pwned\x07tence", "label\x9b2J"])
        w.writerows([[f"text {i}", "positive"] for i in range(3)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\ndata:\n  source: {src}\n", encoding="utf-8")
    res = run_cli("prep", str(recipe))
    line = assert_one_line_error(res, "found: sen\\x1b]0;pwned\\x07tence, label\\x9b2J", "set data.text_column", code=1)
    assert not CONTROL.search(res.stderr) and not CONTROL.search(line)


def test_eval_hints_name_eval_options(tmp_path: Path, tiny_bert: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("sentence,label\nProfit rose,positive\n", encoding="utf-8")
    line = assert_one_line_error(run_cli("eval", str(tiny_bert), str(data)), "no column 'text'", "set --text-column", code=1)
    assert "data." not in line
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,label\nup \xff,positive\n")
    line = assert_one_line_error(run_cli("eval", str(tiny_bert), str(bad)), "invalid UTF-8", "re-encode the file as UTF-8")
    assert "data.encoding_errors" not in line
