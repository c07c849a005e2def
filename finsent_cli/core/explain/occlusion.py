"""Word occlusion: which words move the prediction, and how faithful that ranking is.

Each whitespace word (its sub-word pieces merged back, using the tokenizer's character offsets) is
masked in turn and the drop in the predicted class's probability is its importance: after Zeiler &
Fergus 2014 (occlusion) and its use for keyword highlighting in review sentiment. The original text and
every single-word variant go through the model in ONE batched forward pass.

Faithfulness of the top-k words follows DeYoung et al. 2020 (ERASER), as implemented in ferret
(Attanasio et al. 2022):

* comprehensiveness = p(pred | x) - p(pred | x without the top-k words): high when those words matter;
* sufficiency = p(pred | x) - p(pred | only the top-k words): low when those words suffice.

Both need the ranking, so they take a second forward pass of two inputs.

Masking replaces every piece of a word with the tokenizer's mask token (``[MASK]`` for BERT-style
models: the model saw it in pretraining, and the sequence length, hence position embeddings, stays the
same); tokenizers without one use their unknown token. ``mode="delete"`` removes the pieces instead.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finsent_cli.core.inference.classifier import Classifier
from finsent_cli.core.inference.score import signed_score
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS

MASK_MODES = ("mask", "delete")


@dataclass
class WordEffect:
    """One word and what masking it does to the predicted class's probability."""

    word: str
    start: int  # character offsets in the text
    end: int
    p_without: float
    delta: float  # p(pred | text) - p(pred | text without the word); > 0 supports the prediction


@dataclass
class Explanation:
    """An occlusion explanation of one prediction."""

    text: str
    label: str
    probs: dict[str, float]
    words: list[WordEffect]
    top_k: list[str]
    comprehensiveness: float
    sufficiency: float
    mask_mode: str
    truncated: bool = False
    target: str | None = None  # the company the sentiment is toward (target-conditioned models)
    skipped: list[str] = field(default_factory=list)  # words cut off by max_length: not scored

    @property
    def p_pred(self) -> float:
        """Probability of the predicted label on the full text."""
        return self.probs[self.label]

    @property
    def score(self) -> float:
        """The signed sentiment score of the full text, ``p_positive - p_negative`` (``core.inference.score``)."""
        return float(signed_score(self.probs))


def word_pieces(
    clf: Classifier, text: str, target: str | None = None
) -> tuple[list[int], list[tuple[int, int]], list[list[int]], bool]:
    """Tokenise ``text`` (after ``target``, as the pair (target, text), when given) and group the text's
    token positions by whitespace word; the target's pieces are never words.

    Returns:
        Token ids (special tokens included, cut to ``max_length``), word spans ``(start, end)`` of the
        words that kept at least one piece, the token positions of each of those words, and whether
        the text was truncated.

    Raises:
        FinsentError: the tokenizer gives no character offsets (not a fast tokenizer).
    """
    try:
        inputs = {"text": target, "text_pair": text, "truncation": "only_second"} if target is not None else {"text": text, "truncation": True}
        enc = clf.tokenizer(**inputs, max_length=clf.max_length, return_offsets_mapping=True, return_special_tokens_mask=True)
        sequence = enc.sequence_ids()  # per position: 0 first text, 1 second, None special
    except (NotImplementedError, ValueError):
        raise FinsentError("explain needs a fast tokenizer (one that reports character offsets)") from None
    text_seq = 1 if target is not None else 0
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    starts = [s for s, _ in spans]
    pieces: dict[int, list[int]] = {}
    for pos, ((s, e), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"])):
        if special or e <= s or sequence[pos] != text_seq:
            continue
        while s < e and text[s].isspace():  # SentencePiece pieces may start on the space before a word
            s += 1
        if s >= e:
            continue
        w = int(np.searchsorted(starts, s, side="right")) - 1  # the word whose span starts at or before s
        if w >= 0 and s < spans[w][1]:
            pieces.setdefault(w, []).append(pos)
    kept = sorted(pieces)
    truncated = len(enc["input_ids"]) >= clf.max_length and len(kept) < len(spans)
    return list(enc["input_ids"]), [spans[w] for w in kept], [pieces[w] for w in kept], truncated


def _occlude(ids: list[int], positions: set[int], mode: str, mask_id: int) -> list[int]:
    if mode == "delete":
        return [t for i, t in enumerate(ids) if i not in positions]
    return [mask_id if i in positions else t for i, t in enumerate(ids)]


def explain_occlusion(
    clf: Classifier, text: str, top_k: int = 3, mode: str = "mask", batch_size: int | None = None, target: str | None = None
) -> Explanation:
    """Explain the prediction for ``text`` (toward ``target``, for a target-conditioned model) by masking one
    word of the text at a time.

    Args:
        clf: the classifier.
        text: the text to explain.
        top_k: number of most supportive words for comprehensiveness and sufficiency (capped at the
            number of words).
        mode: ``mask`` (replace pieces with the mask token, else the unknown token) or ``delete``.
        batch_size: split the variants into passes of this size (long documents on small memory);
            ``None``, the default, runs them all in one pass.

    Returns:
        The explanation; words in text order.

    Raises:
        FinsentError: empty text, unknown mode, ``top_k < 1``, or a target that the model does not take
            (or none for a model that needs one).
    """
    clf.check_targets(target is not None)
    if not text.strip():
        raise FinsentError("nothing to explain: TEXT is empty")
    if mode not in MASK_MODES:
        raise FinsentError(f"unknown mask mode '{mode}' (choose {', '.join(MASK_MODES)})", exit_code=2)
    if top_k < 1:
        raise FinsentError("--top-k must be at least 1", exit_code=2)
    tok = clf.tokenizer
    mask_id = tok.mask_token_id if tok.mask_token_id is not None else tok.unk_token_id
    if mask_id is None:
        mode = "delete"
    ids, spans, pieces, truncated = word_pieces(clf, text, target)
    if not spans:
        raise FinsentError("nothing to explain: the tokenizer found no words in TEXT")

    variants = [ids] + [_occlude(ids, set(p), mode, mask_id) for p in pieces]
    probs = clf.probs_from_ids(variants, batch_size=batch_size)  # (1 + W, 3): one forward pass by default
    pred = int(probs[0].argmax())
    p_pred = float(probs[0, pred])
    p_without = probs[1:, pred]  # (W,)
    deltas = p_pred - p_without  # (W,)

    k = min(top_k, len(spans))
    top = [int(i) for i in np.argsort(-deltas, kind="stable")[:k]]
    top_pos = {pos for w in top for pos in pieces[w]}
    rest_pos = {pos for w in range(len(spans)) if w not in top for pos in pieces[w]}
    erased = clf.probs_from_ids([_occlude(ids, top_pos, mode, mask_id), _occlude(ids, rest_pos, mode, mask_id)], batch_size=None)

    kept_starts = {s for s, _ in spans}
    skipped = [m.group() for m in re.finditer(r"\S+", text) if m.start() not in kept_starts]
    words = [
        WordEffect(text[s:e], s, e, float(p_without[w]), float(deltas[w])) for w, (s, e) in enumerate(spans)
    ]
    return Explanation(
        text=text,
        label=LABELS[pred],
        probs={label: float(probs[0, i]) for i, label in enumerate(LABELS)},
        words=words,
        top_k=[words[w].word for w in top],
        comprehensiveness=p_pred - float(erased[0, pred]),
        sufficiency=p_pred - float(erased[1, pred]),
        mask_mode=mode,
        truncated=truncated,
        skipped=skipped,
        target=target,
    )


def explanation_to_dict(exp: Explanation) -> dict[str, Any]:
    """A JSON-ready dict of the explanation."""
    return {
        "text": exp.text, "label": exp.label, "probs": exp.probs, "score": exp.score, "method": "occlusion", "mask_mode": exp.mask_mode,
        "words": [{"word": w.word, "start": w.start, "end": w.end, "p_without": w.p_without, "delta": w.delta} for w in exp.words],
        "top_k": exp.top_k, "comprehensiveness": exp.comprehensiveness, "sufficiency": exp.sufficiency,
        "truncated": exp.truncated, "skipped": exp.skipped, **({"target": exp.target} if exp.target is not None else {}),
    }  # fmt: skip


def _colour(delta: float, scale: float) -> str:
    alpha = min(1.0, abs(delta) / scale) if scale > 0 else 0.0
    rgb = "22, 163, 74" if delta >= 0 else "220, 38, 38"  # green supports the prediction, red opposes it
    return f"rgba({rgb}, {alpha * 0.6:.3f})"


def explanation_to_html(exp: Explanation) -> str:
    """A small self-contained HTML page: the text with coloured words, and the word table. All text is escaped."""
    scale = max((abs(w.delta) for w in exp.words), default=0.0)
    parts, cursor = [], 0
    for w in exp.words:
        parts.append(html.escape(exp.text[cursor : w.start]))
        tip = html.escape(f"delta {w.delta:+.4f}, p without {w.p_without:.4f}", quote=True)
        parts.append(f'<span style="background:{_colour(w.delta, scale)}" title="{tip}">{html.escape(w.word)}</span>')
        cursor = w.end
    parts.append(html.escape(exp.text[cursor:]))
    rows = "\n".join(
        f"<tr><td>{html.escape(w.word)}</td><td>{w.p_without:.4f}</td><td>{w.delta:+.4f}</td></tr>"
        for w in sorted(exp.words, key=lambda w: -w.delta)
    )
    probs = ", ".join(f"{k} {v:.3f}" for k, v in exp.probs.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>finsent explain: {html.escape(exp.label)}</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}} .text{{font-size:1.3em;line-height:1.8}}
span{{padding:0 2px;border-radius:3px}} table{{border-collapse:collapse}} td,th{{padding:2px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>{html.escape(exp.label)}{" toward " + html.escape(exp.target) if exp.target else ""} <small>({probs}; score {exp.score:+.3f})</small></h1>
<p class="text">{''.join(parts)}</p>
<p>Occlusion ({html.escape(exp.mask_mode)}): green words push toward <b>{html.escape(exp.label)}</b>, red words against it.
Top {len(exp.top_k)}: comprehensiveness {exp.comprehensiveness:.4f}, sufficiency {exp.sufficiency:.4f}.</p>
<table><tr><th>word</th><th>p({html.escape(exp.label)}) without</th><th>delta</th></tr>
{rows}
</table></body></html>
"""
