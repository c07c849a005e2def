"""Optimizers: weight decay only on matrices, and ``scale_by_rms`` (each weight's step in proportion to its size)."""

from __future__ import annotations

import pytest
import torch

from finsent_cli.config.training import OptimCfg
from finsent_cli.core.models.t5 import FinT5ForConditionalGeneration
from finsent_cli.core.training.optim import RMS_FLOOR, build_optimizer, rms_scale
from finsent_cli.core.training.schedules import build_scheduler
from tests.core.models.t5_helpers import tiny_cfg


def _t5() -> FinT5ForConditionalGeneration:
    torch.manual_seed(0)
    return FinT5ForConditionalGeneration(tiny_cfg())


def test_plain_adamw_gives_every_weight_the_same_rate_and_decays_matrices_only() -> None:
    opt = build_optimizer(_t5(), OptimCfg(lr=1e-3, weight_decay=0.1))
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [(1e-3, 0.1), (1e-3, 0.0)]
    assert all(p.ndim >= 2 for p in opt.param_groups[0]["params"])


def test_scale_by_rms_gives_each_weight_lr_times_its_rms() -> None:
    model = _t5()
    opt = build_optimizer(model, OptimCfg(lr=2e-2, weight_decay=0.0, scale_by_rms=True))
    by_param = {id(g["params"][0]): g["lr"] for g in opt.param_groups}
    assert len(by_param) == sum(1 for p in model.parameters() if p.requires_grad)  # one group per weight
    cfg = model.config
    q = model.encoder.block[0].self_attn.q.weight  # T5 init std (d_model d_kv)^-0.5 = 1/32
    assert by_param[id(q)] == pytest.approx(2e-2 * (cfg.d_model * cfg.d_kv) ** -0.5, rel=0.05)
    assert by_param[id(model.shared.weight)] == pytest.approx(2e-2, rel=0.05)  # embeddings: std 1
    assert by_param[id(model.encoder.final_layer_norm.weight)] == pytest.approx(2e-2)  # ones
    assert rms_scale(torch.full((3, 3), 1e-5)) == RMS_FLOOR
    assert rms_scale(torch.zeros(3, 3)) == 1.0  # starts at zero (LoRA's B): the plain rate, not a frozen one
    assert all(g["lr"] == pytest.approx(2e-2 * g["lr_scale"]) for g in opt.param_groups)
    # a schedule multiplies each group's own rate
    sched = build_scheduler(opt, "linear", 0, 10)
    opt.step()
    sched.step()
    assert {id(g["params"][0]): g["lr"] for g in opt.param_groups}[id(q)] == pytest.approx(by_param[id(q)] * 0.9)


def test_scale_by_rms_moves_small_weights_less_than_plain_adamw() -> None:
    """One step of the same gradient: plain AdamW moves a query weight by lr (about its whole std at
    lr 2e-2), the scaled one by lr x std."""
    moved = {}
    for scaled in (False, True):
        model = _t5()
        q = model.encoder.block[0].self_attn.q.weight
        before = q.detach().clone()
        opt = build_optimizer(model, OptimCfg(lr=2e-2, weight_decay=0.0, scale_by_rms=scaled))
        model(torch.randint(2, 128, (2, 9)), labels=torch.randint(2, 128, (2, 5))).loss.backward()
        opt.step()
        moved[scaled] = float((q.detach() - before).abs().mean() / before.abs().mean())
    assert moved[False] > 0.5 and moved[True] < 0.05


def test_adafactor_scale_by_rms_is_its_parameter_scaling() -> None:
    plain = build_optimizer(_t5(), OptimCfg(name="adafactor", lr=1e-2, weight_decay=0.0))
    scaled = build_optimizer(_t5(), OptimCfg(name="adafactor", lr=1e-2, weight_decay=0.0, scale_by_rms=True))
    assert plain.defaults["scale_parameter"] is False and scaled.defaults["scale_parameter"] is True
