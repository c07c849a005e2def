"""Learning-rate schedules: values at chosen steps, and parity with the Hugging Face linear/cosine schedules."""

from __future__ import annotations

import math

import pytest
import torch

from finsent_cli.core.training.schedules import build_scheduler, lr_multiplier, warmup_steps_for


@pytest.mark.parametrize(
    ("name", "step", "expected"),
    [
        ("constant", 0, 0.0), ("constant", 5, 0.5), ("constant", 10, 1.0), ("constant", 500, 1.0),
        ("linear", 5, 0.5), ("linear", 10, 1.0), ("linear", 60, 0.5), ("linear", 110, 0.0), ("linear", 200, 0.0),
        ("cosine", 10, 1.0), ("cosine", 60, 0.5), ("cosine", 35, 0.5 + 0.5 * math.cos(math.pi / 4)), ("cosine", 110, 0.0),
        ("inverse_sqrt", 5, 0.5), ("inverse_sqrt", 10, 1.0), ("inverse_sqrt", 40, 0.5), ("inverse_sqrt", 1000, 0.1),
    ],
)  # fmt: skip
def test_values(name: str, step: int, expected: float) -> None:
    assert lr_multiplier(name, warmup=10, total=110)(step) == pytest.approx(expected)


def test_min_ratio_floor_and_no_warmup() -> None:
    f = lr_multiplier("linear", warmup=0, total=100, min_ratio=0.1)
    assert f(0) == 1.0
    assert f(100) == pytest.approx(0.1)
    assert f(50) == pytest.approx(0.55)
    assert lr_multiplier("inverse_sqrt", warmup=0, total=100)(4) == pytest.approx(0.5)


def test_warmup_steps_for() -> None:
    assert warmup_steps_for(318, None, 0.1) == 32
    assert warmup_steps_for(318, 7, None) == 7
    assert warmup_steps_for(318, None, None) == 0


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_matches_transformers(name: str) -> None:
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    ref_fn = get_linear_schedule_with_warmup if name == "linear" else get_cosine_schedule_with_warmup
    p = torch.nn.Parameter(torch.zeros(1))
    ours_opt, ref_opt = torch.optim.SGD([p], lr=1.0), torch.optim.SGD([p], lr=1.0)
    ours, ref = build_scheduler(ours_opt, name, 7, 50), ref_fn(ref_opt, 7, 50)
    for _ in range(51):  # past the last step HF's cosine rises again; ours stays at the floor
        assert ours.get_last_lr()[0] == pytest.approx(ref.get_last_lr()[0], abs=1e-12)
        ours_opt.step(), ref_opt.step(), ours.step(), ref.step()


def test_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_multiplier("step", 0, 10)
