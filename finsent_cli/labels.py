"""The one sentiment vocabulary of finsent: every model, dataset and report uses these names and ids."""

from __future__ import annotations

from typing import Literal

Label = Literal["negative", "neutral", "positive"]
"""A finsent label, as a type (recipe schemas use it to validate label maps)."""

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
"""Label names in id order: bearish, neutral, bullish."""

LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
ID2LABEL: dict[int, str] = dict(enumerate(LABELS))
