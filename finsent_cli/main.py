"""The `finsent` command: wires the subcommands together, nothing else."""

from __future__ import annotations

import typer

import finsent_cli
from finsent_cli import __version__
from finsent_cli.commands.check import check_cmd
from finsent_cli.commands.completions import completions_cmd
from finsent_cli.commands.distill import distill_cmd
from finsent_cli.commands.eval import eval_cmd
from finsent_cli.commands.explain import explain_cmd
from finsent_cli.commands.export import export_cmd
from finsent_cli.commands.finetune import finetune_cmd
from finsent_cli.commands.models import models_app
from finsent_cli.commands.options import FinsentCommand, FinsentGroup
from finsent_cli.commands.predict import predict_cmd
from finsent_cli.commands.prep import prep_cmd
from finsent_cli.commands.pretrain import pretrain_cmd
from finsent_cli.commands.qlora import qlora_cmd
from finsent_cli.commands.quickstart import quickstart_cmd
from finsent_cli.commands.report import report_cmd
from finsent_cli.commands.select import select_cmd
from finsent_cli.commands.serve import serve_cmd
from finsent_cli.commands.tokenizer import tokenizer_cmd
from finsent_cli.commands.tune import tune_cmd
from finsent_cli.core.quiet import install_boundary_filter

app = typer.Typer(
    name="finsent",
    help="Financial-news sentiment models: bearish, neutral or bullish, from raw text to an explained prediction.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=FinsentGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"finsent {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """finsent: financial-news sentiment, from raw text to an explained prediction."""


app.command("prep", no_args_is_help=True, cls=FinsentCommand)(prep_cmd)
app.command("tokenizer", no_args_is_help=True, cls=FinsentCommand)(tokenizer_cmd)
app.command("pretrain", no_args_is_help=True, cls=FinsentCommand)(pretrain_cmd)
app.command("finetune", no_args_is_help=True, cls=FinsentCommand)(finetune_cmd)
app.command("qlora", no_args_is_help=True, cls=FinsentCommand)(qlora_cmd)
app.command("distill", no_args_is_help=True, cls=FinsentCommand)(distill_cmd)
app.command("tune", no_args_is_help=True, cls=FinsentCommand)(tune_cmd)
app.command("quickstart", cls=FinsentCommand)(quickstart_cmd)
app.command("completions", no_args_is_help=True, cls=FinsentCommand)(completions_cmd)
app.command("eval", no_args_is_help=True, cls=FinsentCommand)(eval_cmd)
app.command("check", cls=FinsentCommand)(check_cmd)
app.command("report", no_args_is_help=True, cls=FinsentCommand)(report_cmd)
app.command("predict", no_args_is_help=True, cls=FinsentCommand)(predict_cmd)
app.command("explain", no_args_is_help=True, cls=FinsentCommand)(explain_cmd)
app.command("select", no_args_is_help=True, cls=FinsentCommand)(select_cmd)
app.command("export", no_args_is_help=True, cls=FinsentCommand)(export_cmd)
app.command("serve", no_args_is_help=False, cls=FinsentCommand)(serve_cmd)
app.add_typer(models_app, name="models")


def main() -> None:
    """Console-script entry point (usage errors become one ``error:`` line: see :class:`FinsentGroup`)."""
    finsent_cli.stop_watching_imports()
    install_boundary_filter()
    app()


if __name__ == "__main__":
    main()
