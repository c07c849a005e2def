"""The signed sentiment score of a prediction: ``p_positive - p_negative``, one number in [-1, 1].

+1 is surely positive (bullish), -1 surely negative (bearish), 0 balanced or neutral. Quant users sum or
average it per ticker and day; finsent puts it beside the probabilities of every prediction (``predict``'s
rows, ``serve``'s JSON, ``explain``, :meth:`Classifier.predict_scores
<finsent_cli.core.inference.classifier.Classifier.predict_scores>`), always computed here, from the same
calibrated probabilities the prediction reports. numpy loads only when a score is computed, so importing
this module stays cheap (``finsent predict --help``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finsent_cli.labels import LABEL2ID, LABELS

POSITIVE, NEGATIVE = LABEL2ID["positive"], LABEL2ID["negative"]


def signed_score(probs: Any) -> Any:
    """``p_positive - p_negative``.

    Args:
        probs: probabilities in finsent label order (negative, neutral, positive) along the last axis: one
            row (a list, tuple or array of three), an ``(N, 3)`` array, or a ``{label: probability}`` mapping.

    Returns:
        A float for one row or mapping; an ``(N,)`` float64 array for ``N`` rows.
    """
    if isinstance(probs, Mapping):
        probs = [probs[label] for label in LABELS]
    if isinstance(probs, list | tuple) and len(probs) == len(LABELS) and all(isinstance(v, float | int) for v in probs):
        return float(probs[POSITIVE]) - float(probs[NEGATIVE])  # one row of Python numbers (predict's rows): no numpy
    import numpy as np

    p = np.asarray(probs, dtype=np.float64)  # (3,) or (N, 3)
    score = p[..., POSITIVE] - p[..., NEGATIVE]  # () or (N,)
    return float(score) if score.ndim == 0 else score
