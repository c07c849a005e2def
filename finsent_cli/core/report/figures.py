"""The figures of ``finsent report``: plain data in, a matplotlib :class:`~matplotlib.figure.Figure` out.

Each function builds its own ``Figure`` on an Agg canvas: no ``pyplot``, so no global figure registry, no
GUI backend and nothing left open between calls; the same data gives the same picture (:func:`png_bytes`
leaves out the one varying PNG field, the software tag). The reliability diagram follows Guo et al. 2017,
"On Calibration of Modern Neural Networks" (figure 1: accuracy per confidence bin against the diagonal).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from finsent_cli.core.eval.metrics import ReliabilityBins
from finsent_cli.labels import LABELS

CLASS_COLOURS = {"negative": "#d62728", "neutral": "#7f7f7f", "positive": "#2ca02c"}
"""One colour per label, the same in every figure (red bearish, grey neutral, green bullish)."""
METRIC_COLOURS = {
    "macro_f1": "#1f77b4",
    "accuracy": "#ff7f0e",
    "loss": "#9467bd",
    "precision": "#8c9fd1",
    "recall": "#f2b36f",
    "f1": "#1f77b4",
}
DPI = 100
BELOW = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.16), "ncols": 4, "fontsize": 9, "frameon": False}
"""Legend placement under an axes: curves can go anywhere, so no legend sits on them."""


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # a figure with its own Agg canvas: pyplot and its backend are never involved
    return fig


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes, the same bytes for the same figure (no software tag in the metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def training_curves(
    train_steps: Sequence[int],
    train_loss: Sequence[float],
    lr: Sequence[float],
    eval_steps: Sequence[int],
    eval_metrics: Mapping[str, Sequence[float]],
    best_step: int | None = None,
) -> Figure:
    """Training loss and learning rate against step (left), validation metrics against step (right).

    Args:
        train_steps: ``(T,)`` steps of the ``train`` events.
        train_loss: ``(T,)`` mean training loss of each logging window.
        lr: ``(T,)`` learning rate at each of those steps (drawn on a second y axis).
        eval_steps: ``(E,)`` steps of the ``eval`` events.
        eval_metrics: ``name -> (E,)`` validation values; ``macro_f1`` and ``accuracy`` share the right
            panel's left axis, ``loss`` gets its own axis.
        best_step: the step of the kept model, marked by a dashed line and a star on each metric.

    Returns:
        A figure with the axes titled "training" and "validation".
    """
    fig = _figure(11, 4.4)
    ax_train, ax_valid = fig.subplots(1, 2)
    ax_train.set_title("training")
    ax_train.set_xlabel("step")
    ax_train.set_ylabel("loss")
    handles = []
    if len(train_steps):
        handles += ax_train.plot(train_steps, train_loss, color=METRIC_COLOURS["loss"], lw=1.5, label="train loss")
    ax_lr = ax_train.twinx()
    ax_lr.set_ylabel("learning rate")
    if len(train_steps) and len(lr):
        handles += ax_lr.plot(train_steps, lr, color="#17becf", lw=1.2, ls="--", label="learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    if handles:
        ax_train.legend(handles=handles, **BELOW)
    else:
        ax_train.text(0.5, 0.5, "no training events", ha="center", va="center", transform=ax_train.transAxes)

    ax_valid.set_title("validation")
    ax_valid.set_xlabel("step")
    ax_valid.set_ylabel("score")
    handles = []
    for name, label in (("macro_f1", "macro-F1"), ("accuracy", "accuracy")):
        if name in eval_metrics and len(eval_steps):
            handles += ax_valid.plot(
                eval_steps, eval_metrics[name], marker="o", ms=4, color=METRIC_COLOURS[name], label=label
            )
    ax_loss = ax_valid.twinx()
    ax_loss.set_ylabel("loss")
    if "loss" in eval_metrics and len(eval_steps):
        handles += ax_loss.plot(
            eval_steps, eval_metrics["loss"], marker="s", ms=4, ls=":", color=METRIC_COLOURS["loss"], label="valid loss"
        )
    if best_step is not None and best_step in list(eval_steps):
        i = list(eval_steps).index(best_step)
        ax_valid.axvline(best_step, color="black", ls="--", lw=0.8)
        for name in ("macro_f1", "accuracy"):
            if name in eval_metrics:
                ax_valid.plot(
                    [best_step],
                    [eval_metrics[name][i]],
                    marker="*",
                    ms=13,
                    color=METRIC_COLOURS[name],
                    mec="black",
                    zorder=5,
                )
        handles.append(Line2D([], [], color="black", ls="--", lw=0.8, label=f"best step {best_step}"))
    if handles:
        ax_valid.legend(handles=handles, **BELOW)
    else:
        ax_valid.text(0.5, 0.5, "no validation events", ha="center", va="center", transform=ax_valid.transAxes)
    return fig


def confusion_matrices(counts: np.ndarray, labels: Sequence[str] = LABELS) -> Figure:
    """Confusion matrix as counts (left) and row-normalised (right); rows true, columns predicted.

    Args:
        counts: ``(C, C)`` integer counts, rows the true label, columns the predicted one.
        labels: the ``C`` label names.

    Returns:
        A figure with the axes titled "counts" and "row-normalised"; each cell shows its value as text
        (counts as integers, shares with two decimals).
    """
    counts = np.asarray(counts, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    fig = _figure(9.5, 4)
    for ax, values, title, fmt in zip(
        fig.subplots(1, 2), (counts, shares), ("counts", "row-normalised"), ("{:d}", "{:.2f}")
    ):
        top = values.max() if values.size and values.max() > 0 else 1
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
        ax.set_title(title)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                ax.text(j, i, fmt.format(int(v) if fmt == "{:d}" else float(v)), ha="center", va="center",
                        color="white" if v > 0.6 * top else "black", fontsize=11)  # fmt: skip
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def reliability_diagram(
    bins: ReliabilityBins, raw: ReliabilityBins | None = None, temperature: float | None = None
) -> Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration, with the examples per bin below.

    Args:
        bins: the bins of the probabilities shown (calibrated when ``temperature`` is given).
        raw: the bins of the uncalibrated probabilities, drawn as a line for comparison.
        temperature: the temperature that calibrated ``bins`` (named in the title); None: raw probabilities.

    Returns:
        A figure whose upper axes' title names the ECE (and the temperature, when one was applied).
    """
    fig = _figure(6.4, 6)
    ax, ax_count = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    lo, width = bins.edges[:-1], np.diff(bins.edges)
    filled = bins.count > 0
    shown = "calibrated" if temperature is not None else "raw"
    ax.bar(lo[filled], bins.accuracy[filled], width=width[filled], align="edge", color="#1f77b4", alpha=0.8, edgecolor="white",
           label=f"accuracy ({shown} probabilities)")  # fmt: skip
    gap_lo = np.minimum(bins.accuracy[filled], bins.confidence[filled])
    gap = np.abs(bins.accuracy[filled] - bins.confidence[filled])
    ax.bar(lo[filled], gap, bottom=gap_lo, width=width[filled], align="edge", color="none", edgecolor="#d62728", hatch="//",
           lw=0.8, label="gap to mean confidence")  # fmt: skip
    if raw is not None:
        keep = raw.count > 0
        ax.plot(raw.confidence[keep], raw.accuracy[keep], marker="o", ms=4, color="#7f7f7f", lw=1,
                label=f"uncalibrated (ECE {raw.ece:.3f})")  # fmt: skip
    ax.plot([0, 1], [0, 1], ls="--", color="black", lw=0.8, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    title = f"reliability: ECE {bins.ece:.3f}"
    title += f" (temperature {temperature:.2f} applied)" if temperature is not None else " (raw probabilities)"
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    ax_count.bar(lo, bins.count, width=width, align="edge", color="#1f77b4", alpha=0.6, edgecolor="white")
    ax_count.set_xlabel("confidence (top probability)")
    ax_count.set_ylabel("examples")
    return fig


def per_class_scores(per_class: Mapping[str, Mapping[str, float]], labels: Sequence[str] = LABELS) -> Figure:
    """Precision, recall and F1 per class as grouped bars, each bar with its value; support under each label.

    Args:
        per_class: ``label -> {"precision", "recall", "f1", "support"}`` (``classification_metrics``).
        labels: the order of the groups.

    Returns:
        A figure with one axes titled "per-class scores" and one bar container per metric.
    """
    fig = _figure(7.5, 4)
    ax = fig.subplots()
    x = np.arange(len(labels))
    width = 0.26
    for k, name in enumerate(("precision", "recall", "f1")):
        values = [float(per_class[label][name]) for label in labels]
        bars = ax.bar(x + (k - 1) * width, values, width, label=name, color=METRIC_COLOURS[name])
        ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.set_xticks(x, [f"{label}\n(n={int(per_class[label].get('support', 0))})" for label in labels])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score")
    ax.set_title("per-class scores")
    ax.legend(loc="upper center", ncols=3, fontsize=9, frameon=False, bbox_to_anchor=(0.5, -0.18))
    return fig


def embedding_map(
    points: np.ndarray, gold: np.ndarray, pred: np.ndarray, title: str, labels: Sequence[str] = LABELS
) -> Figure:
    """Sentences as points of a 2-d map, coloured by their true label; errors as black-edged crosses.

    Args:
        points: ``(N, 2)`` coordinates (a t-SNE or PCA projection of the embeddings).
        gold: ``(N,)`` true class ids.
        pred: ``(N,)`` predicted class ids.
        title: what the map is (method and settings).
        labels: label name per class id.

    Returns:
        A figure with one axes titled ``title``: one scatter per label of the right predictions, one per
        label of the errors (marker ``X``, black edge).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    gold, pred = np.asarray(gold), np.asarray(pred)
    fig = _figure(7.5, 6.5)
    ax = fig.subplots()
    wrong = gold != pred
    for c, label in enumerate(labels):
        mine = gold == c
        ax.scatter(*points[mine & ~wrong].T, s=14, alpha=0.6, color=CLASS_COLOURS.get(label), lw=0,
                   label=f"{label} (n={int(mine.sum())})")  # fmt: skip
    for c, label in enumerate(labels):
        ax.scatter(
            *points[(gold == c) & wrong].T,
            s=46,
            marker="X",
            color=CLASS_COLOURS.get(label),
            edgecolors="black",
            linewidths=0.7,
        )
    handles, names = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], ls="", marker="X", ms=8, mfc="white", mec="black", label="error"))
    names.append(f"error: predicted wrong (n={int(wrong.sum())})")
    ax.legend(handles, names, loc="best", fontsize=9, framealpha=0.9, title="true label")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig
