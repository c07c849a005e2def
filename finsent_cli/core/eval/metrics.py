"""Classification metrics for three-class sentiment, with calibration.

Expected calibration error follows Guo et al. 2017, "On Calibration of Modern Neural Networks": the top
probability of each prediction is binned into 15 equal-width bins over (0, 1] and ECE is the
support-weighted mean of |accuracy - mean confidence| over the bins. Temperature scaling (same paper)
divides the logits by one scalar fitted on validation data: accuracy is unchanged, confidence is honest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from finsent_cli.labels import LABELS


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (a bin holds confidences in (lo, hi]).

    Args:
        probs: ``(N, C)`` class probabilities.
        y_true: ``(N,)`` true class ids.
        n_bins: number of bins.

    Returns:
        ECE in [0, 1]; 0.0 for no examples.
    """
    if len(y_true) == 0:
        return 0.0
    conf = probs.max(axis=1)  # (N,)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)  # (N,)
    bins = _confidence_bins(conf, n_bins)  # (N,)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def _confidence_bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """The bin of each confidence among ``n_bins`` equal-width bins over (0, 1]: ``(N,)`` ids, conf in (lo, hi]."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)


@dataclass(frozen=True)
class ReliabilityBins:
    """What a reliability diagram draws: per confidence bin, its examples, their accuracy and mean confidence.

    Attributes:
        edges: ``(B + 1,)`` bin edges over [0, 1]; bin ``b`` holds confidences in ``(edges[b], edges[b + 1]]``.
        count: ``(B,)`` examples per bin.
        accuracy: ``(B,)`` share of right predictions per bin (NaN for an empty bin).
        confidence: ``(B,)`` mean top probability per bin (NaN for an empty bin).
        ece: the expected calibration error of the same bins (:func:`expected_calibration_error`).
    """

    edges: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    ece: float


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> ReliabilityBins:
    """The bins of :func:`expected_calibration_error`, kept apart for a reliability diagram (Guo et al. 2017,
    figure 1).

    Args:
        probs: ``(N, C)`` class probabilities.
        y_true: ``(N,)`` true class ids.
        n_bins: number of equal-width bins.

    Returns:
        Counts, accuracy and mean confidence per bin, and the ECE.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    count = np.zeros(n_bins, dtype=np.int64)
    accuracy = np.full(n_bins, np.nan)
    confidence = np.full(n_bins, np.nan)
    if len(y_true):
        conf = probs.max(axis=1)  # (N,)
        correct = (probs.argmax(axis=1) == y_true).astype(np.float64)  # (N,)
        bins = _confidence_bins(conf, n_bins)  # (N,)
        count = np.bincount(bins, minlength=n_bins)
        filled = count > 0
        accuracy[filled] = np.bincount(bins, weights=correct, minlength=n_bins)[filled] / count[filled]
        confidence[filled] = np.bincount(bins, weights=conf, minlength=n_bins)[filled] / count[filled]
    return ReliabilityBins(
        np.linspace(0.0, 1.0, n_bins + 1), count, accuracy, confidence, expected_calibration_error(probs, y_true, n_bins)
    )


TEMPERATURE_BOUNDS = (0.05, 20.0)


def _scaled_log_softmax(logp: np.ndarray, temperature: float) -> np.ndarray:
    z = logp / temperature  # (N, C)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-45, None))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)``: the probabilities of the logits divided by ``temperature``
    (log-probabilities differ from the logits by a per-row constant, which softmax ignores)."""
    return np.exp(_scaled_log_softmax(_log(probs), temperature))


def fit_temperature(probs: np.ndarray, y_true: np.ndarray) -> float | None:
    """The temperature that minimises the negative log-likelihood of ``y_true`` (Guo et al.), searched in
    :data:`TEMPERATURE_BOUNDS`.

    Args:
        probs: ``(N, C)`` uncalibrated probabilities (of a validation split).
        y_true: ``(N,)`` true class ids.

    Returns:
        The temperature; None when there is nothing to fit: no examples, or the optimum lies on a bound
        (every example right, say, where the likelihood only grows as the temperature falls to 0).
    """
    from scipy.optimize import minimize_scalar

    y_true = np.asarray(y_true, dtype=np.int64)
    if len(y_true) == 0:
        return None
    logp, rows = _log(probs), np.arange(len(y_true))
    lo, hi = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    res = minimize_scalar(
        lambda log_t: float(-_scaled_log_softmax(logp, np.exp(log_t))[rows, y_true].mean()),
        bounds=(lo, hi), method="bounded", options={"xatol": 1e-5},
    )  # fmt: skip
    if min(res.x - lo, hi - res.x) < 1e-3:
        return None
    return float(np.exp(res.x))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support, ECE and the confusion matrix.

    Args:
        y_true: ``(N,)`` true class ids (0 negative, 1 neutral, 2 positive).
        probs: ``(N, 3)`` predicted probabilities in the same label order.

    Returns:
        A JSON-ready dict: ``n``, ``accuracy``, ``macro_f1``, ``weighted_f1``, ``ece``, ``per_class``
        (label -> precision, recall, f1, support), ``confusion`` (rows true, columns predicted) and
        ``confusion_normalised`` (each row divided by its total; a row with no examples is all zeros).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1)
    ids = list(range(len(LABELS)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=ids)  # (C, C): rows true, columns predicted
    row_sums = cm.sum(axis=1, keepdims=True)
    cm_norm = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=np.float64), where=row_sums > 0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        "ece": expected_calibration_error(probs, y_true),
        "per_class": {
            label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, label in enumerate(LABELS)
        },
        "confusion": cm.tolist(),
        "confusion_normalised": cm_norm.tolist(),
    }


def training_metrics(probs: np.ndarray, gold: list[int] | np.ndarray) -> dict[str, float]:
    """The flat numbers logged during training: mean cross-entropy plus accuracy, macro / weighted F1,
    ECE and per-class F1 (``f1_negative`` ...) from :func:`classification_metrics`.

    Args:
        probs: ``(N, 3)`` probabilities in finsent label order.
        gold: ``(N,)`` true class ids.
    """
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.int64)
    loss = float(-np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-12, None)).mean())
    full = classification_metrics(gold, probs)
    out = {"loss": loss, **{k: full[k] for k in ("accuracy", "macro_f1", "weighted_f1", "ece")}}
    out.update({f"f1_{label}": full["per_class"][label]["f1"] for label in LABELS})
    return out
