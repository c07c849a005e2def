"""What every recipe command does first: load and validate the recipe, print it for ``--dry-run`` (and list
the inputs that do not exist yet), and check that the output folder can be written before any data is read
or model loaded."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pydantic
import typer

from finsent_cli.config.loader import MissingInput, load_recipe, recipe_to_yaml
from finsent_cli.core.io import check_writable
from finsent_cli.errors import FinsentError

R = TypeVar("R", bound=pydantic.BaseModel)

MISSING_EXIT_CODE = 1
"""Exit code of a ``--dry-run`` whose recipe is valid but names inputs that do not exist yet (a recipe
error exits 2, as without ``--dry-run``)."""


def recipe_for_run(recipe: Path, schema: type[R], overrides: list[str] | None, data_dir: Path | None, *, dry_run: bool) -> R | None:
    """The validated recipe, ready to run; None after ``--dry-run`` printed it and found every input.

    Raises:
        RecipeError: every problem of the recipe, one line each (exit code 2).
        FinsentError: ``--dry-run`` of a valid recipe with missing inputs, one line each with the command that
            makes it where a recipe does (exit code 1); the output folder cannot be written.
    """
    if dry_run:
        missing: list[MissingInput] = []
        cfg = load_recipe(recipe, schema, overrides, data_dir, missing=missing)
        typer.echo(recipe_to_yaml(cfg), nl=False)
        fail_on_missing(recipe, missing)
        return None
    cfg = load_recipe(recipe, schema, overrides, data_dir)
    check_writable(cfg.output_dir, folder=True)  # type: ignore[attr-defined]  # every training recipe has one
    return cfg


def fail_on_missing(recipe: Path, missing: list[MissingInput]) -> None:
    """End a ``--dry-run`` with the inputs that do not exist yet, if any.

    Raises:
        FinsentError: one line per missing input (each once), then what to do (exit code 1).
    """
    lines = list(dict.fromkeys(m.problem for m in missing))
    if lines:
        n = len({m.path for m in missing})
        what = "1 of its inputs does" if n == 1 else f"{n} of its inputs do"
        lines.append(f"{recipe}: the recipe is valid, but {what} not exist yet (above)")
        raise FinsentError("\n".join(lines), exit_code=MISSING_EXIT_CODE)
