"""`finsent explain "TEXT" --mask-tokens`: which words drive one prediction (word occlusion)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import DeviceOpt, ModelOpt, batch_size_option, format_option, guarded, output_option
from finsent_cli.core.io import atomic_write_text
from finsent_cli.core.predict.run import check_output_format
from finsent_cli.errors import FinsentError
from finsent_cli.ui.reports import render_explanation

FORMATS = ("rich", "json", "html")


@guarded
def explain_cmd(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The text to explain.", show_default=False)],
    model: ModelOpt = None,
    mask_tokens: Annotated[bool, typer.Option("--mask-tokens", help="Explain by occlusion: mask each word in turn and measure the change (shorthand for --method occlusion).")] = False,
    method: Annotated[str, typer.Option("--method", metavar="METHOD", help="Explanation method: occlusion.")] = "occlusion",
    mask_mode: Annotated[str, typer.Option("--mask-mode", metavar="MODE", help="mask (mask/unk token, same length) or delete (drop the pieces).")] = "mask",
    top_k: Annotated[int, typer.Option("--top-k", metavar="K", help="Words scored by comprehensiveness and sufficiency.")] = 3,
    target: Annotated[str | None, typer.Option("--target", metavar="NAME", help="The company the sentiment is judged toward (target-conditioned models).", show_default=False)] = None,
    format: Annotated[str, format_option(FORMATS)] = "rich",
    output: Annotated[Path | None, output_option("Write json/html here (atomically).")] = None,
    batch_size: Annotated[int | None, batch_size_option("Variants per forward pass (default: all at once).")] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Explain one prediction: the effect of masking each word, and the faithfulness of the top words."""
    check_output_format(format, output, FORMATS, terminal="rich")
    if mask_tokens and method != "occlusion":
        raise FinsentError(f"--mask-tokens means --method occlusion, but --method {method} was given", exit_code=2)
    from finsent_cli.core.explain.occlusion import explanation_to_dict, explanation_to_html
    from finsent_cli.core.explain.run import explain_text

    exp = explain_text(
        text, model, method=method, top_k=top_k, mask_mode=mask_mode, batch_size=batch_size, device=device,
        reporter=ui.ConsoleReporter(quiet=True), target=target,
    )  # fmt: skip
    if format == "rich":
        render_explanation(exp)
        return
    if format == "json":
        body = json.dumps(explanation_to_dict(exp), indent=2, ensure_ascii=False) + "\n"
    else:
        body = explanation_to_html(exp)
    if output is None:
        typer.echo(body, nl=False)
        return
    atomic_write_text(output, body)
    ui.err_console.print(f"wrote {output}")
