"""`finsent report RUN --output DIR`: pictures of a run as PNG files and one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import (
    BatchSizeOpt,
    DeviceOpt,
    LabelColumnOpt,
    LabelMapOpt,
    QuietOpt,
    TargetColumnOpt,
    TextColumnOpt,
    guarded,
    input_format_option,
    output_option,
)
from finsent_cli.core.data.readers import FORMATS
from finsent_cli.core.io import check_writable
from finsent_cli.errors import FinsentError

MAPS = ("tsne", "pca")  # core.report.run.MAPS, spelled here so that --help imports no numpy


@guarded
def report_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run folder (what finsent finetune writes), or a model folder or built-in model name (news, default) with --data.", show_default=False)],
    output: Annotated[Path, output_option("Folder for report.html, the PNG figures and report.json (replaced when it holds an earlier report).", metavar="DIR")],
    data: Annotated[Path | None, typer.Option("--data", metavar="FILE", help="Labelled CSV/TSV/JSONL/Parquet file to report on instead of the run's validation split (required for a model folder outside a run).", show_default=False)] = None,
    map: Annotated[str, typer.Option("--map", metavar="MAP", help="Sentence map: tsne (PCA to 50 dims, then t-SNE; PCA above 5,000 sentences) or pca.")] = "tsne",
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    label_map: LabelMapOpt = None,
    input_format: Annotated[str, input_format_option(FORMATS)] = "auto",
    target_column: TargetColumnOpt = None,
    batch_size: BatchSizeOpt = 64,
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:  # fmt: skip
    """Draw a run: training curves, confusion matrix, reliability diagram, per-class scores and a t-SNE map of the validation sentences.

    Writes the figures as PNG files and report.html, one page with everything embedded (it opens offline), e.g.
    finsent report runs/finetune_phrasebank --output reports/phrasebank
    """
    if map not in MAPS:
        raise FinsentError(f"--map: unknown map {map!r} (one of {', '.join(MAPS)})", exit_code=2)
    check_writable(output, folder=True)  # before any model is loaded
    reporter = ui.ConsoleReporter(quiet=quiet)
    reporter.log(f"report: {run}; loading torch, matplotlib and the model")  # the imports take seconds
    from finsent_cli.core.eval.run import parse_label_map
    from finsent_cli.core.report.run import run_report

    result = run_report(
        run, output, data=data, map=map, reporter=reporter, text_column=text_column, label_column=label_column,
        label_map=parse_label_map(label_map), input_format=input_format, target_column=target_column,
        batch_size=batch_size, device=device,
    )  # fmt: skip
    s = result.summary
    ece = f"ECE {s['ece']:.4f}"
    if s["temperature"] is not None:
        ece += f" (temperature {s['temperature']:.3f}; uncalibrated {s['ece_uncalibrated']:.4f})"
    best = f", best step {s['best_step']}" if s["best_step"] is not None else ""
    lines = [
        f"{s['n']:,} sentences of {s['data']}: accuracy {s['accuracy']:.4f}, macro-F1 {s['macro_f1']:.4f}, {ece}{best}",
        f"wrote {result.page} and {len(result.figures)} figures ({', '.join(p.name for p in result.figures)})",
    ]
    for line in lines:  # whole lines, never wrapped inside a path
        ui.console.print(line, markup=False, soft_wrap=True)
