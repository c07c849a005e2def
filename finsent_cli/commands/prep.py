"""`finsent prep RECIPE [KEY=VALUE ...]`: clean, normalise, deduplicate and split data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from finsent_cli import ui
from finsent_cli.commands._recipe import recipe_for_run
from finsent_cli.commands.options import DataDirOpt, DryRunOpt, OverridesArg, QuietOpt, RecipeArg, guarded
from finsent_cli.config.prep import PrepRecipe

if TYPE_CHECKING:
    from finsent_cli.core.data.prep import PrepResult


def render_prep(result: PrepResult) -> None:
    """Show the class counts per split (labelled) or lines per split (corpus), and what was dropped."""
    counts = result.counts
    if result.manifest.get("kind") == "corpus":
        rows = [[name, c["lines"], c["chars"]] for name, c in counts.items()]
        ui.console.print(ui.table("corpus", ["split", "lines", "characters"], rows))
    else:
        labels = result.manifest["labels"]
        rows = [[name, *(c[label] for label in labels), sum(c.values())] for name, c in counts.items()]
        ui.console.print(ui.table("class counts", ["split", *labels, "total"], rows))
    if result.dropped:
        ui.console.print(ui.table("dropped", ["reason", "rows"], [[k, v] for k, v in sorted(result.dropped.items())]))
    ui.console.print(f"wrote {result.output_dir}")


@guarded
def prep_cmd(recipe: RecipeArg, overrides: OverridesArg = None, dry_run: DryRunOpt = False, data_dir: DataDirOpt = None, quiet: QuietOpt = False) -> None:
    """Prepare labelled data (clean, label-normalise, dedupe, split) or an unlabelled corpus."""
    cfg = recipe_for_run(recipe, PrepRecipe, overrides, data_dir, dry_run=dry_run)  # output checked before any data is read
    if cfg is None:
        return
    from finsent_cli.core.data.prep import run_prep

    render_prep(run_prep(cfg, ui.ConsoleReporter(quiet=quiet)))
