"""`finsent export MODEL --onnx [--int8]`: write a model folder's network as an ONNX graph for onnxruntime."""

from __future__ import annotations

from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import QuietOpt, guarded
from finsent_cli.errors import FinsentError


@guarded
def export_cmd(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model, adapter or run folder (a run exports its best/, else last/), or a built-in model name (exported into a copy in ./exports/NAME).", show_default=False)],
    onnx: Annotated[bool, typer.Option("--onnx", help="Write MODEL/onnx/model.onnx, the fp32 graph that --backend onnx runs (with the tokenizer and export.json).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write MODEL/onnx/model.int8.onnx (onnxruntime's dynamic int8 quantisation), run by --backend onnx-int8.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a model for fast CPU inference; eval and predict then run it with --backend onnx or onnx-int8.

    The graph is checked against PyTorch on fixed headlines before it is written, and records a fingerprint of the folder's weights: a graph whose folder changed since is refused at load.
    """
    if not onnx:
        raise FinsentError("nothing to export: add --onnx (the one format so far), e.g. finsent export MODEL --onnx --int8", exit_code=2)
    reporter = ui.ConsoleReporter(quiet=quiet)
    reporter.log(f"export: {model}; loading torch and the model")  # the imports take seconds
    from finsent_cli.core.inference.export import export_onnx

    result = export_onnx(model, int8=int8, reporter=reporter)
    for name, path in result.graphs.items():
        check = result.record["check"][name]
        ui.console.print(
            f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): --backend {name}; against PyTorch on "
            f"{check['texts']} texts: same label {check['same_label']}/{check['texts']}, largest probability "
            f"difference {check['max_abs_prob_diff']:.1g}"
        )
    ui.console.print(f"run it: finsent predict INPUT --model {result.folder} --backend {next(reversed(result.graphs))}")
