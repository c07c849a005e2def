"""Training state: save/load round trip, RNG restore, improvement rule."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from finsent_cli.core.training.state import (
    TrainingState,
    capture_rng,
    load_state_file,
    restore_rng,
    save_state_file,
    state_from_dict,
    state_to_dict,
)


def test_round_trip(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = TrainingState(step=7, epoch=1, batch_in_epoch=3, samples_seen=224, best_metric=0.81, best_step=5, bad_evals=1)
    torch.manual_seed(42)
    random.seed(1)
    np.random.seed(2)
    save_state_file(tmp_path / "s.pt", {"state": state_to_dict(state), "optimizer": opt.state_dict(), "rng": [capture_rng()]})
    expected = (torch.rand(3), random.random(), np.random.rand())

    torch.manual_seed(0)  # scramble every generator
    random.seed(0)
    np.random.seed(0)
    blob = load_state_file(tmp_path / "s.pt")
    assert state_from_dict(blob["state"]) == state
    restore_rng(blob["rng"][0])
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]

    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(blob["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert all(not p.is_cuda for p in blob["optimizer"]["state"][0].values() if isinstance(p, torch.Tensor))


def test_state_from_dict_ignores_unknown_keys() -> None:
    assert state_from_dict({"step": 3, "from_the_future": 1}) == TrainingState(step=3)


def test_improved() -> None:
    s = TrainingState()
    assert s.improved(0.1, "max")
    s.best_metric = 0.5
    assert s.improved(0.6, "max") and not s.improved(0.5, "max")
    assert s.improved(0.4, "min") and not s.improved(0.5, "min")
