"""`finsent predict INPUT`: label every line or record of a file (or stdin) with a fine-tuned model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import (
    BackendOpt,
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
from finsent_cli.core.predict.inputs import INPUT_FORMATS, check_input_exists
from finsent_cli.core.predict.run import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_CHUNK,
    OUTPUT_FORMATS,
    RAY_CHUNK,
    PredictOptions,
    check_output_format,
    predict_input,
)
from finsent_cli.core.progress import counted
from finsent_cli.ui.reports import render_predictions


@guarded
def predict_cmd(
    input: Annotated[str, typer.Argument(metavar="INPUT", help="Text file (.txt one text per line, .csv/.tsv, .jsonl; .gz too), or - for stdin.", show_default=False)],
    model: ModelOpt = None,
    format: Annotated[str, format_option(OUTPUT_FORMATS)] = "csv",
    output: Annotated[Path | None, output_option("Write here instead of stdout: through FILE.partial, renamed when complete.")] = None,
    text_column: TextColumnOpt = "text",
    column: Annotated[str | None, typer.Option("--column", hidden=True, help="Old spelling of --text-column (CSV/TSV).")] = None,
    field: Annotated[str | None, typer.Option("--field", hidden=True, help="Old spelling of --text-column (JSONL).")] = None,
    input_format: Annotated[str, input_format_option(INPUT_FORMATS, "from the suffix; - is txt")] = "auto",
    target: Annotated[str | None, typer.Option("--target", help="The company every record is judged toward (target-conditioned models).", show_default=False)] = None,
    target_column: Annotated[str | None, typer.Option("--target-column", help="CSV/TSV column or JSONL field naming each record's target.", show_default=False)] = None,
    per: Annotated[str, typer.Option("--per", metavar="UNIT", help="record: a row per record; document: split each record into sentences (windows when too long) and aggregate them into one row.")] = "record",
    aggregate: Annotated[str, typer.Option("--aggregate", metavar="HOW", help="--per document: mean, or confidence (pieces weighed by 1 - normalised entropy).")] = "mean",
    details: Annotated[Path | None, typer.Option("--details", metavar="FILE", help="--per document: also write a row per sentence/window here (csv, json or jsonl by suffix).", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted --output from its last complete chunk.")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard the partial --output of an interrupted run and start over.")] = False,
    backend: BackendOpt = "torch",
    batch_size: BatchSizeOpt = 64,
    batch_tokens: Annotated[int, typer.Option("--batch-tokens", metavar="N", help="Most padded tokens per forward pass (length-sorted batches).")] = DEFAULT_BATCH_TOKENS,
    chunk_size: Annotated[int | None, typer.Option("--chunk-size", metavar="N", help=f"Records read, predicted and written together (memory, and the unit of --resume); default {DEFAULT_CHUNK}, {RAY_CHUNK} with --engine ray.", show_default=False)] = None,
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", help="CPU threads for the model (default: the library's choice).", show_default=False)] = None,
    engine: Annotated[str, typer.Option("--engine", metavar="ENGINE", help="local, or ray: a pool of model actors on Ray Data (needs the ray extra of finsent).")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", metavar="ADDR", help="--engine ray: the cluster, e.g. ray://head:10001 (default $RAY_ADDRESS, else a local Ray).", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", metavar="N", help="--engine ray: model actors (default one per CPU of the cluster).", show_default=False)] = None,
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Predict negative/neutral/positive for every input record, in input order, streaming (progress on stderr)."""
    check_output_format(format, output)
    reporter = ui.ConsoleReporter(quiet=quiet)
    options = PredictOptions(
        batch_size=batch_size, batch_tokens=batch_tokens, chunk_size=chunk_size, per=per, aggregate=aggregate,
        backend=backend, threads=threads, device=device, target=target, target_column=target_column, engine=engine,
        ray_address=ray_address, workers=workers,
    )  # fmt: skip
    options.check()
    check_input_exists(input, only_text=True)  # "finsent predict 'some text'": the hint before torch loads
    # torch and the model take seconds to load: say what is coming before them
    reporter.log(f"predict: {'stdin' if input == '-' else input}; loading torch and the model")
    to_file = format != "table" and output is not None
    result = predict_input(
        input, model, options, input_format=input_format, column=column or text_column, field_name=field or text_column,
        reporter=reporter, output=output if to_file else None, stream=sys.stdout if format != "table" and not to_file else None,
        fmt=format, details=details, resume=resume, fresh=fresh,
    )  # Ctrl-C: errors.Interrupted says where the finished chunks are  # fmt: skip
    if format == "table":
        render_predictions(result.rows)
    counts = ", ".join(f"{label} {n}" for label, n in sorted(result.labels.items()))
    where = f" -> {output}" if to_file else ""
    rate = f", {result.records / max(result.seconds, 1e-9):.0f} records/s" if result.records else ""
    done = result.records + result.resumed
    reporter.log(f"{counted(done, 'record')} ({counts or 'none classified'}) with {result.model}{where}{rate}")
