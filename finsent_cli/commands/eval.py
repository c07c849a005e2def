"""`finsent eval MODEL [MODEL...] DATA [DATA...]`: metrics, calibration and confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.columns import Columns
from rich.table import Table

from finsent_cli import ui
from finsent_cli.commands.options import BatchSizeOpt, DeviceOpt, QuietOpt, guarded
from finsent_cli.config.base import LABELS
from finsent_cli.core.eval.run import EvalReport, EvalResult, evaluate, is_model_path, parse_label_map, write_report
from finsent_cli.errors import FinsentError


def short_name(path: str) -> str:
    """``runs/x/best`` -> ``x/best``; other paths -> their last part."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.name in ("best", "last") else p.name


def _matrix(title: str, cm: list[list[float]], norm: list[list[float]], as_count: bool) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("true \\ pred")
    for label in LABELS:
        t.add_column(label, justify="right")
    for i, label in enumerate(LABELS):
        cells = []
        for j in range(len(LABELS)):
            shade = int(40 + 160 * norm[i][j])  # darker blue = larger share of the row
            text = f"{int(cm[i][j]):,}" if as_count else f"{norm[i][j]:.1%}"
            cells.append(f"[white on rgb(20,{shade // 2},{shade})]{text}[/]" if norm[i][j] > 0 else text)
        t.add_row(label, *cells)
    return t


def render_result(r: EvalResult) -> None:
    """Summary line, per-class table and the two confusion matrices of one (model, dataset) pair."""
    m = r.metrics
    ui.console.rule(f"{short_name(r.model)} on {r.dataset}")
    ui.console.print(
        f"n {m['n']:,}  accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
        f"weighted-F1 {m['weighted_f1']:.4f}  ECE {m['ece']:.4f}"
        + (f"  [yellow]overlap with training data {r.overlap:,}[/]" if r.overlap else "")
    )
    rows = [[label, c["precision"], c["recall"], c["f1"], c["support"]] for label, c in m["per_class"].items()]
    per_class = ui.table("per class", ["label", "precision", "recall", "F1", "support"], rows)
    counts = _matrix("confusion (counts)", m["confusion"], m["confusion_normalised"], True)
    normed = _matrix("confusion (row-normalised)", m["confusion"], m["confusion_normalised"], False)
    ui.console.print(Columns([per_class, counts, normed], padding=(0, 3)))


def render_comparison(report: EvalReport) -> None:
    """One table per dataset with the models side by side; the best value of each row in bold."""
    metrics = [("accuracy", True), ("macro_f1", True), ("weighted_f1", True), ("ece", False)]
    for dataset in report.datasets:
        results = [report.get(m, dataset) for m in report.models]
        t = Table(title=f"models on {dataset}", title_justify="left")
        t.add_column("metric")
        for r in results:
            t.add_column(short_name(r.model), justify="right")
        rows = [(name, [r.metrics[name] for r in results], higher) for name, higher in metrics]
        rows += [(f"F1 {label}", [r.metrics["per_class"][label]["f1"] for r in results], True) for label in LABELS]
        for name, values, higher in rows:
            best = max(values) if higher else min(values)
            t.add_row(name, *[f"[bold]{v:.4f}[/]" if v == best else f"{v:.4f}" for v in values])
        ui.console.print(t)


@guarded
def eval_cmd(
    paths: Annotated[list[str], typer.Argument(help="Model/run folders, then datasets (prepared folders or CSV/TSV/JSONL/Parquet files).", show_default=False)],
    split: Annotated[str | None, typer.Option("--split", help="Split of a prepared folder (default: test, else valid).", show_default=False)] = None,
    text_column: Annotated[str, typer.Option("--text-column", help="Text column of raw data files.")] = "text",
    label_column: Annotated[str, typer.Option("--label-column", help="Label column of raw data files.")] = "label",
    label_map: Annotated[str | None, typer.Option("--label-map", help="Raw label map for data files, e.g. 0=negative,1=positive,2=neutral.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write OUTPUT.json and OUTPUT.csv.", show_default=False)] = None,
    batch_size: BatchSizeOpt = 64,
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Evaluate one or more models on one or more labelled datasets."""
    models = [p for p in paths if is_model_path(Path(p))]
    data = [p for p in paths if p not in models]
    if not models:
        first = Path(paths[0])
        hint = "not found" if not first.exists() else "not a model, LoRA or run folder"
        raise FinsentError(f"no model among the arguments ({paths[0]}: {hint}); usage: finsent eval MODEL [MODEL...] DATA [DATA...]")
    if not data:
        raise FinsentError("no dataset given; usage: finsent eval MODEL [MODEL...] DATA [DATA...]")
    report = evaluate(
        models, data, split=split, text_column=text_column, label_column=label_column,
        label_map=parse_label_map(label_map), batch_size=batch_size, device=device, reporter=ui.ConsoleReporter(quiet=quiet),
    )  # fmt: skip
    for r in report.results:
        render_result(r)
    if len(report.models) > 1:
        render_comparison(report)
    if output is not None:
        json_path, csv_path = write_report(report, output)
        ui.console.print(f"wrote {json_path} and {csv_path}")
