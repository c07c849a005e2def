"""Schema of `finsent pretrain` recipes: T5 span-corruption pretraining (Raffel et al. 2020, arXiv 1910.10683).

A ``model`` section (a named T5 size and the corrupted input length), ``data`` (a corpus and a finsent
tokenizer, span-corruption settings), and the shared ``optim`` / ``sched`` / ``train`` sections of
``config.training``; ``train.metric`` is the held-out span-corruption loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from finsent_cli.config.base import InputPath, Schema
from finsent_cli.config.training import OptimCfg, SchedCfg, TrainCfg

PRETRAIN_METRICS = {"heldout_loss": "min", "heldout_accuracy": "max"}


class T5PretrainModel(Schema):
    """The T5 to pretrain: a named size of ``core.models.t5`` (vocabulary size from the tokenizer).

    ``t5_small`` is finsent's (8 heads of 64 = d_model 512: square W_K, so slim attention applies);
    ``t5_v1_1_small`` has Google's exact shapes (6 heads, 8+8 layers) and decodes with the full cache.
    ``max_seq_len`` is the corrupted encoder input, EOS included; the raw block and target lengths follow.
    """

    size: Literal["t5_tiny", "t5_small", "t5_v1_1_small", "t5_base"] = "t5_small"
    variant: Literal["v1.1", "original"] = "v1.1"
    max_seq_len: int = Field(512, ge=8, le=8192)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class PretrainData(Schema):
    """Unlabelled text and the tokenizer.

    ``corpus``: a folder written by ``finsent prep`` with a ``corpus`` section (``train.txt`` +
    ``heldout.txt``), or ``.txt`` / ``.txt.gz`` files, one document a line. Held-out blocks come from
    the folder's ``heldout.txt`` or ``heldout`` files; with neither, the last ``heldout_blocks`` blocks
    of the corpus are held out (never trained on). ``cache_dir``: where the token files go (default:
    ``tokens/`` inside a corpus folder, beside the first file otherwise).
    """

    corpus: list[InputPath] = Field(min_length=1)
    tokenizer: InputPath
    heldout: list[InputPath] = Field(default_factory=list)
    heldout_blocks: int = Field(256, ge=1)
    noise_density: float = Field(0.15, gt=0.0, lt=1.0)
    mean_noise_span_length: float = Field(3.0, ge=1.0)
    cache_dir: Path | None = None


class PretrainTrain(TrainCfg):
    """``train`` of a pretraining recipe: as everywhere, but measured in steps and on the held-out loss."""

    metric: str = "heldout_loss"
    eval_every: int | Literal["epoch"] = 500
    save_every: int | Literal["epoch"] | None = 500
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(1, ge=1)


class PretrainRecipe(Schema):
    """A `finsent pretrain` recipe."""

    output_dir: Path
    model: T5PretrainModel = Field(default_factory=T5PretrainModel)
    data: PretrainData
    optim: OptimCfg = Field(default_factory=lambda: OptimCfg(name="adafactor", lr=0.01, weight_decay=0.0))
    sched: SchedCfg = Field(default_factory=lambda: SchedCfg(name="inverse_sqrt", warmup_ratio=0.1))
    train: PretrainTrain = Field(default_factory=PretrainTrain)

    @model_validator(mode="after")
    def _known_metric(self) -> PretrainRecipe:
        if self.train.metric not in PRETRAIN_METRICS:
            raise ValueError(
                f"train.metric: unknown metric {self.train.metric!r} (one of {', '.join(PRETRAIN_METRICS)})"
            )
        return self

    @property
    def metric_mode(self) -> str:
        """``max`` or ``min``: the recipe's choice, else the metric's natural direction."""
        return self.train.metric_mode or PRETRAIN_METRICS[self.train.metric]
