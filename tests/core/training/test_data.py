"""Resumable batching and dynamic padding."""

from __future__ import annotations

import torch

from finsent_cli.core.data.collate import pad_collate
from finsent_cli.core.training.data import ResumableBatches


def test_resume_sees_the_same_batches() -> None:
    s = ResumableBatches(103, 8, seed=13)
    full = list(s.batches(epoch=2))
    assert len(full) == len(s) == 13
    assert list(s.batches(epoch=2, skip=5)) == full[5:]
    assert sorted(i for b in full for i in b) == list(range(103))
    assert list(ResumableBatches(103, 8, seed=13).batches(2)) == full  # a fresh object (a new process) agrees
    assert list(s.batches(epoch=3)) != full
    assert list(ResumableBatches(103, 8, seed=14).batches(2)) != full


def test_ranks_split_the_global_batch() -> None:
    single = list(ResumableBatches(48, 8, seed=1).batches(0))
    r0 = list(ResumableBatches(48, 4, seed=1, world=2, rank=0).batches(0))
    r1 = list(ResumableBatches(48, 4, seed=1, world=2, rank=1).batches(0))
    assert [a + b for a, b in zip(r0, r1, strict=True)] == single


def test_uneven_count_pads_so_ranks_stay_in_step() -> None:
    r0 = list(ResumableBatches(11, 4, seed=1, world=2, rank=0).batches(0))
    r1 = list(ResumableBatches(11, 4, seed=1, world=2, rank=1).batches(0))
    assert [len(b) for b in r0] == [len(b) for b in r1] == [4, 2]
    assert set(i for b in r0 + r1 for i in b) == set(range(11))


def test_pad_collate() -> None:
    batch = pad_collate([{"input_ids": [5, 6, 7], "label": 2}, {"input_ids": [8], "label": 0}], pad_id=0, multiple_of=4)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert torch.equal(batch["labels"], torch.tensor([2, 0]))


def test_length_grouping_is_resumable_and_groups_lengths() -> None:
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(5, 100, (1000,), generator=g).tolist()
    s = ResumableBatches(1000, 8, seed=13, lengths=lengths)
    full = list(s.batches(epoch=1))
    assert list(ResumableBatches(1000, 8, seed=13, lengths=lengths).batches(1, skip=40)) == full[40:]
    assert sorted(i for b in full for i in b) == list(range(1000))
    assert all(len(b) == 8 for b in full)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in full)
    plain = sum(max(lengths[i] for i in b) * len(b) for b in ResumableBatches(1000, 8, seed=13).batches(1))
    assert padded < 0.7 * plain  # far less padding than random batches
    assert list(s.batches(epoch=2)) != full


def test_length_grouping_with_two_ranks() -> None:
    lengths = [(7 * i) % 31 + 1 for i in range(44)]
    single = list(ResumableBatches(44, 8, seed=1, lengths=lengths).batches(0))
    r0 = list(ResumableBatches(44, 4, seed=1, world=2, rank=0, lengths=lengths).batches(0))
    r1 = list(ResumableBatches(44, 4, seed=1, world=2, rank=1, lengths=lengths).batches(0))
    assert [a + b for a, b in zip(r0, r1, strict=True)] == single
    assert [len(b) for b in single][-1] == 4  # the short remainder batch comes last
