"""``plan_passes``: the cheapest cut of a micro-batch into forward passes, checked against every cut."""

from __future__ import annotations

import itertools
import random

import pytest

from finsent_cli.core.inference.classifier import plan_batches, plan_passes


def _cost(passes: list[list[int]], lengths: list[int], pass_cost: float) -> float:
    return sum(pass_cost + len(p) * max(lengths[i] for i in p) for p in passes)


def _cheapest_by_brute_force(lengths: list[int], pass_cost: float, batch_size: int | None) -> float:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=len(order) - 1):  # every contiguous cut of the sorted inputs
        passes, current = [], [order[0]]
        for cut, i in zip(cuts, order[1:]):
            if cut:
                passes.append(current)
                current = []
            current.append(i)
        passes.append(current)
        if batch_size is None or all(len(p) <= batch_size for p in passes):
            best = min(best, _cost(passes, lengths, pass_cost))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_plan_passes_is_the_cheapest_cut(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(3, 80) for _ in range(rng.randint(1, 9))]
    pass_cost, batch_size = rng.choice([0.5, 10.0, 40.0, 500.0]), rng.choice([None, 3])
    passes = plan_passes(lengths, pass_cost, batch_size)
    assert sorted(i for p in passes for i in p) == list(range(len(lengths)))  # every input once
    assert _cost(passes, lengths, pass_cost) == pytest.approx(_cheapest_by_brute_force(lengths, pass_cost, batch_size))


def test_plan_passes_separates_long_from_short_and_keeps_limits() -> None:
    lengths = [10, 10, 10, 100, 10, 100]
    assert [sorted(p) for p in plan_passes(lengths, 20.0)] == [[3, 5], [0, 1, 2, 4]]
    assert plan_passes(lengths, 1e9) == plan_batches(lengths, None)  # passes that cost much: one, as before
    assert all(len(p) <= 2 for p in plan_passes(lengths, 1e9, batch_size=2))
    assert all(len(p) * max(lengths[i] for i in p) <= 200 or len(p) == 1 for p in plan_passes(lengths, 1e9, batch_tokens=200))
    assert plan_passes([], 30.0) == []
