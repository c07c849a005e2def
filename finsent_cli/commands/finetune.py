"""`finsent finetune RECIPE [KEY=VALUE ...]`: fine-tune a sentiment classifier (full, LoRA, QLoRA, Mamba adapters)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands._recipe import fail_on_missing, recipe_for_run
from finsent_cli.commands.options import DataDirOpt, DryRunOpt, FreshOpt, OverridesArg, QuietOpt, SweepOpt, guarded
from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.core.io import check_writable
from finsent_cli.errors import FinsentError

MergeOpt = Annotated[
    Path | None,
    typer.Option(
        "--merge",
        help="Merge the adapter (LoRA, QLoRA, Mamba) of this run or adapter folder and its base into a plain "
        "full-precision model folder; needs --output.",
        show_default=False,
    ),
]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Where --merge writes the merged model folder.", show_default=False)]
OptionalRecipeArg = Annotated[Path | None, typer.Argument(help="YAML recipe (see recipes/).", show_default=False)]
COLUMNS = ["accuracy", "macro_f1", "f1_negative", "f1_neutral", "f1_positive", "loss"]


def render_result(result: object) -> None:
    """The closing table of a fine-tuning run (best/ on each split) and its closing lines."""
    from finsent_cli.core.flows.finetune import FinetuneResult

    assert isinstance(result, FinetuneResult)
    rows = [[split, *(m[c] for c in COLUMNS)] for split, m in result.final.items()]
    if rows:
        heads = ["split", "accuracy", "macro-F1", "F1 neg", "F1 neu", "F1 pos", "loss"]  # fits 80 columns
        ui.console.print(ui.table(f"best/ (step {result.best_step})", heads, rows))
    wrong = f"; {result.misclassified} misclassified validation examples in {result.run_dir / 'misclassified_valid.csv'}"
    ui.run_end(result, wrong, "best/, last/, metrics.jsonl")


def merge(source: Path, output: Path | None) -> None:
    """``--merge SOURCE --output DIR``."""
    if output is None:
        raise FinsentError("--merge needs --output DIR for the merged model folder", exit_code=2)
    check_writable(output, folder=True)
    from finsent_cli.core.flows.merge import merge_adapter

    ui.console.print(f"wrote {merge_adapter(source, output)} (adapter merged into the base model)")


def train(
    command: str, recipe: Path, overrides: list[str], data_dir: Path | None, *, dry_run: bool, quiet: bool, fresh: bool,
    sweep: list[str] | None,
) -> None:  # fmt: skip
    """Validate, then fine-tune one run or a sweep of runs (``finetune`` and ``qlora`` share this)."""
    if sweep:
        from finsent_cli.core.flows.sweep import SweepPlan, finetune_sweep

        out = finetune_sweep(
            recipe, sweep, overrides, data_dir, command=command, dry_run=dry_run, fresh=fresh, reporter=ui.ConsoleReporter(quiet=quiet)
        )  # fmt: skip
        if isinstance(out, SweepPlan):  # --dry-run
            typer.echo("\n".join(f"{name}: {cfg.output_dir}" for name, _, cfg in out.points))
            fail_on_missing(recipe, out.missing)
        else:
            render_sweep(out)
        return
    cfg = recipe_for_run(recipe, FinetuneRecipe, overrides, data_dir, dry_run=dry_run)
    if cfg is None:
        return
    reporter = ui.ConsoleReporter(quiet=quiet)
    reporter.log(f"{command}: {cfg.model.kind} {cfg.model.backbone} -> {cfg.output_dir} (loading torch)")
    from finsent_cli.core.flows.finetune import run_finetune

    result = run_finetune(cfg, reporter, fresh=fresh)
    if result.final:  # only the main process has the final metrics
        render_result(result)


def render_sweep(result: object) -> None:
    """The table of a finished sweep: the axis values and the main results of every point."""
    from finsent_cli.core.flows.sweep import SweepResult

    assert isinstance(result, SweepResult)
    keys = [axis.key for axis in result.axes]
    shown = ["valid_accuracy", "valid_macro_f1", "test_accuracy", "test_macro_f1", "trainable_params", "train_seconds", "peak_rss_mib"]
    rows = [[*(str(row.get(k)) for k in keys), *(_short(c, row.get(c)) for c in shown)] for row in result.rows]
    heads = [k.rsplit(".", 1)[-1] for k in keys] + ["valid acc", "valid F1", "test acc", "test F1", "trainable", "train s", "peak MiB"]
    ui.console.print(ui.table(f"sweep: {len(rows)} runs in {result.sweep_dir}", heads, rows, right_from=len(keys)))
    ui.console.print(f"wrote {result.csv_path} and {result.json_path.name} (all columns)")


def _short(column: str, value: object) -> object:
    """A sweep table cell that fits a terminal: 4 decimals for metrics, 2.24M parameters, whole seconds and MiB."""
    if value is None:
        return "-"
    if column == "trainable_params" and isinstance(value, int):
        return f"{value / 1e6:.2f}M" if value >= 10_000 else str(value)
    if column in ("train_seconds", "peak_rss_mib") and isinstance(value, (int, float)):
        return f"{value:.0f}"
    return value


@guarded
def finetune_cmd(
    recipe: OptionalRecipeArg = None,
    overrides: OverridesArg = None,
    dry_run: DryRunOpt = False,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
    fresh: FreshOpt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", hidden=True, help="Old spelling of --fresh.")] = False,
    sweep: SweepOpt = None,
    merge_from: MergeOpt = None,
    output: OutputOpt = None,
) -> None:
    """Fine-tune an encoder such as minilm into a negative/neutral/positive classifier; re-run to resume."""
    if merge_from is not None:
        merge(merge_from, output)
        return
    if recipe is None:
        raise FinsentError("missing RECIPE (or --merge RUN --output DIR)", exit_code=2)
    train("finetune", recipe, overrides or [], data_dir, dry_run=dry_run, quiet=quiet, fresh=fresh or overwrite, sweep=sweep)
