"""Schema of the generic training loop (``finsent_cli.core.training``), shared by every training recipe.

``OptimCfg``, ``SchedCfg`` and ``TrainCfg`` are the ``optim``, ``sched`` and ``train`` sections of
`finsent finetune` recipes today and of the pretraining and QLoRA recipes to come.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from finsent_cli.config.base import Schema


class OptimCfg(Schema):
    """AdamW (Loshchilov & Hutter 2019) or Adafactor (Shazeer & Stern 2018, the original T5 optimizer:
    factored second moments, no first moment, update clipping at 1.0); no weight decay on biases and
    normalisation weights. ``betas`` and ``eps`` are AdamW's; Adafactor runs with T5's settings and the
    schedule's learning rate (``lr: 0.01`` with ``inverse_sqrt`` is T5's recipe)."""

    name: Literal["adamw", "adafactor"] = "adamw"
    lr: float = Field(5e-5, gt=0.0, le=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    scale_by_rms: bool = False
    """Each weight's step in proportion to its size: with AdamW its learning rate times its RMS at the start
    of the run (floor 1e-3; weights that start at zero keep ``lr``), with Adafactor its parameter scaling
    (the current RMS). After T5's Adafactor and nanoT5's AdamWScale, which rescale every step: T5's
    initialisation spans 1.0 (embeddings) to (d_model d_kv)^-0.5 (queries), and one absolute step size
    moves the small weights far too fast. For training from scratch (T5 pretraining)."""


class SchedCfg(Schema):
    """Learning-rate schedule with linear warmup: give ``warmup_steps`` or ``warmup_ratio``, not both."""

    name: Literal["constant", "linear", "cosine", "inverse_sqrt"] = "linear"
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float | None = Field(None, ge=0.0, lt=1.0)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_warmup(self) -> SchedCfg:
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ValueError("give sched.warmup_steps or sched.warmup_ratio, not both")
        return self


class TrainCfg(Schema):
    """The generic loop: length, batching, evaluation, checkpoints, early stopping, logging.

    ``batch_size`` is per process; the global batch is ``batch_size * grad_accum * processes``.
    ``group_by_length`` batches examples of similar length together (less padding, about 2x faster on
    sentences; still deterministic and resumable). ``eval_every``/``save_every``: a number of optimizer
    steps or ``epoch``; every evaluation also writes a checkpoint. ``patience``: evaluations without improvement of ``metric`` before stopping.
    ``mixed_precision: bf16`` also works on CPUs (autocast); it pays only on CPUs with native bf16
    (``avx512_bf16`` or AMX). ``compile``: ``torch.compile`` the model (the first steps are slow).
    """

    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    grad_accum: int = Field(1, ge=1)
    group_by_length: bool = False
    eval_every: int | Literal["epoch"] = "epoch"
    save_every: int | Literal["epoch"] | None = None
    metric: str = "macro_f1"
    metric_mode: Literal["max", "min"] | None = None
    patience: int | None = Field(None, ge=1)
    seed: int = Field(13, ge=0)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    log_every: int = Field(10, ge=1)
    tensorboard: bool = False
    wandb: bool = False
    keep_checkpoints: int = Field(1, ge=1)
    compile: bool = False

    @field_validator("eval_every", "save_every")
    @classmethod
    def _positive(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be a positive number of steps or 'epoch'")
        return v
