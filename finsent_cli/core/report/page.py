"""The HTML page of ``finsent report``: one self-contained file that opens from a ``file://`` URL.

Figures are embedded as base64 ``data:`` URIs and the style is inline, so the page makes no request of
its own; every text that comes from data (sentences, paths) is HTML-escaped, and a ``://`` inside one is
written as a character reference so that no address at all appears in the page source.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from finsent_cli.labels import LABELS

CAPTIONS = {
    "curves": (
        "Training",
        (
            "Left: training loss (mean over each logging window) and learning rate against step. Right: validation "
            "macro-F1, accuracy and loss after each evaluation; the star and the dashed line mark the best step, whose "
            "model is kept as best/."
        ),
    ),
    "confusion": (
        "Confusion matrix",
        (
            "Rows are the true labels, columns the predicted ones; left the counts, right each row divided by its total "
            "(the diagonal is the recall of each class)."
        ),
    ),
    "reliability": (
        "Calibration",
        (
            "Validation sentences binned by the model's top probability (15 bins); a bar is the accuracy in its bin, the "
            "hatched part its gap to the bin's mean confidence, and the diagonal is perfect calibration. Below, the "
            "sentences per bin."
        ),
    ),
    "per_class": ("Per-class scores", "Precision, recall and F1 of each label; n is the label's number of sentences."),
    "map": (
        "Sentence map",
        (
            "Each validation sentence is a point placed by its embedding (the vector the model's output layer reads), "
            "coloured by its true label; crosses with a black edge are the sentences the model got wrong."
        ),
    ),
}
"""Figure name -> (section title, caption), in page order."""

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 1150px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.92rem; }
td, th { padding: 0.3rem 0.7rem; border-bottom: 1px solid #e5e5e5; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.summary td:first-child { color: #555; }
.notes { background: #fff8e1; border-left: 4px solid #f0c040; padding: 0.5rem 1rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; max-width: 60rem; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def _text(value: Any) -> str:
    return html.escape(str(value)).replace("://", "&#58;//")


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else _text(value)


def data_uri(png: bytes) -> str:
    """A PNG as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rows of the summary table: (name, value as shown)."""
    temperature = summary.get("temperature")
    ece = _num(summary["ece"])
    if temperature is not None:
        ece += f" (calibrated with temperature {temperature:.3f}; uncalibrated {_num(summary['ece_uncalibrated'])})"
    rows = [
        ("model", _text(summary["model"]) + (f" ({_text(summary['kind'])})" if summary.get("kind") else "")),
        ("run", _text(summary["run"]) if summary.get("run") else "- (a model folder without its run)"),
        ("data", _text(summary["data"])),
        ("sentences (N)", f"{summary['n']:,}"),
        ("accuracy", _num(summary["accuracy"])),
        ("macro-F1", _num(summary["macro_f1"])),
        ("weighted-F1", _num(summary["weighted_f1"])),
        ("ECE", ece),
        ("best step", _num(summary.get("best_step"))),
    ]
    if summary.get("truncated"):
        rows.append(("truncated", f"{summary['truncated']:,} sentences cut to the model's max length"))
    return rows


def render_page(
    summary: Mapping[str, Any], pngs: Mapping[str, bytes], errors: Sequence[Mapping[str, Any]], notes: Sequence[str]
) -> str:
    """The report page.

    Args:
        summary: the numbers of the top table (see ``core.report.run.run_report``): model, run, kind, data,
            n, accuracy, macro_f1, weighted_f1, ece, ece_uncalibrated, temperature, best_step, per_class.
        pngs: figure name (``curves``, ``confusion``, ``reliability``, ``per_class``, ``map``) -> PNG bytes,
            in page order; a missing one is left out.
        errors: the most confident wrong predictions (text, gold, predicted, confidence; maybe target).
        notes: what the page cannot show and why (no training log, skipped lines).

    Returns:
        The HTML text.
    """
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>finsent report: {_text(summary['model'])}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
           "<h1>finsent report</h1>", f'<p class="sub">{_text(summary["model"])} on {_text(summary["data"])}</p>',
           '<table class="summary">']  # fmt: skip
    out += [f"<tr><td>{name}</td><td>{value}</td></tr>" for name, value in summary_rows(summary)]
    out.append("</table>")
    if notes:
        out.append('<div class="notes">' + "".join(f"<p>{_text(n)}</p>" for n in notes) + "</div>")
    temperature = summary.get("temperature")
    for name, (title, caption) in CAPTIONS.items():
        if name not in pngs:
            continue
        if name == "reliability":
            caption += (f" The probabilities shown are calibrated: the logits divided by the model folder's temperature "
                        f"{temperature:.3f}, as predict and eval apply it; the grey line is the uncalibrated model."
                        if temperature is not None else " The model folder has no temperature: the probabilities are the raw ones.")  # fmt: skip
        if name == "map" and summary.get("map"):
            caption += f" Map: {summary['map']}."
        out += [f"<h2>{title}</h2>", "<figure>", f'<img src="{data_uri(pngs[name])}" alt="{_text(title)}">',
                f"<figcaption>{_text(caption)}</figcaption>", "</figure>"]  # fmt: skip
        if name == "per_class" and summary.get("per_class"):
            out.append("<table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>")
            for label in LABELS:
                m = summary["per_class"][label]
                out.append(f"<tr><td>{label}</td>" + "".join(f'<td class="num">{_num(m[k])}</td>' for k in ("precision", "recall", "f1"))
                           + f'<td class="num">{m["support"]:,}</td></tr>')  # fmt: skip
            out.append("</table>")
    out.append("<h2>Most confident errors</h2>")
    if errors:
        has_target = any("target" in e for e in errors)
        out.append("<table><tr><th>#</th><th>text</th>" + ("<th>target</th>" if has_target else "")
                   + "<th>true</th><th>predicted</th><th>confidence</th></tr>")  # fmt: skip
        for i, e in enumerate(errors, 1):
            target = f"<td>{_text(e.get('target', ''))}</td>" if has_target else ""
            out.append(f'<tr><td class="num">{i}</td><td>{_text(e["text"])}</td>{target}<td>{e["gold"]}</td>'
                       f'<td>{e["predicted"]}</td><td class="num">{e["confidence"]:.3f}</td></tr>')  # fmt: skip
        out.append("</table>")
    else:
        out.append("<p>None: every sentence is predicted right.</p>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)
