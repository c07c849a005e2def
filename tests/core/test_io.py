"""Atomic writes and the writability pre-flight: outputs are checked for real before any work, written
with the modes open()/mkdir() would give, and a failed write leaves nothing behind."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from finsent_cli.core import io as fio
from finsent_cli.core.io import atomic_dir, atomic_write_bytes, check_writable
from finsent_cli.errors import FinsentError
from tests.helpers import assert_one_line_error, run_cli


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@contextlib.contextmanager
def _immutable(folder: Path) -> Iterator[None]:
    """``chattr +i folder`` for the block (skips when chattr is missing or the file system refuses)."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr not available")
    if subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("file system refuses chattr +i (or not root)")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], capture_output=True)


@pytest.fixture()
def _restore_umask() -> Iterator[None]:
    """Let a test set the process umask; the old one is always put back."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# --- check_writable ----------------------------------------------------------------------------------


def test_writable_target_passes_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "exists.csv").write_text("old")
    assert check_writable(tmp_path / "new" / "deeper" / "out.csv", folder=False) == tmp_path / "new" / "deeper" / "out.csv"
    check_writable(tmp_path / "exists.csv", folder=False)
    check_writable(tmp_path / "outdir", folder=True)
    assert _names(tmp_path) == ["exists.csv"]  # no probe file, no folders made


@pytest.mark.parametrize("folder", [False, True])
def test_path_through_a_file(tmp_path: Path, folder: bool) -> None:
    (tmp_path / "some_file").write_text("x")
    for target in (tmp_path / "some_file" / "out.csv", tmp_path / "some_file" / "a" / "b" / "out.csv"):
        with pytest.raises(FinsentError, match="a path through a file") as info:
            check_writable(target, folder=folder)
        assert str(target) in info.value.message and f"{tmp_path / 'some_file'} is a file" in info.value.message
        assert info.value.exit_code == 2


def test_folder_for_a_file_and_file_for_a_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(FinsentError, match="is a folder"):
        check_writable(tmp_path, folder=False)
    with pytest.raises(FinsentError, match="is a file, expected an output folder"):
        check_writable(tmp_path / "f", folder=True)


def test_immutable_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    with _immutable(locked):
        for target, folder in ((locked / "out.csv", False), (locked / "sub" / "out.csv", False), (locked / "outdir", True)):
            with pytest.raises(FinsentError) as info:
                check_writable(target, folder=folder)
            assert info.value.exit_code == 1
            assert str(target) in info.value.message and "Operation not permitted" in info.value.message
    assert _names(locked) == []


def test_immutable_existing_output_folder_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"  # a run folder to resume, a prep output to replace: finsent writes inside it
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    with _immutable(run):
        with pytest.raises(FinsentError) as info:
            check_writable(run, folder=True)
        assert info.value.exit_code == 1
        assert f"cannot write in {run} (Operation not permitted)" in info.value.message
    assert _names(run) == ["manifest.json"]
    check_writable(run, folder=True)  # writable again: passes, and leaves nothing behind
    assert _names(run) == ["manifest.json"] and _names(tmp_path) == ["run"]


def test_read_only_folder_for_a_normal_user(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write into a read-only folder; the chattr test covers root")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(FinsentError, match="Permission denied"):
            check_writable(ro / "out.csv", folder=False)
    finally:
        ro.chmod(0o755)


def test_file_name_too_long_is_caught_before_work(tmp_path: Path) -> None:
    with pytest.raises(FinsentError, match="File name too long"):
        check_writable(tmp_path / ("x" * 300 + ".csv"), folder=False)


# --- wired into the commands: checked before data is read or a model loaded --------------------------


@pytest.fixture()
def blocker(tmp_path: Path) -> Path:
    """A file that output paths run through, and a binary data file that would fail if it were read."""
    (tmp_path / "some_file").write_text("x")
    (tmp_path / "binary.csv").write_bytes(b"text,label\n\x00\x01\x02,positive\n")
    (tmp_path / "in.txt").write_text("Profit rose\n")
    return tmp_path / "some_file"


def test_every_output_is_checked_before_any_work(tmp_path: Path, blocker: Path) -> None:
    bogus_model = str(tmp_path / "no_such_model")
    broken_model = tmp_path / "broken_model"  # eval sorts its arguments first: this one passes for a model
    broken_model.mkdir()
    (broken_model / "config.json").write_text("not json", encoding="utf-8")
    recipe = tmp_path / "prep.yaml"
    recipe.write_text(f"output_dir: {blocker / 'out'}\ndata:\n  source: {tmp_path / 'binary.csv'}\n", encoding="utf-8")
    tok = tmp_path / "tok.yaml"
    tok.write_text(f"output_dir: {blocker / 'tok'}\ninput: [{tmp_path / 'binary.csv'}]\nreference: null\n", encoding="utf-8")
    runs = [
        ("prep", str(recipe)),
        ("tokenizer", str(tok)),
        ("eval", str(broken_model), str(tmp_path / "binary.csv"), "-o", str(blocker / "report")),
        ("predict", str(tmp_path / "in.txt"), "-m", bogus_model, "-o", str(blocker / "p.csv")),
        ("explain", "Profit rose", "-m", bogus_model, "-f", "json", "-o", str(blocker / "e.json")),
    ]
    for args in runs:
        line = assert_one_line_error(run_cli(*args), "a path through a file", str(blocker), code=2)
        assert "binary" not in line and "model" not in line, args


def test_immutable_output_folder_through_the_cli(tmp_path: Path, blocker: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    recipe = tmp_path / "prep.yaml"
    recipe.write_text(f"output_dir: {locked / 'out'}\ndata:\n  source: {tmp_path / 'binary.csv'}\n", encoding="utf-8")
    with _immutable(locked):
        assert_one_line_error(run_cli("prep", str(recipe)), str(locked / "out"), "Operation not permitted", code=1)
        res = run_cli("predict", str(tmp_path / "in.txt"), "-m", str(tmp_path / "nope"), "-o", str(locked / "p.csv"))
        assert_one_line_error(res, str(locked / "p.csv"), "Operation not permitted", code=1)


# --- atomic writer: no space left, modes -------------------------------------------------------------


def _no_space(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_no_space_left_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fio.os, "fsync", _no_space)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(tmp_path / "out.bin", b"data")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "out.bin")
    assert _names(tmp_path) == []


def test_no_space_left_through_predict(tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.txt"
    src.write_text("Profit rose\nLoss widened\n", encoding="utf-8")
    out = tmp_path / "out" / "p.csv"
    monkeypatch.setattr(fio.os, "fsync", _no_space)
    res = run_cli("predict", str(src), "-m", str(tiny_bert), "-o", str(out), "-q")
    assert_one_line_error(res, f"{out}: No space left on device", code=1)
    assert _names(tmp_path) == ["in.txt", "out"] and _names(tmp_path / "out") == []  # no partial file, no temp file


@pytest.mark.usefixtures("_restore_umask")
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_modes_are_those_of_open_and_mkdir(tmp_path: Path, mask: int) -> None:
    os.umask(mask)
    atomic_write_bytes(tmp_path / "atomic.txt", b"x")
    (tmp_path / "plain.txt").write_bytes(b"x")
    with atomic_dir(tmp_path / "atomic_dir", only_outputs=False) as d:
        (d / "inner.txt").write_text("x")
    (tmp_path / "plain_dir").mkdir()
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777
    assert mode("atomic.txt") == mode("plain.txt") == 0o666 & ~mask
    assert mode("atomic_dir") == mode("plain_dir") == 0o777 & ~mask
    # what a library writes inside through its own temporary files (transformers: 0600 weights) too
    with atomic_dir(tmp_path / "lib_dir", only_outputs=False) as d:
        fd, name = tempfile.mkstemp(dir=d)
        os.close(fd)
        os.replace(name, d / "model.safetensors")
        (d / "sub").mkdir(mode=0o700)
    assert mode("lib_dir/model.safetensors") == 0o666 & ~mask and mode("lib_dir/sub") == 0o777 & ~mask
    assert os.umask(mask) == mask  # the writer put the umask back


@pytest.mark.usefixtures("_restore_umask")
def test_umask_is_read_never_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # setting the umask and putting it back races with threads that create files meanwhile
    if "Umask:" not in Path("/proc/self/status").read_text(errors="replace"):
        pytest.skip("no Umask line in /proc/self/status")
    os.umask(0o027)
    real, calls = os.umask, []
    monkeypatch.setattr(fio.os, "umask", lambda mask: calls.append(mask) or real(mask))
    atomic_write_bytes(tmp_path / "atomic.txt", b"x")
    with atomic_dir(tmp_path / "atomic_dir", only_outputs=False):
        pass
    assert calls == []
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "atomic_dir").stat().st_mode & 0o777 == 0o750


@pytest.mark.usefixtures("_restore_umask")
def test_umask_without_proc_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(file: object, *args: object, **kwargs: object) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", file)

    os.umask(0o077)
    monkeypatch.setattr(fio, "open", no_proc, raising=False)  # shadows the builtin in finsent_cli.core.io only
    assert fio._umask() == 0o077
    assert os.umask(0o077) == 0o077  # put back
