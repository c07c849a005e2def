"""`guarded`, the CLI's one error boundary: user errors and refusals of the system are one line, no traceback;
a closed stdout ends quietly; every usage error names the command's help."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from finsent_cli.commands.options import guarded
from finsent_cli.errors import FinsentError
from tests.helpers import HANG_GUARD_S, CliResult, assert_one_line_error, run_cli


def _run(exc: BaseException) -> CliResult:
    app = typer.Typer()

    @app.command()
    @guarded
    def boom() -> None:
        raise exc

    res = CliRunner().invoke(app, [], catch_exceptions=False, color=False)
    return CliResult(res.exit_code, res.stdout, res.stderr)


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/data/out.csv"), "error: /data/out.csv: Permission denied"),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x"), "error: /mnt/ro/x: Read-only file system"),
        (OSError(errno.ENOSPC, "No space left on device"), "error: No space left on device"),
        (OSError(errno.ENAMETOOLONG, "File name too long", b"/tmp/" + b"x" * 9), f"error: /tmp/{'x' * 9}: File name too long"),
        (OSError(errno.EXDEV, "Invalid cross-device link", "/a/tmp", None, "/b/out"), "error: /a/tmp -> /b/out: Invalid cross-device link"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "f/out.csv"), "error: f/out.csv: Not a directory"),
        (OSError("plain message"), "error: plain message"),
    ],
)
def test_every_os_error_is_one_line_exit_1(exc: OSError, line: str) -> None:
    res = _run(exc)
    assert_one_line_error(res, code=1)
    assert res.error_lines == [line]


def test_os_error_paths_with_control_characters_are_escaped() -> None:
    res = _run(PermissionError(errno.EACCES, "Permission denied", "out\x1b[2J\r.csv"))
    assert res.error_lines == ["error: out\\x1b[2J\\x0d.csv: Permission denied"]


def test_finsent_error_and_interrupt_unchanged() -> None:
    res = _run(FinsentError("first problem\nsecond problem", exit_code=2))
    assert res.exit_code == 2 and res.error_lines == ["error: first problem", "error: second problem"]
    res = _run(KeyboardInterrupt())
    assert res.exit_code == 130 and res.error_lines == ["error: interrupted"]


def test_other_exceptions_are_bugs_and_escape() -> None:
    with pytest.raises(ValueError):
        _run(ValueError("a bug"))


# --- a reader that closed stdout early, usage errors that name the help ------------------------------


def test_broken_pipe_is_quiet_exit_1() -> None:
    res = _run(BrokenPipeError(errno.EPIPE, "Broken pipe"))
    assert res.exit_code == 1 and res.stderr == ""


def test_closed_stdout_in_a_real_process_prints_no_error() -> None:
    # the read end is closed before the child writes, so its first write always meets EPIPE
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "finsent_cli", "completions", "bash"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=HANG_GUARD_S, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert out.returncode == 1 and out.stderr == "", out.stderr  # no "error: Broken pipe", no "Exception ignored"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["predict", "x.txt", "--format"], "option '--format' requires an argument (see 'finsent predict --help')"),
        (["predict", "x.txt", "-f"], "option '-f' requires an argument (see 'finsent predict --help')"),
        (["predict", "x.txt", "--quiet=yes"], "option '--quiet' does not take a value (see 'finsent predict --help')"),
        (["eval", "m", "d", "--split"], "option '--split' requires an argument (see 'finsent eval --help')"),
        (["--version=1"], "option '--version' does not take a value (see 'finsent --help')"),
    ],
)
def test_every_usage_error_names_the_help(args: list[str], needle: str) -> None:
    res = run_cli(*args)
    assert_one_line_error(res, needle, code=2)

