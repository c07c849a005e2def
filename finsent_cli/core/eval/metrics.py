"""Classification metrics for three-class sentiment, with calibration.

Expected calibration error follows Guo et al. 2017, "On Calibration of Modern Neural Networks": the top
probability of each prediction is binned into 15 equal-width bins over (0, 1] and ECE is the
support-weighted mean of |accuracy - mean confidence| over the bins. Temperature scaling (same paper)
divides the logits by one scalar fitted on validation data: accuracy is unchanged, confidence is honest.
:func:`calibrate` keeps such a temperature only when the validation split is large enough and the temperature,
fitted on some folds, lowers the NLL of the others: on a small split a fitted temperature often makes test
calibration worse.

Graded evaluation compares a signed predicted score, p(positive) - p(negative), with a gold sentiment score in
[-1, 1] (SemEval-2017 task 5, FiQA 2018 task 1). SemEval-2017 task 5 ranks systems by the cosine similarity of
the predicted and gold score vectors (Cortis et al. 2017, "SemEval-2017 Task 5: Fine-Grained Sentiment
Analysis on Financial Microblogs and News"); Pearson's r, MSE and MAE are reported beside it.
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


TEMPERATURE_BOUNDS = (0.25, 4.0)
"""The temperatures a fit may choose: softening or sharpening the logits at most four-fold. On 15 real
(validation, test) pairs the temperatures fitted on whole validation splits lay in 0.68-2.87 and those that
test data wanted in 0.98-2.52 (``bench/bench_calibration.py``, docs/benchmarks.md "Calibration")."""


@dataclass(frozen=True)
class CalibrationRule:
    """When a temperature fitted on validation data is kept (see :func:`calibrate`).

    The defaults were chosen on 15 (validation, test) pairs of real models and data in
    ``bench/bench_calibration.py`` (docs/benchmarks.md "Calibration"): fitting on every validation split made
    test NLL worse (by more than 0.005) for 25% of 36-example subsets and 10-15% of 50-200-example ones
    (the quickstart's test ECE went from 0.063 to 0.132); this rule did so for at most 0.3% at any size,
    and kept 98% of the mean test-NLL gain of always fitting at 400 examples.

    Attributes:
        min_examples: smaller validation splits keep the raw probabilities: below 50 examples the held-out
            check itself grows unreliable (at 20 it let 6% of draws make test worse).
        folds: the held-out check fits on ``folds - 1`` folds of the validation split and scores the rest.
        min_z: the held-out NLL gain must be at least this many standard errors (one-sided 95%: 1.645);
            ``None`` skips the check (fit and apply).
        bounds: the temperatures the fit may choose.
        seed: the fold assignment's seed (the decision is deterministic).
    """

    min_examples: int = 50
    folds: int = 5
    min_z: float | None = 1.645
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS
    seed: int = 0


CALIBRATION_RULE = CalibrationRule()
"""The rule fine-tuning applies (:func:`calibrate` reads it at call time)."""


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` decided and the numbers it decided on.

    Attributes:
        applied: whether the temperature is to be used; otherwise the raw probabilities are kept.
        reason: one line that says why.
        n: validation examples.
        fitted: the temperature that minimises the validation NLL within the bounds (None: nothing to fit).
        ece_before / ece_after, nll_before / nll_after: on the whole validation split, raw and at ``fitted``
            (the ``after`` values are in-sample, so they flatter it: the held-out numbers decide).
        rule: the rule that decided.
        heldout_nll_before / heldout_nll_after / heldout_z: the cross-validated check (None where not run).
    """

    applied: bool
    reason: str
    n: int
    fitted: float | None
    ece_before: float
    ece_after: float | None
    nll_before: float
    nll_after: float | None
    rule: CalibrationRule
    heldout_nll_before: float | None = None
    heldout_nll_after: float | None = None
    heldout_z: float | None = None

    @property
    def temperature(self) -> float | None:
        """The temperature to apply; None keeps the raw probabilities."""
        return self.fitted if self.applied else None

    def record(self) -> dict[str, Any]:
        """The JSON-ready record that fine-tuning stores as ``calibration`` in ``finsent.json``."""

        def num(x: float | None) -> float | None:
            return None if x is None else (round(x, 6) if np.isfinite(x) else None)

        return {
            "method": "temperature", "split": "valid", "n": self.n, "applied": self.applied, "reason": self.reason,
            "temperature_fitted": num(self.fitted), "bounds": list(self.rule.bounds),
            "ece_before": num(self.ece_before), "ece_after": num(self.ece_after),
            "nll_before": num(self.nll_before), "nll_after": num(self.nll_after),
            "heldout": None if self.heldout_z is None else {
                "folds": self.rule.folds, "nll_before": num(self.heldout_nll_before),
                "nll_after": num(self.heldout_nll_after), "z": num(self.heldout_z), "min_z": self.rule.min_z,
            },
        }  # fmt: skip


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


def negative_log_likelihood(probs: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean ``-log p(y_true)`` of ``probs`` at ``temperature`` (0.0 for no examples)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    if len(y_true) == 0:
        return 0.0
    return float(-_scaled_log_softmax(_log(probs), temperature)[np.arange(len(y_true)), y_true].mean())


def fit_temperature(
    probs: np.ndarray, y_true: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_BOUNDS
) -> float | None:
    """The temperature in ``bounds`` that minimises the negative log-likelihood of ``y_true`` (Guo et al.).

    The NLL is convex in 1 / temperature, so an optimum beyond a bound is clamped to that bound.

    Args:
        probs: ``(N, C)`` uncalibrated probabilities (of a validation split).
        y_true: ``(N,)`` true class ids.
        bounds: the lowest and highest temperature allowed.

    Returns:
        The temperature; None when there is nothing to fit: no examples, or every prediction right (the
        likelihood then only grows as the temperature falls to 0).
    """
    from scipy.optimize import minimize_scalar

    y_true = np.asarray(y_true, dtype=np.int64)
    logp = _log(probs)
    if len(y_true) == 0 or bool((logp.argmax(axis=1) == y_true).all()):
        return None
    rows = np.arange(len(y_true))
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(
        lambda log_t: float(-_scaled_log_softmax(logp, np.exp(log_t))[rows, y_true].mean()),
        bounds=(lo, hi), method="bounded", options={"xatol": 1e-5},
    )  # fmt: skip
    if res.x - lo < 1e-3:
        return float(bounds[0])
    if hi - res.x < 1e-3:
        return float(bounds[1])
    return float(np.exp(res.x))


def heldout_gain(probs: np.ndarray, y_true: np.ndarray, rule: CalibrationRule) -> tuple[float, float, float]:
    """Cross-validated temperature scaling: each of ``rule.folds`` folds is scored raw and at the temperature
    fitted on the other folds.

    Returns:
        The held-out mean NLL raw and calibrated, and the z score of the per-example gain (raw NLL minus
        calibrated NLL; its mean over its standard error; +inf for a gain with no spread).
    """
    probs, y_true = np.asarray(probs, dtype=np.float64), np.asarray(y_true, dtype=np.int64)
    logp, n = _log(probs), len(y_true)
    order = np.random.default_rng(rule.seed).permutation(n)
    raw = -_scaled_log_softmax(logp, 1.0)[np.arange(n), y_true]  # (N,)
    cal = raw.copy()
    for fold in np.array_split(order, min(rule.folds, n)):
        rest = np.setdiff1d(order, fold)
        t = fit_temperature(probs[rest], y_true[rest], rule.bounds)
        if t is not None:
            cal[fold] = -_scaled_log_softmax(logp[fold], t)[np.arange(len(fold)), y_true[fold]]
    gain = raw - cal  # (N,) positive where calibration helped
    se = gain.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
    z = gain.mean() / se if se > 0 else (np.inf if gain.mean() > 0 else 0.0)
    return float(raw.mean()), float(cal.mean()), float(z)


def calibrate(probs: np.ndarray, y_true: np.ndarray, rule: CalibrationRule | None = None) -> Calibration:
    """Decide whether temperature scaling (Guo et al. 2017) fitted on a validation split is worth applying.

    A temperature is kept only when the split has at least ``rule.min_examples`` examples and, fitted on
    ``folds - 1`` folds, it lowers the NLL of the held-out folds by at least ``rule.min_z`` standard errors.
    Otherwise the raw probabilities stay: calibration cannot make them worse than they are.

    Args:
        probs: ``(N, C)`` uncalibrated validation probabilities.
        y_true: ``(N,)`` true class ids.
        rule: the thresholds (default :data:`CALIBRATION_RULE`).

    Returns:
        The decision, its reason and the validation numbers before and after.
    """
    rule = rule or CALIBRATION_RULE
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    n = len(y_true)
    fitted = fit_temperature(probs, y_true, rule.bounds)
    ece0, nll0 = expected_calibration_error(probs, y_true), negative_log_likelihood(probs, y_true)
    ece1 = nll1 = None
    if fitted is not None:
        ece1 = expected_calibration_error(apply_temperature(probs, fitted), y_true)
        nll1 = negative_log_likelihood(probs, y_true, fitted)
    common = {"n": n, "fitted": fitted, "ece_before": ece0, "ece_after": ece1, "nll_before": nll0, "nll_after": nll1, "rule": rule}
    if n == 0:
        return Calibration(False, "no validation examples", **common)
    if fitted is None:
        return Calibration(False, "every validation prediction is right: no temperature to fit", **common)
    if n < rule.min_examples:
        return Calibration(False, f"validation split too small ({n} < {rule.min_examples})", **common)
    if rule.min_z is None:
        return Calibration(True, "fitted on the validation split (no held-out check)", **common)
    before, after, z = heldout_gain(probs, y_true, rule)
    held = {"heldout_nll_before": before, "heldout_nll_after": after, "heldout_z": z}
    said = f"held-out validation NLL {before:.4f} -> {after:.4f} ({rule.folds}-fold, z {z:.2f}"
    if z >= rule.min_z:
        return Calibration(True, f"{said} >= {rule.min_z})", **common, **held)
    return Calibration(False, f"did not improve held-out validation NLL enough: {said} < {rule.min_z})", **common, **held)


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


def cosine_similarity(pred: np.ndarray, gold: np.ndarray) -> float | None:
    """``sum(pred * gold) / (||pred|| * ||gold||)``: SemEval-2017 task 5's official score.

    Returns:
        The cosine in [-1, 1]; None when either vector is all zeros (the angle is undefined).
    """
    pred, gold = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    norms = float(np.linalg.norm(pred) * np.linalg.norm(gold))
    if norms == 0.0:
        return None
    return float(np.clip(np.dot(pred, gold) / norms, -1.0, 1.0))


def _is_constant(v: np.ndarray) -> bool:
    """Every value equal to the mean up to rounding (its deviations would be noise, not signal)."""
    return bool(np.abs(v - v.mean()).max() <= 1e-12 * max(1.0, float(np.abs(v).max())))


def pearson_r(pred: np.ndarray, gold: np.ndarray) -> float | None:
    """Pearson's correlation of ``pred`` and ``gold``.

    Returns:
        r in [-1, 1]; None when there are fewer than two values or either vector is constant (r is then
        undefined: it divides by a standard deviation of zero).
    """
    pred, gold = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if len(pred) < 2 or _is_constant(pred) or _is_constant(gold):
        return None
    dp, dg = pred - pred.mean(), gold - gold.mean()  # (N,) each
    return float(np.clip(np.dot(dp, dg) / np.sqrt(np.dot(dp, dp) * np.dot(dg, dg)), -1.0, 1.0))


def graded_metrics(gold: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Cosine similarity, Pearson's r, MSE and MAE of predicted against gold scores.

    Args:
        gold: ``(N,)`` gold scores in [-1, 1].
        pred: ``(N,)`` predicted scores (``core.inference.score.signed_score``).

    Returns:
        A JSON-ready dict: ``n``, ``cosine``, ``pearson`` (each None where undefined), ``mse``, ``mae``, and
        ``notes``: one line for each metric that is undefined, saying why.
    """
    gold, pred = np.asarray(gold, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    notes = []
    cosine = cosine_similarity(pred, gold)
    if cosine is None:
        which = "gold" if not np.any(gold) else "predicted"
        notes.append(f"cosine undefined: every {which} score is 0")
    pearson = pearson_r(pred, gold)
    if pearson is None:
        if len(gold) < 2:
            notes.append("Pearson's r undefined: fewer than 2 scores")
        else:
            which = "gold" if _is_constant(gold) else "predicted"
            notes.append(f"Pearson's r undefined: every {which} score is the same")
    err = pred - gold  # (N,)
    return {
        "n": len(gold), "cosine": cosine, "pearson": pearson,
        "mse": float(np.mean(err**2)) if len(gold) else None, "mae": float(np.mean(np.abs(err))) if len(gold) else None,
        "notes": notes,
    }  # fmt: skip
