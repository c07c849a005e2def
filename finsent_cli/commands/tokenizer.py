"""`finsent tokenizer RECIPE [KEY=VALUE ...]`: train a T5-layout SentencePiece tokenizer."""

from __future__ import annotations

from finsent_cli import ui
from finsent_cli.commands._recipe import recipe_for_run
from finsent_cli.commands.options import DataDirOpt, DryRunOpt, OverridesArg, QuietOpt, RecipeArg, guarded
from finsent_cli.config.tokenizer import TokenizerRecipe


@guarded
def tokenizer_cmd(recipe: RecipeArg, overrides: OverridesArg = None, dry_run: DryRunOpt = False, data_dir: DataDirOpt = None, quiet: QuietOpt = False) -> None:
    """Train a SentencePiece tokenizer with T5's pad/eos/unk and <extra_id_*> sentinels."""
    cfg = recipe_for_run(recipe, TokenizerRecipe, overrides, data_dir, dry_run=dry_run)  # output checked before any data is read
    if cfg is None:
        return
    from finsent_cli.core.tokenizer import train_tokenizer

    result = train_tokenizer(cfg, ui.ConsoleReporter(quiet=quiet))
    rows = []
    for key in ("finsent", "reference"):
        stats = result.report.get(key)
        if stats:
            name = "finsent" if key == "finsent" else f"reference ({stats['name']})"
            rows.append([name, stats["vocab_size"], f"{stats['unk_rate']:.4%}", f"{stats['mean_tokens']:.2f}"])
    if rows:
        title = f"held-out text: {result.report['finsent']['sentences']:,} sentences"
        ui.console.print(ui.table(title, ["tokenizer", "vocab", "unknown rate", "tokens/sentence"], rows))
    ui.console.print(f"wrote {result.output_dir} (load with transformers.AutoTokenizer.from_pretrained)")
