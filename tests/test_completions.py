"""The committed completion scripts match the CLI (regenerate with `finsent completions SHELL`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from finsent_cli.completions import SHELLS, render
from finsent_cli.main import app
from tests.helpers import HANG_GUARD_S, run_cli

ROOT = Path(__file__).resolve().parents[1]
FILES = {"bash": "finsent.bash", "zsh": "_finsent", "fish": "finsent.fish"}


@pytest.mark.parametrize("shell", SHELLS)
def test_committed_completions_match_cli(shell: str) -> None:
    expected = render(typer.main.get_command(app), shell)
    committed = (ROOT / "completions" / FILES[shell]).read_text(encoding="utf-8")
    assert committed == expected, f"completions/{FILES[shell]} is stale: finsent completions {shell} > completions/{FILES[shell]}"


def test_completions_list_every_command_and_option() -> None:
    script = render(typer.main.get_command(app), "bash")
    cli = typer.main.get_command(app)
    for name in cli.list_commands(cli.context_class(cli)):
        assert name in script
    assert "--dry-run" in script and "--data-dir" in script


def test_bash_script_is_valid_bash() -> None:
    if not shutil.which("bash"):
        pytest.skip("no bash")
    subprocess.run(["bash", "-n", str(ROOT / "completions" / FILES["bash"])], check=True)


def test_unknown_shell() -> None:
    res = run_cli("completions", "powershell")
    assert res.exit_code == 2 and "unknown shell" in res.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_the_install_line_works_in_a_fresh_home(shell: str, tmp_path: Path) -> None:
    """The documented line makes the folder itself (a fresh account has no ~/.local/share/bash-completion)."""
    import os
    import sys

    from finsent_cli.completions import INSTALL

    line = INSTALL[shell].replace("finsent completions", f"{sys.executable} -m finsent_cli completions")
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    subprocess.run(["bash", "-c", line], check=True, env=env, cwd=ROOT, timeout=HANG_GUARD_S)
    target = Path(INSTALL[shell].rsplit("> ", 1)[1].replace("~", str(tmp_path)))
    assert target.read_text(encoding="utf-8") == (ROOT / "completions" / FILES[shell]).read_text(encoding="utf-8")
