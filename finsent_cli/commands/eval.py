"""`finsent eval MODEL [MODEL...] DATA [DATA...]`: metrics, calibration and confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import (
    BackendOpt,
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
from finsent_cli.core.progress import counted
from finsent_cli.core.runs import is_model_path
from finsent_cli.errors import FinsentError
from finsent_cli.ui.reports import render_eval_comparison, render_eval_result

ScoreColumnOpt = Annotated[
    str | None,
    typer.Option(
        "--score-column",
        metavar="NAME",
        help="Column of gold sentiment scores in [-1, 1] (SemEval-2017 task 5, FiQA): adds cosine, Pearson r, MSE "
        "and MAE of the predicted score p(positive) - p(negative); the label column becomes optional.",
        show_default=False,
    ),
]


@guarded
def eval_cmd(
    paths: Annotated[list[str], typer.Argument(metavar="MODEL... DATA...", help="Model/run folders or built-in model names (news, default: finsent models), then datasets (prepared folders or CSV/TSV/JSONL/Parquet files).", show_default=False)],
    split: Annotated[str | None, typer.Option("--split", metavar="SPLIT", help="Split of a prepared folder (default: test, else valid).", show_default=False)] = None,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "label",
    label_map: LabelMapOpt = None,
    input_format: Annotated[str, input_format_option(FORMATS)] = "auto",
    target_column: TargetColumnOpt = None,
    score_column: ScoreColumnOpt = None,
    output: Annotated[Path | None, output_option("Write PREFIX.json and PREFIX.csv.", metavar="PREFIX")] = None,
    batch_size: BatchSizeOpt = 64,
    backend: BackendOpt = "torch",
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Evaluate one or more models on one or more labelled datasets."""
    models = [p for p in paths if is_model_path(p)]
    data = [p for p in paths if p not in models]
    if not models:
        first = Path(paths[0])
        hint = "not found" if not first.exists() else "not a model, LoRA or run folder"
        raise FinsentError(f"no model among the arguments ({paths[0]}: {hint}); usage: finsent eval MODEL [MODEL...] DATA [DATA...]")
    if not data:
        raise FinsentError("no dataset given; usage: finsent eval MODEL [MODEL...] DATA [DATA...]")
    reporter = ui.ConsoleReporter(quiet=quiet)
    # importing torch and sklearn takes seconds: say what is coming before the first heavy import
    what = f"{counted(len(models), 'model')} x {counted(len(data), 'dataset')}"
    reporter.log(f"eval: {what}; loading torch and the models")
    from finsent_cli.core.eval.run import evaluate, parse_label_map, report_paths, write_report

    if output is not None:  # both report files, before any data is read or model loaded
        for target in report_paths(output):
            check_writable(target, folder=False)
    report = evaluate(
        models, data, split=split, text_column=text_column, label_column=label_column, input_format=input_format,
        label_map=parse_label_map(label_map), batch_size=batch_size, device=device, reporter=reporter,
        target_column=target_column, backend=backend, score_column=score_column,
    )  # fmt: skip
    for r in report.results:
        render_eval_result(r)
    if len(report.models) > 1:
        render_eval_comparison(report)
    if output is not None:
        json_path, csv_path = write_report(report, output)
        ui.console.print(f"wrote {json_path} and {csv_path}")
