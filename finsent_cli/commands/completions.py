"""`finsent completions SHELL`: print a static completion script for bash, zsh or fish."""

from __future__ import annotations

from typing import Annotated

import typer

from finsent_cli.commands.options import guarded
from finsent_cli.completions import INSTALL, INSTALL_NOTES, SHELLS, render
from finsent_cli.errors import FinsentError


@guarded
def completions_cmd(ctx: typer.Context, shell: Annotated[str, typer.Argument(help=f"One of: {', '.join(SHELLS)}.")]) -> None:
    """Print a shell completion script (see Install below)."""
    if shell not in SHELLS:
        raise FinsentError(f"unknown shell '{shell}' (expected one of {', '.join(SHELLS)})", exit_code=2)
    typer.echo(render(ctx.find_root().command, shell), nl=False)


completions_cmd.__doc__ = "Print a shell completion script.\n\nInstall (the folder is made if missing):\n\n" + "\n\n".join(
    f"{shell}: {INSTALL[shell]}  ({INSTALL_NOTES[shell]})" for shell in SHELLS
)
