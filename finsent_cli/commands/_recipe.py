"""What every training command does first: load and validate the recipe, print it for ``--dry-run``, and
check that the output folder can be written before any data is read or model loaded."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pydantic
import typer

from finsent_cli.config.loader import load_recipe, recipe_to_yaml
from finsent_cli.core.io import check_writable

R = TypeVar("R", bound=pydantic.BaseModel)


def recipe_for_run(recipe: Path, schema: type[R], overrides: list[str] | None, data_dir: Path | None, *, dry_run: bool) -> R | None:
    """The validated recipe, ready to run; None after ``--dry-run`` printed it.

    Raises:
        RecipeError: every problem of the recipe, one line each.
        FinsentError: the output folder cannot be written.
    """
    cfg = load_recipe(recipe, schema, overrides, data_dir)
    if dry_run:
        typer.echo(recipe_to_yaml(cfg), nl=False)
        return None
    check_writable(cfg.output_dir, folder=True)  # type: ignore[attr-defined]  # every training recipe has one
    return cfg
