"""`finsent predict INPUT`: label every line or record of a file (or stdin) with a fine-tuned model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import BatchSizeOpt, DeviceOpt, ModelOpt, QuietOpt, guarded
from finsent_cli.core.predict.run import OUTPUT_FORMATS, check_output_format, predict_input, render_rows, write_rows
from finsent_cli.ui.reports import render_predictions


@guarded
def predict_cmd(
    input: Annotated[str, typer.Argument(help="Text file (.txt one text per line, .csv/.tsv, .jsonl), or - for stdin.", show_default=False)],
    model: ModelOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", help=f"Output format: {', '.join(OUTPUT_FORMATS)}.")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (atomically) instead of stdout.", show_default=False)] = None,
    column: Annotated[str, typer.Option("--column", help="Text column of a CSV/TSV input.")] = "text",
    field: Annotated[str, typer.Option("--field", help="Text field of a JSONL input.")] = "text",
    input_format: Annotated[str, typer.Option("--input-format", help="auto (from the suffix; - is txt), txt, csv, tsv or jsonl.")] = "auto",
    batch_size: BatchSizeOpt = 64,
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Predict negative/neutral/positive for every input record, in input order (progress on stderr)."""
    check_output_format(format, output)
    reporter = ui.ConsoleReporter(quiet=quiet)
    result = predict_input(
        input, model, input_format=input_format, column=column, field_name=field, batch_size=batch_size,
        device=device, reporter=reporter,
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
    reporter.log(f"{len(result.rows)} records ({counts or 'none classified'}) with {result.model}{where}")
