"""Schema of `finsent finetune` recipes.

``OptimCfg``, ``SchedCfg`` and ``TrainCfg`` describe the generic training loop
(``finsent_cli.core.training``) and are meant to be reused by the pretraining and QLoRA recipes;
``ModelCfg`` and ``FinetuneData`` are specific to sequence classification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from finsent_cli.config.base import InputFile, InputPath, Label, RawLabel, Schema

CLASSIFICATION_METRICS = {"macro_f1": "max", "accuracy": "max", "weighted_f1": "max", "loss": "min"}


class LoraCfg(Schema):
    """LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models")."""

    r: int = Field(8, ge=1, le=1024)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "value"], min_length=1)


class ModelCfg(Schema):
    """Backbone, classification head and adapter.

    ``backbone`` is a local Hugging Face folder, a hub name, or the alias ``minilm``. ``pooling`` is
    ``first`` (hidden state of the first token) or ``mean`` (masked mean over tokens, how MiniLM
    sentence embeddings were trained). ``class_weights``: ``none``, ``balanced`` (n / (3 * count)) or
    three numbers in label order negative, neutral, positive.
    """

    backbone: str
    head: Literal["classification"] = "classification"
    pooling: Literal["first", "mean"] = "mean"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    backbone_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    class_weights: Literal["none", "balanced"] | list[float] = "none"
    adapter: Literal["none", "lora"] = "none"
    lora: LoraCfg = Field(default_factory=LoraCfg)
    max_length: int = Field(128, ge=8, le=8192)

    @field_validator("class_weights")
    @classmethod
    def _three_weights(cls, v: str | list[float]) -> str | list[float]:
        if isinstance(v, list) and (len(v) != 3 or any(w <= 0 for w in v)):
            raise ValueError("give 3 positive weights (negative, neutral, positive), 'balanced' or 'none'")
        return v


class FinetuneData(Schema):
    """Labelled examples: a folder written by ``finsent prep`` (``dir``) or raw split files.

    Raw files (``train`` + ``valid``, optional ``test``) are read as they are: no cleaning or
    deduplication; labels are normalised (``label_map`` for class ids).
    """

    dir: InputPath | None = None
    train: InputFile | None = None
    valid: InputFile | None = None
    test: InputFile | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"] = "auto"
    text_column: str = "text"
    label_column: str = "label"
    label_map: dict[RawLabel, Label] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> FinetuneData:
        if (self.dir is None) == (self.train is None):
            raise ValueError("give exactly one of data.dir (a prepared folder) or data.train + data.valid (files)")
        if self.train is not None and self.valid is None:
            raise ValueError("data.valid is required with data.train (it picks the best checkpoint)")
        if self.dir is not None and (self.valid is not None or self.test is not None):
            raise ValueError("data.valid and data.test go with data.train, not with data.dir")
        return self


class OptimCfg(Schema):
    """AdamW (Loshchilov & Hutter 2019); no weight decay on biases and normalisation weights."""

    name: Literal["adamw"] = "adamw"
    lr: float = Field(5e-5, gt=0.0, le=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)
    grad_clip: float | None = Field(1.0, gt=0.0)


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
    seed: int = 13
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    log_every: int = Field(10, ge=1)
    tensorboard: bool = False
    wandb: bool = False
    keep_checkpoints: int = Field(1, ge=1)

    @field_validator("eval_every", "save_every")
    @classmethod
    def _positive(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be a positive number of steps or 'epoch'")
        return v


class FinetuneRecipe(Schema):
    """A `finsent finetune` recipe: sequence classification into negative / neutral / positive."""

    output_dir: Path
    model: ModelCfg
    data: FinetuneData
    optim: OptimCfg = Field(default_factory=OptimCfg)
    sched: SchedCfg = Field(default_factory=SchedCfg)
    train: TrainCfg = Field(default_factory=TrainCfg)

    @model_validator(mode="after")
    def _known_metric(self) -> FinetuneRecipe:
        if self.train.metric not in CLASSIFICATION_METRICS:
            known = ", ".join(CLASSIFICATION_METRICS)
            raise ValueError(f"train.metric: unknown metric {self.train.metric!r} (one of {known})")
        return self

    @property
    def metric_mode(self) -> str:
        """``max`` or ``min``: the recipe's choice, else the metric's natural direction."""
        return self.train.metric_mode or CLASSIFICATION_METRICS[self.train.metric]
