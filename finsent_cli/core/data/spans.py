"""T5 span corruption (Raffel et al. 2020, arXiv 1910.10683, section 3.1.4; as in t5.data.preprocessors and
nanoT5): a block of tokens loses about ``noise_density`` of its tokens in spans of mean length
``mean_span_length``; each span becomes one sentinel in the input (``<extra_id_0>`` first), and the target
lists each sentinel followed by the tokens it hid, ending in EOS.

The raw block length is chosen so that the corrupted input is exactly ``inputs_length`` tokens (EOS
included), so packed pretraining batches hold no padding at all. Masks are drawn afresh for every epoch
("dynamic masking") from ``(seed, epoch, block index)`` alone, so a resumed run sees the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finsent_cli.errors import FinsentError


def _counts(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """Noise tokens and noise spans in a block of ``length`` tokens (T5's rounding and clamping)."""
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_span_length)), 1)
    return num_noise, num_spans


def span_count(length: int, noise_density: float, mean_span_length: float) -> int:
    """Noise spans in a block of ``length`` tokens: the sentinels a tokenizer needs."""
    return _counts(length, noise_density, mean_span_length)[1]


def corrupted_lengths(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """``(input length, target length)`` after corrupting a block of ``length`` tokens, EOS included."""
    num_noise, num_spans = _counts(length, noise_density, mean_span_length)
    return length - num_noise + num_spans + 1, num_noise + num_spans + 1


def block_lengths(inputs_length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """The raw block length whose corrupted input is exactly ``inputs_length`` tokens, and the target length.

    Raises:
        FinsentError: settings that hide no token (a zero-length target), leave no token visible, or for
            which no raw length lands exactly on ``inputs_length``; each names the recipe key.
    """
    if not 0.0 < noise_density < 1.0:
        raise FinsentError(f"data.noise_density: {noise_density} must be between 0 and 1 (T5: 0.15)")
    if mean_span_length < 1.0:
        raise FinsentError(f"data.mean_noise_span_length: {mean_span_length} must be at least 1 (T5: 3)")
    if inputs_length < 4:
        raise FinsentError(f"model.max_seq_len: {inputs_length} is too short for span corruption (at least 4)")
    if int(round(inputs_length * noise_density)) < 1:
        raise FinsentError(
            f"data.noise_density: {noise_density} hides no token of a {inputs_length}-token block (a zero-length "
            "target); raise it or model.max_seq_len"
        )
    length = inputs_length  # the raw block is never shorter than its corrupted input
    while corrupted_lengths(length + 1, noise_density, mean_span_length)[0] <= inputs_length:
        length += 1
    got, targets = corrupted_lengths(length, noise_density, mean_span_length)
    num_noise, num_spans = _counts(length, noise_density, mean_span_length)
    if got != inputs_length:
        raise FinsentError(
            f"model.max_seq_len: no block length corrupts to exactly {inputs_length} tokens with noise density "
            f"{noise_density} and mean span {mean_span_length} (closest: {got}); use {inputs_length + 1}"
        )
    if length - num_noise < num_spans:
        raise FinsentError(
            f"data.mean_noise_span_length: {mean_span_length} with noise density {noise_density} leaves fewer "
            "visible tokens than spans"
        )
    return length, targets


def _segments(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` split into ``parts`` positive lengths, uniformly over all such splits."""
    cuts = np.sort(rng.choice(total - 1, size=parts - 1, replace=False)) + 1 if parts > 1 else np.array([], dtype=np.int64)
    return np.diff(np.concatenate([[0], cuts, [total]]))


def noise_mask(length: int, noise_density: float, mean_span_length: float, rng: np.random.Generator) -> np.ndarray:
    """``(length,)`` booleans, True for hidden tokens: spans alternate visible / hidden, visible first."""
    num_noise, num_spans = _counts(length, noise_density, mean_span_length)
    noise = _segments(num_noise, num_spans, rng)  # (S,)
    visible = _segments(length - num_noise, num_spans, rng)  # (S,)
    runs = np.stack([visible, noise], axis=1).reshape(-1)  # (2S,): visible0, noise0, visible1, ...
    flags = np.tile([False, True], num_spans)  # (2S,)
    return np.repeat(flags, runs)  # (length,)


def corrupt(block: np.ndarray, mask: np.ndarray, sentinels: np.ndarray, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply a noise mask: ``(inputs, targets)`` with span ``k`` replaced by ``sentinels[k]``.

    Args:
        block: ``(L,)`` token ids.
        mask: ``(L,)`` from :func:`noise_mask`.
        sentinels: ids of ``<extra_id_0>``, ``<extra_id_1>``, ... in that order.
        eos_id: appended to both.

    Raises:
        FinsentError: more spans than sentinels.
    """
    starts = mask & ~np.concatenate([[False], mask[:-1]])  # (L,): first token of each hidden span
    n_spans = int(starts.sum())
    if n_spans > len(sentinels):
        raise FinsentError(f"a block has {n_spans} noise spans but the tokenizer has {len(sentinels)} sentinels")
    span_of = np.cumsum(starts) - 1  # (L,): index of the span a position belongs to (or precedes)
    with_sentinels = np.where(starts, sentinels[np.clip(span_of, 0, None)], block)  # (L,)
    inputs = np.concatenate([with_sentinels[~mask | starts], [eos_id]])  # (L - noise + spans + 1,)
    hidden = block[mask]  # (noise,)
    first = np.flatnonzero(starts[mask])  # (spans,): where each span starts among the hidden tokens
    targets = np.concatenate([np.insert(hidden, first, sentinels[:n_spans]), [eos_id]])  # (noise + spans + 1,)
    return inputs.astype(block.dtype, copy=False), targets.astype(block.dtype, copy=False)


@dataclass(frozen=True)
class SpanCorruption:
    """Span corruption for packed blocks, reproducible from ``(seed, epoch, block index)``.

    Attributes:
        inputs_length: corrupted input length, EOS included (the model's ``max_seq_len``).
        sentinels: ``<extra_id_0>``, ``<extra_id_1>``, ... ids.
        eos_id: the EOS id.
        noise_density: share of hidden tokens (T5: 0.15).
        mean_span_length: mean hidden span length (T5: 3).
        seed: the run's seed.
    """

    inputs_length: int
    sentinels: np.ndarray
    eos_id: int
    noise_density: float = 0.15
    mean_span_length: float = 3.0
    seed: int = 0

    @property
    def lengths(self) -> tuple[int, int]:
        """``(raw block length, target length)``."""
        return block_lengths(self.inputs_length, self.noise_density, self.mean_span_length)

    def __call__(self, block: np.ndarray, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Corrupt one raw block (of length ``lengths[0]``) with the mask of ``(epoch, index)``."""
        rng = np.random.default_rng([self.seed, epoch, index])
        mask = noise_mask(len(block), self.noise_density, self.mean_span_length, rng)
        return corrupt(np.asarray(block), mask, self.sentinels, self.eos_id)


def sentinel_ids(tokenizer: object, needed: int = 1) -> np.ndarray:
    """Ids of ``<extra_id_0>``, ``<extra_id_1>``, ... in a tokenizer (T5 layout: counting down from the top).

    Raises:
        FinsentError: the tokenizer has fewer than ``needed`` sentinels.
    """
    vocab = tokenizer.get_vocab()  # type: ignore[attr-defined]
    ids = []
    while f"<extra_id_{len(ids)}>" in vocab:
        ids.append(vocab[f"<extra_id_{len(ids)}>"])
    if len(ids) < needed:
        raise FinsentError(
            f"the tokenizer has {len(ids)} sentinels (<extra_id_N>), span corruption needs {needed}; train one with "
            "finsent tokenizer recipes/tokenizer.yaml"
        )
    return np.array(ids, dtype=np.int64)
