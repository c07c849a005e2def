"""Scores of active learning: which unlabelled texts are most worth labelling next.

Three signals, each a function of arrays (or, for rarity, of the texts and the model's tokenizer):

* **uncertainty** of the model's prediction, the classic pool-based sampling measures of Settles,
  "Active Learning Literature Survey" (2009, section 3.1): least confidence, margin and entropy, plus
  least confidence rescaled to [0, 1];
* **rarity**: the share of a text's words that the tokenizer does not hold whole, i.e. language the
  model has seen little of;
* **outliers** in embedding space: the distance to the nearest k-means centre (Lloyd's k-means as in
  scikit-learn; distance-to-centroid outlier scores after the clustering-based outlier detection
  surveyed by Chandola, Banerjee and Kumar, "Anomaly Detection: A Survey", 2009).

:func:`combine` turns each signal into a rank percentile before weighting, so weights compare signals
on different scales; :func:`pick_diverse` then fills the batch greedily in score order, skipping
duplicates and near-duplicates of texts already picked (a simple diversity filter after the
"uncertainty plus diversity" batch strategies of Brinker, ICML 2003).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MEASURES = ("least_confidence", "margin", "entropy", "normalised")
BOUNDARY_PIECES = ("▁", "Ġ")  # SentencePiece / byte-level word-start markers: not a piece of the word


def uncertainty(probs: np.ndarray, measure: str = "normalised") -> np.ndarray:
    """How unsure the model is of each row, higher = more unsure (Settles 2009, section 3.1).

    Args:
        probs: ``(N, C)`` class probabilities, rows summing to 1 (``C >= 2``).
        measure: ``least_confidence`` ``1 - max p``; ``margin`` ``1 - (p1 - p2)`` (the two largest);
            ``entropy`` ``-sum p log p / log C``; ``normalised`` ``(1 - max p) * C / (C - 1)``. All but
            least confidence span [0, 1]; least confidence tops out at ``1 - 1/C``.

    Returns:
        ``(N,)`` float64 scores.

    Raises:
        ValueError: an unknown measure, or fewer than two classes.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"expected (N, C>=2) probabilities, got shape {p.shape}")
    n_classes = p.shape[1]
    top = np.max(p, axis=1) if len(p) else np.zeros(0)
    if measure == "least_confidence":
        return 1.0 - top
    if measure == "normalised":
        return (1.0 - top) * n_classes / (n_classes - 1)
    if measure == "margin":
        two = np.sort(p, axis=1)[:, -2:]  # (N, 2): second largest, largest
        return 1.0 - (two[:, 1] - two[:, 0])
    if measure == "entropy":
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)  # 0 log 0 = 0
        return -plogp.sum(axis=1) / np.log(n_classes)
    raise ValueError(f"unknown uncertainty measure '{measure}' (choose {', '.join(MEASURES)})")


def rank_percentile(values: np.ndarray) -> np.ndarray:
    """Each value's rank among ``values`` mapped onto [0, 1]: the smallest 0, the largest 1.

    Tied values share their average rank, so a constant column is 0.5 everywhere (and a single value
    0.5): ``(average rank - 1) / (N - 1)`` with ranks counted from 1.

    Returns:
        ``(N,)`` float64 percentiles.
    """
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0)
    if len(x) == 1:
        return np.full(1, 0.5)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # 1-based rank of the last member of each group of equal values
    average = last - (counts - 1) / 2.0
    return (average[inverse] - 1.0) / (len(x) - 1)


def combine(components: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """The weighted mean of the components' rank percentiles (:func:`rank_percentile`).

    Args:
        components: raw scores by name, each ``(N,)``, higher = more worth labelling.
        weights: a weight per component name; components missing here or weighing 0 are left out.

    Returns:
        ``(N,)`` scores in [0, 1]: ``sum(w * percentile) / sum(w)``.

    Raises:
        ValueError: no component with a positive weight, or components of different lengths.
    """
    used = {name: w for name, w in weights.items() if w > 0 and name in components}
    if not used:
        raise ValueError("no component with a weight above 0")
    sizes = {len(components[name]) for name in used}
    if len(sizes) != 1:
        raise ValueError(f"components differ in length: {sorted(sizes)}")
    total = np.zeros(sizes.pop())
    for name, w in used.items():
        total += w * rank_percentile(components[name])
    return total / sum(used.values())


def rarity(texts: Sequence[str], tokenizer: Any) -> np.ndarray:
    """The share of each text's words that are unknown or rare in ``tokenizer``'s vocabulary.

    Words are what the tokenizer's own normaliser and pre-tokenizer make of the text (so ``Nokia's``
    is ``Nokia``, ``'``, ``s`` for BERT), keeping only words whose characters are all letters
    (``str.isalpha`` on the original characters: ``Q3``, ``10%`` and punctuation are not words here).
    A word is *unknown* when one of its pieces is the unk token, *rare* when the vocabulary does not
    hold it whole: it takes two or more pieces (a bare word-start marker, SentencePiece's ``▁`` or
    byte-level BPE's ``Ġ``, is not counted as a piece). Pieces come from tokenizing the whole text, so a
    word is judged in context as the model sees it.

    Args:
        texts: the texts.
        tokenizer: a fast Hugging Face tokenizer (word ids and character spans are needed).

    Returns:
        ``(N,)`` float64 shares in [0, 1]; 0 for a text without alphabetic words.

    Raises:
        ValueError: a slow (Python) tokenizer, which cannot map pieces back to words.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("rarity needs a fast tokenizer (word ids); set rarity.weight=0")
    out = np.zeros(len(texts))
    if not texts:
        return out
    unk = tokenizer.unk_token_id
    enc = tokenizer(list(texts), add_special_tokens=False, truncation=False)
    for i, text in enumerate(texts):
        pieces: dict[int, int] = {}
        unknown: set[int] = set()
        for token, tid, word in zip(enc.tokens(i), enc["input_ids"][i], enc.word_ids(i)):
            if word is None or token in BOUNDARY_PIECES:
                continue
            pieces[word] = pieces.get(word, 0) + 1
            if unk is not None and tid == unk:
                unknown.add(word)
        words = rare = 0
        for word, n in pieces.items():
            span = enc.word_to_chars(i, word)
            if span is None or not text[span.start : span.end].isalpha():
                continue
            words += 1
            rare += n >= 2 or word in unknown
        out[i] = rare / words if words else 0.0
    return out


def outliers(embeddings: np.ndarray, clusters: int = 8, seed: int = 13) -> np.ndarray:
    """Each embedding's distance to its nearest k-means centre: far from every centre = an outlier.

    The rows are scaled to unit length first (so distances follow cosine similarity, the geometry
    sentence encoders are trained for), then clustered with scikit-learn's k-means (k-means++ starts,
    ``n_init=4``, seeded).

    Args:
        embeddings: ``(N, D)`` vectors.
        clusters: k, capped at the number of distinct rows.
        seed: k-means' random state.

    Returns:
        ``(N,)`` float64 Euclidean distances of the unit rows to their nearest centre.
    """
    x = unit_rows(embeddings)
    if len(x) == 0:
        return np.zeros(0)
    k = min(clusters, len(np.unique(x, axis=0)))
    if k <= 1:
        return np.linalg.norm(x - x.mean(axis=0), axis=1)
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    return km.transform(x).min(axis=1).astype(np.float64)  # (N, k) distances -> nearest


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """``embeddings`` as float64 rows of length 1 (a zero row stays zero)."""
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True) if x.size else np.ones((len(x), 1))
    return x / np.where(norms > 0, norms, 1.0)


def pick_diverse(
    scores: np.ndarray,
    budget: int,
    keys: Sequence[str] | None = None,
    embeddings: np.ndarray | None = None,
    cosine: float | None = None,
) -> tuple[list[int], int]:
    """Greedily fill a batch in score order, skipping duplicates of what is already in it.

    A candidate is skipped when its key equals a picked text's key (``keys``: e.g. ``text_hash`` of each
    text), or when its embedding's cosine similarity to a picked text's exceeds ``cosine``. Equal scores
    keep input order.

    Args:
        scores: ``(N,)``, higher first.
        budget: most texts to pick.
        keys: a duplicate key per text, or None to skip that check.
        embeddings: ``(N, D)``, needed with ``cosine``.
        cosine: similarity above which a text is a near-duplicate; None skips that check.

    Returns:
        The picked indices, best first (fewer than ``budget`` when the pool runs out), and how many
        candidates were skipped as duplicates on the way.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    unit = unit_rows(embeddings) if cosine is not None and embeddings is not None else None
    kept = np.zeros((budget, unit.shape[1] if unit is not None else 0))  # (budget, D) unit rows of the picked
    seen: set[str] = set()
    picked: list[int] = []
    skipped = 0
    for i in order:
        if len(picked) == budget:
            break
        duplicate = keys is not None and keys[i] in seen
        if not duplicate and unit is not None and picked:
            duplicate = float(np.max(kept[: len(picked)] @ unit[i])) > cosine  # type: ignore[operator]
        if duplicate:
            skipped += 1
            continue
        if unit is not None:
            kept[len(picked)] = unit[i]
        if keys is not None:
            seen.add(keys[i])
        picked.append(int(i))
    return picked, skipped
