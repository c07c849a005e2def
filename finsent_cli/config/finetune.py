"""Schema of `finsent finetune` recipes: a ``model`` section (its ``kind`` picks the schema, see
``config.models``), labelled ``data``, and the shared ``optim`` / ``sched`` / ``train`` sections
(``config.training``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, model_validator

from finsent_cli.config.base import InputFile, InputPath, RawLabel, Schema
from finsent_cli.config.models import ModelCfg
from finsent_cli.config.training import OptimCfg, SchedCfg, TrainCfg
from finsent_cli.config.tune import TuneCfg
from finsent_cli.labels import Label

CLASSIFICATION_METRICS = {"macro_f1": "max", "accuracy": "max", "weighted_f1": "max", "loss": "min"}


Format = Literal["auto", "csv", "tsv", "jsonl", "parquet"]


class DataSource(Schema):
    """One labelled file among several in ``data.train`` / ``data.valid`` / ``data.test``.

    Columns, format and label map default to the ``data`` section's own; ``weight`` scales how many of the
    source's examples one training epoch sees (2.0: each twice; 0.5: a fixed seeded half).
    """

    path: InputFile
    name: str | None = None  # how reports name it; default: the file name without its suffix
    format: Format | None = None
    text_column: str | None = None
    label_column: str | None = None
    target_column: str | None = None
    label_map: dict[RawLabel, Label] | None = None
    weight: float = Field(1.0, gt=0, le=100)
    unique_texts: bool = False
    """Keep each text once (entity-level files list a sentence once per target): its label when all its rows
    agree; a text whose rows disagree is dropped."""

    @property
    def label(self) -> str:
        return self.name or self.path.stem


def _as_source(value: Any) -> Any:
    return {"path": value} if isinstance(value, str | Path) else value


Sources = list[Annotated[DataSource, BeforeValidator(_as_source)]]
SplitFiles = Annotated[
    Annotated[InputFile, Tag("file")] | Annotated[Sources, Tag("list")],
    Discriminator(lambda v: "list" if isinstance(v, list) else "file"),
]
"""A split: one file, or a list of sources (the tag keeps errors to the form that was given)."""


class FinetuneData(Schema):
    """Labelled examples: a folder written by ``finsent prep`` (``dir``) or raw split files.

    Raw files (``train`` + ``valid``, optional ``test``) are read as they are: no cleaning or
    deduplication; labels are normalised (``label_map`` for class ids). Each split may instead be a list
    of sources (:class:`DataSource`), each with its own columns, label map and training weight: the
    model trains on all of them, picks its best checkpoint on the pooled validation sources, and reports
    every source apart.
    """

    dir: InputPath | None = None
    train: SplitFiles | None = None
    valid: SplitFiles | None = None
    test: SplitFiles | None = None
    format: Format = "auto"
    text_column: str = "text"
    label_column: str = "label"
    target_column: str | None = None
    """The column naming the company each row's label is about (SEntFiN: ``target``): the model then reads
    (target, text) pairs and its folder records that it is target-conditioned."""
    label_map: dict[RawLabel, Label] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> FinetuneData:
        if (self.dir is None) == (self.train is None):
            raise ValueError("give exactly one of data.dir (a prepared folder) or data.train + data.valid (files)")
        if self.train is not None and self.valid is None:
            raise ValueError("data.valid is required with data.train (it picks the best checkpoint)")
        if self.dir is not None and (self.valid is not None or self.test is not None):
            raise ValueError("data.valid and data.test go with data.train, not with data.dir")
        for split in ("train", "valid", "test"):
            value = getattr(self, split)
            if not isinstance(value, list):
                continue
            if not value:
                raise ValueError(f"data.{split}: an empty list; give a file or at least one source")
            names = [s.label for s in value]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"data.{split}: two sources are named {twice[0]!r}; give each a distinct name")
            if split != "train" and any(s.weight != 1.0 for s in value):
                raise ValueError(f"data.{split}: weight applies to data.train sources only")
            untargeted = [s.label for s in value if not (s.target_column or self.target_column)]
            if len(untargeted) < len(value) and untargeted:
                raise ValueError(f"data.{split}: source {untargeted[0]!r} has no target_column while others do; a model reads targets for every example or for none")
        return self

    def sources(self, split: str) -> list[DataSource]:
        """The split's files as sources with every setting filled in from this section (``[]`` when absent)."""
        value = getattr(self, split)
        if value is None:
            return []
        listed = value if isinstance(value, list) else [DataSource.model_construct(path=value, name=split)]
        return [
            s.model_copy(update={
                "format": s.format or self.format, "text_column": s.text_column or self.text_column,
                "label_column": s.label_column or self.label_column, "target_column": s.target_column or self.target_column,
                "label_map": self.label_map if s.label_map is None else s.label_map,
            })
            for s in listed
        ]  # fmt: skip

    def multi_source(self, split: str) -> bool:
        return isinstance(getattr(self, split), list)


class AugmentCfg(Schema):
    """Augmentation of the training split (``core.data.augment``, after EDA, Wei & Zou 2019): each example
    gets ``copies`` extra versions, each made by ONE of the enabled operations: random ``deletion`` (every
    word dropped with this probability) or random ``swap`` (``swap * words`` swaps of two words, at least
    one). 0 turns an operation off. ``seed`` defaults to ``train.seed``. Validation and test are never
    augmented. Synonym replacement is left out on purpose: it changes meaning in finance text."""

    deletion: float = Field(0.1, ge=0.0, lt=1.0)
    swap: float = Field(0.1, ge=0.0, le=1.0)
    copies: int = Field(1, ge=1, le=32)
    seed: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _something_on(self) -> AugmentCfg:
        if self.deletion == 0 and self.swap == 0:
            raise ValueError("deletion and swap are both 0; turn one on, or drop the augment section")
        return self


class FinetuneRecipe(Schema):
    """A `finsent finetune` recipe: sequence classification into negative / neutral / positive."""

    output_dir: Path
    model: ModelCfg
    data: FinetuneData
    optim: OptimCfg = Field(default_factory=OptimCfg)
    sched: SchedCfg = Field(default_factory=SchedCfg)
    train: TrainCfg = Field(default_factory=TrainCfg)
    calibration: Literal["temperature", "none"] = "temperature"
    """``temperature``: fit one temperature on the validation split after training (Guo et al. 2017) and
    store it in the model folder, where predict, eval and explain apply it; ``none``: raw probabilities."""
    augment: AugmentCfg | None = None
    """Random deletion / swap copies of the training examples (``None``: train on the data as it is)."""
    tune: TuneCfg | None = None
    """The search space and settings of ``finsent tune`` (ignored by ``finsent finetune``)."""

    @model_validator(mode="after")
    def _known_metric(self) -> FinetuneRecipe:
        if self.train.metric not in CLASSIFICATION_METRICS:
            known = ", ".join(CLASSIFICATION_METRICS)
            raise ValueError(f"train.metric: unknown metric {self.train.metric!r} (one of {known})")
        if self.tune is not None and self.tune.metric is not None and self.tune.metric not in CLASSIFICATION_METRICS:
            known = ", ".join(CLASSIFICATION_METRICS)
            raise ValueError(f"tune.metric: unknown validation metric {self.tune.metric!r} (one of {known})")
        return self

    @property
    def metric_mode(self) -> str:
        """``max`` or ``min``: the recipe's choice, else the metric's natural direction."""
        return self.train.metric_mode or CLASSIFICATION_METRICS[self.train.metric]
