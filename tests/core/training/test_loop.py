"""The generic loop on a toy model: early stopping, best/last and pruning, gradient accumulation, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from finsent_cli.config.finetune import OptimCfg, SchedCfg, TrainCfg
from finsent_cli.core.training.checkpoint import latest_checkpoint, list_checkpoints
from finsent_cli.core.training.loop import TrainJob, make_accelerator, train


class Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def _data(n: int = 32) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(n, 4, generator=g)
    return [{"x": xs[i], "y": int(i % 3)} for i in range(n)]


def _job(model: Toy, metrics: list[float] | None = None) -> TrainJob:
    values = iter(metrics or [])

    def save_model(m: torch.nn.Module, folder: Path) -> None:
        torch.save(m.state_dict(), folder / "model.pt")

    return TrainJob(
        model=model, train_set=_data(),
        collate=lambda fs: {"x": torch.stack([f["x"] for f in fs]), "y": torch.tensor([f["y"] for f in fs])},
        loss_fn=lambda m, b: torch.nn.functional.cross_entropy(m(b["x"]), b["y"]),
        save_model=save_model, evaluate=(lambda m: {"macro_f1": next(values)}) if metrics else None,
    )  # fmt: skip


def _train(run_dir: Path, model: Toy, cfg: TrainCfg, metrics: list[float] | None = None, resume: Path | None = None):
    run_dir.mkdir(exist_ok=True)
    return train(_job(model, metrics), cfg, OptimCfg(lr=0.1), SchedCfg(name="constant"), run_dir, make_accelerator(cfg, run_dir), resume_from=resume)


def test_early_stopping_best_last_and_pruning(tmp_path: Path) -> None:
    cfg = TrainCfg(epochs=20, batch_size=8, eval_every=2, patience=2, log_every=1)
    result = _train(tmp_path, Toy(), cfg, metrics=[0.5, 0.6, 0.55, 0.58, 0.9, 0.9])
    assert result.state.stop_reason == "early_stop"
    assert result.state.step == 8 and result.state.best_step == 4 and result.state.best_metric == 0.6
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 8]
    best = torch.load(tmp_path / "best" / "model.pt")
    assert torch.equal(best["lin.weight"], torch.load(tmp_path / "checkpoints" / "step-4" / "model.pt")["lin.weight"])
    last = torch.load(tmp_path / "last" / "model.pt")
    assert not torch.equal(best["lin.weight"], last["lin.weight"])
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "eval"] == [2, 4, 6, 8]
    assert [e["best"] for e in events if e["event"] == "eval"] == [True, True, False, False]
    assert {"loss", "lr", "samples_per_s"} <= set(events[0])


def test_gradient_accumulation_matches_a_larger_batch(tmp_path: Path) -> None:
    a = _train(tmp_path / "a", Toy(), TrainCfg(epochs=2, batch_size=8, grad_accum=2))
    b = _train(tmp_path / "b", Toy(), TrainCfg(epochs=2, batch_size=16))
    assert a.state.step == b.state.step == 4
    wa, wb = torch.load(a.last_dir / "model.pt"), torch.load(b.last_dir / "model.pt")
    torch.testing.assert_close(wa["lin.weight"], wb["lin.weight"], atol=1e-6, rtol=0)


def test_resume_in_process_equals_uninterrupted(tmp_path: Path) -> None:
    full = _train(tmp_path / "full", Toy(), TrainCfg(epochs=3, batch_size=8, save_every=3))
    # Same run stopped after 5 steps (max_steps), then continued to the end from its last checkpoint.
    _train(tmp_path / "cut", Toy(), TrainCfg(epochs=3, batch_size=8, save_every=3, max_steps=5))
    ckpt = latest_checkpoint(tmp_path / "cut")
    assert ckpt is not None and ckpt.name == "step-5"
    model = Toy()
    model.load_state_dict(torch.load(ckpt / "model.pt"))
    resumed = _train(tmp_path / "cut", model, TrainCfg(epochs=3, batch_size=8, save_every=3), resume=ckpt)
    assert resumed.state.step == full.state.step == 12
    assert torch.equal(torch.load(resumed.last_dir / "model.pt")["lin.weight"], torch.load(full.last_dir / "model.pt")["lin.weight"])


def test_unknown_metric_is_reported(tmp_path: Path) -> None:
    from finsent_cli.errors import FinsentError

    cfg = TrainCfg(epochs=1, batch_size=8, eval_every=1)
    with pytest.raises(FinsentError, match="train.metric"):
        train(_job(Toy(), [0.5]), cfg, OptimCfg(), SchedCfg(), tmp_path, make_accelerator(cfg, tmp_path), metric="accuracy")
