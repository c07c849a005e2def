"""The `finsent` command: wires the subcommands together, nothing else."""

from __future__ import annotations

import typer

from finsent_cli import __version__
from finsent_cli.commands.completions import completions_cmd
from finsent_cli.commands.eval import eval_cmd
from finsent_cli.commands.explain import explain_cmd
from finsent_cli.commands.finetune import finetune_cmd
from finsent_cli.commands.predict import predict_cmd
from finsent_cli.commands.prep import prep_cmd
from finsent_cli.commands.quickstart import quickstart_cmd
from finsent_cli.commands.tokenizer import tokenizer_cmd

app = typer.Typer(
    name="finsent",
    help="Financial-news sentiment models: bearish, neutral or bullish, from raw text to an explained prediction.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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


app.command("prep", no_args_is_help=True)(prep_cmd)
app.command("tokenizer", no_args_is_help=True)(tokenizer_cmd)
app.command("finetune", no_args_is_help=True)(finetune_cmd)
app.command("quickstart")(quickstart_cmd)
app.command("completions", no_args_is_help=True)(completions_cmd)
app.command("eval", no_args_is_help=True)(eval_cmd)
app.command("predict", no_args_is_help=True)(predict_cmd)
app.command("explain", no_args_is_help=True)(explain_cmd)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
