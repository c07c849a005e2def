"""`finsent quickstart`: the whole lifecycle on the embedded sample, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import QuietOpt, guarded
from finsent_cli.core.io import check_writable
from finsent_cli.ui.reports import render_eval_result, render_explanation


@guarded
def quickstart_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for every output.")] = Path("runs/quickstart"),
    backbone: Annotated[str, typer.Option("--backbone", help="Model to fine-tune: minilm (offline), a folder or a hub name.")] = "minilm",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Fine-tuning epochs.")] = 6,
    quiet: QuietOpt = False,
) -> None:
    """Run finsent end to end on the embedded sample of 360 headlines: prep, finetune, eval, predict, explain."""
    check_writable(output, folder=True)
    reporter = ui.ConsoleReporter(quiet=quiet)
    reporter.log(f"quickstart: writing to {output} (loading torch)")
    from finsent_cli.commands.prep import render_prep
    from finsent_cli.core.flows.quickstart import run_quickstart

    res = run_quickstart(output, reporter, backbone=backbone, epochs=epochs)
    if res.prep is not None:
        render_prep(res.prep)
    ft = res.finetune
    ui.console.print(f"\n[bold]finetune[/]: {ft.steps} steps in {ft.seconds:.0f} s, best step {ft.best_step}")
    for r in res.eval.results:
        render_eval_result(r)
    rows = [[r["line"], r["label"], f"{r['confidence']:.3f}" if r["status"] != "empty" else "", r["text"][:70]] for r in res.predict.rows[:8]]
    ui.console.print(ui.table(f"predictions (first 8 of {len(res.predict.rows)})", ["line", "label", "confidence", "text"], rows, left=(3,)))
    render_explanation(res.explain)
    ui.console.print(ui.table("quickstart outputs", ["what", "where"], [[k, v] for k, v in res.files.items()], right_from=2))
    ui.console.print("\n[bold]next[/]: try")
    for line in res.next_commands:
        ui.console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
