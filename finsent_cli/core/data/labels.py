"""Label normalisation to ``negative | neutral | positive``.

Datasets spell sentiment many ways: words (negative/positive, bearish/bullish), signs (-1/0/1), class
ids (0/1/2, ``LABEL_k``). Words and signs are unambiguous; class ids mean different things in
different datasets (Twitter Financial News: 0 = bearish, 1 = bullish, 2 = neutral), so they need an
explicit ``label_map``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS

_WORDS = {
    "negative": "negative", "neg": "negative", "bearish": "negative", "bear": "negative",
    "neutral": "neutral", "neu": "neutral", "none": "neutral",
    "positive": "positive", "pos": "positive", "bullish": "positive", "bull": "positive",
}  # fmt: skip
_SIGNS = {"-1": "negative", "-1.0": "negative", "0": "neutral", "0.0": "neutral", "1": "positive", "1.0": "positive"}
_CLASS_ID = re.compile(r"^(?:label_)?(\d+)$")


def _key(value: object) -> str:
    return str(value).strip().lower()


class LabelNormaliser:
    """Maps raw label values to the three finsent labels.

    Args:
        values: every raw label in the dataset (used to tell a -1/0/1 scheme from 0/1/2 class ids).
        label_map: explicit ``raw -> label`` mapping; wins over every built-in scheme. For ``LABEL_k``
            values a map keyed by ``k`` also applies.
    """

    def __init__(self, values: Iterable[object], label_map: dict[str, str] | None = None) -> None:
        self.label_map = {_key(k): v for k, v in (label_map or {}).items()}
        distinct = {_key(v) for v in values}
        self.signed = "-1" in distinct or "-1.0" in distinct
        self.class_ids = not self.signed and any(_CLASS_ID.match(v) for v in distinct if v not in _WORDS)

    def __call__(self, value: object) -> str | None:
        """The normalised label, or None when the value is unknown."""
        key = _key(value)
        if key in self.label_map:
            return self.label_map[key]
        match = _CLASS_ID.match(key)
        if match and match.group(1) in self.label_map:
            return self.label_map[match.group(1)]
        if key in _WORDS:
            return _WORDS[key]
        if self.signed and key in _SIGNS:
            return _SIGNS[key]
        return None

    def explain_unknown(self, value: object, option: str = "data.label_map") -> str:
        """Why ``value`` has no label, with the fix (``option`` names the setting that maps labels)."""
        key = _key(value)
        if not self.label_map and _CLASS_ID.match(key) and not self.signed:
            return (
                f"label {value!r} looks like a class id, whose meaning differs between datasets; "
                f"set {option}, e.g. {option}" + ("={0: negative, 1: neutral, 2: positive}" if option.startswith("data.") else " 0=negative,1=neutral,2=positive")
            )
        return f"unknown label {value!r} (expected one of {', '.join(LABELS)}, bearish/bullish, -1/0/1, or set {option})"


def normalise_or_raise(norm: LabelNormaliser, value: object, where: str, option: str = "data.label_map") -> str:
    """Normalise one label or raise a :class:`FinsentError` that names ``where`` (file and line)."""
    label = norm(value)
    if label is None:
        raise FinsentError(f"{where}: {norm.explain_unknown(value, option)}")
    return label
