"""`finsent qlora RECIPE [KEY=VALUE ...]`: fine-tune with QLoRA (a 4-bit base, LoRA adapters, a full head)."""

from __future__ import annotations

from pathlib import Path

from finsent_cli.commands.finetune import MergeOpt, OptionalRecipeArg, OutputOpt, merge, train
from finsent_cli.commands.options import DataDirOpt, DryRunOpt, FreshOpt, OverridesArg, QuietOpt, SweepOpt, guarded
from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe
from finsent_cli.errors import FinsentError


def qlora_overrides(recipe: Path, overrides: list[str], data_dir: Path | None) -> list[str]:
    """``overrides``, plus ``model.adapter.kind=qlora`` for a LoRA recipe (its LoRA settings kept).

    Raises:
        FinsentError: the recipe trains another adapter kind, or a model kind without adapters.
    """
    cfg = load_recipe(recipe, FinetuneRecipe, overrides, data_dir, check_paths=False)
    kind = getattr(getattr(cfg.model, "adapter", None), "kind", None)
    if cfg.model.kind != "hf_encoder":
        raise FinsentError(
            f"{recipe}: finsent qlora trains kind hf_encoder (any Hugging Face encoder; a finsent T5 too: give its "
            f"pretrain folder as model.backbone), not {cfg.model.kind}",
            exit_code=2,
        )
    if kind == "lora":
        return [*overrides, "model.adapter.kind=qlora"]
    if kind != "qlora":
        raise FinsentError(
            f"{recipe}: model.adapter.kind is {kind}; finsent qlora trains qlora (or lora, made qlora) adapters "
            "(see recipes/qlora_minilm.yaml), finsent finetune trains the others",
            exit_code=2,
        )
    return overrides


@guarded
def qlora_cmd(
    recipe: OptionalRecipeArg = None,
    overrides: OverridesArg = None,
    dry_run: DryRunOpt = False,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
    fresh: FreshOpt = False,
    sweep: SweepOpt = None,
    merge_from: MergeOpt = None,
    output: OutputOpt = None,
) -> None:
    """Fine-tune with QLoRA: the base model in 4-bit NF4, LoRA adapters and a full-precision head; re-run to resume."""
    if merge_from is not None:
        merge(merge_from, output)
        return
    if recipe is None:
        raise FinsentError("missing RECIPE (or --merge RUN --output DIR)", exit_code=2)
    extra = qlora_overrides(recipe, overrides or [], data_dir)
    train("qlora", recipe, extra, data_dir, dry_run=dry_run, quiet=quiet, fresh=fresh, sweep=sweep)
