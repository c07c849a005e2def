"""The ``model`` section of training recipes: one schema per model kind, chosen by the ``kind`` key.

Each kind registered in ``finsent_cli.core.models.registry`` has its schema here (a test checks that the
two lists agree). A recipe without ``kind`` means ``hf_encoder``, the only kind older recipes knew. The
T5 kinds may also be written as ``kind: t5`` plus ``head: classification | text2text``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, Tag, field_validator, model_validator

from finsent_cli.config.base import Schema

DEFAULT_KIND = "hf_encoder"
TEXT2TEXT_PREFIX = "sentiment: "
"""The task prefix of kind ``t5_text2text`` (folders that do not record theirs used it)."""


class LoraCfg(Schema):
    """LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models")."""

    r: int = Field(8, ge=1, le=1024)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "value"], min_length=1)


def _three_weights(v: str | list[float]) -> str | list[float]:
    if isinstance(v, list) and (len(v) != 3 or any(w <= 0 for w in v)):
        raise ValueError("give 3 positive weights (negative, neutral, positive), 'balanced' or 'none'")
    return v


ClassWeights = Annotated[Literal["none", "balanced"] | list[float], AfterValidator(_three_weights)]
"""``none``, ``balanced`` (n / (3 * count)) or three positive numbers in label order."""


class HFEncoderCfg(Schema):
    """Kind ``hf_encoder``: a Hugging Face encoder, a classification head, and an optional LoRA adapter.

    ``backbone`` is a local Hugging Face folder, a hub name, or the alias ``minilm``. ``pooling`` is
    ``first`` (hidden state of the first token) or ``mean`` (masked mean over tokens, how MiniLM
    sentence embeddings were trained). ``class_weights``: ``none``, ``balanced`` (n / (3 * count)) or
    three numbers in label order negative, neutral, positive.
    """

    kind: Literal["hf_encoder"] = "hf_encoder"
    backbone: str
    pooling: Literal["first", "mean"] = "mean"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    backbone_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    class_weights: ClassWeights = "none"
    adapter: Literal["none", "lora"] = "none"
    lora: LoraCfg = Field(default_factory=LoraCfg)
    max_length: int = Field(128, ge=8, le=8192)

    @model_validator(mode="before")
    @classmethod
    def _old_head_key(cls, data: Any) -> Any:
        # Recipes written before model kinds said `head: classification`, which kind hf_encoder now implies.
        if isinstance(data, dict) and "head" in data:
            if data["head"] != "classification":
                raise ValueError(f"model.head: {data['head']!r} is not a head of kind hf_encoder (only classification)")
            data = {k: v for k, v in data.items() if k != "head"}
        return data


T5_HEADS = {"classification": "t5_cls", "text2text": "t5_text2text"}
"""``head`` of a ``kind: t5`` recipe -> the model kind it names."""


class _T5Cfg(Schema):
    """What both T5 kinds take: a finsent or Hugging Face T5 as the backbone, fully fine-tuned.

    ``backbone`` is a ``finsent pretrain`` run folder (its ``best/``, else ``last/``), a finsent T5 model
    folder or a Hugging Face T5 folder. ``init: random`` keeps its config and tokenizer but starts from a
    fresh T5 initialisation: the baseline that shows what pretraining buys. ``backbone_dropout`` replaces
    the config's ``dropout_rate`` (None keeps it; pretraining usually ran without dropout). ``max_length``
    counts every encoder token (a text2text prefix included).
    """

    kind: str
    head: str
    backbone: str
    init: Literal["pretrained", "random"] = "pretrained"
    max_length: int = Field(128, ge=8, le=8192)
    class_weights: ClassWeights = "none"
    backbone_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    adapter: str = "none"

    @model_validator(mode="before")
    @classmethod
    def _t5_kind(cls, data: Any) -> Any:
        # `kind: t5` + head is the product spelling; the discriminator already chose this schema by the head.
        if isinstance(data, dict) and data.get("kind") == "t5":
            data = {**data, "kind": cls.model_fields["kind"].default, "head": data.get("head")}
        return data

    @field_validator("head", mode="before")
    @classmethod
    def _known_head(cls, v: Any) -> Any:
        own = cls.model_fields["head"].default
        if v is None:
            raise ValueError("kind t5 needs a head: classification or text2text")
        if not isinstance(v, str) or v not in T5_HEADS:
            raise ValueError(f"{v!r} is not a T5 head (classification or text2text)")
        if v != own:
            kind = cls.model_fields["kind"].default
            raise ValueError(
                f"head {v!r} does not go with kind {kind}; write kind t5 with head {v}, or kind {T5_HEADS[v]}"
            )
        return v

    @field_validator("adapter", mode="before")
    @classmethod
    def _no_adapter(cls, v: Any) -> Any:
        if v != "none":
            raise ValueError(f"{v!r} is not supported with T5 models (only none)")
        return v


class T5ClsCfg(_T5Cfg):
    """Kind ``t5_cls`` (``kind: t5, head: classification``): the T5 encoder, pooled, and a linear head.

    ``pooling``: ``mean`` (masked mean over tokens) or ``first`` (the first token's state; T5 has no
    [CLS] token, so mean is the default). ``dropout`` is the head's.
    """

    kind: Literal["t5_cls"] = "t5_cls"
    head: Literal["classification"] = "classification"
    pooling: Literal["first", "mean"] = "mean"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class T5Text2TextCfg(_T5Cfg):
    """Kind ``t5_text2text`` (``kind: t5, head: text2text``): the whole T5 learns to write the label word
    after ``prefix`` + text, and classifies by scoring the three label words (Raffel et al. 2020)."""

    kind: Literal["t5_text2text"] = "t5_text2text"
    head: Literal["text2text"] = "text2text"
    prefix: str = TEXT2TEXT_PREFIX


MODEL_SCHEMAS: dict[str, type[Schema]] = {
    "hf_encoder": HFEncoderCfg,
    "t5_cls": T5ClsCfg,
    "t5_text2text": T5Text2TextCfg,
}
"""Model kind -> schema of its recipe section."""


def _kind_of(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = str(value.get("kind", DEFAULT_KIND))
        if kind == "t5":  # a missing or unknown head goes to t5_cls, whose head check names it
            return T5_HEADS.get(str(value.get("head")), "t5_cls")
        return kind
    return getattr(value, "kind", None)


ModelCfg = Annotated[
    Union[tuple(Annotated[schema, Tag(kind)] for kind, schema in MODEL_SCHEMAS.items())],  # noqa: UP007
    Discriminator(_kind_of),
]
"""The ``model`` section: the schema of the kind named by ``kind`` (default ``hf_encoder``)."""
