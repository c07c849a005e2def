"""Option and argument types shared by every command, so each flag is spelled the same everywhere."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from finsent_cli import ui
from finsent_cli.errors import FinsentError, os_error_message

F = TypeVar("F", bound=Callable[..., Any])

RecipeArg = Annotated[Path, typer.Argument(help="YAML recipe (see recipes/).", show_default=False)]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Dotted overrides, e.g. data.test_size=0.2 optim.lr=3e-5.", show_default=False),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate the recipe, print it resolved, do nothing else.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Value of ${data_dir} in recipes (default: $FINSENT_DATA_DIR, else ./data).", show_default=False),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model, LoRA or run folder (default: $FINSENT_MODEL, else runs/latest).", show_default=False),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Texts per forward pass.")]


def guarded(fn: F) -> F:
    """The CLI's error boundary: no traceback for a user mistake or a refusal of the system.

    A :class:`FinsentError` becomes one ``error:`` line per problem and its exit code; any
    :class:`OSError` (permission denied, read-only file system, no space left, ...) one line naming
    the path(s) and the reason, exit code 1; Ctrl-C the line ``interrupted``, exit code 130.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FinsentError as exc:
            ui.error(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            ui.error(os_error_message(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            ui.error("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
