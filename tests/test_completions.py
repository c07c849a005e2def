"""The committed completion scripts match the CLI (regenerate with `finsent completions SHELL`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from finsent_cli.completions import SHELLS, render
from finsent_cli.main import app
from tests.helpers import run_cli

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
