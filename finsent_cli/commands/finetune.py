"""`finsent finetune RECIPE [KEY=VALUE ...]`: fine-tune a sentiment classifier (full or LoRA)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import DataDirOpt, DryRunOpt, FreshOpt, OverridesArg, QuietOpt, guarded
from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe, recipe_to_yaml
from finsent_cli.core.io import check_writable
from finsent_cli.errors import FinsentError

MergeOpt = Annotated[
    Path | None,
    typer.Option(
        "--merge",
        help="Merge the LoRA adapter of this run (or adapter folder) into a plain model folder; needs --output.",
        show_default=False,
    ),
]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Where --merge writes the merged model folder.", show_default=False)]
OptionalRecipeArg = Annotated[Path | None, typer.Argument(help="YAML recipe (see recipes/).", show_default=False)]


def _render(result: object) -> None:
    from finsent_cli.core.flows.finetune import FinetuneResult

    assert isinstance(result, FinetuneResult)
    cols = ["accuracy", "macro_f1", "f1_negative", "f1_neutral", "f1_positive", "loss"]
    rows = [[split, *(m[c] for c in cols)] for split, m in result.final.items()]
    if rows:
        ui.console.print(ui.table(f"best/ (step {result.best_step})", ["split", *cols], rows))
    wrong = f"; {result.misclassified} misclassified validation examples in {result.run_dir / 'misclassified_valid.csv'}"
    ui.run_end(result, wrong, "best/, last/, metrics.jsonl")


@guarded
def finetune_cmd(
    recipe: OptionalRecipeArg = None,
    overrides: OverridesArg = None,
    dry_run: DryRunOpt = False,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
    fresh: FreshOpt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", hidden=True, help="Old spelling of --fresh.")] = False,
    merge: MergeOpt = None,
    output: OutputOpt = None,
) -> None:
    """Fine-tune an encoder such as minilm into a negative/neutral/positive classifier; re-run to resume."""
    if merge is not None:
        if output is None:
            raise FinsentError("--merge needs --output DIR for the merged model folder", exit_code=2)
        check_writable(output, folder=True)
        from finsent_cli.core.flows.merge import merge_adapter

        ui.console.print(f"wrote {merge_adapter(merge, output)} (adapter merged into the base model)")
        return
    if recipe is None:
        raise FinsentError("missing RECIPE (or --merge RUN --output DIR)", exit_code=2)
    cfg = load_recipe(recipe, FinetuneRecipe, overrides, data_dir)
    if dry_run:
        typer.echo(recipe_to_yaml(cfg), nl=False)
        return
    check_writable(cfg.output_dir, folder=True)  # before any data is read or model loaded
    reporter = ui.ConsoleReporter(quiet=quiet)
    reporter.log(f"finetune: {cfg.model.kind} {cfg.model.backbone} -> {cfg.output_dir} (loading torch)")
    from finsent_cli.core.flows.finetune import run_finetune

    result = run_finetune(cfg, reporter, fresh=fresh or overwrite)
    if result.final:  # only the main process has the final metrics
        _render(result)
