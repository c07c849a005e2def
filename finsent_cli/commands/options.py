"""Option and argument types shared by every command, so each flag is spelled the same everywhere.

Also the command classes that give the CLI its help placeholders (FILE, N, MODEL) and its one-line usage
errors, and :func:`guarded`, the error boundary of every command.
"""

from __future__ import annotations

import functools
import io
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from finsent_cli import ui
from finsent_cli.errors import FinsentError, FinsentNote, interruption_line, os_error_message

try:  # newer typers vendor click as typer._click; older ones use click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

_NO_ARGS_IS_HELP: Any = getattr(click_exceptions, "NoArgsIsHelpError", ())  # click < 8.2 exits 0 instead

F = TypeVar("F", bound=Callable[..., Any])

FreshOpt = Annotated[bool, typer.Option("--fresh", help="Start over; the previous run folder is moved aside to a timestamped sibling, never deleted.")]
RecipeArg = Annotated[Path, typer.Argument(metavar="RECIPE", help="YAML recipe (see recipes/).", show_default=False)]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[KEY=VALUE]...", help="Dotted overrides, e.g. data.test_size=0.2 optim.lr=3e-5.", show_default=False
    ),
]
SweepOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sweep",
        metavar="KEY=V1,V2",
        help="Run the grid of these values (repeat for more keys), each point its own resumable run folder "
        "inside output_dir; prints and writes one results table (sweep.csv, sweep.json).",
        show_default=False,
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Validate the recipe, print it resolved and list the inputs that do not exist yet, each with the command "
        "that makes it; do nothing else. Exit code 0: ready to run; 1: inputs missing; 2: recipe errors.",
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        metavar="DIR",
        help="Value of ${data_dir} in recipes (default: $FINSENT_DATA_DIR, else ./data).",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="MODEL",
        help="Model, LoRA or run folder, or a built-in model's name such as news or default (finsent models lists "
        "them). Default: $FINSENT_MODEL, else runs/latest, else the model chosen with finsent models use, else the "
        "built-in default.",
        show_default=False,
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", metavar="DEVICE", help="cpu, cuda, cuda:N or auto.")]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        metavar="BACKEND",
        help="torch (default), int8 (PyTorch with int8 Linear layers, CPU), onnx or onnx-int8 (the fp32 or int8 "
        "graph that finsent export MODEL --onnx [--int8] wrote, run by onnxruntime, CPU).",
    ),
]
TextColumnOpt = Annotated[
    str,
    typer.Option(
        "--text-column", metavar="NAME", help="Text column of a CSV/TSV/Parquet input, or text field of a JSONL one."
    ),
]
LabelColumnOpt = Annotated[
    str,
    typer.Option(
        "--label-column", metavar="NAME", help="Label column of a CSV/TSV/Parquet input, or label field of a JSONL one."
    ),
]
LabelMapOpt = Annotated[
    str | None,
    typer.Option(
        "--label-map",
        metavar="MAP",
        help="Raw label map for data files, e.g. 0=negative,1=positive,2=neutral.",
        show_default=False,
    ),
]
TargetColumnOpt = Annotated[
    str | None,
    typer.Option(
        "--target-column",
        metavar="NAME",
        help="Column naming the company each text is judged toward (target-conditioned models).",
        show_default=False,
    ),
]


def batch_size_option(help: str = "Texts per forward pass.") -> Any:
    """``--batch-size N`` (at least 1), with the command's own help."""
    return typer.Option("--batch-size", min=1, metavar="N", help=help)


def output_option(help: str, metavar: str = "FILE") -> Any:
    """``--output/-o``, with the command's own help and placeholder."""
    return typer.Option("--output", "-o", metavar=metavar, help=help, show_default=False)


def format_option(formats: Sequence[str]) -> Any:
    """``--format/-f`` among ``formats``."""
    return typer.Option("--format", "-f", metavar="FORMAT", help=f"Output format: {', '.join(formats)}.")


def input_format_option(formats: Sequence[str], note: str = "from the suffix") -> Any:
    """``--input-format``: ``auto`` or one of ``formats``."""
    return typer.Option("--input-format", metavar="FORMAT", help=f"auto ({note}), {', '.join(formats)}.")


BatchSizeOpt = Annotated[int, batch_size_option()]

_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH"}


class _Argument(TyperArgument):
    """An argument shown as click shows it: its metavar or NAME, no ``<type>`` and no ``{braces}``."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or (self.name or "").upper()

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if self.metavar is None and self.nargs != 1:
            name += "..."
        return name if self.required or self.metavar else f"[{name}]"


class _Option(TyperOption):
    """An option shown with its metavar (N, FILE) or a plain type word (TEXT, INTEGER); a flag with none."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag or self.count:
            return None
        label = self.display_type(ctx).strip("<>").removesuffix(" range")
        return _TYPE_WORDS.get(label, label)


def _restyle(params: Sequence[Any]) -> None:
    # Typer builds its own parameter objects and offers no hook to choose their class; switching the
    # class of each (a subclass that adds display methods only) is the one place their help is styled.
    for p in params:
        if type(p) is TyperArgument:
            p.__class__ = _Argument
        elif type(p) is TyperOption:
            p.__class__ = _Option


class _FinsentStyle:
    """What every finsent command and group shares: styled help, and usage errors that know their command.

    Mixed in before the typer class (``class FinsentCommand(_FinsentStyle, TyperCommand)``).
    """

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _restyle(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        opt = super().get_help_option(ctx)  # type: ignore[misc]
        _restyle([opt] if opt is not None else [])
        return opt

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # click's parser raises some usage errors (an option missing its value, a flag given one)
        # without a context; give them this one so that their line, too, names the command's help
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc, no-any-return]
        except click_exceptions.UsageError as exc:
            if exc.ctx is None:
                exc.ctx = ctx
            raise


class FinsentCommand(_FinsentStyle, TyperCommand):
    """A subcommand whose help shows placeholders such as FILE and N instead of ``<bool>`` or ``{name}``."""


class FinsentGroup(_FinsentStyle, TyperGroup):
    """The ``finsent`` group: help styled as :class:`FinsentCommand`, every usage error one ``error:`` line.

    Click's usage errors (unknown option, missing argument, bad value) would otherwise print the usage,
    a hint and a boxed panel; here they print ``error: MESSAGE (see 'finsent CMD --help')`` on stderr
    and exit with code 2, like every other finsent error.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        *a: Any,
        standalone_mode: bool = True,
        **kw: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, *a, standalone_mode=False, **kw)
        try:
            rv = super().main(args, prog_name, *a, standalone_mode=False, **kw)
        except _NO_ARGS_IS_HELP as exc:  # the help is the message (already drawn when Rich draws help)
            if exc.format_message().strip():
                exc.show()
            sys.exit(exc.exit_code)
        except click_exceptions.ClickException as exc:
            ui.error(usage_error_line(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            ui.error("aborted")
            sys.exit(1)
        # without standalone mode click returns the exit code of an Exit, else the command's value (None)
        sys.exit(rv if isinstance(rv, int) else 0)


def usage_error_line(exc: Exception) -> str:
    """A click error as one line: ``invalid value for '--batch-size': ... (see 'finsent predict --help')``."""
    message = " ".join(exc.format_message().split()).removesuffix(".")  # type: ignore[attr-defined]
    message = message[:1].lower() + message[1:]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message += f" (see '{ctx.command_path} {ctx.help_option_names[0]}')"
    return message


def _silence_stdout() -> None:
    """Point stdout at ``os.devnull``: the reader is gone, and the interpreter's final flush of what is
    still buffered must not fail again (after the Python docs' note on SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # not a real file (tests swap it)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _notes_as_warning_lines() -> None:
    """Inside ``warnings.catch_warnings()``: a :class:`FinsentNote` from core code (a fallback taken while a
    model loads, say) is shown once per message as a ``warning:`` line; other warnings as before."""
    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, FinsentNote):
            ui.warn(str(message))
        else:
            shown(message, category, *args, **kwargs)

    warnings.showwarning = show
    warnings.filterwarnings("once", category=FinsentNote)


def guarded(fn: F) -> F:
    """The CLI's error boundary: no traceback for a user mistake or a refusal of the system.

    A :class:`FinsentError` becomes one ``error:`` line per problem and its exit code; any
    :class:`OSError` (permission denied, read-only file system, no space left, ...) one line naming
    the path(s) and the reason, exit code 1; Ctrl-C the line ``interrupted`` (and what was kept, from an
:class:`~finsent_cli.errors.Interrupted`), exit code 130. A reader
    that closed stdout early (``finsent predict big.csv | head``) ends the command quietly, exit code 1.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                _notes_as_warning_lines()
                rv = fn(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
            return rv
        except FinsentError as exc:
            ui.error(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(1) from None
        except OSError as exc:
            ui.error(os_error_message(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            ui.error(interruption_line(exc))  # with what was kept, said once (errors.Interrupted)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
