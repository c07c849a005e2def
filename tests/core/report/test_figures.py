"""The report's figures on small hand-made arrays: axes, titles, cell texts, bins; no pyplot state."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from finsent_cli.core.eval.metrics import expected_calibration_error, reliability_bins
from finsent_cli.core.report import figures
from finsent_cli.core.report.page import render_page

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_training_curves_mark_the_best_step() -> None:
    fig = figures.training_curves(
        [2, 4, 6], [1.0, 0.8, 0.5], [1e-3, 5e-4, 0.0], [3, 6], {"macro_f1": [0.4, 0.6], "accuracy": [0.5, 0.7], "loss": [0.9, 0.7]}, 6
    )  # fmt: skip
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes]
    assert "training" in titles and "validation" in titles
    train = next(ax for ax in fig.axes if ax.get_title() == "training")
    assert list(train.lines[0].get_xdata()) == [2, 4, 6] and list(train.lines[0].get_ydata()) == [1.0, 0.8, 0.5]
    valid = next(ax for ax in fig.axes if ax.get_title() == "validation")
    assert "best step 6" in [t.get_text() for t in valid.get_legend().get_texts()]
    assert any(list(line.get_xdata()) == [6, 6] for line in valid.lines)  # the dashed vertical line


def test_training_curves_without_events_say_so() -> None:
    fig = figures.training_curves([], [], [], [], {}, None)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no training events" in texts and "no validation events" in texts


def test_confusion_cells_show_counts_and_row_shares() -> None:
    counts = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    fig = figures.confusion_matrices(counts)
    by_title = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(by_title) == {"counts", "row-normalised"}
    assert [t.get_text() for t in by_title["counts"].texts] == [str(v) for v in counts.ravel()]
    shares = [t.get_text() for t in by_title["row-normalised"].texts]
    assert shares[:3] == ["0.83", "0.17", "0.00"] and shares[3:6] == ["0.20", "0.70", "0.10"] and shares[8] == "1.00"
    assert [t.get_text() for t in by_title["counts"].get_xticklabels()] == ["negative", "neutral", "positive"]


def test_confusion_with_an_empty_row() -> None:
    fig = figures.confusion_matrices(np.array([[0, 0, 0], [0, 3, 0], [0, 1, 1]]))
    shares = next(ax for ax in fig.axes if ax.get_title() == "row-normalised")
    texts = [t.get_text() for t in shares.texts]
    assert texts[:3] == ["0.00"] * 3  # the empty row: zeros, not NaN
    assert texts[3:6] == ["0.00", "1.00", "0.00"] and texts[6:] == ["0.00", "0.50", "0.50"]


def test_reliability_bins_on_known_data() -> None:
    # confidences 0.95 (right), 0.95 (wrong), 0.55 (right), 0.35 (wrong) into 10 bins
    probs = np.array([[0.95, 0.03, 0.02], [0.95, 0.03, 0.02], [0.2, 0.55, 0.25], [0.35, 0.33, 0.32]])
    gold = np.array([0, 1, 1, 2])
    bins = reliability_bins(probs, gold, n_bins=10)
    assert bins.count.tolist() == [0, 0, 0, 1, 0, 1, 0, 0, 0, 2]
    assert bins.accuracy[9] == 0.5 and bins.accuracy[5] == 1.0 and bins.accuracy[3] == 0.0
    assert bins.confidence[9] == pytest.approx(0.95) and bins.confidence[3] == pytest.approx(0.35)
    assert np.isnan(bins.accuracy[0]) and np.isnan(bins.confidence[0])
    # ECE: 2/4 * |0.5 - 0.95| + 1/4 * |1 - 0.55| + 1/4 * |0 - 0.35|
    assert bins.ece == pytest.approx(0.5 * 0.45 + 0.25 * 0.45 + 0.25 * 0.35)
    assert bins.ece == pytest.approx(expected_calibration_error(probs, gold, n_bins=10))


def test_reliability_bin_edges_are_closed_on_the_right() -> None:
    probs = np.array([[0.6, 0.2, 0.2], [1.0, 0.0, 0.0]])
    bins = reliability_bins(probs, np.array([0, 0]), n_bins=5)  # 0.6 is in (0.4, 0.6], 1.0 in (0.8, 1.0]
    assert bins.count.tolist() == [0, 0, 1, 0, 1]


def test_reliability_diagram_names_ece_and_temperature() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=50)
    gold = rng.integers(0, 3, size=50)
    bins = reliability_bins(probs, gold)
    fig = figures.reliability_diagram(bins, reliability_bins(probs**2 / (probs**2).sum(1, keepdims=True), gold), 1.5)
    title = fig.axes[0].get_title()
    assert f"ECE {bins.ece:.3f}" in title and "temperature 1.50 applied" in title
    assert "raw probabilities" in figures.reliability_diagram(bins).axes[0].get_title()
    assert sum(p.get_height() for p in fig.axes[1].patches) == 50  # examples per bin


def test_per_class_bars_and_labels() -> None:
    per_class = {
        "negative": {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 2},
        "neutral": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 4},
        "positive": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
    }
    fig = figures.per_class_scores(per_class)
    (ax,) = fig.axes
    assert ax.get_title() == "per-class scores"
    assert len(ax.containers) == 3 and [p.get_height() for p in ax.containers[2]] == pytest.approx([2 / 3, 2 / 3, 0.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["negative\n(n=2)", "neutral\n(n=4)", "positive\n(n=1)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["precision", "recall", "f1"]


def test_embedding_map_marks_errors() -> None:
    points = np.array([[0, 0], [1, 1], [2, 0], [3, 1], [4, 0]], dtype=float)
    gold, pred = np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0])
    fig = figures.embedding_map(points, gold, pred, "t-SNE test")
    (ax,) = fig.axes
    assert ax.get_title() == "t-SNE test"
    right, wrong = ax.collections[:3], ax.collections[3:]  # one scatter per label each, errors by their true label
    assert [len(c.get_offsets()) for c in right] == [1, 1, 1] and [len(c.get_offsets()) for c in wrong] == [1, 0, 1]
    assert wrong[0].get_offsets().tolist() == [[1.0, 1.0]] and wrong[2].get_offsets().tolist() == [[4.0, 0.0]]
    assert np.allclose(wrong[0].get_edgecolor()[0], [0, 0, 0, 1])  # black edges
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "negative (n=2)" and legend[-1] == "error: predicted wrong (n=2)"


def test_png_bytes_are_deterministic_and_leave_no_pyplot_figures() -> None:
    import sys

    def draw() -> bytes:
        return figures.png_bytes(figures.confusion_matrices(np.array([[3, 1, 0], [0, 2, 0], [1, 0, 5]])))

    first, second = draw(), draw()
    assert first.startswith(PNG_MAGIC) and first == second
    if "matplotlib.pyplot" in sys.modules:  # another test imported it: at least none of our figures is open there
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


def test_page_is_self_contained_and_escapes_text() -> None:
    summary = {
        "model": "m", "run": None, "kind": "hf_encoder", "data": "d.csv", "n": 3, "accuracy": 2 / 3, "macro_f1": 0.5,
        "weighted_f1": 0.6, "ece": 0.1, "ece_uncalibrated": 0.2, "temperature": None, "best_step": None, "per_class": None,
    }  # fmt: skip
    errors = [{"text": "<b>see https://x.example</b>", "gold": "positive", "predicted": "negative", "confidence": 0.9}]
    page = render_page(summary, {"confusion": PNG_MAGIC}, errors, ["no metrics.jsonl: no training curves"])
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page
    assert "&lt;b&gt;" in page and "<b>" not in page
    assert "0.6667" in page and "no training curves" in page and "raw ones" not in page
