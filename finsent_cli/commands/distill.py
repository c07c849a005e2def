"""`finsent distill RECIPE [KEY=VALUE ...]`: distil a teacher (mpnet, say) into a small student on unlabelled news."""

from __future__ import annotations

from finsent_cli import ui
from finsent_cli.commands._recipe import recipe_for_run
from finsent_cli.commands.finetune import render_result
from finsent_cli.commands.options import DataDirOpt, DryRunOpt, FreshOpt, OverridesArg, QuietOpt, RecipeArg, guarded
from finsent_cli.config.distill import DistillRecipe


@guarded
def distill_cmd(
    recipe: RecipeArg,
    overrides: OverridesArg = None,
    dry_run: DryRunOpt = False,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
    fresh: FreshOpt = False,
) -> None:
    """Train a small student on a teacher's soft labels of unlabelled news and on labelled data; re-run to resume."""
    cfg = recipe_for_run(recipe, DistillRecipe, overrides, data_dir, dry_run=dry_run)
    if cfg is None:
        return
    reporter = ui.ConsoleReporter(quiet=quiet)
    teachers = ", ".join(str(p) for p in cfg.teacher.models)
    reporter.log(f"distill: {teachers} -> {cfg.model.kind} {cfg.model.backbone} -> {cfg.output_dir} (loading torch)")
    from finsent_cli.core.flows.distill import run_distill

    result = run_distill(cfg, reporter, fresh=fresh)
    if result.final:  # only the main process has the final metrics
        render_result(result)
