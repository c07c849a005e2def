"""`finsent completions SHELL`: print a static completion script for bash, zsh or fish."""

from __future__ import annotations

from typing import Annotated

import typer

from finsent_cli.commands.options import guarded
from finsent_cli.completions import SHELLS, render
from finsent_cli.errors import FinsentError


@guarded
def completions_cmd(ctx: typer.Context, shell: Annotated[str, typer.Argument(help=f"One of: {', '.join(SHELLS)}.")]) -> None:
    """Print a shell completion script (install: finsent completions bash > ~/.local/share/bash-completion/completions/finsent)."""
    if shell not in SHELLS:
        raise FinsentError(f"unknown shell '{shell}' (expected one of {', '.join(SHELLS)})", exit_code=2)
    typer.echo(render(ctx.find_root().command, shell), nl=False)
