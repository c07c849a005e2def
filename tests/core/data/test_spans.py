"""T5 span corruption: exact lengths, sentinel order, lossless, realised statistics, determinism, bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from finsent_cli.core.data.spans import SpanCorruption, block_lengths, corrupt, noise_mask, sentinel_ids
from finsent_cli.errors import FinsentError

SENTINELS = np.arange(31999, 31899, -1)  # <extra_id_0> is the top id, as in T5 and finsent's tokenizer
EOS = 1


def _reconstruct(inputs: np.ndarray, targets: np.ndarray) -> list[int]:
    """Put every hidden span back where its sentinel stands."""
    spans: dict[int, list[int]] = {}
    current = None
    for t in targets[:-1]:
        if t in SENTINELS:
            current = int(t)
            spans[current] = []
        else:
            spans[current].append(int(t))  # type: ignore[index]
    out: list[int] = []
    for t in inputs[:-1]:
        out.extend(spans[int(t)] if t in SENTINELS else [int(t)])
    return out


@pytest.mark.parametrize(("inputs_length", "raw", "targets"), [(512, 568, 114), (128, 141, 29), (64, 70, 14)])
def test_lengths_match_t5(inputs_length: int, raw: int, targets: int) -> None:
    # 512 -> 568 / 114 is what t5.data.preprocessors.random_spans_helper gives for 0.15 and 3
    assert block_lengths(inputs_length, 0.15, 3.0) == (raw, targets)


@pytest.mark.parametrize("inputs_length", [32, 64, 100, 128, 256, 512])
def test_every_block_corrupts_to_exactly_the_lengths(inputs_length: int) -> None:
    sc = SpanCorruption(inputs_length, SENTINELS, EOS, seed=3)
    raw, target_length = sc.lengths
    block = np.arange(100, 100 + raw, dtype=np.int64)
    for index in range(50):
        inputs, targets = sc(block, epoch=0, index=index)
        assert len(inputs) == inputs_length and len(targets) == target_length
        assert inputs[-1] == EOS and targets[-1] == EOS


def test_sentinels_in_order_and_input_plus_targets_rebuild_the_block() -> None:
    sc = SpanCorruption(128, SENTINELS, EOS, seed=5)
    block = np.random.default_rng(0).integers(3, 30000, size=sc.lengths[0])
    for index in range(20):
        inputs, targets = sc(block, 0, index)
        in_sent = [int(t) for t in inputs if t in SENTINELS]
        tgt_sent = [int(t) for t in targets if t in SENTINELS]
        assert in_sent == tgt_sent == [int(s) for s in SENTINELS[: len(in_sent)]]  # <extra_id_0>, <extra_id_1>, ...
        assert targets[0] == SENTINELS[0]
        assert _reconstruct(inputs, targets) == block.tolist()


def test_realised_noise_density_and_mean_span_length() -> None:
    rng = np.random.default_rng(7)
    raw = block_lengths(512, 0.15, 3.0)[0]
    masks = np.stack([noise_mask(raw, 0.15, 3.0, rng) for _ in range(400)])  # (400, 568)
    assert abs(masks.mean() - 0.15) < 0.002
    starts = masks & ~np.concatenate([np.zeros((400, 1), bool), masks[:, :-1]], axis=1)
    assert abs(masks.sum() / starts.sum() - 3.0) < 0.05
    assert not masks[:, 0].any()  # a visible span comes first
    # the middle of a block is hidden evenly; as in T5 a block starts visible and ends in a hidden span
    eighths = masks.reshape(400, 8, 71).mean(axis=(0, 2))
    assert eighths[1:-1].min() > 0.13 and eighths[1:-1].max() < 0.17 and masks[:, -1].all()


def test_masks_are_a_function_of_seed_epoch_and_block() -> None:
    sc = SpanCorruption(64, SENTINELS, EOS, seed=11)
    block = np.arange(5, 5 + sc.lengths[0])
    a = sc(block, 2, 9)
    assert all(np.array_equal(x, y) for x, y in zip(a, sc(block, 2, 9)))
    assert not np.array_equal(a[0], sc(block, 3, 9)[0])  # a fresh mask every epoch
    assert not np.array_equal(a[0], sc(block, 2, 10)[0])
    other = SpanCorruption(64, SENTINELS, EOS, seed=12)
    assert not np.array_equal(a[0], other(block, 2, 9)[0])


def test_bad_settings_are_one_error_naming_the_key() -> None:
    with pytest.raises(FinsentError, match="data.noise_density: 0.0 must be between 0 and 1"):
        block_lengths(512, 0.0, 3.0)
    with pytest.raises(FinsentError, match="zero-length target"):
        block_lengths(16, 0.01, 3.0)
    with pytest.raises(FinsentError, match="data.mean_noise_span_length"):
        block_lengths(512, 0.15, 0.5)
    with pytest.raises(FinsentError, match="sentinels"):
        corrupt(np.arange(20), noise_mask(20, 0.5, 1.0, np.random.default_rng(0)), SENTINELS[:2], EOS)


def test_sentinel_ids_from_a_tokenizer() -> None:
    class Tok:
        def __init__(self, n: int) -> None:
            self.vocab = {"<pad>": 0, "</s>": 1, **{f"<extra_id_{k}>": 99 - k for k in range(n)}}

        def get_vocab(self) -> dict[str, int]:
            return self.vocab

    assert sentinel_ids(Tok(3)).tolist() == [99, 98, 97]
    with pytest.raises(FinsentError, match="has 0 sentinels"):
        sentinel_ids(Tok(0))
