"""`finsent pretrain RECIPE [KEY=VALUE ...]`: T5 span-corruption pretraining on unlabelled news."""

from __future__ import annotations

from finsent_cli import ui
from finsent_cli.commands._recipe import recipe_for_run
from finsent_cli.commands.options import DataDirOpt, DryRunOpt, FreshOpt, OverridesArg, QuietOpt, RecipeArg, guarded
from finsent_cli.config.pretrain import PretrainRecipe


@guarded
def pretrain_cmd(
    recipe: RecipeArg,
    overrides: OverridesArg = None,
    dry_run: DryRunOpt = False,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
    fresh: FreshOpt = False,
) -> None:
    """Pretrain on a news corpus: a T5 with span corruption, or an encoder such as minilm with masked LM; re-run to resume."""
    cfg = recipe_for_run(recipe, PretrainRecipe, overrides, data_dir, dry_run=dry_run)
    if cfg is None:
        return
    reporter = ui.ConsoleReporter(quiet=quiet)
    reporter.log(
        f"pretrain ({cfg.resolved_objective}): {getattr(cfg.model, 'size', None) or getattr(cfg.model, 'backbone', '')} on "
        f"{', '.join(map(str, cfg.data.corpus))} -> {cfg.output_dir} (loading torch)"
    )
    from finsent_cli.core.flows.pretrain import run_pretrain

    result = run_pretrain(cfg, reporter, fresh=fresh)
    if not result.main:
        return
    best = (
        f"; best held-out loss {result.best_heldout_loss:.4f} at step {result.best_step}"
        if result.best_heldout_loss is not None
        else ""
    )
    per_step = f", {result.tokens_per_step:,} tokens/step" if result.tokens_per_step else ""
    what = "T5 folders" if cfg.resolved_objective == "span_corruption" else "masked-LM folders"
    ui.run_end(result, f"{per_step}{best}", f"best/, last/: {what} with the tokenizer; metrics.jsonl")
    ui.console.print(f"next: {result.next_command}")
