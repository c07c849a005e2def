"""Optimizers of the training loop: AdamW, and Adafactor for T5 pretraining."""

from __future__ import annotations

import torch

from finsent_cli.config.training import OptimCfg


RMS_FLOOR = 1e-3
"""The smallest RMS a weight's learning rate is scaled by (Adafactor's eps2, nanoT5's floor)."""


def rms_scale(p: torch.Tensor) -> float:
    """The multiplier of ``p``'s learning rate under ``optim.scale_by_rms``: ``max(RMS(p), RMS_FLOOR)``, and
    1 for a weight that starts at zero (LoRA's B, zero-initialised fusion layers, biases): it has no size
    to be relative to, and a floor-sized rate would leave it at zero for the whole run."""
    rms = float(p.detach().float().pow(2).mean().sqrt())
    return 1.0 if rms == 0.0 else max(rms, RMS_FLOOR)


def build_optimizer(model: torch.nn.Module, cfg: OptimCfg) -> torch.optim.Optimizer:
    """The optimizer of ``cfg.name`` over trainable parameters; biases and normalisation weights (1-D)
    get no weight decay.

    Adafactor is transformers' implementation (Shazeer & Stern 2018) with T5's settings: no first
    moment, decay rate -0.8, update clipping at 1.0, and the learning rate given by the schedule
    (``relative_step=False``), so ``lr: 0.01`` + ``inverse_sqrt`` reproduces T5's ``1/sqrt(max(step, warmup))``.

    ``cfg.scale_by_rms``: Adafactor scales each update by the weight's current RMS (its
    ``scale_parameter``); AdamW gets one parameter group per weight whose learning rate is ``lr`` times
    :func:`rms_scale` of the weight at the start of the run (weight decay, a multiple of the rate, scales
    with it; T5 pretraining runs without). Each group records its ``lr_scale``; the groups' rates are part
    of the optimizer's state, so a resumed run keeps the multipliers of its start.
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.scale_by_rms and cfg.name == "adamw":
        groups = [
            {"params": [p], "weight_decay": g["weight_decay"], "lr": cfg.lr * scale, "lr_scale": scale}
            for g in groups for p in g["params"] for scale in (rms_scale(p),)
        ]  # fmt: skip
    if cfg.name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(
            groups, lr=cfg.lr, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None,
            scale_parameter=cfg.scale_by_rms, relative_step=False, warmup_init=False,
        )  # fmt: skip
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
