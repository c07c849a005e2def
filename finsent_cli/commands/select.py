"""`finsent select MODEL POOL --budget K`: the unlabelled texts most worth labelling next (active learning)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import (
    DeviceOpt,
    DryRunOpt,
    QuietOpt,
    TextColumnOpt,
    guarded,
    input_format_option,
    output_option,
)
from finsent_cli.core.predict.inputs import INPUT_FORMATS
from finsent_cli.core.progress import counted
from finsent_cli.errors import FinsentError

ModelArg = Annotated[
    str,
    typer.Argument(metavar="MODEL", help="Run, model or LoRA adapter folder, or a built-in model name (news, default), that scores the pool.", show_default=False),
]
PoolArg = Annotated[
    str,
    typer.Argument(
        metavar="POOL",
        help="Unlabelled texts: .txt (one a line), .csv/.tsv, .jsonl (.gz too), or - for stdin.",
        show_default=False,
    ),
]
BudgetOpt = Annotated[
    int | None,
    typer.Option("--budget", "-k", min=1, metavar="K", help="How many texts to pick (required).", show_default=False),
]
RecipeOpt = Annotated[
    Path | None,
    typer.Option(
        "--recipe",
        "-r",
        metavar="FILE",
        help="Select recipe (recipes/select.yaml); default: its defaults.",
        show_default=False,
    ),
]
OutputOpt = Annotated[Path | None, output_option("Write the CSV here (atomically) instead of stdout.")]
InputFormatOpt = Annotated[str, input_format_option(INPUT_FORMATS, "from the suffix; - is txt")]


SelectOverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[KEY=VALUE]...",
        help="Dotted overrides of the recipe, e.g. rarity.weight=0 uncertainty.measure=entropy.",
        show_default=False,
    ),
]


@guarded
def select_cmd(
    model: ModelArg,
    pool: PoolArg,
    overrides: SelectOverridesArg = None,
    budget: BudgetOpt = None,
    recipe: RecipeOpt = None,
    output: OutputOpt = None,
    text_column: TextColumnOpt = "text",
    input_format: InputFormatOpt = "auto",
    dry_run: DryRunOpt = False,
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Pick the K pool texts most worth labelling: uncertain, rare-worded or outlying, without duplicates.

    Prints a CSV for annotators, best first: text, line (in POOL), score, the uncertainty, rarity and outlier scores,
    and the model's guess (label, confidence); score is the weighted mean of the components' rank percentiles.

    Texts already in the model's training data (its run's train_hashes.json) are dropped first.

    Dotted overrides of the recipe follow POOL, e.g. finsent select runs/pb pool.txt -k 200 rarity.weight=0
    """
    from finsent_cli.config.loader import load_recipe, recipe_to_yaml
    from finsent_cli.config.select import SelectRecipe

    cfg = load_recipe(recipe, SelectRecipe, overrides, check_paths=False)
    if dry_run:
        typer.echo(recipe_to_yaml(cfg), nl=False)
        return
    if budget is None:
        raise FinsentError(
            "missing option '--budget' (how many texts to pick) (see 'finsent select --help')", exit_code=2
        )
    from finsent_cli.core.io import atomic_write_text, check_file_target

    if output is not None:
        check_file_target(output)
    reporter = ui.ConsoleReporter(quiet=quiet)
    # run_select imports torch first (seconds): say what is coming before it
    reporter.log(f"select: {'stdin' if pool == '-' else pool}; loading torch and the model")
    from finsent_cli.core.select.run import run_select, to_csv

    result = run_select(
        model, pool, budget, cfg, reporter, input_format=input_format, text_column=text_column, device=device
    )
    body = to_csv(result)
    if output is None:
        typer.echo(body, nl=False)
    else:
        atomic_write_text(output, body)
    weights = ", ".join(f"{name} {w:g}" for name, w in result.weights.items())
    dropped = f"; {result.in_training} already in the training data" if result.in_training else ""
    where = f" -> {output}" if output is not None else ""
    reporter.log(
        f"picked {counted(len(result.rows), 'text')} of {result.read} by {weights} "
        f"({counted(result.duplicates, 'duplicate')} skipped{dropped}){where}"
    )
