"""`finsent predict INPUT`: label every line or record of a file (or stdin) with a fine-tuned model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import (
    BatchSizeOpt,
    DeviceOpt,
    ModelOpt,
    QuietOpt,
    TextColumnOpt,
    format_option,
    guarded,
    input_format_option,
    output_option,
)
from finsent_cli.core.predict.inputs import INPUT_FORMATS
from finsent_cli.core.predict.run import (
    OUTPUT_FORMATS,
    check_output_format,
    predict_input,
    render_rows,
    write_rows,
)
from finsent_cli.core.progress import counted
from finsent_cli.ui.reports import render_predictions


@guarded
def predict_cmd(
    input: Annotated[str, typer.Argument(metavar="INPUT", help="Text file (.txt one text per line, .csv/.tsv, .jsonl), or - for stdin.", show_default=False)],
    model: ModelOpt = None,
    format: Annotated[str, format_option(OUTPUT_FORMATS)] = "csv",
    output: Annotated[Path | None, output_option("Write here (atomically) instead of stdout.")] = None,
    text_column: TextColumnOpt = "text",
    column: Annotated[str | None, typer.Option("--column", hidden=True, help="Old spelling of --text-column (CSV/TSV).")] = None,
    field: Annotated[str | None, typer.Option("--field", hidden=True, help="Old spelling of --text-column (JSONL).")] = None,
    input_format: Annotated[str, input_format_option(INPUT_FORMATS, "from the suffix; - is txt")] = "auto",
    target: Annotated[str | None, typer.Option("--target", help="The company every record is judged toward (target-conditioned models).", show_default=False)] = None,
    target_column: Annotated[str | None, typer.Option("--target-column", help="CSV/TSV column or JSONL field naming each record's target.", show_default=False)] = None,
    batch_size: BatchSizeOpt = 64,
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Predict negative/neutral/positive for every input record, in input order (progress on stderr)."""
    check_output_format(format, output)
    reporter = ui.ConsoleReporter(quiet=quiet)
    # predict_input imports torch first (seconds): say what is coming before it
    reporter.log(f"predict: {'stdin' if input == '-' else input}; loading torch and the model")
    result = predict_input(
        input, model, input_format=input_format, column=column or text_column, field_name=field or text_column, batch_size=batch_size,
        device=device, reporter=reporter, target=target, target_column=target_column,
    )  # fmt: skip
    if format == "table":
        render_predictions(result.rows)
    elif output is not None:
        write_rows(result.rows, format, output)
    else:
        sys.stdout.write(render_rows(result.rows, format))
        sys.stdout.flush()
    counts = ", ".join(f"{label} {n}" for label, n in sorted(result.labels.items()))
    where = f" -> {output}" if output is not None else ""
    reporter.log(f"{counted(len(result.rows), 'record')} ({counts or 'none classified'}) with {result.model}{where}")
