"""`finsent quickstart`: the whole lifecycle on the embedded sample, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import QuietOpt, guarded
from finsent_cli.commands.prep import render_prep
from finsent_cli.core.quickstart import run_quickstart


@guarded
def quickstart_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for every output.")] = Path("runs/quickstart"),
    quiet: QuietOpt = False,
) -> None:
    """Run finsent end to end on the embedded sample of 360 headlines (offline, CPU)."""
    result = run_quickstart(output, ui.ConsoleReporter(quiet=quiet))
    if result.prep is not None:
        render_prep(result.prep)
    ui.console.print(ui.table("quickstart outputs", ["step", "where"], [[k, v] for k, v in result.steps.items()]))
