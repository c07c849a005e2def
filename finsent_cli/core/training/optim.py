"""Optimizers of the training loop: AdamW, and Adafactor for T5 pretraining."""

from __future__ import annotations

import torch

from finsent_cli.config.training import OptimCfg


def build_optimizer(model: torch.nn.Module, cfg: OptimCfg) -> torch.optim.Optimizer:
    """The optimizer of ``cfg.name`` over trainable parameters; biases and normalisation weights (1-D)
    get no weight decay.

    Adafactor is transformers' implementation (Shazeer & Stern 2018) with T5's settings: no first
    moment, decay rate -0.8, update clipping at 1.0, and the learning rate given by the schedule
    (``relative_step=False``), so ``lr: 0.01`` + ``inverse_sqrt`` reproduces T5's ``1/sqrt(max(step, warmup))``.
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(
            groups, lr=cfg.lr, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None,
            scale_parameter=False, relative_step=False, warmup_init=False,
        )  # fmt: skip
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
