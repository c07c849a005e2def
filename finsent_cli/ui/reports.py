"""Rich renderings of finsent's reports: evaluation, predictions, explanations.

User text (headlines, words, dataset names) is always passed as :class:`rich.text.Text`, never as
markup, so a headline holding ``[/]`` prints as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.columns import Columns
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from finsent_cli.errors import escape_controls
from finsent_cli.labels import LABELS
from finsent_cli.ui import console, draws_colour, table

_GREENS = ("", "rgb(187,247,208)", "rgb(134,239,172)", "rgb(74,222,128)", "rgb(22,163,74)")  # toward the prediction
_REDS = ("", "rgb(254,202,202)", "rgb(252,165,165)", "rgb(248,113,113)", "rgb(220,38,38)")  # against it


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


def _metric(value: float | None) -> str:
    """A metric for a table or line: four decimals, ``n/a`` where it is undefined."""
    return "n/a" if value is None else f"{value:.4f}"


def render_eval_result(r: Any) -> None:
    """Summary line, per-class table and the two confusion matrices of one (model, dataset) pair; the graded
    line (cosine, Pearson r, MSE, MAE) when the dataset has gold scores; notes on what is left out."""
    m = r.metrics
    console.rule(escape(f"{short_name(r.model)} on {r.dataset}"))
    overlap = f"  [yellow]overlap with training data {r.overlap:,}[/]" if r.overlap else ""
    if "accuracy" in m:
        console.print(
            f"n {m['n']:,}  accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
            f"weighted-F1 {m['weighted_f1']:.4f}  ECE {m['ece']:.4f}"
            + (f" (uncalibrated {m['ece_uncalibrated']:.4f}, temperature {m['temperature']:.3f})" if m.get("temperature", 1.0) != 1.0 else "")
            + overlap
        )
    else:
        console.print(f"n {m['n']:,}" + overlap)
    for note in m.get("notes", []):
        console.print(f"[yellow]{escape(note)}[/]")
    if "graded" in m:
        g = m["graded"]
        numbers = f"cosine {_metric(g['cosine'])}  Pearson r {_metric(g['pearson'])}  MSE {_metric(g['mse'])}  MAE {_metric(g['mae'])}"
        console.print(escape(f"graded vs '{g['score_column']}':") + f"  {numbers}")  # predicted: p(positive) - p(negative)
        for note in g["notes"]:
            console.print(f"[yellow]{escape(note)}[/]")
    if "accuracy" not in m:
        return
    rows = [[label, c["precision"], c["recall"], c["f1"], c["support"]] for label, c in m["per_class"].items()]
    per_class = table("per class", ["label", "precision", "recall", "F1", "support"], rows)
    counts = _matrix("confusion (counts)", m["confusion"], m["confusion_normalised"], True)
    normed = _matrix("confusion (row-normalised)", m["confusion"], m["confusion_normalised"], False)
    console.print(Columns([per_class, counts, normed], padding=(0, 3)))


def render_eval_comparison(report: Any) -> None:
    """One table per dataset with the models side by side; the best value of each row in bold (``n/a``
    where a metric is undefined)."""
    for dataset in report.datasets:
        results = [report.get(m, dataset) for m in report.models]
        t = Table(title=escape(f"models on {dataset}"), title_justify="left")
        t.add_column("metric")
        for r in results:
            t.add_column(escape(short_name(r.model)), justify="right")
        rows: list[tuple[str, list[float | None], bool]] = []
        if all("accuracy" in r.metrics for r in results):
            rows += [(name, [r.metrics[name] for r in results], higher) for name, higher in
                     [("accuracy", True), ("macro_f1", True), ("weighted_f1", True), ("ece", False)]]  # fmt: skip
            rows += [(f"F1 {label}", [r.metrics["per_class"][label]["f1"] for r in results], True) for label in LABELS]
        if all("graded" in r.metrics for r in results):
            graded = [("cosine", "cosine", True), ("Pearson r", "pearson", True), ("MSE", "mse", False), ("MAE", "mae", False)]
            rows += [(f"score {name}", [r.metrics["graded"][key] for r in results], higher) for name, key, higher in graded]
        for name, values, higher in rows:
            known = [v for v in values if v is not None]
            best = (max(known) if higher else min(known)) if known else None
            t.add_row(name, *[f"[bold]{_metric(v)}[/]" if v is not None and v == best else _metric(v) for v in values])
        console.print(t)


_LABEL_STYLE = {"negative": "red", "neutral": "yellow", "positive": "green"}


def shown_text(text: str) -> str:
    r"""A text from a file for a table cell: line breaks kept, every other control character (a NUL, an
    escape sequence that would recolour or clear the terminal) shown as ``\xNN``."""
    return "\n".join(escape_controls(part) for part in text.split("\n"))


def render_predictions(rows: list[dict]) -> None:
    """Draw the predictions as a Rich table on stdout."""
    t = Table(title_justify="left")
    t.add_column("line", justify="right")
    t.add_column("text", ratio=1, min_width=12, overflow="fold")
    targets = bool(rows) and "target" in rows[0]
    if targets:
        t.add_column("target", overflow="fold")
    t.add_column("label", no_wrap=True)
    for col in ("conf", "p_neg", "p_neu", "p_pos", "score"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("status", no_wrap=True)
    for r in rows:
        target = [Text(shown_text(r["target"] or ""))] if targets else []
        text = Text(shown_text(r["text"]))
        if r["label"] is None:
            t.add_row(str(r["line"]), text, *target, "", "", "", "", "", "", f"[dim]{r['status']}[/]")
            continue
        label = f"[{_LABEL_STYLE[r['label']]}]{r['label']}[/]"
        probs = [f"{r[c]:.3f}" for c in ("confidence", "p_negative", "p_neutral", "p_positive")]
        t.add_row(str(r["line"]), text, *target, label, *probs, f"{r['score']:+.3f}", r["status"])
    console.print(t)


def render_explanation(exp: Any) -> None:
    """The text with each word coloured by its effect, then the word table.

    Without colour (``NO_COLOR``, not a terminal) each word that matters is followed by its signs
    instead: ``(++)`` toward the predicted class, ``(-)`` against it, more signs for a larger effect.
    """
    colour = draws_colour(console)
    scale = max((abs(w.delta) for w in exp.words), default=0.0) or 1.0
    line, cursor = Text(), 0
    for w in exp.words:
        line.append(exp.text[cursor : w.start])
        level = round(min(1.0, abs(w.delta) / scale) * 4)  # 0 (no colour) .. 4 (strongest)
        if colour:
            shades = _GREENS if w.delta >= 0 else _REDS
            line.append(w.word, style=f"black on {shades[level]}" if level else "")
        else:
            line.append(w.word + (f"({('+' if w.delta >= 0 else '-') * level})" if level else ""))
        cursor = w.end
    line.append(exp.text[cursor:])
    probs = "  ".join(f"{k} {v:.3f}" for k, v in exp.probs.items())
    toward = f" toward {escape(exp.target)}" if getattr(exp, "target", None) else ""
    console.print(f"[bold]{exp.label}[/]{toward}  ({probs}; score {exp.score:+.3f})")
    console.print(line)
    if colour:
        console.print("[dim]green pushes toward the predicted class, red against it[/]")
    else:
        console.print("(+) pushes toward the predicted class, (-) against it; more signs, a larger effect")
    rows = [[w.word, w.p_without, f"{w.delta:+.4f}"] for w in sorted(exp.words, key=lambda w: -w.delta)]
    console.print(table(f"occlusion ({exp.mask_mode})", ["word", f"p({exp.label}) without", "delta"], rows))
    console.print(
        f"top {len(exp.top_k)} ({escape(', '.join(exp.top_k))}): comprehensiveness {exp.comprehensiveness:.4f} (higher = more "
        f"faithful), sufficiency {exp.sufficiency:.4f} (lower = more faithful)"
    )
