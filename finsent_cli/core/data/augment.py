"""Text augmentation of a training split: random deletion and random swap of words.

After EDA (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance on Text
Classification Tasks"), without its synonym replacement and random insertion: a synonym changes meaning
in finance text ("profit rose" -> "profit climbed" is fine, "loss narrowed" -> "loss shrank" is not
always, and WordNet knows nothing of "guidance" or "downgrade"). Each augmented copy of an example gets
ONE operation, picked at random among those enabled, as EDA makes one sentence per operation:

- deletion: every word is dropped with probability ``deletion`` (at least one word survives);
- swap: ``max(1, round(swap * words))`` times, two random positions trade places.

Words are whitespace-separated tokens (the data sets are tokenised with spaces around punctuation). For
target-conditioned rows (sentiment toward a named company) the words of the target are never dropped, so
the company stays in the sentence. Only the training split is augmented; the originals are kept, the
copies follow them, and a seed makes the result the same on every run (and on resume).
"""

from __future__ import annotations

import random
from typing import Any

OPERATIONS = ("deletion", "swap")


def delete_words(words: list[str], p: float, rng: random.Random, keep: frozenset[str] = frozenset()) -> list[str]:
    """Each word dropped with probability ``p``, except those in ``keep`` (lower-cased); never all of them."""
    if len(words) <= 1:
        return list(words)
    kept = [w for w in words if w.lower() in keep or rng.random() >= p]
    return kept or [rng.choice(words)]


def swap_words(words: list[str], share: float, rng: random.Random) -> list[str]:
    """``max(1, round(share * len(words)))`` swaps of two random positions (a text of one word is unchanged)."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(max(1, round(share * len(out)))):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def augment_rows(
    rows: list[dict[str, Any]], deletion: float, swap: float, copies: int, seed: int
) -> list[dict[str, Any]]:
    """``rows`` followed by ``copies`` augmented copies of each (text changed, other fields kept).

    Args:
        rows: training rows ``{"text", "label", ...}``; a ``target`` field protects its words.
        deletion: word dropout probability (0 turns deletion off).
        swap: swaps per word (0 turns swapping off).
        copies: augmented copies per row.
        seed: the random seed.

    Returns:
        The originals, then the copies (``raw_text`` dropped from copies: they are not in any source file;
        ``augmented: True`` marks them). A copy identical to its original (a one-word text) is skipped.
    """
    ops = [name for name, p in zip(OPERATIONS, (deletion, swap), strict=True) if p > 0]
    if not ops or copies < 1:
        return list(rows)
    rng = random.Random(seed)
    extra: list[dict[str, Any]] = []
    for _ in range(copies):
        for row in rows:
            words = str(row["text"]).split()
            op = rng.choice(ops)
            if op == "deletion":
                keep = frozenset(str(row.get("target") or "").lower().split())
                new = delete_words(words, deletion, rng, keep)
            else:
                new = swap_words(words, swap, rng)
            if new == words:
                continue
            copy = {k: v for k, v in row.items() if k != "raw_text"}
            extra.append({**copy, "text": " ".join(new), "augmented": True})
    return list(rows) + extra
