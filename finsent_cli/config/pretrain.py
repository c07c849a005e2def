"""Schema of `finsent pretrain` recipes: T5 span corruption (Raffel et al. 2020, arXiv 1910.10683) or masked
language modelling of a Hugging Face encoder (Devlin et al. 2019; domain-adaptive, Gururangan et al. 2020).

``objective`` picks what is pretrained: ``span_corruption`` a finsent T5 (``model.kind: t5``, the default:
a named size and the corrupted input length), ``mlm`` a pretrained encoder (``model.kind: hf_encoder``,
``model.backbone: minilm``) further trained on the corpus. Then ``data`` (a corpus; a finsent tokenizer and
the span settings for T5, the masking settings for MLM) and the shared ``optim`` / ``sched`` / ``train``
sections of ``config.training``; ``train.metric`` is the held-out loss of the objective.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator

from finsent_cli.config.base import InputPath, Schema
from finsent_cli.config.training import OptimCfg, SchedCfg, TrainCfg
from finsent_cli.config.tune import TuneCfg

PRETRAIN_METRICS = {"heldout_loss": "min", "heldout_accuracy": "max"}


class T5PretrainModel(Schema):
    """The T5 to pretrain: a named size of ``core.models.t5`` (vocabulary size from the tokenizer).

    ``t5_small`` is finsent's (8 heads of 64 = d_model 512: square W_K, so slim attention applies);
    ``t5_v1_1_small`` has Google's exact shapes (6 heads, 8+8 layers) and decodes with the full cache.
    ``max_seq_len`` is the corrupted encoder input, EOS included; the raw block and target lengths follow.
    """

    kind: Literal["t5"] = "t5"
    size: Literal["t5_tiny", "t5_small", "t5_v1_1_small", "t5_base"] = "t5_small"
    variant: Literal["v1.1", "original"] = "v1.1"
    max_seq_len: int = Field(512, ge=8, le=8192)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class MlmPretrainModel(Schema):
    """A pretrained Hugging Face encoder to adapt with masked language modelling: ``backbone`` as in fine-tuning
    recipes (``minilm``, ``mpnet``, a folder or a hub name); lines are cut to ``max_length`` tokens. Its
    masked-LM head comes from the checkpoint when it has one, else it starts fresh (the decoder tied to the
    word embeddings)."""

    kind: Literal["hf_encoder"] = "hf_encoder"
    backbone: str = "minilm"
    max_length: int = Field(128, ge=8, le=8192)


OBJECTIVE_OF_KIND = {"t5": "span_corruption", "hf_encoder": "mlm"}
"""``model.kind`` -> the objective that pretrains it."""


def _pretrain_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("kind", "t5"))
    return getattr(value, "kind", None)


PretrainModel = Annotated[
    Union[Annotated[T5PretrainModel, Tag("t5")], Annotated[MlmPretrainModel, Tag("hf_encoder")]],  # noqa: UP007
    Discriminator(_pretrain_kind),
]
"""``model``: a finsent T5 (``kind: t5``, the default) or a Hugging Face encoder (``kind: hf_encoder``)."""


class PretrainData(Schema):
    """Unlabelled text and the tokenizer.

    ``corpus``: a folder written by ``finsent prep`` with a ``corpus`` section (``train.txt`` +
    ``heldout.txt``), or ``.txt`` / ``.txt.gz`` files, one document a line. Held-out blocks come from
    the folder's ``heldout.txt`` or ``heldout`` files; with neither, the last ``heldout_blocks`` blocks
    of the corpus are held out (never trained on). ``cache_dir``: where the token files go (default:
    ``tokens/`` inside a corpus folder, beside the first file otherwise).

    Span corruption (T5) needs ``tokenizer`` (a finsent tokenizer) and takes ``noise_density`` and
    ``mean_noise_span_length``. Masked language modelling uses the encoder's own tokenizer and masks
    ``mlm_probability`` of the tokens, whole words at a time with ``whole_word_mask`` (every piece of a
    word or none; transformers' collator); there ``heldout_blocks`` counts held-out lines.
    """

    corpus: list[InputPath] = Field(min_length=1)
    tokenizer: InputPath | None = None
    heldout: list[InputPath] = Field(default_factory=list)
    heldout_blocks: int = Field(256, ge=1)
    noise_density: float = Field(0.15, gt=0.0, lt=1.0)
    mean_noise_span_length: float = Field(3.0, ge=1.0)
    cache_dir: Path | None = None
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0)
    whole_word_mask: bool = True


class PretrainTrain(TrainCfg):
    """``train`` of a pretraining recipe: as everywhere, but measured in steps and on the held-out loss."""

    metric: str = "heldout_loss"
    eval_every: int | Literal["epoch"] = 500
    save_every: int | Literal["epoch"] | None = 500
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(1, ge=1)


SPAN_KEYS = ("tokenizer", "noise_density", "mean_noise_span_length", "cache_dir")
MLM_KEYS = ("mlm_probability", "whole_word_mask")


class PretrainRecipe(Schema):
    """A `finsent pretrain` recipe."""

    output_dir: Path
    objective: Literal["span_corruption", "mlm"] | None = None
    """Defaults to the model kind's: ``span_corruption`` for ``t5``, ``mlm`` for ``hf_encoder``."""
    model: PretrainModel = Field(default_factory=T5PretrainModel)
    data: PretrainData
    optim: OptimCfg = Field(
        default_factory=lambda: OptimCfg(name="adafactor", lr=0.01, weight_decay=0.0, scale_by_rms=True)
    )  # T5's: Adafactor with parameter scaling (without it span corruption collapsed the encoder); MLM recipes set their own
    sched: SchedCfg = Field(default_factory=lambda: SchedCfg(name="inverse_sqrt", warmup_ratio=0.1))
    train: PretrainTrain = Field(default_factory=PretrainTrain)
    tune: TuneCfg | None = None
    """The search space and settings of ``finsent tune`` (ignored by ``finsent pretrain``)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_objective(cls, data: Any) -> Any:
        # `objective: mlm` alone picks the encoder schema, and a recipe without `objective` records its kind's,
        # so what is written to recipe.yaml says both.
        if not isinstance(data, dict):
            return data
        model, objective = data.get("model"), data.get("objective")
        if model is None or isinstance(model, dict):
            model = dict(model or {})
            if "kind" not in model and objective in OBJECTIVE_OF_KIND.values():
                model["kind"] = next(k for k, o in OBJECTIVE_OF_KIND.items() if o == objective)
            kind = model.get("kind", "t5")
            data = {**data, "model": model}
            if objective is None and kind in OBJECTIVE_OF_KIND:
                data["objective"] = OBJECTIVE_OF_KIND[kind]
        return data

    @model_validator(mode="after")
    def _objective_fits(self) -> PretrainRecipe:
        wanted = OBJECTIVE_OF_KIND[self.model.kind]
        if self.objective not in (None, wanted):
            other = next(k for k, o in OBJECTIVE_OF_KIND.items() if o == self.objective)
            raise ValueError(f"objective: {self.objective} pretrains model.kind {other}, and this model is kind {self.model.kind} ({wanted})")
        # A key of the other objective is a mistake when it says something; a recorded recipe lists every key
        # with its default, which says nothing.
        fields = type(self.data).model_fields
        given = [k for k in self.data.model_fields_set if getattr(self.data, k) != fields[k].default]
        if wanted == "span_corruption":
            if self.data.tokenizer is None:
                raise ValueError("data.tokenizer: span corruption needs a finsent tokenizer (finsent tokenizer recipes/tokenizer.yaml)")
            stray = [k for k in MLM_KEYS if k in given]
        else:
            stray = [k for k in SPAN_KEYS if k in given]
        if stray:
            raise ValueError(f"data.{stray[0]}: a setting of the {'mlm' if wanted == 'span_corruption' else 'span_corruption'} objective; this recipe pretrains with {wanted}")
        return self

    @property
    def resolved_objective(self) -> str:
        """The objective in force: the recipe's, else the model kind's."""
        return self.objective or OBJECTIVE_OF_KIND[self.model.kind]

    @model_validator(mode="after")
    def _known_metric(self) -> PretrainRecipe:
        if self.train.metric not in PRETRAIN_METRICS:
            raise ValueError(
                f"train.metric: unknown metric {self.train.metric!r} (one of {', '.join(PRETRAIN_METRICS)})"
            )
        if self.tune is not None and self.tune.metric not in (None, self.train.metric):
            raise ValueError(f"tune.metric: a pretraining trial is scored by train.metric ({self.train.metric}); drop tune.metric or set train.metric")
        return self

    @property
    def metric_mode(self) -> str:
        """``max`` or ``min``: the recipe's choice, else the metric's natural direction."""
        return self.train.metric_mode or PRETRAIN_METRICS[self.train.metric]
