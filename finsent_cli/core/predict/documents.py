"""One sentiment per article: sentences (or windows), predicted together, aggregated per document.

``predict --per document`` splits each record into sentences with a rule-based splitter made for news
prose (abbreviations such as ``Inc.``, ``U.S.`` and ``Jan.``, initials and decimals do not end a
sentence), cuts a sentence longer than the model's limit into overlapping token windows, so nothing is
truncated, and averages the pieces' probabilities into one row per record:

- ``mean``: every piece weighs the same.
- ``confidence``: a piece weighs ``1 - H(p) / log 3`` (its normalised entropy taken from one), so a
  confident sentence counts more than one the model is unsure about; when every piece is uniform the
  mean is used.

The per-piece rows are what ``--details FILE`` writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

AGGREGATIONS = ("mean", "confidence")

ABBREVIATIONS = frozenset(
    ["inc", "corp", "co", "ltd", "plc", "llc", "lp", "bros", "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ave", "rd", "no", "nos", "vs", "etc", "approx", "est", "dept", "div", "govt", "intl", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "fig", "figs", "vol", "e.g", "i.e", "u.s", "u.k", "u.n", "e.u", "a.m", "p.m", "ph.d", "n.v", "s.a", "a.g", "s.p.a", "ag", "sa", "nv", "oy", "oyj", "ab", "asa"]
)
"""Words that a full stop follows without ending a sentence (lower case, without the final stop)."""

_BOUNDARY = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9$\u20ac\u00a3])|\n\s*\n+|\n(?=\s*[-*\u2022])")
_LAST_WORD = re.compile(r"(\S+)$")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, in order (empty text: none).

    A boundary is end punctuation followed by space and a capital letter, digit or currency sign, a
    blank line, or a line that starts a bullet; a stop after a known abbreviation or a single capital
    letter (an initial) is not one.
    """
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if m.group(0).startswith((".",)) and len(m.group(0).rstrip()) == 1:
            word = _LAST_WORD.search(text, start, m.start())
            stem = word.group(1).lstrip("(\"'").lower() if word else ""
            if stem in ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):
                continue
        piece = text[start : m.end()].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def windows(ids: Sequence[int], size: int, stride: int) -> list[list[int]]:
    """Overlapping windows of at most ``size`` tokens, each starting ``stride`` after the previous, the
    last one ending at the end (so every token is in at least one window)."""
    if len(ids) <= size:
        return [list(ids)]
    starts = list(range(0, len(ids) - size, stride)) + [len(ids) - size]
    return [list(ids[s : s + size]) for s in starts]


@dataclass
class Piece:
    """One predicted unit of a document: a sentence, or a window of one."""

    record: int  # index of the record in its chunk
    sentence: int  # 1-based sentence number
    part: int  # 1-based window number within the sentence
    parts: int  # windows the sentence was cut into
    text: str  # the sentence, or the part of it that the window covers


def aggregate(probs: np.ndarray, how: str) -> np.ndarray:
    """One probability row from the pieces' ``(K, 3)`` rows (see the module docstring)."""
    import numpy as np

    if how == "confidence":
        p = np.clip(probs, 1e-12, 1.0)
        entropy = -(p * np.log(p)).sum(axis=1) / math.log(probs.shape[1])  # (K,) in [0, 1]
        weights = 1.0 - entropy
        if weights.sum() > 1e-9:
            return (weights[:, None] * probs).sum(axis=0) / weights.sum()
    return probs.mean(axis=0)
