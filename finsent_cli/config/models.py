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


class NoAdapterCfg(Schema):
    """No adapter: every weight of the model trains (full fine-tuning)."""

    kind: Literal["none"] = "none"


class LoraCfg(Schema):
    """LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): low-rank updates on
    ``target_modules`` (module names of the backbone, ``query`` / ``value`` for BERT-style encoders, ``q`` /
    ``v`` for T5); the classification head trains in full."""

    kind: Literal["lora"] = "lora"
    r: int = Field(8, ge=1, le=1024)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "value"], min_length=1)


class QLoraCfg(LoraCfg):
    """QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs"): LoRA over a base whose
    linear layers are stored in 4 bits by bitsandbytes (``quant_type`` nf4 or fp4, ``double_quant`` also
    quantises the quantisation constants) and computed in ``compute_dtype``; the head stays full precision."""

    kind: Literal["qlora"] = "qlora"  # type: ignore[assignment]
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    gradient_checkpointing: bool = False


class _FusionCfg(Schema):
    """What both Mamba adapter kinds take: Mamba-2 blocks (Dao & Gu 2024) over the frozen encoder's states.

    ``num_layers`` blocks (per expert for gamba), the mixer's ``d_state``, ``d_conv``, ``expand`` and
    ``head_dim`` (``expand`` x hidden size must divide by it), the MLP's ``mlp_ratio``, ``dropout``, and
    ``kernels``: ``auto`` (mamba-ssm's CUDA kernels when installed and on CUDA, else the PyTorch scan),
    ``off`` (always PyTorch) or ``required`` (an error without the kernels).
    """

    num_layers: int = Field(2, ge=1, le=64)
    d_state: int = Field(16, ge=1, le=256)
    d_conv: int = Field(4, ge=1, le=16)
    expand: int = Field(2, ge=1, le=8)
    head_dim: int = Field(32, ge=1, le=1024)
    mlp_ratio: int = Field(4, ge=1, le=16)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    kernels: Literal["auto", "off", "required"] = "auto"


class MambaCfg(_FusionCfg):
    """Kind ``mamba``: N stacked Mamba blocks over the encoder's token states (``scan: tokens``), or over
    the single pooled vector (``scan: cls``, the FinBERT-Mamba study's design), fused by a softmax gate
    computed from the pooled output, residual to it. Only the adapter, the gate and the head train."""

    kind: Literal["mamba"] = "mamba"
    scan: Literal["tokens", "cls"] = "tokens"


class GambaCfg(_FusionCfg):
    """Kind ``gamba``: three experts over the encoder's token states (a Mamba stack, an attention stack and
    a mixed stack, ``num_layers`` blocks each) combined by a softmax gating network; ``attention_heads``
    for the attention blocks."""

    kind: Literal["gamba"] = "gamba"
    attention_heads: int = Field(4, ge=1, le=64)


ADAPTER_SCHEMAS: dict[str, type[Schema]] = {
    "none": NoAdapterCfg,
    "lora": LoraCfg,
    "qlora": QLoraCfg,
    "mamba": MambaCfg,
    "gamba": GambaCfg,
}
"""Adapter kind -> schema of ``model.adapter`` (the kinds of ``core.models.adapters.ADAPTERS``)."""


def _adapter_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("kind", "none"))
    return getattr(value, "kind", None)


AdapterCfg = Annotated[
    Union[tuple(Annotated[schema, Tag(kind)] for kind, schema in ADAPTER_SCHEMAS.items())],  # noqa: UP007
    Discriminator(_adapter_kind),
]
"""``model.adapter``: the schema of the adapter kind named by its ``kind`` (default ``none``)."""


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
    adapter: AdapterCfg = Field(default_factory=NoAdapterCfg)
    max_length: int = Field(128, ge=8, le=8192)

    @model_validator(mode="before")
    @classmethod
    def _old_spellings(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # Recipes written before model kinds said `head: classification`, which kind hf_encoder now implies.
        if "head" in data:
            if data["head"] != "classification":
                raise ValueError(f"model.head: {data['head']!r} is not a head of kind hf_encoder (only classification)")
            data = {k: v for k, v in data.items() if k != "head"}
        # Before adapter kinds: `adapter: lora` beside a `lora:` section (`adapter: none` dumped one too).
        if isinstance(data.get("adapter"), str):
            kind, lora = data["adapter"], data.get("lora")
            data = {k: v for k, v in data.items() if k != "lora"}
            extra = lora if kind in ("lora", "qlora") and isinstance(lora, dict) else {}
            data["adapter"] = {"kind": kind, **extra}
        elif "lora" in data:
            raise ValueError("model.lora: the LoRA settings moved into model.adapter (kind: lora, r: ..., alpha: ...)")
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
