"""Schema of `finsent finetune` recipes: a ``model`` section (its ``kind`` picks the schema, see
``config.models``), labelled ``data``, and the shared ``optim`` / ``sched`` / ``train`` sections
(``config.training``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from finsent_cli.config.base import InputFile, InputPath, RawLabel, Schema
from finsent_cli.config.models import ModelCfg
from finsent_cli.config.training import OptimCfg, SchedCfg, TrainCfg
from finsent_cli.labels import Label

CLASSIFICATION_METRICS = {"macro_f1": "max", "accuracy": "max", "weighted_f1": "max", "loss": "min"}


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
