"""`finsent models [list | use NAME | show NAME]`: the built-in models, and which one is your default."""

from __future__ import annotations

from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import FinsentCommand, FinsentGroup, guarded
from finsent_cli.core.models import builtin
from finsent_cli.core.progress import counted
from finsent_cli.core.runs import ahead_of_settings
from finsent_cli.core.user_config import config_path

NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="A built-in model's name (finsent models lists them).", show_default=False)
]

models_app = typer.Typer(
    name="models",
    help="List finsent's built-in models (--model NAME), pick your default, show a model's card.",
    cls=FinsentGroup,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@models_app.callback(invoke_without_command=True)
def _models(ctx: typer.Context) -> None:
    """List finsent's built-in models (--model NAME), pick your default, show a model's card."""
    if ctx.invoked_subcommand is None:
        list_cmd()


@models_app.command("list", cls=FinsentCommand)
@guarded
def list_cmd() -> None:
    """List the built-in models: what each is, its data, licence, scores and speed; * marks your default."""
    rows = builtin.describe()
    ahead = ahead_of_settings()  # $FINSENT_MODEL or runs/latest: predict uses them, not the default, here
    what = [
        [
            f"{r['name']}{' *' if r['default'] and not ahead else ''}",
            f"{r['backbone']} + {r['adapter']}, {r['size'] / 1e6:.1f} MB",
            r["training_data"],
            r["licence"] + (" (non-commercial)" if r["non_commercial"] else ""),
            f"{r['sentences_per_s']:.0f}" if r["sentences_per_s"] else "-",
        ]
        for r in rows
    ]
    heads = ["name", "what it is", "training data", "licence", "sentences/s"]
    ui.console.print(ui.table(f"{counted(len(rows), 'built-in model')} (--model NAME)", heads, what, right_from=4))
    sets = list(dict.fromkeys(k for r in rows for k in r["scores"]))
    if sets:
        scores = [[r["name"], *(_score(r["scores"].get(k)) for k in sets)] for r in rows]
        ui.console.print(ui.table("accuracy / macro-F1 (finsent models show NAME: the data)", ["name", *sets], scores))
    caps = list(dict.fromkeys(k for r in rows for k in r["capabilities"]))
    if caps:
        rates = [[r["name"], *(f"{r['capabilities'][k]:.0%}" if k in r["capabilities"] else "-" for k in caps)] for r in rows]
        ui.console.print(ui.table("capability tests passed (finsent check NAME)", ["name", *caps], rates, right_from=1))
    chosen = next((r["name"] for r in rows if r["default"]), None)
    where = config_path()
    if chosen is None:
        line = f"your default: the model named in {where}"
    else:
        source = f"set in {where}" if where.is_file() else "finsent's default"
        line = f"{'' if ahead else '* '}your default: {chosen} ({source})"
    _say(f"{line}; change it with finsent models use NAME")
    for reason in ahead:
        _say(f"note: {reason}")


def _say(line: str) -> None:
    ui.console.print(line, markup=False, soft_wrap=True)


def _score(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else f"{pair[0]:.3f} / {pair[1]:.3f}"


@models_app.command("use", no_args_is_help=True, cls=FinsentCommand)
@guarded
def use_cmd(name: NameArg) -> None:
    """Make NAME your default model: what predict, explain and serve use when nothing else names one.

    --model, $FINSENT_MODEL and ./runs/latest come first; a warning says when one of the last two is set.
    """
    written = builtin.use(name)
    if written.backup is not None:
        old = f"{written.path} could not be read ({written.problem})"
        ui.warn(f"{old}; replaced it, keeping the old one as {written.backup}")
    _say(f"your default model is now {name} (wrote {written.path})")
    _say(builtin.licence_line(name))
    for reason in ahead_of_settings():
        ui.warn(reason)


@models_app.command("show", no_args_is_help=True, cls=FinsentCommand)
@guarded
def show_cmd(name: NameArg) -> None:
    """Print NAME's model card: architecture, training data, recipe, licence and scores."""
    ui.console.print(builtin.card_text(name), markup=False, highlight=False, soft_wrap=True)
